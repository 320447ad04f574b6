// Snapshot export and import: a checksummed stream of every record of the state tables.
//
// Format (docs/mvcc.md): the 8-byte magic "CRDSNAP1", then records
//   [u8 table][u32 key length][key][u32 value length][value]   (lengths little-endian)
// in table order and key order, then the end marker [u8 0xff] and a u32 CRC-32 of every byte
// before it. Import validates as it goes inside one write transaction and commits only when the
// whole stream, checksum included, is good; anything else aborts and changes nothing.
#include <istream>
#include <ostream>

#include "common/bytes.h"
#include "common/crc32.h"
#include "kv/internal.h"
#include "kv/raft_storage.h"
#include "kv/store.h"

namespace coord::kv {

namespace {

constexpr char kMagic[8] = {'C', 'R', 'D', 'S', 'N', 'A', 'P', '1'};
constexpr uint8_t kEndMarker = 0xff;
constexpr uint32_t kMaxSnapshotValueBytes = 64u << 20;
// Meta records with this prefix (Raft hard state, membership) are the member's own.
constexpr std::string_view kLocalPrefix = "raft_";

class CrcWriter {
  public:
    explicit CrcWriter(std::ostream& out) : out_(out) {}
    void write(const void* p, size_t n) {
        crc_ = crc32Update(crc_, p, n);
        out_.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    }
    void writeU32(uint32_t v) {
        char b[4];
        std::memcpy(b, &v, 4);
        write(b, 4);
    }
    uint32_t crc() const { return crc_; }

  private:
    std::ostream& out_;
    uint32_t crc_ = 0;
};

class CrcReader {
  public:
    explicit CrcReader(std::istream& in) : in_(in) {}
    bool read(void* p, size_t n) {
        in_.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
        if (static_cast<size_t>(in_.gcount()) != n) return false;
        crc_ = crc32Update(crc_, p, n);
        return true;
    }
    bool readU32(uint32_t& v) {
        char b[4];
        if (!read(b, 4)) return false;
        std::memcpy(&v, b, 4);
        return true;
    }
    uint32_t crc() const { return crc_; }

