#include "kv/raft_storage.h"

#include <sstream>

#include "common/assert.h"
#include "common/bytes.h"
#include "kv/codec.h"

namespace coord::kv {

namespace {

constexpr std::string_view kHardStateKey = "raft_hard_state";
constexpr std::string_view kConfStateKey = "raft_conf_state";
constexpr std::string_view kSnapMetaKey = "meta";

std::string encodeEntry(const raft::Entry& e) {
    std::string s;
    s.reserve(9 + e.data.size());
    appendLe64(s, e.term);
    s.push_back(static_cast<char>(e.type));
    s += e.data;
    return s;
}

raft::Entry decodeEntry(raft::Index index, std::string_view v) {
    COORD_ASSERT(v.size() >= 9, "corrupt raft log entry", index, v.size());
    raft::Entry e;
    e.index = index;
    e.term = loadLe64(v.data());
    e.type = static_cast<raft::EntryType>(v[8]);
    e.data.assign(v.substr(9));
    return e;
}

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

RaftLogStorage::RaftLogStorage(Store& store) : store_(store) {
    lmdb::Txn txn(store.env(), lmdb::Txn::Mode::ReadWrite);
    log_ = lmdb::Table(txn, "raft_log", MDB_CREATE);
    snap_ = lmdb::Table(txn, "raft_snap", MDB_CREATE);
    meta_ = lmdb::Table(txn, "meta", MDB_CREATE);
    txn.commit();
    load();
}

void RaftLogStorage::load() {
    lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadOnly);
    if (auto v = meta_.get(txn, kHardStateKey)) {
        COORD_ASSERT(v->size() == 24, "corrupt hard state", v->size());
        hardState_ =
            raft::HardState{loadLe64(v->data()), loadLe64(v->data() + 8), loadLe64(v->data() + 16)};
    }
    if (auto v = meta_.get(txn, kConfStateKey)) conf_ = decodeConf(*v);
    members_.clear();
    if (auto v = meta_.get(txn, kMembersKey)) members_ = loadMembers(*v);
    if (auto v = snap_.get(txn, kSnapMetaKey)) {
        COORD_ASSERT(v->size() >= 16, "corrupt snapshot metadata", v->size());
        snapMeta_.index = loadLe64(v->data());
        snapMeta_.term = loadLe64(v->data() + 8);
        snapMeta_.conf = decodeConf(v->substr(16));
    }
    lmdb::Cursor c(txn, log_);
    lastIndex_ = c.get(MDB_LAST) ? getBe64(c.key().data()) : snapMeta_.index;
    if (lastIndex_ < snapMeta_.index) lastIndex_ = snapMeta_.index;
}

std::vector<raft::Entry> RaftLogStorage::entries(raft::Index lo, raft::Index hi,
                                                 uint64_t maxBytes) const {
    COORD_ASSERT(lo >= firstIndex() && lo <= hi && hi <= lastIndex_ + 1,
                 "raft log read out of bounds", lo, hi, firstIndex(), lastIndex_);
    std::vector<raft::Entry> out;
    if (lo == hi) return out;
    lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadOnly);
    lmdb::Cursor c(txn, log_);
    std::string start = be64(lo);
    std::string_view k = start, v;
    uint64_t bytes = 0;
    for (bool ok = c.get(MDB_SET_RANGE, k, v); ok; ok = c.get(MDB_NEXT, k, v)) {
        raft::Index i = getBe64(k.data());
        if (i >= hi) break;
        COORD_ASSERT(i == lo + out.size(), "hole in the raft log", i, lo + out.size());
        bytes += v.size() + 16;
        if (!out.empty() && bytes > maxBytes) break;
        out.push_back(decodeEntry(i, v));
    }
    return out;
}

std::optional<raft::Term> RaftLogStorage::term(raft::Index i) const {
    if (i == snapMeta_.index) return snapMeta_.term;
    if (i < firstIndex() || i > lastIndex_) return std::nullopt;
    lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadOnly);
    auto v = log_.get(txn, be64(i));
    COORD_ASSERT(v.has_value(), "raft log entry missing", i);
    return loadLe64(v->data());
}

