// The request pipeline: an ordered list of stages, each seeing the read-only RequestView and the
// shared RequestContext. It is Boost-free so that `explain` and `replay` run the very same stages
// as the proxy, over a RequestView built from a flag or a log line.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crawlgate/metrics/metrics.h"
#include "crawlgate/rules/config.h"
#include "crawlgate/rules/request_view.h"
#include "crawlgate/rules/rule_set.h"
#include "crawlgate/rules/settings.h"

namespace crawlgate {
class Model;
class BehaviourTable;
}  // namespace crawlgate

namespace crawlgate::proxy {

// An answer crawlgate writes itself instead of relaying to the upstream.
struct LocalResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the client connection after the answer
  // Tarpit: hold the answer this long on a timer before writing it (never a blocked thread).
  std::chrono::milliseconds delay{0};
  // Released when the answer was written or the connection dropped: counts held answers.
  std::shared_ptr<void> hold;
};

// What earlier stages found, so no stage recomputes another's work, plus what the access log
// records. Later stages add the client entry, the model score and the limit decision.
struct RequestContext {
  std::string request_id;
  std::optional<LocalResponse> response;  // set by a stage that answers kRespond
  std::string traffic_class;              // "" until a stage classifies the request
  std::string rule;                       // the deciding rule, if any
  std::string action;                     // allow, deny, throttle, tarpit, log
  bool enforced = true;
  std::uint32_t rule_index = UINT32_MAX;  // the deciding rule's index in the RuleSet
  double score = -1;                      // the behavioural model's score; < 0 when not scored
  // The features that pushed a score over a threshold most ("name+1.23,..."), for the access log;
  // also below the thresholds when `explain` is set (crawlgate explain).
  std::string top_features;
  bool explain = false;
  std::string shadow_rule;                // a shadow-mode rule that matched before the decision
  std::uint32_t shadow_rule_index = UINT32_MAX;
  std::string answered_by;                // the stage that answered locally, if any
};

enum class StageVerdict { kContinue, kRespond, kSuspend };

// Called exactly once by a stage that returned kSuspend, from any thread, with the verdict it
// reached (kContinue or kRespond). The session resumes the request on its own strand.
using ResumeFn = std::function<void(StageVerdict)>;

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string_view name() const = 0;
  // Called concurrently from every I/O thread: stages are immutable or synchronise internally.
  // Must not block. A stage returning kSuspend keeps `resume` and calls it later; until then
  // `request` and `context` stay valid and untouched by the proxy.
  virtual StageVerdict evaluate(const RequestView& request, RequestContext& context,
                                const ResumeFn& resume) = 0;
};

class Pipeline {
 public:
  void add(std::shared_ptr<Stage> stage) { stages_.push_back(std::move(stage)); }
  std::size_t size() const { return stages_.size(); }
  Stage& at(std::size_t index) const { return *stages_[index]; }

 private:
  std::vector<std::shared_ptr<Stage>> stages_;
};

// Fixed answers for exact paths: the trivial stage of the proxy core.
class StaticResponseStage final : public Stage {
 public:
  explicit StaticResponseStage(std::vector<StaticResponseSettings> responses);
  std::string_view name() const override { return "static"; }
  StageVerdict evaluate(const RequestView& request, RequestContext& context,
                        const ResumeFn& resume) override;

 private:
  std::vector<StaticResponseSettings> responses_;
};

std::string_view reason_phrase(int status);

// The page crawlgate writes for its own errors and denials: status, a sentence, the request id.
LocalResponse error_response(int status, std::string_view request_id, std::string_view detail,
                             bool close = false);

// Everything the config produces, compiled once and published with one atomic swap. A request
// takes the pointer once when it starts and keeps it to its end.
struct Snapshot {
  std::uint64_t generation = 0;
  ServerSettings settings;               // the config's, with command-line overrides applied
  std::shared_ptr<const Config> config;  // null when built from settings alone (tests)
  std::shared_ptr<const RuleSet> rules;  // null when there are no rules
  std::shared_ptr<const metrics::ConfigLabels> labels;  // null without metrics
  std::shared_ptr<const Model> model;                   // the behavioural model, if any
  BehaviourTable* behaviour = nullptr;  // owned by the ThrottleState, which outlives snapshots
  Pipeline pipeline;
  std::string source;  // the config file, or "(embedded default config)"
};

class ThrottleState;

// What a snapshot is built from. Only `settings` is required.
struct SnapshotParts {
  ServerSettings settings;
  std::uint64_t generation = 1;
  std::string source;
  std::shared_ptr<const Config> config;
  std::shared_ptr<const RuleSet> rules;
  metrics::Metrics* metrics = nullptr;
  std::shared_ptr<ThrottleState> throttle;  // state that outlives reloads; needed for limits
  std::shared_ptr<const Model> model;       // with `behaviour:` configured
};

// Builds the stages the config asks for: static answers, signatures, then limits. Returns null
// and sets `error` when a stage cannot be built.
std::shared_ptr<const Snapshot> build_snapshot(SnapshotParts parts, std::string* error = nullptr);

// Settings alone (tests, and the proxy core without rules).
std::shared_ptr<const Snapshot> build_snapshot(const ServerSettings& settings,
                                               std::uint64_t generation, std::string source);

// Runs a snapshot's stages over one request outside the proxy (explain, replay). A stage that
// suspends is treated as continuing: offline there is nothing to wait for.
StageVerdict run_pipeline_offline(const Snapshot& snapshot, const RequestView& request,
                                  RequestContext& context);

}  // namespace crawlgate::proxy
