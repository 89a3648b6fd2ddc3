#include "crawlgate/classifier/clock.h"

#include <chrono>

namespace crawlgate {

Nanos SteadyClock::now() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const SteadyClock& SteadyClock::instance() {
  static const SteadyClock clock;
  return clock;
}

ManualClock::ManualClock(Nanos start) : now_(start) {}

Nanos ManualClock::now() const { return now_.load(std::memory_order_acquire); }

void ManualClock::advance(Nanos by) { now_.fetch_add(by, std::memory_order_acq_rel); }

void ManualClock::set(Nanos t) { now_.store(t, std::memory_order_release); }

}  // namespace crawlgate
