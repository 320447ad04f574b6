// Real coordd processes for tests: free loopback ports, logs in a temporary directory, every
// process stopped by its PID.
#pragma once

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

#ifndef COORDD
#error "define COORDD as the path of the coordd binary"
#endif

namespace coord::test {

inline int freePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
}

inline pid_t spawn(const std::vector<std::string>& args, const std::string& logFile) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Die with the test process, even when it aborts (a failed sanitizer check): no member
        // outlives its test.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) _exit(127);
        FILE* log = std::fopen(logFile.c_str(), "a");
        if (log) {
            dup2(fileno(log), STDOUT_FILENO);
            dup2(fileno(log), STDERR_FILENO);
        }
        std::vector<char*> argv;
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

// A cluster of `size` real coordd processes (the binary at COORDD) on free loopback ports,
// stopped by PID (kill -9) when it goes away.
struct Cluster {
    coord::test::TempDir dir;
    std::array<int, 3> client{}, peer{};
    std::array<pid_t, 3> pid{-1, -1, -1};
    std::string initial, endpoints;
    std::vector<std::string> extraArgs;  // appended to every member's command line

    explicit Cluster(std::vector<std::string> extra = {}) : extraArgs(std::move(extra)) {
        for (int i = 0; i < 3; ++i) {
            client[i] = freePort();
            peer[i] = freePort();
            initial += (i ? "," : "") + std::string("n") + std::to_string(i + 1) +
                       "=127.0.0.1:" + std::to_string(peer[i]);
            endpoints += (i ? "," : "") + std::string("127.0.0.1:") + std::to_string(client[i]);
        }
        for (int i = 0; i < 3; ++i)
            start(i);
    }
    ~Cluster() {
        for (int i = 0; i < 3; ++i)
            kill9(i);
    }
    void start(int i) {
        std::string name = "n" + std::to_string(i + 1);
        std::vector<std::string> args{COORDD,
                                      "--name",
                                      name,
                                      "--data-dir",
                                      dir.file(name + ".coord"),
                                      "--listen-client-urls",
                                      "127.0.0.1:" + std::to_string(client[i]),
                                      "--listen-peer-urls",
                                      "127.0.0.1:" + std::to_string(peer[i]),
                                      "--initial-cluster",
                                      initial,
                                      "--heartbeat-interval",
                                      "20",
                                      "--election-timeout",
                                      "200"};
        args.insert(args.end(), extraArgs.begin(), extraArgs.end());
        pid[i] = spawn(args, dir.file(name + ".log"));
    }
    void kill9(int i) {
        if (pid[i] <= 0) return;
        kill(pid[i], SIGKILL);
        waitpid(pid[i], nullptr, 0);
        pid[i] = -1;
    }
    std::string ep(int i) const { return "127.0.0.1:" + std::to_string(client[i]); }
};

}  // namespace coord::test
