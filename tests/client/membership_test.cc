// Runtime membership with real coordd processes: a learner added, caught up by snapshot and
// promoted; the leader removed (it stops, the rest elects and serves); leadership moved; a
// joined member restarted; typed refusals of invalid changes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <mutex>
#include <span>
#include <thread>

#include "rpc/client.h"
#include "tests/support/client_options.h"
#include "tests/support/cluster.h"

using namespace coord;
using namespace std::chrono_literals;
using coord::test::Cluster;
using coord::test::optionsFor;

namespace {

const Member* find(const std::vector<Member>& members, const std::string& name) {
    auto it = std::find_if(members.begin(), members.end(),
                           [&](const Member& m) { return m.name == name; });
    return it == members.end() ? nullptr : &*it;
}

// The leader's member id as member i sees it (0: none yet).
uint64_t leaderSeenBy(Client& client, const Cluster& c, int i) {
    auto st = client.status(c.ep(i), Clock::now() + 1s);
    return st.ok() ? st->leader : 0;
}

int64_t countPrefix(Client& client, const std::string& prefix, bool serializable) {
    RangeRequest q;
    q.key = prefix;
    q.rangeEnd = kv::prefixEnd(prefix);
    q.countOnly = true;
    auto r = client.range(q, serializable, Clock::now() + 1s);
    return r.ok() ? r->count : -1;
}

// Polls `pred` every 20 ms for at most `tries` times.
template <typename Pred>
bool eventually(Pred pred, int tries = 250) {
    for (int i = 0; i < tries; ++i) {
        if (pred()) return true;
        std::this_thread::sleep_for(20ms);
    }
    return false;
}

}  // namespace

TEST_CASE("a learner joins by snapshot, is promoted, and the removed leader stops",
          "[membership]") {
    Cluster c({"--snapshot-count", "100"});
    Client client(optionsFor(c));
    for (int i = 0; i < 150; ++i)
        REQUIRE(client.put("m/" + std::to_string(i), "v").ok());

    int j = c.addJoiner();
    auto added = client.memberAdd(c.name(j), c.peerAddress(j), true);
    REQUIRE(added.ok());
    REQUIRE(added->size() == 4);
    const Member* n4 = find(*added, c.name(j));
    REQUIRE(n4 != nullptr);
    CHECK(n4->learner);
    uint64_t n4Id = n4->id;
    // Not started yet, so not caught up: promotion is refused with a typed error.
    auto early = client.memberPromote(n4Id);
    REQUIRE_FALSE(early.ok());
    CHECK(early.error().is(kv::ErrorCode::LearnerNotReady));

    c.start(j);
    Client direct(optionsFor(c, {j}));
    CHECK(eventually([&] { return countPrefix(direct, "m/", true) == 150; }));
    // It publishes its client address to the member list.
    CHECK(eventually([&] {
        auto list = client.memberList();
        const Member* m = list.ok() ? find(*list, c.name(j)) : nullptr;
        return m && m->clientUrl == c.ep(j);
    }));

    bool promoted = eventually([&] {
        auto r = client.memberPromote(n4Id);
        return r.ok() && !find(*r, c.name(j))->learner;
    });
    REQUIRE(promoted);
    REQUIRE(client.put("after-promote", "x").ok());
    CHECK(eventually([&] { return countPrefix(direct, "after-promote", true) == 1; }));

    // Remove the leader: it steps down and stops; the other three elect and serve.
    uint64_t leader = 0;
    REQUIRE(eventually([&] { return (leader = leaderSeenBy(client, c, 0)) != 0; }));
    int leaderIndex = -1;
    for (int i = 0; i < 4; ++i) {
        auto st = client.status(c.ep(i), Clock::now() + 1s);
        if (st.ok() && st->memberId == leader) leaderIndex = i;
    }
    REQUIRE(leaderIndex >= 0);
    std::vector<int> rest;
    for (int i = 0; i < 4; ++i)
        if (i != leaderIndex) rest.push_back(i);
    // A watch connected to the member about to be removed resumes elsewhere.
    std::vector<int> watchOrder{leaderIndex};
    watchOrder.insert(watchOrder.end(), rest.begin(), rest.end());
    Client watcher(optionsFor(c, watchOrder));
    std::mutex mu;
    std::vector<std::string> seen;
    WatchRequest w;
    w.key = "after-remove";
    WatchCallbacks cb;
    cb.onEvents = [&](std::span<const Event> events, int64_t) {
        std::lock_guard lock(mu);
        for (const auto& e : events)
            seen.push_back(e.kv.value);
    };
    auto watch = watcher.watch(w, cb);
    REQUIRE(watch != nullptr);
    REQUIRE(watcher.get("warm-up").ok());  // connected (to the leader) before it goes

    auto removed = client.memberRemove(leader);
    REQUIRE(removed.ok());
    CHECK(removed->size() == 3);
    CHECK(c.waitExit(leaderIndex, 10000));
    Client survivors(optionsFor(c, rest));
    REQUIRE(survivors.put("after-remove", "y").ok());
    CHECK(eventually([&] {
        std::lock_guard lock(mu);
        return seen == std::vector<std::string>{"y"};
    }));
    auto list = survivors.memberList();
    REQUIRE(list.ok());
    CHECK(list->size() == 3);
    for (const auto& m : *list)
        CHECK(m.id != leader);

    // Hand leadership to a chosen voter.
    uint64_t target = 0;
    for (const auto& m : *list)
        if (m.id != leaderSeenBy(survivors, c, rest[0])) target = m.id;
    REQUIRE(target != 0);
    auto moved = survivors.moveLeader(target);
    REQUIRE(moved.ok());
    CHECK(eventually([&] { return leaderSeenBy(survivors, c, rest[0]) == target; }));

    // The joined member restarts from its data dir and still serves everything.
    if (leaderIndex != j) {
        c.kill9(j);
        c.start(j);
        Client again(optionsFor(c, {j}));
        CHECK(eventually([&] { return countPrefix(again, "after-remove", false) == 1; }));
    }
}

