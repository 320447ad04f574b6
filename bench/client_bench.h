// coordbench's modes that load a running cluster through coord::Client.
#pragma once

#include <string>
#include <vector>

#include "rpc/client.h"

namespace coord::bench {

struct ClusterArgs {
    std::vector<std::string> endpoints{"127.0.0.1:2379"};
    std::string label = "run";
    int clients = 1;
    int conns = 1;
    int durationMs = 3000;
    // put/range/txn: stop once this many requests were issued (0: only the duration bounds
    // the run), as the etcd baseline's loadgen -total; equal data volumes for both systems.
    uint64_t total = 0;
    size_t valueSize = 256;
    uint64_t keySpace = 100000;
    bool sequential = false;
    bool serializable = false;
    bool sharedKey = false;
    int64_t ttlSeconds = 10;
    // lock: let go with Mutex::release() (waits for the deletion) instead of unlock().
    bool waitRelease = false;
    int rounds = 20;
    int settleMs = 300;
    // Connection i dials member i mod N first (as etcd's clientv3 balancer spreads its calls);
    // off: every connection starts at the first endpoint.
    bool spread = false;
    // put/range/txn: a thread per client making blocking calls instead of closed loops on the
    // asynchronous API.
    bool blocking = false;
    // put/range/txn: each client pauses this long after every request (with blocking calls).
    int gapMs = 0;
};

int runPut(const ClusterArgs& a);
int runRange(const ClusterArgs& a);
int runTxn(const ClusterArgs& a);
int runLock(const ClusterArgs& a);
int runElectResign(const ClusterArgs& a);
int runWatchLatency(const ClusterArgs& a);
int runElectKill(const ClusterArgs& a, const std::string& coordctl);

}  // namespace coord::bench
