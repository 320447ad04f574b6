// Three NodeDrivers joined by the TCP peer transport on 127.0.0.1 (ports picked by the kernel),
// each on its own io_context thread; and a hostile peer that must not hurt them.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <future>
#include <thread>

#include "rpc/codec.h"
#include "rpc/peer_transport.h"
#include "tests/rpc/driver_helpers.h"
#include "tests/support/temp_dir.h"

using namespace coord;
using namespace coord::rpc;
using namespace coord::rpc::test;
using namespace std::chrono_literals;
using boost::asio::ip::tcp;

namespace {

constexpr uint64_t kClusterId = 0xC0DE;

struct TcpMember {
    boost::asio::io_context io;
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
    std::unique_ptr<PeerTransport> transport;
    std::unique_ptr<NodeDriver> driver;
    std::thread thread;
    tcp::endpoint endpoint;
};

class TcpCluster {
  public:
    explicit TcpCluster(int n) {
        std::map<raft::NodeId, tcp::acceptor> acceptors;
        std::map<raft::NodeId, tcp::endpoint> endpoints;
        for (int i = 1; i <= n; ++i) {
            auto id = static_cast<raft::NodeId>(i);
            members_[id] = std::make_unique<TcpMember>();
            tcp::acceptor a(members_[id]->io,
                            tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
            endpoints[id] = a.local_endpoint();
            members_[id]->endpoint = a.local_endpoint();
            acceptors.emplace(id, std::move(a));
        }
        for (auto& [id, m] : members_) {
            PeerTransportConfig pc;
            pc.self = id;
            pc.clusterId = kClusterId;
            pc.peers = endpoints;
            NodeDriver** slot = &drivers_[id];
            m->transport = std::make_unique<PeerTransport>(
                m->io, std::move(acceptors.at(id)), pc,
                [slot](raft::Message msg) { (*slot)->deliver(std::move(msg)); });
            NodeConfig c;
            c.id = id;
            for (int i = 1; i <= n; ++i)
                c.initialVoters.push_back(static_cast<raft::NodeId>(i));
            c.dataFile = dir_.file("m" + std::to_string(id) + ".mdb");
            c.tickMs = 10;
            c.store.sync = false;
            c.seed = id;
            m->driver = std::make_unique<NodeDriver>(m->io, c, *m->transport);
            *slot = m->driver.get();
            m->work = std::make_unique<
                boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
                m->io.get_executor());
            m->transport->start();
            m->driver->start();
            m->thread = std::thread([io = &m->io] { io->run(); });
        }
    }

    ~TcpCluster() {
        for (auto& [id, m] : members_)
            stop(id);
    }

    void stop(raft::NodeId id) {
        auto& m = members_.at(id);
        if (!m->thread.joinable()) return;
        m->driver->stop();
        std::promise<void> done;
        boost::asio::post(m->io, [&] {
            m->transport->stop();
            done.set_value();
        });
        done.get_future().wait();
        m->work.reset();
        m->io.stop();
        m->thread.join();
    }

    NodeDriver& driver(raft::NodeId id) { return *members_.at(id)->driver; }
    PeerTransport& transport(raft::NodeId id) { return *members_.at(id)->transport; }
    tcp::endpoint endpoint(raft::NodeId id) { return members_.at(id)->endpoint; }

    raft::NodeId waitForLeader(const std::vector<raft::NodeId>& live) {
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            raft::NodeId lead = driver(live[0]).leader();
            bool agreed = lead != 0 && std::count(live.begin(), live.end(), lead);
            for (auto id : live)
                agreed = agreed && driver(id).leader() == lead;
            if (agreed) return lead;
            std::this_thread::sleep_for(5ms);
        }
        FAIL("no leader within 10 s");
        return 0;
    }

  private:
    coord::test::TempDir dir_;
    std::map<raft::NodeId, std::unique_ptr<TcpMember>> members_;
    std::map<raft::NodeId, NodeDriver*> drivers_;
};

kv::KvResult<kv::Response> put(NodeDriver& d, std::string k, std::string v) {
    return putRetrying(d, std::move(k), std::move(v));
}

void sendRaw(tcp::endpoint ep, const std::string& bytes) {
    boost::asio::io_context io;
    tcp::socket s(io);
    s.connect(ep);
    boost::system::error_code ec;
    boost::asio::write(s, boost::asio::buffer(bytes), ec);
    // Wait for the member to hang up on us (or time out): it must not keep a hostile stream.
    s.non_blocking(false);
    char c;
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < deadline) {
        if (s.available(ec) == 0 && ec) break;
        size_t n = s.read_some(boost::asio::buffer(&c, 1), ec);
        if (ec || n == 0) break;
    }
}

}  // namespace

