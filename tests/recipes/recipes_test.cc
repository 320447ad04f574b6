// The recipes against a real 3-member coordd cluster: mutual exclusion, fencing, FIFO order,
// clean give-up paths, loss; RW and semaphore; election and lossless observe; barriers; queues.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>

#include "recipes/barrier.h"
#include "recipes/election.h"
#include "recipes/mutex.h"
#include "recipes/queue.h"
#include "tests/support/client_options.h"
#include "tests/support/cluster.h"
#include "tests/support/tcp_proxy.h"
#include "tests/support/thread_checks.h"

using namespace coord;
using namespace std::chrono_literals;
using coord::test::Cluster;
using coord::test::optionsFor;

namespace {

int64_t countKeys(Client& client, const std::string& prefix) {
    RangeRequest q;
    q.key = prefix;
    q.rangeEnd = kv::prefixEnd(prefix);
    q.countOnly = true;
    auto r = client.range(q);
    REQUIRE(r.ok());
    return r->count;
}

// Polls `done` for up to `timeout`.
template <typename Fn>
bool eventually(Fn done, std::chrono::milliseconds timeout = 10s) {
    auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
        if (done()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return done();
}

}  // namespace

TEST_CASE("a mutex excludes across clients and its fencing tokens increase", "[recipes][mutex]") {
    Cluster c;
    constexpr int kThreads = 6, kRounds = 10;
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 2; ++i)
        clients.push_back(std::make_unique<Client>(optionsFor(c)));
    REQUIRE(clients[0]->put("counter", "0").ok());

