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
    }
    return "Unknown";
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
