#include "kv/key_index.h"

#include <algorithm>
#include <mutex>

#include "kv/internal.h"

namespace coord::kv::detail {

KeyIndex::Keys::iterator KeyIndex::insert(const std::string& key, IndexEntry entry) {
    auto found = byKey_.find(key);
    Keys::iterator it;
    if (found != byKey_.end()) {
        it = found->second;
    } else {
        it = keys_.emplace(key, std::vector<IndexEntry>{}).first;
        byKey_.emplace(std::string_view(it->first), it);
    }
    COORD_ASSERT(it->second.empty() || it->second.back().rev < entry.rev,
                 "key index entries out of order", key, entry.rev.main);
    it->second.push_back(entry);
    return it;
}

void KeyIndex::add(const std::string& key, IndexEntry entry) {
    std::unique_lock lock(mu_);
    undo_.push_back(Undo{insert(key, entry), 0});
}

void KeyIndex::load(const std::string& key, IndexEntry entry) {
    std::unique_lock lock(mu_);
    insert(key, entry);
}

const std::vector<IndexEntry>* KeyIndex::find(std::string_view key) const {
    auto it = byKey_.find(key);
    return it == byKey_.end() ? nullptr : &it->second->second;
}

void KeyIndex::erase(Keys::iterator it) {
    byKey_.erase(std::string_view(it->first));
    keys_.erase(it);
}

void KeyIndex::setCompacted(int64_t rev) {
    std::unique_lock lock(mu_);
    undo_.push_back(Undo{std::nullopt, compacted_});
    compacted_ = std::max(compacted_, rev);
}

void KeyIndex::rollback(size_t mark) {
    std::unique_lock lock(mu_);
    while (undo_.size() > mark) {
        Undo& u = undo_.back();
        if (!u.added) {
            compacted_ = u.previousCompacted;
        } else {
            auto it = *u.added;
            COORD_ASSERT(!it->second.empty(), "key index undo", it->first);
            it->second.pop_back();
            if (it->second.empty()) erase(it);
        }
        undo_.pop_back();
    }
}

void KeyIndex::remove(std::string_view key, Revision rev) {
    std::unique_lock lock(mu_);
    auto found = byKey_.find(key);
    if (found == byKey_.end()) return;
    auto it = found->second;
    auto& entries = it->second;
    auto e = std::lower_bound(entries.begin(), entries.end(), rev,
                              [](const IndexEntry& a, Revision r) { return a.rev < r; });
    if (e != entries.end() && e->rev == rev) entries.erase(e);
    if (entries.empty()) erase(it);
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

std::optional<IndexEntry> KeyIndex::atOrBelow(const std::vector<IndexEntry>& entries,
                                              Revision bound) {
    // The first entry above the bound; the one before it (if any) is the answer.
    auto e = std::upper_bound(entries.begin(), entries.end(), bound,
                              [](Revision r, const IndexEntry& a) { return r < a.rev; });
    if (e == entries.begin()) return std::nullopt;
    return *(e - 1);
}

std::optional<IndexEntry> KeyIndex::latestAtOrBelow(std::string_view key, int64_t rev) const {
    std::shared_lock lock(mu_);
    const auto* entries = find(key);
    if (!entries) return std::nullopt;
    return atOrBelow(*entries, Revision{rev, INT32_MAX});
}

std::optional<IndexEntry> KeyIndex::latestBefore(std::string_view key, Revision rev) const {
    std::shared_lock lock(mu_);
    const auto* found = find(key);
    if (!found) return std::nullopt;
    const auto& entries = *found;
    auto e = std::lower_bound(entries.begin(), entries.end(), rev,
                              [](const IndexEntry& a, Revision r) { return a.rev < r; });
    if (e == entries.begin()) return std::nullopt;
    return *(e - 1);
}

bool KeyIndex::forEachAt(
    const std::string& key, const std::string& rangeEnd, int64_t rev,
    const std::function<bool(const std::string&, const IndexEntry&)>& fn) const {
    std::shared_lock lock(mu_);
    if (rev < compacted_) return false;
    const Revision bound{rev, INT32_MAX};
    if (rangeEnd.empty()) {
        auto it = byKey_.find(key);
        if (it == byKey_.end()) return true;
        if (auto e = atOrBelow(it->second->second, bound)) fn(it->second->first, *e);
        return true;
    }
    for (auto it = keys_.lower_bound(key); it != keys_.end() && inRange(it->first, key, rangeEnd);
         ++it) {
        auto e = atOrBelow(it->second, bound);
        if (e && !fn(it->first, *e)) break;
    }
    return true;
}

size_t KeyIndex::keyCount() const {
    std::shared_lock lock(mu_);
    return keys_.size();
}

}  // namespace coord::kv::detail