    std::mutex tokensMu;
    std::vector<int64_t> tokens;
    std::atomic<int> inside{0}, overlaps{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            Client& client = *clients[t % 2];
            Session session(client, {5});
            Mutex m(session, "locks/counter");
            for (int i = 0; i < kRounds; ++i) {
                std::lock_guard guard(m);
                if (inside.fetch_add(1) != 0) ++overlaps;
                {
                    std::lock_guard lock(tokensMu);
                    tokens.push_back(m.fencingToken());
                }
                // A read-modify-write that only mutual exclusion keeps exact.
                auto got = client.get("counter");
                int n = std::stoi((*got)->value);
                TxnRequest t2;
                t2.compare.push_back(m.ownerCompare());
                PutRequest p;
                p.key = "counter";
                p.value = std::to_string(n + 1);
                t2.success.push_back(RequestOp{p});
                auto w = client.txn(t2);
                T_REQUIRE(w.ok());
                T_REQUIRE(w->succeeded);
                inside.fetch_sub(1);
            }
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(overlaps == 0);
    auto final = clients[0]->get("counter");
    REQUIRE(final.ok());
    CHECK((*final)->value == std::to_string(kThreads * kRounds));
    for (size_t i = 1; i < tokens.size(); ++i)
        CHECK(tokens[i] > tokens[i - 1]);
    CHECK(countKeys(*clients[0], "locks/counter/") == 0);
    CHECK_THREADS();
}

TEST_CASE("a mutex reused for many cycles reports only the loss of the incarnation it holds",
          "[recipes][mutex]") {
    Cluster c;
    Client client(optionsFor(c));
    Session s(client, {30});
    Mutex m(s, "locks/reuse");
    std::atomic<int> losses{0};
    m.onLost([&](const RecipeError&) { ++losses; });
    // Each release's deletion reaches the owner watch, perhaps after the next acquisition:
    // it is of an earlier incarnation and must not count.
    for (int i = 0; i < 5; ++i) {
        REQUIRE(m.acquire(Clock::now() + 10s).ok());
        REQUIRE(m.release().ok());
    }
    REQUIRE(m.acquire(Clock::now() + 10s).ok());
    std::this_thread::sleep_for(200ms);
    CHECK(m.isHeld());
    CHECK(losses == 0);
    // An operator deletes the held key: the loss is reported, once.
    DeleteRangeRequest d;
    d.key = m.key();
    REQUIRE(client.del(d).ok());
    CHECK(eventually([&] { return losses.load() == 1; }));
    CHECK_FALSE(m.isHeld());
    // Released and taken again, it is held and sound.
    (void)m.release();
    REQUIRE(m.acquire(Clock::now() + 10s).ok());
    std::this_thread::sleep_for(200ms);
    CHECK(m.isHeld());
    CHECK(losses == 1);
    REQUIRE(m.release().ok());
}

TEST_CASE("a mutex whose owner watch was compacted away checks its key and watches anew",
          "[recipes][mutex]") {
    Cluster c;
    Client admin(optionsFor(c, {1, 2}));
    Client client(optionsFor(c, {0, 1}));  // member 0 first; it dies below
    Session s(client, {30});
    Mutex m(s, "locks/compacted");
    std::atomic<int> losses{0};
    m.onLost([&](const RecipeError&) { ++losses; });
    REQUIRE(m.acquire(Clock::now() + 10s).ok());
    REQUIRE(m.release().ok());
    REQUIRE(m.acquire(Clock::now() + 10s).ok());
    // History moves on and is compacted; the owner watch, which saw nothing after the release,
    // must resume on another member from a compacted revision: it ends. The read that follows
    // finds the key still held, so nothing is reported.
    int64_t head = 0;
    for (int i = 0; i < 10; ++i) {
        auto r = admin.put("filler/" + std::to_string(i), "x");
        REQUIRE(r.ok());
        head = r->revision;
    }
    REQUIRE(admin.compact(head).ok());
    c.kill9(0);
    // A write caught by the leader change may fail with an unknown outcome: try until one
    // succeeds on another member.
    REQUIRE(eventually([&] { return client.put("after-failover", "x").ok(); }));
    std::this_thread::sleep_for(300ms);
    CHECK(m.isHeld());
    CHECK(losses == 0);
    // The next acquisition watches again: an operator's delete is reported.
    REQUIRE(m.release().ok());
    REQUIRE(m.acquire(Clock::now() + 10s).ok());
    DeleteRangeRequest d;
    d.key = m.key();
    REQUIRE(admin.del(d).ok());
    CHECK(eventually([&] { return losses.load() == 1; }));
    CHECK_FALSE(m.isHeld());
}

TEST_CASE("a holder whose session is lost is fenced off and told so", "[recipes][mutex]") {
    Cluster c;
    Client client(optionsFor(c));
    Session a(client, {30});
    Session b(client, {30});
    Mutex ma(a, "locks/f");
    Mutex mb(b, "locks/f");
    std::atomic<bool> told{false};
    ma.onLost([&](const RecipeError&) { told = true; });
    REQUIRE(ma.acquire().ok());
    auto staleGuard = ma.ownerCompare();
    int64_t firstToken = ma.fencingToken();

    // The lease goes behind the holder's back (as after a long pause or a partition).
    REQUIRE(client.leaseRevoke(a.lease()).ok());
    REQUIRE(mb.acquire(Clock::now() + 10s).ok());
    CHECK(mb.fencingToken() > firstToken);
    CHECK(eventually([&] { return told.load(); }));
    CHECK_FALSE(ma.isHeld());

    TxnRequest t;
    t.compare.push_back(staleGuard);
    PutRequest p;
    p.key = "guarded";
    p.value = "stale write";
    t.success.push_back(RequestOp{p});
    auto r = client.txn(t);
    REQUIRE(r.ok());
    CHECK_FALSE(r->succeeded);
    CHECK_FALSE(client.get("guarded")->has_value());
}

TEST_CASE("a holder cut off from every member is told before its lease could expire",
          "[recipes][mutex][session]") {
    Cluster c;
    Client client(optionsFor(c));
    auto session = std::make_unique<Session>(client, SessionOptions{2, 0});
    Mutex m(*session, "locks/cut");
    std::atomic<bool> told{false};
    std::atomic<Clock::rep> toldAt{0};
    m.onLost([&](const RecipeError&) {
        toldAt = Clock::now().time_since_epoch().count();
        told = true;
    });
    REQUIRE(m.acquire().ok());
    // Let a few renewals go by, then the whole cluster goes away at once, as for a process
    // partitioned from every member: nobody can confirm or renew the lease any more.
    std::this_thread::sleep_for(1500ms);
    REQUIRE(m.isHeld());
    auto cutAt = Clock::now();
    for (int i = 0; i < 3; ++i)
        c.kill9(i);
    REQUIRE(eventually([&] { return told.load(); }, 5s));
    auto took = Clock::time_point(Clock::duration(toldAt.load())) - cutAt;
    // The last renewal was sent at most TTL/3 before the cut, and the TTL counts from when it
    // was sent: the holder is told a margin (TTL/10) before the lease could expire on the
    // leader — 1.8 s after that renewal at the latest — and not much before it could have.
    CHECK(took <= 1800ms + 150ms);
    CHECK(took >= 1133ms - 150ms);
    CHECK_FALSE(m.isHeld());
    CHECK(session->isLost());
    // Releasing does not wait on the unreachable cluster: the unrenewed lease takes the key.
    auto before = Clock::now();
    CHECK(m.release().ok());
    CHECK(Clock::now() - before < 100ms);
    CHECK_FALSE(session->close(Clock::now() + 200ms).ok());  // nobody to revoke it with
}

namespace {

// Calls `call` with a 200 ms deadline (it must end with Timeout), then with no deadline while
// another thread cancels it (it must end with Canceled); both within a few seconds. The cancel
// is repeated until the call returns, so one that lands before the wait begins is not lost.
template <typename Call, typename Cancel>
void givesUp(Call call, Cancel cancel) {
    auto start = Clock::now();
    auto timedOut = call(Clock::now() + 200ms);
    CHECK(Clock::now() - start < 5s);
    REQUIRE_FALSE(timedOut.ok());
    CHECK(timedOut.error().kind == RecipeError::Kind::Timeout);

    std::atomic<bool> returned{false};
    std::thread canceler([&] {
        for (int i = 0; i < 100 && !returned; ++i) {
            std::this_thread::sleep_for(100ms);
            cancel();
        }
    });
    start = Clock::now();
    auto canceled = call(detail::kForever);
    returned = true;
    canceler.join();
    CHECK(Clock::now() - start < 5s);
    REQUIRE_FALSE(canceled.ok());
    CHECK(canceled.error().kind == RecipeError::Kind::Canceled);
}

}  // namespace

TEST_CASE("every blocking recipe call gives up at its deadline and on cancel, leaving no key",
          "[recipes]") {
    Cluster c;
    Client client(optionsFor(c));
    Session s1(client, {30});
    Session s2(client, {30});
    const Deadline soon = Clock::now() + 20s;

    Election leader(s1, "gu/elect"), candidate(s2, "gu/elect");
    REQUIRE(leader.campaign("a").ok());
    givesUp([&](Deadline d) { return candidate.campaign("b", d); }, [&] { candidate.cancel(); });
    CHECK(countKeys(client, "gu/elect/") == 1);

    Semaphore held(s1, "gu/sem", 1), waiting(s2, "gu/sem", 1);
    REQUIRE(held.acquire().ok());
    givesUp([&](Deadline d) { return waiting.acquire(d); }, [&] { waiting.cancel(); });
    CHECK(countKeys(client, "gu/sem/") == 1);

    RWMutex writer(s1, "gu/rw"), other(s2, "gu/rw");
    REQUIRE(writer.acquireWrite().ok());
    givesUp([&](Deadline d) { return other.acquireRead(d); }, [&] { other.cancel(); });
    givesUp([&](Deadline d) { return other.acquireWrite(d); }, [&] { other.cancel(); });
    CHECK(countKeys(client, "gu/rw/") == 1);

    Barrier barrier(client, "gu/barrier");
    REQUIRE(barrier.hold().ok());
    givesUp([&](Deadline d) { return barrier.wait(d); }, [&] { barrier.cancel(); });
    CHECK(countKeys(client, "gu/barrier") == 1);

    DoubleBarrier alone(s2, "gu/double", 2);
    givesUp([&](Deadline d) { return alone.enter(d); }, [&] { alone.cancel(); });
    CHECK(countKeys(client, "gu/double/") == 0);

    Queue empty(client, "gu/queue");
    givesUp([&](Deadline d) { return empty.dequeue(d); }, [&] { empty.cancel(); });
    CHECK(countKeys(client, "gu/queue/items/") == 0);

    ConditionQueue closed(client, "gu/cq");
    REQUIRE(closed.enqueue("x").ok());
    REQUIRE(closed.setCondition({QueueCondition::Kind::CountAtLeast, 5, "", ""}).ok());
    givesUp([&](Deadline d) { return closed.dequeue(d); }, [&] { closed.cancel(); });
    CHECK(countKeys(client, "gu/cq/items/") == 1);

    // Each object that gave up still works once what blocked it goes.
    REQUIRE(leader.resign().ok());
    CHECK(candidate.campaign("b", soon).ok());
    REQUIRE(held.release().ok());
    CHECK(waiting.acquire(soon).ok());
    REQUIRE(writer.releaseWrite().ok());
    CHECK(other.acquireRead(soon).ok());
    REQUIRE(barrier.release().ok());
    CHECK(barrier.wait(soon).ok());
    DoubleBarrier partner(s1, "gu/double", 2);
    std::thread entering([&] { T_REQUIRE(partner.enter(soon).ok()); });
    CHECK(alone.enter(soon).ok());
    entering.join();
    REQUIRE(empty.enqueue("y").ok());
    auto y = empty.dequeue(soon);
    REQUIRE(y.ok());
    CHECK(y->value == "y");
    REQUIRE(closed.setCondition({QueueCondition::Kind::CountAtLeast, 1, "", ""}).ok());
    auto x = closed.dequeue(soon);
    REQUIRE(x.ok());
    CHECK(x->value == "x");
}

TEST_CASE("a release or give-up the cluster could not confirm is finished in the background",
          "[recipes][mutex]") {
    Cluster c;
    ClientOptions quick = optionsFor(c);
    quick.requestTimeout = 1s;
    Client client(quick);
    Client other(optionsFor(c));
    Session s(client, {30});
    Session holderSession(other, {30});
    Mutex m(s, "locks/bg");
    REQUIRE(m.acquire().ok());
    auto started = Clock::now();

    // With two of three members gone nothing can be committed: the release is not confirmed.
    c.kill9(0);
    c.kill9(1);
    auto released = m.release();
    CHECK_FALSE(released.ok());
    CHECK_FALSE(m.isHeld());
    CHECK(s.pendingReleases() == 1);
    c.start(0);
    c.start(1);
    // Nothing more from this process: the session deletes the key once it can, and another
    // session acquires (the live lease would otherwise keep the key, and the lock, forever).
    Mutex next(holderSession, "locks/bg");
    REQUIRE(next.acquire(Clock::now() + 20s).ok());
    CHECK(eventually([&] { return s.pendingReleases() == 0; }));

    // A waiter whose deadline passes while the cluster cannot commit leaves no key either.
    std::atomic<bool> gaveUp{false};
    std::thread waiter([&] {
        auto r = m.acquire(Clock::now() + 3s);
        T_CHECK(!r.ok());
        gaveUp = true;
    });
    REQUIRE(eventually([&] { return countKeys(other, "locks/bg/") == 2; }));
    c.kill9(0);
    c.kill9(1);
    REQUIRE(eventually([&] { return gaveUp.load(); }, 10s));
    waiter.join();
    CHECK(s.pendingReleases() == 1);
    c.start(0);
    c.start(1);
    CHECK(eventually([&] { return countKeys(other, "locks/bg/") == 1; }, 20s));
    CHECK(eventually([&] { return s.pendingReleases() == 0; }));
    // The holder lets go; a third acquires at once, not blocked behind the stale waiter.
    REQUIRE(next.release().ok());
    Session third(other, {30});
    Mutex last(third, "locks/bg");
    CHECK(last.acquire(Clock::now() + 5s).ok());
    // And the object that gave up acquires again normally.
    REQUIRE(last.release().ok());
    CHECK(m.acquire(Clock::now() + 5s).ok());
    REQUIRE(m.release().ok());

    // unlock() (std::lock_guard's, in a destructor where an exception would end the process)
    // sends the deletion and returns at once, even with the cluster unable to commit; the
    // deletion it could not confirm is finished in the background too.
    {
        std::lock_guard guard(m);
        c.kill9(0);
        c.kill9(1);
        started = Clock::now();
    }
    CHECK(Clock::now() - started < 200ms);  // release() waits for its 1 s timeout
    CHECK_FALSE(m.isHeld());
    CHECK(eventually([&] { return s.pendingReleases() == 1; }));
    // Locked again before the cluster is back: the old incarnation goes first, and the new
    // one is the only key left.
    std::thread relock([&] { T_CHECK(m.acquire(Clock::now() + 30s).ok()); });
    std::this_thread::sleep_for(300ms);
    c.start(0);
    c.start(1);
    relock.join();
    CHECK(m.isHeld());
    CHECK(eventually([&] { return countKeys(other, "locks/bg/") == 1; }, 20s));
    CHECK(eventually([&] { return s.pendingReleases() == 0; }));
    m.unlock();
    CHECK(eventually([&] { return countKeys(other, "locks/bg/") == 0; }, 20s));
}

TEST_CASE("fenced increments stay exact and tokens increase while members are kill -9'd",
          "[recipes][mutex][faults]") {
    Cluster c;
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 3; ++i)
        clients.push_back(std::make_unique<Client>(optionsFor(c)));
    REQUIRE(clients[0]->put("chaos/counter", "0").ok());

