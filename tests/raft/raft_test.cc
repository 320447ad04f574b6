// One test per claim of the Raft paper (Ongaro & Ousterhout) and Ongaro's thesis that the core
// implements, named with its section.
#include <catch2/catch.hpp>

#include <algorithm>

#include "tests/raft/harness.h"

using namespace coord::raft;
using coord::raft::test::Cluster;

namespace {
Message msg(MessageType type, NodeId from, NodeId to, Term term) {
    Message m;
    m.type = type;
    m.from = from;
    m.to = to;
    m.term = term;
    return m;
}
}  // namespace

// ---- §5.2 leader election ----

TEST_CASE("a follower that hears from no leader for an election timeout starts an election (§5.2)",
          "[raft][paper]") {
    Cluster c(3);
    for (int i = 0; i < 2 * c.base.electionTicks && c.r(1).role() == Role::Follower; ++i) {
        c.tick(1);
    }
    CHECK(c.r(1).role() == Role::PreCandidate);
    c.stabilize();
    CHECK(c.r(1).role() == Role::Leader);
    CHECK(c.r(1).term() == 1);
}

TEST_CASE("randomized election timeouts fall between T and 2T (§5.2)", "[raft][paper]") {
    for (NodeId seed = 1; seed <= 20; ++seed) {
        MemoryStorage s;
        s.setConfState(ConfState{{1, 2, 3}, {}});
        Config cfg;
        cfg.id = 1;
        cfg.storage = &s;
        cfg.seed = seed;
        cfg.preVote = false;
        Raft r(cfg);
        int ticks = 0;
        while (r.role() == Role::Follower && ticks < 100) {
            r.tick();
            ++ticks;
        }
        CHECK(ticks >= cfg.electionTicks);
        CHECK(ticks < 2 * cfg.electionTicks);
    }
}

TEST_CASE("a candidate with votes from a majority becomes leader (§5.2)", "[raft][paper]") {
    Cluster c(5);
    c.isolate(4);
    c.isolate(5);
    c.elect(1);  // 1, 2 and 3 are a majority of 5
    for (NodeId id : {2, 3})
        CHECK(c.r(id).leader() == 1);
}

TEST_CASE("a candidate without a majority does not become leader (§5.2)", "[raft][paper]") {
    Cluster c(3);
    c.isolate(1);
    Message hup;
    hup.type = MessageType::Hup;
    c.r(1).step(hup);
    c.stabilize();
    CHECK(c.r(1).role() == Role::PreCandidate);
    CHECK(c.r(1).term() == 0);  // pre-vote failed: the term did not move
}

TEST_CASE("each server grants at most one vote per term, first come first served (§5.2)",
          "[raft][paper]") {
    Cluster c(3);
    c.r(3).step(msg(MessageType::Vote, 1, 3, 1));
    c.r(3).step(msg(MessageType::Vote, 2, 3, 1));
    Ready rd = c.r(3).ready();
    REQUIRE(rd.messages.size() == 2);
    CHECK_FALSE(rd.messages[0].reject);
    CHECK(rd.messages[0].to == 1);
    CHECK(rd.messages[1].reject);
    CHECK(c.r(3).vote() == 1);
}

TEST_CASE("votes are persisted before they are granted (§5.2, Figure 2)", "[raft][paper]") {
    Cluster c(3);
    c.r(3).step(msg(MessageType::Vote, 1, 3, 1));
    Ready rd = c.r(3).ready();
    REQUIRE(rd.hardState);
    CHECK(rd.hardState->vote == 1);
    CHECK(rd.mustSync);
    // The grant travels in the same Ready, which the application sends only after persisting.
    REQUIRE(rd.messages.size() == 1);
    CHECK(rd.messages[0].type == MessageType::VoteResp);
}

