#include <catch2/catch.hpp>

#include <set>

#include "tests/kv/helpers.h"

using namespace coord::kv;
using coord::kv::test::prefixOf;
using coord::kv::test::rangeOf;
using coord::kv::test::StoreFixture;

TEST_CASE("a new store starts at revision 1 and each write request adds one", "[kv]") {
    StoreFixture f;
    CHECK(f.s().currentRevision() == 1);
    CHECK(f.put("a", "1") == 2);
    CHECK(f.put("b", "1") == 3);
    CHECK(f.s().currentRevision() == 3);
}

TEST_CASE("a key carries create and mod revisions, a version and a lease", "[kv]") {
    StoreFixture f;
    f.put("k", "v1");
    f.put("other", "x");
    f.put("k", "v2");
    auto kv = f.s().get("k");
    REQUIRE(kv);
    CHECK(kv->value == "v2");
    CHECK(kv->createRevision == 2);
    CHECK(kv->modRevision == 4);
    CHECK(kv->version == 2);
    CHECK(kv->lease == 0);
}

TEST_CASE("deleting a key ends its generation and re-creating starts version 1 again", "[kv]") {
    StoreFixture f;
    f.put("k", "a");
    f.put("k", "b");
    int64_t delRev = f.del("k");
    CHECK(delRev == 4);
    CHECK_FALSE(f.s().get("k"));
    int64_t rev = f.put("k", "c");
    auto kv = f.s().get("k");
    REQUIRE(kv);
    CHECK(kv->version == 1);
    CHECK(kv->createRevision == rev);
}

TEST_CASE("a delete that removes nothing does not add a revision", "[kv]") {
    StoreFixture f;
    f.put("a", "1");
    auto r = f.s().deleteRange("missing");
    REQUIRE(r.ok());
    CHECK(r->deleted == 0);
    CHECK(r->revision == 2);
    CHECK(f.s().currentRevision() == 2);
}

TEST_CASE("reads at past revisions see the state of that revision", "[kv]") {
    StoreFixture f;
    int64_t r1 = f.put("k", "v1");  // 2
    int64_t r2 = f.put("k", "v2");  // 3
    int64_t r3 = f.del("k");        // 4
    int64_t r4 = f.put("k", "v3");  // 5
    f.put("j", "x");                // 6

    auto at = [&](int64_t rev) { return f.range(rangeOf("k", {}, rev)).kvs; };
    CHECK(at(1).empty());
    REQUIRE(at(r1).size() == 1);
    CHECK(at(r1)[0].value == "v1");
    CHECK(at(r1)[0].version == 1);
    CHECK(at(r2)[0].value == "v2");
    CHECK(at(r2)[0].version == 2);
    CHECK(at(r2)[0].modRevision == r2);
    CHECK(at(r3).empty());
    CHECK(at(r4)[0].value == "v3");
    CHECK(at(r4)[0].version == 1);
    CHECK(at(r4)[0].createRevision == r4);

    // A range at a past revision sees only the keys alive then.
    CHECK(f.keys(rangeOf("a", "z", r4)) == std::vector<std::string>{"k"});
    CHECK(f.keys(rangeOf("a", "z", r4 + 1)) == std::vector<std::string>{"j", "k"});
    CHECK(f.range(rangeOf("a", "z", r2)).count == 1);
}

TEST_CASE("a read beyond the current revision is refused with FutureRevision", "[kv]") {
    StoreFixture f;
    f.put("k", "v");
    auto r = f.s().range(rangeOf("k", {}, 3));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::FutureRevision);
    CHECK(r.error().revision == 2);
}

TEST_CASE("ranges: single key, key to range end, prefix, from-key and all keys", "[kv]") {
    StoreFixture f;
    for (const char* k : {"a", "b", "b/1", "b/2", "c", "d"})
        f.put(k, "v");
    using V = std::vector<std::string>;
    CHECK(f.keys(rangeOf("b")) == V{"b"});
    CHECK(f.keys(rangeOf("b", "c")) == V{"b", "b/1", "b/2"});
    CHECK(f.keys(prefixOf("b/")) == V{"b/1", "b/2"});
    CHECK(f.keys(rangeOf("c", kFromKey)) == V{"c", "d"});
    CHECK(f.keys(rangeOf(kFromKey, kFromKey)).size() == 6);
    CHECK(f.keys(rangeOf("x")).empty());
    CHECK(prefixEnd("a\xff") == "b");
    CHECK(prefixEnd("\xff\xff") == kFromKey);
}