    std::atomic<bool> stop{false};
    std::mutex mu;
    std::vector<std::pair<int, int64_t>> written;  // (value written, fencing token): known to apply
    int unknown = 0, refused = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
        threads.emplace_back([&, t] {
            Client& client = *clients[t % 3];
            auto session = std::make_unique<Session>(client, SessionOptions{5, 0});
            auto m = std::make_unique<Mutex>(*session, "locks/chaos");
            for (int round = 0; round < 10000 && !stop; ++round) {
                if (session->isLost()) {  // not expected with one member down at a time
                    m.reset();
                    session = std::make_unique<Session>(client, SessionOptions{5, 0});
                    m = std::make_unique<Mutex>(*session, "locks/chaos");
                }
                if (!m->acquire(Clock::now() + 5s).ok()) continue;
                int64_t token = m->fencingToken();
                auto got = client.get("chaos/counter");
                if (got.ok() && got->has_value()) {
                    // Read-modify-write fenced by the lock alone: only exclusion keeps it exact.
                    int next = std::stoi((*got)->value) + 1;
                    TxnRequest w;
                    w.compare.push_back(m->ownerCompare());
                    w.success.push_back(
                        RequestOp{PutRequest{"chaos/counter", std::to_string(next)}});
                    auto r = client.txn(w);
                    std::lock_guard lock(mu);
                    if (!r.ok()) {
                        ++unknown;
                    } else if (r->succeeded) {
                        written.emplace_back(next, token);
                    } else {
                        ++refused;  // the lock was lost before the write: fenced off
                    }
                }
                // Both ways of letting go: waiting for the deletion, and unlock()'s without.
                if (round % 2 == 0) {
                    (void)m->release();
                } else {
                    m->unlock();
                }
            }
        });
    }

    Client observer(optionsFor(c));
    std::this_thread::sleep_for(700ms);
    coord::test::killLeaderFollowerLeader(observer, c);
    // Enough increments to say something, however slow the machine (bounded: 20 s).
    for (int i = 0; i < 200; ++i) {
        {
            std::lock_guard lock(mu);
            if (written.size() >= 20) break;
        }
        std::this_thread::sleep_for(100ms);
    }
    stop = true;
    for (auto& th : threads)
        th.join();

    auto final = observer.get("chaos/counter");
    REQUIRE(final.ok());
    REQUIRE(final->has_value());
    int counter = std::stoi((*final)->value);
    INFO(written.size() << " fenced increments known applied, " << unknown << " unknown, "
                        << refused << " fenced off; counter " << counter);
    CHECK(written.size() >= 20);  // the test did something
    // No increment was lost to a second holder, none counted twice.
    CHECK(counter >= static_cast<int>(written.size()));
    CHECK(counter <= static_cast<int>(written.size()) + unknown);
    std::sort(written.begin(), written.end());
    for (size_t i = 1; i < written.size(); ++i) {
        CHECK(written[i].first > written[i - 1].first);    // each value written once
        CHECK(written[i].second > written[i - 1].second);  // by holders of increasing tokens
    }
    // Every session is closed (its lease revoked): nothing of the lock is left.
    CHECK(eventually([&] { return countKeys(observer, "locks/chaos/") == 0; }));
    // The members restarted in between hold the same history as the others.
    coord::test::checkReplicasAgree(observer, c);
}

