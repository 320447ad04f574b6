// coordctl: the command-line client, built on coord::Client.
//
//   coordctl [--endpoints 127.0.0.1:2379,...] [-w simple|json] VERB ...
//   put KEY VALUE [--lease ID]
//   get KEY [--prefix] [--from-key] [--range-end END] [--rev N] [--limit N] [--keys-only]
//           [--count-only] [--serializable]
//   del KEY [--prefix] [--prev-kv]
//   txn                      (compares, success ops, failure ops from stdin; see docs)
//   watch KEY [--prefix] [--rev N] [--prev-kv]
//   compaction REV
//   lease grant TTL | revoke ID | keep-alive ID [--once] | timetolive ID [--keys] | list
//   endpoint status | health
//   lock NAME [--ttl S] [--timeout MS] [-- CMD ARGS...]
//   elect NAME VALUE | elect --listen NAME
//   queue push NAME VALUE | queue pop NAME [--timeout MS]
//   barrier hold|release|wait NAME
//   snapshot save FILE
//   member list [--serializable] | add NAME --peer-urls HOST:PORT [--learner] | remove ID|NAME |
//          promote ID|NAME
//   move-leader ID|NAME
//   alarm list | disarm
//
// Exit codes: 0 success (a txn whose compares failed prints FAILURE and still exits 0); 1 the
// store refused the request (the message says why); 2 unreadable input (txn); 3 no member could
// answer, or a write's outcome is unknown (the message says which); 4 a lock or leadership was
// lost while held (lock -- CMD: the command's process group was killed); 5 --timeout passed
// while waiting; 105+ bad usage (CLI11). lock -- CMD otherwise exits with CMD's status.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/output.h"
#include "cli/recipe_verbs.h"
#include "cli/txn_parser.h"
#include "rpc/client.h"

