#!/usr/bin/env bash
# Runs the CUDA worker built by scripts/build-cuda.sh on a machine with no GPU
# and no driver, so CI sees more than a successful link:
#
#   - without libcuda.so.1 the binary does not start (why the CPU and CUDA
#     workers are separate binaries);
#   - with the link stub standing in for the driver (every call answers
#     CUDA_ERROR_STUB_LIBRARY) it starts, its CPU path works (`agree --device
#     cpu`), and `--device cuda` fails fast with the message a user sees on a
#     machine where CUDA_VISIBLE_DEVICES shows no device.
#
#   scripts/cuda-smoke.sh BINARY CUDA_ROOT
set -euo pipefail
bin=$1
root=$2
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
fail() { echo "cuda-smoke: FAIL: $*" >&2; exit 1; }

out=$(env LD_LIBRARY_PATH="$root/lib" "$bin" --version 2>&1) && fail "started without libcuda.so.1: $out"
grep -q "libcuda.so.1" <<<"$out" || fail "unexpected error without libcuda.so.1: $out"
echo "cuda-smoke: without the driver the binary refuses to start ($out)" >&2

stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
ln -s "$root/lib/stubs/libcuda.so" "$stub/libcuda.so.1"
export LD_LIBRARY_PATH=$stub:$root/lib

"$bin" --version >&2

report=$(timeout 300 "$bin" agree --device cpu --synthetic llama-135m:f32 --steps 4) ||
  fail "agree --device cpu exited $?"
grep -q '"agree": true' <<<"$report" || fail "agree --device cpu disagrees: $report"
echo "cuda-smoke: the CPU path of the CUDA build runs (agree --device cpu: agree)" >&2

expect_no_device() {
  local what=$1
  shift
  local rc=0 err
  err=$(timeout 60 "$bin" "$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "$what exited $rc, expected a refusal"
  grep -q "no CUDA device visible" <<<"$err" || fail "$what: no clear message: $err"
  echo "cuda-smoke: $what refused (exit $rc): $(grep -o 'no CUDA device visible.*' <<<"$err" | head -n 1)" >&2
}
expect_no_device "serve --device cuda" serve --identity --model-name identity-smoke \
  --device cuda --slice GPU-smoke --listen 127.0.0.1:0
expect_no_device "agree --device cuda" agree --device cuda --steps 4
echo "cuda-smoke: ok" >&2
