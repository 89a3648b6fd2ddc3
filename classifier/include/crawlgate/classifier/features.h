// Behavioural features, computed online per request in bounded memory (docs/model.md, "Features").
//
// BehaviourTable keeps one BehaviourState per client key (the address masked to /32 v4, /64 v6 by
// default) and one per address block (/24 v4, /48 v6), so a crawler rotating through the addresses
// of a block is still seen as one. update() is O(1): it analyses the request once (no allocation),
// folds it into both states under their stripe locks, and returns the feature vector as it stands
// after this request.
//
// The response status is the one input known only at the end of a request. It is therefore never
// part of the vector update() returns for that same request: update(view, status, now) first
// computes the vector and then folds the status in, exactly as update(view, -1, now) followed by
// report_status(client, status) does. Offline extraction (status in the log) and the proxy (status
// reported later) see identical numbers.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "crawlgate/classifier/client_table.h"
#include "crawlgate/classifier/clock.h"
#include "crawlgate/rules/ip_address.h"
#include "crawlgate/rules/request_view.h"

namespace crawlgate {

// Feature indices. The names (FeatureVector::names()) go into model files: never rename or reorder
// an existing feature; add new ones at the end.
enum class Feature : uint8_t {
  rate_10s,                   // requests/s, exponentially decayed, time constant 10 s
  rate_60s,                   // ... 60 s
  rate_600s,                  // ... 600 s
  requests_log2,              // log2(1 + requests seen from this client)
  gap_log_mean,               // EW mean of log10(inter-arrival seconds), gaps floored at 1 ms
  gap_log_sd,                 // EW standard deviation of the same
  html_share,                 // share of page (non-asset, non-robots/sitemap) requests
  asset_share,                // share of css/js/image/font/favicon requests
  referer_share,              // share of requests with a Referer
  referer_known_share,        // share whose Referer is a target this client fetched recently
  cookie_share,               // share of requests carrying a Cookie
  new_path_share,             // share of requests for a target not in the recent-target set
  distinct_paths_log2,        // log2(1 + distinct targets in the recent-target set): crawl breadth
  deep_url_share,             // share of deep/archival URLs (history, oldid=, Special:, dated)
  status_404_share,           // share of 404 among requests whose status is known
  robots_fetched,             // 1 once this client fetched /robots.txt
  browser_claim,              // 1 when this request's User-Agent claims a browser family
  missing_browser_headers,    // EW mean share of the claimed family's always-sent headers missing
  header_order_anomaly,       // EW mean share of the claimed family's header-order checks failed
  header_count,               // number of header fields in this request
  http10_share,               // share of HTTP/1.0 requests
  headless_share,             // share of requests with a headless/automation marker
  ua_change_share,            // share of requests whose User-Agent differs from the previous one
  block_rate_60s,             // rate_60s of the address block (/24, /48)
  block_addresses,            // distinct client addresses seen in the block (last 10-20 min)
  block_asset_share,          // asset_share of the block
  block_new_path_share,       // new_path_share of the block
  block_deep_url_share,       // deep_url_share of the block
  block_referer_known_share,  // referer_known_share of the block
  block_gap_log_sd,           // gap_log_sd of the block
  count_
};

struct FeatureVector {
  static constexpr std::size_t kSize = static_cast<std::size_t>(Feature::count_);
  std::array<double, kSize> values{};

  double operator[](Feature f) const { return values[static_cast<std::size_t>(f)]; }
  double& operator[](Feature f) { return values[static_cast<std::size_t>(f)]; }
  double operator[](std::size_t i) const { return values[i]; }

  // Stable names, in index order.
  static const std::array<std::string_view, kSize>& names();
  static std::optional<std::size_t> index_of(std::string_view name);
};

// What one request contributes, derived from the RequestView alone (no state). Public so tests and
// tools can inspect the request-level signals.
struct RequestTraits {
  enum class Family : uint8_t { none, chromium, firefox, safari };
  uint64_t target_hash = 0;   // the target (origin-form, without fragment)
  uint64_t referer_hash = 0;  // the Referer's path and query, 0 when absent or unusable
  uint32_t ua_hash = 0;
  Family family = Family::none;
  bool asset = false;
  bool page = false;
  bool robots = false;
  bool deep = false;
  bool has_referer = false;
  bool has_cookie = false;
  bool http10 = false;
  bool headless = false;
  uint8_t header_count = 0;       // clamped to 255
  float missing_headers = 0;      // share of the family's always-sent headers missing (0: no claim)
  float order_anomaly = 0;        // share of the family's order checks failed (0: no claim)