  private:
    std::istream& in_;
    uint32_t crc_ = 0;
};

Error malformed(const std::string& why) {
    return detail::makeError(ErrorCode::InvalidArgument, "malformed snapshot: " + why);
}

}  // namespace

void Store::exportSnapshot(std::ostream& out) const {
    lmdb::Txn txn(*env_, lmdb::Txn::Mode::ReadOnly);
    CrcWriter w(out);
    w.write(kMagic, sizeof kMagic);
    // Table numbers 2 and 3 were the key index and current values of format 1: no longer
    // written, skipped when read.
    const lmdb::Table* tables[] = {&t_.meta, &t_.rev, nullptr, nullptr, &t_.lease, &t_.leaseKeys};
    for (uint8_t i = 0; i < std::size(tables); ++i) {
        if (!tables[i]) continue;
        lmdb::Cursor c(txn, *tables[i]);
        // MDB_NEXT visits every duplicate of dupsort tables too.
        for (bool ok = c.get(MDB_FIRST); ok; ok = c.get(MDB_NEXT)) {
            // The Raft hard state and membership belong to this member, not to the data.
            if (i == 0 && c.key().substr(0, kLocalPrefix.size()) == kLocalPrefix) continue;
            w.write(&i, 1);
            w.writeU32(static_cast<uint32_t>(c.key().size()));
            w.write(c.key().data(), c.key().size());
            w.writeU32(static_cast<uint32_t>(c.value().size()));
            w.write(c.value().data(), c.value().size());
        }
    }
    w.write(&kEndMarker, 1);
    uint32_t crc = w.crc();
    char b[4];
    std::memcpy(b, &crc, 4);
    out.write(b, 4);
    out.flush();
}

KvResult<Ok> Store::importSnapshot(std::istream& in) {
    CrcReader r(in);
    char magic[8];
    if (!r.read(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) {
        return fail(malformed("bad magic"));
    }
    commitDeferred(false);
    lmdb::Txn txn(*env_, lmdb::Txn::Mode::ReadWrite);
    const lmdb::Table* tables[] = {&t_.meta, &t_.rev, nullptr, nullptr, &t_.lease, &t_.leaseKeys};
    const bool dupsort[] = {false, false, true, false, false, true};
    // This member's own Raft records survive the import; a snapshot never carries any.
    std::vector<std::pair<std::string, std::string>> local;
    {
        lmdb::Cursor c(txn, t_.meta);
        std::string_view k = kLocalPrefix, v;
        for (bool ok = c.get(MDB_SET_RANGE, k, v);
             ok && k.substr(0, kLocalPrefix.size()) == kLocalPrefix; ok = c.get(MDB_NEXT, k, v)) {
            local.emplace_back(k, v);
        }
    }
    for (const auto* t : tables)
        if (t) t->clear(txn);

    std::string key, value;
    const size_t maxKey = static_cast<size_t>(env_->maxKeySize());
    for (;;) {
        uint8_t table;
        if (!r.read(&table, 1)) return fail(malformed("truncated"));
        if (table == kEndMarker) break;
        if (table >= std::size(tables)) return fail(malformed("unknown table"));
        uint32_t klen, vlen;
        if (!r.readU32(klen) || klen == 0 || klen > maxKey) return fail(malformed("bad key"));
        key.resize(klen);
        if (!r.read(key.data(), klen)) return fail(malformed("truncated"));
        if (table == 0 && key.compare(0, kLocalPrefix.size(), kLocalPrefix) == 0) {
            return fail(malformed("carries member-local records"));
        }
        if (!r.readU32(vlen) || vlen > kMaxSnapshotValueBytes) return fail(malformed("bad value"));
        value.resize(vlen);
        if (!r.read(value.data(), vlen)) return fail(malformed("truncated"));
        if (!tables[table]) continue;  // format 1's derived tables: rebuilt instead
        // Records come sorted, so appending is both fast and a check of the order.
        unsigned flags = dupsort[table] ? MDB_APPENDDUP : MDB_APPEND;
        try {
            if (!tables[table]->put(txn, key, value, flags)) {
                return fail(malformed("records out of order"));
            }
        } catch (const lmdb::LmdbError& e) {
            if (e.code() == MDB_BAD_VALSIZE || e.code() == MDB_KEYEXIST) {
                return fail(malformed("record rejected"));
            }
            throw;
        }
    }
    uint32_t expected = r.crc();
    char b[4];
    in.read(b, 4);
    if (in.gcount() != 4) return fail(malformed("missing checksum"));
    uint32_t crc;
    std::memcpy(&crc, b, 4);
    if (crc != expected) return fail(malformed("checksum mismatch"));
    // The metadata must be complete and well-formed before anything decodes it.
    auto format = t_.meta.get(txn, detail::kMetaFormat);
    if (!format || (*format != detail::kFormatVersion && *format != detail::kFormatVersion1)) {
        return fail(malformed("foreign format"));
    }
    t_.meta.put(txn, detail::kMetaFormat, detail::kFormatVersion);
    for (auto name :
         {detail::kMetaCurrentRev, detail::kMetaCompactedRev, detail::kMetaAppliedIndex}) {
        auto v = t_.meta.get(txn, name);
        if (!v || v->size() != 8) return fail(malformed("bad metadata " + std::string(name)));
    }
    auto cursor = t_.meta.get(txn, detail::kMetaCompactCursor);
    if (!cursor || cursor->size() != detail::kRevKeyBytes) {
        return fail(malformed("bad compaction cursor"));
    }
    if (auto members = t_.meta.get(txn, kMembersKey); members && !decodeMembers(*members)) {
        return fail(malformed("bad member registry"));
    }
    for (const auto& [k, v] : local)
        t_.meta.put(txn, k, v);
    int64_t current = detail::decodeI64(*t_.meta.get(txn, detail::kMetaCurrentRev));
    // Every record must decode before the index is rebuilt from them.
    {
        lmdb::Cursor c(txn, t_.rev);
        std::string_view k, v;
        for (bool ok = c.get(MDB_FIRST, k, v); ok; ok = c.get(MDB_NEXT, k, v)) {
            if (k.size() != detail::kRevKeyBytes || v.size() < detail::kRevHeaderBytes ||
                v.size() < detail::kRevHeaderBytes + loadLe32(v.data() + 33)) {
                return fail(malformed("bad revision record"));
            }
        }
    }
    try {
        rebuildIndex(txn);
        publishApplied(txn);
        txn.commit();
    } catch (...) {
        lmdb::Txn committed(*env_, lmdb::Txn::Mode::ReadOnly);
        rebuildIndex(committed);
        publishApplied(committed);
        throw;
    }
    committedIndex_.store(appliedIndex_.load(), std::memory_order_release);
    hub_->resynchronize(current);
    return Ok{};
}

}  // namespace coord::kv
