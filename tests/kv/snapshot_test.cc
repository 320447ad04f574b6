#include <catch2/catch.hpp>

#include <sstream>

#include "common/crc32.h"

#include "tests/kv/helpers.h"

using namespace coord::kv;
using coord::kv::test::prefixOf;
using coord::kv::test::rangeOf;
using coord::kv::test::StoreFixture;

namespace {
void fill(StoreFixture& f) {
    REQUIRE(f.s().leaseGrant(3, 30).ok());
    for (int i = 0; i < 200; ++i)
        f.put("s/" + std::to_string(i % 37), std::to_string(i), i % 2 ? 3 : 0);
    f.del("s/5");
    REQUIRE(f.s().compact(50).ok());
}
}  // namespace

TEST_CASE("a snapshot imported into another store reproduces the whole state", "[kv][snapshot]") {
    StoreFixture a;
    fill(a);
    std::stringstream snap;
    a.s().exportSnapshot(snap);

    StoreFixture b;
    b.put("stale", "gone after import");
    auto r = b.s().importSnapshot(snap);
    INFO((r.ok() ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(b.s().currentRevision() == a.s().currentRevision());
    CHECK(b.s().compactedRevision() == 50);
    CHECK(b.s().appliedIndex() == a.s().appliedIndex());
    CHECK_FALSE(b.s().get("stale"));
    CHECK(b.range(prefixOf("s/")).kvs == a.range(prefixOf("s/")).kvs);
    CHECK(b.range(prefixOf("s/", 120)).kvs == a.range(prefixOf("s/", 120)).kvs);
    CHECK(b.s().leaseTimeToLive(3)->keys == a.s().leaseTimeToLive(3)->keys);
    // The imported store keeps going from the same revision.
    CHECK(b.put("s/new", "x") == a.s().currentRevision() + 1);
}

TEST_CASE("a damaged or truncated snapshot is refused and changes nothing", "[kv][snapshot]") {
    StoreFixture a;
    fill(a);
    std::stringstream snap;
    a.s().exportSnapshot(snap);
    std::string bytes = snap.str();

    StoreFixture b;
    b.put("mine", "kept");
    auto tryImport = [&](const std::string& data) {
        std::stringstream in(data);
        auto r = b.s().importSnapshot(in);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == ErrorCode::InvalidArgument);
        CHECK(b.s().get("mine")->value == "kept");
        CHECK(b.s().currentRevision() == 2);
    };
    std::string flipped = bytes;
    flipped[bytes.size() / 2] ^= 0x01;
    tryImport(flipped);
    tryImport(bytes.substr(0, bytes.size() - 3));
    tryImport(bytes.substr(0, bytes.size() / 3));
    tryImport("not a snapshot");
    // A well-formed stream (valid checksum) whose metadata is wrong is refused too.
    {
        std::string bad = "CRDSNAP1";
        auto record = [&](uint8_t table, const std::string& k, const std::string& v) {
            bad.push_back(static_cast<char>(table));
            uint32_t n = static_cast<uint32_t>(k.size());
            bad.append(reinterpret_cast<const char*>(&n), 4);
            bad += k;
            n = static_cast<uint32_t>(v.size());
            bad.append(reinterpret_cast<const char*>(&n), 4);
            bad += v;
        };
        record(0, "applied_index", "short");
        record(0, "format", "coord-kv-1");
        bad.push_back(static_cast<char>(0xff));
        uint32_t crc = coord::crc32Update(0, bad.data(), bad.size());
        bad.append(reinterpret_cast<const char*>(&crc), 4);
        tryImport(bad);
    }
    tryImport("");
}
