// coordbench's cluster modes: closed-loop load through coord::Client against running members,
// with the workload shapes of the etcd baseline (../shared/bench/etcd): N clients over M
// connections, value size, key pattern, fixed duration. Prints one JSON line and a table row.
#include "bench/client_bench.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "recipes/election.h"
#include "recipes/mutex.h"

namespace coord::bench {

namespace {

struct Samples {
    std::mutex mu;
    std::vector<double> ms;  // one latency per completed operation
    uint64_t errors = 0;
    uint64_t extra = 0;  // mode-specific count (txn successes)

    void add(std::vector<double>& local, uint64_t errs, uint64_t ex) {
        std::lock_guard lock(mu);
        ms.insert(ms.end(), local.begin(), local.end());
        errors += errs;
        extra += ex;
    }
};

double pct(std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
    return v[i];
}

void report(const std::string& label, Samples& s, double seconds, const char* extraName) {
    auto& v = s.ms;
    double avg = 0;
    for (double x : v)
        avg += x;
    avg = v.empty() ? 0 : avg / static_cast<double>(v.size());
    double ops = static_cast<double>(v.size()) / seconds;
    double p50 = pct(v, 0.50), p90 = pct(v, 0.90), p99 = pct(v, 0.99), p999 = pct(v, 0.999);
    double max = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
    std::printf(
        "{\"label\":\"%s\",\"ops_per_s\":%.0f,\"avg_ms\":%.2f,\"p50_ms\":%.2f,"
        "\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"p999_ms\":%.2f,\"max_ms\":%.2f,\"errors\":%llu",
        label.c_str(), ops, avg, p50, p90, p99, p999, max,
        static_cast<unsigned long long>(s.errors));
    if (extraName) {
        std::printf(",\"%s\":%.0f", extraName, static_cast<double>(s.extra) / seconds);
    }
    std::printf("}\n");
    std::fflush(stdout);
}

std::string valueOf(size_t n) {
    return std::string(n, 'v');
}

std::string keyOf(uint64_t i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "bench/%08llu", static_cast<unsigned long long>(i));
    return buf;
}

// The endpoints connection i dials, in order (see ClusterArgs::spread).
std::vector<std::string> endpointsFor(const ClusterArgs& a, size_t i) {
    if (!a.spread) return a.endpoints;
    std::vector<std::string> out;
    for (size_t k = 0; k < a.endpoints.size(); ++k)
        out.push_back(a.endpoints[(i + k) % a.endpoints.size()]);
    return out;
}

// The `conns` Client objects the clients share (see ClusterArgs::spread).
std::vector<std::unique_ptr<Client>> connect(const ClusterArgs& a) {
    std::vector<std::unique_ptr<Client>> conns;
    ClientOptions o;
    for (int i = 0; i < std::max(1, a.conns); ++i) {
        o.endpoints = endpointsFor(a, static_cast<size_t>(i));
        conns.push_back(std::make_unique<Client>(o));
    }
    return conns;
}

// Ends a run at its duration or once `total` requests were issued (ClusterArgs::total).
class Stopper {
  public:
    explicit Stopper(const ClusterArgs& a)
        : total_(a.total),
          start_(std::chrono::steady_clock::now()),
          deadline_(start_ + std::chrono::milliseconds(a.durationMs)) {}

    // Whether one more request may start.
    bool take() {
        if (stopped_.load(std::memory_order_relaxed)) return false;
        if (total_ == 0) return true;
        uint64_t n = issued_.fetch_add(1, std::memory_order_relaxed);
        if (n + 1 == total_) {
            std::lock_guard lock(mu_);
            exhausted_ = true;
            cv_.notify_all();
        }
        return n < total_;
    }

