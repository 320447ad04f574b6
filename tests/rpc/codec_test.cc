#include <catch2/catch.hpp>

#include <capnp/serialize.h>

#include <random>

#include "rpc/codec.h"

using namespace coord;
using namespace coord::rpc;

namespace {

kv::TxnRequest sampleTxn() {
    kv::TxnRequest t;
    for (int op = 0; op < 4; ++op) {
        for (int target = 0; target < 5; ++target) {
            kv::Compare c;
            c.op = static_cast<kv::Compare::Op>(op);
            c.target = static_cast<kv::Compare::Target>(target);
            c.key = "k" + std::to_string(op);
            c.rangeEnd = target == 2 ? "z" : "";
            c.number = op * 10 + target;
            c.value = std::string("\0\xff", 2);
            t.compare.push_back(c);
        }
    }
    kv::RangeRequest r;
    r.key = "a";
    r.rangeEnd = kv::kFromKey;
    r.limit = 7;
    r.revision = 3;
    r.sortOrder = kv::SortOrder::Descend;
    r.sortTarget = kv::SortTarget::Mod;
    r.keysOnly = true;
    r.minCreateRevision = 2;
    t.success.push_back({r});
    kv::PutRequest p{"key", std::string(1000, 'v'), 5};
    p.prevKv = true;
    t.success.push_back({p});
    kv::TxnRequest nested;
    nested.failure.push_back({kv::DeleteRangeRequest{"d", "e", true}});
    t.failure.push_back({nested});
    return t;
}

void roundTrip(const kv::Request& request) {
    std::string bytes = encodeWrite(42, request);
    auto decoded = decodeWrite(bytes);
    REQUIRE(decoded.ok());
    CHECK(decoded->first == 42);
    CHECK(decoded->second.index() == request.index());
    CHECK(encodeWrite(42, decoded->second) == bytes);
}

}  // namespace

TEST_CASE("every write request survives encoding as a Raft entry payload", "[rpc][codec]") {
    roundTrip(kv::PutRequest{"k", "v", 9});
    roundTrip(kv::DeleteRangeRequest{"a", "b", true});
    roundTrip(sampleTxn());
    roundTrip(kv::LeaseGrantRequest{7, 30});
    roundTrip(kv::LeaseRevokeRequest{7});
    roundTrip(kv::CompactRequest{100});
    roundTrip(kv::AlarmRequest{kv::AlarmRequest::Action::Activate, 5});
    roundTrip(
        kv::AlarmRequest{kv::AlarmRequest::Action::Deactivate, 0, kv::AlarmRequest::Kind::Corrupt});
    auto alarm = decodeWrite(encodeWrite(1, kv::AlarmRequest{kv::AlarmRequest::Action::Activate, 9,
                                                             kv::AlarmRequest::Kind::Corrupt}));
    REQUIRE(alarm.ok());
    CHECK(std::get<kv::AlarmRequest>(alarm->second).kind == kv::AlarmRequest::Kind::Corrupt);
    CHECK(std::get<kv::AlarmRequest>(alarm->second).memberId == 9);
    auto d = decodeWrite(encodeWrite(1, sampleTxn()));
    REQUIRE(d.ok());
    const auto& t = std::get<kv::TxnRequest>(d->second);
    CHECK(t.compare.size() == 20);
    CHECK(t.compare[19].op == kv::Compare::Op::Less);
    CHECK(t.compare[19].value == std::string("\0\xff", 2));
    CHECK(std::get<kv::PutRequest>(t.success[1].op).value.size() == 1000);
    CHECK(std::get<kv::RangeRequest>(t.success[0].op).sortTarget == kv::SortTarget::Mod);
    const auto& nested = std::get<kv::TxnRequest>(t.failure[0].op);
    CHECK(std::get<kv::DeleteRangeRequest>(nested.failure[0].op).prevKv);
}

