#include "rpc/node_driver.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#if defined(__GLIBC__)
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#endif

#include "common/assert.h"
#include "common/bytes.h"
#include "common/log.h"
#include "rpc/codec.h"

namespace coord::rpc {

const char* unavailableName(Unavailable u) {
    switch (u) {
        case Unavailable::NoLeader:
            return "no leader";
        case Unavailable::Timeout:
            return "timed out (the outcome is unknown)";
        case Unavailable::Stopped:
            return "member stopping";
        case Unavailable::NotLeader:
            return "not the leader";
        case Unavailable::Corrupt:
            return "this member's data differs from the other members' (CORRUPT alarm)";
    }
    return "?";
}

kv::Error corruptError() {
    return kv::Error{kv::ErrorCode::Corrupt,
                     "this member's CORRUPT alarm is raised: its data differs from the other "
                     "members'; ask another member",
                     0};
}

raft::NodeId memberIdFromName(const std::string& name) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : name)
        h = (h ^ c) * 1099511628211ull;
    return h == 0 ? 1 : h;
}

NodeDriver::NodeDriver(boost::asio::io_context& io, const NodeConfig& config, Transport& transport)
    : io_(io), config_(config), transport_(transport), timer_(io), storeCommitTimer_(io) {
    store_ = std::make_unique<kv::Store>(config.dataFile, config.store);
    log_ = std::make_unique<kv::RaftLogStorage>(
        *store_, config.walDir.empty() ? config.dataFile + "-wal" : config.walDir,
        config.walSegmentBytes);
    if (!config.join && log_->empty()) bootstrap();
    raft::Config rc;
    rc.id = config.id;
    rc.electionTicks = config.electionTicks;
    rc.heartbeatTicks = config.heartbeatTicks;
    rc.storage = log_.get();
    rc.asyncPersist = config.logWriter;
    // Entries the store already applied are not applied again (the store also refuses them
    // by index, so a restart replays nothing twice).
    rc.applied = std::min<raft::Index>(store_->appliedIndex(), log_->hardState().commit);
    rc.applied = std::max<raft::Index>(rc.applied, log_->firstIndex() - 1);
    rc.seed =
        config.seed
            ? config.seed
            : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    raft_ = std::make_unique<raft::Raft>(rc);
    applied_ = rc.applied;
    refreshMembersView();
    refreshCorrupt(store_->corruptAlarms());
    if (config.logWriter) writer_ = std::thread([this] { writerLoop(); });
}

NodeDriver::~NodeDriver() {
    if (writer_.joinable()) {
        {
            std::lock_guard lock(writerMutex_);
            writerStop_ = true;
        }
        writerWake_.notify_all();
        writer_.join();
    }
}

void NodeDriver::queueLog(LogJob job) {
    ++logJobsPending_;
    {
        std::lock_guard lock(writerMutex_);
        writerQueue_.push_back(std::move(job));
    }
    writerWake_.notify_all();
}

void NodeDriver::writerLoop() {
    pthread_setname_np(pthread_self(), "coord-log");
    std::unique_lock lock(writerMutex_);
    for (;;) {
        writerWake_.wait(lock, [&] { return writerStop_ || !writerQueue_.empty(); });
        // Stopping: what is queued is still written (it may hold a vote or an acknowledgement
        // that went nowhere yet, but the entries are the log's), unless a write failed.
        if (writerQueue_.empty() || writerError_) return;
        std::deque<LogJob> jobs = std::move(writerQueue_);
        writerQueue_.clear();
        writerBusy_ = true;
        lock.unlock();
        // Everything queued meanwhile goes to disk with one fdatasync (the batches follow each
        // other in one segment: rotation waits for the writer).
        std::exception_ptr error;
        try {
            bool sync = false;
            const kv::Wal::Batch* last = nullptr;
            for (const auto& j : jobs) {
                kv::Wal::write(j.batch);
                sync = sync || j.sync;
                if (j.batch.fd >= 0) last = &j.batch;
            }
            if (sync && last) kv::Wal::sync(last->fd, last->path);
        } catch (...) {
            error = std::current_exception();
        }
        lock.lock();
        writerBusy_ = false;
        if (error) writerError_ = error;
        for (auto& j : jobs)
            writerDone_.push_back(std::move(j));
        writerWake_.notify_all();
        boost::asio::post(io_, [this] { completeLogJobs(); });
        if (writerError_) return;
    }
}

void NodeDriver::completeLogJobs() {
    if (finishLogJobs() && !stopped_) processReady();
}

bool NodeDriver::finishLogJobs() {
    std::deque<LogJob> done;
    std::exception_ptr error;
    {
        std::lock_guard lock(writerMutex_);
        done.swap(writerDone_);
        error = writerError_;
    }
    // A failed log write leaves the member unable to go on (as a failed synchronous append
    // does): the error leaves the core thread's loop.
    if (error) std::rethrow_exception(error);
    for (auto& j : done) {
        --logJobsPending_;
        if (stopped_) continue;
        for (const auto& m : j.held)
            transport_.send(m);
        if (j.index != 0) raft_->persisted(j.index, j.term);
    }
    return !done.empty();
}

