// coordbench machine: thread wake-ups, loopback TCP round trips and fdatasync on this machine.
#pragma once

#include <string>

namespace coord::bench {

// Prints one JSON line per measurement; `dir` holds the fdatasync probe's file.
int runMachine(const std::string& dir, int rounds);

}  // namespace coord::bench
