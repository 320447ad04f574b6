// Store: coord's replicated state machine, a multi-version key-value store on LMDB.
//
// Every write request that changes something gets the next store revision (the changes inside
// one txn share it and are numbered by a sub-revision). History is kept per revision until
// compacted, so reads can be served at any retained revision and watchers can replay from one.
// Write requests arrive in batches tagged with their Raft log index; a batch is applied in one
// LMDB write transaction (or one nested transaction of a longer one, applyDeferred()), and the
// applied index is stored in that same transaction, so a crash never applies an entry twice or
// half. Only revisions are on disk; the key index is in memory (kv/key_index.h).
//
// Threading: one writer thread calls apply(), applyDeferred(), commitDeferred(), write(),
// compactStep() and importSnapshot(). Reads (range(), Reader, leases, exportSnapshot()) may run
// on any thread concurrently with the writer; each sees one committed state, except on the
// writer thread, where they also see its open transaction. See docs/mvcc.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kv/lmdb.h"
#include "kv/types.h"
#include "kv/watch_hub.h"

namespace coord::kv {

struct Options {
    // Virtual size of the memory map: the hard upper bound of the data file.
    size_t mapSizeBytes = size_t{8} << 30;
    // Writes that add data are refused with NoSpace once the data file uses more than this.
    // Keep it well below mapSizeBytes so deletes and compaction always have room.
    size_t quotaBytes = size_t{2} << 30;
    size_t maxValueBytes = 1536 * 1024;
    size_t maxTxnOps = 128;
    unsigned maxReaders = 126;
    // fsync on every commit. Turning this off loses durability: tests and benchmarks only.
    bool sync = true;
    // applyDeferred() commits each batch on its own once the map has less room than this left,
    // so that a growing open transaction never fills the map at its commit.
    size_t deferredHeadroomBytes = size_t{64} << 20;
    // applyDeferred() commits the open transaction once the revisions it holds (also kept in
    // memory for rangeApplied) reach this many bytes.
    size_t deferredMaxBytes = size_t{16} << 20;
    // Most bytes of keys and values one response carries (a range, or all the ranges of one
    // txn together). A range that would return more is cut after the key that crosses this
    // bound (at least one key is always returned) with `more` and `truncated` set; the client
    // library reads the rest. Keeps a response well inside the RPC layer's message limit.
    size_t maxResponseBytes = size_t{32} << 20;
};

class Store;

namespace detail {
struct WriteContext;
class KeyIndex;
}  // namespace detail

// A reusable read transaction: reads through one Reader see one committed state until
// refresh() moves it to the newest. Cheap to refresh (LMDB reset/renew). Use from one thread
// at a time; it holds a reader slot and pins old pages while open, so do not keep it long
// without refreshing.
class Reader {
  public:
    explicit Reader(const Store& store);
    void refresh();

    KvResult<RangeResponse> range(const RangeRequest& request);
    // The current value of one key at the reader's snapshot, or nullopt.
    std::optional<KeyValue> get(std::string_view key);

  private:
    friend class Store;
    const Store& store_;
    lmdb::Txn txn_;
};

class Store {
  public:
    // Opens or creates the store whose data file is `path`. Throws lmdb::LmdbError when the
    // file cannot be opened (permissions, corruption).
    Store(const std::string& path, const Options& options = {});
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // ---- writes (writer thread only) ----