TEST_CASE("a candidate steps down on AppendEntries from a current-term leader (§5.2)",
          "[raft][paper]") {
    Cluster c(3);
    c.isolate(1);
    c.base.preVote = false;
    c.restart(1);
    Message hup;
    hup.type = MessageType::Hup;
    c.r(1).step(hup);
    c.process(1);
    REQUIRE(c.r(1).role() == Role::Candidate);
    Message app = msg(MessageType::Append, 2, 1, c.r(1).term());
    c.r(1).step(app);
    CHECK(c.r(1).role() == Role::Follower);
    CHECK(c.r(1).leader() == 2);
}

TEST_CASE("a leader that sees a higher term steps down (§5.1)", "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.r(1).step(msg(MessageType::AppendResp, 2, 1, c.r(1).term() + 5));
    CHECK(c.r(1).role() == Role::Follower);
    CHECK(c.r(1).term() == 6);
}

// ---- §5.3 log replication ----

TEST_CASE("a leader commits an entry once a majority stores it and followers apply it (§5.3)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(3);
    CHECK(c.r(1).propose("x") == ProposeResult::Accepted);
    c.stabilize();
    CHECK(c.data(1) == std::vector<std::string>{"x"});
    CHECK(c.data(2) == std::vector<std::string>{"x"});
    CHECK(c.data(3).empty());
    c.heal();
    c.tickAll(2);
    CHECK(c.data(3) == std::vector<std::string>{"x"});
}

TEST_CASE("a follower rejects AppendEntries whose previous entry does not match (§5.3)",
          "[raft][paper]") {
    Cluster c(3);
    Message app = msg(MessageType::Append, 2, 1, 1);
    app.index = 5;
    app.logTerm = 1;
    app.entries.push_back(Entry{1, 6, EntryType::Normal, "x"});
    c.r(1).step(app);
    Ready rd = c.r(1).ready();
    REQUIRE(rd.messages.size() == 1);
    CHECK(rd.messages[0].reject);
    CHECK(rd.entries.empty());
}

TEST_CASE("a follower deletes conflicting entries and takes the leader's (§5.3)", "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(1);
    c.r(1).propose("lost-1");
    c.r(1).propose("lost-2");
    c.stabilize();
    c.elect(2);
    c.r(2).propose("kept");
    c.stabilize();
    c.heal();
    c.tickAll(3);
    CHECK(c.data(1) == std::vector<std::string>{"kept"});
    CHECK(c.r(1).log().lastIndex() == c.r(2).log().lastIndex());
}

TEST_CASE("conflict hints let a leader repair a far-behind follower in few round trips (§5.3)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(1);
    for (int i = 0; i < 50; ++i)
        c.r(1).propose("old" + std::to_string(i));
    c.stabilize();
    c.elect(2);
    for (int i = 0; i < 5; ++i)
        c.r(2).propose("new" + std::to_string(i));
    c.stabilize();
    c.heal();
    // Count the rejections node 1 sends while it is repaired.
    c.r(2).step(msg(MessageType::Beat, 0, 0, 0));
    int rejects = 0;
    for (int round = 0; round < 100; ++round) {
        for (auto& [id, m] : c.members)
            c.process(id);
        if (c.inFlight.empty()) break;
        auto batch = std::move(c.inFlight);
        c.inFlight.clear();
        for (auto& m : batch) {
            if (m.type == MessageType::AppendResp && m.reject) ++rejects;
            c.r(m.to).step(m);
        }
    }
    CHECK(rejects <= 2);
    CHECK(c.data(1).size() == 5);
}

// ---- §5.4 safety ----

TEST_CASE("a voter refuses a candidate whose log is less up to date (§5.4.1)", "[raft][paper]") {
    // Without check-quorum, so the vote request is not ignored as disruptive.
    Cluster c(3, 0, [](Config& cfg) { cfg.checkQuorum = false; });
    c.elect(1);
    c.r(1).propose("x");
    c.stabilize();
    Message vote = msg(MessageType::Vote, 3, 2, c.r(2).term() + 1);
    vote.index = 1;  // only the first (empty) entry
    vote.logTerm = 1;
    c.r(2).step(vote);
    Ready rd = c.r(2).ready();
    bool rejected = false;
    for (auto& m : rd.messages) {
        if (m.type == MessageType::VoteResp) rejected = m.reject;
    }
    CHECK(rejected);
}

