// coordctl: the command-line client (first verbs: put, get, del).
//
//   coordctl [--endpoints 127.0.0.1:2379,...] put KEY VALUE
//   coordctl get KEY [--prefix] [--rev N] [--limit N] [--keys-only] [--count-only] [--serializable]
//   coordctl del KEY [--prefix]
//   coordctl compaction REV
//   coordctl lease grant TTL | revoke ID | keep-alive ID [--once] | timetolive ID [--keys] | list
//
// Each call tries the endpoints in order and moves on when a member is unreachable or has no
// leader, for up to --command-timeout. Exit codes: 0 success, 1 the store refused the request
// (the message says why), 3 no member could answer, 105+ bad usage (CLI11).
#include <capnp/ez-rpc.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>
#include <thread>

#include "rpc/codec.h"

namespace {

using namespace coord;
namespace s = coord::rpc::schema;

constexpr int kRefused = 1;
constexpr int kUnavailable = 3;

std::vector<std::string> splitEndpoints(const std::string& list) {
    std::vector<std::string> out;
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

capnp::Data::Reader bytes(const std::string& s) {
    return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

// Runs `call` against each endpoint in turn until one answers (returns an exit code) or the
// deadline passes; `call` returns nullopt for "unavailable here, try another member". `pick`
// obtains the capability from the member's bootstrap (pipelined: one round trip).
template <typename Cap>
int withEndpoints(const std::vector<std::string>& endpoints, int timeoutMs,
                  const std::function<Cap(s::Coord::Client)>& pick,
                  const std::function<std::optional<int>(Cap&, kj::WaitScope&)>& call) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    std::string lastError = "no endpoint tried";
    for (int round = 0; std::chrono::steady_clock::now() < deadline; ++round) {
        for (const auto& ep : endpoints) {
            try {
                capnp::EzRpcClient client(ep);
                Cap cap = pick(client.getMain<s::Coord>());
                if (auto code = call(cap, client.getWaitScope())) return *code;
                lastError = ep + ": no leader here";
            } catch (const kj::Exception& e) {
                lastError = ep + ": " + e.getDescription().cStr();
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 * (round + 1), 500)));
    }
    std::fprintf(stderr, "coordctl: no member answered: %s\n", lastError.c_str());
    return kUnavailable;
}

int withFailover(const std::vector<std::string>& endpoints, int timeoutMs,
                 const std::function<std::optional<int>(s::KV::Client&, kj::WaitScope&)>& call) {
    return withEndpoints<s::KV::Client>(
        endpoints, timeoutMs, [](s::Coord::Client c) { return c.kvRequest().send().getKv(); },
        call);
}

int withLease(const std::vector<std::string>& endpoints, int timeoutMs,
              const std::function<std::optional<int>(s::Lease::Client&, kj::WaitScope&)>& call) {
    return withEndpoints<s::Lease::Client>(
        endpoints, timeoutMs, [](s::Coord::Client c) { return c.leaseRequest().send().getLease(); },
        call);
}

int storeError(s::Error::Reader e) {
    std::fprintf(stderr, "coordctl: %s\n", e.getMessage().cStr());
    return kRefused;
}

// Sends one write built by `fill`; prints its outcome with `onOk`. nullopt: try elsewhere.
std::optional<int> sendWrite(s::KV::Client& kvc, kj::WaitScope& ws,
                             const std::function<void(s::WriteRequest::Builder)>& fill,
                             const std::function<void(s::WriteResponse::Reader)>& onOk) {
    auto req = kvc.writeRequest();
    fill(req.initRequest());
    auto response = req.send().wait(ws);
    auto result = response.getResult();
    if (result.getUnavailable() != s::Unavailable::NONE) return std::nullopt;
    auto r = result.getResponse();
    if (r.which() == s::WriteResponse::ERROR) return storeError(r.getError());
    onOk(r);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"coordctl: talk to a coord cluster"};
    app.require_subcommand(1);
    std::string endpointList = "127.0.0.1:2379";
    int timeoutMs = 5000;
    app.add_option("--endpoints", endpointList, "comma-separated member client addresses")
        ->capture_default_str();
    app.add_option("--command-timeout", timeoutMs, "milliseconds to keep trying")
        ->check(CLI::Range(1, 3600000))
        ->capture_default_str();

