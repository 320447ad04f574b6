// Handoff: a value produced on some thread (the Asio core thread, a client's caller) delivered
// into a kj::Promise on the KJ event-loop thread that created it.
//
// The value travels under a std::mutex; KJ's cross-thread fulfiller only wakes the loop. This
// keeps the hand-off visible to ThreadSanitizer: Debian's libkj is not instrumented, so a value
// passed through the fulfiller itself would look like a race (see scripts/tsan.supp).
#pragma once

#include <kj/async.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>

namespace coord::rpc {

// kj promises need default-constructible results; most coord outcomes are not.
template <typename T>
struct Slot {
    std::optional<T> value;
};

template <typename T>
struct Handoff {
    kj::Promise<Slot<T>> promise;
    std::function<void(T)> send;  // call once, from any thread
};

template <typename T>
Handoff<T> makeHandoff() {
    struct Shared {
        std::mutex mu;
        std::optional<T> value;
        kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;
    };
    auto shared = std::make_shared<Shared>();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    shared->wake = kj::mv(paf.fulfiller);
    auto promise = paf.promise.then([shared]() {
        std::lock_guard lock(shared->mu);
        return Slot<T>{std::move(shared->value)};
    });
    auto send = [shared](T v) {
        kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;
        {
            std::lock_guard lock(shared->mu);
            shared->value = std::move(v);
            wake = kj::mv(shared->wake);
        }
        if (wake) wake->fulfill();
    };
    return Handoff<T>{kj::mv(promise), std::move(send)};
}

}  // namespace coord::rpc
