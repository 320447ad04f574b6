// WatchHub: delivers the store's change events to watchers of a key, range or prefix.
//
// Guarantees (the same as etcd's): a watcher sees events in revision order, never twice, with
// no gap between its start revision and the present; the events of one revision (one txn) are
// delivered in one call; a watcher that starts in the past, or falls behind because its sink
// refused a delivery, catches up from the store's history in bounded batches and then follows
// live writes. A start revision below the compacted revision is refused with Compacted; a
// watcher that falls behind past a compaction is canceled with Compacted (resume elsewhere
// from a newer revision).
//
// Threading: every method may be called from any thread; an internal mutex serializes them.
// Sinks are called with that mutex held, so a sink must be quick and must not call back into
// the hub (queue the events and return).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kv/types.h"

namespace coord::kv {

class Store;
using WatchId = int64_t;

class WatchSink {
  public:
    virtual ~WatchSink() = default;
    // The events of one or more whole revisions, oldest first; `revision` is the newest revision
    // they cover. The span is only valid during the call. Every event carries prevKv when the
    // watcher asked for it; events may carry it even when not asked (the hub shares one copy of
    // a revision's events between watchers), so a sink that did not ask ignores it. Return false to
    // refuse the batch (for example because the sink's buffer is full): the hub then redelivers it,
    // from storage, on a later syncPending().
    virtual bool onEvents(WatchId id, std::span<const Event> events, int64_t revision) = 0;
    // Every event of this watcher up to and including `revision` has been delivered.
    virtual void onProgress(WatchId id, int64_t revision) = 0;
    // The watcher is gone (for example: its next revision was compacted). No call follows.
    virtual void onCanceled(WatchId id, const Error& reason) = 0;
};

class WatchHub {
  public:
    explicit WatchHub(const Store& store);
    WatchHub(const WatchHub&) = delete;
    WatchHub& operator=(const WatchHub&) = delete;

    // Registers a watcher. Errors: Compacted (startRevision below the compacted revision),
    // EmptyKey, KeyTooLarge, InvalidArgument (filters out both puts and deletes is allowed).
    // `firstRevision`, when given, receives the first revision the watcher can be sent (for a
    // watcher that starts now: one past the newest revision notified so far).
    KvResult<WatchId> watch(const WatchRequest& request, std::shared_ptr<WatchSink> sink,
                            int64_t* firstRevision = nullptr);
    // Removes a watcher; returns false when it does not exist. No sink call follows.
    bool cancel(WatchId id);
    // Ends every watcher, telling each sink `reason`.
    void cancelAll(const Error& reason);

    // Called by the store after each commit with the events of one revision.
    void notify(int64_t revision, std::span<const Event> events);
    // Called by the store after a commit whose events it did not collect (no watcher existed
    // when the batch began): every revision up to `revision` is in storage, and any watcher
    // that still expects one of them catches up from there.
    void notifySkipped(int64_t revision);
    // Called by the store after its whole state was replaced (snapshot import): every watcher
    // catches up from storage, and is canceled if its next revision is gone.
    void resynchronize(int64_t revision);

    // Catches up watchers that are behind, reading at most about `maxEvents` events, or
    // `maxBytes` of keys and values, per watcher (whole revisions only). Returns true when some
    // watcher is still behind afterwards.
    bool syncPending(size_t maxEvents = 1000, size_t maxBytes = size_t{4} << 20);

    // Sends a progress notification (the newest revision known to the hub) to one watcher, or
    // to every synced watcher. Watchers that are still catching up get none: their next events
    // carry the same information.
    void requestProgress(WatchId id);
    void requestProgressAll();

    size_t watcherCount() const;
    size_t pendingCount() const;  // watchers still catching up

  private:
    struct Watcher {
        WatchRequest request;
        std::shared_ptr<WatchSink> sink;
        int64_t nextRevision = 0;  // the first revision not yet delivered
        bool synced = false;
    };

    bool matches(const Watcher& w, const Event& e) const;
    // Reads history for one watcher; returns true when it is now synced or removed.
    bool catchUp(WatchId id, Watcher& w, size_t maxEvents, size_t maxBytes);

    const Store& store_;
    mutable std::mutex mu_;
    std::map<WatchId, Watcher> watchers_;
    WatchId nextId_ = 1;
    int64_t notifiedRevision_ = 0;  // the newest revision passed to notify()
};

}  // namespace coord::kv
