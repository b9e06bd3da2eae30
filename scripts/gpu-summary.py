#!/usr/bin/env python3
"""The lines of scripts/gpu-run.sh's summary.txt, from the files its steps
wrote: one short line per figure, so the summary reads at a glance and the
full JSON stays in results.tgz.

    gpu-summary.py agree  AGREE.json
    gpu-summary.py bench  BENCH.json
    gpu-summary.py sweep  REPORT.json LABEL
    gpu-summary.py ttft   REPORT.json LABEL
    gpu-summary.py memory RESULTS_DIR KV_MIB MODEL...

Standard library only: it runs under whatever python3 the GPU machine has.
"""

import json
import os
import re
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def agree(path):
    r = load(path)
    part = r.get("first_divergence")
    part = "never" if part is None else "at step %d" % part
    return ["agree=%s, largest logit difference %.3g (tolerance %g), greedy ids part %s"
            % (str(r["agree"]).lower(), r["max_abs_logit_diff"], r["tolerance"], part)]


def bench(path):
    reports = load(path)
    if isinstance(reports, dict):
        reports = [reports]
    lines = []
    for r in reports:
        read = r.get("weight_read_gb_per_second")
        read = ", weights read at %.0f GB/s" % read if read is not None else ""
        lines.append("bench %s batch %d: decode %.1f tok/s%s; prefill %.0f tok/s, "
                     "first token %.1f ms after %d prompt tokens; load %.1f s"
                     % (r["model"], r["batch"], r["decode_tokens_per_second"], read,
                        r["prefill_tokens_per_second"], r["time_to_first_token_ms"],
                        r["prompt_tokens"], r["load_seconds"]))
    return lines


def points(path):
    for p in load(path)["points"]:
        yield p["load"], p["summary"]


def sweep(path, label):
    lines = []
    for load_, s in points(path):
        if not s["ok"]:
            lines.append("%s c=%s: no request completed in the window (%d sent, errors %s)"
                         % (label, load_.get("concurrency", "?"), s["requests"], s["errors"]))
            continue
        per_stream = 1000.0 / s["itl"]["p50"] if s["itl"]["p50"] > 0 else 0.0
        errors = ", errors %s" % s["errors"] if s["errors"] else ""
        lines.append("%s c=%s: %.1f tok/s, ITL p50 %.2f ms (%.0f tok/s a stream), "
                     "TTFT p50 %.1f ms, %d/%d ok%s"
                     % (label, load_.get("concurrency", "?"), s["output_tokens_per_s"],
                        s["itl"]["p50"], per_stream, s["ttft"]["p50"], s["ok"],
                        s["requests"], errors))
    return lines


def ttft(path, label):
    lines = []
    for _, s in points(path):
        prompt = s["prompt_tokens"] / s["requests"] if s["requests"] else 0
        lines.append("%s TTFT at %.0f prompt tokens: p50 %.1f ms, max %.1f ms (%d/%d ok)"
                     % (label, prompt, s["ttft"]["p50"], s["ttft"]["max"], s["ok"],
                        s["requests"]))
    return lines


def memory(results, kv_mib, *models):
    lines = ["memory per model, KV cache pinned at %s MiB (gauge: the worker's "
             "mig_worker_memory_used_bytes, NVML's on a GPU; process: nvidia-smi's "
             "compute apps):" % kv_mib]
    for m in models:
        path = os.path.join(results, m, "memory.txt")
        if not os.path.exists(path):
            lines.append("%s: not measured" % m)
            continue
        weights = None
        try:
            b = load(os.path.join(results, m, "bench.json"))
            weights = (b[0] if isinstance(b, list) else b)["weight_bytes"]
        except (OSError, ValueError, KeyError, IndexError):
            pass
        parts = []
        for section in open(path).read().split("== ")[1:]:
            when, _, body = section.partition("\n")
            gauge = re.search(r"^mig_worker_memory_used_bytes\S*\s+([0-9.e+]+)", body, re.M)
            procs = re.findall(r"^\d+,[^,]*,\s*(\d+) MiB", body, re.M)
            parts.append("%s: gauge %s, process %s" % (
                when,
                "%.2f GiB" % (float(gauge.group(1)) / 2**30) if gauge else "-",
                "%.2f GiB" % (sum(map(int, procs)) / 1024.0) if procs else "-"))
        lines.append("%s (weights %s): %s" % (
            m, "%.2f GiB" % (weights / 2**30) if weights else "?", "; ".join(parts)))
    return lines


def main(argv):
    commands = {"agree": agree, "bench": bench, "sweep": sweep, "ttft": ttft,
                "memory": memory}
    if len(argv) < 2 or argv[0] not in commands:
        sys.exit(__doc__)
    try:
        lines = commands[argv[0]](*argv[1:])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        lines = ["(no figures: %s: %s)" % (type(e).__name__, e)]
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
