#include "rpc/codec.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <type_traits>
#include <variant>

namespace coord::rpc {

namespace s = schema;

namespace {

// ---- bytes ----

capnp::Data::Reader data(const std::string& v) {
    return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(v.data()), v.size());
}

std::string str(capnp::Data::Reader d) {
    return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

// Built step by step: brace-initializing these variants trips GCC 12's -Wmaybe-uninitialized.
template <typename T>
kv::ResponseOp responseOp(T v) {
    kv::ResponseOp op;
    op.op = std::move(v);
    return op;
}

template <typename T>
kv::RequestOp requestOp(T v) {
    kv::RequestOp op;
    op.op = std::move(v);
    return op;
}

// ---- key-values ----

void toCapnp(const kv::KeyValue& in, s::KeyValue::Builder out) {
    out.setKey(data(in.key));
    out.setValue(data(in.value));
    out.setCreateRevision(in.createRevision);
    out.setModRevision(in.modRevision);
    out.setVersion(in.version);
    out.setLease(in.lease);
}

kv::KeyValue fromCapnp(s::KeyValue::Reader in) {
    return kv::KeyValue{str(in.getKey()),    str(in.getValue()), in.getCreateRevision(),
                        in.getModRevision(), in.getVersion(),    in.getLease()};
}

void kvsToCapnp(const std::vector<kv::KeyValue>& in, capnp::List<s::KeyValue>::Builder out) {
    for (unsigned i = 0; i < in.size(); ++i)
        toCapnp(in[i], out[i]);
}

std::vector<kv::KeyValue> kvsFromCapnp(capnp::List<s::KeyValue>::Reader in) {
    std::vector<kv::KeyValue> out;
    out.reserve(in.size());
    for (auto kv : in)
        out.push_back(fromCapnp(kv));
    return out;
}

// ---- requests ----

void toCapnp(const kv::PutRequest& in, s::PutRequest::Builder out) {
    out.setKey(data(in.key));
    out.setValue(data(in.value));
    out.setLease(in.lease);
    out.setPrevKv(in.prevKv);
    out.setIgnoreValue(in.ignoreValue);
    out.setIgnoreLease(in.ignoreLease);
}

kv::PutRequest fromCapnp(s::PutRequest::Reader in) {
    kv::PutRequest p{str(in.getKey()), str(in.getValue()), in.getLease()};
    p.prevKv = in.getPrevKv();
    p.ignoreValue = in.getIgnoreValue();
    p.ignoreLease = in.getIgnoreLease();
    return p;
}

void toCapnp(const kv::DeleteRangeRequest& in, s::DeleteRangeRequest::Builder out) {
    out.setKey(data(in.key));
    out.setRangeEnd(data(in.rangeEnd));
    out.setPrevKv(in.prevKv);
}

kv::DeleteRangeRequest fromCapnp(s::DeleteRangeRequest::Reader in) {
    return kv::DeleteRangeRequest{str(in.getKey()), str(in.getRangeEnd()), in.getPrevKv()};
}

void toCapnp(const kv::TxnRequest& in, s::TxnRequest::Builder out);
kv::TxnRequest fromCapnp(s::TxnRequest::Reader in);

void opsToCapnp(const std::vector<kv::RequestOp>& in, capnp::List<s::RequestOp>::Builder out) {
    for (unsigned i = 0; i < in.size(); ++i) {
        auto b = out[i];
        std::visit(
            [&](const auto& op) {
                using T = std::decay_t<decltype(op)>;
                if constexpr (std::is_same_v<T, kv::RangeRequest>) {
                    rpc::toCapnp(op, b.initRange());
                } else if constexpr (std::is_same_v<T, kv::PutRequest>) {
                    toCapnp(op, b.initPut());
                } else if constexpr (std::is_same_v<T, kv::DeleteRangeRequest>) {
                    toCapnp(op, b.initDeleteRange());
                } else {
                    toCapnp(op, b.initTxn());
                }
            },
            in[i].op);
    }
}

std::vector<kv::RequestOp> opsFromCapnp(capnp::List<s::RequestOp>::Reader in) {
    std::vector<kv::RequestOp> out;
    out.reserve(in.size());
    for (auto op : in) {
        switch (op.which()) {
            case s::RequestOp::RANGE:
                out.push_back(requestOp(rpc::fromCapnp(op.getRange())));
                break;
            case s::RequestOp::PUT:
                out.push_back(requestOp(fromCapnp(op.getPut())));
                break;
            case s::RequestOp::DELETE_RANGE:
                out.push_back(requestOp(fromCapnp(op.getDeleteRange())));
                break;
            case s::RequestOp::TXN:
                out.push_back(requestOp(fromCapnp(op.getTxn())));
                break;
            default:
                KJ_FAIL_REQUIRE("unknown request op");
        }
    }
    return out;
}

void toCapnp(const kv::TxnRequest& in, s::TxnRequest::Builder out) {
    auto cmps = out.initCompare(static_cast<unsigned>(in.compare.size()));
    for (unsigned i = 0; i < in.compare.size(); ++i) {
        const auto& c = in.compare[i];
        auto b = cmps[i];
        b.setOp(static_cast<s::CompareOp>(c.op));
        b.setTarget(static_cast<s::CompareTarget>(c.target));
        b.setKey(data(c.key));
        b.setRangeEnd(data(c.rangeEnd));
        b.setNumber(c.number);
        b.setValue(data(c.value));
    }
    opsToCapnp(in.success, out.initSuccess(static_cast<unsigned>(in.success.size())));
    opsToCapnp(in.failure, out.initFailure(static_cast<unsigned>(in.failure.size())));
}

template <typename E>
E checkedEnum(uint16_t raw, uint16_t count, const char* what) {
    KJ_REQUIRE(raw < count, "unknown enum value", what, raw);
    return static_cast<E>(raw);
}

kv::TxnRequest fromCapnp(s::TxnRequest::Reader in) {
    kv::TxnRequest t;
    for (auto c : in.getCompare()) {
        kv::Compare cmp;
        cmp.op = checkedEnum<kv::Compare::Op>(static_cast<uint16_t>(c.getOp()), 4, "compare op");
        cmp.target = checkedEnum<kv::Compare::Target>(static_cast<uint16_t>(c.getTarget()), 5,
                                                      "compare target");
        cmp.key = str(c.getKey());
        cmp.rangeEnd = str(c.getRangeEnd());
        cmp.number = c.getNumber();
        cmp.value = str(c.getValue());
        t.compare.push_back(std::move(cmp));
    }
    t.success = opsFromCapnp(in.getSuccess());
    t.failure = opsFromCapnp(in.getFailure());
    return t;
}

// ---- responses ----

void toCapnp(const kv::TxnResponse& in, s::TxnResponse::Builder out);
kv::TxnResponse fromCapnp(s::TxnResponse::Reader in);

void toCapnp(const kv::PutResponse& in, s::PutResponse::Builder out) {
    if (in.prevKv) toCapnp(*in.prevKv, out.initPrevKv());
    out.setHasPrevKv(in.prevKv.has_value());
    out.setRevision(in.revision);
}

kv::PutResponse fromCapnp(s::PutResponse::Reader in) {
    kv::PutResponse r;
    if (in.getHasPrevKv()) r.prevKv = fromCapnp(in.getPrevKv());
    r.revision = in.getRevision();
    return r;
}

void toCapnp(const kv::DeleteRangeResponse& in, s::DeleteRangeResponse::Builder out) {
    out.setDeleted(in.deleted);
    kvsToCapnp(in.prevKvs, out.initPrevKvs(static_cast<unsigned>(in.prevKvs.size())));
    out.setRevision(in.revision);
}

kv::DeleteRangeResponse fromCapnp(s::DeleteRangeResponse::Reader in) {
    return kv::DeleteRangeResponse{in.getDeleted(), kvsFromCapnp(in.getPrevKvs()),
                                   in.getRevision()};
}

void toCapnp(const kv::TxnResponse& in, s::TxnResponse::Builder out) {
    out.setSucceeded(in.succeeded);
    out.setRevision(in.revision);
    auto list = out.initResponses(static_cast<unsigned>(in.responses.size()));
    for (unsigned i = 0; i < in.responses.size(); ++i) {
        auto b = list[i];
        std::visit(
            [&](const auto& r) {
                using T = std::decay_t<decltype(r)>;
                if constexpr (std::is_same_v<T, kv::RangeResponse>) {
                    rpc::toCapnp(r, b.initRange());
                } else if constexpr (std::is_same_v<T, kv::PutResponse>) {
                    toCapnp(r, b.initPut());
                } else if constexpr (std::is_same_v<T, kv::DeleteRangeResponse>) {
                    toCapnp(r, b.initDeleteRange());
                } else {
                    toCapnp(r, b.initTxn());
                }
            },
            in.responses[i].op);
    }
}

kv::TxnResponse fromCapnp(s::TxnResponse::Reader in) {
    kv::TxnResponse t;
    t.succeeded = in.getSucceeded();
    t.revision = in.getRevision();
    for (auto r : in.getResponses()) {
        switch (r.which()) {
            case s::ResponseOp::RANGE:
                t.responses.push_back(responseOp(rpc::fromCapnp(r.getRange())));
                break;
            case s::ResponseOp::PUT:
                t.responses.push_back(responseOp(fromCapnp(r.getPut())));
                break;
            case s::ResponseOp::DELETE_RANGE:
                t.responses.push_back(responseOp(fromCapnp(r.getDeleteRange())));
                break;
            case s::ResponseOp::TXN:
                t.responses.push_back(responseOp(fromCapnp(r.getTxn())));
                break;
            default:
                KJ_FAIL_REQUIRE("unknown response op");
        }
    }
    return t;
}

// ---- framing ----

kj::Array<capnp::word> toWords(std::string_view bytes) {
    auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), bytes.data(), words.size() * sizeof(capnp::word));
    return words;
}

