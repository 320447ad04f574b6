// Failures with real coordd processes: the leader kill -9'd under a steady write load, a follower
// restarted after the log was compacted past it, watches across a leader change, read-after-write
// across members, leases across a leader change, and hostile bytes on the client and peer ports.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <sys/wait.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "kv/codec.h"
#include "kv/lmdb.h"
#include "kv/store.h"
#include "rpc/client.h"
#include "tests/support/client_options.h"
#include "tests/support/cluster.h"
#include "tests/support/thread_checks.h"

using namespace coord;
using namespace std::chrono_literals;
using coord::test::checkReplicasAgree;
using coord::test::Cluster;
using coord::test::hashesAtHead;
using coord::test::leaderIndex;
using coord::test::optionsFor;

namespace {

// Sends raw bytes to a TCP port and closes.
void sendRaw(int port, const std::string& bytes) {
    int fd = coord::test::connectLoopback(port);
    if (fd < 0) return;
    (void)!write(fd, bytes.data(), bytes.size());
    std::this_thread::sleep_for(20ms);
    close(fd);
}

// Changes the last byte of the value written at `revision` in member i's file (the member must
// be down), as a failing disk or a stray write would: LMDB itself does not notice.
void damageValue(const Cluster& c, int i, int64_t revision, char was, char becomes) {
    kv::Store store(c.dir.file(c.name(i) + ".coord") + "/member.mdb");
    kv::lmdb::Txn txn(store.env(), kv::lmdb::Txn::Mode::ReadWrite);
    kv::lmdb::Table rev(txn, "rev", 0);
    std::string key = kv::detail::encodeRevKey({revision, 0});
    auto record = rev.get(txn, key);
    REQUIRE(record.has_value());
    std::string damaged(*record);
    REQUIRE(damaged.back() == was);
    damaged.back() = becomes;
    REQUIRE(rev.put(txn, key, damaged));
    txn.commit();
}

}  // namespace

TEST_CASE("leader kill -9 under steady writes: a new leader serves fast and no ack is lost",
          "[faults]") {
    Cluster c;
    Client client(optionsFor(c));
    REQUIRE(client.put("warmup", "x").ok());
    int leader = leaderIndex(client, c);

    std::mutex mu;
    std::set<std::string> acked;
    std::atomic<bool> stop{false};
    std::atomic<int64_t> lastAckNs{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 4; ++w) {
        writers.emplace_back([&, w] {
            for (int i = 0; !stop; ++i) {
                std::string key = "load/" + std::to_string(w) + "/" + std::to_string(i);
                auto r = client.put(key, "v", 0, Clock::now() + 5s);
                if (r.ok()) {
                    std::lock_guard lock(mu);
                    acked.insert(key);
                    lastAckNs = Clock::now().time_since_epoch().count();
                }
            }
        });
    }
    std::this_thread::sleep_for(500ms);
    auto killedAt = Clock::now();
    c.kill9(leader);
    // The first write acknowledged after the kill.
    bool served = false;
    for (int i = 0; i < 500 && !served; ++i) {
        std::this_thread::sleep_for(5ms);
        served = lastAckNs.load() > killedAt.time_since_epoch().count();
    }
    auto recovered = Clock::now() - killedAt;
    std::this_thread::sleep_for(300ms);
    stop = true;
    for (auto& t : writers)
        t.join();
    REQUIRE(served);
    // Election timeout (200 ms here) + 1 s.
    CHECK(recovered < 1200ms);

    c.start(leader);
    RangeRequest all;
    all.key = "load/";
    all.rangeEnd = kv::prefixEnd("load/");
    all.keysOnly = true;
    auto r = client.range(all);
    REQUIRE(r.ok());
    std::set<std::string> present;
    for (const auto& kv : r->kvs)
        present.insert(kv.key);
    for (const auto& k : acked)
        CHECK(present.count(k) == 1);
    // The restarted member replayed its log to the same history as the others.
    checkReplicasAgree(client, c);
}

