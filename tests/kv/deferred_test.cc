// Deferred commits: batches applied in an open transaction that only the writer thread sees
// until it commits (Store::applyDeferred).
#include <catch2/catch.hpp>

#include <sstream>
#include <thread>

#include "tests/kv/helpers.h"

using namespace coord::kv;
using namespace coord::kv::test;

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

TEST_CASE("a deferred batch that fills the map is applied on its own; earlier ones stay", "[kv]") {
    StoreFixture f;
    f.options.mapSizeBytes = 1 << 20;
    f.options.quotaBytes = size_t{1} << 30;
    f.options.deferredHeadroomBytes = 0;  // defer right up to the end of the map
    f.reopen();
    std::string value(20000, 'y');
    uint64_t index = 0;
    int64_t lastOk = 0;
    bool full = false;
    for (int i = 0; i < 200 && !full; ++i) {
        std::vector<IndexedRequest> batch{{++index, PutRequest{"k" + std::to_string(i), value}}};
        auto r = f.s().applyDeferred(batch);
        if (r.at(0).ok()) {
            lastOk = std::get<PutResponse>(r[0].value()).revision;
        } else {
            CHECK(r[0].error().code == ErrorCode::NoSpace);
            full = true;
        }
    }
    REQUIRE(full);
    REQUIRE(lastOk > 2);
    // Everything answered before the full batch is there, committed.
    CHECK_FALSE(f.s().hasDeferred());
    CHECK(f.s().currentRevision() == lastOk);
    CHECK(f.s().get("k0")->value == value);
    CHECK(f.s().appliedIndex() == index);
    f.reopen();
    CHECK(f.s().currentRevision() == lastOk);
    CHECK(f.s().appliedIndex() == index);
}

TEST_CASE("near the end of the map deferred batches are committed one by one", "[kv]") {
    StoreFixture f;
    f.options.mapSizeBytes = 1 << 20;
    f.options.quotaBytes = size_t{1} << 30;
    f.options.deferredHeadroomBytes = 512 * 1024;
    f.reopen();
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