// The flat message straight into the string: one allocation and one copy.
std::string toBytes(capnp::MessageBuilder& message) {
    std::string bytes(capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word), '\0');
    kj::ArrayOutputStream out(
        kj::arrayPtr(reinterpret_cast<kj::byte*>(bytes.data()), bytes.size()));
    capnp::writeMessage(out, message);
    return bytes;
}

// Builds a message in a first segment reused by the thread, then flattens it. Cap'n Proto's
// default first segment is 8 KiB, allocated zeroed for every message: that zeroing was 3% of a
// member's CPU under load. A builder given a zeroed segment zeroes again only the words it
// used, when it is destroyed. A nested encode (none today) gets a segment of its own.
template <typename Fill>
std::string encodeMessage(Fill&& fill) {
    constexpr size_t kWords = 1024;
    struct Scratch {
        capnp::word words[kWords];  // zero: thread storage is zero-initialized
        bool busy = false;
    };
    thread_local Scratch scratch;
    if (scratch.busy) {
        capnp::MallocMessageBuilder message;
        fill(message);
        return toBytes(message);
    }
    scratch.busy = true;
    KJ_DEFER(scratch.busy = false);
    capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.words, kWords));
    fill(message);
    return toBytes(message);
}

capnp::ReaderOptions readerOptions(const DecodeLimits& limits) {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = limits.traversalWords;
    o.nestingLimit = limits.nestingLimit;
    return o;
}