TEST_CASE("a follower restarted after the log was compacted past it catches up from a snapshot",
          "[faults]") {
    Cluster c({"--snapshot-count", "100"});
    Client client(optionsFor(c));
    REQUIRE(client.put("start", "x").ok());
    int leader = leaderIndex(client, c);
    int follower = (leader + 1) % 3;
    c.kill9(follower);
    // Writers talk to the two live members only: a write sent on a connection to the killed
    // member would rightly come back as an unknown outcome.
    Client writer(optionsFor(c, {leader, (leader + 2) % 3}));
    std::vector<std::thread> writers;
    for (int w = 0; w < 4; ++w) {
        writers.emplace_back([&, w] {
            for (int i = 0; i < 100; ++i) {
                T_REQUIRE(
                    writer.put("snap/" + std::to_string(w) + "/" + std::to_string(i), "v").ok());
            }
        });
    }
    for (auto& t : writers)
        t.join();
    c.start(follower);
    // Read the restarted member alone, serializably: it must reach every key.
    Client direct(optionsFor(c, {follower}));
    bool caughtUp = false;
    for (int i = 0; i < 500 && !caughtUp; ++i) {
        RangeRequest q;
        q.key = "snap/";
        q.rangeEnd = kv::prefixEnd("snap/");
        q.countOnly = true;
        auto r = direct.range(q, true, Clock::now() + 1s);
        caughtUp = r.ok() && r->count == 400;
        if (!caughtUp) std::this_thread::sleep_for(20ms);
    }
    CHECK(caughtUp);
    // And it takes part in new writes.
    REQUIRE(client.put("after", "y").ok());
    bool sawAfter = false;
    for (int i = 0; i < 200 && !sawAfter; ++i) {
        RangeRequest q;
        q.key = "after";
        auto r = direct.range(q, true, Clock::now() + 1s);
        sawAfter = r.ok() && r->kvs.size() == 1;
        if (!sawAfter) std::this_thread::sleep_for(20ms);
    }
    CHECK(sawAfter);
    // The snapshot carried the whole history, not only the keys as they are now.
    checkReplicasAgree(client, c);
    CHECK_THREADS();
}

TEST_CASE("members agree on the digest of their history, and a damaged member's file shows",
          "[faults][hash]") {
    Cluster c;
    Client client(optionsFor(c));
    for (int i = 0; i < 40; ++i)
        REQUIRE(client.put("h/" + std::to_string(i % 10), "value " + std::to_string(i)).ok());
    DeleteRangeRequest d;
    d.key = "h/3";
    REQUIRE(client.del(d).ok());
    auto mid = client.put("h/mid", "m");
    REQUIRE(mid.ok());
    REQUIRE(client.compact(mid->revision - 5).ok());
    for (int i = 0; i < 10; ++i)
        REQUIRE(client.put("h/late/" + std::to_string(i), "late").ok());
    auto before = hashesAtHead(client, c);
    REQUIRE(before.size() == 3);
    for (const auto& h : before) {
        CHECK(h.hash == before.front().hash);
        CHECK(h.compactRevision == mid->revision - 5);
    }
    // Below the compacted revision there is nothing to compare.
    auto low = client.hashKV(c.ep(0), 2);
    REQUIRE_FALSE(low.ok());
    CHECK(low.error().is(kv::ErrorCode::Compacted));

    // Change one byte of the value of revision mid (h/mid = "m") in member 3's file while it
    // is down, as a failing disk or a stray write would: LMDB itself does not notice.
    c.kill9(2);
    damageValue(c, 2, mid->revision, 'm', 'n');
    c.start(2);
    auto after = hashesAtHead(client, c);
    REQUIRE(after.size() == 3);
    CHECK(after[0].hash == after[1].hash);
    CHECK(after[2].hash != after[0].hash);
    // At a revision before the damage the three still agree.
    std::vector<uint32_t> early;
    for (int i = 0; i < 3; ++i) {
        auto h = client.hashKV(c.ep(i), mid->revision - 1);
        REQUIRE(h.ok());
        early.push_back(h->hash);
    }
    CHECK(early[0] == early[1]);
    CHECK(early[2] == early[0]);
    // coordctl endpoint hashkv finds it too, and exits 6.
    std::string cmd =
        std::string(COORDCTL) + " --endpoints " + c.endpoints + " endpoint hashkv >/dev/null 2>&1";
    int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 6);
}

