#!/usr/bin/env bash
# One load through the gateway's three fronts, each measured by a client
# people use for it (issue 18):
#   grpc        mig-loadtest           the project's API (GenerateStream)
#   kserve      perf_analyzer          KServe v2 gRPC, ModelStreamInfer (decoupled)
#   openai-pa   perf_analyzer          OpenAI HTTP, /v1/completions streamed
#   openai      aiperf                 OpenAI HTTP, /v1/completions streamed
# MODEL=smollm2 (default): SmolLM2 on cpu:0; the fronts' tokens/s should
# agree, the slice being what limits them. MODEL=identity: the echo model
# (no compute), so what differs is what each front costs.
# Clients run on CPU 1, the worker on CPU 0 (the gateway floats).
#
#   scripts/client-venv.sh --bench      # once: aiperf, perf_analyzer
#   scripts/bench-protocols.sh          # MODEL=smollm2 CONC=4 TOKENS=32 REQUESTS=96
#   MODEL=identity CONC=1 REQUESTS=2000 scripts/bench-protocols.sh
#
# Reports under OUT (default target/loadtest/protocols-MODEL); the summary
# table on stdout. BIN_DIR (default ./target/release) holds the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/gateway.sh
BIN_DIR=${BIN_DIR:-./target/release}
MODEL=${MODEL:-smollm2}
CONC=${CONC:-4}
TOKENS=${TOKENS:-32}
REQUESTS=${REQUESTS:-96}
PROMPT="Write a haiku about GPUs."
venv=target/bench-venv
out=${OUT:-target/loadtest/protocols-$MODEL}
work=$(mktemp -d -t mig-bench-protocols.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
[ -x "$venv/bin/aiperf" ] || { echo "run scripts/client-venv.sh --bench first" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
client() { taskset -c 1 "$@"; }
# The gateway's CPU time so far (user + system), in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$gateway_pid/stat"; }
# measure FRONT COMMAND...: runs the client, noting the gateway's CPU time.
measure() {
  local front=$1 before
  shift
  before=$(ticks)
  client "$@"
  echo "$front $(($(ticks) - before))" >>"$out/gateway-cpu.txt"
}

case "$MODEL" in
  smollm2)
    name=smollm2-135m
    printf '[[model]]\nname = "%s"\npath = "%s"\nslices = ["cpu:0"]\nargs = ["--max-batch-size", "%s"]\n' \
      "$name" "$PWD/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf" "$CONC" >"$work/fleet.toml" ;;
  identity)
    name=identity
    printf '[[model]]\nname = "identity"\nidentity = true\nslices = ["cpu:0"]\n' >"$work/fleet.toml" ;;
  *) echo "MODEL is smollm2 or identity" >&2; exit 1 ;;
esac
tokenizer=$PWD/target/tokenizers/smollm2-135m
[ -f "$tokenizer/tokenizer.json" ] ||
  "$venv/bin/python" scripts/gguf-tokenizer.py models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf "$tokenizer" >&2

start_gateway "$work/gateway" --fleet "$work/fleet.toml" --http-listen 127.0.0.1:0
http=$(sed -nE 's/.*openai: http:\/\/([^/ ;]+).*/\1/p' "$work/gateway.out")
warm=$((CONC * 4))

echo "== grpc: mig-loadtest" >&2
printf '{"prompt": "%s"}\n' "$PROMPT" >"$work/prompts.jsonl"
measure grpc "$BIN_DIR/mig-loadtest" sweep --target "$addr" --model "$name" --concurrency "$CONC" \
  --requests "$REQUESTS" --warmup 2s --max-tokens "$TOKENS" --ignore-eos --prompts "$work/prompts.jsonl" \
  --out "$out/grpc" >"$out/grpc.txt" 2>"$out/grpc.log"

echo "== kserve: perf_analyzer" >&2
printf '{"data":[{"text_input":["%s"],"max_tokens":[%s],"ignore_eos":[true],"stream":[true]}]}\n' \
  "$PROMPT" "$TOKENS" >"$work/pa-kserve.json"
measure kserve "$venv/bin/perf-analyzer" -m "$name" -u "$addr" -i grpc --async --streaming \
  --input-data "$work/pa-kserve.json" --concurrency-range "$CONC" --request-count "$REQUESTS" \
  --warmup-request-count "$warm" --profile-export-file "$out/kserve.json" >"$out/kserve.txt" 2>&1

echo "== openai-pa: perf_analyzer" >&2
printf '{"data":[{"payload":[{"model":"%s","prompt":"%s","max_tokens":%s,"ignore_eos":true,"stream":true}]}]}\n' \
  "$name" "$PROMPT" "$TOKENS" >"$work/pa-openai.json"
