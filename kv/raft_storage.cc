#include "kv/raft_storage.h"

#include <cstdio>
#include <sstream>

#include "common/assert.h"
#include "common/bytes.h"
#include "common/log.h"
#include "kv/codec.h"

namespace coord::kv {

namespace {

constexpr std::string_view kConfStateKey = "raft_conf_state";

void appendIds(std::string& s, const std::vector<raft::NodeId>& ids) {
    appendLe32(s, static_cast<uint32_t>(ids.size()));
    for (auto id : ids)
        appendLe64(s, id);
}

std::vector<raft::NodeId> readIds(std::string_view& v) {
    COORD_ASSERT(v.size() >= 4, "corrupt membership record");
    uint32_t n = loadLe32(v.data());
    v.remove_prefix(4);
    COORD_ASSERT(v.size() >= size_t{n} * 8, "corrupt membership record", n);
    std::vector<raft::NodeId> ids;
    for (uint32_t i = 0; i < n; ++i) {
        ids.push_back(loadLe64(v.data()));
        v.remove_prefix(8);
    }
    return ids;
}

std::string encodeConf(const raft::ConfState& c) {
    std::string s;
    appendIds(s, c.voters);
    appendIds(s, c.learners);
    return s;
}

raft::ConfState decodeConf(std::string_view v) {
    raft::ConfState c;
    c.voters = readIds(v);
    c.learners = readIds(v);
    return c;
}

void appendString(std::string& s, std::string_view v) {
    appendLe32(s, static_cast<uint32_t>(v.size()));
    s += v;
}

bool readString(std::string_view& v, std::string& out) {
    if (v.size() < 4) return false;
    uint32_t n = loadLe32(v.data());
    if (v.size() - 4 < n) return false;
    out.assign(v.substr(4, n));
    v.remove_prefix(4 + size_t{n});
    return true;
}

std::string encodeMembers(const Members& members) {
    std::string s;
    appendLe32(s, static_cast<uint32_t>(members.size()));
    for (const auto& [id, m] : members)
        appendString(s, encodeMemberInfo(m));
    return s;
}

Members loadMembers(std::string_view v) {
    auto m = decodeMembers(v);
    COORD_ASSERT(m.has_value(), "corrupt member registry", v.size());
    return *m;
}

}  // namespace

std::optional<Members> decodeMembers(std::string_view v) {
    Members out;
    if (v.size() < 4) return std::nullopt;
    uint32_t n = loadLe32(v.data());
    v.remove_prefix(4);
    for (uint32_t i = 0; i < n; ++i) {
        std::string one;
        if (!readString(v, one)) return std::nullopt;
        auto m = decodeMemberInfo(one);
        if (!m) return std::nullopt;
        out[m->id] = *m;
    }
    if (!v.empty()) return std::nullopt;
    return out;
}

std::string encodeMemberInfo(const MemberInfo& m) {
    std::string s;
    s.push_back('\x01');  // record version
    appendLe64(s, m.id);
    appendString(s, m.name);
    appendString(s, m.peerUrl);
    appendString(s, m.clientUrl);
    return s;
}

std::optional<MemberInfo> decodeMemberInfo(std::string_view v) {
    if (v.size() < 9 || v[0] != '\x01') return std::nullopt;
    MemberInfo m;
    m.id = loadLe64(v.data() + 1);
    v.remove_prefix(9);
    if (!readString(v, m.name) || !readString(v, m.peerUrl) || !readString(v, m.clientUrl)) {
        return std::nullopt;
    }
    if (!v.empty()) return std::nullopt;
    return m;
}

namespace {

enum RecordType : uint8_t { kEntry = 1, kHardState = 2, kCompact = 3, kInstall = 4 };

std::string encodeSnapMeta(const raft::SnapshotMeta& m) {
    std::string s;
    appendLe64(s, m.index);
    appendLe64(s, m.term);
    s += encodeConf(m.conf);
    return s;
}

raft::SnapshotMeta decodeSnapMeta(std::string_view v) {
    if (v.size() < 16) throw WalError("write-ahead log: corrupt snapshot record");
    raft::SnapshotMeta m;
    m.index = loadLe64(v.data());
    m.term = loadLe64(v.data() + 8);
    m.conf = decodeConf(v.substr(16));
    return m;
}

std::string encodeHardState(const raft::HardState& h) {
    std::string s;
    appendLe64(s, h.term);
    appendLe64(s, h.vote);
    appendLe64(s, h.commit);
    return s;
}

}  // namespace

RaftLogStorage::RaftLogStorage(Store& store, const std::string& walDir, size_t walSegmentBytes)
    : store_(store) {
    {
        lmdb::Txn txn(store.env(), lmdb::Txn::Mode::ReadWrite);
        meta_ = lmdb::Table(txn, "meta", MDB_CREATE);
        txn.commit();
    }
    {
        lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadOnly);
        if (auto v = meta_.get(txn, kConfStateKey)) conf_ = decodeConf(*v);
        if (auto v = meta_.get(txn, kMembersKey)) members_ = loadMembers(*v);
    }
    wal_ = std::make_unique<Wal>(
        walDir, [this](uint8_t type, std::string_view payload) { return replay(type, payload); },
        walSegmentBytes);
    for (const auto& e : log_)
        bytes_ += e.data.size();
    if (!log_.empty() && log_.front().index != snapMeta_.index + 1) {
        throw WalError("write-ahead log in " + walDir + " has a gap: its entries start at " +
                       std::to_string(log_.empty() ? 0 : log_.front().index) +
                       " but its snapshot is at " + std::to_string(snapMeta_.index));
    }
}

