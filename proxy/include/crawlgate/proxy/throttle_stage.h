// The throttling stage: per-client and class-wide GCRA budgets for requests whose deciding rule
// (or class) is `throttle` or `tarpit`, spent in cost units. Over the limit: 429 with Retry-After
// and RateLimit headers, or a held (tarpit) 429. Boost-free; the proxy owns the timer.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crawlgate/classifier/client_table.h"
#include "crawlgate/classifier/clock.h"
#include "crawlgate/classifier/features.h"
#include "crawlgate/classifier/gcra.h"
#include "crawlgate/proxy/pipeline.h"

namespace crawlgate::proxy {

// Decisions shared between instances (Redis). Implemented by the proxy per I/O thread; absent
// when no `redis:` is configured or on threads without one.
class SharedLimiter {
 public:
  struct Result {
    bool allowed = true;
    double retry_after_seconds = 0;
    double remaining = 0;
  };
  virtual ~SharedLimiter() = default;
  // Calls `done` exactly once on the calling thread's event loop: a result, or nullopt when the
  // shared store is down or slower than its budget (the local decision stands).
  virtual void check(const std::string& key, const RateLimit& limit, double cost,
                     std::function<void(std::optional<Result>)> done) = 0;
  // The limiter of the calling I/O thread, or null.
  static SharedLimiter* current();
  static void set_current(SharedLimiter* limiter);
};

// State that outlives requests and config reloads: the client table, class-wide buckets and the
// tarpit slots. Created once per process.
class ThrottleState {
 public:
  ThrottleState(const ThrottleSettings& settings, const Clock& clock);
  ClientTable& clients() { return clients_; }
  const Clock& clock() const { return clock_; }
  // Stable for the life of the process, created on first use (at config build time).
  SharedGcra& class_bucket(const std::string& class_name);
  std::uint16_t limit_id(const std::string& name);

  // What each limit id counts, for the admin API: keyed by id, the latest config's view.
  struct LimitInfo {
    std::string name;
    RateLimit limit;
    unsigned ipv4_prefix = 32;
    unsigned ipv6_prefix = 64;
  };
  void describe_limit(std::uint16_t id, LimitInfo info);
  std::map<std::uint16_t, LimitInfo> limits() const;

  // The behaviour features' table; created by the first config that enables the model, with
  // that config's size (later sizes take effect on restart).
  BehaviourTable& behaviour_table(std::size_t max_clients);

  // A held answer's slot: released when the answer is written or its connection dropped.
  std::shared_ptr<void> try_hold(std::size_t max_held);
  std::size_t held() const { return held_.load(std::memory_order_relaxed); }

 private:
  const Clock& clock_;
  ClientTable clients_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<SharedGcra>> class_buckets_;
  std::map<std::string, std::uint16_t> limit_ids_;
  std::map<std::uint16_t, LimitInfo> limit_info_;
  std::unique_ptr<BehaviourTable> behaviour_;
  std::atomic<std::size_t> held_{0};
};

class ThrottleStage final : public Stage {
 public:
  // Null when no rule throttles; `error` is set when the costs cannot be compiled.
  static std::shared_ptr<ThrottleStage> create(const Config& config, const RuleSet& rules,
                                               std::shared_ptr<ThrottleState> state,
                                               std::string* error);
  ~ThrottleStage() override;
  std::string_view name() const override { return "limits"; }
  StageVerdict evaluate(const RequestView& request, RequestContext& context,
                        const ResumeFn& resume) override;

  // The cost of a request by its target (`costs:`), 1 when nothing matches.
  double cost_of(std::string_view target) const;

 private:
  struct RuleLimits {
    bool applies = false;  // throttle or tarpit
    bool tarpit = false;
    std::optional<RateLimit> per_client;
    std::uint16_t limit_id = 0;
    SharedGcra* class_bucket = nullptr;
    RateLimit class_limit;
    unsigned ipv4_prefix = 32;
    unsigned ipv6_prefix = 64;
    std::optional<double> cost;
    std::string policy;  // the RateLimit policy name: the rule's limit, or the class
  };
  struct CostMatcher;

  ThrottleStage() = default;
  LocalResponse over_limit(const RuleLimits& limits, const RequestContext& context,
                           double retry_after_seconds, double remaining, bool tarpit);
  StageVerdict refuse(const RuleLimits& limits, RequestContext& context,
                      double retry_after_seconds, double remaining);

  const RuleLimits* limits_for(const RequestContext& context) const;

  std::shared_ptr<ThrottleState> state_;
  std::vector<RuleLimits> rules_;
  // Limits of throttle/tarpit classes, for clients a class was given without a rule (the model).
  std::map<std::string, RuleLimits, std::less<>> classes_;
  std::unique_ptr<CostMatcher> costs_;
  std::chrono::milliseconds tarpit_delay_{10'000};
  std::size_t max_tarpitted_ = 1000;
};

}  // namespace crawlgate::proxy