TEST_CASE("limit returns the first keys with more and the total count", "[kv]") {
    StoreFixture f;
    for (int i = 0; i < 10; ++i)
        f.put("k" + std::to_string(i), "v");
    auto req = prefixOf("k");
    req.limit = 3;
    auto r = f.range(req);
    REQUIRE(r.kvs.size() == 3);
    CHECK(r.kvs[0].key == "k0");
    CHECK(r.kvs[2].key == "k2");
    CHECK(r.more);
    CHECK(r.count == 10);
    req.limit = 10;
    r = f.range(req);
    CHECK(r.kvs.size() == 10);
    CHECK_FALSE(r.more);
    // At a past revision too.
    req.limit = 2;
    req.revision = 5;
    r = f.range(req);
    CHECK(r.kvs.size() == 2);
    CHECK(r.more);
    CHECK(r.count == 4);
}

TEST_CASE("sort by every target in both orders", "[kv]") {
    StoreFixture f;
    f.put("a", "3");  // rev 2
    f.put("b", "1");  // rev 3
    f.put("c", "2");  // rev 4
    f.put("b", "9");  // rev 5: b is version 2, mod 5
    auto sorted = [&](SortTarget t, SortOrder o) {
        auto req = rangeOf("a", "z");
        req.sortTarget = t;
        req.sortOrder = o;
        std::string out;
        for (auto& kv : f.range(req).kvs)
            out += kv.key;
        return out;
    };
    CHECK(sorted(SortTarget::Key, SortOrder::Ascend) == "abc");
    CHECK(sorted(SortTarget::Key, SortOrder::Descend) == "cba");
    CHECK(sorted(SortTarget::Value, SortOrder::Ascend) == "cab");
    CHECK(sorted(SortTarget::Value, SortOrder::Descend) == "bac");
    CHECK(sorted(SortTarget::Version, SortOrder::Descend) == "bac");
    CHECK(sorted(SortTarget::Create, SortOrder::Descend) == "cba");
    CHECK(sorted(SortTarget::Mod, SortOrder::Ascend) == "acb");
    CHECK(sorted(SortTarget::Mod, SortOrder::Descend) == "bca");
    // A target other than the key with no order sorts ascending (etcd's rule).
    CHECK(sorted(SortTarget::Mod, SortOrder::None) == "acb");

    auto req = rangeOf("a", "z");
    req.sortTarget = SortTarget::Key;
    req.sortOrder = SortOrder::Descend;
    req.limit = 2;
    auto r = f.range(req);
    REQUIRE(r.kvs.size() == 2);
    CHECK(r.kvs[0].key == "c");
    CHECK(r.kvs[1].key == "b");
    CHECK(r.more);
}

TEST_CASE("keys-only and count-only reads", "[kv]") {
    StoreFixture f;
    f.put("a", "value-a");
    f.put("b", "value-b");
    auto req = rangeOf("a", "z");
    req.keysOnly = true;
    auto r = f.range(req);
    REQUIRE(r.kvs.size() == 2);
    CHECK(r.kvs[0].key == "a");
    CHECK(r.kvs[0].value.empty());
    CHECK(r.kvs[0].modRevision == 2);
    req.keysOnly = false;
    req.countOnly = true;
    r = f.range(req);
    CHECK(r.kvs.empty());
    CHECK(r.count == 2);
}

TEST_CASE("min and max create and mod revision filters", "[kv]") {
    StoreFixture f;
    f.put("a", "1");  // create 2
    f.put("b", "1");  // create 3
    f.put("c", "1");  // create 4
    f.put("a", "2");  // a mod 5
    using V = std::vector<std::string>;
    auto req = rangeOf("a", "z");
    req.minModRevision = 4;
    CHECK(f.keys(req) == V{"a", "c"});
    req = rangeOf("a", "z");
    req.maxModRevision = 3;
    CHECK(f.keys(req) == V{"b"});
    req = rangeOf("a", "z");
    req.minCreateRevision = 3;
    CHECK(f.keys(req) == V{"b", "c"});
    req = rangeOf("a", "z");
    req.maxCreateRevision = 3;
    CHECK(f.keys(req) == V{"a", "b"});
    req.limit = 1;
    auto r = f.range(req);
    CHECK(r.kvs.size() == 1);
    CHECK(r.more);
    CHECK(r.count == 3);
}

