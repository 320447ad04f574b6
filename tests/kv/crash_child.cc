// Child process of the crash test: applies batches to a store forever, printing the number of
// each batch once apply() has returned (the batch is durable), until it is killed.
//
// Batch b holds kRequests requests at log indexes b*kRequests+1 ... (b+1)*kRequests: puts of
// "b/<b>/<i>" and a put of "counter" = b. The parent checks what survived a kill -9.
#include <cstdio>
#include <string>
#include <vector>

#include "kv/store.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DATA_FILE\n", argv[0]);
        return 2;
    }
    constexpr int kRequests = 5;
    coord::kv::Options options;
    options.sync = true;
    coord::kv::Store store(argv[1], options);
    uint64_t applied = store.appliedIndex();
    if (applied % kRequests != 0) {
        std::fprintf(stderr, "half-applied batch: applied index %llu\n",
                     static_cast<unsigned long long>(applied));
        return 3;
    }
    for (uint64_t b = applied / kRequests;; ++b) {
        std::vector<coord::kv::IndexedRequest> batch;
        for (int i = 0; i < kRequests - 1; ++i) {
            char key[64];
            std::snprintf(key, sizeof key, "b/%08llu/%d", static_cast<unsigned long long>(b), i);
            batch.push_back(
                {b * kRequests + i + 1, coord::kv::PutRequest{key, "value-" + std::to_string(b)}});
        }
        batch.push_back(
            {b * kRequests + kRequests, coord::kv::PutRequest{"counter", std::to_string(b)}});
        for (const auto& r : store.apply(batch)) {
            if (!r.ok()) {
                std::fprintf(stderr, "apply failed: %s\n", r.error().message.c_str());
                return 4;
            }
        }
        std::printf("%llu\n", static_cast<unsigned long long>(b));
        std::fflush(stdout);
    }
}
