#include <catch2/catch.hpp>

#include <set>

#include "kv/codec.h"
#include "kv/lmdb.h"
#include "tests/kv/helpers.h"

using namespace coord::kv;
using coord::kv::test::prefixOf;
using coord::kv::test::rangeOf;
using coord::kv::test::StoreFixture;

namespace {
// Writes a history with overwrites and deletes: returns the revision after each step.
std::vector<int64_t> writeHistory(StoreFixture& f) {
    std::vector<int64_t> revs;
    revs.push_back(f.put("a", "a1"));  // 2
    revs.push_back(f.put("b", "b1"));  // 3
    revs.push_back(f.put("a", "a2"));  // 4
    revs.push_back(f.del("b"));        // 5
    revs.push_back(f.put("c", "c1"));  // 6
    revs.push_back(f.put("a", "a3"));  // 7
    revs.push_back(f.put("d", "d1"));  // 8
    revs.push_back(f.del("d"));        // 9
    return revs;
}
}  // namespace

TEST_CASE("after compact(rev), reads at rev and above work and below fail", "[kv][compact]") {
    StoreFixture f;
    writeHistory(f);
    auto before5 = f.range(rangeOf("a", "z", 5));
    REQUIRE(f.s().compact(5).ok());
    CHECK(f.s().compactedRevision() == 5);
    auto r = f.s().range(rangeOf("a", "z", 4));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::Compacted);
    CHECK(r.error().revision == 5);
    CHECK(f.range(rangeOf("a", "z", 5)).kvs == before5.kvs);
}

TEST_CASE("compacting again at or below the compacted revision, or in the future, fails",
          "[kv][compact]") {
    StoreFixture f;
    writeHistory(f);
    REQUIRE(f.s().compact(5).ok());
    CHECK(f.s().compact(5).error().code == ErrorCode::Compacted);
    CHECK(f.s().compact(3).error().code == ErrorCode::Compacted);
    CHECK(f.s().compact(100).error().code == ErrorCode::FutureRevision);
    CHECK(f.s().compact(9).ok());
}

TEST_CASE("physical compaction keeps every key's state as of the compacted revision",
          "[kv][compact]") {
    StoreFixture f;
    writeHistory(f);
    std::vector<RangeResponse> expected;
    for (int64_t rev = 6; rev <= 9; ++rev)
        expected.push_back(f.range(rangeOf("a", "z", rev)));
    REQUIRE(f.s().compact(6).ok());
    CHECK(f.s().compactionPending());
    size_t examined = 0;
    for (int i = 0; i < 100; ++i) {
        size_t n = f.s().compactStep(2);
        CHECK(n <= 2);
        if (n == 0) break;
        examined += n;
    }
    CHECK_FALSE(f.s().compactionPending());
    CHECK(examined == 4);  // the records of revisions 2..5; 6 itself is not below 6
    for (int64_t rev = 6; rev <= 9; ++rev) {
        CAPTURE(rev);
        CHECK(f.range(rangeOf("a", "z", rev)).kvs == expected[rev - 6].kvs);
    }
    // History below 6 is gone: a history read from 6 finds a's state (rev 4) no more, but reads
    // at 6 still return a = a2 because the newest revision at or below 6 is kept.
    CHECK(f.range(rangeOf("a", {}, 6)).kvs.at(0).value == "a2");
    CHECK(f.range(rangeOf("b", {}, 6)).kvs.empty());
    // The watch history from the compacted revision on is intact.
    std::vector<int64_t> seen;
    auto next = f.s().readHistory(
        6, 9, 100, false, [&](int64_t rev, std::span<const Event>) { seen.push_back(rev); });
    REQUIRE(next.ok());
    CHECK(seen == std::vector<int64_t>{6, 7, 8, 9});
}

