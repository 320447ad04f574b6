#include "recipes/queue.h"

#include <cstdio>
#include <sstream>

namespace coord {

namespace {

std::string padCount(int64_t n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%020lld", static_cast<long long>(n));
    return buf;
}

Compare compare(std::string key, Compare::Target target, Compare::Op op, int64_t number,
                std::string value = "") {
    Compare c;
    c.key = std::move(key);
    c.target = target;
    c.op = op;
    c.number = number;
    c.value = std::move(value);
    return c;
}

}  // namespace

// ---- Queue ----

Queue::Queue(Client& client, std::string prefix)
    : client_(client),
      prefix_(std::move(prefix)),
      items_(prefix_ + "/items/"),
      claimKey_(detail::ownKey(prefix_ + "/claims", 0)) {}

Queue::~Queue() {
    std::lock_guard lock(mu_);
    if (pending_) {
        detail::WaitContext ctx{
            nullptr, nullptr, {}, Clock::now() + client_.options().requestTimeout};
        auto resolved = resolveLocked(ctx);
        if (!resolved.ok()) return;  // the record stays: it names the item the claim may hold
        if (*resolved) {
            // Taken but never delivered: back into the queue (as its youngest item).
            const KeyValue& item = **resolved;
            if (!detail::createIfAbsent(client_, item.key, item.value, 0, ctx).ok()) return;
        }
    }
    DeleteRangeRequest d;
    d.key = claimKey_;
    (void)client_.del(d);
}

RecipeResult<std::string> Queue::enqueue(const std::string& value, const std::string& name) {
    std::string key = name.empty() ? detail::ownKey(prefix_ + "/items", 0) : items_ + name;
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(),
                            Clock::now() + client_.options().requestTimeout};
    auto busy = [&] {
        return RecipeError{RecipeError::Kind::Busy, key + " is already queued", {}};
    };
    if (!countsEnqueues()) {
        auto r = detail::createIfAbsent(client_, key, value, 0, ctx);
        if (!r.ok()) return fail(r.error());
        if (!r->second && !name.empty()) return fail(busy());
        return key;
    }
    // Count every enqueue: the item and the counter change in one txn, guarded by the
    // counter's mod revision (optimistic; retried on a concurrent enqueue).
    std::string countKey = prefix_ + "/count";
    for (;;) {
        TxnRequest read;
        RangeRequest c;
        c.key = countKey;
        RangeRequest i;
        i.key = key;
        i.keysOnly = true;
        read.success = {RequestOp{c}, RequestOp{i}};
        auto got = detail::retry<TxnResponse>(client_, ctx,
                                              [&](Deadline d) { return client_.txn(read, d); });
        if (!got.ok()) return fail(got.error());
        const auto& counter = std::get<RangeResponse>(got->responses[0].op);
        if (!std::get<RangeResponse>(got->responses[1].op).kvs.empty()) {
            // Present already: ours (an earlier try whose reply was lost) or a duplicate name.
            if (name.empty()) return key;
            return fail(busy());
        }
        int64_t n = counter.kvs.empty() ? 0 : std::stoll(counter.kvs.front().value);
        int64_t mod = counter.kvs.empty() ? 0 : counter.kvs.front().modRevision;
        TxnRequest t;
        t.compare = {compare(countKey, Compare::Target::Mod, Compare::Op::Equal, mod),
                     compare(key, Compare::Target::Create, Compare::Op::Equal, 0)};
        PutRequest item;
        item.key = key;
        item.value = value;
        PutRequest count;
        count.key = countKey;
        count.value = padCount(n + 1);
        t.success = {RequestOp{item}, RequestOp{count}};
        auto r =
            detail::retry<TxnResponse>(client_, ctx, [&](Deadline d) { return client_.txn(t, d); });
        if (!r.ok()) return fail(r.error());
        if (r->succeeded) return key;
    }
}

bool Queue::releaseCompares(std::vector<Compare>&, int64_t& readRevision,
                            const detail::WaitContext&) {
    readRevision = 0;
    return true;
}

RecipeResult<std::optional<KeyValue>> Queue::resolvePending(Deadline deadline) {
    std::lock_guard lock(mu_);
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(),
                            detail::orDefault(client_, deadline)};
    return resolveLocked(ctx);
}

