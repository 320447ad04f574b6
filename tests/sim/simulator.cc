#include "tests/sim/simulator.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <vector>

namespace coord::sim {

using raft::ConfChange;
using raft::Entry;
using raft::EntryType;
using raft::Index;
using raft::Message;
using raft::NodeId;
using raft::Ready;
using raft::Role;
using raft::Term;

namespace {

uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

uint64_t hashEntry(uint64_t chain, const Entry& e) {
    uint64_t h = mix(chain, e.term);
    h = mix(h, e.index);
    h = mix(h, static_cast<uint64_t>(e.type));
    for (char c : e.data)
        h = mix(h, static_cast<uint8_t>(c));
    return h;
}

struct Violation {
    std::string what;
};

// The replicated state machine: a hash chain over every applied entry.
struct StateMachine {
    Index applied = 0;
    uint64_t chain = 0;
    std::string encode() const { return std::to_string(applied) + ":" + std::to_string(chain); }
    static StateMachine decode(const std::string& s) {
        StateMachine sm;
        auto colon = s.find(':');
        sm.applied = std::stoull(s.substr(0, colon));
        sm.chain = std::stoull(s.substr(colon + 1));
        return sm;
    }
};

// A Ready's entries and hard state on their way to the disk (asynchronous persistence), and
// the messages that wait for them.
struct Write {
    std::vector<Entry> entries;
    std::optional<raft::HardState> hardState;
    std::vector<Message> held;
};

struct Member {
    NodeId id = 0;
    raft::MemoryStorage storage;  // the log Raft reads
    raft::MemoryStorage durable;  // what survives a crash (the same as `storage` unless async)
    StateMachine sm;              // applied state, persisted with the apply
    std::unique_ptr<raft::Raft> raft;
    bool up = true;
    std::deque<Write> writes;  // asynchronous persistence: not on disk yet, oldest first
};

struct InFlight {
    uint64_t deliverAt;
    uint64_t seq;
    Message msg;
};

class Simulation {
  public:
    explicit Simulation(const SimOptions& o) : opt_(o), rng_(o.seed) {
        maxBytesPerMsg_ = chance(0.5) ? (chance(0.5) ? 1 : 64) : 4096;
        // Snapshots (about 25 bytes here) often travel in several chunks that get lost,
        // duplicated and reordered.
        snapshotChunkBytes_ = chance(0.5) ? 4 : 1 << 20;
        // Fault intensity varies by seed: some runs are calm, some are storms.
        crashRate_ = chance(0.5) ? 0.004 : 0.015;
        // BUGGIFY-style bias: new leaders are often cut short, which is when the subtle
        // commitment and election bugs show (the Figure 8 pattern of the Raft paper).
        shortLeaderChance_ = chance(0.5) ? 0.0 : 0.3;
        raft::ConfState conf;
        for (int i = 1; i <= o.members; ++i)
            conf.voters.push_back(static_cast<NodeId>(i));
        for (int i = 1; i <= o.members; ++i) {
            auto m = std::make_unique<Member>();
            m->id = static_cast<NodeId>(i);
            m->storage.setConfState(conf);
            m->durable.setConfState(conf);
            members_.push_back(std::move(m));
        }
        for (auto& m : members_)
            start(*m);
    }

    SimResult run() {
        SimResult result;
        try {
            for (round_ = 0; round_ < static_cast<uint64_t>(opt_.rounds); ++round_) {
                faults();
                clients();
                step();
                check();
            }
            heal();
            liveness();
        } catch (const Violation& v) {
            result.violation = "round " + std::to_string(round_) + ": " + v.what;
        }
        result.committed = canon_.size();
        result.reads = readsChecked_;
        result.elections = leaders_.size();
        result.snapshotsInstalled = snapshotsInstalled_;
        return result;
    }

  private:
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
    size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
    Member& member(NodeId id) { return *members_[id - 1]; }

    [[noreturn]] void fail(const std::string& what) { throw Violation{what}; }

