#include "raft/log.h"

#include <algorithm>
#include <iterator>

#include "common/assert.h"

namespace coord::raft {

RaftLog::RaftLog(const Storage& storage, uint64_t maxBytesPerBatch)
    : storage_(storage), maxBytes_(maxBytesPerBatch), offset_(storage.lastIndex() + 1) {
    committed_ = storage.firstIndex() - 1;
    applied_ = storage.firstIndex() - 1;
}

Index RaftLog::firstIndex() const {
    if (unstableSnap_) return unstableSnap_->meta.index + 1;
    return storage_.firstIndex();
}

Index RaftLog::lastIndex() const {
    if (!unstable_.empty()) return offset_ + unstable_.size() - 1;
    if (unstableSnap_) return unstableSnap_->meta.index;
    return offset_ - 1;
}

std::optional<Term> RaftLog::term(Index i) const {
    if (unstableSnap_ && i == unstableSnap_->meta.index) return unstableSnap_->meta.term;
    if (i >= offset_) {
        if (i - offset_ < unstable_.size()) return unstable_[i - offset_].term;
        return std::nullopt;
    }
    if (unstableSnap_) return std::nullopt;  // below a pending snapshot: gone
    return storage_.term(i);
}

std::optional<Index> RaftLog::maybeAppend(Index index, Term logTerm, Index commit,
                                          const std::vector<Entry>& entries,
                                          bool truncateConflicts) {
    if (!matchTerm(index, logTerm)) return std::nullopt;
    Index lastNew = index + entries.size();
    // Skip the entries we already have; the first one that differs starts the new suffix.
    size_t from = entries.size();
    for (size_t k = 0; k < entries.size(); ++k) {
        auto t = term(entries[k].index);
        if (!t) {
            if (entries[k].index <= committed_) continue;  // compacted: committed and equal
            from = k;
            break;
        }
        if (*t != entries[k].term) {
            if (!truncateConflicts) continue;  // planted bug: keep the conflicting entry
            COORD_ASSERT(entries[k].index > committed_, "conflict with a committed entry",
                         entries[k].index, committed_);
            from = k;
            break;
        }
    }
    if (from < entries.size()) {
        append(std::vector<Entry>(entries.begin() + static_cast<long>(from), entries.end()));
    }
    commitTo(std::min(commit, lastNew));
    return lastNew;
}

Index RaftLog::append(std::vector<Entry> entries) {
    if (entries.empty()) return lastIndex();
    Index first = entries.front().index;
    // Entries from `first` on are new, even where earlier ones were handed out for persisting.
    handed_ = std::min(handed_, first - 1);
    COORD_ASSERT(first > committed_, "append would overwrite committed entries", first, committed_);
    if (first <= offset_) {
        // Replaces stable entries too: the application overwrites them when it persists.
        offset_ = first;
        unstable_ = std::move(entries);
        return lastIndex();
    }
    unstable_.resize(first - offset_);  // drops a conflicting suffix; no-op when appending
    unstable_.insert(unstable_.end(), std::make_move_iterator(entries.begin()),
                     std::make_move_iterator(entries.end()));
    return lastIndex();
}

Index RaftLog::findConflictByTerm(Index index, Term t) const {
    Index i = std::min(index, lastIndex());
    for (; i > 0; --i) {
        auto ti = term(i);
        if (!ti || *ti <= t) return i;
    }
    return 0;
}

std::vector<Entry> RaftLog::slice(Index lo, Index hi, uint64_t maxBytes) const {
    std::vector<Entry> out;
    if (lo >= hi) return out;
    if (lo < offset_) {
        out = storage_.entries(lo, std::min(hi, offset_), maxBytes);
        if (out.size() < std::min(hi, offset_) - lo) return out;  // size limit reached
    }
    uint64_t bytes = 0;
    for (const auto& e : out)
        bytes += e.data.size() + 24;
    for (Index i = std::max(lo, offset_); i < hi; ++i) {
        const Entry& e = unstable_[i - offset_];
        bytes += e.data.size() + 24;
        if (!out.empty() && bytes > maxBytes) break;
        out.push_back(e);
    }
    return out;
}

std::optional<std::vector<Entry>> RaftLog::entriesFrom(Index i) const {
    if (i < firstIndex()) return std::nullopt;
    return slice(i, lastIndex() + 1, maxBytes_);
}

void RaftLog::commitTo(Index i) {
    if (i <= committed_) return;
    COORD_ASSERT(i <= lastIndex(), "commit beyond the log", i, lastIndex());
    committed_ = i;
}

void RaftLog::appliedTo(Index i) {
    if (i == 0) return;
    COORD_ASSERT(i <= committed_ && i >= applied_, "bad applied index", i, committed_, applied_);
    applied_ = i;
}

bool RaftLog::maybeCommit(Index i, Term t, bool anyTerm) {
    if (i > committed_ && (anyTerm || term(i) == t)) {
        commitTo(i);
        return true;
    }
    return false;
}

std::vector<Entry> RaftLog::nextCommittedEntries() const {
    Index lo = std::max(applied_ + 1, firstIndex());
    Index hi = applyLimit();
    if (lo > hi) return {};
    return slice(lo, hi + 1, maxBytes_);
}

bool RaftLog::hasNextCommittedEntries() const {
    return std::max(applied_ + 1, firstIndex()) <= applyLimit();
}

std::vector<Entry> RaftLog::unhandedEntries() const {
    Index from = std::max(handed_ + 1, offset_);
    if (from - offset_ >= unstable_.size()) return {};
    return std::vector<Entry>(unstable_.begin() + static_cast<long>(from - offset_),
                              unstable_.end());
}

void RaftLog::stableTo(Index i, Term t) {
    if (i < offset_ || i - offset_ >= unstable_.size()) return;
    if (unstable_[i - offset_].term != t) return;  // replaced since: not stable yet
    unstable_.erase(unstable_.begin(), unstable_.begin() + static_cast<long>(i - offset_ + 1));
    offset_ = i + 1;
}

void RaftLog::stableSnapTo(Index i) {
    if (unstableSnap_ && unstableSnap_->meta.index == i) unstableSnap_.reset();
}

void RaftLog::restore(const Snapshot& snap) {
    committed_ = snap.meta.index;
    handed_ = std::min(handed_, snap.meta.index);
    unstable_.clear();
    offset_ = snap.meta.index + 1;
    unstableSnap_ = snap;
}

Snapshot RaftLog::snapshot() const {
    if (unstableSnap_) return *unstableSnap_;
    return storage_.snapshot();
}

}  // namespace coord::raft
