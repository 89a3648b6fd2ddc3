#include "crawlgate/rules/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "crawlgate/rules/rule_set.h"
#include "test_util.h"

namespace crawlgate {
namespace {

using testing::describe_errors;
using testing::errors_of;
using testing::load_text;
using testing::TempDir;

const std::string kConfigs = CRAWLGATE_RULES_TEST_CONFIGS;

bool has_error(const std::vector<ConfigError>& errors, const std::string& file, int line,
               const std::string& text) {
  return std::any_of(errors.begin(), errors.end(), [&](const ConfigError& error) {
    return std::filesystem::path(error.file).filename() == file && error.line == line &&
           error.message.find(text) != std::string::npos;
  });
}

// ---- the corpus of bad configs (tests/rules/configs/bad, see the README there) ----

struct Expectation {
  std::string file;
  int line = 0;
  std::string text;
};

std::vector<Expectation> expectations_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<Expectation> out;
  static const std::regex kLine(R"(^# expect-error: ([^:]+):(\d+): (.*)$)");
  for (std::string line; std::getline(in, line);) {
    std::smatch match;
    if (std::regex_match(line, match, kLine)) {
      out.push_back({match[1], std::stoi(match[2]), match[3]});
    }
  }
  return out;
}

std::vector<std::string> bad_configs() {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(kConfigs + "/bad")) {
    if (entry.path().extension() == ".yaml") out.push_back(entry.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class BadConfigTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BadConfigTest, ReportsEachExpectedErrorWithFileAndLine) {
  const std::string path = kConfigs + "/bad/" + GetParam();
  std::vector<Expectation> expected = expectations_of(path);
  ASSERT_FALSE(expected.empty()) << path << " has no '# expect-error:' line";

  LoadResult loaded = load_config_file(path);
  std::vector<ConfigError> errors = loaded.errors;
  if (loaded.ok()) errors = RuleSet::compile(*loaded.config).errors;
  EXPECT_EQ(errors.size(), expected.size()) << "errors:\n" << describe_errors(errors);
  for (const Expectation& expectation : expected) {
    EXPECT_TRUE(has_error(errors, expectation.file, expectation.line, expectation.text))
        << "missing " << expectation.file << ":" << expectation.line << ": " << expectation.text
        << "\nerrors:\n"
        << describe_errors(errors);
  }
  for (const ConfigError& error : errors) {
    EXPECT_GT(error.line, 0) << error.to_string();
    EXPECT_FALSE(error.file.empty()) << error.to_string();
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, BadConfigTest, ::testing::ValuesIn(bad_configs()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.size() - 5);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// ---- errors ----

TEST(ConfigErrorTest, FormatsFileLineColumn) {
  EXPECT_EQ((ConfigError{"a.yaml", 3, 7, "boom"}).to_string(), "a.yaml:3:7: boom");
  EXPECT_EQ((ConfigError{"a.yaml", 3, 0, "boom"}).to_string(), "a.yaml:3: boom");
  EXPECT_EQ((ConfigError{"a.yaml", 0, 0, "boom"}).to_string(), "a.yaml: boom");
}

TEST(ConfigLoadTest, MissingMainFileIsAnError) {
  LoadResult result = load_config_file("/nonexistent/crawlgate.yaml");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].file, "/nonexistent/crawlgate.yaml");
  EXPECT_FALSE(result.ok());
}

TEST(ConfigLoadTest, CollectsErrorsFromEverySection) {
  auto errors = load_text(
                    "threads: many\n"
                    "limits: {max_connections: 0}\n"
                    "rules:\n"
                    "  - name: 'bad name'\n"
                    "    action: explode\n"
                    "    user_agent: [x]\n"
                    "  - name: fine\n"
                    "    action: deny\n"
                    "    method: ['GE T']\n")
                    .errors;
  EXPECT_EQ(errors.size(), 5u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 1, "threads: expected a whole number"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 2, "out of range 1.."));
  EXPECT_TRUE(has_error(errors, "main.yaml", 4, "may contain only"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 5, "unknown action 'explode'"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 9, "'GE T' is not a method name"));
}

TEST(ConfigLoadTest, ReportsEveryErrorOfARule) {
  auto errors = load_text(
                    "rules:\n"
                    "  - name: two-problems\n"
                    "    action: deny\n"
                    "    method: ['GE T']\n"
                    "    headers: {'Bad Header': [x]}\n")
                    .errors;
  EXPECT_EQ(errors.size(), 2u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 4, "'GE T' is not a method name"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 5, "'Bad Header' is not a header name"));
}

