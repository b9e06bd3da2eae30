#!/usr/bin/env bash
# Packs what a GPU machine runs into .gpu/ (git-excluded, carried by the
# `device` tool): the CUDA worker, the gateway and the load tester, stripped
# and gzipped; `scripts/gpu-run.sh` unpacks and runs them there. Build them
# first: `make cuda build`. See docs/gpu-checklist.md.
#
# For each binary it prints the shared libraries it needs and the newest
# glibc symbol version it asks for (the machine there must have both), then
# the packed size. A call carries 64 MiB in all, the repository's own files
# included, so a pack that would not fit beside them is refused (exit 1,
# nothing left in the pack folder).
#
# Environment: CUDA_COMPUTE_CAP (90), GPU_PACK_WORKER, GPU_PACK_GATEWAY,
# GPU_PACK_LOADTEST (the three binaries), GPU_PACK_OUT (.gpu),
# GPU_PACK_LIMIT_MIB (64: what one call carries).
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CUDA_COMPUTE_CAP:-90}
WORKER=${GPU_PACK_WORKER:-target/cuda/mig-worker-cuda-sm$CAP}
GATEWAY=${GPU_PACK_GATEWAY:-target/release/mig-gateway}
LOADTEST=${GPU_PACK_LOADTEST:-target/release/mig-loadtest}
PACK=${GPU_PACK_OUT:-.gpu}
LIMIT_MIB=${GPU_PACK_LIMIT_MIB:-64}

case "$PACK" in
  "" | / | . | .. | ./ | ../) echo "gpu-pack: GPU_PACK_OUT=$PACK would be emptied: name a folder of its own" >&2; exit 1 ;;
esac

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

for bin in "$WORKER" "$GATEWAY" "$LOADTEST"; do
  [ -x "$bin" ] || { echo "gpu-pack: $bin is missing: run \`make cuda build\`" >&2; exit 1; }
done

# The default pack folder is kept out of git, so it travels only when a call
# names it in `carry`.
if [ "$PACK" = .gpu ]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
fi
rm -rf "$PACK" && mkdir -p "$PACK"

for bin in "$WORKER" "$GATEWAY" "$LOADTEST"; do
  name=$(basename "$bin")
  strip -o "$PACK/$name" "$bin"
  stripped=$(stat -c %s "$PACK/$name")
  # NEEDED entries: what the dynamic loader must find there.
  needs=$(objdump -p "$PACK/$name" | awk '$1 == "NEEDED" { printf "%s%s", sep, $2; sep = " " }')
  glibc=$(objdump -T "$PACK/$name" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1 || true)
  gzip -9 "$PACK/$name"
  echo "gpu-pack: $name: $(mib "$stripped") stripped, $(mib "$(stat -c %s "$PACK/$name.gz")") gzipped;" \
    "needs ${glibc:-no versioned glibc symbol} and: ${needs:-nothing}"
done

packed=$(du -cb "$PACK" | tail -n 1 | cut -f 1)
# What travels beside the pack: tracked and untracked-not-ignored files.
tree=$(git ls-files -z --cached --others --exclude-standard |
  { xargs -0 stat -c %s -- 2>/dev/null || true; } | awk '{ s += $1 } END { print s + 0 }')
total=$((packed + tree))
limit=$((LIMIT_MIB * 1048576))
echo "gpu-pack: $PACK: $(mib "$packed") packed + $(mib "$tree") of repository files = $(mib "$total") of the $LIMIT_MIB MiB a call carries"
if [ "$total" -gt "$limit" ]; then
  rm -rf "$PACK"
  echo "gpu-pack: refused: $(mib "$total") is over the $LIMIT_MIB MiB a call carries; removed $PACK" >&2
  exit 1
fi
