// Result<T, E>: a value or an error, for outcomes the caller is expected to handle.
//
// coord uses Result for business outcomes (a compacted revision, a missing lease, a full disk)
// and reserves exceptions and assertions for bugs and unrecoverable I/O.
#pragma once

#include <utility>
#include <variant>

#include "common/assert.h"

namespace coord {

template <typename E>
struct Unexpected {
    E error;
};

template <typename E>
Unexpected<E> fail(E e) {
    return Unexpected<E>{std::move(e)};
}

template <typename T, typename E>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Unexpected<E> e) : v_(std::in_place_index<1>, std::move(e.error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & {
        COORD_ASSERT(ok(), "Result::value() on an error");
        return std::get<0>(v_);
    }
    const T& value() const& {
        COORD_ASSERT(ok(), "Result::value() on an error");
        return std::get<0>(v_);
    }
    T&& value() && {
        COORD_ASSERT(ok(), "Result::value() on an error");
        return std::get<0>(std::move(v_));
    }
    const E& error() const {
        COORD_ASSERT(!ok(), "Result::error() on a value");
        return std::get<1>(v_);
    }

    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

  private:
    std::variant<T, E> v_;
};

// Result<void, E>.
struct Ok {};

}  // namespace coord
