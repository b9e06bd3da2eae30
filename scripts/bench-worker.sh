#!/usr/bin/env bash
# Single-stream prefill and decode speed of the SmolLM2 worker on this
# machine, for both in-memory weight formats. Results go to docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/mig-worker}
MODEL=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
for weights in q8-0 native; do
  for prompt in 128 512; do
    RAYON_NUM_THREADS=$THREADS "$BIN" bench --model-path "$MODEL" --threads "$THREADS" \
      --weights "$weights" --prompt-tokens "$prompt" --decode-tokens 128 --runs 3
  done
done
