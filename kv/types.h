// Value types of the key-value store: keys, requests, responses, events and errors.
//
// They mirror etcd's v3 API so that users and tools find what they know: a KeyValue carries
// create/mod revisions, a version and a lease; a range is [key, rangeEnd) with etcd's special
// rangeEnd values; a txn is compare → success / failure. These are plain values: no LMDB,
// Cap'n Proto or threading inside.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/result.h"

namespace coord::kv {

enum class ErrorCode {
    InvalidArgument,  // malformed request (bad range, negative limit, ...)
    EmptyKey,         // "key is not provided"
    KeyTooLarge,      // key longer than Limits::maxKeyBytes
    ValueTooLarge,    // value longer than Options::maxValueBytes
    TooManyOps,       // a txn branch or compare list longer than Options::maxTxnOps
    DuplicateKey,     // a txn puts the same key twice on one path
    KeyNotFound,      // put with ignoreValue / ignoreLease on a missing key
    Compacted,        // the revision asked for was compacted away (see Error::compactRevision)
    FutureRevision,   // the revision asked for is newer than the store's current revision
    LeaseNotFound,    // the lease does not exist (never granted, revoked or expired)
    LeaseExists,      // grant with an id that is already in use
    NoSpace,          // quota or map exhausted: writes refused, reads and deletes still work
    AlreadyApplied,   // a log index at or below the applied index was handed to apply()
    // Membership (Cluster service):
    MemberExists,     // a member with this name, id or peer address is already in the cluster
    MemberNotFound,   // no member with this id
    LearnerNotReady,  // promote: the learner has not caught up with the leader's log yet
    MemberBusy,       // another membership change or leadership transfer is in progress
    // Watch service:
    TooManyWatches,   // the connection already has the most watches a member serves on one
    RequestTooLarge,  // a write's keys and values together exceed kMaxRequestBytes
    Corrupt,          // this member's CORRUPT alarm is raised: it serves no keys (ask another)
};
inline constexpr uint16_t kErrorCodeCount = 20;

const char* errorCodeName(ErrorCode code);

struct Error {
    ErrorCode code;
    std::string message;
    // For Compacted: the store's compacted revision; for FutureRevision: its current revision.
    int64_t revision = 0;
};

template <typename T>
using KvResult = Result<T, Error>;

// The largest key coord accepts. LMDB keys are limited to 511 bytes; user keys are stored as
// LMDB keys (and as duplicate values in the lease index), so the API limit stays safely below.
inline constexpr size_t kMaxKeyBytes = 480;

// The most bytes of keys and values one write request (a txn with all its branches) may carry.
// Members refuse a larger one before it reaches the Raft log, whose entries must stay well
// inside one RPC message and one peer frame (64 MiB each).
inline constexpr size_t kMaxRequestBytes = size_t{32} << 20;

struct KeyValue {
    std::string key;
    std::string value;
    int64_t createRevision = 0;  // revision of the put that created this generation of the key
    int64_t modRevision = 0;     // revision of the last put (or of the delete, in delete events)
    int64_t version = 0;         // puts since creation; 0 for a deleted key
    int64_t lease = 0;           // attached lease id, 0 for none

