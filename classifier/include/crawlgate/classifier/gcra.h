// GCRA (generic cell rate algorithm) with fractional rates, bursts and costs.
//
// Emission interval T = 1e9 / rate ns, tolerance tau = burst * T. A request of cost c at `now`:
//   new_tat = max(tat, now) + c*T;  allowed iff new_tat - now <= tau;  if allowed, tat = new_tat.
// c*T is rounded down to a whole nanosecond (so a burst of whole requests is never refused by
// rounding, e.g. 10 requests at 7/s, burst 10); spans are clamped to ~126 years so absurd limits
// (0.000001/d, burst 1e9) cannot overflow.
#pragma once

#include <atomic>

#include "crawlgate/classifier/clock.h"

namespace crawlgate {

struct RateLimit {
  double rate_per_second = 0;
  double burst = 0;
  bool enabled() const { return rate_per_second > 0 && burst >= 1; }
};

struct LimitDecision {
  bool allowed = true;
  Nanos retry_after = 0;  // 0 when allowed; else time until `cost` would fit ((new_tat-now-tau), rounded up)
  double remaining = 0;   // whole units left right after this decision: floor((tau - lag) / T) >= 0
  Nanos reset_after = 0;  // time until the bucket is full again: max(0, tat_after - now)
};
// A disabled limit (RateLimit::enabled() false) always allows, with all other fields 0, and leaves
// the state alone. A cost that is negative or NaN counts as 0 (a peek). A cost above the burst is
// always refused; its retry_after is still the formula's finite value.

// One 8-byte state: the theoretical arrival time. cost in units (1 = one request).
struct GcraState {
  Nanos tat = 0;
};

// Admits (and advances tat) only if allowed.
LimitDecision gcra_update(GcraState& state, const RateLimit& limit, double cost, Nanos now);

// The same, lock-free over an atomic TAT (a CAS loop), for limits shared by all threads
// (class-wide limits).
class SharedGcra {
 public:
  LimitDecision update(const RateLimit& limit, double cost, Nanos now);
  Nanos tat() const { return tat_.load(std::memory_order_relaxed); }

 private:
  std::atomic<Nanos> tat_{0};
};

}  // namespace crawlgate
