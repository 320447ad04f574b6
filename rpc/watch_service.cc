#include "rpc/watch_service.h"

#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "rpc/codec.h"
#include "rpc/handoff.h"
#include "rpc/kv_service.h"
#include "rpc/placed_read.h"

namespace coord::rpc {

namespace s = schema;

namespace {

// The bytes of an event: keys, values (the previous ones when `withPrevKv`) and a little for
// its other fields; what it holds in a buffer, and about what it takes in a message.
size_t eventBytes(const kv::Event& e, bool withPrevKv) {
    constexpr size_t kOverhead = 64;
    size_t n = kOverhead + e.kv.key.size() + e.kv.value.size();
    if (withPrevKv && e.prevKv) n += kOverhead + e.prevKv->key.size() + e.prevKv->value.size();
    return n;
}

// The events the hub delivered and the pump has not sent yet. onEvents and friends run on the
// core thread under the hub's lock; take() and whenReady() run on the KJ thread.
class WatchBuffer final : public kv::WatchSink {
  public:
    struct Item {
        enum class Kind { Events, Progress, Canceled } kind;
        std::vector<kv::Event> events;
        int64_t revision = 0;
        kv::Error error{};
        size_t sent = 0;  // events already sent in earlier parts (see WatchHandleImpl::send)
    };

    explicit WatchBuffer(std::shared_ptr<WatchPool> pool) : pool_(std::move(pool)) {}
    ~WatchBuffer() noexcept override { pool_->bytes -= bytes_; }

    bool onEvents(kv::WatchId, std::span<const kv::Event> events, int64_t revision) override {
        std::lock_guard lock(mu_);
        if (closed_) return true;
        size_t bytes = 0;
        for (const auto& e : events)
            bytes += eventBytes(e, true);  // held as delivered, prevKv and all
        // Bounded in events per watcher (a batch beyond is still taken when this buffer is
        // empty) and in bytes for the connection's watchers together, sends in flight included
        // (a batch beyond is still taken when they hold nothing at all, so a revision larger
        // than the bound goes through). A refused watcher is caught up from storage later: by
        // its own pump once it has sent what it holds, or, when it held nothing, once the
        // pool has room again (see WatchHandleImpl::pump) or at the next tick.
        const auto& limits = pool_->limits;
        size_t held = pool_->bytes.load();
        if ((buffered_ > 0 && buffered_ + events.size() > limits.bufferedEvents) ||
            (held > 0 && held + bytes > limits.bufferedBytes)) {
            refused_ = true;
            pool_->refused = true;
            return false;
        }
        items_.push_back({Item::Kind::Events, {events.begin(), events.end()}, revision});
        buffered_ += events.size();
        bytes_ += bytes;
        pool_->add(bytes);
        wakeLocked();
        return true;
    }

    void onProgress(kv::WatchId, int64_t revision) override {
        std::lock_guard lock(mu_);
        if (closed_) return;
        items_.push_back({Item::Kind::Progress, {}, revision});
        wakeLocked();
    }

    void onCanceled(kv::WatchId, const kv::Error& reason) override {
        std::lock_guard lock(mu_);
        if (closed_) return;
        items_.push_back({Item::Kind::Canceled, {}, 0, reason});
        wakeLocked();
    }

    // Resolves once something is queued.
    kj::Promise<void> whenReady() {
        std::lock_guard lock(mu_);
        if (!items_.empty()) return kj::READY_NOW;
        auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
        fulfiller_ = kj::mv(paf.fulfiller);
        return kj::mv(paf.promise);
    }

    // Takes everything queued; `refused` tells whether a delivery was refused since the last
    // take (the hub then has this watcher waiting to catch up from storage). The items' bytes
    // stay counted in the pool: `bytes` says how many, for the caller to release once sent.
    std::deque<Item> take(bool& refused, size_t& bytes) {
        std::lock_guard lock(mu_);
        std::deque<Item> out;
        out.swap(items_);
        buffered_ = 0;
        bytes = bytes_;
        bytes_ = 0;
        refused = refused_;
        refused_ = false;
        return out;
    }

    void close() {
        std::lock_guard lock(mu_);
        closed_ = true;
        items_.clear();
        pool_->bytes -= bytes_;
        bytes_ = 0;
    }

