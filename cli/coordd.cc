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
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <pthread.h>
#include <signal.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "common/log.h"
#include "common/port.h"
#include "rpc/buffered_stream.h"
#include "rpc/connection_budget.h"
#include "rpc/corruption_check.h"
#include "rpc/kv_service.h"
#include "rpc/peer_transport.h"

namespace {

using namespace coord;
using boost::asio::ip::tcp;

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
    auto port = parsePort(std::string_view(hostPort).substr(colon + 1));
    if (!port) throw std::runtime_error("'" + url + "': the port must be a number from 1 to 65535");
    return tcp::endpoint(address, *port);
}

// What a failed bind or listen says, without the system call's spelling ("Address already in
// use" from "::bind(sockfd, ...): Address already in use; toString() = ...").
std::string listenFailure(const std::string& description) {
    auto start = description.find("): ");
    std::string reason = start == std::string::npos ? description : description.substr(start + 3);
    return reason.substr(0, reason.find(';'));
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
std::string identityLine(uint64_t clusterId, uint64_t memberId) {
    char line[64];
    std::snprintf(line, sizeof line, "cluster %016llx member %016llx",
                  static_cast<unsigned long long>(clusterId),
                  static_cast<unsigned long long>(memberId));
    return line;
}

std::optional<std::string> readIdentity(const std::filesystem::path& dir) {
    auto file = dir / "identity";
    if (!std::filesystem::exists(file)) return std::nullopt;
    std::ifstream in(file);
    std::string found;
    std::getline(in, found);
    return found;
}

void writeIdentity(const std::filesystem::path& dir, uint64_t clusterId, uint64_t memberId) {
    auto file = dir / "identity";
    auto part = dir / "identity.part";
    {
        std::ofstream out(part);
        out << identityLine(clusterId, memberId) << "\n";
        if (!out) throw std::runtime_error("cannot write " + part.string());
    }
    std::filesystem::rename(part, file);
}

void refuseForeign(const std::filesystem::path& dir, const std::string& found,
                   const std::string& expected) {
    throw std::runtime_error("data dir " + dir.string() + " belongs to '" + found + "', not to '" +
                             expected + "' (another cluster or member): refusing to start");
}

// The cluster id this member serves: derived from the flags for a new cluster; for a member
// that joined an existing cluster, the one it adopted (0 until then).
uint64_t resolveClusterId(const std::filesystem::path& dir, bool existing, uint64_t derived,
                          uint64_t memberId) {
    auto found = readIdentity(dir);
    if (!existing) {
        std::string expected = identityLine(derived, memberId);
        if (!found) {
            writeIdentity(dir, derived, memberId);
        } else if (*found != expected) {
            refuseForeign(dir, *found, expected);
        }
        return derived;
    }
    if (!found) return 0;
    unsigned long long c = 0, m = 0;
    if (std::sscanf(found->c_str(), "cluster %llx member %llx", &c, &m) != 2 || m != memberId) {
        refuseForeign(dir, *found, identityLine(0, memberId));
    }
    return c;
}

// Imports a backup into a fresh data dir. The member then bootstraps its new cluster on top of
// it: the Raft log starts after the backup's applied index, with the new membership.
void restoreSnapshot(const std::string& file, const std::filesystem::path& dir) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + file);
    auto dataFile = dir / "member.mdb";
    try {
        kv::Store store(dataFile.string(), kv::Options{});
        auto imported = store.importSnapshot(in);
        if (!imported.ok()) {
            throw std::runtime_error(file + ": " + imported.error().message);
        }
    } catch (...) {
        std::filesystem::remove_all(dir);  // leave no half-restored member behind
        throw;
    }
    COORD_LOG_INFO("restored %s into %s", file.c_str(), dir.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    // A file that may not grow (RLIMIT_FSIZE) is an I/O error to report, not a signal to die of.
    std::signal(SIGXFSZ, SIG_IGN);
    CLI::App app{"coordd: a member of a coord cluster"};
    std::string name = "default";
    std::string dataDir;
    std::string clientUrl = "127.0.0.1:2379";
    std::string peerUrl = "127.0.0.1:2380";
    std::string initialCluster;
    std::string clusterState = "new";
    std::string advertiseClientUrl;
    std::string restoreFile;
    std::string token = "coord-cluster";
    int heartbeatMs = 100;
    int electionMs = 1000;
    uint64_t snapshotCount = 10000;
    int batchIntervalMs = rpc::NodeConfig{}.storeCommitMs;
    size_t batchLimit = rpc::NodeConfig{}.storeCommitRequests;
    size_t quotaBytes = size_t{2} << 30;
    size_t maxRequestBytes = 1536 * 1024;
    size_t maxTxnOps = 128;
    size_t maxWatches = rpc::WatchLimits{}.maxWatches;
    std::string logLevel = "info";
    int corruptCheckMs = 0;
    app.add_option("--name", name, "this member's name")->capture_default_str();
    app.add_option("--data-dir", dataDir, "data directory (default: ./<name>.coord)");
    app.add_option("--listen-client-urls", clientUrl, "client RPC address (ip:port)")
        ->capture_default_str();
    app.add_option("--listen-peer-urls", peerUrl, "peer (Raft) address (ip:port)")
        ->capture_default_str();
    app.add_option("--initial-cluster", initialCluster,
                   "every member as name=peer-ip:port, comma-separated (default: this member "
                   "alone)");
    app.add_option("--initial-cluster-state", clusterState,
                   "new: bootstrap a new cluster with --initial-cluster; existing: join a cluster "
                   "that added this member (coordctl member add), or restart a member that did")
        ->check(CLI::IsMember({"new", "existing"}))
        ->capture_default_str();
    app.add_option("--advertise-client-urls", advertiseClientUrl,
                   "client address published to the member list (default: the listen address)");
    app.add_option("--initial-cluster-token", token, "names the cluster; members must agree")
        ->capture_default_str();
    app.add_option("--restore-snapshot", restoreFile,
                   "bootstrap a new cluster from a backup (coordctl snapshot save): every member "
                   "of the new --initial-cluster starts with the same file and a fresh data dir")
        ->check(CLI::ExistingFile);
    app.add_option("--heartbeat-interval", heartbeatMs, "milliseconds between heartbeats")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    app.add_option("--election-timeout", electionMs,
                   "milliseconds without a leader before an election")
        ->check(CLI::Range(2, 600000))
        ->capture_default_str();
    app.add_option("--backend-batch-interval", batchIntervalMs,
                   "ms after which applied writes are committed to the data file (the write-ahead "
                   "log already holds them; 0: commit every batch)")
        ->capture_default_str()
        ->check(CLI::Range(0, 10000));
    app.add_option("--backend-batch-limit", batchLimit,
                   "commit the data file once this many applied writes wait")
        ->capture_default_str()
        ->check(CLI::Range(size_t{1}, size_t{1000000}));
    app.add_option("--snapshot-count", snapshotCount, "applied entries between log compactions")
        ->check(CLI::Range(uint64_t{100}, uint64_t{100000000}))
        ->capture_default_str();
    app.add_option("--quota-backend-bytes", quotaBytes, "refuse writes once the data is this large")
        ->capture_default_str();
    // Bounded so that a value, its previous value in a watch event and a message's framing
    // always fit in one RPC message (64 MiB).
    app.add_option("--max-request-bytes", maxRequestBytes,
                   "largest value accepted (1 KiB to 16 MiB)")
        ->check(CLI::Range(size_t{1024}, size_t{16} << 20))
        ->capture_default_str();
    app.add_option("--max-watches-per-connection", maxWatches,
                   "most watches one client connection may have open")
        ->check(CLI::Range(size_t{1}, size_t{1000000}))
        ->capture_default_str();
    app.add_option("--max-txn-ops", maxTxnOps, "most operations in one txn branch")
        ->check(CLI::Range(size_t{1}, size_t{100000}))
        ->capture_default_str();
    app.add_option("--corrupt-check-interval", corruptCheckMs,
                   "ms between the leader's comparisons of every member's history digest (0: "
                   "never); a member whose digest differs from the majority's gets a CORRUPT "
                   "alarm and serves no keys until it is disarmed")
        ->check(CLI::Range(0, 86400000))
        ->capture_default_str();
    app.add_option("--log-level", logLevel,
                   "debug, info, warn or error: the least severe events logged (to stderr)")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    log::setLevel(*log::parseLevel(logLevel));

    if (electionMs < 2 * heartbeatMs) {
        std::fprintf(stderr,
                     "coordd: --election-timeout must be at least twice --heartbeat-interval\n");
        return 2;
    }
    if (dataDir.empty()) dataDir = name + ".coord";
    if (initialCluster.empty()) initialCluster = name + "=" + peerUrl;

    try {
        // Both addresses are checked before anything is written to the data dir.
        const tcp::endpoint clientEndpoint = parseEndpoint(clientUrl);
        const tcp::endpoint peerEndpoint = parseEndpoint(peerUrl);
        auto members = parseInitialCluster(initialCluster);
        if (!members.count(name)) {
            throw std::runtime_error("--initial-cluster does not name this member '" + name + "'");
        }
        std::string clusterKey = token;
        for (const auto& [n, url] : members)
            clusterKey += "," + n + "=" + stripScheme(url);
        bool existing = clusterState == "existing";
        uint64_t selfId = rpc::memberIdFromName(name);

        if (!restoreFile.empty()) {
            if (existing) {
                throw std::runtime_error(
                    "--restore-snapshot bootstraps a new cluster: it needs "
                    "--initial-cluster-state new");
            }
            if (std::filesystem::exists(dataDir)) {
                throw std::runtime_error("--restore-snapshot needs a fresh data dir; " + dataDir +
                                         " exists");
            }
        }
        std::filesystem::create_directories(dataDir);
        if (!restoreFile.empty()) restoreSnapshot(restoreFile, dataDir);
        uint64_t clusterId = resolveClusterId(dataDir, existing,
                                              rpc::memberIdFromName(clusterKey),  // same hash
                                              selfId);

        // Connections on both ports share one budget below the descriptor limit, so that a
        // flood of connections leaves the member the descriptors it needs for itself; its
        // last places are for peers.
        uint64_t descriptors = rpc::ConnectionBudget::raiseDescriptorLimit();
        size_t connectionLimit = rpc::ConnectionBudget::limitFor(descriptors);
        rpc::ConnectionBudget budget(connectionLimit,
                                     rpc::ConnectionBudget::peerReserveFor(connectionLimit));
        rpc::PeerTransportConfig pc;
        pc.self = selfId;
        pc.clusterId = clusterId;
        pc.budget = &budget;
        rpc::NodeConfig nc;
        nc.id = selfId;
        nc.join = existing;
        nc.clientUrl = advertiseClientUrl.empty() ? clientUrl : advertiseClientUrl;
        nc.initialVoters.clear();
        for (const auto& [n, url] : members) {
            uint64_t id = rpc::memberIdFromName(n);
            pc.peers[id] = parseEndpoint(url);
            nc.initialVoters.push_back(id);
            nc.initialMembers.push_back(kv::MemberInfo{id, n, stripScheme(url), ""});
        }
        nc.dataFile = (std::filesystem::path(dataDir) / "member.mdb").string();
        nc.walDir = (std::filesystem::path(dataDir) / "wal").string();
        nc.tickMs = heartbeatMs;
        nc.heartbeatTicks = 1;
        nc.electionTicks = electionMs / heartbeatMs;
        nc.snapshotCount = snapshotCount;
        nc.storeCommitMs = batchIntervalMs;
        nc.storeCommitRequests = batchLimit;
        // Entries kept behind a compaction for slow followers: up to 1000, never more than the
        // compaction interval itself.
        nc.snapshotCatchUpEntries = std::min<uint64_t>(1000, snapshotCount);
        nc.store.quotaBytes = quotaBytes;
        // The map must leave room above the quota: deletes and compaction still need pages.
        nc.store.mapSizeBytes = std::max(nc.store.mapSizeBytes, quotaBytes + quotaBytes / 2);
        nc.store.maxValueBytes = maxRequestBytes;
        nc.store.maxTxnOps = maxTxnOps;

        // Signals go to one thread that asks the main loop to stop.
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGINT);
        sigaddset(&signals, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &signals, nullptr);
        // A log pipe whose reader went away fails the write (EPIPE) instead of killing the
        // member in the middle of its work.
        std::signal(SIGPIPE, SIG_IGN);

        boost::asio::io_context io;
        auto work = boost::asio::make_work_guard(io);
        tcp::acceptor acceptor(io);
        try {
            acceptor = tcp::acceptor(io, peerEndpoint);
        } catch (const boost::system::system_error& e) {
            throw std::runtime_error("cannot listen for peers on " + peerUrl + ": " +
                                     e.code().message());
        }
        rpc::NodeDriver* driverPtr = nullptr;
        rpc::PeerTransport transport(io, std::move(acceptor), pc,
                                     [&](raft::Message m) { driverPtr->deliver(std::move(m)); });
        rpc::NodeDriver driver(io, nc, transport);
        driverPtr = &driver;
        // Peer addresses follow the member registry once there is one (it outlives the flags:
        // members added later are only there).
        auto followRegistry = [&transport](const std::vector<rpc::MemberView>& view) {
            std::map<raft::NodeId, tcp::endpoint> peers;
            for (const auto& m : view) {
                if (m.info.peerUrl.empty()) continue;
                try {
                    peers[m.info.id] = parseEndpoint(m.info.peerUrl);
                } catch (const std::exception& e) {
                    COORD_LOG_WARN("member %s: %s", m.info.name.c_str(), e.what());
                }
            }
            if (!peers.empty()) transport.setPeers(peers);
        };
        followRegistry(driver.members());
        driver.onMembersChanged([&](const kv::Members&) { followRegistry(driver.members()); });
        // A removed member stops serving (after its last answers went out).
        driver.onRemoved([&io] {
            auto timer = std::make_shared<boost::asio::steady_timer>(io);
            timer->expires_after(std::chrono::milliseconds(300));
            timer->async_wait(
                [timer](const boost::system::error_code&) { kill(getpid(), SIGTERM); });
        });
        // A joining member learns the cluster's id from the first message the cluster sends.
        std::promise<uint64_t> adopted;
        transport.onClusterId([&](uint64_t id) {
            writeIdentity(dataDir, id, selfId);
            COORD_LOG_INFO("joined cluster %016llx", static_cast<unsigned long long>(id));
            adopted.set_value(id);
        });
        transport.onPeerLost([&driver](raft::NodeId peer) { driver.peerLost(peer); });
        transport.start();
        driver.start();
        std::thread core([&] {
            pthread_setname_np(pthread_self(), "coord-core");
            try {
                io.run();
            } catch (const std::exception& e) {
                // The Raft log or the store cannot be written (a full disk when a new log segment
                // is allocated, an I/O error). Nothing unwritten was acknowledged: stop at once,
                // naming the cause, rather than serve from state that is not on disk.
                COORD_LOG_ERROR("fatal storage error, stopping: %s", e.what());
                std::_Exit(1);
            }
        });

        std::atomic<bool> stopRequested{false};
        std::mutex stopMutex;
        kj::Own<kj::CrossThreadPromiseFulfiller<void>> stopFulfiller;
        std::thread signalThread([&] {
            pthread_setname_np(pthread_self(), "coord-signals");
            int sig = 0;
            sigwait(&signals, &sig);
            std::lock_guard lock(stopMutex);
            stopRequested = true;
            if (stopFulfiller) stopFulfiller->fulfill();
        });
        auto shutdown = [&] {
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
            std::lock_guard lock(stopMutex);
            stopFulfiller = nullptr;  // before the RPC server's event loop goes
        };
        if (clusterId == 0) {
            COORD_LOG_INFO(
                "member %s (id %016llx) waiting to be contacted by the cluster it was "
                "added to",
                name.c_str(), static_cast<unsigned long long>(selfId));
            auto future = adopted.get_future();
            while (future.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
                if (stopRequested) {
                    shutdown();
                    return 0;
                }
            }
            clusterId = future.get();
        }

        // The core and signal threads run from here on: a failure to serve clients (the client
        // port taken) stops them before the error is reported, instead of aborting the process.
        try {
            auto kjIo = kj::setupAsyncIo();
            auto& ws = kjIo.waitScope;
            auto address =
                kjIo.provider->getNetwork()
                    .parseAddress(clientEndpoint.address().to_string(), clientEndpoint.port())
                    .wait(ws);
            kj::Own<kj::ConnectionReceiver> listener;
            KJ_IF_MAYBE (failure,
                         kj::runCatchingExceptions([&] { listener = address->listen(); })) {
                throw std::runtime_error("cannot listen for clients on " + clientUrl + ": " +
                                         listenFailure(failure->getDescription().cStr()));
            }
            // Each connection gets services of its own: its watches are counted and bounded
            // per connection (rpc::WatchLimits).
            auto snapshots = std::make_shared<int>(0);  // member-wide (kMaxSnapshots)
            rpc::WatchLimits watchLimits;
            watchLimits.maxWatches = maxWatches;
            rpc::ClientServer server([&driver, clusterId, snapshots,
                                      watchLimits]() -> capnp::Capability::Client {
                return kj::heap<rpc::CoordService>(
                    driver, clusterId, std::make_shared<rpc::WatchPool>(watchLimits), snapshots);
            });
            auto accepting =
                rpc::acceptClients(*listener, server, kjIo.provider->getTimer(), budget)
                    .eagerlyEvaluate(nullptr);
            auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
            {
                std::lock_guard lock(stopMutex);
                if (stopRequested) paf.fulfiller->fulfill();
                stopFulfiller = kj::mv(paf.fulfiller);
            }
            COORD_LOG_INFO(
                "member %s (id %016llx) of cluster %016llx: clients on %s, peers on %s, "
                "data in %s, allocator %s, up to %zu connections (%llu file descriptors)",
                name.c_str(), static_cast<unsigned long long>(selfId),
                static_cast<unsigned long long>(clusterId), clientUrl.c_str(), peerUrl.c_str(),
                dataDir.c_str(), rpc::NodeDriver::allocatorName().c_str(), budget.limit(),
                static_cast<unsigned long long>(descriptors));
            std::optional<rpc::CorruptionCheck> check;
            if (corruptCheckMs > 0) {
                rpc::CheckedMember self;
                self.id = driver.id();
                self.leader = [&driver] { return driver.leader(); };
                self.members = [&driver] {
                    std::vector<rpc::CheckedMember::Address> out;
                    for (const auto& m : driver.members())
                        out.push_back({m.info.id, m.info.clientUrl, m.learner});
                    return out;
                };
                self.corruptAlarms = [&driver] { return driver.store().corruptAlarms(); };
                check.emplace(std::move(self), std::chrono::milliseconds(corruptCheckMs));
            }
            paf.promise.wait(ws);
            check.reset();  // before the member stops: a round asks the members, this one too
            COORD_LOG_INFO("member %s shutting down", name.c_str());
        } catch (...) {
            kill(getpid(), SIGTERM);  // wakes the signal thread, which shutdown() joins
            shutdown();
            throw;
        }

        shutdown();
        return 0;
    } catch (const kj::Exception& e) {
        COORD_LOG_ERROR("%s", e.getDescription().cStr());
        return 1;
    } catch (const std::exception& e) {
        COORD_LOG_ERROR("%s", e.what());
        return 1;
    }
}
