// Raft: the consensus core as a pure state machine (Raft paper, Ongaro's thesis).
//
// No sockets, clocks, threads or disk: time enters through tick(), messages through step(),
// randomness through the PRNG in Config. Output leaves through ready(): state to persist,
// messages to send (only after persisting), committed entries to apply and read states. The
// application calls advance() when it has done all of that.
//
// Implemented: elections with randomized timeouts, pre-vote and check-quorum; log replication
// with batching, pipelining (bounded in-flight window), probe/replicate/snapshot progress and
// fast back-off; commit by counting replicas of current-term entries only (§5.4.2); ReadIndex
// (also forwarded from followers); snapshots (InstallSnapshot) and log compaction; single-server
// membership changes with learners; leadership transfer (TimeoutNow); proposal forwarding.
//
// Threading: not thread-safe; one owner thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "raft/log.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace coord::raft {

// Known Raft bugs that tests plant on purpose to prove the simulator finds them. All false in
// production.
struct PlantedBugs {
    bool voteWithoutLogCheck = false;     // grant votes without the §5.4.1 up-to-date check
    bool commitPriorTermByCount = false;  // commit earlier-term entries by counting (§5.4.2)
    bool keepConflictingEntries = false;  // followers do not truncate conflicting entries
    bool readIndexWithoutQuorum = false;  // leaders answer ReadIndex at once, unconfirmed
    bool countUnpersistedSelf = false;    // async persistence: a leader counts its own log
                                          // toward commit before it is on disk
};

struct Config {
    NodeId id = kNone;
    int electionTicks = 10;  // election timeout, in ticks (randomized in [e, 2e))
    int heartbeatTicks = 1;
    const Storage* storage = nullptr;
    // The last index the application applied before this start (0: nothing).
    Index applied = 0;
    uint64_t maxBytesPerMsg = 1 << 20;
    // InstallSnapshot sends the snapshot's data in chunks of at most this many bytes; a lost
    // chunk is resent from the follower's offset, not from the start.
    uint64_t snapshotChunkBytes = 1 << 20;
    size_t maxInflightMsgs = 256;
    bool preVote = true;
    bool checkQuorum = true;
    // Asynchronous persistence. The application may call advance() as soon as it has taken a
    // Ready's entries and hard state to persist (the next Ready no longer holds them) and
    // report them durable later, in order, with persisted(). Until then: a leader does not
    // count its own copy of an entry toward commit, committed entries are handed out for
    // applying only up to the last persisted index, and the application still sends a Ready's
    // messages only once that Ready is durable, except a leader's appends and heartbeats
    // (thesis §10.2.1). A snapshot in a Ready must be persisted before advance().
    bool asyncPersist = false;
    uint64_t seed = 1;  // election timeout jitter
    PlantedBugs bugs;
};

enum class ProposeResult {
    Accepted,            // appended to the leader's log (not yet committed)
    Forwarded,           // sent to the leader; may still be lost
    NoLeader,            // dropped: no known leader
    TransferInProgress,  // dropped: leadership is being transferred
    ConfChangePending,   // dropped: an earlier membership change is not applied yet
    NotMember,           // dropped: the change is invalid for the current membership
};
const char* proposeResultName(ProposeResult r);

struct Progress {
    enum class State { Probe, Replicate, Snapshot };
    Index match = 0;
    Index next = 1;
    State state = State::Probe;
    bool probeSent = false;                // Probe: one append in flight, wait for its answer
    Index pendingSnapshot = 0;             // Snapshot: index of the snapshot sent
    std::shared_ptr<const Snapshot> snap;  // Snapshot: the snapshot being sent
    uint64_t snapId = 0;                   // Snapshot: the transfer's id
    uint64_t snapOffset = 0;               // Snapshot: bytes the follower confirmed
    bool recentActive = false;             // heard from since the last check-quorum round
    bool learner = false;
    std::deque<Index> inflight;  // last index of each append in flight (Replicate)

    void becomeProbe();
    void becomeReplicate();
    void becomeSnapshot(Index snapIndex);
    bool maybeUpdate(Index n);
    bool maybeDecrTo(Index rejected, Index hint);
    bool paused(size_t maxInflight) const;
};

class Raft {
  public:
    explicit Raft(const Config& config);

    void tick();
    // Handles a message from a peer (or a local one: Hup, Beat, Propose, ReadIndex, ...).
    void step(const Message& m);

