#include <catch2/catch.hpp>

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>

#include <random>
#include <string>
#include <vector>

#include "rpc/buffered_stream.h"
#include "rpc/coord.capnp.h"

using namespace coord::rpc;

namespace {

// An AsyncIoStream that forwards to another and counts the reads and writes it is asked for.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class CountingStream final : public ForwardingStream {
  public:
    CountingStream(kj::Own<kj::AsyncIoStream> inner, int& reads, int* writes = nullptr)
        : ForwardingStream(kj::mv(inner)), reads_(reads), writes_(writes) {}
    kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
        ++reads_;
        return ForwardingStream::tryRead(buffer, minBytes, maxBytes);
    }
    kj::Promise<void> write(const void* buffer, size_t size) override {
        if (writes_) ++*writes_;
        return ForwardingStream::write(buffer, size);
    }
    kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
        if (writes_) ++*writes_;
        return ForwardingStream::write(pieces);
    }

  private:
    int& reads_;
    int* writes_;
};
#pragma GCC diagnostic pop

std::string randomBytes(std::mt19937_64& rng, size_t n) {
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(rng() & 0xff);
    return s;
}

}  // namespace

TEST_CASE("buffered stream: any mix of read sizes returns the written bytes in order", "[rpc]") {
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        std::mt19937_64 rng(seed);
        auto pipe = kj::newTwoWayPipe();
        // A small buffer takes every path: served from memory, refilled, and read past.
        BufferedStream in(kj::mv(pipe.ends[1]), 1 + rng() % 64);
        std::string data = randomBytes(rng, 1 + rng() % 5000);
        // The writer sends the bytes in random pieces, then closes its side.
        kj::Promise<void> writing = kj::READY_NOW;
        for (size_t at = 0; at < data.size();) {
            size_t n = std::min<size_t>(1 + rng() % 300, data.size() - at);
            writing = writing.then(
                [&out = *pipe.ends[0], p = data.data() + at, n] { return out.write(p, n); });
            at += n;
        }
        writing =
            writing.then([&out = *pipe.ends[0]] { out.shutdownWrite(); }).eagerlyEvaluate(nullptr);
        std::string got;
        for (;;) {
            size_t maxBytes = 1 + rng() % 200;
            size_t minBytes = 1 + rng() % maxBytes;
            std::vector<char> buf(maxBytes);
            size_t n = in.tryRead(buf.data(), minBytes, maxBytes).wait(ws);
            REQUIRE(n <= maxBytes);
            got.append(buf.data(), n);
            if (n < minBytes) break;  // the end of the stream
        }
        writing.wait(ws);
        REQUIRE(got == data);
        CHECK(in.buffered() == 0);
        // Past the end, reads return nothing.
        char c;
        CHECK(in.tryRead(&c, 1, 1).wait(ws) == 0);
    }
}

TEST_CASE("buffered stream: Cap'n Proto messages arrive intact, several per read", "[rpc]") {
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    auto pipe = kj::newTwoWayPipe();
    int reads = 0;
    BufferedStream in(kj::heap<CountingStream>(kj::mv(pipe.ends[1]), reads));
    constexpr int kMessages = 200;
    // Encoded up front and sent in one write, as a busy peer's messages arrive together.
    std::vector<kj::Array<capnp::word>> encoded;
    size_t bytes = 0;
    for (int i = 0; i < kMessages; ++i) {
        capnp::MallocMessageBuilder m;
        auto h = m.initRoot<schema::ResponseHeader>();
        h.setRevision(i);
        h.setMemberId(1000 + i);
        encoded.push_back(capnp::messageToFlatArray(m));
        bytes += encoded.back().asBytes().size();
    }
    std::string all;
    all.reserve(bytes);
    for (const auto& e : encoded)
        all.append(reinterpret_cast<const char*>(e.asBytes().begin()), e.asBytes().size());
    auto writing = pipe.ends[0]->write(all.data(), all.size()).eagerlyEvaluate(nullptr);
    for (int i = 0; i < kMessages; ++i) {
        auto reader = capnp::readMessage(in).wait(ws);
        auto h = reader->getRoot<schema::ResponseHeader>();
        REQUIRE(h.getRevision() == i);
        REQUIRE(h.getMemberId() == static_cast<uint64_t>(1000 + i));
    }
    writing.wait(ws);
    // Unbuffered, each message costs the reader two reads of its stream (the segment table's
    // first word, then the segment); buffered, 64 KiB at a time.
    CHECK(reads <= static_cast<int>(bytes / (64 << 10)) + 3);
    CHECK(reads < kMessages / 10);
}

