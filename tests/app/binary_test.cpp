// The crawlgate binary as operators run it: a subprocess with flags and config files.
#include "process.h"

namespace crawlgate::test {
namespace {

TEST(Binary, VersionAndHelp) {
  std::string out;
  EXPECT_EQ(run_to_end({"--version"}, &out), 0);
  EXPECT_TRUE(out.starts_with("crawlgate ")) << out;
  EXPECT_EQ(run_to_end({"--help"}, &out), 0);
  EXPECT_NE(out.find("run"), std::string::npos);
  EXPECT_NE(out.find("check"), std::string::npos);
  EXPECT_EQ(run_to_end({"run", "--help"}, &out), 0);
  for (const char* flag : {"--config", "--listen", "--upstream", "--admin", "--trusted-proxy",
                           "--threads"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag;
  }
}

TEST(Binary, CheckAcceptsTheEmbeddedDefault) {
  std::string out;
  EXPECT_EQ(run_to_end({"check"}, &out), 0);
  EXPECT_NE(out.find("OK"), std::string::npos) << out;
}

TEST(Binary, BadConfigIsRefusedWithFileAndLine) {
  std::string path = temp_file("bad.yaml", "listen: 127.0.0.1:8080\nupstream: ftp://nowhere\n"
                                           "timeouts:\n  header_read: forever\n");
  std::string err;
  EXPECT_EQ(run_to_end({"check", "--config", path}, nullptr, &err), 1);
  EXPECT_NE(err.find(path + ":2"), std::string::npos) << err;
  EXPECT_NE(err.find(path + ":4"), std::string::npos) << err;
  EXPECT_EQ(run_to_end({"run", "--config", path}, nullptr, &err), 2);
  EXPECT_NE(err.find("not started"), std::string::npos) << err;
}

TEST(Binary, BadFlagsAreRefused) {
  std::string err;
  EXPECT_NE(run_to_end({"run", "--listen", "nonsense"}, nullptr, &err), 0);
  EXPECT_NE(err.find("--listen"), std::string::npos) << err;
  EXPECT_NE(run_to_end({"run", "--trusted-proxy", "10.0.0.1/8"}, nullptr, &err), 0);
  EXPECT_NE(err.find("--trusted-proxy"), std::string::npos) << err;
  EXPECT_NE(run_to_end({"run", "--config", "/nonexistent/crawlgate.yaml"}, nullptr, &err), 0);
  EXPECT_NE(run_to_end({"frobnicate"}, nullptr, &err), 0);
}

TEST(Binary, ListenAddressInUseIsAClearError) {
  net::io_context ioc;
  tcp::acceptor taken(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  std::string listen = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  std::string err;
  EXPECT_EQ(run_to_end({"run", "--listen", listen, "--admin", "127.0.0.1:0"}, nullptr, &err), 1);
  EXPECT_NE(err.find("cannot open the public listener on " + listen), std::string::npos) << err;
}

// 1 GiB each way through the real binary: memory must not follow the body size.
TEST(Binary, StreamsOneGibibyteEachWayInBoundedMemoryAndExitsCleanlyOnSigterm) {
  TestBackend backend;
  uint16_t port = free_port();
  uint16_t admin = free_port();
  std::string config = temp_file("stream.yaml",
                                 "listen: 127.0.0.1:" + std::to_string(port) +
                                     "\nadmin: 127.0.0.1:" + std::to_string(admin) +
                                     "\nupstream: http://127.0.0.1:" +
                                     std::to_string(backend.port()) +
                                     "\nthreads: 1\nlimits:\n  max_body_bytes: 0\n");
  Child proxy({"run", "--config", config});
  ASSERT_GT(proxy.pid(), 0);
  ASSERT_TRUE(wait_until_ready(admin)) << proxy.err();

  constexpr std::uint64_t kGiB = 1ull << 30;
  // Warm-up: allocator arenas and buffers reach their working size.
  auto warm = request(port, get_request("/stream?bytes=16777216"));
  ASSERT_TRUE(warm);
  ASSERT_EQ(warm->body.size(), 16777216u);
  long before_kib = peak_rss_kib(proxy.pid());
  ASSERT_GT(before_kib, 0);

  {  // Download, discarding as we go.
    RawClient client(port);
    client.send(get_request("/stream?bytes=" + std::to_string(kGiB)));
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    std::vector<char> chunk(256 * 1024);
    std::uint64_t received = 0;
    bool pattern_ok = true;
    http::read_header(client.socket(), client.buffer(), parser);
    ASSERT_EQ(parser.get().result_int(), 200u);
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      beast::error_code ec;
      http::read(client.socket(), client.buffer(), parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      ASSERT_FALSE(ec) << ec.message() << " after " << received;
      std::size_t n = chunk.size() - parser.get().body().size;
      pattern_ok = pattern_ok && matches_pattern(chunk.data(), received, n);
      received += n;
    }
    EXPECT_EQ(received, kGiB);
    EXPECT_TRUE(pattern_ok);
  }
  {  // Upload, generating as we go; the backend checks every byte.
    RawClient client(port);
    client.send("POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(kGiB) +
                "\r\n\r\n");
    std::vector<char> chunk(256 * 1024);
    for (std::uint64_t sent = 0; sent < kGiB; sent += chunk.size()) {
      fill_pattern(chunk.data(), sent, chunk.size());
      net::write(client.socket(), net::buffer(chunk));
    }
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "bytes=" + std::to_string(kGiB) + " ok=1");
  }
  long after_kib = peak_rss_kib(proxy.pid());
#ifdef CRAWLGATE_RELEASE_BUILD
  // Memory checks belong to the Release build (sanitizer builds hold freed memory).
  EXPECT_LT(after_kib - before_kib, 8 * 1024) << "peak RSS grew from " << before_kib
                                              << " KiB to " << after_kib << " KiB";
#endif
  RecordProperty("peak_rss_growth_kib", std::to_string(after_kib - before_kib));
  std::printf("peak RSS %ld KiB after warm-up, %ld KiB after 2 GiB streamed\n", before_kib,
              after_kib);

  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0) << proxy.err();
  EXPECT_NE(proxy.err().find("stopped"), std::string::npos) << proxy.err();
}

TEST(Binary, SighupReloadsAndABadReloadKeepsTheOldConfig) {
  TestBackend backend;
  uint16_t port = free_port();
  uint16_t admin = free_port();
  auto write_config = [&](const std::string& body_text) {
    return temp_file("reload.yaml",
                     "listen: 127.0.0.1:" + std::to_string(port) + "\nadmin: 127.0.0.1:" +
                         std::to_string(admin) + "\nupstream: http://127.0.0.1:" +
                         std::to_string(backend.port()) + "\nthreads: 1\n" + body_text);
  };
  std::string config = write_config(
      "static_responses:\n  - path: /version\n    body: \"one\\n\"\n");
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(admin)) << proxy.err();
  EXPECT_EQ(request(port, get_request("/version"))->body, "one\n");