TEST_CASE("three members replicate over TCP on loopback and survive losing one",
          "[rpc][peer][threads]") {
    TcpCluster c(3);
    raft::NodeId leader = c.waitForLeader({1, 2, 3});
    for (raft::NodeId via = 1; via <= 3; ++via) {
        REQUIRE(put(c.driver(via), "k" + std::to_string(via), "v").ok());
    }
    for (raft::NodeId id = 1; id <= 3; ++id) {
        REQUIRE(readBarrier(c.driver(id)));
        CHECK(c.driver(id).store().range(kv::RangeRequest{"k", kv::prefixEnd("k")}).value().count ==
              3);
    }
    c.stop(leader);
    std::vector<raft::NodeId> live;
    for (raft::NodeId id = 1; id <= 3; ++id) {
        if (id != leader) live.push_back(id);
    }
    raft::NodeId next = c.waitForLeader(live);
    CHECK(next != leader);
    REQUIRE(put(c.driver(live[0]), "after", "failover").ok());
    REQUIRE(readBarrier(c.driver(live[1])));
    CHECK(c.driver(live[1]).store().get("after")->value == "failover");
}

TEST_CASE("a member refuses garbage, oversized frames and other clusters' peers",
          "[rpc][peer][threads]") {
    TcpCluster c(3);
    c.waitForLeader({1, 2, 3});
    raft::Message hb;
    hb.type = raft::MessageType::Heartbeat;
    hb.from = 2;
    hb.to = 1;
    hb.term = 99;
    sendRaw(c.endpoint(1), std::string(64, '\x5a'));  // garbage
    sendRaw(c.endpoint(1), std::string("\xff\xff\xff\xff", 4) + std::string(60, '\0'));
    std::string huge(8, '\0');  // one segment of 2^31 words
    huge[4] = '\0', huge[5] = '\0', huge[6] = '\0', huge[7] = '\x7f';
    sendRaw(c.endpoint(1), huge);
    sendRaw(c.endpoint(1), encodePeerFrame(kClusterId + 1, hb));  // another cluster
    raft::Message hup;
    hup.type = raft::MessageType::Hup;
    hup.from = 2;
    hup.to = 1;
    sendRaw(c.endpoint(1), encodePeerFrame(kClusterId, hup));  // local-only type
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (c.transport(1).refusedFrames() < 5 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    CHECK(c.transport(1).refusedFrames() >= 5);
    // The term-99 heartbeat from another cluster never reached the core.
    CHECK(c.driver(1).term() < 99);
    // And the cluster still works.
    REQUIRE(put(c.driver(1), "still", "ok").ok());
}

TEST_CASE("a connection budget keeps a reserve of descriptors and counts what it refuses",
          "[rpc][budget]") {
    CHECK(ConnectionBudget::limitFor(64) == 32);     // a reserve of at least 32
    CHECK(ConnectionBudget::limitFor(1024) == 896);  // and of an eighth
    CHECK(ConnectionBudget::limitFor(1 << 20) == (1 << 20) - (1 << 17));
    CHECK(ConnectionBudget::limitFor(16) == 1);  // never none at all

    ConnectionBudget budget(2);
    auto a = budget.take(ConnectionBudget::Port::Client);
    auto b = budget.take(ConnectionBudget::Port::Peer);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(budget.open() == 2);
    CHECK_FALSE(budget.take(ConnectionBudget::Port::Client));
    CHECK_FALSE(budget.take(ConnectionBudget::Port::Peer));
    CHECK(budget.refused() == 2);
    {
        auto moved = std::move(*a);  // a slot moves with its connection
        a.reset();
        CHECK(budget.open() == 2);
    }
    CHECK(budget.open() == 1);  // released when the connection goes
    auto c = budget.take(ConnectionBudget::Port::Client);
    CHECK(c);
    CHECK(budget.open() == 2);
}

TEST_CASE("a connection budget keeps its last places for peers", "[rpc][budget]") {
    CHECK(ConnectionBudget::peerReserveFor(896) == 16);
    CHECK(ConnectionBudget::peerReserveFor(32) == 8);  // at most a quarter
    ConnectionBudget budget(10, 3);
    CHECK(budget.clientLimit() == 7);
    std::vector<ConnectionBudget::Slot> slots;
    for (int i = 0; i < 7; ++i) {
        auto s = budget.take(ConnectionBudget::Port::Client);
        REQUIRE(s);
        slots.push_back(std::move(*s));
    }
    // A flood of clients stops short of the peers' places.
    CHECK_FALSE(budget.take(ConnectionBudget::Port::Client));
    for (int i = 0; i < 3; ++i) {
        auto s = budget.take(ConnectionBudget::Port::Peer);
        REQUIRE(s);
        slots.push_back(std::move(*s));
    }
    CHECK_FALSE(budget.take(ConnectionBudget::Port::Peer));
    CHECK(budget.open() == 10);
    // With a peer gone, the free place is still kept for peers.
    slots.pop_back();
    CHECK_FALSE(budget.take(ConnectionBudget::Port::Client));
    CHECK(budget.take(ConnectionBudget::Port::Peer));
}

namespace {

// A PeerTransport listening on a free loopback port under `budget`, its io_context run on a
// thread of its own for at most `runFor`, and raw connections to it.
struct Listening {
    boost::asio::io_context io;
    ConnectionBudget& budget;
    unsigned short port = 0;
    std::unique_ptr<PeerTransport> transport;
    std::thread loop;

    Listening(ConnectionBudget& b, int handshakeTimeoutMs, std::chrono::seconds runFor)
        : budget(b) {
        tcp::acceptor acceptor(io, tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
        port = acceptor.local_endpoint().port();
        PeerTransportConfig config;
        config.self = 1;
        config.clusterId = 7;
        config.budget = &budget;
        config.handshakeTimeoutMs = handshakeTimeoutMs;
        transport =
            std::make_unique<PeerTransport>(io, std::move(acceptor), config, [](raft::Message) {});
        transport->start();
        loop = std::thread([this, runFor] { io.run_for(runFor); });
    }
    ~Listening() {
        boost::asio::post(io, [this] { transport->stop(); });
        io.stop();
        loop.join();
    }

    tcp::socket connect() {
        tcp::socket s(io);
        s.connect(tcp::endpoint(boost::asio::ip::address_v4::loopback(), port));
        timeval limit{5, 0};  // a read that is never answered fails instead of hanging
        setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        return s;
    }
    bool waitOpen(size_t n) {
        for (int i = 0; i < 800 && budget.open() != n; ++i)
            std::this_thread::sleep_for(5ms);
        return budget.open() == n;
    }
    // True when the member closed `s` (a read sees the end).
    static bool closedByMember(tcp::socket& s) {
        char byte;
        boost::system::error_code ec;
        s.read_some(boost::asio::buffer(&byte, 1), ec);
        return ec == boost::asio::error::eof;
    }
};

}  // namespace

TEST_CASE("peer connections beyond the budget are closed at once and the listener goes on",
          "[rpc][budget]") {
    ConnectionBudget budget(1);
    Listening l(budget, 10000, 3s);
    auto first = l.connect();
    REQUIRE(l.waitOpen(1));
    // The second is over the budget: the member closes it.
    auto second = l.connect();
    CHECK(Listening::closedByMember(second));
    CHECK(budget.refused() == 1);
    // Once the first goes, another is taken.
    first.close();
    REQUIRE(l.waitOpen(0));
    auto third = l.connect();
    CHECK(l.waitOpen(1));
}

TEST_CASE("a peer connection that sends nothing is closed at the handshake deadline",
          "[rpc][budget]") {
    ConnectionBudget budget(8);
    Listening l(budget, 1500, 10s);
    // A stranger that says nothing loses its place once the deadline passes.
    auto silent = l.connect();
    REQUIRE(l.waitOpen(1));
    auto start = std::chrono::steady_clock::now();
    CHECK(Listening::closedByMember(silent));
    CHECK(std::chrono::steady_clock::now() - start >= 1000ms);
    CHECK(l.waitOpen(0));
    CHECK(l.transport->refusedFrames() == 1);
    // One that connects and leaves gives its place back at once, not at the deadline.
    auto gone = l.connect();
    REQUIRE(l.waitOpen(1));
    gone.close();
    auto closedAt = std::chrono::steady_clock::now();
    CHECK(l.waitOpen(0));
    CHECK(std::chrono::steady_clock::now() - closedAt < 1000ms);
}
