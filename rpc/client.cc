#include "rpc/client.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>
#include <algorithm>

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <ostream>
#include <set>
#include <thread>

#include "common/port.h"
#include "rpc/buffered_stream.h"
#include "rpc/codec.h"
#include "rpc/handoff.h"

// KJ handler and Cap'n Proto server base classes have non-virtual destructors; they are destroyed
// through kj::Own, which knows the dynamic type.
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"

namespace coord {

namespace s = rpc::schema;
using rpc::Slot;

std::string Error::describe() const {
    switch (kind) {
        case Kind::Store:
            return std::string("Store(") + kv::errorCodeName(code) + "): " + message;
        case Kind::Unavailable:
            return "Unavailable: " + message;
        case Kind::Unknown:
            return "Unknown outcome: " + message;
        case Kind::Canceled:
            return "Canceled: " + message;
    }
    return message;
}

namespace {

Error storeError(const kv::Error& e) {
    return Error{Error::Kind::Store, e.code, e.message, e.revision};
}
Error unavailable(std::string message) {
    return Error{Error::Kind::Unavailable, kv::ErrorCode::InvalidArgument, std::move(message), 0};
}
Error unknownOutcome(std::string message) {
    return Error{Error::Kind::Unknown, kv::ErrorCode::InvalidArgument, std::move(message), 0};
}
Error canceled() {
    return Error{Error::Kind::Canceled, kv::ErrorCode::InvalidArgument, "client closed", 0};
}

kj::Duration toKj(Clock::duration d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return (ns > 0 ? ns : 0) * kj::NANOSECONDS;
}

// (host, port); port 0 when the endpoint is not host:port with a port from 1 to 65535.
std::pair<std::string, unsigned> splitEndpoint(const std::string& endpoint) {
    std::string e = endpoint;
    if (auto scheme = e.find("://"); scheme != std::string::npos) e = e.substr(scheme + 3);
    auto colon = e.rfind(':');
    if (colon == std::string::npos) return {e, e.empty() ? 0u : 2379u};
    std::string host = e.substr(0, colon);
    auto port = parsePort(std::string_view(e).substr(colon + 1));
    return {host, host.empty() || !port ? 0u : *port};
}

const char* unavailableText(s::Unavailable u) {
    switch (u) {
        case s::Unavailable::NO_LEADER:
            return "no leader";
        case s::Unavailable::TIMEOUT:
            return "the member timed out (the outcome is unknown)";
        case s::Unavailable::STOPPED:
            return "the member is stopping";
        case s::Unavailable::NOT_LEADER:
            return "not the leader";
        case s::Unavailable::CORRUPT:
            return "the member's CORRUPT alarm is raised (its data differs from the others')";
        default:
            return "unavailable";
    }
}

// One try of a call: a final outcome, or a reason to try again (possibly at another member).
template <typename T>
struct Step {
    std::optional<Expected<T>> done;
    bool rotate = false;
    std::string why;

    static Step finish(Expected<T> e) { return Step{std::move(e), false, {}}; }
    static Step retry(std::string why, bool rotate) { return Step{std::nullopt, rotate, why}; }
};

class ErrorHandler final : public kj::TaskSet::ErrorHandler {
  public:
    void taskFailed(kj::Exception&& e) override { KJ_LOG(WARNING, "coord client task failed", e); }
};

}  // namespace

// ---- the connection to one member ----

struct Conn : public kj::Refcounted {
    Conn(kj::Own<kj::AsyncIoStream> s, std::string ep, uint64_t g)
        : stream(kj::mv(s)),
          rpc(*stream),
          coord(rpc.bootstrap().castAs<s::Coord>()),
          kv(coord.kvRequest().send().getKv()),
          lease(coord.leaseRequest().send().getLease()),
          watch(coord.watchRequest().send().getWatch()),
          cluster(coord.clusterRequest().send().getCluster()),
          endpoint(std::move(ep)),
          gen(g) {
        auto paf = kj::newPromiseAndFulfiller<void>();
        brokenFulfiller = kj::mv(paf.fulfiller);
        abandoned = paf.promise.fork();
    }

    // Marks the connection unusable (disconnected, or left for another member).
    void markBroken() {
        if (broken) return;
        broken = true;
        brokenFulfiller->fulfill();
    }

    kj::Own<kj::AsyncIoStream> stream;
    capnp::TwoPartyClient rpc;
    s::Coord::Client coord;
    s::KV::Client kv;
    s::Lease::Client lease;
    s::Watch::Client watch;
    s::Cluster::Client cluster;
    std::string endpoint;
    uint64_t gen;
    bool broken = false;
    // Resolves when the connection is marked broken: long-running users (watches) move on.
    kj::ForkedPromise<void> abandoned = nullptr;
    kj::Own<kj::PromiseFulfiller<void>> brokenFulfiller;
};

// A watch or keep-alive running on the loop thread.
struct Runner {
    virtual ~Runner() = default;
    bool stopped = false;
    kj::Promise<void> task = nullptr;
};

// Work handed to the loop thread by other threads. The work items travel under a std::mutex and
// results come back through std::promise, so ThreadSanitizer sees every hand-off; KJ's
// cross-thread fulfiller only wakes the loop (see rpc/handoff.h). Shared with handles, which may
// outlive the client: posting to a closed inbox fails.
struct Inbox {
    std::mutex mu;
    std::deque<std::function<void()>> work;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;
    bool closed = false;

    bool post(std::function<void()> fn) {
        kj::Own<kj::CrossThreadPromiseFulfiller<void>> w;
        {
            std::lock_guard lock(mu);
            if (closed) return false;
            work.push_back(std::move(fn));
            w = kj::mv(wake);
        }
        if (w) w->fulfill();
        return true;
    }

    // On the loop thread: runs what was posted, forever.
    kj::Promise<void> drain() {
        std::deque<std::function<void()>> batch;
        {
            std::lock_guard lock(mu);
            if (work.empty()) {
                auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
                wake = kj::mv(paf.fulfiller);
                return paf.promise.then([this] { return drain(); });
            }
            batch.swap(work);
        }
        for (auto& fn : batch)
            fn();
        return kj::evalLater([this] { return drain(); });
    }

    // Refuses further posts and drops what is queued (their waiters see a broken promise).
    void close() {
        std::deque<std::function<void()>> dropped;
        std::lock_guard lock(mu);
        closed = true;
        dropped.swap(work);
    }
};

struct Client::Impl {
    explicit Impl(ClientOptions o) : options(std::move(o)), inbox(std::make_shared<Inbox>()) {
        if (options.endpoints.empty()) options.endpoints.push_back("127.0.0.1:2379");
        std::promise<void> ready;
        thread = std::thread([this, &ready] { run(ready); });
        ready.get_future().wait();
    }

