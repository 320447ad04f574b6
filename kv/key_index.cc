#include "kv/key_index.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>

#include "kv/internal.h"

namespace coord::kv::detail {

KeyIndex::KeyIndex() = default;
KeyIndex::~KeyIndex() = default;

KeyIndex::Record* KeyIndex::find(std::string_view key) const {
    auto it = byKey_.find(key);
    return it == byKey_.end() ? nullptr : *it;
}

void KeyIndex::OlderList::push_back(const Older& o) {
    const uint32_t n = static_cast<uint32_t>(size());
    if (!block_ || n == block_->capacity) {
        const uint32_t capacity = n == 0 ? 1 : 2 * n;
        auto* grown = static_cast<Header*>(
            ::operator new (sizeof(Header) + size_t{capacity} * sizeof(Older)));
        grown->size = n;
        grown->capacity = capacity;
        if (n > 0) std::memcpy(static_cast<void*>(grown + 1), items(), n * sizeof(Older));
        release();
        block_ = grown;
    }
    new (items() + n) Older(o);
    block_->size = n + 1;
}

void KeyIndex::OlderList::pop_back() {
    if (--block_->size == 0) release();
}

void KeyIndex::OlderList::erase(const Older* at) {
    Older* first = items() + (at - items());
    std::memmove(static_cast<void*>(first), first + 1,
                 static_cast<size_t>(end() - at - 1) * sizeof(Older));
    if (--block_->size == 0) release();
}

void KeyIndex::OlderList::release() {
    ::operator delete(block_);
    block_ = nullptr;
}

KeyIndex::Record* KeyIndex::insert(const std::string& key, IndexEntry entry, IndexEntry* previous) {
    if (Record* r = find(key)) {
        COORD_ASSERT(r->newestRev() < entry.rev, "key index entries out of order", key,
                     entry.rev.main);
        r->older.push_back({r->main, r->sub, r->tombstone});
        if (previous) *previous = r->newest();
        r->setNewest(entry);
        return r;
    }
    auto owned = std::make_unique<Record>();
    owned->key = key;
    owned->setNewest(entry);
    Record* r = owned.get();
    keys_.insert(std::move(owned));
    byKey_.insert(r);
    return r;
}

void KeyIndex::add(const std::string& key, IndexEntry entry) {
    std::unique_lock lock(mu_);
    Undo u;
    u.added = insert(key, entry, &u.previous);
    undo_.push_back(u);
}

void KeyIndex::load(const std::string& key, IndexEntry entry) {
    std::unique_lock lock(mu_);
    insert(key, entry, nullptr);
}

void KeyIndex::erase(Record* r) {
    byKey_.erase(r);
    auto it = keys_.find(std::string_view(r->key));
    COORD_ASSERT(it != keys_.end(), "key index record missing from its ordered set", r->key);
    keys_.erase(it);  // frees r
}

void KeyIndex::setCompacted(int64_t rev) {
    std::unique_lock lock(mu_);
    undo_.push_back(Undo{nullptr, {}, compacted_});
    compacted_ = std::max(compacted_, rev);
}

void KeyIndex::rollback(size_t mark) {
    std::unique_lock lock(mu_);
    while (undo_.size() > mark) {
        const Undo& u = undo_.back();
        if (!u.added) {
            compacted_ = u.previousCompacted;
        } else if (u.added->older.empty()) {
            erase(u.added);
        } else {
            Record& r = *u.added;
            COORD_ASSERT(r.older.back().rev() == u.previous.rev, "key index undo", r.key);
            r.older.pop_back();
            r.setNewest(u.previous);
        }
        undo_.pop_back();
    }
}

void KeyIndex::remove(std::string_view key, Revision rev) {
    std::unique_lock lock(mu_);
    Record* r = find(key);
    if (!r) return;
    if (r->newestRev() == rev) {
        // Only a key's last entry can be its newest when removed (see the declaration): the
        // create revision, version and lease of an older entry are not kept.
        COORD_ASSERT(r->older.empty(), "key index: newest entry removed before older ones", r->key,
                     rev.main);
        erase(r);
        return;
    }
    auto e = std::lower_bound(r->older.begin(), r->older.end(), rev,
                              [](const Older& a, Revision b) { return a.rev() < b; });
    if (e != r->older.end() && e->rev() == rev) r->older.erase(e);
}

void KeyIndex::clear() {
    std::unique_lock lock(mu_);
    byKey_.clear();
    keys_.clear();
    compacted_ = 0;
    undo_.clear();
}

int64_t KeyIndex::compacted() const {
    std::shared_lock lock(mu_);
    return compacted_;
}

namespace {
IndexEntry olderEntry(Revision rev, bool tombstone) {
    IndexEntry e;
    e.rev = rev;
    e.tombstone = tombstone;
    return e;
}
}  // namespace

std::optional<IndexEntry> KeyIndex::atOrBelow(const Record& r, Revision bound) {
    if (!(bound < r.newestRev())) return r.newest();
    // The first older entry above the bound; the one before it (if any) is the answer.
    auto e = std::upper_bound(r.older.begin(), r.older.end(), bound,
                              [](Revision b, const Older& a) { return b < a.rev(); });
    if (e == r.older.begin()) return std::nullopt;
    --e;
    return olderEntry(e->rev(), e->tombstone);
}

std::optional<IndexEntry> KeyIndex::before(const Record& r, Revision bound) {
    if (r.newestRev() < bound) return r.newest();
    auto e = std::lower_bound(r.older.begin(), r.older.end(), bound,
                              [](const Older& a, Revision b) { return a.rev() < b; });
    if (e == r.older.begin()) return std::nullopt;
    --e;
    return olderEntry(e->rev(), e->tombstone);
}

std::optional<IndexEntry> KeyIndex::latestAtOrBelow(std::string_view key, int64_t rev) const {
    std::shared_lock lock(mu_);
    const Record* r = find(key);
    if (!r) return std::nullopt;
    return atOrBelow(*r, Revision{rev, INT32_MAX});
}

std::optional<IndexEntry> KeyIndex::latestBefore(std::string_view key, Revision rev) const {
    std::shared_lock lock(mu_);
    const Record* r = find(key);
    if (!r) return std::nullopt;
    return before(*r, rev);
}

bool KeyIndex::forEachAt(
    const std::string& key, const std::string& rangeEnd, int64_t rev,
    const std::function<bool(const std::string&, const IndexEntry&)>& fn) const {
    std::shared_lock lock(mu_);
    if (rev < compacted_) return false;
    const Revision bound{rev, INT32_MAX};
    if (rangeEnd.empty()) {
        const Record* r = find(key);
        if (!r) return true;
        if (auto e = atOrBelow(*r, bound)) fn(r->key, *e);
        return true;
    }
    for (auto it = keys_.lower_bound(std::string_view(key));
         it != keys_.end() && inRange((*it)->key, key, rangeEnd); ++it) {
        auto e = atOrBelow(**it, bound);
        if (e && !fn((*it)->key, *e)) break;
    }
    return true;
}

size_t KeyIndex::keyCount() const {
    std::shared_lock lock(mu_);
    return keys_.size();
}

}  // namespace coord::kv::detail
