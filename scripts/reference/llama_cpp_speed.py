#!/usr/bin/env python3
"""llama.cpp's single-stream prefill and decode speed on the same GGUF file,
for comparison with `mig-worker bench` (scripts/bench-worker.sh) in the same
session. Run in the throwaway venv described in llama_cpp_reference.py:

    /tmp/ref/bin/python scripts/reference/llama_cpp_speed.py models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import statistics
import sys
import time

import llama_cpp


def main() -> int:
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    llm = llama_cpp.Llama(model_path=path, n_ctx=2304, n_threads=threads, n_batch=2304, verbose=False)
    seed = llm.tokenize(b"The quick brown fox jumps over the lazy dog, and 12 more sentences follow about slices of a GPU. ", add_bos=False)
    for prompt_len in (128, 512, 2000):
        prompt = (seed * (prompt_len // len(seed) + 1))[:prompt_len]
        prefill, decode = [], []
        for run in range(4):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(prompt)
            t1 = time.perf_counter()
            for _ in range(128):
                llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
            t2 = time.perf_counter()
            if run > 0:
                prefill.append(prompt_len / (t1 - t0))
                decode.append(128 / (t2 - t1))
        print(
            f"llama.cpp {llama_cpp.__version__} threads={threads} prompt={prompt_len} decode=128: "
            f"prefill {statistics.median(prefill):.0f} tok/s, decode {statistics.median(decode):.1f} tok/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