TEST_CASE("a leader commits earlier-term entries only by committing one of its own (§5.4.2)",
          "[raft][paper]") {
    // One entry per message, so a follower can acknowledge the old entry before the new one.
    Cluster c(3, 0, [](Config& cfg) { cfg.maxBytesPerMsg = 1; });
    c.elect(1);
    c.isolate(1);
    c.r(1).propose("old");  // term 1, stored on node 1 only
    c.stabilize();
    const Index oldIndex = c.r(1).log().lastIndex();
    for (int i = 0; i < 2 * c.base.electionTicks; ++i)
        c.tick(1);  // check-quorum: steps down
    REQUIRE(c.r(1).role() == Role::Follower);
    c.inFlight.clear();
    c.heal();
    c.isolate(3);
    Message now;
    now.type = MessageType::TimeoutNow;  // node 1 campaigns for term 2 (node 2 votes for it)
    c.r(1).step(now);
    bool sawOldAck = false;
    c.deliverOneByOne([&](const Message& m) {
        if (m.type == MessageType::AppendResp && m.from == 2 && !m.reject && m.index == oldIndex) {
            sawOldAck = true;
            // A majority (1 and 2) stores the term-1 entry, yet it is not committed by counting.
            CHECK(c.r(1).log().committed() < oldIndex);
        }
    });
    CHECK(sawOldAck);
    REQUIRE(c.r(1).role() == Role::Leader);
    // Once the term-2 entry reaches the majority, both commit together.
    CHECK(c.r(1).log().committed() == oldIndex + 1);
    CHECK(c.data(1) == std::vector<std::string>{"old"});
}

TEST_CASE("a follower that restarts keeps its persisted log and catches up (§5.5)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.r(1).propose("a");
    c.stabilize();
    c.members.at(3).up = false;
    c.r(1).propose("b");
    c.stabilize();
    c.restart(3);
    CHECK(c.r(3).log().lastIndex() == 2);
    c.tickAll(2);
    CHECK(c.data(3) == std::vector<std::string>{"a", "b"});
}

// ---- §6 membership (thesis chapter 4) ----

TEST_CASE("a learner receives the log but neither votes nor counts for the quorum (thesis §4.2.1)",
          "[raft][paper]") {
    Cluster c(1, 1);  // voter 1, learner 2
    c.elect(1);
    c.r(1).propose("x");
    c.stabilize();
    CHECK(c.data(2) == std::vector<std::string>{"x"});
    // A learner never campaigns.
    c.tick(2, 100);
    c.stabilize();
    CHECK(c.r(2).role() == Role::Follower);
    CHECK(c.r(1).role() == Role::Leader);
}

TEST_CASE("a learner promoted to voter counts for the quorum (thesis §4.2.1)", "[raft][paper]") {
    Cluster c(1, 1);
    c.elect(1);
    REQUIRE(c.r(1).proposeConfChange(ConfChange{ConfChange::Type::AddVoter, 2, {}}) ==
            ProposeResult::Accepted);
    c.stabilize();
    CHECK(c.r(1).confState().voters == std::vector<NodeId>{1, 2});
    // With two voters, a proposal needs both: isolate 2 and nothing commits.
    c.isolate(2);
    c.r(1).propose("needs-two");
    c.stabilize();
    CHECK(c.data(1).empty());
    c.heal();
    c.tickAll(2);
    CHECK(c.data(1) == std::vector<std::string>{"needs-two"});
}