TEST_CASE("buffered stream: a read larger than the buffer goes straight through", "[rpc]") {
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    auto pipe = kj::newTwoWayPipe();
    BufferedStream in(kj::mv(pipe.ends[1]), 16);
    std::mt19937_64 rng(7);
    std::string data = randomBytes(rng, 1000);
    auto writing = pipe.ends[0]->write(data.data(), data.size()).eagerlyEvaluate(nullptr);
    std::vector<char> buf(1000);
    REQUIRE(in.tryRead(buf.data(), 4, 4).wait(ws) == 4);
    REQUIRE(in.tryRead(buf.data() + 4, 996, 996).wait(ws) == 996);
    writing.wait(ws);
    CHECK(std::string(buf.data(), buf.size()) == data);
}

// Reads from `in` until it ends.
std::string readAll(kj::AsyncInputStream& in, kj::WaitScope& ws) {
    std::string got;
    char buf[4096];
    for (;;) {
        size_t n = in.tryRead(buf, 1, sizeof(buf)).wait(ws);
        if (n == 0) return got;
        got.append(buf, n);
    }
}

TEST_CASE("buffered stream: the writes of one turn leave in one write, in order", "[rpc]") {
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    auto pipe = kj::newTwoWayPipe();
    int reads = 0, writes = 0;
    BufferedStream out(kj::heap<CountingStream>(kj::mv(pipe.ends[0]), reads, &writes));
    std::mt19937_64 rng(11);
    std::string expected;
    // 200 Cap'n Proto messages (each written as pieces: segment table, segments) and some
    // plain writes, all in one turn.
    std::vector<kj::Promise<void>> done;
    for (int i = 0; i < 200; ++i) {
        capnp::MallocMessageBuilder m;
        m.initRoot<schema::ResponseHeader>().setRevision(i);
        auto flat = capnp::messageToFlatArray(m);
        expected.append(reinterpret_cast<const char*>(flat.asBytes().begin()),
                        flat.asBytes().size());
        done.push_back(capnp::writeMessage(out, m));
        if (i % 50 == 0) {
            std::string extra = randomBytes(rng, 1 + rng() % 100);
            expected += extra;
            done.push_back(out.write(extra.data(), extra.size()));
        }
    }
    // Nothing was handed on while the turn ran.
    CHECK(writes == 0);
    CHECK(out.unsent() == expected.size());
    // Each write completed at once (the pipe takes nothing until the other end reads).
    for (auto& p : done)
        REQUIRE(p.poll(ws));
    out.shutdownWrite();  // takes effect after the unsent bytes
    CHECK(readAll(*pipe.ends[1], ws) == expected);
    // Everything went in one write.
    CHECK(writes == 1);
    CHECK(out.unsent() == 0);
}

TEST_CASE("buffered stream: writes wait past the unsent limit, and fail after a failed write",
          "[rpc]") {
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    auto pipe = kj::newTwoWayPipe();
    BufferedStream out(kj::mv(pipe.ends[0]), 64, 100);
    std::string small(60, 'a'), more(60, 'b');
    REQUIRE(out.write(small.data(), small.size()).poll(ws));
    // 120 bytes unsent: this write completes only once they were handed on, and the pipe
    // takes them only as the other end reads.
    auto held = out.write(more.data(), more.size());
    CHECK_FALSE(held.poll(ws));
    char buf[200];
    size_t n = pipe.ends[1]->tryRead(buf, 120, sizeof(buf)).wait(ws);
    CHECK(std::string(buf, n) == small + more);
    held.wait(ws);
    // The reader goes away: the next flush fails, and so does every write after it.
    pipe.ends[1] = nullptr;
    REQUIRE(out.write(small.data(), small.size()).poll(ws));
    loop.run();
    bool failed = false;
    out.write(small.data(), small.size())
        .then([] {}, [&failed](kj::Exception&&) { failed = true; })
        .wait(ws);
    CHECK(failed);
}
