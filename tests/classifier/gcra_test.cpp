#include "crawlgate/classifier/gcra.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "crawlgate/classifier/clock.h"

namespace crawlgate {
namespace {

constexpr Nanos kSec = 1'000'000'000;
constexpr Nanos kMs = 1'000'000;

TEST(GcraTest, BurstThenRefuseWithRetryAfterExactlyOneSecond) {
  ManualClock clock;
  GcraState state;
  const RateLimit limit{1.0, 10};
  const Nanos t0 = clock.now();
  for (int i = 1; i <= 10; ++i) {
    const LimitDecision d = gcra_update(state, limit, 1, clock.now());
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.retry_after, 0);
    EXPECT_EQ(d.remaining, 10 - i);
    EXPECT_EQ(d.reset_after, i * kSec);
  }
  EXPECT_EQ(state.tat, t0 + 10 * kSec);
  LimitDecision d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after, 10 * kSec);
  EXPECT_EQ(state.tat, t0 + 10 * kSec) << "a refusal must not advance the TAT";

  clock.advance(kSec - 1);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 1);

  clock.advance(1);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after, 10 * kSec);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec);
}

TEST(GcraTest, FractionalRateThirtyPerMinute) {
  ManualClock clock;
  GcraState state;
  const RateLimit limit{30.0 / 60.0, 5};  // 30/m: one every 2 s
  for (int i = 1; i <= 5; ++i) {
    const LimitDecision d = gcra_update(state, limit, 1, clock.now());
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 5 - i);
    EXPECT_EQ(d.reset_after, 2 * i * kSec);
  }
  LimitDecision d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 2 * kSec);
  clock.advance(kSec);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec);
  clock.advance(kSec);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after, 10 * kSec);
}

TEST(GcraTest, NonIntegerIntervalStillAdmitsTheWholeBurst) {
  // T = 142857142.857... ns: rounding must not refuse the 10th request of a burst of 10.
  ManualClock clock;
  GcraState state;
  const RateLimit limit{7, 10};
  for (int i = 1; i <= 10; ++i) {
    const LimitDecision d = gcra_update(state, limit, 1, clock.now());
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 10 - i);
  }
  const LimitDecision d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  const double interval = 1e9 / 7;
  EXPECT_GE(d.retry_after, static_cast<Nanos>(interval) - 20);
  EXPECT_LE(d.retry_after, static_cast<Nanos>(interval) + 1);
  clock.advance(d.retry_after);
  EXPECT_TRUE(gcra_update(state, limit, 1, clock.now()).allowed);
  EXPECT_FALSE(gcra_update(state, limit, 1, clock.now()).allowed);
}

TEST(GcraTest, CostFiveAgainstBurstTen) {
  ManualClock clock;
  GcraState state;
  const RateLimit limit{1, 10};
  LimitDecision d = gcra_update(state, limit, 5, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 5);
  EXPECT_EQ(d.reset_after, 5 * kSec);
  d = gcra_update(state, limit, 5, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after, 10 * kSec);
  d = gcra_update(state, limit, 5, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 5 * kSec);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after, 10 * kSec);
  // A cheaper request fits sooner.
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec);
  clock.advance(5 * kSec);
  d = gcra_update(state, limit, 5, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
}

TEST(GcraTest, FractionalCostsAndBurst) {
  ManualClock clock;
  GcraState state;
  const RateLimit limit{1, 10};
  for (int i = 1; i <= 20; ++i) {
    const LimitDecision d = gcra_update(state, limit, 0.5, clock.now());
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, std::floor(10 - i * 0.5));
  }
  LimitDecision d = gcra_update(state, limit, 0.5, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec / 2);

  GcraState other;
  const RateLimit burst_one_and_a_half{1, 1.5};
  d = gcra_update(other, burst_one_and_a_half, 1, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after, kSec);
  d = gcra_update(other, burst_one_and_a_half, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec / 2);
  clock.advance(kSec / 2);
  EXPECT_TRUE(gcra_update(other, burst_one_and_a_half, 1, clock.now()).allowed);
}

