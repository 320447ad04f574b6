// Deferred commits (batches applied in an open transaction that only the writer thread sees
// until it commits: Store::applyDeferred) and the in-memory key index.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "kv/internal.h"
#include "kv/key_index.h"
#include "tests/kv/helpers.h"

using namespace coord::kv;
using namespace coord::kv::test;

namespace {
// A 1 MiB map that fills before the quota is reached; deferral stops `headroom` before its end.
void useSmallMap(StoreFixture& f, size_t headroom) {
    f.options.mapSizeBytes = 1 << 20;
    f.options.quotaBytes = size_t{1} << 30;
    f.options.deferredHeadroomBytes = headroom;
    f.reopen();
}
}  // namespace

TEST_CASE("deferred batches: final results at once, other threads see them once committed",
          "[kv]") {
    StoreFixture f;
    f.put("k", "0");
    std::vector<IndexedRequest> first{{2, PutRequest{"k", "1"}}, {3, PutRequest{"a", "x"}}};
    auto results = f.s().applyDeferred(first);
    REQUIRE(results.size() == 2);
    REQUIRE(results[1].ok());
    CHECK(std::get<PutResponse>(results[1].value()).revision == 4);
    std::vector<IndexedRequest> second{{4, DeleteRangeRequest{"a", {}}}};
    REQUIRE(f.s().applyDeferred(second).at(0).ok());
    CHECK(f.s().hasDeferred());
    CHECK(f.s().deferredRequests() == 3);
    CHECK(f.s().appliedIndex() == 4);
    CHECK(f.s().committedIndex() == 1);
    CHECK(f.s().currentRevision() == 5);

    // The writer thread reads the open transaction (history included) ...
    CHECK(f.s().get("k")->value == "1");
    CHECK_FALSE(f.s().get("a"));
    CHECK(f.range(rangeOf("a", {}, 4)).kvs.at(0).value == "x");
    // ... another thread reads the committed state.
    auto elsewhere = [&](std::string key) {
        std::optional<KeyValue> kv;
        std::thread([&] { kv = f.s().get(key); }).join();
        return kv;
    };
    CHECK(elsewhere("k")->value == "0");
    CHECK_FALSE(elsewhere("a"));

    f.s().commitDeferred(false);
    CHECK_FALSE(f.s().hasDeferred());
    CHECK(f.s().committedIndex() == 4);
    CHECK(elsewhere("k")->value == "1");
    f.reopen();
    CHECK(f.s().get("k")->value == "1");
    CHECK(f.s().appliedIndex() == 4);
}

TEST_CASE("rangeApplied sees deferred batches from any thread, at any retained revision", "[kv]") {
    StoreFixture f;
    f.put("k", "0");  // revision 2, committed
    std::vector<IndexedRequest> first{{2, PutRequest{"k", "1"}}, {3, PutRequest{"a", "x"}}};
    REQUIRE(f.s().applyDeferred(first).at(1).ok());
    std::vector<IndexedRequest> second{{4, DeleteRangeRequest{"a", {}}}};
    REQUIRE(f.s().applyDeferred(second).at(0).ok());
    REQUIRE(f.s().hasDeferred());

    auto elsewhere = [&](RangeRequest r) {
        std::optional<KvResult<RangeResponse>> out;
        std::thread([&] { out = f.s().rangeApplied(r); }).join();
        return std::move(*out);
    };
    auto head = elsewhere(rangeOf("a", "l"));
    REQUIRE(head.ok());
    CHECK(head->revision == 5);
    REQUIRE(head->kvs.size() == 1);
    CHECK(head->kvs[0].value == "1");
    CHECK(head->kvs[0].modRevision == 3);
    CHECK(head->kvs[0].version == 2);
    // An older revision: the deferred put of "a", and "k" as committed.
    auto at4 = elsewhere(rangeOf("a", "l", 4));
    REQUIRE(at4.ok());
    REQUIRE(at4->kvs.size() == 2);
    CHECK(at4->kvs[0].key == "a");
    CHECK(at4->kvs[0].value == "x");
    auto at2 = elsewhere(rangeOf("k", {}, 2));
    REQUIRE(at2.ok());
    CHECK(at2->kvs.at(0).value == "0");
    auto future = elsewhere(rangeOf("k", {}, 6));
    REQUIRE_FALSE(future.ok());
    CHECK(future.error().code == ErrorCode::FutureRevision);
    // The plain range of another thread still reads the committed state.
    std::optional<KvResult<RangeResponse>> committed;
    std::thread([&] { committed = f.s().range(rangeOf("k")); }).join();
    CHECK(committed->value().kvs.at(0).value == "0");

    // After the commit the same answers come from the data file.
    f.s().commitDeferred(false);
    auto after = elsewhere(rangeOf("a", "l"));
    REQUIRE(after.ok());
    CHECK(after->revision == 5);
    CHECK(after->kvs.at(0).value == "1");
    CHECK(elsewhere(rangeOf("a", "l", 4))->kvs.size() == 2);
}