    void start(Member& m) {
        raft::Config c;
        c.id = m.id;
        c.electionTicks = 10;
        c.heartbeatTicks = 2;
        c.storage = &m.storage;
        // The state machine may be ahead of the persisted commit index (asynchronous
        // persistence applies entries once they are on disk, before the hard state that
        // committed them is): Raft starts from what its log can vouch for, as the server does.
        c.applied = std::max(std::min(m.sm.applied, m.storage.hardState().commit),
                             m.storage.firstIndex() - 1);
        c.seed = opt_.seed * 1000 + m.id + restarts_ * 7919;
        // Small messages split replication into several appends, so acknowledgements often
        // cover only part of what a leader sent.
        c.maxBytesPerMsg = maxBytesPerMsg_;
        c.snapshotChunkBytes = snapshotChunkBytes_;
        c.maxInflightMsgs = 8;
        c.bugs = opt_.bugs;
        c.asyncPersist = opt_.asyncPersist;
        m.raft = std::make_unique<raft::Raft>(c);
        m.up = true;
        // Committed entries must have survived the crash.
        raft::HardState hs = m.storage.hardState();
        for (Index i = std::max<Index>(m.storage.firstIndex(), 1); i <= hs.commit; ++i) {
            checkCanonTerm(m, i, "after restart");
        }
    }

    void crash(Member& m) {
        m.raft.reset();
        m.up = false;
        ++restarts_;
        // What was not on disk is gone.
        m.storage = m.durable;
        m.writes.clear();
    }

    // ---- the Ready loop of one member, exactly as a server runs it ----
    void handleReady(Member& m) {
        if (opt_.asyncPersist) return handleReadyAsync(m);
        for (int guard = 0; guard < 100 && m.up && m.raft->hasReady(); ++guard) {
            Ready rd = m.raft->ready();
            if (opt_.ackBeforePersist) sendAll(rd);
            // A crash can hit before the Ready is persisted: everything in it is lost.
            if (chance(crashMidReady_)) {
                crash(m);
                return;
            }
            if (rd.snapshot) {
                m.storage.applySnapshot(*rd.snapshot);
                m.durable.applySnapshot(*rd.snapshot);
            }
            m.storage.append(rd.entries);
            m.durable.append(rd.entries);
            if (rd.hardState) {
                m.storage.setHardState(*rd.hardState);
                m.durable.setHardState(*rd.hardState);
            }
            if (!opt_.ackBeforePersist) sendAll(rd);
            finishReady(m, rd);
        }
    }

    // The rest of a Ready once its state is persisted (or handed to the writer): observe,
    // apply, check reads, advance.
    void finishReady(Member& m, const Ready& rd) {
        if (rd.softState) observeSoft(m, *rd.softState);
        if (rd.snapshot) installSnapshot(m, *rd.snapshot);
        for (const Entry& e : rd.committedEntries)
            apply(m, e);
        for (const auto& rs : rd.readStates)
            checkRead(m, rs);
        m.raft->advance(rd);
        m.raft->checkInvariants();
        maybeSnapshot(m);
    }

    // The Ready loop with asynchronous persistence, as a server with a log writer runs it: the
    // entries and hard state go to the writer (Raft reads them from `storage` at once), a
    // leader's appends and heartbeats leave now, everything else waits for the write.
    void handleReadyAsync(Member& m) {
        for (int guard = 0; guard < 100 && m.up && m.raft->hasReady(); ++guard) {
            Ready rd = m.raft->ready();
            if (chance(crashMidReady_)) {
                crash(m);
                return;
            }
            if (rd.snapshot) {
                // Snapshots are persisted synchronously, behind the writes in flight.
                while (!m.writes.empty())
                    completeWrite(m);
                m.storage.applySnapshot(*rd.snapshot);
                m.durable.applySnapshot(*rd.snapshot);
            }
            m.storage.append(rd.entries);
            if (rd.hardState) m.storage.setHardState(*rd.hardState);
            Write w{rd.entries, rd.hardState, {}};
            bool leading = m.raft->leader() == m.id;
            for (const Message& msg : rd.messages) {
                bool early = opt_.ackBeforePersist ||
                             (leading && (msg.type == raft::MessageType::Append ||
                                          msg.type == raft::MessageType::Heartbeat));
                if (early) {
                    send(msg);
                } else {
                    w.held.push_back(msg);
                }
            }
            m.writes.push_back(std::move(w));
            finishReady(m, rd);
        }
    }