TEST(GcraTest, RefillOverTime) {
  ManualClock clock;
  GcraState state;
  const RateLimit limit{1, 10};
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(gcra_update(state, limit, 1, clock.now()).allowed);
  clock.advance(3 * kSec + 500 * kMs);
  // 3.5 s refilled 3.5 units; one is taken now, 2.5 left, shown as 2.
  LimitDecision d = gcra_update(state, limit, 1, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 2);
  EXPECT_EQ(d.reset_after, 7 * kSec + 500 * kMs);
  EXPECT_TRUE(gcra_update(state, limit, 1, clock.now()).allowed);
  EXPECT_TRUE(gcra_update(state, limit, 1, clock.now()).allowed);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 500 * kMs);

  // A long idle time refills to the burst and no further.
  clock.advance(3600 * kSec);
  int admitted = 0;
  while (gcra_update(state, limit, 1, clock.now()).allowed) ++admitted;
  EXPECT_EQ(admitted, 10);
}

TEST(GcraTest, RemainingAndResetAfterOnFreshState) {
  ManualClock clock;
  GcraState state;
  const RateLimit limit{2, 4};  // T = 0.5 s, tau = 2 s
  LimitDecision d = gcra_update(state, limit, 1, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.retry_after, 0);
  EXPECT_EQ(d.remaining, 3);
  EXPECT_EQ(d.reset_after, 500 * kMs);
  clock.advance(250 * kMs);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 2);  // 2 s - 0.75 s = 1.25 s = 2.5 units
  EXPECT_EQ(d.reset_after, 750 * kMs);
  clock.advance(10 * kSec);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_EQ(d.remaining, 3);
  EXPECT_EQ(d.reset_after, 500 * kMs);
}

TEST(GcraTest, CostAboveBurstIsAlwaysRefusedWithFiniteRetryAfter) {
  ManualClock clock;
  GcraState state;
  const RateLimit limit{1, 10};
  LimitDecision d = gcra_update(state, limit, 11, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec);  // (max(tat, now) + 11 s) - now - 10 s
  EXPECT_EQ(d.remaining, 10);      // nothing was taken
  EXPECT_EQ(d.reset_after, 0);
  EXPECT_EQ(state.tat, 0);
  clock.advance(24 * 3600 * kSec);
  d = gcra_update(state, limit, 11, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec);
  // The refused request did not consume anything: a normal request still goes through.
  EXPECT_TRUE(gcra_update(state, limit, 1, clock.now()).allowed);

  // Absurd values stay finite and non-negative.
  GcraState huge;
  const RateLimit slow{1e-6 / 86400, 1e9};  // 0.000001/d with the largest burst
  for (int i = 0; i < 5; ++i) {
    d = gcra_update(huge, slow, 1e6, clock.now());
    EXPECT_GE(d.retry_after, 0);
    EXPECT_GE(d.reset_after, 0);
    EXPECT_GE(d.remaining, 0);
    EXPECT_TRUE(std::isfinite(d.remaining));
    EXPECT_GE(huge.tat, clock.now());
  }
  GcraState tiny;
  d = gcra_update(tiny, RateLimit{1e9, 1}, 1e6, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 1'000'000 - 1);  // 1e6 ns of cost against a 1 ns tolerance
}

TEST(GcraTest, TimeGoingBackwardsDoesNotBreakIt) {
  ManualClock clock(100 * kSec);
  GcraState state;
  const RateLimit limit{1, 10};
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(gcra_update(state, limit, 1, clock.now()).allowed);
  clock.set(50 * kSec);
  LimitDecision d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 51 * kSec);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset_after, 60 * kSec);
  EXPECT_EQ(state.tat, 110 * kSec);
  clock.set(0);
  d = gcra_update(state, limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_GE(d.retry_after, 0);
  clock.set(101 * kSec);
  EXPECT_TRUE(gcra_update(state, limit, 1, clock.now()).allowed);
  EXPECT_FALSE(gcra_update(state, limit, 1, clock.now()).allowed);

  // A small step back within a partly used bucket admits no more than the bucket holds.
  GcraState partial;
  clock.set(200 * kSec);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(gcra_update(partial, limit, 1, clock.now()).allowed);
  clock.set(199 * kSec);
  int admitted = 0;
  while (gcra_update(partial, limit, 1, clock.now()).allowed) ++admitted;
  EXPECT_EQ(admitted, 4);  // one unit of the bucket is "in the future" by the step back
  // Negative and NaN costs are peeks, not credits.
  const Nanos tat = partial.tat;
  gcra_update(partial, limit, -5, clock.now());
  gcra_update(partial, limit, std::nan(""), clock.now());
  EXPECT_EQ(partial.tat, tat);
}

