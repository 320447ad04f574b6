#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/bytes.h"
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

std::string walDir(StoreFixture& f) {
    return f.dir.file("wal");
}

// Persists a membership as the apply transaction would.
void saveConf(StoreFixture& f, RaftLogStorage& log, raft::ConfState conf,
              std::optional<kv::Members> members = std::nullopt) {
    kv::lmdb::Txn txn(f.s().env(), kv::lmdb::Txn::Mode::ReadWrite);
    log.persist(txn, {conf, members});
    txn.commit();
}
}  // namespace

TEST_CASE("the raft log appends, reads and truncates a conflicting suffix", "[kv][raftlog]") {
    StoreFixture f;
    RaftLogStorage log(f.s(), walDir(f));
    CHECK(log.empty());
    CHECK(log.firstIndex() == 1);
    CHECK(log.lastIndex() == 0);
    CHECK(log.term(0) == 0u);
    log.append(entries(1, 5, 1), raft::HardState{1, 2, 3}, true);
    CHECK_FALSE(log.empty());
    CHECK(log.lastIndex() == 5);
    CHECK(log.term(3) == 1u);
    CHECK_FALSE(log.term(6));
    auto got = log.entries(2, 5, UINT64_MAX);
    REQUIRE(got.size() == 3);
    CHECK(got[0].data == "e2");
    CHECK(log.entries(1, 6, 1).size() == 1);  // the size limit still returns one entry
    // A new leader's entries replace the conflicting suffix from index 4 on.
    log.append(entries(4, 4, 2), std::nullopt, true);
    CHECK(log.lastIndex() == 4);
    CHECK(log.term(4) == 2u);
    CHECK(log.entries(1, 5, UINT64_MAX).back().term == 2);
    // The replay sees the same log.
    RaftLogStorage again(f.s(), walDir(f));
    CHECK(again.lastIndex() == 4);
    CHECK(again.term(4) == 2u);
    CHECK(again.term(3) == 1u);
    CHECK(again.hardState() == raft::HardState{1, 2, 3});
}

TEST_CASE("the raft log keeps hard state, membership and entries across a reopen",
          "[kv][raftlog]") {
    StoreFixture f;
    {
        RaftLogStorage log(f.s(), walDir(f));
        log.append(entries(1, 3, 2), raft::HardState{2, 1, 3}, true);
        saveConf(f, log, raft::ConfState{{1, 2}, {3}});
    }
    f.reopen();
    RaftLogStorage log(f.s(), walDir(f));
    CHECK(log.hardState() == raft::HardState{2, 1, 3});
    CHECK(log.confState() == raft::ConfState{{1, 2}, {3}});
    CHECK(log.lastIndex() == 3);
    CHECK(log.term(3) == 2u);
}

TEST_CASE("compaction drops log entries and a later snapshot read carries the store state",
          "[kv][raftlog]") {
    StoreFixture f;
    RaftLogStorage log(f.s(), walDir(f));
    log.append(entries(1, 10, 1), raft::HardState{1, 1, 10}, true);
    std::vector<kv::IndexedRequest> batch;
    for (raft::Index i = 1; i <= 6; ++i)
        batch.push_back({i, kv::PutRequest{"k", "v"}});
    f.s().apply(batch);
    log.compact(6, raft::ConfState{{1}, {}});
    CHECK(log.firstIndex() == 7);
    CHECK(log.term(6) == 1u);
    CHECK_FALSE(log.term(5));
    CHECK(log.entries(7, 11, UINT64_MAX).size() == 4);
    raft::Snapshot snap = log.snapshot();
    CHECK(snap.meta.index == 6);
    CHECK_FALSE(snap.data.empty());
    f.reopen();
    RaftLogStorage again(f.s(), walDir(f));
    CHECK(again.firstIndex() == 7);
    CHECK(again.lastIndex() == 10);
    CHECK(again.entries(7, 8, UINT64_MAX)[0].data == "e7");
}

