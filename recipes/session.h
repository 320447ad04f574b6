// Session: a lease kept alive (every TTL/3) for as long as the session lives. Every key a recipe
// creates for a waiter or holder is attached to its session's lease, so a crashed process's keys
// vanish within one TTL and never block others for longer.
//
// Loss: the session is lost as soon as the lease is known gone (revoked, expired) or can no
// longer be renewed before it would expire; `onLost` callbacks fire then (on the client's
// thread: be quick), and every recipe using the session stops reporting itself as holder.
// Closing (or destroying) the session revokes the lease, which releases every lock and
// candidacy held through it at once.
//
// Deferred releases: a key that a recipe gave up or released while the cluster could not confirm
// it (no quorum, no member reachable) would otherwise be kept by the live lease and block others
// for as long as the session lives. Such deletions are handed to the session, which retries them
// on a thread of its own until each is confirmed, or the session is lost or closed (the lease
// then takes the keys).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "recipes/errors.h"
#include "rpc/client.h"

namespace coord {

struct SessionOptions {
    int64_t ttlSeconds = 10;
    int64_t leaseId = 0;  // adopt this existing lease instead of granting a new one
};

class Session {
  public:
    // Grants (or adopts) the lease and starts keeping it alive. Throws RecipeException when the
    // lease cannot be granted before `deadline`.
    explicit Session(Client& client, SessionOptions options = {}, Deadline deadline = {});
    // Revokes the lease (best effort, within the client's request timeout).
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    Client& client() const { return client_; }
    int64_t lease() const { return lease_; }
    int64_t ttlSeconds() const { return ttl_; }
    bool isLost() const { return lost_.load(); }

    // Registers a callback for the loss of the lease (runs at once if already lost).
    void onLost(std::function<void(const Error&)> callback);

    // Stops the keep-alive and revokes the lease: every key of the session goes.
    RecipeResult<Ok> close(Deadline deadline = {});

    // Deletes `key` if it still has create revision `createRev` (whatever its revision when 0),
    // in the background, retrying until the deletion is confirmed or the session ends.
    void releaseLater(const std::string& key, int64_t createRev);
    // How many deferred releases are not confirmed yet.
    size_t pendingReleases() const;

  private:
    struct Releaser;
    void markLost(const Error& e);
    void runReleaser();
    void stopReleaser();

    Client& client_;
    int64_t lease_ = 0;
    int64_t ttl_ = 0;
    std::atomic<bool> lost_{false};
    std::atomic<bool> closed_{false};
    mutable std::mutex mu_;
    std::vector<std::function<void(const Error&)>> callbacks_;
    std::optional<Error> lostReason_;
    std::unique_ptr<Handle> keepAlive_;
    std::unique_ptr<Releaser> releaser_;  // started by the first releaseLater (under mu_)
};

}  // namespace coord
