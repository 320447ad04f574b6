#include "rpc/peer_transport.h"

#include <chrono>
#include <cstring>
#include <string>

#include "common/log.h"
#include "rpc/codec.h"

namespace coord::rpc {

using boost::asio::ip::tcp;

namespace {

std::string describe(const tcp::endpoint& ep) {
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

struct PeerTransport::Outbound {
    raft::NodeId id;
    tcp::endpoint endpoint;
    tcp::socket socket;
    boost::asio::steady_timer retry;
    std::deque<std::string> queue;  // not yet written
    std::string inflight;           // frames being written (the buffer must outlive the write)
    bool connected = false;
    bool connecting = false;
    bool writing = false;
    bool retired = false;     // no longer a peer: handlers still in flight do nothing
    bool up = false;          // logged as connected (so losing it is logged once)
    uint64_t generation = 0;  // counts connections, so a stale handler knows it is stale
    char probe[64];           // the watch for the peer closing the connection reads into this
    int backoffMs;

    Outbound(boost::asio::io_context& io, raft::NodeId i, tcp::endpoint ep, int backoff)
        : id(i), endpoint(ep), socket(io), retry(io), backoffMs(backoff) {}
};

// One inbound connection: reads frames until the peer closes or sends something refused.
class PeerTransport::Session : public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket socket, PeerTransport& owner, std::optional<ConnectionBudget::Slot> slot)
        : socket_(std::move(socket)),
          owner_(owner),
          slot_(std::move(slot)),
          handshake_(socket_.get_executor()) {}

    void start() {
        if (owner_.config_.handshakeTimeoutMs > 0) {
            handshake_.expires_after(std::chrono::milliseconds(owner_.config_.handshakeTimeoutMs));
            handshake_.async_wait(
                [this, self = shared_from_this()](const boost::system::error_code& ec) {
                    if (ec || owner_.stopped_ || peer_ != 0 || !socket_.is_open()) return;
                    refuse("no valid message within the handshake deadline");
                });
        }
        readMore();
    }
    void close() {
        boost::system::error_code ignored;
        socket_.close(ignored);
        handshake_.cancel();  // its wait holds this session (and its budget slot)
    }

  private:
    // Reads whatever the socket has (up to 64 KiB at a time) and delivers every complete frame
    // in it before reading again: a burst of messages from a peer is stepped into Raft together
    // and persisted in one Ready (one fsync), not one Ready per message.
    void readMore() {
        size_t have = buffer_.size();
        buffer_.resize(have + kReadChunk);
        auto self = shared_from_this();
        socket_.async_read_some(boost::asio::buffer(buffer_.data() + have, kReadChunk),
                                [this, self, have](const boost::system::error_code& ec, size_t n) {
                                    buffer_.resize(have + n);
                                    if (owner_.stopped_) return;
                                    if (ec) {
                                        // The peer's process closed its connection to us (or
                                        // died): a hint for Raft, see Raft::peerUnreachable.
                                        if (peer_ != 0 && owner_.onPeerLost_) {
                                            owner_.onPeerLost_(peer_);
                                        }
                                        handshake_.cancel();
                                        return;
                                    }
                                    if (!deliverFrames()) return;
                                    readMore();
                                });
    }

    // Delivers the complete frames at the front of the buffer; false when the peer is refused.
    bool deliverFrames() {
        size_t pos = 0;
        for (;;) {
            size_t avail = buffer_.size() - pos;
            if (avail < 8) break;
            uint32_t last;
            std::memcpy(&last, buffer_.data() + pos, 4);
            uint64_t segments = uint64_t{last} + 1;
            if (segments > 512) return refuse("too many segments");
            size_t table = (segments / 2 + 1) * 8;
            if (avail < table) break;
            uint64_t words = 0;
            for (uint64_t i = 0; i < segments; ++i) {
                uint32_t size;
                std::memcpy(&size, buffer_.data() + pos + 4 + 4 * i, 4);
                words += size;
            }
            // The size is checked before the frame is buffered whole.
            if (words * 8 + table > owner_.config_.maxFrameBytes) return refuse("frame too large");
            size_t total = table + words * 8;
            if (avail < total) break;
            DecodeLimits limits;
            limits.traversalWords = owner_.config_.maxFrameBytes / 8 * 2;
            auto frame = decodePeerFrame(std::string_view(buffer_).substr(pos, total), limits);
            if (!frame.ok()) return refuse(frame.error().message.c_str());
            if (frame->second.to != owner_.config_.self)
                return refuse("addressed to another member");
            if (frame->first != owner_.config_.clusterId && !owner_.adopt(*frame)) {
                return refuse("from another cluster");
            }
            if (peer_ == 0) handshake_.cancel();  // a peer after all
            peer_ = frame->second.from;
            owner_.onMessage_(std::move(frame->second));
            pos += total;
        }
        buffer_.erase(0, pos);
        return true;
    }

