// crawlgate's Prometheus metrics (docs/metrics.md). Families are registered once; per-request
// label lookups are precomputed per config (ConfigLabels), so the hot path is a few atomic adds.
// Boost-free: the admin listener in proxy/ only calls render().
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

namespace crawlgate::metrics {

// A histogram with atomic buckets: prometheus-cpp 1.0's Histogram locks a mutex per observation,
// which every I/O thread would contend on.
class LatencyHistogram {
 public:
  LatencyHistogram(std::string name, std::string help, std::vector<double> bounds_seconds);
  void observe(double seconds);
  prometheus::MetricFamily collect() const;

 private:
  std::string name_;
  std::string help_;
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1 (+Inf)
  std::atomic<std::uint64_t> sum_nanos_{0};
};

enum class RequestAction : std::uint8_t {
  kAllow,
  kDeny,
  kThrottle,   // held to a limit and let through
  kThrottled,  // refused by a limit (429)
  kTarpit,     // held, then 429
  kLog,
  kStatic,
  kError,
};
inline constexpr std::size_t kActionCount = 8;
RequestAction parse_request_action(std::string_view action);
std::string_view request_action_name(RequestAction action);

// Counter handles for one config's classes and rules. Built when a config is loaded, off the I/O
// threads; immutable afterwards and shared by the snapshot.
class ConfigLabels {
 public:
  static constexpr std::uint16_t kUnclassified = 0;

  std::uint16_t class_index(std::string_view name) const;  // unknown or "" -> kUnclassified
  std::uint16_t rule_class_index(std::uint32_t rule_index) const;
  bool is_bot(std::uint16_t class_index) const;  // anything but unclassified and "human"
  prometheus::Counter& requests(std::uint16_t class_index, RequestAction action,
                                bool enforced) const;
  // Created on the first match, so only rules that ever matched become series.
  prometheus::Counter* rule_match(std::uint32_t rule_index, bool enforced) const;
  prometheus::Counter& throttled(std::uint16_t class_index) const;
  prometheus::Counter& tarpitted(std::uint16_t class_index) const;
  prometheus::Counter& denied(std::uint16_t class_index) const;

 private:
  friend class Metrics;
  struct ClassCounters {
    std::string name;
    bool bot = true;
    prometheus::Counter* requests[kActionCount][2] = {};  // [action][enforced]
    prometheus::Counter* throttled = nullptr;
    prometheus::Counter* tarpitted = nullptr;
    prometheus::Counter* denied = nullptr;
  };
  std::vector<ClassCounters> classes_;
  std::vector<std::uint16_t> rule_class_;
  std::vector<std::string> rule_names_;
  prometheus::Family<prometheus::Counter>* rule_family_ = nullptr;
  mutable std::unique_ptr<std::atomic<prometheus::Counter*>[]> rule_matches_;  // [rule*2+enforced]
};

// A value read when /metrics is rendered (connections open, client-table size, ...): the owner
// keeps its own atomics and crawlgate does no work for it on the request path.
struct PulledValue {
  prometheus::Labels labels;
  std::function<double()> read;
};

class Metrics {
 public:
  explicit Metrics(std::string version);

  std::shared_ptr<const ConfigLabels> labels_for(
      const std::vector<std::string>& class_names,
      const std::vector<std::pair<std::string, std::string>>& rules);  // (rule, class)

  void on_config_loaded(std::uint64_t generation, std::size_t rules, std::size_t patterns);
  void on_reload_failed();

  // Families whose value lives elsewhere; call before serving /metrics for the first time.
  void add_pulled(std::string name, std::string help, prometheus::MetricType type,
                  std::vector<PulledValue> values);

  // One finished request. `from_upstream`: the response came from the site, not crawlgate.
  struct RequestRecord {
    const ConfigLabels* labels = nullptr;
    std::uint16_t class_index = ConfigLabels::kUnclassified;
    std::uint32_t rule_index = UINT32_MAX;
    RequestAction action = RequestAction::kAllow;
    bool enforced = true;
    bool shadow_rule_matched = false;
    std::uint32_t shadow_rule_index = UINT32_MAX;
    int status = 0;
    bool from_upstream = false;
    std::uint64_t bytes = 0;
    double duration_seconds = 0;
    double upstream_seconds = -1;  // < 0: no upstream exchange
  };
  void record(const RequestRecord& record);

  std::string render() const;
  prometheus::Registry& registry() { return *registry_; }

  LatencyHistogram& model_score() { return model_score_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& rule_matches_;
  prometheus::Family<prometheus::Counter>& responses_;
  prometheus::Family<prometheus::Counter>& response_bytes_;
  prometheus::Family<prometheus::Counter>& denied_;
  prometheus::Family<prometheus::Counter>& throttled_;
  prometheus::Family<prometheus::Counter>& tarpitted_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Family<prometheus::Gauge>& generation_family_;
  prometheus::Family<prometheus::Gauge>& last_success_family_;
  prometheus::Family<prometheus::Gauge>& rules_family_;
  prometheus::Family<prometheus::Gauge>& patterns_family_;
  prometheus::Counter* response_counters_[6][2] = {};  // [code class 1..5][from_upstream]
  prometheus::Counter* bytes_bots_ = nullptr;
  prometheus::Counter* bytes_humans_ = nullptr;
  prometheus::Counter* reload_success_ = nullptr;
  prometheus::Counter* reload_failure_ = nullptr;
  prometheus::Gauge* generation_ = nullptr;
  prometheus::Gauge* last_success_ = nullptr;
  prometheus::Gauge* rules_ = nullptr;
  prometheus::Gauge* patterns_ = nullptr;
  LatencyHistogram request_duration_;
  LatencyHistogram added_latency_;
  LatencyHistogram upstream_latency_;
  LatencyHistogram model_score_;

  struct Pulled {
    std::string name;
    std::string help;
    prometheus::MetricType type;
    std::vector<PulledValue> values;
  };
  mutable std::mutex pulled_mutex_;
  std::vector<Pulled> pulled_;
  mutable std::mutex labels_mutex_;  // Family::Add is thread-safe; this orders label builds
};

}  // namespace crawlgate::metrics
