// coordctl's txn text format and JSON output.
#include <catch2/catch.hpp>

#include "cli/output.h"
#include "cli/txn_parser.h"

using namespace coord;
using namespace coord::cli;

TEST_CASE("the txn parser reads compares, success and failure ops", "[cli][txn]") {
    auto t = parseTxn(
        "mod(\"a\") > \"5\"\nvalue(\"b b\") != \"x \\\"y\\\"\"\nver(\"c\") = \"0\"\n\n"
        "put a \"new value\"\ndel p/ --prefix\n\nget a\nget p/ --prefix\n");
    REQUIRE(t.ok());
    REQUIRE(t->compare.size() == 3);
    CHECK(t->compare[0].target == kv::Compare::Target::Mod);
    CHECK(t->compare[0].op == kv::Compare::Op::Greater);
    CHECK(t->compare[0].number == 5);
    CHECK(t->compare[1].key == "b b");
    CHECK(t->compare[1].value == "x \"y\"");
    CHECK(t->compare[1].op == kv::Compare::Op::NotEqual);
    CHECK(t->compare[2].target == kv::Compare::Target::Version);
    REQUIRE(t->success.size() == 2);
    CHECK(std::get<kv::PutRequest>(t->success[0].op).value == "new value");
    CHECK(std::get<kv::DeleteRangeRequest>(t->success[1].op).rangeEnd == "p0");
    REQUIRE(t->failure.size() == 2);
    CHECK(std::get<kv::RangeRequest>(t->failure[1].op).rangeEnd == "p0");
}

TEST_CASE("the txn parser refuses malformed lines with a reason", "[cli][txn]") {
    CHECK_FALSE(parseTxn("mod(\"a\") > \"five\"\n").ok());
    CHECK_FALSE(parseTxn("size(\"a\") = \"1\"\n").ok());
    CHECK_FALSE(parseTxn("mod(\"a\") >= \"1\"\n").ok());
    CHECK_FALSE(parseTxn("\nput onlykey\n").ok());
    CHECK_FALSE(parseTxn("\nfrob k\n").ok());
    CHECK_FALSE(parseTxn("\nput \"unterminated v\n").ok());
    auto empty = parseTxn("");
    REQUIRE(empty.ok());
    CHECK(empty->compare.empty());
}

TEST_CASE("JSON output escapes quotes, control bytes and non-ASCII bytes", "[cli][json]") {
    CHECK(jsonString("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(jsonString(std::string("\n\x01\xff", 3)) == "\"\\u000a\\u0001\\u00ff\"");
    Event e;
    e.type = Event::Type::Delete;
    e.kv.key = "k";
    e.kv.modRevision = 7;
    CHECK(toJson(e) ==
          "{\"type\":\"DELETE\",\"kv\":{\"key\":\"k\",\"value\":\"\",\"create_revision\":0,"
          "\"mod_revision\":7,\"version\":0,\"lease\":0}}");
}
