#include "cli/recipe_verbs.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
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
    pid_t child = fork();
    if (child < 0) {
        std::perror("coordctl: fork");
        return 1;
    }
    if (child == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        setenv("COORD_LOCK_KEY", key.c_str(), 1);
        setenv("COORD_FENCING_TOKEN", std::to_string(token).c_str(), 1);
        std::vector<char*> argv;
        for (const auto& a : args.command)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        std::fprintf(stderr, "coordctl: cannot run %s\n", argv[0]);
        _exit(127);
    }
    setpgid(child, child);  // also here: no race with the first kill
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