void NodeDriver::drainWriter() {
    if (!writer_.joinable() || logJobsPending_ == 0) return;
    {
        std::unique_lock lock(writerMutex_);
        writerWake_.wait(lock,
                         [&] { return writerError_ || (writerQueue_.empty() && !writerBusy_); });
    }
    // Completed here, in order, before the caller writes on its own; the completion the
    // writer posted then finds nothing left.
    finishLogJobs();
}

void NodeDriver::bootstrap() {
    // A new member of a new cluster. Its log starts behind a snapshot at index 1 that holds the
    // initial membership: a member added later starts with an empty log, so the leader sends
    // it a snapshot (membership, registry and data) rather than entries it could not interpret
    // without knowing the initial voters. (A store restored from a backup keeps its applied
    // index, and the log starts there.)
    raft::ConfState conf;
    conf.voters = config_.initialVoters;
    std::sort(conf.voters.begin(), conf.voters.end());
    kv::Members members;
    for (const auto& m : config_.initialMembers)
        members[m.id] = m;
    raft::Index index = std::max<raft::Index>(1, store_->appliedIndex());
    log_->bootstrap({index, 1, conf}, raft::HardState{1, raft::kNone, index}, members);
}

int64_t NodeDriver::nowMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void NodeDriver::start() {
    boost::asio::post(io_, [this] {
        // A member that just started has heard from no leader: skip most of the first election
        // timeout (as etcd does) so a cluster elects its leader within ~0.1-1 s of starting
        // instead of 1-2 s. The randomized remainder still separates the candidates.
        const auto& conf = raft_->confState();
        bool voter =
            std::find(conf.voters.begin(), conf.voters.end(), config_.id) != conf.voters.end();
        if (voter) {
            // In a brand-new cluster (no term yet) the member with the lowest id campaigns at
            // once: one early candidate, so no split vote; its vote requests wait in the peer
            // queues until the others listen. The others keep a randomized remainder in case
            // it is not there.
            int skip = config_.electionTicks - 1;
            bool first = raft_->term() <= 1 &&
                         config_.id == *std::min_element(conf.voters.begin(), conf.voters.end());
            // A lone voter has nobody to wait for.
            if (first || conf.voters.size() == 1) skip = 2 * config_.electionTicks;
            for (int i = 0; i < skip; ++i)
                raft_->tick();
            processReady();
        }
        scheduleTick();
    });
}

void NodeDriver::stop() {
    boost::asio::post(io_, [this] {
        stopped_ = true;
        timer_.cancel();
        storeCommitTimer_.cancel();
        store_->commitDeferred(false);  // on this, the writer thread
        for (auto& [id, w] : writes_)
            w.done(fail(Unavailable::Stopped));
        writes_.clear();
        for (auto& [ctx, r] : reads_)
            for (auto& done : r.done)
                done(fail(Unavailable::Stopped));
        reads_.clear();
        for (auto& done : readBatch_)
            done(fail(Unavailable::Stopped));
        readBatch_.clear();
        for (auto& w : writeBatch_)
            w.done(fail(Unavailable::Stopped));
        writeBatch_.clear();
        for (auto& [id, c] : changes_)
            c.done(fail(Unavailable::Stopped));
        changes_.clear();
        if (transfer_) transfer_->done(fail(Unavailable::Stopped));
        transfer_.reset();
    });
}

void NodeDriver::scheduleTick() {
    if (stopped_) return;
    timer_.expires_after(std::chrono::milliseconds(config_.tickMs));
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || stopped_) return;
        raft_->tick();
        processReady();
        commitStoreIfDue();
        expire();
        expireLeases();
        // Physical compaction runs a bounded step per tick on this (the writer) thread, so a
        // large compaction never holds the writer for long.
        if (store_->compactionPending()) store_->compactStep(config_.compactionBatch);
        // Watchers behind (slow clients, starts in the past) also get kicked by their pumps;
        // this is the safety net.
        if (store_->watchHub().pendingCount() > 0) store_->watchHub().syncPending();
        publishSelf();
        checkQuota();
        releaseMemoryWhenIdle();
        scheduleTick();
    });
}

void NodeDriver::releaseMemoryWhenIdle() {
    if (config_.releaseMemoryIdleMs <= 0) return;
    int64_t now = nowMs();
    if (applied_ != idleApplied_) {
        idleApplied_ = applied_;
        idleSinceMs_ = now;
        releaseDue_ = true;
        return;
    }
    if (!releaseDue_ || now - idleSinceMs_ < config_.releaseMemoryIdleMs) return;
    releaseDue_ = false;
    // Freed chunks inside the heap (the key index's and the log's churn, the store's
    // transaction buffers) otherwise stay resident until reused. The pages are returned, not
    // the heap's layout: the next burst faults them in again.
    releaseFreePages();
    memoryReleases_.fetch_add(1);
}

namespace {

// Log entries hold write requests of up to kv::kMaxRequestBytes of keys and values: decoded
// with room for that and the encoding around it (the default limits allow 8 MiB).
const DecodeLimits kEntryLimits{(kv::kMaxRequestBytes / 8) * 4, 64, 512};

// jemalloc's control interface when the process runs on it: coordd is linked with it, and it is
// looked up at run time so that the tests (which are not) and a preloaded jemalloc work alike.
using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
Mallctl jemallocCtl() {
    static const auto ctl = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
    return ctl;
}

}  // namespace

