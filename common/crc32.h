// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) for checksumming streams.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace coord {

namespace detail {
constexpr std::array<uint32_t, 256> makeCrc32Table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}
inline constexpr std::array<uint32_t, 256> kCrc32Table = makeCrc32Table();
}  // namespace detail

// Continues a CRC: start with crc = 0 and feed the data in any number of pieces.
inline uint32_t crc32Update(uint32_t crc, const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    crc = ~crc;
    for (size_t i = 0; i < n; ++i)
        crc = detail::kCrc32Table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

}  // namespace coord