TEST_CASE("a new member is added as a learner, catches up, then is promoted (thesis §4.2.1)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    for (int i = 0; i < 10; ++i)
        c.r(1).propose("v" + std::to_string(i));
    c.stabilize();
    // Member 4 starts empty, knowing the membership it joins (as a server started with the
    // existing cluster's member list does).
    Cluster::Member m;
    m.storage = std::make_unique<MemoryStorage>();
    m.storage->setConfState(c.r(1).confState());
    c.members.emplace(4, std::move(m));
    c.restart(4);
    REQUIRE(c.r(1).proposeConfChange(ConfChange{ConfChange::Type::AddLearner, 4, {}}) ==
            ProposeResult::Accepted);
    c.stabilize();
    c.tickAll(3);
    CHECK(c.data(4).size() == 10);
    CHECK(c.r(1).proposeConfChange(ConfChange{ConfChange::Type::AddVoter, 4, {}}) ==
          ProposeResult::Accepted);
    c.stabilize();
    CHECK(c.r(4).confState().voters == std::vector<NodeId>{1, 2, 3, 4});
}

TEST_CASE("a membership change carries its context, Update replicates it without a change",
          "[raft]") {
    ConfChange cc{ConfChange::Type::Update, 0x0102030405060708ull, std::string("n4\0x", 4)};
    auto back = ConfChange::decode(cc.encode());
    REQUIRE(back.has_value());
    CHECK(back->type == ConfChange::Type::Update);
    CHECK(back->node == cc.node);
    CHECK(back->context == cc.context);
    CHECK_FALSE(ConfChange::decode(std::string(8, '\0')).has_value());
    CHECK_FALSE(ConfChange::decode(std::string(1, '\x09') + std::string(8, '\0')).has_value());

    Cluster c(3);
    c.elect(1);
    // A follower publishes its own attributes through the leader...
    REQUIRE(c.r(2).proposeConfChange(ConfChange{ConfChange::Type::Update, 2, "addr-2"}) ==
            ProposeResult::Forwarded);
    c.stabilize();
    bool seen = false;
    for (const auto& e : c.members.at(3).applied) {
        if (e.type != EntryType::ConfChange) continue;
        auto applied = ConfChange::decode(e.data);
        REQUIRE(applied.has_value());
        CHECK(applied->node == 2);
        CHECK(applied->context == "addr-2");
        seen = true;
    }
    CHECK(seen);
    CHECK(c.r(1).confState().voters == std::vector<NodeId>{1, 2, 3});
    // ...but may not update another member's, nor forward a real membership change.
    CHECK(c.r(2).proposeConfChange(ConfChange{ConfChange::Type::Update, 3, "x"}) ==
          ProposeResult::NoLeader);
    Message forged;
    forged.type = MessageType::Propose;
    forged.from = 2;
    forged.entries.push_back(
        Entry{0, 0, EntryType::ConfChange, ConfChange{ConfChange::Type::Remove, 3, ""}.encode()});
    c.r(1).step(forged);
    c.stabilize();
    CHECK(c.r(1).confState().voters == std::vector<NodeId>{1, 2, 3});
    CHECK(c.r(3).confState().voters == std::vector<NodeId>{1, 2, 3});
}

TEST_CASE("a lost connection to the leader starts an election within ticks, not a timeout",
          "[raft]") {
    Cluster c(3);
    c.elect(1);
    Term term = c.r(1).term();
    c.isolate(1);
    // Without the hint, a few ticks elect nobody (the timeout is 10-20 ticks)...
    c.tickAll(3);
    CHECK(c.r(2).role() == Role::Follower);
    CHECK(c.r(3).role() == Role::Follower);
    // ...with it, the lowest-id survivor campaigns first and wins without a split vote.
    c.r(2).peerUnreachable(1);
    c.r(3).peerUnreachable(1);
    c.tickAll(3);
    CHECK(c.r(2).role() == Role::Leader);
    CHECK(c.r(3).leader() == 2);
    CHECK(c.r(2).term() == term + 1);
}

TEST_CASE("a survivor that hears of the leader's loss late still lets the first one win fast",
          "[raft]") {
    Cluster c(3);
    c.elect(1);
    Term term = c.r(1).term();
    c.isolate(1);
    // Member 2 hears of the loss first and asks for pre-votes; member 3, still in the leader's
    // lease, ignores them.
    c.r(2).peerUnreachable(1);
    c.tickAll(1);
    CHECK(c.r(2).role() == Role::PreCandidate);
    CHECK(c.r(3).role() == Role::Follower);
    // Member 3 hears of it a tick later; member 2's next pre-vote round, two ticks after its
    // first rather than a whole election timeout, wins.
    c.r(3).peerUnreachable(1);
    c.tickAll(2);
    CHECK(c.r(2).role() == Role::Leader);
    CHECK(c.r(3).leader() == 2);
    CHECK(c.r(2).term() == term + 1);
}

