#include "recipes/session.h"

#include "recipes/detail.h"

namespace coord {

Session::Session(Client& client, SessionOptions options, Deadline deadline)
    : client_(client), ttl_(std::max<int64_t>(options.ttlSeconds, 1)) {
    if (options.leaseId != 0) {
        lease_ = options.leaseId;
    } else {
        auto granted = client.leaseGrant(ttl_, 0, deadline);
        if (!granted.ok()) throw RecipeException(detail::clientError(granted.error()));
        lease_ = granted->id;
        ttl_ = granted->ttlSeconds;
    }
    keepAlive_ = client.keepAlive(lease_, ttl_, [this](const Error& e) { markLost(e); });
}

Session::~Session() {
    (void)close();
}

void Session::markLost(const Error& e) {
    std::vector<std::function<void(const Error&)>> callbacks;
    {
        std::lock_guard lock(mu_);
        if (lost_.exchange(true)) return;
        lostReason_ = e;
        callbacks.swap(callbacks_);
    }
    for (auto& cb : callbacks)
        cb(e);
}

void Session::onLost(std::function<void(const Error&)> callback) {
    std::unique_lock lock(mu_);
    if (lost_) {
        Error reason = *lostReason_;
        lock.unlock();
        callback(reason);
        return;
    }
    callbacks_.push_back(std::move(callback));
}

RecipeResult<Ok> Session::close(Deadline deadline) {
    if (closed_.exchange(true)) return Ok{};
    keepAlive_.reset();
    markLost(Error{Error::Kind::Canceled, {}, "session closed", 0});
    auto r = client_.leaseRevoke(lease_, deadline);
    if (!r.ok() && !r.error().is(kv::ErrorCode::LeaseNotFound)) {
        return fail(detail::clientError(r.error()));
    }
    return Ok{};
}

}  // namespace coord
