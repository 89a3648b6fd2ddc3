#include "crawlgate/classifier/features.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <thread>
#include <string>
#include <vector>

namespace crawlgate {
namespace {

constexpr Nanos kMs = 1'000'000;
constexpr Nanos kSec = 1'000'000'000;

const char* const kChromeUa =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36";
const char* const kFirefoxUa =
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

// A request with owned storage for its header strings.
struct Req {
  std::string target;
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<HeaderField> view_fields;
  IpAddress ip;
  int version = 11;

  RequestView view() {
    view_fields.clear();
    for (auto& [n, v] : fields) view_fields.push_back({n, v});
    RequestView v;
    v.method = "GET";
    v.target = target;
    v.version = version;
    v.headers = view_fields;
    v.client_ip = ip;
    v.peer_ip = ip;
    return v;
  }
};

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

// What Chrome sends on HTTPS for a navigation (order as on the wire).
Req chrome_page(const IpAddress& addr, std::string target, std::string referer = "",
                bool cookie = true) {
  Req r{std::move(target), {}, {}, addr};
  r.fields = {{"Host", "wiki.example"},
              {"Connection", "keep-alive"},
              {"sec-ch-ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\""},
              {"sec-ch-ua-mobile", "?0"},
              {"sec-ch-ua-platform", "\"Linux\""},
              {"Upgrade-Insecure-Requests", "1"},
              {"User-Agent", kChromeUa},
              {"Accept", "text/html,application/xhtml+xml"},
              {"Sec-Fetch-Site", referer.empty() ? "none" : "same-origin"},
              {"Sec-Fetch-Mode", "navigate"},
              {"Sec-Fetch-Dest", "document"}};
  if (!referer.empty()) r.fields.push_back({"Referer", "https://wiki.example" + referer});
  r.fields.push_back({"Accept-Encoding", "gzip, deflate, br"});
  r.fields.push_back({"Accept-Language", "en-US,en;q=0.9"});
  if (cookie) r.fields.push_back({"Cookie", "session=abc"});
  return r;
}

Req chrome_asset(const IpAddress& addr, std::string target, const std::string& page) {
  Req r = chrome_page(addr, std::move(target), page);
  for (auto& [n, v] : r.fields) {
    if (n == "Sec-Fetch-Mode") v = "no-cors";
    if (n == "Sec-Fetch-Dest") v = "style";
  }
  return r;
}

// A "stealth" crawler: browser UA, but library-style headers and order.
Req stealth(const IpAddress& addr, std::string target) {
  Req r{std::move(target), {}, {}, addr};
  r.fields = {{"Host", "wiki.example"},
              {"User-Agent", kChromeUa},
              {"Accept-Encoding", "gzip, deflate"},
              {"Accept", "*/*"},
              {"Connection", "keep-alive"}};
  return r;
}

double f(const FeatureVector& v, Feature which) { return v[which]; }

TEST(FeatureNamesTest, StableUniqueAndIndexed) {
  const auto& names = FeatureVector::names();
  EXPECT_EQ(names.size(), FeatureVector::kSize);
  EXPECT_EQ(FeatureVector::kSize, 30u);
  std::set<std::string_view> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  EXPECT_EQ(names[0], "rate_10s");
  EXPECT_EQ(names[static_cast<std::size_t>(Feature::status_404_share)], "status_404_share");
  EXPECT_EQ(names.back(), "block_gap_log_sd");
  for (std::size_t i = 0; i < names.size(); ++i) EXPECT_EQ(FeatureVector::index_of(names[i]), i);
  EXPECT_FALSE(FeatureVector::index_of("no_such_feature").has_value());
}

TEST(RequestTraitsTest, PathClassification) {
  EXPECT_TRUE(is_asset_path("/static/site.css"));
  EXPECT_TRUE(is_asset_path("/favicon.ico"));
  EXPECT_TRUE(is_asset_path("/img/Logo.PNG"));
  EXPECT_TRUE(is_asset_path("/fonts/a.woff2"));
  EXPECT_FALSE(is_asset_path("/wiki/Main_Page"));
  EXPECT_FALSE(is_asset_path("/wiki/File.css/talk"));
  EXPECT_FALSE(is_asset_path("/"));

  EXPECT_TRUE(is_deep_url("/w/index.php?title=Foo&oldid=12345"));
  EXPECT_TRUE(is_deep_url("/w/index.php?title=Foo&action=history"));
  EXPECT_TRUE(is_deep_url("/wiki/Special:RecentChanges"));
  EXPECT_TRUE(is_deep_url("/w/index.php?title=Foo&diff=prev&oldid=1"));
  EXPECT_TRUE(is_deep_url("/blog/2019/05/some-post"));
  EXPECT_TRUE(is_deep_url("/web/20190101000000/https://example.org/"));
  EXPECT_FALSE(is_deep_url("/wiki/Main_Page"));
  EXPECT_FALSE(is_deep_url("/wiki/1984_(novel)"));
  EXPECT_FALSE(is_deep_url("/products/2019"));
}

TEST(RequestTraitsTest, ConsistencySignals) {
  Req good = chrome_page(ip("192.0.2.1"), "/wiki/A");
  auto t = RequestTraits::analyse(good.view());
  EXPECT_EQ(t.family, RequestTraits::Family::chromium);
  EXPECT_FLOAT_EQ(t.missing_headers, 0.0f);
  EXPECT_FLOAT_EQ(t.order_anomaly, 0.0f);
  EXPECT_TRUE(t.page);
  EXPECT_TRUE(t.has_cookie);
  EXPECT_FALSE(t.headless);

  Req bad = stealth(ip("192.0.2.1"), "/wiki/A");
  t = RequestTraits::analyse(bad.view());
  EXPECT_EQ(t.family, RequestTraits::Family::chromium);
  // Missing: Accept-Language, 3 Sec-Fetch-*, 3 sec-ch-ua* of 9.
  EXPECT_FLOAT_EQ(t.missing_headers, 7.0f / 9.0f);
  // Checks: Host first (ok), Accept before Accept-Encoding (fails), UA before Accept (ok).
  EXPECT_FLOAT_EQ(t.order_anomaly, 1.0f / 3.0f);

  Req ff{"/wiki/A", {{"Host", "h"}, {"User-Agent", kFirefoxUa}, {"Accept", "text/html"},
                     {"Accept-Language", "en"}, {"Accept-Encoding", "gzip"},
                     {"Sec-Fetch-Dest", "document"}, {"Sec-Fetch-Mode", "navigate"},
                     {"Sec-Fetch-Site", "none"}}, {}, ip("192.0.2.1")};
  t = RequestTraits::analyse(ff.view());
  EXPECT_EQ(t.family, RequestTraits::Family::firefox);
  EXPECT_FLOAT_EQ(t.missing_headers, 0.0f);
  EXPECT_FLOAT_EQ(t.order_anomaly, 0.0f);

  Req headless = chrome_page(ip("192.0.2.1"), "/");
  for (auto& [n, v] : headless.fields) {
    if (n == "User-Agent") v = "Mozilla/5.0 (X11) AppleWebKit/537.36 HeadlessChrome/124.0 Safari/537.36";
  }
  EXPECT_TRUE(RequestTraits::analyse(headless.view()).headless);

  Req curl{"/", {{"Host", "h"}, {"User-Agent", "curl/8.0"}, {"Accept", "*/*"}}, {}, ip("192.0.2.1")};
  t = RequestTraits::analyse(curl.view());
  EXPECT_EQ(t.family, RequestTraits::Family::none);
  EXPECT_FLOAT_EQ(t.missing_headers, 0.0f);  // nothing is expected of a non-browser claim

  // A Referer from another site is a Referer, but not one to a page fetched here.
  Req external = chrome_page(ip("192.0.2.1"), "/wiki/A");
  external.fields.push_back({"Referer", "https://search.example/"});
  t = RequestTraits::analyse(external.view());
  EXPECT_TRUE(t.has_referer);
  EXPECT_EQ(t.referer_hash, 0u);
}

// A human: pages with their assets, same-site referers, cookies, irregular reading pauses.
FeatureVector browse(BehaviourTable& table, const IpAddress& addr, Nanos& now, int pages) {
  FeatureVector v;
  std::string prev;
  const Nanos pauses[] = {7 * kSec, 31 * kSec, 3 * kSec, 95 * kSec, 12 * kSec, 48 * kSec};
  for (int p = 0; p < pages; ++p) {
    const std::string page = "/wiki/Article_" + std::to_string(p);
    Req r = chrome_page(addr, page, prev, p > 0);
    v = table.update(r.view(), 200, now);
    const char* assets[] = {"/static/site.css", "/static/app.js", "/img/logo.png", "/favicon.ico"};
    for (int a = 0; a < 4; ++a) {
      now += 15 * kMs + a * 7 * kMs;
      // Cached after the first page: only the first page fetches every asset.
      if (p > 0 && a >= 2) continue;
      Req ar = chrome_asset(addr, assets[a], page);
      v = table.update(ar.view(), 200, now);
    }
    prev = page;
    now += pauses[p % 6];
  }
  return v;
}

// A stealth crawler: browser UA, no assets, no referers, regular timing, deep URLs, some 404s.
FeatureVector crawl(BehaviourTable& table, const IpAddress& addr, Nanos& now, int requests) {
  FeatureVector v;
  for (int i = 0; i < requests; ++i) {
    const std::string target = i % 2 ? "/w/index.php?title=Page_" + std::to_string(i) + "&oldid=" +
                                           std::to_string(1000 + i)
                                     : "/wiki/Page_" + std::to_string(i);
    Req r = stealth(addr, target);
    v = table.update(r.view(), i % 5 == 0 ? 404 : 200, now);
    now += 2 * kSec;
  }
  return v;
}

TEST(BehaviourTableTest, HumanAndCrawlerSeparate) {
  BehaviourTable table;
  Nanos now = 100 * kSec;
  const FeatureVector human = browse(table, ip("192.0.2.10"), now, 12);
  Nanos now2 = 100 * kSec;
  const FeatureVector bot = crawl(table, ip("198.51.100.7"), now2, 40);

  EXPECT_GT(f(human, Feature::asset_share), 0.3);
  EXPECT_EQ(f(bot, Feature::asset_share), 0.0);
  EXPECT_GT(f(human, Feature::referer_known_share), 0.6);
  EXPECT_EQ(f(bot, Feature::referer_known_share), 0.0);
  EXPECT_GT(f(human, Feature::cookie_share), 0.8);
  EXPECT_EQ(f(bot, Feature::cookie_share), 0.0);
  EXPECT_GT(f(bot, Feature::deep_url_share), 0.4);
  EXPECT_EQ(f(human, Feature::deep_url_share), 0.0);
  EXPECT_GT(f(human, Feature::gap_log_sd), 1.0);      // ms asset bursts and long pauses
  EXPECT_LT(f(bot, Feature::gap_log_sd), 1e-3);       // a fixed 2 s delay
  EXPECT_NEAR(f(bot, Feature::gap_log_mean), std::log10(2.0), 1e-4);
  EXPECT_NEAR(f(bot, Feature::new_path_share), 1.0, 1e-6);
  EXPECT_LT(f(human, Feature::new_path_share), f(bot, Feature::new_path_share));
  EXPECT_GT(f(bot, Feature::distinct_paths_log2), f(human, Feature::distinct_paths_log2));
  EXPECT_GT(f(bot, Feature::status_404_share), 0.1);
  EXPECT_EQ(f(human, Feature::status_404_share), 0.0);
  EXPECT_GT(f(bot, Feature::missing_browser_headers), 0.7);
  EXPECT_EQ(f(human, Feature::missing_browser_headers), 0.0);
  EXPECT_GT(f(bot, Feature::header_order_anomaly), 0.3);
  EXPECT_EQ(f(human, Feature::header_order_anomaly), 0.0);
  EXPECT_EQ(f(bot, Feature::browser_claim), 1.0);
  EXPECT_EQ(f(human, Feature::browser_claim), 1.0);
  EXPECT_LT(f(bot, Feature::header_count), f(human, Feature::header_count));
  EXPECT_EQ(f(bot, Feature::robots_fetched), 0.0);
  EXPECT_EQ(f(bot, Feature::ua_change_share), 0.0);
  // 40 requests 2 s apart: rate_60s approaches 0.5/s.
  const double steady = (1.0 / 60) * (1 - std::exp(-80.0 / 60)) / (1 - std::exp(-2.0 / 60));
  EXPECT_NEAR(f(bot, Feature::rate_60s), steady, 1e-4);
  EXPECT_NEAR(f(bot, Feature::requests_log2), std::log2(41.0), 1e-9);  // 40 requests
}

TEST(BehaviourTableTest, ExactValuesForAShortSequence) {
  BehaviourTable table;
  const IpAddress a = ip("192.0.2.55");
  Req r1 = stealth(a, "/robots.txt");
  FeatureVector v = table.update(r1.view(), 200, 10 * kSec);
  EXPECT_DOUBLE_EQ(v[Feature::rate_10s], static_cast<float>(0.1));
  EXPECT_DOUBLE_EQ(v[Feature::gap_log_mean], 3.0);  // no gap yet
  EXPECT_DOUBLE_EQ(v[Feature::gap_log_sd], 0.0);
  EXPECT_DOUBLE_EQ(v[Feature::robots_fetched], 1.0);
  EXPECT_DOUBLE_EQ(v[Feature::html_share], 0.0);
  EXPECT_DOUBLE_EQ(v[Feature::new_path_share], 1.0);
  EXPECT_DOUBLE_EQ(v[Feature::distinct_paths_log2], 1.0);

  Req r2 = stealth(a, "/wiki/X");
  v = table.update(r2.view(), 404, 20 * kSec);
  // rate_10s = 0.1 * e^-1 + 0.1
  EXPECT_NEAR(v[Feature::rate_10s], 0.1 * std::exp(-1.0) + 0.1, 1e-6);
  EXPECT_NEAR(v[Feature::gap_log_mean], 1.0, 1e-6);  // log10(10 s)
  EXPECT_DOUBLE_EQ(v[Feature::html_share], 0.5);
  EXPECT_DOUBLE_EQ(v[Feature::robots_fetched], 1.0);
  // The status of this request is folded in after its vector: 404 share still 0 ...
  EXPECT_DOUBLE_EQ(v[Feature::status_404_share], 0.0);
  Req r3 = stealth(a, "/wiki/X");
  v = table.update(r3.view(), -1, 21 * kSec);
  // ... and visible on the next: 1 of 2 known statuses.
  EXPECT_DOUBLE_EQ(v[Feature::status_404_share], 0.5);
  EXPECT_NEAR(v[Feature::new_path_share], 2.0 / 3.0, 1e-6);  // /wiki/X repeated
  EXPECT_DOUBLE_EQ(v[Feature::distinct_paths_log2], std::log2(3.0));
  // A late status report counts like an inline one.
  table.report_status(a, 404);
  Req r4 = stealth(a, "/wiki/Y");
  v = table.update(r4.view(), -1, 22 * kSec);
  EXPECT_NEAR(v[Feature::status_404_share], 2.0 / 3.0, 1e-6);
}

TEST(BehaviourTableTest, InlineStatusEqualsLateReport) {
  BehaviourTable inline_table, late_table;
  Nanos now = kSec;
  for (int i = 0; i < 50; ++i) {
    Req r = stealth(ip("203.0.113.4"), "/p/" + std::to_string(i % 7));
    const int status = i % 3 == 0 ? 404 : 200;
    const FeatureVector a = inline_table.update(r.view(), status, now);
    const FeatureVector b = late_table.update(r.view(), -1, now);
    late_table.report_status(ip("203.0.113.4"), status);
    ASSERT_EQ(a.values, b.values) << "request " << i;
    now += 300 * kMs;
  }
}

TEST(BehaviourTableTest, BlockAggregatesRotatingAddresses) {
  BehaviourTable table;
  Nanos now = kSec;
  FeatureVector v;
  // One request per address from 50 addresses of one /24: each client is new, the block is not.
  for (int i = 0; i < 50; ++i) {
    const std::string addr = "198.51.100." + std::to_string(i + 1);
    Req r = stealth(ip(addr.c_str()), "/w/index.php?title=P" + std::to_string(i) + "&oldid=1");
    v = table.update(r.view(), 200, now);
    now += 500 * kMs;
  }
  EXPECT_DOUBLE_EQ(v[Feature::requests_log2], 1.0);  // the client saw one request
  EXPECT_GT(v[Feature::block_rate_60s], 0.6);  // the block saw 2/s for 25 s (warming up)
  EXPECT_LT(v[Feature::rate_60s], 0.02);
  EXPECT_GT(v[Feature::block_addresses], 30.0);       // linear-counting estimate of 50
  EXPECT_LT(v[Feature::block_addresses], 80.0);
  EXPECT_NEAR(v[Feature::block_deep_url_share], 1.0, 1e-6);
  EXPECT_NEAR(v[Feature::block_new_path_share], 1.0, 1e-6);
  EXPECT_LT(v[Feature::block_gap_log_sd], 1e-3);
  EXPECT_EQ(table.clients(), 50u);
  EXPECT_EQ(table.blocks(), 1u);

  // Another /24 is another block; IPv6 blocks are /48.
  Req other = stealth(ip("198.51.101.1"), "/");
  v = table.update(other.view(), 200, now);
  EXPECT_NEAR(v[Feature::block_addresses], 1.0, 0.02);
  Req v6a = stealth(ip("2001:db8:1:1::1"), "/");
  Req v6b = stealth(ip("2001:db8:1:2::1"), "/");
  table.update(v6a.view(), 200, now);
  v = table.update(v6b.view(), 200, now + kSec);
  EXPECT_DOUBLE_EQ(v[Feature::requests_log2], 1.0);  // different /64s: different clients
  EXPECT_GT(v[Feature::block_addresses], 1.5);       // same /48
  EXPECT_EQ(table.blocks(), 3u);
  // Two addresses in one /64 are one client.
  Req v6c = stealth(ip("2001:db8:1:2::99"), "/x");
  v = table.update(v6c.view(), 200, now + 2 * kSec);
  EXPECT_DOUBLE_EQ(v[Feature::requests_log2], std::log2(3.0));
}

TEST(BehaviourTableTest, BlockAddressWindowExpires) {
  BehaviourTable table;
  Nanos now = kSec;
  for (int i = 0; i < 20; ++i) {
    const std::string addr = "198.51.100." + std::to_string(i + 1);
    Req r = stealth(ip(addr.c_str()), "/");
    table.update(r.view(), 200, now);
  }
  Req again = stealth(ip("198.51.100.1"), "/");
  FeatureVector v = table.update(again.view(), 200, now + 11 * 60 * kSec);
  EXPECT_GT(v[Feature::block_addresses], 15.0);  // previous epoch still counts
  v = table.update(again.view(), 200, now + 22 * 60 * kSec);
  EXPECT_NEAR(v[Feature::block_addresses], 1.0, 0.02);  // both epochs rolled over
}

TEST(BehaviourTableTest, UaRotationAndHttp10) {
  BehaviourTable table;
  Nanos now = kSec;
  FeatureVector v;
  for (int i = 0; i < 10; ++i) {
    Req r{"/a" + std::to_string(i), {{"Host", "h"}, {"User-Agent", "agent-" + std::to_string(i)}},
          {}, ip("192.0.2.77")};
    r.version = 10;
    v = table.update(r.view(), 200, now += kSec);
  }
  EXPECT_NEAR(v[Feature::ua_change_share], 0.9, 1e-6);
  EXPECT_NEAR(v[Feature::http10_share], 1.0, 1e-6);
  EXPECT_DOUBLE_EQ(v[Feature::browser_claim], 0.0);
}

TEST(BehaviourTableTest, MemoryPerClientWithinBudget) {
  EXPECT_LE(sizeof(BehaviourState), 400u);
  EXPECT_LE(BehaviourTable::bytes_per_client(), 1024u);
  BehaviourTable::Options o;
  o.max_clients = 10'000;
  BehaviourTable table(o);
  EXPECT_EQ(table.client_capacity(), 10'000u);
  EXPECT_EQ(table.block_capacity(), 2'504u);  // 2,500 rounded up to whole 8-way sets
  const double per_client = static_cast<double>(table.memory_bytes()) / table.client_capacity();
  EXPECT_LE(per_client + ClientTable::bytes_per_entry(), 1024.0);
}

TEST(BehaviourTableTest, FloodStaysBoundedAndReturningClientsSurvive) {
  BehaviourTable::Options o;
  o.max_clients = 4096;
  BehaviourTable table(o);
  const std::size_t memory = table.memory_bytes();
  Nanos now = kSec;
  // 200 returning clients with a few requests each.
  std::vector<IpAddress> regulars;
  for (int i = 0; i < 200; ++i) {
    regulars.push_back(IpAddress::v4(0x0A000000u + static_cast<uint32_t>(i) * 977u));
  }
  for (int round = 0; round < 3; ++round) {
    for (const IpAddress& a : regulars) {
      Req r = stealth(a, "/r");
      table.update(r.view(), 200, now += kMs);
    }
  }
  // A flood of 200,000 one-off addresses spread over the IPv4 space.
  uint32_t x = 12345;
  for (int i = 0; i < 200'000; ++i) {
    x = x * 1664525u + 1013904223u;
    Req r = stealth(IpAddress::v4(x), "/f");
    table.update(r.view(), -1, now += 10'000);
    ASSERT_LE(table.clients(), table.client_capacity());
  }
  EXPECT_EQ(table.clients(), table.client_capacity());
  EXPECT_LE(table.blocks(), table.block_capacity());
  EXPECT_EQ(table.memory_bytes(), memory);
  EXPECT_GT(table.evictions(), 190'000u);
  std::size_t survivors = 0;
  for (const IpAddress& a : regulars) survivors += table.find_client(a).has_value();
  EXPECT_GE(survivors, 195u);
  const auto state = table.find_client(regulars[0]);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->n, 3u);
}

}  // namespace
}  // namespace crawlgate

namespace crawlgate {
namespace {

TEST(BehaviourTableTest, ConcurrentUpdatesAreConsistent) {
  BehaviourTable::Options o;
  o.max_clients = 256;
  BehaviourTable table(o);
  constexpr int kThreads = 4, kPerThread = 20'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // 64 shared clients (all threads) plus one-off addresses that force evictions.
        const uint32_t addr = i % 2 ? 0xC0000200u + static_cast<uint32_t>(i % 64)
                                    : 0x0B000000u + static_cast<uint32_t>(t * kPerThread + i);
        Req r = stealth(IpAddress::v4(addr), "/p" + std::to_string(i % 10));
        const FeatureVector v = table.update(r.view(), i % 7 ? 200 : 404, i * kMs);
        ASSERT_GE(v[Feature::requests_log2], 1.0);
        table.report_status(IpAddress::v4(addr), 200);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(table.clients(), table.client_capacity());
  EXPECT_LE(table.blocks(), table.block_capacity());
}

}  // namespace
}  // namespace crawlgate