    ProposeResult propose(std::string data);
    // Proposes several entries as one batch: one log append and one message per follower.
    ProposeResult propose(std::vector<std::string> batch);
    ProposeResult proposeConfChange(const ConfChange& cc);
    // Requests a linearizable read; a ReadState with `context` appears in a later Ready.
    ProposeResult readIndex(std::string context);
    void transferLeadership(NodeId target);
    // A hint from the transport: the connection to `node` closed (its process likely died).
    // A follower that hears this of its leader stops honouring the leader's lease and campaigns
    // within a few ticks instead of a whole election timeout — the lowest-id remaining voter
    // first, the others two ticks apart, so they do not split the vote. Safety does not depend
    // on the hint; a wrong one costs at most pre-votes that the others refuse. A pre-vote round
    // begun on the hint is retried every two ticks until it wins or a leader is heard: the
    // others may hear of the loss later than this member does.
    void peerUnreachable(NodeId node);
    // Called by the application when it applies a ConfChange entry. Returns the new membership,
    // which the application persists alongside its applied state.
    ConfState applyConfChange(const ConfChange& cc);
    // The application reports whether sending a snapshot to `node` succeeded.
    void reportSnapshot(NodeId node, bool ok);

    bool hasReady() const;
    Ready ready();
    void advance(const Ready& rd);
    // Asynchronous persistence (Config::asyncPersist): every entry up to `index`, which has
    // term `term`, and the hard states handed out with them are on disk.
    void persisted(Index index, Term term);

    // Read-only views.
    NodeId id() const { return id_; }
    Term term() const { return term_; }
    NodeId leader() const { return lead_; }
    Role role() const { return role_; }
    NodeId vote() const { return vote_; }
    const RaftLog& log() const { return log_; }
    HardState hardState() const { return HardState{term_, vote_, log_.committed()}; }
    ConfState confState() const;
    const std::map<NodeId, Progress>& progress() const { return prs_; }

    // Asserts the core's internal invariants (crashes with the values when one is broken).
    void checkInvariants() const;

  private:
    using StepFn = void (Raft::*)(const Message&);

    void becomeFollower(Term term, NodeId lead);
    void becomePreCandidate();
    void becomeCandidate();
    void becomeLeader();
    void reset(Term term);
    void campaign(bool preVote, bool transfer);
    bool promotable() const;
    size_t quorum() const;
    size_t voterCount() const;
    void resetRandomizedElectionTimeout();

    void stepLeader(const Message& m);
    void stepCandidate(const Message& m);
    void stepFollower(const Message& m);

    void send(Message m);
    void sendAppend(NodeId to, bool sendIfEmpty = true);
    void sendHeartbeat(NodeId to, const std::string& context);
    void bcastAppend();
    void bcastHeartbeat(const std::string& context);
    bool maybeCommit();
    bool appendEntries(std::vector<Entry> entries);
    bool committedEntryInCurrentTerm() const;

    void handleAppend(const Message& m);
    void handleHeartbeat(const Message& m);
    void handleSnapshot(const Message& m);
    void handleSnapChunk(const Message& m);
    void sendSnapChunk(NodeId to, Progress& pr);
    void handleSnapResp(const Message& m, Progress& pr);
    void handleAppendResp(const Message& m, Progress& pr);
    void handleHeartbeatResp(const Message& m, Progress& pr);
    void handleReadIndex(const Message& m);
    void releaseReads(const std::string& context);
    bool quorumActive();
    void abortTransfer() { leadTransferee_ = kNone; }

    NodeId id_;
    Term term_ = 0;
    NodeId vote_ = kNone;
    NodeId lead_ = kNone;
    Role role_ = Role::Follower;
    RaftLog log_;
    std::map<NodeId, Progress> prs_;
    std::map<NodeId, bool> votes_;
    std::vector<Message> msgs_;
    std::vector<ReadState> readStates_;

    int electionTicks_;
    int heartbeatTicks_;
    int electionElapsed_ = 0;
    int heartbeatElapsed_ = 0;
    int randomizedElectionTimeout_ = 0;
    // Set by peerUnreachable while this member's leader is believed dead: a pre-vote round
    // that the others did not answer (they may not have noticed yet, and ignore candidates
    // while they do not) is retried every kHintRetryTicks instead of after a whole randomized
    // timeout. Pre-votes change no term, so a retry cannot disturb anyone. Cleared by reset().
    bool leaderGoneHint_ = false;
    static constexpr int kHintRetryTicks = 2;
    std::mt19937_64 rng_;
    uint64_t maxBytesPerMsg_;
    uint64_t snapshotChunkBytes_;
    uint64_t nextSnapId_ = 1;
    // Follower: the snapshot transfer in progress (metadata and the data received so far).
    std::optional<Snapshot> incomingSnap_;
    uint64_t incomingSnapId_ = 0;
    NodeId incomingSnapFrom_ = kNone;
    size_t maxInflight_;
    bool preVote_;
    bool checkQuorum_;
    PlantedBugs bugs_;
    bool asyncPersist_ = false;

    NodeId leadTransferee_ = kNone;
    Index pendingConfIndex_ = 0;

    struct PendingRead {
        std::string context;
        Index index;
        NodeId from;
        std::set<NodeId> acks;
    };
    std::deque<PendingRead> pendingReads_;
    std::vector<Message> readsAwaitingCommit_;  // until an entry of this term commits

    SoftState prevSoft_;
    HardState prevHard_;
};

}  // namespace coord::raft
