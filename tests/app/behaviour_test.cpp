// The behavioural stage through the running binary, with a small hand-written model so the
// routing is tested independently of the trained one: decisive rules first, unclassified and
// claimed-search-engine clients scored, thresholds give a class whose limits apply.
#include "process.h"

namespace crawlgate::test {
namespace {

constexpr const char* kChrome =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/145.0.0.0 Safari/537.36";
// What a real Chrome sends with a page request (over plain HTTP, without Sec-Fetch-*).
constexpr const char* kChromeHeaders =
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Encoding: gzip, deflate\r\nAccept-Language: en-GB,en;q=0.9\r\n"
    "sec-ch-ua: \"Chromium\";v=\"145\"\r\nsec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\nUpgrade-Insecure-Requests: 1\r\n";

// Score ~1 when a browser-claiming client lacks headers its browser always sends, else ~0.
constexpr const char* kModel = R"({
  "format": "crawlgate-model", "version": 1, "created": "test",
  "features": ["missing_browser_headers"],
  "transform": {"kind": "none"}, "kind": "trees", "base_score": 0,
  "trees": [{"nodes": [{"feature": 0, "threshold": 0.5, "left": 1, "right": 2},
                       {"leaf": -8}, {"leaf": 8}]}],
  "link": "logistic"
})";

// Features are per client address: each simulated client gets its own, in separate /24s so the
// address-block features do not mix them either.
constexpr const char* kStealthIp = "198.51.100.1";
constexpr const char* kHumanIp = "203.0.113.7";
constexpr const char* kClaimIp = "192.0.2.50";

std::string page(const std::string& target, const std::string& agent, const std::string& extra,
                 const char* client = kStealthIp) {
  return "GET " + target + " HTTP/1.1\r\nHost: test.local\r\nUser-Agent: " + agent + "\r\n" +
         "X-Forwarded-For: " + client + "\r\n" + extra + "\r\n";
}

struct BehaviourSetup {
  TestBackend backend;
  uint16_t port = free_port();
  uint16_t admin = free_port();
  std::string model = temp_file("model.json", kModel);
  std::string config_text(bool enforce) const {
    return "listen: 127.0.0.1:" + std::to_string(port) + "\nadmin: 127.0.0.1:" +
           std::to_string(admin) + "\nupstream: http://127.0.0.1:" +
           std::to_string(backend.port()) + "\nthreads: 1\ntrusted_proxies: [127.0.0.0/8]\n" +
           "access_log: {path: " + ::testing::TempDir() + "/behaviour.jsonl}\n" +
           "behaviour:\n  model: model.json\n  enforce: " + (enforce ? "true" : "false") +
           "\n  thresholds:\n    - {min_score: 0.9, class: ai_stealth}\n" +
           "classes:\n  ai_stealth:\n    action: throttle\n    limit: {rate: 1/h, burst: 2}\n" +
           "rules:\n  - name: gptbot\n    class: ai_training\n    user_agent: [{token: GPTBot}]\n" +
           "  - name: googlebot-claim\n    class: search_engine\n" +
           "    user_agent: [{token: Googlebot}]\n";
  }
};

