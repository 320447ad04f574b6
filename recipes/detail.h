// Shared machinery of the recipes: unique key names, bounded per-call deadlines, retries of
// calls whose outcome does not matter twice, and the wait for a watched event that also ends on
// a deadline, a cancel() from another thread or the loss of the session.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "recipes/errors.h"
#include "recipes/session.h"
#include "rpc/client.h"

namespace coord::detail {

inline constexpr Deadline kForever = Deadline::max();

// "<prefix>/<lease hex>_<nonce hex>": unique per recipe object, so two objects on one session
// never share (and never release each other's) key.
std::string ownKey(const std::string& prefix, int64_t lease);

// `d`, or now + the client's request timeout when `d` is Deadline{}.
inline Deadline orDefault(const Client& client, Deadline d) {
    return d == Deadline{} ? Clock::now() + client.options().requestTimeout : d;
}

// The deadline of one client call inside a longer wait.
Deadline callDeadline(const Client& client, Deadline overall);

RecipeError clientError(const Error& e);
RecipeError timeoutError(const std::string& what);

// cancel() from any thread ends the blocking calls that started before it.
class CancelPoint {
  public:
    uint64_t token() const { return generation_.load(); }
    bool canceled(uint64_t token) const { return generation_.load() != token; }
    void cancel() { generation_.fetch_add(1); }

  private:
    std::atomic<uint64_t> generation_{0};
};

struct WaitContext {
    const Session* session = nullptr;
    const CancelPoint* cancel = nullptr;
    uint64_t token = 0;
    Deadline deadline = kForever;

    // Why the wait must stop now, if it must.
    std::optional<RecipeError> interrupted() const;
};

// Runs `call` (returning Expected<T>) until it gives a result that is not Unavailable/Unknown,
// backing off between tries, until the context stops it. Only for calls that are safe to repeat.
template <typename T>
RecipeResult<T> retry(const Client& client, const WaitContext& ctx,
                      const std::function<Expected<T>(Deadline)>& call) {
    auto pause = std::chrono::milliseconds(10);
    for (;;) {
        if (auto stop = ctx.interrupted()) return fail(*stop);
        auto r = call(callDeadline(client, ctx.deadline));
        if (r.ok()) return std::move(r).value();
        if (r.error().kind == Error::Kind::Store || r.error().kind == Error::Kind::Canceled) {
            return fail(clientError(r.error()));
        }
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(500));
    }
}

// Blocks until an event of `request` satisfies `accept`, or the context stops the wait; `accept`
// is then also shown the rest of that event's revision (its return value ignored). A watch
// refused because its start revision was compacted counts as an event (the caller re-checks).
// A watch that fired is stopped without waiting for the client's thread (Handle::detach: its
// callbacks do nothing once it fired); one that did not is stopped and waited for. With
// `readAfter`, the event's callback starts that serializable read at once, on the client's thread,
// and the wait ends with its answer in `readResult` (empty if the read failed): the waiting thread
// wakes once instead of waking and then calling.
RecipeResult<Ok> waitForEvent(Client& client, const WatchRequest& request,
                              const std::function<bool(const Event&)>& accept,
                              const WaitContext& ctx, const RangeRequest* readAfter = nullptr,
                              std::optional<RangeResponse>* readResult = nullptr);

// The common wait of locks, semaphores and elections: the waiter's key `myKey` was created at
// `myRev`; it holds its turn when fewer than `slots` keys in [blockKey, blockEnd) were created
// before it. `ownInRange` says whether myKey itself lies in that range. Returns the revision
// at which the turn was confirmed. Fails with SessionLost (or NotHeld) when myKey disappears, and
// with Busy when the turn is not there yet and `wait` is false.
// `known`, when given, is what a read at revision `at` already showed: myKey existed and these
// keys (the youngest first, at least `slots` of them) were created before it; the wait then
// starts without reading again.
struct TurnView {
    int64_t at = 0;
    std::vector<std::string> blockers;
    bool complete = false;  // blockers lists every key created before mine
};
RecipeResult<int64_t> waitTurn(Client& client, const std::string& myKey, int64_t myRev,
                               const std::string& blockKey, const std::string& blockEnd,
                               int64_t slots, bool ownInRange, const WaitContext& ctx,
                               bool wait = true, std::optional<TurnView> known = std::nullopt);

