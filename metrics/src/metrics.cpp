#include "crawlgate/metrics/metrics.h"

#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace crawlgate::metrics {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;

// 50 µs .. 10 s: the added latency lives at the low end, upstream and tarpit at the high end.
std::vector<double> latency_bounds() {
  return {0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,   0.5,    1,     2.5,   5,     10};
}

constexpr std::string_view kActionNames[kActionCount] = {
    "allow", "deny", "throttle", "throttled", "tarpit", "log", "static", "error"};

}  // namespace

LatencyHistogram::LatencyHistogram(std::string name, std::string help,
                                   std::vector<double> bounds_seconds)
    : name_(std::move(name)),
      help_(std::move(help)),
      bounds_(std::move(bounds_seconds)),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

void LatencyHistogram::observe(double seconds) {
  std::size_t bucket =
      static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), seconds) -
                               bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  double nanos = std::max(0.0, seconds) * 1e9;
  sum_nanos_.fetch_add(static_cast<std::uint64_t>(nanos), std::memory_order_relaxed);
}

prometheus::MetricFamily LatencyHistogram::collect() const {
  prometheus::MetricFamily family;
  family.name = name_;
  family.help = help_;
  family.type = prometheus::MetricType::Histogram;
  prometheus::ClientMetric metric;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    prometheus::ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    bucket.upper_bound =
        i < bounds_.size() ? bounds_[i] : std::numeric_limits<double>::infinity();
    metric.histogram.bucket.push_back(bucket);
  }
  metric.histogram.sample_count = cumulative;
  metric.histogram.sample_sum = static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9;
  family.metric.push_back(std::move(metric));
  return family;
}

RequestAction parse_request_action(std::string_view action) {
  for (std::size_t i = 0; i < kActionCount; ++i) {
    if (kActionNames[i] == action) return static_cast<RequestAction>(i);
  }
  return RequestAction::kAllow;
}

std::string_view request_action_name(RequestAction action) {
  return kActionNames[static_cast<std::size_t>(action)];
}

std::uint16_t ConfigLabels::class_index(std::string_view name) const {
  if (name.empty()) return kUnclassified;
  for (std::size_t i = 1; i < classes_.size(); ++i) {
    if (classes_[i].name == name) return static_cast<std::uint16_t>(i);
  }
  return kUnclassified;
}

std::uint16_t ConfigLabels::rule_class_index(std::uint32_t rule_index) const {
  return rule_index < rule_class_.size() ? rule_class_[rule_index] : kUnclassified;
}

bool ConfigLabels::is_bot(std::uint16_t class_index) const { return classes_[class_index].bot; }

prometheus::Counter& ConfigLabels::requests(std::uint16_t class_index, RequestAction action,
                                            bool enforced) const {
  return *classes_[class_index].requests[static_cast<std::size_t>(action)][enforced ? 1 : 0];
}

prometheus::Counter* ConfigLabels::rule_match(std::uint32_t rule_index, bool enforced) const {
  if (rule_index >= rule_names_.size()) return nullptr;
  std::atomic<prometheus::Counter*>& slot = rule_matches_[rule_index * 2 + (enforced ? 1 : 0)];
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter) return counter;
  // Family::Add is thread-safe and returns the same counter for the same labels: a race here
  // only stores the same pointer twice.
  counter = &rule_family_->Add(
      {{"rule", rule_names_[rule_index]}, {"mode", enforced ? "enforced" : "shadow"}});
  slot.store(counter, std::memory_order_release);
  return counter;
}

prometheus::Counter& ConfigLabels::throttled(std::uint16_t class_index) const {
  return *classes_[class_index].throttled;
}
prometheus::Counter& ConfigLabels::tarpitted(std::uint16_t class_index) const {
  return *classes_[class_index].tarpitted;
}
prometheus::Counter& ConfigLabels::denied(std::uint16_t class_index) const {
  return *classes_[class_index].denied;
}

