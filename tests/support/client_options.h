// Client options for a test cluster: its members' endpoints (all, or the ones named) and a
// request timeout long enough for elections under sanitizers.
#pragma once

#include <chrono>
#include <vector>

#include "rpc/client.h"
#include "tests/support/cluster.h"

namespace coord::test {

inline ClientOptions optionsFor(const Cluster& c, std::vector<int> members = {0, 1, 2}) {
    ClientOptions o;
    for (int i : members)
        o.endpoints.push_back(c.ep(i));
    o.requestTimeout = std::chrono::seconds(10);
    return o;
}

}  // namespace coord::test
