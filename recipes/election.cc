#include "recipes/election.h"

#include <map>

namespace coord {

namespace {

std::string dirOf(const std::string& prefix) {
    return prefix + "/";
}

}  // namespace

Election::Election(Session& session, std::string prefix)
    : prefix_(std::move(prefix)), holder_(session, prefix_) {}

RecipeResult<Ok> Election::campaign(const std::string& value, Deadline deadline) {
    std::string dir = dirOf(prefix_);
    return holder_.acquire(value, {dir, kv::prefixEnd(dir), 1, true}, deadline, true);
}

RecipeResult<Ok> Election::proclaim(const std::string& value, Deadline deadline) {
    return holder_.update(value, detail::orDefault(holder_.session().client(), deadline));
}

RecipeResult<Ok> Election::resign() {
    return holder_.release(detail::kForever);
}

RecipeResult<LeaderEvent> Election::leader(Client& client, const std::string& prefix,
                                           Deadline deadline) {
    RangeRequest q;
    q.key = dirOf(prefix);
    q.rangeEnd = kv::prefixEnd(q.key);
    q.sortOrder = kv::SortOrder::Ascend;
    q.sortTarget = kv::SortTarget::Create;
    q.limit = 1;
    auto r = client.range(q, false, deadline);
    if (!r.ok()) return fail(detail::clientError(r.error()));
    LeaderEvent e;
    e.revision = r->revision;
    if (!r->kvs.empty()) {
        e.hasLeader = true;
        e.key = r->kvs.front().key;
        e.value = r->kvs.front().value;
        e.term = r->kvs.front().createRevision;
    }
    return e;
}

namespace {

// The candidates as of some revision, and what the observer last reported.
struct ObserverState {
    std::map<int64_t, KeyValue> byCreate;        // create revision → candidate
    std::map<std::string, int64_t> createOfKey;  // key → create revision
    LeaderEvent last;
    bool reported = false;
    std::function<void(const LeaderEvent&)> callback;

    void apply(const Event& e) {
        if (e.type == Event::Type::Put) {
            auto it = createOfKey.find(e.kv.key);
            if (it != createOfKey.end() && it->second != e.kv.createRevision) {
                byCreate.erase(it->second);
            }
            createOfKey[e.kv.key] = e.kv.createRevision;
            byCreate[e.kv.createRevision] = e.kv;
        } else {
            auto it = createOfKey.find(e.kv.key);
            if (it == createOfKey.end()) return;
            byCreate.erase(it->second);
            createOfKey.erase(it);
        }
    }

    void report(int64_t revision) {
        LeaderEvent now;
        now.revision = revision;
        if (!byCreate.empty()) {
            const auto& kv = byCreate.begin()->second;
            now.hasLeader = true;
            now.key = kv.key;
            now.value = kv.value;
            now.term = kv.createRevision;
        }
        bool changed = !reported || now.hasLeader != last.hasLeader || now.key != last.key ||
                       now.value != last.value || now.term != last.term;
        if (!changed) return;
        reported = true;
        last = now;
        if (callback) callback(now);
    }
};

}  // namespace

std::unique_ptr<Handle> Election::observe(Client& client, const std::string& prefix,
                                          std::function<void(const LeaderEvent&)> callback,
                                          int64_t fromRevision,
                                          std::function<void(const Error&)> onError) {
    auto st = std::make_shared<ObserverState>();
    st->callback = std::move(callback);
    std::string dir = dirOf(prefix);
    // The starting state: every candidate at the revision before the first one to follow.
    int64_t at = 0;
    if (fromRevision != 1) {
        RangeRequest q;
        q.key = dir;
        q.rangeEnd = kv::prefixEnd(dir);
        q.revision = fromRevision > 1 ? fromRevision - 1 : 0;
        for (int attempt = 0;; ++attempt) {
            auto r = client.range(q);
            if (r.ok()) {
                for (const auto& kv : r->kvs) {
                    st->createOfKey[kv.key] = kv.createRevision;
                    st->byCreate[kv.createRevision] = kv;
                }
                at = fromRevision > 1 ? fromRevision - 1 : r->revision;
                break;
            }
            if (r.error().kind == Error::Kind::Store || attempt >= 10) {
                if (onError) onError(r.error());
                return nullptr;
            }
        }
    }
    st->report(at);
    WatchRequest w;
    w.key = dir;
    w.rangeEnd = kv::prefixEnd(dir);
    w.startRevision = at + 1;
    WatchCallbacks cb;
    cb.onEvents = [st](std::span<const Event> events, int64_t) {
        // Apply whole revisions, then report: one txn's changes are one state change.
        size_t i = 0;
        while (i < events.size()) {
            int64_t rev = events[i].kv.modRevision;
            for (; i < events.size() && events[i].kv.modRevision == rev; ++i)
                st->apply(events[i]);
            st->report(rev);
        }
    };
    cb.onError = std::move(onError);
    return client.watch(w, cb);
}

}  // namespace coord
