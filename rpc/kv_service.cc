#include "rpc/kv_service.h"

#include <kj/async.h>

#include <optional>

#include "rpc/codec.h"
#include "rpc/handoff.h"
#include "rpc/placed_read.h"

namespace coord::rpc {

namespace s = schema;

s::Unavailable toSchema(Unavailable u) {
    switch (u) {
        case Unavailable::NoLeader:
            return s::Unavailable::NO_LEADER;
        case Unavailable::Timeout:
            return s::Unavailable::TIMEOUT;
        case Unavailable::Stopped:
            return s::Unavailable::STOPPED;
        case Unavailable::NotLeader:
            return s::Unavailable::NOT_LEADER;
        case Unavailable::Corrupt:
            return s::Unavailable::CORRUPT;
    }
    return s::Unavailable::STOPPED;
}

void fillHeader(s::ResponseHeader::Builder header, NodeDriver& driver, uint64_t clusterId) {
    header.setClusterId(clusterId);
    header.setMemberId(driver.id());
    header.setRevision(driver.store().currentRevision());
    header.setRaftTerm(driver.term());
}

namespace {
// Answers a key read or write that this member, whose CORRUPT alarm is raised, does not serve.
template <typename Context>
kj::Promise<void> refuseCorrupt(Context& context, NodeDriver& driver, uint64_t clusterId) {
    auto result = context.getResults(kSmallMessage).initResult();
    fillHeader(result.initHeader(), driver, clusterId);
    result.setUnavailable(s::Unavailable::CORRUPT);
    return kj::READY_NOW;
}
}  // namespace

kj::Promise<void> KvService::range(RangeContext context) {
    // Its keys may be wrong: the client asks another member.
    if (driver_.corrupt()) return refuseCorrupt(context, driver_, clusterId_);
    auto params = context.getParams();
    kv::RangeRequest request = fromCapnp(params.getRequest());
    kv::Store& store = driver_.store();
    using Read = kv::KvResult<kv::RangeResponse>;
    return appliedRead<Read>(driver_, !params.getSerializable(),
                             [&store, request] { return store.rangeApplied(request); })
        .then([this, context](Slot<Result<Read, Unavailable>> slot) mutable {
            const Read* read = slot.value->ok() ? &slot.value->value() : nullptr;
            auto result =
                context.getResults(rangeResultSize(read && read->ok() ? &read->value() : nullptr))
                    .initResult();
            fillHeader(result.initHeader(), driver_, clusterId_);
            if (!slot.value->ok()) {
                result.setUnavailable(toSchema(slot.value->error()));
                return;
            }
            const Read& r = slot.value->value();
            if (r.ok()) {
                toCapnp(r.value(), result.initOk());
            } else {
                auto e = result.initError();
                e.setCode(static_cast<s::ErrorCode>(r.error().code));
                e.setMessage(r.error().message);
                e.setRevision(r.error().revision);
            }
        });
}

kj::Promise<void> KvService::write(WriteContext context) {
    // A malformed request throws here and reaches the client as an error; the server goes on.
    kv::Request request = requestFromCapnp(context.getParams().getRequest());
    // Refused here, before it reaches the Raft log (kv::kMaxRequestBytes).
    if (auto tooLarge = kv::checkRequestSize(request)) {
        auto result = context.getResults(kSmallMessage).initResult();
        fillHeader(result.initHeader(), driver_, clusterId_);
        responseToCapnp(fail(*tooLarge), result.initResponse());
        return kj::READY_NOW;
    }
    // A write's answer (a txn's branch, previous values) is this member's apply result: not
    // from a member whose keys may be wrong. Alarms it may still raise and clear.
    if (driver_.corrupt() && !std::holds_alternative<kv::AlarmRequest>(request)) {
        return refuseCorrupt(context, driver_, clusterId_);
    }
    auto handoff = makeHandoff<WriteOutcome>();
    driver_.write(std::move(request), handoff.send);
    return handoff.promise.then([this, context](Slot<WriteOutcome> slot) mutable {
        auto result = context.getResults(kSmallMessage).initResult();
        fillHeader(result.initHeader(), driver_, clusterId_);
        if (!slot.value->ok()) {
            result.setUnavailable(toSchema(slot.value->error()));
            return;
        }
        responseToCapnp(slot.value->value(), result.initResponse());
    });
}

namespace {
void leaseInfoToCapnp(const kv::LeaseInfo& in, s::LeaseInfo::Builder out) {
    out.setId(in.id);
    out.setTtlSeconds(in.ttlSeconds);
    auto keys = out.initKeys(static_cast<unsigned>(in.keys.size()));
    for (unsigned i = 0; i < in.keys.size(); ++i) {
        keys.set(i, capnp::Data::Reader(reinterpret_cast<const kj::byte*>(in.keys[i].data()),
                                        in.keys[i].size()));
    }
}
}  // namespace

kj::Promise<void> LeaseService::keepAlive(KeepAliveContext context) {
    using Outcome = Result<kv::KvResult<int64_t>, Unavailable>;
    auto handoff = makeHandoff<Outcome>();
    driver_.leaseKeepAlive(context.getParams().getId(), handoff.send);
    return handoff.promise.then([this, context](Slot<Outcome> slot) mutable {
        auto result = context.getResults(kSmallMessage).initResult();
        fillHeader(result.initHeader(), driver_, clusterId_);
        if (!slot.value->ok()) {
            result.setUnavailable(toSchema(slot.value->error()));
            return;
        }
        const auto& r = slot.value->value();
        if (r.ok()) {
            result.setTtlSeconds(r.value());
        } else {
            auto e = result.initError();
            e.setCode(static_cast<s::ErrorCode>(r.error().code));
            e.setMessage(r.error().message);
        }
    });
}

kj::Promise<void> LeaseService::timeToLive(TimeToLiveContext context) {
    kv::Store& store = driver_.store();
    int64_t id = context.getParams().getId();
    using Read = std::optional<kv::LeaseInfo>;
    return placedRead<Read>(driver_, true, [&store, id] { return store.leaseTimeToLive(id); })
        .then([this, context](Slot<Result<Read, Unavailable>> slot) mutable {
            KJ_REQUIRE(slot.value->ok(), "no leader: cannot answer linearizably",
                       unavailableName(slot.value->error()));
            auto results = context.getResults();
            fillHeader(results.initHeader(), driver_, clusterId_);
            const Read& info = slot.value->value();
            results.setFound(info.has_value());
            if (info) leaseInfoToCapnp(*info, results.initInfo());
        });
}

kj::Promise<void> LeaseService::list(ListContext context) {
    kv::Store& store = driver_.store();
    using Read = std::vector<kv::LeaseInfo>;
    return placedRead<Read>(driver_, true, [&store] { return store.leaseList(); })
        .then([this, context](Slot<Result<Read, Unavailable>> slot) mutable {
            KJ_REQUIRE(slot.value->ok(), "no leader: cannot answer linearizably",
                       unavailableName(slot.value->error()));
            auto results = context.getResults();
            fillHeader(results.initHeader(), driver_, clusterId_);
            const Read& leases = slot.value->value();
            auto out = results.initLeases(static_cast<unsigned>(leases.size()));
            for (unsigned i = 0; i < leases.size(); ++i)
                leaseInfoToCapnp(leases[i], out[i]);
        });
}

}  // namespace coord::rpc