    // Waits for the duration or the last request; then no request starts. Returns the seconds
    // since the start.
    double wait() {
        {
            std::unique_lock lock(mu_);
            cv_.wait_until(lock, deadline_, [&] { return exhausted_; });
        }
        stopped_ = true;
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

  private:
    uint64_t total_;
    std::chrono::steady_clock::time_point start_, deadline_;
    std::atomic<uint64_t> issued_{0};
    std::atomic<bool> stopped_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    bool exhausted_ = false;
};

// Runs `op(clientIndex, client, rng) -> (ok, extra)` in `clients` threads over `conns` Client
// objects until the duration passes.
template <typename Op>
void closedLoop(const ClusterArgs& a, Samples& samples, Op op, double& seconds) {
    auto conns = connect(a);
    Stopper stopper(a);
    std::vector<std::thread> threads;
    for (int c = 0; c < a.clients; ++c) {
        threads.emplace_back([&, c] {
            std::mt19937_64 rng(static_cast<uint64_t>(c) * 7919 + 1);
            std::vector<double> local;
            local.reserve(1 << 14);
            uint64_t errs = 0, extra = 0;
            Client& client = *conns[static_cast<size_t>(c) % conns.size()];
            while (stopper.take()) {
                auto t0 = std::chrono::steady_clock::now();
                auto [ok, ex] = op(c, client, rng);
                auto t1 = std::chrono::steady_clock::now();
                if (ok) {
                    local.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
                } else {
                    ++errs;
                }
                extra += ex;
                if (a.gapMs > 0) std::this_thread::sleep_for(std::chrono::milliseconds(a.gapMs));
            }
            samples.add(local, errs, extra);
        });
    }
    seconds = stopper.wait();
    for (auto& t : threads)
        t.join();
}

// The callback an asynchronous operation calls when it completes: (ok, mode-specific count).
using Finished = std::function<void(bool, uint64_t)>;

// Runs `op(clientIndex, client, rng, finished)` as `clients` closed loops over `conns` Client
// objects with the asynchronous API: each loop starts its next operation from the previous
// one's callback on the client's event-loop thread, so no thread blocks per request. A loop's
// state is touched only by its client's thread until every loop has stopped.
template <typename Op>
void asyncLoop(const ClusterArgs& a, Samples& samples, Op op, double& seconds) {
    auto conns = connect(a);
    struct Loop {
        int index = 0;
        Client* client = nullptr;
        std::mt19937_64 rng;
        std::chrono::steady_clock::time_point t0;
        std::vector<double> ms;
        uint64_t errors = 0, extra = 0;
    };
    std::vector<Loop> loops(static_cast<size_t>(a.clients));
    Stopper stopper(a);
    std::mutex mu;
    std::condition_variable cv;
    int running = a.clients;
    std::function<void(Loop&)> next = [&](Loop& loop) {
        loop.t0 = std::chrono::steady_clock::now();
        op(loop.index, *loop.client, loop.rng, [&, lp = &loop](bool ok, uint64_t ex) {
            Loop& l = *lp;
            auto t1 = std::chrono::steady_clock::now();
            if (ok) {
                l.ms.push_back(std::chrono::duration<double, std::milli>(t1 - l.t0).count());
            } else {
                ++l.errors;
            }
            l.extra += ex;
            if (stopper.take()) {
                next(l);
                return;
            }
            std::lock_guard lock(mu);
            if (--running == 0) cv.notify_all();
        });
    };
    for (int c = 0; c < a.clients; ++c) {
        Loop& l = loops[static_cast<size_t>(c)];
        l.index = c;
        l.client = conns[static_cast<size_t>(c) % conns.size()].get();
        l.rng.seed(static_cast<uint64_t>(c) * 7919 + 1);
        l.ms.reserve(1 << 14);
    }
    for (auto& l : loops) {
        if (stopper.take()) {
            next(l);
        } else {
            std::lock_guard lock(mu);
            --running;
        }
    }
    seconds = stopper.wait();
    {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return running == 0; });
    }
    for (auto& l : loops)
        samples.add(l.ms, l.errors, l.extra);
}

// One mode's operation in both forms: `blocking(c, client, rng) -> (ok, extra)` for a thread
// per client (--blocking), `async(c, client, rng, finished)` otherwise.
template <typename Blocking, typename Async>
void runLoop(const ClusterArgs& a, Samples& samples, Blocking blocking, Async async,
             double& seconds) {
    if (a.blocking || a.gapMs > 0) {
        closedLoop(a, samples, blocking, seconds);
    } else {
        asyncLoop(a, samples, async, seconds);
    }
}

void preload(const ClusterArgs& a, uint64_t keys) {
    ClientOptions o;
    o.endpoints = a.endpoints;
    Client client(o);
    std::string v = valueOf(a.valueSize);
    std::vector<std::thread> threads;
    std::atomic<uint64_t> next{0};
    for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&] {
            for (uint64_t i; (i = next.fetch_add(1)) < keys;)
                (void)client.put(keyOf(i), v);
        });
    }
    for (auto& t : threads)
        t.join();
}

}  // namespace

int runPut(const ClusterArgs& a) {
    Samples s;
    double secs = 0;
    std::string v = valueOf(a.valueSize);
    std::atomic<uint64_t> seq{0};
    auto key = [&](std::mt19937_64& rng) {
        return keyOf(a.sequential ? seq.fetch_add(1) : rng() % a.keySpace);
    };
    runLoop(
        a, s,
        [&](int, Client& c, std::mt19937_64& rng) {
            return std::pair<bool, uint64_t>{c.put(key(rng), v).ok(), 0};
        },
        [&](int, Client& c, std::mt19937_64& rng, Finished done) {
            c.putAsync(key(rng), v,
                       [done = std::move(done)](Expected<PutResponse> r) { done(r.ok(), 0); });
        },
        secs);
    report(a.label, s, secs, nullptr);
    return 0;
}

