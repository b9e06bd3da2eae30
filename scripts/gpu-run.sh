#!/usr/bin/env bash
# The whole GPU checklist (docs/gpu-checklist.md) in one call of the `device`
# tool, inside one lease: every step is guarded by what is left of a time
# budget and skipped (never failed) when too little is left, a failed step
# never stops the next, and the results are tarred into $OUT/results.tgz after
# every step, so a run killed at its limit still brings back all it did.
#
#   here:   make cuda build && scripts/gpu-pack.sh
#   there:  device `run`, carry [".gpu"], timeout_s 480:
#           bash scripts/gpu-run.sh
#
# Steps, in order of value:
#   1 env     OS, glibc, nvidia-smi, the library path (kept, extended with
#             PyTorch's CUDA 13 wheels), ldd of every binary, missing libraries
#   2 nvml    `mig-gateway slices --json --raw` and the table
#   3 agree   `agree --device cuda` on a synthetic 135m, f32 then bf16
#   4 first   the first model (7b): `bench` at batch 1/8/32, then a real
#             `mig-gateway up` on the GPU (straight to the worker if the
#             gateway fails), a concurrency sweep and a 512-token TTFT point
#   5 others  the same for the other models, as time allows
#   6 memory  memory used per model, its KV cache pinned (`--kv-cache-mib`)
# Results: $OUT/results.tgz (every file) and $OUT/summary.txt (printed last).
#
# Environment (defaults: the lent H200):
#   OUT                 results folder (the device tool sets it; default target/gpu-run)
#   GPU_RUN_BUDGET_S    seconds the run may take, tar and summary included (420)
#   GPU_RUN_BIN_DIR     the packed binaries, gzipped or not (.gpu)
#   GPU_RUN_WORKER      the worker's name there (the one mig-worker-cuda-sm*)
#   GPU_RUN_DEVICE      cuda, or cpu for the dry run on a machine without a GPU
#   GPU_RUN_SLICE       the slice the workers get (cuda: the GPU's UUID;
#                       cpu: every core)
#   GPU_RUN_STEPS       which steps run ("1 2 3 4 5 6")
#   GPU_RUN_MODELS      synthetic sizes, first is step 4 ("7b 1b 135m")
#   GPU_RUN_DTYPE       their weights (bf16)
#   GPU_RUN_AGREE_STEPS greedy steps of `agree` (32)
#   GPU_RUN_BATCHES     `bench --batch` sizes (1,8,32)
#   GPU_RUN_PROMPT      `bench` prompt tokens (128)
#   GPU_RUN_DECODE      `bench` decode tokens (64)
#   GPU_RUN_SWEEP       sweep concurrencies (1,8,32); the largest is also
#                       the workers' --max-batch-size
#   GPU_RUN_POINT_S     measured seconds per sweep point (8)
#   GPU_RUN_WARMUP_S    warm-up seconds per sweep point (2)
#   GPU_RUN_MAX_TOKENS  tokens per sweep request (64)
#   GPU_RUN_TTFT_WORDS  filler words of the TTFT prompt (107: about 512 tokens)
#   GPU_RUN_TTFT_N      requests of the TTFT point (4)
#   GPU_RUN_KV_MIB      each worker's KV cache (12288: 32 streams of 7b at 600 tokens)
set -u -o pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

BUDGET=${GPU_RUN_BUDGET_S:-420}
OUT=${OUT:-$REPO/target/gpu-run}
BIN_DIR=${GPU_RUN_BIN_DIR:-.gpu}
DEVICE=${GPU_RUN_DEVICE:-cuda}
STEPS=" ${GPU_RUN_STEPS:-1 2 3 4 5 6} "
MODELS=${GPU_RUN_MODELS:-7b 1b 135m}
DTYPE=${GPU_RUN_DTYPE:-bf16}
AGREE_STEPS=${GPU_RUN_AGREE_STEPS:-32}
BATCHES=${GPU_RUN_BATCHES:-1,8,32}
PROMPT=${GPU_RUN_PROMPT:-128}
DECODE=${GPU_RUN_DECODE:-64}
SWEEP=${GPU_RUN_SWEEP:-1,8,32}
POINT_S=${GPU_RUN_POINT_S:-8}
WARMUP_S=${GPU_RUN_WARMUP_S:-2}
MAX_TOKENS=${GPU_RUN_MAX_TOKENS:-64}
TTFT_WORDS=${GPU_RUN_TTFT_WORDS:-107}
TTFT_N=${GPU_RUN_TTFT_N:-4}
KV_MIB=${GPU_RUN_KV_MIB:-12288}
# Seconds kept back for the last tar and the summary.
RESERVE=15