  private:
    void wakeLocked() {
        if (fulfiller_) {
            fulfiller_->fulfill();
            fulfiller_ = nullptr;
        }
    }

    const std::shared_ptr<WatchPool> pool_;
    std::mutex mu_;
    std::deque<Item> items_;
    size_t buffered_ = 0;  // events
    size_t bytes_ = 0;     // eventBytes of them (counted in the pool)
    bool refused_ = false;
    bool closed_ = false;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller_;
};

// One sink call carries whole revisions up to this many events and bytes; a single revision
// larger than kBytesPerCall goes in parts. Every call then stays far inside the RPC layer's
// message size limit (64 MiB), whatever the values and the number of events.
constexpr size_t kEventsPerCall = 1024;
constexpr size_t kBytesPerCall = size_t{4} << 20;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class WatchHandleImpl final : public s::WatchHandle::Server {
    using Item = WatchBuffer::Item;

  public:
    WatchHandleImpl(NodeDriver& driver, kv::WatchId id, std::shared_ptr<WatchBuffer> buffer,
                    s::WatchSink::Client sink, bool prevKv, std::shared_ptr<WatchPool> pool)
        : driver_(driver),
          id_(id),
          buffer_(std::move(buffer)),
          sink_(kj::mv(sink)),
          prevKv_(prevKv),
          pool_(std::move(pool)) {
        ++pool_->watches;
        task_ = pump().eagerlyEvaluate([this](kj::Exception&&) {
            // The client's sink failed (disconnected or refused): nobody is listening.
            cancel();
        });
    }

    ~WatchHandleImpl() noexcept(false) {
        --pool_->watches;
        cancel();
    }

  protected:
    kj::Promise<void> requestProgress(RequestProgressContext) override {
        driver_.store().watchHub().requestProgress(id_);
        return kj::READY_NOW;
    }

  private:
    void cancel() {
        if (canceled_) return;
        canceled_ = true;
        driver_.store().watchHub().cancel(id_);
        buffer_->close();
    }

    // Bytes of the pool held by a send in flight, released when it is through (or dropped).
    struct Held {
        Held(std::shared_ptr<WatchPool> p, size_t n) : pool(std::move(p)), bytes(n) {}
        Held(const Held&) = delete;
        Held& operator=(const Held&) = delete;
        ~Held() { release(); }
        void release() {
            pool->bytes -= bytes;
            bytes = 0;
        }
        std::shared_ptr<WatchPool> pool;
        size_t bytes;
    };

    kj::Promise<void> pump() {
        return buffer_->whenReady().then([this]() -> kj::Promise<void> {
            bool refused = false;
            size_t bytes = 0;
            auto items = buffer_->take(refused, bytes);
            if (refused || driver_.store().watchHub().pendingCount() > 0) driver_.syncWatchers();
            auto held = kj::heap<Held>(pool_, bytes);
            return send(kj::mv(items)).then([this, held = kj::mv(held)]() mutable {
                held->release();
                if (canceled_) return kj::Promise<void>(kj::READY_NOW);
                // Watchers refused room while this send held it are caught up now.
                if (pool_->refused.exchange(false)) driver_.syncWatchers();
                return pump();
            });
        });
    }

    // Sends the queued items in order, several revisions per call; after a cancellation, the
    // last call.
    kj::Promise<void> send(std::deque<Item> items) {
        if (items.empty()) return kj::READY_NOW;
        if (items.front().kind == Item::Kind::Canceled) {
            auto req = sink_.canceledRequest();
            toCapnp(items.front().error, req.initError());
            cancel();
            return req.send().ignoreResult();
        }
        if (items.front().kind == Item::Kind::Progress) {
            auto req = sink_.progressRequest();
            req.setRevision(items.front().revision);
            items.pop_front();
            return req.send().then(
                [this, items = kj::mv(items)]() mutable { return send(kj::mv(items)); });
        }
        // Merge consecutive event batches (whole revisions) into one call.
        size_t count = 0;
        size_t bytes = 0;
        size_t batches = 0;
        for (const auto& item : items) {
            if (item.kind != Item::Kind::Events) break;
            size_t itemBytes = 0;
            for (size_t i = item.sent; i < item.events.size(); ++i)
                itemBytes += eventBytes(item.events[i], prevKv_);
            size_t n = item.events.size() - item.sent;
            if (batches > 0 && (count + n > kEventsPerCall || bytes + itemBytes > kBytesPerCall)) {
                break;
            }
            count += n;
            bytes += itemBytes;
            ++batches;
        }
        if (bytes > kBytesPerCall) return sendPart(kj::mv(items));
        auto req = sink_.eventsRequest();
        auto list = req.initEvents(static_cast<unsigned>(count));
        unsigned i = 0;
        for (size_t b = 0; b < batches; ++b) {
            const auto& events = items.front().events;
            for (size_t k = items.front().sent; k < events.size(); ++k)
                toCapnp(events[k], prevKv_, list[i++]);
            req.setRevision(items.front().revision);
            items.pop_front();
        }
        return req.send().then(
            [this, items = kj::mv(items)]() mutable { return send(kj::mv(items)); });
    }

    // The next part of the revision at the front, too large for one call: as many of its
    // events as fit in kBytesPerCall (at least one), with `partial` set unless they are the
    // last.
    kj::Promise<void> sendPart(std::deque<Item> items) {
        Item& item = items.front();
        size_t end = item.sent;
        size_t bytes = 0;
        while (end < item.events.size()) {
            size_t b = eventBytes(item.events[end], prevKv_);
            if (end > item.sent && bytes + b > kBytesPerCall) break;
            bytes += b;
            ++end;
        }
        auto req = sink_.eventsRequest();
        auto list = req.initEvents(static_cast<unsigned>(end - item.sent));
        for (size_t k = item.sent; k < end; ++k)
            toCapnp(item.events[k], prevKv_, list[static_cast<unsigned>(k - item.sent)]);
        req.setRevision(item.revision);
        req.setPartial(end < item.events.size());
        item.sent = end;
        if (end == item.events.size()) items.pop_front();
        return req.send().then(
            [this, items = kj::mv(items)]() mutable { return send(kj::mv(items)); });
    }

    NodeDriver& driver_;
    kv::WatchId id_;
    std::shared_ptr<WatchBuffer> buffer_;
    s::WatchSink::Client sink_;
    bool prevKv_;
    std::shared_ptr<WatchPool> pool_;
    bool canceled_ = false;
    kj::Promise<void> task_ = nullptr;  // last: destroyed first
};
// One snapshot counted against MaintenanceService::kMaxSnapshots while it lives.
class SnapshotCount {
  public:
    explicit SnapshotCount(std::shared_ptr<int> count) : count_(std::move(count)) { ++*count_; }
    SnapshotCount(SnapshotCount&& other) noexcept : count_(std::move(other.count_)) {}
    SnapshotCount(const SnapshotCount&) = delete;
    SnapshotCount& operator=(const SnapshotCount&) = delete;
    SnapshotCount& operator=(SnapshotCount&&) = delete;
    ~SnapshotCount() {
        if (count_) --*count_;
    }