TEST_CASE("deferred batches are committed once their records reach deferredMaxBytes", "[kv]") {
    StoreFixture f;
    f.options.deferredMaxBytes = 64 * 1024;
    f.reopen();
    std::string value(10000, 'v');
    uint64_t index = 0;
    int committedAfter = 0;
    for (int i = 1; i <= 20 && committedAfter == 0; ++i) {
        std::vector<IndexedRequest> batch{{++index, PutRequest{"k" + std::to_string(i), value}}};
        REQUIRE(f.s().applyDeferred(batch).at(0).ok());
        if (!f.s().hasDeferred()) committedAfter = i;
    }
    // 64 KiB of 10 kB records: the seventh batch crosses the bound.
    CHECK(committedAfter == 7);
    CHECK(f.s().committedIndex() == index);
}

TEST_CASE("a deferred batch is dropped by a crash before its commit, and applies again the same",
          "[kv]") {
    // The member's Raft log replays what the store lost: same indexes, same results.
    StoreFixture f;
    std::vector<IndexedRequest> batch{{1, PutRequest{"k", "1"}}, {2, PutRequest{"k", "2"}}};
    auto before = f.s().applyDeferred(batch);
    // A process crash: the open transaction never commits.
    f.reopen();
    CHECK(f.s().appliedIndex() == 0);
    CHECK_FALSE(f.s().get("k"));
    auto again = f.s().applyDeferred(batch);
    REQUIRE(again.size() == before.size());
    for (size_t i = 0; i < again.size(); ++i)
        CHECK(std::get<PutResponse>(again[i].value()).revision ==
              std::get<PutResponse>(before[i].value()).revision);
}

TEST_CASE("apply() and other writes commit deferred batches first", "[kv]") {
    StoreFixture f;
    std::vector<IndexedRequest> batch{{1, PutRequest{"k", "1"}}};
    f.s().applyDeferred(batch);
    CHECK(f.put("j", "2") == 3);  // write() applies at index 2 after the deferred batch
    CHECK_FALSE(f.s().hasDeferred());
    CHECK(f.s().committedIndex() == 2);
    std::vector<IndexedRequest> more{{3, PutRequest{"k", "3"}}};
    f.s().applyDeferred(more);
    REQUIRE(f.s().compact(3).ok());
    CHECK_FALSE(f.s().hasDeferred());
    f.s().applyDeferred(std::vector<IndexedRequest>{{5, PutRequest{"k", "5"}}});
    std::stringstream snap;
    f.s().exportSnapshot(snap);  // committed state: before the open batch
    StoreFixture g;
    REQUIRE(g.s().importSnapshot(snap).ok());
    CHECK(g.s().get("k")->value == "3");
}

