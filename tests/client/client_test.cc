// coord::Client against real coordd processes: every call family, failover when the member it
// talks to is kill -9'd, watches that resume elsewhere without gaps or duplicates, keep-alive and
// its loss, deadlines against an unreachable cluster.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "kv/store.h"
#include "rpc/client.h"
#include "tests/support/client_options.h"
#include "tests/support/cluster.h"
#include "tests/support/thread_checks.h"

using namespace coord;
using namespace std::chrono_literals;
using coord::test::Cluster;
using coord::test::optionsFor;

namespace {

// Collects watch events from the client's thread.
struct Collector {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Event> events;
    std::optional<Error> error;

    WatchCallbacks callbacks() {
        WatchCallbacks cb;
        cb.onEvents = [this](std::span<const Event> evs, int64_t) {
            std::lock_guard lock(mu);
            events.insert(events.end(), evs.begin(), evs.end());
            cv.notify_all();
        };
        cb.onError = [this](const Error& e) {
            std::lock_guard lock(mu);
            error = e;
            cv.notify_all();
        };
        return cb;
    }
    bool waitFor(size_t n, std::chrono::seconds timeout = 20s) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, timeout, [&] { return events.size() >= n || error; });
    }
};

// Puts `key` only if it does not exist; otherwise reads it.
TxnRequest putIfAbsent(const std::string& key, const std::string& value) {
    TxnRequest t;
    Compare absent;
    absent.key = key;
    absent.target = Compare::Target::Create;
    absent.op = Compare::Op::Equal;
    absent.number = 0;
    t.compare.push_back(absent);
    PutRequest put;
    put.key = key;
    put.value = value;
    t.success.push_back(RequestOp{put});
    RangeRequest read;
    read.key = key;
    t.failure.push_back(RequestOp{read});
    return t;
}

}  // namespace

TEST_CASE("the client reads, writes, runs txns and manages leases", "[client]") {
    Cluster c;
    Client client(optionsFor(c));

    auto put = client.put("app/a", "1");
    REQUIRE(put.ok());
    int64_t rev = put->revision;
    auto got = client.get("app/a");
    REQUIRE(got.ok());
    REQUIRE(got->has_value());
    CHECK((*got)->value == "1");
    CHECK((*got)->modRevision == rev);

    // Create-if-absent: the first txn wins, the second sees the key.
    TxnRequest t = putIfAbsent("app/b", "mine");
    auto first = client.txn(t);
    REQUIRE(first.ok());
    CHECK(first->succeeded);
    auto second = client.txn(t);
    REQUIRE(second.ok());
    CHECK_FALSE(second->succeeded);

    RangeRequest all;
    all.key = "app/";
    all.rangeEnd = kv::prefixEnd("app/");
    auto range = client.range(all, true);
    REQUIRE(range.ok());
    CHECK(range->kvs.size() == 2);

    auto big = client.put(std::string(kv::kMaxKeyBytes + 1, 'k'), "v");
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().is(kv::ErrorCode::KeyTooLarge));

    auto lease = client.leaseGrant(30);
    REQUIRE(lease.ok());
    REQUIRE(client.put("leased", "v", lease->id).ok());
    auto ttl = client.leaseKeepAliveOnce(lease->id);
    REQUIRE(ttl.ok());
    CHECK(*ttl == 30);
    auto info = client.leaseTimeToLive(lease->id);
    REQUIRE(info.ok());
    REQUIRE(info->has_value());
    CHECK((*info)->keys == std::vector<std::string>{"leased"});
    REQUIRE(client.leaseRevoke(lease->id).ok());
    CHECK_FALSE(client.get("leased")->has_value());
    auto gone = client.leaseKeepAliveOnce(lease->id);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().is(kv::ErrorCode::LeaseNotFound));

    DeleteRangeRequest d;
    d.key = "app/";
    d.rangeEnd = kv::prefixEnd("app/");
    auto deleted = client.del(d);
    REQUIRE(deleted.ok());
    CHECK(deleted->deleted == 2);

    // A backup of one member's store imports into a fresh store with the same data.
    REQUIRE(client.put("backup/k", "v").ok());
    std::stringstream snap;
    auto saved = client.snapshot(snap);
    REQUIRE(saved.ok());
    CHECK(saved->bytes == snap.str().size());
    {
        coord::test::TempDir restoreDir;
        kv::Options o;
        o.sync = false;
        kv::Store restored(restoreDir.file("restored.mdb"), o);
        REQUIRE(restored.importSnapshot(snap).ok());
        auto restoredKv = restored.get("backup/k");
        REQUIRE(restoredKv.has_value());
        CHECK(restoredKv->value == "v");
        CHECK(restored.currentRevision() >= saved->revision);
    }

    auto st = client.status(c.ep(1));
    REQUIRE(st.ok());
    CHECK(st->leader != 0);
    CHECK(st->revision >= deleted->revision - 1);
}

