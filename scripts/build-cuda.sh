#!/usr/bin/env bash
# Builds the CUDA worker: mig-worker with the `cuda` feature, against
# NVIDIA's CUDA 13.0 toolkit from PyPI (scripts/cuda.lock), on a machine with
# no CUDA installed and no GPU. The wheels go to a cache outside the
# repository and are installed once.
#
#   scripts/build-cuda.sh            # CUDA_COMPUTE_CAP=90: H100 / H200 (sm_90a)
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # A100
#   MODE=check scripts/build-cuda.sh # cargo check only (candle's kernels
#                                    # still go through nvcc: little faster)
#
# The binary (stripped): target/cuda/mig-worker-cuda-sm$CUDA_COMPUTE_CAP. At run time it
# needs the driver's libcuda.so.1 and the toolkit's libcudart.so.13,
# libcublas.so.13, libcublasLt.so.13 and libcurand.so.10 (from this cache or
# from PyTorch's nvidia/cu13/lib) on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CACHE=${MIG_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mig-gateway/cuda-13.0.2}
CAP=${CUDA_COMPUTE_CAP:-90}
MODE=${MODE:-build}
ROOT=$CACHE/nvidia/cu13

# Installed into a temporary folder and moved in place, with a marker, so an
# interrupted install is redone rather than half used.
if [ ! -f "$CACHE/.complete" ]; then
  echo "cuda: installing the pinned toolkit wheels into $CACHE (about 650 MB)" >&2
  rm -rf "$CACHE.tmp" "$CACHE"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --require-hashes \
    --no-compile --target "$CACHE.tmp" -r scripts/cuda.lock
  mv "$CACHE.tmp" "$CACHE"
  touch "$CACHE/.complete"
fi

# The wheels ship only versioned libraries; the linker wants plain names.
for lib in cudart cublas cublasLt nvrtc curand; do
  versioned=$(cd "$ROOT/lib" && ls "lib$lib.so."* 2>/dev/null | sort | head -n 1) || true
  [ -n "$versioned" ] || { echo "cuda: lib$lib.so.* missing in $ROOT/lib" >&2; exit 1; }
  ln -sf "$versioned" "$ROOT/lib/lib$lib.so"
done
# cudarc's build searches <root>/lib/stubs for the libcuda link stub.
# Rewritten when Cargo.lock (a new cudarc may declare new functions) or the
# generator changed.
stub=$ROOT/lib/stubs/libcuda.so
if [ ! -f "$stub" ] || [ Cargo.lock -nt "$stub" ] || [ scripts/cuda-stub.py -nt "$stub" ]; then
  "$PYTHON" scripts/cuda-stub.py "$ROOT/lib/stubs"
fi

export CUDA_ROOT=$ROOT CUDA_PATH=$ROOT CUDA_HOME=$ROOT NVCC=$ROOT/bin/nvcc
export PATH=$ROOT/bin:$PATH CUDA_COMPUTE_CAP=$CAP
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
nvcc --version | tail -n 2 >&2
echo "cuda: CUDA_COMPUTE_CAP=$CAP, toolkit $ROOT" >&2

if [ "$MODE" = check ]; then
  cargo check --release -p mig-worker --features cuda --target-dir target/cuda
  exit 0
fi
cargo build --release -p mig-worker --features cuda --target-dir target/cuda
# Stripped (about 62 MiB instead of 180): what travels to a GPU machine.
out=target/cuda/mig-worker-cuda-sm$CAP
strip -o "$out" target/cuda/release/mig-worker
echo "cuda: built $out ($(du -h "$out" | cut -f1))" >&2
# It starts, runs on the CPU, and refuses --device cuda clearly without a GPU.
scripts/cuda-smoke.sh "$out" "$ROOT"