TEST_CASE("a wrong unreachable hint does not disturb a leader the others still hear", "[raft]") {
    Cluster c(3);
    c.elect(1);
    Term term = c.r(1).term();
    c.r(3).peerUnreachable(1);
    c.tickAll(5);
    CHECK(c.r(1).role() == Role::Leader);
    CHECK(c.r(1).term() == term);
    CHECK(c.r(3).leader() == 1);
    // Hints about a non-leader, or to a leader, change nothing.
    c.r(2).peerUnreachable(3);
    c.r(1).peerUnreachable(2);
    c.tickAll(5);
    CHECK(c.r(1).role() == Role::Leader);
    CHECK(c.r(1).term() == term);
}

TEST_CASE("only one membership change may be pending at a time (thesis §4.1)", "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    CHECK(c.r(1).proposeConfChange(ConfChange{ConfChange::Type::AddLearner, 7, {}}) ==
          ProposeResult::Accepted);
    CHECK(c.r(1).proposeConfChange(ConfChange{ConfChange::Type::AddLearner, 8, {}}) ==
          ProposeResult::ConfChangePending);
}

TEST_CASE("a leader that removes itself steps down once the removal applies (thesis §4.2.2)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    REQUIRE(c.r(1).proposeConfChange(ConfChange{ConfChange::Type::Remove, 1, {}}) ==
            ProposeResult::Accepted);
    c.stabilize();
    CHECK(c.r(1).role() == Role::Follower);
    c.tickAll(30);
    NodeId lead = c.r(2).leader();
    CHECK((lead == 2 || lead == 3));
    c.r(lead).propose("after");
    c.stabilize();
    CHECK(c.data(2) == std::vector<std::string>{"after"});
}

// ---- §7 log compaction ----

TEST_CASE("a follower behind the leader's first log entry receives a snapshot (§7)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(3);
    for (int i = 0; i < 20; ++i)
        c.r(1).propose("v" + std::to_string(i));
    c.stabilize();
    Index applied = c.members.at(1).applied.back().index;
    c.members.at(1).storage->createSnapshot(applied, c.r(1).confState(),
                                            "state@" + std::to_string(applied));
    c.heal();
    c.tickAll(3);
    CHECK(c.members.at(3).storage->snapshot().meta.index == applied);
    CHECK(c.members.at(3).storage->snapshot().data == "state@" + std::to_string(applied));
    CHECK(c.r(3).log().committed() >= applied);
    c.r(1).propose("after");
    c.stabilize();
    CHECK(c.data(3) == std::vector<std::string>{"after"});
}

