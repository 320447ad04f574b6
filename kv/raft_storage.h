// RaftLogStorage: the Raft log and hard state in a write-ahead log (kv/wal.h), and the applied
// membership in the store's LMDB environment.
//
// The log is appended with one sequential fdatasync per Ready, apart from the state machine:
// applying committed entries to LMDB needs no sync of its own, because every applied entry is
// already durable in this member's log and a restart applies again whatever LMDB lost (the store
// refuses entries at or below its applied index, so nothing is applied twice).
//
// WAL records: Entry (index, term, type, data); HardState (term, vote, commit); Compact
// (index, term, membership: the log now starts after index, entries up to it were applied and
// synced to LMDB); Install (the same fields: a snapshot from the leader replaced the state
// machine and the whole log). The entries since the last compaction are also kept in memory.
//
// LMDB meta records, written in the apply transaction: "raft_conf_state" → the membership as of
// the applied index; "members" → the member registry (names and addresses). The raft_ records
// are this member's own and never leave it in a snapshot; the registry travels in snapshots.
//
// Threading: the core thread only (the Raft core calls snapshot() there too; the export it
// makes reads one committed LMDB state).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kv/store.h"
#include "kv/wal.h"
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
    // Replays the write-ahead log in `walDir` and loads the membership from the store.
    RaftLogStorage(Store& store, const std::string& walDir,
                   size_t walSegmentBytes = size_t{16} << 20);

    raft::HardState hardState() const override { return hardState_; }
    raft::ConfState confState() const override { return conf_; }
    std::vector<raft::Entry> entries(raft::Index lo, raft::Index hi,
                                     uint64_t maxBytes) const override;
    std::optional<raft::Term> term(raft::Index i) const override;
    raft::Index firstIndex() const override { return snapMeta_.index + 1; }
    raft::Index lastIndex() const override { return snapMeta_.index + log_.size(); }
    // The newest snapshot: its metadata and the store's current state as data.
    raft::Snapshot snapshot() const override;
    // True until something was written: a new member's log (see bootstrap()).
    bool empty() const { return empty_; }

    // Appends a Ready's entries (replacing a conflicting suffix) and hard state to the log and,
    // with `sync`, waits until they are on disk. Throws WalError on an I/O failure.
    void append(const std::vector<raft::Entry>& entries,
                const std::optional<raft::HardState>& hardState, bool sync);
    // The same, with the writing left to the caller (raft::Config::asyncPersist): the entries
    // and hard state are in memory at once (Raft reads them from here), and the returned batch
    // must be written (Wal::write, then Wal::sync) on any one thread, in order, before anything
    // relies on it being on disk. Every batch must be written before the next call that writes
    // on its own: append(), installSnapshot(), compact(), restartLog(), and an appendAsync()
    // while rotationDue().
    Wal::Batch appendAsync(const std::vector<raft::Entry>& entries,
                           const std::optional<raft::HardState>& hardState);
    bool rotationDue() const { return wal_->rotationDue(); }

    // Membership applied with committed entries, written inside the apply transaction.
    struct Applied {
        std::optional<raft::ConfState> confState;
        std::optional<Members> members = std::nullopt;
    };
    const Members& members() const { return members_; }
    void persist(const lmdb::Txn& txn, const Applied& applied);
    // Records that the state machine is a snapshot at (index, term) and drops the whole log (the
    // Store's state must already be that snapshot; its member registry is reloaded).
    void installSnapshot(const raft::SnapshotMeta& meta);
    // A new member of a new cluster: the log starts behind a snapshot with the initial
    // configuration, with this hard state and member registry (the registry first, so a crash
    // in between leaves an empty log and the bootstrap runs again).
    void bootstrap(const raft::SnapshotMeta& meta, const raft::HardState& hard,
                   const Members& members);
    // Drops log entries up to `index` (which must be applied) after recording a snapshot there.
    // Syncs the store first: the entries dropped must never be needed to rebuild it.
    void compact(raft::Index index, const raft::ConfState& conf);
    // What a compaction leaves to clean up: the dropped entries' memory and the log segments
    // no longer needed (the record that lets a replay start without them is durable). Freeing
    // ten thousand entries and unlinking a 16 MiB segment take milliseconds; a caller with a
    // thread to spare disposes of them there. Disposed of on destruction if not before.
    class Leftovers {
      public:
        Leftovers() = default;
        Leftovers(std::deque<raft::Entry> entries, std::vector<std::string> segments)
            : entries_(std::move(entries)), segments_(std::move(segments)) {}
        Leftovers(Leftovers&& other) noexcept {
            entries_.swap(other.entries_);
            segments_.swap(other.segments_);
        }
        Leftovers& operator=(Leftovers&& other) {
            dispose();
            entries_.swap(other.entries_);
            segments_.swap(other.segments_);
            return *this;
        }
        // Best effort: a segment that cannot be deleted stays behind (a replay reads past it).
        ~Leftovers();
        // Frees the entries and deletes the segments. Throws WalError when a segment cannot be
        // deleted.
        void dispose();
        size_t entries() const { return entries_.size(); }
        const std::vector<std::string>& segments() const { return segments_; }

      private:
        std::deque<raft::Entry> entries_;
        std::vector<std::string> segments_;
    };
    // compact(), with the cleaning up left to the caller.
    [[nodiscard]] Leftovers compactDeferred(raft::Index index, const raft::ConfState& conf);

    size_t walSegments() const { return wal_->segmentCount(); }
    // Bytes of entry data held in memory (the entries since the last compaction).
    uint64_t bytes() const { return bytes_; }
    // Where to compact so that at most `keepEntries` entries and about `keepBytes` bytes of
    // data stay behind `applied` (at least one entry is dropped when any can be).
    raft::Index compactionPoint(raft::Index applied, uint64_t keepEntries,
                                uint64_t keepBytes) const;

  private:
    uint64_t replay(uint8_t type, std::string_view payload);
    void writeSnapRecord(uint8_t type, const raft::SnapshotMeta& meta);
    // The whole log replaced by a snapshot at `meta` (an Install record, made durable).
    void restartLog(const raft::SnapshotMeta& meta);
    const raft::Entry& at(raft::Index i) const { return log_[i - snapMeta_.index - 1]; }

    Store& store_;
    lmdb::Table meta_;
    std::unique_ptr<Wal> wal_;
    raft::HardState hardState_;
    raft::ConfState conf_;
    Members members_;
    raft::SnapshotMeta snapMeta_;
    std::deque<raft::Entry> log_;  // entries snapMeta_.index + 1 ... lastIndex()
    uint64_t bytes_ = 0;           // data bytes of log_
    bool empty_ = true;
};

}  // namespace coord::kv
