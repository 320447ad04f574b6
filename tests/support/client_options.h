// Client options for a test cluster: its members' endpoints (all, or the ones named) and a
// request timeout long enough for elections under sanitizers; finding its leader; and checking
// that its members hold the same history.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "rpc/client.h"
#include "tests/support/cluster.h"

namespace coord::test {

inline ClientOptions optionsFor(const Cluster& c, std::vector<int> members = {0, 1, 2}) {
    ClientOptions o;
    for (int i : members)
        o.endpoints.push_back(c.ep(i));
    o.requestTimeout = std::chrono::seconds(10);
    return o;
}

// The index of the member that is leader, as the running members see it (polled for up to
// 200 rounds; fails the test when none is found).
inline int leaderIndex(Client& client, const Cluster& c) {
    using namespace std::chrono_literals;
    const size_t n = c.pid.size();
    for (int attempt = 0; attempt < 200; ++attempt) {
        std::vector<uint64_t> ids(n, 0);
        uint64_t leader = 0;
        for (size_t i = 0; i < n; ++i) {
            if (c.pid[i] <= 0) continue;
            auto st = client.status(c.ep(static_cast<int>(i)), Clock::now() + 1s);
            if (!st.ok()) continue;
            ids[i] = st->memberId;
            if (st->leader) leader = st->leader;
        }
        for (size_t i = 0; i < n; ++i)
            if (leader && ids[i] == leader) return static_cast<int>(i);
        std::this_thread::sleep_for(20ms);
    }
    FAIL("no leader found");
    return -1;
}

// Faults for a test under load: three rounds of kill -9 and restart — the leader, then a
// follower, then the leader again — each member down for 600 ms and back for 600 ms.
inline void killLeaderFollowerLeader(Client& observer, Cluster& c) {
    using namespace std::chrono_literals;
    for (int round = 0; round < 3; ++round) {
        int victim = leaderIndex(observer, c);
        if (round == 1) victim = (victim + 1) % 3;  // a follower this time
        c.kill9(victim);
        std::this_thread::sleep_for(600ms);
        c.start(victim);
        std::this_thread::sleep_for(600ms);
    }
}

// Every running member's digest of its history at the cluster's current revision, once each has
// applied it (bounded); the members' answers in member order.
inline std::vector<kv::HashKVResponse> hashesAtHead(Client& client, const Cluster& c) {
    RangeRequest any;
    any.key = "any";
    auto head = client.range(any);
    REQUIRE(head.ok());
    std::vector<kv::HashKVResponse> out;
    for (size_t i = 0; i < c.pid.size(); ++i) {
        if (c.pid[i] <= 0) continue;
        std::optional<kv::HashKVResponse> got;
        auto until = Clock::now() + std::chrono::seconds(10);
        while (!got && Clock::now() < until) {
            auto h = client.hashKV(c.ep(static_cast<int>(i)), head->revision,
                                   Clock::now() + std::chrono::seconds(2));
            if (h.ok()) {
                got = *h;
            } else {
                // A member that has not applied the revision yet says so; wait for it.
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        }
        REQUIRE(got.has_value());
        CHECK(got->revision == head->revision);
        out.push_back(*got);
    }
    return out;
}

// After faults, every member holds the same history: same digest at the same revision.
inline void checkReplicasAgree(Client& client, const Cluster& c) {
    auto hashes = hashesAtHead(client, c);
    REQUIRE(hashes.size() >= 2);
    for (const auto& h : hashes) {
        CHECK(h.hash == hashes.front().hash);
        CHECK(h.compactRevision == hashes.front().compactRevision);
    }
}

}  // namespace coord::test