Metrics::Metrics(std::string version)
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("crawlgate_requests_total")
                    .Help("Requests by client class and the action taken")
                    .Register(*registry_)),
      rule_matches_(BuildCounter()
                        .Name("crawlgate_rule_matches_total")
                        .Help("Deciding rule matches, enforced or in shadow mode")
                        .Register(*registry_)),
      responses_(BuildCounter()
                     .Name("crawlgate_responses_total")
                     .Help("Responses by status class and source (upstream or crawlgate)")
                     .Register(*registry_)),
      response_bytes_(BuildCounter()
                          .Name("crawlgate_response_bytes_total")
                          .Help("Response body bytes sent to bots and to humans")
                          .Register(*registry_)),
      denied_(BuildCounter()
                  .Name("crawlgate_denied_requests_total")
                  .Help("Requests answered by crawlgate instead of the site (deny, 429, tarpit)")
                  .Register(*registry_)),
      throttled_(BuildCounter()
                     .Name("crawlgate_throttled_total")
                     .Help("Requests refused by a limit (429)")
                     .Register(*registry_)),
      tarpitted_(BuildCounter()
                     .Name("crawlgate_tarpitted_total")
                     .Help("Requests held by the tarpit")
                     .Register(*registry_)),
      reloads_(BuildCounter()
                   .Name("crawlgate_config_reloads_total")
                   .Help("Config loads and reloads by result")
                   .Register(*registry_)),
      generation_family_(BuildGauge()
                             .Name("crawlgate_config_generation")
                             .Help("Generation of the config in use")
                             .Register(*registry_)),
      last_success_family_(BuildGauge()
                               .Name("crawlgate_config_last_reload_success_timestamp_seconds")
                               .Help("Unix time of the last successful config load")
                               .Register(*registry_)),
      rules_family_(BuildGauge()
                        .Name("crawlgate_rules")
                        .Help("Rules in the config in use")
                        .Register(*registry_)),
      patterns_family_(BuildGauge()
                           .Name("crawlgate_rule_patterns")
                           .Help("Distinct signature patterns compiled")
                           .Register(*registry_)),
      request_duration_("crawlgate_request_duration_seconds",
                        "From the request head parsed to the response written", latency_bounds()),
      added_latency_("crawlgate_added_latency_seconds",
                     "crawlgate's own share of a relayed request's duration", latency_bounds()),
      upstream_latency_("crawlgate_upstream_latency_seconds",
                        "Upstream request written to upstream response head read",
                        latency_bounds()),
      model_score_("crawlgate_model_score", "Behavioural model scores",
                   {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99}) {
  BuildGauge()
      .Name("crawlgate_build_info")
      .Help("crawlgate version")
      .Register(*registry_)
      .Add({{"version", std::move(version)}})
      .Set(1);
  static constexpr const char* kCodes[6] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (int code = 1; code <= 5; ++code) {
    response_counters_[code][0] = &responses_.Add({{"code", kCodes[code]}, {"source", "crawlgate"}});
    response_counters_[code][1] = &responses_.Add({{"code", kCodes[code]}, {"source", "upstream"}});
  }
  bytes_bots_ = &response_bytes_.Add({{"audience", "bots"}});
  bytes_humans_ = &response_bytes_.Add({{"audience", "humans"}});
  reload_success_ = &reloads_.Add({{"result", "success"}});
  reload_failure_ = &reloads_.Add({{"result", "failure"}});
  generation_ = &generation_family_.Add({});
  last_success_ = &last_success_family_.Add({});
  rules_ = &rules_family_.Add({});
  patterns_ = &patterns_family_.Add({});
}

