// Real coordd processes for tests: free loopback ports, logs in a temporary directory, every
// process stopped by its PID.
#pragma once

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

#ifndef COORDD
#error "define COORDD as the path of the coordd binary"
#endif

namespace coord::test {

// True when a listening socket could bind 127.0.0.1:port right now.
inline bool portBindable(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
}

// A loopback port for a member to listen on. It is picked below the kernel's ephemeral range
// (ip_local_port_range): a port the kernel handed out for port 0 could be handed out again as
// the source port of some outgoing connection — the members' own, under a parallel test run —
// before the member binds it. Random, so concurrent test processes rarely pick the same one;
// never the same one twice in one process (a member not yet listening leaves its port
// bindable, and a joiner given that port would collide with it).
inline int freePort() {
    static std::mutex mu;
    static std::set<int> given;
    std::lock_guard lock(mu);
    auto fresh = [&](int port) { return given.insert(port).second; };
    int low = 32768;
    if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        if (std::fscanf(f, "%d", &low) != 1) low = 32768;
        std::fclose(f);
    }
    if (low > 12000) {
        static std::mt19937 rng(static_cast<unsigned>(getpid()) * 2654435761u ^
                                static_cast<unsigned>(time(nullptr)));
        std::uniform_int_distribution<int> pick(10000, low - 1);
        for (int attempt = 0; attempt < 200; ++attempt) {
            int port = pick(rng);
            if (given.count(port) == 0 && portBindable(port) && fresh(port)) return port;
        }
    }
    // Fallback: any port the kernel calls free.
    for (int attempt = 0; attempt < 1000; ++attempt) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        socklen_t len = sizeof addr;
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
        close(fd);
        if (fresh(ntohs(addr.sin_port))) return ntohs(addr.sin_port);
    }
    FAIL("no free loopback port");
    return 0;
}

// A TCP connection to 127.0.0.1:port (a blocking socket; the caller closes it), or -1.
inline int connectLoopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

inline pid_t spawn(const std::vector<std::string>& args, const std::string& logFile) {
    // Everything is prepared before the fork: the test process may have other threads (a
    // coord::Client's loop), so the child calls only async-signal-safe functions before exec.
    std::vector<char*> argv;
    for (const auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const char* logPath = logFile.c_str();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Die with the test process, even when it aborts (a failed sanitizer check): no member
        // outlives its test.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) _exit(127);
        int log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log >= 0) {
            dup2(log, STDOUT_FILENO);
            dup2(log, STDERR_FILENO);
        }
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

// A cluster of three real coordd processes (the binary at COORDD) on free loopback ports,
// stopped by PID (kill -9) when it goes away. More members can be added (join()) after
// `coordctl member add` / Client::memberAdd.
struct Cluster {
    coord::test::TempDir dir;
    std::vector<int> client, peer;
    std::vector<pid_t> pid;
    std::vector<bool> joined;            // started with --initial-cluster-state existing
    std::string initial, endpoints;      // of the first three members
    std::vector<std::string> extraArgs;  // appended to every member's command line

    int heartbeatMs = 20, electionMs = 200;
    // Shell commands run before member i starts (`ulimit -n 64`, say); the member is then
    // started by bash, which execs it (the PID stays the member's).
    std::map<int, std::string> before;

    explicit Cluster(std::vector<std::string> extra = {}, int heartbeat = 20, int election = 200)
        : extraArgs(std::move(extra)), heartbeatMs(heartbeat), electionMs(election) {
        for (int i = 0; i < 3; ++i) {
            allocate(false);
            initial += (i ? "," : "") + name(i) + "=" + peerAddress(i);
            endpoints += (i ? "," : "") + ep(i);
        }
        for (int i = 0; i < 3; ++i)
            start(i);
    }
    ~Cluster() {
        for (size_t i = 0; i < pid.size(); ++i)
            kill9(static_cast<int>(i));
    }
    // Ports for a member that will join the running cluster; start(i) starts it.
    int addJoiner() { return allocate(true); }
    std::string name(int i) const { return "n" + std::to_string(i + 1); }
    std::string peerAddress(int i) const { return "127.0.0.1:" + std::to_string(peer[i]); }
    void start(int i) {
        std::string cluster = initial;
        if (joined[i]) cluster += "," + name(i) + "=" + peerAddress(i);
        std::vector<std::string> args{COORDD,
                                      "--name",
                                      name(i),
                                      "--data-dir",
                                      dir.file(name(i) + ".coord"),
                                      "--listen-client-urls",
                                      ep(i),
                                      "--listen-peer-urls",
                                      peerAddress(i),
                                      "--initial-cluster",
                                      cluster,
                                      "--initial-cluster-state",
                                      joined[i] ? "existing" : "new",
                                      "--heartbeat-interval",
                                      std::to_string(heartbeatMs),
                                      "--election-timeout",
                                      std::to_string(electionMs)};
        args.insert(args.end(), extraArgs.begin(), extraArgs.end());
        if (auto it = before.find(i); it != before.end()) {
            std::string command = it->second + " && exec";
            for (const auto& a : args)
                command += " '" + a + "'";
            args = {"/bin/bash", "-c", command};
        }
        pid[i] = spawn(args, dir.file(name(i) + ".log"));
    }
    void kill9(int i) {
        if (pid[i] <= 0) return;
        kill(pid[i], SIGKILL);
        waitpid(pid[i], nullptr, 0);
        pid[i] = -1;
    }
    std::string ep(int i) const { return "127.0.0.1:" + std::to_string(client[i]); }
    // Waits (bounded) for member i to exit by itself; true when it did.
    bool waitExit(int i, int timeoutMs) {
        for (int waited = 0; pid[i] > 0 && waited < timeoutMs; waited += 10) {
            if (waitpid(pid[i], nullptr, WNOHANG) == pid[i]) {
                pid[i] = -1;
                return true;
            }
            usleep(10 * 1000);
        }
        return pid[i] <= 0;
    }

  private:
    int allocate(bool joiner) {
        client.push_back(freePort());
        peer.push_back(freePort());
        pid.push_back(-1);
        joined.push_back(joiner);
        return static_cast<int>(pid.size()) - 1;
    }
};

}  // namespace coord::test
