// libFuzzer target: RuleSet::evaluate / explain on arbitrary requests, against the real default
// rule set (rules/default/{classes,ai-crawlers,known-bots}.yaml loaded with load_config_file, as
// tests/rules/default_rules_test.cpp does) and against tests/rules/configs/good/full.yaml, which
// uses every condition kind (path, method, headers, remote_address, not/any, shadow rules).
// Input: lines "METHOD", "TARGET", "USER-AGENT", then "Name: value" header lines; a header line
// "@ADDRESS" sets the client address instead. Checks: evaluate's winner is the first enforced
// rule of explain (else the first shadow rule), shadow_rule_index is the first shadow match
// before it, explain is strictly ordered and equal with and without a caller scratch, and a
// second evaluation with the same scratch gives the same answer.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crawlgate/rules/config.h"
#include "crawlgate/rules/rule_set.h"

using namespace crawlgate;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_rule_match invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) fail(#cond); \
  } while (0)

std::shared_ptr<const RuleSet> load(const std::string& path) {
  LoadResult loaded = load_config_file(path);
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors) std::fprintf(stderr, "%s\n", error.to_string().c_str());
    std::abort();
  }
  CompileResult compiled = RuleSet::compile(*loaded.config);
  if (!compiled.ok()) {
    for (const auto& error : compiled.errors) std::fprintf(stderr, "%s\n", error.to_string().c_str());
    std::abort();
  }
  return compiled.rule_set;
}

struct RuleSets {
  std::vector<std::shared_ptr<const RuleSet>> sets;
  RuleSets() {
    char dir[] = "/tmp/fuzz_rule_match.XXXXXX";
    if (!mkdtemp(dir)) std::abort();
    std::string main = std::string(dir) + "/default-rules.yaml";
    std::string text = "include:\n";
    for (const char* name : {"classes.yaml", "ai-crawlers.yaml", "known-bots.yaml"}) {
      text += "  - '" + std::string(CRAWLGATE_DEFAULT_RULES) + "/" + name + "'\n";
    }
    if (FILE* f = std::fopen(main.c_str(), "w")) {
      std::fwrite(text.data(), 1, text.size(), f);
      std::fclose(f);
    } else {
      std::abort();
    }
    sets.push_back(load(main));
    std::remove(main.c_str());
    rmdir(dir);
    sets.push_back(load(std::string(CRAWLGATE_RULES_TEST_CONFIGS) + "/good/full.yaml"));
  }
};

const RuleSets& rule_sets() {
  static const RuleSets instance;
  return instance;
}

bool same(const Decision& a, const Decision& b) {
  return a.rule_index == b.rule_index && a.rule_name == b.rule_name &&
         a.class_name == b.class_name && a.action == b.action && a.enforced == b.enforced &&
         a.deny_status == b.deny_status && a.deny_body == b.deny_body &&
         a.shadow_rule_index == b.shadow_rule_index;
}

void check(const RuleSet& rules, const RequestView& request, MatchScratch& scratch) {
  Decision decision = rules.evaluate(request, scratch);
  std::vector<RuleMatch> matches = rules.explain(request, scratch);
  for (std::size_t i = 1; i < matches.size(); ++i) {
    CHECK(matches[i - 1].rule_index < matches[i].rule_index);
  }
  for (const RuleMatch& match : matches) CHECK(match.rule_index < rules.rule_count());

  const RuleMatch* first_enforced = nullptr;
  const RuleMatch* first_shadow = nullptr;
  for (const RuleMatch& match : matches) {
    if (match.enforced && !first_enforced) first_enforced = &match;
    if (!match.enforced && !first_shadow) first_shadow = &match;
  }
  if (first_enforced) {
    CHECK(decision.rule_index == first_enforced->rule_index);
    CHECK(decision.enforced);
    CHECK(decision.action == first_enforced->action);
    CHECK(decision.rule_name == first_enforced->rule_name);
    CHECK(decision.class_name == first_enforced->class_name);
    CHECK(decision.deny_status == first_enforced->deny_status);
    CHECK(decision.deny_body == first_enforced->deny_body);
    if (first_shadow && first_shadow->rule_index < first_enforced->rule_index) {
      CHECK(decision.shadow_rule_index == first_shadow->rule_index);
    } else {
      CHECK(decision.shadow_rule_index == Decision::kNoRule);
    }
  } else if (first_shadow) {
    CHECK(decision.rule_index == first_shadow->rule_index);
    CHECK(!decision.enforced);
    CHECK(decision.shadow_rule_index == Decision::kNoRule);
  } else {
    CHECK(!decision.matched());
  }
  if (decision.matched()) {
    RuleMatch rule = rules.rule(decision.rule_index);
    CHECK(rule.rule_name == decision.rule_name && rule.enforced == decision.enforced);
  }

  // Same scratch again (epoch reuse), and explain with its own scratch.
  CHECK(same(decision, rules.evaluate(request, scratch)));
  std::vector<RuleMatch> fresh = rules.explain(request);
  CHECK(fresh.size() == matches.size());
  for (std::size_t i = 0; i < fresh.size(); ++i) CHECK(fresh[i].rule_index == matches[i].rule_index);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)rule_sets();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  // Exact-size copy so ASan sees reads past any field.
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> lines;
  std::string_view rest(text);
  while (true) {
    std::size_t nl = rest.find('\n');
    lines.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }

  RequestView request;
  std::vector<HeaderField> headers;
  request.method = lines.size() > 0 ? lines[0] : std::string_view("GET");
  request.target = lines.size() > 1 ? lines[1] : std::string_view("/");
  if (lines.size() > 2) headers.push_back({"User-Agent", lines[2]});
  request.client_ip = request.peer_ip = *IpAddress::parse("192.0.2.1");
  for (std::size_t i = 3; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.starts_with('@')) {
      if (auto address = IpAddress::parse(line.substr(1))) request.client_ip = *address;
      continue;
    }
    std::size_t colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    while (value.starts_with(' ')) value.remove_prefix(1);
    headers.push_back({name, value});
  }
  request.headers = headers;
  request.version = (size & 1) ? 11 : 10;

  static MatchScratch scratch;  // one per thread in the proxy; reused across requests here too
  for (const auto& rules : rule_sets().sets) check(*rules, request, scratch);
  return 0;
}