TEST(ConfigLoadTest, EmptyConfigGivesDefaults) {
  LoadResult result = load_text("");
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  const ServerSettings defaults;
  EXPECT_EQ(result.config->server.listen.to_string(), defaults.listen.to_string());
  EXPECT_EQ(result.config->server.limits.max_body_bytes, defaults.limits.max_body_bytes);
  EXPECT_TRUE(result.config->rules.empty());
  EXPECT_EQ(result.config->files, std::vector<std::string>{"main.yaml"});
}

TEST(ConfigLoadTest, TopLevelMustBeAMap) {
  auto errors = load_text("- a\n- b\n").errors;
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].message.find("top level must be a map"), std::string::npos);
}

TEST(ConfigLoadTest, DuplicateHeaderNamesIgnoreCase) {
  auto errors = load_text(
                    "rules:\n"
                    "  - name: h\n"
                    "    action: log\n"
                    "    headers:\n"
                    "      Accept-Language: {absent: true}\n"
                    "      accept-language: [en]\n")
                    .errors;
  ASSERT_EQ(errors.size(), 1u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 6, "already listed at line 5"));
}

TEST(ConfigLoadTest, DuplicateClassDefinitionIsAnError) {
  auto result = load_config_embedded(
      "main.yaml", {{"main.yaml", "classes: {mine: {action: log}}\ninclude: part.yaml\n"},
                    {"part.yaml", "\nclasses:\n  mine: {action: deny}\n"}});
  ASSERT_EQ(result.errors.size(), 1u) << describe_errors(result.errors);
  EXPECT_TRUE(has_error(result.errors, "part.yaml", 3, "already defined at main.yaml:1"));
}

TEST(ConfigLoadTest, ClassNeedsAnAction) {
  auto errors = load_text("classes:\n  mine: {description: x}\n").errors;
  ASSERT_EQ(errors.size(), 1u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 2, "needs an action"));
}

TEST(ConfigLoadTest, DenyStatusMustBeAnErrorStatus) {
  auto errors = load_text(
                    "rules:\n"
                    "  - name: r\n"
                    "    action: deny\n"
                    "    deny: {status: 200}\n"
                    "    path: [x]\n")
                    .errors;
  ASSERT_EQ(errors.size(), 1u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 4, "out of range 400..599"));
}

TEST(ConfigLoadTest, StaticResponsePathsAreUnique) {
  auto errors = load_text(
                    "static_responses:\n"
                    "  - {path: /ping, body: a}\n"
                    "  - {path: /ping, body: b}\n"
                    "  - {path: ping}\n"
                    "  - {status: 200}\n")
                    .errors;
  EXPECT_EQ(errors.size(), 3u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 3, "already defined at line 2"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 4, "must start with '/'"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 5, "without a path"));
}

// ---- includes ----

TEST(ConfigIncludeTest, LoopNamesTheChain) {
  auto result =
      load_config_embedded("etc/main.yaml", {{"etc/main.yaml", "include: rules/a.yaml\n"},
                                             {"etc/rules/a.yaml", "include: [b.yaml]\n"},
                                             {"etc/rules/b.yaml", "\ninclude: ../main.yaml\n"}});
  ASSERT_EQ(result.errors.size(), 1u) << describe_errors(result.errors);
  EXPECT_EQ(result.errors[0].to_string(),
            "etc/rules/b.yaml:2:10: include loop: etc/main.yaml -> etc/rules/a.yaml -> "
            "etc/rules/b.yaml -> etc/main.yaml");
}

TEST(ConfigIncludeTest, SelfIncludeIsALoop) {
  auto errors = load_text("include: main.yaml\n").errors;
  ASSERT_EQ(errors.size(), 1u) << describe_errors(errors);
  EXPECT_NE(errors[0].message.find("include loop: main.yaml -> main.yaml"), std::string::npos);
}

TEST(ConfigIncludeTest, SecondIncludeOfAFileIsAnError) {
  auto result = load_config_embedded(
      "main.yaml", {{"main.yaml", "include: [a.yaml, b.yaml]\n"},
                    {"a.yaml", "include: common.yaml\n"},
                    {"b.yaml", "include: common.yaml\n"},
                    {"common.yaml", "rules: [{name: c, action: log, path: [x]}]\n"}});
  ASSERT_EQ(result.errors.size(), 1u) << describe_errors(result.errors);
  EXPECT_TRUE(has_error(result.errors, "b.yaml", 1, "already included (first read via a.yaml:1)"));
}