# A wrong knob is refused before anything runs, naming the variable.
refuse() {
  echo "gpu-run: $1" >&2
  exit 2
}
for var in BUDGET AGREE_STEPS PROMPT DECODE POINT_S WARMUP_S MAX_TOKENS TTFT_WORDS TTFT_N KV_MIB; do
  [[ ${!var} =~ ^[0-9]{1,6}$ ]] || refuse "GPU_RUN_${var/BUDGET/BUDGET_S} must be a whole number of at most 6 digits"
done
((BUDGET > RESERVE + 5)) || refuse "GPU_RUN_BUDGET_S must be more than $((RESERVE + 5)) s"
for var in BATCHES SWEEP; do
  [[ ${!var} =~ ^[1-9][0-9]{0,3}(,[1-9][0-9]{0,3})*$ ]] || refuse "GPU_RUN_$var must be a list like 1,8,32"
done
[[ $DEVICE == cuda || $DEVICE == cpu ]] || refuse "GPU_RUN_DEVICE must be cuda or cpu"
[[ $MODELS =~ ^[0-9a-z]+( [0-9a-z]+)*$ ]] || refuse "GPU_RUN_MODELS must be sizes like \"7b 1b 135m\""
[[ $DTYPE == bf16 || $DTYPE == f16 || $DTYPE == f32 ]] || refuse "GPU_RUN_DTYPE must be bf16, f16 or f32"
[[ ${GPU_RUN_SLICE:-} =~ ^[A-Za-z0-9:,.-]*$ ]] || refuse "GPU_RUN_SLICE must be a slice such as GPU-<uuid> or cpu:0-1"
[[ ${GPU_RUN_WORKER:-} =~ ^[A-Za-z0-9._-]*$ ]] || refuse "GPU_RUN_WORKER must be a file name in GPU_RUN_BIN_DIR"

# A panic's backtrace is worth keeping; an error's (anyhow) is noise.
export RUST_BACKTRACE=1 RUST_LIB_BACKTRACE=0

START=$SECONDS
RES=$(mktemp -d "${TMPDIR:-/tmp}/gpu-run.XXXXXX")
SUMMARY=$RES/summary.txt
mkdir -p "$OUT"
: > "$SUMMARY"

left() { echo $((BUDGET - (SECONDS - START))); }
# A command's time limit: at most $1 seconds, and never past the reserve.
cap() {
  local l=$(($(left) - RESERVE))
  ((l < $1)) && echo $((l > 1 ? l : 1)) || echo "$1"
}
# Progress, on stderr: what a run killed at its limit still shows.
say() { echo "gpu-run: $*" | tee -a "$RES/progress.log" >&2; }
# A line of the summary, printed whole at the end (and packed after every step).
note() { echo "$*" >> "$SUMMARY"; }
# The results so far, replaced whole so a run killed mid-tar keeps the last.
pack() {
  local rc=0
  cp "$SUMMARY" "$OUT/summary.txt" 2>/dev/null
  # Exit 1 is "a file changed while read" (a running gateway's log): still
  # a whole archive.
  tar -czf "$OUT/results.tgz.part" --warning=no-file-changed -C "$RES" . 2>/dev/null || rc=$?
  ((rc <= 1)) && mv -f "$OUT/results.tgz.part" "$OUT/results.tgz"
}
# step N NAME NEEDED_SECONDS COMMAND...: runs COMMAND when step N is asked
# for and NEEDED_SECONDS are left; says how it went; packs.
step() {
  local n=$1 name=$2 need=$3 l rc t0
  shift 3
  [[ $STEPS == *" $n "* ]] || { note "step $n $name: not asked for (GPU_RUN_STEPS)"; return 0; }
  l=$(left)
  if ((l - RESERVE < need)); then
    note "step $n $name: skipped by budget ($l s left, needs $need)"
    say "step $n $name: skipped by budget ($l s left, needs $need)"
    return 0
  fi
  say "step $n $name: starting, $l s left"
  t0=$SECONDS
  "$@"
  rc=$?
  if ((rc == 0)); then
    note "step $n $name: done in $((SECONDS - t0)) s"
  else
    note "step $n $name: FAILED (exit $rc) after $((SECONDS - t0)) s"
  fi
  say "$(tail -n 1 "$SUMMARY")"
  pack
  return 0
}