    // Applies a batch in one write transaction with one fsync. Entries must carry strictly
    // increasing indexes; those at or below appliedIndex() are skipped with AlreadyApplied.
    // Returns one outcome per request. A request that fails leaves no trace (no revision).
    // Throws lmdb::LmdbError on an I/O failure, in which case nothing of the batch is applied.
    // `inTxn`, when given, runs inside the same write transaction before it commits (the Raft
    // log storage records an applied membership change there). Commits an open deferred
    // transaction first.
    //
    // `durable` false commits the data with one flush but not the meta page (MDB_NOMETASYNC):
    // an operating-system crash may undo this transaction (never corrupt the store); the next
    // durable commit makes it durable too. For work that can be redone after a crash — applying
    // entries that are already durable in the Raft log.
    std::vector<KvResult<Response>> apply(std::span<const IndexedRequest> batch,
                                          const std::function<void(const lmdb::Txn&)>& inTxn = {},
                                          bool durable = true);
    // ---- deferred commit (writer thread) ----
    //
    // applyDeferred() applies a batch like apply() but leaves it in an open write transaction:
    // its results and watch events are final, reads on the writer thread see it, reads on other
    // threads do not until commitDeferred() commits it (hasDeferred() tells them). For a member
    // whose Raft log already holds every entry durably: a crash before the commit loses only
    // work that the restart applies again from the log. Every other write of the writer thread
    // (apply(), compactStep(), importSnapshot(), the Raft log storage's own transactions)
    // commits the open transaction first. Each batch runs in a nested transaction: when one does
    // not fit (map or transaction full), the open transaction is committed without it and the
    // batch is applied by apply() instead, so an earlier batch's results never change.
    // Destroying the store drops the open transaction (commit it first, on the writer thread).
    std::vector<KvResult<Response>> applyDeferred(
        std::span<const IndexedRequest> batch,
        const std::function<void(const lmdb::Txn&)>& inTxn = {});
    // Commits the open transaction, if any; `durable` as for apply().
    void commitDeferred(bool durable);
    // Requests applied and not yet committed (writer thread).
    size_t deferredRequests() const { return deferredRequests_; }
    // True while applied batches wait for their commit (any thread): a reader that must see
    // everything applied then reads on the writer thread.
    bool hasDeferred() const { return deferredOpen_.load(std::memory_order_acquire); }
    // The applied index of the committed state (any thread).
    uint64_t committedIndex() const { return committedIndex_.load(std::memory_order_acquire); }
    // A range over everything applied, deferred batches included, from any thread: the
    // revisions of the open transaction are also kept in memory (deferred records) until its
    // commit, and read from there. Answers like range().
    KvResult<RangeResponse> rangeApplied(const RangeRequest& request) const;

    // Applies one request at index appliedIndex() + 1 (for a store used without Raft).
    KvResult<Response> write(Request request);

    // Convenience wrappers around write().
    KvResult<PutResponse> put(std::string key, std::string value, int64_t lease = 0);
    KvResult<DeleteRangeResponse> deleteRange(std::string key, std::string rangeEnd = {});
    KvResult<TxnResponse> txn(TxnRequest request);
    KvResult<LeaseGrantResponse> leaseGrant(int64_t id, int64_t ttlSeconds);
    KvResult<LeaseRevokeResponse> leaseRevoke(int64_t id);
    // Marks every revision below `revision` as compacted: reads and watches below it fail from
    // now on. Physical removal happens in compactStep().
    KvResult<CompactResponse> compact(int64_t revision);

    // Physically removes up to `maxRecords` superseded revisions below the compacted revision,
    // in one short write transaction. Returns the number removed; 0 means nothing is left.
    size_t compactStep(size_t maxRecords = 10000);
    bool compactionPending() const;

    // ---- reads (any thread) ----
    // On the writer thread they see the open deferred transaction; elsewhere, committed state.
    // currentRevision(), compactedRevision() and appliedIndex() are what was applied,
    // committed or not.

    KvResult<RangeResponse> range(const RangeRequest& request) const;
    std::optional<KeyValue> get(std::string_view key) const;
    int64_t currentRevision() const;
    int64_t compactedRevision() const;
    uint64_t appliedIndex() const;

    std::optional<LeaseInfo> leaseTimeToLive(int64_t id, bool withKeys = true) const;
    std::vector<LeaseInfo> leaseList() const;

    // Reads the events of revisions [from, to] in revision order, whole revisions only, and
    // stops after the revision in which the count reaches maxEvents or their keys and values
    // (previous ones included) reach maxBytes. Calls fn once per revision that has events.
    // Returns the first revision not read (to + 1 when done), or Compacted when `from` is below
    // the compacted revision.
    KvResult<int64_t> readHistory(int64_t from, int64_t to, size_t maxEvents, bool withPrevKv,
                                  const std::function<void(int64_t, std::span<const Event>)>& fn,
                                  size_t maxBytes = SIZE_MAX) const;

    // A digest of everything a read at `revision` (0: the head) or at any retained revision
    // before it can see: a CRC-32 over the revisions from the compacted one up to `revision`,
    // and below it over the newest revision of each key unless that is a delete — in
    // revision order, each contributing the CRC of its revision key and record. Members that
    // applied the same log agree whatever their physical compaction progress (compactStep()
    // may have left superseded records behind). Compacted / FutureRevision as a range. Reads
    // every retained record once, and holds one small entry per key that lived at the
    // compacted revision.
    KvResult<HashKVResponse> hashKV(int64_t revision) const;

    WatchHub& watchHub() { return *hub_; }

    // ---- snapshots (see docs/mvcc.md: the stream format) ----

    // Writes a consistent copy of the whole state machine (not the Raft log) to `out`.
    void exportSnapshot(std::ostream& out) const;
    // Replaces the whole state machine with the snapshot read from `in`, atomically. Returns
    // InvalidArgument (and changes nothing) when the stream is malformed or fails its checksum.
    KvResult<Ok> importSnapshot(std::istream& in);