TEST_CASE("a deferred batch that fills the map is applied on its own, earlier ones stay", "[kv]") {
    StoreFixture f;
    useSmallMap(f, 64 * 1024);
    std::string value(20000, 'y');
    uint64_t index = 0;
    int n = 0;
    auto room = [&] { return f.s().options().mapSizeBytes - f.s().usedBytes(); };
    while (room() > 400 * 1024) {
        std::vector<IndexedRequest> batch{{++index, PutRequest{"k" + std::to_string(n++), value}}};
        REQUIRE(f.s().applyDeferred(batch).at(0).ok());
        f.s().commitDeferred(false);
    }
    // Deferred: a small batch that fits, then one larger than the room left.
    std::vector<IndexedRequest> small{{++index, PutRequest{"small", "v"}}};
    auto smallResult = f.s().applyDeferred(small);
    REQUIRE(smallResult.at(0).ok());
    int64_t smallRev = std::get<PutResponse>(smallResult[0].value()).revision;
    std::vector<IndexedRequest> big;
    for (size_t j = 0; j < room() / value.size() + 2; ++j)
        big.push_back({++index, PutRequest{"big" + std::to_string(j), value}});
    auto r = f.s().applyDeferred(big);
    REQUIRE(r.size() == big.size());
    for (auto& one : r) {
        REQUIRE_FALSE(one.ok());
        CHECK(one.error().code == ErrorCode::NoSpace);
    }
    // The small batch's answer stands: committed, with the revision it was given.
    CHECK_FALSE(f.s().hasDeferred());
    std::optional<KvResult<RangeResponse>> seen;
    std::thread([&] { seen = f.s().rangeApplied(rangeOf("big", "bih")); }).join();
    CHECK(seen->value().kvs.empty());
    std::thread([&] { seen = f.s().rangeApplied(rangeOf("small")); }).join();
    CHECK(seen->value().kvs.at(0).modRevision == smallRev);
    f.reopen();
    CHECK(f.s().appliedIndex() == index);
    CHECK(f.s().currentRevision() == smallRev);
    CHECK(f.s().get("small")->value == "v");
    CHECK_FALSE(f.s().get("big0"));
}

TEST_CASE("near the end of the map deferred batches are committed one by one", "[kv]") {
    StoreFixture f;
    useSmallMap(f, 512 * 1024);
    std::string value(20000, 'y');
    uint64_t index = 0;
    bool full = false, committedEach = false;
    for (int i = 0; i < 200 && !full; ++i) {
        std::vector<IndexedRequest> batch{{++index, PutRequest{"k" + std::to_string(i), value}}};
        auto r = f.s().applyDeferred(batch);
        full = !r.at(0).ok();
        if (full) CHECK(r[0].error().code == ErrorCode::NoSpace);
        if (!full && !f.s().hasDeferred()) committedEach = true;
        if (i % 4 == 3) f.s().commitDeferred(false);  // as the member's interval does
    }
    REQUIRE(full);
    CHECK(committedEach);
    // As with apply(): deletes still work once the map is full.
    std::vector<IndexedRequest> del{{++index, DeleteRangeRequest{"k0", {}}}};
    REQUIRE(f.s().applyDeferred(del).at(0).ok());
    f.s().commitDeferred(true);
    CHECK_FALSE(f.s().get("k0"));
}

// ---- the in-memory key index ----

TEST_CASE("key index: lookups at a revision, rollback of a dropped batch, compaction", "[kv]") {
    detail::KeyIndex index;
    index.add("a", {{2, 0}, false});
    index.add("b", {{3, 0}, false});
    index.add("a", {{4, 0}, true});
    index.forget();
    CHECK(index.latestAtOrBelow("a", 3)->rev.main == 2);
    CHECK(index.latestAtOrBelow("a", 9)->tombstone);
    CHECK_FALSE(index.latestAtOrBelow("a", 1));
    CHECK(index.latestBefore("a", {4, 0})->rev.main == 2);

    size_t mark = index.mark();
    index.add("c", {{5, 0}, false});
    index.add("a", {{5, 1}, false});
    index.setCompacted(3);
    index.rollback(mark);
    CHECK_FALSE(index.latestAtOrBelow("c", 9));
    CHECK(index.latestAtOrBelow("a", 9)->rev.main == 4);
    CHECK(index.compacted() == 0);
    CHECK(index.keyCount() == 2);

    std::vector<std::string> seen;
    auto collect = [&](const std::string& k, const detail::IndexEntry& e) {
        if (!e.tombstone) seen.push_back(k);
        return true;
    };
    REQUIRE(index.forEachAt("a", "c", 3, collect));
    CHECK(seen == std::vector<std::string>{"a", "b"});
    index.setCompacted(4);
    seen.clear();
    CHECK_FALSE(index.forEachAt("a", "c", 3, collect));  // below the compacted revision
    REQUIRE(index.forEachAt("a", "c", 4, collect));
    CHECK(seen == std::vector<std::string>{"b"});
    index.remove("a", {2, 0});
    index.remove("a", {4, 0});
    CHECK(index.keyCount() == 1);
}

