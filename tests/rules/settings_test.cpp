#include "crawlgate/rules/settings.h"

#include <gtest/gtest.h>

#include "crawlgate/rules/config.h"

namespace crawlgate {
namespace {

TEST(HostPortTest, ParsesIpv4NameAndBracketedIpv6) {
  HostPort out;
  std::string error;
  ASSERT_TRUE(HostPort::parse("127.0.0.1:8080", out, error)) << error;
  EXPECT_EQ(out.host, "127.0.0.1");
  EXPECT_EQ(out.port, 8080);
  EXPECT_EQ(out.to_string(), "127.0.0.1:8080");

  ASSERT_TRUE(HostPort::parse("localhost:0", out, error)) << error;
  EXPECT_EQ(out.host, "localhost");
  EXPECT_EQ(out.port, 0);

  ASSERT_TRUE(HostPort::parse("[::1]:9464", out, error)) << error;
  EXPECT_EQ(out.host, "::1");
  EXPECT_EQ(out.port, 9464);
  EXPECT_EQ(out.to_string(), "[::1]:9464");
}

TEST(HostPortTest, RejectsBadInput) {
  HostPort out;
  std::string error;
  for (const char* text : {"127.0.0.1", ":80", "host:", "host:65536", "host:8x", "::1:80", "[::1]",
                           "[::1]80", "[nothost]:80", "bad host:80", ""}) {
    error.clear();
    EXPECT_FALSE(HostPort::parse(text, out, error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST(UpstreamUrlTest, ParsesHttpUrls) {
  HostPort out;
  std::string error;
  ASSERT_TRUE(UpstreamSettings::parse_url("http://127.0.0.1:8081", out, error)) << error;
  EXPECT_EQ(out.to_string(), "127.0.0.1:8081");
  ASSERT_TRUE(UpstreamSettings::parse_url("http://wiki.internal/", out, error)) << error;
  EXPECT_EQ(out.to_string(), "wiki.internal:80");
  ASSERT_TRUE(UpstreamSettings::parse_url("http://[2001:db8::1]:8080", out, error)) << error;
  EXPECT_EQ(out.host, "2001:db8::1");
  EXPECT_EQ(out.port, 8080);
}

TEST(UpstreamUrlTest, RejectsHttpsPathsAndPortZero) {
  HostPort out;
  std::string error;
  EXPECT_FALSE(UpstreamSettings::parse_url("https://example.org:443", out, error));
  EXPECT_NE(error.find("https"), std::string::npos);
  EXPECT_FALSE(UpstreamSettings::parse_url("http://example.org:80/wiki", out, error));
  EXPECT_FALSE(UpstreamSettings::parse_url("http://user@example.org:80", out, error));
  EXPECT_FALSE(UpstreamSettings::parse_url("http://example.org:0", out, error));
  EXPECT_FALSE(UpstreamSettings::parse_url("example.org:80", out, error));
  EXPECT_FALSE(UpstreamSettings::parse_url("http://", out, error));
}

TEST(DurationTest, ParsesUnitsAndPlainSeconds) {
  Millis out{};
  std::string error;
  ASSERT_TRUE(parse_duration("250ms", out, error));
  EXPECT_EQ(out, Millis(250));
  ASSERT_TRUE(parse_duration("10s", out, error));
  EXPECT_EQ(out, Millis(10'000));
  ASSERT_TRUE(parse_duration("5m", out, error));
  EXPECT_EQ(out, Millis(300'000));
  ASSERT_TRUE(parse_duration("1h", out, error));
  EXPECT_EQ(out, Millis(3'600'000));
  ASSERT_TRUE(parse_duration("30", out, error));
  EXPECT_EQ(out, Millis(30'000));
  ASSERT_TRUE(parse_duration("0.5", out, error));
  EXPECT_EQ(out, Millis(500));
  ASSERT_TRUE(parse_duration("0", out, error));
  EXPECT_EQ(out, Millis(0));
}

TEST(DurationTest, RejectsBadDurations) {
  Millis out{};
  std::string error;
  for (const char* text : {"", "s", "10 s", "10sec", "-5s", "1d", "abc", "1e3", "1.2.3s"}) {
    EXPECT_FALSE(parse_duration(text, out, error)) << text;
  }
  EXPECT_FALSE(parse_duration("10parsecs", out, error));
  EXPECT_NE(error.find("unknown duration unit 'parsecs'"), std::string::npos) << error;
}

TEST(SizeTest, ParsesUnitsAndBytes) {
  std::uint64_t out = 0;
  std::string error;
  ASSERT_TRUE(parse_size("16KiB", out, error));
  EXPECT_EQ(out, 16u * 1024);
  ASSERT_TRUE(parse_size("100MiB", out, error));
  EXPECT_EQ(out, 100ull * 1024 * 1024);
  ASSERT_TRUE(parse_size("1GiB", out, error));
  EXPECT_EQ(out, 1ull << 30);
  ASSERT_TRUE(parse_size("4096", out, error));
  EXPECT_EQ(out, 4096u);
  ASSERT_TRUE(parse_size("0", out, error));
  EXPECT_EQ(out, 0u);
}

TEST(SizeTest, RejectsBadSizes) {
  std::uint64_t out = 0;
  std::string error;
  for (const char* text :
       {"", "KiB", "16 KiB", "1.5MiB", "-1", "99999999999999999999", "17179869184GiB"}) {
    EXPECT_FALSE(parse_size(text, out, error)) << text;
  }
  EXPECT_FALSE(parse_size("16MB", out, error));
  EXPECT_NE(error.find("unknown size unit 'MB'"), std::string::npos) << error;
}

}  // namespace
}  // namespace crawlgate
