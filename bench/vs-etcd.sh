#!/usr/bin/env bash
# Side by side: coord and etcd 3.4 (Debian's etcd-server), 3 members each on loopback, the same
# closed-loop workload shapes as ../shared/bench/etcd (256-byte values; 1 client over 1
# connection, 64 over 8, 256 over 16), one system at a time, REPS repetitions. Prints one JSON
# line per run; summarize with bench/summarize.py.
#
#   bench/vs-etcd.sh                 # coord and etcd: needs etcd-server and a built loadgen in a
#                                    # writable copy of ../shared/bench/etcd (ETCD_BENCH=that copy)
#   SYSTEMS=coord bench/vs-etcd.sh   # coord only
#   REPS=3 DUR_MS=3000 ONLY='put|lock' bench/vs-etcd.sh
#   ONLY=mem MEM_TOTAL=100000 bench/vs-etcd.sh   # memory at equal data: a fresh cluster of each
#                                    # system takes exactly MEM_TOTAL puts, then its RSS is read
# The first lines are the machine's floors (coordbench machine).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DUR_MS=${DUR_MS:-3000}
ONLY=${ONLY:-.}
MEM_TOTAL=${MEM_TOTAL:-100000}
SYSTEMS=${SYSTEMS:-"coord etcd"}
ETCD_BENCH=${ETCD_BENCH:-../shared/bench/etcd}
CB=build/bench/coordbench
# coordbench's connections start at different members, as etcd's clientv3 balancer spreads its
# calls over the endpoints (SPREAD= puts every connection on the first endpoint).
SPREAD=${SPREAD---spread}
conns() { case $1 in 1) echo 1 ;; 64) echo 8 ;; 256) echo 16 ;; *) echo 8 ;; esac; }
want() { [[ $1 =~ $ONLY ]]; }
# VmRSS split into anonymous memory (heap) and file pages (mapped data files, libraries), in kB,
# for each PID of a comma-separated list.
rss_split() {
    local p
    for p in ${1//,/ }; do
        echo -n "$p $(grep -E '^(VmRSS|RssAnon|RssFile)' "/proc/$p/status" | tr -s ' \t' ' ' | tr '\n' ' ') "
    done
}

# Memory at equal data volume: the modes above store as much as each system can write in their
# time, so coord (several times faster) ends them holding several times etcd's data. Here a fresh
# cluster takes exactly MEM_TOTAL random-key puts of 256 bytes (64 clients over 8 connections;
# the duration only bounds the run), then each member's memory is read.
coord_mem() {
    bench/cluster.sh start 3 > /dev/null
    . bench/.run/cluster.env
    $CB put $SPREAD --endpoints "$ENDPOINTS" --clients 64 --conns 8 --total "$MEM_TOTAL" \
        --duration-ms 600000 --label "coord/put-equal-volume/3node/n$MEM_TOTAL"
    echo "{\"label\":\"coord/rss-split-equal-volume/3node/n$MEM_TOTAL\",\"rss\":\"$(rss_split "$PIDS")\"}"
    bench/cluster.sh stop
}

etcd_mem() {
    (cd "$ETCD_BENCH" && ./cluster.sh start 3 > /dev/null)
    . "$ETCD_BENCH/.run/cluster.env"
    "$ETCD_BENCH/bin/loadgen" put -endpoints "$ENDPOINTS" -clients 64 -conns 8 -duration 600s \
        -total "$MEM_TOTAL" -val-size 256 -key-space 100000 \
        -label "etcd/put-equal-volume/3node/n$MEM_TOTAL"
    echo "{\"label\":\"etcd/rss-split-equal-volume/3node/n$MEM_TOTAL\",\"rss\":\"$(rss_split "$PIDS")\"}"
    (cd "$ETCD_BENCH" && ./cluster.sh stop > /dev/null)
}

coord_run() {
    local start_ms
    start_ms=$(bench/cluster.sh start 3 | awk '/cold start/ {print $5}')
    echo "{\"label\":\"coord/coldstart-to-healthy/3node\",\"healthy_ms\":$start_ms}"
    . bench/.run/cluster.env
    if want put; then
        for c in 1 64 256; do
            $CB put $SPREAD --endpoints "$ENDPOINTS" --clients $c --conns "$(conns $c)" \
                --duration-ms "$DUR_MS" --label "coord/put-rand/3node/c$c"
        done
        echo "{\"label\":\"coord/rss-after-put/3node\",\"rss\":\"$(bench/cluster.sh rss | tr '\n' ' ')\"}"
    fi
    if want range; then
        for cons in l s; do
            $CB range $SPREAD --endpoints "$ENDPOINTS" --clients 64 --conns 8 --key-space 1000 \
                --consistency $cons --duration-ms "$DUR_MS" --label "coord/get-$cons/3node/c64"
        done
    fi
    if want txn; then
        for c in 1 64; do
            $CB txn $SPREAD --endpoints "$ENDPOINTS" --clients $c --conns "$(conns $c)" \
                --duration-ms "$DUR_MS" --label "coord/txn-cas-own-key/3node/c$c"
        done
    fi
    if want lock; then
        for c in 1 8 32; do
            $CB lock $SPREAD --endpoints "$ENDPOINTS" --clients $c --shared --duration-ms "$DUR_MS" \
                --label "coord/lock-shared/3node/c$c"
        done
        for c in 8 32; do
            $CB lock $SPREAD --endpoints "$ENDPOINTS" --clients $c --duration-ms "$DUR_MS" \
                --label "coord/lock-distinct/3node/c$c"
        done
    fi
    if want elect; then
        $CB elect-resign --endpoints "$ENDPOINTS" --rounds 20 --settle-ms 300 \
            --label coord/elect-resign-settled/3node
        $CB elect-resign --endpoints "$ENDPOINTS" --rounds 20 --settle-ms 0 \
            --label coord/elect-resign-just-queued/3node
        $CB elect-kill --endpoints "$ENDPOINTS" --rounds 3 --ttl 2 --coordctl build/cli/coordctl \
            --label coord/elect-kill9-holder-ttl2s/3node
    fi
    if want put; then
        # The same point as etcd's figure: after every mode that ran.
        echo "{\"label\":\"coord/rss-split-after-load/3node\",\"rss\":\"$(rss_split "$PIDS")\"}"
    fi
    bench/cluster.sh stop
}

etcd_run() {
    local L=$ETCD_BENCH/bin/loadgen
    local start_ms
    start_ms=$(cd "$ETCD_BENCH" && ./cluster.sh start 3 | grep -o '[0-9]* ms' | head -n 1 | cut -d' ' -f1)
    echo "{\"label\":\"etcd/coldstart-to-healthy/3node\",\"healthy_ms\":${start_ms:-0}}"
    . "$ETCD_BENCH/.run/cluster.env"
    if want put; then
        for c in 1 64 256; do
            $L put -endpoints "$ENDPOINTS" -clients $c -conns "$(conns $c)" -duration "${DUR_MS}ms" \
                -total 1000000 -val-size 256 -key-space 100000 -label "etcd/put-rand/3node/c$c"
        done
    fi
    if want range; then
        for cons in l s; do
            $L range -endpoints "$ENDPOINTS" -clients 64 -conns 8 -duration "${DUR_MS}ms" \
                -total 1000000 -consistency $cons -key-space 1000 -label "etcd/get-$cons/3node/c64"
        done
    fi
    if want txn; then
        for c in 1 64; do
            $L txn -endpoints "$ENDPOINTS" -clients $c -conns "$(conns $c)" -duration "${DUR_MS}ms" \
                -total 1000000 -label "etcd/txn-cas-own-key/3node/c$c"
        done
    fi
    if want lock; then
        for c in 1 8 32; do
            $L lock -endpoints "$ENDPOINTS" -clients $c -shared=true -duration "${DUR_MS}ms" \
                -label "etcd/lock-shared/3node/c$c"
        done
        for c in 8 32; do
            $L lock -endpoints "$ENDPOINTS" -clients $c -shared=false -duration "${DUR_MS}ms" \
                -label "etcd/lock-distinct/3node/c$c"
        done
    fi
    if want elect; then
        $L elect-resign -endpoints "$ENDPOINTS" -rounds 20 -settle 300ms \
            -label etcd/elect-resign-settled/3node
        $L elect-resign -endpoints "$ENDPOINTS" -rounds 20 -settle 0s \
            -label etcd/elect-resign-just-queued/3node
        $L elect-kill -endpoints "$ENDPOINTS" -rounds 3 -ttl 2 \
            -label etcd/elect-kill9-holder-ttl2s/3node
    fi
    if want put; then
        echo "{\"label\":\"etcd/rss-after-load/3node\",\"rss\":\"$(cd "$ETCD_BENCH" && ./cluster.sh rss | tr '\n' ' ')\"}"
        echo "{\"label\":\"etcd/rss-split-after-load/3node\",\"rss\":\"$(rss_split "$PIDS")\"}"
    fi
    (cd "$ETCD_BENCH" && ./cluster.sh stop > /dev/null)
}

# The machine's floors first (thread wake-ups, loopback TCP, fdatasync; docs/performance.md):
# these machines change speed from hour to hour, and a run's figures read against its floors.
$CB machine --dir "${TMPDIR:-/tmp}" --rounds 2000
for rep in $(seq 1 "$REPS"); do
    for sys in $SYSTEMS; do
        if [ "$ONLY" != mem ]; then "${sys}_run"; fi
        if want mem; then "${sys}_mem"; fi
    done
done