TEST_CASE("the write-ahead log rotates, releases and cuts a torn tail", "[kv][raftlog][wal]") {
    coord::test::TempDir dir;
    std::string path = dir.file("wal");
    std::vector<std::pair<uint8_t, std::string>> seen;
    auto collect = [&](uint8_t type, std::string_view payload) {
        seen.emplace_back(type, std::string(payload));
        return uint64_t{std::stoull(std::string(payload))};
    };
    {
        kv::Wal wal(path, collect, 4096);
        CHECK(seen.empty());
        for (int i = 1; i <= 100; ++i) {
            wal.rotateIfFull([] { return std::vector<kv::Wal::Record>{{9, "0"}}; });
            wal.add(1, std::to_string(i) + std::string(100, ' '), static_cast<uint64_t>(i));
            wal.flush(i % 3 == 0);
        }
        CHECK(wal.segmentCount() > 2);
        size_t before = wal.segmentCount();
        wal.release(50);
        CHECK(wal.segmentCount() < before);
        CHECK(wal.segmentCount() >= 2);
    }
    seen.clear();
    {
        kv::Wal wal(path, collect, 4096);
        // Every record from the oldest kept segment on, in order, ending with 100.
        REQUIRE_FALSE(seen.empty());
        CHECK(std::stoull(seen.back().second) == 100);
        uint64_t prev = 0;
        for (const auto& [type, payload] : seen) {
            if (type != 1) continue;
            uint64_t n = std::stoull(payload);
            if (prev != 0) CHECK(n == prev + 1);
            prev = n;
        }
        CHECK(std::stoull(seen.front().second) <= 51);
        wal.add(1, "101", 101);
        wal.add(1, "102", 102);
        wal.flush(true);
    }
    // Tear the last record: flip a byte inside it. The replay stops before it and cuts it off.
    std::vector<std::filesystem::path> segs;
    for (const auto& e : std::filesystem::directory_iterator(path))
        segs.push_back(e.path());
    std::sort(segs.begin(), segs.end());
    {
        std::fstream file(segs.back(), std::ios::in | std::ios::out | std::ios::binary);
        std::string data((std::istreambuf_iterator<char>(file)), {});
        size_t second = data.find("102");
        REQUIRE(second != std::string::npos);
        file.seekp(static_cast<std::streamoff>(second));
        file.put('7');
    }
    seen.clear();
    {
        kv::Wal wal(path, collect, 4096);
        CHECK(seen.back().second == "101");
    }
    seen.clear();
    {
        kv::Wal wal(path, collect, 4096);
        CHECK(seen.back().second == "101");  // stays cut: nothing after it is read again
    }
    // A bad record in an older segment is corruption, not a torn tail.
    {
        std::fstream file(segs.front(), std::ios::in | std::ios::out | std::ios::binary);
        file.seekp(12);
        file.put('#');
    }
    CHECK_THROWS_AS(kv::Wal(path, collect, 4096), kv::WalError);
}

TEST_CASE("a raft log replay refuses a gap that no snapshot covers", "[kv][raftlog][wal]") {
    StoreFixture f;
    {
        RaftLogStorage log(f.s(), walDir(f));
        log.append(entries(1, 3, 1), raft::HardState{1, 1, 3}, true);
    }
    {
        // Entries 7.. appended behind the log's back (as if segments were lost).
        kv::Wal wal(walDir(f), [](uint8_t, std::string_view) { return uint64_t{0}; });
        std::string rec;
        appendLe64(rec, 7);
        appendLe64(rec, 1);
        rec.push_back(static_cast<char>(raft::EntryType::Normal));
        wal.add(1, rec, 7);
        wal.flush(true);
    }
    CHECK_THROWS_AS(RaftLogStorage(f.s(), walDir(f)), kv::WalError);
}

TEST_CASE("applying entries and persisting the membership share one store transaction",
          "[kv][raftlog]") {
    StoreFixture f;
    RaftLogStorage log(f.s(), walDir(f));
    log.append(entries(1, 2, 1), raft::HardState{1, 1, 1}, true);
    std::vector<kv::IndexedRequest> batch{{1, kv::PutRequest{"a", "1"}}};
    f.s().apply(batch, [&](const kv::lmdb::Txn& txn) {
        log.persist(txn, {raft::ConfState{{1, 4}, {}}, std::nullopt});
    });
    f.reopen();
    RaftLogStorage again(f.s(), walDir(f));
    CHECK(again.lastIndex() == 2);
    CHECK(again.hardState().commit == 1);
    CHECK(again.confState() == raft::ConfState{{1, 4}, {}});
    CHECK(f.s().appliedIndex() == 1);
    CHECK(f.s().get("a")->value == "1");
}

