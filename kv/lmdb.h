// The one place that talks to LMDB: RAII environment, transaction, table and cursor types.
//
// Everything above this file sees std::string_view keys and values and typed errors:
//  - "not found" is an empty std::optional / a false return, never an exception;
//  - MDB_MAP_FULL throws MapFullError, which the store turns into a NoSpace outcome;
//  - any other LMDB failure (EIO, corruption, reader table full) throws LmdbError; the caller
//    treats it as fatal for the operation in progress.
//
// Threading: an Env is shared by all threads. The environment is opened with MDB_NOTLS, so a
// read-only Txn may be used by any single thread at a time and moved between threads. Only one
// write Txn exists at a time (LMDB serializes writers); coord keeps all writes on one thread.
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coord::kv::lmdb {

class LmdbError : public std::runtime_error {
  public:
    LmdbError(int code, const std::string& what);
    int code() const { return code_; }

  private:
    int code_;
};

// The map (database file) is full: the write transaction must be aborted.
class MapFullError : public LmdbError {
  public:
    explicit MapFullError(const std::string& what) : LmdbError(MDB_MAP_FULL, what) {}
};

// Throws the typed error for rc (which must not be MDB_SUCCESS).
[[noreturn]] void throwError(int rc, const char* op);

inline MDB_val toVal(std::string_view s) {
    return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view fromVal(const MDB_val& v) {
    return {static_cast<const char*>(v.mv_data), v.mv_size};
}

struct EnvOptions {
    size_t mapSizeBytes = size_t{8} << 30;
    unsigned maxTables = 16;
    unsigned maxReaders = 126;
    // When false, commits do not fsync (MDB_NOSYNC): only for tests and benchmarks that say so.
    bool sync = true;
};

class Env {
  public:
    // Opens (creating if needed) the environment whose data file is `path` (MDB_NOSUBDIR: the
    // lock file is `path-lock`). Clears reader slots left behind by dead processes.
    Env(const std::string& path, const EnvOptions& options);
    ~Env();
    Env(const Env&) = delete;
    Env& operator=(const Env&) = delete;

    MDB_env* get() const { return env_; }
    // Removes reader slots of processes that no longer exist; returns how many were cleared.
    int clearStaleReaders();
    // Bytes of the data file in use (the high-water mark of allocated pages).
    size_t usedBytes() const;  // the file's high-water mark
    size_t liveBytes() const;  // usedBytes() minus the pages on LMDB's free list
    size_t mapSizeBytes() const;
    // Maximum key size this LMDB build accepts (511 for the default build).
    int maxKeySize() const { return mdb_env_get_maxkeysize(env_); }
    // Flushes every committed transaction to disk (mdb_env_sync, forced).
    void sync();
    // Copies the whole environment, compacted, to an open file descriptor.
    void copyTo(int fd) const;

  private:
    MDB_env* env_ = nullptr;
};

class Txn {
  public:
    enum class Mode { ReadOnly, ReadWrite };
    Txn() = default;
    Txn(const Env& env, Mode mode, Txn* parent = nullptr);
    ~Txn() { abort(); }
    Txn(Txn&& other) noexcept : txn_(other.txn_), readOnly_(other.readOnly_), reset_(other.reset_) {
        other.txn_ = nullptr;
    }
    Txn& operator=(Txn&& other) noexcept;
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;

    MDB_txn* get() const { return txn_; }
    bool active() const { return txn_ != nullptr && !reset_; }
    bool readOnly() const { return readOnly_; }

    // Commits; MDB_MAP_FULL throws MapFullError. The transaction is gone afterwards either way.
    void commit();
    void abort();
    // Read-only transactions only: release the snapshot but keep the reader slot (cheap reuse).
    void reset();
    // Read-only transactions only: take a fresh snapshot after reset().
    void renew();

  private:
    MDB_txn* txn_ = nullptr;
    bool readOnly_ = true;
    bool reset_ = false;
};

class Table {
  public:
    Table() = default;
    // Opens (creating when `flags` has MDB_CREATE) a named table inside a write transaction.
    Table(Txn& txn, const char* name, unsigned flags);

    MDB_dbi dbi() const { return dbi_; }

    // The value stored under key; the view is valid until the transaction ends or writes.
    std::optional<std::string_view> get(const Txn& txn, std::string_view key) const;
    // Stores key → value. Returns false when flags has MDB_NOOVERWRITE/MDB_NODUPDATA and the
    // key (or pair) already exists.
    bool put(const Txn& txn, std::string_view key, std::string_view value,
             unsigned flags = 0) const;
    // Deletes key (all its duplicates), or only the pair key → *value for dupsort tables.
    // Returns false when nothing matched.
    bool del(const Txn& txn, std::string_view key,
             std::optional<std::string_view> value = std::nullopt) const;
    // Deletes every record of the table, keeping the table.
    void clear(const Txn& txn) const;
    // Deletes the table itself from the environment (its handle is closed).
    void drop(const Txn& txn);
    size_t entries(const Txn& txn) const;
    // Bytes of the pages (branch, leaf, overflow) the table occupies.
    size_t bytes(const Txn& txn) const;

  private:
    MDB_dbi dbi_ = 0;
};

class Cursor {
  public:
    Cursor(const Txn& txn, const Table& table);
    ~Cursor();
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;

    // Positions the cursor with `op`; returns false at the end (MDB_NOTFOUND). `key`/`value` are
    // inputs for the ops that take them (MDB_SET_RANGE, MDB_GET_BOTH_RANGE) and outputs always.
    bool get(MDB_cursor_op op, std::string_view& key, std::string_view& value);
    bool get(MDB_cursor_op op) {
        std::string_view k, v;
        return get(op, k, v);
    }
    // Deletes the record at the cursor.
    void del(unsigned flags = 0);

    // Current record (valid after a successful get).
    std::string_view key() const { return fromVal(key_); }
    std::string_view value() const { return fromVal(value_); }

  private:
    MDB_cursor* cursor_ = nullptr;
    MDB_val key_{0, nullptr};
    MDB_val value_{0, nullptr};
};

}  // namespace coord::kv::lmdb
