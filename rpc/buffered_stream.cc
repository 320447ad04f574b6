#include "rpc/buffered_stream.h"

#include <algorithm>
#include <cstring>

#include <kj/debug.h>

namespace coord::rpc {

BufferedStream::BufferedStream(kj::Own<kj::AsyncIoStream> inner, size_t capacity)
    : ForwardingStream(kj::mv(inner)),
      buf_(kj::heapArray<kj::byte>(std::max<size_t>(capacity, 1))) {}

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

kj::Promise<void> acceptBuffered(kj::ConnectionReceiver& listener, capnp::TwoPartyServer& server,
                                 kj::Timer& timer) {
    return listener.accept().then(
        [&listener, &server, &timer](kj::Own<kj::AsyncIoStream>&& connection) {
            server.accept(kj::heap<BufferedStream>(kj::mv(connection)));
            return acceptBuffered(listener, server, timer);
        },
        [&listener, &server, &timer](kj::Exception&& e) {
            KJ_LOG(WARNING, "accepting a client connection failed; listening on", e);
            return timer.afterDelay(10 * kj::MILLISECONDS).then([&listener, &server, &timer] {
                return acceptBuffered(listener, server, timer);
            });
        });
}

}  // namespace coord::rpc
