// Work queues.
//
// Queue: items are keys `<prefix>/items/<name>` (a unique name unless given), taken in the order
// of their create revisions (FIFO). dequeue() claims the oldest item with one txn that deletes it
// only if unchanged, and records the claim in `<prefix>/claims/<consumer>` in the same txn, so
// each item goes to exactly one consumer — even when the claim's reply is lost and the consumer
// has to find out whether its claim was applied. A claim also requires the consumer's record to
// be as the consumer last wrote it, so a claim whose outcome is unknown can be fenced off: when
// dequeue() fails after sending one, the next call (or resolvePending()) settles it first and
// returns its item if it was taken. An empty queue blocks dequeue() until an item arrives or the
// deadline passes. One Queue object runs one dequeue at a time (use one per consumer thread).
//
// ConditionQueue: the same items, released only while the condition at `<prefix>/condition`
// holds. The condition is re-checked inside every claim txn, so no item is taken while it is
// false. Conditions (set by a controller with setCondition):
//   count >= N      at least N items were ever enqueued (the counter `<prefix>/count`)
//   exists NAME     the key `<prefix>/NAME` exists (e.g. `exists items/job-7`, `exists go`)
//   equals NAME V   the key `<prefix>/NAME` holds the value V
// No condition key means "closed".
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "recipes/detail.h"

namespace coord {

class Queue {
  public:
    Queue(Client& client, std::string prefix);
    virtual ~Queue();

    // Adds an item; returns its key. `name` must be unique among queued items when given.
    RecipeResult<std::string> enqueue(const std::string& value, const std::string& name = "");
    // Takes the oldest item, waiting up to `deadline` for one. An item an earlier call claimed
    // without learning it (see resolvePending) comes first. A claim sent just before the
    // deadline is given one request timeout to be answered, so the call may return that much
    // after the deadline.
    RecipeResult<KeyValue> dequeue(Deadline deadline = detail::kForever);
    // After a dequeue() that failed once its claim was sent (a timeout, a lost connection), the
    // claim's outcome is unknown. This makes it final: the item when the claim took it (it is
    // this consumer's now), nullopt when it did not — and then it never will, because the claim
    // is fenced off. nullopt too when nothing is pending. On failure the claim stays pending.
    RecipeResult<std::optional<KeyValue>> resolvePending(Deadline deadline = {});
    // Destroying a Queue settles a pending claim and puts a taken item back (at the end of the
    // queue), then deletes the consumer's claim record; when the cluster cannot be reached the
    // record stays and names the item.
    void cancel() { cancel_.cancel(); }
    const std::string& prefix() const { return prefix_; }

  protected:
    // Extra compares a claim must pass (none for a plain queue) and the keys to watch while
    // waiting; false: closed now (wait for a change).
    virtual bool releaseCompares(std::vector<Compare>& compares, int64_t& readRevision,
                                 const detail::WaitContext& ctx);
    virtual bool countsEnqueues() const { return false; }

    Client& client_;
    std::string prefix_;
    std::string items_;
    std::string claimKey_;
    detail::CancelPoint cancel_;

  private:
    // A claim sent without a known outcome: the item as read before it, and the claim record
    // it writes.
    struct Pending {
        KeyValue item;
        std::string marker;
    };
    RecipeResult<std::optional<KeyValue>> resolveLocked(const detail::WaitContext& ctx);
    // The claim record a failed txn read (its failure branch ranges it): follows its mod
    // revision into claimRevision_; null when the record is absent.
    const KeyValue* noteRecord(const TxnResponse& failed);

    std::mutex mu_;  // one dequeue / resolvePending at a time; guards what follows
    // The claim record's mod revision as this consumer last wrote or saw it (0: none yet).
    // Every claim compares it, so writing the record fences off every claim sent before.
    int64_t claimRevision_ = 0;
    std::optional<Pending> pending_;
};

struct QueueCondition {
    enum class Kind { CountAtLeast, Exists, Equals } kind = Kind::CountAtLeast;
    int64_t count = 0;
    std::string name;   // relative to the queue's prefix
    std::string value;  // for Equals

    std::string encode() const;
    static std::optional<QueueCondition> parse(const std::string& text);
};

class ConditionQueue : public Queue {
  public:
    ConditionQueue(Client& client, std::string prefix);

    RecipeResult<Ok> setCondition(const QueueCondition& condition, Deadline deadline = {});
    RecipeResult<Ok> clearCondition(Deadline deadline = {});

  protected:
    bool releaseCompares(std::vector<Compare>& compares, int64_t& readRevision,
                         const detail::WaitContext& ctx) override;
    bool countsEnqueues() const override { return true; }
};

}  // namespace coord
