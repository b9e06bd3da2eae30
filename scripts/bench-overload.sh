#!/usr/bin/env bash
# Overload at the gateway's admission queue (issue 17): SmolLM2 on cpu:0,
# batch 4, behind a gateway with three tenants (critical, standard,
# sheddable). Measured with `mig-loadtest sweep`, one phase after another:
#   1 capacity   closed loop at 8 streams: the requests/s the slice serves
#   2 unloaded   one stream: TTFT without load
#   3 overload   Poisson arrivals at MULT x capacity for 20 s, 3 s deadlines,
#                the standard tenant: admitted TTFT, goodput, what is shed
#   4 critical   one critical stream beside a sheddable flood at MULT x
# Results go to docs/benchmarks.md.
#
#   scripts/bench-overload.sh                           # MULT=10
#   QUEUE_MAX_WAIT=0.15 scripts/bench-overload.sh       # interactive bound
#
# QUEUE_MAX_WAIT is the gateway's `--queue-max-wait` (default 30 s: admit
# what can finish before its deadline; a small one keeps the queue short,
# so admitted requests start about as fast as unloaded ones).
# OUT (default target/loadtest/overload) receives the reports; BIN_DIR
# (default ./target/release) holds the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/gateway.sh
BIN_DIR=${BIN_DIR:-./target/release}
MULT=${MULT:-10}
QUEUE_MAX_WAIT=${QUEUE_MAX_WAIT:-30}
out=${OUT:-target/loadtest/overload}
work=$(mktemp -d -t mig-bench-overload.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$out"

printf '[[model]]\nname = "smollm2-135m"\npath = "%s"\nslices = ["cpu:0"]\nargs = ["--max-batch-size", "4"]\n' \
  "$PWD/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf" >"$work/fleet.toml"
: >"$work/tenants.toml"
for t in critical standard sheddable; do
  printf '[[tenant]]\nname = "%s"\nmodels = ["smollm2-135m"]\npriority = "%s"\n\n' "$t" "$t" >>"$work/tenants.toml"
done
declare -A key
for t in critical standard sheddable; do
  key[$t]=$("$BIN_DIR/mig-gateway" tenant add-key --tenants "$work/tenants.toml" --tenant "$t" 2>/dev/null)
done

start_gateway "$work/gateway" --fleet "$work/fleet.toml" --tenants "$work/tenants.toml" \
  --metrics-listen 127.0.0.1:0 --queue-max-wait "$QUEUE_MAX_WAIT"

# lt TENANT NAME FLAGS...: one sweep point of that tenant, report in $out/NAME.
lt() {
  local who=$1 name=$2
  shift 2
  MIG_API_KEY=${key[$who]} "$BIN_DIR/mig-loadtest" sweep --target "$addr" --model smollm2-135m \
    --max-tokens 32 --ignore-eos --out "$out/$name" "$@" >"$out/$name.txt" 2>"$out/$name.log"
}
# Requests served whole per second (shed ones do not count).
served_per_s() {
  python3 -c 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1])))[0]; print(int(r["ok"]) / float(r["window_s"]))' "$1"
}

echo "== 1 capacity: closed loop, 8 streams" >&2
lt standard capacity --concurrency 8 --duration 15s --warmup 3s
capacity=$(served_per_s "$out/capacity/summary.csv")
rate=$(python3 -c "print(round($capacity * $MULT, 2))")
echo "capacity $capacity req/s; offered $rate req/s" >&2

echo "== 2 unloaded: one stream" >&2
lt standard unloaded --concurrency 1 --duration 10s --warmup 2s

echo "== 3 overload: $MULT x capacity, 3 s deadlines" >&2
lt standard overload --rate "$rate" --duration 20s --warmup 0s --timeout 3s --drain 10s

echo "== 4 critical beside a sheddable flood at $MULT x" >&2
lt sheddable flood --rate "$rate" --duration 25s --warmup 0s --timeout 10s --drain 10s &
flood=$!
sleep 3
lt critical critical --concurrency 1 --duration 15s --warmup 0s
wait "$flood" || true
if [ -n "$metrics" ]; then
  python3 -c 'import sys,urllib.request; print("\n".join(l for l in urllib.request.urlopen(sys.argv[1]).read().decode().splitlines() if l.startswith("mig_gateway_admission_shed_total")))' \
    "$metrics" >"$out/shed.txt" || true
fi

python3 - "$out" "$capacity" <<'PY'
import csv, sys
out, capacity = sys.argv[1], float(sys.argv[2])
print(f"capacity {capacity:.2f} req/s")
# One line per phase: what was offered, what was served, and how fast.
for name in ["capacity", "unloaded", "overload", "flood", "critical"]:
    r = list(csv.DictReader(open(f"{out}/{name}/summary.csv")))[0]
    ok, window = int(r["ok"]), float(r["window_s"])
    print(f"{name:9} {r['load']:>6}  sent {r['requests']:>5}  ok {ok:>4} = {ok / window:5.2f}/s "
          f"({ok / window / capacity * 100:5.1f} % of capacity)  TTFT p50 {float(r['ttft_p50_ms']):7.1f} ms "
          f"p99 {float(r['ttft_p99_ms']):7.1f} ms  errors {r['errors_by_code']}")
PY
cat "$out/shed.txt" 2>/dev/null || true