    ~Impl() {
        inbox->post([this] { stopping->fulfill(); });
        thread.join();
    }

    void run(std::promise<void>& ready) {
        pthread_setname_np(pthread_self(), "coord-client");
        // KJ's first-use initialization inside setupAsyncIo (its network filter's address
        // ranges) is not safe against clients starting on several threads at once: serialize it.
        static std::mutex setupMutex;
        std::unique_lock setupLock(setupMutex);
        auto ctx = kj::setupAsyncIo();
        setupLock.unlock();
        io = &ctx;
        ErrorHandler handler;
        kj::TaskSet taskSet(handler);
        tasks = &taskSet;
        auto paf = kj::newPromiseAndFulfiller<void>();
        stopping = kj::mv(paf.fulfiller);
        loopThread = std::this_thread::get_id();
        auto drained = inbox->drain().eagerlyEvaluate(nullptr);
        ready.set_value();
        paf.promise.wait(ctx.waitScope);
        // Tear down on this thread: the inbox, the runners' promises, the connection, dials.
        inbox->close();
        runners.clear();
        dialWaiters.clear();
        conn = nullptr;
        tasks = nullptr;
    }

    // Runs `fn` (returning a kj::Promise<Slot<Expected<T>>>) on the loop thread and waits for it.
    template <typename T, typename Fn>
    Expected<T> sync(Fn&& fn) {
        if (std::this_thread::get_id() == loopThread) {
            throw std::logic_error("a blocking coord::Client call from a client callback");
        }
        auto result = std::make_shared<std::promise<Expected<T>>>();
        auto future = result->get_future();
        bool posted = inbox->post([this, result, fn = std::forward<Fn>(fn)]() mutable {
            tasks->add(fn().then(
                [result](Slot<Expected<T>> box) { result->set_value(std::move(*box.value)); },
                [result](kj::Exception&& e) {
                    result->set_value(fail(unavailable(e.getDescription().cStr())));
                }));
        });
        if (!posted) return fail(canceled());
        try {
            return future.get();
        } catch (const std::future_error&) {
            return fail(canceled());  // the client closed first
        }
    }

    // Calls `done` exactly once: with the outcome, or with Canceled when the call is dropped
    // (the client closed first).
    template <typename T>
    struct Once {
        explicit Once(std::function<void(Expected<T>)> f) : fn(std::move(f)) {}
        Once(const Once&) = delete;
        Once& operator=(const Once&) = delete;
        ~Once() {
            if (fn) call(fail(canceled()));
        }
        void call(Expected<T> e) {
            auto f = std::move(fn);
            fn = nullptr;
            if (f) f(std::move(e));
        }
        std::function<void(Expected<T>)> fn;
    };

    // Runs `fn` (as for sync) on the loop thread without waiting; `done` gets the outcome there.
    // `fn` must own what it uses: the caller does not wait for it.
    template <typename T, typename Fn>
    void async(Fn fn, std::function<void(Expected<T>)> done) {
        auto once = std::make_shared<Once<T>>(std::move(done));
        auto start = [this, once, fn = std::move(fn)]() mutable {
            if (!tasks) return;  // tearing down: `once` reports Canceled
            tasks->add(
                fn().then([once](Slot<Expected<T>> box) { once->call(std::move(*box.value)); },
                          [once](kj::Exception&& e) {
                              once->call(fail(unavailable(e.getDescription().cStr())));
                          }));
        };
        (void)runOnLoop(std::move(start));  // refused when closed: `once` reports Canceled
    }

    // Runs `fn` on the loop thread: at once when called there (from a callback), else posted.
    // False when the client is closing and `fn` will not run.
    bool runOnLoop(std::function<void()> fn) {
        if (std::this_thread::get_id() == loopThread) {
            fn();
            return true;
        }
        return inbox->post(std::move(fn));
    }

    // A membership change or leadership transfer (client.cc's Client::member*).
    template <typename Fn>
    Expected<std::vector<Member>> clusterChange(Deadline deadline, Fn makeRequest);

    Deadline deadlineOr(Deadline d) const {
        return d == Deadline{} ? Clock::now() + options.requestTimeout : d;
    }

    kj::Timer& timer() { return io->provider->getTimer(); }

    kj::Duration backoff(unsigned attempt) const {
        auto d = options.backoffMin * (1u << std::min(attempt, 10u));
        return toKj(std::min<std::chrono::milliseconds>(d, options.backoffMax));
    }

    // ---- connections ----

    void markBroken(uint64_t gen) {
        if (conn && conn->gen == gen && !conn->broken) {
            conn->markBroken();
            ++endpointIndex;
        }
    }

    // A TCP connection to host:port.
    kj::Promise<kj::Own<kj::AsyncIoStream>> connectTo(const std::string& host, unsigned port) {
        return io->provider->getNetwork()
            .parseAddress(host, port)
            .then([](kj::Own<kj::NetworkAddress> addr) {
                return addr->connect().attach(kj::mv(addr));
            });
    }

    // Dials the current endpoint once; on failure moves to the next. Never fails.
    kj::Promise<void> dialOnce() {
        std::string endpoint = options.endpoints[endpointIndex % options.endpoints.size()];
        auto [host, port] = splitEndpoint(endpoint);
        if (port == 0) {
            lastError = endpointProblem(endpoint);
            ++endpointIndex;
            return kj::READY_NOW;
        }
        auto dial = connectTo(host, port).then([this, endpoint](kj::Own<kj::AsyncIoStream> stream) {
            conn = kj::refcounted<Conn>(kj::heap<rpc::BufferedStream>(kj::mv(stream)), endpoint,
                                        ++nextGen);
            uint64_t gen = conn->gen;
            tasks->add(
                conn->rpc.onDisconnect().then([this, gen] { markBroken(gen); },
                                              [this, gen](kj::Exception&&) { markBroken(gen); }));
        });
        return dial
            .exclusiveJoin(timer().afterDelay(toKj(options.dialTimeout)).then([endpoint]() {
                KJ_FAIL_REQUIRE("dial timed out", endpoint);
            }))
            .catch_([this, endpoint](kj::Exception&& e) {
                lastError = endpoint + ": " + std::string(e.getDescription().cStr());
                ++endpointIndex;
            });
    }