raft::Snapshot RaftLogStorage::snapshot() const {
    raft::Snapshot s;
    s.meta = snapMeta_;
    if (snapMeta_.index > 0) {
        std::ostringstream out;
        store_.exportSnapshot(out);
        s.data = out.str();
    }
    return s;
}

void RaftLogStorage::persist(const lmdb::Txn& txn, const Update& u) {
    if (!u.entries.empty()) {
        raft::Index first = u.entries.front().index;
        COORD_ASSERT(first > snapMeta_.index && first <= lastIndex_ + 1, "raft append out of place",
                     first, snapMeta_.index, lastIndex_);
        // Drop the conflicting suffix the new entries replace.
        {
            lmdb::Cursor c(txn, log_);
            std::string from = be64(first);
            std::string_view k = from, v;
            while (c.get(MDB_SET_RANGE, k, v)) {
                c.del();
                k = from;
            }
        }
        for (const auto& e : u.entries) {
            log_.put(txn, be64(e.index), encodeEntry(e), MDB_APPEND);
        }
        lastIndex_ = u.entries.back().index;
    }
    if (u.hardState) {
        std::string s;
        appendLe64(s, u.hardState->term);
        appendLe64(s, u.hardState->vote);
        appendLe64(s, u.hardState->commit);
        meta_.put(txn, kHardStateKey, s);
        hardState_ = *u.hardState;
    }
    if (u.confState) {
        meta_.put(txn, kConfStateKey, encodeConf(*u.confState));
        conf_ = *u.confState;
    }
    if (u.members) {
        meta_.put(txn, kMembersKey, encodeMembers(*u.members));
        members_ = *u.members;
    }
}

void RaftLogStorage::save(const Update& update) {
    lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadWrite);
    persist(txn, update);
    txn.commit();
}

namespace {
std::string encodeSnapMeta(const raft::SnapshotMeta& m) {
    std::string s;
    appendLe64(s, m.index);
    appendLe64(s, m.term);
    s += encodeConf(m.conf);
    return s;
}
}  // namespace

void RaftLogStorage::installSnapshot(const raft::SnapshotMeta& meta) {
    lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadWrite);
    log_.clear(txn);
    snap_.put(txn, kSnapMetaKey, encodeSnapMeta(meta));
    meta_.put(txn, kConfStateKey, encodeConf(meta.conf));
    members_.clear();
    if (auto v = meta_.get(txn, kMembersKey)) members_ = loadMembers(*v);
    txn.commit();
    snapMeta_ = meta;
    conf_ = meta.conf;
    lastIndex_ = meta.index;
}

void RaftLogStorage::bootstrap(const raft::SnapshotMeta& meta, const raft::HardState& hard,
                               const Members& members) {
    {
        lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadWrite);
        log_.clear(txn);
        snap_.put(txn, kSnapMetaKey, encodeSnapMeta(meta));
        persist(txn, {{}, hard, meta.conf, members});
        txn.commit();
    }
    snapMeta_ = meta;
    lastIndex_ = meta.index;
}

void RaftLogStorage::compact(raft::Index index, const raft::ConfState& conf) {
    if (index <= snapMeta_.index) return;
    COORD_ASSERT(index <= lastIndex_, "compaction beyond the raft log", index, lastIndex_);
    raft::SnapshotMeta meta{index, *term(index), conf};
    lmdb::Txn txn(store_.env(), lmdb::Txn::Mode::ReadWrite);
    {
        lmdb::Cursor c(txn, log_);
        while (c.get(MDB_FIRST) && getBe64(c.key().data()) <= index)
            c.del();
    }
    snap_.put(txn, kSnapMetaKey, encodeSnapMeta(meta));
    txn.commit();
    snapMeta_ = meta;
}

}  // namespace coord::kv
