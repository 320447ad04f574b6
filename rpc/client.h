// coord::Client: the C++ client of a coord cluster.
//
// Thread-safe: every method may be called from any thread, concurrently. The client runs its own
// event-loop thread (Cap'n Proto RPC on KJ) that holds one connection to one member at a time and
// moves to the next endpoint when that member stops answering, with capped exponential backoff.
//
// Blocking calls take a deadline (default: now + ClientOptions::requestTimeout) and return
// Expected<T>: the value, or an Error saying whether the store refused the request (Store, with
// the store's ErrorCode), no member could serve it in time (Unavailable: nothing happened, safe
// to retry), or a write's outcome is unknown (Unknown: it was sent, then the connection or the
// deadline was lost; it may have been applied).
//
// Watches and lease keep-alives run on the client's thread and report through callbacks, which
// run on that thread: they must be quick and must not call blocking Client methods (hand the
// work to another thread). Both are owned by the handle they return; destroying the handle
// stops them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "kv/types.h"

namespace coord {

using kv::Compare;
using kv::DeleteRangeRequest;
using kv::DeleteRangeResponse;
using kv::Event;
using kv::KeyValue;
using kv::LeaseInfo;
using kv::PutRequest;
using kv::PutResponse;
using kv::RangeRequest;
using kv::RangeResponse;
using kv::RequestOp;
using kv::ResponseOp;
using kv::TxnRequest;
using kv::TxnResponse;
using kv::WatchRequest;

struct Error {
    enum class Kind {
        Store,        // the store refused the request; `code` says why
        Unavailable,  // no member served the request in time; nothing was applied
        Unknown,      // a write was sent but its outcome is unknown (it may have been applied)
        Canceled,     // the client is closing
    };
    Kind kind = Kind::Unavailable;
    kv::ErrorCode code = kv::ErrorCode::InvalidArgument;  // meaningful for Kind::Store
    std::string message;
    int64_t revision = 0;  // for Compacted: the compacted revision

