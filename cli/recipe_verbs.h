// coordctl's recipe verbs: lock, elect, queue, barrier.
#pragma once

#include <string>
#include <vector>

#include "rpc/client.h"

namespace coord::cli {

// Exit codes beyond the common ones (0 ok, 1 refused, 3 unavailable).
inline constexpr int kLockLost = 4;  // the lock or leadership was lost while held
inline constexpr int kTimedOut = 5;  // --timeout passed while waiting

struct LockArgs {
    std::string name;
    int64_t ttlSeconds = 10;
    int64_t timeoutMs = 0;   // 0: wait forever
    int64_t graceMs = 2000;  // SIGTERM → SIGKILL for the command's process group
    bool json = false;
    std::vector<std::string> command;  // empty: hold until interrupted
};
int runLock(Client& client, const LockArgs& args);

struct ElectArgs {
    std::string name;
    std::string value;
    bool listen = false;
    int64_t ttlSeconds = 10;
    int64_t timeoutMs = 0;
    bool json = false;
};
int runElect(Client& client, const ElectArgs& args);

int runQueuePush(Client& client, const std::string& name, const std::string& value);
int runQueuePop(Client& client, const std::string& name, int64_t timeoutMs);
int runBarrier(Client& client, const std::string& verb, const std::string& name, int64_t timeoutMs);

// Set by SIGINT/SIGTERM once installInterruptHandlers() ran.
bool interrupted();
void installInterruptHandlers();

}  // namespace coord::cli
