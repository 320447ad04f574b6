#include "kv/lmdb.h"

#include <cstring>

#include <string>

#include "common/assert.h"

namespace coord::kv::lmdb {

LmdbError::LmdbError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}

void throwError(int rc, const char* op) {
    std::string what = std::string("lmdb: ") + op + ": " + mdb_strerror(rc);
    if (rc == MDB_MAP_FULL) throw MapFullError(what);
    throw LmdbError(rc, what);
}

namespace {
void check(int rc, const char* op) {
    if (rc != MDB_SUCCESS) throwError(rc, op);
}
}  // namespace

Env::Env(const std::string& path, const EnvOptions& options) {
    check(mdb_env_create(&env_), "env_create");
    try {
        check(mdb_env_set_mapsize(env_, options.mapSizeBytes), "env_set_mapsize");
        check(mdb_env_set_maxdbs(env_, options.maxTables), "env_set_maxdbs");
        check(mdb_env_set_maxreaders(env_, options.maxReaders), "env_set_maxreaders");
        // MDB_NOTLS: read transactions are not tied to threads. MDB_NORDAHEAD: the working set is
        // random B-tree pages, read-ahead only evicts useful cache.
        unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD;
        if (!options.sync) flags |= MDB_NOSYNC;
        check(mdb_env_open(env_, path.c_str(), flags, 0600), "env_open");
    } catch (...) {
        mdb_env_close(env_);
        env_ = nullptr;
        throw;
    }
    clearStaleReaders();
}

Env::~Env() {
    if (env_) mdb_env_close(env_);
}

int Env::clearStaleReaders() {
    int dead = 0;
    check(mdb_reader_check(env_, &dead), "reader_check");
    return dead;
}

size_t Env::usedBytes() const {
    MDB_envinfo info;
    check(mdb_env_info(env_, &info), "env_info");
    MDB_stat st;
    check(mdb_env_stat(env_, &st), "env_stat");
    return (info.me_last_pgno + 1) * size_t{st.ms_psize};
}

size_t Env::liveBytes() const {
    // The free list (LMDB's database 0) maps a transaction id to the pages it freed, each
    // record an ID list whose first word is its length.
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn), "txn_begin");
    size_t freePages = 0;
    MDB_cursor* cursor = nullptr;
    if (mdb_cursor_open(txn, 0, &cursor) == MDB_SUCCESS) {
        MDB_val k, v;
        for (int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
             rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
            if (v.mv_size >= sizeof(size_t)) {
                size_t n;
                std::memcpy(&n, v.mv_data, sizeof n);
                freePages += n;
            }
        }
        mdb_cursor_close(cursor);
    }
    MDB_stat st;
    mdb_env_stat(env_, &st);
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    mdb_txn_abort(txn);
    size_t pages = info.me_last_pgno + 1;
    return (pages > freePages ? pages - freePages : 0) * size_t{st.ms_psize};
}

size_t Env::mapSizeBytes() const {
    MDB_envinfo info;
    check(mdb_env_info(env_, &info), "env_info");
    return info.me_mapsize;
}

void Env::copyTo(int fd) const {
    check(mdb_env_copyfd2(env_, fd, MDB_CP_COMPACT), "env_copyfd2");
}

Txn::Txn(const Env& env, Mode mode, Txn* parent) : readOnly_(mode == Mode::ReadOnly) {
    check(mdb_txn_begin(env.get(), parent ? parent->get() : nullptr, readOnly_ ? MDB_RDONLY : 0,
                        &txn_),
          "txn_begin");
}

Txn& Txn::operator=(Txn&& other) noexcept {
    if (this != &other) {
        abort();
        txn_ = other.txn_;
        readOnly_ = other.readOnly_;
        reset_ = other.reset_;
        other.txn_ = nullptr;
    }
    return *this;
}

void Env::sync() {
    check(mdb_env_sync(env_, 1), "env_sync");
}

void Txn::commit() {
    COORD_ASSERT(txn_ != nullptr && !reset_, "commit of a finished transaction");
    MDB_txn* t = txn_;
    txn_ = nullptr;  // mdb_txn_commit frees the handle even when it fails
    check(mdb_txn_commit(t), "txn_commit");
}

void Txn::abort() {
    if (txn_) {
        mdb_txn_abort(txn_);
        txn_ = nullptr;
        reset_ = false;
    }
}

void Txn::reset() {
    COORD_ASSERT(readOnly_ && txn_ != nullptr, "reset needs a read-only transaction");
    if (!reset_) mdb_txn_reset(txn_);
    reset_ = true;
}

void Txn::renew() {
    COORD_ASSERT(readOnly_ && txn_ != nullptr && reset_, "renew needs a reset read transaction");
    check(mdb_txn_renew(txn_), "txn_renew");
    reset_ = false;
}

Table::Table(Txn& txn, const char* name, unsigned flags) {
    check(mdb_dbi_open(txn.get(), name, flags, &dbi_), "dbi_open");
}

std::optional<std::string_view> Table::get(const Txn& txn, std::string_view key) const {
    MDB_val k = toVal(key);
    MDB_val v;
    int rc = mdb_get(txn.get(), dbi_, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check(rc, "get");
    return fromVal(v);
}

bool Table::put(const Txn& txn, std::string_view key, std::string_view value,
                unsigned flags) const {
    MDB_val k = toVal(key);
    MDB_val v = toVal(value);
    int rc = mdb_put(txn.get(), dbi_, &k, &v, flags);
    if (rc == MDB_KEYEXIST) return false;
    check(rc, "put");
    return true;
}

bool Table::del(const Txn& txn, std::string_view key, std::optional<std::string_view> value) const {
    MDB_val k = toVal(key);
    MDB_val v;
    if (value) v = toVal(*value);
    int rc = mdb_del(txn.get(), dbi_, &k, value ? &v : nullptr);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "del");
    return true;
}

void Table::clear(const Txn& txn) const {
    check(mdb_drop(txn.get(), dbi_, 0), "drop");
}

void Table::drop(const Txn& txn) {
    check(mdb_drop(txn.get(), dbi_, 1), "drop");
    dbi_ = 0;
}

size_t Table::bytes(const Txn& txn) const {
    MDB_stat st;
    check(mdb_stat(txn.get(), dbi_, &st), "stat");
    return (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * size_t{st.ms_psize};
}

size_t Table::entries(const Txn& txn) const {
    MDB_stat st;
    check(mdb_stat(txn.get(), dbi_, &st), "stat");
    return st.ms_entries;
}

Cursor::Cursor(const Txn& txn, const Table& table) {
    check(mdb_cursor_open(txn.get(), table.dbi(), &cursor_), "cursor_open");
}

Cursor::~Cursor() {
    if (cursor_) mdb_cursor_close(cursor_);
}

bool Cursor::get(MDB_cursor_op op, std::string_view& key, std::string_view& value) {
    key_ = toVal(key);
    value_ = toVal(value);
    int rc = mdb_cursor_get(cursor_, &key_, &value_, op);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "cursor_get");
    key = fromVal(key_);
    value = fromVal(value_);
    return true;
}

void Cursor::del(unsigned flags) {
    check(mdb_cursor_del(cursor_, flags), "cursor_del");
}

}  // namespace coord::kv::lmdb
