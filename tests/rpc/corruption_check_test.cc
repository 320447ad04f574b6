// rpc::digestOutliers: which members a corruption check names, from their digests.
#include <catch2/catch.hpp>

#include "rpc/corruption_check.h"

using coord::rpc::digestOutliers;

namespace {

std::vector<uint64_t> outliers(const std::map<uint64_t, uint32_t>& digests, size_t voters,
                               bool expectMajority) {
    bool majority = !expectMajority;
    auto out = digestOutliers(digests, voters, &majority);
    CHECK(majority == expectMajority);
    return out;
}

}  // namespace

TEST_CASE("a corruption check names the members outside a majority of the voters",
          "[rpc][corrupt]") {
    CHECK(outliers({{1, 0xa}, {2, 0xa}, {3, 0xa}}, 3, true).empty());
    CHECK(outliers({{1, 0xa}, {2, 0xa}, {3, 0xb}}, 3, true) == std::vector<uint64_t>{3});
    CHECK(outliers({{1, 0xb}, {2, 0xa}, {3, 0xa}}, 3, true) == std::vector<uint64_t>{1});
    // One member down: the two that answered agree, and they are a majority of three.
    CHECK(outliers({{1, 0xa}, {2, 0xa}}, 3, true).empty());
    // Two answers that differ: no digest has two of three voters behind it.
    CHECK(outliers({{1, 0xa}, {2, 0xb}}, 3, false).empty());
    CHECK(outliers({{1, 0xa}, {2, 0xb}, {3, 0xc}}, 3, false).empty());
    // Five voters: three agree, two differ (from them and from each other).
    CHECK(outliers({{1, 0xa}, {2, 0xa}, {3, 0xa}, {4, 0xb}, {5, 0xc}}, 5, true) ==
          std::vector<uint64_t>{4, 5});
    // A tie is no majority.
    CHECK(outliers({{1, 0xa}, {2, 0xa}, {3, 0xb}, {4, 0xb}}, 4, false).empty());
    // A learner answers too but does not count toward the majority.
    CHECK(outliers({{1, 0xa}, {2, 0xa}, {3, 0xa}, {4, 0xb}}, 3, true) == std::vector<uint64_t>{4});
}
