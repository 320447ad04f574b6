// Helpers shared by the store's translation units. Not part of the public interface.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"

#include "kv/codec.h"
#include "kv/lmdb.h"
#include "kv/types.h"

namespace coord::kv::detail {

inline constexpr std::string_view kMetaFormat = "format";
inline constexpr std::string_view kFormatVersion = "coord-kv-2";
// Version 1 also kept the key index and each key's current value in tables of their own
// (key_index, live); opening such a file drops them (the index is rebuilt in memory).
inline constexpr std::string_view kFormatVersion1 = "coord-kv-1";
inline constexpr std::string_view kMetaCurrentRev = "current_revision";
inline constexpr std::string_view kMetaCompactedRev = "compacted_revision";
inline constexpr std::string_view kMetaCompactCursor = "compact_cursor";
inline constexpr std::string_view kMetaAppliedIndex = "applied_index";
inline constexpr std::string_view kMetaNoSpaceAlarms = "alarm_nospace";  // le64 member ids
inline constexpr std::string_view kMetaCorruptAlarms = "alarm_corrupt";  // le64 member ids

// Leases may live at most this long (etcd's MaxLeaseTTL).
inline constexpr int64_t kMaxLeaseTtlSeconds = 9'000'000'000;
// Nested txns deeper than this are refused (each level costs stack while applying).
inline constexpr int kMaxTxnDepth = 32;

inline bool isFromKey(const std::string& rangeEnd) {
    return rangeEnd.size() == 1 && rangeEnd[0] == '\0';
}

// True when `k` lies in the range described by (key, rangeEnd) with etcd's conventions.
inline bool inRange(std::string_view k, const std::string& key, const std::string& rangeEnd) {
    if (rangeEnd.empty()) return k == key;
    if (isFromKey(rangeEnd)) return k >= std::string_view(key);
    return k >= std::string_view(key) && k < std::string_view(rangeEnd);
}

inline Error makeError(ErrorCode code, std::string message, int64_t revision = 0) {
    return Error{code, std::move(message), revision};
}

inline Error compactedError(int64_t rev, int64_t compacted) {
    return makeError(ErrorCode::Compacted,
                     "revision " + std::to_string(rev) +
                         " has been compacted; the compacted revision is " +
                         std::to_string(compacted),
                     compacted);
}

inline Error futureRevisionError(int64_t rev, int64_t current) {
    return makeError(ErrorCode::FutureRevision,
                     "revision " + std::to_string(rev) + " is newer than the current revision " +
                         std::to_string(current),
                     current);
}

// Checks a key (or range start) against the API limits.
inline std::optional<Error> checkKey(const std::string& key) {
    if (key.empty()) return makeError(ErrorCode::EmptyKey, "key is not provided");
    if (key.size() > kMaxKeyBytes) {
        return makeError(ErrorCode::KeyTooLarge, "key is " + std::to_string(key.size()) +
                                                     " bytes, the limit is " +
                                                     std::to_string(kMaxKeyBytes));
    }
    return std::nullopt;
}

// The members whose alarm of one kind is raised (meta record kMetaNoSpaceAlarms or
// kMetaCorruptAlarms).
inline std::vector<uint64_t> alarmList(const lmdb::Txn& txn, const lmdb::Table& meta,
                                       std::string_view record) {
    std::vector<uint64_t> out;
    if (auto v = meta.get(txn, record)) {
        for (size_t i = 0; i + 8 <= v->size(); i += 8)
            out.push_back(loadLe64(v->data() + i));
    }
    return out;
}

inline std::vector<uint64_t> noSpaceAlarms(const lmdb::Txn& txn, const lmdb::Table& meta) {
    return alarmList(txn, meta, kMetaNoSpaceAlarms);
}

}  // namespace coord::kv::detail
