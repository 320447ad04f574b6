// RaftLog: the log as the core sees it — stable entries in Storage followed by unstable
// entries (and possibly a snapshot) not yet persisted — plus the commit and apply cursors.
#pragma once

#include <algorithm>
#include <optional>
#include <vector>

#include "raft/storage.h"
#include "raft/types.h"

namespace coord::raft {

class RaftLog {
  public:
    explicit RaftLog(const Storage& storage, uint64_t maxBytesPerBatch);

    Index firstIndex() const;
    Index lastIndex() const;
    Term lastTerm() const { return *term(lastIndex()); }
    // Term of entry i, or nullopt when i is compacted away or beyond the log.
    std::optional<Term> term(Index i) const;
    bool matchTerm(Index i, Term t) const { return term(i) == t; }
    // A candidate's log (lastTerm, lastIndex) is at least as up to date as this one (§5.4.1).
    bool isUpToDate(Index lastIdx, Term lastTrm) const {
        return lastTrm > lastTerm() || (lastTrm == lastTerm() && lastIdx >= lastIndex());
    }

    // Follower side of AppendEntries: when the entry at `index` has term `logTerm`, appends
    // `entries` (truncating a conflicting suffix), advances commit to min(commit, last new
    // index) and returns the last new index; nullopt when the terms do not match.
    std::optional<Index> maybeAppend(Index index, Term logTerm, Index commit,
                                     const std::vector<Entry>& entries, bool truncateConflicts);
    // Leader side: appends entries at the end. Returns the new last index.
    Index append(std::vector<Entry> entries);
    // The largest index <= `index` whose term is <= `t` (fast back-off).
    Index findConflictByTerm(Index index, Term t) const;

    std::vector<Entry> slice(Index lo, Index hi, uint64_t maxBytes) const;
    // Entries from i on, up to the batch size limit; nullopt when i is compacted away.
    std::optional<std::vector<Entry>> entriesFrom(Index i) const;

    Index committed() const { return committed_; }
    Index applied() const { return applied_; }
    void commitTo(Index i);
    void appliedTo(Index i);
    bool maybeCommit(Index i, Term t, bool anyTerm);

    // Unstable part (to persist) and committed-but-unapplied part (to apply).
    const std::vector<Entry>& unstableEntries() const { return unstable_; }
    // Asynchronous persistence: the unstable entries not yet handed to the application, and
    // marking them handed (they stay unstable, readable from here, until stableTo).
    std::vector<Entry> unhandedEntries() const;
    bool hasUnhandedEntries() const { return lastIndex() > handed_ && !unstable_.empty(); }
    void handedTo(Index i) { handed_ = std::max(handed_, i); }
    // The last persisted index: entries after it are unstable.
    Index stableIndex() const { return offset_ - 1; }
    // Committed entries are handed out for applying only up to stableIndex() (asynchronous
    // persistence: the state machine never runs ahead of the local log).
    void limitApplyToStable(bool on) { applyOnlyStable_ = on; }
    const std::optional<Snapshot>& unstableSnapshot() const { return unstableSnap_; }
    std::vector<Entry> nextCommittedEntries() const;
    bool hasNextCommittedEntries() const;
    void stableTo(Index i, Term t);
    void stableSnapTo(Index i);
    // Replaces the whole log with a snapshot (committed up to its index).
    void restore(const Snapshot& snap);
    Snapshot snapshot() const;

  private:
    const Storage& storage_;
    uint64_t maxBytes_;
    Index offset_;                 // index of unstable_[0] (or of the next unstable entry)
    std::vector<Entry> unstable_;  // entries after the stable part, not yet persisted
    std::optional<Snapshot> unstableSnap_;
    Index committed_ = 0;
    Index applied_ = 0;
    Index handed_ = 0;  // unstable entries up to here were handed to the application
    bool applyOnlyStable_ = false;

    Index applyLimit() const {
        return applyOnlyStable_ ? std::min(committed_, stableIndex()) : committed_;
    }
};

}  // namespace coord::raft