// The compare "key's create revision == revision" (0: the key is absent).
Compare createRevisionEquals(const std::string& key, int64_t revision);
// If `key` is absent: put it with `value` on `lease`; else read it (one op per branch, so
// callers can add their own after).
TxnRequest createIfAbsentTxn(const std::string& key, const std::string& value, int64_t lease);

// The txn that deletes `key` only while its create revision is `createRev` (0: any).
TxnRequest deleteOwnedTxn(const std::string& key, int64_t createRev);
// Deletes `key` if it still has create revision `createRev` (0: whatever its create revision:
// for a key only its owner ever writes), retrying until `deadline`, which
// is capped at (and defaults to) the client's request timeout from now: it never hangs on an
// unreachable cluster. deleteOrDefer below hands a deletion that failed to the session.
RecipeResult<Ok> deleteOwned(Client& client, const std::string& key, int64_t createRev,
                             Deadline deadline = kForever);

// deleteOwned for a key on `session`'s lease, which never leaves it behind: with the session
// lost it sends nothing (the lease takes the key), and a deletion the cluster cannot confirm
// by `deadline` is handed to Session::releaseLater (the error is still returned).
RecipeResult<Ok> deleteOrDefer(Session& session, const std::string& key, int64_t createRev,
                               Deadline deadline);

// Whether a create that failed with `e` may still have been applied (anything but a refusal by
// the store or the session's loss): its key must then be deleted.
bool mayHaveApplied(const RecipeError& e);

// Creates `key` with `value` on `lease` unless it exists; returns (its create revision, whether
// this call created it). Repeating it after an unknown outcome is safe.
RecipeResult<std::pair<int64_t, bool>> createIfAbsent(Client& client, const std::string& key,
                                                      const std::string& value, int64_t lease,
                                                      const WaitContext& ctx);

// One waiter/holder key of a lock, semaphore slot or candidacy, attached to a session: acquire
// (create the key, wait for the turn), release (guarded delete), and loss tracking — the key
// deleted, or the session lost — with callbacks. Thread-safe.
class Holder {
  public:
    Holder(Session& session, std::string keyPrefix);
    ~Holder();  // releases if held (best effort)
    Holder(const Holder&) = delete;
    Holder& operator=(const Holder&) = delete;

    struct Turn {
        std::string blockKey, blockEnd;  // the keys that go first
        int64_t slots = 1;
        bool ownInRange = true;
    };
    RecipeResult<Ok> acquire(const std::string& value, const Turn& turn, Deadline deadline,
                             bool wait);
    // Deletes the key (guarded by its create revision). With the session lost there is nothing
    // to do: the lease is gone or, unrenewed, about to go, and the key with it; release then
    // returns at once instead of waiting on a cluster it may not reach.
    RecipeResult<Ok> release(Deadline deadline);
    // The same without waiting: sends the deletion and returns. It is ordered before this
    // client's later requests; the lock passes on when it applies. A deletion the cluster
    // cannot confirm is finished by the session; the next acquire() waits for the answer when
    // it finds the released incarnation still there.
    void releaseAsync();
    // Replaces the value while held (guarded by the create revision).
    RecipeResult<Ok> update(const std::string& value, Deadline deadline);

    bool isHeld() const;
    int64_t revision() const;  // the key's create revision while held, else 0
    const std::string& key() const { return key_; }
    Compare ownerCompare() const;
    void onLost(std::function<void(const RecipeError&)> callback);
    void cancel() { cancel_.cancel(); }
    Session& session() const { return session_; }

  private:
    struct State;
    // Deletes the key's incarnation `createRev` (0: whichever exists); when the cluster cannot
    // confirm it by `deadline`, the session finishes it in the background and the next
    // acquisition first makes sure it is gone.
    RecipeResult<Ok> giveBack(int64_t createRev, Deadline deadline);
    // Deletes the unconfirmed incarnation `createRev` before a new one is created, retrying up
    // to the acquisition's deadline (not one request timeout: a cluster briefly unavailable
    // must not fail a lock() that may wait longer); then it no longer counts as unreleased.
    RecipeResult<Ok> removeUnreleased(int64_t createRev, const WaitContext& ctx);
    // Starts the watch on the key's deletions from revision `from`, unless one is running.
    void watchOwnKey(int64_t from);
    Session& session_;
    std::string key_;
    CancelPoint cancel_;
    std::shared_ptr<State> st_;
};

}  // namespace coord::detail