uint64_t RaftLogStorage::replay(uint8_t type, std::string_view v) {
    empty_ = false;
    switch (type) {
        case kEntry: {
            if (v.size() < 17) throw WalError("write-ahead log: corrupt entry record");
            raft::Entry e;
            e.index = loadLe64(v.data());
            e.term = loadLe64(v.data() + 8);
            e.type = static_cast<raft::EntryType>(v[16]);
            e.data.assign(v.substr(17));
            // Replay keeps the entries in index order without assuming where they start: the
            // segments holding their predecessors may be released, and a later Compact record
            // then covers the gap (checked once the replay ends).
            if (e.index <= snapMeta_.index) return e.index;
            if (!log_.empty() && e.index <= log_.back().index) {
                if (e.index < log_.front().index) {
                    log_.clear();
                } else {
                    log_.resize(e.index - log_.front().index);  // a conflicting suffix
                }
            }
            if (!log_.empty() && e.index != log_.back().index + 1) log_.clear();
            raft::Index index = e.index;
            log_.push_back(std::move(e));
            return index;
        }
        case kHardState:
            if (v.size() != 24) throw WalError("write-ahead log: corrupt hard state record");
            hardState_ = raft::HardState{loadLe64(v.data()), loadLe64(v.data() + 8),
                                         loadLe64(v.data() + 16)};
            return 0;
        case kCompact: {
            raft::SnapshotMeta m = decodeSnapMeta(v);
            if (m.index <= snapMeta_.index) return m.index;
            while (!log_.empty() && log_.front().index <= m.index)
                log_.pop_front();
            snapMeta_ = m;
            return m.index;
        }
        case kInstall:
            snapMeta_ = decodeSnapMeta(v);
            log_.clear();
            return snapMeta_.index;
        default:
            throw WalError("write-ahead log: unknown record type " + std::to_string(type));
    }
}

std::vector<raft::Entry> RaftLogStorage::entries(raft::Index lo, raft::Index hi,
                                                 uint64_t maxBytes) const {
    COORD_ASSERT(lo >= firstIndex() && lo <= hi && hi <= lastIndex() + 1,
                 "raft log read out of bounds", lo, hi, firstIndex(), lastIndex());
    std::vector<raft::Entry> out;
    uint64_t bytes = 0;
    for (raft::Index i = lo; i < hi; ++i) {
        const raft::Entry& e = at(i);
        bytes += e.data.size() + 16;
        if (!out.empty() && bytes > maxBytes) break;
        out.push_back(e);
    }
    return out;
}

std::optional<raft::Term> RaftLogStorage::term(raft::Index i) const {
    if (i == snapMeta_.index) return snapMeta_.term;
    if (i < firstIndex() || i > lastIndex()) return std::nullopt;
    return at(i).term;
}

raft::Snapshot RaftLogStorage::snapshot() const {
    raft::Snapshot s;
    s.meta = snapMeta_;
    if (snapMeta_.index > 0) {
        std::ostringstream out;
        store_.exportSnapshot(out);
        s.data = out.str();
        COORD_LOG_INFO(
            "made a snapshot for a lagging member: %zu bytes, store at revision %lld, "
            "log index %llu",
            s.data.size(), static_cast<long long>(store_.currentRevision()),
            static_cast<unsigned long long>(snapMeta_.index));
    }
    return s;
}

void RaftLogStorage::append(const std::vector<raft::Entry>& entries,
                            const std::optional<raft::HardState>& hardState, bool sync) {
    if (entries.empty() && !hardState) return;
    Wal::write(appendAsync(entries, hardState));
    if (sync) wal_->flush(true);
}

Wal::Batch RaftLogStorage::appendAsync(const std::vector<raft::Entry>& entries,
                                       const std::optional<raft::HardState>& hardState) {
    if (entries.empty() && !hardState) return {};
    // A full segment is closed first; the new one opens with what a replay needs when the
    // older segments are gone: the snapshot mark and the hard state.
    wal_->rotateIfFull([this] {
        std::vector<Wal::Record> header;
        header.push_back({kCompact, encodeSnapMeta(snapMeta_)});
        header.push_back({kHardState, encodeHardState(hardState_)});
        return header;
    });
    if (!entries.empty()) {
        raft::Index first = entries.front().index;
        COORD_ASSERT(first > snapMeta_.index && first <= lastIndex() + 1,
                     "raft append out of place", first, snapMeta_.index, lastIndex());
        while (lastIndex() >= first) {  // drop the conflicting suffix, if any
            bytes_ -= log_.back().data.size();
            log_.pop_back();
        }
        std::string rec;
        for (const auto& e : entries) {
            rec.clear();
            appendLe64(rec, e.index);
            appendLe64(rec, e.term);
            rec.push_back(static_cast<char>(e.type));
            rec += e.data;
            wal_->add(kEntry, rec, e.index);
            log_.push_back(e);
            bytes_ += e.data.size();
        }
    }
    if (hardState) {
        wal_->add(kHardState, encodeHardState(*hardState));
        hardState_ = *hardState;
    }
    empty_ = false;
    return wal_->take();
}

