// Session: a lease kept alive (every TTL/3) for as long as the session lives. Every key a recipe
// creates for a waiter or holder is attached to its session's lease, so a crashed process's keys
// vanish within one TTL and never block others for longer.
//
// Loss: the session is lost as soon as the lease is known gone (revoked, expired) or can no
// longer be renewed before it would expire; `onLost` callbacks fire then (on the client's
// thread: be quick), and every recipe using the session stops reporting itself as holder.
// Closing (or destroying) the session revokes the lease, which releases every lock and
// candidacy held through it at once.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
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

  private:
    void markLost(const Error& e);

    Client& client_;
    int64_t lease_ = 0;
    int64_t ttl_ = 0;
    std::atomic<bool> lost_{false};
    std::atomic<bool> closed_{false};
    std::mutex mu_;
    std::vector<std::function<void(const Error&)>> callbacks_;
    std::optional<Error> lostReason_;
    std::unique_ptr<Handle> keepAlive_;
};

}  // namespace coord