TEST_CASE("the client fails over when its member is killed, and watches resume without gaps",
          "[client]") {
    Cluster c;
    Client client(optionsFor(c));
    auto start = client.put("w/0", "x");
    REQUIRE(start.ok());

    Collector seen;
    WatchRequest w;
    w.key = "w/";
    w.rangeEnd = kv::prefixEnd("w/");
    w.startRevision = start->revision;
    auto handle = client.watch(w, seen.callbacks());
    REQUIRE(handle);

    constexpr int kWrites = 60;
    int acked = 1;
    for (int i = 1; i < kWrites; ++i) {
        if (i == kWrites / 2) c.kill9(0);  // the member the client (and its watch) talk to
        // A write in flight when the member dies has an unknown outcome: retry it (puts of the
        // same value are idempotent for this test's purpose) until it is acknowledged.
        for (int attempt = 0; attempt < 20; ++attempt) {
            auto r = client.put("w/" + std::to_string(i), "x");
            if (r.ok()) break;
            REQUIRE(r.error().kind != Error::Kind::Store);
        }
        ++acked;
    }
    REQUIRE(seen.waitFor(kWrites));
    std::lock_guard lock(seen.mu);
    REQUIRE_FALSE(seen.error.has_value());
    // In revision order, no duplicates, and every acknowledged key is there.
    std::set<std::string> keys;
    for (size_t i = 1; i < seen.events.size(); ++i)
        CHECK(seen.events[i].kv.modRevision > seen.events[i - 1].kv.modRevision);
    for (const auto& e : seen.events)
        keys.insert(e.kv.key);
    CHECK(keys.size() == static_cast<size_t>(acked));
    CHECK(seen.events.front().kv.modRevision == start->revision);
}

TEST_CASE("keep-alive holds a lease until its handle goes, and reports a revoked lease",
          "[client]") {
    Cluster c;
    Client client(optionsFor(c));
    auto lease = client.leaseGrant(2);
    REQUIRE(lease.ok());
    std::atomic<bool> lost{false};
    auto keeper = client.keepAlive(lease->id, 2, [&](const Error&) { lost = true; });
    std::this_thread::sleep_for(4s);  // twice the TTL
    auto alive = client.leaseTimeToLive(lease->id);
    REQUIRE(alive.ok());
    CHECK(alive->has_value());
    CHECK_FALSE(lost);

    // Revoked behind the keeper's back: onLost fires within a renewal period.
    REQUIRE(client.leaseRevoke(lease->id).ok());
    for (int i = 0; i < 40 && !lost; ++i)
        std::this_thread::sleep_for(100ms);
    CHECK(lost);

    // Without a keeper, a lease expires after its TTL.
    auto other = client.leaseGrant(1);
    REQUIRE(other.ok());
    bool expired = false;
    for (int i = 0; i < 50 && !expired; ++i) {
        std::this_thread::sleep_for(100ms);
        auto r = client.leaseTimeToLive(other->id);
        expired = r.ok() && !r->has_value();
    }
    CHECK(expired);
}

TEST_CASE("calls to an unreachable cluster end at their deadline with Unavailable", "[client]") {
    ClientOptions o;
    o.endpoints = {"127.0.0.1:" + std::to_string(coord::test::freePort())};
    Client client(o);
    auto begin = Clock::now();
    auto r = client.get("k", Clock::now() + 300ms);
    auto took = Clock::now() - begin;
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == Error::Kind::Unavailable);
    CHECK(took < 2s);
    auto w = client.put("k", "v", 0, Clock::now() + 300ms);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().kind == Error::Kind::Unavailable);  // never sent: nothing applied
}