TEST_CASE("key index: a key's many revisions, removed oldest first or undone, read at each",
          "[kv]") {
    detail::KeyIndex index;
    // 100 revisions of one key (every tenth a delete), with the newest's create revision,
    // version and lease; the older ones keep only their revision and tombstone.
    for (int64_t r = 1; r <= 100; ++r) {
        detail::IndexEntry e{{10 * r, static_cast<int32_t>(r % 3)}, r % 10 == 0};
        e.createRevision = 7;
        e.version = r;
        e.lease = 99;
        index.add("k", e);
    }
    index.forget();
    auto check = [&](int64_t from, int64_t to) {
        for (int64_t r = from; r <= to; ++r) {
            auto e = index.latestAtOrBelow("k", 10 * r + 5);
            REQUIRE(e.has_value());
            CHECK(e->rev == detail::Revision{10 * r, static_cast<int32_t>(r % 3)});
            CHECK(e->tombstone == (r % 10 == 0));
            CHECK(e->version == (r == 100 ? 100 : 0));
            auto before = index.latestBefore("k", {10 * r, 0});
            if (r == from) {
                CHECK_FALSE(before.has_value());
            } else {
                REQUIRE(before.has_value());
                CHECK(before->rev.main == 10 * (r - 1));
            }
        }
    };
    check(1, 100);
    CHECK(index.latestAtOrBelow("k", 1000)->lease == 99);
    CHECK(index.latestAtOrBelow("k", 1000)->createRevision == 7);
    // A batch adding three more revisions, dropped: the key is as before.
    size_t mark = index.mark();
    for (int64_t r = 101; r <= 103; ++r)
        index.add("k", {{10 * r, 0}, false});
    CHECK(index.latestAtOrBelow("k", 2000)->rev.main == 1030);
    index.rollback(mark);
    check(1, 100);
    // Compaction removes the oldest sixty, one at a time; the rest read as before.
    index.setCompacted(600);
    for (int64_t r = 1; r <= 60; ++r)
        index.remove("k", {10 * r, static_cast<int32_t>(r % 3)});
    index.forget();
    check(61, 100);
    CHECK_FALSE(index.latestAtOrBelow("k", 605).has_value());  // its entry at 600 is gone
    // The older ones all go, then the newest: the key goes with it.
    for (int64_t r = 61; r <= 99; ++r)
        index.remove("k", {10 * r, static_cast<int32_t>(r % 3)});
    CHECK(index.latestAtOrBelow("k", 1000)->version == 100);
    CHECK_FALSE(index.latestBefore("k", {1000, 1}).has_value());
    index.remove("k", {1000, 1});
    CHECK(index.keyCount() == 0);
}

TEST_CASE("opening a format-1 data file drops its derived tables and keeps the data", "[kv]") {
    coord::test::TempDir dir;
    std::string path = dir.file("old.mdb");
    {
        // What format 1 wrote: the revisions, plus a key index and current values.
        lmdb::EnvOptions eo;
        eo.sync = false;
        lmdb::Env env(path, eo);
        lmdb::Txn txn(env, lmdb::Txn::Mode::ReadWrite);
        lmdb::Table meta(txn, "meta", MDB_CREATE), rev(txn, "rev", MDB_CREATE),
            keyIndex(txn, "key_index", MDB_CREATE | MDB_DUPSORT), live(txn, "live", MDB_CREATE);
        lmdb::Table(txn, "lease", MDB_CREATE);
        lmdb::Table(txn, "lease_keys", MDB_CREATE | MDB_DUPSORT);
        meta.put(txn, detail::kMetaFormat, detail::kFormatVersion1);
        meta.put(txn, detail::kMetaCurrentRev, detail::encodeI64(3));
        meta.put(txn, detail::kMetaCompactedRev, detail::encodeI64(0));
        meta.put(txn, detail::kMetaAppliedIndex, detail::encodeI64(2));
        meta.put(txn, detail::kMetaCompactCursor, detail::encodeRevKey({0, 0}));
        rev.put(txn, detail::encodeRevKey({2, 0}),
                detail::encodeRevRecord(KeyValue{"k", "one", 2, 2, 1, 0}, false));
        rev.put(txn, detail::encodeRevKey({3, 0}),
                detail::encodeRevRecord(KeyValue{"k", "two", 2, 3, 2, 0}, false));
        keyIndex.put(txn, "k", "junk");
        live.put(txn, "k", "junk");
        txn.commit();
    }
    Options o;
    o.sync = false;
    {
        Store store(path, o);
        CHECK(store.get("k")->value == "two");
        CHECK(store.get("k")->version == 2);
        RangeRequest at2;
        at2.key = "k";
        at2.revision = 2;
        CHECK(store.range(at2).value().kvs.at(0).value == "one");
        CHECK(store.put("k", "three")->revision == 4);
    }
    lmdb::EnvOptions eo;
    lmdb::Env env(path, eo);
    lmdb::Txn txn(env, lmdb::Txn::Mode::ReadWrite);
    CHECK_THROWS(lmdb::Table(txn, "key_index", 0));
    lmdb::Table meta(txn, "meta", 0);
    CHECK(*meta.get(txn, detail::kMetaFormat) == detail::kFormatVersion);
}

