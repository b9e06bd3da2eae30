#!/usr/bin/env bash
# The gateway's resident memory with many open streams (issue 17: goal at
# most 50 MB at 1,000): the identity model on cpu:0 behind `mig-gateway up`,
# `mig-loadtest sweep` holding STREAMS streams open (long answers, so they
# stay open), the gateway's RSS read from /proc every second. Results go to
# docs/benchmarks.md.
#
#   scripts/bench-streams-rss.sh          # STREAMS=1000
#
# BIN_DIR (default ./target/release) holds the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/gateway.sh
BIN_DIR=${BIN_DIR:-./target/release}
STREAMS=${STREAMS:-1000}
work=$(mktemp -d -t mig-bench-rss.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

printf '[[model]]\nname = "identity"\nidentity = true\nslices = ["cpu:0"]\n' >"$work/fleet.toml"
start_gateway "$work/gateway" --fleet "$work/fleet.toml"
gateway=$gateway_pid
rss() { awk '/^VmRSS/ {print $2}' "/proc/$gateway/status"; }
echo "gateway RSS idle: $(rss) KiB"

"$BIN_DIR/mig-loadtest" sweep --target "$addr" --model identity --concurrency "$STREAMS" \
  --duration 15s --warmup 5s --max-tokens 4000 --ignore-eos --timeout 120s --drain 1s \
  --out "$work/lt" >"$work/lt.txt" 2>"$work/lt.log" &
pids+=($!)
peak=0
for _ in $(seq 20); do
  sleep 1
  now=$(rss)
  ((now > peak)) && peak=$now
done
echo "gateway RSS with $STREAMS streams open: peak $peak KiB ($((peak / 1024)) MiB)"
wait "${pids[-1]}" || true
tail -n 4 "$work/lt.txt"; tail -n 4 "$work/lt.log"
