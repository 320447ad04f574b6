// Leader election on a session (etcd's algorithm, made lossless to observe).
//
// Keys: each candidate creates `<prefix>/<lease hex>_<nonce hex>` holding its value; the leader is
// the candidate with the lowest create revision, which is also its term (strictly increasing
// across leaders: a fencing token). A candidate waits only for the candidate just before it.
//
// observe() follows the whole prefix with one watch and reports every change of leader or of the
// leader's value, in revision order, never skipping one — including "no leader" — and can resume
// from a revision after a restart.
#pragma once

#include <string>

#include "recipes/detail.h"

namespace coord {

struct LeaderEvent {
    bool hasLeader = false;
    std::string key;       // the leader's candidate key
    std::string value;     // its proclaimed value
    int64_t term = 0;      // the leader key's create revision
    int64_t revision = 0;  // the store revision at which this became the state
};

class Election {
  public:
    // Destroying it resigns if leader (best effort).
    Election(Session& session, std::string prefix);

    // Becomes a candidate with `value` and blocks until leader. Never succeeds without the
    // candidate key being the oldest at the confirming revision; fails with SessionLost as soon
    // as the session is gone, Timeout at the deadline and Canceled on cancel() (removing the
    // candidate key in the last two cases).
    RecipeResult<Ok> campaign(const std::string& value, Deadline deadline = detail::kForever);
    // Changes the leader's value; NotHeld unless this object is still the leader.
    RecipeResult<Ok> proclaim(const std::string& value, Deadline deadline = {});
    RecipeResult<Ok> resign();
    void cancel() { holder_.cancel(); }

    bool isLeader() const { return holder_.isHeld(); }
    int64_t term() const { return holder_.revision(); }
    Compare leaderCompare() const { return holder_.ownerCompare(); }
    void onLost(std::function<void(const RecipeError&)> callback) {
        holder_.onLost(std::move(callback));
    }

    // The current leader, if any (a linearizable read).
    static RecipeResult<LeaderEvent> leader(Client& client, const std::string& prefix,
                                            Deadline deadline = {});
    // Calls `callback` (on the client's thread) with the state at the start — at
    // `fromRevision - 1` when given, else now — then with every change after it. Stops when the
    // handle goes; `onError` reports a start revision that was compacted.
    static std::unique_ptr<Handle> observe(Client& client, const std::string& prefix,
                                           std::function<void(const LeaderEvent&)> callback,
                                           int64_t fromRevision = 0,
                                           std::function<void(const Error&)> onError = {});

  private:
    std::string prefix_;
    detail::Holder holder_;
};

}  // namespace coord
