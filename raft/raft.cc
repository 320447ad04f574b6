#include "raft/raft.h"

#include <algorithm>
#include <charconv>

#include "common/assert.h"

namespace coord::raft {

namespace {
const std::string kTransferContext = "transfer";
constexpr uint64_t kNoLimit = UINT64_MAX;
}  // namespace

const char* proposeResultName(ProposeResult r) {
    switch (r) {
        case ProposeResult::Accepted:
            return "Accepted";
        case ProposeResult::Forwarded:
            return "Forwarded";
        case ProposeResult::NoLeader:
            return "NoLeader";
        case ProposeResult::TransferInProgress:
            return "TransferInProgress";
        case ProposeResult::ConfChangePending:
            return "ConfChangePending";
        case ProposeResult::NotMember:
            return "NotMember";
    }
    return "?";
}

// ---- Progress ----

void Progress::becomeProbe() {
    if (state == State::Snapshot) {
        next = std::max(match + 1, pendingSnapshot + 1);
    } else {
        next = match + 1;
    }
    state = State::Probe;
    probeSent = false;
    pendingSnapshot = 0;
    snap.reset();
    inflight.clear();
}

void Progress::becomeReplicate() {
    state = State::Replicate;
    next = match + 1;
    probeSent = false;
    pendingSnapshot = 0;
    snap.reset();
    inflight.clear();
}

void Progress::becomeSnapshot(Index snapIndex) {
    state = State::Snapshot;
    pendingSnapshot = snapIndex;
    probeSent = false;
    inflight.clear();
}

bool Progress::maybeUpdate(Index n) {
    bool updated = false;
    if (match < n) {
        match = n;
        updated = true;
        probeSent = false;
    }
    next = std::max(next, n + 1);
    while (!inflight.empty() && inflight.front() <= n)
        inflight.pop_front();
    return updated;
}

bool Progress::maybeDecrTo(Index rejected, Index hint) {
    if (state == State::Replicate) {
        // A reject below what we know matches is stale.
        if (rejected <= match) return false;
        next = match + 1;
        return true;
    }
    // Probe: only the answer to the probe we sent counts.
    if (next == 0 || next - 1 != rejected) return false;
    next = std::max<Index>(std::min(rejected, hint + 1), match + 1);
    probeSent = false;
    return true;
}

bool Progress::paused(size_t maxInflight) const {
    switch (state) {
        case State::Probe:
            return probeSent;
        case State::Replicate:
            return inflight.size() >= maxInflight;
        case State::Snapshot:
            return true;
    }
    return true;
}

// ---- construction and roles ----

Raft::Raft(const Config& c)
    : id_(c.id),
      log_(*c.storage, c.maxBytesPerMsg),
      electionTicks_(c.electionTicks),
      heartbeatTicks_(c.heartbeatTicks),
      rng_(c.seed ^ (c.id * 0x9E3779B97F4A7C15ull)),
      maxBytesPerMsg_(c.maxBytesPerMsg),
      snapshotChunkBytes_(c.snapshotChunkBytes > 0 ? c.snapshotChunkBytes : 1),
      maxInflight_(c.maxInflightMsgs),
      preVote_(c.preVote),
      checkQuorum_(c.checkQuorum),
      bugs_(c.bugs),
      asyncPersist_(c.asyncPersist) {
    log_.limitApplyToStable(asyncPersist_);
    COORD_ASSERT(id_ != kNone, "raft node id must not be 0");
    COORD_ASSERT(electionTicks_ > heartbeatTicks_ && heartbeatTicks_ > 0, "bad tick config",
                 electionTicks_, heartbeatTicks_);
    HardState hs = c.storage->hardState();
    ConfState cs = c.storage->confState();
    for (NodeId v : cs.voters)
        prs_[v] = Progress{};
    for (NodeId l : cs.learners)
        prs_[l].learner = true;
    if (hs.term != 0 || hs.vote != 0 || hs.commit != 0) {
        // Persisted asynchronously, the hard state's commit index may lag a compaction of
        // applied entries (which were committed): the compaction point then stands for it.
        COORD_ASSERT(
            (asyncPersist_ || hs.commit >= log_.committed()) && hs.commit <= log_.lastIndex(),
            "stored commit index out of range", hs.commit, log_.committed(), log_.lastIndex());
        term_ = hs.term;
        vote_ = hs.vote;
        log_.commitTo(hs.commit);
    }
    if (c.applied > 0) log_.appliedTo(c.applied);
    becomeFollower(term_, kNone);
    prevSoft_ = SoftState{lead_, role_};
    prevHard_ = hardState();
}

void Raft::reset(Term term) {
    if (term_ != term) {
        term_ = term;
        vote_ = kNone;
    }
    lead_ = kNone;
    leaderGoneHint_ = false;
    electionElapsed_ = 0;
    heartbeatElapsed_ = 0;
    resetRandomizedElectionTimeout();
    abortTransfer();
    votes_.clear();
    for (auto& [nid, pr] : prs_) {
        bool learner = pr.learner;
        pr = Progress{};
        pr.learner = learner;
        pr.next = log_.lastIndex() + 1;
        // Asynchronously persisted, only what is on disk counts toward commit.
        if (nid == id_) pr.match = asyncPersist_ ? log_.stableIndex() : log_.lastIndex();
    }
    pendingConfIndex_ = 0;
    pendingReads_.clear();
    readsAwaitingCommit_.clear();
}

void Raft::resetRandomizedElectionTimeout() {
    randomizedElectionTimeout_ =
        electionTicks_ + static_cast<int>(rng_() % static_cast<uint64_t>(electionTicks_));
}

void Raft::becomeFollower(Term term, NodeId lead) {
    reset(term);
    lead_ = lead;
    role_ = Role::Follower;
}

void Raft::becomePreCandidate() {
    COORD_ASSERT(role_ != Role::Leader, "leader cannot become pre-candidate");
    // Pre-vote changes neither term nor vote: a partitioned node rejoining cannot disrupt.
    votes_.clear();
    role_ = Role::PreCandidate;
    lead_ = kNone;
}

void Raft::becomeCandidate() {
    COORD_ASSERT(role_ != Role::Leader, "leader cannot become candidate");
    reset(term_ + 1);
    vote_ = id_;
    role_ = Role::Candidate;
}

void Raft::becomeLeader() {
    COORD_ASSERT(role_ == Role::Candidate, "only a candidate can become leader");
    reset(term_);
    lead_ = id_;
    role_ = Role::Leader;
    for (auto& [nid, pr] : prs_) {
        if (nid == id_) pr.becomeReplicate();
    }
    // An empty entry of the new term lets the leader commit (§5.4.2) and serve reads (§6.4).
    appendEntries({Entry{}});
    // No membership change until everything before this term is applied.
    pendingConfIndex_ = log_.lastIndex();
}

bool Raft::promotable() const {
    auto it = prs_.find(id_);
    return it != prs_.end() && !it->second.learner;
}

size_t Raft::voterCount() const {
    size_t n = 0;
    for (const auto& [nid, pr] : prs_)
        n += pr.learner ? 0 : 1;
    return n;
}

size_t Raft::quorum() const {
    return voterCount() / 2 + 1;
}

ConfState Raft::confState() const {
    ConfState cs;
    for (const auto& [nid, pr] : prs_)
        (pr.learner ? cs.learners : cs.voters).push_back(nid);
    return cs;
}

void Raft::campaign(bool preVote, bool transfer) {
    if (!promotable()) return;
    Term voteTerm;
    MessageType type;
    if (preVote) {
        becomePreCandidate();
        voteTerm = term_ + 1;
        type = MessageType::PreVote;
    } else {
        becomeCandidate();
        voteTerm = term_;
        type = MessageType::Vote;
    }
    votes_[id_] = true;
    if (votes_.size() >= quorum()) {
        // A single voter wins at once.
        if (preVote) {
            campaign(false, transfer);
        } else {
            becomeLeader();
        }
        return;
    }
    for (const auto& [nid, pr] : prs_) {
        if (nid == id_ || pr.learner) continue;
        Message m;
        m.type = type;
        m.to = nid;
        m.term = voteTerm;
        m.index = log_.lastIndex();
        m.logTerm = log_.lastTerm();
        if (transfer) m.context = kTransferContext;
        send(std::move(m));
    }
}

// ---- ticks ----

void Raft::tick() {
    if (role_ == Role::Leader) {
        ++heartbeatElapsed_;
        ++electionElapsed_;
        if (electionElapsed_ >= electionTicks_) {
            electionElapsed_ = 0;
            if (checkQuorum_ && !quorumActive()) {
                becomeFollower(term_, kNone);  // cannot hear a quorum: step down
                return;
            }
            abortTransfer();  // a transfer that took an election timeout has failed
        }
        if (heartbeatElapsed_ >= heartbeatTicks_) {
            heartbeatElapsed_ = 0;
            bcastHeartbeat({});
        }
        return;
    }
    ++electionElapsed_;
    bool retryHint = leaderGoneHint_ && role_ == Role::PreCandidate && preVote_ &&
                     electionElapsed_ >= kHintRetryTicks;
    if (promotable() && (electionElapsed_ >= randomizedElectionTimeout_ || retryHint)) {
        electionElapsed_ = 0;
        campaign(preVote_, false);
    }
}

void Raft::peerUnreachable(NodeId node) {
    if (role_ == Role::Leader || node == kNone || node != lead_ || !promotable()) return;
    lead_ = kNone;
    leaderGoneHint_ = true;
    size_t rank = 0;
    for (const auto& [nid, pr] : prs_) {
        if (!pr.learner && nid != node && nid < id_) ++rank;
    }
    int wait = 1 + 2 * static_cast<int>(rank);
    electionElapsed_ = std::max(electionElapsed_, randomizedElectionTimeout_ - wait);
}

bool Raft::quorumActive() {
    size_t active = 0;
    for (auto& [nid, pr] : prs_) {
        if (nid == id_) {
            active += pr.learner ? 0 : 1;
            continue;
        }
        if (pr.recentActive && !pr.learner) ++active;
        pr.recentActive = false;
    }
    return active >= quorum();
}

// ---- step ----

void Raft::step(const Message& m) {
    // Messages with a term: the term rules of §5.1 first.
    if (m.term > term_ && m.term != 0) {
        bool voteRequest = m.type == MessageType::Vote || m.type == MessageType::PreVote;
        if (voteRequest) {
            bool force = m.context == kTransferContext;
            bool inLease = checkQuorum_ && lead_ != kNone && electionElapsed_ < electionTicks_;
            // While we hear from a leader, ignore candidates (they may be partitioned and
            // disruptive), unless the leader itself asked for this election (transfer).
            if (!force && inLease) return;
        }
        if (m.type == MessageType::PreVote) {
            // Pre-votes never change our term.
        } else if (m.type == MessageType::PreVoteResp && !m.reject) {
            // A granted pre-vote carries the future term: no change until we campaign.
        } else {
            bool fromLeader = m.type == MessageType::Append || m.type == MessageType::Heartbeat ||
                              m.type == MessageType::Snap;
            becomeFollower(m.term, fromLeader ? m.from : kNone);
        }
    } else if (m.term < term_ && m.term != 0) {
        if ((checkQuorum_ || preVote_) &&
            (m.type == MessageType::Heartbeat || m.type == MessageType::Append)) {
            // A stale leader (e.g. after a partition) learns our term and steps down; without
            // this it could keep its followers from ever timing out under check-quorum.
            Message r;
            r.type = MessageType::AppendResp;
            r.to = m.from;
            send(std::move(r));
        } else if (m.type == MessageType::PreVote) {
            Message r;
            r.type = MessageType::PreVoteResp;
            r.to = m.from;
            r.reject = true;
            send(std::move(r));
        }
        return;
    }

    switch (m.type) {
        case MessageType::Hup:
            if (role_ != Role::Leader) campaign(preVote_, false);
            return;
        case MessageType::Vote:
        case MessageType::PreVote: {
            bool canVote = vote_ == m.from || (vote_ == kNone && lead_ == kNone) ||
                           (m.type == MessageType::PreVote && m.term > term_);
            bool upToDate = bugs_.voteWithoutLogCheck || log_.isUpToDate(m.index, m.logTerm);
            Message r;
            r.type = m.type == MessageType::Vote ? MessageType::VoteResp : MessageType::PreVoteResp;
            r.to = m.from;
            if (canVote && upToDate) {
                // A pre-vote answer carries the term the candidate would use.
                r.term = m.term;
                if (m.type == MessageType::Vote) {
                    electionElapsed_ = 0;
                    vote_ = m.from;  // persisted (hard state) before the answer is sent
                }
            } else {
                r.term = term_;
                r.reject = true;
            }
            send(std::move(r));
            return;
        }
        default:
            break;
    }
    switch (role_) {
        case Role::Leader:
            stepLeader(m);
            break;
        case Role::Candidate:
        case Role::PreCandidate:
            stepCandidate(m);
            break;
        case Role::Follower:
            stepFollower(m);
            break;
    }
}

void Raft::stepLeader(const Message& m) {
    switch (m.type) {
        case MessageType::Beat:
            bcastHeartbeat({});
            return;
        case MessageType::Propose: {
            if (leadTransferee_ != kNone || prs_.find(id_) == prs_.end()) return;
            std::vector<Entry> ents = m.entries;
            for (auto& e : ents) {
                if (e.type == EntryType::ConfChange) {
                    // A peer may forward only an update of its own attributes; real membership
                    // changes are validated by proposeConfChange on this member.
                    if (m.from != kNone && m.from != id_) {
                        auto cc = ConfChange::decode(e.data);
                        if (!cc || cc->type != ConfChange::Type::Update || cc->node != m.from ||
                            prs_.find(m.from) == prs_.end()) {
                            e = Entry{};
                            continue;
                        }
                    }
                    if (pendingConfIndex_ > log_.applied()) {
                        e = Entry{};  // refuse: an earlier change is not applied yet
                    } else {
                        pendingConfIndex_ = log_.lastIndex() + 1;
                    }
                }
            }
            appendEntries(std::move(ents));
            bcastAppend();
            return;
        }
        case MessageType::ReadIndex:
            handleReadIndex(m);
            return;
        case MessageType::TransferLeader: {
            NodeId target = kNone;
            auto [end, ec] =
                std::from_chars(m.context.data(), m.context.data() + m.context.size(), target);
            if (ec != std::errc() || end != m.context.data() + m.context.size()) return;
            auto it = prs_.find(target);
            if (it == prs_.end() || it->second.learner || target == id_) return;
            if (leadTransferee_ == target) return;
            leadTransferee_ = target;
            electionElapsed_ = 0;
            if (it->second.match == log_.lastIndex()) {
                Message t;
                t.type = MessageType::TimeoutNow;
                t.to = target;
                send(std::move(t));
            } else {
                sendAppend(target);
            }
            return;
        }
        default:
            break;
    }
    auto it = prs_.find(m.from);
    if (it == prs_.end()) return;
    Progress& pr = it->second;
    switch (m.type) {
        case MessageType::AppendResp:
            handleAppendResp(m, pr);
            return;
        case MessageType::HeartbeatResp:
            handleHeartbeatResp(m, pr);
            return;
        case MessageType::SnapResp:
            handleSnapResp(m, pr);
            return;
        default:
            return;
    }
}

void Raft::handleAppendResp(const Message& m, Progress& pr) {
    pr.recentActive = true;
    if (m.reject) {
        // Fast back-off: jump to where our log can agree with the follower's.
        Index hint = m.rejectHint;
        if (m.hintTerm > 0) hint = log_.findConflictByTerm(m.rejectHint, m.hintTerm);
        if (pr.maybeDecrTo(m.index, hint)) {
            if (pr.state == Progress::State::Replicate) pr.becomeProbe();
            sendAppend(m.from);
        }
        return;
    }
    bool wasPaused = pr.paused(maxInflight_);
    if (!pr.maybeUpdate(m.index)) {
        if (wasPaused && !pr.paused(maxInflight_)) sendAppend(m.from, false);
        return;
    }
    if (pr.state == Progress::State::Probe) {
        pr.becomeReplicate();
    } else if (pr.state == Progress::State::Snapshot && pr.match >= pr.pendingSnapshot) {
        pr.becomeProbe();
        pr.becomeReplicate();
    }
    if (maybeCommit()) {
        bcastAppend();
    } else {
        // Keep the pipeline full.
        while (!pr.paused(maxInflight_) && pr.next <= log_.lastIndex()) {
            Index before = pr.next;
            sendAppend(m.from, false);
            if (pr.next == before) break;
        }
    }
    if (m.from == leadTransferee_ && pr.match == log_.lastIndex()) {
        Message t;
        t.type = MessageType::TimeoutNow;
        t.to = m.from;
        send(std::move(t));
    }
}

void Raft::handleHeartbeatResp(const Message& m, Progress& pr) {
    pr.recentActive = true;
    if (pr.state == Progress::State::Probe) pr.probeSent = false;
    // A snapshot chunk (or its answer) may have been lost: resume from the confirmed offset.
    if (pr.state == Progress::State::Snapshot && pr.snap) sendSnapChunk(m.from, pr);
    if (pr.state == Progress::State::Replicate && pr.paused(maxInflight_)) pr.inflight.clear();
    if (pr.match < log_.lastIndex()) sendAppend(m.from);
    if (m.context.empty() || pendingReads_.empty()) return;
    for (auto& read : pendingReads_) {
        if (read.context == m.context) {
            read.acks.insert(m.from);
            if (read.acks.size() >= quorum()) releaseReads(m.context);
            return;
        }
    }
}

void Raft::handleReadIndex(const Message& m) {
    if (voterCount() == 1 && promotable()) {
        readStates_.push_back(ReadState{log_.committed(), m.context});
        return;
    }
    if (!committedEntryInCurrentTerm() && !bugs_.readIndexWithoutQuorum) {
        // Our commit index may lag the cluster's until an entry of this term commits (§6.4).
        readsAwaitingCommit_.push_back(m);
        return;
    }
    auto answer = [&](Index index) {
        if (m.from == kNone || m.from == id_) {
            readStates_.push_back(ReadState{index, m.context});
        } else {
            Message r;
            r.type = MessageType::ReadIndexResp;
            r.to = m.from;
            r.index = index;
            r.context = m.context;
            send(std::move(r));
        }
    };
    if (bugs_.readIndexWithoutQuorum) {
        answer(log_.committed());
        return;
    }
    PendingRead read{m.context, log_.committed(), m.from, {id_}};
    pendingReads_.push_back(std::move(read));
    bcastHeartbeat(m.context);
}

void Raft::releaseReads(const std::string& context) {
    // Every read queued before the acknowledged one is confirmed too.
    while (!pendingReads_.empty()) {
        PendingRead read = std::move(pendingReads_.front());
        pendingReads_.pop_front();
        if (read.from == kNone || read.from == id_) {
            readStates_.push_back(ReadState{read.index, read.context});
        } else {
            Message r;
            r.type = MessageType::ReadIndexResp;
            r.to = read.from;
            r.index = read.index;
            r.context = read.context;
            send(std::move(r));
        }
        if (read.context == context) break;
    }
}

bool Raft::committedEntryInCurrentTerm() const {
    return log_.term(log_.committed()) == term_;
}

void Raft::stepCandidate(const Message& m) {
    MessageType myResp =
        role_ == Role::PreCandidate ? MessageType::PreVoteResp : MessageType::VoteResp;
    switch (m.type) {
        case MessageType::Append:
            becomeFollower(m.term, m.from);
            handleAppend(m);
            return;
        case MessageType::Heartbeat:
            becomeFollower(m.term, m.from);
            handleHeartbeat(m);
            return;
        case MessageType::Snap:
            becomeFollower(m.term, m.from);
            handleSnapChunk(m);
            return;
        default:
            break;
    }
    if (m.type != myResp) return;  // proposals and reads are dropped: no leader
    votes_.emplace(m.from, !m.reject);
    size_t granted = 0, rejected = 0;
    for (const auto& [nid, v] : votes_)
        (v ? granted : rejected) += 1;
    if (granted >= quorum()) {
        if (role_ == Role::PreCandidate) {
            campaign(false, false);
        } else {
            becomeLeader();
            bcastAppend();
        }
    } else if (rejected >= quorum()) {
        becomeFollower(term_, kNone);
    }
}

void Raft::stepFollower(const Message& m) {
    switch (m.type) {
        case MessageType::Propose:
        case MessageType::TransferLeader:
        case MessageType::ReadIndex: {
            if (lead_ == kNone) return;
            Message f = m;
            f.to = lead_;
            if (f.from == kNone) f.from = id_;
            f.term = 0;
            send(std::move(f));
            return;
        }
        case MessageType::Append:
            electionElapsed_ = 0;
            lead_ = m.from;
            handleAppend(m);
            return;
        case MessageType::Heartbeat:
            electionElapsed_ = 0;
            lead_ = m.from;
            handleHeartbeat(m);
            return;
        case MessageType::Snap:
            electionElapsed_ = 0;
            lead_ = m.from;
            handleSnapChunk(m);
            return;
        case MessageType::TimeoutNow:
            // The leader hands over: campaign at once, skipping pre-vote (thesis §3.10).
            campaign(false, true);
            return;
        case MessageType::ReadIndexResp:
            readStates_.push_back(ReadState{m.index, m.context});
            return;
        default:
            return;
    }
}

void Raft::handleAppend(const Message& m) {
    Message r;
    r.type = MessageType::AppendResp;
    r.to = m.from;
    if (m.index < log_.committed()) {
        r.index = log_.committed();
        send(std::move(r));
        return;
    }
    auto last =
        log_.maybeAppend(m.index, m.logTerm, m.commit, m.entries, !bugs_.keepConflictingEntries);
    if (last) {
        r.index = *last;
    } else {
        // Hint: the largest index at or below m.index whose term is at most m.logTerm.
        Index hint = log_.findConflictByTerm(std::min(m.index, log_.lastIndex()), m.logTerm);
        r.index = m.index;
        r.reject = true;
        r.rejectHint = hint;
        r.hintTerm = log_.term(hint).value_or(0);
    }
    send(std::move(r));
}

void Raft::handleHeartbeat(const Message& m) {
    log_.commitTo(std::min(m.commit, log_.lastIndex()));
    Message r;
    r.type = MessageType::HeartbeatResp;
    r.to = m.from;
    r.context = m.context;
    send(std::move(r));
}

void Raft::sendSnapChunk(NodeId to, Progress& pr) {
    const Snapshot& full = *pr.snap;
    uint64_t offset = std::min<uint64_t>(pr.snapOffset, full.data.size());
    uint64_t len = std::min<uint64_t>(snapshotChunkBytes_, full.data.size() - offset);
    Message m;
    m.type = MessageType::Snap;
    m.to = to;
    m.snapshot = Snapshot{full.meta, full.data.substr(offset, len)};
    m.snapOffset = offset;
    m.snapId = pr.snapId;
    m.snapLast = offset + len == full.data.size();
    send(std::move(m));
}

void Raft::handleSnapResp(const Message& m, Progress& pr) {
    pr.recentActive = true;
    if (pr.state != Progress::State::Snapshot || !pr.snap || m.snapId != pr.snapId) return;
    // The follower's offset is the truth, whether it took the chunk or not: resume from there.
    pr.snapOffset = m.snapOffset;
    if (pr.snapOffset < pr.snap->data.size()) sendSnapChunk(m.from, pr);
}

void Raft::handleSnapChunk(const Message& m) {
    COORD_ASSERT(m.snapshot.has_value(), "snapshot message without snapshot");
    const SnapshotMeta& meta = m.snapshot->meta;
    if (meta.index <= log_.committed()) {
        incomingSnap_.reset();
        handleSnapshot(m);  // nothing to install; tells the leader where we are
        return;
    }
    bool sameTransfer = incomingSnap_ && incomingSnapId_ == m.snapId &&
                        incomingSnapFrom_ == m.from && incomingSnap_->meta == meta;
    if (!sameTransfer) {
        incomingSnap_.reset();
        if (m.snapOffset == 0) {
            incomingSnap_ = Snapshot{meta, {}};
            incomingSnapId_ = m.snapId;
            incomingSnapFrom_ = m.from;
        }
    }
    uint64_t held = incomingSnap_ ? incomingSnap_->data.size() : 0;
    if (!incomingSnap_ || m.snapOffset != held) {
        // A chunk out of place (lost, duplicated or from an older transfer): say where we are.
        Message r;
        r.type = MessageType::SnapResp;
        r.to = m.from;
        r.index = meta.index;
        r.snapId = m.snapId;
        r.snapOffset = held;
        r.reject = true;
        send(std::move(r));
        return;
    }
    incomingSnap_->data += m.snapshot->data;
    if (!m.snapLast) {
        Message r;
        r.type = MessageType::SnapResp;
        r.to = m.from;
        r.index = meta.index;
        r.snapId = m.snapId;
        r.snapOffset = incomingSnap_->data.size();
        send(std::move(r));
        return;
    }
    Message whole = m;
    whole.snapshot = std::move(*incomingSnap_);
    incomingSnap_.reset();
    handleSnapshot(whole);
}

void Raft::handleSnapshot(const Message& m) {
    COORD_ASSERT(m.snapshot.has_value(), "snapshot message without snapshot");
    const Snapshot& s = *m.snapshot;
    Message r;
    r.type = MessageType::AppendResp;
    r.to = m.from;
    if (s.meta.index <= log_.committed()) {
        r.index = log_.committed();
    } else if (log_.matchTerm(s.meta.index, s.meta.term)) {
        // We already have the snapshot's last entry: just move commit forward.
        log_.commitTo(s.meta.index);
        r.index = log_.lastIndex();
    } else {
        log_.restore(s);
        prs_.clear();
        for (NodeId v : s.meta.conf.voters)
            prs_[v] = Progress{};
        for (NodeId l : s.meta.conf.learners)
            prs_[l].learner = true;
        r.index = log_.lastIndex();
    }
    send(std::move(r));
}

// ---- sending ----

void Raft::send(Message m) {
    bool forwarded = m.type == MessageType::Propose || m.type == MessageType::ReadIndex ||
                     m.type == MessageType::TransferLeader;
    if (forwarded) {
        // Forwarded requests keep their origin and carry no term: the leader treats them as
        // local requests from `from`.
        if (m.from == kNone) m.from = id_;
        m.term = 0;
    } else {
        m.from = id_;
        if (m.term == 0) m.term = term_;
    }
    msgs_.push_back(std::move(m));
}

void Raft::sendAppend(NodeId to, bool sendIfEmpty) {
    Progress& pr = prs_.at(to);
    if (pr.paused(maxInflight_)) return;
    Message m;
    m.to = to;
    auto prevTerm = log_.term(pr.next - 1);
    auto ents = log_.entriesFrom(pr.next);
    if (!prevTerm || !ents) {
        // The follower needs entries we compacted: send the snapshot instead.
        auto snap = std::make_shared<const Snapshot>(log_.snapshot());
        COORD_ASSERT(!snap->empty(), "entries compacted but no snapshot", to, pr.next);
        pr.becomeSnapshot(snap->meta.index);
        pr.snap = std::move(snap);
        pr.snapId = nextSnapId_++;
        pr.snapOffset = 0;
        sendSnapChunk(to, pr);
        return;
    }
    if (ents->empty() && !sendIfEmpty) return;
    m.type = MessageType::Append;
    m.index = pr.next - 1;
    m.logTerm = *prevTerm;
    m.commit = log_.committed();
    m.entries = std::move(*ents);
    if (!m.entries.empty()) {
        Index last = m.entries.back().index;
        if (pr.state == Progress::State::Replicate) {
            pr.next = last + 1;  // pipeline: optimistically move on
            pr.inflight.push_back(last);
        } else if (pr.state == Progress::State::Probe) {
            pr.probeSent = true;
        }
    } else if (pr.state == Progress::State::Probe) {
        pr.probeSent = true;
    }
    send(std::move(m));
}

void Raft::sendHeartbeat(NodeId to, const std::string& context) {
    // Never tell a follower to commit beyond what it is known to have.
    Message m;
    m.type = MessageType::Heartbeat;
    m.to = to;
    m.commit = std::min(prs_.at(to).match, log_.committed());
    m.context = context;
    send(std::move(m));
}

void Raft::bcastAppend() {
    for (const auto& [nid, pr] : prs_) {
        if (nid != id_) sendAppend(nid);
    }
}

void Raft::bcastHeartbeat(const std::string& context) {
    for (const auto& [nid, pr] : prs_) {
        if (nid != id_) sendHeartbeat(nid, context);
    }
}

bool Raft::appendEntries(std::vector<Entry> entries) {
    Index last = log_.lastIndex();
    for (size_t i = 0; i < entries.size(); ++i) {
        entries[i].term = term_;
        entries[i].index = last + 1 + i;
    }
    last = log_.append(std::move(entries));
    if (!asyncPersist_ || bugs_.countUnpersistedSelf) {
        auto it = prs_.find(id_);
        if (it != prs_.end()) it->second.maybeUpdate(last);
    }
    maybeCommit();
    return true;
}

bool Raft::maybeCommit() {
    std::vector<Index> matches;
    for (const auto& [nid, pr] : prs_) {
        if (!pr.learner) matches.push_back(pr.match);
    }
    if (matches.empty()) return false;
    std::sort(matches.begin(), matches.end(), std::greater<>());
    Index quorumIndex = matches[quorum() - 1];
    Index before = log_.committed();
    // §5.4.2: only entries of the current term are committed by counting replicas.
    bool changed = log_.maybeCommit(quorumIndex, term_, bugs_.commitPriorTermByCount);
    if (changed && before < log_.committed() && committedEntryInCurrentTerm() &&
        !readsAwaitingCommit_.empty()) {
        auto waiting = std::move(readsAwaitingCommit_);
        readsAwaitingCommit_.clear();
        for (const auto& m : waiting)
            handleReadIndex(m);
    }
    return changed;
}

// ---- public API ----

ProposeResult Raft::propose(std::string data) {
    std::vector<std::string> batch;
    batch.push_back(std::move(data));
    return propose(std::move(batch));
}

ProposeResult Raft::propose(std::vector<std::string> batch) {
    if (role_ == Role::Leader && leadTransferee_ != kNone) return ProposeResult::TransferInProgress;
    if (role_ != Role::Leader && lead_ == kNone) return ProposeResult::NoLeader;
    Message m;
    m.type = MessageType::Propose;
    m.entries.reserve(batch.size());
    for (auto& data : batch)
        m.entries.push_back(Entry{0, 0, EntryType::Normal, std::move(data)});
    step(m);
    return role_ == Role::Leader ? ProposeResult::Accepted : ProposeResult::Forwarded;
}

ProposeResult Raft::proposeConfChange(const ConfChange& cc) {
    if (cc.type == ConfChange::Type::Update && role_ != Role::Leader) {
        // A member publishing its own attributes: forwarded to the leader like any proposal.
        if (lead_ == kNone || cc.node != id_) return ProposeResult::NoLeader;
        Message m;
        m.type = MessageType::Propose;
        m.entries.push_back(Entry{0, 0, EntryType::ConfChange, cc.encode()});
        step(m);
        return ProposeResult::Forwarded;
    }
    // Membership changes are proposed at the leader only (the server routes them there).
    if (role_ != Role::Leader) return ProposeResult::NoLeader;
    if (leadTransferee_ != kNone) return ProposeResult::TransferInProgress;
    if (pendingConfIndex_ > log_.applied()) return ProposeResult::ConfChangePending;
    auto it = prs_.find(cc.node);
    bool exists = it != prs_.end();
    switch (cc.type) {
        case ConfChange::Type::AddVoter:
            if (exists && !it->second.learner) return ProposeResult::NotMember;
            break;
        case ConfChange::Type::AddLearner:
            if (exists) return ProposeResult::NotMember;
            break;
        case ConfChange::Type::Remove:
            if (!exists) return ProposeResult::NotMember;
            if (!it->second.learner && voterCount() == 1) return ProposeResult::NotMember;
            break;
        case ConfChange::Type::Update:
            if (!exists) return ProposeResult::NotMember;
            break;
    }
    Message m;
    m.type = MessageType::Propose;
    m.entries.push_back(Entry{0, 0, EntryType::ConfChange, cc.encode()});
    step(m);
    return ProposeResult::Accepted;
}

ProposeResult Raft::readIndex(std::string context) {
    if (role_ != Role::Leader && lead_ == kNone) return ProposeResult::NoLeader;
    Message m;
    m.type = MessageType::ReadIndex;
    m.context = std::move(context);
    step(m);
    return role_ == Role::Leader ? ProposeResult::Accepted : ProposeResult::Forwarded;
}

void Raft::transferLeadership(NodeId target) {
    Message m;
    m.type = MessageType::TransferLeader;
    m.context = std::to_string(target);
    step(m);
}

ConfState Raft::applyConfChange(const ConfChange& cc) {
    switch (cc.type) {
        case ConfChange::Type::AddVoter: {
            auto [it, added] = prs_.try_emplace(cc.node);
            if (added) it->second.next = log_.lastIndex() + 1;
            it->second.learner = false;
            break;
        }
        case ConfChange::Type::AddLearner: {
            auto [it, added] = prs_.try_emplace(cc.node);
            if (added) {
                it->second.next = log_.lastIndex() + 1;
                it->second.learner = true;
            }
            break;
        }
        case ConfChange::Type::Remove:
            prs_.erase(cc.node);
            if (cc.node == leadTransferee_) abortTransfer();
            break;
        case ConfChange::Type::Update:
            break;
    }
    if (role_ == Role::Leader) {
        if (prs_.find(id_) == prs_.end() || prs_.at(id_).learner) {
            // The leader removed itself: it steps down once the change applies (thesis §4.2.2).
            becomeFollower(term_, kNone);
        } else if (maybeCommit()) {
            bcastAppend();
        }
    }
    return confState();
}

void Raft::reportSnapshot(NodeId node, bool ok) {
    auto it = prs_.find(node);
    if (it == prs_.end() || it->second.state != Progress::State::Snapshot) return;
    if (!ok) it->second.pendingSnapshot = 0;
    it->second.becomeProbe();
    it->second.probeSent = true;  // wait for the next heartbeat answer
}

bool Raft::hasReady() const {
    bool toPersist = asyncPersist_ ? log_.hasUnhandedEntries() : !log_.unstableEntries().empty();
    return !msgs_.empty() || !readStates_.empty() || toPersist ||
           log_.unstableSnapshot().has_value() || log_.hasNextCommittedEntries() ||
           hardState() != prevHard_ || SoftState{lead_, role_} != prevSoft_;
}

Ready Raft::ready() {
    Ready rd;
    SoftState soft{lead_, role_};
    if (soft != prevSoft_) rd.softState = soft;
    HardState hard = hardState();
    if (hard != prevHard_) rd.hardState = hard;
    rd.snapshot = log_.unstableSnapshot();
    rd.entries = asyncPersist_ ? log_.unhandedEntries() : log_.unstableEntries();
    rd.committedEntries = log_.nextCommittedEntries();
    rd.messages = std::move(msgs_);
    msgs_.clear();
    rd.readStates = std::move(readStates_);
    readStates_.clear();
    rd.mustSync = !rd.entries.empty() ||
                  (rd.hardState && (hard.term != prevHard_.term || hard.vote != prevHard_.vote));
    return rd;
}

void Raft::advance(const Ready& rd) {
    if (rd.softState) prevSoft_ = *rd.softState;
    if (rd.hardState) prevHard_ = *rd.hardState;
    if (rd.snapshot) {
        log_.stableSnapTo(rd.snapshot->meta.index);
        if (rd.snapshot->meta.index > log_.applied()) log_.appliedTo(rd.snapshot->meta.index);
    }
    if (!rd.entries.empty()) {
        if (asyncPersist_) {
            log_.handedTo(rd.entries.back().index);
        } else {
            log_.stableTo(rd.entries.back().index, rd.entries.back().term);
        }
    }
    if (!rd.committedEntries.empty()) log_.appliedTo(rd.committedEntries.back().index);
}

void Raft::persisted(Index index, Term term) {
    if (!asyncPersist_) return;
    log_.stableTo(index, term);
    // The leader's own copy now counts; an entry replaced since does not.
    if (role_ != Role::Leader || log_.term(index) != term) return;
    auto it = prs_.find(id_);
    if (it != prs_.end() && it->second.maybeUpdate(index) && maybeCommit()) bcastAppend();
}

void Raft::checkInvariants() const {
    COORD_ASSERT(log_.committed() <= log_.lastIndex(), "commit beyond log", id_, log_.committed(),
                 log_.lastIndex());
    COORD_ASSERT(log_.applied() <= log_.committed(), "applied beyond commit", id_, log_.applied(),
                 log_.committed());
    COORD_ASSERT(role_ != Role::Leader || lead_ == id_, "leader does not lead itself", id_, lead_);
    COORD_ASSERT(role_ != Role::Candidate || vote_ == id_, "candidate did not vote for itself", id_,
                 vote_);
    if (role_ == Role::Leader) {
        for (const auto& [nid, pr] : prs_) {
            COORD_ASSERT(pr.match <= log_.lastIndex(), "follower match beyond leader log", nid,
                         pr.match, log_.lastIndex());
        }
    }
}

// ---- encodings and names ----

std::string ConfChange::encode() const {
    std::string s(9, '\0');
    s[0] = static_cast<char>(type);
    for (int i = 0; i < 8; ++i)
        s[1 + i] = static_cast<char>((node >> (8 * i)) & 0xff);
    s += context;
    return s;
}

std::optional<ConfChange> ConfChange::decode(const std::string& data) {
    if (data.size() < 9 || static_cast<uint8_t>(data[0]) > static_cast<uint8_t>(Type::Update)) {
        return std::nullopt;
    }
    ConfChange cc;
    cc.type = static_cast<Type>(data[0]);
    cc.node = 0;
    for (int i = 0; i < 8; ++i)
        cc.node |= uint64_t{static_cast<uint8_t>(data[1 + i])} << (8 * i);
    cc.context = data.substr(9);
    return cc;
}

const char* roleName(Role r) {
    switch (r) {
        case Role::Follower:
            return "follower";
        case Role::PreCandidate:
            return "pre-candidate";
        case Role::Candidate:
            return "candidate";
        case Role::Leader:
            return "leader";
    }
    return "?";
}

const char* messageTypeName(MessageType t) {
    static const char* names[] = {
        "Hup",       "Beat",          "Propose",        "PreVote",    "PreVoteResp",   "Vote",
        "VoteResp",  "Append",        "AppendResp",     "Heartbeat",  "HeartbeatResp", "Snap",
        "ReadIndex", "ReadIndexResp", "TransferLeader", "TimeoutNow", "SnapResp"};
    auto i = static_cast<size_t>(t);
    return i < std::size(names) ? names[i] : "?";
}

}  // namespace coord::raft