std::string NodeDriver::allocatorName() {
    if (auto mallctl = jemallocCtl()) {
        const char* version = nullptr;
        size_t size = sizeof version;
        if (mallctl("version", &version, &size, nullptr, 0) == 0 && version)
            return std::string("jemalloc ") + version;
        return "jemalloc";
    }
    return "the C library's malloc";
}

void NodeDriver::releaseFreePages() {
    // On jemalloc, purge every arena's unused dirty pages; otherwise ask glibc.
    if (auto mallctl = jemallocCtl()) {
        // "arena.<MALLCTL_ARENAS_ALL>.purge"; MALLCTL_ARENAS_ALL is 4096 in jemalloc 5.
        (void)mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
        return;
    }
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

void NodeDriver::syncWatchers() {
    boost::asio::post(io_, [this] {
        if (!stopped_) store_->watchHub().syncPending();
    });
}

void NodeDriver::scheduleReady() {
    // Requests and messages posted before this flush runs are all stepped into Raft first, so
    // one Ready (one LMDB transaction, one fsync) carries the whole batch.
    if (readyScheduled_) return;
    readyScheduled_ = true;
    boost::asio::post(io_, [this] {
        readyScheduled_ = false;
        if (stopped_) return;
        flushWrites();
        flushReads();
        processReady();
    });
}

void NodeDriver::deliver(raft::Message message) {
    boost::asio::post(io_, [this, m = std::move(message)] {
        if (stopped_) return;
        raft_->step(m);
        scheduleReady();
    });
}

void NodeDriver::peerLost(raft::NodeId peer) {
    boost::asio::post(io_, [this, peer] {
        if (stopped_) return;
        raft_->peerUnreachable(peer);
        processReady();
    });
}

void NodeDriver::write(kv::Request request, std::function<void(WriteOutcome)> done) {
    boost::asio::post(io_, [this, r = std::move(request), done = std::move(done)]() mutable {
        if (stopped_) return done(fail(Unavailable::Stopped));
        // Ids are unique per member: the member that proposed completes the call when it
        // applies the entry (every member applies every entry).
        uint64_t id = (config_.id << 40) | nextRequest_++;
        writeBatch_.push_back(QueuedWrite{id, encodeWrite(id, r), std::move(done)});
        scheduleReady();
    });
}

void NodeDriver::flushWrites() {
    // The writes that arrived since the last flush are proposed together: one Propose forwarded
    // by a follower, one Append per follower from a leader, instead of one of each per write.
    // Batches stay far below the peer frame limit.
    constexpr size_t kProposalBytes = size_t{4} << 20;
    size_t begin = 0;
    while (begin < writeBatch_.size()) {
        size_t end = begin;
        size_t bytes = 0;
        std::vector<std::string> payloads;
        while (end < writeBatch_.size() &&
               (end == begin || bytes + writeBatch_[end].payload.size() <= kProposalBytes)) {
            bytes += writeBatch_[end].payload.size();
            payloads.push_back(std::move(writeBatch_[end].payload));
            ++end;
        }
        auto result = raft_->propose(std::move(payloads));
        bool proposed =
            result == raft::ProposeResult::Accepted || result == raft::ProposeResult::Forwarded;
        for (size_t i = begin; i < end; ++i) {
            QueuedWrite& w = writeBatch_[i];
            if (!proposed) {
                w.done(fail(Unavailable::NoLeader));
                continue;
            }
            writes_.emplace(w.id,
                            PendingWrite{std::move(w.done), nowMs() + config_.requestTimeoutMs,
                                         raft_->leader()});
        }
        begin = end;
    }
    writeBatch_.clear();
}

void NodeDriver::read(bool linearizable, ReadDone done) {
    boost::asio::post(io_, [this, linearizable, done = std::move(done)]() mutable {
        if (stopped_) return done(fail(Unavailable::Stopped));
        if (!linearizable) return done(readAt(store_->appliedIndex()));
        // Reads arriving together share one ReadIndex round (see flushReads).
        readBatch_.push_back(std::move(done));
        scheduleReady();
    });
}

NodeDriver::ReadAt NodeDriver::readAt(raft::Index index) const {
    return !store_->hasDeferred() || store_->committedIndex() >= index ? ReadAt::Anywhere
                                                                       : ReadAt::Core;
}

void NodeDriver::commitStore(std::function<void(Result<Ok, Unavailable>)> done) {
    boost::asio::post(io_, [this, done = std::move(done)] {
        if (stopped_) return done(fail(Unavailable::Stopped));
        store_->commitDeferred(false);
        done(Ok{});
    });
}

void NodeDriver::commitStoreIfDue() {
    if (!store_->hasDeferred()) return;
    if (nowMs() - deferredSinceMs_ >= config_.storeCommitMs ||
        store_->deferredRequests() >= config_.storeCommitRequests) {
        store_->commitDeferred(false);
    }
}

void NodeDriver::scheduleStoreCommit(int64_t inMs) {
    if (storeCommitArmed_ || stopped_) return;
    storeCommitArmed_ = true;
    storeCommitTimer_.expires_after(std::chrono::milliseconds(std::max<int64_t>(inMs, 0)));
    storeCommitTimer_.async_wait([this](const boost::system::error_code& ec) {
        storeCommitArmed_ = false;
        if (ec || stopped_ || !store_->hasDeferred()) return;
        int64_t left = deferredSinceMs_ + config_.storeCommitMs - nowMs();
        if (left > 0) return scheduleStoreCommit(left);  // a later batch opened meanwhile
        store_->commitDeferred(false);
    });
}

void NodeDriver::flushReads() {
    if (readBatch_.empty()) return;
    std::string ctx = std::to_string(config_.id) + "/" + std::to_string(nextRequest_++);
    auto result = raft_->readIndex(ctx);
    if (result != raft::ProposeResult::Accepted && result != raft::ProposeResult::Forwarded) {
        for (auto& done : readBatch_)
            done(fail(Unavailable::NoLeader));
        readBatch_.clear();
        return;
    }
    reads_.emplace(ctx, PendingRead{std::move(readBatch_), nowMs() + config_.requestTimeoutMs, 0});
    readBatch_.clear();
}

void NodeDriver::processReady() {
    for (int turn = 0; turn < 1000 && raft_->hasReady(); ++turn) {
        raft::Ready rd = raft_->ready();
        if (rd.snapshot) {
            drainWriter();
            applyPending();  // entries committed before the snapshot answer their clients
            // A snapshot from the leader replaces the whole state machine.
            std::istringstream in(rd.snapshot->data);
            auto imported = store_->importSnapshot(in);
            COORD_ASSERT(imported.ok(), "snapshot from the leader does not import",
                         imported.ok() ? "" : imported.error().message);
            log_->installSnapshot(rd.snapshot->meta);
            COORD_LOG_INFO("installed the leader's snapshot at index %llu, term %llu",
                           static_cast<unsigned long long>(rd.snapshot->meta.index),
                           static_cast<unsigned long long>(rd.snapshot->meta.term));
            applied_ = std::max(applied_, rd.snapshot->meta.index);
            refreshMembersView();
            refreshCorrupt(store_->corruptAlarms());
            if (membersChanged_) membersChanged_(log_->members());
        }
        // A leader may send its appends and heartbeats before persisting its own entries
        // (Raft thesis §10.2.1): the followers persist in parallel. This is safe here because
        // nothing is acknowledged before this Ready's log append is on disk: commit advances
        // only when the followers' answers are stepped, after this turn, and the client is
        // answered when the entry is applied, later. Votes and answers of followers wait for
        // the fdatasync, as they must.
        bool leading = raft_->leader() == config_.id;
        auto early = [&](const raft::Message& m) {
            return leading &&
                   (m.type == raft::MessageType::Append || m.type == raft::MessageType::Heartbeat);
        };
        for (const auto& m : rd.messages)
            if (early(m)) transport_.send(m);
        // The log first: new entries, a new term or vote are on disk (one sequential
        // fdatasync) before anyone hears of them and before the entries they commit are
        // applied. The entries committed by every Ready of this pass are applied together
        // once the pass ends (applyPending): one store transaction for all of them.
        std::vector<raft::Message> held;
        if (writer_.joinable()) {
            // The log writer takes the entries and hard state; Raft reads them from memory at
            // once, and commits and hands out for applying only what the writer reports on
            // disk. What must wait for the disk (a follower's acknowledgement, a vote) leaves
            // with the write's completion, in order.
            if (log_->rotationDue()) drainWriter();
            LogJob job;
            job.batch = log_->appendAsync(rd.entries, rd.hardState);
            job.sync = rd.mustSync;
            if (!rd.entries.empty()) {
                job.index = rd.entries.back().index;
                job.term = rd.entries.back().term;
            }
            for (auto& m : rd.messages)
                if (!early(m)) job.held.push_back(std::move(m));
            if (!job.batch.bytes.empty() || logJobsPending_ > 0) {
                queueLog(std::move(job));
            } else {
                held = std::move(job.held);  // nothing to wait for
            }
        } else {
            log_->append(rd.entries, rd.hardState, rd.mustSync);
            for (const auto& m : rd.messages)
                if (!early(m)) held.push_back(m);
        }
        for (auto& e : rd.committedEntries)
            toApply_.push_back(std::move(e));
        if (rd.softState) {
            if (rd.softState->leader != leader_.load()) leaderChanged(rd.softState->leader);
            if (rd.softState->role == raft::Role::Leader) {
                becameLeader();
            } else {
                lessor_.reset();
                revoking_.clear();
            }
        }
        for (const auto& m : held)
            transport_.send(m);
        for (const auto& rs : rd.readStates) {
            auto it = reads_.find(rs.context);
            if (it != reads_.end()) it->second.index = rs.index;
        }
        raft_->advance(rd);
        serveReads();
    }
    leader_ = raft_->leader();
    term_ = raft_->term();
    applyPending();
    commitStoreIfDue();
    settleTransfer();
}

void NodeDriver::applyPending() {
    if (toApply_.empty()) return;
    std::vector<raft::Entry> entries = std::move(toApply_);
    toApply_.clear();
    applyEntries(entries);
    applied_ = std::max(applied_, entries.back().index);
    serveReads();
    maybeCompact();
}

void NodeDriver::applyEntries(const std::vector<raft::Entry>& committed) {
    std::vector<kv::IndexedRequest> batch;
    std::vector<uint64_t> ids;
    std::optional<raft::ConfState> conf;
    std::optional<kv::Members> members;
    std::vector<uint64_t> changesDone;
    bool selfRemoved = false;
    for (const raft::Entry& e : committed) {
        if (e.type == raft::EntryType::ConfChange) {
            if (auto cc = raft::ConfChange::decode(e.data)) {
                applyConfChange(*cc, conf, members, changesDone);
                if (cc->type == raft::ConfChange::Type::Remove && cc->node == config_.id) {
                    selfRemoved = true;
                }
            }
            continue;
        }
        if (e.data.empty()) continue;  // a new leader's empty entry
        auto decoded = decodeWrite(e.data, kEntryLimits);
        if (!decoded.ok()) {
            // Every member sees the same bytes and skips them alike.
            COORD_LOG_ERROR("skipping undecodable log entry %llu: %s",
                            static_cast<unsigned long long>(e.index),
                            decoded.error().message.c_str());
            continue;
        }
        ids.push_back(decoded->first);
        batch.push_back({e.index, std::move(decoded->second)});
    }
    if (batch.empty() && !conf && !members) return;
    // Applied in the store's open transaction, committed later (commitStore) with a flush of
    // its data pages but not of its meta page (Store::commitDeferred): every entry it applies
    // is in this member's log already, and a restart applies again whatever a crash took from
    // the store. A membership change is synced at once.
    auto persist = [&](const kv::lmdb::Txn& txn) { log_->persist(txn, {conf, members}); };
    std::vector<kv::KvResult<kv::Response>> results;
    if (conf || members || config_.storeCommitMs <= 0) {
        results = store_->apply(batch, persist, conf.has_value() || members.has_value());
    } else {
        if (!store_->hasDeferred()) deferredSinceMs_ = nowMs();
        results = store_->applyDeferred(batch, persist);
    }
    if (conf || members) {
        refreshMembersView();
        if (members && membersChanged_) membersChanged_(log_->members());
        for (uint64_t id : changesDone) {
            auto it = changes_.find(id);
            if (it == changes_.end()) continue;
            it->second.done(kv::KvResult<std::vector<MemberView>>(this->members()));
            changes_.erase(it);
        }
        if (selfRemoved && !removedReported_) {
            removedReported_ = true;
            COORD_LOG_WARN("this member was removed from the cluster");
            if (removed_) removed_();
        }
    }
    for (size_t i = 0; i < results.size(); ++i) {
        if (!results[i].ok()) continue;
        if (const auto* a = std::get_if<kv::AlarmResponse>(&results[i].value())) {
            refreshCorrupt(a->corrupt);
        } else if (!lessor_) {
            continue;
        } else if (const auto* g = std::get_if<kv::LeaseGrantResponse>(&results[i].value())) {
            lessor_->grant(g->id, g->ttlSeconds);
        } else if (const auto* r = std::get_if<kv::LeaseRevokeRequest>(&batch[i].request)) {
            lessor_->revoke(r->id);
            revoking_.erase(r->id);
        }
    }
    for (size_t i = 0; i < results.size(); ++i) {
        auto it = writes_.find(ids[i]);
        if (it == writes_.end()) continue;
        it->second.done(std::move(results[i]));
        writes_.erase(it);
    }
    // Armed after the answers are on their way: arming it is a system call.
    if (store_->hasDeferred()) scheduleStoreCommit(config_.storeCommitMs);
}

void NodeDriver::serveReads() {
    raft::Index applied = applied_;
    for (auto it = reads_.begin(); it != reads_.end();) {
        if (it->second.index != 0 && it->second.index <= applied) {
            ReadAt at = readAt(it->second.index);
            for (auto& done : it->second.done)
                done(at);
            it = reads_.erase(it);
        } else {
            ++it;
        }
    }
}

void NodeDriver::applyConfChange(const raft::ConfChange& cc, std::optional<raft::ConfState>& conf,
                                 std::optional<kv::Members>& members, std::vector<uint64_t>& done) {
    conf = raft_->applyConfChange(cc);
    if (!members) members = log_->members();
    // Context: le64 request id (0 when nobody waits), then the member's record.
    uint64_t request = 0;
    std::optional<kv::MemberInfo> info;
    if (cc.context.size() >= 8) {
        request = loadLe64(cc.context.data());
        info = kv::decodeMemberInfo(std::string_view(cc.context).substr(8));
        if (info) info->id = cc.node;
    }
    auto node = static_cast<unsigned long long>(cc.node);
    switch (cc.type) {
        case raft::ConfChange::Type::AddVoter:
        case raft::ConfChange::Type::AddLearner:
            if (info) (*members)[cc.node] = *info;
            COORD_LOG_INFO("membership: %016llx%s%s%s is now a %s", node, info ? " (" : "",
                           info ? info->name.c_str() : "", info ? ")" : "",
                           cc.type == raft::ConfChange::Type::AddVoter ? "voter" : "learner");
            break;
        case raft::ConfChange::Type::Remove:
            members->erase(cc.node);
            COORD_LOG_INFO("membership: %016llx removed", node);
            break;
        case raft::ConfChange::Type::Update:
            if (info && members->count(cc.node)) (*members)[cc.node] = *info;
            break;
    }
    if (request != 0) done.push_back(request);
}

void NodeDriver::refreshCorrupt(const std::vector<uint64_t>& corruptMembers) {
    bool now =
        std::find(corruptMembers.begin(), corruptMembers.end(), config_.id) != corruptMembers.end();
    if (corrupt_.exchange(now) == now) return;
    if (now) {
        // Their previous values come from this member's store: they resume at another member.
        store_->watchHub().cancelAll(corruptError());
        COORD_LOG_ERROR(
            "this member's CORRUPT alarm is raised: its data differs from the other members'; "
            "it serves no keys until the alarm is disarmed (operations.md, \"Checking "
            "replicas\")");
    } else {
        COORD_LOG_WARN("this member's CORRUPT alarm was disarmed: serving keys again");
    }
}

void NodeDriver::refreshMembersView() {
    const raft::ConfState conf = log_->confState();
    const kv::Members& registry = log_->members();
    std::vector<MemberView> view;
    auto add = [&](raft::NodeId id, bool learner) {
        MemberView v;
        auto it = registry.find(id);
        if (it != registry.end()) v.info = it->second;
        v.info.id = id;
        v.learner = learner;
        view.push_back(std::move(v));
    };
    for (auto id : conf.voters)
        add(id, false);
    for (auto id : conf.learners)
        add(id, true);
    std::lock_guard lock(viewMutex_);
    view_ = std::move(view);
}

std::vector<MemberView> NodeDriver::members() const {
    std::lock_guard lock(viewMutex_);
    return view_;
}

void NodeDriver::checkQuota() {
    // Each member watches its own store and raises its NOSPACE alarm through Raft, so that
    // every member refuses the same writes from the same log position on (the refusal itself
    // is decided by the replicated alarm, never by a member's own file size).
    int64_t now = nowMs();
    if (now - lastQuotaCheckMs_ < 1000) return;
    lastQuotaCheckMs_ = now;
    if (raft_->leader() == raft::kNone || !store_->overQuota()) return;
    auto alarms = store_->noSpaceAlarms();
    if (std::find(alarms.begin(), alarms.end(), config_.id) != alarms.end()) return;
    COORD_LOG_WARN("member %016llx is over its quota (%zu bytes in use): raising the NOSPACE alarm",
                   static_cast<unsigned long long>(config_.id), store_->dataBytes());
    uint64_t reqId = (config_.id << 40) | nextRequest_++;
    raft_->propose(
        encodeWrite(reqId, kv::AlarmRequest{kv::AlarmRequest::Action::Activate, config_.id}));
    processReady();
}

void NodeDriver::publishSelf() {
    // A member publishes its own client address (as etcd does) so that member lists can tell
    // clients where to connect.
    if (config_.clientUrl.empty() || raft_->leader() == raft::kNone) return;
    const auto& registry = log_->members();
    auto it = registry.find(config_.id);
    if (it == registry.end() || it->second.clientUrl == config_.clientUrl) return;
    int64_t now = nowMs();
    if (now - lastPublishMs_ < 1000) return;
    lastPublishMs_ = now;
    kv::MemberInfo self = it->second;
    self.clientUrl = config_.clientUrl;
    raft::ConfChange cc{raft::ConfChange::Type::Update, config_.id, std::string(8, '\0')};
    cc.context += kv::encodeMemberInfo(self);
    raft_->proposeConfChange(cc);
    processReady();
}

std::optional<kv::Error> NodeDriver::checkChange(MemberOp op, kv::MemberInfo& member) const {
    auto error = [](kv::ErrorCode code, std::string message) {
        return kv::Error{code, std::move(message), 0};
    };
    const raft::ConfState conf = raft_->confState();
    auto has = [](const std::vector<raft::NodeId>& ids, raft::NodeId id) {
        return std::find(ids.begin(), ids.end(), id) != ids.end();
    };
    const auto& registry = log_->members();
    std::string idText = [&] {
        char b[17];
        std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(member.id));
        return std::string(b);
    }();
    switch (op) {
        case MemberOp::AddVoter:
        case MemberOp::AddLearner:
            if (member.name.empty() || member.peerUrl.empty()) {
                return error(kv::ErrorCode::InvalidArgument,
                             "a new member needs a name and a peer address");
            }
            if (has(conf.voters, member.id) || has(conf.learners, member.id) ||
                registry.count(member.id)) {
                return error(
                    kv::ErrorCode::MemberExists,
                    "member '" + member.name + "' (" + idText + ") is already in the cluster");
            }
            for (const auto& [id, m] : registry) {
                if (m.peerUrl == member.peerUrl) {
                    return error(kv::ErrorCode::MemberExists, "peer address " + member.peerUrl +
                                                                  " is already used by member '" +
                                                                  m.name + "'");
                }
            }
            member.clientUrl.clear();  // the member publishes its own
            return std::nullopt;
        case MemberOp::Promote: {
            if (has(conf.voters, member.id)) {
                return error(kv::ErrorCode::InvalidArgument,
                             "member " + idText + " is already a voter");
            }
            if (!has(conf.learners, member.id)) {
                return error(kv::ErrorCode::MemberNotFound, "no learner " + idText);
            }
            // As etcd: a learner is promoted once it holds 90% of the leader's log, so the
            // new voter does not stall commits while it catches up.
            const auto& pr = raft_->progress().at(member.id);
            raft::Index last = raft_->log().lastIndex();
            if (pr.match * 10 < last * 9) {
                return error(kv::ErrorCode::LearnerNotReady,
                             "learner " + idText + " holds " + std::to_string(pr.match) + " of " +
                                 std::to_string(last) +
                                 " log entries; promote it once it caught up");
            }
            break;
        }
        case MemberOp::Remove:
            if (!has(conf.voters, member.id) && !has(conf.learners, member.id)) {
                return error(kv::ErrorCode::MemberNotFound, "no member " + idText);
            }
            break;
    }
    auto it = registry.find(member.id);
    if (it != registry.end()) member = it->second;
    return std::nullopt;
}