namespace {

using namespace coord;
using namespace coord::cli;

constexpr int kRefused = 1;
constexpr int kUnavailable = 3;
constexpr int kDiverged = 6;  // endpoint hashkv: members hold different histories

// A whole number of at least `min`, refused with a message a person can read (CLI11's own
// number checks print the range as doubles, up to 1.8e308).
CLI::Validator atLeast(int64_t min) {
    return CLI::Validator(
        [min](std::string& input) -> std::string {
            int64_t value = 0;
            auto [end, ec] = std::from_chars(input.data(), input.data() + input.size(), value);
            if (ec != std::errc() || end != input.data() + input.size()) {
                return "'" + input + "' is not a whole number";
            }
            if (value < min) return "must be at least " + std::to_string(min) + ", not " + input;
            return {};
        },
        ">=" + std::to_string(min));
}

std::vector<std::string> splitEndpoints(const std::string& list) {
    std::vector<std::string> out;
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

int report(const Error& e) {
    std::fprintf(stderr, "coordctl: %s\n", e.describe().c_str());
    return e.kind == Error::Kind::Store ? kRefused : kUnavailable;
}

// endpoint hashkv: each member's digest at one revision (by default the newest every member
// that answers has applied); exit 6 when two members differ at the same revision.
int runHashKV(Client& client, const std::vector<std::string>& endpoints, int64_t revision,
              bool json, bool table) {
    int rc = 0;
    std::vector<std::string> asked;
    if (revision == 0) {
        for (const auto& ep : endpoints) {
            auto st = client.status(ep);
            if (!st.ok()) {
                rc = report(st.error());
                continue;
            }
            asked.push_back(ep);
            revision = revision == 0 ? st->revision : std::min(revision, st->revision);
        }
        if (asked.empty()) return rc;
    } else {
        asked = endpoints;
    }
    // A compaction does not add a revision: members at one revision may differ in whether
    // they applied the latest one yet, and their digests then cover different records. Such
    // answers are asked again.
    std::vector<cli::MemberHash> hashes;
    for (int attempt = 0;; ++attempt) {
        hashes.clear();
        for (const auto& ep : asked) {
            auto h = client.hashKV(ep, revision);
            if (!h.ok()) {
                std::fprintf(stderr, "coordctl: %s: %s\n", ep.c_str(),
                             h.error().describe().c_str());
                rc = h.error().kind == Error::Kind::Store ? kRefused : kUnavailable;
                continue;
            }
            hashes.push_back({ep, *h});
        }
        bool settled = std::all_of(hashes.begin(), hashes.end(), [&](const cli::MemberHash& h) {
            return h.hash.compactRevision == hashes.front().hash.compactRevision;
        });
        if (settled) break;
        if (attempt == 10) {
            std::fprintf(stderr, "coordctl: the members are still applying a compaction\n");
            return kUnavailable;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& h : hashes) {
        if (table) {
            rows.push_back(cli::tableRow(h));
        } else {
            json ? cli::printJson(h) : cli::printSimple(h);
        }
    }
    if (table) cli::printTable({"ENDPOINT", "HASH", "REVISION", "COMPACT REVISION"}, rows);
    for (const auto& h : hashes) {
        if (h.hash.hash != hashes.front().hash.hash) {
            std::fprintf(stderr, "coordctl: the members' histories differ at revision %lld\n",
                         static_cast<long long>(revision));
            return kDiverged;
        }
    }
    return rc;
}

// member list/add/remove/promote and move-leader.
int runMember(Client& client, bool json, bool table, const std::string& verb,
              const std::string& name, const std::string& peer, bool learner,
              const std::string& ref, bool serializable) {
    if (verb == "add") {
        auto r = client.memberAdd(name, peer, learner);
        if (!r.ok()) return report(r.error());
        if (json) {
            printJson(*r);
            return 0;
        }
        std::string initialCluster;
        uint64_t id = 0;
        for (const auto& m : *r) {
            if (m.name == name) id = m.id;
            if (m.name.empty() || m.peerUrl.empty()) continue;
            initialCluster += (initialCluster.empty() ? "" : ",") + m.name + "=" + m.peerUrl;
        }
        std::printf(
            "Member %s (%llx) added as a %s. Start it with:\n"
            "  coordd --name %s --listen-peer-urls %s --initial-cluster %s "
            "--initial-cluster-state existing\n",
            name.c_str(), static_cast<unsigned long long>(id), learner ? "learner" : "voter",
            name.c_str(), peer.c_str(), initialCluster.c_str());
        return 0;
    }
    auto list = client.memberList(serializable && verb == "list");
    if (!list.ok()) return report(list.error());
    if (verb == "list") {
        if (table) {
            std::vector<std::vector<std::string>> rows;
            for (const auto& m : *list)
                rows.push_back(tableRow(m));
            printTable({"ID", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"}, rows);
        } else {
            json ? printJson(*list) : printSimple(*list);
        }
        return 0;
    }
    // A member named by its id (hex, as listed) or by its name.
    uint64_t id = 0;
    for (const auto& m : *list) {
        char hex[17];
        std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(m.id));
        if (ref == hex || ref == m.name) id = m.id;
    }
    if (id == 0) {
        std::fprintf(stderr, "coordctl: no member '%s' (see coordctl member list)\n", ref.c_str());
        return kRefused;
    }
    auto r = verb == "remove"    ? client.memberRemove(id)
             : verb == "promote" ? client.memberPromote(id)
                                 : client.moveLeader(id);
    if (!r.ok()) return report(r.error());
    if (json) {
        printJson(*r);
    } else if (verb == "move-leader") {
        std::printf("Leadership moved to %s\n", ref.c_str());
    } else {
        std::printf("Member %s %s\n", ref.c_str(), verb == "remove" ? "removed" : "promoted");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"coordctl: talk to a coord cluster"};
    app.require_subcommand(1);
    app.fallthrough();  // --endpoints, -w, ... may also follow the verb
    std::string endpointList = "127.0.0.1:2379";
    int timeoutMs = 5000;
    std::string format = "simple";
    app.add_option("--endpoints", endpointList, "comma-separated member client addresses")
        ->capture_default_str();
    app.add_option("--command-timeout", timeoutMs, "milliseconds to keep trying")
        ->check(CLI::Range(1, 3600000))
        ->capture_default_str();
    app.add_option("-w,--write-out", format, "output format")
        ->check(CLI::IsMember({"simple", "json", "table"}))
        ->capture_default_str();

    std::string key, value, rangeEnd;
    bool prefix = false, fromKey = false, keysOnly = false, countOnly = false, serializable = false,
         prevKv = false;
    int64_t rev = 0, limit = 0;

    auto* put = app.add_subcommand("put", "store a value");
    put->add_option("key", key)->required();
    put->add_option("value", value, "the value; read from stdin (every byte of it) when omitted");

    auto* get = app.add_subcommand("get", "read a key, a prefix or a range");
    get->add_option("key", key)->required();
    get->add_flag("--prefix", prefix, "every key starting with KEY");
    get->add_flag("--from-key", fromKey, "every key >= KEY");
    get->add_option("--range-end", rangeEnd, "the keys in [KEY, END)");
    get->add_option("--rev", rev, "read at this revision");
    get->add_option("--limit", limit, "at most this many keys")->check(atLeast(0));
    get->add_flag("--keys-only", keysOnly, "print keys only");
    get->add_flag("--count-only", countOnly, "print the number of keys only");
    get->add_flag("--serializable", serializable,
                  "answer from the member contacted, without confirming with the leader");

    int64_t leaseId = 0, ttl = 0;
    bool once = false, withKeys = false;
    put->add_option("--lease", leaseId, "attach the key to this lease");

    auto* del = app.add_subcommand("del", "delete a key, a prefix or a range");
    del->add_option("key", key)->required();
    del->add_flag("--prefix", prefix, "every key starting with KEY");
    del->add_flag("--from-key", fromKey, "every key >= KEY");
    del->add_option("--range-end", rangeEnd, "the keys in [KEY, END)");
    del->add_flag("--prev-kv", prevKv, "print the deleted key-values");

    auto* txn = app.add_subcommand(
        "txn",
        "run a transaction read from stdin: compares, a blank line, success ops, a blank "
        "line, failure ops");

    auto* watch = app.add_subcommand("watch", "print changes to a key, prefix or range");
    watch->add_option("key", key)->required();
    watch->add_flag("--prefix", prefix, "every key starting with KEY");
    watch->add_flag("--from-key", fromKey, "every key >= KEY");
    watch->add_option("--range-end", rangeEnd, "the keys in [KEY, END)");
    watch->add_option("--rev", rev, "start at this revision (default: now)");
    watch->add_flag("--prev-kv", prevKv, "print the previous value with each event");

    auto* lease = app.add_subcommand("lease", "grant, revoke, keep alive and inspect leases");
    lease->require_subcommand(1);
    auto* grant = lease->add_subcommand("grant", "grant a lease; prints its id");
    grant->add_option("ttl", ttl, "seconds")->required()->check(atLeast(1));
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
    compaction->add_option("revision", compactRev)->required()->check(atLeast(1));

    auto* endpoint = app.add_subcommand("endpoint", "inspect the members of --endpoints");
    endpoint->require_subcommand(1);
    auto* status = endpoint->add_subcommand("status", "each member's view of the cluster");
    auto* health = endpoint->add_subcommand(
        "health", "whether each member serves a linearizable read within --command-timeout");
    auto* hashkv = endpoint->add_subcommand(
        "hashkv", "a digest of each member's history at one revision; exit 6 if they differ");
    int64_t hashRev = 0;
    hashkv
        ->add_option("--rev", hashRev,
                     "the revision to hash (default: the newest every member has applied)")
        ->check(atLeast(1));

    LockArgs lockArgs;
    auto* lockCmd = app.add_subcommand(
        "lock", "acquire a lock; hold it until interrupted, or while running -- CMD ARGS...");
    lockCmd->add_option("name", lockArgs.name, "the lock's key prefix")->required();
    lockCmd->add_option("command", lockArgs.command,
                        "run this (after --) while holding the lock, in its own process group, "
                        "with COORD_LOCK_KEY and COORD_FENCING_TOKEN set");
    lockCmd->add_option("--ttl", lockArgs.ttlSeconds, "session TTL in seconds")
        ->check(atLeast(1))
        ->capture_default_str();
    lockCmd
        ->add_option("--timeout", lockArgs.timeoutMs,
                     "milliseconds to wait for the lock (0: forever); exit 5 when it passes")
        ->check(atLeast(0));
    lockCmd
        ->add_option("--kill-grace", lockArgs.graceMs,
                     "milliseconds between SIGTERM and SIGKILL when the lock is lost")
        ->check(atLeast(0))
        ->capture_default_str();

    ElectArgs electArgs;
    auto* electCmd = app.add_subcommand(
        "elect", "campaign with VALUE and hold leadership until interrupted; or --listen");
    electCmd->add_option("name", electArgs.name, "the election's key prefix")->required();
    electCmd->add_option("value", electArgs.value, "this candidate's value");
    electCmd->add_flag("-l,--listen", electArgs.listen, "print every leader change");
    electCmd->add_option("--ttl", electArgs.ttlSeconds, "session TTL in seconds")
        ->check(atLeast(1))
        ->capture_default_str();
    electCmd
        ->add_option("--timeout", electArgs.timeoutMs,
                     "milliseconds to wait for leadership (0: forever)")
        ->check(atLeast(0));

    std::string recipeName;
    int64_t waitMs = 0;
    auto* queueCmd = app.add_subcommand("queue", "a FIFO work queue");
    queueCmd->require_subcommand(1);
    auto* push = queueCmd->add_subcommand("push", "add an item; prints its key");
    push->add_option("name", recipeName)->required();
    push->add_option("value", value)->required();
    auto* pop = queueCmd->add_subcommand("pop", "take the oldest item, waiting for one");
    pop->add_option("name", recipeName)->required();
    pop->add_option("--timeout", waitMs, "milliseconds to wait (0: forever); exit 5 when it passes")
        ->check(atLeast(0));

    auto* barrierCmd = app.add_subcommand("barrier", "a barrier key");
    barrierCmd->require_subcommand(1);
    std::string barrierVerb;
    for (const char* verb : {"hold", "release", "wait"}) {
        auto* sub = barrierCmd->add_subcommand(verb, std::string(verb) == "wait"
                                                         ? "block while the barrier is held"
                                                         : std::string(verb) + " the barrier");
        sub->add_option("name", recipeName)->required();
        if (std::string(verb) == "wait") {
            sub->add_option("--timeout", waitMs, "milliseconds (0: forever)")->check(atLeast(0));
        }
        sub->callback([&barrierVerb, verb] { barrierVerb = verb; });
    }

    auto* snapshotCmd = app.add_subcommand("snapshot", "backups");
    snapshotCmd->require_subcommand(1);
    std::string snapshotFile;
    auto* snapshotSave = snapshotCmd->add_subcommand(
        "save", "write a consistent snapshot of one member's store to FILE");
    snapshotSave->add_option("file", snapshotFile)->required();

    auto* memberCmd = app.add_subcommand("member", "list and change the cluster's members");
    memberCmd->require_subcommand(1);
    std::string memberName, memberPeer, memberRef;
    bool memberLearner = false;
    auto* memberList = memberCmd->add_subcommand("list", "every member, voters and learners");
    bool memberSerializable = false;
    memberList->add_flag("--serializable", memberSerializable,
                         "the connected member's own view, at once (default: linearizable)");
    auto* memberAdd = memberCmd->add_subcommand(
        "add", "add a member; then start it with --initial-cluster-state existing");
    memberAdd->add_option("name", memberName)->required();
    memberAdd->add_option("--peer-urls", memberPeer, "the new member's peer address (ip:port)")
        ->required();
    memberAdd->add_flag("--learner", memberLearner,
                        "add as a non-voting learner (promote it once it caught up)");
    auto* memberRemove =
        memberCmd->add_subcommand("remove", "remove a member (any, the leader too)");
    memberRemove->add_option("member", memberRef, "member id (hex) or name")->required();
    auto* memberPromote = memberCmd->add_subcommand("promote", "make a caught-up learner a voter");
    memberPromote->add_option("member", memberRef, "member id (hex) or name")->required();
    auto* alarmCmd = app.add_subcommand(
        "alarm", "NOSPACE (a member over its quota) and CORRUPT (a member's data differs) alarms");
    alarmCmd->require_subcommand(1);
    auto* alarmList = alarmCmd->add_subcommand("list", "members whose alarms are raised");
    auto* alarmDisarm = alarmCmd->add_subcommand(
        "disarm",
        "clear every alarm (after freeing space: delete, then compaction; after replacing a "
        "corrupt member)");
    auto* moveLeader = app.add_subcommand("move-leader", "hand leadership to another voter");
    moveLeader->add_option("member", memberRef, "member id (hex) or name")->required();

    CLI11_PARSE(app, argc, argv);
    auto endpoints = splitEndpoints(endpointList);
    if (endpoints.empty()) {
        std::fprintf(stderr, "coordctl: --endpoints is empty\n");
        return 2;
    }
    for (const auto& e : endpoints) {
        if (auto problem = endpointProblem(e); !problem.empty()) {
            std::fprintf(stderr, "coordctl: --endpoints: %s\n", problem.c_str());
            return 2;
        }
    }
    bool json = format == "json";
    // Tables for the listing verbs (get, member list, endpoint status, lease list, alarm list);
    // the other verbs print their simple form.
    bool table = format == "table";
    ClientOptions options;
    options.endpoints = endpoints;
    options.requestTimeout = std::chrono::milliseconds(timeoutMs);
    options.dialTimeout = std::min(options.requestTimeout, std::chrono::milliseconds(1000));
    Client client(options);

    // As etcdctl: an empty KEY with --prefix or --from-key means every key (from the smallest
    // key there can be, "\0", to the end).
    if (key.empty() && (prefix || fromKey)) {
        key = std::string(1, '\0');
        prefix = false;
        fromKey = true;
    }
    auto rangeEndFor = [&]() -> std::string {
        if (prefix) return kv::prefixEnd(key);
        if (fromKey) return kv::kFromKey;
        return rangeEnd;
    };

    // put and del leave the same state when applied twice, so coordctl retries them when an
    // attempt's outcome is unknown (the member died or timed out after the write was sent).
    auto retryUnknown = [&](auto attempt) {
        auto deadline = Clock::now() + options.requestTimeout;
        for (;;) {
            auto r = attempt(deadline);
            if (r.ok() || r.error().kind != Error::Kind::Unknown || Clock::now() >= deadline) {
                return r;
            }
        }
    };

    if (*lockCmd) {
        lockArgs.json = json;
        return runLock(client, lockArgs);
    }
    if (*electCmd) {
        if (!electArgs.listen && electArgs.value.empty()) {
            std::fprintf(stderr, "coordctl: elect needs a VALUE (or --listen)\n");
            return 2;
        }
        electArgs.json = json;
        return runElect(client, electArgs);
    }
    if (*push) return runQueuePush(client, recipeName, value);
    if (*pop) return runQueuePop(client, recipeName, waitMs);
    if (!barrierVerb.empty()) return runBarrier(client, barrierVerb, recipeName, waitMs);

    if (*snapshotSave) {
        // Written next to the target and renamed when complete: FILE is whole or absent.
        std::string part = snapshotFile + ".part";
        Client::SnapshotInfo info;
        {
            std::ofstream out(part, std::ios::binary | std::ios::trunc);
            if (!out) {
                std::fprintf(stderr, "coordctl: cannot write %s\n", part.c_str());
                return 2;
            }
            auto r = client.snapshot(out);
            out.close();
            if (!r.ok() || !out) {
                std::remove(part.c_str());
                if (!r.ok()) return report(r.error());
                std::fprintf(stderr, "coordctl: writing %s failed\n", part.c_str());
                return 2;
            }
            info = *r;
        }
        if (std::rename(part.c_str(), snapshotFile.c_str()) != 0) {
            std::perror("coordctl: rename");
            return 2;
        }
        std::printf("Snapshot saved at %s (%llu bytes, revision %lld)\n", snapshotFile.c_str(),
                    static_cast<unsigned long long>(info.bytes),
                    static_cast<long long>(info.revision));
        return 0;
    }
    if (*alarmList || *alarmDisarm) {
        auto r = *alarmList ? client.alarmList() : client.alarmDisarm();
        if (!r.ok()) return report(r.error());
        std::vector<std::pair<uint64_t, const char*>> raised;
        for (auto id : r->noSpace)
            raised.emplace_back(id, "NOSPACE");
        for (auto id : r->corrupt)
            raised.emplace_back(id, "CORRUPT");
        if (table) {
            std::vector<std::vector<std::string>> rows;
            for (const auto& [id, kind] : raised) {
                char hex[17];
                std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(id));
                rows.push_back({hex, kind});
            }
            printTable({"MEMBER ID", "ALARM"}, rows);
            return 0;
        }
        for (const auto& [id, kind] : raised)
            std::printf("memberID:%llx alarm:%s\n", static_cast<unsigned long long>(id), kind);
        return 0;
    }
    if (*memberCmd || *moveLeader) {
        return runMember(client, json, table,
                         *memberList      ? "list"
                         : *memberAdd     ? "add"
                         : *memberRemove  ? "remove"
                         : *memberPromote ? "promote"
                                          : "move-leader",
                         memberName, memberPeer, memberLearner, memberRef, memberSerializable);
    }
    if (*put) {
        if (put->count("value") == 0) {
            value.assign(std::istreambuf_iterator<char>(std::cin),
                         std::istreambuf_iterator<char>());
            if (std::cin.bad()) {
                std::fprintf(stderr, "coordctl: put: cannot read the value from stdin\n");
                return 2;
            }
        }
        auto r = retryUnknown([&](Deadline d) { return client.put(key, value, leaseId, d); });
        if (!r.ok()) return report(r.error());
        json ? printJson(*r) : (void)std::printf("OK\n");
        return 0;
    }
    if (*get) {
        RangeRequest r;
        r.key = key;
        r.rangeEnd = rangeEndFor();
        r.revision = rev;
        r.limit = limit;
        r.keysOnly = keysOnly;
        r.countOnly = countOnly;
        auto got = client.range(r, serializable);
        if (!got.ok()) return report(got.error());
        if (json) {
            printJson(*got);
        } else if (table && !countOnly) {
            std::vector<std::vector<std::string>> rows;
            for (const auto& kv : got->kvs)
                rows.push_back(tableRow(kv, !keysOnly));
            printTable({"KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"}, rows);
        } else if (countOnly) {
            std::printf("%lld\n", static_cast<long long>(got->count));
        } else {
            for (const auto& kv : got->kvs)
                printSimple(kv, !keysOnly);
        }
        return 0;
    }
    if (*del) {
        DeleteRangeRequest d;
        d.key = key;
        d.rangeEnd = rangeEndFor();
        d.prevKv = prevKv;
        auto r = retryUnknown([&](Deadline dl) { return client.del(d, dl); });
        if (!r.ok()) return report(r.error());
        if (json) {
            printJson(*r);
        } else {
            std::printf("%lld\n", static_cast<long long>(r->deleted));
            for (const auto& kv : r->prevKvs)
                printSimple(kv, true);
        }
        return 0;
    }
    if (*txn) {
        std::string text((std::istreambuf_iterator<char>(std::cin)),
                         std::istreambuf_iterator<char>());
        auto parsed = parseTxn(text);
        if (!parsed.ok()) {
            std::fprintf(stderr, "coordctl: txn: %s\n", parsed.error().c_str());
            return 2;
        }
        auto r = client.txn(*parsed);
        if (!r.ok()) return report(r.error());
        json ? printJson(*r) : printSimple(*r);
        if (anyTruncated(*r)) {
            std::fprintf(stderr,
                         "coordctl: txn: a get's result was cut at the member's response size "
                         "bound; read the rest with get --rev %lld\n",
                         static_cast<long long>(r->revision));
        }
        return 0;
    }
    if (*watch) {
        WatchRequest w;
        w.key = key;
        w.rangeEnd = rangeEndFor();
        w.startRevision = rev;
        w.prevKv = prevKv;
        installInterruptHandlers();
        std::atomic<int> failed{0};
        std::atomic<bool> ended{false};
        WatchCallbacks cb;
        cb.onEvents = [&](std::span<const Event> events, int64_t) {
            for (const auto& e : events)
                json ? printJson(e) : printSimple(e, prevKv);
            std::fflush(stdout);
        };
        cb.onError = [&](const Error& e) {
            std::fprintf(stderr, "coordctl: watch ended: %s\n", e.describe().c_str());
            failed = e.kind == Error::Kind::Store ? kRefused : kUnavailable;
            ended = true;
        };
        auto handle = client.watch(w, cb);
        while (!cli::interrupted() && !ended)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return failed.load();
    }
    if (*compaction) {
        auto r = client.compact(compactRev);
        if (!r.ok()) return report(r.error());
        std::printf("compacted revision %lld\n", static_cast<long long>(compactRev));
        return 0;
    }
    if (*grant) {
        auto r = client.leaseGrant(ttl);
        if (!r.ok()) return report(r.error());
        std::printf("lease %lld granted with TTL %llds\n", static_cast<long long>(r->id),
                    static_cast<long long>(r->ttlSeconds));
        return 0;
    }
    if (*revoke) {
        auto r = client.leaseRevoke(leaseId);
        if (!r.ok()) return report(r.error());
        std::printf("lease %lld revoked\n", static_cast<long long>(leaseId));
        return 0;
    }
    if (*keepAlive) {
        for (;;) {
            auto r = client.leaseKeepAliveOnce(leaseId);
            if (!r.ok()) return report(r.error());
            std::printf("lease %lld keepalived with TTL(%lld)\n", static_cast<long long>(leaseId),
                        static_cast<long long>(*r));
            std::fflush(stdout);
            if (once) return 0;
            std::this_thread::sleep_for(std::chrono::milliseconds(*r * 1000 / 3));
        }
    }
    if (*timeToLive) {
        auto r = client.leaseTimeToLive(leaseId);
        if (!r.ok()) return report(r.error());
        if (!r->has_value()) {
            std::fprintf(stderr, "coordctl: lease %lld not found\n",
                         static_cast<long long>(leaseId));
            return kRefused;
        }
        std::printf("lease %lld granted with TTL(%llds)\n", static_cast<long long>(leaseId),
                    static_cast<long long>((*r)->ttlSeconds));
        if (withKeys) {
            for (const auto& k : (*r)->keys)
                std::printf("  %s\n", k.c_str());
        }
        return 0;
    }
    if (*list) {
        auto r = client.leaseList();
        if (!r.ok()) return report(r.error());
        if (table) {
            std::vector<std::vector<std::string>> rows;
            for (const auto& l : *r)
                rows.push_back({std::to_string(l.id), std::to_string(l.ttlSeconds)});
            printTable({"ID", "TTL"}, rows);
            return 0;
        }
        for (const auto& l : *r)
            std::printf("%lld\n", static_cast<long long>(l.id));
        return 0;
    }
    if (*status) {
        int rc = 0;
        std::vector<std::vector<std::string>> rows;
        for (const auto& ep : endpoints) {
            auto st = client.status(ep);
            if (!st.ok()) {
                rc = report(st.error());
                continue;
            }
            if (table) {
                rows.push_back(tableRow(*st));
            } else {
                json ? printJson(*st) : printSimple(*st);
            }
        }
        if (table) {
            printTable({"ENDPOINT", "ID", "LEADER", "IS LEADER", "RAFT TERM", "REVISION",
                        "APPLIED INDEX", "DB SIZE", "VERSION"},
                       rows);
        }
        return rc;
    }
    if (*hashkv) return runHashKV(client, endpoints, hashRev, json, table);
    if (*health) {
        int rc = 0;
        for (const auto& ep : endpoints) {
            ClientOptions one = options;
            one.endpoints = {ep};
            Client single(one);
            auto begin = std::chrono::steady_clock::now();
            auto r = single.get("health");
            auto took =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin)
                    .count();
            if (r.ok()) {
                std::printf("%s is healthy: linearizable read took %.1f ms\n", ep.c_str(), took);
            } else {
                std::printf("%s is unhealthy: %s\n", ep.c_str(), r.error().describe().c_str());
                rc = kUnavailable;
            }
        }
        return rc;
    }
    return 0;
}