TEST_CASE("write outcomes, errors included, survive encoding", "[rpc][codec]") {
    kv::TxnResponse tr;
    tr.succeeded = true;
    tr.revision = 12;
    tr.responses.push_back(
        {kv::RangeResponse{{kv::KeyValue{"a", "1", 2, 3, 1, 0}}, true, 5, 12, true}});
    tr.responses.push_back({kv::PutResponse{kv::KeyValue{"b", "x", 1, 1, 1, 4}, 12}});
    for (kv::KvResult<kv::Response> r :
         {kv::KvResult<kv::Response>(kv::Response{tr}),
          kv::KvResult<kv::Response>(kv::Response{kv::LeaseGrantResponse{3, 10, 4}}),
          kv::KvResult<kv::Response>(
              fail(kv::Error{kv::ErrorCode::Compacted, "revision 3 has been compacted", 9}))}) {
        std::string bytes = encodeWriteResult(r);
        auto back = decodeWriteResult(bytes);
        REQUIRE(back.ok());
        CHECK(encodeWriteResult(*back) == bytes);
    }
    auto txn = decodeWriteResult(encodeWriteResult(kv::Response{tr}));
    REQUIRE(txn.ok());
    REQUIRE(txn->ok());
    const auto& range =
        std::get<kv::RangeResponse>(std::get<kv::TxnResponse>(txn->value()).responses[0].op);
    CHECK(range.truncated);
    CHECK(range.more);
    auto alarms =
        decodeWriteResult(encodeWriteResult(kv::Response{kv::AlarmResponse{{3}, 8, {4, 5}}}));
    REQUIRE(alarms.ok());
    REQUIRE(alarms->ok());
    const auto& a = std::get<kv::AlarmResponse>(alarms->value());
    CHECK(a.noSpace == std::vector<uint64_t>{3});
    CHECK(a.corrupt == std::vector<uint64_t>{4, 5});
    auto err =
        decodeWriteResult(encodeWriteResult(fail(kv::Error{kv::ErrorCode::NoSpace, "full", 0})));
    REQUIRE(err.ok());
    REQUIRE_FALSE(err->ok());
    CHECK(err->error().code == kv::ErrorCode::NoSpace);
}

TEST_CASE("malformed frames are refused before Cap'n Proto reads them", "[rpc][codec]") {
    CHECK_FALSE(decodeWrite("").ok());
    CHECK_FALSE(decodeWrite("1234567").ok());
    // 2^32 segments (the count overflows a naive 32-bit "+ 1").
    std::string absurd(16, '\0');
    absurd[0] = absurd[1] = absurd[2] = absurd[3] = '\xff';
    auto r = decodeWrite(absurd);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("segments") != std::string::npos);
    // A segment size larger than the bytes present.
    std::string bytes = encodeWrite(1, kv::PutRequest{"k", "v"});
    std::string lying = bytes;
    lying[4] = '\x7f';
    CHECK_FALSE(decodeWrite(lying).ok());
    CHECK_FALSE(decodeWrite(bytes.substr(0, bytes.size() - 8)).ok());
}

TEST_CASE("random corruption of valid messages never crashes the decoder", "[rpc][codec]") {
    std::string good = encodeWrite(7, sampleTxn());
    std::mt19937 rng(Catch::rngSeed());
    int refused = 0;
    for (int i = 0; i < 5000; ++i) {
        std::string bad = good;
        int flips = 1 + static_cast<int>(rng() % 8);
        for (int f = 0; f < flips; ++f)
            bad[rng() % bad.size()] = static_cast<char>(rng());
        auto r = decodeWrite(bad);  // either a request or a clear error
        if (!r.ok()) {
            ++refused;
            CHECK_FALSE(r.error().message.empty());
        }
    }
    CHECK(refused > 0);
}

TEST_CASE("txns nested past the decoding limit are refused", "[rpc][codec]") {
    kv::TxnRequest t;
    for (int depth = 0; depth < 40; ++depth) {
        kv::TxnRequest outer;
        outer.success.push_back({t});
        t = std::move(outer);
    }
    auto r = decodeWrite(encodeWrite(1, t));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("malformed") != std::string::npos);
}

TEST_CASE("unknown enum values are refused, not cast", "[rpc][codec]") {
    capnp::MallocMessageBuilder message;
    auto w = message.initRoot<schema::WriteRequest>();
    auto cmp = w.initTxn().initCompare(1);
    cmp[0].setKey(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("k"), 1));
    cmp[0].setOp(static_cast<schema::CompareOp>(77));
    auto words = capnp::messageToFlatArray(message);
    auto b = words.asBytes();
    auto r = decodeWrite(std::string_view(reinterpret_cast<const char*>(b.begin()), b.size()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("enum") != std::string::npos);
}

