// The write path: validation, txn evaluation and the MVCC updates of one batch.
#include <set>

#include "common/assert.h"
#include "kv/codec.h"
#include "kv/internal.h"
#include "kv/key_index.h"
#include "kv/store.h"

namespace coord::kv {

using detail::checkKey;
using detail::decodeI64;
using detail::encodeI64;
using detail::makeError;

namespace {

std::optional<Error> checkRange(const std::string& key) {
    return checkKey(key);
}

std::optional<Error> checkPut(const PutRequest& p, const Options& o) {
    if (auto err = checkKey(p.key)) return err;
    if (p.value.size() > o.maxValueBytes) {
        return makeError(ErrorCode::ValueTooLarge, "value is " + std::to_string(p.value.size()) +
                                                       " bytes, the limit is " +
                                                       std::to_string(o.maxValueBytes));
    }
    if (p.ignoreValue && !p.value.empty()) {
        return makeError(ErrorCode::InvalidArgument, "value is provided with ignoreValue");
    }
    if (p.ignoreLease && p.lease != 0) {
        return makeError(ErrorCode::InvalidArgument, "lease is provided with ignoreLease");
    }
    if (p.lease < 0) return makeError(ErrorCode::InvalidArgument, "negative lease id");
    return std::nullopt;
}

// Static checks of a txn (before anything is read): limits, keys, and etcd's rule that one
// path through the txn may not put the same key twice, nor delete a key it also puts.
// `keys` receives every key some path may put.
std::optional<Error> checkTxn(const TxnRequest& txn, const Options& o, int depth,
                              std::set<std::string>& keys);

std::optional<Error> checkBranch(const std::vector<RequestOp>& ops, const Options& o, int depth,
                                 std::set<std::string>& keys) {
    if (ops.size() > o.maxTxnOps) {
        return makeError(ErrorCode::TooManyOps, "too many operations in txn request (" +
                                                    std::to_string(ops.size()) + " > " +
                                                    std::to_string(o.maxTxnOps) + ")");
    }
    std::set<std::string> mine;
    auto add = [&](const std::string& k) -> std::optional<Error> {
        if (!mine.insert(k).second) {
            return makeError(ErrorCode::DuplicateKey,
                             "duplicate key given in txn request: '" + k + "'");
        }
        return std::nullopt;
    };
    for (const auto& op : ops) {
        if (const auto* put = std::get_if<PutRequest>(&op.op)) {
            if (auto err = checkPut(*put, o)) return err;
            if (auto err = add(put->key)) return err;
        } else if (const auto* r = std::get_if<RangeRequest>(&op.op)) {
            if (auto err = checkRange(r->key)) return err;
            if (r->limit < 0) return makeError(ErrorCode::InvalidArgument, "negative limit");
        } else if (const auto* d = std::get_if<DeleteRangeRequest>(&op.op)) {
            if (auto err = checkRange(d->key)) return err;
        } else {
            std::set<std::string> nested;
            if (auto err = checkTxn(std::get<TxnRequest>(op.op), o, depth + 1, nested)) return err;
            for (const auto& k : nested) {
                if (auto err = add(k)) return err;
            }
        }
    }
    for (const auto& op : ops) {
        if (const auto* d = std::get_if<DeleteRangeRequest>(&op.op)) {
            for (const auto& k : mine) {
                if (detail::inRange(k, d->key, d->rangeEnd)) {
                    return makeError(ErrorCode::DuplicateKey,
                                     "txn request deletes key '" + k + "' that it also puts");
                }
            }
        }
    }
    keys.insert(mine.begin(), mine.end());
    return std::nullopt;
}

std::optional<Error> checkTxn(const TxnRequest& txn, const Options& o, int depth,
                              std::set<std::string>& keys) {
    if (depth > detail::kMaxTxnDepth) {
        return makeError(ErrorCode::InvalidArgument, "txn requests nested too deeply");
    }
    if (txn.compare.size() > o.maxTxnOps) {
        return makeError(ErrorCode::TooManyOps, "too many compares in txn request");
    }
    for (const auto& c : txn.compare) {
        if (auto err = checkKey(c.key)) return err;
    }
    // Success and failure are alternative paths: a key may be put once in each.
    std::set<std::string> success, failure;
    if (auto err = checkBranch(txn.success, o, depth, success)) return err;
    if (auto err = checkBranch(txn.failure, o, depth, failure)) return err;
    keys.insert(success.begin(), success.end());
    keys.insert(failure.begin(), failure.end());
    return std::nullopt;
}

bool txnMayPut(const TxnRequest& txn) {
    for (const auto* branch : {&txn.success, &txn.failure}) {
        for (const auto& op : *branch) {
            if (std::holds_alternative<PutRequest>(op.op)) return true;
            if (const auto* t = std::get_if<TxnRequest>(&op.op); t && txnMayPut(*t)) return true;
        }
    }
    return false;
}

template <typename T>
bool compareWith(Compare::Op op, const T& a, const T& b) {
    switch (op) {
        case Compare::Op::Equal:
            return a == b;
        case Compare::Op::NotEqual:
            return a != b;
        case Compare::Op::Greater:
            return a > b;
        case Compare::Op::Less:
            return a < b;
    }
    return false;
}

}  // namespace

namespace detail {

// The state of one write transaction while a batch is applied.
struct WriteContext {
    Store& store;
    const Store::Tables& t;
    lmdb::Txn& txn;
    int64_t currentRev;       // the store revision before the request being applied
    int32_t sub = 0;          // changes made so far by the request being applied
    bool buildEvents = true;  // collect events for the watch hub
    std::vector<Event> events;
    // The bytes the ranges of the txn being applied may still return, all together
    // (Options::maxResponseBytes).
    size_t responseBudget = 0;

