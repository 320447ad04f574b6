// NodeDrivers of a 3-member cluster in one process, each on its own io_context thread, joined
// by an in-memory transport: replication, forwarding, linearizable reads, failover, recovery.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "rpc/node_driver.h"
#include "tests/rpc/driver_helpers.h"
#include "tests/support/temp_dir.h"

using namespace coord;
using namespace coord::rpc;
using namespace coord::rpc::test;
using namespace std::chrono_literals;

namespace {

class LocalCluster;

class LocalTransport : public Transport {
  public:
    explicit LocalTransport(LocalCluster& c) : cluster_(c) {}
    void send(const raft::Message& m) override;

  private:
    LocalCluster& cluster_;
};

struct Member {
    boost::asio::io_context io;
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
    std::thread thread;
    std::unique_ptr<LocalTransport> transport;
    std::unique_ptr<NodeDriver> driver;
};

class LocalCluster {
  public:
    explicit LocalCluster(int n, std::function<void(NodeConfig&)> tweak = {})
        : n_(n), tweak_(std::move(tweak)) {
        for (int i = 1; i <= n; ++i)
            start(static_cast<raft::NodeId>(i));
    }
    ~LocalCluster() {
        for (int i = 1; i <= n_; ++i)
            stop(static_cast<raft::NodeId>(i));
    }

    void start(raft::NodeId id) {
        auto m = std::make_unique<Member>();
        m->transport = std::make_unique<LocalTransport>(*this);
        NodeConfig c;
        c.id = id;
        for (int i = 1; i <= n_; ++i)
            c.initialVoters.push_back(static_cast<raft::NodeId>(i));
        c.dataFile = dir_.file("member" + std::to_string(id) + ".mdb");
        c.tickMs = 10;
        c.store.sync = false;  // durability is the crash tests' business; keep this fast
        c.seed = id;
        if (tweak_) tweak_(c);
        m->driver = std::make_unique<NodeDriver>(m->io, c, *m->transport);
        m->work = std::make_unique<
            boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
            m->io.get_executor());
        m->driver->start();
        m->thread = std::thread([io = &m->io] { io->run(); });
        std::lock_guard lock(mu_);
        members_[id] = std::move(m);
    }

    void stop(raft::NodeId id) {
        std::unique_ptr<Member> m;
        {
            std::lock_guard lock(mu_);
            auto it = members_.find(id);
            if (it == members_.end()) return;
            m = std::move(it->second);
            members_.erase(it);
        }
        m->driver->stop();
        // Let the stop run (the work guard keeps the loop alive until then), then end it.
        std::promise<void> stopped;
        boost::asio::post(m->io, [&] { stopped.set_value(); });
        stopped.get_future().wait();
        m->work.reset();
        m->io.stop();
        m->thread.join();
    }

    void route(const raft::Message& msg) {
        std::lock_guard lock(mu_);
        if (observer_) observer_(msg);
        auto it = members_.find(msg.to);
        if (it != members_.end()) it->second->driver->deliver(msg);
    }

    std::string walDir(raft::NodeId id) {
        return dir_.file("member" + std::to_string(id) + ".mdb") + "-wal";
    }

    NodeDriver& driver(raft::NodeId id) {
        std::lock_guard lock(mu_);
        return *members_.at(id)->driver;
    }

    boost::asio::io_context& io(raft::NodeId id) {
        std::lock_guard lock(mu_);
        return members_.at(id)->io;
    }

    // Sees every message sent from now on (on the sender's core thread, under the cluster's
    // lock).
    void observe(std::function<void(const raft::Message&)> fn) {
        std::lock_guard lock(mu_);
        observer_ = std::move(fn);
    }

    // The member every live member agrees leads, or 0.
    raft::NodeId agreedLeader() {
        std::lock_guard lock(mu_);
        raft::NodeId lead = 0;
        for (auto& [id, m] : members_) {
            raft::NodeId l = m->driver->leader();
            if (l == 0 || (lead != 0 && l != lead) || !members_.count(l)) return 0;
            lead = l;
        }
        return lead;
    }

    raft::NodeId waitForLeader() {
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (raft::NodeId l = agreedLeader()) return l;
            std::this_thread::sleep_for(5ms);
        }
        FAIL("no leader within 10 s");
        return 0;
    }

  private:
    int n_;
    std::function<void(NodeConfig&)> tweak_;
    coord::test::TempDir dir_;
    std::mutex mu_;
    std::map<raft::NodeId, std::unique_ptr<Member>> members_;
    std::function<void(const raft::Message&)> observer_;
};

