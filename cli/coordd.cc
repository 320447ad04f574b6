// coordd: one member of a coord cluster.
//
//   coordd                                   # a one-member cluster on 127.0.0.1:2379/2380,
//                                            # data in ./default.coord
//   coordd --name n1 --data-dir n1.coord
//          --listen-client-urls 127.0.0.1:2379 --listen-peer-urls 127.0.0.1:2380
//          --initial-cluster n1=127.0.0.1:2380,n2=127.0.0.1:12380,n3=127.0.0.1:22380
//
// Threads: the core thread runs the NodeDriver and the peer transport (Boost.Asio); the main
// thread serves client RPC (Cap'n Proto, KJ); a signal thread turns SIGINT/SIGTERM into a
// clean shutdown. See docs/operations.md.
#include <capnp/ez-rpc.h>
#include <signal.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include "rpc/kv_service.h"
#include "rpc/peer_transport.h"

namespace {

using namespace coord;
using boost::asio::ip::tcp;

// FNV-1a: member and cluster ids are derived from names, identically on every member.
uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s)
        h = (h ^ c) * 1099511628211ull;
    return h == 0 ? 1 : h;
}

std::string stripScheme(std::string url) {
    for (const char* scheme : {"http://", "https://", "tcp://"}) {
        if (url.rfind(scheme, 0) == 0) url = url.substr(std::strlen(scheme));
    }
    return url;
}

tcp::endpoint parseEndpoint(const std::string& url) {
    std::string hostPort = stripScheme(url);
    auto colon = hostPort.rfind(':');
    if (colon == std::string::npos) throw std::runtime_error("'" + url + "' needs host:port");
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(hostPort.substr(0, colon), ec);
    if (ec) throw std::runtime_error("'" + url + "': the host must be an IP address");
    int port = 0;
    try {
        port = std::stoi(hostPort.substr(colon + 1));
    } catch (const std::exception&) {
        port = 0;
    }
    if (port <= 0 || port > 65535) throw std::runtime_error("'" + url + "': bad port");
    return tcp::endpoint(address, static_cast<unsigned short>(port));
}

// "n1=127.0.0.1:2380,n2=..." → name → peer address.
std::map<std::string, std::string> parseInitialCluster(const std::string& spec) {
    std::map<std::string, std::string> out;
    std::stringstream in(spec);
    std::string item;
    while (std::getline(in, item, ',')) {
        auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw std::runtime_error("--initial-cluster entry '" + item +
                                     "' is not name=host:port");
        }
        if (!out.emplace(item.substr(0, eq), item.substr(eq + 1)).second) {
            throw std::runtime_error("--initial-cluster names member '" + item.substr(0, eq) +
                                     "' twice");
        }
    }
    return out;
}