    // The oldest write reaches the disk: its messages leave and Raft hears of it.
    void completeWrite(Member& m) {
        Write w = std::move(m.writes.front());
        m.writes.pop_front();
        m.durable.append(w.entries);
        if (w.hardState) m.durable.setHardState(*w.hardState);
        for (const Message& msg : w.held)
            send(msg);
        if (!w.entries.empty()) m.raft->persisted(w.entries.back().index, w.entries.back().term);
    }

    // Writes complete a few steps after they were made, in order.
    void persistDue() {
        if (!opt_.asyncPersist) return;
        for (auto& m : members_) {
            if (!m->up) continue;
            bool any = false;
            while (!m->writes.empty() && chance(0.5)) {
                completeWrite(*m);
                any = true;
            }
            if (any) handleReady(*m);
        }
    }

    void sendAll(const Ready& rd) {
        for (const Message& msg : rd.messages)
            send(msg);
    }

    void send(const Message& msg) {
        if (msg.to == 0 || msg.to > members_.size()) return;
        if (blocked_.count({msg.from, msg.to}) || chance(dropRate_)) return;
        uint64_t delay = chance(0.7) ? 0 : pick(4);
        net_.push_back(InFlight{tick_ + delay, seq_++, msg});
        if (chance(dupRate_)) net_.push_back(InFlight{tick_ + pick(6), seq_++, msg});
    }

    void deliverDue() {
        std::vector<InFlight> due, later;
        for (auto& f : net_)
            (f.deliverAt <= tick_ ? due : later).push_back(std::move(f));
        net_ = std::move(later);
        std::shuffle(due.begin(), due.end(), rng_);  // reordering
        for (auto& f : due) {
            Member& to = member(f.msg.to);
            if (!to.up || blocked_.count({f.msg.from, f.msg.to})) continue;
            to.raft->step(f.msg);
            handleReady(to);
        }
    }

    void observeSoft(Member& m, const raft::SoftState& s) {
        if (s.role != Role::Leader) return;
        if (chance(shortLeaderChance_)) doomed_[m.id] = round_ + pick(4);
        Term t = m.raft->term();
        auto [it, fresh] = leaders_.emplace(t, m.id);
        if (!fresh && it->second != m.id) {
            fail("two leaders in term " + std::to_string(t) + ": " + std::to_string(it->second) +
                 " and " + std::to_string(m.id));
        }
        // Leader completeness: every committed entry is in the new leader's log.
        for (auto& [i, c] : canon_) {
            if (i < m.raft->log().firstIndex()) continue;
            auto term = m.raft->log().term(i);
            if (!term || *term != c.term) {
                fail("leader " + std::to_string(m.id) + " of term " + std::to_string(t) +
                     " lacks committed entry " + std::to_string(i));
            }
        }
    }

    struct Canon {
        Term term;
        uint64_t chain;
    };

    void checkCanonTerm(Member& m, Index i, const char* when) {
        auto it = canon_.find(i);
        if (it == canon_.end()) return;
        auto t = m.storage.term(i);
        if (t && *t != it->second.term) {
            fail("member " + std::to_string(m.id) + " " + when + ": committed entry " +
                 std::to_string(i) + " has term " + std::to_string(*t) + ", committed term " +
                 std::to_string(it->second.term));
        }
    }