TEST(Behaviour, StealthyBrowserClaimsAreThrottledAndRealBrowsersAreNot) {
  BehaviourSetup setup;
  std::string config = temp_file("behaviour.yaml", setup.config_text(true));
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(setup.admin)) << proxy.err();

  // A "browser" that sends none of its browser's headers: scored high, held to ai_stealth's
  // budget of 2.
  RawClient stealth(setup.port);
  std::vector<int> statuses;
  for (int i = 0; i < 5; ++i) {
    stealth.send(page("/wiki/S" + std::to_string(i), kChrome, ""));
    statuses.push_back(stealth.read_response()->status);
  }
  EXPECT_EQ(statuses, (std::vector<int>{200, 200, 429, 429, 429}));

  // A real browser's requests are never throttled.
  RawClient human(setup.port);
  for (int i = 0; i < 10; ++i) {
    human.send(page("/wiki/H" + std::to_string(i), kChrome, kChromeHeaders, kHumanIp));
    EXPECT_EQ(human.read_response()->status, 200);
  }
  // A declared crawler is decided by its rule, not scored.
  auto gptbot = request(setup.port, page("/", "GPTBot/1.2", ""));
  EXPECT_EQ(gptbot->status, 403);
  // Claiming to be Googlebot is not an exemption: the claim is scored too.
  RawClient claimed(setup.port);
  std::vector<int> claimed_statuses;
  for (int i = 0; i < 3; ++i) {
    claimed.send(page("/c", "Mozilla/5.0 (compatible; Googlebot/2.1) " + std::string(kChrome), "",
                      kClaimIp));
    claimed_statuses.push_back(claimed.read_response()->status);
  }
  EXPECT_EQ(claimed_statuses.back(), 429);

  std::string metrics = scrape(setup.admin);
  EXPECT_NE(metrics.find("crawlgate_throttled_total{class=\"ai_stealth\"}"), std::string::npos);
  EXPECT_GT(metric_value(metrics, "crawlgate_model_score_count"), 0);
  // The access log records the score.
  std::string log;
  for (int i = 0; i < 300 && log.find("\"score\":") == std::string::npos; ++i) {
    log = read_file(::testing::TempDir() + "/behaviour.jsonl");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(log.find("\"score\":"), std::string::npos);
  EXPECT_NE(log.find("\"class\":\"ai_stealth\""), std::string::npos);
  // ... and why: the one feature of this model moved the raw score from its mean 0 to +8.
  EXPECT_NE(log.find("\"top\":\"missing_browser_headers+8.00\""), std::string::npos) << log;
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

// 127.0.0.1 is this machine: typically a TLS terminator missing from trusted_proxies, behind
// which every visitor would be one client. It is never scored, so such a setup throttles nobody.
TEST(Behaviour, TheLoopbackAddressItselfIsNeverScored) {
  BehaviourSetup setup;
  std::string config = temp_file("behaviour_loopback.yaml", setup.config_text(true));
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(setup.admin)) << proxy.err();
  RawClient local(setup.port);
  for (int i = 0; i < 10; ++i) {
    // The same stealthy request as above, but with no X-Forwarded-For: the client is 127.0.0.1.
    local.send("GET /wiki/L" + std::to_string(i) + " HTTP/1.1\r\nHost: test.local\r\n" +
               "User-Agent: " + kChrome + "\r\n\r\n");
    EXPECT_EQ(local.read_response()->status, 200) << i;
  }
  EXPECT_EQ(metric_value(scrape(setup.admin), "crawlgate_model_score_count"), 0);
  // A visitor behind it (X-Forwarded-For from the trusted 127.0.0.0/8) is scored as usual.
  RawClient visitor(setup.port);
  visitor.send(page("/wiki/V", kChrome, ""));
  EXPECT_EQ(visitor.read_response()->status, 200);
  EXPECT_EQ(metric_value(scrape(setup.admin), "crawlgate_model_score_count"), 1);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Behaviour, ShadowModeScoresButLetsThrough) {
  BehaviourSetup setup;
  std::string config = temp_file("behaviour_shadow.yaml", setup.config_text(false));
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(setup.admin)) << proxy.err();
  RawClient stealth(setup.port);
  for (int i = 0; i < 6; ++i) {
    stealth.send(page("/wiki/S" + std::to_string(i), kChrome, ""));
    EXPECT_EQ(stealth.read_response()->status, 200);
  }
  std::string metrics = scrape(setup.admin);
  EXPECT_NE(metrics.find("crawlgate_requests_total{action=\"throttle\",class=\"ai_stealth\","
                         "enforced=\"false\"} 6"),
            std::string::npos);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Behaviour, BadModelIsRefusedAndABadReloadKeepsTheOldModel) {
  BehaviourSetup setup;
  std::string config = temp_file("behaviour_bad.yaml", setup.config_text(true));
  temp_file("model.json", "{\"format\": \"crawlgate-model\", \"version\": 99}");
  std::string err;
  EXPECT_EQ(run_to_end({"check", "--config", config}, nullptr, &err), 1);
  // Not the loader's own error text, but where the config names the model.
  EXPECT_NE(err.find(config + ":"), std::string::npos) << err;
  EXPECT_NE(err.find("behaviour.model"), std::string::npos) << err;

  temp_file("model.json", kModel);
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(setup.admin)) << proxy.err();
  temp_file("model.json", "{ not json");
  auto reload = request(setup.admin, "POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 422);
  // The old model still scores: the stealthy client is still throttled after its burst.
  RawClient stealth(setup.port);
  std::vector<int> statuses;
  for (int i = 0; i < 3; ++i) {
    stealth.send(page("/s", kChrome, ""));
    statuses.push_back(stealth.read_response()->status);
  }
  EXPECT_EQ(statuses, (std::vector<int>{200, 200, 429}));
  temp_file("model.json", kModel);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

}  // namespace
}  // namespace crawlgate::test
