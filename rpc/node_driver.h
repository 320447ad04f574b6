// NodeDriver: one coord member's engine — the Raft core, its LMDB log, the MVCC store and the
// Ready loop that ties them together — running on a Boost.Asio io_context (the core thread).
//
// Each loop turn takes one Ready, appends its entries and hard state to the write-ahead log (one
// fdatasync) and sends the messages; the entries committed by a loop pass are applied to the
// store together, which completes the client requests they answer and serves read states. The
// store's LMDB transaction is committed later (NodeConfig::storeCommitMs), without a sync of
// its own: the entries are in the log. Ticks come from a steady_timer.
//
// Threading: write(), read() and deliver() may be called from any thread; they post to the
// io_context. Callbacks run on the core thread and must not block. The store may be read from
// any thread (kv::Store's contract), but only the core thread sees applied batches that are
// not committed yet: read() says where a consistent read must run.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/background_thread.h"
#include "common/clock.h"
#include "kv/lessor.h"
#include "kv/raft_storage.h"
#include "kv/store.h"
#include "raft/raft.h"
#include "rpc/asio.h"

namespace coord::rpc {

// Sends Raft messages to peers. Called on the core thread; must not block.
class Transport {
  public:
    virtual ~Transport() = default;
    virtual void send(const raft::Message& message) = 0;
};

// A member's id, derived from its name identically on every member (FNV-1a, never 0).
raft::NodeId memberIdFromName(const std::string& name);

struct NodeConfig {
    raft::NodeId id = 1;
    // The voters of a new cluster; ignored when the data file already holds a membership.
    std::vector<raft::NodeId> initialVoters{1};
    // Names and peer addresses of the initial voters, recorded as the member registry of a new
    // cluster (may be empty: members are then listed by id only).
    std::vector<kv::MemberInfo> initialMembers;
    // Joining an existing cluster: start with no membership and wait for the leader, which
    // sends a snapshot (with the membership and the registry) once this member was added.
    bool join = false;
    // This member's client address, published to the registry once a leader is known.
    std::string clientUrl;
    std::string dataFile;
    // The Raft log's directory (write-ahead log segments); empty: dataFile + "-wal".
    std::string walDir;
    size_t walSegmentBytes = size_t{16} << 20;  // the Raft log's segment size
    int tickMs = 100;
    int electionTicks = 10;
    int heartbeatTicks = 1;
    // Compact the Raft log once this many entries were applied since the last compaction,
    // keeping `snapshotCatchUpEntries` behind for slow followers.
    uint64_t snapshotCount = 10000;
    uint64_t snapshotCatchUpEntries = 1000;
    // The log's entries since the last compaction are held in memory: compact early when their
    // data passes this, keeping at most a quarter of it behind for slow followers.
    uint64_t maxLogMemoryBytes = uint64_t{64} << 20;
    // Revision records examined per tick by physical compaction (after a compact request).
    size_t compactionBatch = 10000;
    // A request not completed within this time fails with Unavailable (outcome unknown).
    int requestTimeoutMs = 5000;
    // Applied entries are committed to the store (one LMDB commit, one data flush) at most this
    // long after the first of them, or once `storeCommitRequests` wait, and before the Raft
    // log forgets them. Clients are answered at apply time: the entries are in the log on a
    // quorum, and a restart applies again what an uncommitted store lost. 0 commits every loop
    // pass.
    int storeCommitMs = 20;
    size_t storeCommitRequests = 5000;
    // Write the Raft log on a thread of its own (raft::Config::asyncPersist): the core thread
    // goes on stepping, sending and applying while the log's fdatasync runs, and the writer
    // syncs everything queued meanwhile at once. False: the core thread writes and syncs each
    // loop turn itself.
    bool logWriter = true;
    // Once a burst of writes is over (nothing applied for this long), hand the allocator's free
    // pages back to the operating system (jemalloc's arena purge where coordd is linked with it,
    // glibc's malloc_trim otherwise). 0: never.
    int releaseMemoryIdleMs = 2000;
    kv::Options store;
    uint64_t seed = 0;  // 0: derived from the clock
};

// Why a request did not produce a store outcome.
enum class Unavailable {
    NoLeader,   // no leader known: retry later or elsewhere
    Timeout,    // not completed in time: it may or may not have been applied
    Stopped,    // the member is shutting down
    NotLeader,  // only the leader answers this (lease keep-alive): ask leader() instead
    Corrupt,    // this member's CORRUPT alarm is raised: it serves no keys (ask another)
};
const char* unavailableName(Unavailable u);
// What a watch on a member whose CORRUPT alarm is raised ends with (kv::ErrorCode::Corrupt).
kv::Error corruptError();

using WriteOutcome = Result<kv::KvResult<kv::Response>, Unavailable>;

// One member as listed by the Cluster service.
struct MemberView {
    kv::MemberInfo info;
    bool learner = false;
};
enum class MemberOp { AddVoter, AddLearner, Promote, Remove };
// The membership after a change, or why it was refused.
using MembershipOutcome = Result<kv::KvResult<std::vector<MemberView>>, Unavailable>;

class NodeDriver {
  public:
    NodeDriver(boost::asio::io_context& io, const NodeConfig& config, Transport& transport);
    ~NodeDriver();
    NodeDriver(const NodeDriver&) = delete;
    NodeDriver& operator=(const NodeDriver&) = delete;

