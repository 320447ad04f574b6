#include <catch2/catch.hpp>

#include "tests/kv/helpers.h"

using namespace coord::kv;
using coord::kv::test::prefixOf;
using coord::kv::test::rangeOf;
using coord::kv::test::StoreFixture;

namespace {

Compare cmp(Compare::Target target, Compare::Op op, std::string key, int64_t number,
            std::string value = {}, std::string rangeEnd = {}) {
    Compare c;
    c.target = target;
    c.op = op;
    c.key = std::move(key);
    c.number = number;
    c.value = std::move(value);
    c.rangeEnd = std::move(rangeEnd);
    return c;
}

RequestOp putOp(std::string k, std::string v, int64_t lease = 0) {
    return RequestOp{PutRequest{std::move(k), std::move(v), lease}};
}

bool succeeds(StoreFixture& f, Compare c) {
    auto r = f.s().txn(TxnRequest{{std::move(c)}, {}, {}});
    REQUIRE(r.ok());
    return r->succeeded;
}

}  // namespace

TEST_CASE("txn compares every target with every operator", "[kv][txn]") {
    StoreFixture f;
    REQUIRE(f.s().leaseGrant(9, 60).ok());
    f.put("k", "b", 9);  // create 2, mod 2, version 1
    f.put("k", "b", 9);  // mod 3, version 2
    using T = Compare::Target;
    using O = Compare::Op;
    struct Case {
        T target;
        int64_t equal;  // the key's current number
        std::string value;
    };
    for (const auto& c : {Case{T::Version, 2, ""}, Case{T::Create, 2, ""}, Case{T::Mod, 3, ""},
                          Case{T::Lease, 9, ""}}) {
        CAPTURE(static_cast<int>(c.target));
        CHECK(succeeds(f, cmp(c.target, O::Equal, "k", c.equal)));
        CHECK_FALSE(succeeds(f, cmp(c.target, O::Equal, "k", c.equal + 1)));
        CHECK(succeeds(f, cmp(c.target, O::NotEqual, "k", c.equal + 1)));
        CHECK_FALSE(succeeds(f, cmp(c.target, O::NotEqual, "k", c.equal)));
        CHECK(succeeds(f, cmp(c.target, O::Greater, "k", c.equal - 1)));
        CHECK_FALSE(succeeds(f, cmp(c.target, O::Greater, "k", c.equal)));
        CHECK(succeeds(f, cmp(c.target, O::Less, "k", c.equal + 1)));
        CHECK_FALSE(succeeds(f, cmp(c.target, O::Less, "k", c.equal)));
    }
    CHECK(succeeds(f, cmp(T::Value, O::Equal, "k", 0, "b")));
    CHECK_FALSE(succeeds(f, cmp(T::Value, O::Equal, "k", 0, "c")));
    CHECK(succeeds(f, cmp(T::Value, O::NotEqual, "k", 0, "c")));
    CHECK(succeeds(f, cmp(T::Value, O::Greater, "k", 0, "a")));
    CHECK_FALSE(succeeds(f, cmp(T::Value, O::Greater, "k", 0, "b")));
    CHECK(succeeds(f, cmp(T::Value, O::Less, "k", 0, "ba")));
    CHECK_FALSE(succeeds(f, cmp(T::Value, O::Less, "k", 0, "a")));
}

TEST_CASE("a missing key compares as version, create and mod 0", "[kv][txn]") {
    StoreFixture f;
    using T = Compare::Target;
    using O = Compare::Op;
    CHECK(succeeds(f, cmp(T::Version, O::Equal, "nope", 0)));
    CHECK(succeeds(f, cmp(T::Create, O::Equal, "nope", 0)));
    CHECK(succeeds(f, cmp(T::Mod, O::Equal, "nope", 0)));
    CHECK(succeeds(f, cmp(T::Lease, O::Equal, "nope", 0)));
    CHECK_FALSE(succeeds(f, cmp(T::Version, O::Greater, "nope", 0)));
    // A missing key has no value: only != holds.
    CHECK_FALSE(succeeds(f, cmp(T::Value, O::Equal, "nope", 0, "")));
    CHECK(succeeds(f, cmp(T::Value, O::NotEqual, "nope", 0, "x")));
}

TEST_CASE("a compare over a range holds only if every key in it satisfies it", "[kv][txn]") {
    StoreFixture f;
    f.put("r/1", "x");
    f.put("r/2", "x");
    f.put("r/2", "y");  // version 2
    using T = Compare::Target;
    using O = Compare::Op;
    CHECK(succeeds(f, cmp(T::Version, O::Greater, "r/", 0, {}, prefixEnd("r/"))));
    CHECK_FALSE(succeeds(f, cmp(T::Version, O::Equal, "r/", 1, {}, prefixEnd("r/"))));
    CHECK_FALSE(succeeds(f, cmp(T::Value, O::Equal, "r/", 0, "x", prefixEnd("r/"))));
    CHECK(succeeds(f, cmp(T::Create, O::Less, "r/", 5, {}, prefixEnd("r/"))));
    // The "nothing exists under this prefix" idiom: create < 1 over an empty range holds.
    CHECK(succeeds(f, cmp(T::Create, O::Less, "s/", 1, {}, prefixEnd("s/"))));
}