TEST_CASE(
    "asynchronous calls complete on the client's thread, chain from their callbacks and "
    "report Canceled when the client closes first",
    "[client]") {
    Cluster c;
    Client client(optionsFor(c));

    // 8 chains of 25 puts, each put started from the previous one's callback.
    constexpr int kChains = 8, kPerChain = 25;
    struct Chain {
        int done = 0;
        int64_t lastRevision = 0;
        bool ordered = true;
        bool offCallerThread = true;
    };
    std::vector<Chain> chains(kChains);
    std::mutex mu;
    std::condition_variable cv;
    int finished = 0, failures = 0;
    auto caller = std::this_thread::get_id();
    std::function<void(int)> step = [&](int i) {
        std::string key = "async/" + std::to_string(i) + "/" + std::to_string(chains[i].done);
        client.putAsync(key, "v", [&, i](Expected<PutResponse> r) {
            Chain& ch = chains[static_cast<size_t>(i)];
            if (std::this_thread::get_id() == caller) ch.offCallerThread = false;
            if (!r.ok()) {
                std::lock_guard lock(mu);
                ++failures;
                ++finished;
                cv.notify_all();
                return;
            }
            if (r->revision <= ch.lastRevision) ch.ordered = false;
            ch.lastRevision = r->revision;
            if (++ch.done < kPerChain) {
                step(i);
                return;
            }
            std::lock_guard lock(mu);
            ++finished;
            cv.notify_all();
        });
    };
    for (int i = 0; i < kChains; ++i)
        step(i);
    {
        std::unique_lock lock(mu);
        REQUIRE(cv.wait_for(lock, 30s, [&] { return finished == kChains; }));
    }
    CHECK(failures == 0);
    for (const auto& ch : chains) {
        CHECK(ch.done == kPerChain);
        CHECK(ch.ordered);
        CHECK(ch.offCallerThread);
    }

    // Reads, txns and typed errors through the asynchronous forms.
    std::promise<Expected<RangeResponse>> counted;
    RangeRequest all;
    all.key = "async/";
    all.rangeEnd = kv::prefixEnd("async/");
    all.countOnly = true;
    client.rangeAsync(all, false, [&](Expected<RangeResponse> r) { counted.set_value(r); });
    auto count = counted.get_future().get();
    REQUIRE(count.ok());
    CHECK(count->count == kChains * kPerChain);

    std::promise<Expected<TxnResponse>> txnDone;
    client.txnAsync(putIfAbsent("async/0/0", "again"),
                    [&](Expected<TxnResponse> r) { txnDone.set_value(r); });
    auto txn = txnDone.get_future().get();
    REQUIRE(txn.ok());
    CHECK_FALSE(txn->succeeded);  // the key exists

    std::promise<Expected<PutResponse>> bad;
    client.putAsync("", "v", [&](Expected<PutResponse> r) { bad.set_value(r); });
    auto refused = bad.get_future().get();
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().is(kv::ErrorCode::EmptyKey));

    // A call still dialing an unreachable member when its client is destroyed: Canceled, once.
    std::atomic<int> calls{0};
    std::atomic<bool> wasCanceled{false};
    {
        ClientOptions o;
        o.endpoints = {"127.0.0.1:" + std::to_string(coord::test::freePort())};
        Client lonely(o);
        lonely.rangeAsync(
            all, true,
            [&](Expected<RangeResponse> r) {
                ++calls;
                wasCanceled = !r.ok() && r.error().kind == Error::Kind::Canceled;
            },
            Clock::now() + 60s);
    }
    CHECK(calls == 1);
    CHECK(wasCanceled);
}

TEST_CASE("watches and keep-alives start without blocking, also from a client callback",
          "[client]") {
    Cluster c;
    Client client(optionsFor(c));
    auto lease = client.leaseGrant(30);
    REQUIRE(lease.ok());

    // From a watch callback (the client's thread): start a second watch and a keep-alive, and
    // drop a third watch at once. Blocking calls from there throw; these must not.
    Collector second;
    std::mutex mu;
    std::unique_ptr<Handle> started, keeper;
    std::atomic<bool> threw{false};
    WatchRequest first;
    first.key = "cb/first";
    WatchCallbacks cb;
    cb.onEvents = [&](std::span<const Event>, int64_t revision) {
        try {
            WatchRequest w;
            w.key = "cb/second";
            w.startRevision = revision + 1;
            auto h = client.watch(w, second.callbacks());
            auto dropped = client.watch(w, WatchCallbacks{});
            dropped.reset();
            auto k = client.keepAlive(lease->id, 30, [](const Error&) {});
            std::lock_guard lock(mu);
            started = std::move(h);
            keeper = std::move(k);
        } catch (const std::exception&) {
            threw = true;
        }
    };
    auto firstHandle = client.watch(first, cb);
    REQUIRE(firstHandle != nullptr);
    REQUIRE(client.put("cb/first", "go").ok());
    for (int i = 0; i < 200; ++i) {
        {
            std::lock_guard lock(mu);
            if (started) break;
        }
        std::this_thread::sleep_for(10ms);
    }
    CHECK_FALSE(threw);
    {
        std::lock_guard lock(mu);
        REQUIRE(started != nullptr);
        REQUIRE(keeper != nullptr);
    }
    REQUIRE(client.put("cb/second", "seen").ok());
    REQUIRE(second.waitFor(1));
    std::lock_guard lock(second.mu);
    REQUIRE_FALSE(second.error);
    CHECK(second.events.front().kv.value == "seen");
}

