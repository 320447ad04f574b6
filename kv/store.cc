#include "kv/store.h"

#include <algorithm>
#include <unordered_map>

#include "common/assert.h"
#include "common/crc32.h"
#include "kv/codec.h"
#include "kv/internal.h"
#include "kv/key_index.h"

namespace coord::kv {

using detail::decodeI64;
using detail::encodeI64;
using detail::IndexEntry;
using detail::Revision;

Store::Store(const std::string& path, const Options& options) : options_(options) {
    lmdb::EnvOptions envOptions;
    envOptions.mapSizeBytes = options.mapSizeBytes;
    envOptions.maxReaders = options.maxReaders;
    envOptions.sync = options.sync;
    env_ = std::make_unique<lmdb::Env>(path, envOptions);

    lmdb::Txn txn(*env_, lmdb::Txn::Mode::ReadWrite);
    t_.meta = lmdb::Table(txn, "meta", MDB_CREATE);
    t_.rev = lmdb::Table(txn, "rev", MDB_CREATE);
    t_.lease = lmdb::Table(txn, "lease", MDB_CREATE);
    t_.leaseKeys = lmdb::Table(txn, "lease_keys", MDB_CREATE | MDB_DUPSORT);

    if (auto format = t_.meta.get(txn, detail::kMetaFormat)) {
        if (*format == detail::kFormatVersion1) {
            for (const char* name : {"key_index", "live"}) {
                lmdb::Table old(txn, name, 0);
                old.drop(txn);
            }
            t_.meta.put(txn, detail::kMetaFormat, detail::kFormatVersion);
        } else if (*format != detail::kFormatVersion) {
            throw lmdb::LmdbError(MDB_INCOMPATIBLE, "coord: " + path + " has data format '" +
                                                        std::string(*format) +
                                                        "', this build reads '" +
                                                        std::string(detail::kFormatVersion) + "'");
        }
    } else {
        t_.meta.put(txn, detail::kMetaFormat, detail::kFormatVersion);
        t_.meta.put(txn, detail::kMetaCurrentRev, encodeI64(1));
        t_.meta.put(txn, detail::kMetaCompactedRev, encodeI64(0));
        t_.meta.put(txn, detail::kMetaAppliedIndex, encodeI64(0));
        t_.meta.put(txn, detail::kMetaCompactCursor, detail::encodeRevKey({0, 0}));
    }
    index_ = std::make_unique<detail::KeyIndex>();
    rebuildIndex(txn);
    publishApplied(txn);
    txn.commit();
    committedIndex_.store(appliedIndex_.load());
    hub_ = std::make_unique<WatchHub>(*this);
}

void Store::rebuildIndex(const lmdb::Txn& txn) {
    index_->clear();
    lmdb::Cursor c(txn, t_.rev);
    std::string_view k, v;
    std::string key;
    KeyValue meta;
    for (bool ok = c.get(MDB_FIRST, k, v); ok; ok = c.get(MDB_NEXT, k, v)) {
        auto view = detail::decodeRevRecord(v, &meta, false);
        key.assign(view.key);
        index_->load(key, {detail::decodeRevKey(k), view.tombstone, meta.createRevision,
                           meta.version, meta.lease});
    }
    index_->setCompacted(metaI64(txn, detail::kMetaCompactedRev));
    index_->forget();
}

Store::~Store() {
    // Uncommitted batches are dropped, as a crash would drop them: their owner's Raft log
    // applies them again. Owners commit on the writer thread first (NodeDriver::stop).
    deferred_.reset();
}

int64_t Store::metaI64(const lmdb::Txn& txn, std::string_view name) const {
    auto v = t_.meta.get(txn, name);
    COORD_ASSERT(v.has_value(), "missing meta record", name);
    return decodeI64(*v);
}

int64_t Store::currentRevision() const {
    return revision_.load(std::memory_order_acquire);
}

int64_t Store::compactedRevision() const {
    return compacted_.load(std::memory_order_acquire);
}

uint64_t Store::appliedIndex() const {
    return appliedIndex_.load(std::memory_order_acquire);
}

std::optional<KeyValue> Store::getIn(const lmdb::Txn& txn, std::string_view key,
                                     int64_t rev) const {
    if (key.empty() || key.size() > kMaxKeyBytes) return std::nullopt;
    auto entry = index_->latestAtOrBelow(key, rev);
    if (!entry || entry->tombstone) return std::nullopt;
    auto rec = t_.rev.get(txn, detail::encodeRevKey(entry->rev));
    COORD_ASSERT(rec.has_value(), "key index points at a missing revision", entry->rev.main);
    KeyValue kv;
    detail::decodeRevRecord(*rec, &kv);
    return kv;
}

std::optional<KeyValue> Store::get(std::string_view key) const {
    return reading([&](const lmdb::Txn& txn) {
        return getIn(txn, key, metaI64(txn, detail::kMetaCurrentRev));
    });
}

KvResult<RangeResponse> Store::range(const RangeRequest& request) const {
    return reading([&](const lmdb::Txn& txn) {
        return rangeIn(txn, request, metaI64(txn, detail::kMetaCurrentRev));
    });
}

namespace {

// What a key-value costs a response besides its key and value (its revisions, version, lease
// and the encoding's pointers), for Options::maxResponseBytes.
constexpr size_t kKeyValueOverhead = 64;

bool passesFilters(const RangeRequest& r, const KeyValue& kv) {
    if (r.minModRevision > 0 && kv.modRevision < r.minModRevision) return false;
    if (r.maxModRevision > 0 && kv.modRevision > r.maxModRevision) return false;
    if (r.minCreateRevision > 0 && kv.createRevision < r.minCreateRevision) return false;
    if (r.maxCreateRevision > 0 && kv.createRevision > r.maxCreateRevision) return false;
    return true;
}

bool hasFilters(const RangeRequest& r) {
    return r.minModRevision > 0 || r.maxModRevision > 0 || r.minCreateRevision > 0 ||
           r.maxCreateRevision > 0;
}

void sortKvs(std::vector<KeyValue>& kvs, SortOrder order, SortTarget target) {
    auto less = [target](const KeyValue& a, const KeyValue& b) {
        switch (target) {
            case SortTarget::Key:
                return a.key < b.key;
            case SortTarget::Version:
                return a.version < b.version;
            case SortTarget::Create:
                return a.createRevision < b.createRevision;
            case SortTarget::Mod:
                return a.modRevision < b.modRevision;
            case SortTarget::Value:
                return a.value < b.value;
        }
        return false;
    };
    // Keys arrive in ascending key order, so a stable sort keeps key order among equals.
    if (order == SortOrder::Descend) {
        std::stable_sort(kvs.begin(), kvs.end(),
                         [&](const KeyValue& a, const KeyValue& b) { return less(b, a); });
    } else {
        std::stable_sort(kvs.begin(), kvs.end(), less);
    }
}

}  // namespace

KvResult<RangeResponse> Store::rangeApplied(const RangeRequest& request) const {
    std::shared_ptr<const DeferredRecords> records;
    std::optional<lmdb::Txn> txn;
    {
        // The snapshot and the records together: the commit replaces the records only after
        // it is visible to new snapshots.
        std::lock_guard lock(recordsMu_);
        txn.emplace(*env_, lmdb::Txn::Mode::ReadOnly);
        records = records_;
    }
    if (!records) return rangeIn(*txn, request, metaI64(*txn, detail::kMetaCurrentRev));
    int64_t current;
    {
        std::shared_lock lock(records->mu);
        current = records->revision;
    }
    return rangeIn(*txn, request, current, records.get());
}

KvResult<RangeResponse> Store::rangeIn(const lmdb::Txn& txn, const RangeRequest& req,
                                       int64_t currentRev, const DeferredRecords* deferred,
                                       size_t* budget) const {
    if (auto err = detail::checkKey(req.key)) return fail(*err);
    if (req.limit < 0) return fail(detail::makeError(ErrorCode::InvalidArgument, "negative limit"));
    int64_t rev = req.revision > 0 ? req.revision : currentRev;
    if (rev > currentRev) {
        return fail(detail::futureRevisionError(rev, currentRev));
    }
    int64_t compacted = std::max(metaI64(txn, detail::kMetaCompactedRev), index_->compacted());
    if (rev < compacted) {
        return fail(detail::compactedError(rev, compacted));
    }

    SortOrder order = req.sortOrder;
    if (order == SortOrder::None && req.sortTarget != SortTarget::Key) order = SortOrder::Ascend;
    const bool keyOrder = order == SortOrder::None ||
                          (order == SortOrder::Ascend && req.sortTarget == SortTarget::Key);
    const bool filtered = hasFilters(req);
    // When results come out in key order and unfiltered, collection stops at the limit and the
    // rest of the range is only counted.
    const size_t keep =
        (keyOrder && !filtered && req.limit > 0) ? static_cast<size_t>(req.limit) : SIZE_MAX;
    const bool wantValues =
        !req.countOnly && (!req.keysOnly || req.sortTarget == SortTarget::Value);
    const bool collect = !req.countOnly || filtered;

    RangeResponse resp;
    resp.revision = currentRev;
    std::vector<KeyValue>& kvs = resp.kvs;
    // The index first (under its lock, briefly): the revisions to read; then the records.
    std::vector<std::pair<std::string, detail::Revision>> found;
    size_t counted = 0;
    // The response size bound: every key returned is charged its bytes; the first one that
    // does not fit ends the result, unless it would be the first (so a read always advances).
    size_t ownBudget = options_.maxResponseBytes;
    size_t& left = budget ? *budget : ownBudget;
    bool cut = false;
    auto charge = [&](const KeyValue& kv, bool first) {
        size_t cost = kv.key.size() + (req.keysOnly ? 0 : kv.value.size()) + kKeyValueOverhead;
        if (cost > left && !first) return false;
        left -= std::min(cost, left);
        return true;
    };
    // In key order, unfiltered, the keys alone tell where the bound will cut: the ones past it
    // are counted, not listed (a huge range then costs no huge list).
    const bool cutByKeys = keyOrder && !filtered && !req.countOnly;
    size_t listedBytes = 0;
    bool listCut = false;
    bool listed = index_->forEachAt(req.key, req.rangeEnd, rev,
                                    [&](const std::string& key, const detail::IndexEntry& e) {
                                        if (e.tombstone) return true;
                                        ++counted;
                                        if (!collect || found.size() >= keep || listCut)
                                            return true;
                                        if (cutByKeys && !found.empty() && listedBytes > left) {
                                            listCut = true;
                                            return true;
                                        }
                                        listedBytes += key.size() + kKeyValueOverhead;
                                        found.emplace_back(key, e.rev);
                                        return true;
                                    });
    if (!listed) return fail(detail::compactedError(rev, index_->compacted()));
    for (const auto& [key, r] : found) {
        std::string revKey = detail::encodeRevKey(r);
        KeyValue kv;
        bool fromDeferred = false;
        if (deferred) {
            std::shared_lock lock(deferred->mu);
            if (auto it = deferred->byRevKey.find(revKey); it != deferred->byRevKey.end()) {
                detail::decodeRevRecord(it->second, &kv, wantValues);
                fromDeferred = true;
            }
        }
        if (!fromDeferred) {
            auto rec = t_.rev.get(txn, revKey);
            COORD_ASSERT(rec.has_value(), "key index points at a missing revision", r.main, r.sub);
            detail::decodeRevRecord(*rec, &kv, wantValues);
        }
        if (!passesFilters(req, kv)) continue;
        // In key order the response is cut while reading, before the records past the bound
        // are read at all.
        if (keyOrder && !req.countOnly && !charge(kv, kvs.empty())) {
            cut = true;
            break;
        }
        kvs.push_back(std::move(kv));
    }
    if (listCut) cut = true;
    // The count is of every key in the range, before filters and limit (as etcd's).
    resp.count = static_cast<int64_t>(counted);
    if (collect && counted > found.size()) resp.more = true;

    if (req.countOnly) {
        kvs.clear();
        resp.more = false;
        return resp;
    }
    if (!keyOrder) {
        sortKvs(kvs, order, req.sortTarget);
        for (size_t i = 0; i < kvs.size(); ++i) {
            if (!charge(kvs[i], i == 0)) {
                kvs.resize(i);
                cut = true;
                break;
            }
        }
    }
    if (req.limit > 0 && kvs.size() > static_cast<size_t>(req.limit)) {
        kvs.resize(static_cast<size_t>(req.limit));
        resp.more = true;
        cut = false;  // the limit, not the size bound, ends the result
    }
    if (cut) {
        resp.more = true;
        resp.truncated = true;
    }
    if (req.keysOnly) {
        for (auto& kv : kvs)
            kv.value.clear();
    }
    return resp;
}

KvResult<int64_t> Store::readHistory(int64_t from, int64_t to, size_t maxEvents, bool withPrevKv,
                                     const std::function<void(int64_t, std::span<const Event>)>& fn,
                                     size_t maxBytes) const {
    return reading([&](const lmdb::Txn& txn) {
        return historyIn(txn, from, to, maxEvents, withPrevKv, fn, maxBytes);
    });
}

KvResult<int64_t> Store::historyIn(const lmdb::Txn& txn, int64_t from, int64_t to, size_t maxEvents,
                                   bool withPrevKv,
                                   const std::function<void(int64_t, std::span<const Event>)>& fn,
                                   size_t maxBytes) const {
    int64_t compacted = metaI64(txn, detail::kMetaCompactedRev);
    if (from < compacted) {
        return fail(detail::compactedError(from, compacted));
    }
    lmdb::Cursor c(txn, t_.rev);

    std::string start = detail::encodeRevKey({from, 0});
    std::string_view k = start, v;
    std::vector<Event> events;
    int64_t current = 0;
    size_t total = 0;
    size_t bytes = 0;
    for (bool ok = c.get(MDB_SET_RANGE, k, v); ok; ok = c.get(MDB_NEXT, k, v)) {
        Revision r = detail::decodeRevKey(k);
        if (r.main > to) break;
        if (r.main != current) {
            if (!events.empty()) {
                fn(current, events);
                total += events.size();
                events.clear();
                if (total >= maxEvents || bytes >= maxBytes) return current + 1;
            }
            current = r.main;
        }
        Event e;
        auto view = detail::decodeRevRecord(v, &e.kv);
        if (view.tombstone) {
            e.type = Event::Type::Delete;
            e.kv = KeyValue{std::string(view.key), {}, 0, r.main, 0, 0};
        }
        if (withPrevKv) {
            auto prev = index_->latestBefore(view.key, r);
            if (prev && !prev->tombstone) {
                // Gone when compacted away: no previous value then.
                if (auto rec = t_.rev.get(txn, detail::encodeRevKey(prev->rev))) {
                    KeyValue pkv;
                    detail::decodeRevRecord(*rec, &pkv);
                    e.prevKv = std::move(pkv);
                }
            }
        }
        bytes += e.kv.key.size() + e.kv.value.size() +
                 (e.prevKv ? e.prevKv->key.size() + e.prevKv->value.size() : 0);
        events.push_back(std::move(e));
    }
    if (!events.empty()) fn(current, events);
    return to + 1;
}

std::optional<LeaseInfo> Store::leaseTimeToLive(int64_t id, bool withKeys) const {
    return reading([&](const lmdb::Txn& txn) { return leaseIn(txn, id, withKeys); });
}

std::optional<LeaseInfo> Store::leaseIn(const lmdb::Txn& txn, int64_t id, bool withKeys) const {
    auto v = t_.lease.get(txn, encodeI64(id));
    if (!v) return std::nullopt;
    LeaseInfo info{id, decodeI64(*v), {}};
    if (withKeys) {
        lmdb::Cursor c(txn, t_.leaseKeys);
        std::string idKey = encodeI64(id);
        std::string_view k = idKey, val;
        for (bool ok = c.get(MDB_SET, k, val); ok; ok = c.get(MDB_NEXT_DUP, k, val)) {
            info.keys.emplace_back(val);
        }
    }
    return info;
}

std::vector<LeaseInfo> Store::leaseList() const {
    return reading([&](const lmdb::Txn& txn) {
        std::vector<LeaseInfo> out;
        lmdb::Cursor c(txn, t_.lease);
        for (bool ok = c.get(MDB_FIRST); ok; ok = c.get(MDB_NEXT)) {
            out.push_back(LeaseInfo{decodeI64(c.key()), decodeI64(c.value()), {}});
        }
        return out;
    });
}

KvResult<HashKVResponse> Store::hashKV(int64_t revision) const {
    return reading([&](const lmdb::Txn& txn) -> KvResult<HashKVResponse> {
        const int64_t current = metaI64(txn, detail::kMetaCurrentRev);
        const int64_t compacted = metaI64(txn, detail::kMetaCompactedRev);
        if (revision <= 0) revision = current;
        if (revision > current) return fail(detail::futureRevisionError(revision, current));
        if (revision < compacted) return fail(detail::compactedError(revision, compacted));
        struct Digest {
            Revision rev;
            uint32_t crc;
            bool tombstone;
        };
        auto digest = [](std::string_view revKey, std::string_view record) {
            return crc32Update(crc32Update(0, revKey.data(), revKey.size()), record.data(),
                               record.size());
        };
        HashKVResponse out;
        out.revision = revision;
        out.compactRevision = compacted;
        auto feed = [&out](uint32_t crc) {
            const uint8_t le[4] = {static_cast<uint8_t>(crc), static_cast<uint8_t>(crc >> 8),
                                   static_cast<uint8_t>(crc >> 16),
                                   static_cast<uint8_t>(crc >> 24)};
            out.hash = crc32Update(out.hash, le, sizeof le);
        };
        // Below the compacted revision: the newest record of each key so far. At it: every
        // record (reads at the compacted revision see them), superseding the older ones.
        std::unordered_map<std::string, Digest> older;
        std::vector<Digest> atCompacted;
        bool flushed = false;
        auto flushOlder = [&] {
            std::vector<Digest> kept = std::move(atCompacted);
            for (auto& [key, d] : older)
                if (!d.tombstone) kept.push_back(d);
            std::sort(kept.begin(), kept.end(),
                      [](const Digest& a, const Digest& b) { return a.rev < b.rev; });
            for (const auto& d : kept)
                feed(d.crc);
            older.clear();
            flushed = true;
        };
        lmdb::Cursor c(txn, t_.rev);
        std::string_view k, v;
        for (bool ok = c.get(MDB_FIRST, k, v); ok; ok = c.get(MDB_NEXT, k, v)) {
            Revision r = detail::decodeRevKey(k);
            if (r.main > revision) break;
            auto view = detail::decodeRevRecord(v, nullptr);
            if (r.main < compacted) {
                older[std::string(view.key)] = Digest{r, digest(k, v), view.tombstone};
            } else if (r.main == compacted) {
                older.erase(std::string(view.key));
                atCompacted.push_back(Digest{r, digest(k, v), view.tombstone});
            } else {
                if (!flushed) flushOlder();
                feed(digest(k, v));
            }
        }
        if (!flushed) flushOlder();
        return out;
    });
}

bool Store::compactionPending() const {
    return reading([&](const lmdb::Txn& txn) {
        auto cursor = t_.meta.get(txn, detail::kMetaCompactCursor);
        COORD_ASSERT(cursor.has_value(), "missing compaction cursor");
        return detail::decodeRevKey(*cursor).main < metaI64(txn, detail::kMetaCompactedRev);
    });
}

size_t Store::compactStep(size_t maxRecords) {
    commitDeferred(false);
    lmdb::Txn txn(*env_, lmdb::Txn::Mode::ReadWrite);
    const int64_t target = metaI64(txn, detail::kMetaCompactedRev);
    auto saved = t_.meta.get(txn, detail::kMetaCompactCursor);
    COORD_ASSERT(saved.has_value(), "missing compaction cursor");
    std::string position(*saved);
    if (detail::decodeRevKey(position).main >= target) return 0;

    size_t examined = 0;
    Revision stop{target, 0};
    std::vector<std::pair<std::string, Revision>> removed;  // from the index once committed
    {
        // Cursors of a write transaction must be closed before it commits.
        lmdb::Cursor c(txn, t_.rev);
        std::string_view k = position, v;
        bool ok = c.get(MDB_SET_RANGE, k, v);
        while (ok && examined < maxRecords) {
            Revision r = detail::decodeRevKey(k);
            if (r.main >= target) break;
            ++examined;
            auto view = detail::decodeRevRecord(v, nullptr);
            // Keep the newest revision of the key at or below the target unless it is a delete:
            // reads at the target must still see it. Everything older is superseded.
            auto latest = index_->latestAtOrBelow(view.key, target);
            COORD_ASSERT(latest.has_value(), "revision without key index entry", r.main, r.sub);
            bool keep = latest->rev == r && !latest->tombstone;
            if (keep) {
                ok = c.get(MDB_NEXT, k, v);
                continue;
            }
            removed.emplace_back(std::string(view.key), r);
            std::string here(k);
            c.del();
            std::string_view hk = here;
            ok = c.get(MDB_SET_RANGE, hk, v);
            k = hk;
        }
        if (ok && detail::decodeRevKey(k).main < target) stop = detail::decodeRevKey(k);
    }
    t_.meta.put(txn, detail::kMetaCompactCursor, detail::encodeRevKey(stop));
    txn.commit();
    // Lookups below the compacted revision already fail, so none needs these entries.
    for (const auto& [key, r] : removed)
        index_->remove(key, r);
    return examined;
}

Reader::Reader(const Store& store) : store_(store), txn_(*store.env_, lmdb::Txn::Mode::ReadOnly) {}

void Reader::refresh() {
    txn_.reset();
    txn_.renew();
}

KvResult<RangeResponse> Reader::range(const RangeRequest& request) {
    return store_.rangeIn(txn_, request, store_.metaI64(txn_, detail::kMetaCurrentRev));
}

std::optional<KeyValue> Reader::get(std::string_view key) {
    return store_.getIn(txn_, key, store_.metaI64(txn_, detail::kMetaCurrentRev));
}

}  // namespace coord::kv
