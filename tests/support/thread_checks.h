// Catch2's assertion macros are not thread-safe. Threads a test starts record their checks here
// (T_CHECK / T_REQUIRE, the latter returning from the thread's function on failure), and the
// test's own thread reports them with CHECK_THREADS() once the threads are joined.
#pragma once

#include <catch2/catch.hpp>

#include <mutex>
#include <string>
#include <vector>

namespace coord::test {

class ThreadChecks {
  public:
    bool record(bool ok, const char* expr, int line) {
        if (!ok) {
            std::lock_guard lock(mu_);
            failures_.push_back("line " + std::to_string(line) + ": " + expr);
        }
        return ok;
    }
    std::vector<std::string> take() {
        std::lock_guard lock(mu_);
        auto out = std::move(failures_);
        failures_.clear();
        return out;
    }

  private:
    std::mutex mu_;
    std::vector<std::string> failures_;
};

inline ThreadChecks& threadChecks() {
    static ThreadChecks checks;
    return checks;
}

}  // namespace coord::test

#define T_CHECK(expr) ::coord::test::threadChecks().record(static_cast<bool>(expr), #expr, __LINE__)
#define T_REQUIRE(expr)                                                                      \
    do {                                                                                     \
        if (!::coord::test::threadChecks().record(static_cast<bool>(expr), #expr, __LINE__)) \
            return;                                                                          \
    } while (0)
#define CHECK_THREADS()                                        \
    do {                                                       \
        auto failures_ = ::coord::test::threadChecks().take(); \
        for (const auto& f_ : failures_)                       \
            FAIL_CHECK("in a test thread: " << f_);            \
    } while (0)
