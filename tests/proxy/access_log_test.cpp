#include "crawlgate/proxy/access_log.h"

#include <gtest/gtest.h>
#include <fstream>
#include <nlohmann/json.hpp>

namespace crawlgate::proxy {
namespace {

struct EntryFixture {
  std::vector<HeaderField> headers = {{"Host", "wiki.example"},
                                      {"User-Agent", "Mozilla/5.0 \"quoted\" \x01"},
                                      {"Cookie", "session=secret"},
                                      {"Referer", "https://wiki.example/wiki/A"}};
  RequestContext context;
  AccessLogEntry entry;
  EntryFixture() {
    entry.start = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456));
    entry.client = *IpAddress::parse("203.0.113.77");
    entry.peer = *IpAddress::parse("2001:db8:1:2:3:4:5:6");
    entry.method = "GET";
    entry.target = "/wiki/Special:Search?q=\xff";
    entry.version = 11;
    entry.headers = headers;
    entry.status = 403;
    entry.bytes = 120;
    entry.duration_ms = 0.25;
    entry.request_id = "abc";
    context.traffic_class = "ai_training";
    context.rule = "ai-training-gptbot";
    context.action = "deny";
    context.enforced = true;
    entry.context = &context;
  }
};

TEST(AccessLogFormat, JsonLineIsValidJsonWithEveryField) {
  EntryFixture f;
  std::string line = format_jsonl(f.entry, true, false);
  ASSERT_EQ(line.back(), '\n');
  auto json = nlohmann::json::parse(line);
  EXPECT_DOUBLE_EQ(json["ts"].get<double>(), 1700000000.123456);
  EXPECT_EQ(json["ip"], "203.0.113.77");
  EXPECT_EQ(json["peer"], "2001:db8:1:2:3:4:5:6");
  EXPECT_EQ(json["method"], "GET");
  EXPECT_EQ(json["version"], "1.1");
  EXPECT_EQ(json["status"], 403);
  EXPECT_EQ(json["bytes"], 120);
  EXPECT_EQ(json["request_id"], "abc");
  EXPECT_EQ(json["class"], "ai_training");
  EXPECT_EQ(json["rule"], "ai-training-gptbot");
  EXPECT_EQ(json["action"], "deny");
  EXPECT_EQ(json["enforced"], true);
  ASSERT_EQ(json["headers"].size(), 4u);
  EXPECT_EQ(json["headers"][0][0], "Host");
  EXPECT_EQ(json["headers"][1][1], "Mozilla/5.0 \"quoted\" \x01");
  EXPECT_EQ(json["headers"][2][1], "[redacted]");
  // A non-UTF-8 byte is escaped as \u00XX so the line stays valid JSON.
  EXPECT_EQ(json["target"], "/wiki/Special:Search?q=\u00ff");
}

TEST(AccessLogFormat, HeadersCanBeLeftOutAndAddressesTruncated) {
  EntryFixture f;
  auto json = nlohmann::json::parse(format_jsonl(f.entry, false, true));
  EXPECT_FALSE(json.contains("headers"));
  EXPECT_EQ(json["ip"], "203.0.113.0");
  EXPECT_EQ(json["peer"], "2001:db8:1::");
}

TEST(AccessLogFormat, CombinedEscapesLikeNginx) {
  EntryFixture f;
  std::string line = format_combined(f.entry, false);
  EXPECT_TRUE(line.starts_with("203.0.113.77 - - [")) << line;
  EXPECT_NE(line.find("] \"GET /wiki/Special:Search?q=\\xFF HTTP/1.1\" 403 120 "
                      "\"https://wiki.example/wiki/A\" \"Mozilla/5.0 \\x22quoted\\x22 \\x01\"\n"),
            std::string::npos)
      << line;
}

TEST(AccessLogWriter, DropsAndCountsWhenTheQueueIsFull) {
  AccessLogSettings settings;
  settings.path = "/dev/null";
  settings.queue_max = 0;  // nothing fits: every line is dropped, none blocks
  AccessLog log(settings);
  EntryFixture f;
  for (int i = 0; i < 100; ++i) log.log(f.entry);
  log.flush();
  EXPECT_EQ(log.lines_dropped(), 100u);
  EXPECT_EQ(log.lines_written(), 0u);
}

TEST(AccessLogWriter, WritesEveryLineToAFile) {
  AccessLogSettings settings;
  settings.path = ::testing::TempDir() + "/writer.log";
  std::remove(settings.path.c_str());
  EntryFixture f;
  {
    AccessLog log(settings);
    for (int i = 0; i < 1000; ++i) log.log(f.entry);
    log.flush();
    EXPECT_EQ(log.lines_written(), 1000u);
  }
  std::ifstream in(settings.path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    ASSERT_NO_THROW(nlohmann::json::parse(line));
    ++lines;
  }
  EXPECT_EQ(lines, 1000);
}

}  // namespace
}  // namespace crawlgate::proxy
