// CorruptionCheck: while this member leads, it compares every member's digest of its key-value
// history (Maintenance.hashKV) at one revision, every `interval`, and raises the CORRUPT alarm
// of each member whose digest differs from the one a majority of the voters agree on. That
// member then serves no keys to clients (rpc::Unavailable::Corrupt), and clients go on at the
// others. LMDB pages carry no checksums: a damaged data file is otherwise read as it is, and a
// replica that applied the log differently (a bug, a lying disk) would answer what it holds.
//
// A round asks each member's status for its revision and takes the lowest, then each member's
// digest at that revision. Members that cannot answer (down, behind a compaction) are left out
// of the round; a round whose members still disagree on the compacted revision is asked again
// (a compaction adds no revision, so members at one revision may or may not have applied the
// newest one yet), then skipped. Without a majority of the voters on one digest nothing is
// raised: which copy is right cannot be told (the round is logged).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace coord::rpc {

// What the check needs of the member it runs in (coordd fills it from its rpc::NodeDriver).
// This header and corruption_check.cc see coord::Client, not the server's headers.
struct CheckedMember {
    struct Address {
        uint64_t id = 0;
        std::string clientUrl;  // empty until the member published it
        bool learner = false;
    };
    uint64_t id = 0;
    std::function<uint64_t()> leader;                      // as this member knows it
    std::function<std::vector<Address>()> members;         // the membership
    std::function<std::vector<uint64_t>()> corruptAlarms;  // raised, as this member applied
};

// The members whose digest differs from the one more than half of `voters` report (members
// not in `digests` did not answer); empty when they all agree, and `majority` false when no
// digest has a majority.
std::vector<uint64_t> digestOutliers(const std::map<uint64_t, uint32_t>& digests, size_t voters,
                                     bool* majority);

class CorruptionCheck {
  public:
    // Starts the checking thread (interval > 0).
    CorruptionCheck(CheckedMember self, std::chrono::milliseconds interval);
    ~CorruptionCheck();
    CorruptionCheck(const CorruptionCheck&) = delete;
    CorruptionCheck& operator=(const CorruptionCheck&) = delete;

    struct Round {
        bool ran = false;                      // false: not the leader, or too few answers
        int64_t revision = 0;                  // the revision compared
        std::map<uint64_t, uint32_t> digests;  // member id → digest
        std::vector<uint64_t> raised;          // CORRUPT alarms raised by this round
        std::string note;                      // why it did not run, or what it found
    };
    // One round now, on the calling thread.
    Round checkOnce();

  private:
    void loop();

    const CheckedMember self_;
    const std::chrono::milliseconds interval_;
    std::mutex mu_;
    std::condition_variable wake_;
    bool stop_ = false;  // under mu_
    std::thread thread_;
};

}  // namespace coord::rpc
