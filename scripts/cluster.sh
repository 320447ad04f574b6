#!/usr/bin/env bash
# The run command: builds coord and runs a 3-member cluster on loopback in the foreground.
# Ctrl-C (or SIGTERM) stops every member. Data goes to ./cluster.coord (or $COORD_CLUSTER_DIR).
#
#   member  client           peer
#   n1      127.0.0.1:2379   127.0.0.1:2380
#   n2      127.0.0.1:12379  127.0.0.1:12380
#   n3      127.0.0.1:22379  127.0.0.1:22380
#
# The same commands, one per member, are in the Procfile for running them by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target coordd coordctl >/dev/null

data=${COORD_CLUSTER_DIR:-./cluster.coord}
mkdir -p "$data"
cluster=n1=127.0.0.1:2380,n2=127.0.0.1:12380,n3=127.0.0.1:22380
pids=()
start() {
    # Each member's log lines are tagged with its name ($! stays the member's own PID). The
    # tagger ignores Ctrl-C so that it outlives the member and prints its shutdown.
    build/cli/coordd --name "$1" --data-dir "$data/$1" \
        --listen-client-urls "127.0.0.1:$2" --listen-peer-urls "127.0.0.1:$3" \
        --initial-cluster "$cluster" > >(trap '' INT TERM; exec sed -u "s/^/$1 | /") 2>&1 &
    pids+=($!)
}
start n1 2379 2380
start n2 12379 12380
start n3 22379 22380

stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    exit 0
}
trap stop INT TERM

endpoints=127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379
echo "coord: 3 members running (data in $data); Ctrl-C stops them."
echo "coord: endpoints $endpoints"
echo "coord: try   build/cli/coordctl --endpoints $endpoints put hello world"
echo "coord:       build/cli/coordctl --endpoints $endpoints get hello"
echo "coord:       build/cli/coordctl --endpoints $endpoints lock demo -- sh -c 'echo token \$COORD_FENCING_TOKEN'"
wait "${pids[@]}"
