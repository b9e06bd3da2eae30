#!/usr/bin/env bash
# The gateway's hop against nginx's (issue 17): the identity model on cpu:0
# behind `mig-gateway up`, nginx 1.22 (Debian's package, `grpc_pass`) in
# front of the same worker, and the worker itself, measured by one
# `mig-loadtest sweep` that alternates between the three targets point by
# point at 1, 4 and 16 streams. Results go to docs/benchmarks.md.
#
#   scripts/bench-nginx.sh [mig-loadtest sweep flags]   # e.g. --warmup 5s
#
# DURATION (default 10s) is the length of each point.
#
# nginx is fetched and started by scripts/lib/nginx.sh. OUT (default
# target/loadtest/nginx) receives the report; BIN_DIR (default
# ./target/release) holds the binaries; TENANTS=1 puts a tenants file (a
# key checked on every call) in the gateway's path.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/gateway.sh
source scripts/lib/nginx.sh
BIN_DIR=${BIN_DIR:-./target/release}
out=${OUT:-target/loadtest/nginx}
work=$(mktemp -d -t mig-bench-nginx.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

printf '[[model]]\nname = "identity"\nidentity = true\nslices = ["cpu:0"]\n' >"$work/fleet.toml"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
gateway_flags=()
if [ "${TENANTS:-0}" = 1 ]; then
  printf '[[tenant]]\nname = "bench"\nmodels = ["identity"]\nadmin = true\n' >"$work/tenants.toml"
  key=$("$BIN_DIR/mig-gateway" tenant add-key --tenants "$work/tenants.toml" --tenant bench 2>/dev/null)
  export MIG_API_KEY=$key
  gateway_flags=(--tenants "$work/tenants.toml")
fi
start_gateway "$work/gateway" --fleet "$work/fleet.toml" --worker-token-file "$work/token" \
  "${gateway_flags[@]}"
gateway=$addr
worker=$("$BIN_DIR/mig-gateway" call --target "http://$gateway" models |
  sed -nE 's/.* address=http:\/\/([0-9.:]+).*/\1/p' | head -1)
[ -n "$worker" ] || { echo "no worker address from the gateway" >&2; exit 1; }

start_nginx "$work" "$worker"
echo "gateway $gateway, nginx $nginx_addr, worker $worker" >&2

# Through nginx the worker still asks for its caller token: the load tester
# sends it to every target that answers like a worker.
unset RUST_BACKTRACE
"$BIN_DIR/mig-loadtest" sweep --target "$gateway,$nginx_addr,$worker" \
  --worker-token-file "$work/token" --model identity --concurrency 1,4,16 \
  --duration "${DURATION:-10s}" --max-tokens 64 --out "$out" "$@"
