#!/usr/bin/env python3
"""Writes a Hugging Face tokenizer folder from a GGUF model's own vocabulary.

    target/bench-venv/bin/python scripts/gguf-tokenizer.py \
        models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf target/tokenizers/smollm2-135m

Benchmark clients that count tokens (aiperf's `--tokenizer`) load a tokenizer
by Hugging Face name or from a folder; this machine cannot reach the model
hub, so the folder is made offline from the GGUF file the worker serves: its
byte-level BPE vocabulary, merges, special tokens and chat template
(`tokenizer.ggml.*`), read with the `gguf` package and written with
`tokenizers`/`transformers` (all in target/bench-venv, `scripts/client-venv.sh
--bench`). No torch needed. Only the `gpt2` (byte-level BPE) tokenizer model
is supported, which is what SmolLM2 uses.
"""

import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

CONTROL = 3  # llama.cpp's token type of special (control) tokens


def field(reader, name, default=None):
    """A scalar, string or array metadata value of the GGUF file."""
    if name not in reader.fields:
        return default
    f = reader.fields[name]
    is_string = f.types[-1].name == "STRING"

    def value(i):
        part = f.parts[i]
        return bytes(part).decode("utf-8") if is_string else part.tolist()[0]

    if f.types[0].name == "ARRAY":
        return [value(i) for i in f.data]
    return value(f.data[0])


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} MODEL.gguf OUT_DIR")
    gguf_path, out = sys.argv[1], sys.argv[2]
    reader = GGUFReader(gguf_path)
    model = field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        sys.exit(f"{gguf_path}: tokenizer model {model!r}; only 'gpt2' (byte-level BPE) is supported")

    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    types = field(reader, "tokenizer.ggml.token_type", [])
    tok = Tokenizer(BPE({t: i for i, t in enumerate(tokens)}, merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if field(reader, "tokenizer.ggml.pre") == "smollm":
        # SmolLM's pre-tokenizer splits numbers into single digits first.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == CONTROL]
    )

    def special(key):
        i = field(reader, key)
        return tokens[i] if i is not None else None

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special("tokenizer.ggml.bos_token_id"),
        eos_token=special("tokenizer.ggml.eos_token_id"),
        unk_token=special("tokenizer.ggml.unknown_token_id"),
        pad_token=special("tokenizer.ggml.padding_token_id"),
    )
    template = field(reader, "tokenizer.chat_template")
    if template:
        fast.chat_template = template
    fast.save_pretrained(out)
    sample = "Hello world, 2025 tokens."
    print(f"tokenizer: {out} ({len(tokens)} tokens, from {gguf_path}); {sample!r} -> {fast.encode(sample)}")


if __name__ == "__main__":
    main()
