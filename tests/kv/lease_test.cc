#include <catch2/catch.hpp>

#include "kv/lessor.h"
#include "tests/kv/helpers.h"

using namespace coord::kv;
using coord::kv::test::prefixOf;
using coord::kv::test::StoreFixture;

TEST_CASE("lease grant with an id, with id 0, and a taken id", "[kv][lease]") {
    StoreFixture f;
    auto g = f.s().leaseGrant(100, 30);
    REQUIRE(g.ok());
    CHECK(g->id == 100);
    CHECK(g->ttlSeconds == 30);
    auto auto1 = f.s().leaseGrant(0, 5);
    REQUIRE(auto1.ok());
    CHECK(auto1->id == 101);
    CHECK(f.s().leaseGrant(100, 5).error().code == ErrorCode::LeaseExists);
    CHECK(f.s().leaseGrant(1, 0).error().code == ErrorCode::InvalidArgument);
    CHECK(f.s().leaseGrant(-3, 10).error().code == ErrorCode::InvalidArgument);
    auto list = f.s().leaseList();
    REQUIRE(list.size() == 2);
    CHECK(list[0].id == 100);
    CHECK(list[1].ttlSeconds == 5);
}

TEST_CASE("a put with an unknown lease fails and one with a lease it attaches", "[kv][lease]") {
    StoreFixture f;
    auto r = f.s().put("k", "v", 42);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::LeaseNotFound);
    REQUIRE(f.s().leaseGrant(42, 10).ok());
    f.put("k", "v", 42);
    f.put("j", "v", 42);
    auto ttl = f.s().leaseTimeToLive(42);
    REQUIRE(ttl);
    CHECK(ttl->ttlSeconds == 10);
    CHECK(ttl->keys == std::vector<std::string>{"j", "k"});
    // Moving a key to no lease detaches it; deleting a key detaches it.
    f.put("k", "v2");
    f.del("j");
    CHECK(f.s().leaseTimeToLive(42)->keys.empty());
    CHECK_FALSE(f.s().leaseTimeToLive(7));
}

TEST_CASE("revoking a lease deletes every attached key in one revision", "[kv][lease]") {
    StoreFixture f;
    REQUIRE(f.s().leaseGrant(1, 10).ok());
    REQUIRE(f.s().leaseGrant(2, 10).ok());
    f.put("s/a", "x", 1);
    f.put("s/b", "x", 1);
    f.put("s/c", "x", 2);
    f.put("s/d", "x");
    int64_t before = f.s().currentRevision();
    auto r = f.s().leaseRevoke(1);
    REQUIRE(r.ok());
    CHECK(r->revision == before + 1);
    auto left = f.keys(prefixOf("s/"));
    CHECK(left == std::vector<std::string>{"s/c", "s/d"});
    // Both deletes are at the revoke's revision.
    std::vector<Event> events;
    REQUIRE(f.s()
                .readHistory(before + 1, before + 1, 10, false,
                             [&](int64_t, std::span<const Event> e) {
                                 events.insert(events.end(), e.begin(), e.end());
                             })
                .ok());
    REQUIRE(events.size() == 2);
    CHECK(events[0].type == Event::Type::Delete);
    CHECK(events[1].kv.key == "s/b");
    CHECK_FALSE(f.s().leaseTimeToLive(1));
    CHECK(f.s().leaseRevoke(1).error().code == ErrorCode::LeaseNotFound);
}

TEST_CASE("leases survive a reopen", "[kv][lease]") {
    StoreFixture f;
    REQUIRE(f.s().leaseGrant(5, 60).ok());
    f.put("k", "v", 5);
    f.reopen();
    auto ttl = f.s().leaseTimeToLive(5);
    REQUIRE(ttl);
    CHECK(ttl->keys == std::vector<std::string>{"k"});
    REQUIRE(f.s().leaseRevoke(5).ok());
    CHECK_FALSE(f.s().get("k"));
}

TEST_CASE("the lessor reports leases whose deadline passed, earliest first", "[kv][lease]") {
    coord::ManualClock clock(1000);
    Lessor lessor(clock);
    lessor.grant(1, 10);
    lessor.grant(2, 5);
    lessor.grant(3, 20);
    CHECK(lessor.expired().empty());
    CHECK(lessor.remainingMs(2) == 5000);
    clock.advanceMs(5000);
    CHECK(lessor.expired() == std::vector<int64_t>{2});
    clock.advanceMs(5000);
    CHECK(lessor.expired() == std::vector<int64_t>{2, 1});
    CHECK(lessor.expired(1) == std::vector<int64_t>{2});
    // Expiry is only reported: the lease stays until the owner revokes it.
    CHECK(lessor.size() == 3);
    lessor.revoke(2);
    CHECK(lessor.expired() == std::vector<int64_t>{1});
    CHECK_FALSE(lessor.remainingMs(2));
}

TEST_CASE("renewing a lease pushes its deadline but an expired lease cannot be renewed",
          "[kv][lease]") {
    coord::ManualClock clock;
    Lessor lessor(clock);
    lessor.grant(1, 10);
    clock.advanceMs(9000);
    CHECK(lessor.renew(1) == 10);
    clock.advanceMs(9000);
    CHECK(lessor.expired().empty());
    CHECK(lessor.remainingMs(1) == 1000);
    clock.advanceMs(1000);
    CHECK_FALSE(lessor.renew(1));
    CHECK(lessor.expired() == std::vector<int64_t>{1});
    CHECK_FALSE(lessor.renew(99));
}

TEST_CASE("extendAll gives every lease its full TTL plus the extension", "[kv][lease]") {
    coord::ManualClock clock;
    Lessor lessor(clock);
    lessor.grant(1, 1);
    lessor.grant(2, 3);
    clock.advanceMs(2500);
    CHECK(lessor.expired() == std::vector<int64_t>{1});
    lessor.extendAll(1000);
    CHECK(lessor.expired().empty());
    CHECK(lessor.remainingMs(1) == 2000);
    CHECK(lessor.remainingMs(2) == 4000);
}