TEST_CASE("a snapshot travels in chunks and a lost chunk is resumed, not restarted (§7)",
          "[raft][paper]") {
    Cluster c(3, 0, [](Config& cfg) { cfg.snapshotChunkBytes = 4; });
    c.elect(1);
    c.isolate(3);
    for (int i = 0; i < 5; ++i)
        c.r(1).propose("v" + std::to_string(i));
    c.stabilize();
    Index applied = c.members.at(1).applied.back().index;
    const std::string state = "0123456789abcdefghij";  // 20 bytes: 5 chunks
    c.members.at(1).storage->createSnapshot(applied, c.r(1).confState(), state);
    c.heal();
    c.r(1).step(msg(MessageType::Beat, 0, 0, 0));
    int chunks = 0;
    bool dropped = false;
    std::vector<uint64_t> offsets;
    for (int round = 0; round < 200; ++round) {
        for (auto& [id, m] : c.members)
            c.process(id);
        if (c.inFlight.empty()) {
            if (c.members.at(3).storage->snapshot().meta.index == applied) break;
            c.r(1).step(msg(MessageType::Beat, 0, 0, 0));  // a heartbeat round resumes
            continue;
        }
        auto batch = std::move(c.inFlight);
        c.inFlight.clear();
        for (auto& m : batch) {
            if (m.type == MessageType::Snap) {
                ++chunks;
                offsets.push_back(m.snapOffset);
                if (m.snapOffset == 8 && !dropped) {
                    dropped = true;  // lose the third chunk once
                    continue;
                }
            }
            c.r(m.to).step(m);
        }
    }
    CHECK(dropped);
    CHECK(c.members.at(3).storage->snapshot().data == state);
    // 5 chunks plus the one resent; earlier chunks were never sent again.
    CHECK(chunks == 6);
    CHECK(std::count(offsets.begin(), offsets.end(), 0u) == 1);
    c.r(1).propose("after");
    c.stabilize();
    CHECK(c.data(3) == std::vector<std::string>{"after"});
}

// ---- §8 client interaction, ReadIndex (thesis §6.4) ----

TEST_CASE("proposals on a follower are forwarded to the leader (§8)", "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    CHECK(c.r(2).propose("via-follower") == ProposeResult::Forwarded);
    c.stabilize();
    CHECK(c.data(1) == std::vector<std::string>{"via-follower"});
}

TEST_CASE("proposals without a known leader are refused (§8)", "[raft][paper]") {
    Cluster c(3);
    CHECK(c.r(1).propose("x") == ProposeResult::NoLeader);
    CHECK(c.r(1).readIndex("r") == ProposeResult::NoLeader);
}

TEST_CASE("ReadIndex on the leader waits for a heartbeat round from a quorum (thesis §6.4)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(1);
    c.r(1).readIndex("r1");
    c.stabilize();
    CHECK(c.members.at(1).reads.empty());  // nobody confirmed the leadership
    c.heal();
    c.r(1).readIndex("r2");
    c.stabilize();
    REQUIRE(c.members.at(1).reads.size() == 2);
    CHECK(c.members.at(1).reads[1].context == "r2");
    CHECK(c.members.at(1).reads[1].index == c.r(1).log().committed());
}

TEST_CASE("ReadIndex at a follower is forwarded to the leader and answered (thesis §6.4)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.r(1).propose("x");
    c.stabilize();
    CHECK(c.r(3).readIndex("from-3") == ProposeResult::Forwarded);
    c.stabilize();
    REQUIRE(c.members.at(3).reads.size() == 1);
    CHECK(c.members.at(3).reads[0].index == c.r(1).log().committed());
}

TEST_CASE("a new leader serves ReadIndex only after committing an entry of its term (thesis §6.4)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.r(1).propose("x");
    c.stabilize();
    // Node 2 wins an election, then loses its links before its first entry replicates.
    Message now;
    now.type = MessageType::TimeoutNow;
    c.r(2).step(now);
    c.deliverOneByOne([&](const Message&) {
        if (c.r(2).role() == Role::Leader) c.isolate(2);
    });
    REQUIRE(c.r(2).role() == Role::Leader);
    REQUIRE(*c.r(2).log().term(c.r(2).log().committed()) < c.r(2).term());
    c.r(2).readIndex("early");
    c.stabilize();
    CHECK(c.members.at(2).reads.empty());
    c.heal();
    c.tickAll(2);
    REQUIRE(c.members.at(2).reads.size() == 1);
    CHECK(c.members.at(2).reads[0].index >= c.r(2).log().firstIndex());
    CHECK(*c.r(2).log().term(c.r(2).log().committed()) == c.r(2).term());
}

// ---- pre-vote and check-quorum (thesis §9.6, §6.2) ----

TEST_CASE("pre-vote: a partitioned member does not raise its term and cannot disrupt (thesis §9.6)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    Term term = c.r(1).term();
    c.isolate(3);
    c.tickAll(50);
    CHECK(c.r(3).term() == term);  // pre-votes failed, the term never moved
    c.heal();
    c.tickAll(5);
    CHECK(c.r(1).role() == Role::Leader);
    CHECK(c.r(1).term() == term);
}