TEST_CASE("the leader's corruption check takes a damaged member out of serving keys",
          "[faults][hash]") {
    Cluster c({"--corrupt-check-interval", "200"});
    Client client(optionsFor(c));
    for (int i = 0; i < 20; ++i)
        REQUIRE(client.put("cc/" + std::to_string(i), "value").ok());
    auto marked = client.put("cc/marked", "m");
    REQUIRE(marked.ok());
    for (int round = 0; round < 5; ++round) {  // healthy members: nothing raised
        std::this_thread::sleep_for(100ms);
        auto none = client.alarmList();
        REQUIRE(none.ok());
        CHECK(none->corrupt.empty());
    }
    c.kill9(2);
    damageValue(c, 2, marked->revision, 'm', 'n');
    c.start(2);
    auto st = client.status(c.ep(2), Clock::now() + 10s);
    for (int i = 0; i < 100 && !st.ok(); ++i) {
        std::this_thread::sleep_for(50ms);
        st = client.status(c.ep(2), Clock::now() + 10s);
    }
    REQUIRE(st.ok());
    const uint64_t damaged = st->memberId;
    auto raisedFor = [&](uint64_t member) {
        for (int i = 0; i < 200; ++i) {
            auto a = client.alarmList();
            if (a.ok() && a->corrupt == std::vector<uint64_t>{member}) return true;
            std::this_thread::sleep_for(50ms);
        }
        return false;
    };
    REQUIRE(raisedFor(damaged));

    // The damaged member serves no keys; a client that knows only it says why.
    ClientOptions onlyIt = optionsFor(c, {2});
    onlyIt.requestTimeout = 1s;
    Client direct(onlyIt);
    auto got = direct.get("cc/marked");
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().describe().find("CORRUPT") != std::string::npos);
    CHECK_FALSE(direct.put("cc/other", "x").ok());
    // A client that knows every member goes on at the others, and reads the true value.
    ClientOptions itFirst = optionsFor(c, {2, 0, 1});
    Client failover(itFirst);
    auto value = failover.get("cc/marked");
    REQUIRE(value.ok());
    REQUIRE(value->has_value());
    CHECK((*value)->value == "m");
    REQUIRE(failover.put("cc/after", "x").ok());
    // So does a watch: it ends at the damaged member and resumes at another, so the previous
    // value it attaches is the true one, not the damaged copy's.
    auto start = client.put("cc/watch-from", "x");
    REQUIRE(start.ok());
    std::mutex mu;
    std::condition_variable seen;
    std::vector<Event> events;
    WatchRequest w;
    w.key = "cc/marked";
    w.prevKv = true;
    w.startRevision = start->revision + 1;
    WatchCallbacks cb;
    cb.onEvents = [&](std::span<const Event> batch, int64_t) {
        std::lock_guard lock(mu);
        events.insert(events.end(), batch.begin(), batch.end());
        seen.notify_all();
    };
    Client watcher(itFirst);  // a fresh client: its first connection is to the damaged member
    auto watching = watcher.watch(w, cb);
    REQUIRE(watching);
    REQUIRE(client.put("cc/marked", "z").ok());
    {
        std::unique_lock lock(mu);
        REQUIRE(seen.wait_for(lock, 10s, [&] { return !events.empty(); }));
        REQUIRE(events.front().prevKv.has_value());
        CHECK(events.front().prevKv->value == "m");
        CHECK(events.front().kv.value == "z");
    }
    watching.reset();

    // coordctl shows it; disarming it while the member is still damaged only lets the next
    // check raise it again.
    std::string cmd = std::string(COORDCTL) + " --endpoints " + c.endpoints + " alarm list";
    FILE* out = popen(cmd.c_str(), "r");
    REQUIRE(out != nullptr);
    char line[256] = {};
    std::string listed;
    while (std::fgets(line, sizeof line, out))
        listed += line;
    CHECK(pclose(out) == 0);
    CHECK(listed.find("alarm:CORRUPT") != std::string::npos);
    auto disarmed = client.alarmDisarm();
    REQUIRE(disarmed.ok());
    CHECK(disarmed->corrupt.empty());
    CHECK(raisedFor(damaged));
}

TEST_CASE("a watch on a follower survives a leader change without gap or duplicate", "[faults]") {
    Cluster c;
    Client writer(optionsFor(c));
    auto first = writer.put("wl/0", "x");
    REQUIRE(first.ok());
    int leader = leaderIndex(writer, c);
    int follower = (leader + 1) % 3;
    Client watcherClient(optionsFor(c, {follower}));
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int64_t> revisions;
    WatchRequest w;
    w.key = "wl/";
    w.rangeEnd = kv::prefixEnd("wl/");
    w.startRevision = first->revision;
    WatchCallbacks cb;
    cb.onEvents = [&](std::span<const Event> events, int64_t) {
        std::lock_guard lock(mu);
        for (const auto& e : events)
            revisions.push_back(e.kv.modRevision);
        cv.notify_all();
    };
    auto handle = watcherClient.watch(w, cb);
    for (int i = 1; i <= 20; ++i)
        REQUIRE(writer.put("wl/" + std::to_string(i), "x").ok());
    c.kill9(leader);
    int acked = 21;
    for (int i = 21; i <= 40; ++i) {
        auto r = writer.put("wl/" + std::to_string(i), "x", 0, Clock::now() + 10s);
        if (r.ok()) ++acked;
    }
    std::unique_lock lock(mu);
    cv.wait_for(lock, 15s, [&] { return static_cast<int>(revisions.size()) >= acked; });
    CHECK(static_cast<int>(revisions.size()) >= acked);
    for (size_t i = 1; i < revisions.size(); ++i)
        CHECK(revisions[i] > revisions[i - 1]);
}