TEST_CASE("compaction survives a reopen and resumes where it stopped", "[kv][compact]") {
    StoreFixture f;
    for (int i = 0; i < 50; ++i)
        f.put("k" + std::to_string(i % 5), std::to_string(i));
    int64_t rev = f.s().currentRevision();
    auto expected = f.range(prefixOf("k"));
    REQUIRE(f.s().compact(rev).ok());
    CHECK(f.s().compactStep(10) == 10);
    f.reopen();
    CHECK(f.s().compactedRevision() == rev);
    CHECK(f.s().compactionPending());
    while (f.s().compactStep(10) > 0) {
    }
    CHECK(f.range(prefixOf("k")).kvs == expected.kvs);
    CHECK(f.range(prefixOf("k", rev)).kvs == expected.kvs);
    // Only the five live revisions are left in history.
    int events = 0;
    REQUIRE(f.s()
                .readHistory(rev - 10, rev, 1000, false,
                             [&](int64_t, std::span<const Event> e) { events += int(e.size()); })
                .ok() == false);  // below the compacted revision
    REQUIRE(f.s()
                .readHistory(rev, rev, 1000, false,
                             [&](int64_t, std::span<const Event> e) { events += int(e.size()); })
                .ok());
    CHECK(events == 1);
}

TEST_CASE("hashKV agrees on the same history whatever the physical compaction progress",
          "[kv][compact][hash]") {
    StoreFixture a, b, other;
    writeHistory(a);
    writeHistory(b);
    // The same history but for one value.
    other.put("a", "a1");
    other.put("b", "b1");
    other.put("a", "a2*");
    other.del("b");
    other.put("c", "c1");
    other.put("a", "a3");
    other.put("d", "d1");
    other.del("d");
    auto hashAt = [](StoreFixture& f, int64_t rev) {
        auto h = f.s().hashKV(rev);
        INFO((h.ok() ? std::string() : h.error().message));
        REQUIRE(h.ok());
        CHECK(h->revision == (rev == 0 ? f.s().currentRevision() : rev));
        return *h;
    };
    std::vector<uint32_t> before;
    for (int64_t rev = 1; rev <= 9; ++rev) {
        before.push_back(hashAt(a, rev).hash);
        CHECK(hashAt(b, rev).hash == before.back());
        // From the changed write on, the history differs.
        if (rev >= 4) {
            CHECK(hashAt(other, rev).hash != before.back());
        } else {
            CHECK(hashAt(other, rev).hash == before.back());
        }
    }
    CHECK(hashAt(a, 0).hash == before.back());
    // Every revision adds to what is covered.
    CHECK(std::set<uint32_t>(before.begin(), before.end()).size() == before.size());

    // Compacted at 6 on both: one removes the superseded records, the other not yet.
    REQUIRE(a.s().compact(6).ok());
    REQUIRE(b.s().compact(6).ok());
    while (a.s().compactStep(1) > 0) {
    }
    REQUIRE_FALSE(a.s().compactionPending());
    REQUIRE(b.s().compactionPending());
    for (int64_t rev = 6; rev <= 9; ++rev) {
        auto h = hashAt(a, rev);
        CHECK(h.compactRevision == 6);
        CHECK(hashAt(b, rev).hash == h.hash);
    }
    // Below the compacted revision and above the head: the errors of a range.
    auto low = a.s().hashKV(5);
    REQUIRE_FALSE(low.ok());
    CHECK(low.error().code == ErrorCode::Compacted);
    auto high = a.s().hashKV(10);
    REQUIRE_FALSE(high.ok());
    CHECK(high.error().code == ErrorCode::FutureRevision);

    // A record changed on disk behind the store's back (a damaged or tampered file) shows.
    uint32_t intact = hashAt(b, 9).hash;
    {
        coord::kv::lmdb::Txn txn(b.s().env(), coord::kv::lmdb::Txn::Mode::ReadWrite);
        coord::kv::lmdb::Table rev(txn, "rev", 0);
        std::string key = coord::kv::detail::encodeRevKey({7, 0});  // a = a3
        auto record = rev.get(txn, key);
        REQUIRE(record.has_value());
        std::string damaged(*record);
        damaged.back() ^= 1;
        REQUIRE(rev.put(txn, key, damaged));
        txn.commit();
    }
    CHECK(hashAt(b, 9).hash != intact);
    CHECK(hashAt(b, 6).hash == hashAt(a, 6).hash);  // the damage is at revision 7
}
