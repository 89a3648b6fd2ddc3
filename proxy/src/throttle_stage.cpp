#include "crawlgate/proxy/throttle_stage.h"

#include <hs/hs.h>

#include <cmath>
#include <cstdio>

namespace crawlgate::proxy {
namespace {

thread_local SharedLimiter* current_shared_limiter = nullptr;

std::string format_number(double value) {
  char buffer[32];
  if (std::floor(value) == value && std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof buffer, "%.0f", value);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.3g", value);
  }
  return buffer;
}

// Retry-After is whole seconds (RFC 9110 §10.2.3); never 0 for a refusal.
long retry_after_header(double seconds) {
  return std::max(1L, static_cast<long>(std::ceil(seconds)));
}

}  // namespace

SharedLimiter* SharedLimiter::current() { return current_shared_limiter; }
void SharedLimiter::set_current(SharedLimiter* limiter) { current_shared_limiter = limiter; }

ThrottleState::ThrottleState(const ThrottleSettings& settings, const Clock& clock)
    : clock_(clock), clients_(settings.client_table_size) {}

SharedGcra& ThrottleState::class_bucket(const std::string& class_name) {
  std::lock_guard lock(mutex_);
  auto& bucket = class_buckets_[class_name];
  if (!bucket) bucket = std::make_unique<SharedGcra>();
  return *bucket;
}

std::uint16_t ThrottleState::limit_id(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] =
      limit_ids_.emplace(name, static_cast<std::uint16_t>(limit_ids_.size() + 1));
  return it->second;
}

BehaviourTable& ThrottleState::behaviour_table(std::size_t max_clients) {
  std::lock_guard lock(mutex_);
  if (!behaviour_) {
    BehaviourTable::Options options;
    options.max_clients = max_clients;
    behaviour_ = std::make_unique<BehaviourTable>(options);
  }
  return *behaviour_;
}

void ThrottleState::describe_limit(std::uint16_t id, LimitInfo info) {
  std::lock_guard lock(mutex_);
  limit_info_[id] = std::move(info);
}

std::map<std::uint16_t, ThrottleState::LimitInfo> ThrottleState::limits() const {
  std::lock_guard lock(mutex_);
  return limit_info_;
}

std::shared_ptr<void> ThrottleState::try_hold(std::size_t max_held) {
  std::size_t held = held_.load(std::memory_order_relaxed);
  do {
    if (held >= max_held) return nullptr;
  } while (!held_.compare_exchange_weak(held, held + 1, std::memory_order_relaxed));
  // The token's deleter gives the slot back; `this` outlives every snapshot and session.
  return std::shared_ptr<void>(this, [](void* self) {
    static_cast<ThrottleState*>(self)->held_.fetch_sub(1, std::memory_order_relaxed);
  });
}

// `costs:` compiled into one Hyperscan database: one scan of the target, lowest id wins.
struct ThrottleStage::CostMatcher {
  hs_database_t* database = nullptr;
  hs_scratch_t* prototype = nullptr;
  std::vector<double> costs;
  ~CostMatcher() {
    if (prototype) hs_free_scratch(prototype);
    if (database) hs_free_database(database);
  }
};

