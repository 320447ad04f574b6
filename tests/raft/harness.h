// A small synchronous harness for Raft paper tests: N cores, each with in-memory storage,
// messages delivered in order until the cluster is quiet, links that can be cut.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "raft/raft.h"

namespace coord::raft::test {

struct Cluster {
    struct Member {
        std::unique_ptr<MemoryStorage> storage;
        std::unique_ptr<Raft> raft;
        std::vector<Entry> applied;
        std::vector<ReadState> reads;
        bool up = true;
    };
    std::map<NodeId, Member> members;
    std::set<std::pair<NodeId, NodeId>> cut;  // (from, to) links that drop messages
    std::vector<Message> inFlight;
    Config base;

    explicit Cluster(int n, int learners = 0, std::function<void(Config&)> tweak = {}) {
        base.electionTicks = 10;
        base.heartbeatTicks = 1;
        if (tweak) tweak(base);
        ConfState conf;
        for (int i = 1; i <= n; ++i)
            conf.voters.push_back(static_cast<NodeId>(i));
        for (int i = n + 1; i <= n + learners; ++i)
            conf.learners.push_back(static_cast<NodeId>(i));
        for (int i = 1; i <= n + learners; ++i) {
            Member m;
            m.storage = std::make_unique<MemoryStorage>();
            m.storage->setConfState(conf);
            members.emplace(static_cast<NodeId>(i), std::move(m));
        }
        for (auto& [id, m] : members)
            restart(id);
    }

    void restart(NodeId id) {
        Member& m = members.at(id);
        Config c = base;
        c.id = id;
        c.storage = m.storage.get();
        c.seed = id;
        c.applied = m.applied.empty() ? m.storage->snapshot().meta.index : m.applied.back().index;
        m.raft = std::make_unique<Raft>(c);
        m.up = true;
    }

    Raft& r(NodeId id) { return *members.at(id).raft; }

    // Handles the Ready of one member like a server: persist, send, apply, advance.
    void process(NodeId id) {
        Member& m = members.at(id);
        while (m.up && m.raft->hasReady()) {
            Ready rd = m.raft->ready();
            if (rd.snapshot) m.storage->applySnapshot(*rd.snapshot);
            m.storage->append(rd.entries);
            if (rd.hardState) m.storage->setHardState(*rd.hardState);
            for (auto& msg : rd.messages)
                inFlight.push_back(msg);
            for (auto& e : rd.committedEntries) {
                if (e.type == EntryType::ConfChange) {
                    m.storage->setConfState(m.raft->applyConfChange(*ConfChange::decode(e.data)));
                }
                m.applied.push_back(e);
            }
            for (auto& rs : rd.readStates)
                m.reads.push_back(rs);
            m.raft->advance(rd);
            m.raft->checkInvariants();
        }
    }

    // Delivers messages until none are left (bounded).
    void stabilize(int maxRounds = 1000) {
        for (int round = 0; round < maxRounds; ++round) {
            for (auto& [id, m] : members)
                process(id);
            if (inFlight.empty()) return;
            auto batch = std::move(inFlight);
            inFlight.clear();
            for (auto& msg : batch) {
                auto it = members.find(msg.to);
                if (it == members.end() || !it->second.up || cut.count({msg.from, msg.to}))
                    continue;
                it->second.raft->step(msg);
            }
        }
        FAIL("cluster did not stabilize");
    }

    void isolate(NodeId id) {
        for (auto& [other, m] : members) {
            if (other == id) continue;
            cut.insert({id, other});
            cut.insert({other, id});
        }
    }
    void heal() { cut.clear(); }

    void tick(NodeId id, int n = 1) {
        for (int i = 0; i < n; ++i)
            r(id).tick();
    }
    void tickAll(int n) {
        for (int i = 0; i < n; ++i) {
            for (auto& [id, m] : members) {
                if (m.up) m.raft->tick();
            }
            stabilize();
        }
    }

    // Makes `id` leader: a plain election first; when the others still follow a live leader
    // (check-quorum makes them ignore candidates), a forced one, as a leadership transfer does.
    void elect(NodeId id) {
        Message m;
        m.type = r(id).leader() == kNone ? MessageType::Hup : MessageType::TimeoutNow;
        r(id).step(m);
        stabilize();
        REQUIRE(r(id).role() == Role::Leader);
    }

    // Delivers messages one at a time (in send order); after each, calls `after(msg)`.
    void deliverOneByOne(const std::function<void(const Message&)>& after, int max = 10000) {
        for (int n = 0; n < max; ++n) {
            for (auto& [id, m] : members)
                process(id);
            if (inFlight.empty()) return;
            Message m = inFlight.front();
            inFlight.erase(inFlight.begin());
            auto it = members.find(m.to);
            if (it == members.end() || !it->second.up || cut.count({m.from, m.to})) continue;
            it->second.raft->step(m);
            process(m.to);
            after(m);
        }
    }

    std::vector<std::string> data(NodeId id) {
        std::vector<std::string> out;
        for (auto& e : members.at(id).applied) {
            if (!e.data.empty() && e.type == EntryType::Normal) out.push_back(e.data);
        }
        return out;
    }
};

}  // namespace coord::raft::test
