// KeyIndex: the store's MVCC index in memory — for every key, the revisions at which it was
// written or deleted, oldest first. The data file keeps only the revisions themselves (table
// `rev`, appended in revision order); the index is rebuilt from them when the store opens. So a
// write dirties the rev table's last pages and nothing keyed by user key: no random B-tree
// pages to flush (see docs/mvcc.md).
//
// Memory: one record per key (the key, its newest entry with that entry's create revision,
// version and lease, and 16 bytes per older entry), held by a B-tree ordered by key for ranges
// and by a flat hash set for point lookups; about 100 bytes per key of up to 15 bytes with one
// revision (an 80-byte record; docs/mvcc.md). Only the newest entry of a key carries the create
// revision, version and lease: a write needs them of the key's current state, and reads at older
// revisions read the record itself.
//
// Threading: the store's writer thread changes it; readers on any thread look up under a shared
// lock. The index may be ahead of a reader's LMDB snapshot (batches applied, not committed), so
// every lookup takes the revision it reads at and ignores newer entries. Compaction is visible
// at once: a lookup below the compacted revision fails (the entries it needs may be gone).
//
// Changes made while a batch is applied are logged; rollback() undoes them when the batch's
// transaction is abandoned, so the index always matches what the writer's transaction holds.
#pragma once

#include <absl/container/btree_set.h>
#include <absl/container/flat_hash_set.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kv/codec.h"

namespace coord::kv::detail {

class KeyIndex {
  public:
    KeyIndex();
    ~KeyIndex();
    KeyIndex(const KeyIndex&) = delete;
    KeyIndex& operator=(const KeyIndex&) = delete;

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
    // Physical compaction (not undoable): drop one entry. A key's entries are removed oldest
    // first (compaction walks revisions upward), so its newest entry goes last.
    void remove(std::string_view key, Revision rev);
    void clear();

    // ---- any thread ----
    int64_t compacted() const;
    // The newest entry of `key` at or below revision `rev`; nullopt when none. The create
    // revision, version and lease are set only when that entry is the key's newest (0 else).
    std::optional<IndexEntry> latestAtOrBelow(std::string_view key, int64_t rev) const;
    // The newest entry of `key` strictly before `rev` (the previous value of an event); the
    // same rule for the create revision, version and lease.
    std::optional<IndexEntry> latestBefore(std::string_view key, Revision rev) const;
    // Calls fn(key, entry) in key order for every key in [key, rangeEnd) (etcd's range
    // conventions) with its newest entry at or below `rev`, tombstones included; stops when fn
    // returns false. Returns false, calling nothing, when `rev` is below the compacted revision.
    // fn runs under the shared lock: it must not call back into the index.
    bool forEachAt(const std::string& key, const std::string& rangeEnd, int64_t rev,
                   const std::function<bool(const std::string&, const IndexEntry&)>& fn) const;

    size_t keyCount() const;

  private:
    // An older entry: its revision and whether it is a delete.
    struct Older {
        int64_t main = 0;
        int32_t sub = 0;
        bool tombstone = false;
        Revision rev() const { return {main, sub}; }
    };
    // A key's older entries, oldest first, in one allocation (none while empty) behind one
    // pointer: a std::vector would take three in every record.
    class OlderList {
      public:
        OlderList() = default;
        OlderList(const OlderList&) = delete;
        OlderList& operator=(const OlderList&) = delete;
        ~OlderList() { release(); }
        size_t size() const { return block_ ? block_->size : 0; }
        bool empty() const { return size() == 0; }
        const Older* begin() const { return block_ ? items() : nullptr; }
        const Older* end() const { return begin() + size(); }
        const Older& back() const { return items()[size() - 1]; }
        void push_back(const Older& o);
        void pop_back();              // frees the allocation when it empties
        void erase(const Older* at);  // likewise
      private:
        struct Header {
            uint32_t size;
            uint32_t capacity;
        };
        static_assert(sizeof(Header) % alignof(Older) == 0);
        Older* items() const { return reinterpret_cast<Older*>(block_ + 1); }
        void release();
        Header* block_ = nullptr;
    };
    // 80 bytes: the newest entry is kept unpadded (IndexEntry has 7 bytes of padding).
    struct Record {
        std::string key;
        int64_t main = 0;
        int32_t sub = 0;
        bool tombstone = false;
        int64_t createRevision = 0;
        int64_t version = 0;
        int64_t lease = 0;
        OlderList older;

        Revision newestRev() const { return {main, sub}; }
        IndexEntry newest() const {
            return {Revision{main, sub}, tombstone, createRevision, version, lease};
        }
        void setNewest(const IndexEntry& e) {
            main = e.rev.main;
            sub = e.rev.sub;
            tombstone = e.tombstone;
            createRevision = e.createRevision;
            version = e.version;
            lease = e.lease;
        }
    };
    // One allocator size class below the 112 bytes a record took with a padded entry and a
    // vector.
    static_assert(sizeof(Record) <= 80);
    struct Undo {
        Record* added = nullptr;  // the key whose newest entry to drop; null: a setCompacted
        IndexEntry previous;      // that key's newest entry before (when it had one)
        int64_t previousCompacted = 0;
    };
    struct ByKey {
        using is_transparent = void;
        static std::string_view view(const std::unique_ptr<Record>& r) { return r->key; }
        static std::string_view view(const Record* r) { return r->key; }
        static std::string_view view(std::string_view s) { return s; }
        template <typename A, typename B>
        bool operator()(const A& a, const B& b) const {
            return view(a) < view(b);
        }
    };
    struct Hash {
        using is_transparent = void;
        size_t operator()(const Record* r) const { return std::hash<std::string_view>{}(r->key); }
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    struct Eq {
        using is_transparent = void;
        template <typename A, typename B>
        bool operator()(const A& a, const B& b) const {
            return ByKey::view(a) == ByKey::view(b);
        }
    };

    static std::optional<IndexEntry> atOrBelow(const Record& r, Revision bound);
    static std::optional<IndexEntry> before(const Record& r, Revision bound);
    Record* insert(const std::string& key, IndexEntry entry, IndexEntry* previous);  // mu_ held
    Record* find(std::string_view key) const;
    void erase(Record* r);

    mutable std::shared_mutex mu_;
    absl::btree_set<std::unique_ptr<Record>, ByKey> keys_;  // owns the records; for ranges
    absl::flat_hash_set<Record*, Hash, Eq> byKey_;          // point lookups
    int64_t compacted_ = 0;
    std::vector<Undo> undo_;  // writer thread only
};

}  // namespace coord::kv::detail
