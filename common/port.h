// A TCP port as written in an address: decimal digits only, from 1 to 65535.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace coord {

inline std::optional<uint16_t> parsePort(std::string_view digits) {
    if (digits.empty() || digits.size() > 5) return std::nullopt;
    uint32_t port = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        port = port * 10 + static_cast<uint32_t>(c - '0');
    }
    if (port == 0 || port > 65535) return std::nullopt;
    return static_cast<uint16_t>(port);
}

}  // namespace coord
