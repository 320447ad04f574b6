#include "rpc/buffered_stream.h"

#include <algorithm>
#include <cstring>

#include <kj/debug.h>

namespace coord::rpc {

BufferedStream::BufferedStream(kj::Own<kj::AsyncIoStream> inner, size_t capacity, size_t maxPending)
    : ForwardingStream(kj::mv(inner)),
      buf_(kj::heapArray<kj::byte>(std::max<size_t>(capacity, 1))),
      maxPending_(maxPending) {}

BufferedStream::~BufferedStream() noexcept(false) {
    // Cancel the flush before the buffers it writes from go.
    flushTask_ = nullptr;
}

size_t BufferedStream::take(kj::byte* out, size_t max) {
    size_t n = std::min(end_ - begin_, max);
    if (n > 0) std::memcpy(out, buf_.begin() + begin_, n);
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
    return n;
}

kj::Promise<size_t> BufferedStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
    auto* out = static_cast<kj::byte*>(buffer);
    size_t have = take(out, maxBytes);
    if (have >= minBytes) return have;
    // Everything buffered was handed out and more is needed.
    size_t need = minBytes - have;
    size_t room = maxBytes - have;
    if (room >= buf_.size()) {
        // As large as the buffer: read straight into the caller's memory.
        return inner().tryRead(out + have, need, room).then([have](size_t n) { return have + n; });
    }
    // Fewer than `need` bytes back means the inner stream ended: so does this read.
    return inner().tryRead(buf_.begin(), need, buf_.size()).then([this, out, have, room](size_t n) {
        begin_ = 0;
        end_ = n;
        return have + take(out + have, room);
    });
}

kj::Promise<void> BufferedStream::write(const void* buffer, size_t size) {
    KJ_IF_MAYBE (e, writeError_) {
        return kj::cp(*e);
    }
    pending_.addAll(static_cast<const kj::byte*>(buffer),
                    static_cast<const kj::byte*>(buffer) + size);
    return queued();
}

kj::Promise<void> BufferedStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
    KJ_IF_MAYBE (e, writeError_) {
        return kj::cp(*e);
    }
    for (auto piece : pieces)
        pending_.addAll(piece);
    return queued();
}

kj::Promise<void> BufferedStream::queued() {
    if (!flushing_) {
        // Sent once the loop has run everything else this turn queued: the other messages
        // written meanwhile go in the same write.
        flushing_ = true;
        flushTask_ = kj::evalLast([this] { return flush(); }).eagerlyEvaluate(nullptr);
    }
    if (pending_.size() < maxPending_) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    blocked_.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
}

kj::Promise<void> BufferedStream::flush() {
    sending_ = kj::mv(pending_);
    pending_ = kj::Vector<kj::byte>();
    // evalNow: a write that throws at once fails like one that fails later.
    return kj::evalNow([this] { return inner().write(sending_.begin(), sending_.size()); })
        .then(
            [this]() -> kj::Promise<void> {
                sending_.clear();
                flushed(nullptr);
                if (pending_.size() == 0) {
                    flushing_ = false;
                    if (shutdownAfterFlush_) inner().shutdownWrite();
                    return kj::READY_NOW;
                }
                // Written while this write was in flight: the next batch.
                return kj::evalLast([this] { return flush(); });
            },
            [this](kj::Exception&& e) {
                // Writers see the failure from now on; so do the ones held back. The reader
                // sees the connection end on its own.
                writeError_ = kj::cp(e);
                pending_.clear();
                sending_.clear();
                flushed(kj::mv(e));
                flushing_ = false;
            });
}

void BufferedStream::flushed(kj::Maybe<kj::Exception> error) {
    auto blocked = kj::mv(blocked_);
    blocked_ = kj::Vector<kj::Own<kj::PromiseFulfiller<void>>>();
    for (auto& f : blocked) {
        KJ_IF_MAYBE (e, error) {
            f->reject(kj::cp(*e));
        } else {
            f->fulfill();
        }
    }
}

void BufferedStream::shutdownWrite() {
    if (flushing_) {
        shutdownAfterFlush_ = true;
        return;
    }
    inner().shutdownWrite();
}

}  // namespace coord::rpc