    std::string key, value;
    bool prefix = false, keysOnly = false, countOnly = false, serializable = false;
    int64_t rev = 0, limit = 0;

    auto* put = app.add_subcommand("put", "store a value");
    put->add_option("key", key)->required();
    put->add_option("value", value)->required();

    auto* get = app.add_subcommand("get", "read a key, a prefix or a range");
    get->add_option("key", key)->required();
    get->add_flag("--prefix", prefix, "every key starting with KEY");
    get->add_option("--rev", rev, "read at this revision");
    get->add_option("--limit", limit, "at most this many keys");
    get->add_flag("--keys-only", keysOnly, "print keys only");
    get->add_flag("--count-only", countOnly, "print the number of keys only");
    get->add_flag("--serializable", serializable,
                  "answer from the member contacted, without confirming with the leader");

    int64_t leaseId = 0, ttl = 0;
    bool once = false, withKeys = false;
    put->add_option("--lease", leaseId, "attach the key to this lease");

    auto* lease = app.add_subcommand("lease", "grant, revoke, keep alive and inspect leases");
    lease->require_subcommand(1);
    auto* grant = lease->add_subcommand("grant", "grant a lease; prints its id");
    grant->add_option("ttl", ttl, "seconds")->required()->check(CLI::PositiveNumber);
    auto* revoke = lease->add_subcommand("revoke", "revoke a lease and delete its keys");
    revoke->add_option("id", leaseId)->required();
    auto* keepAlive =
        lease->add_subcommand("keep-alive", "renew a lease every TTL/3 until stopped");
    keepAlive->add_option("id", leaseId)->required();
    keepAlive->add_flag("--once", once, "renew once and exit");
    auto* timeToLive = lease->add_subcommand("timetolive", "a lease's TTL (and keys)");
    timeToLive->add_option("id", leaseId)->required();
    timeToLive->add_flag("--keys", withKeys, "also print the attached keys");
    auto* list = lease->add_subcommand("list", "every lease");

    auto* compaction = app.add_subcommand("compaction", "discard history below a revision");
    int64_t compactRev = 0;
    compaction->add_option("revision", compactRev)->required()->check(CLI::PositiveNumber);

    auto* del = app.add_subcommand("del", "delete a key or a prefix");
    del->add_option("key", key)->required();
    del->add_flag("--prefix", prefix, "every key starting with KEY");

    CLI11_PARSE(app, argc, argv);
    auto endpoints = splitEndpoints(endpointList);
    if (endpoints.empty()) {
        std::fprintf(stderr, "coordctl: --endpoints is empty\n");
        return 2;
    }