TEST_CASE("raft messages survive the peer frame, and lying peers are refused", "[rpc][codec]") {
    raft::Message m;
    m.type = raft::MessageType::Append;
    m.from = 1;
    m.to = 2;
    m.term = 5;
    m.logTerm = 4;
    m.index = 10;
    m.entries = {raft::Entry{5, 11, raft::EntryType::Normal, "a"},
                 raft::Entry{5, 12, raft::EntryType::ConfChange, "b"}};
    m.commit = 9;
    m.context = "ctx";
    auto back = decodePeerFrame(encodePeerFrame(77, m));
    REQUIRE(back.ok());
    CHECK(back->first == 77);
    CHECK(back->second.entries == m.entries);
    CHECK(back->second.commit == 9);
    CHECK(back->second.context == "ctx");

    raft::Message snap;
    snap.type = raft::MessageType::Snap;
    snap.from = 1;
    snap.to = 3;
    snap.snapshot =
        raft::Snapshot{raft::SnapshotMeta{20, 4, raft::ConfState{{1, 2, 3}, {4}}}, "chunk"};
    snap.snapOffset = 8;
    snap.snapId = 3;
    snap.snapLast = true;
    auto s = decodePeerFrame(encodePeerFrame(77, snap));
    REQUIRE(s.ok());
    REQUIRE(s->second.snapshot);
    CHECK(s->second.snapshot->meta == snap.snapshot->meta);
    CHECK(s->second.snapshot->data == "chunk");
    CHECK(s->second.snapLast);

    raft::Message gap = m;
    gap.entries[1].index = 14;  // not contiguous
    CHECK_FALSE(decodePeerFrame(encodePeerFrame(77, gap)).ok());
    raft::Message future = m;
    future.entries[0].term = 6;  // newer than the message's term
    CHECK_FALSE(decodePeerFrame(encodePeerFrame(77, future)).ok());
    raft::Message noSnap = snap;
    noSnap.snapshot.reset();
    CHECK_FALSE(decodePeerFrame(encodePeerFrame(77, noSnap)).ok());
    raft::Message hup;
    hup.type = raft::MessageType::Hup;
    hup.from = 1;
    hup.to = 2;
    CHECK_FALSE(decodePeerFrame(encodePeerFrame(77, hup)).ok());
}

TEST_CASE("messages built in the reused first segment carry nothing of the one before",
          "[rpc][codec]") {
    // Nearly every field of a heartbeat below is zero or empty, and Cap'n Proto writes no zero: a
    // word left over from an earlier message in the thread's segment would show up as a value.
    auto full = [](size_t entryBytes, size_t entries) {
        raft::Message m;
        m.type = raft::MessageType::Append;
        m.from = 0xffffffffffffffffull;
        m.to = 0x7777777777777777ull;
        m.term = m.logTerm = 0x5555555555555555ull;
        m.index = 0x1111111111111111ull;
        for (size_t i = 0; i < entries; ++i)
            m.entries.push_back(raft::Entry{m.term, m.index + 1 + i, raft::EntryType::ConfChange,
                                            std::string(entryBytes, static_cast<char>(0xa5))});
        m.commit = m.index;
        m.reject = true;
        m.rejectHint = m.hintTerm = 0x3333333333333333ull;
        m.context = std::string(300, 'c');
        return m;
    };
    raft::Message empty;  // from and to are required; 1 and 2 share no bit with the above
    empty.type = raft::MessageType::Heartbeat;
    empty.from = 1;
    empty.to = 2;
    // Smaller than the scratch segment, exactly around it, and spilling into more segments.
    for (auto [bytes, count] : {std::pair<size_t, size_t>{16, 3}, {7000, 1}, {2000, 40}}) {
        raft::Message big = full(bytes, count);
        auto b = decodePeerFrame(encodePeerFrame(0x9999999999999999ull, big));
        REQUIRE(b.ok());
        CHECK(b->second.entries == big.entries);
        CHECK(b->second.context == big.context);
        CHECK(b->second.rejectHint == big.rejectHint);

        auto e = decodePeerFrame(encodePeerFrame(0, empty));
        REQUIRE(e.ok());
        CHECK(e->first == 0);
        CHECK(e->second.from == 1);
        CHECK(e->second.to == 2);
        CHECK(e->second.term == 0);
        CHECK(e->second.index == 0);
        CHECK(e->second.commit == 0);
        CHECK_FALSE(e->second.reject);
        CHECK(e->second.rejectHint == 0);
        CHECK(e->second.entries.empty());
        CHECK(e->second.context.empty());
        CHECK_FALSE(e->second.snapshot.has_value());

        // The write payload's encoder shares the segment.
        kv::PutRequest p{"", "", 0};
        auto w = decodeWrite(encodeWrite(0, kv::Request{p}));
        REQUIRE(w.ok());
        CHECK(w->first == 0);
        const auto& put = std::get<kv::PutRequest>(w->second);
        CHECK(put.key.empty());
        CHECK(put.value.empty());
        CHECK(put.lease == 0);
        CHECK_FALSE(put.prevKv);
    }
}
