// RaftLogStorage: the Raft log, hard state and membership, stored in the store's LMDB
// environment (tables raft_log and raft_snap, records in meta).
//
// Because the log shares the environment with the state machine, one write transaction — and
// one fsync — can append a Ready's entries, save its hard state and apply committed entries:
// Store::apply() takes a hook that runs RaftLogStorage::persist() inside its transaction.
//
// Layout: raft_log: be64(index) → le64 term, u8 type, data. meta: "raft_hard_state" → term,
// vote, commit; "raft_conf_state" → membership. raft_snap: "meta" → index, term, membership of
// the newest snapshot (the snapshot's data is the store's own state, exported on demand).
//
// Threading: reads (the raft::Storage interface) and writes happen on the core thread.
#pragma once

#include <vector>

#include "kv/store.h"
#include "raft/storage.h"

namespace coord::kv {

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
    };
    void persist(const lmdb::Txn& txn, const Update& update);
    // Persists in a transaction of its own (one fsync).
    void save(const Update& update);
    // Records that the state machine is a snapshot at (index, term) and drops the log up to
    // index (the Store's state must already be that snapshot).
    void installSnapshot(const raft::SnapshotMeta& meta);
    // Drops log entries up to `index` (which must be applied) after recording a snapshot there.
    void compact(raft::Index index, const raft::ConfState& conf);

  private:
    void load();

    Store& store_;
    lmdb::Table log_, snap_, meta_;
    raft::HardState hardState_;
    raft::ConfState conf_;
    raft::SnapshotMeta snapMeta_;
    raft::Index lastIndex_ = 0;
};

}  // namespace coord::kv
