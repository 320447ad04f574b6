// The KV capability over real Cap'n Proto RPC on loopback: a NodeDriver on its Asio thread,
// the RPC server on a KJ thread, a client in the test thread.
#include <catch2/catch.hpp>

#include <capnp/ez-rpc.h>

#include <future>
#include <thread>

#include "rpc/codec.h"
#include "tests/rpc/service_helpers.h"

using namespace coord;
using namespace coord::rpc;
using namespace std::chrono_literals;
using coord::rpc::test::bytes;
using coord::rpc::test::Connection;
namespace s = coord::rpc::schema;

TEST_CASE("the KV capability serves writes, linearizable and serializable reads over RPC",
          "[rpc][service]") {
    Connection conn;
    auto& kvc = conn.kv;
    auto& ws = conn.ws;

    // Retry until the single member has elected itself.
    int64_t revision = 0;
    for (int attempt = 0; attempt < 500 && revision == 0; ++attempt) {
        auto req = kvc.writeRequest();
        auto put = req.initRequest().initPut();
        put.setKey(bytes("greeting"));
        put.setValue(bytes("hello"));
        auto resp = req.send().wait(ws);
        auto result = resp.getResult();
        if (result.getUnavailable() != s::Unavailable::NONE) {
            std::this_thread::sleep_for(10ms);
            continue;
        }
        REQUIRE(result.getResponse().which() == s::WriteResponse::PUT);
        revision = result.getResponse().getPut().getRevision();
        CHECK(result.getHeader().getMemberId() == 1);
        CHECK(result.getHeader().getClusterId() == 7);
    }
    REQUIRE(revision == 2);

    for (bool serializable : {false, true}) {
        auto req = kvc.rangeRequest();
        kv::RangeRequest r;
        r.key = "greeting";
        toCapnp(r, req.initRequest());
        req.setSerializable(serializable);
        auto response = req.send().wait(ws);  // owns what the readers point into
        auto result = response.getResult();
        REQUIRE(result.getUnavailable() == s::Unavailable::NONE);
        REQUIRE(result.which() == s::RangeResult::OK);
        auto got = fromCapnp(result.getOk());
        REQUIRE(got.kvs.size() == 1);
        CHECK(got.kvs[0].value == "hello");
        CHECK(result.getHeader().getRevision() == 2);
    }
}

TEST_CASE("the KV capability returns typed errors and survives malformed requests",
          "[rpc][service]") {
    Connection conn;
    auto& kvc = conn.kv;
    auto& ws = conn.ws;

    auto emptyKey = [&] {
        auto req = kvc.writeRequest();
        req.initRequest().initPut().setValue(bytes("v"));
        return req.send().wait(ws);
    };
    for (int attempt = 0; attempt < 500; ++attempt) {
        auto resp = emptyKey();
        if (resp.getResult().getUnavailable() == s::Unavailable::NONE) {
            REQUIRE(resp.getResult().getResponse().which() == s::WriteResponse::ERROR);
            CHECK(resp.getResult().getResponse().getError().getCode() == s::ErrorCode::EMPTY_KEY);
            break;
        }
        std::this_thread::sleep_for(10ms);
    }

    // A read below nothing-compacted but above the current revision: FutureRevision.
    {
        auto req = kvc.rangeRequest();
        kv::RangeRequest r;
        r.key = "k";
        r.revision = 1000;
        toCapnp(r, req.initRequest());
        auto response = req.send().wait(ws);  // owns what the readers point into
        auto result = response.getResult();
        REQUIRE(result.which() == s::RangeResult::ERROR);
        CHECK(result.getError().getCode() == s::ErrorCode::FUTURE_REVISION);
    }

    // An unknown enum value in a compare is refused as a call error, not a crash.
    {
        auto req = kvc.writeRequest();
        auto cmp = req.initRequest().initTxn().initCompare(1);
        cmp[0].setKey(bytes("k"));
        cmp[0].setOp(static_cast<s::CompareOp>(77));
        CHECK_THROWS(req.send().wait(ws));
    }
    // The server keeps serving.
    auto req = kvc.writeRequest();
    auto put = req.initRequest().initPut();
    put.setKey(bytes("after"));
    put.setValue(bytes("ok"));
    auto response = req.send().wait(ws);  // owns what the readers point into
    auto result = response.getResult();
    REQUIRE(result.getUnavailable() == s::Unavailable::NONE);
    CHECK(result.getResponse().which() == s::WriteResponse::PUT);
}

