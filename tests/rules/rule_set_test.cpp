#include "crawlgate/rules/rule_set.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "crawlgate/rules/config.h"
#include "test_util.h"

namespace crawlgate {
namespace {

using testing::compile_text;
using testing::describe_errors;
using testing::errors_of;
using testing::Request;
using testing::winner;

// ---- pattern errors ----

TEST(RuleSetErrorsTest, EveryBadPatternIsReportedWithItsLocation) {
  auto errors = errors_of(
      "rules:\n"
      "  - name: one\n"
      "    action: deny\n"
      "    user_agent: ['ok', 'Foo(Bar', 'also ok']\n"
      "  - name: two\n"
      "    action: deny\n"
      "    path:\n"
      "      - '^/w/(?=index)'\n"
      "      - '(?<!x)y'\n"
      "    headers:\n"
      "      Referer: ['(a)\\1']\n");
  ASSERT_EQ(errors.size(), 4u) << describe_errors(errors);
  EXPECT_EQ(errors[0].file, "main.yaml");
  EXPECT_EQ(errors[0].line, 4);
  EXPECT_EQ(errors[0].column, 24);
  EXPECT_NE(errors[0].message.find("rule 'one': regex 'Foo(Bar' is not supported"),
            std::string::npos)
      << errors[0].message;
  EXPECT_EQ(errors[1].line, 8);
  EXPECT_NE(errors[1].message.find("rule 'two': regex '^/w/(?=index)'"), std::string::npos);
  EXPECT_NE(errors[1].message.find("lookaround and back-references are not supported"),
            std::string::npos)
      << errors[1].message;
  EXPECT_EQ(errors[2].line, 9);
  EXPECT_NE(errors[2].message.find("(?<!x)y"), std::string::npos);
  EXPECT_EQ(errors[3].line, 11);
  EXPECT_NE(errors[3].message.find("(a)\\1"), std::string::npos);
}

TEST(RuleSetErrorsTest, EmptyMatchingAndQuotedPatternsCompile) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: anchors, action: log, user_agent: ['\\AGPTBot\\z']}\n"
      "  - {name: quoted, action: log, user_agent: ['\\Qa.b']}\n"
      "  - {name: anything, action: log, headers: {X-Any: ['x*']}}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(testing::winner(*rules, Request().ua("GPTBot")), "anchors");
  EXPECT_EQ(testing::winner(*rules, Request().ua("a GPTBot")), "");
  EXPECT_EQ(testing::winner(*rules, Request().ua("xa.b")), "quoted");
  EXPECT_EQ(testing::winner(*rules, Request().ua("xaxb")), "");
  EXPECT_EQ(testing::winner(*rules, Request().header("X-Any", "")), "anything");
  EXPECT_EQ(testing::winner(*rules, Request().header("X-Other", "")), "");
}

// ---- matching ----

TEST(RuleSetTest, EmptyRuleSetMatchesNothing) {
  auto rules = compile_text("");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("GPTBot")), "");
  EXPECT_TRUE(rules->explain(Request().ua("GPTBot").view()).empty());
}