# Processes started in the background; stopped on exit, whatever happens.
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
}
# SIGTERM, up to 10 s to drain, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
finish() {
  stop_all
  note "took $((SECONDS - START)) s of a $BUDGET s budget; every file is in results.tgz"
  pack
  echo "===== summary.txt" >&2
  cat "$SUMMARY"
  rm -rf "$RES"
}
trap finish EXIT
trap 'say "stopped by a signal"; exit 143' TERM INT

# wait_for FILE PATTERN SECONDS PID: until FILE has a line matching PATTERN,
# PID exits, or the time is up; prints the line.
wait_for() {
  local file=$1 pattern=$2 deadline=$((SECONDS + $3)) pid=$4 line
  while ((SECONDS < deadline)); do
    line=$(grep -m 1 -E "$pattern" "$file" 2>/dev/null) && { echo "$line"; return 0; }
    kill -0 "$pid" 2>/dev/null || { say "process $pid exited before '$pattern'"; return 1; }
    sleep 0.5
  done
  say "no '$pattern' in $file within $3 s"
  return 1
}

# ---------------------------------------------------------------- binaries

unpack() {
  local gz
  for gz in "$BIN_DIR"/*.gz; do
    [ -e "$gz" ] || continue
    gunzip -f "$gz" || say "cannot unpack $gz"
  done
  chmod +x "$BIN_DIR"/mig-* 2>/dev/null
}
unpack
BIN_DIR=$(cd "$BIN_DIR" 2>/dev/null && pwd) || note "no binaries: $BIN_DIR is missing (carry .gpu)"
if [ -z "${GPU_RUN_WORKER:-}" ]; then
  GPU_RUN_WORKER=$(cd "$BIN_DIR" 2>/dev/null && ls mig-worker-cuda-sm* 2>/dev/null | head -n 1)
fi
W=$BIN_DIR/${GPU_RUN_WORKER:-mig-worker-cuda-sm90}
GW=$BIN_DIR/mig-gateway
LT=$BIN_DIR/mig-loadtest
for bin in "$W" "$GW" "$LT"; do
  [ -x "$bin" ] || { note "missing binary: $bin (pack with scripts/gpu-pack.sh, carry .gpu)"; say "missing binary: $bin"; }
done

# ---------------------------------------------------------------- libraries

# Kept and extended, never replaced: the driver's own libcuda.so.1 and
# libnvidia-ml.so.1 may be found only through what is set already.
LD_LIBRARY_PATH_BEFORE=${LD_LIBRARY_PATH:-}
add_lib_dir() {
  [ -d "$1" ] || return 0
  case ":${LD_LIBRARY_PATH:-}:" in *":$1:"*) return 0 ;; esac
  export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$1
}
CU13=$(python3 - 2>/dev/null <<'EOF'
import glob, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
found = [p for d in dirs for p in glob.glob(d + "/nvidia/cu13/lib")]
print(found[0] if found else "")
EOF
) || CU13=""
[ -n "$CU13" ] && add_lib_dir "$CU13"
add_lib_dir /usr/local/nvidia/lib64
add_lib_dir /usr/local/nvidia/lib

GPU_UUID=$(timeout 20 nvidia-smi --query-gpu=uuid --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ')
if [ -n "${GPU_RUN_SLICE:-}" ]; then
  SLICE=$GPU_RUN_SLICE
elif [ "$DEVICE" = cuda ]; then
  SLICE=$GPU_UUID
else
  SLICE=cpu:0-$(($(nproc) - 1))
fi
MAX_C=$(tr ',' '\n' <<<"$SWEEP" | sort -n | tail -n 1)

note "gpu-run: $(date -u +%Y-%m-%dT%H:%M:%SZ), device $DEVICE, slice ${SLICE:-none}, worker $(basename "$W"), budget $BUDGET s"

# ---------------------------------------------------------------- 1 env

step_env() {
  {
    echo "== uname"; uname -a
    echo "== os-release"; cat /etc/os-release 2>/dev/null
    echo "== glibc"; ldd --version 2>&1 | head -n 1
    echo "== nproc"; nproc
    echo "== LD_LIBRARY_PATH as found"; echo "$LD_LIBRARY_PATH_BEFORE"
    echo "== LD_LIBRARY_PATH as used"; echo "${LD_LIBRARY_PATH:-}"
    echo "== CUDA 13 wheels"; echo "${CU13:-not found}"
    echo "== driver libraries (ldconfig)"; ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvidia-ml' || echo none
  } > "$RES/env.txt" 2>&1
  timeout 30 nvidia-smi > "$RES/nvidia-smi.txt" 2>&1
  timeout 30 nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,memory.used,mig.mode.current,compute_cap,clocks.max.sm,clocks.max.mem \
    --format=csv > "$RES/gpu.csv" 2>&1
  note "  os: $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}"), $(ldd --version 2>&1 | head -n 1)"
  local gpu
  gpu=$(tail -n +2 "$RES/gpu.csv" | head -n 1)
  note "  gpu: ${gpu:-none: $(head -n 1 "$RES/gpu.csv" | cut -c 1-200)}"
  note "  CUDA 13 wheels: ${CU13:-not found}"
  local bin missing=""
  for bin in "$W" "$GW" "$LT"; do
    [ -e "$bin" ] || continue
    ldd "$bin" > "$RES/ldd-$(basename "$bin").txt" 2>&1
    missing+=$(grep 'not found' "$RES/ldd-$(basename "$bin").txt" | awk -v b="$(basename "$bin")" '{ printf " %s (%s)", $1, b }')
  done
  if [ -n "$missing" ]; then
    note "  missing libraries:$missing"
    return 1
  fi
  note "  ldd: every library found"
}
step 1 env 5 step_env

# ---------------------------------------------------------------- 2 nvml

step_nvml() {
  timeout "$(cap 30)" "$GW" slices > "$RES/slices.txt" 2> "$RES/slices.log" || return 1
  sed 's/^/  /' "$RES/slices.txt" | head -n 8 >> "$SUMMARY"
  timeout "$(cap 30)" "$GW" slices --json > "$RES/slices.json" 2>> "$RES/slices.log"
  # NVML's own snapshot: the fixture a test of discovery replays.
  if ! timeout "$(cap 30)" "$GW" slices --json --raw > "$RES/slices-raw.json" 2>> "$RES/slices.log"; then
    note "  no NVML snapshot: $(grep -m 1 -i 'error' "$RES/slices.log" | cut -c 1-300)"
    return 1
  fi
}
step 2 nvml 10 step_nvml

# ---------------------------------------------------------------- 3 agree

agree_one() {
  local dt=$1 tol=$2 rc=0
  timeout "$(cap 120)" "$W" agree --device "$DEVICE" --synthetic "llama-135m:$dt" \
    --steps "$AGREE_STEPS" --tolerance "$tol" > "$RES/agree-$dt.json" 2> "$RES/agree-$dt.log" || rc=$?
  note "  agree $dt (tolerance $tol): exit $rc; $(python3 scripts/gpu-summary.py agree "$RES/agree-$dt.json" 2>&1)"
  return $rc
}
step_agree() {
  local rc=0
  agree_one f32 0.01 || rc=1
  # bf16 rounds each product's inputs to 8 bits of mantissa; the logits of
  # these random models spread by about 0.5, so 0.1 still tells a wrong
  # kernel from rounding.
  agree_one bf16 0.1 || rc=1
  return $rc
}
step 3 agree 30 step_agree

# ---------------------------------------------------------------- 4, 5 models

# Seconds a model's whole turn takes, as planned: two loads (bench, server),
# the bench's batches, the sweep points with warm-up and drain, the TTFT
# point, the shutdown. A step starts only when this much is left.
model_need() {
  local load bench points
  case "$1" in
    13b) load=40 bench=45 ;;
    7b | 8b) load=20 bench=30 ;;
    3b) load=12 bench=20 ;;
    *) load=6 bench=12 ;;
  esac
  points=$(tr ',' '\n' <<<"$SWEEP" | wc -l)
  echo $((2 * load + bench + points * (POINT_S + WARMUP_S + 5) + 15 + 10))
}

# Memory now: what the worker's own gauge says (NVML) and what nvidia-smi
# says per process.
memory_sample() {
  local m=$1 when=$2 metrics=$3
  {
    echo "== $when"
    [ -n "$metrics" ] && python3 - "$metrics" <<'EOF'
import sys, urllib.request
try:
    text = urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5).read().decode()
    print("\n".join(l for l in text.splitlines() if "memory" in l and not l.startswith("#")))
except Exception as e:
    print("metrics: %s" % e)
EOF
    timeout 10 nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>&1
    timeout 10 nvidia-smi --query-gpu=memory.used,memory.total --format=csv 2>&1
  } >> "$RES/$m/memory.txt"
}

# The worker's /metrics address: from the gateway's file_sd list, or the
# worker's own ready line.
worker_metrics() {
  python3 - "$1" 2>/dev/null <<'EOF'
import json, sys
try:
    print(json.load(open(sys.argv[1]))[0]["targets"][0])
except Exception:
    pass
EOF
}

start_gateway() {
  local m=$1 fleet=$RES/$m/fleet.toml line
  cat > "$fleet" <<EOF
[[model]]
name = "synthetic-$m"
synthetic = "llama-$m:$DTYPE"
slices = ["$SLICE"]
concurrency = $MAX_C
args = ["--kv-cache-mib", "$KV_MIB"]
EOF
  "$GW" up --fleet "$fleet" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --worker-metrics-sd "$RES/$m/workers.json" --worker-bin "$W" --cuda-worker-bin "$W" \
    --ready-timeout-seconds "$(cap 120)" --grace-seconds 5 --drain-seconds 2 \
    > "$RES/$m/gateway.out" 2> "$RES/$m/gateway.log" &
  PIDS+=($!)
  line=$(wait_for "$RES/$m/gateway.out" '^mig-gateway listening on ' "$(cap 150)" $!) || return 1
  TARGET=$(sed -E 's/^mig-gateway listening on ([^;]+);.*/\1/' <<<"$line")
  GATEWAY_METRICS=$(sed -nE 's/.*metrics: http:\/\/([^/]+)\/metrics.*/\1/p' <<<"$line")
  WORKER_METRICS=$(worker_metrics "$RES/$m/workers.json")
  VIA=gateway
}

