#include "cli/recipe_verbs.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include "cli/output.h"
#include "recipes/barrier.h"
#include "recipes/election.h"
#include "recipes/mutex.h"
#include "recipes/queue.h"

namespace coord::cli {

namespace {

volatile sig_atomic_t gotSignal = 0;
int lastSignal = SIGTERM;

Deadline deadlineFor(int64_t timeoutMs) {
    return timeoutMs > 0 ? Clock::now() + std::chrono::milliseconds(timeoutMs) : detail::kForever;
}

int reportRecipe(const RecipeError& e, const char* what) {
    std::fprintf(stderr, "coordctl: %s: %s\n", what, e.describe().c_str());
    switch (e.kind) {
        case RecipeError::Kind::Timeout:
            return kTimedOut;
        case RecipeError::Kind::SessionLost:
        case RecipeError::Kind::NotHeld:
            return kLockLost;
        case RecipeError::Kind::Client:
            return e.client.kind == Error::Kind::Store ? 1 : 3;
        case RecipeError::Kind::Busy:
            return 1;
        case RecipeError::Kind::Canceled:
            return 130;
    }
    return 1;
}

// Waits for a signal, or for `stop` to turn true; polls (both are rare events).
void waitUntil(const std::atomic<bool>& stop) {
    while (!gotSignal && !stop.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// Cancels a blocking recipe call when a signal arrives.
template <typename Recipe>
struct CancelOnSignal {
    explicit CancelOnSignal(Recipe& r)
        : thread([this, &r] {
              while (!done && !gotSignal)
                  std::this_thread::sleep_for(std::chrono::milliseconds(20));
              if (gotSignal) r.cancel();
          }) {}
    ~CancelOnSignal() {
        done = true;
        thread.join();
    }
    std::atomic<bool> done{false};
    std::thread thread;
};

int exitStatusOf(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

// Runs the command in its own process group while the lock is held. On loss: SIGTERM to the
// group, SIGKILL after the grace period, exit kLockLost.
int runHolding(const LockArgs& args, const std::string& key, int64_t token,
               const std::atomic<bool>& lost) {
    // posix_spawnp, not fork + exec: this process has other threads (the client's loop, the
    // session's keep-alive), and a forked child that allocates before exec (setenv, argv
    // vectors) can deadlock on an allocator lock one of them held at the fork. Everything the
    // child needs is built here; the spawn puts it in a process group of its own, with SIGINT
    // and SIGTERM at their defaults.
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
        std::string_view entry(*e);
        if (entry.starts_with("COORD_LOCK_KEY=") || entry.starts_with("COORD_FENCING_TOKEN="))
            continue;
        env.emplace_back(entry);
    }
    env.push_back("COORD_LOCK_KEY=" + key);
    env.push_back("COORD_FENCING_TOKEN=" + std::to_string(token));
    std::vector<char*> envp, argv;
    for (auto& e : env)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    for (const auto& a : args.command)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t defaults, none;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t child = 0;
    int err = posix_spawnp(&child, argv[0], nullptr, &attr, argv.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    if (err != 0) {
        std::fprintf(stderr, "coordctl: cannot run %s: %s\n", argv[0], std::strerror(err));
        return 127;
    }
    bool forwarded = false;
    for (;;) {
        int status = 0;
        pid_t done = waitpid(child, &status, WNOHANG);
        if (done == child) return exitStatusOf(status);
        if (gotSignal && !forwarded) {
            kill(-child, lastSignal);
            forwarded = true;
        }
        if (lost) {
            std::fprintf(stderr, "coordctl: lock %s lost; stopping the command\n", key.c_str());
            kill(-child, SIGTERM);
            auto until = Clock::now() + std::chrono::milliseconds(args.graceMs);
            while (Clock::now() < until && waitpid(child, &status, WNOHANG) != child)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            kill(-child, SIGKILL);  // the whole group, including grandchildren
            waitpid(child, &status, 0);
            return kLockLost;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace

bool interrupted() {
    return gotSignal != 0;
}

void installInterruptHandlers() {
    struct sigaction sa {};
    sa.sa_handler = [](int sig) {
        lastSignal = sig;
        gotSignal = 1;
    };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

int runLock(Client& client, const LockArgs& args) {
    installInterruptHandlers();
    std::unique_ptr<Session> session;
    try {
        session = std::make_unique<Session>(client, SessionOptions{args.ttlSeconds, 0});
    } catch (const RecipeException& e) {
        return reportRecipe(e.error(), "session");
    }
    Mutex mutex(*session, args.name);
    std::atomic<bool> lost{false};
    mutex.onLost([&](const RecipeError&) { lost = true; });
    RecipeResult<Ok> acquired = fail(RecipeError{RecipeError::Kind::Canceled, "", {}});
    {
        CancelOnSignal cancel(mutex);
        acquired = mutex.acquire(deadlineFor(args.timeoutMs));
    }
    if (!acquired.ok()) return reportRecipe(acquired.error(), "lock");
    std::string key = mutex.key();
    int64_t token = mutex.fencingToken();
    int rc = 0;
    if (args.command.empty()) {
        if (args.json) {
            std::printf("{\"key\":%s,\"fencing_token\":%lld}\n", jsonString(key).c_str(),
                        static_cast<long long>(token));
        } else {
            std::printf("%s\n%lld\n", key.c_str(), static_cast<long long>(token));
        }
        std::fflush(stdout);
        waitUntil(lost);
        if (lost) {
            std::fprintf(stderr, "coordctl: lock %s lost\n", key.c_str());
            rc = kLockLost;
        }
    } else {
        rc = runHolding(args, key, token, lost);
    }
    if (mutex.isHeld()) (void)mutex.release();
    return rc;
}

int runElect(Client& client, const ElectArgs& args) {
    installInterruptHandlers();
    if (args.listen) {
        std::atomic<bool> failed{false};
        auto handle = Election::observe(
            client, args.name,
            [&](const LeaderEvent& e) {
                if (args.json) {
                    std::printf(
                        "{\"has_leader\":%s,\"key\":%s,\"value\":%s,\"term\":%lld,"
                        "\"revision\":%lld}\n",
                        e.hasLeader ? "true" : "false", jsonString(e.key).c_str(),
                        jsonString(e.value).c_str(), static_cast<long long>(e.term),
                        static_cast<long long>(e.revision));
                } else if (e.hasLeader) {
                    std::printf("%s\n", e.value.c_str());
                } else {
                    std::printf("(no leader)\n");
                }
                std::fflush(stdout);
            },
            0,
            [&](const Error& e) {
                std::fprintf(stderr, "coordctl: observe ended: %s\n", e.describe().c_str());
                failed = true;
            });
        if (!handle) return 3;
        waitUntil(failed);
        return failed ? 3 : 0;
    }
    std::unique_ptr<Session> session;
    try {
        session = std::make_unique<Session>(client, SessionOptions{args.ttlSeconds, 0});
    } catch (const RecipeException& e) {
        return reportRecipe(e.error(), "session");
    }
    Election election(*session, args.name);
    std::atomic<bool> lost{false};
    election.onLost([&](const RecipeError&) { lost = true; });
    RecipeResult<Ok> won = fail(RecipeError{RecipeError::Kind::Canceled, "", {}});
    {
        CancelOnSignal cancel(election);
        won = election.campaign(args.value, deadlineFor(args.timeoutMs));
    }
    if (!won.ok()) return reportRecipe(won.error(), "campaign");
    if (args.json) {
        std::printf("{\"leader\":true,\"value\":%s,\"term\":%lld}\n",
                    jsonString(args.value).c_str(), static_cast<long long>(election.term()));
    } else {
        std::printf("%s\n", args.value.c_str());
    }
    std::fflush(stdout);
    waitUntil(lost);
    if (lost) {
        std::fprintf(stderr, "coordctl: leadership of %s lost\n", args.name.c_str());
        return kLockLost;
    }
    (void)election.resign();
    return 0;
}

int runQueuePush(Client& client, const std::string& name, const std::string& value) {
    Queue q(client, name);
    auto r = q.enqueue(value);
    if (!r.ok()) return reportRecipe(r.error(), "queue push");
    std::printf("%s\n", r->c_str());
    return 0;
}

int runQueuePop(Client& client, const std::string& name, int64_t timeoutMs) {
    installInterruptHandlers();
    Queue q(client, name);
    RecipeResult<KeyValue> item = fail(RecipeError{RecipeError::Kind::Canceled, "", {}});
    {
        CancelOnSignal cancel(q);
        item = q.dequeue(deadlineFor(timeoutMs));
    }
    if (!item.ok()) return reportRecipe(item.error(), "queue pop");
    std::fwrite(item->value.data(), 1, item->value.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
}

int runBarrier(Client& client, const std::string& verb, const std::string& name,
               int64_t timeoutMs) {
    installInterruptHandlers();
    Barrier b(client, name);
    RecipeResult<Ok> r = fail(RecipeError{RecipeError::Kind::Canceled, "", {}});
    if (verb == "hold") {
        r = b.hold();
    } else if (verb == "release") {
        r = b.release();
    } else {
        CancelOnSignal cancel(b);
        r = b.wait(deadlineFor(timeoutMs));
    }
    if (!r.ok()) return reportRecipe(r.error(), ("barrier " + verb).c_str());
    return 0;
}

}  // namespace coord::cli
