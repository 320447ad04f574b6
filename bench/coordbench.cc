// coordbench: coord's benchmark tool. Prints medians of several runs; never asserts targets.
//
//   coordbench kv [--runs 5] [--dir /tmp] [--keys 100000]
//   coordbench raft [--runs 5]
//   coordbench machine [--dir /tmp] [--rounds 5000]
//   coordbench put|range|txn|lock|elect-resign|watch-latency --endpoints ... [--clients N --conns M
//   ...]
//
// The kv mode measures the storage engine in-process (no network): durable put throughput with
// one put per commit and with group commits, point gets and 100-key ranges at the head and at a
// past revision, and watch event fan-out. See docs/performance.md for results.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bench/client_bench.h"
#include "bench/machine_bench.h"
#include "kv/store.h"
#include "raft/raft.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace coord::kv;

double secondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct ScratchStore {
    std::filesystem::path dir;
    std::unique_ptr<Store> store;
    ScratchStore(const std::string& base, bool sync) {
        std::string tmpl = (std::filesystem::path(base) / "coordbench-").string() +
                           std::string(6, 'X');  // mkdtemp template
        dir = mkdtemp(tmpl.data());
        Options o;
        o.sync = sync;
        store = std::make_unique<Store>((dir / "data.mdb").string(), o);
    }
    ~ScratchStore() {
        store.reset();
        std::filesystem::remove_all(dir);
    }
};

std::string keyOf(uint64_t i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "key/%08llu", static_cast<unsigned long long>(i));
    return buf;
}

// Durable puts per second with `perCommit` puts per apply() (one fsync each). keys == 0: every
// put writes a new key in ascending order (an append-mostly load); otherwise keys are drawn at
// random from [0, keys), so each commit dirties B-tree pages all over the file.
double putsPerSecond(const std::string& base, size_t perCommit, size_t total, size_t keys) {
    ScratchStore s(base, true);
    std::mt19937_64 rng(42);
    std::string value(256, 'v');
    uint64_t index = 0;
    auto start = Clock::now();
    for (size_t done = 0; done < total; done += perCommit) {
        std::vector<IndexedRequest> batch;
        batch.reserve(perCommit);
        for (size_t i = 0; i < perCommit; ++i) {
            ++index;
            batch.push_back({index, PutRequest{keyOf(keys ? rng() % keys : index), value}});
        }
        s.store->apply(batch);
    }
    return static_cast<double>(total) / secondsSince(start);
}

void load(Store& store, size_t keys, int versions) {
    std::string value(256, 'v');
    uint64_t index = store.appliedIndex();
    for (int v = 0; v < versions; ++v) {
        for (size_t k = 0; k < keys; k += 1000) {
            std::vector<IndexedRequest> batch;
            for (size_t i = k; i < std::min(keys, k + 1000); ++i) {
                batch.push_back({++index, PutRequest{keyOf(i), value}});
            }
            store.apply(batch);
        }
    }
}

struct ReadResults {
    double gets, pastGets, ranges, pastRanges;
};

ReadResults reads(Store& store, size_t keys, int64_t pastRev) {
    ReadResults out{};
    std::mt19937_64 rng(7);
    Reader reader(store);
    const size_t n = 1'000'000;
    std::vector<std::string> probe;
    probe.reserve(4096);
    for (int i = 0; i < 4096; ++i)
        probe.push_back(keyOf(rng() % keys));
    size_t found = 0;
    auto start = Clock::now();
    for (size_t i = 0; i < n; ++i)
        found += reader.get(probe[i & 4095]).has_value();
    out.gets = n / secondsSince(start);

    RangeRequest past;
    past.revision = pastRev;
    const size_t pn = 200'000;
    start = Clock::now();
    for (size_t i = 0; i < pn; ++i) {
        past.key = probe[i & 4095];
        found += reader.range(past).value().kvs.size();
    }
    out.pastGets = pn / secondsSince(start);

    // 100 consecutive keys: [key/N, key/N+100).
    std::vector<std::pair<std::string, std::string>> spans;
    for (int i = 0; i < 4096; ++i) {
        uint64_t first = rng() % (keys - 100);
        spans.emplace_back(keyOf(first), keyOf(first + 100));
    }
    RangeRequest r;
    const size_t rn = 20'000;
    for (int64_t rev : {int64_t{0}, pastRev}) {
        r.revision = rev;
        start = Clock::now();
        for (size_t i = 0; i < rn; ++i) {
            r.key = spans[i & 4095].first;
            r.rangeEnd = spans[i & 4095].second;
            found += reader.range(r).value().kvs.size();
        }
        (rev == 0 ? out.ranges : out.pastRanges) = rn / secondsSince(start);
    }
    if (found == 0) std::fprintf(stderr, "nothing found?\n");
    return out;
}