TEST_CASE(
    "puts take the previous create revision, version and lease from the index, also after "
    "a restart",
    "[kv]") {
    // Without watchers and without prevKv a put reads no old record: the index entry carries
    // what the new revision inherits. The same puts with a watcher read the record: both paths
    // must agree.
    for (bool watched : {false, true}) {
        StoreFixture f;
        REQUIRE(f.s().leaseGrant(7, 60).ok());
        std::optional<WatchId> watch;
        struct Sink : WatchSink {
            bool onEvents(WatchId, std::span<const Event>, int64_t) override { return true; }
            void onProgress(WatchId, int64_t) override {}
            void onCanceled(WatchId, const Error&) override {}
        };
        auto sink = std::make_shared<Sink>();
        if (watched) {
            WatchRequest w;
            w.key = "k";
            auto id = f.s().watchHub().watch(w, sink);
            REQUIRE(id.ok());
            watch = *id;
        }
        auto first = f.s().put("k", "1", 7);
        REQUIRE(first.ok());
        REQUIRE(f.s().put("k", "2", 7).ok());
        if (!watched) f.reopen();  // the index is rebuilt from the records
        PutRequest keepLease{"k", "3", 0};
        keepLease.ignoreLease = true;
        REQUIRE(f.s().write(keepLease).ok());
        auto kv = f.s().get("k");
        REQUIRE(kv);
        CHECK(kv->value == "3");
        CHECK(kv->version == 3);
        CHECK(kv->createRevision == first->revision);
        CHECK(kv->lease == 7);
        // A delete, then a put: a new incarnation.
        REQUIRE(f.s().deleteRange("k").ok());
        auto again = f.s().put("k", "4");
        REQUIRE(again.ok());
        kv = f.s().get("k");
        CHECK(kv->version == 1);
        CHECK(kv->createRevision == again->revision);
        CHECK(kv->lease == 0);
        if (watch) f.s().watchHub().cancel(*watch);
    }
}

TEST_CASE("key index: only a key's newest entry carries its create revision, version and lease",
          "[kv]") {
    detail::KeyIndex index;
    index.add("k", {{2, 0}, false, 2, 1, 7});
    index.add("k", {{3, 0}, false, 2, 2, 7});
    index.forget();
    auto newest = index.latestAtOrBelow("k", 9);
    REQUIRE(newest);
    CHECK(newest->createRevision == 2);
    CHECK(newest->version == 2);
    CHECK(newest->lease == 7);
    auto older = index.latestAtOrBelow("k", 2);
    REQUIRE(older);
    CHECK(older->rev.main == 2);
    CHECK(older->version == 0);  // not kept for older entries

    // Rolling back a write brings back the previous newest entry whole.
    size_t mark = index.mark();
    index.add("k", {{4, 0}, true});
    CHECK(index.latestAtOrBelow("k", 9)->tombstone);
    index.rollback(mark);
    newest = index.latestAtOrBelow("k", 9);
    REQUIRE(newest);
    CHECK(newest->rev.main == 3);
    CHECK(newest->version == 2);
    CHECK(newest->lease == 7);
    CHECK(index.latestBefore("k", {4, 0})->version == 2);
    CHECK(index.latestBefore("k", {3, 0})->rev.main == 2);
}

