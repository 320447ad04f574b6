// Shared fixtures for the kv tests.
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "kv/store.h"
#include "tests/support/temp_dir.h"

namespace coord::kv::test {

// A store in a fresh temporary directory. Unit tests skip fsync (they never crash the
// machine); the crash test uses real fsync.
struct StoreFixture {
    coord::test::TempDir dir;
    Options options;
    std::unique_ptr<Store> store;

    StoreFixture() {
        options.sync = false;
        open();
    }
    void open() { store = std::make_unique<Store>(dir.file("data.mdb"), options); }
    void reopen() {
        store.reset();
        open();
    }
    Store& s() { return *store; }

    int64_t put(const std::string& k, const std::string& v, int64_t lease = 0) {
        auto r = store->put(k, v, lease);
        REQUIRE(r.ok());
        return r->revision;
    }
    int64_t del(const std::string& k, const std::string& end = {}) {
        auto r = store->deleteRange(k, end);
        REQUIRE(r.ok());
        return r->revision;
    }
    RangeResponse range(RangeRequest req) {
        auto r = store->range(req);
        INFO((r.ok() ? std::string() : r.error().message));
        REQUIRE(r.ok());
        return std::move(r).value();
    }
    std::vector<std::string> keys(RangeRequest req) {
        std::vector<std::string> out;
        for (auto& kv : range(std::move(req)).kvs)
            out.push_back(kv.key);
        return out;
    }
};

inline RangeRequest rangeOf(std::string key, std::string end = {}, int64_t rev = 0) {
    RangeRequest r;
    r.key = std::move(key);
    r.rangeEnd = std::move(end);
    r.revision = rev;
    return r;
}

inline RangeRequest prefixOf(const std::string& prefix, int64_t rev = 0) {
    return rangeOf(prefix, prefixEnd(prefix), rev);
}

}  // namespace coord::kv::test
