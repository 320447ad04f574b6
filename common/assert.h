// COORD_ASSERT: invariant checks that stay on in every build type.
//
// An assertion documents a fact the code relies on. When it fails the process prints the
// condition, the location and the values passed after it, then aborts: a broken invariant in
// the storage or consensus layers means continuing could corrupt data.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace coord::detail {

template <typename... Values>
std::string formatAssertValues(const Values&... values) {
    std::ostringstream out;
    ((out << " [" << values << "]"), ...);
    return out.str();
}

[[noreturn]] inline void assertFailed(const char* cond, const char* file, int line,
                                      const std::string& values) {
    std::fprintf(stderr, "coord: assertion failed: %s at %s:%d%s\n", cond, file, line,
                 values.c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace coord::detail

#define COORD_ASSERT(cond, ...)                                                              \
    do {                                                                                     \
        if (!(cond)) [[unlikely]] {                                                          \
            ::coord::detail::assertFailed(#cond, __FILE__, __LINE__,                         \
                                          ::coord::detail::formatAssertValues(__VA_ARGS__)); \
        }                                                                                    \
    } while (false)