std::shared_ptr<const ConfigLabels> Metrics::labels_for(
    const std::vector<std::string>& class_names,
    const std::vector<std::pair<std::string, std::string>>& rules) {
  std::lock_guard lock(labels_mutex_);
  auto labels = std::make_shared<ConfigLabels>();
  std::vector<std::string> names = {"unclassified"};
  for (const std::string& name : class_names) {
    if (name != "unclassified") names.push_back(name);
  }
  for (const std::string& name : names) {
    ConfigLabels::ClassCounters counters;
    counters.name = name;
    counters.bot = name != "unclassified" && name != "human";
    for (std::size_t action = 0; action < kActionCount; ++action) {
      for (int enforced = 0; enforced < 2; ++enforced) {
        counters.requests[action][enforced] =
            &requests_.Add({{"class", name},
                            {"action", std::string(kActionNames[action])},
                            {"enforced", enforced ? "true" : "false"}});
      }
    }
    counters.throttled = &throttled_.Add({{"class", name}});
    counters.tarpitted = &tarpitted_.Add({{"class", name}});
    counters.denied = &denied_.Add({{"class", name}});
    labels->classes_.push_back(std::move(counters));
  }
  labels->rule_class_.reserve(rules.size());
  labels->rule_names_.reserve(rules.size());
  for (const auto& [rule, class_name] : rules) {
    labels->rule_class_.push_back(labels->class_index(class_name));
    labels->rule_names_.push_back(rule);
  }
  labels->rule_family_ = &rule_matches_;
  labels->rule_matches_ = std::make_unique<std::atomic<prometheus::Counter*>[]>(rules.size() * 2);
  return labels;
}

void Metrics::on_config_loaded(std::uint64_t generation, std::size_t rules,
                               std::size_t patterns) {
  reload_success_->Increment();
  generation_->Set(static_cast<double>(generation));
  rules_->Set(static_cast<double>(rules));
  patterns_->Set(static_cast<double>(patterns));
  last_success_->Set(std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count());
}

void Metrics::on_reload_failed() { reload_failure_->Increment(); }

void Metrics::add_pulled(std::string name, std::string help, prometheus::MetricType type,
                         std::vector<PulledValue> values) {
  std::lock_guard lock(pulled_mutex_);
  pulled_.push_back(Pulled{std::move(name), std::move(help), type, std::move(values)});
}

void Metrics::record(const RequestRecord& r) {
  if (r.labels) {
    r.labels->requests(r.class_index, r.action, r.enforced).Increment();
    if (r.rule_index != UINT32_MAX) {
      if (auto* counter = r.labels->rule_match(r.rule_index, r.enforced)) counter->Increment();
    }
    if (r.shadow_rule_matched) {
      if (auto* counter = r.labels->rule_match(r.shadow_rule_index, false)) counter->Increment();
    }
    switch (r.action) {
      case RequestAction::kThrottled:
        r.labels->throttled(r.class_index).Increment();
        r.labels->denied(r.class_index).Increment();
        break;
      case RequestAction::kTarpit:
        r.labels->tarpitted(r.class_index).Increment();
        r.labels->denied(r.class_index).Increment();
        break;
      case RequestAction::kDeny:
        if (r.enforced) r.labels->denied(r.class_index).Increment();
        break;
      default:
        break;
    }
    (r.labels->is_bot(r.class_index) ? bytes_bots_ : bytes_humans_)
        ->Increment(static_cast<double>(r.bytes));
  }
  int code_class = r.status / 100;
  if (code_class >= 1 && code_class <= 5) {
    response_counters_[code_class][r.from_upstream ? 1 : 0]->Increment();
  }
  request_duration_.observe(r.duration_seconds);
  if (r.upstream_seconds >= 0) {
    upstream_latency_.observe(r.upstream_seconds);
    added_latency_.observe(std::max(0.0, r.duration_seconds - r.upstream_seconds));
  }
}

std::string Metrics::render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  families.push_back(request_duration_.collect());
  families.push_back(added_latency_.collect());
  families.push_back(upstream_latency_.collect());
  families.push_back(model_score_.collect());
  {
    std::lock_guard lock(pulled_mutex_);
    for (const Pulled& pulled : pulled_) {
      prometheus::MetricFamily family;
      family.name = pulled.name;
      family.help = pulled.help;
      family.type = pulled.type;
      for (const PulledValue& value : pulled.values) {
        prometheus::ClientMetric metric;
        metric.label.reserve(value.labels.size());
        for (const auto& [name, text] : value.labels) metric.label.push_back({name, text});
        double v = value.read();
        if (pulled.type == prometheus::MetricType::Counter) {
          metric.counter.value = v;
        } else {
          metric.gauge.value = v;
        }
        family.metric.push_back(std::move(metric));
      }
      families.push_back(std::move(family));
    }
  }
  std::sort(families.begin(), families.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace crawlgate::metrics