    // Starts ticking (posts to the io_context).
    void start();
    // Stops ticking and fails every pending request with Stopped. Call before the io_context
    // stops; waits for nothing.
    void stop();

    // A message from a peer (any thread).
    void deliver(raft::Message message);
    // The transport saw a peer's connection close (any thread): see Raft::peerUnreachable.
    void peerLost(raft::NodeId peer);
    // Proposes a write; `done` gets the store's outcome once this member applied it.
    void write(kv::Request request, std::function<void(WriteOutcome)> done);
    // Waits until a read of the store would see what it must, then says where to read.
    // Linearizable: ReadIndex confirms leadership and this member applies up to the read index,
    // so the read sees every write acknowledged before the call. Serializable: what this member
    // applied so far. The store commits applied batches a little later (see
    // NodeConfig::storeCommitMs); until then only its writer, the core thread, sees them. So
    // `done` gets ReadAt::Core when the read must run inside the callback itself (on the core
    // thread, without blocking), and ReadAt::Anywhere when the committed state already holds
    // everything the read must see: read it on any thread, now or later.
    enum class ReadAt { Core, Anywhere };
    using ReadDone = std::function<void(Result<ReadAt, Unavailable>)>;
    void read(bool linearizable, ReadDone done);
    // Commits what the store applied so far, so that any thread reads it (a backup), then
    // calls `done` on the core thread.
    void commitStore(std::function<void(Result<Ok, Unavailable>)> done);

    // Renews a lease on the leader, which alone tracks lease deadlines. `done` gets the TTL in
    // seconds, LeaseNotFound (unknown or already expired) or NotLeader.
    void leaseKeepAlive(int64_t id,
                        std::function<void(Result<kv::KvResult<int64_t>, Unavailable>)> done);

    // Lets watchers that are behind catch up from storage (posts to the core thread).
    void syncWatchers();

    // Membership. Changes are made by the leader only (others answer NotLeader) and complete
    // once applied. Add takes the member's name and peer address (its id is derived from the
    // name); Promote, Remove take the id. Promote refuses a learner that has not caught up.
    void changeMembership(MemberOp op, kv::MemberInfo member,
                          std::function<void(MembershipOutcome)> done);
    // Hands leadership to voter `target`; completes when it leads (leader only).
    void transferLeadership(raft::NodeId target,
                            std::function<void(Result<kv::KvResult<Ok>, Unavailable>)> done);
    // The members as this member knows them (any thread).
    std::vector<MemberView> members() const;
    // Called on the core thread after the registry changed (addresses for the transport), and
    // once when this member learns it was removed from the cluster. Set before start().
    void onMembersChanged(std::function<void(const kv::Members&)> f) { membersChanged_ = f; }
    void onRemoved(std::function<void()> f) { removed_ = std::move(f); }

    kv::Store& store() { return *store_; }
    // Runs `job` on the member's maintenance thread, after the jobs posted before it: long reads
    // of the store (a snapshot export, a digest of the history) that would stall the RPC
    // thread's other clients. Any thread; jobs run to their end even when the member stops.
    void runMaintenance(std::function<void()> job) { maintenance_.post(std::move(job)); }
    raft::NodeId id() const { return config_.id; }
    // Snapshots of the core's state (any thread; refreshed every loop turn).
    raft::NodeId leader() const { return leader_.load(); }
    uint64_t term() const { return term_.load(); }
    // Whether this member's CORRUPT alarm is raised, as it applied (any thread).
    bool corrupt() const { return corrupt_.load(); }
    // How often free memory was handed back (NodeConfig::releaseMemoryIdleMs).
    uint64_t memoryReleases() const { return memoryReleases_.load(); }
    // The allocator this process runs on ("jemalloc 5.3.0-…" or the C library's), for the log.
    static std::string allocatorName();

  private:
    struct PendingWrite {
        std::function<void(WriteOutcome)> done;
        int64_t deadlineMs;
        raft::NodeId leader;  // the leader when proposed
    };
    struct PendingRead {
        std::vector<ReadDone> done;
        int64_t deadlineMs;
        raft::Index index = 0;  // set once the read state arrives
    };
    struct PendingChange {
        std::function<void(MembershipOutcome)> done;
        int64_t deadlineMs;
    };
    struct PendingTransfer {
        raft::NodeId target;
        std::function<void(Result<kv::KvResult<Ok>, Unavailable>)> done;
        int64_t deadlineMs;
    };

    // The log writer (NodeConfig::logWriter).
    struct LogJob {
        kv::Wal::Batch batch;
        bool sync = false;
        raft::Index index = 0;  // the last entry in the batch (0: none)
        raft::Term term = 0;
        std::vector<raft::Message> held;  // sent once the batch is on disk
    };
    void queueLog(LogJob job);
    void writerLoop();
    // On the core thread: sends what waited for completed writes and tells Raft (then steps
    // the Ready that follows).
    void completeLogJobs();
    // The same without the Ready; false when no write had completed. Rethrows a write error.
    bool finishLogJobs();
    // Waits until every queued write is on disk and completed (before the log is written or
    // synced on this thread: rotation, snapshots, compaction).
    void drainWriter();

