// Request analysis and the per-key state update behind BehaviourTable (docs/model.md, "Features").
#include "hashing.h"
#include "crawlgate/classifier/features.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "features_internal.h"

namespace crawlgate {

using hashing::mum;
using hashing::reduce32;

const std::array<std::string_view, FeatureVector::kSize>& FeatureVector::names() {
  static constexpr std::array<std::string_view, kSize> kNames = {
      "rate_10s",
      "rate_60s",
      "rate_600s",
      "requests_log2",
      "gap_log_mean",
      "gap_log_sd",
      "html_share",
      "asset_share",
      "referer_share",
      "referer_known_share",
      "cookie_share",
      "new_path_share",
      "distinct_paths_log2",
      "deep_url_share",
      "status_404_share",
      "robots_fetched",
      "browser_claim",
      "missing_browser_headers",
      "header_order_anomaly",
      "header_count",
      "http10_share",
      "headless_share",
      "ua_change_share",
      "block_rate_60s",
      "block_addresses",
      "block_asset_share",
      "block_new_path_share",
      "block_deep_url_share",
      "block_referer_known_share",
      "block_gap_log_sd",
  };
  return kNames;
}

std::optional<std::size_t> FeatureVector::index_of(std::string_view name) {
  const auto& n = names();
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (n[i] == name) return i;
  }
  return std::nullopt;
}

namespace {



// Any of the needles, case-sensitively (string_view::find runs memchr on the first character, which
// is much faster than a case-folding scan; the needles list the spellings seen in the wild).
template <std::size_t N>
bool contains_any(std::string_view hay, const std::string_view (&needles)[N]) {
  for (std::string_view n : needles) {
    if (hay.find(n) != std::string_view::npos) return true;
  }
  return false;
}

bool iends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

inline bool digit(char c) { return c >= '0' && c <= '9'; }

// Strips "scheme://authority" from an absolute URL; returns the authority through `authority`.
std::string_view origin_form(std::string_view url, std::string_view* authority = nullptr) {
  if (!url.empty() && url[0] == '/') return url;
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  const std::size_t start = scheme + 3;
  const std::size_t slash = url.find_first_of("/?#", start);
  if (authority) *authority = url.substr(start, slash == std::string_view::npos ? slash : slash - start);
  if (slash == std::string_view::npos) return "/";
  if (url[slash] != '/') return "/";  // "http://host?x": treat as the root
  return url.substr(slash);
}

std::string_view strip_fragment(std::string_view s) {
  const std::size_t hash = s.find('#');
  return hash == std::string_view::npos ? s : s.substr(0, hash);
}

// "/YYYY/MM" (dated archive path, 1990-2039) or a Wayback-style 8-14 digit timestamp segment.
bool has_dated_segment(std::string_view path) {
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '/') continue;
    std::size_t j = i + 1;
    while (j < path.size() && digit(path[j])) ++j;
    const std::size_t len = j - i - 1;
    if (len == 0) continue;
    const std::string_view seg = path.substr(i + 1, len);
    const bool century =
        len >= 2 && ((seg[0] == '2' && seg[1] == '0') || (seg[0] == '1' && seg[1] == '9'));
    if (len >= 8 && len <= 14 && century) return true;  // /web/20190101000000/...
    if (len == 4 && century && j < path.size() && path[j] == '/') {
      std::size_t k = j + 1, m = 0;
      while (k < path.size() && digit(path[k]) && m < 3) ++k, ++m;
      if ((m == 1 || m == 2) && (k == path.size() || path[k] == '/')) return true;
    }
  }
  return false;
}

struct HeaderPositions {
  int host = -1, user_agent = -1, accept = -1, accept_encoding = -1, accept_language = -1,
      sec_ch_ua = -1, sec_ch_ua_mobile = -1, sec_ch_ua_platform = -1, sec_fetch_site = -1,
      sec_fetch_mode = -1, sec_fetch_dest = -1, referer = -1, cookie = -1;
};

inline void set_first(int& slot, int i) {
  if (slot < 0) slot = i;
}