    int64_t nextRev() const { return currentRev + 1; }

    // The key as this transaction holds it now (the index is in step with it).
    std::optional<KeyValue> live(std::string_view key) const {
        return store.getIn(txn, key, INT64_MAX);
    }

    // The same without its value, from the index alone (no record read).
    std::optional<KeyValue> liveMeta(const std::string& key) const {
        auto e = store.index_->latestAtOrBelow(key, INT64_MAX);
        if (!e || e->tombstone) return std::nullopt;
        KeyValue kv;
        kv.key = key;
        kv.createRevision = e->createRevision;
        kv.modRevision = e->rev.main;
        kv.version = e->version;
        kv.lease = e->lease;
        return kv;
    }

    void compactIndex(int64_t rev) { store.index_->setCompacted(rev); }

    // The keys in [key, rangeEnd) that exist now, in key order.
    std::vector<std::string> liveKeys(const std::string& key, const std::string& rangeEnd) const {
        std::vector<std::string> keys;
        store.index_->forEachAt(key, rangeEnd, INT64_MAX,
                                [&](const std::string& k, const IndexEntry& e) {
                                    if (!e.tombstone) keys.push_back(k);
                                    return true;
                                });
        return keys;
    }

    bool leaseExists(int64_t id) const { return t.lease.get(txn, encodeI64(id)).has_value(); }

    // Read-only checks of a put that can only be decided against the current state.
    std::optional<Error> precheckPut(const PutRequest& p) const {
        if (p.ignoreValue || p.ignoreLease) {
            if (!live(p.key)) {
                return makeError(ErrorCode::KeyNotFound,
                                 "key '" + p.key + "' not found (ignoreValue/ignoreLease)");
            }
        }
        if (p.lease != 0 && !leaseExists(p.lease)) {
            return makeError(ErrorCode::LeaseNotFound,
                             "lease " + std::to_string(p.lease) + " not found");
        }
        return std::nullopt;
    }