    bool is(kv::ErrorCode c) const { return kind == Kind::Store && code == c; }
    // "Store(LeaseNotFound): lease 7 not found", "Unavailable: no leader", ...
    std::string describe() const;
};

template <typename T>
using Expected = Result<T, Error>;

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;  // Deadline{} means now + requestTimeout

struct ClientOptions {
    std::vector<std::string> endpoints{"127.0.0.1:2379"};  // host:port of members
    std::chrono::milliseconds requestTimeout{5000};
    std::chrono::milliseconds dialTimeout{1000};
    std::chrono::milliseconds backoffMin{10};
    std::chrono::milliseconds backoffMax{500};
};

// Why `endpoint` is not a member address the client can dial — `host:port` (an `http://` or
// `https://` prefix is ignored, a missing port is 2379), the port a number from 1 to 65535 —
// or an empty string when it is one.
std::string endpointProblem(const std::string& endpoint);

struct MemberStatus {
    std::string endpoint;
    uint64_t clusterId = 0;
    uint64_t memberId = 0;
    uint64_t leader = 0;
    uint64_t raftTerm = 0;
    int64_t revision = 0;
    int64_t compactedRevision = 0;
    uint64_t appliedIndex = 0;
    uint64_t dbSizeBytes = 0;
    uint64_t watchers = 0;
    std::string version;
};

// A member of the cluster, as the Cluster service lists it.
struct Member {
    uint64_t id = 0;
    std::string name;
    std::string peerUrl;
    std::string clientUrl;  // empty until the member published it
    bool learner = false;
};

struct WatchCallbacks {
    // The events of one or more whole revisions, oldest first; `revision` is the newest covered.
    std::function<void(std::span<const Event> events, int64_t revision)> onEvents;
    // Every event up to `revision` was delivered (optional).
    std::function<void(int64_t revision)> onProgress;
    // The watch ended for good (its next revision was compacted, or the key is invalid).
    // Disconnections are not errors: the watch resumes elsewhere from the next revision.
    std::function<void(const Error& error)> onError;
};

// Stops its watch or keep-alive when destroyed. The destructor waits until no callback of it
// can run any more (from a thread other than the client's, that is a round trip to it).
class Handle {
  public:
    virtual ~Handle() = default;
    // Stops it without waiting: returns at once, and so does the destructor afterwards. A
    // callback already queued on the client's thread may still run after this returns, so it
    // must touch only what it owns or shares (captured by value or shared_ptr) and objects that
    // outlive the client.
    virtual void detach() = 0;
};

class Client {
  public:
    explicit Client(ClientOptions options = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Reads: linearizable unless `serializable` (then the connected member answers from its own
    // state, possibly stale). Retried across members until the deadline.
    Expected<RangeResponse> range(const RangeRequest& request, bool serializable = false,
                                  Deadline deadline = {});
    Expected<std::optional<KeyValue>> get(const std::string& key, Deadline deadline = {});

    // Writes, applied through Raft. Retried across members only while certainly not applied.
    Expected<kv::Response> write(const kv::Request& request, Deadline deadline = {});
    Expected<PutResponse> put(const std::string& key, const std::string& value, int64_t lease = 0,
                              Deadline deadline = {});
    Expected<DeleteRangeResponse> del(const DeleteRangeRequest& request, Deadline deadline = {});
    Expected<TxnResponse> txn(const TxnRequest& request, Deadline deadline = {});
    Expected<kv::CompactResponse> compact(int64_t revision, Deadline deadline = {});

    // Asynchronous forms: they return at once, and `done` runs exactly once on the client's
    // event-loop thread with the outcome (Canceled if the client is destroyed first). Retries
    // and failover are those of the blocking forms. A callback must not block or call a
    // blocking form; it may start further asynchronous calls. Many calls may be outstanding on
    // one client: this is how one thread keeps a connection busy.
    template <typename T>
    using Callback = std::function<void(Expected<T>)>;
    void rangeAsync(const RangeRequest& request, bool serializable, Callback<RangeResponse> done,
                    Deadline deadline = {});
    void writeAsync(const kv::Request& request, Callback<kv::Response> done,
                    Deadline deadline = {});
    void putAsync(const std::string& key, const std::string& value, Callback<PutResponse> done,
                  int64_t lease = 0, Deadline deadline = {});
    void txnAsync(const TxnRequest& request, Callback<TxnResponse> done, Deadline deadline = {});

    // Leases. `id` 0 lets the cluster choose.
    Expected<kv::LeaseGrantResponse> leaseGrant(int64_t ttlSeconds, int64_t id = 0,
                                                Deadline deadline = {});
    Expected<kv::LeaseRevokeResponse> leaseRevoke(int64_t id, Deadline deadline = {});
    // One renewal, answered by the leader; returns the TTL in seconds.
    Expected<int64_t> leaseKeepAliveOnce(int64_t id, Deadline deadline = {});
    // The lease's TTL and keys; nullopt when it does not exist.
    Expected<std::optional<LeaseInfo>> leaseTimeToLive(int64_t id, Deadline deadline = {});
    Expected<std::vector<LeaseInfo>> leaseList(Deadline deadline = {});

    // Renews the lease every ttlSeconds/3 (sooner after a failure) until the handle is
    // destroyed. `onLost` fires once, on the client's thread, as soon as the lease is known gone
    // (revoked or expired) or can no longer be renewed in time: unrenewed, a margin (a tenth of
    // the TTL, at most 1 s) before it could expire on the leader, counting the TTL from when the
    // last successful renewal was sent. Renewal then stops.
    std::unique_ptr<Handle> keepAlive(int64_t id, int64_t ttlSeconds,
                                      std::function<void(const Error&)> onLost);

    // Watches a key, range or prefix from request.startRevision (0: from now). Events arrive in
    // revision order, never twice and without gaps, across reconnections to other members.
    // watch() and keepAlive() return at once (also when called from a client callback); the
    // handle's destructor waits until no callback of it can run any more.
    std::unique_ptr<Handle> watch(const WatchRequest& request, WatchCallbacks callbacks);

    // Writes a consistent snapshot of the connected member's store to `out` (a backup in
    // coord's checksummed snapshot format). An interrupted transfer fails with Unknown.
    struct SnapshotInfo {
        int64_t revision = 0;  // the store's revision when the snapshot began
        uint64_t bytes = 0;
    };
    Expected<SnapshotInfo> snapshot(std::ostream& out, Deadline deadline = {});

    // Membership. The list is linearizable: it holds every change committed before the call
    // (a member that cannot confirm that, such as one removed without learning it, answers
    // unavailable and the client asks the next endpoint). `serializable` lists the connected
    // member's own applied view at once. Changes are made by the leader
    // (the client finds it) and return the membership once the change applied; they are writes:
    // an interrupted change fails with Unknown. The new member of memberAdd then starts with
    // `--initial-cluster-state existing`. memberPromote fails with LearnerNotReady until the
    // learner caught up; MemberBusy means another change is still in progress (retry).
    Expected<std::vector<Member>> memberList(bool serializable = false, Deadline deadline = {});
    Expected<std::vector<Member>> memberAdd(const std::string& name, const std::string& peerUrl,
                                            bool learner, Deadline deadline = {});
    Expected<std::vector<Member>> memberRemove(uint64_t id, Deadline deadline = {});
    Expected<std::vector<Member>> memberPromote(uint64_t id, Deadline deadline = {});
    // Hands leadership to voter `target`; returns once it leads.
    Expected<std::vector<Member>> moveLeader(uint64_t target, Deadline deadline = {});

    // The members whose alarms are raised (`noSpace`, `corrupt`).
    // NOSPACE: while any is raised, writes that add data fail with NoSpace on every member. A
    // member raises its own alarm when its store is over quota; alarmDisarm clears them all
    // once space was freed (delete, then compact), and a member still over quota raises its
    // alarm again.
    // CORRUPT: the member's history differs from the other members' (the leader's periodic
    // check, coordd --corrupt-check-interval-ms, raises it). That member answers key reads and
    // writes with Unavailable, so calls go on at the other members; disarming it before the
    // member was restored only lets the next check raise it again.
    Expected<kv::AlarmResponse> alarmList(Deadline deadline = {});
    // Clears every alarm of both kinds.
    Expected<kv::AlarmResponse> alarmDisarm(Deadline deadline = {});
    // Raises one member's alarm.
    Expected<kv::AlarmResponse> alarmRaise(uint64_t member, kv::AlarmRequest::Kind kind,
                                           Deadline deadline = {});

    // The status of one member, asked directly (not failed over).
    Expected<MemberStatus> status(const std::string& endpoint, Deadline deadline = {});
    // A digest of one member's key-value history up to `revision` (0: its head), asked directly:
    // members that applied the same writes agree at the same revision, so comparing them finds
    // a replica that diverged or a damaged file (coordctl endpoint hashkv). Store(Compacted)
    // below the compacted revision, Store(FutureRevision) above what the member applied.
    Expected<kv::HashKVResponse> hashKV(const std::string& endpoint, int64_t revision = 0,
                                        Deadline deadline = {});

    const ClientOptions& options() const;

    struct Impl;  // the event-loop side (client.cc)

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace coord