    // A live connection, dialing (one dial at a time for all callers) until the deadline.
    kj::Promise<kj::Own<Conn>> connection(Deadline deadline, unsigned attempt = 0) {
        if (conn && !conn->broken) return kj::addRef(*conn);
        if (Clock::now() >= deadline) {
            return KJ_EXCEPTION(DISCONNECTED, "no member reachable", lastError);
        }
        if (!dialing) {
            dialing = true;
            tasks->add(dialOnce().then([this] {
                dialing = false;
                auto waiters = std::move(dialWaiters);
                dialWaiters.clear();
                for (auto& f : waiters)
                    f->fulfill();
            }));
        }
        auto paf = kj::newPromiseAndFulfiller<void>();
        dialWaiters.push_back(kj::mv(paf.fulfiller));
        return paf.promise.then([this, deadline, attempt]() -> kj::Promise<kj::Own<Conn>> {
            if (conn && !conn->broken) return kj::addRef(*conn);
            // Every endpoint tried once: back off before the next round.
            auto pause = (attempt + 1) % options.endpoints.size() == 0 ? backoff(attempt)
                                                                       : 0 * kj::MILLISECONDS;
            return timer().afterDelay(pause).then(
                [this, deadline, attempt] { return connection(deadline, attempt + 1); });
        });
    }

    // ---- calls with failover ----

    template <typename T>
    using Attempt = std::function<kj::Promise<Step<T>>(Conn&)>;

    template <typename T>
    kj::Promise<Slot<Expected<T>>> call(Deadline deadline, bool isWrite, Attempt<T> attempt) {
        auto sent = std::make_shared<bool>(false);
        auto loop = callLoop<T>(deadline, isWrite, std::move(attempt), 0, sent);
        auto expiry = timer().afterDelay(toKj(deadline - Clock::now())).then([this, isWrite, sent] {
            if (isWrite && *sent) {
                return Expected<T>(fail(unknownOutcome(
                    "deadline exceeded after the write was sent; it may have been applied")));
            }
            return Expected<T>(
                fail(unavailable("deadline exceeded" +
                                 (lastError.empty() ? "" : " (last error: " + lastError + ")"))));
        });
        return loop.exclusiveJoin(kj::mv(expiry)).then([](Expected<T> e) {
            return Slot<Expected<T>>{std::move(e)};
        });
    }

    template <typename T>
    kj::Promise<Expected<T>> callLoop(Deadline deadline, bool isWrite, Attempt<T> attempt,
                                      unsigned n, std::shared_ptr<bool> sent) {
        return connection(deadline).then(
            [this, deadline, isWrite, attempt, n,
             sent](kj::Own<Conn> c) mutable -> kj::Promise<Expected<T>> {
                uint64_t gen = c->gen;
                *sent = true;
                auto p = attempt(*c).attach(kj::mv(c));
                return p.then(
                    [this, deadline, isWrite, attempt, n, sent,
                     gen](Step<T> step) mutable -> kj::Promise<Expected<T>> {
                        if (step.done) return std::move(*step.done);
                        lastError = step.why;
                        *sent = false;  // this try was refused before anything was applied
                        if (step.rotate) markBroken(gen);
                        return timer()
                            .afterDelay(backoff(n))
                            .then([this, deadline, isWrite, attempt, n, sent]() mutable {
                                return callLoop<T>(deadline, isWrite, attempt, n + 1, sent);
                            });
                    },
                    [this, deadline, isWrite, attempt, n, sent,
                     gen](kj::Exception&& e) mutable -> kj::Promise<Expected<T>> {
                        std::string what = e.getDescription().cStr();
                        if (e.getType() != kj::Exception::Type::DISCONNECTED) {
                            // The member refused the request itself (malformed, too large).
                            return Expected<T>(
                                fail(Error{Error::Kind::Store, kv::ErrorCode::InvalidArgument,
                                           "request refused: " + what, 0}));
                        }
                        markBroken(gen);
                        lastError = what;
                        if (isWrite) {
                            return Expected<T>(fail(unknownOutcome(
                                "connection lost after the write was sent: " + what)));
                        }
                        return callLoop<T>(deadline, isWrite, attempt, n + 1, sent);
                    });
            },
            [this](kj::Exception&&) -> kj::Promise<Expected<T>> {
                return Expected<T>(fail(unavailable("no member reachable: " + lastError)));
            });
    }

    static Step<kv::Response> writeStep(s::WriteResult::Reader result, unsigned) {
        switch (result.getUnavailable()) {
            case s::Unavailable::NONE: {
                auto r = rpc::responseFromCapnp(result.getResponse());
                if (!r.ok()) return Step<kv::Response>::finish(fail(storeError(r.error())));
                return Step<kv::Response>::finish(std::move(r).value());
            }
            case s::Unavailable::NO_LEADER:
                return Step<kv::Response>::retry("no leader", true);
            case s::Unavailable::NOT_LEADER:
                return Step<kv::Response>::retry("not the leader", true);
            case s::Unavailable::CORRUPT:  // refused before it was proposed
                return Step<kv::Response>::retry(unavailableText(result.getUnavailable()), true);
            default:
                return Step<kv::Response>::finish(
                    fail(unknownOutcome(unavailableText(result.getUnavailable()))));
        }
    }

    kj::Promise<Slot<Expected<kv::Response>>> write(kv::Request request, Deadline deadline) {
        // Members refuse it too; this one could not even be sent in one message.
        if (auto tooLarge = kv::checkRequestSize(request)) {
            Slot<Expected<kv::Response>> refused;
            refused.value = fail(storeError(*tooLarge));
            return kj::mv(refused);
        }
        auto shared = std::make_shared<kv::Request>(std::move(request));
        return call<kv::Response>(deadline, true, [shared](Conn& c) {
            auto req = c.kv.writeRequest(rpc::writeRequestSize(*shared));
            rpc::requestToCapnp(*shared, req.initRequest());
            return req.send().then([](capnp::Response<s::KV::WriteResults>&& r) {
                return writeStep(r.getResult(), 0);
            });
        });
    }

    // A range the member cut at its response size bound (`truncated`) is read on in further
    // requests at the same revision, each from the key after the last one returned, so the
    // caller gets the whole result at one revision (up to its limit).
    kj::Promise<Slot<Expected<RangeResponse>>> range(RangeRequest request, bool serializable,
                                                     Deadline deadline) {
        auto next = std::make_shared<RangeRequest>(request);
        return rangeOnce(std::move(request), serializable, deadline)
            .then([this, next, serializable, deadline](Slot<Expected<RangeResponse>> slot) mutable {
                return rangeRest(std::move(next), serializable, deadline, std::move(slot));
            });
    }

