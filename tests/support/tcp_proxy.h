// A loopback TCP proxy for fault tests: it forwards every connection made to its port to a
// member, and can be told to lose a connection's traffic from the moment the client sends bytes
// containing a pattern — a reply lost after its request was applied, or a request held back and
// delivered late, after the client gave up on it.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace coord::test {

class TcpProxy {
  public:
    enum class Fault {
        None,
        // The chunk with the pattern reaches the member; nothing the member sends afterwards
        // reaches the client.
        DropReplies,
        // The chunk with the pattern and everything after it are held in the proxy until
        // deliverHeld().
        HoldRequests,
    };

    explicit TcpProxy(int targetPort) : target_(targetPort) {
        listen_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in addr = loopback(0);
        socklen_t len = sizeof addr;
        if (listen_ < 0 || bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            listen(listen_, 16) != 0 ||
            getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error(std::string("proxy listen: ") + std::strerror(errno));
        }
        port_ = ntohs(addr.sin_port);
        if (pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("proxy pipe");
        thread_ = std::thread([this] { run(); });
    }

    ~TcpProxy() {
        stop_ = true;
        poke();
        thread_.join();
        for (auto& c : conns_)
            c.closeBoth();
        close(listen_);
        close(wake_[0]);
        close(wake_[1]);
    }

    TcpProxy(const TcpProxy&) = delete;
    TcpProxy& operator=(const TcpProxy&) = delete;

    std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

    // Every connection, open or new, loses its traffic as `fault` says once the client sends
    // `pattern` on it.
    void arm(Fault fault, std::string pattern) {
        std::lock_guard lock(mu_);
        fault_ = fault;
        pattern_ = std::move(pattern);
    }

    // Whether some connection has started losing traffic.
    bool triggered() const { return triggered_.load(); }

    // Stops the fault. The connections that lost traffic are cut on the client's side (their
    // byte streams are broken); the client reconnects through the proxy. A connection that holds
    // requests keeps its side to the member open, with what it holds, until deliverHeld().
    void heal() {
        {
            std::lock_guard lock(mu_);
            fault_ = Fault::None;
            healing_ = true;
        }
        poke();
        waitFor([this] { return !healing_; });
    }

    // Writes the held requests to the member (whose answers go nowhere); returns once the
    // member has answered on every connection that held some, or after `timeout` (false).
    bool deliverHeld(std::chrono::milliseconds timeout) {
        {
            std::lock_guard lock(mu_);
            deliver_ = true;
        }
        poke();
        return waitFor(
            [this] {
                for (const auto& c : conns_)
                    if (c.delivered && !c.answeredAfterDelivery) return false;
                return !deliver_;
            },
            timeout);
    }

  private:
    struct Conn {
        int client = -1;
        int server = -1;
        std::string toServer, toClient;  // accepted but not yet written
        std::string tail;                // the client's last bytes, to match across chunks
        Fault losing = Fault::None;
        std::string held;
        bool delivered = false, answeredAfterDelivery = false;

        void closeBoth() {
            if (client >= 0) close(client);
            if (server >= 0) close(server);
            client = server = -1;
        }
    };

    static sockaddr_in loopback(int port) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(port));
        return a;
    }

    void poke() {
        char b = 1;
        (void)!write(wake_[1], &b, 1);
    }

    template <typename Pred>
    bool waitFor(Pred done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        std::unique_lock lock(mu_);
        return changed_.wait_for(lock, timeout, done);
    }

    void accept1() {
        int fd = accept4(listen_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in to = loopback(target_);
        if (up < 0 || connect(up, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
            close(fd);
            if (up >= 0) close(up);
            return;
        }
        fcntl(up, F_SETFL, fcntl(up, F_GETFL) | O_NONBLOCK);
        Conn c;
        c.client = fd;
        c.server = up;
        conns_.push_back(std::move(c));
    }

    // Writes what `out` holds to `fd` as far as the socket takes it; false when the peer is gone.
    static bool flush(int fd, std::string& out) {
        while (!out.empty()) {
            ssize_t n = send(fd, out.data(), out.size(), MSG_NOSIGNAL);
            if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
            out.erase(0, static_cast<size_t>(n));
        }
        return true;
    }

    // Reads what `fd` has; false at its end or on an error.
    static bool drain(int fd, std::string& into) {
        char buf[65536];
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                into.append(buf, static_cast<size_t>(n));
                continue;
            }
            if (n == 0) return false;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
    }

    void fromClient(Conn& c, std::string bytes) {
        if (c.losing == Fault::None && fault_ != Fault::None) {
            std::string window = c.tail + bytes;
            if (window.find(pattern_) != std::string::npos) {
                c.losing = fault_;
                triggered_ = true;
            }
            size_t keep = std::min(window.size(), pattern_.size());
            c.tail = window.substr(window.size() - keep);
        }
        if (c.losing == Fault::HoldRequests) {
            c.held += bytes;
        } else {
            c.toServer += bytes;
        }
    }

    void run() {
        while (!stop_) {
            // Only this thread changes conns_, so it reads it here without the lock.
            std::vector<pollfd> fds;
            fds.push_back({wake_[0], POLLIN, 0});
            fds.push_back({listen_, POLLIN, 0});
            for (auto& c : conns_) {
                if (c.client >= 0) {
                    fds.push_back({c.client,
                                   static_cast<short>(POLLIN | (c.toClient.empty() ? 0 : POLLOUT)),
                                   0});
                }
                if (c.server >= 0) {
                    fds.push_back({c.server,
                                   static_cast<short>(POLLIN | (c.toServer.empty() ? 0 : POLLOUT)),
                                   0});
                }
            }
            poll(fds.data(), fds.size(), 100);
            char sink[64];
            while (read(wake_[0], sink, sizeof sink) > 0) {
            }
            std::lock_guard lock(mu_);
            if (fds[1].revents & POLLIN) accept1();
            for (auto& c : conns_) {
                if (c.client >= 0) {
                    std::string in;
                    bool open = drain(c.client, in);
                    if (!in.empty()) fromClient(c, std::move(in));
                    if (!open || !flush(c.client, c.toClient)) {
                        close(c.client);
                        c.client = -1;
                    }
                }
                if (c.server >= 0) {
                    std::string in;
                    bool open = drain(c.server, in);
                    if (c.delivered && !in.empty()) c.answeredAfterDelivery = true;
                    if (c.losing == Fault::None && c.client >= 0) c.toClient += in;
                    if (c.client >= 0 && !flush(c.client, c.toClient)) {
                        close(c.client);
                        c.client = -1;
                    }
                    if (!open || !flush(c.server, c.toServer)) {
                        close(c.server);
                        c.server = -1;
                    }
                }
                // A connection whose client left is closed towards the member too, unless it
                // still holds requests to deliver.
                if (c.client < 0 && c.server >= 0 && c.losing != Fault::HoldRequests &&
                    c.toServer.empty() && !c.delivered) {
                    close(c.server);
                    c.server = -1;
                }
            }
            if (healing_) {
                for (auto& c : conns_) {
                    if (c.losing == Fault::None) continue;
                    if (c.client >= 0) close(c.client);
                    c.client = -1;
                    if (c.losing == Fault::DropReplies) c.closeBoth();
                }
                healing_ = false;
            }
            if (deliver_) {
                for (auto& c : conns_) {
                    if (c.losing != Fault::HoldRequests || c.held.empty()) continue;
                    c.toServer += c.held;
                    c.held.clear();
                    c.delivered = true;
                    if (c.server >= 0 && !flush(c.server, c.toServer)) c.closeBoth();
                }
                deliver_ = false;
            }
            conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                                        [](const Conn& c) { return c.client < 0 && c.server < 0; }),
                         conns_.end());
            changed_.notify_all();
        }
    }

    int target_;
    int port_ = 0;
    int listen_ = -1;
    int wake_[2] = {-1, -1};
    std::atomic<bool> stop_{false};
    std::atomic<bool> triggered_{false};
    std::thread thread_;

    std::mutex mu_;  // what follows; the proxy's thread holds it while it moves bytes
    std::condition_variable changed_;
    Fault fault_ = Fault::None;
    std::string pattern_;
    bool healing_ = false;
    bool deliver_ = false;
    std::vector<Conn> conns_;
};

}  // namespace coord::test
