// KvService: the client-facing KV capability (Cap'n Proto RPC), served on a KJ event loop
// thread. Serializable reads are answered from the member's store on the RPC thread; writes and
// linearizable reads hop to the core thread (NodeDriver) and come back through cross-thread
// fulfillers. Store outcomes (compacted, lease not found, ...) are typed results; a member that
// cannot answer says why (Unavailable) so the client can retry elsewhere.
#pragma once

#include <capnp/capability.h>

#include "rpc/cluster_service.h"
#include "rpc/coord.capnp.h"
#include "rpc/node_driver.h"
#include "rpc/watch_service.h"

namespace coord::rpc {

// Fills the header every response carries: cluster, member, store revision, Raft term.
void fillHeader(schema::ResponseHeader::Builder header, NodeDriver& driver, uint64_t clusterId);
schema::Unavailable toSchema(Unavailable u);

// Cap'n Proto's generated Server classes are destroyed through kj::Own, which knows the
// dynamic type; their destructor is not virtual.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class KvService final : public schema::KV::Server {
  public:
    KvService(NodeDriver& driver, uint64_t clusterId) : driver_(driver), clusterId_(clusterId) {}

  protected:
    kj::Promise<void> range(RangeContext context) override;
    kj::Promise<void> write(WriteContext context) override;

  private:
    NodeDriver& driver_;
    uint64_t clusterId_;
};

class LeaseService final : public schema::Lease::Server {
  public:
    LeaseService(NodeDriver& driver, uint64_t clusterId) : driver_(driver), clusterId_(clusterId) {}

  protected:
    kj::Promise<void> keepAlive(KeepAliveContext context) override;
    kj::Promise<void> timeToLive(TimeToLiveContext context) override;
    kj::Promise<void> list(ListContext context) override;

  private:
    NodeDriver& driver_;
    uint64_t clusterId_;
};

// The bootstrap capability: hands out the KV, Lease, Watch and Maintenance capabilities of
// this member. coordd makes one per client connection (rpc::ClientServer), each with a watch
// pool of its own, so the watch limits apply per connection; `snapshots` is the member-wide
// count behind MaintenanceService::kMaxSnapshots, shared by every connection's service.
class CoordService final : public schema::Coord::Server {
  public:
    CoordService(NodeDriver& driver, uint64_t clusterId,
                 std::shared_ptr<WatchPool> watches = std::make_shared<WatchPool>(WatchLimits{}),
                 std::shared_ptr<int> snapshots = std::make_shared<int>(0))
        : kv_(kj::heap<KvService>(driver, clusterId)),
          lease_(kj::heap<LeaseService>(driver, clusterId)),
          watch_(kj::heap<WatchService>(driver, clusterId, std::move(watches))),
          maintenance_(kj::heap<MaintenanceService>(driver, clusterId, std::move(snapshots))),
          cluster_(kj::heap<ClusterService>(driver, clusterId)) {}

  protected:
    kj::Promise<void> kv(KvContext context) override {
        context.getResults().setKv(kv_);
        return kj::READY_NOW;
    }
    kj::Promise<void> lease(LeaseContext context) override {
        context.getResults().setLease(lease_);
        return kj::READY_NOW;
    }

    kj::Promise<void> watch(WatchContext context) override {
        context.getResults().setWatch(watch_);
        return kj::READY_NOW;
    }
    kj::Promise<void> maintenance(MaintenanceContext context) override {
        context.getResults().setMaintenance(maintenance_);
        return kj::READY_NOW;
    }
    kj::Promise<void> cluster(ClusterContext context) override {
        context.getResults().setCluster(cluster_);
        return kj::READY_NOW;
    }

  private:
    schema::KV::Client kv_;
    schema::Lease::Client lease_;
    schema::Watch::Client watch_;
    schema::Maintenance::Client maintenance_;
    schema::Cluster::Client cluster_;
};
#pragma GCC diagnostic pop

}  // namespace coord::rpc