    kj::Promise<Slot<Expected<RangeResponse>>> rangeRest(std::shared_ptr<RangeRequest> next,
                                                         bool serializable, Deadline deadline,
                                                         Slot<Expected<RangeResponse>> sofar) {
        if (!sofar.value->ok() || !sofar.value->value().truncated) return kj::mv(sofar);
        RangeResponse& got = sofar.value->value();
        KJ_REQUIRE(!got.kvs.empty(), "a member cut a range before its first key");
        const bool descending =
            next->sortOrder == kv::SortOrder::Descend && next->sortTarget == kv::SortTarget::Key;
        const bool ascending =
            next->sortTarget == kv::SortTarget::Key && next->sortOrder != kv::SortOrder::Descend;
        if (!ascending && !descending) {
            sofar.value = fail(storeError(kv::Error{
                kv::ErrorCode::InvalidArgument,
                "the result is larger than the member's response size bound and is sorted by "
                "something other than the key, so it cannot be read in parts: ask with a "
                "smaller limit, or in key order"}));
            return kj::mv(sofar);
        }
        // Every further part reads the revision of the first.
        if (next->revision <= 0) next->revision = got.revision;
        if (ascending) {
            next->key = got.kvs.back().key + '\0';
        } else {
            next->rangeEnd = got.kvs.back().key;
        }
        if (next->limit > 0) next->limit -= static_cast<int64_t>(got.kvs.size());
        return rangeOnce(*next, serializable, deadline)
            .then([this, next, serializable, deadline,
                   sofar = kj::mv(sofar)](Slot<Expected<RangeResponse>> slot) mutable {
                if (!slot.value->ok())
                    return kj::Promise<Slot<Expected<RangeResponse>>>(kj::mv(slot));
                RangeResponse& all = sofar.value->value();
                RangeResponse& more = slot.value->value();
                for (auto& kv : more.kvs)
                    all.kvs.push_back(std::move(kv));
                all.more = more.more;
                all.truncated = more.truncated;
                return rangeRest(std::move(next), serializable, deadline, kj::mv(sofar));
            });
    }

    kj::Promise<Slot<Expected<RangeResponse>>> rangeOnce(RangeRequest request, bool serializable,
                                                         Deadline deadline) {
        auto shared = std::make_shared<RangeRequest>(std::move(request));
        return call<RangeResponse>(deadline, false, [shared, serializable](Conn& c) {
            auto req = c.kv.rangeRequest(rpc::rangeRequestSize(*shared));
            rpc::toCapnp(*shared, req.initRequest());
            req.setSerializable(serializable);
            return req.send().then([](capnp::Response<s::KV::RangeResults>&& r) {
                auto result = r.getResult();
                if (result.getUnavailable() != s::Unavailable::NONE) {
                    return Step<RangeResponse>::retry(unavailableText(result.getUnavailable()),
                                                      true);
                }
                if (result.which() == s::RangeResult::ERROR) {
                    return Step<RangeResponse>::finish(
                        fail(storeError(rpc::fromCapnp(result.getError()))));
                }
                return Step<RangeResponse>::finish(rpc::fromCapnp(result.getOk()));
            });
        });
    }

    // ---- runners (watches, keep-alives) ----

    // Starts a runner under an id taken by the caller (any thread): the caller does not wait
    // for the loop. A handle dropped on the loop thread before its runner started leaves its id
    // in `dropped`, and the runner is then never started.
    template <typename MakeRunner>
    std::unique_ptr<Handle> startRunner(MakeRunner make) {
        uint64_t id = nextRunner.fetch_add(1, std::memory_order_relaxed);
        auto start = [this, id, make = std::move(make)]() mutable {
            if (!tasks) return;
            if (dropped.erase(id)) return;
            kj::Own<Runner> runner = make();
            runners.emplace(id, kj::mv(runner));
        };
        if (!runOnLoop(std::move(start))) return nullptr;
        return std::make_unique<RunnerHandle>(*this, id);
    }

    void removeRunner(uint64_t id) {
        auto it = runners.find(id);
        if (it == runners.end()) {
            dropped.insert(id);  // not started yet: see startRunner
            return;
        }
        it->second->stopped = true;
        // A runner may be removed from its own callback: destroy it from a fresh turn.
        tasks->add(kj::evalLater([this, id] { runners.erase(id); }));
    }

    class RunnerHandle final : public Handle {
      public:
        RunnerHandle(Impl& impl, uint64_t id)
            : impl_(&impl), inbox_(impl.inbox), loopThread_(impl.loopThread), id_(id) {}
        ~RunnerHandle() override {
            if (detached_) return;
            if (std::this_thread::get_id() == loopThread_) {
                impl_->removeRunner(id_);
                return;
            }
            // The client may be gone already: then the inbox is closed and nothing runs.
            auto done = std::make_shared<std::promise<void>>();
            auto future = done->get_future();
            Impl* impl = impl_;
            uint64_t id = id_;
            if (!inbox_->post([impl, id, done] {
                    impl->removeRunner(id);
                    done->set_value();
                })) {
                return;
            }
            try {
                future.get();
            } catch (const std::future_error&) {
            }
        }

        void detach() override {
            if (detached_) return;
            detached_ = true;
            if (std::this_thread::get_id() == loopThread_) {
                impl_->removeRunner(id_);
                return;
            }
            Impl* impl = impl_;
            uint64_t id = id_;
            (void)inbox_->post([impl, id] { impl->removeRunner(id); });  // closed: nothing runs
        }

      private:
        bool detached_ = false;
        Impl* impl_;
        std::shared_ptr<Inbox> inbox_;
        std::thread::id loopThread_;
        uint64_t id_;
    };

    ClientOptions options;
    std::shared_ptr<Inbox> inbox;
    std::thread thread;
    std::thread::id loopThread;
    kj::Own<kj::PromiseFulfiller<void>> stopping;

    // Loop-thread state.
    kj::AsyncIoContext* io = nullptr;
    kj::TaskSet* tasks = nullptr;
    kj::Own<Conn> conn;
    uint64_t nextGen = 0;
    size_t endpointIndex = 0;
    bool dialing = false;
    std::vector<kj::Own<kj::PromiseFulfiller<void>>> dialWaiters;
    std::string lastError;
    std::map<uint64_t, kj::Own<Runner>> runners;
    std::atomic<uint64_t> nextRunner{1};
    std::set<uint64_t> dropped;  // handles gone before their runner started
};

// ---- watch ----

namespace {

struct WatchRunner;

class SinkImpl final : public s::WatchSink::Server {
  public:
    // The member may call the sink after its runner is gone (the handle was dropped while
    // events were in flight): the sink holds the runner through a slot the runner clears.
    SinkImpl(std::shared_ptr<WatchRunner*> runner, uint64_t epoch)
        : runner_(std::move(runner)), epoch_(epoch) {}

