// Conversion between kv/ request and response values and their Cap'n Proto form, and the
// encoding of Raft entry payloads.
//
// Everything decoded here may come from an untrusted peer or client: decoding checks the frame
// (segment count and sizes) before Cap'n Proto sees it, reads under traversal and nesting
// limits, and turns every decoding failure into a DecodeError instead of an exception.
#pragma once

#include <capnp/message.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"
#include "kv/types.h"
#include "raft/types.h"
#include "rpc/coord.capnp.h"

namespace coord::rpc {

struct DecodeError {
    std::string message;
};

template <typename T>
using DecodeResult = Result<T, DecodeError>;

struct DecodeLimits {
    uint64_t traversalWords = uint64_t{1} << 20;  // 8 MiB of reads per message
    int nestingLimit = 64;
    uint32_t maxSegments = 512;
};

// Checks a flat Cap'n Proto message (segment table + segments) without trusting it: returns
// its size in words, or an error when the table is absurd or does not match the bytes.
DecodeResult<size_t> checkFrame(std::string_view bytes, const DecodeLimits& limits = {});

// A Raft entry payload: the proposer's request id and the write request.
std::string encodeWrite(uint64_t id, const kv::Request& request);
DecodeResult<std::pair<uint64_t, kv::Request>> decodeWrite(std::string_view bytes,
                                                           const DecodeLimits& limits = {});

// The outcome of a write, as sent back to a client.
std::string encodeWriteResult(const kv::KvResult<kv::Response>& result);
DecodeResult<kv::KvResult<kv::Response>> decodeWriteResult(std::string_view bytes,
                                                           const DecodeLimits& limits = {});

// A Raft message between members, with the sender's cluster id.
std::string encodePeerFrame(uint64_t clusterId, const raft::Message& message);
DecodeResult<std::pair<uint64_t, raft::Message>> decodePeerFrame(std::string_view bytes,
                                                                 const DecodeLimits& limits = {});

// First-segment sizes for RPC messages. Without one, Cap'n Proto allocates an 8 KiB segment,
// zeroed, for every call and every return; these cover the usual message whole, and a larger
// one grows into further segments.
inline constexpr capnp::MessageSize kSmallMessage{64, 0};
capnp::MessageSize writeRequestSize(const kv::Request& request);
capnp::MessageSize rangeRequestSize(const kv::RangeRequest& request);
capnp::MessageSize rangeResultSize(const kv::RangeResponse* response);  // null: no keys

// Field-by-field conversions, for the RPC services. fromCapnp throws kj::Exception on
// malformed input (an unknown enum value, an unknown union member).
kv::Request requestFromCapnp(schema::WriteRequest::Reader in);
void requestToCapnp(const kv::Request& in, schema::WriteRequest::Builder out);
void responseToCapnp(const kv::KvResult<kv::Response>& in, schema::WriteResponse::Builder out);
kv::KvResult<kv::Response> responseFromCapnp(schema::WriteResponse::Reader in);
void toCapnp(const kv::RangeRequest& in, schema::RangeRequest::Builder out);
kv::RangeRequest fromCapnp(schema::RangeRequest::Reader in);
void toCapnp(const kv::RangeResponse& in, schema::RangeResponse::Builder out);
kv::RangeResponse fromCapnp(schema::RangeResponse::Reader in);

void toCapnp(const kv::WatchRequest& in, schema::WatchRequest::Builder out);
kv::WatchRequest fromCapnp(schema::WatchRequest::Reader in);
// prevKv is sent only when withPrevKv (the hub may attach it to events of watchers that did
// not ask for it).
void toCapnp(const kv::Event& in, bool withPrevKv, schema::Event::Builder out);
kv::Event fromCapnp(schema::Event::Reader in);
void toCapnp(const kv::Error& in, schema::Error::Builder out);
kv::Error fromCapnp(schema::Error::Reader in);

}  // namespace coord::rpc
