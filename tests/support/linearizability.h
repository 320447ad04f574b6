// A linearizability checker for histories of register operations (read, write, compare-and-set)
// recorded from real clients: the Wing & Gong search with Lowe's memoization (the algorithm
// behind Knossos and Porcupine), run per key — linearizability is local, so each key's
// sub-history can be checked alone.
//
// An operation whose outcome is unknown (the client lost the answer: it may or may not have
// taken effect) has no completion time: the search may linearize it anywhere after its
// invocation, or leave it out.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace coord::test::lin {

using Value = std::optional<std::string>;  // nullopt: the key is absent

struct Op {
    enum class Kind { Read, Write, Cas };
    Kind kind = Kind::Read;
    std::string key;
    Value value;           // Read: the value seen; Write: the value written; Cas: the new value
    Value expected;        // Cas: the value compared against
    bool casOk = false;    // Cas: whether the compare succeeded (meaningless when unknown)
    int64_t invoke = 0;    // ns, one clock for every client
    int64_t complete = 0;  // ns; ignored when unknown
    bool unknown = false;  // the outcome was lost (writes and CAS only)
    int client = 0;
};

struct Verdict {
    bool ok = true;
    std::string key;  // the first key whose history is not linearizable
    size_t ops = 0;   // operations checked in all
    std::string detail;
};

namespace detail {

// Applies `op` to `state` if the model allows the result it returned; false when it cannot
// have happened in this state.
inline bool step(const Op& op, Value& state) {
    switch (op.kind) {
        case Op::Kind::Read:
            return op.value == state;
        case Op::Kind::Write:
            state = op.value;
            return true;
        case Op::Kind::Cas:
            if (op.unknown) {
                // Either branch: the search tries the one the state dictates.
                if (state == op.expected) state = op.value;
                return true;
            }
            if (op.casOk) {
                if (state != op.expected) return false;
                state = op.value;
                return true;
            }
            return state != op.expected;
    }
    return false;
}

struct Entry {
    size_t op;
    bool isCall;
    int64_t time;
    Entry* prev = nullptr;
    Entry* next = nullptr;
    Entry* match = nullptr;  // call → its return (nullptr for unknown ops); return → call
};

inline bool checkOne(const std::vector<Op>& ops, size_t* explored) {
    const size_t n = ops.size();
    std::vector<Entry> storage;
    storage.reserve(2 * n + 1);
    std::vector<Entry*> order;
    for (size_t i = 0; i < n; ++i) {
        storage.push_back(Entry{i, true, ops[i].invoke});
    }
    for (size_t i = 0; i < n; ++i) {
        if (ops[i].unknown) continue;
        storage.push_back(Entry{i, false, ops[i].complete});
        storage[i].match = &storage.back();
        storage.back().match = &storage[i];
    }
    for (auto& e : storage)
        order.push_back(&e);
    // Time order; at equal times calls before returns (the conservative choice: overlapping).
    std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
        if (a->time != b->time) return a->time < b->time;
        return a->isCall && !b->isCall;
    });
    Entry head{SIZE_MAX, false, 0};
    Entry* prev = &head;
    for (Entry* e : order) {
        prev->next = e;
        e->prev = prev;
        prev = e;
    }
    auto lift = [](Entry* call) {
        call->prev->next = call->next;
        if (call->next) call->next->prev = call->prev;
        if (Entry* ret = call->match) {
            ret->prev->next = ret->next;
            if (ret->next) ret->next->prev = ret->prev;
        }
    };
    auto unlift = [](Entry* call) {
        if (Entry* ret = call->match) {
            ret->prev->next = ret;
            if (ret->next) ret->next->prev = ret;
        }
        call->prev->next = call;
        if (call->next) call->next->prev = call;
    };
    // Done when no return entry is left: what remains are unknown ops, which may be left out.
    size_t returnsLeft = 0;
    for (size_t i = 0; i < n; ++i)
        if (!ops[i].unknown) ++returnsLeft;

    const size_t words = (n + 63) / 64;
    std::vector<uint64_t> linearized(words, 0);
    struct Key {
        std::vector<uint64_t> bits;
        Value state;
        bool operator==(const Key&) const = default;
    };
    struct Hash {
        size_t operator()(const Key& k) const {
            size_t h = std::hash<std::string>()(k.state.value_or("\x01<absent>"));
            for (auto w : k.bits)
                h = h * 1000003u ^ std::hash<uint64_t>()(w);
            return h;
        }
    };
    std::unordered_set<Key, Hash> cache;
    struct Frame {
        Entry* call;
        Value before;
    };
    std::vector<Frame> stack;
    Value state;
    Entry* e = head.next;
    // Undoes the newest linearization choice and resumes the scan just after that call.
    auto backtrack = [&]() -> bool {
        if (stack.empty()) return false;
        Frame f = stack.back();
        stack.pop_back();
        state = f.before;
        linearized[f.call->op / 64] &= ~(uint64_t{1} << (f.call->op % 64));
        if (f.call->match) ++returnsLeft;
        unlift(f.call);
        e = f.call->next;
        return true;
    };
    const size_t budget = 50'000'000;
    size_t steps = 0;
    while (returnsLeft > 0) {
        if (++steps > budget) return false;  // give up: treat as a failure to find one
        // At the end (only unknown calls ahead, yet some op must still return) or at a return
        // whose op was not linearized yet: something earlier must change.
        if (e == nullptr || !e->isCall) {
            if (!backtrack()) return false;
            continue;
        }
        Value next = state;
        if (step(ops[e->op], next)) {
            auto bits = linearized;
            bits[e->op / 64] |= uint64_t{1} << (e->op % 64);
            if (cache.insert(Key{bits, next}).second) {
                stack.push_back(Frame{e, state});
                state = std::move(next);
                linearized = std::move(bits);
                if (e->match) --returnsLeft;
                lift(e);
                e = head.next;
                continue;
            }
        }
        e = e->next;
    }
    if (explored) *explored += steps;
    return true;
}

}  // namespace detail

// Checks every key's history; the register starts absent.
inline Verdict check(const std::vector<Op>& history) {
    std::map<std::string, std::vector<Op>> byKey;
    for (const auto& op : history)
        byKey[op.key].push_back(op);
    Verdict v;
    for (auto& [key, ops] : byKey) {
        v.ops += ops.size();
        size_t explored = 0;
        if (!detail::checkOne(ops, &explored)) {
            v.ok = false;
            v.key = key;
            v.detail =
                std::to_string(ops.size()) + " operations on '" + key + "' admit no linearization";
            return v;
        }
    }
    return v;
}

}  // namespace coord::test::lin