int runRange(const ClusterArgs& a) {
    preload(a, a.keySpace);
    Samples s;
    double secs = 0;
    auto request = [&](std::mt19937_64& rng) {
        RangeRequest r;
        r.key = keyOf(rng() % a.keySpace);
        return r;
    };
    runLoop(
        a, s,
        [&](int, Client& c, std::mt19937_64& rng) {
            return std::pair<bool, uint64_t>{c.range(request(rng), a.serializable).ok(), 0};
        },
        [&](int, Client& c, std::mt19937_64& rng, Finished done) {
            c.rangeAsync(request(rng), a.serializable,
                         [done = std::move(done)](Expected<RangeResponse> r) { done(r.ok(), 0); });
        },
        secs);
    report(a.label, s, secs, nullptr);
    return 0;
}

int runTxn(const ClusterArgs& a) {
    // Compare-and-swap on the client's own key (or one shared key): if mod == last then put
    // else get. Each client tracks the mod revision it last saw.
    Samples s;
    double secs = 0;
    std::vector<int64_t> last(static_cast<size_t>(a.clients), 0);
    std::string v = valueOf(a.valueSize);
    auto request = [&](int c) {
        std::string key = a.sharedKey ? "bench/cas" : "bench/cas/" + std::to_string(c);
        TxnRequest t;
        Compare cmp;
        cmp.key = key;
        cmp.target = Compare::Target::Mod;
        cmp.number = last[static_cast<size_t>(c)];
        t.compare.push_back(cmp);
        PutRequest p;
        p.key = key;
        p.value = v;
        t.success.push_back(RequestOp{p});
        RangeRequest g;
        g.key = key;
        t.failure.push_back(RequestOp{g});
        return t;
    };
    // Records what the client saw: (ok, succeeded).
    auto seen = [&](int c, const Expected<TxnResponse>& r) {
        if (!r.ok()) return std::pair<bool, uint64_t>{false, 0};
        if (r->succeeded) {
            last[static_cast<size_t>(c)] = r->revision;
        } else {
            const auto& got = std::get<RangeResponse>(r->responses.front().op);
            last[static_cast<size_t>(c)] = got.kvs.empty() ? 0 : got.kvs.front().modRevision;
        }
        return std::pair<bool, uint64_t>{true, r->succeeded ? 1u : 0u};
    };
    runLoop(
        a, s,
        [&](int c, Client& client, std::mt19937_64&) { return seen(c, client.txn(request(c))); },
        [&](int c, Client& client, std::mt19937_64&, Finished done) {
            client.txnAsync(request(c), [&, c, done = std::move(done)](Expected<TxnResponse> r) {
                auto [ok, succeeded] = seen(c, r);
                done(ok, succeeded);
            });
        },
        secs);
    report(a.label, s, secs, "succ_per_s");
    return 0;
}

int runLock(const ClusterArgs& a) {
    // Lock then unlock() (or release() with --wait-release), no hold time; one client connection
    // and session per client thread.
    Samples s;
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    auto start = std::chrono::steady_clock::now();
    for (int c = 0; c < a.clients; ++c) {
        threads.emplace_back([&, c] {
            ClientOptions o;
            o.endpoints = endpointsFor(a, static_cast<size_t>(c));
            Client client(o);
            Session session(client, {a.ttlSeconds});
            Mutex m(session, a.sharedKey ? "bench/lock" : "bench/lock/" + std::to_string(c));
            std::vector<double> local;
            uint64_t errs = 0;
            while (!stop) {
                auto t0 = std::chrono::steady_clock::now();
                auto r = m.acquire(Clock::now() + std::chrono::seconds(10));
                auto t1 = std::chrono::steady_clock::now();
                if (!r.ok()) {
                    ++errs;
                    continue;
                }
                local.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
                if (!a.waitRelease) {
                    m.unlock();
                } else if (!m.release().ok()) {
                    ++errs;
                }
            }
            s.add(local, errs, 0);
        });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(a.durationMs));
    stop = true;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (auto& t : threads)
        t.join();
    report(a.label, s, secs, nullptr);
    return 0;
}