TEST_CASE("mutex waiters acquire in arrival order, and giving up leaves no key",
          "[recipes][mutex]") {
    Cluster c;
    Client client(optionsFor(c));
    Session s(client, {30});
    Mutex holder(s, "locks/q");
    REQUIRE(holder.acquire().ok());

    // tryLock and a timed wait fail without leaving a key.
    Mutex other(s, "locks/q");
    CHECK_FALSE(other.try_lock());
    CHECK_FALSE(other.try_lock_for(200ms));
    CHECK(countKeys(client, "locks/q/") == 1);

    // A canceled wait leaves none either.
    std::thread canceler([&] {
        std::this_thread::sleep_for(200ms);
        other.cancel();
    });
    auto canceled = other.acquire();
    canceler.join();
    REQUIRE_FALSE(canceled.ok());
    CHECK(canceled.error().kind == RecipeError::Kind::Canceled);
    CHECK(countKeys(client, "locks/q/") == 1);

    // Three waiters queue one after another and are served in that order.
    std::mutex orderMu;
    std::vector<int> order;
    std::vector<std::unique_ptr<Mutex>> waiters;
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) {
        waiters.push_back(std::make_unique<Mutex>(s, "locks/q"));
        threads.emplace_back([&, i] {
            T_REQUIRE(waiters[i]->acquire(Clock::now() + 20s).ok());
            {
                std::lock_guard lock(orderMu);
                order.push_back(i);
            }
            T_REQUIRE(waiters[i]->release().ok());
        });
        REQUIRE(eventually([&] { return countKeys(client, "locks/q/") == i + 2; }));
    }
    REQUIRE(holder.release().ok());
    for (auto& t : threads)
        t.join();
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(countKeys(client, "locks/q/") == 0);
    CHECK_THREADS();
}

