// The access-log reader of `crawlgate replay`: both formats, their escapes and time zones, and a
// clear reason for every line it refuses.
#include "crawlgate/classifier/access_log_reader.h"

#include <gtest/gtest.h>

namespace crawlgate {
namespace {

std::string header(const LogRecord& record, std::string_view name) {
  for (const auto& [key, value] : record.headers) {
    if (key == name) return value;
  }
  return "<absent>";
}

TEST(AccessLogReader, ReadsCrawlgateJsonLinesBackToBytes) {
  LogRecord record;
  std::string error;
  ASSERT_TRUE(parse_jsonl_line(
      R"({"ts":1795000806.5,"ip":"2001:db8::7","peer":"127.0.0.1","method":"GET",)"
      R"("target":"/a?q=\u00ff","version":"1.0","headers":[["User-Agent","caf\u00e9"],)"
      R"(["Cookie","[redacted]"]],"status":304,"bytes":0,"class":"x"})"
      "\r\n",
      record, error))
      << error;
  EXPECT_DOUBLE_EQ(record.ts, 1795000806.5);
  EXPECT_EQ(record.address.to_string(), "2001:db8::7");
  EXPECT_EQ(record.target, "/a?q=\xff");
  EXPECT_EQ(record.version, 10);
  EXPECT_EQ(header(record, "User-Agent"), "caf\xe9");
  EXPECT_EQ(record.status, 304);
  EXPECT_EQ(record.bytes, 0);
}

TEST(AccessLogReader, RefusesJsonLinesWithAReason) {
  LogRecord record;
  std::string error;
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "not JSON"},
      {"[1,2]", "not a JSON object"},
      {R"({"ip":"192.0.2.1"})", "\"ts\""},
      {R"({"ts":1,"ip":"nope","method":"GET","target":"/","version":"1.1","headers":[]})",
       "not an IP address"},
      {R"({"ts":1,"ip":"192.0.2.1","method":"GET","target":"/","version":"0.9","headers":[]})",
       "\"version\""},
      {R"({"ts":1,"ip":"192.0.2.1","method":"GET","target":"/","version":"1.1"})",
       "missing \"headers\""},
      {R"({"ts":1,"ip":"192.0.2.1","method":"GET","target":"/\u0100","version":"1.1",)"
       R"("headers":[]})",
       "above U+00FF"},
      {R"({"ts":1,"ip":"192.0.2.1","method":"GET","target":"/","version":"1.1","headers":[["a"]]})",
       "[name, value]"},
  };
  for (const auto& [line, reason] : cases) {
    EXPECT_FALSE(parse_jsonl_line(line, record, error)) << line;
    EXPECT_NE(error.find(reason), std::string::npos) << line << " -> " << error;
  }
}

TEST(AccessLogReader, ReadsCombinedWithTimeZonesAndEscapes) {
  LogRecord record;
  std::string error;
  ASSERT_TRUE(parse_combined_line(
      "198.51.100.7 - bob [01/Mar/2024:01:30:00 +0130] \"GET /a?q=\\x22x\\\\y\\\" HTTP/1.1\" 404 "
      "12 \"https://r.example/\" \"Mozilla/5.0 \\\"q\\\"\" \"10.0.0.1\"\n",
      record, error))
      << error;
  EXPECT_DOUBLE_EQ(record.ts, 1709251200.0);  // 2024-03-01T00:00:00Z
  EXPECT_EQ(record.method, "GET");
  EXPECT_EQ(record.target, "/a?q=\"x\\y\"");
  EXPECT_EQ(record.status, 404);
  EXPECT_EQ(record.bytes, 12);
  EXPECT_EQ(header(record, "Referer"), "https://r.example/");
  EXPECT_EQ(header(record, "User-Agent"), "Mozilla/5.0 \"q\"");

  // Common log format (no Referer/User-Agent), "-" bytes, status 0 (never answered): unknown.
  ASSERT_TRUE(parse_combined_line(
      "192.0.2.1 - - [31/Dec/1999:23:59:59 -0000] \"HEAD / HTTP/1.0\" 000 -", record, error))
      << error;
  EXPECT_DOUBLE_EQ(record.ts, 946684799.0);
  EXPECT_EQ(record.version, 10);
  EXPECT_EQ(record.status, -1);
  EXPECT_EQ(record.bytes, -1);
  EXPECT_TRUE(record.headers.empty());
}

TEST(AccessLogReader, RefusesCombinedWithAReason) {
  LogRecord record;
  std::string error;
  const std::pair<const char*, const char*> cases[] = {
      {"", "no client address"},
      {"example.org - - [01/Mar/2024:01:30:00 +0000] \"GET / HTTP/1.1\" 200 1", "IP address"},
      {"192.0.2.1 - - [1/Mar/2024:01:30:00 +0000] \"GET / HTTP/1.1\" 200 1", "time"},
      {"192.0.2.1 - - [01/Foo/2024:01:30:00 +0000] \"GET / HTTP/1.1\" 200 1", "time"},
      {"192.0.2.1 - - [01/Mar/2024:01:30:00 +0000] \"-\" 400 0 \"-\" \"-\"", "request line"},
      {"192.0.2.1 - - [01/Mar/2024:01:30:00 +0000] \"GET / SPDY/3\" 200 1", "HTTP version"},
      {"192.0.2.1 - - [01/Mar/2024:01:30:00 +0000] \"GET / HTTP/1.1\" 2000 1", "status"},
      {"192.0.2.1 - - [01/Mar/2024:01:30:00 +0000] \"GET / HTTP/1.1\" 200 x1", "bytes"},
      {"192.0.2.1 - - [01/Mar/2024:01:30:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"unterminated",
       "quoted"},
  };
  for (const auto& [line, reason] : cases) {
    EXPECT_FALSE(parse_combined_line(line, record, error)) << line;
    EXPECT_NE(error.find(reason), std::string::npos) << line << " -> " << error;
  }
}

TEST(AccessLogReader, DetectsTheFormatFromTheFirstLine) {
  EXPECT_EQ(detect_log_format("  {\"ts\":1}"), LogFormat::kJsonLines);
  EXPECT_EQ(detect_log_format("192.0.2.1 - - [...]"), LogFormat::kCombined);
  EXPECT_EQ(log_format_from_name("jsonl"), LogFormat::kJsonLines);
  EXPECT_EQ(log_format_from_name("combined"), LogFormat::kCombined);
  EXPECT_FALSE(log_format_from_name("xml"));
}

}  // namespace
}  // namespace crawlgate
