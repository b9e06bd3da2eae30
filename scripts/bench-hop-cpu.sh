#!/usr/bin/env bash
# What one relayed request costs the gateway and nginx (issue 17): the
# identity model on cpu:0 behind `mig-gateway up`, nginx in front of the
# same worker (scripts/lib/nginx.sh), each loaded in turn by a closed-loop
# `mig-loadtest sweep` point; over 5 s of each point the serving process's
# CPU time (user and kernel, from /proc/PID/stat), syscalls and context
# switches (`perf stat`) are divided by the requests served. Results go to
# docs/benchmarks.md.
#
#   scripts/bench-hop-cpu.sh            # 1 and 16 streams
#   STREAMS="1 4 16" MAX_TOKENS=1 scripts/bench-hop-cpu.sh
#
# BIN_DIR (default ./target/release) holds the binaries; NGINX=0 measures
# the gateway alone (an A/B of two gateway builds: run it once per BIN_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/gateway.sh
source scripts/lib/nginx.sh
BIN_DIR=${BIN_DIR:-./target/release}
STREAMS=${STREAMS:-1 16}
MAX_TOKENS=${MAX_TOKENS:-64}
command -v perf >/dev/null || { echo "needs perf (Debian: linux-perf)" >&2; exit 1; }
work=$(mktemp -d -t mig-bench-hop.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

printf '[[model]]\nname = "identity"\nidentity = true\nslices = ["cpu:0"]\n' >"$work/fleet.toml"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
start_gateway "$work/gateway" --fleet "$work/fleet.toml" --worker-token-file "$work/token"
gateway=$addr
worker=$("$BIN_DIR/mig-gateway" call --target "http://$gateway" models |
  sed -nE 's/.* address=http:\/\/([0-9.:]+).*/\1/p' | head -1)
[ -n "$worker" ] || { echo "no worker address from the gateway" >&2; exit 1; }
if [ "${NGINX:-1}" = 1 ]; then
  start_nginx "$work" "$worker"
fi
unset RUST_BACKTRACE

# measure NAME TARGET PID STREAMS: one line of per-request costs.
measure() {
  local name=$1 target=$2 pid=$3 c=$4 lt cpu0 cpu1 user0 user1
  "$BIN_DIR/mig-loadtest" sweep --target "$target" --worker-token-file "$work/token" \
    --model identity --concurrency "$c" --duration 10s --warmup 1s \
    --max-tokens "$MAX_TOKENS" --out "$work/lt-$name-$c" >/dev/null 2>&1 &
  lt=$!
  sleep 3
  read -r user0 cpu0 < <(awk '{print $14, $14 + $15}' "/proc/$pid/stat")
  perf stat -e raw_syscalls:sys_enter,context-switches -p "$pid" -x, \
    -o "$work/stat-$name-$c" -- sleep 5 >/dev/null 2>&1
  read -r user1 cpu1 < <(awk '{print $14, $14 + $15}' "/proc/$pid/stat")
  wait "$lt" || true
  python3 - "$work" "$name" "$c" "$((cpu1 - cpu0))" "$((user1 - user0))" "$(getconf CLK_TCK)" <<'PY'
import csv, sys
work, name, c, cpu, user, hz = sys.argv[1:]
row = next(csv.DictReader(open(f"{work}/lt-{name}-{c}/summary.csv")))
rps = float(row["requests_per_s"])
served = rps * 5
stat = {}
for line in open(f"{work}/stat-{name}-{c}"):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[0].replace(".", "").isdigit():
        stat[parts[2]] = float(parts[0])
us = lambda ticks: int(ticks) / int(hz) * 1e6 / served
print(f"{name:8} c={c:<3} {rps:7.0f} req/s  CPU {us(cpu):4.0f} us/request (user {us(user):4.0f})  "
      f"syscalls {stat.get('raw_syscalls:sys_enter', 0) / served:5.1f}  "
      f"context switches {stat.get('context-switches', 0) / served:4.2f}  "
      f"failed {row['errors_by_code']}")
PY
}

for c in $STREAMS; do
  measure gateway "$gateway" "$gateway_pid" "$c"
  if [ "${NGINX:-1}" = 1 ]; then
    measure nginx "$nginx_addr" "$nginx_pid" "$c"
  fi
done
