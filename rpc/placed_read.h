// placedRead: a store read served where it sees what it must (see NodeDriver::read).
#pragma once

#include <kj/async.h>

#include <functional>
#include <memory>
#include <optional>

#include "rpc/handoff.h"
#include "rpc/node_driver.h"

namespace coord::rpc {

// fn() evaluated where it sees what the read must (NodeDriver::read): on this thread when the
// store's committed state holds that, else on the core thread, inside the store's open
// transaction. A serializable read with nothing awaiting its commit never leaves this thread.
template <typename T>
inline kj::Promise<Slot<Result<T, Unavailable>>> placedRead(NodeDriver& driver, bool linearizable,
                                                            std::function<T()> fn) {
    using Outcome = Result<T, Unavailable>;
    if (!linearizable && !driver.store().hasDeferred()) return Slot<Outcome>{Outcome(fn())};
    auto shared = std::make_shared<std::function<T()>>(std::move(fn));
    using Placed = Result<std::optional<T>, Unavailable>;
    auto handoff = makeHandoff<Placed>();
    driver.read(linearizable,
                [shared, send = handoff.send](Result<NodeDriver::ReadAt, Unavailable> at) {
                    if (!at.ok()) return send(fail(at.error()));
                    if (*at == NodeDriver::ReadAt::Core) return send(std::optional<T>((*shared)()));
                    send(std::optional<T>());
                });
    return handoff.promise.then([shared](Slot<Placed> slot) {
        Placed& placed = *slot.value;
        if (!placed.ok()) return Slot<Outcome>{Outcome(fail(placed.error()))};
        if (placed.value()) return Slot<Outcome>{Outcome(std::move(*placed.value()))};
        return Slot<Outcome>{Outcome((*shared)())};
    });
}

// fn() evaluated on this thread once it may see what the read must: at once for a serializable
// read, after the ReadIndex round for a linearizable one. For reads that see every applied
// batch from any thread (kv::Store::rangeApplied), so they never wait for the core thread.
template <typename T>
inline kj::Promise<Slot<Result<T, Unavailable>>> appliedRead(NodeDriver& driver, bool linearizable,
                                                             std::function<T()> fn) {
    using Outcome = Result<T, Unavailable>;
    if (!linearizable) return Slot<Outcome>{Outcome(fn())};
    using Confirmed = Result<Ok, Unavailable>;
    auto handoff = makeHandoff<Confirmed>();
    driver.read(true, [send = handoff.send](Result<NodeDriver::ReadAt, Unavailable> at) {
        if (!at.ok()) return send(fail(at.error()));
        send(Ok{});
    });
    return handoff.promise.then([fn = std::move(fn)](Slot<Confirmed> slot) {
        if (!slot.value->ok()) return Slot<Outcome>{Outcome(fail(slot.value->error()))};
        return Slot<Outcome>{Outcome(fn())};
    });
}

}  // namespace coord::rpc