    void apply(Member& m, const Entry& e) {
        if (e.index <= m.sm.applied) return;
        if (e.index != m.sm.applied + 1) {
            fail("member " + std::to_string(m.id) + " applies " + std::to_string(e.index) +
                 " after " + std::to_string(m.sm.applied));
        }
        m.sm.chain = hashEntry(m.sm.chain, e);
        m.sm.applied = e.index;
        auto [it, fresh] = canon_.emplace(e.index, Canon{e.term, m.sm.chain});
        if (fresh) checkDurable(m, e.index, e.term);
        if (!fresh && it->second.chain != m.sm.chain) {
            fail("state machine safety: member " + std::to_string(m.id) +
                 " applied a different "
                 "entry sequence up to index " +
                 std::to_string(e.index));
        }
        if (e.type == EntryType::ConfChange) {
            auto cc = ConfChange::decode(e.data);
            if (!cc) fail("undecodable conf change");
            raft::ConfState conf = m.raft->applyConfChange(*cc);
            m.storage.setConfState(conf);
            m.durable.setConfState(conf);
        }
        if (!e.data.empty() && e.type == EntryType::Normal) pending_.erase(e.data);
    }

    // What survives any crash: the persisted log's last (index, term).
    std::pair<Term, Index> persistedLast(Member& m) {
        Index last = m.durable.lastIndex();
        return {*m.durable.term(last), last};
    }

    // The heart of Leader Completeness, checked the moment an entry commits: no voter that
    // lacks the entry (in its persisted log) may be able to collect a quorum of votes, i.e. be
    // at least as up to date as a quorum of voters. Correct Raft guarantees this for every
    // committed entry (the quorum that stores it would refuse the vote); it fails at once when
    // an entry commits unsafely, without waiting for the crash sequence that would lose it.
    void checkDurable(Member& applier, Index i, Term t) {
        raft::ConfState conf = applier.raft->confState();
        auto has = [&](Member& m) {
            if (i <= m.durable.snapshot().meta.index) return true;
            return m.durable.term(i) == t;
        };
        for (NodeId n : conf.voters) {
            Member& cand = member(n);
            if (has(cand)) continue;
            auto [candTerm, candIndex] = persistedLast(cand);
            size_t votes = 0;
            for (NodeId v : conf.voters) {
                auto [vTerm, vIndex] = persistedLast(member(v));
                bool upToDate = candTerm > vTerm || (candTerm == vTerm && candIndex >= vIndex);
                if (upToDate) ++votes;
            }
            if (votes >= conf.voters.size() / 2 + 1) {
                fail("entry " + std::to_string(i) + " (term " + std::to_string(t) +
                     ") committed but member " + std::to_string(n) +
                     " could win an election without it");
            }
        }
    }

    void installSnapshot(Member& m, const raft::Snapshot& s) {
        StateMachine sm = StateMachine::decode(s.data);
        auto it = canon_.find(sm.applied);
        if (it != canon_.end() && it->second.chain != sm.chain) {
            fail("snapshot at " + std::to_string(sm.applied) + " differs from committed state");
        }
        m.sm = sm;
        ++snapshotsInstalled_;
    }

    void maybeSnapshot(Member& m) {
        if (!opt_.snapshots || !m.up) return;
        Index snapIndex = m.storage.snapshot().meta.index;
        if (m.sm.applied >= snapIndex + 30 && chance(0.2)) {
            m.storage.createSnapshot(m.sm.applied, m.raft->confState(), m.sm.encode());
            m.durable.createSnapshot(m.sm.applied, m.raft->confState(), m.sm.encode());
        }
    }

    void checkRead(Member& m, const raft::ReadState& rs) {
        auto it = reads_.find(rs.context);
        if (it == reads_.end()) return;
        if (rs.index < it->second) {
            fail("stale read at member " + std::to_string(m.id) + ": read index " +
                 std::to_string(rs.index) + " but " + std::to_string(it->second) +
                 " was committed before the read began");
        }
        ++readsChecked_;
        reads_.erase(it);
    }

    Index maxCommitted() {
        Index c = 0;
        for (auto& [i, canon] : canon_)
            c = std::max(c, i);
        for (auto& m : members_) {
            if (m->up) c = std::max(c, m->raft->log().committed());
        }
        return c;
    }