TEST(RuleSetTest, TokenBoundaries) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: gptbot, class: ai_training, user_agent: [{token: GPTBot}]}\n"
      "  - {name: chatgpt-user, class: ai_assistant, user_agent: [{token: ChatGPT-User}]}\n"
      "  - {name: chatgpt, class: ai_assistant, user_agent: [{token: ChatGPT}]}\n"
      "  - {name: dotted, class: monitor, user_agent: [{token: 'check.ly'}]}\n"
      "  - {name: exact-case, class: monitor, user_agent: [{token: Pingdom, case_sensitive: "
      "true}]}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("GPTBot")), "gptbot");
  EXPECT_EQ(winner(*rules, Request().ua("GPTBot/1.1")), "gptbot");
  EXPECT_EQ(winner(*rules, Request().ua("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; "
                                        "compatible; GPTBot/1.1; +https://openai.com/gptbot)")),
            "gptbot");
  EXPECT_EQ(winner(*rules, Request().ua("gptbot/1.0")), "gptbot");
  EXPECT_EQ(winner(*rules, Request().ua("NotGPTBotty")), "");
  EXPECT_EQ(winner(*rules, Request().ua("NotGPTBot/1.0")), "");
  EXPECT_EQ(winner(*rules, Request().ua("GPTBotty/1.0")), "");
  EXPECT_EQ(winner(*rules, Request().ua("GPTBot-Extended/1.0")), "");
  EXPECT_EQ(winner(*rules, Request().ua("x_GPTBot")), "");

  EXPECT_EQ(winner(*rules, Request().ua("Mozilla/5.0; ChatGPT-User/1.0; +https://openai.com")),
            "chatgpt-user");
  EXPECT_EQ(winner(*rules, Request().ua("ChatGPT/1.0")), "chatgpt");
  EXPECT_EQ(winner(*rules, Request().ua("ChatGPT-Userland/1.0")), "");

  EXPECT_EQ(winner(*rules, Request().ua("check.ly/2")), "dotted");
  EXPECT_EQ(winner(*rules, Request().ua("checkxly/2")), "");

  EXPECT_EQ(winner(*rules, Request().ua("Pingdom.com_bot_version_1.4")), "exact-case");
  EXPECT_EQ(winner(*rules, Request().ua("pingdom.com_bot_version_1.4")), "");
}

TEST(RuleSetTest, RegexesAreCaseInsensitiveUnlessAsked) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: sensitive, action: log, user_agent: [{regex: 'Foo/\\d', case_sensitive: "
      "true}]}\n"
      "  - {name: insensitive, action: log, user_agent: ['bar/\\d']}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("x Foo/1")), "sensitive");
  EXPECT_EQ(winner(*rules, Request().ua("x foo/1")), "");
  EXPECT_EQ(winner(*rules, Request().ua("BAR/2")), "insensitive");
}

TEST(RuleSetTest, AnchorsAreRelativeToTheirField) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: history, action: throttle, path: ['^/w/index\\.php\\?.*action=history']}\n"
      "  - {name: ua-start, action: log, user_agent: ['^curl/']}\n"
      "  - {name: ua-end, action: log, user_agent: ['python$']}\n"
      "  - {name: empty-ua, action: log, user_agent: ['^$']}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("x").path("/w/index.php?title=A&action=history")),
            "history");
  EXPECT_EQ(winner(*rules, Request().ua("x").path("/x/w/index.php?action=history")), "");
  // The UA precedes the target in the scan buffer: ^ must not match after the UA.
  EXPECT_EQ(winner(*rules, Request().ua("/w/index.php?action=history").path("/")), "");
  EXPECT_EQ(winner(*rules, Request().ua("curl/8.0")), "ua-start");
  EXPECT_EQ(winner(*rules, Request().ua("my curl/8.0")), "");
  EXPECT_EQ(winner(*rules, Request().ua("lib python")), "ua-end");
  EXPECT_EQ(winner(*rules, Request().ua("python-requests")), "");
  EXPECT_EQ(winner(*rules, Request()), "empty-ua");
  EXPECT_EQ(winner(*rules, Request().ua("")), "empty-ua");
}

TEST(RuleSetTest, MatchesDoNotCrossFields) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: cross, action: log, user_agent: ['bot[^z]*admin']}\n"
      "  - {name: header, action: log, headers: {X-A: ['one[\\s\\S]*two']}}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("somebot").path("/admin")), "");
  EXPECT_EQ(winner(*rules, Request().ua("somebot admin")), "cross");
  EXPECT_EQ(winner(*rules, Request().header("X-A", "one").header("X-B", "two")), "");
  EXPECT_EQ(winner(*rules, Request().header("X-A", "one two")), "header");
}