    std::optional<Error> precheckRange(const RangeRequest& r) const {
        if (r.revision > currentRev) {
            return detail::futureRevisionError(r.revision, currentRev);
        }
        int64_t compacted = decodeI64(*t.meta.get(txn, kMetaCompactedRev));
        if (r.revision > 0 && r.revision < compacted) {
            return detail::compactedError(r.revision, compacted);
        }
        return std::nullopt;
    }

    Revision take() {
        Revision r{nextRev(), sub};
        ++sub;
        return r;
    }

    void writeRevision(const KeyValue& kv, Revision r, bool tombstone) {
        // Revisions only grow, so appending keeps the B-tree compact.
        std::string revKey = encodeRevKey(r);
        std::string record = encodeRevRecord(kv, tombstone);
        bool appended = t.rev.put(txn, revKey, record, MDB_APPEND);
        COORD_ASSERT(appended, "revision written twice", r.main, r.sub);
        store.index_->add(kv.key, {r, tombstone, kv.createRevision, kv.version, kv.lease});
        if (store.batchRecords_)
            store.batchRecords_->emplace_back(std::move(revKey), std::move(record));
    }

    void detachLease(int64_t lease, const std::string& key) {
        if (lease != 0) t.leaseKeys.del(txn, encodeI64(lease), key);
    }

    PutResponse put(const PutRequest& p) {
        // The previous value is read only when someone needs it: the caller (prevKv,
        // ignoreValue) or a watcher (events carry it). Otherwise the index has the rest.
        bool needValue = p.prevKv || p.ignoreValue || buildEvents;
        std::optional<KeyValue> prev = needValue ? live(p.key) : liveMeta(p.key);
        Revision r = take();
        KeyValue kv;
        kv.key = p.key;
        kv.value = p.ignoreValue ? prev->value : p.value;
        kv.lease = p.ignoreLease ? prev->lease : p.lease;
        kv.createRevision = prev ? prev->createRevision : r.main;
        kv.modRevision = r.main;
        kv.version = prev ? prev->version + 1 : 1;
        writeRevision(kv, r, false);
        if (prev && prev->lease != kv.lease) detachLease(prev->lease, kv.key);
        if (kv.lease != 0 && (!prev || prev->lease != kv.lease)) {
            t.leaseKeys.put(txn, encodeI64(kv.lease), kv.key);
        }
        PutResponse resp;
        if (buildEvents) events.push_back(Event{Event::Type::Put, kv, prev});
        if (p.prevKv) resp.prevKv = std::move(prev);
        return resp;
    }

    void deleteKey(const KeyValue& prev) {
        Revision r = take();
        KeyValue tomb{prev.key, {}, 0, r.main, 0, 0};
        writeRevision(tomb, r, true);
        detachLease(prev.lease, prev.key);
        if (buildEvents) events.push_back(Event{Event::Type::Delete, std::move(tomb), prev});
    }

    DeleteRangeResponse deleteRange(const DeleteRangeRequest& d) {
        std::vector<KeyValue> victims;
        if (d.rangeEnd.empty()) {
            if (auto kv = live(d.key)) victims.push_back(std::move(*kv));
        } else {
            for (const auto& key : liveKeys(d.key, d.rangeEnd))
                victims.push_back(std::move(*live(key)));
        }
        DeleteRangeResponse resp;
        resp.deleted = static_cast<int64_t>(victims.size());
        for (auto& kv : victims)
            deleteKey(kv);
        if (d.prevKv) resp.prevKvs = std::move(victims);
        return resp;
    }

