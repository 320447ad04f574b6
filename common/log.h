// The member's log: one line per event on stderr, `2026-12-07T15:04:05.123Z I text`, written
// whole (one write per line, so lines from different threads never interleave). Lines below the
// process-wide level (`coordd --log-level`, info by default) cost one atomic load.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string_view>

#include <sys/time.h>
#include <unistd.h>

namespace coord::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

inline std::atomic<int>& threshold() {
    static std::atomic<int> level{static_cast<int>(Level::Info)};
    return level;
}

inline void setLevel(Level level) {
    threshold().store(static_cast<int>(level), std::memory_order_relaxed);
}

inline bool enabled(Level level) {
    return static_cast<int>(level) >= threshold().load(std::memory_order_relaxed);
}

inline std::optional<Level> parseLevel(std::string_view name) {
    if (name == "debug") return Level::Debug;
    if (name == "info") return Level::Info;
    if (name == "warn") return Level::Warn;
    if (name == "error") return Level::Error;
    return std::nullopt;
}

[[gnu::format(printf, 2, 3)]] inline void write(Level level, const char* format, ...) {
    if (!enabled(level)) return;
    char line[1024];
    timeval now{};
    gettimeofday(&now, nullptr);
    tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    size_t n = std::strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &utc);
    n += static_cast<size_t>(std::snprintf(line + n, sizeof line - n, ".%03dZ %c ",
                                           static_cast<int>(now.tv_usec / 1000),
                                           "DIWE"[static_cast<int>(level)]));
    va_list args;
    va_start(args, format);
    int wrote = std::vsnprintf(line + n, sizeof line - n - 1, format, args);
    va_end(args);
    n = wrote < 0 ? n : std::min(n + static_cast<size_t>(wrote), sizeof line - 2);
    line[n++] = '\n';
    // One write(2): a line is never split by another thread's.
    ssize_t ignored = ::write(STDERR_FILENO, line, n);
    (void)ignored;
}

// For an event that can repeat many times a second (refused connections, failed accepts): says
// when to log it — its first time, then at most once a second. Thread-safe.
class Throttle {
  public:
    bool due() {
        int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
        int64_t last = lastMs_.load(std::memory_order_relaxed);
        return (last < 0 || now - last >= 1000) && lastMs_.compare_exchange_strong(last, now);
    }

  private:
    std::atomic<int64_t> lastMs_{-1};
};

}  // namespace coord::log

// The arguments are evaluated only when the level is enabled.
#define COORD_LOG(level, ...)                                                      \
    do {                                                                           \
        if (::coord::log::enabled(level)) ::coord::log::write(level, __VA_ARGS__); \
    } while (0)
#define COORD_LOG_DEBUG(...) COORD_LOG(::coord::log::Level::Debug, __VA_ARGS__)
#define COORD_LOG_INFO(...) COORD_LOG(::coord::log::Level::Info, __VA_ARGS__)
#define COORD_LOG_WARN(...) COORD_LOG(::coord::log::Level::Warn, __VA_ARGS__)
#define COORD_LOG_ERROR(...) COORD_LOG(::coord::log::Level::Error, __VA_ARGS__)