TEST(GcraTest, DisabledLimitAlwaysAllowsAndLeavesStateAlone) {
  GcraState state{12345};
  for (const RateLimit& limit : {RateLimit{}, RateLimit{0, 10}, RateLimit{1, 0.5}}) {
    const LimitDecision d = gcra_update(state, limit, 100, 1);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.retry_after, 0);
    EXPECT_EQ(d.remaining, 0);
    EXPECT_EQ(d.reset_after, 0);
    EXPECT_EQ(state.tat, 12345);
  }
}

// SharedGcra must give exactly gcra_update's answers.
TEST(SharedGcraTest, MatchesGcraUpdateSingleThreaded) {
  ManualClock clock;
  GcraState state;
  SharedGcra shared;
  const RateLimit limit{1, 10};
  const double costs[] = {1, 1, 5, 0.5, 3, 1, 11, 1, 2, 1, 1, 1};
  const Nanos steps[] = {0, 0, 0, 100 * kMs, kSec, 0, 0, 3 * kSec, 0, 999 * kMs, 1, 0};
  for (std::size_t i = 0; i < std::size(costs); ++i) {
    clock.advance(steps[i]);
    const LimitDecision a = gcra_update(state, limit, costs[i], clock.now());
    const LimitDecision b = shared.update(limit, costs[i], clock.now());
    EXPECT_EQ(a.allowed, b.allowed) << i;
    EXPECT_EQ(a.retry_after, b.retry_after) << i;
    EXPECT_EQ(a.remaining, b.remaining) << i;
    EXPECT_EQ(a.reset_after, b.reset_after) << i;
    EXPECT_EQ(state.tat, shared.tat()) << i;
  }
}

TEST(SharedGcraTest, BurstThenRefuse) {
  ManualClock clock;
  SharedGcra shared;
  const RateLimit limit{1, 10};
  for (int i = 1; i <= 10; ++i) {
    const LimitDecision d = shared.update(limit, 1, clock.now());
    ASSERT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, 10 - i);
  }
  LimitDecision d = shared.update(limit, 1, clock.now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, kSec);
  clock.advance(kSec);
  EXPECT_TRUE(shared.update(limit, 1, clock.now()).allowed);
  EXPECT_FALSE(shared.update(limit, 1, clock.now()).allowed);
}

void hammer(SharedGcra& shared, const RateLimit& limit, double cost, Nanos now, int threads,
            int total, std::atomic<int>& admitted) {
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      while (!go.load()) {
      }
      for (int i = 0; i < total / threads; ++i) {
        if (shared.update(limit, cost, now).allowed) admitted.fetch_add(1);
      }
    });
  }
  go = true;
  for (auto& w : workers) w.join();
}

TEST(SharedGcraTest, FourThreadsFrozenClockAdmitExactlyTheBurst) {
  for (const double burst : {1.0, 10.0, 1000.0}) {
    SharedGcra shared;
    std::atomic<int> admitted{0};
    hammer(shared, RateLimit{1, burst}, 1, 5 * kSec, 4, 100'000, admitted);
    EXPECT_EQ(admitted.load(), static_cast<int>(burst)) << burst;
  }
  SharedGcra fractional;
  std::atomic<int> admitted{0};
  hammer(fractional, RateLimit{50, 200}, 0.25, 5 * kSec, 4, 100'000, admitted);
  EXPECT_EQ(admitted.load(), 800);
}

}  // namespace
}  // namespace crawlgate