// Runs `fn` on the checked message; every Cap'n Proto failure becomes a DecodeError.
template <typename T, typename Fn>
DecodeResult<T> decode(std::string_view bytes, const DecodeLimits& limits, Fn&& fn) {
    auto size = checkFrame(bytes, limits);
    if (!size.ok()) return fail(size.error());
    auto words = toWords(bytes);
    try {
        capnp::FlatArrayMessageReader reader(words, readerOptions(limits));
        return DecodeResult<T>(fn(reader));
    } catch (const kj::Exception& e) {
        return fail(DecodeError{std::string("malformed message: ") + e.getDescription().cStr()});
    }
}

}  // namespace

DecodeResult<size_t> checkFrame(std::string_view bytes, const DecodeLimits& limits) {
    if (bytes.size() < 8 || bytes.size() % 8 != 0) {
        return fail(DecodeError{"message is not a whole number of 8-byte words"});
    }
    uint32_t last;
    std::memcpy(&last, bytes.data(), 4);
    uint64_t segments = uint64_t{last} + 1;
    if (segments > limits.maxSegments) {
        return fail(DecodeError{"message has " + std::to_string(segments) + " segments"});
    }
    uint64_t tableWords = segments / 2 + 1;
    if (tableWords * 8 > bytes.size()) return fail(DecodeError{"message segment table truncated"});
    uint64_t total = tableWords;
    for (uint64_t i = 0; i < segments; ++i) {
        uint32_t size;
        std::memcpy(&size, bytes.data() + 4 + 4 * i, 4);
        total += size;
    }
    if (total * 8 != bytes.size()) {
        return fail(DecodeError{"message segment sizes do not match its length"});
    }
    return static_cast<size_t>(total);
}