  protected:
    kj::Promise<void> events(EventsContext context) override;
    kj::Promise<void> progress(ProgressContext context) override;
    kj::Promise<void> canceled(CanceledContext context) override;

  private:
    std::shared_ptr<WatchRunner*> runner_;
    uint64_t epoch_;
};

struct WatchRunner final : Runner {
    WatchRunner(Client::Impl& i, WatchRequest r, WatchCallbacks cb)
        : impl(i),
          request(std::move(r)),
          callbacks(std::move(cb)),
          self(std::make_shared<WatchRunner*>(this)) {}
    ~WatchRunner() override { *self = nullptr; }

    // Watches from `request.startRevision` at the current member; when the member goes away,
    // backs off and resumes at another from the next undelivered revision.
    kj::Promise<void> run(unsigned attempt) {
        if (stopped) return kj::READY_NOW;
        auto deadline = Clock::now() + impl.options.requestTimeout;
        return impl.connection(deadline).then(
            [this, attempt](kj::Own<Conn> c) -> kj::Promise<void> {
                uint64_t e = ++epoch;
                partialEvents.clear();  // parts from the attempt before: resent from its start
                auto req = c->watch.watchRequest();
                rpc::toCapnp(request, req.initRequest());
                req.setSink(kj::heap<SinkImpl>(self, e));
                auto disconnected = c->abandoned.addBranch();
                uint64_t gen = c->gen;
                return req.send()
                    .then([this, e, gen, disconnected = kj::mv(disconnected)](
                              capnp::Response<s::Watch::WatchResults>&& r) mutable
                          -> kj::Promise<void> {
                        auto result = r.getResult();
                        if (result.which() == s::WatchResult::ERROR) {
                            kv::Error error = rpc::fromCapnp(result.getError());
                            if (error.code == kv::ErrorCode::Corrupt) {
                                // That member serves no keys: resume at the next one.
                                impl.markBroken(gen);
                                return kj::READY_NOW;
                            }
                            finish(storeError(error));
                            return kj::READY_NOW;
                        }
                        if (request.startRevision <= 0) {
                            request.startRevision = r.getHeader().getRevision() + 1;
                        }
                        handle = result.getHandle();
                        // Runs until the member goes away or cancels the watch.
                        auto ended = kj::newPromiseAndFulfiller<void>();
                        endedFulfiller = kj::mv(ended.fulfiller);
                        return disconnected.exclusiveJoin(kj::mv(ended.promise))
                            .then([this, e, gen] {
                                if (epoch == e) handle = nullptr;
                                impl.markBroken(gen);
                            });
                    })
                    .then([this] { return impl.timer().afterDelay(impl.backoff(0)); })
                    .then([this] { return run(0); },
                          [this, attempt](kj::Exception&&) {
                              return impl.timer()
                                  .afterDelay(impl.backoff(attempt))
                                  .then([this, attempt] { return run(attempt + 1); });
                          });
            },
            [this, attempt](kj::Exception&&) {
                return impl.timer().afterDelay(impl.backoff(attempt)).then([this, attempt] {
                    return run(attempt + 1);
                });
            });
    }

    // `partial`: more events of `revision` follow in the next call; they are held until the
    // revision is whole, so onEvents always sees whole revisions.
    void onEvents(uint64_t e, std::vector<Event> events, int64_t revision, bool partial) {
        if (stopped || e != epoch) return;
        if (partial) {
            for (auto& ev : events)
                partialEvents.push_back(std::move(ev));
            return;
        }
        if (!partialEvents.empty()) {
            for (auto& ev : events)
                partialEvents.push_back(std::move(ev));
            events = std::move(partialEvents);
            partialEvents.clear();
        }
        // Never deliver a revision twice (a resumed watch starts exactly after the last one).
        std::erase_if(events,
                      [&](const Event& ev) { return ev.kv.modRevision < request.startRevision; });
        if (revision >= request.startRevision) request.startRevision = revision + 1;
        if (!events.empty() && callbacks.onEvents) callbacks.onEvents(events, revision);
    }

    void onProgress(uint64_t e, int64_t revision) {
        if (stopped || e != epoch) return;
        if (revision >= request.startRevision) request.startRevision = revision + 1;
        if (callbacks.onProgress) callbacks.onProgress(revision);
    }

    void onCanceled(uint64_t e, const kv::Error& error) {
        if (stopped || e != epoch) return;
        if (error.code == kv::ErrorCode::Compacted) {
            finish(storeError(error));
            return;
        }
        // Any other end (the member stopping): resume elsewhere.
        if (endedFulfiller) endedFulfiller->fulfill();
    }

    void finish(const Error& error) {
        if (stopped) return;
        stopped = true;
        handle = nullptr;
        if (endedFulfiller) endedFulfiller->fulfill();
        if (callbacks.onError) callbacks.onError(error);
    }

    Client::Impl& impl;
    WatchRequest request;  // startRevision: the next revision to deliver
    WatchCallbacks callbacks;
    uint64_t epoch = 0;
    std::vector<Event> partialEvents;  // the parts of a revision received so far, this epoch
    s::WatchHandle::Client handle = nullptr;
    kj::Own<kj::PromiseFulfiller<void>> endedFulfiller;
    std::shared_ptr<WatchRunner*> self;  // cleared on destruction (see SinkImpl)
};

kj::Promise<void> SinkImpl::events(EventsContext context) {
    std::vector<Event> events;
    for (auto e : context.getParams().getEvents())
        events.push_back(rpc::fromCapnp(e));
    auto params = context.getParams();
    if (*runner_)
        (*runner_)->onEvents(epoch_, std::move(events), params.getRevision(), params.getPartial());
    return kj::READY_NOW;
}

kj::Promise<void> SinkImpl::progress(ProgressContext context) {
    if (*runner_) (*runner_)->onProgress(epoch_, context.getParams().getRevision());
    return kj::READY_NOW;
}

kj::Promise<void> SinkImpl::canceled(CanceledContext context) {
    if (*runner_) (*runner_)->onCanceled(epoch_, rpc::fromCapnp(context.getParams().getError()));
    return kj::READY_NOW;
}

// ---- keep-alive ----

struct KeepAliveRunner final : Runner {
    KeepAliveRunner(Client::Impl& i, int64_t leaseId, int64_t ttl,
                    std::function<void(const Error&)> lost)
        : impl(i),
          id(leaseId),
          ttlSeconds(std::max<int64_t>(ttl, 1)),
          onLost(std::move(lost)),
          expiry(Clock::now() + std::chrono::seconds(ttlSeconds)) {}