void LocalTransport::send(const raft::Message& m) {
    cluster_.route(m);
}

kv::KvResult<kv::Response> put(LocalCluster& c, raft::NodeId via, std::string k, std::string v) {
    return putRetrying(c.driver(via), std::move(k), std::move(v));
}

}  // namespace

TEST_CASE("a 3-member cluster commits writes proposed at any member", "[rpc][driver]") {
    // With the log written by its own thread (the default) and by the core thread.
    bool writer = GENERATE(true, false);
    INFO("log writer thread: " << writer);
    LocalCluster c(3, [writer](NodeConfig& nc) { nc.logWriter = writer; });
    raft::NodeId leader = c.waitForLeader();
    CHECK(leader != 0);
    for (raft::NodeId via = 1; via <= 3; ++via) {
        auto r = put(c, via, "k" + std::to_string(via), "from " + std::to_string(via));
        REQUIRE(r.ok());
        CHECK(std::get<kv::PutResponse>(r.value()).revision > 1);
    }
    // After a linearizable read barrier every member's store holds every write.
    for (raft::NodeId id = 1; id <= 3; ++id) {
        REQUIRE(readBarrier(c.driver(id)));
        for (raft::NodeId k = 1; k <= 3; ++k) {
            auto kv = c.driver(id).store().get("k" + std::to_string(k));
            REQUIRE(kv);
            CHECK(kv->value == "from " + std::to_string(k));
        }
    }
}

TEST_CASE("writes go on after the leader stops and a restarted member catches up",
          "[rpc][driver]") {
    bool writer = GENERATE(true, false);
    INFO("log writer thread: " << writer);
    LocalCluster c(3, [writer](NodeConfig& nc) { nc.logWriter = writer; });
    raft::NodeId leader = c.waitForLeader();
    REQUIRE(put(c, leader, "before", "1").ok());
    c.stop(leader);
    raft::NodeId next = c.waitForLeader();
    CHECK(next != leader);
    REQUIRE(put(c, next, "after", "2").ok());
    c.start(leader);
    REQUIRE(readBarrier(c.driver(leader)));
    CHECK(c.driver(leader).store().get("before")->value == "1");
    CHECK(c.driver(leader).store().get("after")->value == "2");
}

TEST_CASE("store outcomes come back through the driver, errors included", "[rpc][driver]") {
    LocalCluster c(1);
    c.waitForLeader();
    auto bad = writeSync(c.driver(1), kv::PutRequest{"", "v"});
    REQUIRE(bad.ok());
    REQUIRE_FALSE(bad->ok());
    CHECK(bad->error().code == kv::ErrorCode::EmptyKey);
    auto grant = writeSync(c.driver(1), kv::LeaseGrantRequest{0, 30});
    REQUIRE(grant.ok());
    REQUIRE(grant->ok());
    CHECK(std::get<kv::LeaseGrantResponse>(grant->value()).id == 1);
}

TEST_CASE("a member that knows no leader refuses writes at once", "[rpc][driver]") {
    LocalCluster c(3);
    c.stop(2);
    c.stop(3);
    auto o = writeSync(c.driver(1), kv::PutRequest{"k", "v"});
    // Either no leader was ever elected, or member 1 lost it: never a silent success.
    if (o.ok()) {
        FAIL("write succeeded without a quorum");
    } else {
        CHECK((o.error() == Unavailable::NoLeader || o.error() == Unavailable::Timeout));
    }
}

