// `crawlgate replay` through the binary: real YAML configs, real log files in both formats, the
// --decisions columns exactly as documented, limits in the log's own time, and bad input.
#include <sstream>

#include "process.h"

namespace crawlgate::test {
namespace {

constexpr const char* kChrome =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/145.0.0.0 Safari/537.36";

// Classes for every action, a shadow rule and a rule each: small enough to read the expected
// decisions off it.
constexpr const char* kConfig = R"(listen: 127.0.0.1:1
upstream: http://127.0.0.1:2
classes:
  trainer: {action: deny}
  searcher: {action: throttle, limit: {rate: 1/s, burst: 3}}
  sticky: {action: tarpit, limit: {rate: 1/s, burst: 1}}
  watched: {action: deny}
rules:
  - {name: shadow-probe, class: watched, enforce: false, user_agent: {token: probe}}
  - {name: gptbot, class: trainer, user_agent: {token: GPTBot}}
  - {name: answer-bot, class: searcher, user_agent: {token: AnswerBot}}
  - {name: tar-bot, class: sticky, user_agent: {token: TarBot}}
)";

std::string jsonl(double ts, const std::string& ip, const std::string& target,
                  const std::string& user_agent, int status = 200) {
  std::ostringstream line;
  line.precision(17);
  line << "{\"ts\":" << ts << ",\"ip\":\"" << ip << "\",\"method\":\"GET\",\"target\":\"" << target
       << "\",\"version\":\"1.1\",\"headers\":[[\"Host\",\"wiki.test\"],[\"User-Agent\",\""
       << user_agent << "\"]],\"status\":" << status << ",\"bytes\":512}\n";
  return line.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct Replay {
  int code = -1;
  std::string out, err;
  std::vector<std::string> decisions;
};

Replay replay(const std::string& log, std::vector<std::string> extra = {},
              const std::string& config = kConfig) {
  // ctest runs each test in its own process, concurrently: names carry the test's name.
  static int serial = 0;
  std::string id = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                   "-" + std::to_string(++serial);
  std::string config_path = temp_file("replay-config-" + id + ".yaml", config);
  std::string log_path = temp_file("replay-log-" + id + ".log", log);
  std::string decisions_path = temp_file("replay-decisions-" + id + ".tsv", "stale\n");
  std::vector<std::string> args = {"replay", log_path, "--config", config_path,
                                   "--decisions", decisions_path};
  args.insert(args.end(), extra.begin(), extra.end());
  Replay result;
  result.code = run_to_end(args, &result.out, &result.err);
  result.decisions = lines_of(read_file(decisions_path));
  return result;
}

TEST(Replay, DecisionsFileHasOneDocumentedLinePerInputLine) {
  std::string log = jsonl(1000.0, "203.0.113.7", "/wiki/Main_Page", kChrome) +   // 1 allow
                    jsonl(1000.1, "198.51.100.1", "/wiki/A", "Mozilla/5.0 GPTBot/1.2") +  // 2
                    "this is not a log line\n" +                                 // 3 error
                    jsonl(1000.2, "198.51.100.1", "/robots.txt", "GPTBot/1.2") +  // 4 allow
                    jsonl(1000.3, "192.0.2.9", "/", "curl probe/1") +              // 5 shadow
                    "\n" +                                                        // 6 error
                    "{\"ts\":1,\"ip\":\"192.0.2.1\",\"method\":\"GET\",\"target\":\"/\"}\n";  // 7
  Replay result = replay(log);
  ASSERT_EQ(result.code, 0) << result.err;
  std::vector<std::string> expected = {
      "1\t-\tallow\t-\t-",
      "2\ttrainer\tdeny\t-\tgptbot",
      "3\t-\terror\t-\t-",
      // robots.txt stays reachable for every class: the proxy would have forwarded it.
      "4\ttrainer\tallow\t-\tgptbot",
      "5\twatched\tallow\t-\tshadow:shadow-probe",
      "6\t-\terror\t-\t-",
      "7\t-\terror\t-\t-",
  };
  EXPECT_EQ(result.decisions, expected);
  EXPECT_NE(result.out.find("lines: 7  requests: 4  errors: 3"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("line 3: not JSON"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("line 7: missing or non-string \"version\""), std::string::npos)
      << result.out;
}

TEST(Replay, LimitsRunInTheLogsTimeNotTheWallClock) {
  // One request a second for 20 s stays inside 1/s burst 3, however fast the replay runs; the
  // same 20 requests within one second are refused after the burst.
  std::string paced, burst;
  for (int i = 0; i < 20; ++i) {
    paced += jsonl(5000.0 + i, "198.51.100.2", "/wiki/P" + std::to_string(i), "AnswerBot/2");
    burst += jsonl(5000.0 + i * 0.01, "198.51.100.3", "/wiki/P" + std::to_string(i), "AnswerBot/2");
  }
  Replay slow = replay(paced);
  ASSERT_EQ(slow.code, 0) << slow.err;
  ASSERT_EQ(slow.decisions.size(), 20u);
  for (const std::string& line : slow.decisions) {
    EXPECT_NE(line.find("\tsearcher\tallow\t-\tanswer-bot"), std::string::npos) << line;
  }
  Replay fast = replay(burst);
  ASSERT_EQ(fast.code, 0) << fast.err;
  ASSERT_EQ(fast.decisions.size(), 20u);
  int allowed = 0, throttled = 0;
  for (const std::string& line : fast.decisions) {
    if (line.find("\tsearcher\tallow\t") != std::string::npos) ++allowed;
    if (line.find("\tsearcher\tthrottle\t-\tanswer-bot") != std::string::npos) ++throttled;
  }
  // The burst, plus what 0.19 s of log time refills (none: 1/s).
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(throttled, 17);
  EXPECT_EQ(fast.decisions[3], "4\tsearcher\tthrottle\t-\tanswer-bot");
  EXPECT_NE(fast.out.find("198.51.100.3"), std::string::npos) << fast.out;  // client table
}

TEST(Replay, TarpitIsReportedAsTarpit) {
  std::string log;
  for (int i = 0; i < 3; ++i) log += jsonl(10.0, "198.51.100.4", "/", "TarBot/1");
  Replay result = replay(log);
  ASSERT_EQ(result.code, 0) << result.err;
  std::vector<std::string> expected = {"1\tsticky\tallow\t-\ttar-bot",
                                       "2\tsticky\ttarpit\t-\ttar-bot",
                                       "3\tsticky\ttarpit\t-\ttar-bot"};
  EXPECT_EQ(result.decisions, expected);
}

TEST(Replay, ReadsCombinedLogs) {
  std::string log =
      "203.0.113.7 - - [07/Dec/2026:10:00:00 +0000] \"GET /wiki/Main_Page HTTP/1.1\" 200 5120 "
      "\"-\" \"" + std::string(kChrome) + "\"\n"
      "198.51.100.1 - - [07/Dec/2026:11:00:01 +0100] \"GET /wiki/A?x=\\x22q\\x22 HTTP/1.1\" 200 "
      "99 \"https://wiki.test/\" \"GPTBot/1.2\" \"10.0.0.1\"\n"
      "198.51.100.1 - - [07/Dec/2026:10:00:02 +0000] \"-\" 400 0 \"-\" \"-\"\n"
      "2001:db8::5 - alice [07/Dec/2026:10:00:03 -0030] \"HEAD / HTTP/1.0\" 304 - \"-\" "
      "\"curl probe/8\"\n";
  Replay result = replay(log, {"--format", "combined"});
  ASSERT_EQ(result.code, 0) << result.err;
  std::vector<std::string> expected = {"1\t-\tallow\t-\t-", "2\ttrainer\tdeny\t-\tgptbot",
                                       "3\t-\terror\t-\t-",
                                       "4\twatched\tallow\t-\tshadow:shadow-probe"};
  EXPECT_EQ(result.decisions, expected);
  EXPECT_NE(result.out.find("(combined)"), std::string::npos) << result.out;
  // Auto-detection reads the same file the same way.
  Replay detected = replay(log);
  EXPECT_EQ(detected.decisions, expected);
}

TEST(Replay, TheWrongFormatMakesEveryLineAnErrorAndExitsOne) {
  std::string log = jsonl(1.0, "192.0.2.1", "/", kChrome) + jsonl(2.0, "192.0.2.1", "/", kChrome);
  Replay result = replay(log, {"--format", "combined"});
  EXPECT_EQ(result.code, 1);
  EXPECT_EQ(result.decisions, (std::vector<std::string>{"1\t-\terror\t-\t-", "2\t-\terror\t-\t-"}));
  EXPECT_NE(result.out.find("requests: 0  errors: 2"), std::string::npos) << result.out;
}

TEST(Replay, ScoresWithTheBehaviourModelAndPrintsTheSummary) {
  // The embedded default config carries the trained model.
  std::string log = jsonl(1.0, "203.0.113.7", "/wiki/Main_Page", kChrome) +
                    jsonl(2.0, "198.51.100.1", "/wiki/A", "Mozilla/5.0 GPTBot/1.2");
  std::string log_path = temp_file("replay-default.jsonl", log);
  std::string decisions_path = temp_file("replay-default.tsv", "");
  std::string out, err;
  int code = run_to_end({"replay", log_path, "--decisions", decisions_path},
                        &out, &err);
  ASSERT_EQ(code, 0) << err;
  std::vector<std::string> decisions = lines_of(read_file(decisions_path));
  ASSERT_EQ(decisions.size(), 2u);
  // Line 1: a Chrome User-Agent without one header Chrome always sends is scored as a crawler;
  // its first request is within the ai_stealth budget, so the proxy would have let it through.
  EXPECT_TRUE(decisions[0].starts_with("1\tai_stealth\tallow\t0.9")) << decisions[0];
  EXPECT_TRUE(decisions[0].ends_with("\tbehaviour")) << decisions[0];
  EXPECT_TRUE(decisions[1].starts_with("2\tai_training\tdeny\t-\t")) << decisions[1];
  EXPECT_NE(out.find("behaviour model on"), std::string::npos) << out;
  EXPECT_NE(out.find("by class:"), std::string::npos) << out;
  EXPECT_NE(out.find("by rule"), std::string::npos) << out;
  EXPECT_NE(out.find("by client"), std::string::npos) << out;
}

TEST(Replay, BadInputGivesAClearErrorAndNoOutputFile) {
  std::string out, err;
  EXPECT_NE(run_to_end({"replay", "/nonexistent/access.log"}, &out, &err), 0);
  EXPECT_NE(err.find("/nonexistent/access.log"), std::string::npos) << err;

  std::string log_path = temp_file("replay-bad-config.jsonl", jsonl(1.0, "192.0.2.1", "/", "x"));
  std::string bad_config = temp_file("replay-bad-config.yaml", "listen: [oops\n");
  std::string decisions_path = (fs::path(::testing::TempDir()) / "replay-never.tsv").string();
  fs::remove(decisions_path);
  EXPECT_EQ(run_to_end({"replay", log_path, "--config", bad_config,
                        "--decisions", decisions_path},
                       &out, &err),
            2);
  EXPECT_NE(err.find("replay-bad-config.yaml:"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(decisions_path));

  EXPECT_NE(run_to_end({"replay", log_path, "--format", "xml"}, &out, &err), 0);
  EXPECT_NE(err.find("--format"), std::string::npos) << err;

  EXPECT_EQ(run_to_end({"replay", log_path, "--decisions",
                        "/nonexistent/dir/out.tsv"},
                       &out, &err),
            2);
  EXPECT_NE(err.find("cannot write /nonexistent/dir/out.tsv"), std::string::npos) << err;
}

}  // namespace
}  // namespace crawlgate::test