    void scheduleTick();
    void scheduleReady();
    void flushReads();
    void flushWrites();
    void processReady();
    void applyPending();
    void applyEntries(const std::vector<raft::Entry>& committed);
    void serveReads();
    ReadAt readAt(raft::Index index) const;
    void commitStoreIfDue();
    void scheduleStoreCommit(int64_t inMs);
    void expire();
    void maybeCompact();
    void becameLeader();
    void leaderChanged(raft::NodeId now);
    void expireLeases();
    int64_t nowMs() const;
    void bootstrap();
    // Applies a committed membership change to Raft and the registry (inside the apply txn).
    void applyConfChange(const raft::ConfChange& cc, std::optional<raft::ConfState>& conf,
                         std::optional<kv::Members>& members, std::vector<uint64_t>& done);
    void refreshMembersView();
    // corrupt_ from the members whose CORRUPT alarm is raised; logs a change.
    void refreshCorrupt(const std::vector<uint64_t>& corruptMembers);
    void publishSelf();
    void checkQuota();
    void releaseMemoryWhenIdle();
    static void releaseFreePages();
    void settleTransfer();
    std::optional<kv::Error> checkChange(MemberOp op, kv::MemberInfo& member) const;

    boost::asio::io_context& io_;
    NodeConfig config_;
    Transport& transport_;
    std::unique_ptr<kv::Store> store_;
    std::unique_ptr<kv::RaftLogStorage> log_;
    std::unique_ptr<raft::Raft> raft_;
    boost::asio::steady_timer timer_;
    // Commits the store's open batch once it is due (NodeConfig::storeCommitMs), so that a
    // member left idle does not keep it open until the next write, whose path it would then
    // lengthen by a store commit and its flush.
    boost::asio::steady_timer storeCommitTimer_;
    bool storeCommitArmed_ = false;
    bool stopped_ = false;

    uint64_t nextRequest_ = 1;
    std::map<uint64_t, PendingWrite> writes_;
    std::map<std::string, PendingRead> reads_;
    std::vector<ReadDone> readBatch_;  // not yet asked
    struct QueuedWrite {
        uint64_t id;
        std::string payload;  // the Raft entry
        std::function<void(WriteOutcome)> done;
    };
    std::vector<QueuedWrite> writeBatch_;  // not yet proposed
    bool readyScheduled_ = false;
    // Committed entries handed out by Raft, not yet applied to the store.
    std::vector<raft::Entry> toApply_;
    raft::Index applied_ = 0;  // the store's applied index
    // releaseMemoryWhenIdle: the applied index last seen, since when, and whether it moved
    // since the last release.
    raft::Index idleApplied_ = 0;
    int64_t idleSinceMs_ = 0;
    bool releaseDue_ = false;
    std::atomic<uint64_t> memoryReleases_{0};
    int64_t deferredSinceMs_ = 0;  // when the store's oldest uncommitted batch was applied
    // Lease deadlines, kept by the leader only. Expired leases are revoked through Raft.
    SteadyClock clock_;
    std::unique_ptr<kv::Lessor> lessor_;
    std::map<int64_t, int64_t> revoking_;  // lease id → when its revoke was last proposed (ms)
    std::atomic<raft::NodeId> leader_{0};
    std::atomic<bool> corrupt_{false};
    std::atomic<uint64_t> term_{0};

    std::map<uint64_t, PendingChange> changes_;
    std::optional<PendingTransfer> transfer_;
    std::function<void(const kv::Members&)> membersChanged_;
    std::function<void()> removed_;
    bool removedReported_ = false;
    int64_t lastPublishMs_ = 0;
    int64_t lastQuotaCheckMs_ = 0;
    mutable std::mutex viewMutex_;
    std::vector<MemberView> view_;  // under viewMutex_

    size_t logJobsPending_ = 0;  // core thread: queued and not yet completed
    std::mutex writerMutex_;
    std::condition_variable writerWake_;  // work for the writer, or the writer went idle
    std::deque<LogJob> writerQueue_;      // under writerMutex_
    std::deque<LogJob> writerDone_;       // under writerMutex_: written, not yet completed
    bool writerBusy_ = false;             // under writerMutex_
    bool writerStop_ = false;             // under writerMutex_
    std::exception_ptr writerError_;      // under writerMutex_
    std::thread writer_;

    // A compaction's clean-up (the dropped entries' memory, old log segments) runs on a thread
    // of its own: milliseconds that neither the core thread nor the log writer waits for.
    void dispose(kv::RaftLogStorage::Leftovers leftovers);
    BackgroundThread janitor_{"coord-janitor"};
    // Declared after store_: its jobs read the store, and it finishes them before it goes.
    BackgroundThread maintenance_{"coord-maint"};
};

}  // namespace coord::rpc