    // Every write verb: what to send and what to print when it succeeds.
    std::function<void(s::WriteRequest::Builder)> fill;
    std::function<void(s::WriteResponse::Reader)> onOk;
    if (*compaction) {
        fill = [&](s::WriteRequest::Builder w) { w.initCompact().setRevision(compactRev); };
        onOk = [&](s::WriteResponse::Reader) {
            std::printf("compacted revision %lld\n", static_cast<long long>(compactRev));
        };
    } else if (*grant) {
        fill = [&](s::WriteRequest::Builder w) { w.initLeaseGrant().setTtlSeconds(ttl); };
        onOk = [&](s::WriteResponse::Reader r) {
            std::printf("lease %lld granted with TTL %llds\n",
                        static_cast<long long>(r.getLeaseGrant().getId()),
                        static_cast<long long>(ttl));
        };
    } else if (*revoke) {
        fill = [&](s::WriteRequest::Builder w) { w.initLeaseRevoke().setId(leaseId); };
        onOk = [&](s::WriteResponse::Reader) {
            std::printf("lease %lld revoked\n", static_cast<long long>(leaseId));
        };
    } else if (*put) {
        fill = [&](s::WriteRequest::Builder w) {
            auto p = w.initPut();
            p.setKey(bytes(key));
            p.setValue(bytes(value));
            p.setLease(leaseId);
        };
        onOk = [](s::WriteResponse::Reader) { std::printf("OK\n"); };
    } else if (*del) {
        fill = [&](s::WriteRequest::Builder w) {
            auto d = w.initDeleteRange();
            d.setKey(bytes(key));
            if (prefix) d.setRangeEnd(bytes(kv::prefixEnd(key)));
        };
        onOk = [](s::WriteResponse::Reader r) {
            std::printf("%lld\n", static_cast<long long>(r.getDeleteRange().getDeleted()));
        };
    }
    if (fill) {
        return withFailover(endpoints, timeoutMs, [&](s::KV::Client& kvc, kj::WaitScope& ws) {
            return sendWrite(kvc, ws, fill, onOk);
        });
    }
    if (*keepAlive) {
        for (;;) {
            int64_t renewed = 0;
            int rc = withLease(endpoints, timeoutMs,
                               [&](s::Lease::Client& l, kj::WaitScope& ws) -> std::optional<int> {
                                   auto req = l.keepAliveRequest();
                                   req.setId(leaseId);
                                   auto response = req.send().wait(ws);
                                   auto result = response.getResult();
                                   if (result.getUnavailable() != s::Unavailable::NONE) {
                                       return std::nullopt;
                                   }
                                   if (result.which() == s::LeaseKeepAliveResult::ERROR) {
                                       return storeError(result.getError());
                                   }
                                   renewed = result.getTtlSeconds();
                                   std::printf("lease %lld keepalived with TTL(%lld)\n",
                                               static_cast<long long>(leaseId),
                                               static_cast<long long>(renewed));
                                   std::fflush(stdout);
                                   return 0;
                               });
            if (rc != 0 || once) return rc;
            std::this_thread::sleep_for(std::chrono::milliseconds(renewed * 1000 / 3));
        }
    }
    if (*timeToLive || *list) {
        return withLease(
            endpoints, timeoutMs,
            [&](s::Lease::Client& l, kj::WaitScope& ws) -> std::optional<int> {
                auto printKeys = [](s::LeaseInfo::Reader info) {
                    for (auto k : info.getKeys()) {
                        std::printf("  %.*s\n", static_cast<int>(k.size()),
                                    reinterpret_cast<const char*>(k.begin()));
                    }
                };
                if (*list) {
                    auto response = l.listRequest().send().wait(ws);
                    for (auto info : response.getLeases()) {
                        std::printf("%lld\n", static_cast<long long>(info.getId()));
                    }
                    return 0;
                }
                auto req = l.timeToLiveRequest();
                req.setId(leaseId);
                auto response = req.send().wait(ws);
                if (!response.getFound()) {
                    std::fprintf(stderr, "coordctl: lease %lld not found\n",
                                 static_cast<long long>(leaseId));
                    return kRefused;
                }
                std::printf("lease %lld granted with TTL(%llds)\n", static_cast<long long>(leaseId),
                            static_cast<long long>(response.getInfo().getTtlSeconds()));
                if (withKeys) printKeys(response.getInfo());
                return 0;
            });
    }

    return withFailover(endpoints, timeoutMs,
                        [&](s::KV::Client& kvc, kj::WaitScope& ws) -> std::optional<int> {
                            auto req = kvc.rangeRequest();
                            kv::RangeRequest r;
                            r.key = key;
                            if (prefix) r.rangeEnd = kv::prefixEnd(key);
                            r.revision = rev;
                            r.limit = limit;
                            r.keysOnly = keysOnly;
                            r.countOnly = countOnly;
                            rpc::toCapnp(r, req.initRequest());
                            req.setSerializable(serializable);
                            auto response = req.send().wait(ws);
                            auto result = response.getResult();
                            if (result.getUnavailable() != s::Unavailable::NONE) {
                                return std::nullopt;
                            }
                            if (result.which() == s::RangeResult::ERROR) {
                                return storeError(result.getError());
                            }
                            auto got = rpc::fromCapnp(result.getOk());
                            if (countOnly) {
                                std::printf("%lld\n", static_cast<long long>(got.count));
                                return 0;
                            }
                            for (const auto& kv : got.kvs) {
                                std::printf("%s\n", kv.key.c_str());
                                if (!keysOnly) std::printf("%s\n", kv.value.c_str());
                            }
                            return 0;
                        });
}
