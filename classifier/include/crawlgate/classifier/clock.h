// Time source for the classifier: monotonic nanoseconds, injectable so tests pin exact values.
#pragma once

#include <atomic>
#include <cstdint>

namespace crawlgate {

using Nanos = std::int64_t;  // nanoseconds on a monotonic clock

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Nanos now() const = 0;
};

// std::chrono::steady_clock in nanoseconds.
class SteadyClock final : public Clock {
 public:
  Nanos now() const override;
  static const SteadyClock& instance();
};

// A clock that moves only when told to. Thread-safe (an atomic), for tests and replays.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Nanos start = 1'000'000'000);
  Nanos now() const override;
  void advance(Nanos by);
  void set(Nanos t);

 private:
  std::atomic<Nanos> now_;
};

}  // namespace crawlgate