void NodeDriver::changeMembership(MemberOp op, kv::MemberInfo member,
                                  std::function<void(MembershipOutcome)> done) {
    boost::asio::post(io_, [this, op, member = std::move(member),
                            done = std::move(done)]() mutable {
        if (stopped_) return done(fail(Unavailable::Stopped));
        if (raft_->role() != raft::Role::Leader) {
            return done(fail(raft_->leader() ? Unavailable::NotLeader : Unavailable::NoLeader));
        }
        if (auto e = checkChange(op, member)) {
            return done(kv::KvResult<std::vector<MemberView>>(fail(std::move(*e))));
        }
        raft::ConfChange cc;
        cc.node = member.id;
        switch (op) {
            case MemberOp::AddVoter:
            case MemberOp::Promote:
                cc.type = raft::ConfChange::Type::AddVoter;
                break;
            case MemberOp::AddLearner:
                cc.type = raft::ConfChange::Type::AddLearner;
                break;
            case MemberOp::Remove:
                cc.type = raft::ConfChange::Type::Remove;
                break;
        }
        uint64_t id = (config_.id << 40) | nextRequest_++;
        appendLe64(cc.context, id);
        cc.context += kv::encodeMemberInfo(member);
        auto refused = [&](kv::ErrorCode code, std::string message) {
            done(kv::KvResult<std::vector<MemberView>>(
                fail(kv::Error{code, std::move(message), 0})));
        };
        switch (raft_->proposeConfChange(cc)) {
            case raft::ProposeResult::Accepted:
            case raft::ProposeResult::Forwarded:
                changes_.emplace(
                    id, PendingChange{std::move(done), nowMs() + config_.requestTimeoutMs});
                scheduleReady();
                return;
            case raft::ProposeResult::ConfChangePending:
                return refused(kv::ErrorCode::MemberBusy,
                               "an earlier membership change is not applied yet; retry");
            case raft::ProposeResult::TransferInProgress:
                return refused(kv::ErrorCode::MemberBusy,
                               "a leadership transfer is in progress; retry");
            case raft::ProposeResult::NotMember:
                return refused(kv::ErrorCode::InvalidArgument,
                               "the change is invalid for the current membership (the last voter "
                               "cannot be removed)");
            case raft::ProposeResult::NoLeader:
                return done(fail(Unavailable::NoLeader));
        }
    });
}