measure openai-pa "$venv/bin/perf-analyzer" -m "$name" --service-kind openai --endpoint v1/completions -u "$http" -i http \
  --async --input-data "$work/pa-openai.json" --concurrency-range "$CONC" --request-count "$REQUESTS" \
  --warmup-request-count "$warm" --profile-export-file "$out/openai-pa.json" >"$out/openai-pa.txt" 2>&1

echo "== openai: aiperf" >&2
measure openai "$venv/bin/aiperf" profile --model "$name" --url "http://$http" --endpoint-type completions --streaming \
  --tokenizer "$tokenizer" --concurrency "$CONC" --request-count "$REQUESTS" --warmup-request-count "$warm" \
  --synthetic-input-tokens-mean 7 --synthetic-input-tokens-stddev 0 --output-tokens-mean "$TOKENS" \
  --output-tokens-stddev 0 --extra-inputs ignore_eos:true --ui-type none --no-server-metrics \
  --no-gpu-telemetry --random-seed 1 --artifact-dir "$out/aiperf" >"$out/aiperf.txt" 2>&1

"$venv/bin/python" - "$out" "$MODEL" "$CONC" "$TOKENS" "$REQUESTS" "$warm" "$(getconf CLK_TCK)" <<'PY'
import csv, glob, json, statistics, sys

out, model, conc, tokens, requests, warm, clk = sys.argv[1:]
rows = []
# The gateway's CPU per request, warm-up included (mig-loadtest's warm-up
# is 2 s, counted from its summary; the others send `warm` requests first).
ticks = dict(line.split() for line in open(f"{out}/gateway-cpu.txt"))

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")

# mig-loadtest's own summary.
r = next(csv.DictReader(open(f"{out}/grpc/summary.csv")))
sent = {"grpc": int(r["ok"]) + int(r["warmup_requests"])}
rows.append(("grpc", "mig-loadtest", int(r["ok"]), float(r["requests_per_s"]), float(r["output_tokens_per_s"]),
             float(r["ttft_p50_ms"]), float(r["e2e_p50_ms"]), float(r["e2e_p99_ms"])))

# perf_analyzer's export: every request's send time and response times (ns).
for front in ("kserve", "openai-pa"):
    doc = json.load(open(f"{out}/{front}.json"))
    reqs = [q for e in doc["experiments"] for q in e["requests"] if q.get("response_timestamps")]
    start = min(q["timestamp"] for q in reqs)
    end = max(q["response_timestamps"][-1] for q in reqs)
    secs = (end - start) / 1e9
    # KServe: one response per token, and the final flag on the last; the
    # OpenAI stream: one event per token, then the finish, usage and [DONE].
    extra = 1 if front == "kserve" else 2
    toks = sum(max(0, len(q["response_timestamps"]) - extra) for q in reqs)
    ttft = [(q["response_timestamps"][0] - q["timestamp"]) / 1e6 for q in reqs]
    e2e = [(q["response_timestamps"][-1] - q["timestamp"]) / 1e6 for q in reqs]
    rows.append((front, "perf_analyzer", len(reqs), len(reqs) / secs, toks / secs,
                 pct(ttft, 50), pct(e2e, 50), pct(e2e, 99)))

# aiperf's JSON export.
path = glob.glob(f"{out}/aiperf/**/profile_export_aiperf.json", recursive=True)[0]
m = json.load(open(path))
def metric(name, stat):
    v = m.get(name) or m.get("records", {}).get(name) or {}
    return float(v.get(stat, "nan"))
count = int(metric("request_count", "avg")) if metric("request_count", "avg") == metric("request_count", "avg") else 0
rows.append(("openai", "aiperf", count, metric("request_throughput", "avg"), metric("output_token_throughput", "avg"),
             metric("time_to_first_token", "p50"), metric("request_latency", "p50"), metric("request_latency", "p99")))

print(f"MODEL={model} CONC={conc} TOKENS={tokens}")
print("| front | client | requests | req/s | tokens/s | TTFT p50 ms | e2e p50 ms | e2e p99 ms | gateway CPU us/request |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for front, who, n, rps, tps, ttft, p50, p99 in rows:
    total = sent.get(front, int(requests) + int(warm))
    cpu = int(ticks[front]) / int(clk) / total * 1e6
    print(f"| {front} | {who} | {n} | {rps:.1f} | {tps:.0f} | {ttft:.2f} | {p50:.2f} | {p99:.2f} | {cpu:.0f} |")
PY
