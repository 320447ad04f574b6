#include "recipes/mutex.h"

namespace coord {

namespace {

detail::Holder::Turn turnOf(const std::string& prefix, int64_t slots = 1) {
    std::string dir = prefix + "/";
    return {dir, kv::prefixEnd(dir), slots, true};
}

void throwIfFailed(const RecipeResult<Ok>& r) {
    if (!r.ok()) throw RecipeException(r.error());
}

// try_lock / try_lock_for: false when busy or timed out; other failures throw.
bool tryResult(const RecipeResult<Ok>& r) {
    if (r.ok()) return true;
    if (r.error().kind == RecipeError::Kind::Busy || r.error().kind == RecipeError::Kind::Timeout) {
        return false;
    }
    throw RecipeException(r.error());
}

}  // namespace

// ---- Mutex ----

Mutex::Mutex(Session& session, std::string prefix)
    : prefix_(std::move(prefix)), holder_(session, prefix_) {}

RecipeResult<Ok> Mutex::acquire(Deadline deadline) {
    return holder_.acquire("", turnOf(prefix_), deadline, true);
}

RecipeResult<Ok> Mutex::tryAcquire() {
    return holder_.acquire("", turnOf(prefix_), detail::kForever, false);
}

RecipeResult<Ok> Mutex::release() {
    return holder_.release(detail::kForever);
}

void Mutex::lock() {
    throwIfFailed(acquire());
}
bool Mutex::try_lock() {
    return tryResult(tryAcquire());
}
void Mutex::unlock() noexcept {
    // Never throws (Lockable; std::lock_guard unlocks in a destructor) and does not wait: the
    // deletion is sent, and a release the cluster cannot confirm is finished by the session.
    holder_.releaseAsync();
}
bool Mutex::timedLock(Deadline deadline) {
    return tryResult(acquire(deadline));
}

// ---- RWMutex ----
// A reader waits for earlier writers only; a writer waits for every earlier key. A reader that
// arrives after a waiting writer queues behind it, so writers are not starved.

RWMutex::RWMutex(Session& session, std::string prefix)
    : prefix_(std::move(prefix)),
      reader_(session, prefix_ + "/read"),
      writer_(session, prefix_ + "/write") {}

// A reader waits for earlier writers only (its own key is not in that range).
detail::Holder::Turn RWMutex::readerTurn() const {
    std::string writers = prefix_ + "/write/";
    return {writers, kv::prefixEnd(writers), 1, false};
}

RecipeResult<Ok> RWMutex::acquireRead(Deadline deadline) {
    return reader_.acquire("", readerTurn(), deadline, true);
}

RecipeResult<Ok> RWMutex::acquireWrite(Deadline deadline) {
    return writer_.acquire("", turnOf(prefix_), deadline, true);
}

RecipeResult<Ok> RWMutex::releaseRead() {
    return reader_.release(detail::kForever);
}
RecipeResult<Ok> RWMutex::releaseWrite() {
    return writer_.release(detail::kForever);
}

void RWMutex::lock() {
    throwIfFailed(acquireWrite());
}
bool RWMutex::try_lock() {
    return tryResult(writer_.acquire("", turnOf(prefix_), detail::kForever, false));
}
void RWMutex::unlock() noexcept {
    writer_.releaseAsync();  // never throws nor waits, as Mutex::unlock
}
void RWMutex::lock_shared() {
    throwIfFailed(acquireRead());
}
bool RWMutex::try_lock_shared() {
    return tryResult(reader_.acquire("", readerTurn(), detail::kForever, false));
}
void RWMutex::unlock_shared() noexcept {
    reader_.releaseAsync();  // never throws nor waits, as Mutex::unlock
}

// ---- Semaphore ----

Semaphore::Semaphore(Session& session, std::string prefix, int64_t permits)
    : prefix_(std::move(prefix)),
      permits_(std::max<int64_t>(permits, 1)),
      holder_(session, prefix_) {}

RecipeResult<Ok> Semaphore::acquire(Deadline deadline) {
    return holder_.acquire("", turnOf(prefix_, permits_), deadline, true);
}
RecipeResult<Ok> Semaphore::tryAcquire() {
    return holder_.acquire("", turnOf(prefix_, permits_), detail::kForever, false);
}
RecipeResult<Ok> Semaphore::release() {
    return holder_.release(detail::kForever);
}
void Semaphore::lock() {
    throwIfFailed(acquire());
}
bool Semaphore::try_lock() {
    return tryResult(tryAcquire());
}
void Semaphore::unlock() noexcept {
    holder_.releaseAsync();  // never throws nor waits, as Mutex::unlock
}

}  // namespace coord
