// On-disk encodings of the store's tables (see docs/mvcc.md for the layout).
//
// Keys that LMDB orders are big-endian so byte order equals numeric order. Record bodies are
// little-endian fixed-width headers followed by the variable parts. Decoders check lengths and
// treat a malformed record as corruption (a fatal assertion): the store wrote every record
// itself, so a bad one means the file is damaged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/assert.h"
#include "common/bytes.h"
#include "kv/types.h"

namespace coord::kv::detail {

// A revision: `main` numbers write requests, `sub` numbers the changes inside one of them.
struct Revision {
    int64_t main = 0;
    int32_t sub = 0;
    auto operator<=>(const Revision&) const = default;
};

inline constexpr size_t kRevKeyBytes = 12;
inline constexpr size_t kIndexEntryBytes = 13;

inline std::string encodeRevKey(Revision r) {
    std::string s(kRevKeyBytes, '\0');
    putBe64(s.data(), static_cast<uint64_t>(r.main));
    putBe32(s.data() + 8, static_cast<uint32_t>(r.sub));
    return s;
}

inline Revision decodeRevKey(std::string_view s) {
    COORD_ASSERT(s.size() == kRevKeyBytes, "corrupt revision key", s.size());
    return {static_cast<int64_t>(getBe64(s.data())), static_cast<int32_t>(getBe32(s.data() + 8))};
}

// key_index duplicates: the revision plus a tombstone flag, so "key K as of R" needs no second
// lookup to know whether K was deleted at R.
struct IndexEntry {
    Revision rev;
    bool tombstone = false;
    // What a write needs of the key's previous state, so that a put reads no old record when
    // neither its caller nor a watcher wants the previous value (0 for a tombstone).
    int64_t createRevision = 0;
    int64_t version = 0;
    int64_t lease = 0;
};

inline std::string encodeIndexEntry(IndexEntry e) {
    std::string s = encodeRevKey(e.rev);
    s.push_back(e.tombstone ? '\1' : '\0');
    return s;
}

inline IndexEntry decodeIndexEntry(std::string_view s) {
    COORD_ASSERT(s.size() == kIndexEntryBytes, "corrupt key index entry", s.size());
    return {decodeRevKey(s.substr(0, kRevKeyBytes)), s[kRevKeyBytes] != 0};
}

inline constexpr size_t kLiveHeaderBytes = 32;

// live: key → create, mod, version, lease, value.
inline std::string encodeLive(const KeyValue& kv) {
    std::string s;
    s.reserve(kLiveHeaderBytes + kv.value.size());
    appendLe64(s, static_cast<uint64_t>(kv.createRevision));
    appendLe64(s, static_cast<uint64_t>(kv.modRevision));
    appendLe64(s, static_cast<uint64_t>(kv.version));
    appendLe64(s, static_cast<uint64_t>(kv.lease));
    s.append(kv.value);
    return s;
}

inline void decodeLive(std::string_view key, std::string_view v, KeyValue& out, bool withValue) {
    COORD_ASSERT(v.size() >= kLiveHeaderBytes, "corrupt live record", v.size());
    out.key.assign(key);
    out.createRevision = static_cast<int64_t>(loadLe64(v.data()));
    out.modRevision = static_cast<int64_t>(loadLe64(v.data() + 8));
    out.version = static_cast<int64_t>(loadLe64(v.data() + 16));
    out.lease = static_cast<int64_t>(loadLe64(v.data() + 24));
    if (withValue) {
        out.value.assign(v.substr(kLiveHeaderBytes));
    } else {
        out.value.clear();
    }
}

// rev: (main, sub) → tombstone flag, create, mod, version, lease, key length, key, value.
inline constexpr size_t kRevHeaderBytes = 1 + 32 + 4;

inline std::string encodeRevRecord(const KeyValue& kv, bool tombstone) {
    std::string s;
    s.reserve(kRevHeaderBytes + kv.key.size() + kv.value.size());
    s.push_back(tombstone ? '\1' : '\0');
    appendLe64(s, static_cast<uint64_t>(kv.createRevision));
    appendLe64(s, static_cast<uint64_t>(kv.modRevision));
    appendLe64(s, static_cast<uint64_t>(kv.version));
    appendLe64(s, static_cast<uint64_t>(kv.lease));
    appendLe32(s, static_cast<uint32_t>(kv.key.size()));
    s.append(kv.key);
    s.append(kv.value);
    return s;
}

struct RevRecordView {
    bool tombstone = false;
    std::string_view key;
};

inline RevRecordView decodeRevRecord(std::string_view v, KeyValue* out, bool withValue = true) {
    COORD_ASSERT(v.size() >= kRevHeaderBytes, "corrupt revision record", v.size());
    uint32_t keyLen = loadLe32(v.data() + 33);
    COORD_ASSERT(v.size() >= kRevHeaderBytes + keyLen, "corrupt revision record", v.size(), keyLen);
    RevRecordView view{v[0] != 0, v.substr(kRevHeaderBytes, keyLen)};
    if (out) {
        out->createRevision = static_cast<int64_t>(loadLe64(v.data() + 1));
        out->modRevision = static_cast<int64_t>(loadLe64(v.data() + 9));
        out->version = static_cast<int64_t>(loadLe64(v.data() + 17));
        out->lease = static_cast<int64_t>(loadLe64(v.data() + 25));
        out->key.assign(view.key);
        if (withValue) {
            out->value.assign(v.substr(kRevHeaderBytes + keyLen));
        } else {
            out->value.clear();
        }
    }
    return view;
}

inline std::string encodeI64(int64_t v) {
    return be64(static_cast<uint64_t>(v));
}

inline int64_t decodeI64(std::string_view s) {
    COORD_ASSERT(s.size() == 8, "corrupt integer", s.size());
    return static_cast<int64_t>(getBe64(s.data()));
}

}  // namespace coord::kv::detail
