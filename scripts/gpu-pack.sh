#!/usr/bin/env bash
# Packs what a GPU machine runs into .gpu/ (git-excluded, carried by the
# `device` tool, 64 MiB at most): the CUDA worker, the gateway and the load
# tester, stripped and gzipped. Build them first: `make cuda build`.
# See docs/gpu-checklist.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CUDA_COMPUTE_CAP:-90}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
rm -rf .gpu && mkdir -p .gpu
for bin in "target/cuda/mig-worker-cuda-sm$CAP" target/release/mig-gateway target/release/mig-loadtest; do
  [ -x "$bin" ] || { echo "gpu-pack: $bin is missing: run \`make cuda build\`" >&2; exit 1; }
  name=$(basename "$bin")
  strip -o ".gpu/$name" "$bin"
  gzip -9 ".gpu/$name"
done
du -ch .gpu/* | tail -n 1 | sed 's/total/.gpu: total (limit 64 MiB)/'