    // Loss is declared this long before the lease could expire on the leader (a tenth of the
    // TTL, at most 1 s): time for a holder told of it to stop acting before the lease can end on
    // the leader and a next holder begin.
    Clock::duration margin() const {
        return std::min<Clock::duration>(std::chrono::milliseconds(ttlSeconds * 100),
                                         std::chrono::seconds(1));
    }

    kj::Promise<void> run() {
        if (stopped) return kj::READY_NOW;
        auto sentAt = Clock::now();
        if (sentAt >= expiry - margin()) {
            lost(unavailable("lease " + std::to_string(id) +
                             " could not be renewed before it would expire: " + impl.lastError));
            return kj::READY_NOW;
        }
        // Keep trying until then.
        return impl
            .call<int64_t>(
                expiry - margin(), false,
                [leaseId = id](Conn& c) {
                    auto req = c.lease.keepAliveRequest(rpc::kSmallMessage);
                    req.setId(leaseId);
                    return req.send().then([](capnp::Response<s::Lease::KeepAliveResults>&& r) {
                        return keepAliveStep(r.getResult());
                    });
                })
            .then([this, sentAt](Slot<Expected<int64_t>> box) -> kj::Promise<void> {
                if (stopped) return kj::READY_NOW;
                auto& r = *box.value;
                if (!r.ok()) {
                    if (r.error().kind == Error::Kind::Store) {
                        lost(r.error());
                        return kj::READY_NOW;
                    }
                    return run();  // past the expiry now: reports the loss
                }
                // The leader restarted its countdown no earlier than we sent the request.
                expiry = sentAt + std::chrono::seconds(*r);
                auto pause = std::chrono::milliseconds(*r * 1000 / 3);
                return impl.timer().afterDelay(toKj(pause)).then([this] { return run(); });
            });
    }

    static Step<int64_t> keepAliveStep(s::LeaseKeepAliveResult::Reader result) {
        if (result.getUnavailable() != s::Unavailable::NONE) {
            bool rotate = result.getUnavailable() == s::Unavailable::NOT_LEADER ||
                          result.getUnavailable() == s::Unavailable::NO_LEADER;
            return Step<int64_t>::retry(unavailableText(result.getUnavailable()), rotate);
        }
        if (result.which() == s::LeaseKeepAliveResult::ERROR) {
            return Step<int64_t>::finish(fail(storeError(rpc::fromCapnp(result.getError()))));
        }
        return Step<int64_t>::finish(result.getTtlSeconds());
    }

    void lost(const Error& e) {
        if (stopped) return;
        stopped = true;
        if (onLost) onLost(e);
    }