void RaftLogStorage::persist(const lmdb::Txn& txn, const Applied& u) {
    if (u.confState) {
        meta_.put(txn, kConfStateKey, encodeConf(*u.confState));
        conf_ = *u.confState;
    }
    if (u.members) {
        meta_.put(txn, kMembersKey, encodeMembers(*u.members));
        members_ = *u.members;
    }
}

void RaftLogStorage::writeSnapRecord(uint8_t type, const raft::SnapshotMeta& meta) {
    wal_->add(type, encodeSnapMeta(meta), meta.index);
    wal_->flush(true);
    empty_ = false;
}

void RaftLogStorage::restartLog(const raft::SnapshotMeta& meta) {
    writeSnapRecord(kInstall, meta);
    snapMeta_ = meta;
    log_.clear();
    bytes_ = 0;
}

void RaftLogStorage::installSnapshot(const raft::SnapshotMeta& meta) {
    store_.commitDeferred(false);
    {
        lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadWrite);
        meta_.put(txn, kConfStateKey, encodeConf(meta.conf));
        members_.clear();
        if (auto v = meta_.get(txn, kMembersKey)) members_ = loadMembers(*v);
        txn.commit();
    }
    restartLog(meta);
    conf_ = meta.conf;
}

void RaftLogStorage::bootstrap(const raft::SnapshotMeta& meta, const raft::HardState& hard,
                               const Members& members) {
    store_.commitDeferred(false);
    {
        lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadWrite);
        persist(txn, {meta.conf, members});
        txn.commit();
    }
    wal_->add(kHardState, encodeHardState(hard));  // made durable with the Install record
    hardState_ = hard;
    restartLog(meta);
}

void RaftLogStorage::compact(raft::Index index, const raft::ConfState& conf) {
    compactDeferred(index, conf).dispose();
}

RaftLogStorage::Leftovers RaftLogStorage::compactDeferred(raft::Index index,
                                                          const raft::ConfState& conf) {
    if (index <= snapMeta_.index) return {};
    COORD_ASSERT(index <= lastIndex(), "compaction beyond the raft log", index, lastIndex());
    COORD_ASSERT(index <= store_.appliedIndex(), "compaction beyond the applied index", index,
                 store_.appliedIndex());
    // The store commits without syncing its meta page, or not yet (see Store::applyDeferred):
    // make every applied entry durable there before the log forgets it.
    store_.commitDeferred(false);
    store_.env().sync();
    raft::SnapshotMeta meta{index, *term(index), conf};
    writeSnapRecord(kCompact, meta);
    // The dropped entries leave by moving (ownership only; nothing is freed here).
    size_t drop = std::min<size_t>(log_.size(), index - snapMeta_.index);
    std::deque<raft::Entry> dropped;
    if (drop == log_.size()) {
        dropped.swap(log_);
    } else {
        auto end = log_.begin() + static_cast<std::ptrdiff_t>(drop);
        dropped.assign(std::make_move_iterator(log_.begin()), std::make_move_iterator(end));
        log_.erase(log_.begin(), end);
    }
    for (const auto& e : dropped)
        bytes_ -= e.data.size();
    snapMeta_ = meta;
    return Leftovers(std::move(dropped), wal_->detachReleased(index));
}

RaftLogStorage::Leftovers::~Leftovers() {
    try {
        dispose();
    } catch (const std::exception& e) {
        COORD_LOG_WARN("%s", e.what());
    }
}

void RaftLogStorage::Leftovers::dispose() {
    std::deque<raft::Entry>().swap(entries_);
    std::vector<std::string> segments;
    segments.swap(segments_);
    Wal::removeFiles(segments);
}

raft::Index RaftLogStorage::compactionPoint(raft::Index applied, uint64_t keepEntries,
                                            uint64_t keepBytes) const {
    applied = std::min(applied, lastIndex());
    if (applied <= snapMeta_.index) return snapMeta_.index;
    raft::Index point = applied;
    uint64_t kept = 0, bytes = 0;
    while (point > snapMeta_.index + 1 && kept < keepEntries) {
        bytes += at(point).data.size();
        if (bytes > keepBytes) break;
        --point;
        ++kept;
    }
    return std::max(point, snapMeta_.index + 1);
}

}  // namespace coord::kv
