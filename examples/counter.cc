// counter: increments a shared counter under a coord::Mutex, with every write fenced by the
// lock, and prints the leader of an election it observes.
//
//   counter [ENDPOINTS] [ROUNDS]     e.g. counter 127.0.0.1:2379,127.0.0.1:12379 10
//
// Run several at once: the counter ends exactly at (processes × rounds).
#include <coord/recipes/election.h>
#include <coord/recipes/mutex.h>

#include <cstdio>
#include <mutex>
#include <sstream>

int main(int argc, char** argv) {
    coord::ClientOptions options;
    if (argc > 1) {
        options.endpoints.clear();
        std::stringstream list(argv[1]);
        for (std::string ep; std::getline(list, ep, ',');)
            options.endpoints.push_back(ep);
    }
    int rounds = argc > 2 ? std::atoi(argv[2]) : 10;

    coord::Client client(options);
    coord::Session session(client, {/*ttlSeconds=*/10});
    coord::Mutex mutex(session, "examples/counter-lock");
    mutex.onLost([](const coord::RecipeError& e) {
        std::fprintf(stderr, "lock lost: %s\n", e.describe().c_str());
    });

    for (int i = 0; i < rounds; ++i) {
        std::lock_guard guard(mutex);  // coord::Mutex is Lockable
        auto current = client.get("examples/counter");
        if (!current.ok()) {
            std::fprintf(stderr, "read failed: %s\n", current.error().describe().c_str());
            return 1;
        }
        long n = current->has_value() ? std::stol((*current)->value) : 0;
        // The write succeeds only while this process still holds the lock.
        coord::TxnRequest txn;
        txn.compare.push_back(mutex.ownerCompare());
        coord::PutRequest put;
        put.key = "examples/counter";
        put.value = std::to_string(n + 1);
        txn.success.push_back(coord::RequestOp{put});
        auto written = client.txn(txn);
        if (!written.ok() || !written->succeeded) {
            std::fprintf(stderr, "fenced write refused: the lock was lost\n");
            return 1;
        }
        std::printf("counter = %ld (fencing token %lld)\n", n + 1,
                    static_cast<long long>(mutex.fencingToken()));
    }

    auto leader = coord::Election::leader(client, "examples/election");
    if (leader.ok()) {
        std::printf("election leader: %s\n", leader->hasLeader ? leader->value.c_str() : "(none)");
    }
    return 0;
}