TEST_CASE("the Lease capability renews on the leader and reports leases", "[rpc][service]") {
    Connection conn;
    auto& coord = conn.coord;
    auto& kvc = conn.kv;
    auto lease = coord.leaseRequest().send().getLease();
    auto& ws = conn.ws;

    int64_t id = 0;
    for (int attempt = 0; attempt < 500 && id == 0; ++attempt) {
        auto req = kvc.writeRequest();
        req.initRequest().initLeaseGrant().setTtlSeconds(30);
        auto response = req.send().wait(ws);
        auto result = response.getResult();
        if (result.getUnavailable() == s::Unavailable::NONE) {
            id = result.getResponse().getLeaseGrant().getId();
        } else {
            std::this_thread::sleep_for(10ms);
        }
    }
    REQUIRE(id != 0);
    {
        auto req = kvc.writeRequest();
        auto put = req.initRequest().initPut();
        put.setKey(bytes("leased"));
        put.setValue(bytes("v"));
        put.setLease(id);
        auto response = req.send().wait(ws);
        REQUIRE(response.getResult().getResponse().which() == s::WriteResponse::PUT);
    }
    {
        auto req = lease.keepAliveRequest();
        req.setId(id);
        auto response = req.send().wait(ws);
        auto result = response.getResult();
        REQUIRE(result.getUnavailable() == s::Unavailable::NONE);
        REQUIRE(result.which() == s::LeaseKeepAliveResult::TTL_SECONDS);
        CHECK(result.getTtlSeconds() == 30);
    }
    {
        auto req = lease.keepAliveRequest();
        req.setId(id + 100);
        auto response = req.send().wait(ws);
        REQUIRE(response.getResult().which() == s::LeaseKeepAliveResult::ERROR);
        CHECK(response.getResult().getError().getCode() == s::ErrorCode::LEASE_NOT_FOUND);
    }
    {
        auto req = lease.timeToLiveRequest();
        req.setId(id);
        auto response = req.send().wait(ws);
        REQUIRE(response.getFound());
        CHECK(response.getInfo().getTtlSeconds() == 30);
        REQUIRE(response.getInfo().getKeys().size() == 1);
    }
    {
        auto response = lease.listRequest().send().wait(ws);
        REQUIRE(response.getLeases().size() == 1);
        CHECK(response.getLeases()[0].getId() == id);
    }
}

TEST_CASE("a txn of many large values is applied whole, one over the request bound is refused",
          "[rpc][service]") {
    Connection conn;
    auto& kvc = conn.kv;
    auto& ws = conn.ws;
    const std::string value(1536 * 1024, 'v');  // the largest value a member takes by default
    auto txnOf = [&](int puts) {
        kv::TxnRequest t;
        for (int i = 0; i < puts; ++i)
            t.success.push_back(kv::RequestOp{kv::PutRequest{"t/" + std::to_string(i), value}});
        return kv::Request{t};
    };
    auto send = [&](const kv::Request& request) {
        for (int attempt = 0; attempt < 500; ++attempt) {
            auto req = kvc.writeRequest();
            requestToCapnp(request, req.initRequest());
            auto resp = req.send().wait(ws);
            auto unavailable = resp.getResult().getUnavailable();
            if (unavailable == s::Unavailable::NONE) return resp;
            REQUIRE(unavailable == s::Unavailable::NO_LEADER);  // not elected yet: retry
            std::this_thread::sleep_for(10ms);
        }
        FAIL("no leader within 5 s");
        return kvc.writeRequest().send().wait(ws);
    };

    // 10.5 MiB in one entry: more than the Raft log's entries were once decoded with, which
    // made every member skip it.
    auto applied = send(txnOf(7));
    REQUIRE(applied.getResult().getResponse().which() == s::WriteResponse::TXN);
    CHECK(applied.getResult().getResponse().getTxn().getSucceeded());
    int64_t revision = applied.getResult().getResponse().getTxn().getRevision();
    auto& store = conn.server.driver->store();
    kv::RangeRequest all;
    all.key = "t/";
    all.rangeEnd = kv::prefixEnd("t/");
    all.keysOnly = true;
    for (int i = 0; i < 500 && store.currentRevision() < revision; ++i)
        std::this_thread::sleep_for(10ms);
    auto read = store.rangeApplied(all);
    REQUIRE(read.ok());
    CHECK(read->count == 7);

    // 33 MiB: refused at once with RequestTooLarge, and nothing written.
    auto refused = send(txnOf(22));
    REQUIRE(refused.getResult().getResponse().which() == s::WriteResponse::ERROR);
    CHECK(refused.getResult().getResponse().getError().getCode() ==
          s::ErrorCode::REQUEST_TOO_LARGE);
    CHECK(store.currentRevision() == revision);
}
