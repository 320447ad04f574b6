// Clock interface: time enters the storage and consensus layers only through this, so tests
// and the simulator can drive it deterministically.
#pragma once

#include <chrono>
#include <cstdint>

namespace coord {

// A monotonic clock. Implementations must never go backwards.
class Clock {
  public:
    virtual ~Clock() = default;
    // Milliseconds since an arbitrary fixed point.
    virtual int64_t nowMs() const = 0;
};

class SteadyClock final : public Clock {
  public:
    int64_t nowMs() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
};

// A clock that only moves when told to. Not thread-safe; for tests and the simulator.
class ManualClock final : public Clock {
  public:
    explicit ManualClock(int64_t startMs = 0) : nowMs_(startMs) {}
    int64_t nowMs() const override { return nowMs_; }
    void advanceMs(int64_t ms) { nowMs_ += ms; }

  private:
    int64_t nowMs_;
};

}  // namespace coord
