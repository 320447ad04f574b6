#include "rpc/cluster_service.h"

#include "rpc/codec.h"
#include "rpc/handoff.h"
#include "rpc/kv_service.h"
#include "rpc/placed_read.h"

namespace coord::rpc {

namespace s = schema;

void toCapnp(const MemberView& in, s::Member::Builder out) {
    out.setId(in.info.id);
    out.setName(in.info.name);
    out.setPeerUrl(in.info.peerUrl);
    out.setClientUrl(in.info.clientUrl);
    out.setIsLearner(in.learner);
}

namespace {

// Any builder with a members list (list results, change results).
template <typename Builder>
void fillMembers(Builder builder, const std::vector<MemberView>& members) {
    auto out = builder.initMembers(static_cast<unsigned>(members.size()));
    for (unsigned i = 0; i < members.size(); ++i)
        toCapnp(members[i], out[i]);
}

// Answers a membership change or transfer: the membership after it, a typed refusal, or why
// this member could not do it.
template <typename T>
void answer(s::ClusterResult::Builder result, NodeDriver& driver, uint64_t clusterId,
            const Result<kv::KvResult<T>, Unavailable>& outcome) {
    fillHeader(result.initHeader(), driver, clusterId);
    if (!outcome.ok()) {
        result.setUnavailable(toSchema(outcome.error()));
        return;
    }
    if (!outcome.value().ok()) {
        toCapnp(outcome.value().error(), result.initError());
        return;
    }
    fillMembers(result, driver.members());
}

template <typename Context>
kj::Promise<void> change(NodeDriver& driver, uint64_t clusterId, MemberOp op, kv::MemberInfo member,
                         Context context) {
    auto handoff = makeHandoff<MembershipOutcome>();
    driver.changeMembership(op, std::move(member), handoff.send);
    return handoff.promise.then(
        [&driver, clusterId, context](Slot<MembershipOutcome> slot) mutable {
            answer(context.getResults().initResult(), driver, clusterId, *slot.value);
        });
}

kv::MemberInfo byId(uint64_t id) {
    kv::MemberInfo m;
    m.id = id;
    return m;
}

}  // namespace

kj::Promise<void> ClusterService::memberList(MemberListContext context) {
    // The view is refreshed when a change applies, so once the member applied up to the read
    // index, the view holds every change committed before the call.
    NodeDriver& driver = driver_;
    using List = std::vector<MemberView>;
    return appliedRead<List>(driver_, context.getParams().getLinearizable(),
                             [&driver] { return driver.members(); })
        .then([this, context](Slot<Result<List, Unavailable>> slot) mutable {
            auto results = context.getResults();
            fillHeader(results.initHeader(), driver_, clusterId_);
            if (!slot.value->ok()) {
                results.setUnavailable(toSchema(slot.value->error()));
                return;
            }
            fillMembers(results, slot.value->value());
        });
}

kj::Promise<void> ClusterService::memberAdd(MemberAddContext context) {
    auto params = context.getParams();
    kv::MemberInfo m;
    m.name = params.getName();
    m.peerUrl = params.getPeerUrl();
    m.id = memberIdFromName(m.name);
    auto op = params.getLearner() ? MemberOp::AddLearner : MemberOp::AddVoter;
    return change(driver_, clusterId_, op, std::move(m), context);
}

kj::Promise<void> ClusterService::memberRemove(MemberRemoveContext context) {
    return change(driver_, clusterId_, MemberOp::Remove, byId(context.getParams().getId()),
                  context);
}

kj::Promise<void> ClusterService::memberPromote(MemberPromoteContext context) {
    return change(driver_, clusterId_, MemberOp::Promote, byId(context.getParams().getId()),
                  context);
}

kj::Promise<void> ClusterService::moveLeader(MoveLeaderContext context) {
    using Outcome = Result<kv::KvResult<Ok>, Unavailable>;
    auto handoff = makeHandoff<Outcome>();
    driver_.transferLeadership(context.getParams().getTarget(), handoff.send);
    return handoff.promise.then([this, context](Slot<Outcome> slot) mutable {
        answer(context.getResults().initResult(), driver_, clusterId_, *slot.value);
    });
}

}  // namespace coord::rpc
