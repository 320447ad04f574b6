#!/usr/bin/env bash
# CPU time per operation: starts a 3-member cluster (bench/cluster.sh), runs one coordbench
# mode against it, and prints one JSON line with the throughput, p99, p99.9 and the slowest
# request, the CPU time (user + system) the members and coordbench spent per operation, and
# the members' anonymous memory afterwards. On a box that the benchmark saturates (as these 2-core machines are), CPU per
# operation varies far less from run to run than throughput: compare builds with it.
#
#   bench/cpu-per-op.sh [LABEL] [coordbench mode and options]
#   bench/cpu-per-op.sh put64 put --clients 64 --conns 8          # the default
#   REPS=6 bench/cpu-per-op.sh ...                                # several runs, one line each
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-put64}
shift || true
[ $# -gt 0 ] || set -- put --clients 64 --conns 8
dur=${DUR_MS:-5000}
ticks() {  # utime + stime of the PIDs in a comma-separated list, in clock ticks
    local sum=0 p
    for p in ${1//,/ }; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$sum"
}
hz=$(getconf CLK_TCK)
for _ in $(seq 1 "${REPS:-1}"); do
    bench/cluster.sh start 3 > /dev/null
    . bench/.run/cluster.env
    before=$(ticks "$PIDS")
    out=$(mktemp)
    /usr/bin/time -f "%U %S" -o "$out.time" build/bench/coordbench "$@" --spread \
        --endpoints "$ENDPOINTS" --duration-ms "$dur" --label "$label" > "$out"
    after=$(ticks "$PIDS")
    anon=0
    for p in ${PIDS//,/ }; do anon=$((anon + $(awk '/^RssAnon/ {print $2}' "/proc/$p/status"))); done
    bench/cluster.sh stop > /dev/null
    python3 - "$out" "$((after - before))" "$hz" "$dur" "$anon" << 'PY'
import json, sys
out, ticks, hz, dur, anon = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
run = json.load(open(out))
user, system = map(float, open(out + ".time").read().split())
ops = run["ops_per_s"] * dur / 1000
print(json.dumps({
    "label": run["label"], "ops_per_s": run["ops_per_s"], "p99_ms": run["p99_ms"],
    "p999_ms": run.get("p999_ms"), "max_ms": run.get("max_ms"),
    "server_cpu_us_per_op": round(ticks / hz * 1e6 / ops, 1),
    "client_cpu_us_per_op": round((user + system) * 1e6 / ops, 1),
    "member_anon_mb": round(anon / 3 / 1024, 1),
}))
PY
    rm -f "$out" "$out.time"
done