start_worker() {
  local m=$1 line env=()
  [ "$DEVICE" = cuda ] && env=(CUDA_VISIBLE_DEVICES="$SLICE")
  env "${env[@]}" "$W" serve --device "$DEVICE" --slice "$SLICE" --synthetic "llama-$m:$DTYPE" \
    --model-name "synthetic-$m" --max-batch-size "$MAX_C" --kv-cache-mib "$KV_MIB" \
    --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    > "$RES/$m/worker.out" 2> "$RES/$m/worker.log" &
  PIDS+=($!)
  line=$(wait_for "$RES/$m/worker.out" '^mig-worker ready ' "$(cap 150)" $!) || return 1
  TARGET=$(sed -E 's/.* listen=([^ ]+).*/\1/' <<<"$line")
  GATEWAY_METRICS=""
  WORKER_METRICS=$(sed -nE 's/.* metrics=([^ ]+).*/\1/p' <<<"$line")
  VIA=worker
}

sweep() {
  local m=$1 metrics=()
  [ -n "$GATEWAY_METRICS" ] && metrics=(--metrics-url "http://$GATEWAY_METRICS/metrics")
  local points
  points=$(tr ',' '\n' <<<"$SWEEP" | wc -l)
  timeout "$(cap $((points * (WARMUP_S + POINT_S + 25) + 10)))" "$LT" sweep --target "$TARGET" --model "synthetic-$m" \
    --concurrency "$SWEEP" --duration "${POINT_S}s" --warmup "${WARMUP_S}s" --drain 20s \
    --max-tokens "$MAX_TOKENS" --ignore-eos --timeout 60s "${metrics[@]}" \
    --out "$RES/$m/sweep" > "$RES/$m/sweep.txt" 2> "$RES/$m/sweep.log"
}