  static RequestTraits analyse(const RequestView& view);
};

// Classification helpers used by analyse(), exposed for tests.
bool is_asset_path(std::string_view path);
bool is_deep_url(std::string_view target);

// The per-key state. Zero-initialised means "new". Plain data: the table allocates it zeroed.
struct BehaviourState {
  static constexpr std::size_t kShares = 13;
  static constexpr std::size_t kPageSlots = 64;  // recently fetched targets (Referer check)
  static constexpr std::size_t kPathSlots = 64;  // recently requested targets (distinct paths)

  ClientKey key;                 // 20 B
  uint8_t used = 0;
  uint8_t robots = 0;
  uint16_t distinct = 0;         // occupied slots of `paths`
  uint32_t n = 0;                // requests (saturating)
  uint32_t n_gaps = 0;
  uint32_t n_status = 0;
  uint32_t last_ua = 0;
  Nanos last_seen = 0;
  Nanos epoch_start = 0;         // block entries: the address bitmaps' epoch
  uint64_t addr_cur = 0, addr_prev = 0;
  float rate[3] = {0, 0, 0};
  float gap_mean = 0, gap_var = 0;
  float share[kShares] = {};
  uint16_t pages[kPageSlots] = {};  // 16-bit tags of page targets, direct-mapped
  uint16_t paths[kPathSlots] = {};  // 16-bit tags of all targets, direct-mapped
};

class BehaviourTable {
 public:
  struct Options {
    std::size_t max_clients = 100'000;
    std::size_t max_blocks = 0;  // 0: max_clients / 4 (at least 8)
    std::size_t stripes = 64;    // lock stripes per table
    unsigned client_v4_prefix = 32, client_v6_prefix = 64;
    unsigned block_v4_prefix = 24, block_v6_prefix = 48;
  };

  BehaviourTable() : BehaviourTable(Options{}) {}
  explicit BehaviourTable(const Options& options);
  ~BehaviourTable();
  BehaviourTable(const BehaviourTable&) = delete;
  BehaviourTable& operator=(const BehaviourTable&) = delete;

  // O(1). status_or_minus1 < 0: status not known yet (report it later with report_status).
  FeatureVector update(const RequestView& view, int status_or_minus1, Nanos now);
  // Folds a late-known status into the client's and block's 404 share. Absent entries are ignored.
  void report_status(const IpAddress& client, int status);

  ClientKey client_key(const IpAddress& address) const;
  ClientKey block_key(const IpAddress& address) const;
  std::optional<BehaviourState> find_client(const IpAddress& address) const;  // copies
  std::optional<BehaviourState> find_block(const IpAddress& address) const;

  std::size_t clients() const;          // client entries in use
  std::size_t blocks() const;           // block entries in use
  std::size_t client_capacity() const;  // max_clients rounded up to whole 8-way sets
  std::size_t block_capacity() const;
  std::uint64_t evictions() const;
  std::size_t memory_bytes() const;     // everything this table allocated

  // Per tracked client, worst case (every client in a block of its own): its behaviour entry, a
  // block entry, and the proxy's limit state in ClientTable (entry plus index).
  static constexpr std::size_t bytes_per_client() {
    return 2 * sizeof(BehaviourState) + ClientTable::bytes_per_entry();
  }

  class Store;  // one bounded set-associative table (clients or blocks)

 private:
  Options options_;
  std::unique_ptr<Store> clients_;
  std::unique_ptr<Store> blocks_;
};

static_assert(sizeof(BehaviourState) <= 400, "BehaviourState grew: recheck the 1 KiB budget");
static_assert(BehaviourTable::bytes_per_client() <= 1024,
              "per-client memory (behaviour + block + limit state) must stay within 1 KiB");

}  // namespace crawlgate