  write_config("static_responses:\n  - path: /version\n    body: \"two\\n\"\n");
  auto reloaded = request(admin, "POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(reloaded->status, 200) << reloaded->body;
  EXPECT_EQ(request(port, get_request("/version"))->body, "two\n");

  write_config("static_responses:\n  - path: /version\n    bogus_key: 1\n");
  auto refused = request(admin, "POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 422);
  EXPECT_NE(refused->body.find("reload.yaml:"), std::string::npos) << refused->body;
  EXPECT_EQ(request(port, get_request("/version"))->body, "two\n");

  // SIGHUP takes the same path.
  write_config("static_responses:\n  - path: /version\n    body: \"three\\n\"\n");
  ::kill(proxy.pid(), SIGHUP);
  std::string body;
  for (int attempt = 0; attempt < 300 && body != "three\n"; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    body = request(port, get_request("/version"))->body;
  }
  EXPECT_EQ(body, "three\n");
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Binary, Sigusr1ReopensTheAccessLog) {
  TestBackend backend;
  uint16_t port = free_port();
  uint16_t admin = free_port();
  std::string log_path = ::testing::TempDir() + "/rotate.log";
  fs::remove(log_path);
  fs::remove(log_path + ".1");
  std::string config = temp_file(
      "rotate.yaml", "listen: 127.0.0.1:" + std::to_string(port) + "\nadmin: 127.0.0.1:" +
                         std::to_string(admin) + "\nupstream: http://127.0.0.1:" +
                         std::to_string(backend.port()) + "\naccess_log:\n  path: " + log_path +
                         "\n  format: combined\n");
  Child proxy({"run", "--config", config});
  ASSERT_TRUE(wait_until_ready(admin)) << proxy.err();
  ASSERT_TRUE(request(port, get_request("/before-rotation")));
  for (int i = 0; i < 300 && read_file(log_path).find("before-rotation") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  fs::rename(log_path, log_path + ".1");
  ::kill(proxy.pid(), SIGUSR1);
  // Requests until one lands in the new file (the reopen is asynchronous; bounded).
  for (int i = 0; i < 300 && !fs::exists(log_path); ++i) {
    ASSERT_TRUE(request(port, get_request("/after-rotation")));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The reopen created the file; a request logged after it lands there (bounded wait).
  for (int i = 0; i < 300 && read_file(log_path).find("after-rotation") == std::string::npos; ++i) {
    ASSERT_TRUE(request(port, get_request("/after-rotation")));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(read_file(log_path + ".1").find("\"GET /before-rotation HTTP/1.1\" 200"),
            std::string::npos);
  EXPECT_NE(read_file(log_path).find("/after-rotation"), std::string::npos);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

std::vector<std::string> browser_user_agents() {
  std::vector<std::string> agents;
  std::ifstream tsv(std::string(CRAWLGATE_SHARED_DATA) + "/browser-user-agents/browser-uas.tsv");
  std::string line;
  std::getline(tsv, line);  // header: weight, device, user_agent
  while (std::getline(tsv, line)) {
    std::size_t tab = line.rfind('\t');
    if (tab != std::string::npos) agents.push_back(line.substr(tab + 1));
  }
  return agents;
}

// The acceptance of the signature rules, through the running binary with its embedded config.
TEST(Binary, DefaultConfigDeniesAiCrawlersAndLetsEveryBrowserThrough) {
  TestBackend backend;
  uint16_t port = free_port();
  uint16_t admin = free_port();
  // Trusting loopback's X-Forwarded-For lets each browser below be its own client.
  Child proxy({"run", "--listen", "127.0.0.1:" + std::to_string(port), "--admin",
               "127.0.0.1:" + std::to_string(admin), "--upstream",
               "http://127.0.0.1:" + std::to_string(backend.port()), "--trusted-proxy",
               "127.0.0.1/32"});
  ASSERT_TRUE(wait_until_ready(admin)) << proxy.err();

  const std::vector<std::pair<std::string, std::string>> denied = {
      {"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
       "+https://openai.com/gptbot)", "ai_training"},
      {"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
       "+claudebot@anthropic.com)", "ai_training"},
      {"CCBot/2.0 (https://commoncrawl.org/faq/)", "ai_data"},
      {"Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
       "(compatible; Bytespider; spider-feedback@bytedance.com)", "ai_training"},
  };
  for (const auto& [agent, expected_class] : denied) {
    RawClient client(port);
    client.send(get_request("/wiki/Main_Page", "User-Agent: " + agent + "\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response) << agent;
    EXPECT_EQ(response->status, 403) << agent;
    EXPECT_NE(response->body.find("client class: " + expected_class), std::string::npos)
        << agent << "\n" << response->body;
    EXPECT_NE(response->body.find("request id: " + response->header("X-Request-Id")),
              std::string::npos);
  }
  // robots.txt stays reachable for denied agents.
  auto robots = request(port, get_request("/robots.txt", "User-Agent: GPTBot/1.2\r\n"));
  ASSERT_TRUE(robots);
  EXPECT_EQ(robots->status, 200);

  std::vector<std::string> browsers = browser_user_agents();
  ASSERT_EQ(browsers.size(), 952u) << "browser-uas.tsv missing or changed under " CRAWLGATE_SHARED_DATA;
  int requests_before = backend.requests();
  RawClient browser_client(port);
  std::size_t allowed = 0;
  int visitor = 0;
  for (const std::string& agent : browsers) {
    // One request per browser, each from its own /24: no signature may match a browser, and the
    // behaviour model (on in the default config) never refuses a client's first request. 952
    // requests from one address with only a User-Agent would rightly be throttled as a crawler.
    ++visitor;
    std::string client = "10." + std::to_string(visitor / 250) + "." +
                         std::to_string(visitor % 250) + ".1";
    // get_request already sends a User-Agent; build the request by hand to send exactly one.
    browser_client.send("GET /wiki/Main_Page HTTP/1.1\r\nHost: test.local\r\nUser-Agent: " +
                        agent + "\r\nAccept: text/html\r\nX-Forwarded-For: " + client +
                        "\r\n\r\n");
    auto response = browser_client.read_response();
    ASSERT_TRUE(response) << agent;
    EXPECT_EQ(response->status, 200) << agent;
    if (response->status == 200) ++allowed;
  }
  EXPECT_EQ(allowed, browsers.size());
  EXPECT_EQ(backend.requests() - requests_before, static_cast<int>(browsers.size()));
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Binary, ReloadUnderConcurrentLoadFailsNoRequest) {
  TestBackend backend;
  uint16_t port = free_port();
  uint16_t admin = free_port();
  std::string head = "listen: 127.0.0.1:" + std::to_string(port) + "\nadmin: 127.0.0.1:" +
                     std::to_string(admin) + "\nupstream: http://127.0.0.1:" +
                     std::to_string(backend.port()) + "\nthreads: 2\n";
  std::string deny_bot = "rules:\n  - name: deny-testbot\n    class: ai_training\n"
                         "    user_agent: [{token: TestBot}]\n";
  std::string config_a = temp_file("load_a.yaml", head + deny_bot);
  std::string config_path = temp_file("load.yaml", read_file(config_a));
  Child proxy({"run", "--config", config_path});
  ASSERT_TRUE(wait_until_ready(admin)) << proxy.err();

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, denied_ok{0}, failed{0};
  auto load = [&](bool bot) {
    // Bounded: at most 4,000 requests or until told to stop.
    for (int i = 0; i < 4000 && !stop; ++i) {
      try {
        RawClient client(port);
        for (int k = 0; k < 10 && !stop; ++k) {
          client.send(get_request("/page" + std::to_string(k),
                                  bot ? "X-Agent: x\r\nUser-Agent: TestBot/1.0\r\n" : ""));
          auto response = client.read_response();
          if (!response) {
            failed++;
            break;
          }
          if (!bot && response->status == 200) {
            ok++;
          } else if (bot && response->status == 403) {
            denied_ok++;
          } else {
            failed++;
          }
        }
      } catch (const std::exception&) {
        failed++;
      }
    }
  };
  std::thread human(load, false), bot(load, true);
  // 20 reloads: alternately the same rules with an extra rule, and a broken file that must be
  // refused with the old rules kept.
  int reloads_ok = 0, reloads_refused = 0;
  for (int round = 0; round < 20; ++round) {
    bool broken = round % 4 == 3;
    std::string extra = "  - name: extra-" + std::to_string(round) +
                        "\n    class: ai_search\n    path: ['^/never-" + std::to_string(round) +
                        "']\n";
    temp_file("load.yaml", head + deny_bot + (broken ? "  - name: broken\n    user_agent: ['(']\n"
                                                     : extra));
    auto response =
        request(admin, "POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    ASSERT_TRUE(response);
    (response->status == 200 ? reloads_ok : reloads_refused)++;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  human.join();
  bot.join();
  EXPECT_EQ(reloads_ok, 15);
  EXPECT_EQ(reloads_refused, 5);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(denied_ok.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  std::printf("reload under load: %d allowed, %d denied, %d failed, %d reloads, %d refused\n",
              ok.load(), denied_ok.load(), failed.load(), reloads_ok, reloads_refused);
  ::kill(proxy.pid(), SIGTERM);
  EXPECT_EQ(proxy.wait(), 0);
}

TEST(Binary, ExplainPrintsRulesClassActionAndEnforcement) {
  std::string out;
  ASSERT_EQ(run_to_end({"explain", "--ua", "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)"},
                       &out),
            0);
  EXPECT_NE(out.find("ai-training-gptbot"), std::string::npos) << out;
  EXPECT_NE(out.find("decision: class=ai_training rule=ai-training-gptbot action=deny enforced=yes"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("403"), std::string::npos) << out;
  ASSERT_EQ(run_to_end({"explain", "--ua", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                           "(KHTML, like Gecko) Chrome/145.0.0.0 Safari/537.36"},
                       &out),
            0);
  EXPECT_NE(out.find("matching rules: none"), std::string::npos) << out;
  EXPECT_NE(out.find("forwarded to the upstream"), std::string::npos) << out;

  std::string shadow = temp_file("shadow.yaml", "rules:\n  - name: watch-foo\n    class: ai_data\n"
                                                "    enforce: false\n    user_agent: ['foo']\n");
  ASSERT_EQ(run_to_end({"explain", "--config", shadow, "--ua", "FooBot", "--header",
                        "Accept: */*", "--ip", "2001:db8::1"},
                       &out),
            0);
  EXPECT_NE(out.find("shadow"), std::string::npos) << out;
  EXPECT_NE(out.find("enforced=no"), std::string::npos) << out;
  EXPECT_NE(out.find("forwarded to the upstream"), std::string::npos) << out;
  std::string err;
  EXPECT_EQ(run_to_end({"explain", "--ip", "not-an-ip"}, nullptr, &err), 2);
  EXPECT_NE(err.find("--ip"), std::string::npos);
}

}  // namespace
}  // namespace crawlgate::test
