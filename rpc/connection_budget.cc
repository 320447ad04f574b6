#include "rpc/connection_budget.h"

#include <sys/resource.h>

#include <algorithm>

#include "common/log.h"
#include "rpc/buffered_stream.h"

namespace coord::rpc {

size_t ConnectionBudget::limitFor(uint64_t descriptors) {
    uint64_t reserve = std::max<uint64_t>(32, descriptors / 8);
    return descriptors > reserve ? static_cast<size_t>(descriptors - reserve) : 1;
}

uint64_t ConnectionBudget::raiseDescriptorLimit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    return limit.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : limit.rlim_cur;
}

std::optional<ConnectionBudget::Slot> ConnectionBudget::take(Port port) {
    const size_t limit = port == Port::Client ? clientLimit_ : limit_;
    size_t now = open_.load();
    while (now < limit) {
        if (open_.compare_exchange_weak(now, now + 1)) return Slot(this);
    }
    uint64_t refused = refused_.fetch_add(1) + 1;
    if (refusalLog_[port == Port::Client ? 0 : 1].due()) {
        COORD_LOG_WARN(
            "refusing a %s connection: %zu connections open, the limit for %s (%llu refused "
            "so far)",
            port == Port::Client ? "client" : "peer", now,
            port == Port::Client ? "clients" : "peers", static_cast<unsigned long long>(refused));
    }
    return std::nullopt;
}

void ClientServer::accept(kj::Own<kj::AsyncIoStream> stream) {
    // The RPC system goes before the stream it reads (members are destroyed in reverse).
    struct Connection {
        Connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap, size_t& open)
            : stream(kj::mv(s)), server(kj::mv(bootstrap)), count(open) {
            ++count;
        }
        ~Connection() { --count; }
        kj::Own<kj::AsyncIoStream> stream;
        capnp::TwoPartyServer server;
        size_t& count;
    };
    auto connection = kj::heap<Connection>(kj::mv(stream), bootstrap_(), connections_);
    auto served = connection->server.accept(*connection->stream);
    tasks_.add(served.attach(kj::mv(connection)));
}

kj::Promise<void> acceptClients(kj::ConnectionReceiver& listener, ClientServer& server,
                                kj::Timer& timer, ConnectionBudget& budget) {
    // accept() may throw at once (KJ fails an accept that finds no descriptor left, EMFILE,
    // synchronously): evalNow turns that into a rejection, so the loop always goes on.
    return kj::evalNow([&listener] { return listener.accept(); })
        .then(
            [&server, &budget](kj::Own<kj::AsyncIoStream>&& connection) -> kj::Promise<void> {
                auto slot = budget.take(ConnectionBudget::Port::Client);
                if (!slot) return kj::READY_NOW;  // the connection closes as it goes
                server.accept(kj::heap<BufferedStream>(kj::mv(connection))
                                  .attach(kj::heap<ConnectionBudget::Slot>(kj::mv(*slot))));
                return kj::READY_NOW;
            },
            [&timer](kj::Exception&& e) -> kj::Promise<void> {
                // Out of descriptors, every accept fails at once: retry shortly (the pending
                // connection keeps the socket readable), and log one line a second, counted.
                static uint64_t failures = 0;
                static log::Throttle failureLog;
                ++failures;
                if (failureLog.due()) {
                    COORD_LOG_WARN("accepting a client connection failed (%llu so far): %s",
                                   static_cast<unsigned long long>(failures),
                                   e.getDescription().cStr());
                }
                return timer.afterDelay(10 * kj::MILLISECONDS);
            })
        .then([&listener, &server, &timer, &budget] {
            return acceptClients(listener, server, timer, budget);
        });
}

}  // namespace coord::rpc