TEST(RuleSetTest, ControlBytesInValuesStayInTheirField) {
  auto rules = compile_text("rules: [{name: admin, action: deny, path: ['^/admin']}]\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("x\n\x01T\n/admin").path("/")), "");
  EXPECT_EQ(winner(*rules, Request().ua("x\x01T\n/admin").path("/")), "");
  EXPECT_EQ(winner(*rules, Request().path("/admin")), "admin");
}

TEST(RuleSetTest, FirstMatchingRuleWinsInRuleOrderNotTextOrder) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: late-in-text, action: deny, user_agent: ['zzz']}\n"
      "  - {name: early-in-text, action: allow, user_agent: ['aaa']}\n"
      "  - {name: by-path, action: log, path: ['^/']}\n");
  ASSERT_TRUE(rules);
  MatchScratch scratch;
  Request request = Request().ua("aaa zzz");
  Decision decision = rules->evaluate(request.view(), scratch);
  EXPECT_EQ(decision.rule_name, "late-in-text");
  EXPECT_EQ(decision.rule_index, 0u);
  EXPECT_EQ(decision.action, Action::kDeny);
  EXPECT_TRUE(decision.enforced);
  EXPECT_EQ(winner(*rules, Request().ua("aaa")), "early-in-text");
  EXPECT_EQ(winner(*rules, Request().ua("bbb")), "by-path");

  std::vector<RuleMatch> all = rules->explain(request.view(), scratch);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].rule_name, "late-in-text");
  EXPECT_EQ(all[1].rule_name, "early-in-text");
  EXPECT_EQ(all[1].action, Action::kAllow);
  EXPECT_EQ(all[2].rule_name, "by-path");
}

TEST(RuleSetTest, ShadowRulesAreReportedButDoNotHideEnforcedRules) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: trial, class: ai_training, enforce: false, user_agent: [bot]}\n"
      "  - {name: real, action: throttle, user_agent: [crawler]}\n");
  ASSERT_TRUE(rules);
  MatchScratch scratch;

  Request both = Request().ua("bot crawler");
  Decision decision = rules->evaluate(both.view(), scratch);
  EXPECT_EQ(decision.rule_name, "real");
  EXPECT_TRUE(decision.enforced);
  EXPECT_EQ(decision.action, Action::kThrottle);
  EXPECT_EQ(decision.shadow_rule_index, 0u);
  EXPECT_EQ(rules->rule(decision.shadow_rule_index).rule_name, "trial");

  Request shadow_only = Request().ua("bot");
  decision = rules->evaluate(shadow_only.view(), scratch);
  EXPECT_EQ(decision.rule_name, "trial");
  EXPECT_FALSE(decision.enforced);
  EXPECT_EQ(decision.action, Action::kDeny);
  EXPECT_EQ(decision.class_name, "ai_training");
  EXPECT_EQ(decision.deny_status, 403);
  EXPECT_EQ(decision.shadow_rule_index, Decision::kNoRule);

  Request neither = Request().ua("human");
  decision = rules->evaluate(neither.view(), scratch);
  EXPECT_FALSE(decision.matched());
  EXPECT_FALSE(decision.enforced);
}

TEST(RuleSetTest, DenyAnswerComesFromRuleThenClass) {
  auto rules = compile_text(
      "classes:\n"
      "  ai_training: {action: deny, deny: {status: 451, body: \"class body\\n\"}}\n"
      "rules:\n"
      "  - {name: own, class: ai_training, deny: {body: \"rule body\\n\"}, user_agent: [a]}\n"
      "  - {name: inherited, class: ai_training, user_agent: [b]}\n");
  ASSERT_TRUE(rules);
  MatchScratch scratch;
  Request a = Request().ua("a");
  Decision decision = rules->evaluate(a.view(), scratch);
  EXPECT_EQ(decision.deny_status, 451);
  EXPECT_EQ(decision.deny_body, "rule body\n");
  Request b = Request().ua("b");
  decision = rules->evaluate(b.view(), scratch);
  EXPECT_EQ(decision.deny_status, 451);
  EXPECT_EQ(decision.deny_body, "class body\n");
}