void toCapnp(const kv::RangeRequest& in, s::RangeRequest::Builder out) {
    out.setKey(data(in.key));
    out.setRangeEnd(data(in.rangeEnd));
    out.setLimit(in.limit);
    out.setRevision(in.revision);
    out.setSortOrder(static_cast<s::SortOrder>(in.sortOrder));
    out.setSortTarget(static_cast<s::SortTarget>(in.sortTarget));
    out.setKeysOnly(in.keysOnly);
    out.setCountOnly(in.countOnly);
    out.setMinModRevision(in.minModRevision);
    out.setMaxModRevision(in.maxModRevision);
    out.setMinCreateRevision(in.minCreateRevision);
    out.setMaxCreateRevision(in.maxCreateRevision);
}

kv::RangeRequest fromCapnp(s::RangeRequest::Reader in) {
    kv::RangeRequest r;
    r.key = str(in.getKey());
    r.rangeEnd = str(in.getRangeEnd());
    r.limit = in.getLimit();
    r.revision = in.getRevision();
    r.sortOrder =
        checkedEnum<kv::SortOrder>(static_cast<uint16_t>(in.getSortOrder()), 3, "sort order");
    r.sortTarget =
        checkedEnum<kv::SortTarget>(static_cast<uint16_t>(in.getSortTarget()), 5, "sort target");
    r.keysOnly = in.getKeysOnly();
    r.countOnly = in.getCountOnly();
    r.minModRevision = in.getMinModRevision();
    r.maxModRevision = in.getMaxModRevision();
    r.minCreateRevision = in.getMinCreateRevision();
    r.maxCreateRevision = in.getMaxCreateRevision();
    return r;
}

void toCapnp(const kv::RangeResponse& in, s::RangeResponse::Builder out) {
    kvsToCapnp(in.kvs, out.initKvs(static_cast<unsigned>(in.kvs.size())));
    out.setMore(in.more);
    out.setCount(in.count);
    out.setRevision(in.revision);
    out.setTruncated(in.truncated);
}

kv::RangeResponse fromCapnp(s::RangeResponse::Reader in) {
    return kv::RangeResponse{kvsFromCapnp(in.getKvs()), in.getMore(), in.getCount(),
                             in.getRevision(), in.getTruncated()};
}

void requestToCapnp(const kv::Request& request, s::WriteRequest::Builder w) {
    std::visit(
        [&](const auto& r) {
            using T = std::decay_t<decltype(r)>;
            if constexpr (std::is_same_v<T, kv::PutRequest>) {
                toCapnp(r, w.initPut());
            } else if constexpr (std::is_same_v<T, kv::DeleteRangeRequest>) {
                toCapnp(r, w.initDeleteRange());
            } else if constexpr (std::is_same_v<T, kv::TxnRequest>) {
                toCapnp(r, w.initTxn());
            } else if constexpr (std::is_same_v<T, kv::LeaseGrantRequest>) {
                auto b = w.initLeaseGrant();
                b.setId(r.id);
                b.setTtlSeconds(r.ttlSeconds);
            } else if constexpr (std::is_same_v<T, kv::LeaseRevokeRequest>) {
                w.initLeaseRevoke().setId(r.id);
            } else if constexpr (std::is_same_v<T, kv::CompactRequest>) {
                w.initCompact().setRevision(r.revision);
            } else {
                auto a = w.initAlarm();
                a.setActivate(r.action == kv::AlarmRequest::Action::Activate);
                a.setMember(r.memberId);
                a.setKind(r.kind == kv::AlarmRequest::Kind::Corrupt ? s::AlarmKind::CORRUPT
                                                                    : s::AlarmKind::NO_SPACE);
            }
        },
        request);
}

