#!/usr/bin/env bash
# Runs one mig-loadtest scenario against a gateway started for it, on this
# machine's slices, and writes the report to OUT (default
# target/loadtest/SCENARIO). Results go to docs/benchmarks.md.
#
#   scripts/bench-loadtest.sh compare    # smollm2-135m on cpu-1c, then cpu-2c
#   scripts/bench-loadtest.sh isolation  # victim beside a flood: pinned, then shared cores
#   scripts/bench-loadtest.sh overhead   # identity model: gateway vs straight to the worker
#   scripts/bench-loadtest.sh batching   # smollm2-135m on cpu-2c at 1-16 concurrent streams
#
# FLEET overrides the fleet file (for example one naming MIG slices); more
# arguments after the scenario go to mig-loadtest (`--duration 10s`).
# MAX_TOKENS sets the tokens per request of `batching` (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${BIN_DIR:-./target/release}
scenario=${1:?usage: scripts/bench-loadtest.sh compare|isolation|overhead|batching [mig-loadtest flags]}
shift
out=${OUT:-target/loadtest/$scenario}
case $scenario in
  compare) fleet=deploy/fleet-compare.toml ;;
  isolation) fleet=deploy/fleet-isolation.toml ;;
  overhead) fleet=deploy/fleet-identity.toml ;;
  batching) fleet=deploy/fleet-batching.toml ;;
  *) echo "unknown scenario '$scenario': compare, isolation, overhead or batching" >&2; exit 2 ;;
esac
fleet=${FLEET:-$fleet}

log=$(mktemp -t mig-gateway-bench.XXXXXX.log)
# The workers take calls only with this token: `overhead` measures the
# worker straight too, so the load tester needs it.
token=$(mktemp -t mig-worker-token.XXXXXX)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token"
coproc GATEWAY { exec "$BIN_DIR/mig-gateway" up --fleet "$fleet" --listen 127.0.0.1:0 \
  --worker-token-file "$token" 2>"$log"; }
gateway_pid=$GATEWAY_PID
trap 'kill "$gateway_pid" 2>/dev/null; wait "$gateway_pid" 2>/dev/null || true; rm -f "$token"' EXIT
# The gateway prints one line once every worker is ready.
if ! read -r line <&"${GATEWAY[0]}"; then
  echo "mig-gateway did not start; its log:" >&2
  cat "$log" >&2
  exit 1
fi
addr=${line#mig-gateway listening on }
addr=${addr%%;*}
echo "$line" >&2

lt=("$BIN_DIR/mig-loadtest")
case $scenario in
  compare)
    "${lt[@]}" compare --target "$addr" --model smollm2-135m --concurrency 1,4 \
      --duration 30s --max-tokens 64 --ignore-eos --out "$out" "$@" ;;
  isolation)
    "${lt[@]}" isolation --target "$addr" --model victim --aggressor noisy \
      --model victim-shared --aggressor noisy-shared --concurrency 1 \
      --duration 30s --max-tokens 64 --ignore-eos --out "$out" "$@" ;;
  overhead)
    "${lt[@]}" sweep --target "$addr" --direct --worker-token-file "$token" --model identity --concurrency 1,4,16 \
      --duration 10s --max-tokens 64 --out "$out" "$@" ;;
  batching)
    "${lt[@]}" sweep --target "$addr" --model smollm2-135m --concurrency 1,2,4,8,16 \
      --duration 20s --max-tokens "${MAX_TOKENS:-64}" --ignore-eos --out "$out" "$@" ;;
esac