TEST(RuleSetTest, AllAnyNot) {
  auto rules = compile_text(
      "rules:\n"
      "  - name: all-of\n"
      "    action: deny\n"
      "    all:\n"
      "      - user_agent: [python]\n"
      "      - path: ['^/api/']\n"
      "  - name: any-of\n"
      "    action: throttle\n"
      "    any:\n"
      "      - user_agent: [scrapy]\n"
      "      - path: ['^/dump/']\n"
      "  - name: ua-but-not-path\n"
      "    action: log\n"
      "    user_agent: [wget]\n"
      "    not: {path: ['^/public/']}\n"
      "  - name: nested\n"
      "    action: tarpit\n"
      "    any:\n"
      "      - all: [{user_agent: [alpha]}, {not: {method: [GET]}}]\n"
      "      - not: {any: [{user_agent: [beta]}, {user_agent: [gamma]}, {user_agent: [delta]}]}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("python").path("/api/x")), "all-of");
  EXPECT_EQ(winner(*rules, Request().ua("beta python").path("/x")), "");
  EXPECT_EQ(winner(*rules, Request().ua("beta").path("/api/x")), "");
  EXPECT_EQ(winner(*rules, Request().ua("scrapy beta")), "any-of");
  EXPECT_EQ(winner(*rules, Request().ua("beta").path("/dump/1")), "any-of");
  EXPECT_EQ(winner(*rules, Request().ua("wget beta").path("/private/")), "ua-but-not-path");
  EXPECT_EQ(winner(*rules, Request().ua("wget beta").path("/public/x")), "");
  EXPECT_EQ(winner(*rules, Request().ua("alpha beta").verb("POST")), "nested");
  EXPECT_EQ(winner(*rules, Request().ua("alpha beta").verb("GET")), "");
  // The second branch holds when no leaf of the rule matches at all.
  EXPECT_EQ(winner(*rules, Request().ua("someone")), "nested");
  EXPECT_EQ(winner(*rules, Request().ua("gamma")), "");
}

TEST(RuleSetTest, NotOnlyRulesAreEvaluatedInOrderAmongOthers) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: first, action: log, user_agent: [first]}\n"
      "  - {name: no-accept, action: deny, headers: {Accept: {absent: true}}}\n"
      "  - {name: later, action: allow, user_agent: [later]}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("first")), "first");
  EXPECT_EQ(winner(*rules, Request().ua("later")), "no-accept");
  EXPECT_EQ(winner(*rules, Request().ua("later").header("Accept", "*/*")), "later");
  EXPECT_EQ(winner(*rules, Request().header("accept", "*/*")), "");
}

TEST(RuleSetTest, HeadersPresentAbsentAndRegex) {
  auto rules = compile_text(
      "rules:\n"
      "  - name: headless\n"
      "    action: deny\n"
      "    headers:\n"
      "      Sec-Fetch-Mode: {present: true}\n"
      "      Accept-Language: {absent: true}\n"
      "  - name: crawler-header\n"
      "    action: log\n"
      "    headers:\n"
      "      X-Crawler: ['^yes$']\n"
      "  - name: empty-header\n"
      "    action: log\n"
      "    headers:\n"
      "      X-Empty: {present: true}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().header("sec-fetch-mode", "navigate")), "headless");
  EXPECT_EQ(winner(*rules,
                   Request().header("Sec-Fetch-Mode", "navigate").header("Accept-Language", "en")),
            "");
  EXPECT_EQ(winner(*rules, Request().header("X-CRAWLER", "YES")), "crawler-header");
  EXPECT_EQ(winner(*rules, Request().header("X-Crawler", "yes please")), "");
  EXPECT_EQ(winner(*rules, Request().header("X-Crawler", "no").header("X-Crawler", "yes")), "")
      << "only the first field of a name is matched, as RequestView::header() returns";
  EXPECT_EQ(winner(*rules, Request().header("X-Empty", "")), "empty-header");
  EXPECT_EQ(winner(*rules, Request()), "");
}

TEST(RuleSetTest, Methods) {
  auto rules = compile_text("rules: [{name: writes, action: deny, method: [POST, PUT]}]\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().verb("POST")), "writes");
  EXPECT_EQ(winner(*rules, Request().verb("PUT")), "writes");
  EXPECT_EQ(winner(*rules, Request().verb("GET")), "");
  EXPECT_EQ(winner(*rules, Request().verb("post")), "") << "methods are case-sensitive";
  EXPECT_EQ(winner(*rules, Request().verb("POSTX")), "");
}

TEST(RuleSetTest, RemoteAddressesIpv4AndIpv6) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: host4, action: deny, remote_addresses: [192.0.2.7/32]}\n"
      "  - {name: net4, action: throttle, remote_addresses: [192.0.2.0/24, 198.51.100.0/22]}\n"
      "  - {name: host6, action: deny, remote_addresses: ['2001:db8::7/128']}\n"
      "  - {name: net6, action: throttle, remote_addresses: ['2001:db8::/32']}\n"
      "  - {name: all6, action: log, remote_addresses: ['::/0']}\n"
      "  - {name: all4, action: allow, remote_addresses: [0.0.0.0/0]}\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ip("192.0.2.7")), "host4");
  EXPECT_EQ(winner(*rules, Request().ip("192.0.2.8")), "net4");
  EXPECT_EQ(winner(*rules, Request().ip("198.51.103.255")), "net4");
  EXPECT_EQ(winner(*rules, Request().ip("198.51.104.0")), "all4");
  EXPECT_EQ(winner(*rules, Request().ip("::ffff:192.0.2.7")), "host4") << "IPv4-mapped";
  EXPECT_EQ(winner(*rules, Request().ip("2001:db8::7")), "host6");
  EXPECT_EQ(winner(*rules, Request().ip("2001:db8::8")), "net6");
  EXPECT_EQ(winner(*rules, Request().ip("2001:db9::1")), "all6");
  EXPECT_EQ(winner(*rules, Request().ip("10.0.0.1")), "all4") << "::/0 does not cover IPv4";

  MatchScratch scratch;
  Request request = Request().ip("192.0.2.7");
  std::vector<RuleMatch> all = rules->explain(request.view(), scratch);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].rule_name, "host4");
  EXPECT_EQ(all[1].rule_name, "net4");
  EXPECT_EQ(all[2].rule_name, "all4");
}