std::shared_ptr<ThrottleStage> ThrottleStage::create(const Config& config, const RuleSet& rules,
                                                     std::shared_ptr<ThrottleState> state,
                                                     std::string* error) {
  std::shared_ptr<ThrottleStage> stage(new ThrottleStage());
  stage->state_ = std::move(state);
  stage->tarpit_delay_ = config.server.throttle.tarpit_delay;
  stage->max_tarpitted_ = config.server.throttle.max_tarpitted;
  bool any = false;
  stage->rules_.resize(rules.rule_count());
  for (std::uint32_t i = 0; i < rules.rule_count(); ++i) {
    const RuleConfig& rule = config.rules[i];
    RuleLimits& limits = stage->rules_[i];
    limits.applies = rule.action == Action::kThrottle || rule.action == Action::kTarpit;
    if (!limits.applies) continue;
    any = true;
    limits.tarpit = rule.action == Action::kTarpit;
    limits.cost = rule.cost;
    const ClassConfig* cls = config.find_class(rule.class_name);
    if (cls) {
      limits.ipv4_prefix = cls->ipv4_prefix;
      limits.ipv6_prefix = cls->ipv6_prefix;
      if (cls->class_limit) {
        limits.class_bucket = &stage->state_->class_bucket(cls->name);
        limits.class_limit = RateLimit{cls->class_limit->rate_per_second, cls->class_limit->burst};
      }
    }
    if (rule.limit) {
      limits.per_client = RateLimit{rule.limit->rate_per_second, rule.limit->burst};
      // Clients are counted per limit: a rule with a limit of its own counts apart from its
      // class; rules that share their class's limit share the client's budget.
      bool own_limit = !cls || !cls->limit || cls->limit->where.line != rule.limit->where.line ||
                       cls->limit->where.file != rule.limit->where.file;
      limits.policy = own_limit ? rule.name : rule.class_name;
      limits.limit_id = stage->state_->limit_id((own_limit ? "rule:" : "class:") + limits.policy);
      stage->state_->describe_limit(limits.limit_id,
                                    {limits.policy, *limits.per_client, limits.ipv4_prefix,
                                     limits.ipv6_prefix});
    } else {
      limits.policy = rule.class_name.empty() ? rule.name : rule.class_name;
    }
  }
  for (const ClassConfig& cls : config.classes) {
    if (cls.action != Action::kThrottle && cls.action != Action::kTarpit) continue;
    RuleLimits& limits = stage->classes_[cls.name];
    limits.applies = true;
    any = true;
    limits.tarpit = cls.action == Action::kTarpit;
    limits.ipv4_prefix = cls.ipv4_prefix;
    limits.ipv6_prefix = cls.ipv6_prefix;
    limits.policy = cls.name;
    if (cls.class_limit) {
      limits.class_bucket = &stage->state_->class_bucket(cls.name);
      limits.class_limit = RateLimit{cls.class_limit->rate_per_second, cls.class_limit->burst};
    }
    if (cls.limit) {
      limits.per_client = RateLimit{cls.limit->rate_per_second, cls.limit->burst};
      limits.limit_id = stage->state_->limit_id("class:" + cls.name);
      stage->state_->describe_limit(limits.limit_id, {cls.name, *limits.per_client,
                                                      limits.ipv4_prefix, limits.ipv6_prefix});
    }
  }
  if (!config.costs.empty()) {
    auto matcher = std::make_unique<CostMatcher>();
    std::vector<const char*> expressions;
    std::vector<unsigned> flags, ids;
    for (std::size_t i = 0; i < config.costs.size(); ++i) {
      const CostConfig& cost = config.costs[i];
      expressions.push_back(cost.path.text.c_str());
      unsigned f = HS_FLAG_SINGLEMATCH;
      if (!cost.path.case_sensitive) f |= HS_FLAG_CASELESS;
      if (cost.can_be_empty) f |= HS_FLAG_ALLOWEMPTY;
      flags.push_back(f);
      ids.push_back(static_cast<unsigned>(i));
      matcher->costs.push_back(cost.cost);
    }
    hs_compile_error_t* compile_error = nullptr;
    if (hs_compile_multi(expressions.data(), flags.data(), ids.data(),
                         static_cast<unsigned>(expressions.size()), HS_MODE_BLOCK, nullptr,
                         &matcher->database, &compile_error) != HS_SUCCESS) {
      if (error) *error = std::string("costs: ") + (compile_error ? compile_error->message : "?");
      hs_free_compile_error(compile_error);
      return nullptr;
    }
    if (hs_alloc_scratch(matcher->database, &matcher->prototype) != HS_SUCCESS) {
      if (error) *error = "costs: cannot allocate Hyperscan scratch";
      return nullptr;
    }
    stage->costs_ = std::move(matcher);
  }
  if (!any) return nullptr;
  return stage;
}

ThrottleStage::~ThrottleStage() = default;

double ThrottleStage::cost_of(std::string_view target) const {
  if (!costs_) return 1;
  // Per-thread scratch, re-cloned when a reload brings a new database.
  struct Scratch {
    const CostMatcher* owner = nullptr;
    hs_scratch_t* scratch = nullptr;
    ~Scratch() {
      if (scratch) hs_free_scratch(scratch);
    }
  };
  thread_local Scratch scratch;
  if (scratch.owner != costs_.get()) {
    if (scratch.scratch) hs_free_scratch(scratch.scratch);
    scratch.scratch = nullptr;
    if (hs_clone_scratch(costs_->prototype, &scratch.scratch) != HS_SUCCESS) return 1;
    scratch.owner = costs_.get();
  }
  unsigned best = UINT32_MAX;
  hs_scan(
      costs_->database, target.data(), static_cast<unsigned>(target.size()), 0, scratch.scratch,
      [](unsigned id, unsigned long long, unsigned long long, unsigned, void* context) {
        unsigned& best_id = *static_cast<unsigned*>(context);
        if (id < best_id) best_id = id;
        return 0;
      },
      &best);
  return best == UINT32_MAX ? 1 : costs_->costs[best];
}