TEST_CASE("leases expire on the leader's clock, revoking their keys everywhere, unless kept alive",
          "[rpc][driver]") {
    LocalCluster c(3);
    raft::NodeId leader = c.waitForLeader();
    auto grant = [&](int64_t ttl) {
        auto o = writeSync(c.driver(leader), kv::LeaseGrantRequest{0, ttl});
        REQUIRE(o.ok());
        REQUIRE(o->ok());
        return std::get<kv::LeaseGrantResponse>(o->value()).id;
    };
    int64_t doomed = grant(1);
    int64_t kept = grant(1);
    REQUIRE(writeSync(c.driver(leader), kv::PutRequest{"l/doomed", "x", doomed})->ok());
    REQUIRE(writeSync(c.driver(leader), kv::PutRequest{"l/kept", "x", kept})->ok());

    auto keepAlive = [&](raft::NodeId at, int64_t id) {
        std::promise<Result<kv::KvResult<int64_t>, Unavailable>> p;
        auto f = p.get_future();
        c.driver(at).leaseKeepAlive(
            id, [&p](Result<kv::KvResult<int64_t>, Unavailable> r) { p.set_value(std::move(r)); });
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        return f.get();
    };
    // Keep one lease alive for well past its TTL (plus the new-leader grace).
    auto until = std::chrono::steady_clock::now() + 2500ms;
    while (std::chrono::steady_clock::now() < until) {
        auto r = keepAlive(leader, kept);
        REQUIRE(r.ok());
        REQUIRE(r->ok());
        CHECK(r->value() == 1);
        std::this_thread::sleep_for(200ms);
    }
    for (raft::NodeId id = 1; id <= 3; ++id) {
        REQUIRE(readBarrier(c.driver(id)));
        CHECK_FALSE(c.driver(id).store().get("l/doomed"));
        CHECK(c.driver(id).store().get("l/kept"));
        CHECK_FALSE(c.driver(id).store().leaseTimeToLive(doomed));
    }
    auto gone = keepAlive(leader, doomed);
    REQUIRE(gone.ok());
    REQUIRE_FALSE(gone->ok());
    CHECK(gone->error().code == kv::ErrorCode::LeaseNotFound);
    raft::NodeId follower = leader == 1 ? 2 : 1;
    auto notLeader = keepAlive(follower, kept);
    REQUIRE_FALSE(notLeader.ok());
    CHECK(notLeader.error() == Unavailable::NotLeader);
}

TEST_CASE("a compact request is applied everywhere and old revisions are removed in steps",
          "[rpc][driver]") {
    LocalCluster c(3);
    raft::NodeId leader = c.waitForLeader();
    for (int i = 0; i < 50; ++i)
        REQUIRE(put(c, leader, "c/" + std::to_string(i % 5), "v").ok());
    int64_t rev = c.driver(leader).store().currentRevision();
    auto o = writeSync(c.driver(leader), kv::CompactRequest{rev});
    REQUIRE(o.ok());
    REQUIRE(o->ok());
    for (raft::NodeId id = 1; id <= 3; ++id) {
        REQUIRE(readBarrier(c.driver(id)));
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (c.driver(id).store().compactionPending() &&
               std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(10ms);
        }
        CHECK_FALSE(c.driver(id).store().compactionPending());
        kv::RangeRequest old;
        old.key = "c/";
        old.rangeEnd = kv::prefixEnd("c/");
        old.revision = rev - 1;
        auto r = c.driver(id).store().range(old);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == kv::ErrorCode::Compacted);
        old.revision = rev;
        CHECK(c.driver(id).store().range(old).value().kvs.size() == 5);
    }
}

TEST_CASE("writes are answered before the store commits them, reads run where they see them",
          "[rpc][driver]") {
    LocalCluster c(3, [](NodeConfig& nc) {
        nc.storeCommitMs = 60000;  // commit only when told to
        nc.storeCommitRequests = 1000000;
    });
    raft::NodeId leader = c.waitForLeader();
    REQUIRE(put(c, leader, "k", "v").ok());
    NodeDriver& d = c.driver(leader);
    CHECK(d.store().hasDeferred());
    CHECK_FALSE(d.store().get("k"));  // this thread reads the committed state

    using ReadAt = NodeDriver::ReadAt;
    struct Seen {
        bool ok = false;
        ReadAt at = ReadAt::Anywhere;
        std::optional<kv::KeyValue> kv;
    };
    auto readK = [&](bool linearizable) {
        std::promise<Seen> p;
        auto f = p.get_future();
        d.read(linearizable, [&](Result<ReadAt, Unavailable> at) {
            Seen seen;
            seen.ok = at.ok();
            if (at.ok()) {
                seen.at = *at;
                if (*at == ReadAt::Core) seen.kv = d.store().get("k");  // on the core thread
            }
            p.set_value(std::move(seen));
        });
        REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
        return f.get();
    };
    for (bool linearizable : {false, true}) {
        Seen seen = readK(linearizable);
        REQUIRE(seen.ok);
        CHECK(seen.at == ReadAt::Core);
        REQUIRE(seen.kv);
        CHECK(seen.kv->value == "v");
    }

    // Once committed, every thread sees it and reads stay where they are.
    std::promise<bool> committed;
    d.commitStore([&](Result<Ok, Unavailable> r) { committed.set_value(r.ok()); });
    REQUIRE(committed.get_future().get());
    CHECK_FALSE(d.store().hasDeferred());
    REQUIRE(d.store().get("k"));
    CHECK(d.store().get("k")->value == "v");
    Seen after = readK(true);
    REQUIRE(after.ok);
    CHECK(after.at == ReadAt::Anywhere);
}