TEST_CASE("rw mutex: readers share, writers exclude, a waiting writer is not starved",
          "[recipes][rwmutex]") {
    Cluster c;
    Client client(optionsFor(c));
    Session s(client, {30});
    RWMutex r1(s, "rw"), r2(s, "rw"), w(s, "rw"), r3(s, "rw");
    REQUIRE(r1.acquireRead().ok());
    REQUIRE(r2.acquireRead(Clock::now() + 5s).ok());  // readers share
    CHECK_FALSE(w.try_lock());                        // a writer does not get in

    std::atomic<bool> writerIn{false}, readerIn{false};
    std::atomic<bool> writerFirst{false};
    std::thread writer([&] {
        T_REQUIRE(w.acquireWrite(Clock::now() + 20s).ok());
        writerIn = true;
        std::this_thread::sleep_for(200ms);
        writerFirst = !readerIn;
        T_REQUIRE(w.releaseWrite().ok());
    });
    REQUIRE(eventually([&] { return countKeys(client, "rw/write/") == 1; }));
    // A reader arriving after the waiting writer queues behind it.
    std::thread reader([&] {
        std::shared_lock lock(r3);
        readerIn = true;
    });
    std::this_thread::sleep_for(300ms);
    CHECK_FALSE(readerIn);
    CHECK_FALSE(writerIn);
    REQUIRE(r1.releaseRead().ok());
    REQUIRE(r2.releaseRead().ok());
    writer.join();
    reader.join();
    CHECK(writerFirst);
    CHECK(readerIn);
    CHECK_THREADS();
}

TEST_CASE("a semaphore admits N holders and queues the rest", "[recipes][semaphore]") {
    Cluster c;
    Client client(optionsFor(c));
    Session s(client, {30});
    Semaphore a(s, "sem", 2), b(s, "sem", 2), d(s, "sem", 2);
    REQUIRE(a.acquire().ok());
    REQUIRE(b.acquire(Clock::now() + 5s).ok());
    CHECK_FALSE(d.try_lock());
    std::atomic<bool> got{false};
    std::thread t([&] {
        T_REQUIRE(d.acquire(Clock::now() + 20s).ok());
        got = true;
    });
    std::this_thread::sleep_for(300ms);
    CHECK_FALSE(got);
    REQUIRE(a.release().ok());
    t.join();
    CHECK(got);
    CHECK(b.isHeld());
    CHECK(d.isHeld());
    CHECK_THREADS();
}

