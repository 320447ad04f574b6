// BufferedStream: a kj::AsyncIoStream that reads its inner stream in large chunks and gathers
// the writes of one event-loop turn into one.
//
// Reads. Cap'n Proto 0.9 reads each message from its stream in two or three reads: the first
// word of the segment table, the rest of the table when there are several segments, then the
// segments. On a socket each is a read(2), and an RPC call costs the server a Call and a
// Finish message: four reads or more per request, plus one more whenever the socket is
// drained (EAGAIN). Reading up to `capacity` bytes at a time serves the small reads from
// memory: under load one read(2) brings several messages.
//
// Writes. Cap'n Proto 0.9 writes each message as soon as it is sent: a client's Call and
// Finish, a server's Return, one writev(2) each, and on loopback each one also runs the
// receiver's TCP input path. Here a write copies its bytes and completes at once; what the
// turn wrote goes out in one write of the inner stream once the event loop has nothing else
// to run (kj::evalLast), so the answers to many calls share a syscall. Past `maxPending`
// unsent bytes a write completes only when they are sent (back-pressure). After a failed
// write every later write fails with the same exception. shutdownWrite() takes effect after
// the unsent bytes.
//
// One read at a time (as Cap'n Proto's message reader does); the stream must outlive any read
// in flight, as the inner stream must. Unsent bytes are dropped when the stream is destroyed.
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
    explicit BufferedStream(kj::Own<kj::AsyncIoStream> inner, size_t capacity = size_t{64} << 10,
                            size_t maxPending = size_t{1} << 20);
    ~BufferedStream() noexcept(false);

    kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
    kj::Promise<void> write(const void* buffer, size_t size) override;
    kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
    void shutdownWrite() override;

    // Bytes read from the inner stream and not yet handed out.
    size_t buffered() const { return end_ - begin_; }
    // Bytes written and not yet handed to the inner stream.
    size_t unsent() const { return pending_.size(); }

  private:
    // Copies up to `max` buffered bytes to `out`; returns how many.
    size_t take(kj::byte* out, size_t max);
    // Completes a write whose bytes were appended to pending_.
    kj::Promise<void> queued();
    // Hands pending_ to the inner stream, one write at a time, until nothing is left.
    kj::Promise<void> flush();
    void flushed(kj::Maybe<kj::Exception> error);

    kj::Array<kj::byte> buf_;
    size_t begin_ = 0;  // buf_[begin_, end_) is read and not yet handed out
    size_t end_ = 0;

    size_t maxPending_;
    kj::Vector<kj::byte> pending_;  // written, not yet handed to the inner stream
    kj::Vector<kj::byte> sending_;  // handed to the inner stream's write in flight
    bool flushing_ = false;         // a flush is scheduled or in flight
    bool shutdownAfterFlush_ = false;
    kj::Maybe<kj::Exception> writeError_;
    // Writers held back by a full buffer, released when a flush completes.
    kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> blocked_;
    kj::Promise<void> flushTask_ = nullptr;  // last: destroyed (canceled) first
};
#pragma GCC diagnostic pop

}  // namespace coord::rpc
