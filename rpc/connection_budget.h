// ConnectionBudget: how many connections a member accepts at once, on its client and peer ports
// together, so that a flood of connections cannot take the file descriptors the member needs
// for itself (a new log segment, a snapshot file, its own connections to peers): a log segment
// that cannot be opened stops the member.
//
// The limit is the process's descriptor limit less a reserve; a connection beyond it is closed
// as soon as it is accepted (so it does not wait in the listen queue), and the refusals are
// counted and logged once a second. The last few places are for peers only, so that a flood of
// client connections cannot keep a member from taking back a peer that reconnects (and with it,
// its quorum). Thread-safe: the client port is served on the RPC thread,
// the peer port on the core thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include "common/log.h"

namespace coord::rpc {

class ConnectionBudget {
  public:
    // Client connections may use `limit` less `peerReserve` places; peers, all of them.
    explicit ConnectionBudget(size_t limit, size_t peerReserve = 0)
        : limit_(limit), clientLimit_(limit > peerReserve ? limit - peerReserve : 0) {}

    // The places kept for peers out of `limit`: 16 (enough for the inbound connections of a
    // large cluster), at most a quarter of the limit.
    static size_t peerReserveFor(size_t limit) { return std::min<size_t>(16, limit / 4); }

    // The limit for a process that may hold `descriptors` file descriptors: a reserve of an
    // eighth, and at least 32, is kept for the member's own files and connections.
    static size_t limitFor(uint64_t descriptors);

    // Raises the process's soft descriptor limit to its hard limit (as Go programs such as
    // etcd do), and returns the soft limit in force.
    static uint64_t raiseDescriptorLimit();

    // One accepted connection's share; released when it goes.
    class Slot {
      public:
        Slot(Slot&& other) noexcept : budget_(other.budget_) { other.budget_ = nullptr; }
        Slot& operator=(Slot&& other) noexcept {
            if (this != &other) {
                release();
                budget_ = other.budget_;
                other.budget_ = nullptr;
            }
            return *this;
        }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;
        ~Slot() { release(); }

      private:
        friend class ConnectionBudget;
        explicit Slot(ConnectionBudget* budget) : budget_(budget) {}
        void release() {
            if (budget_) budget_->open_.fetch_sub(1);
            budget_ = nullptr;
        }
        ConnectionBudget* budget_;
    };

    enum class Port { Client, Peer };
    // A slot, or nothing when `limit` connections are open (the refusal is then counted and,
    // at most once a second for each port, logged).
    std::optional<Slot> take(Port port);

    size_t open() const { return open_.load(); }
    size_t limit() const { return limit_; }
    size_t clientLimit() const { return clientLimit_; }
    uint64_t refused() const { return refused_.load(); }

  private:
    const size_t limit_;
    const size_t clientLimit_;
    std::atomic<size_t> open_{0};
    std::atomic<uint64_t> refused_{0};
    log::Throttle refusalLog_[2];  // client, peer
};

// Serves client connections, each with a bootstrap capability of its own (made by `bootstrap`
// when the connection is accepted), so that per-connection state such as the watches it holds
// is counted and bounded per connection.
class ClientServer final : private kj::TaskSet::ErrorHandler {
  public:
    using Bootstrap = std::function<capnp::Capability::Client()>;
    explicit ClientServer(Bootstrap bootstrap) : bootstrap_(std::move(bootstrap)), tasks_(*this) {}

    // Serves `stream` until the client disconnects (or this server goes).
    void accept(kj::Own<kj::AsyncIoStream> stream);
    size_t connections() const { return connections_; }

  private:
    void taskFailed(kj::Exception&&) override {}  // a connection's end is no error of ours

    Bootstrap bootstrap_;
    size_t connections_ = 0;
    kj::TaskSet tasks_;  // last: its connections go first
};

// Accepts client connections from `listener` for `server` while `budget` has room (a connection
// beyond it is closed at once), each read through a BufferedStream, until the promise is
// dropped. A failed accept (no descriptors left, a connection reset while queued) is logged once
// a second and listening goes on after 10 ms.
kj::Promise<void> acceptClients(kj::ConnectionReceiver& listener, ClientServer& server,
                                kj::Timer& timer, ConnectionBudget& budget);

}  // namespace coord::rpc
