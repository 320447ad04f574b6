// Value types of the Raft core: entries, messages, persistent state, snapshots and Ready.
//
// They are plain structs with no I/O; the server translates them to Cap'n Proto at its seam.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace coord::raft {

using NodeId = uint64_t;  // 0 means "none"
using Index = uint64_t;
using Term = uint64_t;

inline constexpr NodeId kNone = 0;

enum class EntryType : uint8_t { Normal, ConfChange };

struct Entry {
    Term term = 0;
    Index index = 0;
    EntryType type = EntryType::Normal;
    std::string data;

    bool operator==(const Entry&) const = default;
};

// A single-server membership change, carried in the data of a ConfChange entry. `context` is
// opaque to Raft: the server carries the member's name and addresses in it. Update changes no
// membership; it only replicates a new context for an existing member.
struct ConfChange {
    enum class Type : uint8_t { AddVoter, AddLearner, Remove, Update };
    Type type = Type::AddVoter;
    NodeId node = kNone;
    std::string context;

    std::string encode() const;
    static std::optional<ConfChange> decode(const std::string& data);
};

struct ConfState {
    std::vector<NodeId> voters;    // sorted
    std::vector<NodeId> learners;  // sorted
    bool operator==(const ConfState&) const = default;
};

struct HardState {
    Term term = 0;
    NodeId vote = kNone;
    Index commit = 0;
    bool operator==(const HardState&) const = default;
};

struct SnapshotMeta {
    Index index = 0;
    Term term = 0;
    ConfState conf;
    bool operator==(const SnapshotMeta&) const = default;
};

struct Snapshot {
    SnapshotMeta meta;
    std::string data;
    bool empty() const { return meta.index == 0; }
};

enum class MessageType : uint8_t {
    Hup,      // local: start an election
    Beat,     // local: leader sends heartbeats
    Propose,  // proposal (local, or forwarded by a follower to the leader)
    PreVote,
    PreVoteResp,
    Vote,
    VoteResp,
    Append,
    AppendResp,
    Heartbeat,
    HeartbeatResp,
    Snap,            // InstallSnapshot
    ReadIndex,       // local, or forwarded by a follower to the leader
    ReadIndexResp,   // leader → follower: the read index for a forwarded request
    TransferLeader,  // local, or forwarded to the leader
    TimeoutNow,      // leader → transfer target: campaign now
    SnapResp,        // follower → leader: bytes of a snapshot transfer received so far
};

const char* messageTypeName(MessageType t);

struct Message {
    MessageType type = MessageType::Hup;
    NodeId from = kNone;
    NodeId to = kNone;
    Term term = 0;
    Term logTerm = 0;  // Append: term of the entry at `index`; Vote: candidate's last term
    Index index = 0;   // Append: index preceding `entries`; Vote: candidate's last index
    std::vector<Entry> entries;
    Index commit = 0;
    bool reject = false;
    Index rejectHint = 0;  // AppendResp rejects: a hint where the logs may agree
    Term hintTerm = 0;     // AppendResp rejects: the follower's term at rejectHint
    // Snap: the snapshot's metadata and one chunk of its data, starting at snapOffset; snapLast
    // marks the final chunk; snapId names the transfer (a resumed transfer keeps its id).
    // SnapResp: index = snapshot index, snapOffset = bytes held, reject = chunk not usable.
    std::optional<Snapshot> snapshot;
    uint64_t snapOffset = 0;
    uint64_t snapId = 0;
    bool snapLast = false;
    std::string context;  // ReadIndex request context; "transfer" on forced campaigns
};

enum class Role : uint8_t { Follower, PreCandidate, Candidate, Leader };
const char* roleName(Role r);

struct SoftState {
    NodeId leader = kNone;
    Role role = Role::Follower;
    bool operator==(const SoftState&) const = default;
};

struct ReadState {
    Index index = 0;  // serve the read once this index has been applied
    std::string context;
};

// Everything the application must do after a step, in this order: persist `snapshot`,
// `entries` and `hardState` (fsync when mustSync), then send `messages`, then apply
// `committedEntries`, then call advance().
struct Ready {
    std::optional<SoftState> softState;
    std::optional<HardState> hardState;
    std::optional<Snapshot> snapshot;
    std::vector<Entry> entries;
    std::vector<Entry> committedEntries;
    std::vector<Message> messages;
    std::vector<ReadState> readStates;
    bool mustSync = false;
};

}  // namespace coord::raft