TEST_CASE("check-quorum: a leader that cannot hear a quorum steps down (thesis §6.2)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(1);
    for (int i = 0; i < 2 * c.base.electionTicks; ++i)
        c.tick(1);
    CHECK(c.r(1).role() == Role::Follower);
}

TEST_CASE("check-quorum: members that hear from a leader ignore vote requests (thesis §4.2.3)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    Term term = c.r(2).term();
    Message vote = msg(MessageType::Vote, 3, 2, term + 1);
    vote.index = 100;
    vote.logTerm = 100;
    c.r(2).step(vote);
    CHECK(c.r(2).term() == term);
    CHECK(c.r(2).vote() == 1);
}

// ---- leadership transfer (thesis §3.10) ----

TEST_CASE("leadership transfer catches the target up and hands over with TimeoutNow (thesis §3.10)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(3);
    c.r(1).propose("x");
    c.stabilize();
    c.heal();
    c.r(1).transferLeadership(3);
    c.stabilize();
    CHECK(c.r(3).role() == Role::Leader);
    CHECK(c.r(1).leader() == 3);
    CHECK(c.data(3) == std::vector<std::string>{"x"});
}

TEST_CASE("proposals are refused while a leadership transfer is in progress (thesis §3.10)",
          "[raft][paper]") {
    Cluster c(3);
    c.elect(1);
    c.isolate(3);
    c.r(1).transferLeadership(3);
    CHECK(c.r(1).propose("x") == ProposeResult::TransferInProgress);
    // A transfer that does not finish within an election timeout is abandoned.
    c.tickAll(c.base.electionTicks);
    c.heal();
    c.stabilize();
    CHECK(c.r(1).propose("y") == ProposeResult::Accepted);
}

TEST_CASE("asynchronous persistence: a leader commits and applies only what is on its disk",
          "[raft]") {
    MemoryStorage storage;
    ConfState conf;
    conf.voters = {1};
    storage.setConfState(conf);
    Config c;
    c.id = 1;
    c.storage = &storage;
    c.asyncPersist = true;
    Raft r(c);
    // Hands a Ready to a (slow) disk: Raft reads the entries at once, nothing is durable yet.
    auto take = [&] {
        Ready rd = r.ready();
        storage.append(rd.entries);
        if (rd.hardState) storage.setHardState(*rd.hardState);
        r.advance(rd);
        return rd;
    };
    for (int i = 0; i < 100 && r.role() != Role::Leader; ++i) {
        r.tick();
        while (r.hasReady()) {
            Ready rd = take();
            if (!rd.entries.empty()) r.persisted(rd.entries.back().index, rd.entries.back().term);
        }
    }
    REQUIRE(r.role() == Role::Leader);
    Index before = r.log().committed();
    REQUIRE(r.propose("x") == ProposeResult::Accepted);
    Ready first = take();
    REQUIRE(first.entries.size() == 1);
    const Entry x = first.entries.back();
    // A lone voter's own copy is the quorum: not on disk, not committed, nothing to apply.
    CHECK(r.log().committed() == before);
    CHECK_FALSE(r.hasReady());
    REQUIRE(r.propose("y") == ProposeResult::Accepted);
    Ready second = take();
    REQUIRE(second.entries.size() == 1);  // x was handed out already
    CHECK(second.entries.front().index == x.index + 1);
    // x reaches the disk: it commits and is handed out for applying; y is not.
    r.persisted(x.index, x.term);
    CHECK(r.log().committed() == x.index);
    Ready applyX = take();
    REQUIRE(applyX.committedEntries.size() == 1);
    CHECK(applyX.committedEntries.front().data == "x");
    r.persisted(second.entries.front().index, second.entries.front().term);
    Ready applyY = take();
    REQUIRE(applyY.committedEntries.size() == 1);
    CHECK(applyY.committedEntries.front().data == "y");
}
