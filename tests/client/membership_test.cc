// Runtime membership with real coordd processes: a learner added, caught up by snapshot and
// promoted; the leader removed (it stops, the rest elects and serves); leadership moved; a
// joined member restarted; typed refusals of invalid changes; linearizable and local lists.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <span>
#include <thread>

#include "rpc/client.h"
#include "tests/support/client_options.h"
#include "tests/support/cluster.h"

using namespace coord;
using namespace std::chrono_literals;
using coord::test::Cluster;
using coord::test::leaderIndex;
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
    int leaderAt = leaderIndex(client, c);
    REQUIRE(leaderAt >= 0);
    uint64_t leader = client.status(c.ep(leaderAt), Clock::now() + 1s)->memberId;
    std::vector<int> rest;
    for (int i = 0; i < 4; ++i)
        if (i != leaderAt) rest.push_back(i);
    // A watch connected to the member about to be removed resumes elsewhere.
    std::vector<int> watchOrder{leaderAt};
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
    CHECK(c.waitExit(leaderAt, 10000));
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
    if (leaderAt != j) {
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

TEST_CASE("a member that cannot confirm the membership answers unavailable, its own view at once",
          "[membership]") {
    Cluster c;
    {
        Client client(optionsFor(c));
        REQUIRE(client.put("k", "v").ok());
    }
    c.kill9(1);
    c.kill9(2);
    Client alone(optionsFor(c, {0}));
    // No quorum: no ReadIndex round can complete, so no linearizable list.
    auto list = alone.memberList(false, Clock::now() + 3s);
    REQUIRE_FALSE(list.ok());
    CHECK(list.error().kind == Error::Kind::Unavailable);
    // The member's own applied view needs nobody.
    auto local = alone.memberList(true, Clock::now() + 3s);
    REQUIRE(local.ok());
    CHECK(local->size() == 3);
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

TEST_CASE("membership changes under a steady write load lose no acknowledged write",
          "[membership][faults]") {
    Cluster c;
    std::vector<int> all{0, 1, 2};
    int j = c.addJoiner();
    all.push_back(j);
    // Writers know every member (the joiner too) and keep writing throughout.
    auto writerOptions = optionsFor(c, all);
    writerOptions.requestTimeout = std::chrono::seconds(3);
    Client writer(writerOptions);
    std::mutex mu;
    std::vector<std::string> acked;
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < 3; ++w) {
        writers.emplace_back([&, w] {
            for (int i = 0; !stop && i < 100000; ++i) {
                std::string key = "load/" + std::to_string(w) + "/" + std::to_string(i);
                if (writer.put(key, "v").ok()) {
                    std::lock_guard lock(mu);
                    acked.push_back(key);
                }
            }
        });
    }
    Client admin(optionsFor(c, all));
    auto change = [&](auto op) {
        // MemberBusy (a change still applying, or a member publishing its address) is retried.
        for (int attempt = 0; attempt < 200; ++attempt) {
            auto r = op();
            if (r.ok()) return true;
            if (!r.error().is(kv::ErrorCode::MemberBusy) &&
                !r.error().is(kv::ErrorCode::LearnerNotReady)) {
                FAIL_CHECK("membership change failed: " << r.error().describe());
                return false;
            }
            std::this_thread::sleep_for(20ms);
        }
        return false;
    };
    std::this_thread::sleep_for(300ms);
    REQUIRE(change([&] { return admin.memberAdd(c.name(j), c.peerAddress(j), true); }));
    c.start(j);
    uint64_t joiner = 0;
    {
        auto members = admin.memberList();
        REQUIRE(members.ok());
        const Member* m = find(*members, c.name(j));
        REQUIRE(m != nullptr);
        joiner = m->id;
    }
    REQUIRE(change([&] { return admin.memberPromote(joiner); }));
    std::this_thread::sleep_for(300ms);
    // Remove a follower, then the leader, while the writes go on.
    uint64_t leader = leaderSeenBy(admin, c, j);
    REQUIRE(leader != 0);
    uint64_t follower = 0;
    for (int i = 0; i < 3; ++i) {
        auto st = admin.status(c.ep(i), Clock::now() + 1s);
        if (st.ok() && st->memberId != leader && st->memberId != joiner) follower = st->memberId;
    }
    REQUIRE(follower != 0);
    REQUIRE(change([&] { return admin.memberRemove(follower); }));
    std::this_thread::sleep_for(300ms);
    REQUIRE(change([&] { return admin.memberRemove(leader); }));
    std::this_thread::sleep_for(500ms);
    stop = true;
    for (auto& t : writers)
        t.join();

    std::vector<int> remaining;
    for (int i = 0; i < 4; ++i) {
        auto st = admin.status(c.ep(i), Clock::now() + 1s);
        if (st.ok() && st->memberId != leader && st->memberId != follower) remaining.push_back(i);
    }
    REQUIRE(remaining.size() == 2);
    // The member list is linearizable: each remaining member lists the two at once, and so
    // does `admin`, whichever member it is connected to. A removed member that never learned of
    // its removal cannot confirm a read (it has no leader, or its leader no longer answers it):
    // it answers unavailable and the client asks the next endpoint.
    for (int i : remaining) {
        Client one(optionsFor(c, {i}));
        auto list = one.memberList();
        REQUIRE(list.ok());
        CHECK(list->size() == 2);
        // Its own view (serializable) has caught up by now too.
        auto local = one.memberList(true);
        REQUIRE(local.ok());
        CHECK(local->size() == 2);
    }
    {
        auto list = admin.memberList(false, Clock::now() + 20s);
        REQUIRE(list.ok());
        CHECK(list->size() == 2);
    }
    INFO(acked.size() << " acknowledged writes");
    // The load ran throughout (a handful of writes a second is all TSan's coordd manages).
    REQUIRE(acked.size() > 10);
    // Every acknowledged write is on both remaining members (read each alone, serializably,
    // once it has caught up with a linearizable read).
    for (int i : remaining) {
        Client one(optionsFor(c, {i}));
        REQUIRE(one.get("sync").ok());
        RangeRequest q;
        q.key = "load/";
        q.rangeEnd = kv::prefixEnd("load/");
        q.keysOnly = true;
        auto r = one.range(q, true);
        REQUIRE(r.ok());
        std::set<std::string> present;
        for (const auto& kv : r->kvs)
            present.insert(kv.key);
        size_t missing = 0;
        for (const auto& k : acked)
            missing += present.count(k) ? 0 : 1;
        CHECK(missing == 0);
    }
}
