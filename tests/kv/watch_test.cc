#include <catch2/catch.hpp>

#include "tests/kv/helpers.h"

using namespace coord::kv;
using coord::kv::test::prefixOf;
using coord::kv::test::StoreFixture;

namespace {

// Records every call; can be told to refuse deliveries (a full buffer).
struct RecordingSink : WatchSink {
    struct Batch {
        std::vector<Event> events;
        int64_t revision;
    };
    std::vector<Batch> batches;
    std::vector<int64_t> progress;
    std::optional<Error> canceled;
    bool refuse = false;

    bool onEvents(WatchId, std::span<const Event> events, int64_t revision) override {
        if (refuse) return false;
        batches.push_back({{events.begin(), events.end()}, revision});
        return true;
    }
    void onProgress(WatchId, int64_t revision) override { progress.push_back(revision); }
    void onCanceled(WatchId, const Error& reason) override { canceled = reason; }

    std::vector<Event> all() const {
        std::vector<Event> out;
        for (const auto& b : batches)
            out.insert(out.end(), b.events.begin(), b.events.end());
        return out;
    }
    // The mod revisions of every event delivered, in order.
    std::vector<int64_t> revisions() const {
        std::vector<int64_t> out;
        for (const auto& e : all())
            out.push_back(e.kv.modRevision);
        return out;
    }
};

WatchRequest watchOf(std::string key, std::string end = {}, int64_t start = 0) {
    WatchRequest w;
    w.key = std::move(key);
    w.rangeEnd = std::move(end);
    w.startRevision = start;
    return w;
}

std::shared_ptr<RecordingSink> watch(StoreFixture& f, const WatchRequest& req) {
    auto sink = std::make_shared<RecordingSink>();
    auto id = f.s().watchHub().watch(req, sink);
    REQUIRE(id.ok());
    return sink;
}

void drain(StoreFixture& f) {
    for (int i = 0; i < 10000 && f.s().watchHub().syncPending(7); ++i) {
    }
}

}  // namespace

TEST_CASE("a watcher of a key sees its puts and deletes in order", "[kv][watch]") {
    StoreFixture f;
    auto sink = watch(f, watchOf("k"));
    f.put("k", "1");
    f.put("other", "x");
    f.put("k", "2");
    f.del("k");
    auto events = sink->all();
    REQUIRE(events.size() == 3);
    CHECK(events[0].type == Event::Type::Put);
    CHECK(events[0].kv.value == "1");
    CHECK(events[1].kv.version == 2);
    CHECK(events[2].type == Event::Type::Delete);
    CHECK(events[2].kv.key == "k");
    CHECK(events[2].kv.modRevision == 5);
}

TEST_CASE("the events of one txn arrive in one delivery", "[kv][watch]") {
    StoreFixture f;
    auto sink = watch(f, watchOf("t/", prefixEnd("t/")));
    TxnRequest t;
    for (int i = 0; i < 5; ++i)
        t.success.push_back({PutRequest{"t/" + std::to_string(i), "v"}});
    REQUIRE(f.s().txn(t).ok());
    REQUIRE(sink->batches.size() == 1);
    CHECK(sink->batches[0].events.size() == 5);
    CHECK(sink->batches[0].revision == 2);
}

TEST_CASE("watch filters and prevKv", "[kv][watch]") {
    StoreFixture f;
    auto req = prefixOf("p/");
    WatchRequest noPut = watchOf(req.key, req.rangeEnd);
    noPut.noPut = true;
    WatchRequest noDelete = watchOf(req.key, req.rangeEnd);
    noDelete.noDelete = true;
    noDelete.prevKv = true;
    auto deletes = watch(f, noPut);
    auto puts = watch(f, noDelete);
    f.put("p/a", "1");
    f.put("p/a", "2");
    f.del("p/a");
    REQUIRE(deletes->all().size() == 1);
    CHECK(deletes->all()[0].type == Event::Type::Delete);
    REQUIRE(puts->all().size() == 2);
    REQUIRE(puts->all()[1].prevKv);
    CHECK(puts->all()[1].prevKv->value == "1");
    CHECK_FALSE(puts->all()[0].prevKv);
}

TEST_CASE("a watcher from a past revision replays history, then follows live writes",
          "[kv][watch]") {
    StoreFixture f;
    for (int i = 0; i < 100; ++i)
        f.put("w/" + std::to_string(i % 7), std::to_string(i));
    f.put("unwatched", "x");  // rev 102
    WatchRequest req = watchOf("w/", prefixEnd("w/"), 10);
    req.prevKv = true;
    auto sink = watch(f, req);
    CHECK(f.s().watchHub().pendingCount() == 1);
    // Writes continue while the watcher catches up in small batches.
    int written = 0;
    for (int i = 0; i < 10000 && f.s().watchHub().syncPending(5); ++i) {
        if (written < 50) {
            f.put("w/x", std::to_string(written++));
        }
    }
    while (written < 50)
        f.put("w/x", std::to_string(written++));
    drain(f);
    CHECK(f.s().watchHub().pendingCount() == 0);
    // Exactly revisions 10..101 and the 50 live ones after 102, no gap, no duplicate.
    std::vector<int64_t> expected;
    for (int64_t r = 10; r <= 101; ++r)
        expected.push_back(r);
    for (int64_t r = 103; r < 103 + 50; ++r)
        expected.push_back(r);
    CHECK(sink->revisions() == expected);
    // Replayed events carry the previous value.
    auto events = sink->all();
    REQUIRE(events[0].prevKv);
    CHECK(events[0].kv.key == "w/1");
    CHECK(events[0].prevKv->value == "1");
    // Deliveries never split a revision and cover increasing revisions.
    int64_t last = 0;
    for (const auto& b : sink->batches) {
        CHECK(b.revision > last);
        CHECK(b.events.back().kv.modRevision == b.revision);
        last = b.revision;
    }
}