TEST(RuleSetTest, NestedAndOverlappingPrefixes) {
  std::string yaml = "rules:\n";
  // /8 through /32 prefixes of one address, each its own rule, listed longest first.
  for (int len = 32; len >= 8; --len) {
    Cidr cidr{IpAddress::parse("10.20.30.40")->masked(len), static_cast<unsigned>(len)};
    yaml += "  - {name: p" + std::to_string(len) + ", action: log, remote_addresses: [" +
            cidr.to_string() + "]}\n";
  }
  auto rules = compile_text(yaml);
  ASSERT_TRUE(rules);
  Request exact = Request().ip("10.20.30.40");
  EXPECT_EQ(rules->explain(exact.view()).size(), 25u);
  EXPECT_EQ(winner(*rules, Request().ip("10.20.30.40")), "p32");
  EXPECT_EQ(winner(*rules, Request().ip("10.20.30.41")), "p31");
  EXPECT_EQ(winner(*rules, Request().ip("10.20.31.40")), "p23");
  EXPECT_EQ(winner(*rules, Request().ip("10.255.0.0")), "p8");
  EXPECT_EQ(winner(*rules, Request().ip("11.20.30.40")), "");
}

TEST(RuleSetTest, ConditionsOfDifferentKindsCombine) {
  auto rules = compile_text(
      "rules:\n"
      "  - name: cloud-python\n"
      "    class: http_library\n"
      "    action: deny\n"
      "    user_agent: [python-requests]\n"
      "    remote_addresses: [203.0.113.0/24]\n"
      "    method: [GET]\n");
  ASSERT_TRUE(rules);
  EXPECT_EQ(winner(*rules, Request().ua("python-requests/2.31").ip("203.0.113.9")), "cloud-python");
  EXPECT_EQ(winner(*rules, Request().ua("python-requests/2.31").ip("203.0.114.9")), "");
  EXPECT_EQ(winner(*rules, Request().ua("curl").ip("203.0.113.9")), "");
  EXPECT_EQ(winner(*rules, Request().ua("python-requests").ip("203.0.113.9").verb("HEAD")), "");
}

TEST(RuleSetTest, ScratchFollowsTheRuleSetItIsUsedWith) {
  auto first = compile_text("rules: [{name: a, action: deny, user_agent: [alpha]}]\n");
  auto second = compile_text(
      "rules:\n"
      "  - {name: b0, action: log, path: [zzz]}\n"
      "  - {name: b1, action: log, path: [yyy]}\n"
      "  - {name: b, action: deny, user_agent: [beta], headers: {X-Y: {absent: true}}}\n");
  ASSERT_TRUE(first && second);
  EXPECT_NE(first->generation(), second->generation());
  MatchScratch scratch;
  Request alpha = Request().ua("alpha beta");
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(first->evaluate(alpha.view(), scratch).rule_name, "a");
    EXPECT_EQ(second->evaluate(alpha.view(), scratch).rule_name, "b");
  }
}

