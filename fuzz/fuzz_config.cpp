// libFuzzer target: the YAML config loader (rules/src/config.cpp) with the input as the main file
// of load_config_embedded, plus a few includable files so include/glob/loop handling runs too;
// when the config loads, RuleSet::compile, then one evaluate/explain to make sure the compiled
// form is usable. Checks: the loader never crashes, throws or leaks (ASan/LSan/UBSan); an ok()
// result has a config and no errors, a failed one at least one error with a message; every rule
// of a loaded config compiles or is reported with a message; rule_count matches.
// Inputs above 4 KiB are skipped, and so are regexes with repetition counts >= 100 or many
// counted repetitions: Hyperscan's compile time grows with the expanded size
// (stack-notes: "cap regex repetition counts before compiling").
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "crawlgate/rules/config.h"
#include "crawlgate/rules/rule_set.h"

using namespace crawlgate;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_config invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) fail(#cond); \
  } while (0)

// True when `text` holds a counted repetition that could make Hyperscan's compile expensive:
// "{N", "{N,", ",M}" with a number of 3+ digits, or more than 6 counted repetitions.
bool expensive_repetition(std::string_view text) {
  int counted = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '{' && text[i] != ',') continue;
    std::size_t j = i + 1;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    std::size_t digits = j - i - 1;
    if (digits >= 3) return true;
    if (text[i] == '{' && digits > 0 && ++counted > 6) return true;
  }
  return false;
}

bool patterns_expensive(const Condition& condition) {
  for (const PatternConfig& pattern : condition.patterns) {
    if (pattern.text.size() > 512 || expensive_repetition(pattern.text)) return true;
  }
  for (const Condition& child : condition.children) {
    if (patterns_expensive(child)) return true;
  }
  return false;
}

const std::map<std::string, std::string>& base_files() {
  static const std::map<std::string, std::string> files = {
      {"parts/classes.yaml",
       "classes:\n  mine: {action: throttle, limit: {rate: 2/s, burst: 4}}\n"},
      {"parts/rules.d/10-ai.yaml",
       "rules:\n  - name: gpt\n    class: ai_training\n    user_agent: [{token: GPTBot}]\n"},
      {"parts/rules.d/20-misc.yaml",
       "rules:\n  - name: admin\n    action: deny\n    path: ['^/admin']\n"
       "  - name: nohdr\n    action: log\n    enforce: false\n    header: {accept: {absent: true}}\n"},
      {"parts/costs.yaml", "costs:\n  - {path: '^/w/index\\.php', cost: 2}\n"},
      {"parts/loop.yaml", "include: [../main.yaml]\n"},
  };
  return files;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  if (expensive_repetition(text)) return 0;

  std::map<std::string, std::string> files = base_files();
  files["main.yaml"] = text;
  LoadResult loaded;
  try {
    loaded = load_config_embedded("main.yaml", files);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "load_config_embedded threw: %s\n", e.what());
    std::abort();
  }
  if (!loaded.ok()) {
    CHECK(!loaded.errors.empty());
    for (const ConfigError& error : loaded.errors) {
      CHECK(!error.message.empty());
      CHECK(!error.to_string().empty());
      CHECK(error.line >= 0 && error.column >= 0);
    }
    return 0;
  }
  const Config& config = *loaded.config;
  CHECK(!config.files.empty() && config.files.front() == "main.yaml");
  for (const ClassConfig& cls : config.classes) CHECK(!cls.name.empty());
  for (const RuleConfig& rule : config.rules) {
    CHECK(!rule.name.empty());
    CHECK(rule.class_name.empty() || config.find_class(rule.class_name) != nullptr);
    CHECK(!rule.limit || rule.limit->enabled());
    CHECK(!rule.cost || *rule.cost > 0);
    if (patterns_expensive(rule.condition)) return 0;
  }
  for (const CostConfig& cost : config.costs) {
    CHECK(cost.cost > 0);
    if (cost.path.text.size() > 512 || expensive_repetition(cost.path.text)) return 0;
  }

  CompileResult compiled = RuleSet::compile(config);
  if (!compiled.ok()) {
    CHECK(!compiled.errors.empty());
    for (const ConfigError& error : compiled.errors) CHECK(!error.message.empty());
    return 0;
  }
  const RuleSet& rules = *compiled.rule_set;
  CHECK(rules.rule_count() == config.rules.size());

  static const HeaderField kHeaders[] = {{"Host", "wiki.example"},
                                         {"User-Agent", "Mozilla/5.0 (compatible; GPTBot/1.2)"},
                                         {"Accept", "text/html"}};
  RequestView request;
  request.method = "GET";
  request.target = "/w/index.php?title=Main_Page";
  request.headers = kHeaders;
  request.client_ip = request.peer_ip = *IpAddress::parse("192.0.2.7");
  MatchScratch scratch;
  Decision decision = rules.evaluate(request, scratch);
  std::vector<RuleMatch> matches = rules.explain(request, scratch);
  if (decision.matched()) {
    CHECK(decision.rule_index < rules.rule_count());
    CHECK(!matches.empty());
  } else {
    CHECK(matches.empty());
  }
  return 0;
}
