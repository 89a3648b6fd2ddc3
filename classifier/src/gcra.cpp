#include "crawlgate/classifier/gcra.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace crawlgate {
namespace {

// Longest span the arithmetic uses (~126 years): far beyond any real limit, far from overflow.
constexpr double kMaxSpan = 4.0e18;

Nanos sat_add(Nanos a, Nanos b) {
  Nanos r;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<Nanos>::max() : std::numeric_limits<Nanos>::min();
  }
  return r;
}

Nanos sat_sub(Nanos a, Nanos b) {
  Nanos r;
  if (__builtin_sub_overflow(a, b, &r)) {
    return b < 0 ? std::numeric_limits<Nanos>::max() : std::numeric_limits<Nanos>::min();
  }
  return r;
}

struct Step {
  LimitDecision decision;
  Nanos new_tat;
  bool store;
};

Step gcra_step(Nanos tat, const RateLimit& limit, double cost, Nanos now) {
  if (!limit.enabled()) return {LimitDecision{}, tat, false};
  if (!(cost > 0)) cost = 0;  // negative or NaN
  const double interval = 1e9 / limit.rate_per_second;  // T
  const double tau = std::min(limit.burst * interval, kMaxSpan);
  const Nanos increment = static_cast<Nanos>(std::min(std::floor(cost * interval), kMaxSpan));
  const Nanos new_tat = sat_add(std::max(tat, now), increment);
  // Differences are small, so they convert to double exactly even when `now` is past 2^53.
  const double ahead = static_cast<double>(sat_sub(new_tat, now));

  LimitDecision d;
  d.allowed = ahead <= tau;
  const Nanos tat_after = d.allowed ? new_tat : tat;
  if (!d.allowed) {
    d.retry_after = std::max<Nanos>(1, static_cast<Nanos>(std::min(std::ceil(ahead - tau), kMaxSpan)));
  }
  // A TAT behind `now` is a full bucket: the lag never counts as negative.
  const Nanos lag = std::max<Nanos>(0, sat_sub(tat_after, now));
  d.reset_after = lag;
  // The 1e-9 absorbs floating-point error of an exact whole quotient (e.g. 2.9999999999 for 3).
  d.remaining = std::max(0.0, std::floor((tau - static_cast<double>(lag)) / interval + 1e-9));
  return {d, tat_after, d.allowed};
}

}  // namespace

LimitDecision gcra_update(GcraState& state, const RateLimit& limit, double cost, Nanos now) {
  const Step step = gcra_step(state.tat, limit, cost, now);
  if (step.store) state.tat = step.new_tat;
  return step.decision;
}

LimitDecision SharedGcra::update(const RateLimit& limit, double cost, Nanos now) {
  Nanos tat = tat_.load(std::memory_order_acquire);
  for (;;) {
    const Step step = gcra_step(tat, limit, cost, now);
    if (!step.store || step.new_tat == tat) return step.decision;
    if (tat_.compare_exchange_weak(tat, step.new_tat, std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      return step.decision;
    }
  }
}

}  // namespace crawlgate