TEST_CASE("invalid membership changes get typed refusals", "[membership]") {
    Cluster c;
    Client client(optionsFor(c));
    auto list = client.memberList();
    REQUIRE(list.ok());
    REQUIRE(list->size() == 3);
    CHECK(eventually([&] {
        auto l = client.memberList();
        return l.ok() && std::all_of(l->begin(), l->end(),
                                     [](const Member& m) { return !m.clientUrl.empty(); });
    }));

    auto sameName = client.memberAdd(c.name(0), "127.0.0.1:1", true);
    REQUIRE_FALSE(sameName.ok());
    CHECK(sameName.error().is(kv::ErrorCode::MemberExists));
    auto samePeer = client.memberAdd("other", c.peerAddress(1), false);
    REQUIRE_FALSE(samePeer.ok());
    CHECK(samePeer.error().is(kv::ErrorCode::MemberExists));
    auto unknown = client.memberRemove(12345);
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().is(kv::ErrorCode::MemberNotFound));
    auto voter = client.memberPromote((*list)[0].id);
    REQUIRE_FALSE(voter.ok());
    CHECK(voter.error().is(kv::ErrorCode::InvalidArgument));
    auto nowhere = client.moveLeader(12345);
    REQUIRE_FALSE(nowhere.ok());
    CHECK(nowhere.error().is(kv::ErrorCode::MemberNotFound));
    auto noName = client.memberAdd("", "127.0.0.1:2", true);
    REQUIRE_FALSE(noName.ok());
    CHECK(noName.error().is(kv::ErrorCode::InvalidArgument));
    // Nothing changed.
    auto after = client.memberList();
    REQUIRE(after.ok());
    CHECK(after->size() == 3);
}

TEST_CASE("a member started to join a cluster that did not add it waits and can be stopped",
          "[membership]") {
    Cluster c;
    int j = c.addJoiner();
    c.start(j);
    std::this_thread::sleep_for(500ms);
    // Still running (waiting), serving nothing, and it stops cleanly on SIGTERM.
    REQUIRE(kill(c.pid[j], 0) == 0);
    kill(c.pid[j], SIGTERM);
    CHECK(c.waitExit(j, 5000));
    Client client(optionsFor(c));
    auto list = client.memberList();
    REQUIRE(list.ok());
    CHECK(list->size() == 3);
}