// The identity file in the data dir: a data dir belongs to one member of one cluster.
void checkIdentity(const std::filesystem::path& dir, uint64_t clusterId, uint64_t memberId) {
    auto file = dir / "identity";
    char expected[64];
    std::snprintf(expected, sizeof expected, "cluster %016llx member %016llx",
                  static_cast<unsigned long long>(clusterId),
                  static_cast<unsigned long long>(memberId));
    if (std::filesystem::exists(file)) {
        std::ifstream in(file);
        std::string found;
        std::getline(in, found);
        if (found != expected) {
            throw std::runtime_error("data dir " + dir.string() + " belongs to '" + found +
                                     "', not to '" + expected +
                                     "' (another cluster or member): refusing to start");
        }
        return;
    }
    std::ofstream out(file);
    out << expected << "\n";
    if (!out) throw std::runtime_error("cannot write " + file.string());
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"coordd: a member of a coord cluster"};
    std::string name = "default";
    std::string dataDir;
    std::string clientUrl = "127.0.0.1:2379";
    std::string peerUrl = "127.0.0.1:2380";
    std::string initialCluster;
    std::string token = "coord-cluster";
    int heartbeatMs = 100;
    int electionMs = 1000;
    uint64_t snapshotCount = 10000;
    size_t quotaBytes = size_t{2} << 30;
    size_t maxRequestBytes = 1536 * 1024;
    size_t maxTxnOps = 128;
    app.add_option("--name", name, "this member's name")->capture_default_str();
    app.add_option("--data-dir", dataDir, "data directory (default: ./<name>.coord)");
    app.add_option("--listen-client-urls", clientUrl, "client RPC address (ip:port)")
        ->capture_default_str();
    app.add_option("--listen-peer-urls", peerUrl, "peer (Raft) address (ip:port)")
        ->capture_default_str();
    app.add_option("--initial-cluster", initialCluster,
                   "every member as name=peer-ip:port, comma-separated (default: this member "
                   "alone)");
    app.add_option("--initial-cluster-token", token, "names the cluster; members must agree")
        ->capture_default_str();
    app.add_option("--heartbeat-interval", heartbeatMs, "milliseconds between heartbeats")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    app.add_option("--election-timeout", electionMs,
                   "milliseconds without a leader before an election")
        ->check(CLI::Range(2, 600000))
        ->capture_default_str();
    app.add_option("--snapshot-count", snapshotCount, "applied entries between log compactions")
        ->check(CLI::Range(uint64_t{100}, uint64_t{100000000}))
        ->capture_default_str();
    app.add_option("--quota-backend-bytes", quotaBytes, "refuse writes once the data is this large")
        ->capture_default_str();
    app.add_option("--max-request-bytes", maxRequestBytes, "largest value accepted")
        ->capture_default_str();
    app.add_option("--max-txn-ops", maxTxnOps, "most operations in one txn branch")
        ->check(CLI::Range(size_t{1}, size_t{100000}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    if (electionMs < 2 * heartbeatMs) {
        std::fprintf(stderr,
                     "coordd: --election-timeout must be at least twice --heartbeat-interval\n");
        return 2;
    }
    if (dataDir.empty()) dataDir = name + ".coord";
    if (initialCluster.empty()) initialCluster = name + "=" + peerUrl;

    try {
        auto members = parseInitialCluster(initialCluster);
        if (!members.count(name)) {
            throw std::runtime_error("--initial-cluster does not name this member '" + name + "'");
        }
        std::string clusterKey = token;
        for (const auto& [n, url] : members)
            clusterKey += "," + n + "=" + stripScheme(url);
        uint64_t clusterId = fnv1a(clusterKey);
        uint64_t selfId = fnv1a(name);

        std::filesystem::create_directories(dataDir);
        checkIdentity(dataDir, clusterId, selfId);

        rpc::PeerTransportConfig pc;
        pc.self = selfId;
        pc.clusterId = clusterId;
        rpc::NodeConfig nc;
        nc.id = selfId;
        nc.initialVoters.clear();
        for (const auto& [n, url] : members) {
            pc.peers[fnv1a(n)] = parseEndpoint(url);
            nc.initialVoters.push_back(fnv1a(n));
        }
        nc.dataFile = (std::filesystem::path(dataDir) / "member.mdb").string();
        nc.tickMs = heartbeatMs;
        nc.heartbeatTicks = 1;
        nc.electionTicks = electionMs / heartbeatMs;
        nc.snapshotCount = snapshotCount;
        // Entries kept behind a compaction for slow followers: up to 1000, never more than the
        // compaction interval itself.
        nc.snapshotCatchUpEntries = std::min<uint64_t>(1000, snapshotCount);
        nc.store.quotaBytes = quotaBytes;
        nc.store.maxValueBytes = maxRequestBytes;
        nc.store.maxTxnOps = maxTxnOps;

        // Signals go to one thread that asks the main loop to stop.
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGINT);
        sigaddset(&signals, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &signals, nullptr);

        boost::asio::io_context io;
        auto work = boost::asio::make_work_guard(io);
        tcp::acceptor acceptor(io, parseEndpoint(peerUrl));
        rpc::NodeDriver* driverPtr = nullptr;
        rpc::PeerTransport transport(io, std::move(acceptor), pc,
                                     [&](raft::Message m) { driverPtr->deliver(std::move(m)); });
        rpc::NodeDriver driver(io, nc, transport);
        driverPtr = &driver;
        transport.start();
        driver.start();
        std::thread core([&] { io.run(); });

        auto client = parseEndpoint(clientUrl);
        capnp::EzRpcServer server(kj::heap<rpc::CoordService>(driver, clusterId),
                                  client.address().to_string(), client.port());
        auto& ws = server.getWaitScope();
        server.getPort().wait(ws);
        auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
        auto* fulfiller = paf.fulfiller.get();  // owned here, outlives the signal thread
        std::thread signalThread([&signals, fulfiller] {
            int sig = 0;
            sigwait(&signals, &sig);
            fulfiller->fulfill();
        });
        std::printf(
            "coordd: member %s (id %016llx) of cluster %016llx: clients on %s, peers on "
            "%s, data in %s\n",
            name.c_str(), static_cast<unsigned long long>(selfId),
            static_cast<unsigned long long>(clusterId), clientUrl.c_str(), peerUrl.c_str(),
            dataDir.c_str());
        std::fflush(stdout);
        paf.promise.wait(ws);
        std::printf("coordd: %s shutting down\n", name.c_str());
        std::fflush(stdout);

        driver.stop();
        std::promise<void> stopped;
        boost::asio::post(io, [&] {
            transport.stop();
            stopped.set_value();
        });
        stopped.get_future().wait();
        work.reset();
        io.stop();
        core.join();
        signalThread.join();
        return 0;
    } catch (const kj::Exception& e) {
        std::fprintf(stderr, "coordd: %s\n", e.getDescription().cStr());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "coordd: %s\n", e.what());
        return 1;
    }
}
