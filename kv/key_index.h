// KeyIndex: the store's MVCC index in memory — for every key, the revisions at which it was
// written or deleted, oldest first. The data file keeps only the revisions themselves (table
// `rev`, appended in revision order); the index is rebuilt from them when the store opens. So a
// write dirties the rev table's last pages and nothing keyed by user key: no random B-tree
// pages to flush (see docs/mvcc.md).
//
// Threading: the store's writer thread changes it; readers on any thread look up under a shared
// lock. The index may be ahead of a reader's LMDB snapshot (batches applied, not committed), so
// every lookup takes the revision it reads at and ignores newer entries. Compaction is visible
// at once: a lookup below the compacted revision fails (the entries it needs may be gone).
//
// Changes made while a batch is applied are logged; rollback() undoes them when the batch's
// transaction is abandoned, so the index always matches what the writer's transaction holds.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kv/codec.h"

namespace coord::kv::detail {

class KeyIndex {
  public:
    // ---- writer thread ----
    // Adds an entry newer than every entry of `key`, undoably (see mark()).
    void add(const std::string& key, IndexEntry entry);
    // The same without an undo record: rebuilding from the revisions (nothing to undo).
    void load(const std::string& key, IndexEntry entry);
    // From now on lookups below `rev` fail; remove() drops what they needed.
    void setCompacted(int64_t rev);
    // Undo log: mark() before a batch, rollback(mark) when its transaction is dropped,
    // forget() once it is kept.
    size_t mark() const { return undo_.size(); }
    void rollback(size_t mark);
    void forget() { undo_.clear(); }
    // Physical compaction (not undoable): drop one entry.
    void remove(std::string_view key, Revision rev);
    void clear();

    // ---- any thread ----
    int64_t compacted() const;
    // The newest entry of `key` at or below revision `rev`; nullopt when none.
    std::optional<IndexEntry> latestAtOrBelow(std::string_view key, int64_t rev) const;
    // The newest entry of `key` strictly before `rev` (the previous value of an event).
    std::optional<IndexEntry> latestBefore(std::string_view key, Revision rev) const;
    // Calls fn(key, entry) in key order for every key in [key, rangeEnd) (etcd's range
    // conventions) with its newest entry at or below `rev`, tombstones included; stops when fn
    // returns false. Returns false, calling nothing, when `rev` is below the compacted revision.
    // fn runs under the shared lock: it must not call back into the index.
    bool forEachAt(const std::string& key, const std::string& rangeEnd, int64_t rev,
                   const std::function<bool(const std::string&, const IndexEntry&)>& fn) const;

    size_t keyCount() const;

  private:
    using Keys = std::map<std::string, std::vector<IndexEntry>, std::less<>>;
    struct Undo {
        // The key whose newest entry to drop (map iterators stay valid: nothing erases a key
        // while its batch can still be rolled back), or none for a setCompacted.
        std::optional<Keys::iterator> added;
        int64_t previousCompacted = 0;
    };
    static std::optional<IndexEntry> atOrBelow(const std::vector<IndexEntry>& entries,
                                               Revision bound);
    Keys::iterator insert(const std::string& key, IndexEntry entry);  // mu_ held

    // The entries of `key`, or null (hash lookup: point reads do not walk the ordered map).
    const std::vector<IndexEntry>* find(std::string_view key) const;
    void erase(Keys::iterator it);

    mutable std::shared_mutex mu_;
    Keys keys_;                                                   // ordered, for ranges
    std::unordered_map<std::string_view, Keys::iterator> byKey_;  // views of keys_'s keys
    int64_t compacted_ = 0;
    std::vector<Undo> undo_;  // writer thread only
};

}  // namespace coord::kv::detail
