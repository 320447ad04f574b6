// Durability under kill -9: a child process applies batches and reports each one once apply()
// returned; the parent kills it at random points and checks, after every reopen, that every
// acknowledged batch is there, that no batch is half applied, and that revisions continue.
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "kv/store.h"
#include "tests/kv/helpers.h"
#include "tests/support/temp_dir.h"

namespace {

constexpr int kRequests = 5;  // per batch, as in crash_child.cc

struct Child {
    pid_t pid = -1;
    int out = -1;
};

Child spawnChild(const std::string& dataFile) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(COORD_CRASH_CHILD, COORD_CRASH_CHILD, dataFile.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    close(fds[1]);
    return Child{pid, fds[0]};
}

// Reads acknowledged batch numbers until `acks` more arrived or the deadline passed; returns
// the highest acknowledged batch, or -1 for none.
long long readAcks(int fd, int acks, std::string& buffer, long long highest) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    int seen = 0;
    while (seen < acks && std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0) break;
        buffer.append(chunk, static_cast<size_t>(n));
        size_t nl;
        while ((nl = buffer.find('\n')) != std::string::npos) {
            highest = std::stoll(buffer.substr(0, nl));
            buffer.erase(0, nl + 1);
            ++seen;
        }
    }
    return highest;
}

}  // namespace

TEST_CASE("acknowledged batches survive kill -9 at random points, never half applied",
          "[kv][crash]") {
    coord::test::TempDir dir;
    const std::string file = dir.file("data.mdb");
    std::mt19937 rng(Catch::rngSeed());
    long long acked = -1;     // highest batch ever acknowledged
    long long totalLost = 0;  // batches applied whose acknowledgement the kill cut off
    for (int round = 0; round < 25; ++round) {
        CAPTURE(round);
        Child child = spawnChild(file);
        std::string buffer;
        int wantAcks = std::uniform_int_distribution<int>(0, 12)(rng);
        acked = readAcks(child.out, wantAcks, buffer, acked);
        // Let it run a little past the last ack so the kill lands mid-batch as often as not.
        std::this_thread::sleep_for(
            std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
        REQUIRE(kill(child.pid, SIGKILL) == 0);
        int status = 0;
        REQUIRE(waitpid(child.pid, &status, 0) == child.pid);
        // Acks written before the kill may still sit in the pipe: they count too.
        acked = readAcks(child.out, 1 << 30, buffer, acked);
        close(child.out);
        CHECK(WIFSIGNALED(status));

        coord::kv::Options options;
        coord::kv::Store store(file, options);
        uint64_t applied = store.appliedIndex();
        REQUIRE(applied % kRequests == 0);  // nothing half-applied
        long long completed = static_cast<long long>(applied / kRequests);
        REQUIRE(completed >= acked + 1);  // every acknowledged batch is there
        totalLost += completed - (acked + 1);
        CHECK(store.currentRevision() == 1 + completed * kRequests);
        auto all = store.range(coord::kv::test::prefixOf("b/"));
        REQUIRE(all.ok());
        CHECK(all->count == completed * (kRequests - 1));
        if (completed > 0) {
            CHECK(store.get("counter")->value == std::to_string(completed - 1));
            char key[64];
            std::snprintf(key, sizeof key, "b/%08lld/%d", completed - 1, kRequests - 2);
            auto last = store.get(key);
            REQUIRE(last);
            CHECK(last->value == "value-" + std::to_string(completed - 1));
            CHECK(last->modRevision == 1 + (completed - 1) * kRequests + kRequests - 1);
        }
    }
    CHECK(acked > 0);
    std::printf("crash test: %d kills, %lld batches acknowledged, %lld killed unacknowledged\n", 25,
                acked + 1, totalLost);
}
