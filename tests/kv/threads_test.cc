// The store's threading contract under real threads (run under TSan in CI): one writer, readers
// on other threads, and watchers registered, caught up and canceled from another thread.
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>

#include "tests/kv/helpers.h"

using namespace coord::kv;
using coord::kv::test::prefixOf;
using coord::kv::test::StoreFixture;

namespace {

// Checks what a watcher receives: strictly increasing revisions, no gap after the first.
struct GaplessSink : WatchSink {
    std::mutex mu;
    int64_t last = 0;
    int64_t events = 0;
    bool gap = false;
    bool onEvents(WatchId, std::span<const Event> evs, int64_t) override {
        std::lock_guard lock(mu);
        for (const auto& e : evs) {
            if (last != 0 && e.kv.modRevision != last + 1) gap = true;
            last = e.kv.modRevision;
            ++events;
        }
        return true;
    }
    void onProgress(WatchId, int64_t) override {}
    void onCanceled(WatchId, const Error&) override {}
};

}  // namespace

TEST_CASE("readers and watchers on other threads run safely beside the writer", "[kv][threads]") {
    StoreFixture f;
    constexpr int kWrites = 3000;
    std::atomic<bool> done{false};
    std::atomic<int> readerErrors{0};

    std::thread writer([&] {
        for (int i = 0; i < kWrites; ++i) {
            if (!f.s().put("t/" + std::to_string(i % 50), std::to_string(i)).ok()) {
                readerErrors++;
            }
        }
        done = true;
    });

    auto reader = [&] {
        Reader r(f.s());
        int64_t lastRev = 0;
        for (int i = 0; i < 100000 && !done; ++i) {
            r.refresh();
            auto res = r.range(prefixOf("t/"));
            if (!res.ok() || res->revision < lastRev) readerErrors++;
            if (res.ok()) lastRev = res->revision;
        }
    };
    std::thread r1(reader), r2(reader);

    // Watchers come and go on this thread, starting from past revisions, and catch up while
    // the writer keeps going.
    std::vector<std::shared_ptr<GaplessSink>> sinks;
    for (int i = 0; i < 2000 && !done; ++i) {
        if (i % 100 == 0) {
            WatchRequest w;
            w.key = "t/";
            w.rangeEnd = prefixEnd("t/");
            w.startRevision = std::max<int64_t>(2, f.s().currentRevision() - 20);
            auto sink = std::make_shared<GaplessSink>();
            auto id = f.s().watchHub().watch(w, sink);
            if (id.ok()) sinks.push_back(sink);
            if (i % 300 == 0 && id.ok()) f.s().watchHub().cancel(*id);
        }
        f.s().watchHub().syncPending(50);
        f.s().watchHub().requestProgressAll();
    }
    writer.join();
    r1.join();
    r2.join();
    for (int i = 0; i < 10000 && f.s().watchHub().syncPending(1000); ++i) {
    }
    CHECK(readerErrors == 0);
    CHECK(f.s().currentRevision() == 1 + kWrites);
    int checked = 0;
    for (auto& s : sinks) {
        std::lock_guard lock(s->mu);
        CHECK_FALSE(s->gap);
        if (s->events > 0) {
            ++checked;
        }
    }
    CHECK(checked > 0);
}

TEST_CASE("rangeApplied on other threads beside deferred batches and their commits",
          "[kv][threads]") {
    // The writer applies deferred batches and commits every few; readers on other threads read
    // everything applied. Each value names the revision that wrote it, so a reader can check
    // that what it got belongs to the revision it was answered at.
    StoreFixture f;
    constexpr int kBatches = 1500;
    std::atomic<bool> done{false};
    std::atomic<int> errors{0};
    std::thread writer([&] {
        uint64_t index = 0;
        for (int i = 0; i < kBatches; ++i) {
            int64_t rev = f.s().currentRevision() + 1;
            std::vector<IndexedRequest> batch{
                {++index, PutRequest{"d/" + std::to_string(i % 20), std::to_string(rev)}}};
            if (!f.s().applyDeferred(batch).at(0).ok()) errors++;
            if (i % 7 == 6) f.s().commitDeferred(false);
        }
        f.s().commitDeferred(false);
        done = true;
    });
    auto reader = [&] {
        int64_t last = 0;
        for (int i = 0; i < 200000 && !done; ++i) {
            auto r = f.s().rangeApplied(prefixOf("d/"));
            if (!r.ok() || r->revision < last) {
                errors++;
                continue;
            }
            last = r->revision;
            for (const auto& kv : r->kvs)
                if (std::to_string(kv.modRevision) != kv.value || kv.modRevision > r->revision)
                    errors++;
        }
    };
    std::thread r1(reader), r2(reader);
    writer.join();
    r1.join();
    r2.join();
    CHECK(errors == 0);
    CHECK(f.s().rangeApplied(prefixOf("d/"))->kvs.size() == 20);
}