void locate(std::string_view name, int i, HeaderPositions& p) {
  // Dispatch on length, then compare case-insensitively.
  switch (name.size()) {
    case 4:
      if (iequals(name, "host")) set_first(p.host, i);
      break;
    case 6:
      if (iequals(name, "accept")) set_first(p.accept, i);
      else if (iequals(name, "cookie")) set_first(p.cookie, i);
      break;
    case 7:
      if (iequals(name, "referer")) set_first(p.referer, i);
      break;
    case 9:
      if (iequals(name, "sec-ch-ua")) set_first(p.sec_ch_ua, i);
      break;
    case 10:
      if (iequals(name, "user-agent")) set_first(p.user_agent, i);
      break;
    case 14:
      if (iequals(name, "sec-fetch-site")) set_first(p.sec_fetch_site, i);
      else if (iequals(name, "sec-fetch-mode")) set_first(p.sec_fetch_mode, i);
      else if (iequals(name, "sec-fetch-dest")) set_first(p.sec_fetch_dest, i);
      break;
    case 15:
      if (iequals(name, "accept-encoding")) set_first(p.accept_encoding, i);
      else if (iequals(name, "accept-language")) set_first(p.accept_language, i);
      break;
    case 16:
      if (iequals(name, "sec-ch-ua-mobile")) set_first(p.sec_ch_ua_mobile, i);
      break;
    case 18:
      if (iequals(name, "sec-ch-ua-platform")) set_first(p.sec_ch_ua_platform, i);
      break;
    default:
      break;
  }
}

RequestTraits::Family family_of(std::string_view ua) {
  if (ua.substr(0, 8) != "Mozilla/") return RequestTraits::Family::none;
  if (ua.find("Firefox/") != std::string_view::npos) return RequestTraits::Family::firefox;
  if (ua.find("Chrome/") != std::string_view::npos ||
      ua.find("Chromium/") != std::string_view::npos) {
    return RequestTraits::Family::chromium;
  }
  if (ua.find("Safari/") != std::string_view::npos &&
      ua.find("AppleWebKit/") != std::string_view::npos) {
    return RequestTraits::Family::safari;
  }
  return RequestTraits::Family::none;
}

// One order check: counts only when both headers are present.
inline void order_check(int first, int second, int& checks, int& failed) {
  if (first < 0 || second < 0) return;
  ++checks;
  if (first > second) ++failed;
}

}  // namespace

uint64_t hash_bytes(std::string_view s) {
  constexpr uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL,
                     k2 = 0x8ebc6af09c88c6e3ULL;
  uint64_t h = k2 ^ (s.size() * k0);
  const char* p = s.data();
  std::size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = mum(h ^ w ^ k0, k1);
    p += 8;
    n -= 8;
  }
  uint64_t tail = 0;
  if (n) std::memcpy(&tail, p, n);
  return mum(h ^ tail ^ k1, k0 ^ s.size());
}

bool is_asset_path(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  const std::string_view last = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const std::size_t dot = last.rfind('.');
  if (dot == std::string_view::npos) return false;
  const std::string_view ext = last.substr(dot + 1);
  static constexpr std::string_view kExt[] = {"css",  "js",  "mjs",  "map",   "png", "jpg",
                                              "jpeg", "gif", "svg",  "webp",  "avif", "ico",
                                              "bmp",  "woff", "woff2", "ttf", "otf", "eot"};
  for (std::string_view e : kExt) {
    if (iequals(ext, e)) return true;
  }
  return false;
}

bool is_deep_url(std::string_view target) {
  static constexpr std::string_view kMarkers[] = {
      "oldid=",     "diff=",     "action=history", "action=info", "action=raw", "Special:",
      "special:",   "/history",  "curid=",         "printable=",  "/archive",   "/Archive",
      "/revisions", "/History"};
  if (contains_any(target, kMarkers)) return true;
  const std::size_t q = target.find('?');
  return has_dated_segment(q == std::string_view::npos ? target : target.substr(0, q));
}

