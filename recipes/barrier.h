// Barriers.
//
// Barrier: one key, `<key>`. hold() creates it (without a lease: a barrier usually outlives the
// process that sets it), release() deletes it, wait() blocks while it exists.
//
// DoubleBarrier(N): participants create `<key>/waiters/<lease hex>_<nonce hex>` on their session
// lease. enter() blocks until at least N participants have entered (the one that sees N puts
// `<key>/ready`); leave() removes the participant and blocks until every participant has left
// (the one that sees none left deletes `<key>/ready`). A crashed participant's key goes with its
// lease, so it delays others by at most one TTL.
#pragma once

#include <string>

#include "recipes/detail.h"

namespace coord {

class Barrier {
  public:
    Barrier(Client& client, std::string key) : client_(client), key_(std::move(key)) {}

    // Busy when the barrier is already held.
    RecipeResult<Ok> hold(Deadline deadline = {});
    RecipeResult<Ok> release(Deadline deadline = {});
    RecipeResult<Ok> wait(Deadline deadline = detail::kForever);
    void cancel() { cancel_.cancel(); }

  private:
    Client& client_;
    std::string key_;
    detail::CancelPoint cancel_;
};

class DoubleBarrier {
  public:
    DoubleBarrier(Session& session, std::string key, int64_t count);
    ~DoubleBarrier();

    RecipeResult<Ok> enter(Deadline deadline = detail::kForever);
    RecipeResult<Ok> leave(Deadline deadline = detail::kForever);
    void cancel() { cancel_.cancel(); }

  private:
    // Waits for any change under `<key>/` after `revision`.
    RecipeResult<Ok> waitChange(int64_t revision, const detail::WaitContext& ctx);
    RecipeResult<std::pair<int64_t, bool>> state(const detail::WaitContext& ctx, int64_t& waiters);
    // Deletes my participant key's incarnation `rev` (0: whichever exists), handing the deletion
    // to the session when the cluster cannot confirm it.
    RecipeResult<Ok> drop(int64_t rev, Deadline deadline);

    Session& session_;
    std::string key_;
    int64_t count_;
    std::string myKey_;
    int64_t myRev_ = 0;
    int64_t unreleased_ = -1;  // a participation whose deletion is unconfirmed (0: any), or -1
    detail::CancelPoint cancel_;
};

}  // namespace coord
