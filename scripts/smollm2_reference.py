#!/usr/bin/env python3
"""Reference numbers for verity's SmolLM2 GGUF parity tests, from transformers.

    scripts/fetch-smollm2.sh                       # the model, into models/
    /path/to/python scripts/smollm2_reference.py [GGUF] [OUT_JSON]

Defaults: models/SmolLM2-135M-Instruct.Q4_1.gguf and
crates/policy/tests/fixtures/smollm2.json. Needs torch, transformers (5.x) and
gguf. transformers dequantizes the file itself (its own GGUF reader, float32)
and builds the tokenizer from the metadata, so nothing here shares code with
verity.

Written:
- `tokenizer`: ids of tricky strings without special tokens added. llama.cpp
  splits SmolLM2's text with `\\p{N}` before GPT-2's pattern (pre-tokenizer
  "smollm", as the original tokenizer.json does with a Digits step);
  transformers' GGUF loader keeps only GPT-2's pattern. The two disagree only
  when a space precedes a numeral that is not an ASCII digit ("x ½"). Each
  string has `ids` (transformers) and, where the digit-split pipeline (the
  `tokenizers` library with the original pre-tokenizer) differs,
  `ids_digits_split`.
- `generations`: raw prompts (encoded without BOS) and chat prompts (the
  file's template, the user's message, the generation prompt, no system
  message so the template's default applies): the prompt ids, 32 greedy
  ids with EOS ignored, the log-probability of each under the model, and
  the smallest top-1/top-2 logit gap on the way (how stable argmax is).
"""

import json
import math
import sys
import time
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
GGUF = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "crates/policy/tests/fixtures/smollm2.json"
NEW_TOKENS = 32

TRICKY = [
    "Hello world",
    "  two leading spaces, trailing space ",
    "Crème brûlée, naïve café, Ångström, São Paulo",
    "def add(a, b):\n\treturn a + b  # sum\n",
    "if (x != 0 && y <= 10) { return x->next; }",
    "What is 12345 + 678? Answer: 13023.",
    "Full-width digits: １２３ + ４５６ = ５７９",
    "text <|im_start|>user\nhi<|im_end|> more <|endoftext|>",
    "<think>step</think><answer>42</answer>",
    "line one\nline two\r\n\n\ttabbed\t\tend",
    "emoji 😀🚀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, 中文, русский, العربية",
    "x ½ cup, 2² and ³ cubed",
]

RAW_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "What is 17 + 25? The answer is",
]

CHAT_PROMPTS = [
    "What is 12 + 30?",
    "Write one sentence about the sea.",
]


def digits_split(tokenizer):
    """The same vocabulary with llama.cpp's (and the original's) digit split."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    return backend


@torch.no_grad()
def greedy(model, prompt_ids):
    """NEW_TOKENS argmax ids past EOS, each with its log-probability."""
    ids = torch.tensor([prompt_ids])
    out = model(ids, use_cache=True)
    new_ids, logprobs, gap = [], [], math.inf
    for _ in range(NEW_TOKENS):
        logits = out.logits[0, -1].double()
        top = torch.topk(logits, 2).values
        gap = min(gap, float(top[0] - top[1]))
        token = int(torch.argmax(logits))
        new_ids.append(token)
        logprobs.append(float(torch.log_softmax(logits, -1)[token]))
        out = model(torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    return new_ids, logprobs, gap


def main():
    torch.manual_seed(0)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, torch_dtype=torch.float32)
    model.eval()
    load_seconds = time.time() - start
    split = digits_split(tokenizer)

    tokenizer_cases = []
    for text in TRICKY:
        ids = tokenizer.encode(text, add_special_tokens=False)
        case = {"text": text, "ids": ids}
        other = split.encode(text, add_special_tokens=False).ids
        if other != ids:
            case["ids_digits_split"] = other
        assert tokenizer.decode(ids) == text, text
        tokenizer_cases.append(case)

    generations = []
    for kind, prompts in (("raw", RAW_PROMPTS), ("chat", CHAT_PROMPTS)):
        for prompt in prompts:
            if kind == "raw":
                text = prompt
            else:
                messages = [{"role": "user", "content": prompt}]
                text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            prompt_ids = tokenizer.encode(text, add_special_tokens=False)
            new_ids, logprobs, gap = greedy(model, prompt_ids)
            generations.append(
                {
                    "kind": kind,
                    "prompt": prompt,
                    "text": text,
                    "prompt_ids": prompt_ids,
                    "greedy_ids": new_ids,
                    "greedy_logprobs": logprobs,
                    "min_top2_gap": gap,
                    "decoded": tokenizer.decode(new_ids),
                }
            )

    special = {
        name: [getattr(tokenizer, name), tokenizer.convert_tokens_to_ids(getattr(tokenizer, name))]
        for name in ("bos_token", "eos_token", "pad_token", "unk_token")
        if getattr(tokenizer, name) is not None
    }
    result = {
        "gguf": GGUF.name,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "transformers_load_seconds": round(load_seconds, 2),
        "config": {
            key: getattr(model.config, key)
            for key in (
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "max_position_embeddings",
                "rms_norm_eps",
                "tie_word_embeddings",
            )
        }
        | {"rope_theta": model.config.rope_parameters["rope_theta"]},
        "special_tokens": special,
        "tokenizer": tokenizer_cases,
        "generations": generations,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
