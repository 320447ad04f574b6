// A deterministic simulator of a Raft cluster in one thread (in the spirit of FoundationDB's
// simulation and TigerBeetle's VOPR).
//
// N cores share a simulated network that drops, duplicates, delays and reorders messages and
// makes symmetric and one-way partitions that heal; members crash (losing everything not
// persisted through Ready) and restart; clients propose, read (ReadIndex), change membership,
// transfer leadership; members take snapshots and compact their logs. The driver handles each
// Ready the way a server does: persist, then send, then apply, then advance.
//
// After every round it checks election safety, state machine safety (every member applies a
// prefix of one sequence), leader completeness, log matching (periodically), ReadIndex
// linearizability and the cores' own invariants; at the end, liveness after the faults heal.
// The same seed always produces the same run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "raft/raft.h"

namespace coord::sim {

struct SimOptions {
    uint64_t seed = 1;
    int members = 3;
    int rounds = 600;          // rounds with faults; each round ticks every member once
    int livenessRounds = 300;  // after healing: a leader and a commit must appear within these
    bool membershipChanges = true;
    bool snapshots = true;
    // Planted bugs, for tests that prove the checks have teeth.
    raft::PlantedBugs bugs;
    bool ackBeforePersist = false;  // the driver sends a Ready's messages before persisting it
    // Raft's asynchronous persistence (raft::Config::asyncPersist): a Ready's entries and hard
    // state reach the disk some steps later, in order; a crash loses what had not.
    bool asyncPersist = false;
};

struct SimResult {
    std::optional<std::string> violation;  // what broke, with the round; nullopt: none
    uint64_t committed = 0;                // entries the cluster committed
    uint64_t reads = 0;                    // ReadIndex answers checked
    uint64_t elections = 0;                // leaders elected
    uint64_t snapshotsInstalled = 0;       // snapshots received over the network and installed
};

SimResult runSimulation(const SimOptions& options);

}  // namespace coord::sim
