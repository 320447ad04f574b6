// PeerTransport: Raft messages between members over TCP, one Cap'n Proto message per frame
// (the Cap'n Proto segment table is the framing), on the core thread's io_context.
//
// Outbound: one connection per peer, opened on demand, reconnected with exponential backoff;
// a bounded queue per peer drops messages when full (Raft retransmits what matters).
// Inbound: every frame is checked before it is decoded — segment count and total size against
// limits, then the codec's structural checks — and must carry this cluster's id and name this
// member; anything else is refused and the connection closed.
//
// Threading: all methods on the io_context's thread (the core thread).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>

#include "common/log.h"
#include "rpc/asio.h"
#include "rpc/connection_budget.h"
#include "rpc/node_driver.h"

namespace coord::rpc {

struct PeerTransportConfig {
    raft::NodeId self = 0;
    uint64_t clusterId = 0;
    std::map<raft::NodeId, boost::asio::ip::tcp::endpoint> peers;
    size_t maxQueuedMessages = 4096;
    size_t maxFrameBytes = size_t{64} << 20;
    int reconnectMinMs = 20;
    int reconnectMaxMs = 2000;
    // Shared with the client port: inbound peer connections beyond it are closed at once.
    ConnectionBudget* budget = nullptr;
    // An inbound connection that has not delivered a valid frame this long after it was
    // accepted is closed (a peer sends its first message as soon as it connects), so idle
    // strangers cannot hold the places the budget keeps for peers. 0: no deadline.
    int handshakeTimeoutMs = 10000;
};

class PeerTransport final : public Transport {
  public:
    using OnMessage = std::function<void(raft::Message)>;
    // `acceptor` is already bound and listening.
    PeerTransport(boost::asio::io_context& io, boost::asio::ip::tcp::acceptor acceptor,
                  PeerTransportConfig config, OnMessage onMessage);
    ~PeerTransport() override;

    void start();
    void stop();
    void send(const raft::Message& message) override;

    // Replaces the peer address book (after a membership change); self is ignored.
    void setPeers(const std::map<raft::NodeId, boost::asio::ip::tcp::endpoint>& peers);
    // With clusterId 0 (a member joining an existing cluster), the id is adopted from the first
    // message a known peer sends; `f` is told (core thread). Set before start().
    void onClusterId(std::function<void(uint64_t)> f) { onClusterId_ = std::move(f); }
    uint64_t clusterId() const { return config_.clusterId; }
    // Told (core thread) when a peer's connection to this member closes. Set before start().
    void onPeerLost(std::function<void(raft::NodeId)> f) { onPeerLost_ = std::move(f); }

    uint64_t refusedFrames() const { return refused_.load(); }
    uint64_t droppedMessages() const { return dropped_.load(); }

  private:
    struct Outbound;
    class Session;
    void accept();
    void connect(Outbound& peer);
    void writeNext(Outbound& peer);
    void watchClose(Outbound& peer);
    void fail(Outbound& peer, const boost::system::error_code& ec, bool keepQueue = false);
    bool adopt(const std::pair<uint64_t, raft::Message>& frame);
    void retire(std::unique_ptr<Outbound> peer);

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer acceptRetry_;  // after a failed accept (out of descriptors)
    uint64_t acceptFailures_ = 0;
    log::Throttle acceptLog_;
    PeerTransportConfig config_;
    OnMessage onMessage_;
    std::map<raft::NodeId, std::unique_ptr<Outbound>> out_;
    std::vector<std::unique_ptr<Outbound>> retired_;
    std::function<void(uint64_t)> onClusterId_;
    std::function<void(raft::NodeId)> onPeerLost_;
    std::vector<std::weak_ptr<Session>> sessions_;
    bool stopped_ = false;
    std::atomic<uint64_t> refused_{0};
    log::Throttle refusalLog_;  // refused peers are logged at most once a second
    std::atomic<uint64_t> dropped_{0};
};

}  // namespace coord::rpc
