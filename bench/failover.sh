#!/usr/bin/env bash
# Leader kill -9 → new leader, with production timings (heartbeat 100 ms, election timeout
# 1000 ms), on a 3-member loopback cluster. Each round finds the leader, kill -9's it, polls the
# two survivors (every 5 ms) until one of them reports a new leader, then restarts the killed
# member and waits until it is healthy. Prints each round's time and the median, in ms.
#
#   bench/failover.sh [ROUNDS]        # default 9
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}
bin=build/cli
data=$(mktemp -d "${COORD_BENCH_TMP:-/tmp}/coord-failover-XXXXXX")
initial=""
for i in 1 2 3; do initial+="${initial:+,}f$i=127.0.0.1:$((33380 + i * 100))"; done
declare -a pid
start() {
    local i=$1
    "$bin/coordd" --name "f$i" --data-dir "$data/f$i" \
        --listen-client-urls "127.0.0.1:$((33379 + i * 100))" \
        --listen-peer-urls "127.0.0.1:$((33380 + i * 100))" \
        --initial-cluster "$initial" >> "$data/f$i.log" 2>&1 &
    pid[$i]=$!
}
ep() { echo "127.0.0.1:$((33379 + $1 * 100))"; }
leader_seen_by() {  # the leader id member $1 reports (empty if none or unreachable)
    "$bin/coordctl" --endpoints "$(ep "$1")" --command-timeout 200 -w json endpoint status \
        2>/dev/null | sed -n 's/.*"leader":\([0-9]*\).*/\1/p'
}
member_id() {
    "$bin/coordctl" --endpoints "$(ep "$1")" --command-timeout 200 -w json endpoint status \
        2>/dev/null | sed -n 's/.*"member_id":\([0-9]*\).*/\1/p'
}
healthy() {
    for i in 1 2 3; do
        "$bin/coordctl" --endpoints "$(ep "$i")" --command-timeout 1000 endpoint health \
            > /dev/null 2>&1 || return 1
    done
}
cleanup() {
    for i in 1 2 3; do kill -KILL "${pid[$i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $data" >&2 || rm -rf "$data"
}
trap cleanup EXIT

for i in 1 2 3; do start "$i"; done
for _ in $(seq 1 500); do healthy && break; sleep 0.01; done
times=()
for round in $(seq 1 "$rounds"); do
    leader=""
    for _ in $(seq 1 200); do leader=$(leader_seen_by 1); [ -n "$leader" ] && [ "$leader" != 0 ] && break; sleep 0.01; done
    victim=0
    for i in 1 2 3; do [ "$(member_id "$i")" = "$leader" ] && victim=$i; done
    [ "$victim" != 0 ] || { echo "no leader found" >&2; exit 1; }
    sleep 0.3  # a steady state: heartbeats flowing
    begin=$(date +%s%N)
    kill -KILL "${pid[$victim]}"
    wait "${pid[$victim]}" 2>/dev/null || true
    done_ms=""
    for _ in $(seq 1 2000); do
        for i in 1 2 3; do
            [ "$i" = "$victim" ] && continue
            seen=$(leader_seen_by "$i")
            if [ -n "$seen" ] && [ "$seen" != 0 ] && [ "$seen" != "$leader" ]; then
                done_ms=$(( ($(date +%s%N) - begin) / 1000000 ))
                break 2
            fi
        done
        sleep 0.005
    done
    [ -n "$done_ms" ] || { echo "round $round: no new leader within 10 s" >&2; exit 1; }
    echo "round $round: new leader after $done_ms ms"
    times+=("$done_ms")
    start "$victim"
    for _ in $(seq 1 500); do healthy && break; sleep 0.01; done
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "{\"bench\":\"failover\",\"rounds\":$rounds,\"median_ms\":$median,\"all_ms\":[$(IFS=,; echo "${times[*]}")]}"
