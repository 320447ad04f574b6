# coord's wire schema. Part 1: the write requests carried in Raft log entries and their
# responses (shared with the client RPC). All keys and values are Data (arbitrary bytes).
@0xf9ce463492fb1f3a;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("coord::rpc::schema");

struct KeyValue {
  key @0 :Data;
  value @1 :Data;
  createRevision @2 :Int64;
  modRevision @3 :Int64;
  version @4 :Int64;
  lease @5 :Int64;
}

enum SortOrder { none @0; ascend @1; descend @2; }
enum SortTarget { key @0; version @1; create @2; mod @3; value @4; }

struct RangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  limit @2 :Int64;
  revision @3 :Int64;
  sortOrder @4 :SortOrder;
  sortTarget @5 :SortTarget;
  keysOnly @6 :Bool;
  countOnly @7 :Bool;
  minModRevision @8 :Int64;
  maxModRevision @9 :Int64;
  minCreateRevision @10 :Int64;
  maxCreateRevision @11 :Int64;
}

struct RangeResponse {
  kvs @0 :List(KeyValue);
  more @1 :Bool;
  count @2 :Int64;
  revision @3 :Int64;
  # The member's response size bound cut the result before any limit did (more is set too).
  truncated @4 :Bool;
}

struct PutRequest {
  key @0 :Data;
  value @1 :Data;
  lease @2 :Int64;
  prevKv @3 :Bool;
  ignoreValue @4 :Bool;
  ignoreLease @5 :Bool;
}

struct PutResponse {
  prevKv @0 :KeyValue;
  hasPrevKv @1 :Bool;
  revision @2 :Int64;
}

struct DeleteRangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  prevKv @2 :Bool;
}

struct DeleteRangeResponse {
  deleted @0 :Int64;
  prevKvs @1 :List(KeyValue);
  revision @2 :Int64;
}

enum CompareOp { equal @0; notEqual @1; greater @2; less @3; }
enum CompareTarget { version @0; create @1; mod @2; value @3; lease @4; }

struct Compare {
  op @0 :CompareOp;
  target @1 :CompareTarget;
  key @2 :Data;
  rangeEnd @3 :Data;
  number @4 :Int64;
  value @5 :Data;
}

struct RequestOp {
  union {
    range @0 :RangeRequest;
    put @1 :PutRequest;
    deleteRange @2 :DeleteRangeRequest;
    txn @3 :TxnRequest;
  }
}

struct ResponseOp {
  union {
    range @0 :RangeResponse;
    put @1 :PutResponse;
    deleteRange @2 :DeleteRangeResponse;
    txn @3 :TxnResponse;
  }
}

struct TxnRequest {
  compare @0 :List(Compare);
  success @1 :List(RequestOp);
  failure @2 :List(RequestOp);
}

struct TxnResponse {
  succeeded @0 :Bool;
  responses @1 :List(ResponseOp);
  revision @2 :Int64;
}

struct LeaseGrantRequest { id @0 :Int64; ttlSeconds @1 :Int64; }
struct LeaseGrantResponse { id @0 :Int64; ttlSeconds @1 :Int64; revision @2 :Int64; }
struct LeaseRevokeRequest { id @0 :Int64; }
struct LeaseRevokeResponse { revision @0 :Int64; }
struct CompactRequest { revision @0 :Int64; }
struct CompactResponse { revision @0 :Int64; }
# Raises (activate) or clears a member's alarm of one kind; deactivate with member 0 clears
# every member's of that kind. noSpace: writes that add data are refused everywhere; corrupt:
# the member's history differs from the others' and it serves no keys (kv::AlarmRequest).
enum AlarmKind { noSpace @0; corrupt @1; }
struct AlarmRequest { activate @0 :Bool; member @1 :UInt64; kind @2 :AlarmKind; }
struct AlarmResponse { noSpace @0 :List(UInt64); revision @1 :Int64; corrupt @2 :List(UInt64); }

# One Raft log entry's payload: a write request, tagged with the id the proposing member uses
# to complete the waiting client call once the entry is applied.
struct WriteRequest {
  id @0 :UInt64;
  union {
    put @1 :PutRequest;
    deleteRange @2 :DeleteRangeRequest;
    txn @3 :TxnRequest;
    leaseGrant @4 :LeaseGrantRequest;
    leaseRevoke @5 :LeaseRevokeRequest;
    compact @6 :CompactRequest;
    alarm @7 :AlarmRequest;
  }
}

enum ErrorCode {
  invalidArgument @0; emptyKey @1; keyTooLarge @2; valueTooLarge @3; tooManyOps @4;
  duplicateKey @5; keyNotFound @6; compacted @7; futureRevision @8; leaseNotFound @9;
  leaseExists @10; noSpace @11; alreadyApplied @12; memberExists @13; memberNotFound @14;
  learnerNotReady @15; memberBusy @16; tooManyWatches @17; requestTooLarge @18; corrupt @19;
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;
  revision @2 :Int64;
}

