// RaftLogStorage: the Raft log, hard state and membership, stored in the store's LMDB
// environment (tables raft_log and raft_snap, records in meta).
//
// Because the log shares the environment with the state machine, one write transaction — and
// one fsync — can append a Ready's entries, save its hard state and apply committed entries:
// Store::apply() takes a hook that runs RaftLogStorage::persist() inside its transaction.
//
// Layout: raft_log: be64(index) → le64 term, u8 type, data. meta: "raft_hard_state" → term,
// vote, commit; "raft_conf_state" → membership; "members" → the member registry (names and
// addresses). The raft_ records are this member's own and never leave it in a snapshot. raft_snap:
// "meta" → index, term, membership of the newest snapshot (the snapshot's data is the store's own
// state, exported on demand).
//
// Threading: reads (the raft::Storage interface) and writes happen on the core thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kv/store.h"
#include "raft/storage.h"

namespace coord::kv {

// One member of the cluster as the cluster knows it: replicated through the context of the
// membership change that added it (and of Update changes), kept in the store's meta table under
// "members" — so it travels inside snapshots to new members.
struct MemberInfo {
    raft::NodeId id = 0;
    std::string name;
    std::string peerUrl;
    std::string clientUrl;  // empty until the member published it
    bool operator==(const MemberInfo&) const = default;
};
using Members = std::map<raft::NodeId, MemberInfo>;
std::string encodeMemberInfo(const MemberInfo& m);
// nullopt when the bytes are not a member record.
std::optional<MemberInfo> decodeMemberInfo(std::string_view v);
// The registry as stored under kMembersKey; nullopt when malformed.
inline constexpr std::string_view kMembersKey = "members";
std::optional<Members> decodeMembers(std::string_view v);

class RaftLogStorage final : public raft::Storage {
  public:
    // Loads the cached state (first/last index, hard state, membership, snapshot meta).
    explicit RaftLogStorage(Store& store);

    raft::HardState hardState() const override { return hardState_; }
    raft::ConfState confState() const override { return conf_; }
    std::vector<raft::Entry> entries(raft::Index lo, raft::Index hi,
                                     uint64_t maxBytes) const override;
    std::optional<raft::Term> term(raft::Index i) const override;
    raft::Index firstIndex() const override { return snapMeta_.index + 1; }
    raft::Index lastIndex() const override { return lastIndex_; }
    // The newest snapshot: its metadata and the store's current state as data.
    raft::Snapshot snapshot() const override;

    // What one Ready asks to persist, written inside the caller's write transaction.
    struct Update {
        std::vector<raft::Entry> entries;
        std::optional<raft::HardState> hardState;
        std::optional<raft::ConfState> confState;
        std::optional<Members> members = std::nullopt;
    };
    const Members& members() const { return members_; }
    void persist(const lmdb::Txn& txn, const Update& update);
    // Persists in a transaction of its own (one fsync).
    void save(const Update& update);
    // Records that the state machine is a snapshot at (index, term) and drops the log up to
    // index (the Store's state must already be that snapshot; its member registry is reloaded).
    void installSnapshot(const raft::SnapshotMeta& meta);
    // A new member of a new cluster, in one transaction: the log starts behind a snapshot with
    // the initial configuration, with this hard state and member registry.
    void bootstrap(const raft::SnapshotMeta& meta, const raft::HardState& hard,
                   const Members& members);
    // Drops log entries up to `index` (which must be applied) after recording a snapshot there.
    void compact(raft::Index index, const raft::ConfState& conf);

  private:
    void load();

    Store& store_;
    lmdb::Table log_, snap_, meta_;
    raft::HardState hardState_;
    raft::ConfState conf_;
    Members members_;
    raft::SnapshotMeta snapMeta_;
    raft::Index lastIndex_ = 0;
};

}  // namespace coord::kv
