// The deterministic simulator over many seeds, and proof that it catches planted Raft bugs.
//
//   COORD_SIM_SEEDS=N        seeds for the main run (default 10000)
//   COORD_SIM_ASYNC_SEEDS=N  seeds for the run with asynchronous persistence (default 3000)
//   COORD_SIM_SEED=S         replay one seed only (prints what happened); with
//   COORD_SIM_ASYNC=1        under asynchronous persistence
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "tests/sim/simulator.h"

using coord::sim::runSimulation;
using coord::sim::SimOptions;
using coord::sim::SimResult;

namespace {

uint64_t envOr(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    return v ? std::strtoull(v, nullptr, 10) : fallback;
}

SimOptions optionsFor(uint64_t seed) {
    SimOptions o;
    o.seed = seed;
    o.members = seed % 2 ? 3 : 5;
    return o;
}

// Runs seeds 1..budget with `tweak` applied; returns the first seed that found a violation
// (0 when none did).
uint64_t firstViolation(uint64_t budget, const std::function<void(SimOptions&)>& tweak,
                        std::string& what) {
    for (uint64_t seed = 1; seed <= budget; ++seed) {
        SimOptions o = optionsFor(seed);
        tweak(o);
        SimResult r = runSimulation(o);
        // Only a safety violation counts: a planted bug must be caught by what it breaks.
        if (r.violation && r.violation->find("liveness") == std::string::npos) {
            what = *r.violation;
            return seed;
        }
    }
    return 0;
}

constexpr uint64_t kCiSeeds = 10000;
constexpr uint64_t kCiAsyncSeeds = 3000;

// Runs seeds 1..seeds with `tweak` applied, prints each violation and a summary; returns how
// many seeds found one.
uint64_t violationsOver(uint64_t seeds, const std::function<void(SimOptions&)>& tweak) {
    auto start = std::chrono::steady_clock::now();
    uint64_t violations = 0, committed = 0, reads = 0, elections = 0, snapshots = 0;
    for (uint64_t seed = 1; seed <= seeds; ++seed) {
        SimOptions o = optionsFor(seed);
        tweak(o);
        SimResult r = runSimulation(o);
        committed += r.committed;
        reads += r.reads;
        elections += r.elections;
        snapshots += r.snapshotsInstalled;
        if (r.violation) {
            ++violations;
            std::printf("violation: seed=%llu (replay: COORD_SIM_SEED=%llu%s): %s\n",
                        static_cast<unsigned long long>(seed),
                        static_cast<unsigned long long>(seed),
                        o.asyncPersist ? " COORD_SIM_ASYNC=1" : "", r.violation->c_str());
        }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "%llu seeds, %llu violations (%.1f s; %llu entries committed, %llu reads "
        "checked, %llu leaders elected, %llu snapshots installed)\n",
        static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(violations), secs,
        static_cast<unsigned long long>(committed), static_cast<unsigned long long>(reads),
        static_cast<unsigned long long>(elections), static_cast<unsigned long long>(snapshots));
    return violations;
}

}  // namespace

TEST_CASE("the simulator finds no safety or liveness violation over the seed budget", "[sim]") {
    if (const char* one = std::getenv("COORD_SIM_SEED")) {
        SimOptions o = optionsFor(std::strtoull(one, nullptr, 10));
        o.asyncPersist = std::getenv("COORD_SIM_ASYNC") != nullptr;
        SimResult r = runSimulation(o);
        std::printf("seed=%llu members=%d committed=%llu reads=%llu elections=%llu: %s\n",
                    static_cast<unsigned long long>(o.seed), o.members,
                    static_cast<unsigned long long>(r.committed),
                    static_cast<unsigned long long>(r.reads),
                    static_cast<unsigned long long>(r.elections),
                    r.violation ? r.violation->c_str() : "no violation");
        CHECK_FALSE(r.violation);
        return;
    }
    CHECK(violationsOver(envOr("COORD_SIM_SEEDS", kCiSeeds), [](SimOptions&) {}) == 0);
}

TEST_CASE("with asynchronous persistence the simulator finds no violation over its budget",
          "[sim]") {
    // Writes reach the disk steps after the Ready that made them (raft::Config::asyncPersist),
    // and a crash loses the ones that had not.
    CHECK(violationsOver(envOr("COORD_SIM_ASYNC_SEEDS", kCiAsyncSeeds),
                         [](SimOptions& o) { o.asyncPersist = true; }) == 0);
}

namespace {
void expectCaught(const char* name, const std::function<void(SimOptions&)>& tweak) {
    std::string what;
    uint64_t seed = firstViolation(kCiSeeds, tweak, what);
    std::printf(
        "planted bug '%s': %s\n", name,
        seed ? ("caught at seed " + std::to_string(seed) + ": " + what).c_str() : "NOT caught");
    CHECK(seed != 0);
}
}  // namespace

TEST_CASE("the simulator catches a vote granted without the log up-to-date check", "[sim][teeth]") {
    expectCaught("vote without log check",
                 [](SimOptions& o) { o.bugs.voteWithoutLogCheck = true; });
}

TEST_CASE("the simulator catches committing an earlier-term entry by counting replicas",
          "[sim][teeth]") {
    expectCaught("commit prior term by count",
                 [](SimOptions& o) { o.bugs.commitPriorTermByCount = true; });
}

TEST_CASE("the simulator catches a follower that keeps conflicting entries", "[sim][teeth]") {
    expectCaught("keep conflicting entries",
                 [](SimOptions& o) { o.bugs.keepConflictingEntries = true; });
}

TEST_CASE("the simulator catches acknowledging an append before it is persisted", "[sim][teeth]") {
    expectCaught("ack before persist", [](SimOptions& o) { o.ackBeforePersist = true; });
}

TEST_CASE("the simulator catches ReadIndex served without the leadership check", "[sim][teeth]") {
    expectCaught("read index without quorum",
                 [](SimOptions& o) { o.bugs.readIndexWithoutQuorum = true; });
}

TEST_CASE("the simulator catches a leader counting its own log before it is on disk",
          "[sim][teeth]") {
    expectCaught("count unpersisted self", [](SimOptions& o) {
        o.asyncPersist = true;
        o.bugs.countUnpersistedSelf = true;
    });
}

TEST_CASE("the simulator catches a follower acknowledging before its write is on disk",
          "[sim][teeth]") {
    expectCaught("async ack before persist", [](SimOptions& o) {
        o.asyncPersist = true;
        o.ackBeforePersist = true;
    });
}
