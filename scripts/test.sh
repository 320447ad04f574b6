#!/usr/bin/env bash
# The one test command: installs dependencies, builds coord and runs every test with ctest.
#
#   scripts/test.sh                 # release build with warnings as errors, in build/
#   scripts/test.sh --sanitize      # ASan+UBSan build of the unit tests, in build-asan/
#   scripts/test.sh --tsan          # ThreadSanitizer build of the threaded tests (and of the
#                                   # coordd they start), in build-tsan/
#
# Extra arguments after the mode go to ctest (for example `-R lease` or `-L kv`); start with
# `--` to give the release build long ctest options. An unknown `--mode` is refused.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=release
case "${1:-}" in
--sanitize) mode=asan; shift ;;
--tsan) mode=tsan; shift ;;
--) shift ;;  # release; what follows goes to ctest
--*)
    # A mistyped mode would otherwise reach ctest and run the release build unnoticed.
    echo "scripts/test.sh: unknown mode '$1' (modes: --sanitize, --tsan; ctest arguments" \
        "follow the mode, or '--' for the release build)" >&2
    exit 2
    ;;
esac

scripts/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
case "$mode" in
release)
    dir=build
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOORD_WERROR=ON >/dev/null
    ;;
asan)
    dir=build-asan
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCOORD_WERROR=ON \
        -DCOORD_SANITIZE=address,undefined >/dev/null
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    # The simulator is ~30x slower under ASan: fewer seeds keep the run to about a minute
    # (the release run covers the full 10,000, and 3,000 with asynchronous persistence).
    export COORD_SIM_SEEDS=${COORD_SIM_SEEDS:-1000}
    export COORD_SIM_ASYNC_SEEDS=${COORD_SIM_ASYNC_SEEDS:-500}
    ;;
tsan)
    dir=build-tsan
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCOORD_WERROR=ON \
        -DCOORD_SANITIZE=thread >/dev/null
    # scripts/tsan.supp: Debian's libkj is not instrumented (see the file).
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp"
    # Only the tests that run several threads (the store's readers, the server's threads, the
    # client's loop thread under concurrent callers, the recipes); the rest are single-threaded.
    cmake --build "$dir" -j "$jobs" --target kv_thread_tests rpc_driver_tests client_tests \
        recipes_tests coordd
    # Not the test that moves 72 MiB through a cluster: instrumented, it takes minutes, and its
    # threads are those of the other client tests.
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L 'threads|client|recipes' \
        -E 'far larger than one RPC message' "$@"
    exit 0
    ;;
esac

cmake --build "$dir" -j "$jobs"
ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@"