struct WriteResponse {
  union {
    error @0 :Error;
    put @1 :PutResponse;
    deleteRange @2 :DeleteRangeResponse;
    txn @3 :TxnResponse;
    leaseGrant @4 :LeaseGrantResponse;
    leaseRevoke @5 :LeaseRevokeResponse;
    compact @6 :CompactResponse;
    alarm @7 :AlarmResponse;
  }
}

# Part 2: Raft messages between members, one PeerFrame per Cap'n Proto message on a TCP stream.

struct RaftEntry {
  term @0 :UInt64;
  index @1 :UInt64;
  type @2 :UInt8;     # raft::EntryType
  data @3 :Data;
}

struct RaftConfState {
  voters @0 :List(UInt64);
  learners @1 :List(UInt64);
}

struct RaftSnapshot {
  index @0 :UInt64;
  term @1 :UInt64;
  conf @2 :RaftConfState;
  data @3 :Data;      # one chunk of the snapshot's data
}

struct RaftMessage {
  type @0 :UInt8;     # raft::MessageType
  from @1 :UInt64;
  to @2 :UInt64;
  term @3 :UInt64;
  logTerm @4 :UInt64;
  index @5 :UInt64;
  entries @6 :List(RaftEntry);
  commit @7 :UInt64;
  reject @8 :Bool;
  rejectHint @9 :UInt64;
  hintTerm @10 :UInt64;
  snapshot @11 :RaftSnapshot;
  hasSnapshot @12 :Bool;
  snapOffset @13 :UInt64;
  snapId @14 :UInt64;
  snapLast @15 :Bool;
  context @16 :Data;
}

struct PeerFrame {
  clusterId @0 :UInt64;   # frames from another cluster are refused
  message @1 :RaftMessage;
}

# Part 3: the client API.

struct ResponseHeader {
  clusterId @0 :UInt64;
  memberId @1 :UInt64;
  revision @2 :Int64;
  raftTerm @3 :UInt64;
}

# Why a request got no answer from the store: no leader known, no completion in time (the
# outcome is unknown), or the member is stopping. Clients retry, possibly at another member.
# corrupt: this member's CORRUPT alarm is raised; it serves no keys (ask another member).
enum Unavailable { none @0; noLeader @1; timeout @2; stopped @3; notLeader @4; corrupt @5; }

struct RangeResult {
  header @0 :ResponseHeader;
  unavailable @1 :Unavailable;
  union {
    ok @2 :RangeResponse;
    error @3 :Error;
  }
}

struct WriteResult {
  header @0 :ResponseHeader;
  unavailable @1 :Unavailable;
  response @2 :WriteResponse;   # meaningful when unavailable is none
}

interface KV {
  # Reads are linearizable (ReadIndex through the leader) unless serializable is set, in which
  # case this member answers from its own state at once.
  range @0 (request :RangeRequest, serializable :Bool) -> (result :RangeResult);
  # Put, delete, txn, compact and lease grant/revoke, applied through Raft. The request's id
  # field is ignored (the server assigns its own).
  write @1 (request :WriteRequest) -> (result :WriteResult);
}

struct LeaseKeepAliveResult {
  header @0 :ResponseHeader;
  unavailable @1 :Unavailable;
  union {
    ttlSeconds @2 :Int64;
    error @3 :Error;
  }
}

struct LeaseInfo {
  id @0 :Int64;
  ttlSeconds @1 :Int64;
  keys @2 :List(Data);
}

interface Lease {
  # Grant and revoke are writes (KV.write with leaseGrant / leaseRevoke).
  # Renews a lease; answered by the leader only (others say notLeader).
  keepAlive @0 (id :Int64) -> (result :LeaseKeepAliveResult);
  # The lease's granted TTL and attached keys (a linearizable read; a member without a leader
  # fails the call); found is false when the lease does not exist.
  timeToLive @1 (id :Int64) -> (header :ResponseHeader, found :Bool, info :LeaseInfo);
  list @2 () -> (header :ResponseHeader, leases :List(LeaseInfo));
}

enum EventType { put @0; delete @1; }

struct Event {
  type @0 :EventType;
  kv @1 :KeyValue;        # for deletes: the key and the delete's revision (modRevision)
  prevKv @2 :KeyValue;    # set when hasPrevKv
  hasPrevKv @3 :Bool;
}

struct WatchRequest {
  key @0 :Data;
  rangeEnd @1 :Data;      # same conventions as RangeRequest
  startRevision @2 :Int64;  # <= 0: from the next revision this member applies
  noPut @3 :Bool;
  noDelete @4 :Bool;
  prevKv @5 :Bool;
}