TEST_CASE("a raft core runs on the raft log and recovers from it", "[kv][raftlog]") {
    StoreFixture f;
    {
        RaftLogStorage log(f.s(), walDir(f));
        log.bootstrap({1, 1, raft::ConfState{{1}, {}}}, raft::HardState{1, 0, 1}, {});
        raft::Config cfg;
        cfg.id = 1;
        cfg.storage = &log;
        cfg.applied = 1;
        raft::Raft r(cfg);
        raft::Message hup;
        hup.type = raft::MessageType::Hup;
        r.step(hup);
        r.propose("x");
        while (r.hasReady()) {
            auto rd = r.ready();
            log.append(rd.entries, rd.hardState, rd.mustSync);
            r.advance(rd);
        }
        CHECK(r.log().committed() == 3);
    }
    f.reopen();
    RaftLogStorage log(f.s(), walDir(f));
    raft::Config cfg;
    cfg.id = 1;
    cfg.storage = &log;
    cfg.applied = 1;
    raft::Raft r(cfg);
    CHECK(r.term() == 2);
    CHECK(r.log().committed() == 3);
    CHECK(r.log().lastIndex() == 3);
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
        RaftLogStorage log(leader.s(), walDir(leader));
        log.append(entries(1, 3, 7), raft::HardState{7, 1, 3}, true);
        saveConf(leader, log, raft::ConfState{{1, 2}, {}}, members);
        leader.put("k", "v");
    }
    RaftLogStorage flog(follower.s(), walDir(follower));
    flog.append(entries(1, 5, 6), raft::HardState{7, 2, 2}, true);
    saveConf(follower, flog, raft::ConfState{{1, 2}, {}});
    std::stringstream data;
    leader.s().exportSnapshot(data);
    CHECK(data.str().find("raft_conf_state") == std::string::npos);
    REQUIRE(follower.s().importSnapshot(data).ok());
    flog.installSnapshot(raft::SnapshotMeta{3, 7, raft::ConfState{{1, 2}, {}}});
    CHECK(flog.members() == members);
    CHECK(flog.firstIndex() == 4);
    CHECK(flog.lastIndex() == 3);  // the follower's own entries 1-5 (term 6) are gone
    follower.reopen();
    RaftLogStorage reopened(follower.s(), walDir(follower));
    // The follower's vote is its own, not the leader's.
    CHECK(reopened.hardState() == raft::HardState{7, 2, 2});
    CHECK(reopened.members() == members);
    CHECK(reopened.confState() == raft::ConfState{{1, 2}, {}});
    CHECK(reopened.lastIndex() == 3);
    CHECK(reopened.term(3) == 7u);

    // Member records survive their codec and refuse trailing or short bytes.
    auto one = kv::encodeMemberInfo(members.at(1));
    CHECK(kv::decodeMemberInfo(one) == members.at(1));
    CHECK_FALSE(kv::decodeMemberInfo(one + "x"));
    CHECK_FALSE(kv::decodeMemberInfo(one.substr(0, one.size() - 1)));
}

TEST_CASE("records of an unfinished batch are never replayed after newer records",
          "[kv][raftlog][wal]") {
    coord::test::TempDir dir;
    std::string path = dir.file("wal");
    std::vector<std::string> seen;
    auto collect = [&](uint8_t, std::string_view payload) {
        seen.emplace_back(payload);
        return uint64_t{0};
    };
    {
        kv::Wal wal(path, collect, 1 << 16);
        wal.add(1, "AAAA");
        wal.add(1, "BBBB");
        wal.add(1, "CCCC");
        wal.flush(true);
    }
    // A crash left B's header unwritten (zeros) while C reached the disk.
    std::filesystem::path seg;
    for (const auto& e : std::filesystem::directory_iterator(path))
        seg = e.path();
    {
        std::fstream file(seg, std::ios::in | std::ios::out | std::ios::binary);
        file.seekp(13);  // A: 8-byte header, type, 4-byte payload
        for (int i = 0; i < 8; ++i)
            file.put('\0');
    }
    {
        kv::Wal wal(path, collect, 1 << 16);
        CHECK(seen == std::vector<std::string>{"AAAA"});
        wal.add(1, "DDDD");  // the same length as B: C would line up right after it
        wal.flush(true);
    }
    seen.clear();
    kv::Wal wal(path, collect, 1 << 16);
    CHECK(seen == std::vector<std::string>{"AAAA", "DDDD"});
}

