// Linearizability of coord under faults: concurrent clients run reads, writes and
// compare-and-set on a few keys of a real 3-member cluster while members are kill -9'd and
// restarted; the recorded history is checked by tests/support/linearizability.h. The checker
// itself is first shown to reject histories that are not linearizable.
#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include "rpc/client.h"
#include "tests/support/client_options.h"
#include "tests/support/cluster.h"
#include "tests/support/linearizability.h"
#include "tests/support/thread_checks.h"

using namespace coord;
using namespace std::chrono_literals;
using coord::test::Cluster;
using coord::test::optionsFor;
namespace lin = coord::test::lin;
using Kind = lin::Op::Kind;

namespace {

lin::Op op(Kind kind, int64_t from, int64_t to, lin::Value value, bool unknown = false) {
    lin::Op o;
    o.kind = kind;
    o.key = "k";
    o.value = std::move(value);
    o.invoke = from;
    o.complete = to;
    o.unknown = unknown;
    return o;
}

lin::Op read(int64_t from, int64_t to, lin::Value seen) {
    return op(Kind::Read, from, to, std::move(seen));
}

lin::Op write(int64_t from, int64_t to, std::string v, bool unknown = false) {
    return op(Kind::Write, from, to, std::move(v), unknown);
}

lin::Op cas(int64_t from, int64_t to, lin::Value expected, std::string v, bool ok) {
    lin::Op o = op(Kind::Cas, from, to, std::move(v));
    o.expected = std::move(expected);
    o.casOk = ok;
    return o;
}

}  // namespace

TEST_CASE("the linearizability checker accepts valid histories and rejects violations",
          "[linearizability]") {
    // Sequential and obvious.
    CHECK(lin::check({write(0, 1, "a"), read(2, 3, "a")}).ok);
    CHECK(lin::check({read(0, 1, std::nullopt), write(2, 3, "a")}).ok);
    // A stale read: the write completed before the read began.
    CHECK_FALSE(lin::check({write(0, 1, "a"), write(2, 3, "b"), read(4, 5, "a")}).ok);
    // Overlapping: either order is fine...
    CHECK(lin::check({write(0, 10, "a"), read(1, 2, std::nullopt), read(3, 4, "a")}).ok);
    // ...but once a read saw the new value, a later read may not see the old one.
    CHECK_FALSE(lin::check({write(0, 10, "a"), read(1, 2, "a"), read(3, 4, std::nullopt)}).ok);
    // A write with an unknown outcome may have happened (at any time after its call)...
    CHECK(lin::check({write(0, 1, "a", true), read(5, 6, "a")}).ok);
    // ...or not at all.
    CHECK(lin::check({write(0, 1, "a", true), read(5, 6, std::nullopt)}).ok);
    // But not before it was called.
    CHECK_FALSE(lin::check({read(0, 1, "a"), write(2, 3, "a", true)}).ok);
    // Compare-and-set follows the register: two successful CAS from the same value cannot
    // both win.
    CHECK(lin::check({write(0, 1, "a"), cas(2, 3, "a", "b", true), cas(4, 5, "a", "c", false)}).ok);
    CHECK_FALSE(
        lin::check({write(0, 1, "a"), cas(2, 10, "a", "b", true), cas(3, 9, "a", "c", true)}).ok);
    // A lost update: a read after both completed sees a value no linearization produces.
    CHECK_FALSE(lin::check({write(0, 1, "a"), cas(2, 3, "a", "b", true), read(4, 5, "a")}).ok);
    // Keys are checked independently; the verdict names the bad one.
    auto other = read(6, 7, "x");
    other.key = "j";
    auto verdict = lin::check({write(0, 1, "a"), read(2, 3, "a"), other});
    CHECK_FALSE(verdict.ok);
    CHECK(verdict.key == "j");
}

TEST_CASE("reads, writes and compare-and-set stay linearizable while members are kill -9'd",
          "[linearizability][faults]") {
    Cluster c;
    const std::vector<std::string> keys{"lin/a", "lin/b", "lin/c"};
    std::mutex mu;
    std::vector<lin::Op> history;
    std::atomic<bool> stop{false};
    const auto start = Clock::now();
    auto now = [&] {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
    };

    std::vector<std::thread> clients;
    for (int id = 0; id < 5; ++id) {
        clients.emplace_back([&, id] {
            auto options = optionsFor(c);
            options.requestTimeout = 2s;
            Client client(options);
            std::mt19937 rng(static_cast<unsigned>(id * 7919 + 1));
            std::map<std::string, lin::Value> lastSeen;
            for (int n = 0; !stop && n < 100000; ++n) {
                lin::Op op;
                op.client = id;
                op.key = keys[rng() % keys.size()];
                std::string fresh = std::to_string(id) + "-" + std::to_string(n);
                int pick = static_cast<int>(rng() % 10);
                op.invoke = now();
                bool record = true;
                if (pick < 4) {
                    op.kind = Kind::Read;
                    auto r = client.get(op.key);
                    if (r.ok()) {
                        op.value = *r ? lin::Value((*r)->value) : std::nullopt;
                        lastSeen[op.key] = op.value;
                    } else {
                        record = false;  // a failed read had no effect
                    }
                } else if (pick < 7) {
                    op.kind = Kind::Write;
                    op.value = fresh;
                    auto r = client.put(op.key, fresh);
                    if (!r.ok()) {
                        record = r.error().kind == Error::Kind::Unknown;
                        op.unknown = true;
                    }
                } else {
                    op.kind = Kind::Cas;
                    op.expected = lastSeen[op.key];
                    op.value = fresh;
                    TxnRequest t;
                    Compare cmp;
                    cmp.key = op.key;
                    if (op.expected) {
                        cmp.target = Compare::Target::Value;
                        cmp.value = *op.expected;
                    } else {
                        cmp.target = Compare::Target::Create;  // absent: create revision 0
                        cmp.number = 0;
                    }
                    t.compare.push_back(cmp);
                    t.success.push_back(RequestOp{PutRequest{op.key, fresh}});
                    auto r = client.txn(t);
                    if (r.ok()) {
                        op.casOk = r->succeeded;
                    } else {
                        record = r.error().kind == Error::Kind::Unknown;
                        op.unknown = true;
                    }
                }
                op.complete = now();
                if (record) {
                    std::lock_guard lock(mu);
                    history.push_back(std::move(op));
                }
            }
        });
    }

    // Faults: the leader and then a follower are killed and restarted while the clients run.
    Client observer(optionsFor(c));
    std::this_thread::sleep_for(700ms);
    coord::test::killLeaderFollowerLeader(observer, c);
    stop = true;
    for (auto& t : clients)
        t.join();
    CHECK_THREADS();

    size_t writes = 0, unknown = 0;
    for (const auto& op : history) {
        if (op.kind != Kind::Read) ++writes;
        if (op.unknown) ++unknown;
    }
    INFO(history.size() << " ops, " << writes << " writes/CAS, " << unknown << " unknown");
    REQUIRE(history.size() > 50);  // TSan's coordd is slow: 93 ops in one CI run
    auto verdict = lin::check(history);
    INFO(verdict.detail);
    CHECK(verdict.ok);
    // And every member, the restarted ones included, holds the same history.
    coord::test::checkReplicasAgree(observer, c);
}