TEST_CASE("put returns the previous key-value on request and can keep value or lease", "[kv]") {
    StoreFixture f;
    REQUIRE(f.s().leaseGrant(7, 60).ok());
    PutRequest p{"k", "v1", 7};
    REQUIRE(f.s().write(p).ok());
    p = PutRequest{"k", "v2", 0, true};
    p.ignoreLease = true;
    auto r = f.s().write(p);
    REQUIRE(r.ok());
    auto& resp = std::get<PutResponse>(r.value());
    REQUIRE(resp.prevKv);
    CHECK(resp.prevKv->value == "v1");
    CHECK(f.s().get("k")->lease == 7);
    CHECK(f.s().get("k")->value == "v2");

    PutRequest keepValue{"k", "", 0};
    keepValue.ignoreValue = true;
    REQUIRE(f.s().write(keepValue).ok());
    CHECK(f.s().get("k")->value == "v2");
    CHECK(f.s().get("k")->lease == 0);

    PutRequest missing{"nope", "", 0};
    missing.ignoreValue = true;
    auto m = f.s().write(missing);
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().code == ErrorCode::KeyNotFound);
}

TEST_CASE("delete of a key, a range and a prefix returns the deleted key-values", "[kv]") {
    StoreFixture f;
    for (const char* k : {"a", "p/1", "p/2", "q"})
        f.put(k, std::string("v-") + k);
    DeleteRangeRequest d{"p/", prefixEnd("p/"), true};
    auto r = f.s().write(d);
    REQUIRE(r.ok());
    auto& resp = std::get<DeleteRangeResponse>(r.value());
    CHECK(resp.deleted == 2);
    REQUIRE(resp.prevKvs.size() == 2);
    CHECK(resp.prevKvs[1].value == "v-p/2");
    // Both deletes share one revision.
    CHECK(resp.revision == 6);
    CHECK(f.keys(rangeOf("a", "z")) == std::vector<std::string>{"a", "q"});
    auto all = f.s().deleteRange("a", "z");
    REQUIRE(all.ok());
    CHECK(all->deleted == 2);
}

TEST_CASE("limits: empty, oversized keys and values are refused with clear errors", "[kv]") {
    StoreFixture f;
    auto r = f.s().put("", "v");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::EmptyKey);
    r = f.s().put(std::string(kMaxKeyBytes + 1, 'k'), "v");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::KeyTooLarge);
    CHECK(f.s().put(std::string(kMaxKeyBytes, 'k'), "v").ok());
    r = f.s().put("k", std::string(f.options.maxValueBytes + 1, 'v'));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::ValueTooLarge);
    CHECK(r.error().message.find("limit") != std::string::npos);
    CHECK(f.s().put("k", std::string(f.options.maxValueBytes, 'v')).ok());
    auto g = f.s().range(rangeOf(""));
    REQUIRE_FALSE(g.ok());
    CHECK(g.error().code == ErrorCode::EmptyKey);
    // Refused requests leave no revision behind.
    CHECK(f.s().currentRevision() == 3);
}

TEST_CASE("a batch is applied in one transaction and records its last index", "[kv]") {
    StoreFixture f;
    std::vector<IndexedRequest> batch;
    batch.push_back({5, PutRequest{"a", "1"}});
    batch.push_back({6, PutRequest{"", "bad"}});
    batch.push_back({7, PutRequest{"b", "2"}});
    auto results = f.s().apply(batch);
    REQUIRE(results.size() == 3);
    CHECK(results[0].ok());
    CHECK_FALSE(results[1].ok());
    CHECK(results[2].ok());
    CHECK(std::get<PutResponse>(results[2].value()).revision == 3);
    CHECK(f.s().appliedIndex() == 7);

    // Replaying indexes at or below the applied index changes nothing.
    std::vector<IndexedRequest> again{{7, PutRequest{"b", "other"}}, {8, PutRequest{"c", "3"}}};
    results = f.s().apply(again);
    REQUIRE_FALSE(results[0].ok());
    CHECK(results[0].error().code == ErrorCode::AlreadyApplied);
    CHECK(results[1].ok());
    CHECK(f.s().get("b")->value == "2");
    CHECK(f.s().appliedIndex() == 8);
}