TEST(ConfigIncludeTest, RulesAreOrderedWithIncludesExpandedInPlace) {
  auto result = load_config_embedded(
      "main.yaml",
      {{"main.yaml",
        "rules: [{name: first, action: log, path: [a]}]\n"
        "include: [rules/*.yaml]\n"
        "classes: {local: {action: allow}}\n"},
       {"rules/20-b.yaml", "rules: [{name: b1, class: local, path: [b]}]\n"},
       {"rules/10-a.yaml", "rules: [{name: a1, action: log, path: [a]}]\ninclude: extra/*.yaml\n"},
       {"rules/extra/x.yaml", "rules: [{name: x1, action: log, path: [x]}]\n"},
       {"rules/notes.txt", "not yaml: ["},
       {"other/z.yaml", "rules: [{name: z, action: log, path: [z]}]\n"}});
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  std::vector<std::string> names;
  for (const RuleConfig& rule : result.config->rules) names.push_back(rule.name);
  EXPECT_EQ(names, (std::vector<std::string>{"first", "a1", "x1", "b1"}));
  EXPECT_EQ(result.config->files,
            (std::vector<std::string>{"main.yaml", "rules/10-a.yaml", "rules/extra/x.yaml",
                                      "rules/20-b.yaml"}));
}

TEST(ConfigIncludeTest, GlobsOnDiskAreSortedAndRelativeToTheIncludingFile) {
  TempDir dir;
  std::string main = dir.write("etc/crawlgate.yaml", "include: [conf.d/*.yaml, empty.d/*.yaml]\n");
  dir.write("etc/conf.d/b.yaml", "rules: [{name: b, action: log, path: [b]}]\n");
  dir.write("etc/conf.d/a.yaml", "rules: [{name: a, action: log, path: [a]}]\n");
  std::filesystem::create_directories(dir.path("etc/empty.d"));
  LoadResult result = load_config_file(main);
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  ASSERT_EQ(result.config->rules.size(), 2u);
  EXPECT_EQ(result.config->rules[0].name, "a");
  EXPECT_EQ(result.config->rules[1].name, "b");
  ASSERT_EQ(result.config->files.size(), 3u);
  EXPECT_EQ(result.config->files[1], dir.path("etc/conf.d/a.yaml"));
  EXPECT_EQ(result.config->rules[0].where.file, dir.path("etc/conf.d/a.yaml"));
  EXPECT_EQ(result.config->rules[0].where.line, 1);
}

TEST(ConfigIncludeTest, ErrorsInIncludedFilesNameThatFile) {
  TempDir dir;
  std::string main = dir.write("main.yaml", "threads: 2\ninclude: part.yaml\n");
  dir.write("part.yaml", "rules:\n  - name: p\n    class: nope\n    path: [x]\n");
  LoadResult result = load_config_file(main);
  ASSERT_EQ(result.errors.size(), 1u) << describe_errors(result.errors);
  EXPECT_EQ(result.errors[0].file, dir.path("part.yaml"));
  EXPECT_EQ(result.errors[0].line, 3);
}

// ---- a good config, every server key ----

