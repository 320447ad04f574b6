#include <catch2/catch.hpp>

#include <sstream>

#include "kv/raft_storage.h"
#include "raft/raft.h"
#include "tests/kv/helpers.h"

using namespace coord;
using coord::kv::RaftLogStorage;
using coord::kv::test::StoreFixture;

namespace {
std::vector<raft::Entry> entries(raft::Index from, raft::Index to, raft::Term term) {
    std::vector<raft::Entry> out;
    for (raft::Index i = from; i <= to; ++i) {
        out.push_back(raft::Entry{term, i, raft::EntryType::Normal, "e" + std::to_string(i)});
    }
    return out;
}
}  // namespace

TEST_CASE("the LMDB raft log appends, reads and truncates a conflicting suffix", "[kv][raftlog]") {
    StoreFixture f;
    RaftLogStorage log(f.s());
    CHECK(log.firstIndex() == 1);
    CHECK(log.lastIndex() == 0);
    CHECK(log.term(0) == 0u);
    log.save({entries(1, 5, 1), raft::HardState{1, 2, 3}, raft::ConfState{{1, 2, 3}, {}}});
    CHECK(log.lastIndex() == 5);
    CHECK(log.term(3) == 1u);
    CHECK_FALSE(log.term(6));
    auto got = log.entries(2, 5, UINT64_MAX);
    REQUIRE(got.size() == 3);
    CHECK(got[0].data == "e2");
    CHECK(log.entries(1, 6, 1).size() == 1);  // the size limit still returns one entry
    // A new leader's entries replace the conflicting suffix from index 4 on.
    log.save({entries(4, 4, 2), std::nullopt, std::nullopt});
    CHECK(log.lastIndex() == 4);
    CHECK(log.term(4) == 2u);
    CHECK(log.entries(1, 5, UINT64_MAX).back().term == 2);
}

TEST_CASE("the LMDB raft log keeps hard state, membership and entries across a reopen",
          "[kv][raftlog]") {
    StoreFixture f;
    {
        RaftLogStorage log(f.s());
        log.save({entries(1, 3, 2), raft::HardState{2, 1, 3}, raft::ConfState{{1, 2}, {3}}});
    }
    f.reopen();
    RaftLogStorage log(f.s());
    CHECK(log.hardState() == raft::HardState{2, 1, 3});
    CHECK(log.confState() == raft::ConfState{{1, 2}, {3}});
    CHECK(log.lastIndex() == 3);
    CHECK(log.term(3) == 2u);
}

TEST_CASE("compaction drops log entries and a later snapshot read carries the store state",
          "[kv][raftlog]") {
    StoreFixture f;
    RaftLogStorage log(f.s());
    log.save({entries(1, 10, 1), raft::HardState{1, 1, 10}, raft::ConfState{{1}, {}}});
    f.put("k", "v");
    log.compact(6, raft::ConfState{{1}, {}});
    CHECK(log.firstIndex() == 7);
    CHECK(log.term(6) == 1u);
    CHECK_FALSE(log.term(5));
    CHECK(log.entries(7, 11, UINT64_MAX).size() == 4);
    raft::Snapshot snap = log.snapshot();
    CHECK(snap.meta.index == 6);
    CHECK_FALSE(snap.data.empty());
    f.reopen();
    RaftLogStorage again(f.s());
    CHECK(again.firstIndex() == 7);
    CHECK(again.lastIndex() == 10);
}

TEST_CASE("one write transaction covers the applied batch and the raft log append",
          "[kv][raftlog]") {
    StoreFixture f;
    RaftLogStorage log(f.s());
    std::vector<kv::IndexedRequest> batch{{1, kv::PutRequest{"a", "1"}}};
    f.s().apply(batch, [&](const kv::lmdb::Txn& txn) {
        log.persist(txn, {entries(1, 2, 1), raft::HardState{1, 1, 1}, std::nullopt});
    });
    f.reopen();
    RaftLogStorage again(f.s());
    CHECK(again.lastIndex() == 2);
    CHECK(again.hardState().commit == 1);
    CHECK(f.s().appliedIndex() == 1);
    CHECK(f.s().get("a")->value == "1");
}

TEST_CASE("a raft core runs on the LMDB log and recovers from it", "[kv][raftlog]") {
    StoreFixture f;
    {
        RaftLogStorage log(f.s());
        log.save({{}, std::nullopt, raft::ConfState{{1}, {}}});
        raft::Config cfg;
        cfg.id = 1;
        cfg.storage = &log;
        raft::Raft r(cfg);
        raft::Message hup;
        hup.type = raft::MessageType::Hup;
        r.step(hup);
        r.propose("x");
        while (r.hasReady()) {
            auto rd = r.ready();
            log.save({rd.entries, rd.hardState, std::nullopt});
            r.advance(rd);
        }
        CHECK(r.log().committed() == 2);
    }
    f.reopen();
    RaftLogStorage log(f.s());
    raft::Config cfg;
    cfg.id = 1;
    cfg.storage = &log;
    raft::Raft r(cfg);
    CHECK(r.term() == 1);
    CHECK(r.log().committed() == 2);
    CHECK(r.log().lastIndex() == 2);
    auto ents = r.log().nextCommittedEntries();
    REQUIRE(ents.size() == 2);
    CHECK(ents[1].data == "x");
}

TEST_CASE("a snapshot carries the member registry but never the member's own Raft records",
          "[kv][raftlog][snapshot]") {
    StoreFixture leader;
    StoreFixture follower;
    kv::Members members{{1, {1, "n1", "127.0.0.1:1", "127.0.0.1:11"}},
                        {2, {2, "n2", "127.0.0.1:2", ""}}};
    {
        RaftLogStorage log(leader.s());
        log.save(
            {entries(1, 3, 7), raft::HardState{7, 1, 3}, raft::ConfState{{1, 2}, {}}, members});
        leader.put("k", "v");
    }
    RaftLogStorage flog(follower.s());
    flog.save({entries(1, 2, 7), raft::HardState{7, 2, 2}, raft::ConfState{{1, 2}, {}}});
    std::stringstream data;
    leader.s().exportSnapshot(data);
    CHECK(data.str().find("raft_hard_state") == std::string::npos);
    REQUIRE(follower.s().importSnapshot(data).ok());
    flog.installSnapshot(raft::SnapshotMeta{3, 7, raft::ConfState{{1, 2}, {}}});
    CHECK(flog.members() == members);
    follower.reopen();
    RaftLogStorage reopened(follower.s());
    // The follower's vote is its own, not the leader's.
    CHECK(reopened.hardState() == raft::HardState{7, 2, 2});
    CHECK(reopened.members() == members);
    CHECK(reopened.confState() == raft::ConfState{{1, 2}, {}});

    // Member records survive their codec and refuse trailing or short bytes.
    auto one = kv::encodeMemberInfo(members.at(1));
    CHECK(kv::decodeMemberInfo(one) == members.at(1));
    CHECK_FALSE(kv::decodeMemberInfo(one + "x"));
    CHECK_FALSE(kv::decodeMemberInfo(one.substr(0, one.size() - 1)));
}