TEST_CASE("reopening a store keeps data, revisions, history and the applied index", "[kv]") {
    StoreFixture f;
    f.put("a", "1");
    f.put("a", "2");
    f.del("a");
    f.put("b", "1");
    f.reopen();
    CHECK(f.s().currentRevision() == 5);
    CHECK(f.s().appliedIndex() == 4);
    CHECK_FALSE(f.s().get("a"));
    CHECK(f.range(rangeOf("a", {}, 3)).kvs.at(0).value == "2");
    CHECK(f.put("c", "1") == 6);
}

TEST_CASE("a Reader sees one snapshot until refreshed", "[kv]") {
    StoreFixture f;
    f.put("k", "1");
    Reader reader(f.s());
    f.put("k", "2");
    CHECK(reader.get("k")->value == "1");
    CHECK(reader.range(rangeOf("k")).value().revision == 2);
    reader.refresh();
    CHECK(reader.get("k")->value == "2");
}

TEST_CASE("over quota, writes that add data fail with NoSpace while reads and deletes work",
          "[kv]") {
    StoreFixture f;
    f.options.quotaBytes = 256 * 1024;
    f.reopen();
    std::string value(4000, 'x');
    int written = 0;
    bool full = false;
    for (int i = 0; i < 1000 && !full; ++i) {
        auto r = f.s().put("k" + std::to_string(i), value);
        if (r.ok()) {
            ++written;
        } else {
            CHECK(r.error().code == ErrorCode::NoSpace);
            full = true;
        }
    }
    REQUIRE(full);
    REQUIRE(written > 10);
    CHECK(f.s().get("k0")->value == value);
    auto txn = f.s().txn(TxnRequest{{}, {RequestOp{PutRequest{"t", "v"}}}, {}});
    REQUIRE_FALSE(txn.ok());
    CHECK(txn.error().code == ErrorCode::NoSpace);
    auto del = f.s().deleteRange("k0", "k9");
    REQUIRE(del.ok());
    CHECK(del->deleted > 0);
    CHECK(f.s().leaseGrant(1, 10).error().code == ErrorCode::NoSpace);
}

TEST_CASE("a full LMDB map becomes NoSpace and the store keeps working", "[kv]") {
    StoreFixture f;
    f.options.mapSizeBytes = 1 << 20;
    f.options.quotaBytes = size_t{1} << 30;  // never reached: the map fills first
    f.reopen();
    std::string value(20000, 'y');
    bool full = false;
    for (int i = 0; i < 200 && !full; ++i) {
        auto r = f.s().put("k" + std::to_string(i), value);
        if (!r.ok()) {
            CHECK(r.error().code == ErrorCode::NoSpace);
            full = true;
        }
    }
    REQUIRE(full);
    CHECK(f.s().get("k0")->value == value);
    int64_t before = f.s().currentRevision();
    auto del = f.s().deleteRange("k0");
    REQUIRE(del.ok());
    CHECK(f.s().currentRevision() == before + 1);
}

TEST_CASE("NOSPACE is replicated state: stores of different sizes refuse the same writes",
          "[kv][quota]") {
    // Two replicas apply the same log; one has a tiny quota. Only the replicated alarm decides,
    // so their outcomes and states stay identical.
    StoreFixture small, large;
    small.options.quotaBytes = 1;
    small.reopen();
    CHECK(small.s().overQuota());
    CHECK_FALSE(large.s().overQuota());
    std::vector<IndexedRequest> log{
        {1, PutRequest{"a", "1"}},
        {2, AlarmRequest{AlarmRequest::Action::Activate, 7}},
        {3, PutRequest{"b", "2"}},
        {4, DeleteRangeRequest{"a", ""}},
        {5, AlarmRequest{AlarmRequest::Action::Deactivate, 0}},
        {6, PutRequest{"c", "3"}},
    };
    auto r1 = small.s().apply(log);
    auto r2 = large.s().apply(log);
    REQUIRE(r1.size() == r2.size());
    for (size_t i = 0; i < r1.size(); ++i) {
        INFO("entry " << i + 1);
        CHECK(r1[i].ok() == r2[i].ok());
    }
    CHECK(r1[0].ok());
    REQUIRE_FALSE(r1[2].ok());
    CHECK(r1[2].error().code == ErrorCode::NoSpace);
    CHECK(r1[3].ok());  // deletes still work under the alarm
    CHECK(r1[5].ok());  // and writes again once it is cleared
    CHECK(std::get<AlarmResponse>(r1[1].value()).noSpace == std::vector<uint64_t>{7});
    CHECK(std::get<AlarmResponse>(r1[4].value()).noSpace.empty());
    CHECK(small.s().currentRevision() == large.s().currentRevision());
    CHECK(small.s().noSpaceAlarms().empty());
    CHECK_FALSE(small.s().get("b").has_value());
    CHECK(large.s().get("c")->value == "3");
}

