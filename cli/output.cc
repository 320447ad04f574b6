#include "cli/output.h"

#include <cstdio>

namespace coord::cli {

namespace {
std::string num(int64_t v) {
    return std::to_string(v);
}
std::string unum(uint64_t v) {
    return std::to_string(v);
}

std::string kvsJson(const std::vector<KeyValue>& kvs) {
    std::string out = "[";
    for (size_t i = 0; i < kvs.size(); ++i)
        out += (i ? "," : "") + toJson(kvs[i]);
    return out + "]";
}
}  // namespace

std::string jsonString(const std::string& bytes) {
    std::string out = "\"";
    for (unsigned char c : bytes) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        }
    }
    return out + "\"";
}

std::string toJson(const KeyValue& kv) {
    return "{\"key\":" + jsonString(kv.key) + ",\"value\":" + jsonString(kv.value) +
           ",\"create_revision\":" + num(kv.createRevision) +
           ",\"mod_revision\":" + num(kv.modRevision) + ",\"version\":" + num(kv.version) +
           ",\"lease\":" + num(kv.lease) + "}";
}

std::string toJson(const RangeResponse& r) {
    return "{\"revision\":" + num(r.revision) + ",\"kvs\":" + kvsJson(r.kvs) +
           ",\"more\":" + (r.more ? "true" : "false") + (r.truncated ? ",\"truncated\":true" : "") +
           ",\"count\":" + num(r.count) + "}";
}

std::string toJson(const PutResponse& r) {
    std::string out = "{\"revision\":" + num(r.revision);
    if (r.prevKv) out += ",\"prev_kv\":" + toJson(*r.prevKv);
    return out + "}";
}

std::string toJson(const DeleteRangeResponse& r) {
    return "{\"revision\":" + num(r.revision) + ",\"deleted\":" + num(r.deleted) +
           ",\"prev_kvs\":" + kvsJson(r.prevKvs) + "}";
}

std::string toJson(const TxnResponse& r) {
    std::string out = "{\"revision\":" + num(r.revision) +
                      ",\"succeeded\":" + (r.succeeded ? "true" : "false") + ",\"responses\":[";
    for (size_t i = 0; i < r.responses.size(); ++i) {
        out += i ? "," : "";
        std::visit(
            [&](const auto& resp) {
                using T = std::decay_t<decltype(resp)>;
                if constexpr (std::is_same_v<T, RangeResponse>) {
                    out += "{\"range\":" + toJson(resp) + "}";
                } else if constexpr (std::is_same_v<T, PutResponse>) {
                    out += "{\"put\":" + toJson(resp) + "}";
                } else if constexpr (std::is_same_v<T, DeleteRangeResponse>) {
                    out += "{\"delete_range\":" + toJson(resp) + "}";
                } else {
                    out += "{\"txn\":" + toJson(resp) + "}";
                }
            },
            r.responses[i].op);
    }
    return out + "]}";
}

std::string toJson(const Event& e) {
    std::string out = std::string("{\"type\":\"") +
                      (e.type == Event::Type::Put ? "PUT" : "DELETE") + "\",\"kv\":" + toJson(e.kv);
    if (e.prevKv) out += ",\"prev_kv\":" + toJson(*e.prevKv);
    return out + "}";
}

std::string toJson(const MemberStatus& s) {
    return "{\"endpoint\":" + jsonString(s.endpoint) + ",\"cluster_id\":" + unum(s.clusterId) +
           ",\"member_id\":" + unum(s.memberId) + ",\"leader\":" + unum(s.leader) +
           ",\"raft_term\":" + unum(s.raftTerm) + ",\"revision\":" + num(s.revision) +
           ",\"compacted_revision\":" + num(s.compactedRevision) +
           ",\"applied_index\":" + unum(s.appliedIndex) + ",\"db_size\":" + unum(s.dbSizeBytes) +
           ",\"watchers\":" + unum(s.watchers) + ",\"version\":" + jsonString(s.version) + "}";
}

std::string toJson(const MemberHash& h) {
    return "{\"endpoint\":" + jsonString(h.endpoint) + ",\"hash\":" + unum(h.hash.hash) +
           ",\"revision\":" + num(h.hash.revision) +
           ",\"compact_revision\":" + num(h.hash.compactRevision) + "}";
}

std::string toJson(const std::vector<Member>& members) {
    std::string out = "{\"members\":[";
    for (size_t i = 0; i < members.size(); ++i) {
        const auto& m = members[i];
        if (i) out += ",";
        out += "{\"id\":" + unum(m.id) + ",\"name\":" + jsonString(m.name) +
               ",\"peer_url\":" + jsonString(m.peerUrl) +
               ",\"client_url\":" + jsonString(m.clientUrl) +
               ",\"is_learner\":" + (m.learner ? "true" : "false") + "}";
    }
    return out + "]}";
}

void printSimple(const std::vector<Member>& members) {
    for (const auto& m : members) {
        std::printf("%llx, %s, %s, %s, %s\n", static_cast<unsigned long long>(m.id),
                    m.name.empty() ? "(unnamed)" : m.name.c_str(), m.peerUrl.c_str(),
                    m.clientUrl.empty() ? "(unpublished)" : m.clientUrl.c_str(),
                    m.learner ? "learner" : "voter");
    }
}