void NodeDriver::transferLeadership(
    raft::NodeId target, std::function<void(Result<kv::KvResult<Ok>, Unavailable>)> done) {
    boost::asio::post(io_, [this, target, done = std::move(done)]() mutable {
        if (stopped_) return done(fail(Unavailable::Stopped));
        if (raft_->role() != raft::Role::Leader) {
            return done(fail(raft_->leader() ? Unavailable::NotLeader : Unavailable::NoLeader));
        }
        if (target == config_.id) return done(kv::KvResult<Ok>(Ok{}));
        const auto conf = raft_->confState();
        if (std::find(conf.voters.begin(), conf.voters.end(), target) == conf.voters.end()) {
            return done(kv::KvResult<Ok>(fail(
                kv::Error{kv::ErrorCode::MemberNotFound, "the target is not a voting member", 0})));
        }
        if (transfer_) {
            return done(kv::KvResult<Ok>(fail(
                kv::Error{kv::ErrorCode::MemberBusy, "a leadership transfer is in progress", 0})));
        }
        transfer_ = PendingTransfer{target, std::move(done),
                                    nowMs() + 2 * int64_t{config_.electionTicks} * config_.tickMs};
        COORD_LOG_INFO("handing leadership to %016llx", static_cast<unsigned long long>(target));
        raft_->transferLeadership(target);
        processReady();
    });
}