TEST_CASE("CORRUPT alarms are recorded apart from NOSPACE ones and block no write", "[kv][alarm]") {
    StoreFixture f;
    using Kind = AlarmRequest::Kind;
    std::vector<IndexedRequest> log{
        {1, AlarmRequest{AlarmRequest::Action::Activate, 7, Kind::Corrupt}},
        {2, AlarmRequest{AlarmRequest::Action::Activate, 9, Kind::NoSpace}},
        {3, AlarmRequest{AlarmRequest::Action::Activate, 8, Kind::Corrupt}},
        {4, AlarmRequest{AlarmRequest::Action::Deactivate, 9, Kind::NoSpace}},
        {5, PutRequest{"a", "1"}},
        {6, AlarmRequest{AlarmRequest::Action::Deactivate, 7, Kind::Corrupt}},
        {7, AlarmRequest{AlarmRequest::Action::Activate, 7, Kind::Corrupt}},
        {8, AlarmRequest{AlarmRequest::Action::Deactivate, 0, Kind::Corrupt}},
    };
    auto r = f.s().apply(log);
    REQUIRE(r.size() == log.size());
    for (const auto& one : r)
        REQUIRE(one.ok());
    auto alarms = [&](size_t i) { return std::get<AlarmResponse>(r[i].value()); };
    CHECK(alarms(0).corrupt == std::vector<uint64_t>{7});
    CHECK(alarms(0).noSpace.empty());
    CHECK(alarms(1).noSpace == std::vector<uint64_t>{9});
    CHECK(alarms(1).corrupt == std::vector<uint64_t>{7});  // each answer shows both kinds
    CHECK(alarms(2).corrupt == std::vector<uint64_t>{7, 8});
    CHECK(alarms(3).noSpace.empty());
    CHECK(alarms(3).corrupt == std::vector<uint64_t>{7, 8});
    CHECK(f.s().get("a")->value == "1");  // a CORRUPT alarm refuses nothing in the store
    CHECK(alarms(5).corrupt == std::vector<uint64_t>{8});
    CHECK(alarms(6).corrupt == std::vector<uint64_t>{7, 8});
    CHECK(alarms(7).corrupt.empty());  // member 0: every member's, of this kind
    auto more = f.s().apply(std::vector<IndexedRequest>{
        {9, AlarmRequest{AlarmRequest::Action::Activate, 3, Kind::Corrupt}}});
    REQUIRE(more.front().ok());
    f.reopen();
    CHECK(f.s().corruptAlarms() == std::vector<uint64_t>{3});
    CHECK(f.s().noSpaceAlarms().empty());
}

TEST_CASE("deleting and compacting brings a store back under its quota (pages are reused)",
          "[kv][quota]") {
    StoreFixture f;
    std::string value(4000, 'x');
    for (int i = 0; i < 300; ++i)
        f.put("k" + std::to_string(i), value);
    size_t full = f.s().liveBytes();
    f.del("k", "l");
    REQUIRE(f.s().compact(f.s().currentRevision()).ok());
    for (int i = 0; i < 1000 && f.s().compactionPending(); ++i)
        f.s().compactStep(10000);
    // Churn a few transactions so the freed pages are no longer held for older snapshots.
    for (int i = 0; i < 3; ++i)
        f.put("churn", std::to_string(i));
    CHECK(f.s().liveBytes() < full / 2);
    CHECK(f.s().usedBytes() >= full);  // the file keeps its high-water mark
}