    bool evalCompare(const Compare& c) const {
        auto check = [&](const std::optional<KeyValue>& kv) {
            switch (c.target) {
                case Compare::Target::Value:
                    // A missing key has no value: only != can hold.
                    if (!kv) return c.op == Compare::Op::NotEqual;
                    return compareWith(c.op, std::string_view(kv->value),
                                       std::string_view(c.value));
                case Compare::Target::Version:
                    return compareWith(c.op, kv ? kv->version : 0, c.number);
                case Compare::Target::Create:
                    return compareWith(c.op, kv ? kv->createRevision : 0, c.number);
                case Compare::Target::Mod:
                    return compareWith(c.op, kv ? kv->modRevision : 0, c.number);
                case Compare::Target::Lease:
                    return compareWith(c.op, kv ? kv->lease : 0, c.number);
            }
            return false;
        };
        if (c.rangeEnd.empty()) return check(live(c.key));
        // Over a range every key present must satisfy the compare (vacuously true when empty).
        for (const auto& key : liveKeys(c.key, c.rangeEnd)) {
            if (!check(live(key))) return false;
        }
        return true;
    }

    // Decides every compare of a txn (nested ones included) against the state before the txn
    // runs, as etcd does: the path is fixed before the first write.
    void choosePath(const TxnRequest& req, std::vector<bool>& path) const {
        bool ok = true;
        for (const auto& c : req.compare) {
            if (!evalCompare(c)) {
                ok = false;
                break;
            }
        }
        path.push_back(ok);
        for (const auto& op : ok ? req.success : req.failure) {
            if (const auto* nested = std::get_if<TxnRequest>(&op.op)) choosePath(*nested, path);
        }
    }

    std::optional<Error> precheckPath(const TxnRequest& req, const std::vector<bool>& path,
                                      size_t& at) const {
        bool ok = path[at++];
        for (const auto& op : ok ? req.success : req.failure) {
            if (const auto* p = std::get_if<PutRequest>(&op.op)) {
                if (auto err = precheckPut(*p)) return err;
            } else if (const auto* r = std::get_if<RangeRequest>(&op.op)) {
                if (auto err = precheckRange(*r)) return err;
            } else if (const auto* nested = std::get_if<TxnRequest>(&op.op)) {
                if (auto err = precheckPath(*nested, path, at)) return err;
            }
        }
        return std::nullopt;
    }

    TxnResponse runTxn(const TxnRequest& req, const std::vector<bool>& path, size_t& at) {
        TxnResponse resp;
        resp.succeeded = path[at++];
        for (const auto& op : resp.succeeded ? req.success : req.failure) {
            ResponseOp out;
            if (const auto* p = std::get_if<PutRequest>(&op.op)) {
                out.op = put(*p);
            } else if (const auto* d = std::get_if<DeleteRangeRequest>(&op.op)) {
                out.op = deleteRange(*d);
            } else if (const auto* r = std::get_if<RangeRequest>(&op.op)) {
                // Reads inside a txn see its earlier writes, at the txn's revision. precheckPath
                // has ruled out every error rangeIn could report.
                auto result = store.rangeIn(txn, *r, sub > 0 ? nextRev() : currentRev, nullptr,
                                            &responseBudget);
                COORD_ASSERT(result.ok(), "txn range failed after its precheck",
                             result.ok() ? "" : result.error().message);
                out.op = std::move(result).value();
            } else {
                out.op = runTxn(std::get<TxnRequest>(op.op), path, at);
            }
            resp.responses.push_back(std::move(out));
        }
        return resp;
    }
};

}  // namespace detail

namespace {

struct Executor {
    detail::WriteContext& w;
    const Options& options;
    bool mapFull;  // this member's map filled up mid-batch (see Store::apply)
    bool alarm;    // a NOSPACE alarm is raised (replicated state)
    bool noSpace() const { return mapFull || alarm; }

    Error noSpaceError() const {
        return makeError(ErrorCode::NoSpace,
                         "database space exceeded: writes that add data are "
                         "refused until space is freed");
    }

    KvResult<Response> operator()(const PutRequest& p) {
        if (auto err = checkPut(p, options)) return fail(*err);
        if (noSpace()) return fail(noSpaceError());
        if (auto err = w.precheckPut(p)) return fail(*err);
        return Response{w.put(p)};
    }