void printSimple(const KeyValue& kv, bool withValue) {
    std::fwrite(kv.key.data(), 1, kv.key.size(), stdout);
    std::fputc('\n', stdout);
    if (withValue) {
        std::fwrite(kv.value.data(), 1, kv.value.size(), stdout);
        std::fputc('\n', stdout);
    }
}

void printSimple(const Event& e, bool withPrevKv) {
    std::printf("%s\n", e.type == Event::Type::Put ? "PUT" : "DELETE");
    if (withPrevKv && e.prevKv) printSimple(*e.prevKv, true);
    printSimple(e.kv, e.type == Event::Type::Put);
}

bool anyTruncated(const TxnResponse& r) {
    for (const auto& op : r.responses) {
        if (const auto* range = std::get_if<RangeResponse>(&op.op)) {
            if (range->truncated) return true;
        } else if (const auto* nested = std::get_if<TxnResponse>(&op.op)) {
            if (anyTruncated(*nested)) return true;
        }
    }
    return false;
}

void printSimple(const TxnResponse& r) {
    std::printf("%s\n", r.succeeded ? "SUCCESS" : "FAILURE");
    for (const auto& op : r.responses) {
        std::printf("\n");
        std::visit(
            [](const auto& resp) {
                using T = std::decay_t<decltype(resp)>;
                if constexpr (std::is_same_v<T, RangeResponse>) {
                    for (const auto& kv : resp.kvs)
                        printSimple(kv, true);
                } else if constexpr (std::is_same_v<T, PutResponse>) {
                    std::printf("OK\n");
                } else if constexpr (std::is_same_v<T, DeleteRangeResponse>) {
                    std::printf("%lld\n", static_cast<long long>(resp.deleted));
                } else {
                    printSimple(resp);
                }
            },
            op.op);
    }
}

void printSimple(const MemberStatus& s) {
    std::printf(
        "%s, member %llx, leader %llx, term %llu, revision %lld, applied index %llu, "
        "db %.1f MiB, watchers %llu, version %s\n",
        s.endpoint.c_str(), static_cast<unsigned long long>(s.memberId),
        static_cast<unsigned long long>(s.leader), static_cast<unsigned long long>(s.raftTerm),
        static_cast<long long>(s.revision), static_cast<unsigned long long>(s.appliedIndex),
        static_cast<double>(s.dbSizeBytes) / (1 << 20), static_cast<unsigned long long>(s.watchers),
        s.version.c_str());
}

void printSimple(const MemberHash& h) {
    std::printf("%s, hash %08x, revision %lld, compact revision %lld\n", h.endpoint.c_str(),
                static_cast<unsigned>(h.hash.hash), static_cast<long long>(h.hash.revision),
                static_cast<long long>(h.hash.compactRevision));
}

void printTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> width(header.size());
    for (size_t i = 0; i < header.size(); ++i)
        width[i] = header[i].size();
    for (const auto& row : rows)
        for (size_t i = 0; i < row.size() && i < width.size(); ++i)
            width[i] = std::max(width[i], row[i].size());
    auto rule = [&] {
        std::string line = "+";
        for (auto w : width)
            line += std::string(w + 2, '-') + "+";
        std::printf("%s\n", line.c_str());
    };
    auto line = [&](const std::vector<std::string>& cells) {
        std::string out = "|";
        for (size_t i = 0; i < width.size(); ++i) {
            std::string cell = i < cells.size() ? cells[i] : "";
            out += " " + cell + std::string(width[i] - cell.size(), ' ') + " |";
        }
        std::printf("%s\n", out.c_str());
    };
    rule();
    line(header);
    rule();
    for (const auto& row : rows)
        line(row);
    rule();
}

namespace {
std::string hex(uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(v));
    return b;
}
}  // namespace

std::vector<std::string> tableRow(const KeyValue& kv, bool withValue) {
    return {kv.key,
            withValue ? kv.value : "",
            std::to_string(kv.createRevision),
            std::to_string(kv.modRevision),
            std::to_string(kv.version),
            kv.lease ? std::to_string(kv.lease) : ""};
}

std::vector<std::string> tableRow(const MemberStatus& s) {
    char db[32];
    std::snprintf(db, sizeof db, "%.1f MiB", static_cast<double>(s.dbSizeBytes) / (1 << 20));
    return {s.endpoint,
            hex(s.memberId),
            s.leader ? hex(s.leader) : "none",
            s.leader && s.leader == s.memberId ? "true" : "false",
            std::to_string(s.raftTerm),
            std::to_string(s.revision),
            std::to_string(s.appliedIndex),
            db,
            s.version};
}

std::vector<std::string> tableRow(const MemberHash& h) {
    char hash[16];
    std::snprintf(hash, sizeof hash, "%08x", static_cast<unsigned>(h.hash.hash));
    return {h.endpoint, hash, std::to_string(h.hash.revision),
            std::to_string(h.hash.compactRevision)};
}

std::vector<std::string> tableRow(const Member& m) {
    return {hex(m.id), m.name, m.peerUrl, m.clientUrl, m.learner ? "true" : "false"};
}

}  // namespace coord::cli