    // ---- one round ----
    void step() {
        ++tick_;
        for (auto& m : members_) {
            if (!m->up) continue;
            m->raft->tick();
            handleReady(*m);
        }
        for (int i = 0; i < 4; ++i) {
            deliverDue();
            persistDue();
            ++tick_;
        }
    }

    void faults() {
        if (chance(0.01)) {  // partition one member from the others, possibly one way only
            NodeId a = static_cast<NodeId>(pick(members_.size()) + 1);
            bool oneWay = chance(0.3);
            for (auto& m : members_) {
                if (m->id == a) continue;
                blocked_.insert({a, m->id});
                if (!oneWay) blocked_.insert({m->id, a});
            }
        }
        if (chance(0.01)) {  // cut a random link
            NodeId a = static_cast<NodeId>(pick(members_.size()) + 1);
            NodeId b = static_cast<NodeId>(pick(members_.size()) + 1);
            if (a != b) blocked_.insert({a, b});
        }
        if (chance(0.02)) blocked_.clear();  // heal
        for (auto& m : members_) {
            auto d = doomed_.find(m->id);
            if (d != doomed_.end() && d->second <= round_) {
                doomed_.erase(d);
                if (m->up) crash(*m);
                continue;
            }
            if (m->up && chance(crashRate_))
                crash(*m);
            else if (!m->up && chance(0.05))
                start(*m);
        }
    }

    Member* leader() {
        Member* best = nullptr;
        for (auto& m : members_) {
            if (m->up && m->raft->role() == Role::Leader &&
                (!best || m->raft->term() > best->raft->term())) {
                best = m.get();
            }
        }
        return best;
    }

    void clients() {
        if (chance(0.3)) {  // propose at a random member (followers forward)
            Member& m = *members_[pick(members_.size())];
            if (m.up) {
                std::string data = "p" + std::to_string(proposals_++);
                m.raft->propose(data);
                pending_.insert(data);
                handleReady(m);
            }
        }
        if (chance(0.1)) {  // linearizable read at a random member
            Member& m = *members_[pick(members_.size())];
            if (m.up) {
                std::string ctx = "r" + std::to_string(readSeq_++);
                reads_[ctx] = maxCommitted();
                m.raft->readIndex(ctx);
                handleReady(m);
            }
        }
        if (chance(0.02)) {
            // A transport hint that some peer's connection closed: right (it crashed) or wrong
            // (it is alive). Hints may only speed elections up, never break safety.
            Member& m = *members_[pick(members_.size())];
            if (m.up) {
                m.raft->peerUnreachable(static_cast<NodeId>(pick(members_.size()) + 1));
                handleReady(m);
            }
        }
        Member* l = leader();
        if (l && chance(0.01)) {
            NodeId target = static_cast<NodeId>(pick(members_.size()) + 1);
            l->raft->transferLeadership(target);
            handleReady(*l);
        }
        l = leader();  // the transfer's Ready may have crashed the old one
        if (l && opt_.membershipChanges && chance(0.01)) membershipChange(*l);
    }

    void membershipChange(Member& l) {
        raft::ConfState conf = l.raft->confState();
        NodeId n = static_cast<NodeId>(pick(members_.size()) + 1);
        bool voter = std::count(conf.voters.begin(), conf.voters.end(), n) > 0;
        bool learner = std::count(conf.learners.begin(), conf.learners.end(), n) > 0;
        ConfChange cc;
        cc.node = n;
        if (learner) {
            cc.type = ConfChange::Type::AddVoter;  // promote
        } else if (voter) {
            if (conf.voters.size() <= 3) return;  // keep enough voters for the faults
            cc.type = ConfChange::Type::Remove;
        } else {
            cc.type = ConfChange::Type::AddLearner;
        }
        l.raft->proposeConfChange(cc);
        handleReady(l);
    }

    void check() {
        for (auto& m : members_) {
            if (m->up) m->raft->checkInvariants();
        }
        if (round_ % 10 == 0) checkLogMatching();
    }