    // Bytes of the data file in use, and the map size.
    size_t usedBytes() const { return env_->usedBytes(); }
    // Bytes in use: the file's pages minus the free ones LMDB will reuse; deleting and
    // compacting bring it down.
    size_t liveBytes() const { return env_->liveBytes(); }
    // What the quota limits: liveBytes() (the Raft log is in its own files, kv/wal.h).
    size_t dataBytes() const;
    bool overQuota() const;
    // Members whose NOSPACE alarm is raised (replicated state; see AlarmRequest).
    std::vector<uint64_t> noSpaceAlarms() const;
    std::vector<uint64_t> corruptAlarms() const;
    const Options& options() const { return options_; }

    // ---- used by the Raft log storage (membership records) and by Reader ----
    lmdb::Env& env() const { return *env_; }

  private:
    friend class Reader;
    friend struct detail::WriteContext;

    struct Tables {
        lmdb::Table meta, rev, lease, leaseKeys;
    };

    // Runs fn(txn) with the transaction reads of this thread must use.
    template <typename F>
    decltype(auto) reading(F&& fn) const {
        if (deferredOpen_.load(std::memory_order_acquire) &&
            writer_.load(std::memory_order_acquire) == std::this_thread::get_id()) {
            return fn(static_cast<const lmdb::Txn&>(*deferred_));
        }
        lmdb::Txn txn(*env_, lmdb::Txn::Mode::ReadOnly);
        return fn(static_cast<const lmdb::Txn&>(txn));
    }
    void publishApplied(const lmdb::Txn& txn);
    std::vector<KvResult<Response>> applyIn(
        lmdb::Txn& txn, std::span<const IndexedRequest> batch, bool noSpace,
        const std::function<void(const lmdb::Txn&)>& inTxn,
        std::vector<std::pair<int64_t, std::vector<Event>>>& events);
    void notifyHub(std::vector<std::pair<int64_t, std::vector<Event>>>& events);

    struct DeferredRecords;
    // `budget`: the response bytes left (see Options::maxResponseBytes), decreased by what
    // this range returns; nullptr: a budget of its own.
    KvResult<RangeResponse> rangeIn(const lmdb::Txn& txn, const RangeRequest& request,
                                    int64_t currentRev, const DeferredRecords* deferred = nullptr,
                                    size_t* budget = nullptr) const;
    // The key as of revision `rev` (the newest that `txn` holds: its current revision, or
    // INT64_MAX on the writer thread inside its own transaction).
    std::optional<KeyValue> getIn(const lmdb::Txn& txn, std::string_view key, int64_t rev) const;
    void rebuildIndex(const lmdb::Txn& txn);
    std::optional<LeaseInfo> leaseIn(const lmdb::Txn& txn, int64_t id, bool withKeys) const;
    KvResult<int64_t> historyIn(const lmdb::Txn& txn, int64_t from, int64_t to, size_t maxEvents,
                                bool withPrevKv,
                                const std::function<void(int64_t, std::span<const Event>)>& fn,
                                size_t maxBytes) const;
    int64_t metaI64(const lmdb::Txn& txn, std::string_view name) const;

    Options options_;
    std::unique_ptr<lmdb::Env> env_;
    Tables t_;
    std::unique_ptr<WatchHub> hub_;
    std::unique_ptr<detail::KeyIndex> index_;

    // The open deferred transaction (writer thread only) and what other threads may know of it.
    std::unique_ptr<lmdb::Txn> deferred_;
    size_t deferredRequests_ = 0;
    std::atomic<bool> deferredOpen_{false};
    std::atomic<std::thread::id> writer_{};
    std::atomic<uint64_t> appliedIndex_{0};
    std::atomic<uint64_t> committedIndex_{0};
    std::atomic<int64_t> revision_{0};
    std::atomic<int64_t> compacted_{0};

    // The revision records of the open transaction's finished batches, for rangeApplied() on
    // other threads. Replaced (not cleared) at each commit: a reader keeps the set it took
    // together with its LMDB snapshot (both under recordsMu_), so the pair always covers every
    // revision up to `revision`.
    struct DeferredRecords {
        mutable std::shared_mutex mu;
        std::unordered_map<std::string, std::string> byRevKey;  // encoded rev key → record
        int64_t revision = 0;  // the store's revision after the last finished batch
        size_t bytes = 0;
    };
    mutable std::mutex recordsMu_;
    std::shared_ptr<DeferredRecords> records_;  // null when nothing is deferred
    // While applyDeferred() applies a batch (writer thread): where its revision records go
    // until the batch succeeds and they join records_.
    std::vector<std::pair<std::string, std::string>>* batchRecords_ = nullptr;
};

}  // namespace coord::kv