kv::Request requestFromCapnp(s::WriteRequest::Reader w) {
    switch (w.which()) {
        case s::WriteRequest::PUT:
            return fromCapnp(w.getPut());
        case s::WriteRequest::DELETE_RANGE:
            return fromCapnp(w.getDeleteRange());
        case s::WriteRequest::TXN:
            return fromCapnp(w.getTxn());
        case s::WriteRequest::LEASE_GRANT:
            return kv::LeaseGrantRequest{w.getLeaseGrant().getId(),
                                         w.getLeaseGrant().getTtlSeconds()};
        case s::WriteRequest::LEASE_REVOKE:
            return kv::LeaseRevokeRequest{w.getLeaseRevoke().getId()};
        case s::WriteRequest::COMPACT:
            return kv::CompactRequest{w.getCompact().getRevision()};
        case s::WriteRequest::ALARM:
            return kv::AlarmRequest{
                w.getAlarm().getActivate() ? kv::AlarmRequest::Action::Activate
                                           : kv::AlarmRequest::Action::Deactivate,
                w.getAlarm().getMember(),
                checkedEnum<kv::AlarmRequest::Kind>(static_cast<uint16_t>(w.getAlarm().getKind()),
                                                    2, "alarm kind")};
    }
    KJ_FAIL_REQUIRE("unknown write request");
}

namespace {

constexpr uint64_t kEnvelopeWords = 48;  // the header, unions and pointers around the payload
constexpr uint64_t kPerItemWords = 12;   // one key-value, op or compare struct with pointers

uint64_t words(const std::string& s) {
    return (s.size() + sizeof(capnp::word) - 1) / sizeof(capnp::word);
}

uint64_t payloadWords(const kv::TxnRequest& t);

uint64_t payloadWords(const kv::RequestOp& op) {
    return std::visit(
        [](const auto& r) -> uint64_t {
            using T = std::decay_t<decltype(r)>;
            if constexpr (std::is_same_v<T, kv::PutRequest>) {
                return kPerItemWords + words(r.key) + words(r.value);
            } else if constexpr (std::is_same_v<T, kv::TxnRequest>) {
                return kPerItemWords + payloadWords(r);
            } else {
                return kPerItemWords + words(r.key) + words(r.rangeEnd);
            }
        },
        op.op);
}

uint64_t payloadWords(const kv::TxnRequest& t) {
    uint64_t n = 0;
    for (const auto& c : t.compare)
        n += kPerItemWords + words(c.key) + words(c.rangeEnd) + words(c.value);
    for (const auto& op : t.success)
        n += payloadWords(op);
    for (const auto& op : t.failure)
        n += payloadWords(op);
    return n;
}

capnp::MessageSize messageSize(uint64_t payload) {
    return {kEnvelopeWords + payload, 0};
}

}  // namespace

capnp::MessageSize writeRequestSize(const kv::Request& request) {
    if (auto* put = std::get_if<kv::PutRequest>(&request))
        return messageSize(words(put->key) + words(put->value));
    if (auto* del = std::get_if<kv::DeleteRangeRequest>(&request))
        return messageSize(words(del->key) + words(del->rangeEnd));
    if (auto* txn = std::get_if<kv::TxnRequest>(&request)) return messageSize(payloadWords(*txn));
    return messageSize(0);
}

capnp::MessageSize rangeRequestSize(const kv::RangeRequest& request) {
    return messageSize(words(request.key) + words(request.rangeEnd));
}

capnp::MessageSize rangeResultSize(const kv::RangeResponse* response) {
    uint64_t n = 0;
    if (response) {
        for (const auto& kv : response->kvs)
            n += kPerItemWords + words(kv.key) + words(kv.value);
    }
    return messageSize(n);
}