TEST_CASE("a member hands free memory back once after each burst of writes", "[rpc][driver]") {
    LocalCluster c(1, [](NodeConfig& nc) { nc.releaseMemoryIdleMs = 200; });
    c.waitForLeader();
    auto releasesReach = [&](uint64_t n) {
        for (int i = 0; i < 500 && c.driver(1).memoryReleases() < n; ++i)
            std::this_thread::sleep_for(10ms);
        return c.driver(1).memoryReleases();
    };
    for (int i = 0; i < 50; ++i)
        REQUIRE(put(c, 1, "k" + std::to_string(i), std::string(1000, 'v')).ok());
    CHECK(releasesReach(1) == 1);
    // Idle: nothing more to hand back until more writes come.
    std::this_thread::sleep_for(600ms);
    CHECK(c.driver(1).memoryReleases() == 1);
    REQUIRE(put(c, 1, "more", "v").ok());
    CHECK(releasesReach(2) == 2);
}

TEST_CASE("releaseMemoryIdleMs = 0 never hands memory back", "[rpc][driver]") {
    LocalCluster c(1, [](NodeConfig& nc) { nc.releaseMemoryIdleMs = 0; });
    c.waitForLeader();
    REQUIRE(put(c, 1, "k", "v").ok());
    std::this_thread::sleep_for(300ms);
    CHECK(c.driver(1).memoryReleases() == 0);
}

TEST_CASE("an idle member commits the store's open batch once it is due, without another write",
          "[rpc][driver]") {
    // Ticks far apart: only the commit's own timer can commit within the test's window.
    LocalCluster c(1, [](NodeConfig& nc) {
        nc.tickMs = 5000;
        nc.storeCommitMs = 400;  // long enough that the answer comes first, even under TSan
        nc.storeCommitRequests = 1000000;
    });
    c.waitForLeader();
    NodeDriver& d = c.driver(1);
    for (int round = 0; round < 2; ++round) {
        auto sent = std::chrono::steady_clock::now();
        REQUIRE(put(c, 1, "k" + std::to_string(round), "v").ok());
        CHECK(d.store().hasDeferred());  // answered before the store commits it
        for (int i = 0; i < 300 && d.store().hasDeferred(); ++i)
            std::this_thread::sleep_for(10ms);
        CHECK_FALSE(d.store().hasDeferred());
        CHECK(std::chrono::steady_clock::now() - sent < 2s);
        CHECK(d.store().get("k" + std::to_string(round)));  // committed: any thread reads it
    }
}

TEST_CASE("log compaction leaves old segments and entries to a thread of its own",
          "[rpc][driver]") {
    LocalCluster c(3, [](NodeConfig& nc) {
        nc.snapshotCount = 50;
        nc.snapshotCatchUpEntries = 10;
        nc.walSegmentBytes = 8192;
    });
    raft::NodeId leader = c.waitForLeader();
    const std::string value(300, 'v');
    for (int i = 0; i < 400; ++i)
        REQUIRE(put(c, leader, "k" + std::to_string(i), value).ok());
    auto segments = [&](raft::NodeId id) {
        size_t n = 0;
        for (const auto& e : std::filesystem::directory_iterator(c.walDir(id)))
            n += e.path().extension() == ".wal" ? 1 : 0;
        return n;
    };
    // About 140 KB of entries in 8 KiB segments: without compaction some 17 segments each.
    for (raft::NodeId id = 1; id <= 3; ++id) {
        for (int i = 0; i < 500 && segments(id) > 5; ++i)
            std::this_thread::sleep_for(10ms);
        CHECK(segments(id) <= 5);
    }
    // A member restarted from what is left replays the rest and catches up.
    raft::NodeId other = leader == 3 ? 2 : 3;
    c.stop(other);
    REQUIRE(put(c, leader, "after", "v").ok());
    c.start(other);
    bool seen = false;
    for (int i = 0; i < 500 && !seen; ++i) {
        seen = c.driver(other).store().get("after").has_value() &&
               c.driver(other).store().get("k0").has_value();
        if (!seen) std::this_thread::sleep_for(10ms);
    }
    CHECK(seen);
}

