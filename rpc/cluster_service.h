// ClusterService: the Cluster capability — member list (linearizable or local), membership changes
// and leadership transfer (made by the leader; other members answer notLeader so the client
// tries the next endpoint). Runs on the KJ thread; the work happens on the core thread.
#pragma once

#include <capnp/capability.h>

#include "rpc/coord.capnp.h"
#include "rpc/node_driver.h"

namespace coord::rpc {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class ClusterService final : public schema::Cluster::Server {
  public:
    ClusterService(NodeDriver& driver, uint64_t clusterId)
        : driver_(driver), clusterId_(clusterId) {}

  protected:
    kj::Promise<void> memberList(MemberListContext context) override;
    kj::Promise<void> memberAdd(MemberAddContext context) override;
    kj::Promise<void> memberRemove(MemberRemoveContext context) override;
    kj::Promise<void> memberPromote(MemberPromoteContext context) override;
    kj::Promise<void> moveLeader(MoveLeaderContext context) override;

  private:
    NodeDriver& driver_;
    uint64_t clusterId_;
};
#pragma GCC diagnostic pop

void toCapnp(const MemberView& in, schema::Member::Builder out);

}  // namespace coord::rpc