std::string encodeWrite(uint64_t id, const kv::Request& request) {
    return encodeMessage([&](capnp::MessageBuilder& message) {
        auto w = message.initRoot<s::WriteRequest>();
        w.setId(id);
        requestToCapnp(request, w);
    });
}

DecodeResult<std::pair<uint64_t, kv::Request>> decodeWrite(std::string_view bytes,
                                                           const DecodeLimits& limits) {
    return decode<std::pair<uint64_t, kv::Request>>(
        bytes, limits, [](capnp::MessageReader& reader) -> std::pair<uint64_t, kv::Request> {
            auto w = reader.getRoot<s::WriteRequest>();
            return {w.getId(), requestFromCapnp(w)};
        });
}

void responseToCapnp(const kv::KvResult<kv::Response>& result, s::WriteResponse::Builder w) {
    if (!result.ok()) {
        auto e = w.initError();
        e.setCode(static_cast<s::ErrorCode>(result.error().code));
        e.setMessage(result.error().message);
        e.setRevision(result.error().revision);
        return;
    }
    std::visit(
        [&](const auto& r) {
            using T = std::decay_t<decltype(r)>;
            if constexpr (std::is_same_v<T, kv::PutResponse>) {
                toCapnp(r, w.initPut());
            } else if constexpr (std::is_same_v<T, kv::DeleteRangeResponse>) {
                toCapnp(r, w.initDeleteRange());
            } else if constexpr (std::is_same_v<T, kv::TxnResponse>) {
                toCapnp(r, w.initTxn());
            } else if constexpr (std::is_same_v<T, kv::LeaseGrantResponse>) {
                auto b = w.initLeaseGrant();
                b.setId(r.id);
                b.setTtlSeconds(r.ttlSeconds);
                b.setRevision(r.revision);
            } else if constexpr (std::is_same_v<T, kv::LeaseRevokeResponse>) {
                w.initLeaseRevoke().setRevision(r.revision);
            } else if constexpr (std::is_same_v<T, kv::CompactResponse>) {
                w.initCompact().setRevision(r.revision);
            } else {
                auto a = w.initAlarm();
                a.setRevision(r.revision);
                auto list = a.initNoSpace(static_cast<unsigned>(r.noSpace.size()));
                for (unsigned i = 0; i < r.noSpace.size(); ++i)
                    list.set(i, r.noSpace[i]);
                auto corrupt = a.initCorrupt(static_cast<unsigned>(r.corrupt.size()));
                for (unsigned i = 0; i < r.corrupt.size(); ++i)
                    corrupt.set(i, r.corrupt[i]);
            }
        },
        result.value());
}

kv::KvResult<kv::Response> responseFromCapnp(s::WriteResponse::Reader w) {
    switch (w.which()) {
        case s::WriteResponse::ERROR: {
            auto e = w.getError();
            auto code = checkedEnum<kv::ErrorCode>(static_cast<uint16_t>(e.getCode()),
                                                   kv::kErrorCodeCount, "error code");
            return fail(kv::Error{code, e.getMessage().cStr(), e.getRevision()});
        }
        case s::WriteResponse::PUT:
            return kv::Response{fromCapnp(w.getPut())};
        case s::WriteResponse::DELETE_RANGE:
            return kv::Response{fromCapnp(w.getDeleteRange())};
        case s::WriteResponse::TXN:
            return kv::Response{fromCapnp(w.getTxn())};
        case s::WriteResponse::LEASE_GRANT: {
            auto g = w.getLeaseGrant();
            return kv::Response{
                kv::LeaseGrantResponse{g.getId(), g.getTtlSeconds(), g.getRevision()}};
        }
        case s::WriteResponse::LEASE_REVOKE:
            return kv::Response{kv::LeaseRevokeResponse{w.getLeaseRevoke().getRevision()}};
        case s::WriteResponse::COMPACT:
            return kv::Response{kv::CompactResponse{w.getCompact().getRevision()}};
        case s::WriteResponse::ALARM: {
            kv::AlarmResponse a;
            a.revision = w.getAlarm().getRevision();
            for (auto id : w.getAlarm().getNoSpace())
                a.noSpace.push_back(id);
            for (auto id : w.getAlarm().getCorrupt())
                a.corrupt.push_back(id);
            return kv::Response{std::move(a)};
        }
    }
    KJ_FAIL_REQUIRE("unknown write response");
}