    static constexpr size_t kReadChunk = 64 * 1024;

    bool refuse(const char* why) {
        owner_.refused_++;
        if (owner_.refusalLog_.due()) {
            boost::system::error_code ec;
            auto from = socket_.remote_endpoint(ec);
            COORD_LOG_WARN("refused a peer connection from %s: %s (%llu refused so far)",
                           ec ? "?" : describe(from).c_str(), why,
                           static_cast<unsigned long long>(owner_.refused_.load()));
        }
        close();
        return false;
    }

    tcp::socket socket_;
    PeerTransport& owner_;
    std::optional<ConnectionBudget::Slot> slot_;  // this connection's share of the budget
    std::string buffer_;
    raft::NodeId peer_ = 0;                // who sent the frames accepted so far
    boost::asio::steady_timer handshake_;  // see PeerTransportConfig::handshakeTimeoutMs
};

PeerTransport::PeerTransport(boost::asio::io_context& io, tcp::acceptor acceptor,
                             PeerTransportConfig config, OnMessage onMessage)
    : io_(io),
      acceptor_(std::move(acceptor)),
      acceptRetry_(io),
      config_(std::move(config)),
      onMessage_(std::move(onMessage)) {
    for (const auto& [id, ep] : config_.peers) {
        if (id == config_.self) continue;
        out_[id] = std::make_unique<Outbound>(io_, id, ep, config_.reconnectMinMs);
    }
}

PeerTransport::~PeerTransport() = default;

bool PeerTransport::adopt(const std::pair<uint64_t, raft::Message>& frame) {
    // A member joining an existing cluster learns the cluster's id from the first message a
    // member it was told about sends it (only a cluster that added this member sends it any).
    if (config_.clusterId != 0 || frame.first == 0) return false;
    auto it = out_.find(frame.second.from);
    if (it == out_.end() || it->second->retired) return false;
    config_.clusterId = frame.first;
    if (onClusterId_) onClusterId_(frame.first);
    return true;
}

void PeerTransport::setPeers(const std::map<raft::NodeId, tcp::endpoint>& peers) {
    for (auto it = out_.begin(); it != out_.end();) {
        auto found = peers.find(it->first);
        if (found == peers.end() || found->second != it->second->endpoint) {
            retire(std::move(it->second));
            it = out_.erase(it);
        } else {
            ++it;
        }
    }
    for (const auto& [id, ep] : peers) {
        if (id == config_.self || out_.count(id)) continue;
        out_[id] = std::make_unique<Outbound>(io_, id, ep, config_.reconnectMinMs);
    }
}

void PeerTransport::retire(std::unique_ptr<Outbound> peer) {
    // Handlers in flight hold a reference: the object lives on, closed, until the transport
    // goes (removals are rare and each costs a socket's worth of memory).
    peer->retired = true;
    boost::system::error_code ignored;
    peer->retry.cancel();
    peer->socket.close(ignored);
    dropped_ += peer->queue.size();
    peer->queue.clear();
    retired_.push_back(std::move(peer));
}

void PeerTransport::start() {
    boost::asio::post(io_, [this] { accept(); });
}

void PeerTransport::stop() {
    stopped_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    acceptRetry_.cancel();
    for (auto& [id, peer] : out_) {
        peer->retry.cancel();
        peer->socket.close(ignored);
        peer->queue.clear();
    }
    for (auto& weak : sessions_) {
        if (auto s = weak.lock()) s->close();
    }
}

void PeerTransport::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
        if (stopped_ || ec == boost::asio::error::operation_aborted) return;
        if (ec) {
            // Out of descriptors (EMFILE, ENFILE) or a connection that broke before it was
            // taken: the listener must go on, or the member would never hear from a peer that
            // reconnects. Retry shortly (the pending connection keeps the socket readable, so
            // at once would spin); log once a second.
            ++acceptFailures_;
            if (acceptLog_.due()) {
                COORD_LOG_WARN("accepting a peer connection failed (%llu so far): %s",
                               static_cast<unsigned long long>(acceptFailures_),
                               ec.message().c_str());
            }
            acceptRetry_.expires_after(std::chrono::milliseconds(10));
            acceptRetry_.async_wait([this](const boost::system::error_code& waited) {
                if (!waited && !stopped_) accept();
            });
            return;
        }
        std::optional<ConnectionBudget::Slot> slot;
        if (config_.budget) {
            slot = config_.budget->take(ConnectionBudget::Port::Peer);
            if (!slot) {
                boost::system::error_code ignored;
                socket.close(ignored);
                return accept();
            }
        }
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        auto session = std::make_shared<Session>(std::move(socket), *this, std::move(slot));
        // Forget sessions that ended, so the list stays as long as the live ones.
        std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) { return w.expired(); });
        sessions_.push_back(session);
        session->start();
        accept();
    });
}