int runWatchLatency(const ClusterArgs& a) {
    // An established watch on one key; another client puts it. Measured: the put's call →
    // the event's arrival at the watcher (the put's own latency is printed alongside).
    ClientOptions o;
    o.endpoints = a.endpoints;
    Client watcher(o), writer(o);
    std::mutex mu;
    std::condition_variable cv;
    int64_t seenRev = 0;
    std::chrono::steady_clock::time_point seenAt;
    WatchRequest w;
    w.key = "bench/watch";
    WatchCallbacks cb;
    cb.onEvents = [&](std::span<const Event>, int64_t rev) {
        std::lock_guard lock(mu);
        seenRev = rev;
        seenAt = std::chrono::steady_clock::now();
        cv.notify_all();
    };
    auto handle = watcher.watch(w, cb);
    if (!handle) return 3;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    Samples events, puts;
    for (int round = 0; round < a.rounds; ++round) {
        auto t0 = std::chrono::steady_clock::now();
        auto r = writer.put(w.key, std::to_string(round));
        auto t1 = std::chrono::steady_clock::now();
        if (!r.ok()) return 3;
        std::unique_lock lock(mu);
        if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return seenRev >= r->revision; })) {
            return 3;
        }
        std::vector<double> e{std::chrono::duration<double, std::milli>(seenAt - t0).count()};
        std::vector<double> p{std::chrono::duration<double, std::milli>(t1 - t0).count()};
        events.add(e, 0, 0);
        puts.add(p, 0, 0);
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    report(a.label + " put->event", events, 1.0, nullptr);
    report(a.label + " put", puts, 1.0, nullptr);
    return 0;
}

int runElectResign(const ClusterArgs& a) {
    // Resign → the next candidate's campaign returns. "settled": the waiter queued long before;
    // otherwise it queued just before the resign.
    ClientOptions o;
    o.endpoints = a.endpoints;
    Client c1(o), c2(o);
    Session s1(c1, {a.ttlSeconds}), s2(c2, {a.ttlSeconds});
    Samples s;
    for (int round = 0; round < a.rounds; ++round) {
        Election leader(s1, "bench/elect"), next(s2, "bench/elect");
        if (!leader.campaign("a", Clock::now() + std::chrono::seconds(10)).ok()) return 3;
        std::atomic<bool> won{false};
        std::chrono::steady_clock::time_point wonAt;
        std::thread waiter([&] {
            if (next.campaign("b", Clock::now() + std::chrono::seconds(10)).ok()) {
                wonAt = std::chrono::steady_clock::now();
                won = true;
            }
        });
        if (a.settleMs > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(a.settleMs));
        } else {
            // Just queued: resign as soon as the waiter's key exists.
            RangeRequest q;
            q.key = "bench/elect/";
            q.rangeEnd = kv::prefixEnd(q.key);
            q.countOnly = true;
            for (int i = 0; i < 10000; ++i) {
                auto r = c1.range(q, true);
                if (r.ok() && r->count >= 2) break;
            }
        }
        auto t0 = std::chrono::steady_clock::now();
        (void)leader.resign();
        waiter.join();
        if (won) {
            std::vector<double> one{std::chrono::duration<double, std::milli>(wonAt - t0).count()};
            s.add(one, 0, 0);
        }
        (void)next.resign();
    }
    report(a.label, s, 1.0, nullptr);
    return 0;
}

}  // namespace coord::bench

namespace coord::bench {

int runElectKill(const ClusterArgs& a, const std::string& coordctl) {
    // A child process (coordctl elect, session TTL a.ttlSeconds) holds leadership; this process
    // campaigns behind it; the child is kill -9'd; measured: kill → this campaign returns.
    ClientOptions o;
    o.endpoints = a.endpoints;
    Client client(o);
    std::string endpoints;
    for (const auto& e : a.endpoints)
        endpoints += (endpoints.empty() ? "" : ",") + e;
    Samples s;
    for (int round = 0; round < a.rounds; ++round) {
        std::string name = "bench/elect-kill/" + std::to_string(round);
        // Built before the fork: the child of this multi-threaded process (the client's loop)
        // calls only async-signal-safe functions before exec.
        std::string ttl = std::to_string(a.ttlSeconds);
        pid_t child = fork();
        if (child == 0) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
            execl(coordctl.c_str(), coordctl.c_str(), "--endpoints", endpoints.c_str(), "elect",
                  name.c_str(), "child", "--ttl", ttl.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        // Wait until the child leads.
        for (int i = 0; i < 1000; ++i) {
            auto l = Election::leader(client, name);
            if (l.ok() && l->hasLeader) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        Session session(client, {a.ttlSeconds});
        Election next(session, name);
        std::atomic<bool> won{false};
        std::chrono::steady_clock::time_point wonAt;
        std::thread waiter([&] {
            if (next.campaign("next", Clock::now() + std::chrono::seconds(30)).ok()) {
                wonAt = std::chrono::steady_clock::now();
                won = true;
            }
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the waiter is queued
        auto killedAt = std::chrono::steady_clock::now();
        kill(child, SIGKILL);
        waitpid(child, nullptr, 0);
        waiter.join();
        if (won) {
            std::vector<double> one{
                std::chrono::duration<double, std::milli>(wonAt - killedAt).count()};
            s.add(one, 0, 0);
        }
        (void)next.resign();
    }
    report(a.label, s, 1.0, nullptr);
    return 0;
}

}  // namespace coord::bench
