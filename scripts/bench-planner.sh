#!/usr/bin/env bash
# Planning time of `mig-gateway plan` for 50 models x 200 replicas (10,000
# replicas), needs spread over 1..70 GB so every profile size is used.
#
#   cargo build --release -p mig-gateway
#   scripts/bench-planner.sh [GPU] [RUNS]     # defaults: a100-80gb 3
#
# Prints the wall time of each run (the whole process: parsing, planning,
# printing the table) and the plan's last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=${1:-a100-80gb}
runs=${2:-3}
bin=${BIN:-target/release/mig-gateway}
[ -x "$bin" ] || { echo "build first: cargo build --release -p mig-gateway" >&2; exit 1; }
args=(plan --gpu "$gpu")
for i in $(seq 0 49); do
  gb=$(( 1 + (i * 37) % 70 ))
  args+=(--model "m$i=${gb}GB:200")
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  "$bin" "${args[@]}" >"$out"
  end=$(date +%s%N)
  printf 'run %d: %d.%03d s\n' "$r" $(( (end - start) / 1000000000 )) $(( (end - start) / 1000000 % 1000 ))
done
tail -n 2 "$out"
for set in balanced; do
  start=$(date +%s%N)
  "$bin" "${args[@]}" --profiles "$set" >"$out"
  end=$(date +%s%N)
  printf -- '--profiles %s: %d.%03d s\n' "$set" $(( (end - start) / 1000000000 )) $(( (end - start) / 1000000 % 1000 ))
  tail -n 2 "$out"
done
