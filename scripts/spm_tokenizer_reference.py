#!/usr/bin/env python3
"""A small sentencepiece-style ("llama") GGUF vocabulary and the ids
transformers' GGUF loader gives for tricky strings, for verity's tests.

    /path/to/python scripts/spm_tokenizer_reference.py [OUT_JSON]

Default output: crates/policy/tests/fixtures/spm_tokenizer.json. Needs
tokenizers, transformers (5.x) and gguf. The vocabulary is trained here
(sentencepiece-style BPE over this repository's README) and laid out as
llama.cpp lays out a Llama 2 vocabulary: <unk>, <s>, </s>, the 256 byte
tokens <0x00>..<0xFF>, then the pieces with score -rank and no merges, so a
loader must rank merges by score. The JSON holds the vocabulary, so the test
writes the same GGUF with candle; transformers reads the one written here.
"""

import json
import sys
import tempfile
from pathlib import Path

import gguf
from tokenizers import SentencePieceBPETokenizer
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "crates/policy/tests/fixtures/spm_tokenizer.json"

CASES = [
    "Hello world",
    "the model trains on verifiable rewards",
    "  two leading spaces and a trailing one ",
    "line one\nline two\n\ttabbed",
    "Crème brûlée, naïve café",
    "emoji 😀 and 中文",
    "<s> inside text </s>",
    "12345 + 678 = 13023",
    "",
    " ",
]


def main():
    corpus = (ROOT / "README.md").read_text().splitlines()
    trainer = SentencePieceBPETokenizer(add_prefix_space=True)
    trainer.train_from_iterator(corpus, vocab_size=600, min_frequency=2, show_progress=False)
    learned = sorted(trainer.get_vocab().items(), key=lambda kv: kv[1])
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0, 0.0, 0.0] + [0.0] * 256
    for rank, (piece, _) in enumerate(learned):
        if piece in tokens:
            continue
        tokens.append(piece)
        types.append(1)
        scores.append(-float(rank))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spm.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_add_bos_token(True)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file="spm.gguf")
        cases = [
            {
                "text": text,
                "ids": tokenizer.encode(text, add_special_tokens=False),
                "ids_with_bos": tokenizer.encode(text),
                "decoded": tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)),
            }
            for text in CASES
        ]
    result = {"tokens": tokens, "scores": scores, "token_types": types, "cases": cases}
    OUT.write_text(json.dumps(result, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(tokens)} tokens)")


if __name__ == "__main__":
    main()
