// Helpers for tests that drive NodeDrivers: synchronous writes and read barriers that retry
// while no leader is known (elections take a few hundred milliseconds).
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <thread>

#include "rpc/node_driver.h"

namespace coord::rpc::test {

inline WriteOutcome writeSync(NodeDriver& d, kv::Request r) {
    std::promise<WriteOutcome> p;
    auto f = p.get_future();
    d.write(std::move(r), [&p](WriteOutcome o) { p.set_value(std::move(o)); });
    REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    return f.get();
}

inline kv::KvResult<kv::Response> putRetrying(NodeDriver& d, std::string k, std::string v) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        auto o = writeSync(d, kv::PutRequest{k, v});
        if (o.ok()) return std::move(o).value();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("write did not complete within 10 s");
    return fail(kv::Error{});
}

// A linearizable read barrier after which this thread may read the member's store directly:
// when the barrier says the read must run on the core thread (applied batches not committed
// yet), the callback, which runs there, commits them first.
inline bool readBarrier(NodeDriver& d) {
    for (int attempt = 0; attempt < 100; ++attempt) {
        std::promise<Result<Ok, Unavailable>> p;
        auto f = p.get_future();
        d.read(true, [&p, &d](Result<NodeDriver::ReadAt, Unavailable> r) {
            if (!r.ok()) return p.set_value(fail(r.error()));
            if (*r == NodeDriver::ReadAt::Core) d.store().commitDeferred(false);
            p.set_value(Ok{});
        });
        if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return false;
        if (f.get().ok()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

}  // namespace coord::rpc::test