TEST_CASE("a detached watch stops without waiting and delivers nothing once the stop is through",
          "[client]") {
    Cluster c;
    Client client(optionsFor(c));
    // Shared collectors: a detached watch's callbacks must not depend on the caller's frame.
    auto detached = std::make_shared<Collector>();
    auto control = std::make_shared<Collector>();
    // From an explicit revision: a watch "from now" starts on the client's thread and may
    // register after the put below is applied, missing it.
    auto before = client.put("detach/start", "0");
    REQUIRE(before.ok());
    WatchRequest w;
    w.key = "detach/k";
    w.startRevision = before->revision + 1;
    auto handle = client.watch(w, detached->callbacks());
    auto controlHandle = client.watch(w, control->callbacks());
    REQUIRE(client.put("detach/k", "1").ok());
    REQUIRE(detached->waitFor(1));
    REQUIRE(control->waitFor(1));

    handle->detach();
    handle.reset();  // returns at once after detach
    // The client's thread runs posted work in order: once a later blocking call is answered,
    // the stop has been handled.
    REQUIRE(client.get("detach/k").ok());
    REQUIRE(client.put("detach/k", "2").ok());
    REQUIRE(control->waitFor(2));
    std::lock_guard lock(detached->mu);
    CHECK(detached->events.size() == 1);
    CHECK_FALSE(detached->error);
}

