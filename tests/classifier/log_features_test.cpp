#include "crawlgate/classifier/log_features.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "crawlgate/classifier/features.h"

namespace crawlgate {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

TEST(LogFeaturesTest, FixtureGivesHeaderAndRows) {
  std::ifstream log(CRAWLGATE_CLASSIFIER_TEST_DATA "/access_small.jsonl");
  ASSERT_TRUE(log);
  std::ostringstream csv;
  const ExtractStats stats = extract_features(log, csv);
  EXPECT_EQ(stats.lines, 8u);
  EXPECT_EQ(stats.rows, 5u);
  EXPECT_EQ(stats.skipped, 2u);  // line 3 (not JSON) and line 8 (no "ts"); line 6 is blank
  EXPECT_EQ(stats.first_error, "line 3: not valid JSON");

  const std::vector<std::string> lines = split(csv.str(), '\n');
  ASSERT_EQ(lines.size(), 6u);
  const std::vector<std::string> header = split(lines[0], ',');
  ASSERT_EQ(header.size(), 2 + FeatureVector::kSize);
  EXPECT_EQ(header[0], "line");
  EXPECT_EQ(header[1], "client");
  EXPECT_EQ(header[2], "rate_10s");
  EXPECT_EQ(header.back(), "block_gap_log_sd");
  EXPECT_EQ(lines[0], feature_csv_header());

  const std::vector<std::string> expected_prefix = {"1,203.0.113.9,", "2,203.0.113.9,",
                                                    "4,198.51.100.20,", "5,198.51.100.20,",
                                                    "7,2001:db8::1,"};
  for (std::size_t i = 0; i < expected_prefix.size(); ++i) {
    EXPECT_EQ(lines[i + 1].rfind(expected_prefix[i], 0), 0u) << lines[i + 1];
    EXPECT_EQ(split(lines[i + 1], ',').size(), header.size()) << lines[i + 1];
  }
  auto column = [&](std::size_t row, Feature f) {
    return std::stod(split(lines[row], ',')[2 + static_cast<std::size_t>(f)]);
  };
  // Row 2: the stylesheet, with a Referer to the page fetched on line 1 and a redacted Cookie.
  EXPECT_DOUBLE_EQ(column(2, Feature::asset_share), 0.5);
  EXPECT_DOUBLE_EQ(column(2, Feature::referer_known_share), 0.5);
  EXPECT_DOUBLE_EQ(column(2, Feature::cookie_share), 0.5);
  EXPECT_DOUBLE_EQ(column(1, Feature::missing_browser_headers), 0.0);
  EXPECT_DOUBLE_EQ(column(1, Feature::header_order_anomaly), 0.0);
  // Line 5 (row 4): robots.txt, after a 404 on line 4 (headers: false is no headers).
  EXPECT_DOUBLE_EQ(column(4, Feature::robots_fetched), 1.0);
  EXPECT_DOUBLE_EQ(column(4, Feature::status_404_share), 1.0);
  EXPECT_DOUBLE_EQ(column(3, Feature::deep_url_share), 1.0);
  EXPECT_DOUBLE_EQ(column(3, Feature::http10_share), 1.0);
  EXPECT_DOUBLE_EQ(column(4, Feature::header_count), 0.0);
  EXPECT_DOUBLE_EQ(column(5, Feature::deep_url_share), 1.0);  // Special:
}

TEST(LogFeaturesTest, ValuesRoundTripExactly) {
  // The CSV text must read back as the numbers the proxy computes (shortest round-trip text).
  std::istringstream log(
      R"({"ts": 100.0, "ip": "192.0.2.1", "method": "GET", "target": "/a", "headers": [], "status": 200})"
      "\n"
      R"({"ts": 100.123456, "ip": "192.0.2.1", "method": "GET", "target": "/b", "headers": [], "status": 200})"
      "\n");
  std::ostringstream csv;
  extract_features(log, csv);
  const auto lines = split(csv.str(), '\n');
  ASSERT_EQ(lines.size(), 3u);
  const auto fields = split(lines[2], ',');
  const double rate10 = std::stod(fields[2]);
  EXPECT_EQ(rate10, static_cast<double>(static_cast<float>(
                        static_cast<float>(0.1) * std::exp(-0.123456 / 10.0) + 0.1)));
}

}  // namespace
}  // namespace crawlgate
