#include "rpc/kv_service.h"

#include <kj/async.h>

#include <optional>

#include "rpc/codec.h"

namespace coord::rpc {

namespace s = schema;

namespace {

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
    }
    return s::Unavailable::STOPPED;
}

// Carries a value across threads into a kj promise (kj needs a default-constructible type).
template <typename T>
struct Slot {
    std::optional<T> value;
};

}  // namespace

void KvService::fillHeader(s::ResponseHeader::Builder header) {
    header.setClusterId(clusterId_);
    header.setMemberId(driver_.id());
    header.setRevision(driver_.store().currentRevision());
    header.setRaftTerm(driver_.term());
}

kj::Promise<void> KvService::range(RangeContext context) {
    auto params = context.getParams();
    kv::RangeRequest request = fromCapnp(params.getRequest());
    auto answer = [this, context, request]() mutable {
        auto result = context.getResults().initResult();
        auto r = driver_.store().range(request);
        fillHeader(result.initHeader());
        if (r.ok()) {
            toCapnp(r.value(), result.initOk());
        } else {
            auto e = result.initError();
            e.setCode(static_cast<s::ErrorCode>(r.error().code));
            e.setMessage(r.error().message);
            e.setRevision(r.error().revision);
        }
    };
    if (params.getSerializable()) {
        answer();
        return kj::READY_NOW;
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<Slot<Result<Ok, Unavailable>>>();
    // std::function needs a copyable callback: share the (move-only) fulfiller.
    auto fulfiller =
        std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<Slot<Result<Ok, Unavailable>>>>>(
            kj::mv(paf.fulfiller));
    driver_.linearizableRead([fulfiller](Result<Ok, Unavailable> r) {
        (*fulfiller)->fulfill(Slot<Result<Ok, Unavailable>>{std::move(r)});
    });
    return paf.promise.then([this, context, answer](Slot<Result<Ok, Unavailable>> slot) mutable {
        if (!slot.value->ok()) {
            auto result = context.getResults().initResult();
            fillHeader(result.initHeader());
            result.setUnavailable(toSchema(slot.value->error()));
            return;
        }
        answer();
    });
}

kj::Promise<void> KvService::write(WriteContext context) {
    // A malformed request throws here and reaches the client as an error; the server goes on.
    kv::Request request = requestFromCapnp(context.getParams().getRequest());
    auto paf = kj::newPromiseAndCrossThreadFulfiller<Slot<WriteOutcome>>();
    auto fulfiller = std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<Slot<WriteOutcome>>>>(
        kj::mv(paf.fulfiller));
    driver_.write(std::move(request), [fulfiller](WriteOutcome o) {
        (*fulfiller)->fulfill(Slot<WriteOutcome>{std::move(o)});
    });
    return paf.promise.then([this, context](Slot<WriteOutcome> slot) mutable {
        auto result = context.getResults().initResult();
        fillHeader(result.initHeader());
        if (!slot.value->ok()) {
            result.setUnavailable(toSchema(slot.value->error()));
            return;
        }
        responseToCapnp(slot.value->value(), result.initResponse());
    });
}

}  // namespace coord::rpc
