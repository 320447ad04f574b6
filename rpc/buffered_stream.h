// BufferedStream: a kj::AsyncIoStream that reads its inner stream in large chunks.
//
// Cap'n Proto 0.9 reads each message from its stream in two or three reads: the first word of
// the segment table, the rest of the table when there are several segments, then the
// segments. On a socket each is a read(2), and an RPC call costs the server a Call and a
// Finish message: four reads or more per request, plus one more whenever the socket is
// drained (EAGAIN). Reading up to `capacity` bytes at a time serves the small reads from
// memory: under load one read(2) brings several messages. Writes go straight through.
//
// One read at a time (as Cap'n Proto's message reader does); the stream must outlive any read
// in flight, as the inner stream must.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include <cstddef>

namespace coord::rpc {

// kj's stream interfaces have no virtual destructor: kj::Own destroys through the disposer
// kj::heap recorded for the concrete type, never through the interface.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
// Passes every call to an inner stream: a base for streams that change only some calls.
class ForwardingStream : public kj::AsyncIoStream {
  public:
    explicit ForwardingStream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}

    kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
        return inner_->tryRead(buffer, minBytes, maxBytes);
    }
    kj::Promise<void> write(const void* buffer, size_t size) override {
        return inner_->write(buffer, size);
    }
    kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
        return inner_->write(pieces);
    }
    kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
    void shutdownWrite() override { inner_->shutdownWrite(); }
    void abortRead() override { inner_->abortRead(); }
    void getsockopt(int level, int option, void* value, kj::uint* length) override {
        inner_->getsockopt(level, option, value, length);
    }
    void setsockopt(int level, int option, const void* value, kj::uint length) override {
        inner_->setsockopt(level, option, value, length);
    }
    void getsockname(struct sockaddr* addr, kj::uint* length) override {
        inner_->getsockname(addr, length);
    }
    void getpeername(struct sockaddr* addr, kj::uint* length) override {
        inner_->getpeername(addr, length);
    }
    kj::Maybe<int> getFd() const override { return inner_->getFd(); }

  protected:
    kj::AsyncIoStream& inner() { return *inner_; }

  private:
    kj::Own<kj::AsyncIoStream> inner_;
};

class BufferedStream final : public ForwardingStream {
  public:
    explicit BufferedStream(kj::Own<kj::AsyncIoStream> inner, size_t capacity = size_t{64} << 10);

    kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;

    // Bytes read from the inner stream and not yet handed out.
    size_t buffered() const { return end_ - begin_; }

  private:
    // Copies up to `max` buffered bytes to `out`; returns how many.
    size_t take(kj::byte* out, size_t max);

    kj::Array<kj::byte> buf_;
    size_t begin_ = 0;  // buf_[begin_, end_) is read and not yet handed out
    size_t end_ = 0;
};
#pragma GCC diagnostic pop

// Accepts connections from `listener` for `server`, each read through a BufferedStream, until
// the promise is dropped. A failed accept (no descriptors left, a connection reset while
// queued) is logged and listening goes on after a short pause.
kj::Promise<void> acceptBuffered(kj::ConnectionReceiver& listener, capnp::TwoPartyServer& server,
                                 kj::Timer& timer);

}  // namespace coord::rpc
