#include "cli/txn_parser.h"

#include <sstream>
#include <vector>

namespace coord::cli {

namespace {

// Splits a line into tokens; double quotes group, backslash escapes inside quotes.
Result<std::vector<std::string>, std::string> tokenize(const std::string& line) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < line.size()) {
        if (std::isspace(static_cast<unsigned char>(line[i]))) {
            ++i;
            continue;
        }
        std::string token;
        if (line[i] == '"') {
            ++i;
            bool closed = false;
            while (i < line.size()) {
                char c = line[i++];
                if (c == '\\' && i < line.size()) {
                    token += line[i++];
                } else if (c == '"') {
                    closed = true;
                    break;
                } else {
                    token += c;
                }
            }
            if (!closed) return fail(std::string("unterminated quote in: ") + line);
        } else {
            while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i])))
                token += line[i++];
        }
        out.push_back(token);
    }
    return out;
}

Result<kv::Compare, std::string> parseCompare(const std::string& line) {
    // TARGET("KEY") OP "VALUE": split at the first '(' and the matching ')'.
    auto open = line.find('(');
    auto close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) {
        return fail("bad compare (want TARGET(\"KEY\") OP \"VALUE\"): " + line);
    }
    std::string target = line.substr(0, open);
    while (!target.empty() && std::isspace(static_cast<unsigned char>(target.back())))
        target.pop_back();
    while (!target.empty() && std::isspace(static_cast<unsigned char>(target.front())))
        target.erase(0, 1);
    auto keyTokens = tokenize(line.substr(open + 1, close - open - 1));
    if (!keyTokens.ok() || keyTokens->size() != 1) return fail("bad compare key: " + line);
    auto rest = tokenize(line.substr(close + 1));
    if (!rest.ok()) return fail(rest.error());
    if (rest->size() != 2) return fail("bad compare (want OP \"VALUE\" after the key): " + line);

    kv::Compare c;
    c.key = (*keyTokens)[0];
    const std::string& op = (*rest)[0];
    if (op == "=" || op == "==") {
        c.op = kv::Compare::Op::Equal;
    } else if (op == "!=") {
        c.op = kv::Compare::Op::NotEqual;
    } else if (op == ">") {
        c.op = kv::Compare::Op::Greater;
    } else if (op == "<") {
        c.op = kv::Compare::Op::Less;
    } else {
        return fail("bad compare operator '" + op + "' (want =, !=, > or <)");
    }
    const std::string& operand = (*rest)[1];
    if (target == "value" || target == "val") {
        c.target = kv::Compare::Target::Value;
        c.value = operand;
        return c;
    }
    if (target == "version" || target == "ver") {
        c.target = kv::Compare::Target::Version;
    } else if (target == "create") {
        c.target = kv::Compare::Target::Create;
    } else if (target == "mod") {
        c.target = kv::Compare::Target::Mod;
    } else if (target == "lease") {
        c.target = kv::Compare::Target::Lease;
    } else {
        return fail("bad compare target '" + target +
                    "' (want value, version, create, mod or lease)");
    }
    try {
        size_t used = 0;
        c.number = std::stoll(operand, &used);
        if (used != operand.size()) throw std::invalid_argument(operand);
    } catch (const std::exception&) {
        return fail("compare on " + target + " needs a number, got '" + operand + "'");
    }
    return c;
}

Result<kv::RequestOp, std::string> parseOp(const std::string& line) {
    auto tokens = tokenize(line);
    if (!tokens.ok()) return fail(tokens.error());
    auto& t = *tokens;
    if (t.empty()) return fail(std::string("empty op"));
    bool prefix = t.size() == 3 && t[2] == "--prefix";
    if (t[0] == "put") {
        if (t.size() != 3) return fail("bad op (want put KEY VALUE): " + line);
        kv::PutRequest p;
        p.key = t[1];
        p.value = t[2];
        return kv::RequestOp{p};
    }
    if (t[0] == "get" || t[0] == "del") {
        if (t.size() != 2 && !prefix)
            return fail("bad op (want " + t[0] + " KEY [--prefix]): " + line);
        std::string end = prefix ? kv::prefixEnd(t[1]) : "";
        if (t[0] == "get") {
            kv::RangeRequest r;
            r.key = t[1];
            r.rangeEnd = end;
            return kv::RequestOp{r};
        }
        kv::DeleteRangeRequest d;
        d.key = t[1];
        d.rangeEnd = end;
        return kv::RequestOp{d};
    }
    return fail("unknown op '" + t[0] + "' (want put, get or del)");
}

}  // namespace

Result<kv::TxnRequest, std::string> parseTxn(const std::string& text) {
    kv::TxnRequest txn;
    std::istringstream in(text);
    std::string line;
    int section = 0;  // 0 compares, 1 success, 2 failure
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        bool blank = line.find_first_not_of(" \t") == std::string::npos;
        if (blank) {
            if (++section > 2) break;
            continue;
        }
        if (section == 0) {
            auto c = parseCompare(line);
            if (!c.ok()) return fail(c.error());
            txn.compare.push_back(*c);
        } else {
            auto op = parseOp(line);
            if (!op.ok()) return fail(op.error());
            (section == 1 ? txn.success : txn.failure).push_back(*op);
        }
    }
    return txn;
}

}  // namespace coord::cli
