#include "crawlgate/classifier/clock.h"

#include <gtest/gtest.h>

namespace crawlgate {
namespace {

TEST(ClockTest, ManualClockStartsAdvancesAndSets) {
  ManualClock clock;
  EXPECT_EQ(clock.now(), 1'000'000'000);
  clock.advance(250);
  EXPECT_EQ(clock.now(), 1'000'000'250);
  clock.set(42);
  EXPECT_EQ(clock.now(), 42);
  ManualClock other(7);
  EXPECT_EQ(other.now(), 7);
  const Clock& as_base = other;
  EXPECT_EQ(as_base.now(), 7);
}

TEST(ClockTest, SteadyClockIsMonotonic) {
  const Clock& clock = SteadyClock::instance();
  EXPECT_EQ(&SteadyClock::instance(), &SteadyClock::instance());
  Nanos previous = clock.now();
  for (int i = 0; i < 1000; ++i) {
    const Nanos t = clock.now();
    EXPECT_GE(t, previous);
    previous = t;
  }
}

}  // namespace
}  // namespace crawlgate