LocalResponse ThrottleStage::over_limit(const RuleLimits& limits, const RequestContext& context,
                                        double retry_after_seconds, double remaining,
                                        bool tarpit) {
  LocalResponse response = error_response(
      429, context.request_id,
      "This client (class " + (context.traffic_class.empty() ? std::string("-")
                                                               : context.traffic_class) +
          ") is over its request budget for this site. Retry after " +
          std::to_string(retry_after_header(retry_after_seconds)) + " seconds.");
  long retry_after = retry_after_header(retry_after_seconds);
  response.headers.emplace_back("Retry-After", std::to_string(retry_after));
  if (limits.per_client) {
    const RateLimit& limit = *limits.per_client;
    double window = limit.burst / limit.rate_per_second;
    response.headers.emplace_back("RateLimit-Policy",
                                  "\"" + limits.policy + "\";q=" + format_number(limit.burst) +
                                      ";w=" + format_number(std::ceil(window)));
    response.headers.emplace_back("RateLimit", "\"" + limits.policy + "\";r=" +
                                                   format_number(std::floor(remaining)) +
                                                   ";t=" + std::to_string(retry_after));
  }
  if (tarpit) response.delay = tarpit_delay_;
  return response;
}

StageVerdict ThrottleStage::refuse(const RuleLimits& limits, RequestContext& context,
                                   double retry_after_seconds, double remaining) {
  std::shared_ptr<void> hold;
  if (limits.tarpit && tarpit_delay_.count() > 0) hold = state_->try_hold(max_tarpitted_);
  // Beyond max_tarpitted the answer goes out at once: held connections are bounded.
  bool tarpit = hold != nullptr;
  context.response = over_limit(limits, context, retry_after_seconds, remaining, tarpit);
  context.response->hold = std::move(hold);
  context.action = tarpit ? "tarpit" : "throttled";
  return StageVerdict::kRespond;
}

const ThrottleStage::RuleLimits* ThrottleStage::limits_for(const RequestContext& context) const {
  if (context.rule_index < rules_.size()) return &rules_[context.rule_index];
  if (context.traffic_class.empty()) return nullptr;
  auto it = classes_.find(context.traffic_class);
  return it == classes_.end() ? nullptr : &it->second;
}

StageVerdict ThrottleStage::evaluate(const RequestView& request, RequestContext& context,
                                     const ResumeFn& resume) {
  if (!context.enforced) return StageVerdict::kContinue;
  const RuleLimits* found = limits_for(context);
  if (!found || !found->applies) return StageVerdict::kContinue;
  const RuleLimits& limits = *found;
  double cost = limits.cost ? *limits.cost : cost_of(request.target);
  Nanos now = state_->clock().now();

  LimitDecision client_decision;
  ClientKey key;
  if (limits.per_client) {
    key = ClientKey::make(request.client_ip, limits.ipv4_prefix, limits.ipv6_prefix,
                          limits.limit_id);
    client_decision = state_->clients().with_entry(key, now, [&](ClientEntry& entry, bool) {
      entry.last_seen = now;
      return gcra_update(entry.limit, *limits.per_client, cost, now);
    });
  }
  LimitDecision class_decision;
  if (client_decision.allowed && limits.class_bucket) {
    class_decision = limits.class_bucket->update(limits.class_limit, cost, now);
  }
  if (!client_decision.allowed || !class_decision.allowed) {
    Nanos retry = std::max(client_decision.retry_after, class_decision.retry_after);
    return refuse(limits, context, static_cast<double>(retry) / 1e9,
                  client_decision.allowed ? class_decision.remaining : client_decision.remaining);
  }

  // Shared mode: Redis holds the per-client budget across instances. The local decision above
  // stands whenever Redis does not answer within its budget.
  SharedLimiter* shared = limits.per_client ? SharedLimiter::current() : nullptr;
  if (!shared) return StageVerdict::kContinue;
  char key_text[64];
  std::snprintf(key_text, sizeof key_text, "%u:", limits.limit_id);
  std::string redis_key = key_text + IpAddress::v6(key.address).to_string() + "/" +
                          std::to_string(key.prefix_len);
  const RuleLimits* limits_ptr = &limits;
  // The stage outlives the callback: the snapshot holding it is kept by the suspended request.
  shared->check(redis_key, *limits.per_client, cost,
                [this, limits_ptr, &context, resume](std::optional<SharedLimiter::Result> result) {
                  if (result && !result->allowed) {
                    resume(refuse(*limits_ptr, context, result->retry_after_seconds,
                                  result->remaining));
                    return;
                  }
                  resume(StageVerdict::kContinue);
                });
  return StageVerdict::kSuspend;
}

}  // namespace crawlgate::proxy
