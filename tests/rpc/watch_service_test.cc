// The Watch capability over real Cap'n Proto RPC: ordered delivery from a past revision, a slow
// client that overflows the member's buffer and still sees every event exactly once, cancel by
// dropping the handle, and a compacted start revision.
#include <catch2/catch.hpp>

#include <kj/async-io.h>
#include <kj/timer.h>

#include <future>
#include <mutex>

#include "rpc/codec.h"
#include "tests/rpc/service_helpers.h"

using namespace coord;
using namespace coord::rpc;
using namespace std::chrono_literals;
using coord::rpc::test::bytes;
using coord::rpc::test::Connection;
namespace s = coord::rpc::schema;

namespace {

struct Seen {
    struct Call {
        size_t events;
        int64_t revision;
        bool partial;
    };
    std::vector<Call> calls;
    std::vector<kv::Event> events;
    std::vector<int64_t> progress;
    std::optional<kv::Error> canceled;
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class RecordingSink final : public s::WatchSink::Server {
  public:
    RecordingSink(Seen& seen, kj::Timer* slowTimer) : seen_(seen), slowTimer_(slowTimer) {}

  protected:
    kj::Promise<void> events(EventsContext context) override {
        auto params = context.getParams();
        for (auto e : params.getEvents())
            seen_.events.push_back(fromCapnp(e));
        seen_.calls.push_back(
            {params.getEvents().size(), params.getRevision(), params.getPartial()});
        if (slowTimer_) return slowTimer_->afterDelay(3 * kj::MILLISECONDS);
        return kj::READY_NOW;
    }
    kj::Promise<void> progress(ProgressContext context) override {
        seen_.progress.push_back(context.getParams().getRevision());
        return kj::READY_NOW;
    }
    kj::Promise<void> canceled(CanceledContext context) override {
        seen_.canceled = fromCapnp(context.getParams().getError());
        return kj::READY_NOW;
    }

  private:
    Seen& seen_;
    kj::Timer* slowTimer_;
};
#pragma GCC diagnostic pop

int64_t put(s::KV::Client& kvc, kj::WaitScope& ws, const std::string& k, const std::string& v) {
    for (int attempt = 0; attempt < 500; ++attempt) {
        auto req = kvc.writeRequest();
        auto p = req.initRequest().initPut();
        p.setKey(bytes(k.c_str()));
        p.setValue(bytes(v.c_str()));
        auto response = req.send().wait(ws);
        auto result = response.getResult();
        if (result.getUnavailable() == s::Unavailable::NONE) {
            return result.getResponse().getPut().getRevision();
        }
        std::this_thread::sleep_for(10ms);
    }
    FAIL("no leader within 5 s");
    return 0;
}

// Runs the client's event loop until `done` or 10 s.
template <typename Fn>
bool pumpUntil(capnp::EzRpcClient& client, Fn done) {
    auto& timer = client.getIoProvider().getTimer();
    for (int i = 0; i < 1000 && !done(); ++i)
        timer.afterDelay(10 * kj::MILLISECONDS).wait(client.getWaitScope());
    return done();
}

// Opens a watch of the keys under `prefix`, from `start` (0: now), into `sink`: the result (a
// handle, or an error).
capnp::Response<s::Watch::WatchResults> openWatch(s::Watch::Client& watch, kj::WaitScope& ws,
                                                  const std::string& prefix,
                                                  kj::Own<RecordingSink> sink, int64_t start = 0,
                                                  bool prevKv = false) {
    auto req = watch.watchRequest();
    kv::WatchRequest w;
    w.key = prefix;
    w.rangeEnd = kv::prefixEnd(prefix);
    w.startRevision = start;
    w.prevKv = prevKv;
    toCapnp(w, req.initRequest());
    req.setSink(kj::mv(sink));
    return req.send().wait(ws);
}

// Puts `prefix`1 … `prefix`N with `value`, all in flight at once.
void putAtOnce(s::KV::Client& kvc, kj::WaitScope& ws, const std::string& prefix, int count,
               const std::string& value) {
    auto pending = kj::heapArrayBuilder<kj::Promise<void>>(static_cast<size_t>(count));
    for (int i = 1; i <= count; ++i) {
        auto wr = kvc.writeRequest();
        auto p = wr.initRequest().initPut();
        std::string key = prefix + std::to_string(i);
        p.setKey(bytes(key.c_str()));
        p.setValue(bytes(value.c_str()));
        pending.add(wr.send().ignoreResult());
    }
    kj::joinPromises(pending.finish()).wait(ws);
}

}  // namespace

TEST_CASE("a watch from a past revision delivers every event in order, then live ones",
          "[rpc][watch]") {
    Connection conn;
    auto& client = conn.client;
    auto& coord = conn.coord;
    auto& kvc = conn.kv;
    auto watch = coord.watchRequest().send().getWatch();
    auto& ws = conn.ws;

    int64_t first = put(kvc, ws, "app/a", "1");
    put(kvc, ws, "other", "x");
    put(kvc, ws, "app/b", "2");

    Seen seen;
    {
        auto response =
            openWatch(watch, ws, "app/", kj::heap<RecordingSink>(seen, nullptr), first, true);
        REQUIRE(response.getResult().which() == s::WatchResult::HANDLE);
        auto handle = response.getResult().getHandle();
        CHECK(conn.server.driver->store().watchHub().watcherCount() == 1);

        int64_t last = put(kvc, ws, "app/a", "3");
        REQUIRE(pumpUntil(client, [&] { return seen.events.size() >= 3; }));
        REQUIRE(seen.events.size() == 3);
        CHECK(seen.events[0].kv.key == "app/a");
        CHECK(seen.events[0].kv.modRevision == first);
        CHECK_FALSE(seen.events[0].prevKv.has_value());
        CHECK(seen.events[1].kv.key == "app/b");
        CHECK(seen.events[2].kv.modRevision == last);
        REQUIRE(seen.events[2].prevKv.has_value());
        CHECK(seen.events[2].prevKv->value == "1");

        handle.requestProgressRequest().send().wait(ws);
        REQUIRE(pumpUntil(client, [&] { return !seen.progress.empty(); }));
        CHECK(seen.progress.back() == last);
    }
    // Dropping the handle cancels the watch on the member.
    CHECK(pumpUntil(client,
                    [&] { return conn.server.driver->store().watchHub().watcherCount() == 0; }));
}

TEST_CASE("a slow watcher overflows the member's buffer and still sees every event once",
          "[rpc][watch]") {
    Connection conn(WatchLimits{8});
    auto& client = conn.client;
    auto& coord = conn.coord;
    auto& kvc = conn.kv;
    auto watch = coord.watchRequest().send().getWatch();
    auto& ws = conn.ws;
    int64_t first = put(kvc, ws, "k0", "v") + 1;

    Seen seen;
    auto response = openWatch(watch, ws, "k",
                              kj::heap<RecordingSink>(seen, &client.getIoProvider().getTimer()));
    REQUIRE(response.getResult().which() == s::WatchResult::HANDLE);

    // 300 writes in flight at once: far faster than the sink's 3 ms per call.
    constexpr int kWrites = 300;
    putAtOnce(kvc, ws, "k", kWrites, "v");

    REQUIRE(pumpUntil(client, [&] { return seen.events.size() >= kWrites; }));
    REQUIRE(seen.events.size() == kWrites);
    for (int i = 0; i < kWrites; ++i)
        CHECK(seen.events[i].kv.modRevision == first + i);
    CHECK_FALSE(seen.canceled.has_value());
}

TEST_CASE("a watch below the compacted revision is refused with Compacted", "[rpc][watch]") {
    Connection conn;
    auto& coord = conn.coord;
    auto& kvc = conn.kv;
    auto watch = coord.watchRequest().send().getWatch();
    auto& ws = conn.ws;
    put(kvc, ws, "a", "1");
    int64_t rev = put(kvc, ws, "a", "2");
    {
        auto req = kvc.writeRequest();
        req.initRequest().initCompact().setRevision(rev);
        auto response = req.send().wait(ws);
        REQUIRE(response.getResult().getResponse().which() == s::WriteResponse::COMPACT);
    }
    Seen seen;
    auto response = openWatch(watch, ws, "a", kj::heap<RecordingSink>(seen, nullptr), 1);
    REQUIRE(response.getResult().which() == s::WatchResult::ERROR);
    CHECK(response.getResult().getError().getCode() == s::ErrorCode::COMPACTED);
    CHECK(response.getResult().getError().getRevision() == rev);

    auto status =
        coord.maintenanceRequest().send().getMaintenance().statusRequest().send().wait(ws);
    CHECK(status.getStatus().getLeader() == 1);
    CHECK(status.getStatus().getCompactedRevision() == rev);
    CHECK(status.getStatus().getHeader().getRevision() == rev);
    CHECK(status.getStatus().getDbSizeBytes() > 0);
}

TEST_CASE("a member serves at most two snapshots at once and says it is busy beyond",
          "[rpc][snapshot]") {
    Connection conn;
    auto& coord = conn.coord;
    auto& kvc = conn.kv;
    auto maintenance = coord.maintenanceRequest().send().getMaintenance();
    auto& ws = conn.ws;
    put(kvc, ws, "a", "1");
    // Two snapshots whose readers are held (not read to the end, not dropped).
    std::vector<s::SnapshotReader::Client> held;
    for (int i = 0; i < MaintenanceService::kMaxSnapshots; ++i)
        held.push_back(maintenance.snapshotRequest().send().wait(ws).getReader());
    // A third is refused while they live: each holds a temporary file as large as the store.
    try {
        maintenance.snapshotRequest().send().wait(ws);
        FAIL("a third snapshot was served");
    } catch (const kj::Exception& e) {
        CHECK(std::string(e.getDescription().cStr()).find("busy") != std::string::npos);
    }
    // Once a reader goes, the next snapshot is served, whole.
    held.pop_back();
    auto reader = maintenance.snapshotRequest().send().wait(ws);
    CHECK(reader.getBytes() > 0);
    uint64_t read = 0;
    auto r = reader.getReader();
    for (int i = 0; i < 1000; ++i) {
        auto chunk = r.readRequest().send().wait(ws).getData();
        if (chunk.size() == 0) break;
        read += chunk.size();
    }
    CHECK(read == reader.getBytes());
}

TEST_CASE("snapshot exports and hashes run beside the member's other clients", "[rpc][snapshot]") {
    Connection conn;
    auto& kvc = conn.kv;
    auto& ws = conn.ws;
    auto maintenance = conn.coord.maintenanceRequest().send().getMaintenance();
    put(kvc, ws, "a", "1");
    // Hold the maintenance thread: the export and the hash queue behind this job.
    std::promise<void> open;
    std::shared_future<void> gate = open.get_future().share();
    conn.server.driver->runMaintenance([gate] { gate.wait(); });
    bool exported = false, hashed = false;
    uint64_t bytes = 0;
    uint32_t hash = 0;
    auto snapshot = maintenance.snapshotRequest()
                        .send()
                        .then([&](capnp::Response<s::Maintenance::SnapshotResults> r) {
                            bytes = r.getBytes();
                            exported = true;
                        })
                        .eagerlyEvaluate(nullptr);
    auto hashReq = maintenance.hashKVRequest();
    hashReq.setRevision(0);
    auto digest = hashReq.send()
                      .then([&](capnp::Response<s::Maintenance::HashKVResults> r) {
                          REQUIRE(r.getResult().which() == s::HashKVResult::OK);
                          hash = r.getResult().getOk().getHash();
                          hashed = true;
                      })
                      .eagerlyEvaluate(nullptr);
    // Meanwhile this member's RPC thread answers a write, a read and a status.
    put(kvc, ws, "b", "2");
    auto read = kvc.rangeRequest();
    kv::RangeRequest r;
    r.key = "b";
    toCapnp(r, read.initRequest());
    auto got = read.send().wait(ws);
    REQUIRE(got.getResult().which() == s::RangeResult::OK);
    CHECK(fromCapnp(got.getResult().getOk()).kvs.size() == 1);
    maintenance.statusRequest().send().wait(ws);
    CHECK(!exported);
    CHECK(!hashed);
    open.set_value();
    snapshot.wait(ws);
    digest.wait(ws);
    CHECK(bytes > 0);
    CHECK(hash != 0);
}

TEST_CASE("a revision too large for one call arrives in parts, every one but the last partial",
          "[rpc][watch]") {
    Connection conn;
    auto& client = conn.client;
    auto& kvc = conn.kv;
    auto watch = conn.coord.watchRequest().send().getWatch();
    auto& ws = conn.ws;
    int64_t before = put(kvc, ws, "x", "1");

    // One watcher from now (events from the hub) and one from the past (read from storage).
    Seen live, past;
    std::vector<s::WatchHandle::Client> handles;
    for (auto [seen, start] : {std::pair{&live, int64_t{0}}, std::pair{&past, before}}) {
        auto response =
            openWatch(watch, ws, "big/", kj::heap<RecordingSink>(*seen, nullptr), start, true);
        REQUIRE(response.getResult().which() == s::WatchResult::HANDLE);
        handles.push_back(response.getResult().getHandle());
    }

    // Four values of 1.5 MiB in one txn: one revision of 6 MiB, more than a call carries.
    kv::TxnRequest t;
    for (int i = 0; i < 4; ++i) {
        t.success.push_back(kv::RequestOp{kv::PutRequest{
            "big/" + std::to_string(i), std::string(1536 * 1024, static_cast<char>('a' + i))}});
    }
    auto wr = kvc.writeRequest();
    requestToCapnp(kv::Request{t}, wr.initRequest());
    auto written = wr.send().wait(ws);
    REQUIRE(written.getResult().getUnavailable() == s::Unavailable::NONE);
    REQUIRE(written.getResult().getResponse().which() == s::WriteResponse::TXN);
    int64_t revision = written.getResult().getResponse().getTxn().getRevision();
    put(kvc, ws, "big/after", "small");

    for (Seen* seen : {&live, &past}) {
        REQUIRE(pumpUntil(client, [&] { return seen->events.size() >= 5; }));
        REQUIRE(seen->events.size() == 5);
        for (int i = 0; i < 4; ++i) {
            CHECK(seen->events[i].kv.key == "big/" + std::to_string(i));
            CHECK(seen->events[i].kv.modRevision == revision);
            CHECK(seen->events[i].kv.value == std::string(1536 * 1024, static_cast<char>('a' + i)));
        }
        CHECK(seen->events[4].kv.key == "big/after");
        // The big revision came in at least two calls: the first partial, and the last of its
        // calls not (it may carry the next revision too).
        REQUIRE(seen->calls.size() >= 2);
        CHECK(seen->calls[0].partial);
        CHECK(seen->calls[0].revision == revision);
        CHECK(seen->calls[0].events < 4);
        size_t delivered = 0;
        for (const auto& call : seen->calls) {
            if (call.partial) CHECK(call.revision == revision);
            delivered += call.events;
            if (delivered >= 4) {
                CHECK_FALSE(call.partial);
                break;
            }
        }
    }
}

TEST_CASE("a connection's watches are capped, and a closed one makes room", "[rpc][watch]") {
    WatchLimits limits;
    limits.maxWatches = 3;
    Connection conn(limits);
    auto watch = conn.coord.watchRequest().send().getWatch();
    auto& ws = conn.ws;
    Seen seen;
    std::vector<s::WatchHandle::Client> handles;
    for (int i = 0; i < 3; ++i) {
        auto r =
            openWatch(watch, ws, "k" + std::to_string(i), kj::heap<RecordingSink>(seen, nullptr));
        REQUIRE(r.getResult().which() == s::WatchResult::HANDLE);
        handles.push_back(r.getResult().getHandle());
    }
    auto refused = openWatch(watch, ws, "k3", kj::heap<RecordingSink>(seen, nullptr));
    REQUIRE(refused.getResult().which() == s::WatchResult::ERROR);
    CHECK(refused.getResult().getError().getCode() == s::ErrorCode::TOO_MANY_WATCHES);
    CHECK(conn.server.driver->store().watchHub().watcherCount() == 3);

    // Dropping a handle cancels its watch and frees its place.
    handles.pop_back();
    REQUIRE(pumpUntil(conn.client, [&] { return conn.server.watches->watches == 2; }));
    auto reopened = openWatch(watch, ws, "k3", kj::heap<RecordingSink>(seen, nullptr));
    REQUIRE(reopened.getResult().which() == s::WatchResult::HANDLE);
    handles.push_back(reopened.getResult().getHandle());
    CHECK(conn.server.driver->store().watchHub().watcherCount() == 3);
    CHECK(conn.server.watches->watches == 3);
}

TEST_CASE("the events a connection's watchers buffer stay within its byte bound, none lost",
          "[rpc][watch]") {
    WatchLimits limits;
    limits.bufferedBytes = 64 * 1024;
    Connection conn(limits);
    auto& client = conn.client;
    auto& kvc = conn.kv;
    auto watch = conn.coord.watchRequest().send().getWatch();
    auto& ws = conn.ws;
    int64_t first = put(kvc, ws, "v0", "x") + 1;

    // Two slow watchers of the same keys (3 ms per call) against 200 writes of 32 KiB at once:
    // 12.5 MiB of events, far beyond the bound, which the watchers must catch up from storage.
    Seen a, b;
    std::vector<s::WatchHandle::Client> handles;
    for (Seen* seen : {&a, &b}) {
        auto r = openWatch(watch, ws, "v",
                           kj::heap<RecordingSink>(*seen, &client.getIoProvider().getTimer()));
        REQUIRE(r.getResult().which() == s::WatchResult::HANDLE);
        handles.push_back(r.getResult().getHandle());
    }
    constexpr int kWrites = 200;
    putAtOnce(kvc, ws, "v", kWrites, std::string(32 * 1024, 'v'));

    for (Seen* seen : {&a, &b}) {
        REQUIRE(pumpUntil(client, [&] { return seen->events.size() >= kWrites; }));
        REQUIRE(seen->events.size() == kWrites);
        for (int i = 0; i < kWrites; ++i)
            CHECK(seen->events[i].kv.modRevision == first + i);
    }
    // At most the bound, or one catch-up read from storage (4 MiB) taken while the watchers
    // held nothing, plus one revision.
    size_t peak = conn.server.watches->peakBytes.load();
    CHECK(peak <= std::max(limits.bufferedBytes, size_t{4} << 20) + 2 * 33 * 1024);
    CHECK(peak > 0);
    CHECK(conn.server.watches->bytes.load() == 0);
}