RequestTraits RequestTraits::analyse(const RequestView& view) {
  RequestTraits t;
  HeaderPositions pos;
  const std::size_t count = view.headers.size();
  for (std::size_t i = 0; i < count; ++i) locate(view.headers[i].name, static_cast<int>(i), pos);
  t.header_count = static_cast<uint8_t>(std::min<std::size_t>(count, 255));
  auto value = [&](int i) { return i < 0 ? std::string_view{} : view.headers[i].value; };

  const std::string_view target = strip_fragment(origin_form(view.target));
  const std::size_t q = target.find('?');
  const std::string_view path = q == std::string_view::npos ? target : target.substr(0, q);
  t.target_hash = hash_bytes(target);
  t.robots = path == "/robots.txt";
  t.asset = is_asset_path(path);
  const bool sitemap = path.substr(0, 8) == "/sitemap" &&
                       (iends_with(path, ".xml") || iends_with(path, ".xml.gz"));
  t.page = !t.asset && !t.robots && !sitemap;
  t.deep = is_deep_url(target);

  t.has_cookie = pos.cookie >= 0;
  t.has_referer = pos.referer >= 0 && !value(pos.referer).empty();
  if (t.has_referer) {
    std::string_view authority;
    const std::string_view ref = strip_fragment(origin_form(value(pos.referer), &authority));
    const std::string_view host = value(pos.host);
    // A Referer from another site says nothing about pages this client fetched here.
    const bool same_site = authority.empty() || host.empty() || iequals(authority, host);
    if (!ref.empty() && same_site) t.referer_hash = hash_bytes(ref);
  }
  t.http10 = view.version == 10;

  const std::string_view ua = value(pos.user_agent);
  t.ua_hash = static_cast<uint32_t>(hash_bytes(ua));
  t.family = family_of(ua);
  static constexpr std::string_view kHeadless[] = {"Headless", "headless", "PhantomJS", "Puppeteer",
                                                   "puppeteer", "Playwright", "playwright",
                                                   "Selenium", "selenium", "WebDriver", "webdriver"};
  static constexpr std::string_view kHeadlessHint[] = {"Headless"};
  t.headless = contains_any(ua, kHeadless) || contains_any(value(pos.sec_ch_ua), kHeadlessHint);

  if (t.family != Family::none) {
    int expected = 6;
    int missing = (pos.accept < 0) + (pos.accept_language < 0) + (pos.accept_encoding < 0) +
                  (pos.sec_fetch_site < 0) + (pos.sec_fetch_mode < 0) + (pos.sec_fetch_dest < 0);
    int checks = 0, failed = 0;
    if (!t.http10 && pos.host >= 0) {
      ++checks;
      if (pos.host != 0) ++failed;  // browsers send Host first on HTTP/1.1
    }
    order_check(pos.accept, pos.accept_encoding, checks, failed);
    switch (t.family) {
      case Family::chromium:
        expected += 3;
        missing += (pos.sec_ch_ua < 0) + (pos.sec_ch_ua_mobile < 0) + (pos.sec_ch_ua_platform < 0);
        order_check(pos.user_agent, pos.accept, checks, failed);
        order_check(pos.accept_encoding, pos.accept_language, checks, failed);
        order_check(pos.sec_ch_ua, pos.user_agent, checks, failed);
        break;
      case Family::firefox:
        order_check(pos.user_agent, pos.accept, checks, failed);
        order_check(pos.accept_language, pos.accept_encoding, checks, failed);
        break;
      case Family::safari:
        order_check(pos.accept, pos.user_agent, checks, failed);
        order_check(pos.accept_language, pos.accept_encoding, checks, failed);
        break;
      case Family::none:
        break;
    }
    t.missing_headers = static_cast<float>(missing) / static_cast<float>(expected);
    t.order_anomaly = checks ? static_cast<float>(failed) / static_cast<float>(checks) : 0.0f;
  }
  return t;
}

