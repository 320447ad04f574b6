// The text form of a transaction read by `coordctl txn` (etcdctl's interactive format):
//
//   <compares, one per line>
//   <blank line>
//   <success ops, one per line>
//   <blank line>
//   <failure ops, one per line>
//
// compare:  TARGET("KEY") OP "VALUE"   TARGET: value|val, version|ver, create, mod, lease;
//                                      OP: =, !=, >, <
// op:       put KEY VALUE | get KEY [--prefix] | del KEY [--prefix]
// Tokens may be double-quoted (with \" and \\ escapes) to hold spaces.
#pragma once

#include <string>

#include "common/result.h"
#include "kv/types.h"

namespace coord::cli {

Result<kv::TxnRequest, std::string> parseTxn(const std::string& text);

}  // namespace coord::cli