std::string encodeWriteResult(const kv::KvResult<kv::Response>& result) {
    return encodeMessage([&](capnp::MessageBuilder& message) {
        responseToCapnp(result, message.initRoot<s::WriteResponse>());
    });
}

DecodeResult<kv::KvResult<kv::Response>> decodeWriteResult(std::string_view bytes,
                                                           const DecodeLimits& limits) {
    return decode<kv::KvResult<kv::Response>>(
        bytes, limits, [](capnp::MessageReader& reader) -> kv::KvResult<kv::Response> {
            return responseFromCapnp(reader.getRoot<s::WriteResponse>());
        });
}

}  // namespace coord::rpc

namespace coord::rpc {

namespace {

void confToCapnp(const raft::ConfState& c, s::RaftConfState::Builder out) {
    auto v = out.initVoters(static_cast<unsigned>(c.voters.size()));
    for (unsigned i = 0; i < c.voters.size(); ++i)
        v.set(i, c.voters[i]);
    auto l = out.initLearners(static_cast<unsigned>(c.learners.size()));
    for (unsigned i = 0; i < c.learners.size(); ++i)
        l.set(i, c.learners[i]);
}

raft::ConfState confFromCapnp(s::RaftConfState::Reader in) {
    raft::ConfState c;
    for (auto v : in.getVoters())
        c.voters.push_back(v);
    for (auto l : in.getLearners())
        c.learners.push_back(l);
    return c;
}

constexpr uint8_t kMessageTypes = static_cast<uint8_t>(raft::MessageType::SnapResp) + 1;
constexpr uint8_t kEntryTypes = static_cast<uint8_t>(raft::EntryType::ConfChange) + 1;

// What the core assumes of a message, checked before a peer's message reaches it.
void validatePeerMessage(const raft::Message& m) {
    using T = raft::MessageType;
    KJ_REQUIRE(m.type != T::Hup && m.type != T::Beat, "local-only message from a peer");
    KJ_REQUIRE(m.from != raft::kNone && m.to != raft::kNone, "message without sender or target");
    KJ_REQUIRE(m.type != T::Snap || m.snapshot.has_value(), "snapshot message without snapshot");
    if (m.type == T::Append) {
        for (size_t i = 0; i < m.entries.size(); ++i) {
            KJ_REQUIRE(m.entries[i].index == m.index + 1 + i, "append entries out of sequence");
            KJ_REQUIRE(m.entries[i].term <= m.term, "append entry from a future term");
        }
    }
}

}  // namespace

std::string encodePeerFrame(uint64_t clusterId, const raft::Message& m) {
    return encodeMessage([&](capnp::MessageBuilder& message) {
        auto f = message.initRoot<s::PeerFrame>();
        f.setClusterId(clusterId);
        auto b = f.initMessage();
        b.setType(static_cast<uint8_t>(m.type));
        b.setFrom(m.from);
        b.setTo(m.to);
        b.setTerm(m.term);
        b.setLogTerm(m.logTerm);
        b.setIndex(m.index);
        auto ents = b.initEntries(static_cast<unsigned>(m.entries.size()));
        for (unsigned i = 0; i < m.entries.size(); ++i) {
            const auto& e = m.entries[i];
            ents[i].setTerm(e.term);
            ents[i].setIndex(e.index);
            ents[i].setType(static_cast<uint8_t>(e.type));
            ents[i].setData(data(e.data));
        }
        b.setCommit(m.commit);
        b.setReject(m.reject);
        b.setRejectHint(m.rejectHint);
        b.setHintTerm(m.hintTerm);
        if (m.snapshot) {
            auto sn = b.initSnapshot();
            sn.setIndex(m.snapshot->meta.index);
            sn.setTerm(m.snapshot->meta.term);
            confToCapnp(m.snapshot->meta.conf, sn.initConf());
            sn.setData(data(m.snapshot->data));
        }
        b.setHasSnapshot(m.snapshot.has_value());
        b.setSnapOffset(m.snapOffset);
        b.setSnapId(m.snapId);
        b.setSnapLast(m.snapLast);
        b.setContext(data(m.context));
    });
}

DecodeResult<std::pair<uint64_t, raft::Message>> decodePeerFrame(std::string_view bytes,
                                                                 const DecodeLimits& limits) {
    return decode<std::pair<uint64_t, raft::Message>>(
        bytes, limits, [](capnp::MessageReader& reader) -> std::pair<uint64_t, raft::Message> {
            auto f = reader.getRoot<s::PeerFrame>();
            auto b = f.getMessage();
            raft::Message m;
            KJ_REQUIRE(b.getType() < kMessageTypes, "unknown raft message type", b.getType());
            m.type = static_cast<raft::MessageType>(b.getType());
            m.from = b.getFrom();
            m.to = b.getTo();
            m.term = b.getTerm();
            m.logTerm = b.getLogTerm();
            m.index = b.getIndex();
            for (auto e : b.getEntries()) {
                KJ_REQUIRE(e.getType() < kEntryTypes, "unknown raft entry type", e.getType());
                m.entries.push_back(raft::Entry{e.getTerm(), e.getIndex(),
                                                static_cast<raft::EntryType>(e.getType()),
                                                str(e.getData())});
            }
            m.commit = b.getCommit();
            m.reject = b.getReject();
            m.rejectHint = b.getRejectHint();
            m.hintTerm = b.getHintTerm();
            if (b.getHasSnapshot()) {
                auto sn = b.getSnapshot();
                raft::Snapshot snap;
                snap.meta.index = sn.getIndex();
                snap.meta.term = sn.getTerm();
                snap.meta.conf = confFromCapnp(sn.getConf());
                snap.data = str(sn.getData());
                m.snapshot = std::move(snap);
            }
            m.snapOffset = b.getSnapOffset();
            m.snapId = b.getSnapId();
            m.snapLast = b.getSnapLast();
            m.context = str(b.getContext());
            validatePeerMessage(m);
            return {f.getClusterId(), std::move(m)};
        });
}

void toCapnp(const kv::WatchRequest& in, s::WatchRequest::Builder out) {
    out.setKey(data(in.key));
    out.setRangeEnd(data(in.rangeEnd));
    out.setStartRevision(in.startRevision);
    out.setNoPut(in.noPut);
    out.setNoDelete(in.noDelete);
    out.setPrevKv(in.prevKv);
}

kv::WatchRequest fromCapnp(s::WatchRequest::Reader in) {
    kv::WatchRequest r;
    r.key = str(in.getKey());
    r.rangeEnd = str(in.getRangeEnd());
    r.startRevision = in.getStartRevision();
    r.noPut = in.getNoPut();
    r.noDelete = in.getNoDelete();
    r.prevKv = in.getPrevKv();
    return r;
}

void toCapnp(const kv::Event& in, bool withPrevKv, s::Event::Builder out) {
    out.setType(in.type == kv::Event::Type::Put ? s::EventType::PUT : s::EventType::DELETE);
    toCapnp(in.kv, out.initKv());
    if (withPrevKv && in.prevKv) {
        out.setHasPrevKv(true);
        toCapnp(*in.prevKv, out.initPrevKv());
    }
}

kv::Event fromCapnp(s::Event::Reader in) {
    kv::Event e;
    e.type = checkedEnum<kv::Event::Type>(static_cast<uint16_t>(in.getType()), 2, "event type");
    e.kv = fromCapnp(in.getKv());
    if (in.getHasPrevKv()) e.prevKv = fromCapnp(in.getPrevKv());
    return e;
}

void toCapnp(const kv::Error& in, s::Error::Builder out) {
    out.setCode(static_cast<s::ErrorCode>(in.code));
    out.setMessage(in.message);
    out.setRevision(in.revision);
}

kv::Error fromCapnp(s::Error::Reader in) {
    return kv::Error{checkedEnum<kv::ErrorCode>(static_cast<uint16_t>(in.getCode()),
                                                kv::kErrorCodeCount, "error code"),
                     in.getMessage(), in.getRevision()};
}

}  // namespace coord::rpc