    Client::Impl& impl;
    int64_t id;
    int64_t ttlSeconds;
    std::function<void(const Error&)> onLost;
    Deadline expiry;
};

template <typename T>
Expected<T> pick(Expected<kv::Response> r) {
    if (!r.ok()) return fail(r.error());
    if (auto* v = std::get_if<T>(&r.value())) return std::move(*v);
    return fail(unavailable("unexpected response type"));
}

}  // namespace

// ---- the public API ----

std::string endpointProblem(const std::string& endpoint) {
    if (splitEndpoint(endpoint).second != 0) return {};
    return "bad endpoint '" + endpoint + "' (want host:port, the port from 1 to 65535)";
}

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;

const ClientOptions& Client::options() const {
    return impl_->options;
}

namespace {
template <typename T>
std::function<void(Expected<kv::Response>)> picking(std::function<void(Expected<T>)> done) {
    return [done = std::move(done)](Expected<kv::Response> r) { done(pick<T>(std::move(r))); };
}
}  // namespace

Expected<RangeResponse> Client::range(const RangeRequest& request, bool serializable,
                                      Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    return impl_->sync<RangeResponse>(
        [&] { return impl_->range(request, serializable, deadline); });
}

void Client::rangeAsync(const RangeRequest& request, bool serializable,
                        Callback<RangeResponse> done, Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    impl_->async<RangeResponse>([impl = impl_.get(), request, serializable,
                                 deadline] { return impl->range(request, serializable, deadline); },
                                std::move(done));
}

void Client::writeAsync(const kv::Request& request, Callback<kv::Response> done,
                        Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    impl_->async<kv::Response>(
        [impl = impl_.get(), request, deadline] { return impl->write(request, deadline); },
        std::move(done));
}

void Client::putAsync(const std::string& key, const std::string& value, Callback<PutResponse> done,
                      int64_t lease, Deadline deadline) {
    PutRequest p;
    p.key = key;
    p.value = value;
    p.lease = lease;
    writeAsync(p, picking<PutResponse>(std::move(done)), deadline);
}

void Client::txnAsync(const TxnRequest& request, Callback<TxnResponse> done, Deadline deadline) {
    writeAsync(request, picking<TxnResponse>(std::move(done)), deadline);
}

Expected<std::optional<KeyValue>> Client::get(const std::string& key, Deadline deadline) {
    RangeRequest r;
    r.key = key;
    auto out = range(r, false, deadline);
    if (!out.ok()) return fail(out.error());
    if (out->kvs.empty()) return std::optional<KeyValue>{};
    return std::optional<KeyValue>{std::move(out->kvs.front())};
}

Expected<kv::Response> Client::write(const kv::Request& request, Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    return impl_->sync<kv::Response>([&] { return impl_->write(request, deadline); });
}

Expected<PutResponse> Client::put(const std::string& key, const std::string& value, int64_t lease,
                                  Deadline deadline) {
    PutRequest p;
    p.key = key;
    p.value = value;
    p.lease = lease;
    return pick<PutResponse>(write(p, deadline));
}

Expected<DeleteRangeResponse> Client::del(const DeleteRangeRequest& request, Deadline deadline) {
    return pick<DeleteRangeResponse>(write(request, deadline));
}

Expected<TxnResponse> Client::txn(const TxnRequest& request, Deadline deadline) {
    return pick<TxnResponse>(write(request, deadline));
}

Expected<kv::CompactResponse> Client::compact(int64_t revision, Deadline deadline) {
    return pick<kv::CompactResponse>(write(kv::CompactRequest{revision}, deadline));
}

Expected<kv::LeaseGrantResponse> Client::leaseGrant(int64_t ttlSeconds, int64_t id,
                                                    Deadline deadline) {
    return pick<kv::LeaseGrantResponse>(write(kv::LeaseGrantRequest{id, ttlSeconds}, deadline));
}

Expected<kv::LeaseRevokeResponse> Client::leaseRevoke(int64_t id, Deadline deadline) {
    return pick<kv::LeaseRevokeResponse>(write(kv::LeaseRevokeRequest{id}, deadline));
}

Expected<int64_t> Client::leaseKeepAliveOnce(int64_t id, Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    return impl_->sync<int64_t>([&] {
        return impl_->call<int64_t>(deadline, false, [id](Conn& c) {
            auto req = c.lease.keepAliveRequest(rpc::kSmallMessage);
            req.setId(id);
            return req.send().then([](capnp::Response<s::Lease::KeepAliveResults>&& r) {
                return KeepAliveRunner::keepAliveStep(r.getResult());
            });
        });
    });
}

namespace {
LeaseInfo leaseInfoFromCapnp(s::LeaseInfo::Reader in) {
    LeaseInfo info;
    info.id = in.getId();
    info.ttlSeconds = in.getTtlSeconds();
    for (auto k : in.getKeys())
        info.keys.emplace_back(reinterpret_cast<const char*>(k.begin()), k.size());
    return info;
}
}  // namespace

Expected<std::optional<LeaseInfo>> Client::leaseTimeToLive(int64_t id, Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    using T = std::optional<LeaseInfo>;
    return impl_->sync<T>([&] {
        return impl_->call<T>(deadline, false, [id](Conn& c) {
            auto req = c.lease.timeToLiveRequest();
            req.setId(id);
            return req.send().then([](capnp::Response<s::Lease::TimeToLiveResults>&& r) {
                if (!r.getFound()) return Step<T>::finish(T{});
                return Step<T>::finish(T{leaseInfoFromCapnp(r.getInfo())});
            });
        });
    });
}

Expected<std::vector<LeaseInfo>> Client::leaseList(Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    using T = std::vector<LeaseInfo>;
    return impl_->sync<T>([&] {
        return impl_->call<T>(deadline, false, [](Conn& c) {
            return c.lease.listRequest().send().then(
                [](capnp::Response<s::Lease::ListResults>&& r) {
                    T out;
                    for (auto l : r.getLeases())
                        out.push_back(leaseInfoFromCapnp(l));
                    return Step<T>::finish(std::move(out));
                });
        });
    });
}

std::unique_ptr<Handle> Client::keepAlive(int64_t id, int64_t ttlSeconds,
                                          std::function<void(const Error&)> onLost) {
    return impl_->startRunner(
        [impl = impl_.get(), id, ttlSeconds, onLost = std::move(onLost)]() mutable {
            auto runner = kj::heap<KeepAliveRunner>(*impl, id, ttlSeconds, std::move(onLost));
            auto* raw = runner.get();
            raw->task = kj::evalLater([raw] { return raw->run(); }).eagerlyEvaluate(nullptr);
            return kj::Own<Runner>(kj::mv(runner));
        });
}

std::unique_ptr<Handle> Client::watch(const WatchRequest& request, WatchCallbacks callbacks) {
    return impl_->startRunner(
        [impl = impl_.get(), request, callbacks = std::move(callbacks)]() mutable {
            auto runner = kj::heap<WatchRunner>(*impl, request, std::move(callbacks));
            auto* raw = runner.get();
            raw->task = kj::evalLater([raw] { return raw->run(0); }).eagerlyEvaluate(nullptr);
            return kj::Own<Runner>(kj::mv(runner));
        });
}

namespace {
kj::Promise<void> pumpSnapshot(s::SnapshotReader::Client reader, std::ostream& out) {
    auto req = reader.readRequest();
    return req.send().then(
        [reader,
         &out](capnp::Response<s::SnapshotReader::ReadResults>&& r) mutable -> kj::Promise<void> {
            auto data = r.getData();
            if (data.size() == 0) return kj::READY_NOW;
            out.write(reinterpret_cast<const char*>(data.begin()),
                      static_cast<std::streamsize>(data.size()));
            return pumpSnapshot(reader, out);
        });
}
}  // namespace

Expected<Client::SnapshotInfo> Client::snapshot(std::ostream& out, Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    return impl_->sync<SnapshotInfo>([&] {
        // Treated like a write: once bytes were written to `out`, nothing is retried.
        return impl_->call<SnapshotInfo>(deadline, true, [&out](Conn& c) {
            return c.coord.maintenanceRequest()
                .send()
                .getMaintenance()
                .snapshotRequest()
                .send()
                .then([&out](capnp::Response<s::Maintenance::SnapshotResults>&& r) {
                    SnapshotInfo info{r.getRevision(), r.getBytes()};
                    return pumpSnapshot(r.getReader(), out).then([info] {
                        return Step<SnapshotInfo>::finish(info);
                    });
                });
        });
    });
}

namespace {
std::vector<Member> membersFromCapnp(capnp::List<s::Member>::Reader in) {
    std::vector<Member> out;
    for (auto m : in)
        out.push_back(
            Member{m.getId(), m.getName(), m.getPeerUrl(), m.getClientUrl(), m.getIsLearner()});
    return out;
}

Step<std::vector<Member>> clusterStep(s::ClusterResult::Reader result) {
    using T = std::vector<Member>;
    switch (result.getUnavailable()) {
        case s::Unavailable::NONE:
            break;
        case s::Unavailable::NO_LEADER:
        case s::Unavailable::NOT_LEADER:
            // Refused before anything was proposed: try the next member.
            return Step<T>::retry(unavailableText(result.getUnavailable()), true);
        default:
            return Step<T>::finish(fail(unknownOutcome(unavailableText(result.getUnavailable()))));
    }
    if (result.which() == s::ClusterResult::ERROR) {
        return Step<T>::finish(fail(storeError(rpc::fromCapnp(result.getError()))));
    }
    return Step<T>::finish(membersFromCapnp(result.getMembers()));
}
}  // namespace

Expected<kv::AlarmResponse> Client::alarmList(Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    using T = kv::AlarmResponse;
    return impl_->sync<T>([&] {
        return impl_->call<T>(deadline, false, [](Conn& c) {
            return c.coord.maintenanceRequest().send().getMaintenance().alarmsRequest().send().then(
                [](capnp::Response<s::Maintenance::AlarmsResults>&& r) {
                    T out;
                    out.revision = r.getHeader().getRevision();
                    for (auto id : r.getNoSpace())
                        out.noSpace.push_back(id);
                    for (auto id : r.getCorrupt())
                        out.corrupt.push_back(id);
                    return Step<T>::finish(std::move(out));
                });
        });
    });
}

Expected<kv::AlarmResponse> Client::alarmDisarm(Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    auto noSpace = pick<kv::AlarmResponse>(write(
        kv::AlarmRequest{kv::AlarmRequest::Action::Deactivate, 0, kv::AlarmRequest::Kind::NoSpace},
        deadline));
    if (!noSpace.ok()) return noSpace;
    return pick<kv::AlarmResponse>(write(
        kv::AlarmRequest{kv::AlarmRequest::Action::Deactivate, 0, kv::AlarmRequest::Kind::Corrupt},
        deadline));
}

Expected<kv::AlarmResponse> Client::alarmRaise(uint64_t member, kv::AlarmRequest::Kind kind,
                                               Deadline deadline) {
    return pick<kv::AlarmResponse>(
        write(kv::AlarmRequest{kv::AlarmRequest::Action::Activate, member, kind}, deadline));
}

Expected<std::vector<Member>> Client::memberList(bool serializable, Deadline deadline) {
    deadline = impl_->deadlineOr(deadline);
    using T = std::vector<Member>;
    return impl_->sync<T>([&] {
        return impl_->call<T>(deadline, false, [serializable](Conn& c) {
            auto req = c.cluster.memberListRequest();
            req.setLinearizable(!serializable);
            return req.send().then([](capnp::Response<s::Cluster::MemberListResults>&& r) {
                if (r.getUnavailable() != s::Unavailable::NONE) {
                    return Step<T>::retry(unavailableText(r.getUnavailable()), true);
                }
                return Step<T>::finish(membersFromCapnp(r.getMembers()));
            });
        });
    });
}

template <typename Fn>
Expected<std::vector<Member>> Client::Impl::clusterChange(Deadline deadline, Fn makeRequest) {
    deadline = deadlineOr(deadline);
    using T = std::vector<Member>;
    return sync<T>([&] {
        return call<T>(deadline, true, [makeRequest](Conn& c) {
            return makeRequest(c.cluster).send().then(
                [](auto&& r) { return clusterStep(r.getResult()); });
        });
    });
}

Expected<std::vector<Member>> Client::memberAdd(const std::string& name, const std::string& peerUrl,
                                                bool learner, Deadline deadline) {
    return impl_->clusterChange(deadline, [name, peerUrl, learner](s::Cluster::Client& c) {
        auto req = c.memberAddRequest();
        req.setName(name);
        req.setPeerUrl(peerUrl);
        req.setLearner(learner);
        return req;
    });
}

Expected<std::vector<Member>> Client::memberRemove(uint64_t id, Deadline deadline) {
    return impl_->clusterChange(deadline, [id](s::Cluster::Client& c) {
        auto req = c.memberRemoveRequest();
        req.setId(id);
        return req;
    });
}

Expected<std::vector<Member>> Client::memberPromote(uint64_t id, Deadline deadline) {
    return impl_->clusterChange(deadline, [id](s::Cluster::Client& c) {
        auto req = c.memberPromoteRequest();
        req.setId(id);
        return req;
    });
}

Expected<std::vector<Member>> Client::moveLeader(uint64_t target, Deadline deadline) {
    return impl_->clusterChange(deadline, [target](s::Cluster::Client& c) {
        auto req = c.moveLeaderRequest();
        req.setTarget(target);
        return req;
    });
}

namespace {

// Asks one member directly, on a connection of its own (not failed over): `ask(maintenance)`
// returns the answer's promise. Connection failures and the deadline become Unavailable.
template <typename T, typename Ask>
Expected<T> askMember(Client::Impl& impl, const std::string& endpoint, Deadline deadline, Ask ask) {
    auto [host, port] = splitEndpoint(endpoint);
    if (port == 0) return fail(unavailable("bad endpoint '" + endpoint + "' (want host:port)"));
    return impl.sync<T>([&, host = host, port = port] {
        auto work = impl.connectTo(host, port)
                        .then([ask](kj::Own<kj::AsyncIoStream> stream) mutable {
                            auto rpc = kj::heap<capnp::TwoPartyClient>(*stream);
                            auto m = rpc->bootstrap()
                                         .castAs<s::Coord>()
                                         .maintenanceRequest()
                                         .send()
                                         .getMaintenance();
                            return ask(m).attach(kj::mv(rpc), kj::mv(stream));
                        })
                        .catch_([endpoint](kj::Exception&& e) {
                            return Slot<Expected<T>>{
                                fail(unavailable(endpoint + ": " + e.getDescription().cStr()))};
                        });
        return work.exclusiveJoin(impl.timer().afterDelay(toKj(deadline - Clock::now())).then([] {
            return Slot<Expected<T>>{fail(unavailable("deadline exceeded"))};
        }));
    });
}

}  // namespace

Expected<MemberStatus> Client::status(const std::string& endpoint, Deadline deadline) {
    return askMember<MemberStatus>(
        *impl_, endpoint, impl_->deadlineOr(deadline), [endpoint](s::Maintenance::Client& m) {
            return m.statusRequest().send().then(
                [endpoint](capnp::Response<s::Maintenance::StatusResults>&& r) {
                    auto st = r.getStatus();
                    MemberStatus out;
                    out.endpoint = endpoint;
                    out.clusterId = st.getHeader().getClusterId();
                    out.memberId = st.getHeader().getMemberId();
                    out.raftTerm = st.getHeader().getRaftTerm();
                    out.revision = st.getHeader().getRevision();
                    out.leader = st.getLeader();
                    out.appliedIndex = st.getAppliedIndex();
                    out.compactedRevision = st.getCompactedRevision();
                    out.dbSizeBytes = st.getDbSizeBytes();
                    out.watchers = st.getWatchers();
                    out.version = st.getVersion();
                    return Slot<Expected<MemberStatus>>{out};
                });
        });
}

Expected<kv::HashKVResponse> Client::hashKV(const std::string& endpoint, int64_t revision,
                                            Deadline deadline) {
    return askMember<kv::HashKVResponse>(
        *impl_, endpoint, impl_->deadlineOr(deadline), [revision](s::Maintenance::Client& m) {
            auto req = m.hashKVRequest();
            req.setRevision(revision);
            return req.send().then([](capnp::Response<s::Maintenance::HashKVResults>&& r) {
                auto result = r.getResult();
                if (result.which() == s::HashKVResult::ERROR) {
                    return Slot<Expected<kv::HashKVResponse>>{
                        fail(storeError(rpc::fromCapnp(result.getError())))};
                }
                auto ok = result.getOk();
                kv::HashKVResponse out;
                out.hash = ok.getHash();
                out.revision = ok.getRevision();
                out.compactRevision = ok.getCompactRevision();
                return Slot<Expected<kv::HashKVResponse>>{out};
            });
        });
}

}  // namespace coord