struct CountingSink : WatchSink {
    std::atomic<uint64_t>* events;
    explicit CountingSink(std::atomic<uint64_t>* e) : events(e) {}
    bool onEvents(WatchId, std::span<const Event> ev, int64_t) override {
        events->fetch_add(ev.size(), std::memory_order_relaxed);
        return true;
    }
    void onProgress(WatchId, int64_t) override {}
    void onCanceled(WatchId, const Error&) override {}
};

// Watch events delivered per second: puts applied without fsync (to measure the fan-out, not
// the disk) to a prefix that `watchers` watchers observe.
double watchEventsPerSecond(const std::string& base, int watchers, size_t puts) {
    ScratchStore s(base, false);
    std::atomic<uint64_t> delivered{0};
    for (int i = 0; i < watchers; ++i) {
        WatchRequest w;
        w.key = "key/";
        w.rangeEnd = prefixEnd("key/");
        auto id = s.store->watchHub().watch(w, std::make_shared<CountingSink>(&delivered));
        if (!id.ok()) std::abort();
    }
    std::string value(256, 'v');
    uint64_t index = 0;
    auto start = Clock::now();
    for (size_t done = 0; done < puts; done += 1000) {
        std::vector<IndexedRequest> batch;
        for (size_t i = 0; i < 1000; ++i)
            batch.push_back({++index, PutRequest{keyOf(i), value}});
        s.store->apply(batch);
    }
    double secs = secondsSince(start);
    return static_cast<double>(delivered.load()) / secs;
}

// The hub alone: one revision of one event, notified to `watchers` watchers, many times.
double hubFanOutPerSecond(const std::string& base, int watchers, size_t revisions) {
    ScratchStore s(base, false);
    std::atomic<uint64_t> delivered{0};
    WatchHub& hub = s.store->watchHub();
    for (int i = 0; i < watchers; ++i) {
        WatchRequest w;
        w.key = "key/";
        w.rangeEnd = prefixEnd("key/");
        if (!hub.watch(w, std::make_shared<CountingSink>(&delivered)).ok()) std::abort();
    }
    int64_t rev = s.store->currentRevision();
    Event e{Event::Type::Put, KeyValue{"key/00000001", std::string(256, 'v'), 2, 2, 1, 0}, {}};
    auto start = Clock::now();
    for (size_t i = 0; i < revisions; ++i) {
        e.kv.modRevision = ++rev;
        hub.notify(rev, std::span<const Event>(&e, 1));
    }
    return static_cast<double>(delivered.load()) / secondsSince(start);
}

void row(const std::string& what, const std::vector<double>& runs, const char* unit) {
    double lo = *std::min_element(runs.begin(), runs.end());
    double hi = *std::max_element(runs.begin(), runs.end());
    std::printf("| %-46s | %12.0f | %12.0f – %-12.0f | %s |\n", what.c_str(), median(runs), lo, hi,
                unit);
    std::fflush(stdout);
}

