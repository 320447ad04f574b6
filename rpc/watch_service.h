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

#include "rpc/coord.capnp.h"
#include "rpc/node_driver.h"

namespace coord::rpc {

struct WatchLimits {
    // Events buffered per watcher before deliveries are refused (and later read from storage).
    size_t bufferedEvents = 4096;
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class WatchService final : public schema::Watch::Server {
  public:
    WatchService(NodeDriver& driver, uint64_t clusterId, WatchLimits limits = {})
        : driver_(driver), clusterId_(clusterId), limits_(limits) {}

  protected:
    kj::Promise<void> watch(WatchContext context) override;

  private:
    NodeDriver& driver_;
    uint64_t clusterId_;
    WatchLimits limits_;
};

class MaintenanceService final : public schema::Maintenance::Server {
  public:
    MaintenanceService(NodeDriver& driver, uint64_t clusterId)
        : driver_(driver), clusterId_(clusterId) {}

  protected:
    kj::Promise<void> status(StatusContext context) override;
    kj::Promise<void> snapshot(SnapshotContext context) override;
    kj::Promise<void> alarms(AlarmsContext context) override;

  public:
    // Snapshots exported at once by one member: each is a temporary file as large as the
    // store, held until its reader is dropped; one more is refused with "busy".
    static constexpr int kMaxSnapshots = 2;

  private:
    NodeDriver& driver_;
    uint64_t clusterId_;
    // Snapshots being exported or read (on the RPC thread only; shared with their readers).
    std::shared_ptr<int> snapshots_ = std::make_shared<int>(0);
};
#pragma GCC diagnostic pop

}  // namespace coord::rpc
