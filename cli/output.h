// What coordctl prints: the simple form (etcdctl's: key and value on their own lines) and JSON
// (one object per line; keys and values as JSON strings, bytes that are not printable ASCII
// escaped as \u00XX).
#pragma once

#include <string>

#include "rpc/client.h"

namespace coord::cli {

// One member's answer to `endpoint hashkv`.
struct MemberHash {
    std::string endpoint;
    kv::HashKVResponse hash;
};

std::string jsonString(const std::string& bytes);
std::string toJson(const KeyValue& kv);
std::string toJson(const RangeResponse& r);
std::string toJson(const PutResponse& r);
std::string toJson(const DeleteRangeResponse& r);
std::string toJson(const TxnResponse& r);
std::string toJson(const Event& e);
std::string toJson(const MemberStatus& s);
std::string toJson(const MemberHash& h);
std::string toJson(const std::vector<Member>& members);

template <typename T>
void printJson(const T& value) {
    std::printf("%s\n", toJson(value).c_str());
}

void printSimple(const KeyValue& kv, bool withValue);
void printSimple(const Event& e, bool withPrevKv);
void printSimple(const TxnResponse& r);
// True when a range in the txn (or a nested one) was cut at the member's response size bound.
bool anyTruncated(const TxnResponse& r);
void printSimple(const MemberStatus& s);
void printSimple(const MemberHash& h);
void printSimple(const std::vector<Member>& members);

// `-w table`: rows under a header in a box, columns as wide as their widest cell.
void printTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);
std::vector<std::string> tableRow(const KeyValue& kv, bool withValue);
std::vector<std::string> tableRow(const MemberStatus& s);
std::vector<std::string> tableRow(const MemberHash& h);
std::vector<std::string> tableRow(const Member& m);

}  // namespace coord::cli
