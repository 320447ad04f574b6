// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) for checksumming streams.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace coord {

namespace detail {
// kCrc32Tables[0] is the classic byte-at-a-time table; kCrc32Tables[k][b] is the CRC of byte b
// followed by k zero bytes, so eight bytes fold into the CRC with eight independent lookups
// ("slicing by 8"): about five times the speed of one byte per step, the same results.
constexpr std::array<std::array<uint32_t, 256>, 8> makeCrc32Tables() {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[0][i] = c;
    }
    for (size_t k = 1; k < 8; ++k)
        for (uint32_t i = 0; i < 256; ++i)
            t[k][i] = t[0][t[k - 1][i] & 0xff] ^ (t[k - 1][i] >> 8);
    return t;
}
inline constexpr auto kCrc32Tables = makeCrc32Tables();
}  // namespace detail

// Continues a CRC: start with crc = 0 and feed the data in any number of pieces.
inline uint32_t crc32Update(uint32_t crc, const void* data, size_t n) {
    const auto& t = detail::kCrc32Tables;
    const auto* p = static_cast<const uint8_t*>(data);
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo, hi;  // little-endian loads: the byte order of the reflected CRC
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        if constexpr (std::endian::native == std::endian::big) {
            lo = __builtin_bswap32(lo);
            hi = __builtin_bswap32(hi);
        }
        lo ^= crc;
        crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
              t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    }
    for (; n > 0; --n, ++p)
        crc = t[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return ~crc;
}

}  // namespace coord