RecipeResult<std::optional<KeyValue>> Queue::resolveLocked(const detail::WaitContext& ctx) {
    while (pending_) {
        // Overwrite the record if it is as this consumer last knew it: every claim sent since
        // compares the old mod revision, so none of them can apply afterwards. If the record
        // changed, the pending claim (the only writer besides this) took its item — unless a
        // lost reply hid that this very overwrite had already happened.
        TxnRequest settle;
        settle.compare.push_back(
            compare(claimKey_, Compare::Target::Mod, Compare::Op::Equal, claimRevision_));
        PutRequest idle;
        idle.key = claimKey_;
        settle.success.push_back(RequestOp{idle});
        RangeRequest record;
        record.key = claimKey_;
        settle.failure.push_back(RequestOp{record});
        auto r = detail::retry<TxnResponse>(client_, ctx,
                                            [&](Deadline d) { return client_.txn(settle, d); });
        if (!r.ok()) return fail(r.error());
        if (r->succeeded) {
            claimRevision_ = r->revision;
            pending_.reset();
            return std::optional<KeyValue>{};
        }
        const KeyValue* seen = noteRecord(*r);
        // Deleted by someone else: a claim comparing "absent" could still apply. Write the
        // record afresh.
        if (!seen) continue;
        std::optional<KeyValue> taken;
        if (seen->value == pending_->marker) taken = std::move(pending_->item);
        pending_.reset();
        return taken;
    }
    return std::optional<KeyValue>{};
}

RecipeResult<KeyValue> Queue::dequeue(Deadline deadline) {
    std::lock_guard lock(mu_);
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(), deadline};
    {
        auto earlier = resolveLocked(ctx);
        if (!earlier.ok()) return fail(earlier.error());
        if (*earlier) return std::move(**earlier);
    }
    for (;;) {
        std::vector<Compare> compares;
        int64_t conditionRevision = 0;
        bool open = releaseCompares(compares, conditionRevision, ctx);
        if (auto stop = ctx.interrupted()) return fail(*stop);
        if (!open) {
            // Closed: wait for any change under the prefix (condition, counter, items).
            WatchRequest w;
            w.key = prefix_ + "/";
            w.rangeEnd = kv::prefixEnd(w.key);
            w.startRevision = conditionRevision + 1;
            auto waited = detail::waitForEvent(
                client_, w, [](const Event&) { return true; }, ctx);
            if (!waited.ok()) return fail(waited.error());
            continue;
        }
        RangeRequest q;
        q.key = items_;
        q.rangeEnd = kv::prefixEnd(items_);
        q.sortOrder = kv::SortOrder::Ascend;
        q.sortTarget = kv::SortTarget::Create;
        q.limit = 1;
        auto r = detail::retry<RangeResponse>(
            client_, ctx, [&](Deadline d) { return client_.range(q, false, d); });
        if (!r.ok()) return fail(r.error());
        if (r->kvs.empty()) {
            WatchRequest w;
            w.key = items_;
            w.rangeEnd = kv::prefixEnd(items_);
            w.startRevision = r->revision + 1;
            w.noDelete = true;
            auto waited = detail::waitForEvent(
                client_, w, [](const Event&) { return true; }, ctx);
            if (!waited.ok()) return fail(waited.error());
            continue;
        }
        KeyValue item = r->kvs.front();
        std::string marker = item.key + "\n" + std::to_string(item.createRevision);
        TxnRequest claim;
        claim.compare = compares;
        claim.compare.push_back(
            compare(item.key, Compare::Target::Mod, Compare::Op::Equal, item.modRevision));
        claim.compare.push_back(
            compare(claimKey_, Compare::Target::Mod, Compare::Op::Equal, claimRevision_));
        DeleteRangeRequest del;
        del.key = item.key;
        PutRequest record;
        record.key = claimKey_;
        record.value = marker;
        claim.success = {RequestOp{del}, RequestOp{record}};
        RangeRequest mine;
        mine.key = claimKey_;
        claim.failure = {RequestOp{mine}};
        // The deadline bounds the wait for an item; a claim once sent gets a whole request
        // timeout to be answered, so that a slow answer near the deadline does not leave it
        // pending (then settled later, and its item put back behind younger ones if this
        // consumer goes away).
        detail::WaitContext claiming = ctx;
        claiming.deadline = std::max(ctx.deadline, Clock::now() + client_.options().requestTimeout);
        auto c = detail::retry<TxnResponse>(client_, claiming,
                                            [&](Deadline d) { return client_.txn(claim, d); });
        if (!c.ok()) {
            // Sent, maybe applied: the next call settles it before anything else.
            if (detail::mayHaveApplied(c.error())) pending_ = Pending{std::move(item), marker};
            return fail(c.error());
        }
        if (c->succeeded) {
            claimRevision_ = c->revision;
            return item;
        }
        // Taken by another consumer, the condition changed — or our own earlier try (whose
        // reply was lost) took it: the claim record tells.
        const KeyValue* seen = noteRecord(*c);
        if (seen && seen->value == marker) return item;
    }
}