TEST_CASE("a linearizable read on one member sees a write acknowledged by another", "[faults]") {
    Cluster c;
    Client a(optionsFor(c, {0}));
    Client b(optionsFor(c, {2}));
    for (int i = 0; i < 50; ++i) {
        std::string v = std::to_string(i);
        REQUIRE(a.put("raw", v).ok());
        auto got = b.get("raw");
        REQUIRE(got.ok());
        REQUIRE(got->has_value());
        CHECK((*got)->value == v);
    }
}

TEST_CASE("kept-alive leases survive a leader change, unattended ones expire", "[faults]") {
    Cluster c;
    Client client(optionsFor(c));
    auto kept = client.leaseGrant(2);
    auto dropped = client.leaseGrant(2);
    REQUIRE(kept.ok());
    REQUIRE(dropped.ok());
    std::atomic<bool> lost{false};
    auto keeper = client.keepAlive(kept->id, 2, [&](const Error&) { lost = true; });
    c.kill9(leaderIndex(client, c));
    std::this_thread::sleep_for(4s);
    auto k = client.leaseTimeToLive(kept->id);
    REQUIRE(k.ok());
    CHECK(k->has_value());
    CHECK_FALSE(lost);
    auto d = client.leaseTimeToLive(dropped->id);
    REQUIRE(d.ok());
    CHECK_FALSE(d->has_value());
}

TEST_CASE("garbage and hostile frames on the client and peer ports only close that connection",
          "[faults]") {
    Cluster c;
    Client client(optionsFor(c));
    REQUIRE(client.put("before", "x").ok());
    std::mt19937 rng(7);
    std::vector<std::string> payloads;
    for (int i = 0; i < 20; ++i) {
        std::string junk(1 + rng() % 4096, '\0');
        for (auto& ch : junk)
            ch = static_cast<char>(rng());
        payloads.push_back(junk);
    }
    // A segment table announcing 2^30 words, then nothing; and one announcing 511 segments.
    payloads.push_back(std::string("\x00\x00\x00\x00\x00\x00\x00\x40", 8));
    payloads.push_back(std::string("\xfe\x01\x00\x00", 4) + std::string(64, '\xff'));
    // A well-formed single-segment message whose root is a list pointer with a huge count.
    payloads.push_back(std::string("\x00\x00\x00\x00\x02\x00\x00\x00", 8) +
                       std::string("\x01\x00\x00\x00\xff\xff\xff\xff", 8) + std::string(8, '\0'));
    for (const auto& p : payloads) {
        for (int i = 0; i < 3; ++i) {
            sendRaw(c.client[i], p);
            sendRaw(c.peer[i], p);
        }
    }
    // Every member is alive and serves.
    for (int i = 0; i < 3; ++i) {
        CHECK(kill(c.pid[i], 0) == 0);
        Client direct(optionsFor(c, {i}));
        auto got = direct.get("before");
        REQUIRE(got.ok());
        CHECK(got->has_value());
    }
    REQUIRE(client.put("after", "y").ok());
}

TEST_CASE("with production timings a kill -9'd leader is replaced within election timeout + 300 ms",
          "[faults]") {
    // Heartbeat 100 ms, election timeout 1000 ms. The survivors see the dead leader's
    // connections close and elect at once (Raft::peerUnreachable) instead of waiting out the
    // timeout; a slower election would still fail this bound only past 1.3 s.
    Cluster c({}, 100, 1000);
    Client client(optionsFor(c));
    REQUIRE(client.put("before", "x").ok());
    for (int round = 0; round < 3; ++round) {
        int leader = leaderIndex(client, c);
        uint64_t oldLeader = client.status(c.ep(leader), Clock::now() + 1s)->memberId;
        std::this_thread::sleep_for(300ms);  // steady state: heartbeats flowing
        auto begin = Clock::now();
        c.kill9(leader);
        bool elected = false;
        while (!elected && Clock::now() - begin < 5s) {
            for (int i = 0; i < 3 && !elected; ++i) {
                if (i == leader) continue;
                auto st = client.status(c.ep(i), Clock::now() + 200ms);
                elected = st.ok() && st->leader != 0 && st->leader != oldLeader;
            }
            if (!elected) std::this_thread::sleep_for(5ms);
        }
        auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - begin);
        INFO("round " << round << ": new leader after " << took.count() << " ms");
        CHECK(elected);
        CHECK(took < 1300ms);
        c.start(leader);
        REQUIRE(client.put("round/" + std::to_string(round), "x").ok());
    }
}