  private:
    std::shared_ptr<int> count_;
};

// Serves a snapshot written to an unlinked temporary file, chunk by chunk.
class SnapshotReaderImpl final : public s::SnapshotReader::Server {
  public:
    SnapshotReaderImpl(std::FILE* file, SnapshotCount count)
        : file_(file), count_(std::move(count)) {}
    ~SnapshotReaderImpl() noexcept(false) { std::fclose(file_); }

  protected:
    kj::Promise<void> read(ReadContext context) override {
        std::vector<char> buf(size_t{1} << 20);
        size_t n = std::fread(buf.data(), 1, buf.size(), file_);
        context.getResults().setData(
            capnp::Data::Reader(reinterpret_cast<const kj::byte*>(buf.data()), n));
        return kj::READY_NOW;
    }

  private:
    std::FILE* file_;
    SnapshotCount count_;
};
#pragma GCC diagnostic pop

}  // namespace

kj::Promise<void> WatchService::watch(WatchContext context) {
    auto params = context.getParams();
    kv::WatchRequest request = fromCapnp(params.getRequest());
    auto results = context.getResults();
    fillHeader(results.initHeader(), driver_, clusterId_);
    auto out = results.initResult();
    if (pool_->watches >= pool_->limits.maxWatches) {
        toCapnp(kv::Error{kv::ErrorCode::TooManyWatches,
                          "this connection has " + std::to_string(pool_->watches) +
                              " watches open, the most a member serves on one connection; "
                              "cancel some, or watch a wider range",
                          0},
                out.initError());
        return kj::READY_NOW;
    }
    if (driver_.corrupt()) {
        // Refused with Corrupt, which the client takes as "resume at another member".
        toCapnp(corruptError(), out.initError());
        return kj::READY_NOW;
    }
    auto buffer = std::make_shared<WatchBuffer>(pool_);
    auto& hub = driver_.store().watchHub();
    int64_t first = 0;
    auto id = hub.watch(request, buffer, &first);
    if (!id.ok()) {
        toCapnp(id.error(), out.initError());
        return kj::READY_NOW;
    }
    // A watch from "now" starts right after the header's revision (as etcd's): a client that
    // resumes it elsewhere from header + 1 neither skips nor repeats an event. (The store's
    // revision may be ahead of the events notified so far for a moment.)
    if (request.startRevision <= 0) results.getHeader().setRevision(first - 1);
    out.setWatchId(*id);
    out.setHandle(kj::heap<WatchHandleImpl>(driver_, *id, std::move(buffer), params.getSink(),
                                            request.prevKv, pool_));
    // A watcher starting in the past catches up from storage on the core thread.
    if (request.startRevision > 0) driver_.syncWatchers();
    return kj::READY_NOW;
}

namespace {

// Runs `read` on the member's maintenance thread; its result, or what it threw, comes back to
// this (the RPC) thread.
template <typename T, typename Fn>
kj::Promise<T> onMaintenanceThread(NodeDriver& driver, Fn read) {
    struct Outcome {
        std::optional<T> value;
        std::string error;
    };
    auto handoff = makeHandoff<Outcome>();
    driver.runMaintenance([read = std::move(read), send = handoff.send]() mutable {
        Outcome o;
        try {
            o.value.emplace(read());
        } catch (const std::exception& e) {
            o.error = e.what();
        }
        send(std::move(o));
    });
    return handoff.promise.then([](Slot<Outcome> slot) -> T {
        Outcome& o = *slot.value;
        KJ_REQUIRE(o.value.has_value(), o.error);
        return std::move(*o.value);
    });
}

struct CloseFile {
    void operator()(std::FILE* f) const { std::fclose(f); }
};

// A snapshot exported to an unlinked temporary file, rewound.
struct Exported {
    std::unique_ptr<std::FILE, CloseFile> file;
    int64_t revision = 0;
    uint64_t bytes = 0;
};

Exported exportToTempFile(const kv::Store& store) {
    Exported e;
    e.file.reset(std::tmpfile());
    if (!e.file) throw std::runtime_error("cannot create a temporary file for the snapshot");
    // The export reads in its own transaction: at this revision or a later one.
    e.revision = store.currentRevision();
    struct FileBuf : std::streambuf {
        explicit FileBuf(std::FILE* f) : f_(f) {}
        int_type overflow(int_type c) override {
            if (c == traits_type::eof()) return traits_type::not_eof(c);
            return std::fputc(c, f_) == EOF ? traits_type::eof() : c;
        }
        std::streamsize xsputn(const char* s, std::streamsize n) override {
            return static_cast<std::streamsize>(std::fwrite(s, 1, static_cast<size_t>(n), f_));
        }
        std::FILE* f_;
    } buf(e.file.get());
    std::ostream out(&buf);
    store.exportSnapshot(out);
    out.flush();
    long bytes = std::ftell(e.file.get());
    if (!out || std::ferror(e.file.get()) || bytes < 0) {
        throw std::runtime_error("cannot write the snapshot's temporary file (disk full?)");
    }
    std::rewind(e.file.get());
    e.bytes = static_cast<uint64_t>(bytes);
    return e;
}

}  // namespace

kj::Promise<void> MaintenanceService::snapshot(SnapshotContext context) {
    // Everything this member applied is committed first, so the backup holds every write
    // acknowledged before the call. Then a read transaction gives one consistent revision; the
    // export runs on the member's maintenance thread (reads never block the writer, and this
    // RPC thread serves its other clients meanwhile). The file is unlinked at once and goes
    // with the reader.
    KJ_REQUIRE(*snapshots_ < kMaxSnapshots,
               "busy: this member is already exporting or serving its most snapshots at once; "
               "try again when one is read, or ask another member",
               kMaxSnapshots);
    auto counted = kj::heap<SnapshotCount>(snapshots_);
    auto handoff = makeHandoff<Result<Ok, Unavailable>>();
    driver_.commitStore(handoff.send);
    return handoff.promise
        .then([this](Slot<Result<Ok, Unavailable>> slot) {
            KJ_REQUIRE(slot.value->ok(), "member stopping", unavailableName(slot.value->error()));
            const kv::Store& store = driver_.store();
            return onMaintenanceThread<Exported>(driver_,
                                                 [&store] { return exportToTempFile(store); });
        })
        .then([context, counted = kj::mv(counted)](Exported e) mutable {
            auto results = context.getResults();
            results.setReader(kj::heap<SnapshotReaderImpl>(e.file.release(), kj::mv(*counted)));
            results.setRevision(e.revision);
            results.setBytes(e.bytes);
        });
}

kj::Promise<void> MaintenanceService::hashKV(HashKVContext context) {
    // What this member applied is committed first, so a hash at any revision it applied can be
    // read from committed state: in a read transaction on the maintenance thread, beside the
    // writer, while this RPC thread serves its other clients.
    int64_t revision = context.getParams().getRevision();
    auto handoff = makeHandoff<Result<Ok, Unavailable>>();
    driver_.commitStore(handoff.send);
    using Hashed = kv::KvResult<kv::HashKVResponse>;
    return handoff.promise
        .then([this, revision](Slot<Result<Ok, Unavailable>> slot) {
            KJ_REQUIRE(slot.value->ok(), "member stopping", unavailableName(slot.value->error()));
            const kv::Store& store = driver_.store();
            return onMaintenanceThread<Hashed>(
                driver_, [&store, revision] { return store.hashKV(revision); });
        })
        .then([this, context](Hashed hashed) mutable {
            auto results = context.getResults();
            fillHeader(results.initHeader(), driver_, clusterId_);
            auto out = results.initResult();
            if (!hashed.ok()) {
                toCapnp(hashed.error(), out.initError());
                return;
            }
            auto ok = out.initOk();
            ok.setHash(hashed->hash);
            ok.setRevision(hashed->revision);
            ok.setCompactRevision(hashed->compactRevision);
        });
}

kj::Promise<void> MaintenanceService::status(StatusContext context) {
    auto st = context.getResults().initStatus();
    fillHeader(st.initHeader(), driver_, clusterId_);
    auto& store = driver_.store();
    st.setLeader(driver_.leader());
    st.setAppliedIndex(store.appliedIndex());
    st.setCompactedRevision(store.compactedRevision());
    st.setDbSizeBytes(store.usedBytes());
    st.setVersion(COORD_VERSION);
    st.setWatchers(store.watchHub().watcherCount());
    return kj::READY_NOW;
}

kj::Promise<void> MaintenanceService::alarms(AlarmsContext context) {
    // The alarms this member applied (a serializable read: a raised alarm may not be
    // committed to the store yet).
    kv::Store& store = driver_.store();
    using Read = std::pair<std::vector<uint64_t>, std::vector<uint64_t>>;
    return placedRead<Read>(driver_, false,
                            [&store] {
                                return Read{store.noSpaceAlarms(), store.corruptAlarms()};
                            })
        .then([this, context](Slot<Result<Read, Unavailable>> slot) mutable {
            KJ_REQUIRE(slot.value->ok(), "member stopping", unavailableName(slot.value->error()));
            auto results = context.getResults();
            fillHeader(results.initHeader(), driver_, clusterId_);
            const auto& [noSpace, corrupt] = slot.value->value();
            auto list = results.initNoSpace(static_cast<unsigned>(noSpace.size()));
            for (unsigned i = 0; i < noSpace.size(); ++i)
                list.set(i, noSpace[i]);
            auto bad = results.initCorrupt(static_cast<unsigned>(corrupt.size()));
            for (unsigned i = 0; i < corrupt.size(); ++i)
                bad.set(i, corrupt[i]);
        });
}

}  // namespace coord::rpc
