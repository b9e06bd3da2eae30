#!/usr/bin/env bash
# What checking tenant keys costs a request: two gateways, each with its own
# identity worker on cpu:0, one open and one with a tenants file (a key
# checked, a model allow-list, a concurrency limit and a token bucket on
# every call), measured by one `mig-loadtest sweep` that alternates between
# them point by point. Results go to docs/benchmarks.md.
#
#   scripts/bench-auth.sh [mig-loadtest flags]     # e.g. --duration 5s
#
# OUT (default target/loadtest/auth) receives the report; BIN_DIR (default
# ./target/release) holds the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${BIN_DIR:-./target/release}
out=${OUT:-target/loadtest/auth}
work=$(mktemp -d -t mig-bench-auth.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

printf '[[model]]\nname = "identity"\nidentity = true\nslices = ["cpu:0"]\n' >"$work/fleet.toml"
cat >"$work/tenants.toml" <<'EOF'
[[tenant]]
name = "bench"
models = ["identity"]
max_concurrency = 1000
tokens_per_minute = 1000000000
EOF
key=$("$BIN_DIR/mig-gateway" tenant add-key --tenants "$work/tenants.toml" --tenant bench 2>/dev/null)

# Starts a gateway and prints its address once its worker is ready.
start() {
  local name=$1
  shift
  "$BIN_DIR/mig-gateway" up --fleet "$work/fleet.toml" --listen 127.0.0.1:0 "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  local line="" waited=0
  until line=$(grep -m1 '^mig-gateway listening on ' "$work/$name.out"); do
    if ! kill -0 "${pids[-1]}" 2>/dev/null || ((waited++ > 600)); then
      echo "the $name gateway did not start; its log:" >&2
      cat "$work/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$line" >&2
  line=${line#mig-gateway listening on }
  addr=${line%%;*}
}
start open
open_addr=$addr
start keyed --tenants "$work/tenants.toml"
keyed_addr=$addr

# The open gateway ignores the key; the keyed one checks it on every call.
MIG_API_KEY=$key "$BIN_DIR/mig-loadtest" sweep --target "$open_addr,$keyed_addr" \
  --model identity --concurrency 1,4,16 --duration 10s --max-tokens 64 --out "$out" "$@"
