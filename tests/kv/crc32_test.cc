#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "common/crc32.h"

namespace {

// The definition, one bit at a time: what the tables must reproduce.
uint32_t crc32Bitwise(uint32_t crc, const uint8_t* p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int k = 0; k < 8; ++k)
            crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

}  // namespace

TEST_CASE("crc32 gives the standard check value") {
    const std::string check = "123456789";
    CHECK(coord::crc32Update(0, check.data(), check.size()) == 0xCBF43926u);
    CHECK(coord::crc32Update(0, nullptr, 0) == 0u);
}

TEST_CASE("crc32 matches the bitwise definition at every length, alignment and split") {
    std::mt19937 rng(7);
    std::vector<uint8_t> buf(4096 + 16);
    for (auto& b : buf)
        b = static_cast<uint8_t>(rng());
    for (int round = 0; round < 3000; ++round) {
        size_t offset = rng() % 16;
        size_t len = round < 64 ? static_cast<size_t>(round) : rng() % 4096;
        uint32_t seed = round % 2 ? static_cast<uint32_t>(rng()) : 0;
        const uint8_t* p = buf.data() + offset;
        uint32_t want = crc32Bitwise(seed, p, len);
        REQUIRE(coord::crc32Update(seed, p, len) == want);
        // Fed in two pieces, split anywhere, it continues to the same value.
        size_t cut = len ? rng() % (len + 1) : 0;
        REQUIRE(coord::crc32Update(coord::crc32Update(seed, p, cut), p + cut, len - cut) == want);
    }
}
