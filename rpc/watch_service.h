// WatchService: the client-facing Watch capability. Each watch is a kv::WatchSink registered in
// the member's WatchHub (called on the core thread, under the hub's lock) that queues events in
// a bounded buffer, and a pump on the KJ thread that forwards the buffer to the client's
// WatchSink capability with Cap'n Proto streaming (`-> stream`) for flow control.
//
// A client slower than the writes fills the buffer; the hub's next delivery is then refused and
// the watcher falls back to catching up from storage once the pump has drained the buffer, so a
// slow watcher costs bounded memory and still sees every event exactly once, in order.
//
// The watch lives as long as the client holds its WatchHandle: dropping the handle, or losing
// the connection, cancels it in the hub.
#pragma once

#include <capnp/capability.h>
#include <kj/async.h>

#include <atomic>
#include <memory>

#include "rpc/coord.capnp.h"
#include "rpc/node_driver.h"

namespace coord::rpc {

// A WatchService serves one client connection (coordd makes one per connection), so these
// bound what one connection can make a member hold.
struct WatchLimits {
    // Events buffered per watcher before deliveries are refused (and later read from storage).
    size_t bufferedEvents = 4096;
    // Bytes of events (keys and values) buffered for all the watchers of the service before
    // deliveries are refused. A watcher with nothing buffered still takes one revision, so a
    // watcher always makes progress.
    size_t bufferedBytes = size_t{64} << 20;
    // Watches open at once; one more is refused with TooManyWatches.
    size_t maxWatches = 10000;
};

// What the watchers of one WatchService hold together (shared with their buffers, which the
// core thread fills).
struct WatchPool {
    explicit WatchPool(WatchLimits l) : limits(l) {}
    const WatchLimits limits;
    std::atomic<size_t> bytes{0};      // buffered, or taken by a pump and not sent yet
    std::atomic<size_t> peakBytes{0};  // the most `bytes` has been
    std::atomic<bool> refused{false};  // a delivery was refused room since the last kick
    std::atomic<size_t> watches{0};    // open (changed on the KJ thread only)

    void add(size_t n) {
        size_t now = bytes += n;
        size_t peak = peakBytes.load();
        while (now > peak && !peakBytes.compare_exchange_weak(peak, now)) {
        }
    }
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class WatchService final : public schema::Watch::Server {
  public:
    WatchService(NodeDriver& driver, uint64_t clusterId, std::shared_ptr<WatchPool> pool)
        : driver_(driver), clusterId_(clusterId), pool_(std::move(pool)) {}

  protected:
    kj::Promise<void> watch(WatchContext context) override;

  private:
    NodeDriver& driver_;
    uint64_t clusterId_;
    std::shared_ptr<WatchPool> pool_;
};

class MaintenanceService final : public schema::Maintenance::Server {
  public:
    // `snapshots`: the member's count of snapshots being exported or read, shared by the
    // services of all its connections.
    MaintenanceService(NodeDriver& driver, uint64_t clusterId,
                       std::shared_ptr<int> snapshots = std::make_shared<int>(0))
        : driver_(driver), clusterId_(clusterId), snapshots_(std::move(snapshots)) {}

  protected:
    kj::Promise<void> status(StatusContext context) override;
    kj::Promise<void> snapshot(SnapshotContext context) override;
    kj::Promise<void> alarms(AlarmsContext context) override;
    kj::Promise<void> hashKV(HashKVContext context) override;

  public:
    // Snapshots exported at once by one member: each is a temporary file as large as the
    // store, held until its reader is dropped; one more is refused with "busy".
    static constexpr int kMaxSnapshots = 2;

  private:
    NodeDriver& driver_;
    uint64_t clusterId_;
    // Snapshots being exported or read (on the RPC thread only; shared with their readers).
    std::shared_ptr<int> snapshots_;
};
#pragma GCC diagnostic pop

}  // namespace coord::rpc