// Random writes, dropped batches, compactions and lookups, against a plain model.
TEST_CASE("key index: agrees with a plain model under random writes, rollbacks and compaction",
          "[kv]") {
    using Model = std::map<std::string, std::vector<detail::IndexEntry>>;
    detail::KeyIndex index;
    Model model;
    std::mt19937 rng(20261207);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    auto keyName = [&](int i) {
        // Short keys stay in the string's own buffer, long ones do not: both kinds.
        return i % 3 == 0 ? "long/key/name/past/sixteen/" + std::to_string(i)
                          : "k" + std::to_string(i);
    };
    int64_t rev = 1;
    int64_t compacted = 0;
    auto check = [&] {
        REQUIRE(index.keyCount() == model.size());
        for (int probe = 0; probe < 20; ++probe) {
            std::string key = keyName(pick(60));
            int64_t at = compacted + pick(static_cast<int>(rev - compacted) + 1);
            auto got = index.latestAtOrBelow(key, at);
            std::optional<detail::IndexEntry> want;
            if (auto it = model.find(key); it != model.end()) {
                for (const auto& e : it->second)
                    if (e.rev.main <= at) want = e;
                if (want && want->rev != it->second.back().rev) {
                    want->createRevision = want->version = want->lease = 0;
                }
            }
            REQUIRE(got.has_value() == want.has_value());
            if (!got) continue;
            CHECK(got->rev == want->rev);
            CHECK(got->tombstone == want->tombstone);
            CHECK(got->createRevision == want->createRevision);
            CHECK(got->version == want->version);
            CHECK(got->lease == want->lease);
        }
        // A range over everything at the current revision lists the model's live keys in order.
        std::vector<std::string> listed, live;
        REQUIRE(index.forEachAt(std::string(), std::string(1, '\0'), rev,
                                [&](const std::string& k, const detail::IndexEntry& e) {
                                    if (!e.tombstone) listed.push_back(k);
                                    return true;
                                }));
        for (const auto& [k, entries] : model)
            if (!entries.back().tombstone) live.push_back(k);
        REQUIRE(listed == live);
    };
    for (int round = 0; round < 400; ++round) {
        // A batch of writes, kept or dropped.
        Model before = model;
        size_t mark = index.mark();
        ++rev;
        int writes = 1 + pick(6);
        for (int32_t sub = 0; sub < writes; ++sub) {
            std::string key = keyName(pick(60));
            auto& entries = model[key];
            bool tombstone = !entries.empty() && !entries.back().tombstone && pick(4) == 0;
            if (entries.empty() && pick(2) == 0) tombstone = false;
            if (!entries.empty() && entries.back().rev.main == rev) continue;  // once per batch
            detail::IndexEntry e{{rev, sub}, tombstone};
            if (!tombstone) {
                bool fresh = entries.empty() || entries.back().tombstone;
                e.createRevision = fresh ? rev : entries.back().createRevision;
                e.version = fresh ? 1 : entries.back().version + 1;
                e.lease = pick(3);
            }
            entries.push_back(e);
            index.add(key, e);
        }
        if (pick(4) == 0) {
            index.rollback(mark);
            model = std::move(before);
            --rev;
        } else {
            index.forget();
        }
        check();
        // Now and then compact below a recent revision, as the store does: oldest first, every
        // entry but the newest live one at or below the target.
        if (pick(10) == 0 && rev > compacted + 1) {
            int64_t target = compacted + 1 + pick(static_cast<int>(rev - compacted));
            std::vector<std::pair<std::string, detail::Revision>> removed;
            for (auto& [k, entries] : model) {
                const detail::IndexEntry* keep = nullptr;
                for (const auto& e : entries)
                    if (e.rev.main <= target) keep = &e;
                for (const auto& e : entries) {
                    if (e.rev.main >= target) break;
                    if (&e == keep && !e.tombstone) continue;
                    removed.emplace_back(k, e.rev);
                }
            }
            std::sort(removed.begin(), removed.end(),
                      [](const auto& a, const auto& b) { return a.second < b.second; });
            index.setCompacted(target);
            index.forget();
            for (const auto& [k, r] : removed) {
                index.remove(k, r);
                auto& entries = model[k];
                entries.erase(std::find_if(entries.begin(), entries.end(),
                                           [&](const auto& e) { return e.rev == r; }));
                if (entries.empty()) model.erase(k);
            }
            compacted = target;
            check();
        }
    }
}
