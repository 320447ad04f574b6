// Distributed locks on a session: Mutex (FIFO, fenced), RWMutex (phase-fair: readers share,
// a waiting writer is never starved) and Semaphore (N holders, FIFO).
//
// Keys: each waiter or holder creates `<prefix>/<lease hex>_<nonce hex>` (RWMutex:
// `<prefix>/read/…` and `<prefix>/write/…`) on its session's lease; the order of create revisions
// is the queue. A waiter watches only the key just before it (no thundering herd). The holder's
// create revision is its fencing token: strictly increasing across holders of one lock.
//
// Loss: a lock is lost when its session is lost or its key is deleted; isHeld() turns false and
// onLost callbacks fire (on the client's thread). Guard every write the lock protects with
// ownerCompare() in a txn, or pass fencingToken() to the resource: between a GC pause and the
// next check nothing else can tell a stale holder apart.
//
// The std-style members make std::lock_guard, std::unique_lock, std::shared_lock and
// try_lock_for work; lock() and the try_ forms throw RecipeException on session loss, cancel()
// and store refusals. unlock() never throws (it runs in destructors): a release the cluster
// cannot confirm is finished by the session in the background (Session::releaseLater); call
// release() to learn whether it was confirmed.
#pragma once

#include <chrono>
#include <string>

#include "recipes/detail.h"

namespace coord {

class Mutex {
  public:
    // Destroying it releases the lock if held (best effort).
    Mutex(Session& session, std::string prefix);

    // Waits for the lock until `deadline` (default: forever).
    RecipeResult<Ok> acquire(Deadline deadline = detail::kForever);
    // Takes the lock only if free right now; Busy otherwise (and leaves no key behind).
    RecipeResult<Ok> tryAcquire();
    RecipeResult<Ok> release();

    // Lockable / TimedLockable.
    void lock();
    bool try_lock();
    void unlock() noexcept;
    template <typename Rep, typename Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
        return try_lock_until(Clock::now() + d);
    }
    template <typename C, typename D>
    bool try_lock_until(const std::chrono::time_point<C, D>& t) {
        return timedLock(Clock::now() + std::chrono::duration_cast<Clock::duration>(t - C::now()));
    }

    // Ends a blocking acquire on another thread with Canceled.
    void cancel() { holder_.cancel(); }
    bool isHeld() const { return holder_.isHeld(); }
    int64_t fencingToken() const { return holder_.revision(); }
    // True in a txn only while this object holds the lock.
    Compare ownerCompare() const { return holder_.ownerCompare(); }
    const std::string& key() const { return holder_.key(); }
    void onLost(std::function<void(const RecipeError&)> callback) {
        holder_.onLost(std::move(callback));
    }

  private:
    bool timedLock(Deadline deadline);

    std::string prefix_;
    detail::Holder holder_;
};

class RWMutex {
  public:
    RWMutex(Session& session, std::string prefix);

    RecipeResult<Ok> acquireRead(Deadline deadline = detail::kForever);
    RecipeResult<Ok> acquireWrite(Deadline deadline = detail::kForever);
    RecipeResult<Ok> releaseRead();
    RecipeResult<Ok> releaseWrite();

    // Lockable and SharedLockable.
    void lock();
    bool try_lock();
    void unlock() noexcept;
    void lock_shared();
    bool try_lock_shared();
    void unlock_shared() noexcept;

    void cancel() {
        reader_.cancel();
        writer_.cancel();
    }
    bool isHeld() const { return writer_.isHeld(); }
    bool isHeldShared() const { return reader_.isHeld(); }
    int64_t fencingToken() const { return writer_.revision(); }
    Compare ownerCompare() const { return writer_.ownerCompare(); }

  private:
    detail::Holder::Turn readerTurn() const;

    std::string prefix_;
    detail::Holder reader_;
    detail::Holder writer_;
};

class Semaphore {
  public:
    Semaphore(Session& session, std::string prefix, int64_t permits);

    RecipeResult<Ok> acquire(Deadline deadline = detail::kForever);
    RecipeResult<Ok> tryAcquire();
    RecipeResult<Ok> release();
    void lock();
    bool try_lock();
    void unlock() noexcept;

    void cancel() { holder_.cancel(); }
    bool isHeld() const { return holder_.isHeld(); }
    int64_t permits() const { return permits_; }
    Compare ownerCompare() const { return holder_.ownerCompare(); }

  private:
    std::string prefix_;
    int64_t permits_;
    detail::Holder holder_;
};

}  // namespace coord