int runKv(int runs, const std::string& dir, size_t keys) {
    std::printf("coordbench kv: %d runs, %zu keys, 256-byte values, data under %s\n\n", runs, keys,
                dir.c_str());
    std::printf("| %-46s | %12s | %-27s | %s |\n", "measurement", "median", "min – max", "unit");
    std::printf("|%s|%s|%s|%s|\n", std::string(48, '-').c_str(), std::string(14, '-').c_str(),
                std::string(29, '-').c_str(), "------");
    for (size_t space : {size_t{0}, keys}) {
        std::vector<double> r1, r100, r1000;
        for (int i = 0; i < runs; ++i) {
            r1.push_back(putsPerSecond(dir, 1, 2000, space));
            r100.push_back(putsPerSecond(dir, 100, 100'000, space));
            r1000.push_back(putsPerSecond(dir, 1000, 200'000, space));
        }
        const char* tag = space ? "random keys" : "new keys";
        row((std::string("durable puts, 1 per commit, ") + tag).c_str(), r1, "puts/s");
        row((std::string("durable puts, 100 per commit, ") + tag).c_str(), r100, "puts/s");
        row((std::string("durable puts, 1000 per commit, ") + tag).c_str(), r1000, "puts/s");
    }

    ScratchStore s(dir, false);
    load(*s.store, keys, 1);
    int64_t pastRev = s.store->currentRevision();
    load(*s.store, keys, 1);  // every key overwritten once: pastRev is a real past revision
    std::vector<double> g, pg, rg, prg;
    for (int i = 0; i < runs; ++i) {
        auto r = reads(*s.store, keys, pastRev);
        g.push_back(r.gets);
        pg.push_back(r.pastGets);
        rg.push_back(r.ranges);
        prg.push_back(r.pastRanges);
    }
    row("point gets, head revision (one thread)", g, "gets/s");
    row("point gets, past revision (one thread)", pg, "gets/s");
    row("100-key range reads, head revision", rg, "ranges/s");
    row("100-key range reads, past revision", prg, "ranges/s");

    std::vector<double> w1, w100, h1, h100;
    for (int i = 0; i < runs; ++i) {
        w1.push_back(watchEventsPerSecond(dir, 1, 200'000));
        w100.push_back(watchEventsPerSecond(dir, 100, 100'000));
        h1.push_back(hubFanOutPerSecond(dir, 1, 2'000'000));
        h100.push_back(hubFanOutPerSecond(dir, 100, 100'000));
    }
    row("watch events, apply + deliver, 1 watcher", w1, "events/s");
    row("watch events, apply + deliver, 100 watchers", w100, "events/s");
    row("watch events, hub fan-out only, 1 watcher", h1, "events/s");
    row("watch events, hub fan-out only, 100 watchers", h100, "events/s");
    return 0;
}

// ---- raft: three pure cores in one thread, in-memory storage ----

struct RaftBench {
    std::vector<std::unique_ptr<coord::raft::MemoryStorage>> storage;
    std::vector<std::unique_ptr<coord::raft::Raft>> nodes;
    std::vector<coord::raft::Message> net;
    uint64_t committedAtLeader = 0;

    RaftBench() {
        for (coord::raft::NodeId id = 1; id <= 3; ++id) {
            storage.push_back(std::make_unique<coord::raft::MemoryStorage>());
            storage.back()->setConfState(coord::raft::ConfState{{1, 2, 3}, {}});
            coord::raft::Config c;
            c.id = id;
            c.storage = storage.back().get();
            c.seed = id;
            nodes.push_back(std::make_unique<coord::raft::Raft>(c));
        }
        coord::raft::Message hup;
        hup.type = coord::raft::MessageType::Hup;
        nodes[0]->step(hup);
        pump();
    }

    // Handles every Ready (persist to memory, send, apply, advance) and delivers messages.
    void pump() {
        for (int round = 0; round < 100; ++round) {
            for (size_t i = 0; i < nodes.size(); ++i) {
                while (nodes[i]->hasReady()) {
                    auto rd = nodes[i]->ready();
                    storage[i]->append(rd.entries);
                    if (rd.hardState) storage[i]->setHardState(*rd.hardState);
                    for (auto& m : rd.messages)
                        net.push_back(std::move(m));
                    if (i == 0) committedAtLeader += rd.committedEntries.size();
                    nodes[i]->advance(rd);
                    // Keep memory flat: drop applied entries now and then.
                    coord::raft::Index applied = nodes[i]->log().applied();
                    if (applied > storage[i]->firstIndex() + 200'000) {
                        storage[i]->compact(applied - 100'000);
                    }
                }
            }
            if (net.empty()) return;
            auto batch = std::move(net);
            net.clear();
            for (auto& m : batch)
                nodes[m.to - 1]->step(m);
        }
    }
};

// Entries committed per second with `proposers` proposals kept outstanding.
double raftEntriesPerSecond(int proposers, uint64_t total) {
    RaftBench b;
    std::string data(128, 'x');
    uint64_t proposed = 0;
    uint64_t base = b.committedAtLeader;
    auto start = Clock::now();
    while (b.committedAtLeader - base < total) {
        // Every proposer whose entry committed proposes again; the proposals that arrive while
        // the loop turns go to the core as one batch, as the server's driver hands them over.
        uint64_t outstanding = proposed - (b.committedAtLeader - base);
        std::vector<std::string> batch(proposers - outstanding, data);
        proposed += batch.size();
        if (!batch.empty() &&
            b.nodes[0]->propose(std::move(batch)) != coord::raft::ProposeResult::Accepted) {
            std::abort();
        }
        b.pump();
    }
    return static_cast<double>(b.committedAtLeader - base) / secondsSince(start);
}

int runRaft(int runs) {
    std::printf(
        "coordbench raft: %d runs, 3 cores in one thread, in-memory storage, "
        "128-byte entries\n\n",
        runs);
    std::printf("| %-46s | %12s | %-27s | %s |\n", "measurement", "median", "min – max", "unit");
    std::printf("|%s|%s|%s|%s|\n", std::string(48, '-').c_str(), std::string(14, '-').c_str(),
                std::string(29, '-').c_str(), "------");
    std::vector<double> one, many, lots;
    for (int i = 0; i < runs; ++i) {
        one.push_back(raftEntriesPerSecond(1, 100'000));
        many.push_back(raftEntriesPerSecond(64, 1'000'000));
        lots.push_back(raftEntriesPerSecond(1024, 2'000'000));
    }
    row("committed entries, 1 proposer", one, "entries/s");
    row("committed entries, 64 proposers", many, "entries/s");
    row("committed entries, 1024 proposers", lots, "entries/s");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"coordbench: coord's benchmarks (medians of several runs)"};
    app.require_subcommand(1);
    int runs = 5;
    std::string dir = std::filesystem::temp_directory_path().string();
    size_t keys = 100'000;
    auto* kv = app.add_subcommand("kv", "the storage engine, in-process");
    kv->add_option("--runs", runs, "repetitions per measurement")->check(CLI::Range(1, 100));
    kv->add_option("--dir", dir, "directory for scratch data (same disk as production)");
    kv->add_option("--keys", keys, "key space")->check(CLI::Range(1000, 10'000'000));
    auto* raftCmd = app.add_subcommand("raft", "the Raft core alone: 3 members in one thread");
    raftCmd->add_option("--runs", runs, "repetitions per measurement")->check(CLI::Range(1, 100));

    // Cluster modes (closed loop through coord::Client against running members).
    coord::bench::ClusterArgs a;
    std::string endpoints = "127.0.0.1:2379";
    std::string consistency = "l";
    auto common = [&](CLI::App* sub) {
        sub->add_option("--endpoints", endpoints, "comma-separated member addresses");
        sub->add_option("--label", a.label, "name printed with the result");
        sub->add_option("--clients", a.clients, "concurrent closed-loop clients")
            ->check(CLI::Range(1, 4096));
        sub->add_flag("--spread", a.spread,
                      "connection i dials member i mod N first (etcd's clientv3 spreads its "
                      "calls over the endpoints); default: all start at the first");
        sub->add_option("--conns", a.conns, "client connections shared by the clients")
            ->check(CLI::Range(1, 1024));
        sub->add_option("--duration-ms", a.durationMs, "measuring time")
            ->check(CLI::Range(100, 600000));
        sub->add_option("--val-size", a.valueSize, "value bytes")->check(CLI::Range(0, 1 << 20));
        sub->add_option("--key-space", a.keySpace, "distinct keys")
            ->check(CLI::Range(1, 100'000'000));
    };
    auto blocking = [&](CLI::App* sub) {
        sub->add_option("--total", a.total,
                        "stop once this many requests were issued (as loadgen -total), so both "
                        "systems hold the same data; the duration still bounds the run");
        sub->add_flag("--blocking", a.blocking,
                      "a thread per client making blocking calls; default: each connection's "
                      "clients are closed loops on the asynchronous API");
        sub->add_option("--gap-ms", a.gapMs,
                        "each client pauses this long after every request (implies --blocking): "
                        "the latency of sporadic requests, which find the members idle")
            ->check(CLI::Range(0, 10000));
    };
    auto* put = app.add_subcommand("put", "puts (random keys unless --seq)");
    common(put);
    blocking(put);
    put->add_flag("--seq", a.sequential, "sequential new keys");
    auto* range = app.add_subcommand("range", "single-key gets of preloaded keys");
    common(range);
    blocking(range);
    range->add_option("--consistency", consistency, "l (linearizable) or s (serializable)")
        ->check(CLI::IsMember({"l", "s"}));
    auto* txn = app.add_subcommand("txn", "compare-and-swap txns");
    common(txn);
    blocking(txn);
    txn->add_flag("--shared-key", a.sharedKey, "every client on one key (contended)");
    auto* lock = app.add_subcommand("lock", "coord::Mutex lock/unlock cycles");
    common(lock);
    lock->add_flag("--shared", a.sharedKey, "one mutex for all clients (else one each)");
    lock->add_flag("--wait-release", a.waitRelease,
                   "let go with release(), which waits for the deletion, instead of unlock()");
    lock->add_option("--ttl", a.ttlSeconds, "session TTL");
    auto* elect = app.add_subcommand("elect-resign", "resign -> next leader latency");
    common(elect);
    elect->add_option("--rounds", a.rounds)->check(CLI::Range(1, 10000));
    elect->add_option("--settle-ms", a.settleMs, "0: the waiter just queued");
    auto* watchLat = app.add_subcommand("watch-latency", "put -> event at an established watch");
    common(watchLat);
    watchLat->add_option("--rounds", a.rounds)->check(CLI::Range(1, 10000));
    auto* electKill = app.add_subcommand("elect-kill", "leader kill -9 -> next leader latency");
    common(electKill);
    std::string coordctlPath = "build/cli/coordctl";
    electKill->add_option("--rounds", a.rounds)->check(CLI::Range(1, 100));
    electKill->add_option("--ttl", a.ttlSeconds, "session TTL of both candidates");
    electKill->add_option("--coordctl", coordctlPath, "coordctl binary (runs the killed leader)");
    auto* machine = app.add_subcommand(
        "machine", "thread wake-ups, loopback TCP and fdatasync: the floors under a write");
    std::string machineDir = "/tmp";
    int machineRounds = 5000;
    machine->add_option("--dir", machineDir, "where the fdatasync probe writes (the data's disk)");
    machine->add_option("--rounds", machineRounds, "back-to-back rounds per measurement")
        ->check(CLI::Range(100, 1000000));
    CLI11_PARSE(app, argc, argv);
    a.endpoints.clear();
    for (size_t pos = 0; pos <= endpoints.size();) {
        size_t comma = endpoints.find(',', pos);
        if (comma == std::string::npos) comma = endpoints.size();
        if (comma > pos) a.endpoints.push_back(endpoints.substr(pos, comma - pos));
        pos = comma + 1;
    }
    a.serializable = consistency == "s";
    if (*put) return coord::bench::runPut(a);
    if (*range) return coord::bench::runRange(a);
    if (*txn) return coord::bench::runTxn(a);
    if (*lock) return coord::bench::runLock(a);
    if (*elect) return coord::bench::runElectResign(a);
    if (*watchLat) return coord::bench::runWatchLatency(a);
    if (*electKill) return coord::bench::runElectKill(a, coordctlPath);
    if (*kv) return runKv(runs, dir, keys);
    if (*raftCmd) return runRaft(runs);
    if (*machine) return coord::bench::runMachine(machineDir, machineRounds);
    return 0;
}
