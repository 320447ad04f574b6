#include "raft/storage.h"

#include <algorithm>

#include "common/assert.h"

namespace coord::raft {

MemoryStorage::MemoryStorage() {
    ents_.push_back(Entry{});
}

std::vector<Entry> MemoryStorage::entries(Index lo, Index hi, uint64_t maxBytes) const {
    COORD_ASSERT(lo >= firstIndex() && lo <= hi && hi <= lastIndex() + 1, "entries out of bounds",
                 lo, hi, firstIndex(), lastIndex());
    std::vector<Entry> out;
    uint64_t bytes = 0;
    for (Index i = lo; i < hi; ++i) {
        const Entry& e = ents_[i - offset()];
        bytes += e.data.size() + 24;
        if (!out.empty() && bytes > maxBytes) break;
        out.push_back(e);
    }
    return out;
}

std::optional<Term> MemoryStorage::term(Index i) const {
    if (i < offset() || i > lastIndex()) return std::nullopt;
    return ents_[i - offset()].term;
}

void MemoryStorage::append(const std::vector<Entry>& entries) {
    if (entries.empty()) return;
    Index first = entries.front().index;
    // Entries already compacted away are committed and identical: skip them.
    size_t skip = first < firstIndex() ? firstIndex() - first : 0;
    if (skip >= entries.size()) return;
    first += skip;
    COORD_ASSERT(first <= lastIndex() + 1, "gap in appended entries", first, lastIndex());
    ents_.resize(first - offset());
    ents_.insert(ents_.end(), entries.begin() + static_cast<long>(skip), entries.end());
}

void MemoryStorage::applySnapshot(const Snapshot& snap) {
    if (snap.meta.index <= snapshot_.meta.index) return;
    snapshot_ = snap;
    conf_ = snap.meta.conf;
    ents_.clear();
    ents_.push_back(Entry{snap.meta.term, snap.meta.index, EntryType::Normal, {}});
}

void MemoryStorage::createSnapshot(Index i, const ConfState& conf, std::string data) {
    if (i <= snapshot_.meta.index) return;
    COORD_ASSERT(i <= lastIndex(), "snapshot beyond the log", i, lastIndex());
    snapshot_.meta = SnapshotMeta{i, *term(i), conf};
    snapshot_.data = std::move(data);
    compact(i);
}

void MemoryStorage::compact(Index i) {
    if (i <= offset()) return;
    COORD_ASSERT(i <= lastIndex(), "compaction beyond the log", i, lastIndex());
    ents_.erase(ents_.begin(), ents_.begin() + static_cast<long>(i - offset()));
    ents_.front().data.clear();
}

}  // namespace coord::raft
