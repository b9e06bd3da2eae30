#!/usr/bin/env bash
# `mig-gateway reshape` under calls, on the simulated MIG device of
# deploy/reshape/: the 2g.20gb split into two 1g.10gb and back, ROUNDS
# times, while 4 shell loops call the three identity models in turn.
# Prints each reshape's outages and, at the end, the calls made and failed.
#
#   cargo build --bins
#   scripts/bench-reshape.sh [ROUNDS]          # default 3
#
# What it measures is the gateway's own part of an outage (retire, drain,
# stop, start, route) on CPU stand-ins: no NVML call, no model load.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
[ -x "$BIN_DIR/mig-gateway" ] || { echo "build first: cargo build --bins" >&2; exit 1; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
# shellcheck source=lib/gateway.sh
source scripts/lib/gateway.sh

cp deploy/reshape/mig-state.json "$work/mig-state.json"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/admin-token"
start_gateway "$work/gateway" --fleet deploy/reshape/fleet.toml \
  --simulate-mig "$work/mig-state.json" \
  --admin-listen 127.0.0.1:0 --admin-token-file "$work/admin-token"
admin=$(sed -nE 's/.*admin: ([0-9.:]+).*/\1/p' "$work/gateway.out")

for c in 1 2 3 4; do
  (
    ok=0 failed=0 i=$c
    while [ ! -e "$work/stop" ]; do
      model=identity-$(printf 'abc' | cut -c$(( i % 3 + 1 )))
      if "$BIN_DIR/mig-gateway" call --target "http://$addr" generate --model "$model" \
          --prompt reshape --max-tokens 8 >/dev/null 2>>"$work/calls.err"; then
        ok=$((ok + 1))
      else
        failed=$((failed + 1))
      fi
      i=$((i + 1))
    done
    echo "$ok $failed" >"$work/client-$c"
  ) &
  pids+=($!)
done
sleep 1
reshape() {
  "$BIN_DIR/mig-gateway" reshape --admin "http://$admin" \
    --admin-token-file "$work/admin-token" --to "$1"
}
for r in $(seq 1 "$rounds"); do
  echo "== round $r: split"
  reshape deploy/reshape/plan.json | grep -E 'out |kept'
  sleep 1
  echo "== round $r: back"
  reshape deploy/reshape/plan-back.json | grep -E 'out |kept'
  sleep 1
done
touch "$work/stop"
for c in 1 2 3 4; do
  while [ ! -s "$work/client-$c" ]; do sleep 0.1; done
done
cat "$work"/client-* | awk '{ok += $1; failed += $2} END {printf "calls: %d ok, %d failed\n", ok, failed}'
grep -i 'error' "$work/calls.err" | sort | uniq -c | head -5 || true