TEST_CASE("writes that reach a member together are proposed and replicated together",
          "[rpc][driver]") {
    // Holding a leader's core thread stops its heartbeats: elections wait 3 s here, so that a
    // slow (sanitizer) build does not elect another leader meanwhile.
    LocalCluster c(3, [](NodeConfig& nc) { nc.electionTicks = 300; });
    raft::NodeId leader = c.waitForLeader();
    raft::NodeId follower = leader % 3 + 1;
    REQUIRE(put(c, follower, "warm", "up").ok());

    struct Seen {
        std::mutex mu;
        int proposals = 0;           // forwarded Propose messages carrying normal entries
        size_t proposedEntries = 0;  // and their entries
        int appends = 0;             // leader's Appends carrying normal entries
    };
    auto seen = std::make_shared<Seen>();
    c.observe([seen](const raft::Message& m) {
        bool normal = std::any_of(m.entries.begin(), m.entries.end(), [](const raft::Entry& e) {
            return e.type == raft::EntryType::Normal && !e.data.empty();
        });
        if (!normal) return;
        std::lock_guard lock(seen->mu);
        if (m.type == raft::MessageType::Propose) {
            ++seen->proposals;
            seen->proposedEntries += m.entries.size();
        } else if (m.type == raft::MessageType::Append) {
            ++seen->appends;
        }
    });

    // Holds a member's core thread while the writes are posted to it, so that they reach it in
    // one go (as writes from many clients do under load), then lets it run.
    auto writeTogether = [&](raft::NodeId via, const std::string& prefix, int writes = 50,
                             size_t valueBytes = 1) {
        // Futures taken before the other thread may touch their promises.
        std::promise<void> release;
        std::promise<void> held;
        std::shared_future<void> released = release.get_future().share();
        std::future<void> holding = held.get_future();
        boost::asio::post(c.io(via), [&held, released] {
            held.set_value();
            released.wait();
        });
        holding.wait();
        struct Outcomes {
            std::mutex mu;
            std::condition_variable cv;
            std::vector<std::optional<WriteOutcome>> got;
            int count = 0;
        };
        auto out = std::make_shared<Outcomes>();
        out->got.resize(writes);
        for (int i = 0; i < writes; ++i)
            c.driver(via).write(
                kv::PutRequest{prefix + std::to_string(i), std::string(valueBytes, 'v')},
                [out, i](WriteOutcome o) {
                    std::lock_guard lock(out->mu);
                    out->got[i] = std::move(o);
                    ++out->count;
                    out->cv.notify_all();
                });
        release.set_value();
        std::unique_lock lock(out->mu);
        REQUIRE(out->cv.wait_for(lock, 10s, [&] { return out->count == writes; }));
        std::set<int64_t> revisions;
        for (auto& o : out->got) {
            REQUIRE(o->ok());
            REQUIRE(o->value().ok());
            revisions.insert(std::get<kv::PutResponse>(o->value().value()).revision);
        }
        CHECK(revisions.size() == static_cast<size_t>(writes));  // each once, in its own revision
    };

    writeTogether(follower, "via-follower/");
    {
        std::lock_guard lock(seen->mu);
        CHECK(seen->proposals == 1);  // one forwarded proposal, not 50
        CHECK(seen->proposedEntries == 50);
        // The leader replicates them in a few Appends per follower (one when it keeps up).
        CHECK(seen->appends <= 6);
        seen->appends = 0;
    }
    writeTogether(leader, "via-leader/");
    {
        std::lock_guard lock(seen->mu);
        CHECK(seen->proposals == 1);  // nothing forwarded
        CHECK(seen->appends <= 6);
    }
    // A batch is cut at 4 MiB of entries: six writes of 1 MiB leave in two proposals.
    writeTogether(follower, "large/", 6, size_t{1} << 20);
    std::lock_guard lock(seen->mu);
    CHECK(seen->proposals == 3);
    CHECK(seen->proposedEntries == 56);
}
