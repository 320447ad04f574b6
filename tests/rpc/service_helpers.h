// An in-process member for RPC tests: a NodeDriver on its Asio thread and the RPC server on a
// KJ thread, on a free loopback port.
#pragma once

#include <capnp/ez-rpc.h>

#include <cstring>
#include <future>
#include <memory>
#include <thread>

#include "rpc/kv_service.h"
#include "tests/support/temp_dir.h"

namespace coord::rpc::test {

class NullTransport : public Transport {
  public:
    void send(const raft::Message&) override {}
};

struct Server {
    coord::test::TempDir dir;
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{
        io.get_executor()};
    NullTransport transport;
    std::unique_ptr<NodeDriver> driver;
    std::thread core, rpc;
    unsigned port = 0;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> shutdown;
    std::shared_ptr<WatchPool> watches;  // what the server's watchers hold

    explicit Server(WatchLimits limits = {}) : watches(std::make_shared<WatchPool>(limits)) {
        NodeConfig c;
        c.dataFile = dir.file("one.mdb");
        c.tickMs = 10;
        c.store.sync = false;
        c.seed = 1;
        driver = std::make_unique<NodeDriver>(io, c, transport);
        driver->start();
        core = std::thread([this] { io.run(); });
        std::promise<unsigned> portReady;
        std::promise<kj::Own<kj::CrossThreadPromiseFulfiller<void>>> stopReady;
        rpc = std::thread([&] {
            capnp::EzRpcServer server(kj::heap<CoordService>(*driver, 7, watches), "127.0.0.1", 0);
            auto& ws = server.getWaitScope();
            portReady.set_value(server.getPort().wait(ws));
            auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
            stopReady.set_value(kj::mv(paf.fulfiller));
            paf.promise.wait(ws);
        });
        port = portReady.get_future().get();
        shutdown = stopReady.get_future().get();
    }

    ~Server() {
        shutdown->fulfill();
        rpc.join();
        driver->stop();
        std::promise<void> stopped;
        boost::asio::post(io, [&] { stopped.set_value(); });
        stopped.get_future().wait();
        io.stop();
        core.join();
    }
};

inline capnp::Data::Reader bytes(const char* s) {
    return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s), strlen(s));
}

// A member and one RPC client connected to it: its Coord capability, the KV service and the
// client's wait scope.
struct Connection {
    Server server;
    capnp::EzRpcClient client;
    schema::Coord::Client coord;
    schema::KV::Client kv;
    kj::WaitScope& ws;

    explicit Connection(WatchLimits limits = {})
        : server(limits),
          client("127.0.0.1", server.port),
          coord(client.getMain<schema::Coord>()),
          kv(coord.kvRequest().send().getKv()),
          ws(client.getWaitScope()) {}
};

}  // namespace coord::rpc::test
