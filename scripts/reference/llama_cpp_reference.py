#!/usr/bin/env python3
"""Writes worker/tests/fixtures/llama_cpp_reference.json: what llama.cpp
(through llama-cpp-python) makes of the shipped SmolLM2 Q4_1 file.

The worker's tests compare against these figures; they were obtained
independently of the worker's code (llama.cpp's own tokenizer, the chat
template rendered by Python's jinja2, llama.cpp's forward pass).

Run it in a throwaway virtual environment, not as part of the build:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install llama-cpp-python==0.3.36 jinja2
    /tmp/ref/bin/python scripts/reference/llama_cpp_reference.py models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf

llama-cpp-python builds llama.cpp from source (about 15 minutes on 2 cores).
"""

import json
import pathlib
import sys

import jinja2
import llama_cpp
import numpy as np

TRICKY = [
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "1234567890",
    "3.14159 and 42,000",
    "naïve café, déjà vu — Zürich",
    "日本語のテキスト",
    "emoji 🚀🔥 and 👩‍💻",
    "def f(x):\n    return x ** 2  # square\n",
    "tabs\tand\nnewlines\n\n",
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|> is not special here",
    "CamelCaseIdentifiers_and_snake_case",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three prime numbers."},
    ],
    [{"role": "user", "content": "Write a haiku about GPUs."}],
    [{"role": "user", "content": "Translate to French: good morning"}],
]

STEPS = 24
TOP = 8
# Alternatives per greedy step whose log-probabilities are recorded.
LOGPROBS_TOP = 5


def main() -> int:
    path = sys.argv[1]
    out = pathlib.Path(__file__).resolve().parents[2] / "worker/tests/fixtures/llama_cpp_reference.json"
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    template_src = llm.metadata["tokenizer.chat_template"]
    template = jinja2.Environment().from_string(template_src)

    tokenizer = [
        {"text": t, "ids": llm.tokenize(t.encode(), add_bos=False, special=False)} for t in TRICKY
    ]

    generations = []
    for messages in CHATS:
        rendered = template.render(messages=messages, add_generation_prompt=True)
        prompt = llm.tokenize(rendered.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(prompt)
        ids, margins, first_top, top_logprobs = [], [], None, []
        for step in range(STEPS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            order = np.argsort(-logits)
            if step == 0:
                first_top = [{"id": int(i), "logit": float(logits[i])} for i in order[:TOP]]
            # Log-softmax over the whole vocabulary, natural log: what the
            # gateway's `logprobs` reports (temperature 1, no penalty).
            peak = logits[order[0]]
            log_z = peak + np.log(np.sum(np.exp(logits - peak)))
            top_logprobs.append(
                [{"id": int(i), "logprob": float(logits[i] - log_z)} for i in order[:LOGPROBS_TOP]]
            )
            best = int(order[0])
            ids.append(best)
            margins.append(float(logits[order[0]] - logits[order[1]]))
            if best in (0, 2):
                break
            llm.eval([best])
        generations.append(
            {
                "messages": messages,
                "rendered": rendered,
                "prompt_ids": prompt,
                "greedy_ids": ids,
                "top2_margins": margins,
                "first_step_top": first_top,
                "top_logprobs": top_logprobs,
                "greedy_text": llm.detokenize([i for i in ids if i not in (0, 2)]).decode("utf-8", "replace"),
            }
        )

    doc = {
        "source": f"llama-cpp-python {llama_cpp.__version__}, {pathlib.Path(path).name}, n_threads=2, greedy",
        "tokenizer": tokenizer,
        "generations": generations,
    }
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
