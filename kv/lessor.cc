#include "kv/lessor.h"

namespace coord::kv {

void Lessor::setDeadline(int64_t id, Lease& lease, int64_t deadlineMs) {
    byDeadline_.erase({lease.deadlineMs, id});
    lease.deadlineMs = deadlineMs;
    byDeadline_.insert({deadlineMs, id});
}

void Lessor::grant(int64_t id, int64_t ttlSeconds) {
    revoke(id);
    int64_t ttlMs = ttlSeconds * 1000;
    int64_t deadline = clock_.nowMs() + ttlMs;
    leases_.emplace(id, Lease{ttlMs, deadline});
    byDeadline_.insert({deadline, id});
}

std::optional<int64_t> Lessor::renew(int64_t id) {
    auto it = leases_.find(id);
    if (it == leases_.end()) return std::nullopt;
    int64_t now = clock_.nowMs();
    if (it->second.deadlineMs <= now) return std::nullopt;
    setDeadline(id, it->second, now + it->second.ttlMs);
    return it->second.ttlMs / 1000;
}

void Lessor::revoke(int64_t id) {
    auto it = leases_.find(id);
    if (it == leases_.end()) return;
    byDeadline_.erase({it->second.deadlineMs, id});
    leases_.erase(it);
}

std::optional<int64_t> Lessor::remainingMs(int64_t id) const {
    auto it = leases_.find(id);
    if (it == leases_.end()) return std::nullopt;
    int64_t left = it->second.deadlineMs - clock_.nowMs();
    return left > 0 ? left : 0;
}

std::vector<int64_t> Lessor::expired(size_t max) const {
    std::vector<int64_t> out;
    int64_t now = clock_.nowMs();
    for (const auto& [deadline, id] : byDeadline_) {
        if (deadline > now || out.size() >= max) break;
        out.push_back(id);
    }
    return out;
}

void Lessor::extendAll(int64_t extraMs) {
    int64_t now = clock_.nowMs();
    byDeadline_.clear();
    for (auto& [id, lease] : leases_) {
        lease.deadlineMs = now + lease.ttlMs + extraMs;
        byDeadline_.insert({lease.deadlineMs, id});
    }
}

}  // namespace coord::kv