TEST(RuleSetTest, ManyRequestsReuseOneScratch) {
  auto rules = compile_text(
      "rules:\n"
      "  - {name: a, action: deny, user_agent: [alpha]}\n"
      "  - {name: b, action: deny, user_agent: [beta]}\n");
  ASSERT_TRUE(rules);
  MatchScratch scratch;
  Request alpha = Request().ua("alpha");
  Request beta = Request().ua("beta");
  Request none = Request().ua("gamma");
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(rules->evaluate(alpha.view(), scratch).rule_name, "a");
    ASSERT_FALSE(rules->evaluate(none.view(), scratch).matched());
    ASSERT_EQ(rules->evaluate(beta.view(), scratch).rule_name, "b");
  }
}

// 5,000 generated rules with one pattern each (plus CIDR and not-rules): compiles, and the first
// matching rule is still found wherever it sits.
TEST(RuleSetScaleTest, FiveThousandGeneratedPatterns) {
  constexpr int kRules = 5000;
  Config config;
  for (int i = 0; i < kRules; ++i) {
    RuleConfig rule;
    rule.name = "gen-" + std::to_string(i);
    rule.action = i % 2 ? Action::kDeny : Action::kThrottle;
    rule.where = {"generated.yaml", i + 1, 1};
    rule.condition.kind = ConditionKind::kAll;
    Condition condition;
    PatternConfig pattern;
    if (i % 5 == 0) {
      condition.kind = ConditionKind::kPath;
      pattern.text = "^/gen/" + std::to_string(i) + "/";
    } else if (i % 5 == 1) {
      condition.kind = ConditionKind::kUserAgent;
      pattern.text = "Crawler" + std::to_string(i) + "/\\d+";
    } else if (i % 5 == 2) {
      condition.kind = ConditionKind::kRemoteAddress;
      condition.cidrs.push_back({IpAddress::v4(0x0a000000u + static_cast<uint32_t>(i) * 256), 24});
    } else {
      condition.kind = ConditionKind::kUserAgent;
      pattern.kind = PatternConfig::Kind::kToken;
      pattern.text = "Bot" + std::to_string(i);
    }
    if (condition.kind != ConditionKind::kRemoteAddress) condition.patterns.push_back(pattern);
    rule.condition.children.push_back(condition);
    config.rules.push_back(std::move(rule));
  }
  CompileResult compiled = RuleSet::compile(config);
  ASSERT_TRUE(compiled.ok()) << describe_errors(compiled.errors);
  const RuleSet& rules = *compiled.rule_set;
  EXPECT_EQ(rules.rule_count(), static_cast<std::size_t>(kRules));
  EXPECT_EQ(rules.pattern_count(), static_cast<std::size_t>(kRules - kRules / 5));

  MatchScratch scratch;
  auto check = [&](Request request, const std::string& expected) {
    EXPECT_EQ(std::string(rules.evaluate(request.view(), scratch).rule_name), expected);
  };
  check(Request().ua("Mozilla/5.0"), "");
  check(Request().ua("Bot4999/1.0"), "gen-4999");
  check(Request().ua("Bot3"), "gen-3");
  check(Request().ua("Bot33x"), "");
  check(Request().ua("NotBot33"), "");
  check(Request().ua("Crawler4996/12"), "gen-4996");
  check(Request().ua("Crawler4996/x"), "");
  check(Request().path("/gen/4995/page"), "gen-4995");
  check(Request().path("/x/gen/4995/page"), "");
  check(Request().ip("10.0.17.77"), "gen-17");  // 10.0.0.0 + 17 * 256 = 10.0.17.0/24
  // Several matches at once: the lowest rule index wins.
  check(Request().ua("Bot4998 Crawler4001/1 Bot9").path("/gen/4000/").ip("10.0.0.1"), "gen-9");
}

}  // namespace
}  // namespace crawlgate
