// Throttling through the running binary: per-client and class-wide limits, tarpit, the client
// table's cap, and shared limits in a real redis-server.
#include <future>
#include <nlohmann/json.hpp>

#include "process.h"

namespace crawlgate::test {
namespace {

constexpr const char* kChatGptUser =
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; "
    "+https://openai.com/bot";
constexpr const char* kBrowser =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/145.0.0.0 Safari/537.36";

std::string agent_request(const std::string& target, const std::string& agent,
                          const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: test.local\r\nUser-Agent: " + agent + "\r\n" +
         extra + "\r\n";
}

// A redis-server of the test's own on a free loopback port, with a throwaway directory.
class RedisServer {
 public:
  RedisServer() : port_(free_port()) { start(); }
  ~RedisServer() { stop(); }
  uint16_t port() const { return port_; }
  void start() {
    dir_ = ::testing::TempDir() + "/redis" + std::to_string(port_);
    std::filesystem::create_directories(dir_);
    std::vector<std::string> args = {"redis-server", "--port", std::to_string(port_), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--dir", dir_};
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    // Ready when it accepts a PING (bounded wait).
    for (int attempt = 0; attempt < 500; ++attempt) {
      try {
        RawClient client(port_);
        client.send("PING\r\n");
        char reply[8] = {};
        client.socket().read_some(net::buffer(reply, 7));
        if (std::string_view(reply).starts_with("+PONG")) return;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  uint16_t port_;
  pid_t pid_ = -1;
  std::string dir_;
};

struct Instance {
  uint16_t port = free_port();
  uint16_t admin = free_port();
  std::string head(uint16_t backend_port) const {
    return "listen: 127.0.0.1:" + std::to_string(port) + "\nadmin: 127.0.0.1:" +
           std::to_string(admin) + "\nupstream: http://127.0.0.1:" +
           std::to_string(backend_port) + "\nthreads: 2\n";
  }
};

TEST(Throttle, DefaultConfigThrottlesAnAssistantAfterItsBurstAndNotABrowser) {
  TestBackend backend;
  Instance instance;
  Child proxy({"run", "--listen", "127.0.0.1:" + std::to_string(instance.port), "--admin",
               "127.0.0.1:" + std::to_string(instance.admin), "--upstream",
               "http://127.0.0.1:" + std::to_string(backend.port())});
  ASSERT_TRUE(wait_until_ready(instance.admin)) << proxy.err();
  RawClient bot(instance.port);
  int allowed = 0, refused = 0;
  std::optional<Response> first_refusal, last_refusal;
  for (int i = 0; i < 50; ++i) {
    bot.send(agent_request("/wiki/Page" + std::to_string(i), kChatGptUser));
    auto response = bot.read_response();
    ASSERT_TRUE(response);
    if (response->status == 200) {
      ++allowed;
    } else {
      EXPECT_EQ(response->status, 429);
      if (!first_refusal) first_refusal = response;
      last_refusal = response;
      ++refused;
    }
  }
  // Burst 10 at 1/s: the burst, plus at most a couple refilled while the loop ran.
  EXPECT_GE(allowed, 10);
  EXPECT_LE(allowed, 12);
  EXPECT_EQ(allowed + refused, 50);
  ASSERT_TRUE(first_refusal);
  EXPECT_EQ(first_refusal->header("Retry-After"), "1");
  EXPECT_EQ(first_refusal->header("RateLimit-Policy"), "\"ai_assistant\";q=10;w=10");
  EXPECT_TRUE(first_refusal->header("RateLimit").starts_with("\"ai_assistant\";r=0;t="))
      << first_refusal->header("RateLimit");
  EXPECT_NE(first_refusal->body.find("request id: "), std::string::npos);
  // The same address with a browser UA is not held to the assistant's budget.
  RawClient browser(instance.port);
  for (int i = 0; i < 30; ++i) {
    browser.send(agent_request("/wiki/Human" + std::to_string(i), kBrowser));
    auto response = browser.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
  }
  std::string page = scrape(instance.admin);
  EXPECT_NE(page.find("crawlgate_throttled_total{class=\"ai_assistant\"} " +
                      std::to_string(refused)),
            std::string::npos);

  // "Why was I blocked?": the admin API shows the limit state and the refusal by request id.
  auto client = request(instance.admin, "GET /clients/127.0.0.1 HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(client);
  ASSERT_EQ(client->status, 200) << client->body;
  auto json = nlohmann::json::parse(client->body);
  EXPECT_EQ(json["ip"], "127.0.0.1");
  EXPECT_EQ(json["recent_decisions"].size(), 20u);  // the newest: the browser's requests
  // The assistant's budget; 30 quick page requests with only a User-Agent are scored as an
  // undeclared crawler too, so the ai_stealth budget (per /24) may be listed beside it.
  const nlohmann::json* assistant = nullptr;
  for (const auto& limit : json["limits"]) {
    if (limit["limit"] == "ai_assistant") assistant = &limit;
    else EXPECT_EQ(limit["limit"], "ai_stealth") << client->body;
  }
  ASSERT_NE(assistant, nullptr) << client->body;
  EXPECT_EQ((*assistant)["key"], "127.0.0.1/32");
  EXPECT_EQ((*assistant)["burst"], 10);
  bool found_refusal = false;
  for (const auto& decision : json["recent_refusals"]) {
    if (decision["request_id"] == last_refusal->header("X-Request-Id")) {
      found_refusal = true;
      EXPECT_EQ(decision["action"], "throttled");
      EXPECT_EQ(decision["status"], 429);
      EXPECT_EQ(decision["rule"], "ai-assistant-chatgpt-user");
    }
  }
  EXPECT_TRUE(found_refusal) << client->body;
  auto bad = request(instance.admin, "GET /clients/not-an-ip HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Throttle, ClassWideLimitHoldsACrawlerRotatingOverAThousandAddresses) {
  TestBackend backend;
  Instance instance;
  std::string config = temp_file(
      "class_limit.yaml",
      instance.head(backend.port()) +
          "trusted_proxies: [127.0.0.0/8]\n"
          "classes:\n  ai_search:\n    action: throttle\n    limit: {rate: 1/s, burst: 5}\n"
          "    class_limit: {rate: 1/h, burst: 100}\n"
          "rules:\n  - name: rotating-bot\n    class: ai_search\n"
          "    user_agent: [{token: RotatingBot}]\n");
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(instance.admin)) << proxy.err();
  RawClient client(instance.port);
  int allowed = 0, refused = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string address = "198.18." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    client.send(agent_request("/wiki/A" + std::to_string(i), "RotatingBot/2.0",
                              "X-Forwarded-For: " + address + "\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    (response->status == 200 ? allowed : refused)++;
  }
  // Every address is new (its own budget of 5 is untouched), yet the class has 100 in all.
  EXPECT_EQ(allowed, 100);
  EXPECT_EQ(refused, 900);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Throttle, CostsSpendTheBudgetFasterOnExpensivePages) {
  TestBackend backend;
  Instance instance;
  std::string config = temp_file(
      "costs.yaml", instance.head(backend.port()) +
                        "classes:\n  ai_search:\n    action: throttle\n"
                        "    limit: {rate: 1/h, burst: 10}\n"
                        "costs:\n  - path: '[?&]action=history'\n    cost: 5\n"
                        "rules:\n  - name: search-bot\n    class: ai_search\n"
                        "    user_agent: [{token: SearchBot}]\n");
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(instance.admin)) << proxy.err();
  RawClient client(instance.port);
  std::vector<int> statuses;
  for (int i = 0; i < 3; ++i) {
    client.send(agent_request("/w/index.php?title=X&action=history", "SearchBot/1.0"));
    statuses.push_back(client.read_response()->status);
  }
  // Two history pages spend the burst of 10; the third is refused, and so is a cheap read.
  EXPECT_EQ(statuses, (std::vector<int>{200, 200, 429}));
  client.send(agent_request("/wiki/Cheap", "SearchBot/1.0"));
  EXPECT_EQ(client.read_response()->status, 429);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Throttle, TarpitHoldsTheAnswerWithoutBlockingOthersAndIsCapped) {
  TestBackend backend;
  Instance instance;
  std::string config = temp_file(
      "tarpit.yaml", instance.head(backend.port()) +
                         "throttle:\n  tarpit_delay: 600ms\n  max_tarpitted: 2\n"
                         "classes:\n  ai_data:\n    action: tarpit\n"
                         "    limit: {rate: 1/h, burst: 1}\n"
                         "rules:\n  - name: slow-down\n    class: ai_data\n"
                         "    user_agent: [{token: GreedyBot}]\n");
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(instance.admin)) << proxy.err();
  // Spend the burst.
  ASSERT_EQ(request(instance.port, agent_request("/a", "GreedyBot/1"))->status, 200);
  // Three over-limit requests at once: two are held (the cap), the third answered at once.
  std::vector<std::future<std::pair<int, double>>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::async(std::launch::async, [&] {
      auto start = std::chrono::steady_clock::now();
      auto response = request(instance.port, agent_request("/b", "GreedyBot/1"));
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return std::make_pair(response ? response->status : 0, seconds);
    }));
  }
  // Meanwhile a browser is served: the held answers occupy no thread.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto human = request(instance.port, agent_request("/human", kBrowser));
  ASSERT_TRUE(human);
  EXPECT_EQ(human->status, 200);
  std::string page = scrape(instance.admin);
  int long_holds = 0, immediate = 0;
  for (auto& f : held) {
    auto [status, seconds] = f.get();
    EXPECT_EQ(status, 429);
    // A correctness check of the hold itself, not a performance assertion.
    if (seconds >= 0.6) {
      ++long_holds;
    } else {
      ++immediate;
    }
  }
  EXPECT_EQ(long_holds, 2);
  EXPECT_EQ(immediate, 1);
  EXPECT_EQ(metric_value(page, "crawlgate_tarpit_active"), 2);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Throttle, FiftyThousandAddressesKeepTheClientTableAtItsCap) {
  TestBackend backend;
  Instance instance;
  std::string config = temp_file(
      "flood.yaml", instance.head(backend.port()) +
                        "trusted_proxies: [127.0.0.0/8]\n"
                        "throttle:\n  client_table_size: 2000\n"
                        "classes:\n  ai_assistant:\n    action: throttle\n"
                        "    limit: {rate: 1/s, burst: 5}\n"
                        "rules:\n  - name: flood\n    class: ai_assistant\n"
                        "    user_agent: [{token: FloodBot}]\n");
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(instance.admin)) << proxy.err();
  double capacity = metric_value(scrape(instance.admin), "crawlgate_client_table_capacity");
  double bytes_before = metric_value(scrape(instance.admin), "crawlgate_client_table_bytes");
  ASSERT_GE(capacity, 2000);
  // Two clients in parallel, 25,000 distinct addresses each (bounded loops).
  auto flood = [&](int part) {
    RawClient client(instance.port);
    int ok = 0;
    for (int i = 0; i < 25000; ++i) {
      int n = part * 25000 + i;
      std::string address = "10." + std::to_string(n >> 16) + "." +
                            std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255);
      client.send(agent_request("/x", "FloodBot/1", "X-Forwarded-For: " + address + "\r\n"));
      auto response = client.read_response();
      if (response && response->status == 200) ++ok;
    }
    return ok;
  };
  auto first = std::async(std::launch::async, flood, 0);
  int second = flood(1);
  EXPECT_EQ(first.get() + second, 50000);  // each address is new, within its burst
  std::string page = scrape(instance.admin);
  EXPECT_LE(metric_value(page, "crawlgate_client_table_entries"), capacity);
  EXPECT_GE(metric_value(page, "crawlgate_client_table_evictions_total"), 50000 - capacity);
  EXPECT_EQ(metric_value(page, "crawlgate_client_table_bytes"), bytes_before);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

std::string redis_config(const Instance& instance, uint16_t backend_port, uint16_t redis_port) {
  return instance.head(backend_port) + "redis:\n  address: 127.0.0.1:" +
         std::to_string(redis_port) + "\n  budget: 50ms\n  connect_timeout: 300ms\n" +
         "classes:\n  ai_assistant:\n    action: throttle\n    limit: {rate: 1/h, burst: 10}\n"
         "rules:\n  - name: shared-bot\n    class: ai_assistant\n"
         "    user_agent: [{token: SharedBot}]\n";
}

bool wait_for_redis_up(uint16_t admin, double expected) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    if (metric_value(scrape(admin), "crawlgate_redis_up") == expected) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(Throttle, TwoInstancesSharingRedisEnforceOneCombinedLimit) {
  TestBackend backend;
  RedisServer redis;
  Instance a, b;
  Child proxy_a({"run", "--config", temp_file("redis_a.yaml", redis_config(a, backend.port(),
                                                                           redis.port()))});
  Child proxy_b({"run", "--config", temp_file("redis_b.yaml", redis_config(b, backend.port(),
                                                                           redis.port()))});
  ASSERT_TRUE(wait_until_ready(a.admin)) << proxy_a.err();
  ASSERT_TRUE(wait_until_ready(b.admin)) << proxy_b.err();
  ASSERT_TRUE(wait_for_redis_up(a.admin, 1));
  ASSERT_TRUE(wait_for_redis_up(b.admin, 1));
  int allowed = 0;
  RawClient to_a(a.port), to_b(b.port);
  for (int i = 0; i < 20; ++i) {
    RawClient& client = i % 2 ? to_b : to_a;
    client.send(agent_request("/s", "SharedBot/1"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    if (response->status == 200) ++allowed;
  }
  // Each instance alone would allow 10 of its 10: together they allow 10 of 20.
  EXPECT_EQ(allowed, 10);
  ::kill(proxy_a.pid(), SIGTERM);
  ::kill(proxy_b.pid(), SIGTERM);
  EXPECT_EQ(proxy_a.wait(), 0);
  EXPECT_EQ(proxy_b.wait(), 0);
}

TEST(Throttle, RedisKilledMidTestFallsBackLocallyWithoutErrorsAndRecovers) {
  TestBackend backend;
  RedisServer redis;
  Instance instance;
  Child proxy({"run", "--config", temp_file("redis_kill.yaml",
                                            redis_config(instance, backend.port(),
                                                         redis.port()))});
  ASSERT_TRUE(wait_until_ready(instance.admin)) << proxy.err();
  ASSERT_TRUE(wait_for_redis_up(instance.admin, 1));
  auto send_batch = [&](const std::string& client_ip_suffix, int count) {
    std::vector<int> statuses;
    RawClient client(instance.port);
    for (int i = 0; i < count; ++i) {
      client.send(agent_request("/k" + client_ip_suffix, kBrowser));  // humans, unthrottled
      statuses.push_back(client.read_response()->status);
      client.send(agent_request("/k" + client_ip_suffix, "SharedBot/1"));
      statuses.push_back(client.read_response()->status);
    }
    return statuses;
  };
  auto before = send_batch("a", 5);
  redis.stop();
  ASSERT_TRUE(wait_for_redis_up(instance.admin, 0));
  auto during = send_batch("b", 10);
  for (int status : during) EXPECT_LT(status, 500);  // zero 5xx while Redis is gone
  EXPECT_GT(metric_value(scrape(instance.admin), "crawlgate_redis_fallbacks_total"), 0);
  redis.start();
  EXPECT_TRUE(wait_for_redis_up(instance.admin, 1));
  auto after = send_batch("c", 3);
  for (int status : after) EXPECT_LT(status, 500);
  for (int status : before) EXPECT_LT(status, 500);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

}  // namespace
}  // namespace crawlgate::test