TEST_CASE("the log counts the bytes it holds and picks a compaction point by count and size",
          "[kv][raftlog]") {
    StoreFixture f;
    RaftLogStorage log(f.s(), walDir(f));
    auto es = entries(1, 10, 1);
    for (auto& e : es)
        e.data = std::string(100, 'x');
    log.append(es, raft::HardState{1, 1, 10}, true);
    CHECK(log.bytes() == 1000);
    // Keep 3 entries: compact up to 7. Keep 250 bytes: only 2 entries fit, compact up to 8.
    CHECK(log.compactionPoint(10, 3, 1 << 20) == 7);
    CHECK(log.compactionPoint(10, 100, 250) == 8);
    CHECK(log.compactionPoint(6, 2, 1 << 20) == 4);
    // A conflicting suffix replaced by shorter entries.
    log.append({raft::Entry{2, 9, raft::EntryType::Normal, "y"}}, std::nullopt, true);
    CHECK(log.bytes() == 801);
    std::vector<kv::IndexedRequest> batch;
    for (raft::Index i = 1; i <= 8; ++i)
        batch.push_back({i, kv::PutRequest{"k", "v"}});
    f.s().apply(batch);
    log.compact(log.compactionPoint(8, 3, 1 << 20), raft::ConfState{{1}, {}});
    CHECK(log.firstIndex() == 6);
    CHECK(log.bytes() == 301);
    RaftLogStorage again(f.s(), walDir(f));
    CHECK(again.bytes() == 301);
    CHECK(again.lastIndex() == 9);
}

TEST_CASE("a deferred compaction leaves its entries and old segments to whoever disposes of them",
          "[kv][raftlog]") {
    StoreFixture f;
    constexpr size_t kSegment = 4096;
    auto exists = [](const std::vector<std::string>& paths) {
        return std::count_if(paths.begin(), paths.end(),
                             [](const std::string& p) { return std::filesystem::exists(p); });
    };
    {
        RaftLogStorage log(f.s(), walDir(f), kSegment);
        for (raft::Index i = 1; i <= 60; ++i) {
            raft::Entry e{1, i, raft::EntryType::Normal, std::to_string(i) + std::string(200, 'x')};
            log.append({e}, raft::HardState{1, 1, i}, true);
        }
        REQUIRE(log.walSegments() > 3);
        for (raft::Index i = 1; i <= 55; ++i) {
            kv::PutRequest put;
            put.key = "k";
            put.value = "v";
            kv::IndexedRequest one{i, put};
            f.s().apply(std::span<const kv::IndexedRequest>(&one, 1));
        }

        size_t segmentsBefore = log.walSegments();
        auto left = log.compactDeferred(50, raft::ConfState{{1}, {}});
        // The log forgot them at once; the memory and the files wait for dispose().
        CHECK(log.firstIndex() == 51);
        CHECK_FALSE(log.term(49));
        CHECK(log.entries(51, 52, UINT64_MAX).size() == 1);
        CHECK(left.entries() == 50);
        REQUIRE_FALSE(left.segments().empty());
        CHECK(log.walSegments() == segmentsBefore - left.segments().size());
        std::vector<std::string> paths = left.segments();
        CHECK(exists(paths) == static_cast<long>(paths.size()));
        left.dispose();
        CHECK(exists(paths) == 0);
        CHECK(left.entries() == 0);
        CHECK(left.segments().empty());

        // Dropped without dispose(): cleaned up all the same.
        std::vector<std::string> more;
        {
            auto again = log.compactDeferred(55, raft::ConfState{{1}, {}});
            more = again.segments();
            CHECK(again.entries() == 5);
        }
        CHECK(exists(more) == 0);
        CHECK(log.firstIndex() == 56);
    }
    RaftLogStorage reopened(f.s(), walDir(f), kSegment);
    CHECK(reopened.firstIndex() == 56);
    CHECK(reopened.lastIndex() == 60);
    auto kept = reopened.entries(56, 61, UINT64_MAX);
    REQUIRE(kept.size() == 5);
    CHECK(kept.front().data == "56" + std::string(200, 'x'));
}