    KvResult<Response> operator()(const DeleteRangeRequest& d) {
        if (auto err = checkRange(d.key)) return fail(*err);
        return Response{w.deleteRange(d)};
    }

    KvResult<Response> operator()(const TxnRequest& t) {
        std::set<std::string> keys;
        if (auto err = checkTxn(t, options, 0, keys)) return fail(*err);
        if (noSpace() && txnMayPut(t)) return fail(noSpaceError());
        std::vector<bool> path;
        w.choosePath(t, path);
        size_t at = 0;
        if (auto err = w.precheckPath(t, path, at)) return fail(*err);
        at = 0;
        w.responseBudget = options.maxResponseBytes;
        return Response{w.runTxn(t, path, at)};
    }

    KvResult<Response> operator()(const LeaseGrantRequest& g) {
        if (g.id < 0) return fail(makeError(ErrorCode::InvalidArgument, "negative lease id"));
        if (g.ttlSeconds <= 0 || g.ttlSeconds > detail::kMaxLeaseTtlSeconds) {
            return fail(makeError(ErrorCode::InvalidArgument,
                                  "lease TTL must be between 1 and " +
                                      std::to_string(detail::kMaxLeaseTtlSeconds) + " seconds"));
        }
        if (noSpace()) return fail(noSpaceError());
        int64_t id = g.id;
        if (id == 0) {
            // Deterministic on every replica: one past the largest id in use.
            lmdb::Cursor c(w.txn, w.t.lease);
            id = c.get(MDB_LAST) ? decodeI64(c.key()) + 1 : 1;
        } else if (w.leaseExists(id)) {
            return fail(makeError(ErrorCode::LeaseExists,
                                  "lease " + std::to_string(id) + " already exists"));
        }
        w.t.lease.put(w.txn, encodeI64(id), encodeI64(g.ttlSeconds));
        return Response{LeaseGrantResponse{id, g.ttlSeconds, 0}};
    }

    KvResult<Response> operator()(const LeaseRevokeRequest& r) {
        if (!w.leaseExists(r.id)) {
            return fail(makeError(ErrorCode::LeaseNotFound,
                                  "lease " + std::to_string(r.id) + " not found"));
        }
        std::vector<std::string> keys;
        {
            lmdb::Cursor c(w.txn, w.t.leaseKeys);
            std::string id = encodeI64(r.id);
            std::string_view k = id, v;
            for (bool ok = c.get(MDB_SET, k, v); ok; ok = c.get(MDB_NEXT_DUP, k, v)) {
                keys.emplace_back(v);
            }
        }
        // Every attached key goes in this one revision.
        for (const auto& key : keys) {
            auto kv = w.live(key);
            COORD_ASSERT(kv.has_value() && kv->lease == r.id, "lease index out of date", key);
            w.deleteKey(*kv);
        }
        w.t.leaseKeys.del(w.txn, encodeI64(r.id));
        w.t.lease.del(w.txn, encodeI64(r.id));
        return Response{LeaseRevokeResponse{}};
    }

    KvResult<Response> operator()(const CompactRequest& c) {
        int64_t compacted = decodeI64(*w.t.meta.get(w.txn, detail::kMetaCompactedRev));
        if (c.revision <= compacted) {
            return fail(detail::compactedError(c.revision, compacted));
        }
        if (c.revision > w.currentRev) {
            return fail(detail::futureRevisionError(c.revision, w.currentRev));
        }
        w.t.meta.put(w.txn, detail::kMetaCompactedRev, encodeI64(c.revision));
        w.compactIndex(c.revision);
        return Response{CompactResponse{}};
    }