TEST_CASE("a txn runs then or else atomically at one revision", "[kv][txn]") {
    StoreFixture f;
    f.put("x", "1");  // rev 2
    TxnRequest t;
    t.compare = {cmp(Compare::Target::Value, Compare::Op::Equal, "x", 0, "1")};
    t.success = {putOp("a", "A"), putOp("b", "B"), RequestOp{DeleteRangeRequest{"x", "", false}},
                 RequestOp{rangeOf("a", "z")}};
    t.failure = {putOp("failed", "yes")};
    auto r = f.s().txn(t);
    REQUIRE(r.ok());
    CHECK(r->succeeded);
    CHECK(r->revision == 3);
    REQUIRE(r->responses.size() == 4);
    // The read inside the txn sees the txn's own writes.
    auto& inner = std::get<RangeResponse>(r->responses[3].op);
    REQUIRE(inner.kvs.size() == 2);
    CHECK(inner.kvs[0].key == "a");
    CHECK(inner.kvs[0].modRevision == 3);
    CHECK(f.s().get("a")->modRevision == 3);
    CHECK(f.s().get("b")->modRevision == 3);
    CHECK_FALSE(f.s().get("x"));
    CHECK_FALSE(f.s().get("failed"));

    // The same txn now fails its compare and takes the else branch.
    r = f.s().txn(t);
    REQUIRE(r.ok());
    CHECK_FALSE(r->succeeded);
    CHECK(f.s().get("failed")->value == "yes");
}

TEST_CASE("a txn that only reads or compares adds no revision", "[kv][txn]") {
    StoreFixture f;
    f.put("a", "1");
    TxnRequest t;
    t.success = {RequestOp{rangeOf("a")}};
    auto r = f.s().txn(t);
    REQUIRE(r.ok());
    CHECK(r->revision == 2);
    CHECK(f.s().currentRevision() == 2);
}

TEST_CASE("nested txns take their own branch by their own compares", "[kv][txn]") {
    StoreFixture f;
    f.put("flag", "on");
    TxnRequest inner;
    inner.compare = {cmp(Compare::Target::Value, Compare::Op::Equal, "flag", 0, "off")};
    inner.success = {putOp("inner", "then")};
    inner.failure = {putOp("inner", "else")};
    TxnRequest outer;
    outer.compare = {cmp(Compare::Target::Version, Compare::Op::Greater, "flag", 0)};
    outer.success = {putOp("outer", "then"), RequestOp{inner}};
    auto r = f.s().txn(outer);
    REQUIRE(r.ok());
    CHECK(r->succeeded);
    auto& nested = std::get<TxnResponse>(r->responses[1].op);
    CHECK_FALSE(nested.succeeded);
    CHECK(f.s().get("inner")->value == "else");
    CHECK(f.s().get("inner")->modRevision == f.s().get("outer")->modRevision);
}

TEST_CASE("a txn may not put the same key twice on one path", "[kv][txn]") {
    StoreFixture f;
    TxnRequest t;
    t.success = {putOp("k", "1"), putOp("k", "2")};
    auto r = f.s().txn(t);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::DuplicateKey);

    // Once in then and once in else is fine: only one runs.
    TxnRequest ok;
    ok.success = {putOp("k", "1")};
    ok.failure = {putOp("k", "2")};
    CHECK(f.s().txn(ok).ok());

    // A nested txn that may put a key the outer branch puts is refused.
    TxnRequest inner;
    inner.failure = {putOp("k", "3")};
    TxnRequest outer;
    outer.success = {putOp("k", "1"), RequestOp{inner}};
    r = f.s().txn(outer);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::DuplicateKey);

    // Deleting a key the same branch puts is refused as well.
    TxnRequest del;
    del.success = {putOp("p/1", "x"), RequestOp{DeleteRangeRequest{"p/", prefixEnd("p/")}}};
    r = f.s().txn(del);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::DuplicateKey);
}

TEST_CASE("a txn with more ops than the limit is refused", "[kv][txn]") {
    StoreFixture f;
    f.options.maxTxnOps = 4;
    f.reopen();
    TxnRequest t;
    for (int i = 0; i < 5; ++i)
        t.success.push_back(putOp("k" + std::to_string(i), "v"));
    auto r = f.s().txn(t);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::TooManyOps);
    t.success.pop_back();
    CHECK(f.s().txn(t).ok());
}

TEST_CASE("a txn whose put names a missing lease fails whole, leaving nothing", "[kv][txn]") {
    StoreFixture f;
    TxnRequest t;
    t.success = {putOp("a", "1"), putOp("b", "2", 12345)};
    auto r = f.s().txn(t);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::LeaseNotFound);
    CHECK_FALSE(f.s().get("a"));
    CHECK(f.s().currentRevision() == 1);
}

TEST_CASE("a txn read at a compacted or future revision fails the txn", "[kv][txn]") {
    StoreFixture f;
    f.put("a", "1");
    f.put("a", "2");
    REQUIRE(f.s().compact(3).ok());
    TxnRequest t;
    t.success = {putOp("b", "1"), RequestOp{rangeOf("a", {}, 2)}};
    auto r = f.s().txn(t);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::Compacted);
    t.success = {RequestOp{rangeOf("a", {}, 99)}};
    r = f.s().txn(t);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::FutureRevision);
    CHECK_FALSE(f.s().get("b"));
}
