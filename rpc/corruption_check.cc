#include "rpc/corruption_check.h"

#include <pthread.h>

#include <algorithm>
#include <exception>

#include "common/log.h"
#include "rpc/client.h"

namespace coord::rpc {

std::vector<uint64_t> digestOutliers(const std::map<uint64_t, uint32_t>& digests, size_t voters,
                                     bool* majority) {
    std::map<uint32_t, size_t> count;
    for (const auto& [id, digest] : digests)
        ++count[digest];
    *majority = false;
    uint32_t agreed = 0;
    for (const auto& [digest, n] : count) {
        if (2 * n > voters) {
            *majority = true;
            agreed = digest;
        }
    }
    std::vector<uint64_t> out;
    if (!*majority) return out;
    for (const auto& [id, digest] : digests)
        if (digest != agreed) out.push_back(id);
    return out;
}

CorruptionCheck::CorruptionCheck(CheckedMember self, std::chrono::milliseconds interval)
    : self_(std::move(self)), interval_(interval) {
    if (interval_.count() > 0) thread_ = std::thread([this] { loop(); });
}

CorruptionCheck::~CorruptionCheck() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void CorruptionCheck::loop() {
    pthread_setname_np(pthread_self(), "coord-check");
    std::unique_lock lock(mu_);
    for (;;) {
        if (wake_.wait_for(lock, interval_, [&] { return stop_; })) return;
        lock.unlock();
        try {
            Round r = checkOnce();
            if (r.ran && r.raised.empty() && !r.note.empty()) COORD_LOG_ERROR("%s", r.note.c_str());
        } catch (const std::exception& e) {
            COORD_LOG_WARN("corruption check: %s", e.what());
        }
        lock.lock();
    }
}

CorruptionCheck::Round CorruptionCheck::checkOnce() {
    Round r;
    if (self_.leader() != self_.id) {
        r.note = "not the leader";
        return r;
    }
    size_t voters = 0;
    std::map<uint64_t, std::string> urls;
    ClientOptions options;
    options.endpoints.clear();
    for (const auto& m : self_.members()) {
        if (!m.learner) ++voters;
        if (m.clientUrl.empty()) continue;
        urls[m.id] = m.clientUrl;
        options.endpoints.push_back(m.clientUrl);
    }
    if (urls.size() < 2) {
        r.note = "fewer than two members publish a client address";
        return r;
    }
    Client client(options);
    // The lowest revision a member reports: every member that answers has applied it.
    int64_t revision = 0;
    std::map<uint64_t, std::string> asked;
    for (const auto& [id, url] : urls) {
        auto st = client.status(url);
        if (!st.ok() || st->memberId != id) continue;
        asked[id] = url;
        revision = revision == 0 ? st->revision : std::min(revision, st->revision);
    }
    if (asked.size() < 2) {
        r.note = "fewer than two members answered";
        return r;
    }
    for (int attempt = 0;; ++attempt) {
        r.digests.clear();
        std::map<int64_t, size_t> compacted;
        for (const auto& [id, url] : asked) {
            auto h = client.hashKV(url, revision);
            if (!h.ok()) continue;
            r.digests[id] = h->hash;
            ++compacted[h->compactRevision];
        }
        if (compacted.size() <= 1) break;
        if (attempt == 10) {
            r.note = "the members are still applying a compaction";
            return r;
        }
        std::unique_lock lock(mu_);
        if (wake_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_; })) {
            r.note = "stopping";
            return r;
        }
    }
    r.ran = true;
    r.revision = revision;
    bool majority = false;
    std::vector<uint64_t> outliers = digestOutliers(r.digests, voters, &majority);
    std::string found;
    for (const auto& [id, digest] : r.digests) {
        char one[64];
        std::snprintf(one, sizeof one, "%s%llx:%08x", found.empty() ? "" : " ",
                      static_cast<unsigned long long>(id), digest);
        found += one;
    }
    if (!majority) {
        r.note = "corruption check: no digest at revision " + std::to_string(revision) +
                 " has a majority of the " + std::to_string(voters) + " voters (" + found +
                 "); which copy is right cannot be told, nothing raised";
        return r;
    }
    std::vector<uint64_t> already = self_.corruptAlarms();
    for (uint64_t id : outliers) {
        if (std::find(already.begin(), already.end(), id) != already.end()) continue;
        auto raised = client.alarmRaise(id, kv::AlarmRequest::Kind::Corrupt);
        if (!raised.ok()) {
            COORD_LOG_WARN("corruption check: cannot raise member %llx's CORRUPT alarm: %s",
                           static_cast<unsigned long long>(id), raised.error().describe().c_str());
            continue;
        }
        r.raised.push_back(id);
        COORD_LOG_ERROR(
            "corruption check: member %llx's history differs from the majority's at revision "
            "%lld (member:digest %s); raised its CORRUPT alarm",
            static_cast<unsigned long long>(id), static_cast<long long>(revision), found.c_str());
    }
    return r;
}

}  // namespace coord::rpc
