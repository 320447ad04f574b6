// Lessor: the deadlines of leases, on an injected monotonic clock.
//
// Lease *state* (ids, TTLs, attached keys) is replicated in the Store. Deadlines are not: they
// belong to the member that decides expiry (the Raft leader), which keeps them here. The Lessor
// only reports which leases have expired; the owner proposes their revocation through Raft, so
// every member deletes the keys at the same revision. A new leader does not know the old
// leader's deadlines: it calls extendAll() so no lease expires before its holder has had one
// election timeout to reach the new leader.
//
// Threading: not thread-safe; owned by one thread (the core thread in coordd).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "common/clock.h"

namespace coord::kv {

class Lessor {
  public:
    explicit Lessor(const Clock& clock) : clock_(clock) {}

    // Starts tracking a lease that expires ttlSeconds from now (replaces an existing entry).
    void grant(int64_t id, int64_t ttlSeconds);
    // Pushes the deadline to ttl from now. Returns the TTL in seconds, or nullopt when the lease
    // is unknown or has already expired (an expired lease cannot be renewed).
    std::optional<int64_t> renew(int64_t id);
    // Stops tracking a lease (revoked or found gone).
    void revoke(int64_t id);
    // Milliseconds until the lease expires (0 when it already has), or nullopt when unknown.
    std::optional<int64_t> remainingMs(int64_t id) const;
    // Ids of leases whose deadline has passed, earliest deadline first, at most `max` of them.
    // They stay tracked until revoke(): call it once the revocation is applied.
    std::vector<int64_t> expired(size_t max = SIZE_MAX) const;
    // Sets every deadline to now + ttl + extraMs. Used by a member that just became leader.
    void extendAll(int64_t extraMs);
    size_t size() const { return leases_.size(); }

  private:
    struct Lease {
        int64_t ttlMs;
        int64_t deadlineMs;
    };
    void setDeadline(int64_t id, Lease& lease, int64_t deadlineMs);

    const Clock& clock_;
    std::map<int64_t, Lease> leases_;
    std::set<std::pair<int64_t, int64_t>> byDeadline_;  // (deadline, id)
};

}  // namespace coord::kv