# Implemented by the client. The member calls it with the watcher's events in revision order,
# never twice and without gaps. `-> stream` gives flow control: a slow client makes the member
# buffer (up to a bound) and then catch up from storage, never drop events.
interface WatchSink {
  # The events of one or more whole revisions, oldest first; revision is the newest covered.
  # A revision too large for one call comes in parts: every part but its last has partial set
  # (and carries only events of that revision).
  events @0 (events :List(Event), revision :Int64, partial :Bool) -> stream;
  # Every event up to and including revision was delivered (an idle watcher's resume point).
  progress @1 (revision :Int64) -> stream;
  # The watch ended (for example: its next revision was compacted, or the member is stopping).
  # No call follows; resume elsewhere from the last delivered revision + 1.
  canceled @2 (error :Error, unavailable :Unavailable) -> ();
}

# A watch stays alive while the client holds its handle: dropping it (or the connection)
# cancels the watch.
interface WatchHandle {
  # Asks for a progress call (with the newest revision) once the watcher is caught up.
  requestProgress @0 () -> ();
}

interface Watch {
  watch @0 (request :WatchRequest, sink :WatchSink) -> (header :ResponseHeader, result :WatchResult);
}

struct WatchResult {
  union {
    handle @0 :WatchHandle;
    error @1 :Error;        # compacted start revision, bad key, ...
  }
  watchId @2 :Int64;
}

struct MemberStatus {
  header @0 :ResponseHeader;
  leader @1 :UInt64;        # 0 when no leader is known
  appliedIndex @2 :UInt64;
  compactedRevision @3 :Int64;
  dbSizeBytes @4 :UInt64;
  version @5 :Text;
  watchers @6 :UInt64;
}

# A snapshot being read: the member's whole store at one revision, in coord's checksummed
# snapshot format (kv::Store::exportSnapshot), pulled in chunks.
interface SnapshotReader {
  # The next chunk (at most 1 MiB); empty once everything was read.
  read @0 () -> (data :Data);
}

interface Maintenance {
  # This member's view, served locally (no Raft round trip).
  status @0 () -> (status :MemberStatus);
  # A consistent snapshot of this member's store (a backup); revision: the store's revision when
  # the snapshot began (it holds that revision or a later one).
  snapshot @1 () -> (reader :SnapshotReader, revision :Int64, bytes :UInt64);
  # The members whose NOSPACE alarm is raised (replicated state, served locally). Clearing them
  # is a write: WriteRequest.alarm with activate = false.
  alarms @2 () -> (header :ResponseHeader, noSpace :List(UInt64), corrupt :List(UInt64));
  # A digest of this member's key-value history up to `revision` (0: its head), after it
  # committed what it applied: members that applied the same writes and compactions give the
  # same hash at the same revision (kv::Store::hashKV); a different one means a replica
  # diverged or its file was damaged. Reads every retained revision on the member's
  # maintenance thread, as snapshot exports do.
  hashKV @3 (revision :Int64) -> (header :ResponseHeader, result :HashKVResult);
}

struct HashKVResult {
  union {
    ok @0 :HashKV;
    error @1 :Error;   # compacted, futureRevision
  }
}

struct HashKV {
  hash @0 :UInt32;             # CRC-32
  revision @1 :Int64;          # the newest revision covered
  compactRevision @2 :Int64;   # the compacted revision it starts from
}

struct Member {
  id @0 :UInt64;
  name @1 :Text;
  peerUrl @2 :Text;
  clientUrl @3 :Text;   # empty until the member published it
  isLearner @4 :Bool;
}

struct ClusterResult {
  header @0 :ResponseHeader;
  unavailable @1 :Unavailable;   # notLeader: changes are made by the leader only
  union {
    members @2 :List(Member);    # the membership once the change applied
    error @3 :Error;
  }
}

interface Cluster {
  # The members. Linearizable (the default of coord::Client): after a ReadIndex round, so the
  # list holds every change committed before the call, and a member that cannot confirm it
  # (no leader, removed from the cluster without learning it) answers `unavailable` within
  # the request timeout. Otherwise the member's own applied view, at once.
  memberList @0 (linearizable :Bool)
      -> (header :ResponseHeader, members :List(Member), unavailable :Unavailable);
  # Adds a member by name and peer address (its id is derived from the name), as a learner or
  # a voter; the new member then starts with --initial-cluster-state existing.
  memberAdd @1 (name :Text, peerUrl :Text, learner :Bool) -> (result :ClusterResult);
  memberRemove @2 (id :UInt64) -> (result :ClusterResult);
  # Refused (learnerNotReady) until the learner holds 90% of the leader's log.
  memberPromote @3 (id :UInt64) -> (result :ClusterResult);
  # Hands leadership to a voter; completes once it leads.
  moveLeader @4 (target :UInt64) -> (result :ClusterResult);
}

# The bootstrap capability of a member.
interface Coord {
  kv @0 () -> (kv :KV);
  lease @1 () -> (lease :Lease);
  watch @2 () -> (watch :Watch);
  maintenance @3 () -> (maintenance :Maintenance);
  cluster @4 () -> (cluster :Cluster);
}