namespace behaviour {

namespace {
constexpr double kNanosPerSecond = 1e9;
constexpr double kTaus[3] = {10.0, 60.0, 600.0};
constexpr uint32_t kWindow = 32;          // EW shares: running mean, then alpha = 1/32
constexpr Nanos kEpoch = 600'000'000'000;  // block address bitmaps: 10-minute epochs
constexpr double kNoGapMean = 3.0;        // gap_log_mean before a second request: 1000 s

inline float alpha(uint32_t n) { return 1.0f / static_cast<float>(std::min(n, kWindow)); }
inline void ew(float& share, float a, float x) { share += a * (x - share); }

inline uint16_t tag16(uint64_t h) { return static_cast<uint16_t>((h >> 48) | 1); }
}  // namespace

void apply(BehaviourState& s, const RequestTraits& t, Nanos now, uint64_t address_hash,
           bool block) {
  const bool first = s.n == 0;
  if (s.n < 0xffffffffu) ++s.n;
  if (first) {
    for (int i = 0; i < 3; ++i) s.rate[i] = static_cast<float>(1.0 / kTaus[i]);
  } else {
    const double dt = static_cast<double>(std::max<Nanos>(0, now - s.last_seen)) / kNanosPerSecond;
    for (int i = 0; i < 3; ++i) {
      s.rate[i] = static_cast<float>(s.rate[i] * std::exp(-dt / kTaus[i]) + 1.0 / kTaus[i]);
    }
    if (s.n_gaps < 0xffffffffu) ++s.n_gaps;
    const float x = static_cast<float>(std::log10(std::max(dt, 1e-3)));
    const float a = alpha(s.n_gaps);
    const float d = x - s.gap_mean;
    s.gap_mean += a * d;
    s.gap_var = (1.0f - a) * (s.gap_var + a * d * d);
  }
  s.last_seen = now;

  const float a = alpha(s.n);
  const std::size_t page_slot = t.referer_hash & (BehaviourState::kPageSlots - 1);
  const bool referer_known = t.referer_hash != 0 && s.pages[page_slot] == tag16(t.referer_hash);
  const std::size_t path_slot = t.target_hash & (BehaviourState::kPathSlots - 1);
  const uint16_t path_tag = tag16(t.target_hash);
  const bool new_path = s.paths[path_slot] != path_tag;

  ew(s.share[kHtml], a, t.page);
  ew(s.share[kAsset], a, t.asset);
  ew(s.share[kReferer], a, t.has_referer);
  ew(s.share[kRefererKnown], a, referer_known);
  ew(s.share[kCookie], a, t.has_cookie);
  ew(s.share[kNewPath], a, new_path);
  ew(s.share[kDeep], a, t.deep);
  ew(s.share[kMissing], a, t.missing_headers);
  ew(s.share[kOrder], a, t.order_anomaly);
  ew(s.share[kHttp10], a, t.http10);
  ew(s.share[kHeadless], a, t.headless);
  ew(s.share[kUaChange], a, !first && t.ua_hash != s.last_ua);

  if (new_path) {
    if (s.paths[path_slot] == 0) ++s.distinct;
    s.paths[path_slot] = path_tag;
  }
  if (t.page) {
    s.pages[t.target_hash & (BehaviourState::kPageSlots - 1)] = tag16(t.target_hash);
  }
  s.robots |= t.robots;
  s.last_ua = t.ua_hash;

  if (block) {
    if (first || now - s.epoch_start >= kEpoch) {
      s.addr_prev = (!first && now - s.epoch_start < 2 * kEpoch) ? s.addr_cur : 0;
      s.addr_cur = 0;
      s.epoch_start = now;
    }
    s.addr_cur |= uint64_t{1} << (address_hash >> 58);
  }
}

void apply_status(BehaviourState& s, int status) {
  if (status < 0) return;
  if (s.n_status < 0xffffffffu) ++s.n_status;
  ew(s.share[k404], alpha(s.n_status), status == 404);
}

double gap_sd(const BehaviourState& s) { return std::sqrt(std::max(0.0f, s.gap_var)); }

double block_addresses(const BehaviourState& b) {
  const int zeros = 64 - std::popcount(b.addr_cur | b.addr_prev);
  if (zeros == 0) return 64.0 * std::log(64.0);
  return -64.0 * std::log(zeros / 64.0);
}

void fill(FeatureVector& v, const BehaviourState& c, const BehaviourState& b,
          const RequestTraits& t) {
  v[Feature::rate_10s] = c.rate[0];
  v[Feature::rate_60s] = c.rate[1];
  v[Feature::rate_600s] = c.rate[2];
  v[Feature::requests_log2] = std::log2(1.0 + c.n);
  v[Feature::gap_log_mean] = c.n_gaps ? c.gap_mean : kNoGapMean;
  v[Feature::gap_log_sd] = gap_sd(c);
  v[Feature::html_share] = c.share[kHtml];
  v[Feature::asset_share] = c.share[kAsset];
  v[Feature::referer_share] = c.share[kReferer];
  v[Feature::referer_known_share] = c.share[kRefererKnown];
  v[Feature::cookie_share] = c.share[kCookie];
  v[Feature::new_path_share] = c.share[kNewPath];
  v[Feature::distinct_paths_log2] = std::log2(1.0 + c.distinct);
  v[Feature::deep_url_share] = c.share[kDeep];
  v[Feature::status_404_share] = c.share[k404];
  v[Feature::robots_fetched] = c.robots ? 1.0 : 0.0;
  v[Feature::browser_claim] = t.family != RequestTraits::Family::none ? 1.0 : 0.0;
  v[Feature::missing_browser_headers] = c.share[kMissing];
  v[Feature::header_order_anomaly] = c.share[kOrder];
  v[Feature::header_count] = t.header_count;
  v[Feature::http10_share] = c.share[kHttp10];
  v[Feature::headless_share] = c.share[kHeadless];
  v[Feature::ua_change_share] = c.share[kUaChange];
  v[Feature::block_rate_60s] = b.rate[1];
  v[Feature::block_addresses] = block_addresses(b);
  v[Feature::block_asset_share] = b.share[kAsset];
  v[Feature::block_new_path_share] = b.share[kNewPath];
  v[Feature::block_deep_url_share] = b.share[kDeep];
  v[Feature::block_referer_known_share] = b.share[kRefererKnown];
  v[Feature::block_gap_log_sd] = gap_sd(b);
}

}  // namespace behaviour
}  // namespace crawlgate
