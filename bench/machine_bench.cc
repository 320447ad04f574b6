// coordbench machine: the floors a replicated write stands on, measured on this machine.
//
// A write crosses about a dozen thread wake-ups across the members (client loop → RPC thread
// → core thread → log writer → peer → …), two fdatasyncs in series or in parallel, and several
// loopback TCP messages (docs/performance.md, "What a write costs on this machine"). Each is
// measured here back to back and after a pause, because on a VM whose idle vCPUs halt a
// wake-up after a pause costs more. Nothing here involves coord's code: it is the calibration
// against which coord's latencies are read.
#include "bench/machine_bench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace coord::bench {

namespace {

using Clock = std::chrono::steady_clock;

double cpuMicros() {
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    return (static_cast<double>(r.ru_utime.tv_sec) + static_cast<double>(r.ru_stime.tv_sec)) * 1e6 +
           static_cast<double>(r.ru_utime.tv_usec) + static_cast<double>(r.ru_stime.tv_usec);
}

double quantile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// Runs `once` `rounds` times with `gapMs` of sleep before each and prints one JSON line: the
// latency of one call (p50, p99, in µs) and the process's CPU time per call (which, with a
// pause, includes the sleeping thread's own wake-up).
void measure(const std::string& label, int rounds, int gapMs, const std::function<void()>& once) {
    std::vector<double> us;
    us.reserve(static_cast<size_t>(rounds));
    double cpu = 0;
    for (int i = 0; i < rounds; ++i) {
        if (gapMs > 0) std::this_thread::sleep_for(std::chrono::milliseconds(gapMs));
        double c0 = cpuMicros();
        auto t0 = Clock::now();
        once();
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        cpu += cpuMicros() - c0;
    }
    std::printf(
        "{\"label\":\"machine/%s/gap%dms\",\"rounds\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,"
        "\"cpu_us_per_op\":%.1f}\n",
        label.c_str(), gapMs, rounds, quantile(us, 0.5), quantile(us, 0.99), cpu / rounds);
    std::fflush(stdout);
}

// Two threads handing a turn back and forth through a mutex and condition variable: one round
// trip is two wake-ups.
class PingPong {
  public:
    PingPong()
        : peer_([this] {
              std::unique_lock lock(mu_);
              for (;;) {
                  cv_.wait(lock, [this] { return turn_ == 1 || stop_; });
                  if (stop_) return;
                  turn_ = 0;
                  cv_.notify_all();
              }
          }) {}
    ~PingPong() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        peer_.join();
    }
    void roundTrip() {
        std::unique_lock lock(mu_);
        turn_ = 1;
        cv_.notify_all();
        cv_.wait(lock, [this] { return turn_ == 0; });
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    int turn_ = 0;
    bool stop_ = false;
    std::thread peer_;
};

// A connected loopback TCP pair with an echoing thread on one end.
class TcpEcho {
  public:
    TcpEcho() {
        int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
            ::listen(listener, 1) != 0 ||
            ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("loopback listener");
        }
        client_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (client_ < 0 || ::connect(client_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
            throw std::runtime_error("loopback connect");
        }
        server_ = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        ::close(listener);
        if (server_ < 0) throw std::runtime_error("loopback accept");
        int one = 1;
        ::setsockopt(client_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(server_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        echo_ = std::thread([this] {
            char buf[64];
            for (;;) {
                ssize_t n = ::read(server_, buf, sizeof buf);
                if (n <= 0 || ::write(server_, buf, static_cast<size_t>(n)) != n) return;
            }
        });
    }
    ~TcpEcho() {
        ::shutdown(client_, SHUT_RDWR);
        echo_.join();
        ::close(client_);
        ::close(server_);
    }
    void roundTrip() {
        char buf[64] = {};
        if (::write(client_, buf, sizeof buf) != static_cast<ssize_t>(sizeof buf)) {
            throw std::runtime_error("loopback write");
        }
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t n = ::read(client_, buf + got, sizeof buf - got);
            if (n <= 0) throw std::runtime_error("loopback read");
            got += static_cast<size_t>(n);
        }
    }

  private:
    int client_ = -1;
    int server_ = -1;
    std::thread echo_;
};

}  // namespace

int runMachine(const std::string& dir, int rounds) {
    const int paused = std::max(20, rounds / 25);  // rounds after a pause take gap × rounds
    {
        PingPong p;
        for (int gap : {0, 1, 10})
            measure("thread-wakeup-round-trip", gap ? paused : rounds, gap, [&] { p.roundTrip(); });
    }
    {
        TcpEcho t;
        for (int gap : {0, 10})
            measure("loopback-tcp-round-trip", gap ? paused : rounds, gap, [&] { t.roundTrip(); });
    }
    std::string path = (std::filesystem::path(dir) / "coordbench-fdatasync-XXXXXX").string();
    int fd = ::mkstemp(path.data());
    if (fd < 0) {
        std::fprintf(stderr, "coordbench machine: cannot create a file in %s\n", dir.c_str());
        return 1;
    }
    ::unlink(path.c_str());
    // A preallocated file written in place, as the Raft log's segments are: each fdatasync
    // carries one 4 KiB page and no change of size.
    constexpr size_t kPage = 4096;
    const size_t pages = 256;
    std::vector<char> page(kPage, 'x');
    bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(kPage * pages)) == 0;
    for (size_t i = 0; ok && i < pages; ++i)
        ok = ::pwrite(fd, page.data(), kPage, static_cast<off_t>(i * kPage)) ==
             static_cast<ssize_t>(kPage);
    ok = ok && ::fsync(fd) == 0;
    size_t next = 0;
    for (int gap : {0, 10}) {
        if (!ok) break;
        measure("pwrite-4k-fdatasync", gap ? paused : rounds / 5, gap, [&] {
            off_t at = static_cast<off_t>((next++ % pages) * kPage);
            ok = ok && ::pwrite(fd, page.data(), kPage, at) == static_cast<ssize_t>(kPage) &&
                 ::fdatasync(fd) == 0;
        });
    }
    ::close(fd);
    if (!ok) {
        std::fprintf(stderr, "coordbench machine: writing or syncing in %s failed\n", dir.c_str());
        return 1;
    }
    return 0;
}

}  // namespace coord::bench
