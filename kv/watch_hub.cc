#include "kv/watch_hub.h"

#include "kv/internal.h"
#include "kv/store.h"

namespace coord::kv {

WatchHub::WatchHub(const Store& store)
    : store_(store), notifiedRevision_(store.currentRevision()) {}

KvResult<WatchId> WatchHub::watch(const WatchRequest& request, std::shared_ptr<WatchSink> sink,
                                  int64_t* firstRevision) {
    if (auto err = detail::checkKey(request.key)) return fail(*err);
    if (!sink) return fail(detail::makeError(ErrorCode::InvalidArgument, "watch without a sink"));
    std::lock_guard lock(mu_);
    Watcher w{request, std::move(sink), 0, false};
    if (request.startRevision <= 0 || request.startRevision > notifiedRevision_) {
        // Starts now or in the future: nothing to replay.
        w.nextRevision = request.startRevision <= 0 ? notifiedRevision_ + 1 : request.startRevision;
        w.synced = true;
    } else {
        int64_t compacted = store_.compactedRevision();
        if (request.startRevision < compacted) {
            return fail(detail::makeError(
                ErrorCode::Compacted,
                "watch start revision " + std::to_string(request.startRevision) +
                    " has been compacted; the compacted revision is " + std::to_string(compacted),
                compacted));
        }
        w.nextRevision = request.startRevision;
    }
    WatchId id = nextId_++;
    if (firstRevision) *firstRevision = w.nextRevision;
    watchers_.emplace(id, std::move(w));
    return id;
}

bool WatchHub::cancel(WatchId id) {
    std::lock_guard lock(mu_);
    return watchers_.erase(id) > 0;
}

void WatchHub::cancelAll(const Error& reason) {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : watchers_)
        w.sink->onCanceled(id, reason);
    watchers_.clear();
}

bool WatchHub::matches(const Watcher& w, const Event& e) const {
    if (e.type == Event::Type::Put && w.request.noPut) return false;
    if (e.type == Event::Type::Delete && w.request.noDelete) return false;
    return detail::inRange(e.kv.key, w.request.key, w.request.rangeEnd);
}

void WatchHub::notify(int64_t revision, std::span<const Event> events) {
    std::lock_guard lock(mu_);
    std::vector<Event> selected;
    for (auto& [id, w] : watchers_) {
        if (!w.synced || w.nextRevision > revision) continue;
        // A synced watcher is always exactly at the next revision: nothing can be skipped.
        COORD_ASSERT(w.nextRevision == revision, "watch gap", id, w.nextRevision, revision);
        // Most watchers take every event of a revision or none: pass the store's events through
        // without copying, and copy only for a partial match.
        size_t matching = 0;
        for (const auto& e : events)
            matching += matches(w, e) ? 1 : 0;
        bool accepted = true;
        if (matching == events.size()) {
            accepted = w.sink->onEvents(id, events, revision);
        } else if (matching > 0) {
            selected.clear();
            for (const auto& e : events) {
                if (matches(w, e)) selected.push_back(e);
            }
            accepted = w.sink->onEvents(id, selected, revision);
        }
        if (accepted) {
            w.nextRevision = revision + 1;
        } else {
            w.synced = false;  // catch up from storage later, starting at this revision
        }
    }
    notifiedRevision_ = revision;
}

void WatchHub::notifySkipped(int64_t revision) {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : watchers_) {
        if (w.synced && w.nextRevision <= revision) w.synced = false;
    }
    if (revision > notifiedRevision_) notifiedRevision_ = revision;
}

void WatchHub::resynchronize(int64_t revision) {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : watchers_) {
        if (w.nextRevision <= revision) w.synced = false;
    }
    notifiedRevision_ = revision;
}

bool WatchHub::catchUp(WatchId id, Watcher& w, size_t maxEvents, size_t maxBytes) {
    if (w.nextRevision > notifiedRevision_) {
        w.synced = true;
        return true;
    }
    std::vector<Event> batch;
    int64_t last = 0;
    auto collect = [&](int64_t rev, std::span<const Event> events) {
        for (const auto& e : events) {
            if (matches(w, e)) batch.push_back(e);
        }
        last = rev;
    };
    auto next = store_.readHistory(w.nextRevision, notifiedRevision_, maxEvents, w.request.prevKv,
                                   collect, maxBytes);
    if (!next.ok()) {
        w.sink->onCanceled(id, next.error());
        return true;  // removed by the caller
    }
    if (!batch.empty()) {
        if (!w.sink->onEvents(id, batch, last)) return false;
    }
    w.nextRevision = *next;
    if (w.nextRevision > notifiedRevision_) w.synced = true;
    return w.synced;
}

bool WatchHub::syncPending(size_t maxEvents, size_t maxBytes) {
    std::lock_guard lock(mu_);
    bool behind = false;
    for (auto it = watchers_.begin(); it != watchers_.end();) {
        Watcher& w = it->second;
        if (w.synced) {
            ++it;
            continue;
        }
        bool done = catchUp(it->first, w, maxEvents, maxBytes);
        if (done && !w.synced) {
            it = watchers_.erase(it);  // canceled
            continue;
        }
        behind = behind || !w.synced;
        ++it;
    }
    return behind;
}

void WatchHub::requestProgress(WatchId id) {
    std::lock_guard lock(mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end() || !it->second.synced) return;
    it->second.sink->onProgress(id, notifiedRevision_);
}

void WatchHub::requestProgressAll() {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : watchers_) {
        if (w.synced) w.sink->onProgress(id, notifiedRevision_);
    }
}

size_t WatchHub::watcherCount() const {
    std::lock_guard lock(mu_);
    return watchers_.size();
}

size_t WatchHub::pendingCount() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& [id, w] : watchers_)
        n += w.synced ? 0 : 1;
    return n;
}

}  // namespace coord::kv