    // Log matching: if two logs hold an entry with the same index and term, they are identical
    // up to it.
    void checkLogMatching() {
        for (size_t a = 0; a < members_.size(); ++a) {
            for (size_t b = a + 1; b < members_.size(); ++b) {
                Member& x = *members_[a];
                Member& y = *members_[b];
                if (!x.up || !y.up) continue;
                const auto& lx = x.raft->log();
                const auto& ly = y.raft->log();
                Index lo = std::max(lx.firstIndex(), ly.firstIndex());
                Index hi = std::min(lx.lastIndex(), ly.lastIndex());
                bool matched = false;
                for (Index i = hi; i >= lo && i > 0; --i) {
                    bool same = lx.term(i) == ly.term(i);
                    if (matched && !same) {
                        fail("log matching: members " + std::to_string(x.id) + " and " +
                             std::to_string(y.id) + " agree at a later index but differ at " +
                             std::to_string(i));
                    }
                    matched = matched || same;
                }
            }
        }
    }

    std::string describe() {
        std::ostringstream out;
        for (auto& m : members_) {
            out << " [" << m->id << ": " << (m->up ? raft::roleName(m->raft->role()) : "down");
            if (m->up) {
                const auto& l = m->raft->log();
                out << " term " << m->raft->term() << " lead " << m->raft->leader() << " commit "
                    << l.committed() << " applied " << m->sm.applied << " last " << l.lastIndex()
                    << " voters";
                for (auto v : m->raft->confState().voters)
                    out << " " << v;
                out << " learners";
                for (auto v : m->raft->confState().learners)
                    out << " " << v;
            }
            out << "]";
        }
        return out.str();
    }

    void heal() {
        blocked_.clear();
        for (auto& m : members_) {
            if (!m->up) start(*m);
        }
    }

    void liveness() {
        dropRate_ = 0;
        dupRate_ = 0;
        crashMidReady_ = 0;
        // Propose a probe at the leader; if leadership moves before it commits, the entry may
        // be lost with the old leader's log, so propose again under the new one.
        Term probeTerm = 0;
        Index target = 0;
        for (int r = 0; r < opt_.livenessRounds; ++r, ++round_) {
            step();
            check();
            Member* l = leader();
            if (!l) continue;
            if (probeTerm != l->raft->term()) {
                if (l->raft->propose("liveness") != raft::ProposeResult::Accepted) continue;
                probeTerm = l->raft->term();
                target = l->raft->log().lastIndex();
                handleReady(*l);
            }
            bool done = true;
            for (NodeId v : l->raft->confState().voters) {
                if (member(v).sm.applied < target) done = false;
            }
            if (done) return;
        }
        fail(std::string("liveness: ") + (leader() ? "no commit" : "no leader") + " within " +
             std::to_string(opt_.livenessRounds) + " rounds after healing;" + describe());
    }

    SimOptions opt_;
    std::mt19937_64 rng_;
    std::vector<std::unique_ptr<Member>> members_;
    std::vector<InFlight> net_;
    std::set<std::pair<NodeId, NodeId>> blocked_;
    std::map<Index, Canon> canon_;
    std::map<Term, NodeId> leaders_;
    std::map<std::string, Index> reads_;
    std::set<std::string> pending_;
    uint64_t round_ = 0;
    uint64_t tick_ = 0;
    uint64_t seq_ = 0;
    uint64_t proposals_ = 0;
    uint64_t readSeq_ = 0;
    uint64_t readsChecked_ = 0;
    uint64_t snapshotsInstalled_ = 0;
    uint64_t restarts_ = 0;
    double dropRate_ = 0.05;
    double dupRate_ = 0.02;
    double crashMidReady_ = 0.002;
    uint64_t maxBytesPerMsg_ = 4096;
    uint64_t snapshotChunkBytes_ = 1 << 20;
    double crashRate_ = 0.004;
    double shortLeaderChance_ = 0;
    std::map<NodeId, uint64_t> doomed_;  // member → round at which it crashes
};

}  // namespace

SimResult runSimulation(const SimOptions& options) {
    return Simulation(options).run();
}

}  // namespace coord::sim
