#!/usr/bin/env python3
"""Greedy tokens and their log-probabilities from transformers, to compare
with `verity sample --temperature 0 --ignore-eos --json` on the same model.

    python scripts/hf_greedy.py MODEL_DIR PROMPT [--raw] [--new-tokens N]
    python scripts/hf_greedy.py models --gguf SmolLM2-135M-Instruct.Q4_1.gguf PROMPT

MODEL_DIR is a Hugging Face folder (a verity checkpoint, for example), or
the folder of a GGUF file named by --gguf. Without --raw the prompt goes
through the tokenizer's chat template as the user's message with the
generation prompt, as verity formats it. Prints one JSON object like
verity's: prompt_ids, token_ids, logprobs (float32 model, EOS ignored).
"""

import argparse
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("prompt")
    parser.add_argument("--gguf", help="a GGUF file inside MODEL_DIR")
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()

    extra = {"gguf_file": args.gguf} if args.gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, **extra)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, **extra).eval()
    if args.raw:
        text = args.prompt
    else:
        messages = [{"role": "user", "content": args.prompt}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer.encode(text, add_special_tokens=False)

    out = model(torch.tensor([prompt_ids]), use_cache=True)
    token_ids, logprobs = [], []
    for _ in range(args.new_tokens):
        logits = out.logits[0, -1].double()
        token = int(torch.argmax(logits))
        token_ids.append(token)
        logprobs.append(float(torch.log_softmax(logits, -1)[token]))
        out = model(torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    print(
        json.dumps(
            {
                "tokenizer": type(tokenizer).__name__,
                "prompt_ids": prompt_ids,
                "token_ids": token_ids,
                "logprobs": logprobs,
                "completion": tokenizer.decode(token_ids),
            }
        )
    )


if __name__ == "__main__":
    main()
