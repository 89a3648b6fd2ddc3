// The crawlgate command line. `run`, `check`, `explain` and `replay` share one config loader, so
// what `check` accepts is exactly what `run` will run.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crawlgate/classifier/clock.h"
#include "crawlgate/proxy/pipeline.h"
#include "crawlgate/proxy/throttle_stage.h"
#include "crawlgate/rules/config.h"

namespace crawlgate {

class Model;

const std::map<std::string, std::string>& embedded_config_files();

namespace app {

// Flags of `crawlgate run` that override the config file.
struct Overrides {
  std::optional<std::string> listen;
  std::optional<std::string> upstream;
  std::optional<std::string> admin;
  std::vector<std::string> trusted_proxies;
  std::optional<unsigned> threads;
};

// The config file, or the embedded default when `path` is empty.
LoadResult load_configuration(const std::string& path);

// Applies the flags; returns an error message for a bad flag value.
std::optional<std::string> apply_overrides(const Overrides& overrides, ServerSettings& settings);

// Loads the config and compiles its rules: what `check` validates and `run` runs.
struct CompiledConfig {
  std::shared_ptr<const Config> config;
  std::shared_ptr<const RuleSet> rules;
  std::shared_ptr<const Model> model;  // with `behaviour:` configured
  std::vector<ConfigError> errors;
  bool ok() const { return errors.empty() && config && rules; }
};
CompiledConfig compile_configuration(const std::string& path);

// Loads, applies the flags and builds a snapshot; errors are returned as printable lines.
struct BuildResult {
  std::shared_ptr<const proxy::Snapshot> snapshot;
  std::vector<std::string> errors;
};
// `throttle`: the process's client table and buckets, created from the first config loaded when
// it points to null, on `clock` (replay passes the log's time); without it (check) no limits are
// enforced.
BuildResult build_from_config(const std::string& path, const Overrides& overrides,
                              std::uint64_t generation, metrics::Metrics* metrics = nullptr,
                              std::shared_ptr<proxy::ThrottleState>* throttle = nullptr,
                              const Clock& clock = SteadyClock::instance());

// `crawlgate replay`: a log through the same stages, offline, in the log's own time.
struct ReplayOptions {
  std::string log_path;
  std::string config_path;     // empty: the embedded default config
  std::string format = "auto";  // auto, jsonl, combined
  std::string decisions_path;  // --decisions: one TSV line per input line
  std::size_t top = 10;        // rows per summary table
  bool progress = true;        // a progress bar on stderr when it is a terminal
};
int replay_command(const ReplayOptions& options);

int main(int argc, char** argv);

}  // namespace app
}  // namespace crawlgate