void NodeDriver::settleTransfer() {
    if (!transfer_) return;
    if (raft_->leader() == transfer_->target) {
        transfer_->done(kv::KvResult<Ok>(Ok{}));
        transfer_.reset();
    } else if (transfer_->deadlineMs <= nowMs()) {
        COORD_LOG_WARN("leadership transfer to %016llx timed out",
                       static_cast<unsigned long long>(transfer_->target));
        transfer_->done(fail(Unavailable::Timeout));
        transfer_.reset();
    }
}

void NodeDriver::expire() {
    int64_t now = nowMs();
    settleTransfer();
    for (auto it = changes_.begin(); it != changes_.end();) {
        if (it->second.deadlineMs <= now) {
            it->second.done(fail(Unavailable::Timeout));
            it = changes_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto it = writes_.begin(); it != writes_.end();) {
        if (it->second.deadlineMs <= now) {
            it->second.done(fail(Unavailable::Timeout));
            it = writes_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto it = reads_.begin(); it != reads_.end();) {
        if (it->second.deadlineMs <= now) {
            for (auto& done : it->second.done)
                done(fail(Unavailable::Timeout));
            it = reads_.erase(it);
        } else {
            ++it;
        }
    }
}

void NodeDriver::leaderChanged(raft::NodeId now) {
    if (now == raft::kNone) {
        COORD_LOG_INFO("lost leader %016llx at term %llu",
                       static_cast<unsigned long long>(leader_.load()),
                       static_cast<unsigned long long>(raft_->term()));
    } else {
        COORD_LOG_INFO("leader is %016llx at term %llu%s", static_cast<unsigned long long>(now),
                       static_cast<unsigned long long>(raft_->term()),
                       now == config_.id ? " (this member)" : "");
    }
    leader_ = now;
    // Proposals and read requests handed to the old leader are most likely gone with it: fail
    // them now instead of at their timeout, so clients retry within an election. A write may
    // still have been committed by the old leader (its outcome is unknown: Timeout); a read
    // never had an effect (NoLeader: retry).
    for (auto it = writes_.begin(); it != writes_.end();) {
        if (it->second.leader != now) {
            it->second.done(fail(Unavailable::Timeout));
            it = writes_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& [ctx, r] : reads_)
        for (auto& done : r.done)
            done(fail(Unavailable::NoLeader));
    reads_.clear();
    // A membership change may still commit under the next leader: its outcome is unknown.
    for (auto& [id, c] : changes_)
        c.done(fail(Unavailable::Timeout));
    changes_.clear();
}

void NodeDriver::becameLeader() {
    // The old leader's deadlines are gone with it: every lease gets its full TTL again, plus
    // one election timeout so holders have time to find the new leader (etcd does the same).
    lessor_ = std::make_unique<kv::Lessor>(clock_);
    revoking_.clear();
    for (const auto& lease : store_->leaseList())
        lessor_->grant(lease.id, lease.ttlSeconds);
    lessor_->extendAll(static_cast<int64_t>(config_.electionTicks) * config_.tickMs);
}

void NodeDriver::expireLeases() {
    if (!lessor_) return;
    int64_t now = nowMs();
    for (int64_t id : lessor_->expired(100)) {
        auto it = revoking_.find(id);
        if (it != revoking_.end() && now - it->second < 1000) continue;  // already on its way
        revoking_[id] = now;
        uint64_t reqId = (config_.id << 40) | nextRequest_++;
        raft_->propose(encodeWrite(reqId, kv::LeaseRevokeRequest{id}));
    }
    processReady();
}

void NodeDriver::leaseKeepAlive(
    int64_t id, std::function<void(Result<kv::KvResult<int64_t>, Unavailable>)> done) {
    boost::asio::post(io_, [this, id, done = std::move(done)] {
        if (stopped_) return done(fail(Unavailable::Stopped));
        if (!lessor_) return done(fail(Unavailable::NotLeader));
        if (auto ttl = lessor_->renew(id)) return done(kv::KvResult<int64_t>(*ttl));
        done(kv::KvResult<int64_t>(
            fail(kv::Error{kv::ErrorCode::LeaseNotFound,
                           "lease " + std::to_string(id) + " not found or expired"})));
    });
}

void NodeDriver::maybeCompact() {
    // Entries the store skipped (undecodable: every member skips them alike) leave its applied
    // index behind Raft's until the next entry it applies: never compact past the store's.
    raft::Index applied = std::min(applied_, store_->appliedIndex());
    bool due =
        applied >= log_->firstIndex() - 1 + config_.snapshotCount + config_.snapshotCatchUpEntries;
    bool big = log_->bytes() > config_.maxLogMemoryBytes;
    if (!due && !big) return;
    // The snapshot sent to a lagging follower is the store's state when it is sent, which is
    // at or after this index; the follower's store skips the entries it already contains.
    raft::Index upTo = log_->compactionPoint(applied, config_.snapshotCatchUpEntries,
                                             config_.maxLogMemoryBytes / 4);
    if (upTo < log_->firstIndex()) return;
    drainWriter();  // compaction writes and syncs the log itself
    dispose(log_->compactDeferred(upTo, raft_->confState()));
    COORD_LOG_DEBUG("compacted the raft log up to index %llu (applied %llu)",
                    static_cast<unsigned long long>(upTo),
                    static_cast<unsigned long long>(applied));
}

void NodeDriver::dispose(kv::RaftLogStorage::Leftovers leftovers) {
    // Shared: a job is a std::function, which copies; the leftovers only move.
    auto held = std::make_shared<kv::RaftLogStorage::Leftovers>(std::move(leftovers));
    janitor_.post([held] {
        try {
            held->dispose();
        } catch (const std::exception& e) {
            // An old segment left behind costs disk space only: a replay reads past it.
            COORD_LOG_WARN("%s", e.what());
        }
    });
}

}  // namespace coord::rpc
