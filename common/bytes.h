// Big-endian integer encoding, so that byte-wise key order equals numeric order in LMDB.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace coord {

inline void putBe64(char* out, uint64_t v) {
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
}

inline void putBe32(char* out, uint32_t v) {
    for (int i = 3; i >= 0; --i) {
        out[i] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
}

inline uint64_t getBe64(const char* in) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = (v << 8) | static_cast<uint8_t>(in[i]);
    return v;
}

inline uint32_t getBe32(const char* in) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
        v = (v << 8) | static_cast<uint8_t>(in[i]);
    return v;
}

inline std::string be64(uint64_t v) {
    std::string s(8, '\0');
    putBe64(s.data(), v);
    return s;
}

// Little-endian fixed-width helpers for record bodies (never used as LMDB keys).
inline void appendLe64(std::string& out, uint64_t v) {
    char b[8];
    std::memcpy(b, &v, 8);  // the project targets little-endian hosts only (x86-64, arm64)
    out.append(b, 8);
}

inline void appendLe32(std::string& out, uint32_t v) {
    char b[4];
    std::memcpy(b, &v, 4);
    out.append(b, 4);
}

inline uint64_t loadLe64(const char* in) {
    uint64_t v;
    std::memcpy(&v, in, 8);
    return v;
}

inline uint32_t loadLe32(const char* in) {
    uint32_t v;
    std::memcpy(&v, in, 4);
    return v;
}

}  // namespace coord