TEST_CASE("election: one leader at a time, and observe sees every change in order",
          "[recipes][election]") {
    Cluster c;
    Client client(optionsFor(c));
    Session s1(client, {30}), s2(client, {30});
    Election e1(s1, "elect/svc"), e2(s2, "elect/svc");

    std::mutex mu;
    std::vector<LeaderEvent> seen;
    auto observer = Election::observe(client, "elect/svc", [&](const LeaderEvent& e) {
        std::lock_guard lock(mu);
        seen.push_back(e);
    });
    REQUIRE(observer);

    REQUIRE(e1.campaign("one").ok());
    CHECK(e1.isLeader());
    std::atomic<bool> second{false};
    std::thread t([&] {
        T_REQUIRE(e2.campaign("two", Clock::now() + 20s).ok());
        second = true;
    });
    REQUIRE(e1.proclaim("one-b").ok());
    std::this_thread::sleep_for(200ms);
    CHECK_FALSE(second);
    auto leader = Election::leader(client, "elect/svc");
    REQUIRE(leader.ok());
    CHECK(leader->value == "one-b");
    REQUIRE(e1.resign().ok());
    t.join();
    CHECK(e2.isLeader());
    CHECK(e2.term() > e1.term());
    auto notLeader = e1.proclaim("late");
    REQUIRE_FALSE(notLeader.ok());
    CHECK(notLeader.error().kind == RecipeError::Kind::NotHeld);
    REQUIRE(e2.resign().ok());

    REQUIRE(eventually([&] {
        std::lock_guard lock(mu);
        return !seen.empty() && !seen.back().hasLeader && seen.size() >= 5;
    }));
    std::lock_guard lock(mu);
    // Start (no leader), one, one-b, two, no leader — no change skipped, none repeated.
    std::vector<std::string> values;
    for (const auto& e : seen)
        values.push_back(e.hasLeader ? e.value : "-");
    CHECK(values == std::vector<std::string>{"-", "one", "one-b", "two", "-"});
    for (size_t i = 1; i < seen.size(); ++i)
        CHECK(seen[i].revision > seen[i - 1].revision);

    // Resuming from a revision replays from there.
    std::vector<std::string> replay;
    std::mutex rmu;
    auto again = Election::observe(
        client, "elect/svc",
        [&](const LeaderEvent& e) {
            std::lock_guard l(rmu);
            replay.push_back(e.hasLeader ? e.value : "-");
        },
        seen[2].revision);
    REQUIRE(eventually([&] {
        std::lock_guard l(rmu);
        return replay.size() >= 3;
    }));
    std::lock_guard l(rmu);
    CHECK(replay == std::vector<std::string>{"one", "one-b", "two", "-"});
    CHECK_THREADS();
}

TEST_CASE("barrier and double barrier", "[recipes][barrier]") {
    Cluster c;
    Client client(optionsFor(c));
    Barrier b(client, "barrier/go");
    REQUIRE(b.hold().ok());
    CHECK_FALSE(b.hold().ok());  // already held
    std::atomic<bool> passed{false};
    std::thread waiter([&] {
        T_REQUIRE(b.wait(Clock::now() + 20s).ok());
        passed = true;
    });
    std::this_thread::sleep_for(200ms);
    CHECK_FALSE(passed);
    REQUIRE(b.release().ok());
    waiter.join();
    CHECK(passed);

    constexpr int kN = 3;
    Session s(client, {30});
    std::atomic<int> entered{0}, left{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kN; ++i) {
        threads.emplace_back([&] {
            DoubleBarrier d(s, "dbl", kN);
            T_REQUIRE(d.enter(Clock::now() + 20s).ok());
            T_CHECK(entered.fetch_add(1) < kN);
            // Nobody passes enter before all have arrived: everyone sees all entered later.
            T_REQUIRE(d.leave(Clock::now() + 20s).ok());
            ++left;
        });
        if (i < kN - 1) {
            std::this_thread::sleep_for(100ms);
            CHECK(entered == 0);
        }
    }
    for (auto& t : threads)
        t.join();
    CHECK(entered == kN);
    CHECK(left == kN);
    CHECK(countKeys(client, "dbl/") == 0);
    CHECK_THREADS();
}

