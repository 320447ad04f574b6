#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include "kv/lmdb.h"
#include "tests/support/temp_dir.h"

using namespace coord::kv::lmdb;

TEST_CASE("lmdb wrapper: put, get, delete and cursor order", "[kv][lmdb]") {
    coord::test::TempDir dir;
    Env env(dir.file("db"), EnvOptions{size_t{64} << 20, 4, 16, false});
    Txn w(env, Txn::Mode::ReadWrite);
    Table t(w, "t", MDB_CREATE);
    CHECK(t.put(w, "b", "2"));
    CHECK(t.put(w, "a", "1"));
    CHECK_FALSE(t.put(w, "a", "x", MDB_NOOVERWRITE));
    w.commit();

    Txn r(env, Txn::Mode::ReadOnly);
    CHECK(t.get(r, "a") == "1");
    CHECK_FALSE(t.get(r, "c"));
    Cursor c(r, t);
    std::string keys;
    for (bool ok = c.get(MDB_FIRST); ok; ok = c.get(MDB_NEXT))
        keys += c.key();
    CHECK(keys == "ab");
    CHECK(env.maxKeySize() == 511);
}

TEST_CASE("lmdb wrapper: a full map throws MapFullError and the env stays usable", "[kv][lmdb]") {
    coord::test::TempDir dir;
    Env env(dir.file("db"), EnvOptions{1 << 20, 4, 16, false});
    Table t;
    {
        Txn w(env, Txn::Mode::ReadWrite);
        t = Table(w, "t", MDB_CREATE);
        w.commit();
    }
    bool full = false;
    for (int i = 0; i < 1000 && !full; ++i) {
        Txn w(env, Txn::Mode::ReadWrite);
        try {
            t.put(w, "k" + std::to_string(i), std::string(8000, 'x'));
            w.commit();
        } catch (const MapFullError& e) {
            full = true;
            CHECK(e.code() == MDB_MAP_FULL);
        }
    }
    CHECK(full);
    Txn r(env, Txn::Mode::ReadOnly);
    CHECK(t.get(r, "k0"));
}

namespace {
// Forks a child that opens its own environment, takes a reader slot and dies holding it.
void childDiesHoldingReader(const std::string& path) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        Env env(path, EnvOptions{size_t{64} << 20, 4, 16, false});
        Txn r(env, Txn::Mode::ReadOnly);
        _exit(0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
}
}  // namespace

TEST_CASE("lmdb wrapper: reader slots of dead processes are cleared", "[kv][lmdb]") {
    coord::test::TempDir dir;
    std::string path = dir.file("db");
    {
        Env env(path, EnvOptions{size_t{64} << 20, 4, 16, false});
        childDiesHoldingReader(path);
        CHECK(env.clearStaleReaders() == 1);
    }
    // Opening an environment clears such slots by itself.
    childDiesHoldingReader(path);
    Env env(path, EnvOptions{size_t{64} << 20, 4, 16, false});
    CHECK(env.clearStaleReaders() == 0);
}