    KvResult<Response> operator()(const AlarmRequest& a) {
        const bool noSpaceKind = a.kind == AlarmRequest::Kind::NoSpace;
        const std::string_view record =
            noSpaceKind ? detail::kMetaNoSpaceAlarms : detail::kMetaCorruptAlarms;
        auto alarms = detail::alarmList(w.txn, w.t.meta, record);
        auto it = std::find(alarms.begin(), alarms.end(), a.memberId);
        if (a.action == AlarmRequest::Action::Activate) {
            if (a.memberId == 0) {
                return fail(makeError(ErrorCode::InvalidArgument, "an alarm names a member"));
            }
            if (it == alarms.end()) alarms.push_back(a.memberId);
        } else if (a.memberId == 0) {
            alarms.clear();
        } else if (it != alarms.end()) {
            alarms.erase(it);
        }
        std::sort(alarms.begin(), alarms.end());
        std::string encoded;
        for (auto id : alarms)
            appendLe64(encoded, id);
        w.t.meta.put(w.txn, record, encoded);
        if (!noSpaceKind) {
            return Response{
                AlarmResponse{detail::noSpaceAlarms(w.txn, w.t.meta), 0, std::move(alarms)}};
        }
        alarm = !alarms.empty();
        return Response{AlarmResponse{
            alarms, 0, detail::alarmList(w.txn, w.t.meta, detail::kMetaCorruptAlarms)}};
    }
};

void setRevision(Response& r, int64_t rev) {
    std::visit([rev](auto& x) { x.revision = rev; }, r);
}

}  // namespace

std::vector<KvResult<Response>> Store::applyIn(
    lmdb::Txn& txn, std::span<const IndexedRequest> batch, bool noSpace,
    const std::function<void(const lmdb::Txn&)>& inTxn,
    std::vector<std::pair<int64_t, std::vector<Event>>>& events) {
    int64_t applied = metaI64(txn, detail::kMetaAppliedIndex);
    detail::WriteContext w{*this, t_, txn, metaI64(txn, detail::kMetaCurrentRev), 0, true, {}};
    w.buildEvents = hub_->watcherCount() > 0;
    // Replicated state only: every member refuses the same writes.
    Executor exec{w, options_, noSpace, !detail::noSpaceAlarms(txn, t_.meta).empty()};

    std::vector<KvResult<Response>> results;
    results.reserve(batch.size());
    uint64_t last = static_cast<uint64_t>(applied);
    for (const auto& entry : batch) {
        if (entry.index <= last) {
            results.push_back(
                fail(makeError(ErrorCode::AlreadyApplied,
                               "log index " + std::to_string(entry.index) +
                                   " is at or below the applied index " + std::to_string(last))));
            continue;
        }
        last = entry.index;
        w.sub = 0;
        auto result = std::visit(exec, entry.request);
        if (w.sub > 0) {
            w.currentRev += 1;
            if (w.buildEvents) events.emplace_back(w.currentRev, std::move(w.events));
            w.events.clear();
        }
        if (result.ok()) setRevision(result.value(), w.currentRev);
        results.push_back(std::move(result));
    }
    t_.meta.put(txn, detail::kMetaCurrentRev, encodeI64(w.currentRev));
    t_.meta.put(txn, detail::kMetaAppliedIndex, encodeI64(static_cast<int64_t>(last)));
    if (inTxn) inTxn(txn);
    if (!w.buildEvents) events.emplace_back(w.currentRev, std::vector<Event>{});
    return results;
}

void Store::publishApplied(const lmdb::Txn& txn) {
    appliedIndex_.store(static_cast<uint64_t>(metaI64(txn, detail::kMetaAppliedIndex)),
                        std::memory_order_release);
    revision_.store(metaI64(txn, detail::kMetaCurrentRev), std::memory_order_release);
    compacted_.store(metaI64(txn, detail::kMetaCompactedRev), std::memory_order_release);
}

void Store::notifyHub(std::vector<std::pair<int64_t, std::vector<Event>>>& events) {
    for (auto& [rev, evs] : events) {
        if (evs.empty()) {
            hub_->notifySkipped(rev);
        } else {
            hub_->notify(rev, evs);
        }
    }
}

namespace {
// Environment flags are read at commit; only the writer thread commits.
struct MetaAsync {
    MDB_env* env;
    bool on;
    MetaAsync(MDB_env* e, bool enable) : env(e), on(enable) {
        if (on) mdb_env_set_flags(env, MDB_NOMETASYNC, 1);
    }
    ~MetaAsync() {
        if (on) mdb_env_set_flags(env, MDB_NOMETASYNC, 0);
    }
};
}  // namespace

std::vector<KvResult<Response>> Store::apply(std::span<const IndexedRequest> batch,
                                             const std::function<void(const lmdb::Txn&)>& inTxn,
                                             bool durable) {
    commitDeferred(false);  // this commit makes it as durable as itself
    std::vector<std::pair<int64_t, std::vector<Event>>> events;
    std::vector<KvResult<Response>> results;
    MetaAsync metaAsync(env_->get(), !durable && options_.sync);
    auto once = [&](bool noSpace) {
        size_t mark = index_->mark();
        try {
            lmdb::Txn txn(*env_, lmdb::Txn::Mode::ReadWrite);
            results = applyIn(txn, batch, noSpace, inTxn, events);
            publishApplied(txn);
            txn.commit();
        } catch (...) {
            index_->rollback(mark);
            throw;
        }
        index_->forget();
    };
    try {
        once(false);
    } catch (const lmdb::MapFullError&) {
        // The map filled up mid-batch (quota set too close to the map size). Apply the batch
        // again refusing everything that adds data; deletes and revokes still free space.
        publishApplied(lmdb::Txn(*env_, lmdb::Txn::Mode::ReadOnly));
        events.clear();
        once(true);
    }
    committedIndex_.store(appliedIndex_.load(), std::memory_order_release);
    notifyHub(events);
    return results;
}

std::vector<KvResult<Response>> Store::applyDeferred(
    std::span<const IndexedRequest> batch, const std::function<void(const lmdb::Txn&)>& inTxn) {
    // Near the end of the map a growing open transaction could fail at its commit, after its
    // results went out: commit each batch then.
    if (env_->mapSizeBytes() - env_->usedBytes() < options_.deferredHeadroomBytes) {
        return apply(batch, inTxn, false);
    }
    if (!deferred_) {
        writer_.store(std::this_thread::get_id(), std::memory_order_release);
        deferred_ = std::make_unique<lmdb::Txn>(*env_, lmdb::Txn::Mode::ReadWrite);
        auto records = std::make_shared<DeferredRecords>();
        records->revision = revision_.load(std::memory_order_acquire);
        std::lock_guard lock(recordsMu_);
        records_ = std::move(records);
        deferredOpen_.store(true, std::memory_order_release);
    }
    std::vector<std::pair<int64_t, std::vector<Event>>> events;
    std::vector<KvResult<Response>> results;
    size_t mark = index_->mark();
    std::vector<std::pair<std::string, std::string>> records;
    try {
        struct Collecting {  // this batch's revision records go to `records`, however it ends
            Store& store;
            ~Collecting() { store.batchRecords_ = nullptr; }
        } collecting{*this};
        batchRecords_ = &records;
        lmdb::Txn child(*env_, lmdb::Txn::Mode::ReadWrite, deferred_.get());
        results = applyIn(child, batch, false, inTxn, events);
        child.commit();
        index_->forget();
    } catch (const lmdb::LmdbError& e) {
        index_->rollback(mark);
        if (e.code() != MDB_MAP_FULL && e.code() != MDB_TXN_FULL) throw;
        // The nested transaction is gone and the open one is as it was: commit that one, then
        // apply this batch in a transaction of its own (which refuses additions if the map is
        // full).
        commitDeferred(false);
        return apply(batch, inTxn, false);
    }
    publishApplied(*deferred_);
    bool full = false;
    {
        std::unique_lock lock(records_->mu);
        for (auto& [revKey, record] : records) {
            records_->bytes += revKey.size() + record.size();
            records_->byRevKey.emplace(std::move(revKey), std::move(record));
        }
        records_->revision = revision_.load(std::memory_order_acquire);
        full = records_->bytes >= options_.deferredMaxBytes;
    }
    deferredRequests_ += batch.size();
    notifyHub(events);
    if (full) commitDeferred(false);
    return results;
}

void Store::commitDeferred(bool durable) {
    if (!deferred_) return;
    MetaAsync metaAsync(env_->get(), !durable && options_.sync);
    std::unique_ptr<lmdb::Txn> txn = std::move(deferred_);
    try {
        txn->commit();
    } catch (...) {
        {
            std::lock_guard lock(recordsMu_);
            records_.reset();
        }
        deferredOpen_.store(false, std::memory_order_release);
        throw;
    }
    deferredRequests_ = 0;
    committedIndex_.store(appliedIndex_.load(), std::memory_order_release);
    {
        // After the commit: a reader holding the records took an older snapshot with them.
        std::lock_guard lock(recordsMu_);
        records_.reset();
    }
    deferredOpen_.store(false, std::memory_order_release);
}

std::vector<uint64_t> Store::corruptAlarms() const {
    return reading([&](const lmdb::Txn& txn) {
        return detail::alarmList(txn, t_.meta, detail::kMetaCorruptAlarms);
    });
}

std::vector<uint64_t> Store::noSpaceAlarms() const {
    return reading([&](const lmdb::Txn& txn) { return detail::noSpaceAlarms(txn, t_.meta); });
}

size_t Store::dataBytes() const {
    return env_->liveBytes();
}

bool Store::overQuota() const {
    // The file's size bounds the data: only a file past the quota needs the free-list walk.
    return env_->usedBytes() > options_.quotaBytes && dataBytes() > options_.quotaBytes;
}

KvResult<Response> Store::write(Request request) {
    // A store used alone raises its own alarm (in a cluster, the member does: NodeDriver).
    if (!std::holds_alternative<AlarmRequest>(request) && overQuota() && noSpaceAlarms().empty()) {
        IndexedRequest alarm{appliedIndex() + 1, AlarmRequest{AlarmRequest::Action::Activate, 1}};
        apply(std::span<const IndexedRequest>(&alarm, 1));
    }
    IndexedRequest entry{appliedIndex() + 1, std::move(request)};
    auto results = apply(std::span<const IndexedRequest>(&entry, 1));
    return std::move(results.front());
}

namespace {
template <typename T>
KvResult<T> unwrap(KvResult<Response> r) {
    if (!r.ok()) return fail(r.error());
    return std::get<T>(std::move(r).value());
}
}  // namespace

KvResult<PutResponse> Store::put(std::string key, std::string value, int64_t lease) {
    return unwrap<PutResponse>(write(PutRequest{std::move(key), std::move(value), lease}));
}

KvResult<DeleteRangeResponse> Store::deleteRange(std::string key, std::string rangeEnd) {
    return unwrap<DeleteRangeResponse>(
        write(DeleteRangeRequest{std::move(key), std::move(rangeEnd), false}));
}

KvResult<TxnResponse> Store::txn(TxnRequest request) {
    return unwrap<TxnResponse>(write(std::move(request)));
}

KvResult<LeaseGrantResponse> Store::leaseGrant(int64_t id, int64_t ttlSeconds) {
    return unwrap<LeaseGrantResponse>(write(LeaseGrantRequest{id, ttlSeconds}));
}

KvResult<LeaseRevokeResponse> Store::leaseRevoke(int64_t id) {
    return unwrap<LeaseRevokeResponse>(write(LeaseRevokeRequest{id}));
}

KvResult<CompactResponse> Store::compact(int64_t revision) {
    return unwrap<CompactResponse>(write(CompactRequest{revision}));
}

}  // namespace coord::kv