void PeerTransport::send(const raft::Message& message) {
    if (stopped_) return;
    auto it = out_.find(message.to);
    if (it == out_.end()) return;  // not a known peer
    Outbound& peer = *it->second;
    if (peer.queue.size() >= config_.maxQueuedMessages) {
        dropped_++;
        return;
    }
    peer.queue.push_back(encodePeerFrame(config_.clusterId, message));
    if (peer.connected) {
        writeNext(peer);
    } else if (!peer.connecting) {
        connect(peer);
    }
}

void PeerTransport::connect(Outbound& peer) {
    peer.connecting = true;
    peer.socket.async_connect(peer.endpoint, [this, &peer](const boost::system::error_code& ec) {
        peer.connecting = false;
        if (stopped_ || peer.retired) return;
        // A peer that is not listening yet (members starting together) gets the queued
        // messages once it is: keep them (the queue is bounded) so an early vote is not lost.
        if (ec) return fail(peer, ec, true);
        boost::system::error_code ignored;
        peer.socket.set_option(tcp::no_delay(true), ignored);
        peer.connected = true;
        peer.backoffMs = config_.reconnectMinMs;
        if (!peer.up) {
            peer.up = true;
            COORD_LOG_INFO("connected to peer %016llx at %s",
                           static_cast<unsigned long long>(peer.id),
                           describe(peer.endpoint).c_str());
        }
        ++peer.generation;
        watchClose(peer);
        writeNext(peer);
    });
}

void PeerTransport::watchClose(Outbound& peer) {
    // Peers never write on a connection they accepted, so a read completes only when the
    // other side closed it or died. Reconnect at once, keeping the queue: otherwise the next
    // message would be written into a dead connection and lost (the write itself succeeds).
    uint64_t generation = peer.generation;
    peer.socket.async_read_some(
        boost::asio::buffer(peer.probe),
        [this, &peer, generation](const boost::system::error_code& ec, size_t) {
            if (stopped_ || peer.retired || generation != peer.generation || !peer.connected) {
                return;
            }
            if (!ec) return watchClose(peer);  // unexpected bytes: ignore them
            fail(peer, ec, true);
        });
}

void PeerTransport::writeNext(Outbound& peer) {
    if (peer.writing || peer.queue.empty() || !peer.connected) return;
    // Every message is sent at most once: one whose write began may have reached the peer, and
    // a duplicate of a forwarded proposal would be appended (and applied) twice. So it leaves
    // the queue when its write begins, whatever becomes of its connection.
    // Frames queued while the previous write was in progress go out together, in one write
    // (frames are self-delimiting), up to 1 MiB unless a single frame is larger.
    constexpr size_t kBatchBytes = size_t{1} << 20;
    peer.writing = true;
    peer.inflight = std::move(peer.queue.front());
    peer.queue.pop_front();
    while (!peer.queue.empty() && peer.inflight.size() + peer.queue.front().size() <= kBatchBytes) {
        peer.inflight += peer.queue.front();
        peer.queue.pop_front();
    }
    uint64_t generation = peer.generation;
    boost::asio::async_write(
        peer.socket, boost::asio::buffer(peer.inflight),
        [this, &peer, generation](const boost::system::error_code& ec, size_t) {
            peer.writing = false;
            if (stopped_ || peer.retired) return;
            // A write on a connection that has since been replaced: the new one goes on.
            if (generation != peer.generation) return writeNext(peer);
            if (ec) return fail(peer, ec);
            writeNext(peer);
        });
}

void PeerTransport::fail(Outbound& peer, const boost::system::error_code& why, bool keepQueue) {
    if (peer.up) {
        peer.up = false;
        COORD_LOG_WARN("lost the connection to peer %016llx at %s: %s; reconnecting",
                       static_cast<unsigned long long>(peer.id), describe(peer.endpoint).c_str(),
                       why.message().c_str());
    } else {
        COORD_LOG_DEBUG("cannot reach peer %016llx at %s: %s; next try in %d ms",
                        static_cast<unsigned long long>(peer.id), describe(peer.endpoint).c_str(),
                        why.message().c_str(), peer.backoffMs);
    }
    boost::system::error_code ignored;
    peer.socket.close(ignored);
    peer.connected = false;
    ++peer.generation;  // handlers of this connection still in flight are now stale
    // Messages queued for a connection that died are stale by the time it is back: Raft
    // resends what matters.
    if (!keepQueue) {
        dropped_ += peer.queue.size();
        peer.queue.clear();
    }
    peer.retry.expires_after(std::chrono::milliseconds(peer.backoffMs));
    peer.backoffMs = std::min(peer.backoffMs * 2, config_.reconnectMaxMs);
    peer.retry.async_wait([this, &peer](const boost::system::error_code& ec) {
        if (ec || stopped_ || peer.retired || peer.connected || peer.connecting) return;
        connect(peer);
    });
}

}  // namespace coord::rpc