TEST_CASE("queue: every item to exactly one consumer, FIFO per producer", "[recipes][queue]") {
    Cluster c;
    Client client(optionsFor(c));
    constexpr int kProducers = 3, kItems = 20, kConsumers = 3;
    // What each consumer took, in the order its claims succeeded.
    std::vector<std::vector<std::string>> taken(kConsumers);
    std::vector<std::thread> threads;
    for (int p = 0; p < kProducers; ++p) {
        threads.emplace_back([&, p] {
            Queue q(client, "jobs");
            for (int i = 0; i < kItems; ++i)
                T_REQUIRE(q.enqueue(std::to_string(p) + ":" + std::to_string(i)).ok());
        });
    }
    for (int k = 0; k < kConsumers; ++k) {
        threads.emplace_back([&, k] {
            Queue q(client, "jobs");
            for (;;) {
                auto item = q.dequeue(Clock::now() + 2s);
                if (!item.ok()) {
                    T_REQUIRE(item.error().kind == RecipeError::Kind::Timeout);
                    return;
                }
                taken[static_cast<size_t>(k)].push_back(item->value);
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK_THREADS();
    std::vector<std::string> all;
    for (const auto& mine : taken)
        all.insert(all.end(), mine.begin(), mine.end());
    REQUIRE(all.size() == kProducers * kItems);
    std::set<std::string> unique(all.begin(), all.end());
    CHECK(unique.size() == all.size());
    // FIFO: a claim takes the oldest item left, so every item a consumer takes after another is
    // younger; a producer's items are created in order, so each consumer sees every producer's
    // items in increasing order. (The order of claims across consumers is not observable here:
    // two consumers' returns may interleave either way.)
    for (const auto& mine : taken) {
        std::vector<int> last(kProducers, -1);
        for (const auto& v : mine) {
            int p = std::stoi(v.substr(0, v.find(':')));
            int i = std::stoi(v.substr(v.find(':') + 1));
            CHECK(i > last[static_cast<size_t>(p)]);
            last[static_cast<size_t>(p)] = i;
        }
    }
}

// A consumer that reaches the cluster through a proxy; `fault` starts once it sends a claim.
struct ProxiedConsumer {
    explicit ProxiedConsumer(const Cluster& c) : proxy(c.client[0]), client(options()) {}
    ClientOptions options() const {
        ClientOptions o;
        o.endpoints = {proxy.endpoint()};
        o.requestTimeout = 1s;
        return o;
    }
    coord::test::TcpProxy proxy;
    Client client;
};

// A queue `name` holding "first" and "second" on a fresh cluster.
struct TwoItems {
    explicit TwoItems(const std::string& queue)
        : name(queue), client(optionsFor(c)), producer(client, queue) {
        REQUIRE(producer.enqueue("first").ok());
        REQUIRE(producer.enqueue("second").ok());
    }
    int64_t queued() { return countKeys(client, name + "/items/"); }
    // A dequeue by `q` (of `consumer`) whose claim meets `fault`: it fails at its deadline.
    static void failedClaim(Queue& q, ProxiedConsumer& consumer,
                            coord::test::TcpProxy::Fault fault) {
        consumer.proxy.arm(fault, q.prefix() + "/claims/");
        auto failed = q.dequeue(Clock::now() + 2s);
        REQUIRE(consumer.proxy.triggered());
        REQUIRE(!failed.ok());
        CHECK(failed.error().kind == RecipeError::Kind::Timeout);
    }

    std::string name;
    Cluster c;
    Client client;
    Queue producer;
};

TEST_CASE("queue: an item whose claim reply was lost goes to the consumer that claimed it",
          "[recipes][queue]") {
    TwoItems t("lost");
    ProxiedConsumer consumer(t.c);
    Queue q(consumer.client, "lost");
    // The claim reaches the cluster and applies; its answer (and every retry's) is lost.
    TwoItems::failedClaim(q, consumer, coord::test::TcpProxy::Fault::DropReplies);
    CHECK(t.queued() == 1);  // "first" is taken, by this consumer

    consumer.proxy.heal();
    auto again = q.dequeue(Clock::now() + 10s);
    REQUIRE(again.ok());
    CHECK(again->value == "first");
    auto next = q.dequeue(Clock::now() + 10s);
    REQUIRE(next.ok());
    CHECK(next->value == "second");
    CHECK(t.queued() == 0);
}

TEST_CASE("queue: a claim held back past its deadline is fenced off when it arrives",
          "[recipes][queue]") {
    TwoItems t("late");
    ProxiedConsumer consumer(t.c);
    Queue q(consumer.client, "late");
    TwoItems::failedClaim(q, consumer, coord::test::TcpProxy::Fault::HoldRequests);
    CHECK(t.queued() == 2);  // nothing arrived

    // Settling decides: not taken. The claims still in the proxy must then fail when they land.
    consumer.proxy.heal();
    auto resolved = q.resolvePending(Clock::now() + 10s);
    REQUIRE(resolved.ok());
    CHECK(!resolved->has_value());
    REQUIRE(consumer.proxy.deliverHeld(10s));
    CHECK(t.queued() == 2);

    auto got = q.dequeue(Clock::now() + 10s);
    REQUIRE(got.ok());
    CHECK(got->value == "first");
}

TEST_CASE("queue: a consumer destroyed with a claim pending puts a taken item back",
          "[recipes][queue]") {
    TwoItems t("back");
    {
        ProxiedConsumer consumer(t.c);
        Queue q(consumer.client, "back");
        TwoItems::failedClaim(q, consumer, coord::test::TcpProxy::Fault::DropReplies);
        CHECK(t.queued() == 1);
        consumer.proxy.heal();
    }
    // "first" is back, behind "second"; the consumer's claim record is gone.
    auto a = t.producer.dequeue(Clock::now() + 10s);
    auto b = t.producer.dequeue(Clock::now() + 10s);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a->value == "second");
    CHECK(b->value == "first");
    CHECK(countKeys(t.client, "back/claims/") == 1);  // the producer object's own record
}

TEST_CASE("condition queue releases nothing before its condition and everything after",
          "[recipes][queue]") {
    Cluster c;
    Client client(optionsFor(c));
    ConditionQueue q(client, "cq");
    for (int i = 0; i < 4; ++i)
        REQUIRE(q.enqueue("item" + std::to_string(i)).ok());
    // No condition: closed.
    auto closed = q.dequeue(Clock::now() + 300ms);
    REQUIRE_FALSE(closed.ok());
    CHECK(closed.error().kind == RecipeError::Kind::Timeout);

    QueueCondition five;
    five.kind = QueueCondition::Kind::CountAtLeast;
    five.count = 5;
    REQUIRE(q.setCondition(five).ok());
    CHECK_FALSE(q.dequeue(Clock::now() + 300ms).ok());  // 4 of 5

    // A consumer blocked on the condition is released when the fifth item arrives.
    std::vector<std::string> got;
    std::thread consumer([&] {
        for (int i = 0; i < 5; ++i) {
            auto item = q.dequeue(Clock::now() + 20s);
            T_REQUIRE(item.ok());
            got.push_back(item->value);
        }
    });
    std::this_thread::sleep_for(200ms);
    CHECK(got.empty());
    REQUIRE(q.enqueue("item4").ok());
    consumer.join();
    CHECK(got == std::vector<std::string>{"item0", "item1", "item2", "item3", "item4"});

    // A flag set by a controller.
    QueueCondition flag;
    flag.kind = QueueCondition::Kind::Equals;
    flag.name = "flag";
    flag.value = "open";
    REQUIRE(q.setCondition(flag).ok());
    REQUIRE(q.enqueue("late").ok());
    CHECK_FALSE(q.dequeue(Clock::now() + 300ms).ok());
    REQUIRE(client.put("cq/flag", "open").ok());
    auto late = q.dequeue(Clock::now() + 5s);
    REQUIRE(late.ok());
    CHECK(late->value == "late");
    CHECK_THREADS();
}

TEST_CASE("election under churn: never two leaders, terms increase", "[recipes][election]") {
    Cluster c;
    constexpr int kCandidates = 4, kTerms = 5;
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 2; ++i)
        clients.push_back(std::make_unique<Client>(optionsFor(c)));
    std::atomic<int> leaders{0}, overlaps{0};
    std::mutex termsMu;
    std::vector<int64_t> terms;
    std::vector<std::thread> threads;
    for (int i = 0; i < kCandidates; ++i) {
        threads.emplace_back([&, i] {
            Session s(*clients[i % 2], {5});
            Election e(s, "churn");
            for (int round = 0; round < kTerms; ++round) {
                T_REQUIRE(e.campaign("c" + std::to_string(i), Clock::now() + 30s).ok());
                if (leaders.fetch_add(1) != 0) ++overlaps;
                {
                    std::lock_guard lock(termsMu);
                    terms.push_back(e.term());
                }
                std::this_thread::sleep_for(2ms);
                leaders.fetch_sub(1);
                T_REQUIRE(e.resign().ok());
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK_THREADS();
    CHECK(overlaps == 0);
    REQUIRE(terms.size() == kCandidates * kTerms);
    for (size_t i = 1; i < terms.size(); ++i)
        CHECK(terms[i] > terms[i - 1]);
}

// A waiter whose only predecessor is the holder waits on one watch over both keys, without a
// read when the holder's key goes: it must still never acquire once its own key is gone.
TEST_CASE("a waiter behind a lone holder acquires when the holder's key goes, never after its own",
          "[recipes][mutex]") {
    Cluster c;
    Client client(optionsFor(c));
    Session s(client, {30});
    auto deleteKey = [&](const std::string& key) {
        DeleteRangeRequest d;
        d.key = key;
        REQUIRE(client.del(d).ok());
    };
    // Returns the waiter's outcome after `act` ran while it waited behind `holder`.
    auto waitBehind = [&](const std::string& name, Mutex& holder, Mutex& waiter, auto act) {
        RecipeResult<Ok> got = Ok{};
        std::thread t([&] { got = waiter.acquire(Clock::now() + 20s); });
        REQUIRE(eventually([&] { return countKeys(client, name + "/") == 2; }));
        std::this_thread::sleep_for(100ms);  // the waiter is watching
        act(holder, waiter);
        t.join();
        return got;
    };

    SECTION("the holder releases: the waiter holds, with a larger fencing token") {
        Mutex holder(s, "locks/lone"), waiter(s, "locks/lone");
        REQUIRE(holder.acquire().ok());
        int64_t first = holder.fencingToken();
        auto got = waitBehind("locks/lone", holder, waiter,
                              [](Mutex& h, Mutex&) { T_REQUIRE(h.release().ok()); });
        REQUIRE(got.ok());
        CHECK(waiter.isHeld());
        CHECK(waiter.fencingToken() > first);
        REQUIRE(waiter.release().ok());
    }
    SECTION("the waiter's own key is deleted: it gives up and the holder keeps the lock") {
        Mutex holder(s, "locks/lone2"), waiter(s, "locks/lone2");
        REQUIRE(holder.acquire().ok());
        auto got = waitBehind("locks/lone2", holder, waiter,
                              [&](Mutex&, Mutex& w) { deleteKey(w.key()); });
        REQUIRE_FALSE(got.ok());
        CHECK(got.error().kind == RecipeError::Kind::NotHeld);
        CHECK_FALSE(waiter.isHeld());
        CHECK(holder.isHeld());
        REQUIRE(holder.release().ok());
    }
    SECTION("both keys are deleted in one revision: the waiter does not acquire") {
        // With the holder's key first in key order, its deletion is the revision's first event.
        std::unique_ptr<Mutex> h, w;
        for (int i = 0; i < 64 && !(h && h->key() < w->key()); ++i) {
            h = std::make_unique<Mutex>(s, "locks/lone3");
            w = std::make_unique<Mutex>(s, "locks/lone3");
        }
        REQUIRE(h->key() < w->key());
        Mutex& holder = *h;
        Mutex& waiter = *w;
        REQUIRE(holder.acquire().ok());
        auto got = waitBehind("locks/lone3", holder, waiter, [&](Mutex&, Mutex&) {
            DeleteRangeRequest d;
            d.key = "locks/lone3/";
            d.rangeEnd = kv::prefixEnd(d.key);
            T_REQUIRE(client.del(d).ok());
        });
        REQUIRE_FALSE(got.ok());
        CHECK(got.error().kind == RecipeError::Kind::NotHeld);
        CHECK_FALSE(waiter.isHeld());
    }
    CHECK_THREADS();
}