    bool operator==(const KeyValue&) const = default;
};

// Range end helpers (etcd's conventions):
//  - rangeEnd empty: the single key `key`;
//  - rangeEnd "\0": every key >= key (from-key); with key "\0" too: every key;
//  - otherwise: [key, rangeEnd).
std::string prefixEnd(const std::string& prefix);  // rangeEnd for "every key with this prefix"
inline const std::string kFromKey(1, '\0');

enum class SortOrder { None, Ascend, Descend };
enum class SortTarget { Key, Version, Create, Mod, Value };

struct RangeRequest {
    std::string key;
    std::string rangeEnd;
    int64_t limit = 0;     // 0: no limit
    int64_t revision = 0;  // 0 (or <= 0): the current revision
    SortOrder sortOrder = SortOrder::None;
    SortTarget sortTarget = SortTarget::Key;
    bool keysOnly = false;
    bool countOnly = false;
    int64_t minModRevision = 0;  // 0: no filter
    int64_t maxModRevision = 0;
    int64_t minCreateRevision = 0;
    int64_t maxCreateRevision = 0;
};

struct RangeResponse {
    std::vector<KeyValue> kvs;
    // True when the limit cut the result: more keys match than were returned.
    bool more = false;
    // Keys in the range at the revision read, before filters and limit.
    int64_t count = 0;
    int64_t revision = 0;  // the store's current revision when the read was served
    // True when the member's response size bound (Options::maxResponseBytes) cut the result
    // before the limit did (`more` is then true as well). In key order the rest is read by
    // asking again from the key after the last one returned, at the same revision.
    bool truncated = false;
};

struct PutRequest {
    std::string key;
    std::string value;
    int64_t lease = 0;
    bool prevKv = false;       // return the previous key-value
    bool ignoreValue = false;  // keep the current value (the key must exist)
    bool ignoreLease = false;  // keep the current lease (the key must exist)
};

struct PutResponse {
    std::optional<KeyValue> prevKv;
    int64_t revision = 0;
};

struct DeleteRangeRequest {
    std::string key;
    std::string rangeEnd;
    bool prevKv = false;  // return the deleted key-values
};

struct DeleteRangeResponse {
    int64_t deleted = 0;
    std::vector<KeyValue> prevKvs;
    int64_t revision = 0;
};

struct Compare {
    enum class Op { Equal, NotEqual, Greater, Less };
    enum class Target { Version, Create, Mod, Value, Lease };
    Op op = Op::Equal;
    Target target = Target::Version;
    std::string key;
    std::string rangeEnd;  // non-empty: every key in the range must satisfy the compare
    int64_t number = 0;    // for Version, Create, Mod, Lease
    std::string value;     // for Value
};

struct RequestOp;
struct ResponseOp;

struct TxnRequest {
    std::vector<Compare> compare;
    std::vector<RequestOp> success;
    std::vector<RequestOp> failure;
};

struct TxnResponse {
    bool succeeded = false;
    std::vector<ResponseOp> responses;
    int64_t revision = 0;
};

struct RequestOp {
    std::variant<RangeRequest, PutRequest, DeleteRangeRequest, TxnRequest> op;
};

struct ResponseOp {
    std::variant<RangeResponse, PutResponse, DeleteRangeResponse, TxnResponse> op;
};

struct LeaseGrantRequest {
    int64_t id = 0;  // 0: the store picks the next free id (deterministically)
    int64_t ttlSeconds = 0;
};

struct LeaseGrantResponse {
    int64_t id = 0;
    int64_t ttlSeconds = 0;
    int64_t revision = 0;
};

struct LeaseRevokeRequest {
    int64_t id = 0;
};

struct LeaseRevokeResponse {
    int64_t revision = 0;
};

struct CompactRequest {
    int64_t revision = 0;
};

struct CompactResponse {
    int64_t revision = 0;
};

// A digest of a member's key-value history (Store::hashKV): equal on members that applied the
// same writes and compactions, so a difference means a replica diverged or its file was damaged.
struct HashKVResponse {
    uint32_t hash = 0;            // CRC-32 (see Store::hashKV for what it covers)
    int64_t revision = 0;         // the newest revision covered
    int64_t compactRevision = 0;  // the compacted revision it starts from
};

// Raises or clears a member's alarm. The alarms are replicated state.
//   NoSpace: while any is raised, every member refuses the same writes (those that add data),
//            so members whose files differ in size never diverge.
//   Corrupt: the member's history differs from the other members' (a damaged file, a diverged
//            replica; rpc::CorruptionCheck raises it). The store only records it: the member
//            named stops serving keys to clients (rpc/), the others go on.
struct AlarmRequest {
    enum class Action { Activate, Deactivate };
    enum class Kind { NoSpace, Corrupt };
    Action action = Action::Activate;
    uint64_t memberId = 0;  // Deactivate with 0: every member's alarm of this kind
    Kind kind = Kind::NoSpace;
};

struct AlarmResponse {
    std::vector<uint64_t> noSpace;  // members whose NOSPACE alarm is raised afterwards
    int64_t revision = 0;
    std::vector<uint64_t> corrupt;  // members whose CORRUPT alarm is raised afterwards
};

// A write request, as carried by one Raft log entry.
using Request = std::variant<PutRequest, DeleteRangeRequest, TxnRequest, LeaseGrantRequest,
                             LeaseRevokeRequest, CompactRequest, AlarmRequest>;

// The bytes of keys, range ends and values a write request carries (compares and every branch
// of a txn included), for kMaxRequestBytes.
size_t requestBytes(const Request& request);
// RequestTooLarge when `request` carries more than kMaxRequestBytes.
std::optional<Error> checkRequestSize(const Request& request);
using Response = std::variant<PutResponse, DeleteRangeResponse, TxnResponse, LeaseGrantResponse,
                              LeaseRevokeResponse, CompactResponse, AlarmResponse>;

struct IndexedRequest {
    uint64_t index = 0;  // the Raft log index (or any strictly increasing sequence number)
    Request request;
};

struct LeaseInfo {
    int64_t id = 0;
    int64_t ttlSeconds = 0;  // the TTL granted
    std::vector<std::string> keys;
};

struct Event {
    enum class Type { Put, Delete };
    Type type = Type::Put;
    // For deletes: key and modRevision (the delete's revision) only.
    KeyValue kv;
    std::optional<KeyValue> prevKv;

    bool operator==(const Event&) const = default;
};

// What a watcher follows (see WatchHub).
struct WatchRequest {
    std::string key;
    std::string rangeEnd;       // same conventions as RangeRequest
    int64_t startRevision = 0;  // <= 0: from the next revision written
    bool noPut = false;         // filter out put events
    bool noDelete = false;      // filter out delete events
    bool prevKv = false;        // attach the previous key-value to every event
};

}  // namespace coord::kv
