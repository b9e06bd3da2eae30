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
source scripts/lib/gateway.sh
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

start_gateway "$work/open" --fleet "$work/fleet.toml"
open_addr=$addr
start_gateway "$work/keyed" --fleet "$work/fleet.toml" --tenants "$work/tenants.toml"
keyed_addr=$addr

# The open gateway ignores the key; the keyed one checks it on every call.
MIG_API_KEY=$key "$BIN_DIR/mig-loadtest" sweep --target "$open_addr,$keyed_addr" \
  --model identity --concurrency 1,4,16 --duration 10s --max-tokens 64 --out "$out" "$@"