TEST_CASE("ranges and watch events far larger than one RPC message arrive whole", "[client]") {
    // Production timings: megabyte entries under a sanitizer must not turn into elections.
    Cluster c({}, 100, 1000);
    Client client(optionsFor(c));
    // 72 values of 1 MiB: beyond a member's response bound (32 MiB) and beyond one Cap'n Proto
    // message (64 MiB), so a read comes in parts and the delete's revision in several calls.
    constexpr int kKeys = 72;
    auto value = [](int i) {
        return std::string(size_t{1} << 20, static_cast<char>('A' + i % 50));
    };
    auto key = [](int i) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "big/%03d", i);
        return std::string(buf);
    };
    for (int i = 0; i < kKeys; ++i) {
        // A put whose outcome is unknown is put again: the same value, the same state.
        auto put = client.put(key(i), value(i));
        for (int retry = 0; retry < 5 && !put.ok() && put.error().kind != Error::Kind::Store;
             ++retry)
            put = client.put(key(i), value(i));
        INFO((put.ok() ? std::string() : put.error().message));
        REQUIRE(put.ok());
    }

    // Small keys go in between the big ones while the read is on: the result must still be
    // the range at one revision.
    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    std::thread writer([&] {
        Client other(optionsFor(c));
        for (int i = 0; i < 400 && !stop; ++i) {
            if (other.put(key(i % kKeys) + "-x" + std::to_string(i), "x").ok()) ++written;
        }
    });
    RangeRequest all;
    all.key = "big/";
    all.rangeEnd = kv::prefixEnd("big/");
    auto r = client.range(all);
    stop = true;
    writer.join();
    REQUIRE(r.ok());
    CHECK(written > 0);
    CHECK(static_cast<int64_t>(r->kvs.size()) == r->count);
    CHECK_FALSE(r->more);
    CHECK_FALSE(r->truncated);
    int big = 0;
    for (size_t i = 0; i < r->kvs.size(); ++i) {
        CHECK(r->kvs[i].modRevision <= r->revision);
        if (i > 0) CHECK(r->kvs[i - 1].key < r->kvs[i].key);
        if (r->kvs[i].value.size() == (size_t{1} << 20)) {
            CHECK(r->kvs[i].key == key(big));
            CHECK(r->kvs[i].value == value(big));
            ++big;
        }
    }
    CHECK(big == kKeys);

    // A write beyond the request bound (kv::kMaxRequestBytes, 32 MiB) is refused, unsent.
    TxnRequest huge;
    for (int i = 0; i < 33; ++i)
        huge.success.push_back(RequestOp{PutRequest{"huge/" + std::to_string(i), value(i)}});
    auto refused = client.txn(huge);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().is(kv::ErrorCode::RequestTooLarge));

    // A limit, keys only, and descending key order read on past the bound the same way.
    RangeRequest limited = all;
    limited.revision = r->revision;
    limited.limit = 50;
    auto l = client.range(limited);
    REQUIRE(l.ok());
    CHECK(l->kvs.size() == 50);
    CHECK(l->more);
    RangeRequest down = all;
    down.revision = r->revision;
    down.sortOrder = kv::SortOrder::Descend;
    auto d = client.range(down);
    REQUIRE(d.ok());
    REQUIRE(d->kvs.size() == r->kvs.size());
    CHECK(d->kvs.front().key == r->kvs.back().key);
    CHECK(d->kvs.back().key == r->kvs.front().key);
    // Sorted by another target, the parts cannot be joined: a clear error, not a partial list.
    RangeRequest byMod = all;
    byMod.sortTarget = kv::SortTarget::Mod;
    byMod.sortOrder = kv::SortOrder::Descend;
    auto m = client.range(byMod);
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().kind == Error::Kind::Store);
    CHECK(m.error().message.find("limit") != std::string::npos);

    // One revision that deletes every key, with the previous values: about 72 MiB of events.
    Collector deletes;
    WatchRequest w;
    w.key = "big/";
    w.rangeEnd = kv::prefixEnd("big/");
    w.prevKv = true;
    RangeRequest counting = all;
    counting.countOnly = true;
    auto now = client.range(counting);
    REQUIRE(now.ok());
    w.startRevision = now->revision + 1;
    auto watch = client.watch(w, deletes.callbacks());
    REQUIRE(watch);
    DeleteRangeRequest del;
    del.key = "big/";
    del.rangeEnd = kv::prefixEnd("big/");
    auto gone = client.del(del);
    REQUIRE(gone.ok());
    REQUIRE(deletes.waitFor(static_cast<size_t>(gone->deleted)));
    std::lock_guard lock(deletes.mu);
    REQUIRE_FALSE(deletes.error.has_value());
    REQUIRE(deletes.events.size() == static_cast<size_t>(gone->deleted));
    int seenBig = 0;
    for (const auto& e : deletes.events) {
        CHECK(e.type == Event::Type::Delete);
        CHECK(e.kv.modRevision == gone->revision);
        REQUIRE(e.prevKv.has_value());
        if (e.prevKv->value.size() == (size_t{1} << 20)) {
            CHECK(e.prevKv->value == value(seenBig));
            ++seenBig;
        }
    }
    CHECK(seenBig == kKeys);
}

TEST_CASE("watches beyond a connection's bound end with TooManyWatches, other connections go on",
          "[client]") {
    Cluster c({"--max-watches-per-connection", "200"});
    ClientOptions one = optionsFor(c);
    one.endpoints = {c.ep(0)};
    Client client(one);
    REQUIRE(client.put("w", "0").ok());
    constexpr int kBound = 200;
    std::vector<std::unique_ptr<Handle>> handles;
    std::atomic<int> errors{0};
    std::mutex mu;
    std::optional<Error> lastError;
    for (int i = 0; i <= kBound; ++i) {
        WatchRequest w;
        w.key = "w";
        WatchCallbacks cb;
        cb.onError = [&](const Error& e) {
            std::lock_guard lock(mu);
            lastError = e;
            ++errors;
        };
        handles.push_back(client.watch(w, cb));
        REQUIRE(handles.back());
    }
    auto until = std::chrono::steady_clock::now() + 30s;
    while (errors == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(10ms);
    {
        std::lock_guard lock(mu);
        REQUIRE(lastError.has_value());
        CHECK(lastError->is(kv::ErrorCode::TooManyWatches));
    }
    CHECK(errors == 1);

    // Another connection to the same member watches as usual.
    Client other(one);
    auto written = client.put("w", "1");
    REQUIRE(written.ok());
    Collector seen;
    WatchRequest w;
    w.key = "w";
    w.startRevision = written->revision;
    auto handle = other.watch(w, seen.callbacks());
    REQUIRE(handle);
    REQUIRE(seen.waitFor(1));
    std::lock_guard lock(seen.mu);
    CHECK_FALSE(seen.error.has_value());
    CHECK(seen.events.front().kv.value == "1");
}
