#!/usr/bin/env bash
# Starts a coord cluster for benchmarks with production settings (fsync on, heartbeat 100 ms,
# election timeout 1000 ms) on loopback, waits until every member serves a linearizable read,
# and prints the cold-start time. Stops it by PID.
#
#   bench/cluster.sh start [1|3]    # writes bench/.run/cluster.env (N, ENDPOINTS, PIDS, DATA)
#   bench/cluster.sh stop
#   bench/cluster.sh rss            # VmRSS, VmHWM, RssAnon and RssFile of each member, in MB
#   COORD_BIN=/other/build/cli bench/cluster.sh start 3   # the members of another build
set -euo pipefail
cd "$(dirname "$0")/.."
run=bench/.run
mkdir -p "$run"
bin=${COORD_BIN:-build/cli}  # another build's binaries, for A/B runs

case "${1:-}" in
start)
    n=${2:-3}
    data=$(mktemp -d "${COORD_BENCH_TMP:-/tmp}/coord-bench-XXXXXX")
    initial=""
    endpoints=""
    for i in $(seq 1 "$n"); do
        initial+="${initial:+,}m$i=127.0.0.1:$((32380 + i * 100))"
        endpoints+="${endpoints:+,}127.0.0.1:$((32379 + i * 100))"
    done
    # A member left over from an earlier run would answer the health checks below in place of
    # the new one (which cannot bind): refuse to start instead of measuring the wrong cluster.
    for i in $(seq 1 "$n"); do
        for port in $((32379 + i * 100)) $((32380 + i * 100)); do
            if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
                echo "port $port is in use (a cluster left running? bench/cluster.sh stop)" >&2
                rm -rf "$data"
                exit 1
            fi
        done
    done
    pids=""
    begin=$(date +%s%N)
    for i in $(seq 1 "$n"); do
        "$bin/coordd" --name "m$i" --data-dir "$data/m$i" \
            --listen-client-urls "127.0.0.1:$((32379 + i * 100))" \
            --listen-peer-urls "127.0.0.1:$((32380 + i * 100))" \
            --initial-cluster "$initial" ${COORDD_FLAGS:-} > "$data/m$i.log" 2>&1 &
        pids+="${pids:+,}$!"
    done
    healthy=1
    for ep in ${endpoints//,/ }; do
        ok=0
        for _ in $(seq 1 600); do
            if "$bin/coordctl" --endpoints "$ep" --command-timeout 1000 endpoint health \
                > /dev/null 2>&1; then
                ok=1
                break
            fi
            sleep 0.01
        done
        [ "$ok" = 1 ] || healthy=0
    done
    elapsed=$(( ($(date +%s%N) - begin) / 1000000 ))
    for pid in ${pids//,/ }; do kill -0 "$pid" 2> /dev/null || healthy=0; done
    if [ "$healthy" != 1 ]; then
        echo "the cluster did not start; member logs:" >&2
        tail -n 5 "$data"/m*.log >&2
        for pid in ${pids//,/ }; do kill -KILL "$pid" 2> /dev/null || true; done
        rm -rf "$data"
        exit 1
    fi
    echo "cold start to healthy: $elapsed ms"
    printf 'N=%s\nENDPOINTS=%s\nPIDS=%s\nDATA=%s\n' "$n" "$endpoints" "$pids" "$data" \
        > "$run/cluster.env"
    cat "$run/cluster.env"
    ;;
stop)
    . "$run/cluster.env"
    for pid in ${PIDS//,/ }; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in ${PIDS//,/ }; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$DATA" "$run/cluster.env"
    ;;
rss)
    . "$run/cluster.env"
    for pid in ${PIDS//,/ }; do
        awk -v p="$pid" '/VmRSS|VmHWM|RssAnon|RssFile/ {printf "%s %s %.1f MB  ", p, $1, $2/1024}
            END {print ""}' "/proc/$pid/status"
    done
    ;;
*)
    echo "usage: bench/cluster.sh start [1|3] | stop | rss" >&2
    exit 2
    ;;
esac
