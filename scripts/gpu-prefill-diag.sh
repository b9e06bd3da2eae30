#!/usr/bin/env bash
# Finds which prompts fail on the CUDA worker (first GPU run: every
# 512-token prompt ended `CUDA_ERROR_INVALID_VALUE`, 128-token ones did
# not): `bench` prefills a whole prompt in one step, `serve` in chunks of
# `--prefill-chunk`; each is tried at a few prompt lengths, and the worker's
# log is kept. One `run` call of the device tool, carry [".gpu"]:
#   bash scripts/gpu-prefill-diag.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/gpu-diag}
mkdir -p "$OUT"
BIN=/tmp/gpu-diag-bin
mkdir -p "$BIN"
for f in .gpu/*; do
  name=$(basename "$f" .gz)
  if [[ $f == *.gz ]]; then gzip -dc "$f" > "$BIN/$name"; else cp "$f" "$BIN/$name"; fi
  chmod +x "$BIN/$name"
done
W=$(ls "$BIN"/mig-worker-cuda-sm* | head -1)
LT=$BIN/mig-loadtest
WHEELS=$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH=${WHEELS}:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
GPU=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)
export CUDA_VISIBLE_DEVICES=$GPU CUDA_LAUNCH_BLOCKING=1 RUST_BACKTRACE=${RUST_BACKTRACE:-0}
DIAG_BENCH=${DIAG_BENCH:-129 256 512}
DIAG_CHUNKS=${DIAG_CHUNKS:-128 1024}
DIAG_WORDS=${DIAG_WORDS:-5 26 27 60 107}
{
  for n in $DIAG_BENCH; do
    echo "== bench 135m prompt $n"
    timeout 60 "$W" bench --synthetic llama-135m:bf16 --device cuda --batch 1 \
      --prompt-tokens "$n" --decode-tokens 2 --runs 1 2>&1 | tail -3
  done
  for chunk in $DIAG_CHUNKS; do
    echo "== serve 135m --prefill-chunk $chunk"
    "$W" serve --device cuda --slice "$GPU" --synthetic llama-135m:bf16 --model-name synthetic-135m \
      --prefill-chunk "$chunk" --max-batch-tokens 2048 --kv-cache-mib 2048 --listen 127.0.0.1:0 \
      > "$OUT/worker-$chunk.out" 2> "$OUT/worker-$chunk.log" &
    pid=$!
    for _ in $(seq 60); do grep -q '^mig-worker ready' "$OUT/worker-$chunk.out" && break; sleep 1; done
    target=$(sed -nE 's/.* listen=([^ ]+).*/\1/p' "$OUT/worker-$chunk.out")
    for words in $DIAG_WORDS; do
      echo "-- words $words"
      timeout 40 "$LT" sweep --target "$target" --model synthetic-135m --concurrency 1 --requests 2 \
        --warmup 0s --input-words "$words" --max-tokens 4 --ignore-eos --timeout 20s \
        --out "$OUT/lt-$chunk-$words" 2>&1 | grep -E "requests,|errors" | head -2
      tail -1 "$OUT/lt-$chunk-$words/requests.csv" | cut -c1-200
    done
    kill "$pid"; wait "$pid" 2>/dev/null
    grep -m3 -i "error" "$OUT/worker-$chunk.log"
    grep -m1 -A60 "forward pass failed" "$OUT/worker-$chunk.log" | grep -E "mig_worker|candle" | head -30
  done
} 2>&1 | tee "$OUT/diag.log"