const KeyValue* Queue::noteRecord(const TxnResponse& failed) {
    const auto& kvs = std::get<RangeResponse>(failed.responses.front().op).kvs;
    claimRevision_ = kvs.empty() ? 0 : kvs.front().modRevision;
    return kvs.empty() ? nullptr : &kvs.front();
}

// ---- ConditionQueue ----

std::string QueueCondition::encode() const {
    switch (kind) {
        case Kind::CountAtLeast:
            return "count >= " + std::to_string(count);
        case Kind::Exists:
            return "exists " + name;
        case Kind::Equals:
            return "equals " + name + " " + value;
    }
    return "";
}

std::optional<QueueCondition> QueueCondition::parse(const std::string& text) {
    std::istringstream in(text);
    std::string word;
    in >> word;
    QueueCondition c;
    if (word == "count") {
        std::string op;
        in >> op >> c.count;
        if (op != ">=" || in.fail()) return std::nullopt;
        c.kind = Kind::CountAtLeast;
        return c;
    }
    if (word == "exists") {
        in >> c.name;
        if (c.name.empty()) return std::nullopt;
        c.kind = Kind::Exists;
        return c;
    }
    if (word == "equals") {
        in >> c.name;
        if (c.name.empty()) return std::nullopt;
        std::getline(in >> std::ws, c.value);
        c.kind = Kind::Equals;
        return c;
    }
    return std::nullopt;
}

ConditionQueue::ConditionQueue(Client& client, std::string prefix)
    : Queue(client, std::move(prefix)) {}

RecipeResult<Ok> ConditionQueue::setCondition(const QueueCondition& condition, Deadline deadline) {
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(),
                            detail::orDefault(client_, deadline)};
    auto r = detail::retry<PutResponse>(client_, ctx, [&](Deadline d) {
        return client_.put(prefix_ + "/condition", condition.encode(), 0, d);
    });
    if (!r.ok()) return fail(r.error());
    return Ok{};
}

RecipeResult<Ok> ConditionQueue::clearCondition(Deadline deadline) {
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(),
                            detail::orDefault(client_, deadline)};
    DeleteRangeRequest d;
    d.key = prefix_ + "/condition";
    auto r = detail::retry<DeleteRangeResponse>(client_, ctx,
                                                [&](Deadline dl) { return client_.del(d, dl); });
    if (!r.ok()) return fail(r.error());
    return Ok{};
}

bool ConditionQueue::releaseCompares(std::vector<Compare>& compares, int64_t& readRevision,
                                     const detail::WaitContext& ctx) {
    // Read the condition and the key it names at one revision (one txn without compares).
    std::string condKey = prefix_ + "/condition";
    RangeRequest cond;
    cond.key = condKey;
    auto first = detail::retry<RangeResponse>(
        client_, ctx, [&](Deadline d) { return client_.range(cond, false, d); });
    if (!first.ok()) return false;
    readRevision = first->revision;
    if (first->kvs.empty()) return false;
    auto parsed = QueueCondition::parse(first->kvs.front().value);
    if (!parsed) return false;
    compares.push_back(
        compare(condKey, Compare::Target::Mod, Compare::Op::Equal, first->kvs.front().modRevision));
    std::string subject = parsed->kind == QueueCondition::Kind::CountAtLeast
                              ? prefix_ + "/count"
                              : prefix_ + "/" + parsed->name;
    if (parsed->kind == QueueCondition::Kind::CountAtLeast && parsed->count <= 0) return true;
    RangeRequest s;
    s.key = subject;
    s.revision = first->revision;
    auto got = detail::retry<RangeResponse>(client_, ctx,
                                            [&](Deadline d) { return client_.range(s, false, d); });
    if (!got.ok() || got->kvs.empty()) return false;
    const auto& kv = got->kvs.front();
    switch (parsed->kind) {
        case QueueCondition::Kind::CountAtLeast:
            if (std::stoll(kv.value) < parsed->count) return false;
            compares.push_back(compare(subject, Compare::Target::Value, Compare::Op::Greater, 0,
                                       padCount(parsed->count - 1)));
            return true;
        case QueueCondition::Kind::Exists:
            compares.push_back(compare(subject, Compare::Target::Create, Compare::Op::Greater, 0));
            return true;
        case QueueCondition::Kind::Equals:
            if (kv.value != parsed->value) return false;
            compares.push_back(
                compare(subject, Compare::Target::Value, Compare::Op::Equal, 0, parsed->value));
            return true;
    }
    return false;
}

}  // namespace coord