TEST_CASE("a range larger than the response bound is cut, with more and truncated", "[kv]") {
    StoreFixture f;
    // Each key costs its 2 bytes, 1,000 bytes of value and 64 of overhead: 1,066; four fit.
    f.options.maxResponseBytes = 5000;
    f.reopen();
    for (int i = 0; i < 10; ++i)
        f.put("k" + std::to_string(i), std::string(1000, static_cast<char>('a' + i)));

    auto r = f.range(prefixOf("k"));
    REQUIRE(r.kvs.size() == 4);
    CHECK(r.kvs[3].key == "k3");
    CHECK(r.kvs[3].value == std::string(1000, 'd'));
    CHECK(r.more);
    CHECK(r.truncated);
    CHECK(r.count == 10);

    // The rest, from the key after the last one, at the same revision.
    auto next = prefixOf("k", r.revision);
    next.key = r.kvs.back().key + '\0';
    auto r2 = f.range(next);
    REQUIRE(r2.kvs.size() == 4);
    CHECK(r2.kvs[0].key == "k4");

    // A limit that ends the result first is not a cut.
    auto limited = prefixOf("k");
    limited.limit = 3;
    r = f.range(limited);
    CHECK(r.kvs.size() == 3);
    CHECK(r.more);
    CHECK_FALSE(r.truncated);
    limited.limit = 4;
    r = f.range(limited);
    CHECK(r.kvs.size() == 4);
    CHECK_FALSE(r.truncated);
    limited.limit = 6;
    r = f.range(limited);
    CHECK(r.kvs.size() == 4);
    CHECK(r.truncated);

    // Keys alone fit.
    auto keys = prefixOf("k");
    keys.keysOnly = true;
    r = f.range(keys);
    CHECK(r.kvs.size() == 10);
    CHECK_FALSE(r.more);
    CHECK_FALSE(r.truncated);

    // Many keys: even keys alone are cut (69 bytes each, so 72 of them), and read on in parts
    // that together hold every key once.
    for (int i = 0; i < 200; ++i)
        f.put("m" + std::to_string(1000 + i), "v");
    auto many = prefixOf("m");
    many.keysOnly = true;
    r = f.range(many);
    CHECK(r.kvs.size() == 72);
    CHECK(r.truncated);
    CHECK(r.count == 200);
    std::set<std::string> all;
    for (int part = 0; part < 10; ++part) {
        for (const auto& kv : r.kvs)
            all.insert(kv.key);
        if (!r.truncated) break;
        many.key = r.kvs.back().key + '\0';
        many.revision = r.revision;
        r = f.range(many);
    }
    CHECK(all.size() == 200);

    // Sorted by something else than the key: cut after sorting (the newest four).
    auto sorted = prefixOf("k");
    sorted.sortTarget = SortTarget::Mod;
    sorted.sortOrder = SortOrder::Descend;
    r = f.range(sorted);
    REQUIRE(r.kvs.size() == 4);
    CHECK(r.kvs[0].key == "k9");
    CHECK(r.kvs[3].key == "k6");
    CHECK(r.truncated);

    // A key larger than the whole bound still comes, alone, so a reader always advances.
    f.put("k0", std::string(8000, 'z'));
    r = f.range(prefixOf("k"));
    REQUIRE(r.kvs.size() == 1);
    CHECK(r.kvs[0].value.size() == 8000);
    CHECK(r.truncated);
}

TEST_CASE("the ranges of one txn share the response bound", "[kv]") {
    StoreFixture f;
    f.options.maxResponseBytes = 5000;
    f.reopen();
    for (int i = 0; i < 10; ++i)
        f.put("k" + std::to_string(i), std::string(1000, 'v'));
    TxnRequest t;
    t.success.push_back(RequestOp{prefixOf("k")});
    t.success.push_back(RequestOp{prefixOf("k")});
    auto r = f.s().txn(t);
    REQUIRE(r.ok());
    REQUIRE(r->responses.size() == 2);
    const auto& first = std::get<RangeResponse>(r->responses[0].op);
    const auto& second = std::get<RangeResponse>(r->responses[1].op);
    CHECK(first.kvs.size() == 4);
    CHECK(first.truncated);
    // The bound is spent: the second range returns its first key only.
    CHECK(second.kvs.size() == 1);
    CHECK(second.truncated);
    CHECK(second.more);
}
