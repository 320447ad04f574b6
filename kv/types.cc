#include "kv/types.h"

namespace coord::kv {

const char* errorCodeName(ErrorCode code) {
    switch (code) {
        case ErrorCode::InvalidArgument:
            return "InvalidArgument";
        case ErrorCode::EmptyKey:
            return "EmptyKey";
        case ErrorCode::KeyTooLarge:
            return "KeyTooLarge";
        case ErrorCode::ValueTooLarge:
            return "ValueTooLarge";
        case ErrorCode::TooManyOps:
            return "TooManyOps";
        case ErrorCode::DuplicateKey:
            return "DuplicateKey";
        case ErrorCode::KeyNotFound:
            return "KeyNotFound";
        case ErrorCode::Compacted:
            return "Compacted";
        case ErrorCode::FutureRevision:
            return "FutureRevision";
        case ErrorCode::LeaseNotFound:
            return "LeaseNotFound";
        case ErrorCode::LeaseExists:
            return "LeaseExists";
        case ErrorCode::NoSpace:
            return "NoSpace";
        case ErrorCode::AlreadyApplied:
            return "AlreadyApplied";
        case ErrorCode::MemberExists:
            return "MemberExists";
        case ErrorCode::MemberNotFound:
            return "MemberNotFound";
        case ErrorCode::LearnerNotReady:
            return "LearnerNotReady";
        case ErrorCode::MemberBusy:
            return "MemberBusy";
        case ErrorCode::TooManyWatches:
            return "TooManyWatches";
        case ErrorCode::RequestTooLarge:
            return "RequestTooLarge";
        case ErrorCode::Corrupt:
            return "Corrupt";
    }
    return "Unknown";
}

namespace {

size_t txnBytes(const TxnRequest& t) {
    size_t n = 0;
    for (const auto& c : t.compare)
        n += c.key.size() + c.rangeEnd.size() + c.value.size();
    for (const auto* ops : {&t.success, &t.failure}) {
        for (const auto& op : *ops) {
            if (const auto* p = std::get_if<PutRequest>(&op.op)) {
                n += p->key.size() + p->value.size();
            } else if (const auto* r = std::get_if<RangeRequest>(&op.op)) {
                n += r->key.size() + r->rangeEnd.size();
            } else if (const auto* d = std::get_if<DeleteRangeRequest>(&op.op)) {
                n += d->key.size() + d->rangeEnd.size();
            } else {
                n += txnBytes(std::get<TxnRequest>(op.op));
            }
        }
    }
    return n;
}

}  // namespace

size_t requestBytes(const Request& request) {
    if (const auto* p = std::get_if<PutRequest>(&request)) return p->key.size() + p->value.size();
    if (const auto* d = std::get_if<DeleteRangeRequest>(&request))
        return d->key.size() + d->rangeEnd.size();
    if (const auto* t = std::get_if<TxnRequest>(&request)) return txnBytes(*t);
    return 0;  // leases, compaction, alarms: no user data
}

std::optional<Error> checkRequestSize(const Request& request) {
    size_t bytes = requestBytes(request);
    if (bytes <= kMaxRequestBytes) return std::nullopt;
    return Error{ErrorCode::RequestTooLarge,
                 "the request carries " + std::to_string(bytes) +
                     " bytes of keys and values, more than " + std::to_string(kMaxRequestBytes) +
                     "; split it into smaller writes",
                 0};
}

std::string prefixEnd(const std::string& prefix) {
    std::string end = prefix;
    while (!end.empty()) {
        auto last = static_cast<unsigned char>(end.back());
        if (last < 0xff) {
            end.back() = static_cast<char>(last + 1);
            return end;
        }
        end.pop_back();
    }
    // Every byte was 0xff (or the prefix was empty): the range extends to the end.
    return kFromKey;
}

}  // namespace coord::kv