ttft() {
  local m=$1
  timeout "$(cap 60)" "$LT" sweep --target "$TARGET" --model "synthetic-$m" \
    --concurrency 1 --requests "$TTFT_N" --warmup 0s --input-words "$TTFT_WORDS" \
    --max-tokens 8 --ignore-eos --timeout 60s \
    --out "$RES/$m/ttft" > "$RES/$m/ttft.txt" 2> "$RES/$m/ttft.log"
}

# measure sweep|ttft MODEL LABEL: runs that load point against $TARGET and
# adds its figures to the summary, or says why it has none.
measure() {
  local what=$1 m=$2 label=$3 e
  if "$what" "$m"; then
    python3 scripts/gpu-summary.py "$what" "$RES/$m/$what/report.json" "$label" 2>&1 |
      sed 's/^/  /' >> "$SUMMARY"
  else
    e=$?
    note "  $m $what: FAILED (exit $e): $(tail -n 1 "$RES/$m/$what.log" | cut -c 1-300)"
    return 1
  fi
}

# One model's turn: bench, then serve (gateway, else the worker straight),
# sweep, TTFT, memory. A part that fails is noted and the rest goes on.
run_model() {
  local m=$1 rc=0 e
  mkdir -p "$RES/$m"
  if timeout "$(cap 180)" "$W" bench --synthetic "llama-$m:$DTYPE" --device "$DEVICE" \
    --batch "$BATCHES" --prompt-tokens "$PROMPT" --decode-tokens "$DECODE" --runs 2 --threads "$(nproc)" \
    > "$RES/$m/bench.json" 2> "$RES/$m/bench.log"; then
    python3 scripts/gpu-summary.py bench "$RES/$m/bench.json" 2>&1 | sed 's/^/  /' >> "$SUMMARY"
  else
    e=$?
    note "  $m bench: FAILED (exit $e): $(tail -n 1 "$RES/$m/bench.log" | cut -c 1-300)"
    rc=1
  fi
  pack
  ((SECONDS - START + RESERVE + 30 < BUDGET)) || { note "  $m: no time left to serve"; return 1; }
  [ -n "$SLICE" ] || { note "  $m: no slice to serve on (nvidia-smi gave no GPU UUID; GPU_RUN_SLICE names one)"; return 1; }
  if ! start_gateway "$m"; then
    note "  $m gateway: did not come up: $(grep -v '^\s*$' "$RES/$m/gateway.log" | tail -n 1 | cut -c 1-300)"
    stop_all
    rc=1
    start_worker "$m" || {
      note "  $m worker: did not come up: $(tail -n 1 "$RES/$m/worker.log" | cut -c 1-300)"
      stop_all
      return 1
    }
  fi
  note "  $m serving via the $VIA at $TARGET"
  say "$m: serving via the $VIA at $TARGET"
  memory_sample "$m" ready "$WORKER_METRICS"
  measure sweep "$m" "$m $VIA" || rc=1
  memory_sample "$m" "after the sweep" "$WORKER_METRICS"
  pack
  measure ttft "$m" "$m" || rc=1
  stop_all
  return $rc
}

FIRST=${MODELS%% *}
REST=${MODELS#"$FIRST"}
step 4 "$FIRST" "$(model_need "$FIRST")" run_model "$FIRST"
for m in $REST; do
  step 5 "$m" "$(model_need "$m")" run_model "$m"
done

# ---------------------------------------------------------------- 6 memory

step_memory() {
  python3 scripts/gpu-summary.py memory "$RES" "$KV_MIB" $MODELS 2>&1 | sed 's/^/  /' >> "$SUMMARY"
}
step 6 memory 5 step_memory
