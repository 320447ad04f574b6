#include "recipes/detail.h"

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>

namespace coord {

std::string RecipeError::describe() const {
    switch (kind) {
        case Kind::Timeout:
            return "timed out: " + message;
        case Kind::Canceled:
            return "canceled: " + message;
        case Kind::SessionLost:
            return "session lost: " + message;
        case Kind::NotHeld:
            return "not held: " + message;
        case Kind::Busy:
            return "busy: " + message;
        case Kind::Client:
            return client.describe();
    }
    return message;
}

namespace detail {

std::string ownKey(const std::string& prefix, int64_t lease) {
    static std::mutex mu;
    static std::mt19937_64 rng(std::random_device{}());
    uint64_t nonce;
    {
        std::lock_guard lock(mu);
        nonce = rng();
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "/%016llx_%016llx", static_cast<unsigned long long>(lease),
                  static_cast<unsigned long long>(nonce));
    return prefix + buf;
}

Deadline callDeadline(const Client& client, Deadline overall) {
    auto bounded = Clock::now() + client.options().requestTimeout;
    return std::min(bounded, overall);
}

RecipeError clientError(const Error& e) {
    return RecipeError{RecipeError::Kind::Client, e.describe(), e};
}

RecipeError timeoutError(const std::string& what) {
    return RecipeError{RecipeError::Kind::Timeout, what, {}};
}

std::optional<RecipeError> WaitContext::interrupted() const {
    if (cancel && cancel->canceled(token)) {
        return RecipeError{RecipeError::Kind::Canceled, "canceled by another thread", {}};
    }
    if (session && session->isLost()) {
        return RecipeError{RecipeError::Kind::SessionLost,
                           "lease " + std::to_string(session->lease()) + " is gone",
                           {}};
    }
    if (Clock::now() >= deadline) return timeoutError("deadline passed");
    return std::nullopt;
}

RecipeResult<Ok> waitForEvent(Client& client, const WatchRequest& request,
                              const std::function<bool(const Event&)>& accept,
                              const WaitContext& ctx, const RangeRequest* readAfter,
                              std::optional<RangeResponse>* readResult) {
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        bool hit = false;
        bool fired = false;  // client thread only
        std::optional<RangeResponse> read;
        std::optional<Error> error;
    };
    auto st = std::make_shared<State>();
    WatchCallbacks cb;
    std::optional<RangeRequest> then;
    if (readAfter) then = *readAfter;
    cb.onEvents = [st, accept, &client, then](std::span<const Event> events, int64_t) {
        if (st->fired) return;
        for (auto it = events.begin(); it != events.end(); ++it) {
            if (!accept(*it)) continue;
            st->fired = true;
            for (auto same = it + 1;
                 same != events.end() && same->kv.modRevision == it->kv.modRevision; ++same)
                (void)accept(*same);
            if (!then) {
                std::lock_guard lock(st->mu);
                st->hit = true;
                st->cv.notify_all();
                return;
            }
            // Read at once from the client's thread: the waiter wakes once, with the answer.
            client.rangeAsync(*then, true, [st](Expected<RangeResponse> r) {
                std::lock_guard lock(st->mu);
                if (r.ok()) st->read = std::move(r).value();
                st->hit = true;
                st->cv.notify_all();
            });
            return;
        }
    };
    cb.onError = [st](const Error& e) {
        std::lock_guard lock(st->mu);
        st->error = e;
        st->cv.notify_all();
    };
    auto handle = client.watch(request, cb);
    if (!handle) return fail(clientError(Error{Error::Kind::Canceled, {}, "client closed", 0}));
    // Cancellation and session loss are polled; events wake the wait at once.
    constexpr auto kPoll = std::chrono::milliseconds(20);
    std::unique_lock lock(st->mu);
    for (;;) {
        if (st->hit) {
            if (readResult) *readResult = std::move(st->read);
            // Once fired, the callbacks do nothing: no need to wait for the client's thread.
            handle->detach();
            return Ok{};
        }
        if (st->error) {
            if (st->error->is(kv::ErrorCode::Compacted)) return Ok{};  // re-check from now
            return fail(clientError(*st->error));
        }
        if (auto stop = ctx.interrupted()) return fail(*stop);
        st->cv.wait_until(lock, std::min(ctx.deadline, Clock::now() + kPoll));
    }
}

RecipeResult<int64_t> waitTurn(Client& client, const std::string& myKey, int64_t myRev,
                               const std::string& blockKey, const std::string& blockEnd,
                               int64_t slots, bool ownInRange, const WaitContext& ctx, bool wait,
                               std::optional<TurnView> known) {
    struct View {
        bool ownMissing = false;
        std::vector<std::string> blockers;  // the youngest first
        int64_t at = 0;
    };
    // One consistent snapshot: my key and the keys created before it. A serializable read is
    // enough: at any revision where my key exists and no older key does, my turn has come
    // (later revisions only add younger keys). A member that lags may not show my key yet;
    // then the read is repeated through the leader before my key is declared gone.
    RangeRequest q;
    q.key = blockKey;
    q.rangeEnd = blockEnd;
    q.sortOrder = kv::SortOrder::Descend;
    q.sortTarget = kv::SortTarget::Create;
    q.keysOnly = true;
    // With my key in the range, one read shows it and the keys created before it.
    RangeRequest mineAndOlder = q;
    mineAndOlder.maxCreateRevision = myRev;
    mineAndOlder.limit = slots + 1;
    auto viewOf = [&](RangeResponse r) {
        View v;
        v.at = r.revision;
        if (r.kvs.empty() || r.kvs.front().key != myKey) {
            v.ownMissing = true;
        } else {
            for (auto it = r.kvs.begin() + 1; it != r.kvs.end(); ++it)
                v.blockers.push_back(std::move(it->key));
        }
        return v;
    };
    auto look = [&](bool serializable) -> RecipeResult<View> {
        View v;
        if (ownInRange) {
            auto r = retry<RangeResponse>(client, ctx, [&](Deadline d) {
                return client.range(mineAndOlder, serializable, d);
            });
            if (!r.ok()) return fail(r.error());
            return viewOf(std::move(r).value());
        }
        RangeRequest own;
        own.key = myKey;
        own.keysOnly = true;
        auto o = retry<RangeResponse>(
            client, ctx, [&](Deadline d) { return client.range(own, serializable, d); });
        if (!o.ok()) return fail(o.error());
        v.at = o->revision;
        v.ownMissing = o->kvs.empty();
        if (v.ownMissing) return v;
        q.maxCreateRevision = myRev - 1;
        q.limit = slots;
        q.revision = v.at;  // the same snapshot as the read of my key
        auto r = retry<RangeResponse>(client, ctx,
                                      [&](Deadline d) { return client.range(q, serializable, d); });
        if (!r.ok()) return fail(r.error());
        for (auto& kv : r->kvs)
            v.blockers.push_back(std::move(kv.key));
        return v;
    };
    std::optional<RangeResponse> prefetched;  // the read the wait made when its event came
    auto ownGone = [&]() -> RecipeError {
        if (ctx.session && ctx.session->isLost()) {
            return RecipeError{RecipeError::Kind::SessionLost,
                               "the waiter key " + myKey + " expired with its lease",
                               {}};
        }
        return RecipeError{
            RecipeError::Kind::NotHeld, "the waiter key " + myKey + " was deleted", {}};
    };
    // One known blocker and nothing else before me: one watch over the keys from the lower of
    // its key and mine to the higher shows, in revision order, whichever of the two is deleted
    // first. If it is the blocker's, my key still exists at that revision and nothing older
    // does (keys created later are younger): my turn has come, without a read.
    if (known && known->complete && slots == 1 && ownInRange && known->blockers.size() == 1 &&
        wait) {
        const std::string& pred = known->blockers.front();
        WatchRequest w;
        w.key = std::min(pred, myKey);
        w.rangeEnd = std::max(pred, myKey) + '\0';
        w.startRevision = known->at + 1;
        w.noPut = true;
        struct Seen {
            int64_t predGone = 0;
            bool mineGone = false;
        };
        auto seen = std::make_shared<Seen>();
        auto waited = waitForEvent(
            client, w,
            [seen, pred, myKey](const Event& e) {
                if (e.kv.key == myKey) seen->mineGone = true;
                if (e.kv.key == pred) seen->predGone = e.kv.modRevision;
                return e.kv.key == myKey || e.kv.key == pred;
            },
            ctx);
        if (!waited.ok()) return fail(waited.error());
        if (seen->mineGone) return fail(ownGone());
        if (seen->predGone != 0) return seen->predGone;
        known.reset();  // the watch ended unseen (compacted): read afresh below
    }
    for (;;) {
        RecipeResult<View> view = View{};
        if (known) {
            view->at = known->at;
            view->blockers = std::move(known->blockers);
            known.reset();
        } else {
            view = prefetched ? RecipeResult<View>(viewOf(std::move(*prefetched))) : look(true);
            prefetched.reset();
            if (view.ok() && view->ownMissing) view = look(false);
        }
        if (!view.ok()) return fail(view.error());
        if (view->ownMissing) return fail(ownGone());
        if (static_cast<int64_t>(view->blockers.size()) < slots) return view->at;
        if (!wait) return fail(RecipeError{RecipeError::Kind::Busy, "held by another", {}});

        // Wait for a blocker to go: with one slot, only the immediate predecessor matters (no
        // herd); with several, any deletion in the range may free a slot.
        WatchRequest w;
        w.startRevision = view->at + 1;
        w.noPut = true;
        if (slots == 1) {
            w.key = view->blockers.front();
        } else {
            w.key = blockKey;
            w.rangeEnd = blockEnd;
        }
        auto waited = waitForEvent(
            client, w, [](const Event&) { return true; }, ctx, ownInRange ? &mineAndOlder : nullptr,
            &prefetched);
        if (!waited.ok()) return fail(waited.error());
    }
}

Compare createRevisionEquals(const std::string& key, int64_t revision) {
    Compare c;
    c.key = key;
    c.target = Compare::Target::Create;
    c.op = Compare::Op::Equal;
    c.number = revision;
    return c;
}

TxnRequest createIfAbsentTxn(const std::string& key, const std::string& value, int64_t lease) {
    TxnRequest t;
    t.compare.push_back(createRevisionEquals(key, 0));
    PutRequest p;
    p.key = key;
    p.value = value;
    p.lease = lease;
    t.success.push_back(RequestOp{p});
    RangeRequest g;
    g.key = key;
    t.failure.push_back(RequestOp{g});
    return t;
}

TxnRequest deleteOwnedTxn(const std::string& key, int64_t createRev) {
    TxnRequest t;
    if (createRev != 0) t.compare.push_back(createRevisionEquals(key, createRev));
    DeleteRangeRequest d;
    d.key = key;
    t.success.push_back(RequestOp{d});
    return t;
}

RecipeResult<Ok> deleteOwned(Client& client, const std::string& key, int64_t createRev,
                             Deadline deadline) {
    TxnRequest t = deleteOwnedTxn(key, createRev);
    WaitContext ctx;
    ctx.deadline = std::min(deadline, Clock::now() + client.options().requestTimeout);
    auto r = retry<TxnResponse>(client, ctx, [&](Deadline dl) { return client.txn(t, dl); });
    if (!r.ok()) return fail(r.error());
    return Ok{};
}

RecipeResult<Ok> deleteOrDefer(Session& session, const std::string& key, int64_t createRev,
                               Deadline deadline) {
    if (session.isLost()) return Ok{};
    auto deleted = deleteOwned(session.client(), key, createRev, deadline);
    if (!deleted.ok()) session.releaseLater(key, createRev);
    return deleted;
}

bool mayHaveApplied(const RecipeError& e) {
    bool refused = e.kind == RecipeError::Kind::Client && e.client.kind == Error::Kind::Store;
    return !refused && e.kind != RecipeError::Kind::SessionLost;
}

RecipeResult<std::pair<int64_t, bool>> createIfAbsent(Client& client, const std::string& key,
                                                      const std::string& value, int64_t lease,
                                                      const WaitContext& ctx) {
    TxnRequest t = createIfAbsentTxn(key, value, lease);
    auto r = retry<TxnResponse>(client, ctx, [&](Deadline d) { return client.txn(t, d); });
    if (!r.ok()) return fail(r.error());
    if (r->succeeded) return std::pair<int64_t, bool>{r->revision, true};
    const auto& got = std::get<RangeResponse>(r->responses.front().op);
    if (got.kvs.empty()) {
        // Deleted between the compare and... cannot happen inside one txn; be explicit anyway.
        return fail(RecipeError{RecipeError::Kind::NotHeld, "key vanished: " + key, {}});
    }
    return std::pair<int64_t, bool>{got.kvs.front().createRevision, false};
}

// ---- Holder ----

struct Holder::State {
    std::mutex mu;
    bool held = false;
    bool lost = false;
    int64_t revision = 0;
    uint64_t epoch = 0;  // one per acquisition: stale loss reports are ignored
    // An incarnation whose deletion was not confirmed (0: of unknown revision), or -1.
    int64_t unreleased = -1;
    // An incarnation whose deletion releaseAsync() sent and whose answer has not come, or -1.
    int64_t releasing = -1;
    int64_t lastReleased = -1;         // the incarnation releaseAsync() gave up last
    std::condition_variable released;  // `releasing` went back to -1, or `answering` to 0
    // The Holder is gone (its Session may be too): a late answer touches neither.
    bool holderGone = false;
    int answering = 0;  // answers to releaseAsync() using the Session right now
    std::vector<std::function<void(const RecipeError&)>> callbacks;
    // Deletions of the key, from the first acquisition for the life of the Holder (the key's
    // name is fixed): a deletion after the current incarnation's create revision ends it. One
    // watch for every acquisition, so a lock cycle costs no watch set-up or tear-down.
    std::unique_ptr<Handle> ownerWatch;
    bool watchEnded = false;  // compacted past or refused: the next acquisition starts another

