// The Raft log storage interface the core reads through, and an in-memory implementation.
//
// The core only reads storage; the application writes it while handling Ready (append the
// entries, set the hard state, apply snapshots) and compacts it after taking snapshots.
#pragma once

#include <optional>
#include <vector>

#include "raft/types.h"

namespace coord::raft {

class Storage {
  public:
    virtual ~Storage() = default;
    virtual HardState hardState() const = 0;
    virtual ConfState confState() const = 0;
    // Entries [lo, hi). Requires firstIndex() <= lo <= hi <= lastIndex() + 1.
    virtual std::vector<Entry> entries(Index lo, Index hi, uint64_t maxBytes) const = 0;
    // Term of entry i, for firstIndex() - 1 <= i <= lastIndex(); nullopt outside.
    virtual std::optional<Term> term(Index i) const = 0;
    virtual Index firstIndex() const = 0;  // the first entry still held (snapshot index + 1)
    virtual Index lastIndex() const = 0;
    virtual Snapshot snapshot() const = 0;
};

class MemoryStorage final : public Storage {
  public:
    MemoryStorage();
    HardState hardState() const override { return hardState_; }
    ConfState confState() const override { return conf_; }
    std::vector<Entry> entries(Index lo, Index hi, uint64_t maxBytes) const override;
    std::optional<Term> term(Index i) const override;
    Index firstIndex() const override { return offset() + 1; }
    Index lastIndex() const override { return offset() + ents_.size() - 1; }
    Snapshot snapshot() const override { return snapshot_; }

    void setHardState(const HardState& hs) { hardState_ = hs; }
    // Appends, replacing any existing entries from the first new index on.
    void append(const std::vector<Entry>& entries);
    // Replaces the whole log with a snapshot (ignored when older than the current one).
    void applySnapshot(const Snapshot& snap);
    // Records a snapshot at applied index i (<= lastIndex) and drops entries up to i.
    void createSnapshot(Index i, const ConfState& conf, std::string data);
    void compact(Index i);
    // The membership as of the applied index (the application records it when it applies a
    // configuration change).
    void setConfState(const ConfState& conf) { conf_ = conf; }

  private:
    Index offset() const { return ents_.front().index; }

    HardState hardState_;
    ConfState conf_;
    Snapshot snapshot_;
    std::vector<Entry> ents_;  // ents_[0] is a dummy at the snapshot index and term
};

}  // namespace coord::raft