TEST_CASE("a watcher that refuses a delivery catches up later without gaps", "[kv][watch]") {
    StoreFixture f;
    auto sink = watch(f, watchOf("q/", prefixEnd("q/")));
    f.put("q/1", "a");
    sink->refuse = true;
    f.put("q/2", "b");
    f.put("q/3", "c");
    CHECK(f.s().watchHub().pendingCount() == 1);
    sink->refuse = false;
    f.put("q/4", "d");  // not delivered live: the watcher is behind
    CHECK(sink->revisions() == std::vector<int64_t>{2});
    drain(f);
    f.put("q/5", "e");
    CHECK(sink->revisions() == std::vector<int64_t>{2, 3, 4, 5, 6});
}

TEST_CASE("a watch start below the compacted revision fails with that revision", "[kv][watch]") {
    StoreFixture f;
    for (int i = 0; i < 10; ++i)
        f.put("k", std::to_string(i));
    REQUIRE(f.s().compact(6).ok());
    auto id = f.s().watchHub().watch(watchOf("k", {}, 5), std::make_shared<RecordingSink>());
    REQUIRE_FALSE(id.ok());
    CHECK(id.error().code == ErrorCode::Compacted);
    CHECK(id.error().revision == 6);
    auto sink = watch(f, watchOf("k", {}, 6));
    drain(f);
    CHECK(sink->revisions() == std::vector<int64_t>{6, 7, 8, 9, 10, 11});
}

TEST_CASE("a watcher behind a new compaction is canceled with Compacted", "[kv][watch]") {
    StoreFixture f;
    for (int i = 0; i < 10; ++i)
        f.put("k", std::to_string(i));
    auto sink = watch(f, watchOf("k", {}, 2));
    REQUIRE(f.s().compact(8).ok());
    drain(f);
    REQUIRE(sink->canceled);
    CHECK(sink->canceled->code == ErrorCode::Compacted);
    CHECK(sink->canceled->revision == 8);
    CHECK(f.s().watchHub().watcherCount() == 0);
}

TEST_CASE("cancel stops deliveries and progress reports the current revision", "[kv][watch]") {
    StoreFixture f;
    auto sink = std::make_shared<RecordingSink>();
    auto id = f.s().watchHub().watch(watchOf("k"), sink);
    REQUIRE(id.ok());
    f.put("k", "1");
    f.put("j", "1");
    f.s().watchHub().requestProgress(*id);
    CHECK(sink->progress == std::vector<int64_t>{3});
    CHECK(f.s().watchHub().cancel(*id));
    CHECK_FALSE(f.s().watchHub().cancel(*id));
    f.put("k", "2");
    CHECK(sink->all().size() == 1);
}

TEST_CASE("a watcher added while no events are collected still sees every revision",
          "[kv][watch]") {
    StoreFixture f;
    f.put("k", "1");  // no watcher: the store does not collect events
    auto sink = watch(f, watchOf("k", {}, 2));
    f.put("k", "2");  // collected now
    drain(f);
    CHECK(sink->revisions() == std::vector<int64_t>{2, 3});
}

TEST_CASE("a watcher that starts in the future gets events from that revision", "[kv][watch]") {
    StoreFixture f;
    auto sink = watch(f, watchOf("k", {}, 4));
    for (int i = 0; i < 4; ++i)
        f.put("k", std::to_string(i));
    CHECK(sink->revisions() == std::vector<int64_t>{4, 5});
}

TEST_CASE("a watcher says its first revision: the next one for now, its start for the past",
          "[kv][watch]") {
    StoreFixture f;
    f.put("k", "1");
    f.put("k", "2");
    int64_t first = 0;
    auto now = std::make_shared<RecordingSink>();
    REQUIRE(f.s().watchHub().watch(watchOf("k"), now, &first).ok());
    CHECK(first == f.s().currentRevision() + 1);
    WatchRequest past = watchOf("k");
    past.startRevision = 2;
    auto old = std::make_shared<RecordingSink>();
    REQUIRE(f.s().watchHub().watch(past, old, &first).ok());
    CHECK(first == 2);
    f.put("k", "3");
    drain(f);
    REQUIRE(now->all().size() == 1);
    CHECK(now->all()[0].kv.modRevision == f.s().currentRevision());
    CHECK(old->all().size() == 3);
}