    // A deletion of the key at revision `at`: a loss if it is of the incarnation held now.
    void deleted(int64_t at, const std::string& key) {
        uint64_t forEpoch;
        {
            std::lock_guard lock(mu);
            if (!held || at <= revision) return;  // an earlier incarnation
            forEpoch = epoch;
        }
        markLost(forEpoch, RecipeError{RecipeError::Kind::NotHeld, key + " was deleted", {}});
    }

    void markLost(uint64_t forEpoch, const RecipeError& why) {
        std::vector<std::function<void(const RecipeError&)>> cbs;
        {
            std::lock_guard lock(mu);
            if (!held || lost || forEpoch != epoch) return;
            lost = true;
            cbs = callbacks;
        }
        for (auto& cb : cbs)
            cb(why);
    }
};

Holder::Holder(Session& session, std::string keyPrefix)
    : session_(session), key_(ownKey(keyPrefix, session.lease())), st_(std::make_shared<State>()) {
    std::weak_ptr<State> weak = st_;
    session.onLost([weak](const Error& e) {
        if (auto st = weak.lock()) {
            uint64_t epoch;
            {
                std::lock_guard lock(st->mu);
                epoch = st->epoch;
            }
            st->markLost(epoch, RecipeError{RecipeError::Kind::SessionLost, e.describe(), e});
        }
    });
}

Holder::~Holder() {
    // Releasing deletes the key (best effort); then the owner watch stops. A deletion still in
    // flight is waited for: its answer may hand a failure to the session.
    if (revision() != 0) (void)release(kForever);
    {
        // The client answers by the call's deadline; past this bound the answer is dropped.
        std::unique_lock lock(st_->mu);
        st_->released.wait_until(
            lock,
            Clock::now() + session_.client().options().requestTimeout + std::chrono::seconds(1),
            [&] { return st_->releasing < 0; });
        st_->holderGone = true;
        st_->released.wait(lock, [&] { return st_->answering == 0; });
    }
    std::unique_ptr<Handle> watch;
    {
        std::lock_guard lock(st_->mu);
        watch = std::move(st_->ownerWatch);
    }
}

bool Holder::isHeld() const {
    std::lock_guard lock(st_->mu);
    return st_->held && !st_->lost && !session_.isLost();
}

int64_t Holder::revision() const {
    std::lock_guard lock(st_->mu);
    return st_->held ? st_->revision : 0;
}

Compare Holder::ownerCompare() const {
    int64_t rev = revision();
    return createRevisionEquals(key_, rev == 0 ? -1 : rev);  // -1 never matches: not held
}

void Holder::onLost(std::function<void(const RecipeError&)> callback) {
    std::lock_guard lock(st_->mu);
    st_->callbacks.push_back(std::move(callback));
}

RecipeResult<Ok> Holder::acquire(const std::string& value, const Turn& turn, Deadline deadline,
                                 bool wait) {
    {
        std::lock_guard lock(st_->mu);
        if (st_->held) {
            return fail(RecipeError{RecipeError::Kind::Busy, "already held by this object", {}});
        }
    }
    WaitContext ctx{&session_, &cancel_, cancel_.token(), deadline};
    if (auto stop = ctx.interrupted(); stop && stop->kind == RecipeError::Kind::SessionLost) {
        return fail(*stop);
    }
    Client& client = session_.client();
    // An earlier incarnation whose deletion is still unconfirmed goes first: the create below
    // would otherwise find it and take its place in the queue, and its deferred deletion would
    // then end this acquisition.
    int64_t unreleased;
    {
        std::lock_guard lock(st_->mu);
        unreleased = st_->unreleased;
    }
    if (unreleased >= 0) {
        if (auto gone = removeUnreleased(unreleased, ctx); !gone.ok()) return gone;
    }
    // One txn creates my key (unless a lost reply already did) and reads the keys created just
    // before it: at the txn's revision my new key is the youngest, so the range by descending
    // create revision lists it (when in range) and then its predecessors. Uncontended, the lock
    // is held after this single round trip; contended, the waiter watches its predecessor at
    // once.
    TxnRequest t = createIfAbsentTxn(key_, value, session_.lease());
    RangeRequest previous;
    previous.key = turn.blockKey;
    previous.rangeEnd = turn.blockEnd;
    previous.sortOrder = kv::SortOrder::Descend;
    previous.sortTarget = kv::SortTarget::Create;
    // One more than the slots: a shorter answer lists every key before mine (TurnView::complete).
    previous.limit = turn.slots + (turn.ownInRange ? 1 : 0) + 1;
    previous.keysOnly = true;
    t.success.push_back(RequestOp{previous});
    auto created = retry<TxnResponse>(client, ctx, [&](Deadline d) { return client.txn(t, d); });
    for (;;) {
        // The deletion of the previous incarnation (releaseAsync) was sent before this create
        // but may apply after it: then the create finds that incarnation. Wait for the
        // deletion's answer, make sure the incarnation is gone, and create again.
        if (!created.ok() || created->succeeded) break;
        const auto& found = std::get<RangeResponse>(created->responses.front().op).kvs;
        if (found.empty()) break;
        const int64_t foundRev = found.front().createRevision;
        bool failed;
        {
            std::unique_lock lock(st_->mu);
            if (foundRev != st_->lastReleased) break;  // ours from a retried create: see below
            st_->released.wait_until(lock, ctx.deadline,
                                     [&] { return st_->releasing != foundRev; });
            if (st_->releasing == foundRev) {
                return fail(timeoutError("the previous release was not answered"));
            }
            failed = st_->unreleased == foundRev;
        }
        if (failed) {
            if (auto gone = removeUnreleased(foundRev, ctx); !gone.ok()) return gone;
        }
        created = retry<TxnResponse>(client, ctx, [&](Deadline d) { return client.txn(t, d); });
    }
    if (!created.ok()) {
        if (mayHaveApplied(created.error())) (void)giveBack(0, kForever);
        return fail(created.error());
    }
    int64_t myRev = created->revision;
    std::optional<TurnView> known;
    if (created->succeeded) {
        known.emplace();
        known->at = created->revision;
        auto& listed = std::get<RangeResponse>(created->responses[1].op).kvs;
        known->complete = static_cast<int64_t>(listed.size()) < previous.limit;
        for (auto& kv : listed)
            if (kv.createRevision < myRev) known->blockers.push_back(std::move(kv.key));
    } else {
        // My key already existed (a retried txn): younger keys may exist too; read afresh.
        const auto& got = std::get<RangeResponse>(created->responses[0].op);
        if (got.kvs.empty())
            return fail(RecipeError{RecipeError::Kind::NotHeld, key_ + " vanished", {}});
        myRev = got.kvs.front().createRevision;
    }
    RecipeResult<int64_t> turn_ =
        known && static_cast<int64_t>(known->blockers.size()) < turn.slots
            ? RecipeResult<int64_t>(created->revision)
            : waitTurn(client, key_, myRev, turn.blockKey, turn.blockEnd, turn.slots,
                       turn.ownInRange, ctx, wait, std::move(known));
    if (!turn_.ok()) {
        // Gave up (deadline, cancel, busy) or lost: never leave a key that blocks others.
        if (turn_.error().kind != RecipeError::Kind::SessionLost) (void)giveBack(myRev, kForever);
        return fail(turn_.error());
    }
    uint64_t epoch;
    {
        std::lock_guard lock(st_->mu);
        st_->held = true;
        st_->lost = false;
        st_->revision = myRev;
        epoch = ++st_->epoch;
    }
    // Ownership ends if the key goes (revoked lease, deleted by an operator).
    watchOwnKey(*turn_ + 1);
    if (session_.isLost()) {
        st_->markLost(epoch, RecipeError{RecipeError::Kind::SessionLost, "session lost", {}});
    }
    return Ok{};
}

void Holder::watchOwnKey(int64_t from) {
    {
        std::lock_guard lock(st_->mu);
        if (st_->ownerWatch && !st_->watchEnded) return;  // already following the key
    }
    WatchRequest w;
    w.key = key_;
    w.startRevision = from;
    w.noPut = true;
    WatchCallbacks cb;
    std::weak_ptr<State> weak = st_;
    std::string key = key_;
    Client* client = &session_.client();
    cb.onEvents = [weak, key](std::span<const Event> events, int64_t) {
        if (auto st = weak.lock()) {
            for (const auto& e : events)
                st->deleted(e.kv.modRevision, key);
        }
    };
    cb.onError = [weak, key, client](const Error&) {
        // Deletions may have gone unseen: check the incarnation held now, if any, by a read.
        auto st = weak.lock();
        if (!st) return;
        int64_t rev;
        {
            std::lock_guard lock(st->mu);
            st->watchEnded = true;
            if (!st->held) return;
            rev = st->revision;
        }
        RangeRequest r;
        r.key = key;
        // Linearizable: a lagging member must not report the key missing.
        client->rangeAsync(r, false, [weak, key, rev](Expected<RangeResponse> got) {
            auto state = weak.lock();
            if (!state || !got.ok()) return;
            if (got->kvs.empty() || got->kvs.front().createRevision != rev)
                state->deleted(got->revision, key);
        });
    };
    auto handle = session_.client().watch(w, cb);
    std::unique_ptr<Handle> old;
    {
        std::lock_guard lock(st_->mu);
        old = std::move(st_->ownerWatch);
        st_->ownerWatch = std::move(handle);
        st_->watchEnded = false;
    }
}

RecipeResult<Ok> Holder::release(Deadline deadline) {
    int64_t rev;
    {
        std::lock_guard lock(st_->mu);
        if (!st_->held) return fail(RecipeError{RecipeError::Kind::NotHeld, "not held", {}});
        st_->held = false;
        rev = st_->revision;
        st_->revision = 0;
        ++st_->epoch;
    }
    // The owner watch stays for the next acquisition; the deletion it reports is of an
    // incarnation no longer held, and ignored.
    return giveBack(rev, deadline);
}

void Holder::releaseAsync() {
    int64_t rev;
    {
        std::lock_guard lock(st_->mu);
        if (!st_->held) return;
        st_->held = false;
        rev = st_->revision;
        st_->revision = 0;
        ++st_->epoch;
        if (session_.isLost()) return;  // the lease takes the key
        st_->releasing = rev;
        st_->lastReleased = rev;
    }
    // The answer comes on the client's thread. A deletion the cluster could not confirm is
    // finished by the session, and the next acquisition makes sure it is done first.
    TxnRequest t = deleteOwnedTxn(key_, rev);
    std::weak_ptr<State> weak = st_;
    Session* session = &session_;
    std::string key = key_;
    session_.client().txnAsync(t, [weak, session, key, rev](Expected<TxnResponse> r) {
        auto st = weak.lock();
        if (!st) return;
        {
            std::lock_guard lock(st->mu);
            if (st->holderGone) return;  // too late: the session's lease takes the key
            ++st->answering;
        }
        if (!r.ok()) session->releaseLater(key, rev);  // not under st->mu: sessions call in
        {
            std::lock_guard lock(st->mu);
            if (!r.ok()) st->unreleased = rev;
            if (st->releasing == rev) st->releasing = -1;
            --st->answering;
        }
        st->released.notify_all();
    });
}

RecipeResult<Ok> Holder::removeUnreleased(int64_t createRev, const WaitContext& ctx) {
    Client& client = session_.client();
    auto gone = retry<TxnResponse>(
        client, ctx, [&](Deadline d) { return client.txn(deleteOwnedTxn(key_, createRev), d); });
    if (!gone.ok()) return fail(gone.error());
    std::lock_guard lock(st_->mu);
    if (st_->unreleased == createRev) st_->unreleased = -1;
    return Ok{};
}

RecipeResult<Ok> Holder::giveBack(int64_t createRev, Deadline deadline) {
    auto deleted = deleteOrDefer(session_, key_, createRev, deadline);
    if (!deleted.ok()) {
        std::lock_guard lock(st_->mu);
        st_->unreleased = createRev;
    }
    return deleted;
}

RecipeResult<Ok> Holder::update(const std::string& value, Deadline deadline) {
    int64_t rev = revision();
    if (rev == 0 || !isHeld()) return fail(RecipeError{RecipeError::Kind::NotHeld, "not held", {}});
    TxnRequest t;
    t.compare.push_back(ownerCompare());
    PutRequest p;
    p.key = key_;
    p.value = value;
    p.lease = session_.lease();
    t.success.push_back(RequestOp{p});
    WaitContext ctx{&session_, nullptr, 0, deadline};
    auto r = retry<TxnResponse>(session_.client(), ctx,
                                [&](Deadline d) { return session_.client().txn(t, d); });
    if (!r.ok()) return fail(r.error());
    if (!r->succeeded) {
        return fail(RecipeError{RecipeError::Kind::NotHeld, key_ + " is no longer ours", {}});
    }
    return Ok{};
}

}  // namespace detail
}  // namespace coord
