#include "recipes/session.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <thread>

#include "recipes/detail.h"

namespace coord {

struct Session::Releaser {
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;
    std::vector<std::pair<std::string, int64_t>> pending;
    std::thread thread;
};

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
    stopReleaser();  // the revocation deletes whatever it had left
    markLost(Error{Error::Kind::Canceled, {}, "session closed", 0});
    auto r = client_.leaseRevoke(lease_, deadline);
    if (!r.ok() && !r.error().is(kv::ErrorCode::LeaseNotFound)) {
        return fail(detail::clientError(r.error()));
    }
    return Ok{};
}

void Session::releaseLater(const std::string& key, int64_t createRev) {
    Releaser* r;
    {
        std::lock_guard lock(mu_);
        if (closed_ || lost_) return;  // the lease takes the key
        if (!releaser_) {
            releaser_ = std::make_unique<Releaser>();
            releaser_->thread = std::thread([this] {
                pthread_setname_np(pthread_self(), "coord-release");
                runReleaser();
            });
        }
        r = releaser_.get();
    }
    {
        std::lock_guard lock(r->mu);
        r->pending.emplace_back(key, createRev);
    }
    r->cv.notify_one();
}

size_t Session::pendingReleases() const {
    std::lock_guard lock(mu_);
    if (!releaser_) return 0;
    std::lock_guard inner(releaser_->mu);
    return releaser_->pending.size();
}

void Session::runReleaser() {
    Releaser& r = *releaser_;
    constexpr auto kFirstPause = std::chrono::milliseconds(50);
    constexpr auto kMaxPause = std::chrono::milliseconds(2000);
    constexpr auto kAttempt = std::chrono::milliseconds(1000);
    auto pause = kFirstPause;
    std::unique_lock lock(r.mu);
    while (!r.stop) {
        if (lost_) {
            r.pending.clear();  // the lease is gone or no longer renewed: it takes the keys
            return;
        }
        if (r.pending.empty()) {
            pause = kFirstPause;
            r.cv.wait(lock, [&] { return r.stop || !r.pending.empty(); });
            continue;
        }
        auto work = r.pending;
        lock.unlock();
        std::vector<std::pair<std::string, int64_t>> done;
        for (const auto& [key, rev] : work) {
            if (lost_) break;
            auto deleted = detail::deleteOwned(client_, key, rev, Clock::now() + kAttempt);
            if (deleted.ok()) done.emplace_back(key, rev);
        }
        lock.lock();
        for (const auto& d : done) {
            auto it = std::find(r.pending.begin(), r.pending.end(), d);
            if (it != r.pending.end()) r.pending.erase(it);
        }
        if (!r.pending.empty()) {
            r.cv.wait_for(lock, pause, [&] { return r.stop; });
            pause = std::min(pause * 2, kMaxPause);
        }
    }
}

void Session::stopReleaser() {
    Releaser* r;
    {
        std::lock_guard lock(mu_);
        r = releaser_.get();
    }
    if (!r) return;
    {
        std::lock_guard lock(r->mu);
        r->stop = true;
    }
    r->cv.notify_one();
    if (r->thread.joinable()) r->thread.join();
}

}  // namespace coord