TEST(ConfigRoundTripTest, EveryServerKey) {
  LoadResult result = load_config_file(kConfigs + "/good/full.yaml");
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  const ServerSettings& s = result.config->server;
  EXPECT_EQ(s.listen.host, "::1");
  EXPECT_EQ(s.listen.port, 18080);
  EXPECT_EQ(s.upstream.address.to_string(), "10.1.2.3:18081");
  EXPECT_EQ(s.admin.to_string(), "127.0.0.1:19464");
  EXPECT_EQ(s.threads, 3u);
  ASSERT_EQ(s.trusted_proxies.size(), 2u);
  EXPECT_EQ(s.trusted_proxies[0].to_string(), "10.0.0.0/8");
  EXPECT_EQ(s.trusted_proxies[1].to_string(), "2001:db8::/32");
  EXPECT_EQ(s.websocket, WebSocketPolicy::kRefuse);
  EXPECT_EQ(s.request_id_header, "X-Trace-Id");
  EXPECT_EQ(s.upstream.pool_max_idle, 7u);
  EXPECT_EQ(s.upstream.pool_idle_timeout, Millis(45'000));
  EXPECT_EQ(s.limits.max_header_bytes, 32u * 1024);
  EXPECT_EQ(s.limits.max_body_bytes, 0u);
  EXPECT_EQ(s.limits.max_connections, 123u);
  EXPECT_EQ(s.limits.max_response_header_bytes, 128u * 1024);
  EXPECT_EQ(s.timeouts.header_read, Millis(2'500));
  EXPECT_EQ(s.timeouts.idle_keepalive, Millis(120'000));
  EXPECT_EQ(s.timeouts.body_read, Millis(3'600'000));
  EXPECT_EQ(s.timeouts.client_write, Millis(15'000));
  EXPECT_EQ(s.upstream.connect_timeout, Millis(250));
  EXPECT_EQ(s.upstream.response_timeout, Millis(90'000));
  EXPECT_EQ(s.timeouts.shutdown_grace, Millis(3'000));
  EXPECT_EQ(s.access_log.path, "/var/log/crawlgate/access.log");
  EXPECT_EQ(s.access_log.format, AccessLogFormat::kCombined);
  EXPECT_FALSE(s.access_log.headers);
  EXPECT_TRUE(s.access_log.anonymize_ip);
  EXPECT_EQ(s.access_log.queue_max, 1024u);
  ASSERT_EQ(s.static_responses.size(), 2u);
  EXPECT_EQ(s.static_responses[0].path, "/crawlgate-ping");
  EXPECT_EQ(s.static_responses[0].status, 200);
  EXPECT_EQ(s.static_responses[0].content_type, "text/plain");
  EXPECT_EQ(s.static_responses[0].body, "pong\n");
  EXPECT_EQ(s.static_responses[1].content_type, StaticResponseSettings{}.content_type);
  EXPECT_EQ(s.static_responses[1].body, "User-agent: GPTBot\nDisallow: /\n");

  const Config& config = *result.config;
  ASSERT_EQ(config.files.size(), 3u);
  std::vector<std::string> names;
  for (const RuleConfig& rule : config.rules) names.push_back(rule.name);
  EXPECT_EQ(names, (std::vector<std::string>{"openai-gptbot", "perplexity", "history-scrapers",
                                             "local-checker"}));

  // Classes: builtin, overridden in the main file and in an include, and the config's own.
  ASSERT_NE(config.find_class("ai_training"), nullptr);
  EXPECT_EQ(config.find_class("ai_training")->action, Action::kDeny);
  EXPECT_TRUE(config.find_class("ai_training")->builtin);
  const ClassConfig* search = config.find_class("ai_search");
  ASSERT_NE(search, nullptr);
  EXPECT_EQ(search->action, Action::kDeny);
  EXPECT_EQ(search->deny.status, 429);
  EXPECT_FALSE(search->builtin);
  EXPECT_EQ(config.find_class("ai_agent")->action, Action::kTarpit);
  ASSERT_NE(config.find_class("internal_tool"), nullptr);
  EXPECT_EQ(config.find_class("internal_tool")->description, "our own link checker");

  // Rules resolve their action and deny answer from their class unless they override them.
  const RuleConfig& gptbot = config.rules[0];
  EXPECT_EQ(gptbot.action, Action::kDeny);
  EXPECT_EQ(gptbot.deny.status, 403);
  EXPECT_EQ(gptbot.deny.body, DenyResponse{}.body);
  const RuleConfig& perplexity = config.rules[1];
  EXPECT_EQ(perplexity.action, Action::kDeny);
  EXPECT_EQ(perplexity.deny.status, 429);
  EXPECT_EQ(perplexity.deny.body, "no\n");
  const RuleConfig& history = config.rules[2];
  EXPECT_EQ(history.action, Action::kThrottle);
  EXPECT_TRUE(history.class_name.empty());
  EXPECT_FALSE(history.enforce);
  EXPECT_EQ(config.rules[3].action, Action::kLog);

  EXPECT_TRUE(RuleSet::compile(config).ok());
}

// The server-key example at the top of docs/config.md must stay a valid config.
TEST(ConfigDocTest, ServerExampleLoads) {
  std::ifstream in(CRAWLGATE_CONFIG_DOC);
  std::stringstream text;
  text << in.rdbuf();
  std::string doc = text.str();
  std::size_t start = doc.find("```yaml\n");
  ASSERT_NE(start, std::string::npos);
  start += 8;
  std::string example = doc.substr(start, doc.find("```", start) - start);
  LoadResult result = load_text(example);
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors) << example;
  const ServerSettings& server = result.config->server;
  EXPECT_EQ(server.upstream.address.to_string(), "127.0.0.1:8081");
  EXPECT_EQ(server.limits.max_header_bytes, 16u * 1024);
  ASSERT_EQ(server.static_responses.size(), 1u);
  EXPECT_EQ(server.static_responses[0].body, "pong\n");
}

TEST(ConfigClassesTest, StandardClassesExistWithoutAClassesKey) {
  LoadResult result = load_text("rules: [{name: r, class: ai_data, user_agent: [x]}]\n");
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  const std::vector<std::string> standard = {
      "ai_training",   "ai_search",    "ai_assistant",       "ai_agent",    "ai_data", "ai_stealth",
      "search_engine", "archiver",     "social_preview",     "feed_reader", "monitor", "seo",
      "scanner",       "http_library", "browser_automation", "human"};
  ASSERT_EQ(result.config->classes.size(), standard.size());
  for (std::size_t i = 0; i < standard.size(); ++i) {
    EXPECT_EQ(result.config->classes[i].name, standard[i]);
  }
  auto action_of = [&](const char* name) { return result.config->find_class(name)->action; };
  EXPECT_EQ(action_of("ai_training"), Action::kDeny);
  EXPECT_EQ(action_of("ai_data"), Action::kDeny);
  EXPECT_EQ(action_of("ai_search"), Action::kThrottle);
  EXPECT_EQ(action_of("ai_assistant"), Action::kThrottle);
  EXPECT_EQ(action_of("ai_agent"), Action::kThrottle);
  EXPECT_EQ(action_of("search_engine"), Action::kAllow);
  EXPECT_EQ(action_of("human"), Action::kAllow);
  EXPECT_EQ(result.config->rules[0].action, Action::kDeny);
}

TEST(ConfigClassesTest, ActionNamesRoundTrip) {
  for (Action action :
       {Action::kAllow, Action::kDeny, Action::kThrottle, Action::kTarpit, Action::kLog}) {
    EXPECT_EQ(parse_action(action_name(action)), action);
  }
  EXPECT_FALSE(parse_action("block").has_value());
}

TEST(ConfigConditionsTest, ParsesTheConditionTree) {
  LoadResult result = load_text(
      "rules:\n"
      "  - name: tree\n"
      "    action: deny\n"
      "    user_agent: ['Foo', {token: Bar}, {regex: 'Baz/\\d', case_sensitive: true}]\n"
      "    method: POST\n"
      "    headers:\n"
      "      Sec-Fetch-Mode: {present: true}\n"
      "      Accept-Language: {absent: true}\n"
      "      Cookie: {present: false}\n"
      "      X-Crawler: '^yes$'\n"
      "    any:\n"
      "      - remote_addresses: [192.0.2.0/24]\n"
      "      - not: {path: ['^/w/']}\n");
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  const Condition& root = result.config->rules[0].condition;
  ASSERT_EQ(root.kind, ConditionKind::kAll);
  ASSERT_EQ(root.children.size(), 7u);
  EXPECT_EQ(root.children[0].kind, ConditionKind::kUserAgent);
  ASSERT_EQ(root.children[0].patterns.size(), 3u);
  EXPECT_EQ(root.children[0].patterns[1].kind, PatternConfig::Kind::kToken);
  EXPECT_TRUE(root.children[0].patterns[2].case_sensitive);
  EXPECT_EQ(root.children[0].patterns[2].where.line, 4);
  EXPECT_EQ(root.children[1].kind, ConditionKind::kMethod);
  EXPECT_EQ(root.children[1].methods, std::vector<std::string>{"POST"});
  EXPECT_EQ(root.children[2].kind, ConditionKind::kHeaderPresent);
  EXPECT_EQ(root.children[3].kind, ConditionKind::kHeaderAbsent);
  EXPECT_EQ(root.children[4].kind, ConditionKind::kHeaderAbsent);
  EXPECT_EQ(root.children[5].kind, ConditionKind::kHeaderMatches);
  EXPECT_EQ(root.children[5].header, "X-Crawler");
  const Condition& any = root.children[6];
  ASSERT_EQ(any.kind, ConditionKind::kAny);
  ASSERT_EQ(any.children.size(), 2u);
  EXPECT_EQ(any.children[0].children[0].kind, ConditionKind::kRemoteAddress);
  EXPECT_EQ(any.children[1].children[0].kind, ConditionKind::kNot);
}

// ---- limits (docs/config.md, "Limits (throttling)") ----

TEST(ConfigLimitsTest, ParsesRates) {
  struct Case {
    const char* text;
    double per_second;
  };
  for (const Case& c : {Case{"10/s", 10}, Case{"30/m", 0.5}, Case{"3600/h", 1}, Case{"86400/d", 1},
                        Case{"2.5/s", 2.5}, Case{"7", 7}, Case{"0.25", 0.25}}) {
    double out = 0;
    std::string error;
    EXPECT_TRUE(parse_rate(c.text, out, error)) << c.text << ": " << error;
    EXPECT_DOUBLE_EQ(out, c.per_second) << c.text;
  }
  for (const char* bad : {"fast", "0/s", "-1/s", "10/fortnight", "", "/s", "10/", "1e3/s", "inf",
                          "nan", ".5/s", "5./s", "+1/s", "1/s/s", "10 /s", "0"}) {
    double out = 0;
    std::string error;
    EXPECT_FALSE(parse_rate(bad, out, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

TEST(ConfigLimitsTest, DefaultsWithoutLimitKeys) {
  LoadResult result = load_text("rules: [{name: r, class: ai_search, user_agent: [x]}]\n");
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  const Config& config = *result.config;
  // The builtin throttle classes carry no limit of their own (the embedded default config does).
  for (const char* name : {"ai_search", "ai_assistant", "ai_agent"}) {
    const ClassConfig* klass = config.find_class(name);
    ASSERT_NE(klass, nullptr) << name;
    EXPECT_EQ(klass->action, Action::kThrottle) << name;
    EXPECT_FALSE(klass->limit) << name;
    EXPECT_FALSE(klass->class_limit) << name;
    EXPECT_EQ(klass->ipv4_prefix, 32u) << name;
    EXPECT_EQ(klass->ipv6_prefix, 64u) << name;
  }
  EXPECT_FALSE(config.rules[0].limit);
  EXPECT_FALSE(config.rules[0].cost);
  EXPECT_TRUE(config.costs.empty());
  const ServerSettings& server = config.server;
  EXPECT_EQ(server.throttle.client_table_size, 1'000'000u);
  EXPECT_EQ(server.throttle.max_tarpitted, 1000u);
  EXPECT_EQ(server.throttle.tarpit_delay, Millis(10'000));
  EXPECT_FALSE(server.redis.enabled);
  EXPECT_EQ(server.redis.address.to_string(), "127.0.0.1:6379");
  EXPECT_EQ(server.redis.budget, Millis(2));
  EXPECT_EQ(server.redis.key_prefix, "crawlgate:");
  EXPECT_EQ(server.redis.connect_timeout, Millis(1000));
}

TEST(ConfigLimitsTest, EveryKeyRoundTrips) {
  LoadResult result = load_config_file(kConfigs + "/good/limits.yaml");
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  const Config& config = *result.config;
  const ServerSettings& s = config.server;
  EXPECT_EQ(s.throttle.client_table_size, 5000u);
  EXPECT_EQ(s.throttle.max_tarpitted, 7u);
  EXPECT_EQ(s.throttle.tarpit_delay, Millis(2500));
  EXPECT_TRUE(s.redis.enabled);
  EXPECT_EQ(s.redis.address.host, "::1");
  EXPECT_EQ(s.redis.address.port, 6380);
  EXPECT_EQ(s.redis.budget, Millis(5));
  EXPECT_EQ(s.redis.key_prefix, "cg-test:");
  EXPECT_EQ(s.redis.connect_timeout, Millis(500));

  const ClassConfig* assistant = config.find_class("ai_assistant");
  ASSERT_NE(assistant, nullptr);
  ASSERT_TRUE(assistant->limit);
  EXPECT_TRUE(assistant->limit->enabled());
  EXPECT_DOUBLE_EQ(assistant->limit->rate_per_second, 1);
  EXPECT_DOUBLE_EQ(assistant->limit->burst, 10);
  EXPECT_EQ(assistant->limit->where.line, 17);
  ASSERT_TRUE(assistant->class_limit);
  EXPECT_DOUBLE_EQ(assistant->class_limit->rate_per_second, 50);
  EXPECT_DOUBLE_EQ(assistant->class_limit->burst, 200);
  EXPECT_EQ(assistant->ipv4_prefix, 24u);
  EXPECT_EQ(assistant->ipv6_prefix, 48u);
  const ClassConfig* search = config.find_class("ai_search");
  EXPECT_EQ(search->action, Action::kTarpit);
  ASSERT_TRUE(search->limit);
  EXPECT_DOUBLE_EQ(search->limit->rate_per_second, 0.5);
  EXPECT_DOUBLE_EQ(search->limit->burst, 5);
  EXPECT_FALSE(search->class_limit);
  const ClassConfig* agent = config.find_class("ai_agent");
  EXPECT_FALSE(agent->limit);
  ASSERT_TRUE(agent->class_limit);
  EXPECT_DOUBLE_EQ(agent->class_limit->rate_per_second, 1);
  EXPECT_DOUBLE_EQ(agent->class_limit->burst, 1.5);
  EXPECT_EQ(agent->ipv4_prefix, 32u);
  EXPECT_EQ(agent->ipv6_prefix, 0u);
  const ClassConfig* nightly = config.find_class("nightly");
  ASSERT_NE(nightly, nullptr);
  EXPECT_EQ(nightly->action, Action::kLog);
  ASSERT_TRUE(nightly->limit);
  EXPECT_DOUBLE_EQ(nightly->limit->rate_per_second, 1000.0 / 86400);

  ASSERT_EQ(config.rules.size(), 5u);
  const RuleConfig& chatgpt = config.rules[0];  // its own limit and cost
  ASSERT_TRUE(chatgpt.limit);
  EXPECT_DOUBLE_EQ(chatgpt.limit->rate_per_second, 2);
  EXPECT_DOUBLE_EQ(chatgpt.limit->burst, 20);
  EXPECT_EQ(chatgpt.limit->where.line, 36);
  EXPECT_EQ(chatgpt.cost, 1.5);
  const RuleConfig& claude = config.rules[1];  // inherits the class's per-client limit
  ASSERT_TRUE(claude.limit);
  EXPECT_DOUBLE_EQ(claude.limit->rate_per_second, 1);
  EXPECT_DOUBLE_EQ(claude.limit->burst, 10);
  EXPECT_EQ(claude.limit->where.line, 17);
  EXPECT_FALSE(claude.cost);
  const RuleConfig& perplexity = config.rules[2];  // deny in a tarpit class: no limit
  EXPECT_EQ(perplexity.action, Action::kDeny);
  EXPECT_FALSE(perplexity.limit);
  EXPECT_FALSE(config.rules[3].limit);       // the class has only a class_limit
  const RuleConfig& bare = config.rules[4];  // no class: nothing to inherit
  EXPECT_EQ(bare.action, Action::kThrottle);
  EXPECT_FALSE(bare.limit);
  EXPECT_EQ(bare.cost, 3);

  // Costs in file order, includes expanded in place.
  ASSERT_EQ(config.costs.size(), 4u);
  EXPECT_EQ(config.costs[0].path.text, "[?&](oldid|diff)=");
  EXPECT_EQ(config.costs[0].cost, 10);
  EXPECT_EQ(std::filesystem::path(config.costs[0].where.file).filename(), "limits_costs.yaml");
  EXPECT_EQ(config.costs[0].where.line, 2);
  EXPECT_EQ(config.costs[0].path.where.line, 2);
  EXPECT_FALSE(config.costs[0].can_be_empty);
  EXPECT_EQ(config.costs[1].path.text, ".*");
  EXPECT_TRUE(config.costs[1].can_be_empty);
  EXPECT_EQ(config.costs[2].path.text, "[?&]action=(history|edit|info)");
  EXPECT_EQ(config.costs[2].cost, 20);
  EXPECT_FALSE(config.costs[2].path.case_sensitive);
  EXPECT_EQ(config.costs[2].path.kind, PatternConfig::Kind::kRegex);
  EXPECT_EQ(config.costs[3].path.text, "^/W/");
  EXPECT_TRUE(config.costs[3].path.case_sensitive);
  EXPECT_EQ(config.costs[3].cost, 0.5);
  EXPECT_EQ(std::filesystem::path(config.costs[3].where.file).filename(), "limits.yaml");
  EXPECT_EQ(config.costs[3].where.line, 59);

  EXPECT_TRUE(RuleSet::compile(config).ok());
}

TEST(ConfigLimitsTest, RedisBlockEnablesUnlessDisabled) {
  LoadResult on = load_text("redis: {}\n");
  ASSERT_TRUE(on.ok()) << describe_errors(on.errors);
  EXPECT_TRUE(on.config->server.redis.enabled);
  LoadResult off = load_text("redis: {enabled: false, address: 10.0.0.1:6379}\n");
  ASSERT_TRUE(off.ok()) << describe_errors(off.errors);
  EXPECT_FALSE(off.config->server.redis.enabled);
  EXPECT_EQ(off.config->server.redis.address.to_string(), "10.0.0.1:6379");
  auto errors = load_text("redis:\n").errors;
  ASSERT_EQ(errors.size(), 1u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 1, "'redis' has no value"));
}

TEST(ConfigLimitsTest, CostsMayComeFromIncludedFiles) {
  auto result = load_config_embedded(
      "main.yaml", {{"main.yaml", "costs: [{path: a, cost: 1}]\ninclude: part.yaml\n"},
                    {"part.yaml", "costs: [{path: b, cost: 2}]\n"}});
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors);
  ASSERT_EQ(result.config->costs.size(), 2u);
  EXPECT_EQ(result.config->costs[0].path.text, "a");
  EXPECT_EQ(result.config->costs[1].path.text, "b");
}

TEST(ConfigLimitsTest, ReportsEveryBadCostRegexWithTheLoadErrors) {
  auto errors = load_text(
                    "threads: x\n"
                    "costs:\n"
                    "  - {path: 'a(', cost: 2}\n"
                    "  - {path: '(a)\\1', cost: 2}\n"
                    "  - {path: '', cost: 2}\n")
                    .errors;
  EXPECT_EQ(errors.size(), 4u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 1, "threads"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 3, "costs entry: regex 'a(' is not supported"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 4, "back-references are not supported"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 5, "empty pattern"));
}

TEST(ConfigLimitsTest, LimitNeedsRateAndBurst) {
  auto errors = load_text("classes:\n  c: {action: throttle, limit: {}}\n").errors;
  EXPECT_EQ(errors.size(), 2u) << describe_errors(errors);
  EXPECT_TRUE(has_error(errors, "main.yaml", 2, "needs rate:"));
  EXPECT_TRUE(has_error(errors, "main.yaml", 2, "needs burst:"));
}

// The Limits example in docs/config.md must stay a valid config.
TEST(ConfigDocTest, LimitsExampleLoads) {
  std::ifstream in(CRAWLGATE_CONFIG_DOC);
  std::stringstream text;
  text << in.rdbuf();
  std::string doc = text.str();
  std::size_t section = doc.find("\n## Limits");
  ASSERT_NE(section, std::string::npos);
  std::size_t start = doc.find("```yaml\n", section);
  ASSERT_NE(start, std::string::npos);
  start += 8;
  std::string example = doc.substr(start, doc.find("```", start) - start);
  LoadResult result = load_text(example);
  ASSERT_TRUE(result.ok()) << describe_errors(result.errors) << example;
  const Config& config = *result.config;
  const ClassConfig* assistant = config.find_class("ai_assistant");
  ASSERT_TRUE(assistant->limit && assistant->class_limit);
  EXPECT_DOUBLE_EQ(assistant->limit->rate_per_second, 1);
  EXPECT_DOUBLE_EQ(assistant->class_limit->burst, 200);
  const ClassConfig* search = config.find_class("ai_search");
  EXPECT_EQ(search->action, Action::kTarpit);
  ASSERT_TRUE(search->limit);
  EXPECT_DOUBLE_EQ(search->limit->rate_per_second, 0.5);
  ASSERT_EQ(config.rules.size(), 1u);
  ASSERT_TRUE(config.rules[0].limit);
  EXPECT_DOUBLE_EQ(config.rules[0].limit->burst, 20);
  EXPECT_EQ(config.rules[0].cost, 1);
  ASSERT_EQ(config.costs.size(), 2u);
  EXPECT_EQ(config.costs[0].cost, 20);
  EXPECT_EQ(config.server.throttle.tarpit_delay, Millis(10'000));
  EXPECT_TRUE(config.server.redis.enabled);
  EXPECT_EQ(config.server.redis.budget, Millis(2));
  EXPECT_TRUE(RuleSet::compile(config).ok());
}

}  // namespace
}  // namespace crawlgate
