#include "recipes/barrier.h"

namespace coord {

RecipeResult<Ok> Barrier::hold(Deadline deadline) {
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(),
                            detail::orDefault(client_, deadline)};
    auto r = detail::createIfAbsent(client_, key_, "", 0, ctx);
    if (!r.ok()) return fail(r.error());
    if (!r->second)
        return fail(RecipeError{RecipeError::Kind::Busy, key_ + " is already held", {}});
    return Ok{};
}

RecipeResult<Ok> Barrier::release(Deadline deadline) {
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(),
                            detail::orDefault(client_, deadline)};
    DeleteRangeRequest d;
    d.key = key_;
    auto r = detail::retry<DeleteRangeResponse>(client_, ctx,
                                                [&](Deadline dl) { return client_.del(d, dl); });
    if (!r.ok()) return fail(r.error());
    return Ok{};
}

RecipeResult<Ok> Barrier::wait(Deadline deadline) {
    detail::WaitContext ctx{nullptr, &cancel_, cancel_.token(), deadline};
    for (;;) {
        RangeRequest q;
        q.key = key_;
        q.keysOnly = true;
        auto r = detail::retry<RangeResponse>(
            client_, ctx, [&](Deadline d) { return client_.range(q, false, d); });
        if (!r.ok()) return fail(r.error());
        if (r->kvs.empty()) return Ok{};
        WatchRequest w;
        w.key = key_;
        w.startRevision = r->revision + 1;
        w.noPut = true;
        auto waited = detail::waitForEvent(
            client_, w, [](const Event&) { return true; }, ctx);
        if (!waited.ok()) return fail(waited.error());
    }
}

DoubleBarrier::DoubleBarrier(Session& session, std::string key, int64_t count)
    : session_(session),
      key_(std::move(key)),
      count_(std::max<int64_t>(count, 1)),
      myKey_(detail::ownKey(key_ + "/waiters", session.lease())) {}

DoubleBarrier::~DoubleBarrier() {
    if (myRev_ != 0) (void)drop(myRev_, detail::kForever);
}

RecipeResult<Ok> DoubleBarrier::drop(int64_t rev, Deadline deadline) {
    myRev_ = 0;
    // A participant key left behind would count towards every later round.
    auto deleted = detail::deleteOrDefer(session_, myKey_, rev, deadline);
    if (!deleted.ok()) unreleased_ = rev;
    return deleted;
}

RecipeResult<std::pair<int64_t, bool>> DoubleBarrier::state(const detail::WaitContext& ctx,
                                                            int64_t& waiters) {
    // One txn without compares: the waiter count and the ready key at one revision.
    Client& client = session_.client();
    TxnRequest t;
    RangeRequest count;
    count.key = key_ + "/waiters/";
    count.rangeEnd = kv::prefixEnd(count.key);
    count.countOnly = true;
    RangeRequest ready;
    ready.key = key_ + "/ready";
    ready.keysOnly = true;
    t.success = {RequestOp{count}, RequestOp{ready}};
    auto r = detail::retry<TxnResponse>(client, ctx, [&](Deadline d) { return client.txn(t, d); });
    if (!r.ok()) return fail(r.error());
    waiters = std::get<RangeResponse>(r->responses[0].op).count;
    bool isReady = !std::get<RangeResponse>(r->responses[1].op).kvs.empty();
    return std::pair<int64_t, bool>{r->revision, isReady};
}

RecipeResult<Ok> DoubleBarrier::waitChange(int64_t revision, const detail::WaitContext& ctx) {
    WatchRequest w;
    w.key = key_ + "/";
    w.rangeEnd = kv::prefixEnd(w.key);
    w.startRevision = revision + 1;
    return detail::waitForEvent(
        session_.client(), w, [](const Event&) { return true; }, ctx);
}

RecipeResult<Ok> DoubleBarrier::enter(Deadline deadline) {
    detail::WaitContext ctx{&session_, &cancel_, cancel_.token(), deadline};
    Client& client = session_.client();
    if (unreleased_ >= 0) {
        // An earlier participation whose deletion is unconfirmed: the create would adopt it.
        auto gone = detail::deleteOwned(client, myKey_, unreleased_, deadline);
        if (!gone.ok()) return fail(gone.error());
        unreleased_ = -1;
    }
    auto created = detail::createIfAbsent(client, myKey_, "", session_.lease(), ctx);
    if (!created.ok()) {
        if (detail::mayHaveApplied(created.error())) (void)drop(0, detail::kForever);
        return fail(created.error());
    }
    myRev_ = created->first;
    for (;;) {
        int64_t waiters = 0;
        auto st = state(ctx, waiters);
        if (!st.ok()) {
            (void)drop(myRev_, detail::kForever);
            return fail(st.error());
        }
        if (st->second) return Ok{};
        if (waiters >= count_) {
            auto ready = detail::createIfAbsent(client, key_ + "/ready", "", 0, ctx);
            if (!ready.ok()) return fail(ready.error());
            return Ok{};
        }
        auto waited = waitChange(st->first, ctx);
        if (!waited.ok()) {
            (void)drop(myRev_, detail::kForever);
            return fail(waited.error());
        }
    }
}

RecipeResult<Ok> DoubleBarrier::leave(Deadline deadline) {
    detail::WaitContext ctx{&session_, &cancel_, cancel_.token(), deadline};
    Client& client = session_.client();
    if (myRev_ != 0) {
        auto d = detail::deleteOwned(client, myKey_, myRev_);
        if (!d.ok()) return fail(d.error());
        myRev_ = 0;
    }
    for (;;) {
        int64_t waiters = 0;
        auto st = state(ctx, waiters);
        if (!st.ok()) return fail(st.error());
        if (waiters == 0) {
            if (st->second) {
                DeleteRangeRequest d;
                d.key = key_ + "/ready";
                auto r = detail::retry<DeleteRangeResponse>(
                    client, ctx, [&](Deadline dl) { return client.del(d, dl); });
                if (!r.ok()) return fail(r.error());
            }
            return Ok{};
        }
        auto waited = waitChange(st->first, ctx);
        if (!waited.ok()) return fail(waited.error());
    }
}

}  // namespace coord
