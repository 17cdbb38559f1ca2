"""Reference values for verity's sampler correction, from TRL's own code.

Writes crates/trainer/tests/fixtures/sampler_correction.json, which
crates/trainer/tests/sampler_correction_fixtures.rs reproduces. Nothing here
runs at test time.

    python scripts/sampler_correction_fixtures.py

Needs trl 1.16 and torch. On the batch of scripts/grpo_variant_fixtures.py,
on-policy (old log-probs = new, as in verity's first update), with log-probs
a sampler gave that differ from the trained model's:

* the weights: the lines of `GRPOTrainer._generate_and_score_completions`
  that turn `old_per_token_logps - sampling_per_token_logps` into
  `importance_sampling_ratio` and its logged min / mean / max, reproduced
  below as written there (they sit inside the rollout, which cannot run
  here);
* the loss and its gradient: TRL's own `GRPOTrainer._compute_loss` with
  `use_vllm` and `vllm_importance_sampling_correction` on and that ratio in
  its inputs (`trl_loss` of grpo_variant_fixtures.py).
"""

import json
import math
from pathlib import Path

import torch
import trl

import grpo_variant_fixtures as batch

OUT = Path(__file__).resolve().parent.parent / "crates/trainer/tests/fixtures/sampler_correction.json"

gen = torch.Generator().manual_seed(29)
# The sampler's log-probs: near the trained model's, a few tokens far off.
SAMPLED = batch.NEW - (torch.rand(batch.NEW.shape, generator=gen) - 0.5) * 0.6
SAMPLED[1, 2] = batch.NEW[1, 2] - 1.5  # token ratio e^1.5 = 4.5, above 3
SAMPLED[4, 1] = batch.NEW[4, 1] + 1.2  # token ratio 0.30, below 0.5
SAMPLED[2, 1] = float("nan")  # a token the sampler could not score
SAMPLED = SAMPLED * batch.MASK + (1 - batch.MASK) * 7.0  # padding holds junk


def trl_ratio(mode, old, sampled, mask, clip_min, clip_max):
    """grpo_trainer.py, _generate_and_score_completions, as written there."""
    per_token_logps_diff = (old - sampled) * mask
    per_token_logps_diff = torch.nan_to_num(per_token_logps_diff, nan=0.0)
    sequence_level_is = mode in ["sequence_mask", "sequence_truncate"]
    if sequence_level_is:
        per_sequence_logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True)
        logps_diff = per_sequence_logps_diff
    else:
        logps_diff = per_token_logps_diff
    ratio = torch.exp(logps_diff)
    if mode in ["sequence_truncate", "token_truncate"]:
        ratio = torch.clamp(ratio, min=clip_min, max=clip_max)
    else:
        min_val = clip_min if clip_min is not None else -math.inf
        max_val = clip_max if clip_max is not None else math.inf
        invalid = (ratio < min_val) | (ratio > max_val)
        ratio = ratio.masked_fill(invalid, value=0.0)
    # The logged spread.
    if sequence_level_is:
        flat = ratio.flatten()
    else:
        flat = ratio[mask.bool()]
    spread = {"min": flat.min().item(), "mean": flat.mean().item(), "max": flat.max().item()}
    return ratio, spread


CASES = [
    dict(mode="token_truncate", clip_min=None, clip_max=3.0, loss_type="dapo"),
    dict(mode="token_truncate", clip_min=0.5, clip_max=3.0, loss_type="grpo", beta=0.04),
    dict(mode="token_mask", clip_min=0.5, clip_max=3.0, loss_type="dapo"),
    dict(mode="sequence_mask", clip_min=None, clip_max=3.0, loss_type="dapo"),
    dict(mode="sequence_mask", clip_min=0.5, clip_max=3.0, loss_type="grpo", beta=0.04),
    dict(mode="sequence_truncate", clip_min=0.5, clip_max=2.0, loss_type="bnpo"),
]


def main():
    # On-policy: the old log-probs are the new ones.
    batch.OLD = batch.NEW.clone()
    total = int(batch.MASK.sum().item())
    rows = list(range(batch.B))
    cases = []
    for case in CASES:
        ratio, spread = trl_ratio(
            case["mode"], batch.OLD, SAMPLED, batch.MASK, case["clip_min"], case["clip_max"]
        )
        settings = {"loss_type": case["loss_type"], "beta": case.get("beta", 0.0)}
        loss, grad, metrics, _ = batch.trl_loss(settings, rows, 1, total, sampler_ratio=ratio)
        cases.append(
            {
                **case,
                "ratio": ratio.expand(batch.B, batch.T).tolist(),
                "spread": spread,
                "loss": loss,
                "grad_wrt_new_logps": grad.tolist(),
            }
        )
    fixture = {
        "trl_version": trl.__version__,
        "torch_version": torch.__version__,
        "source": "scripts/sampler_correction_fixtures.py",
        "inputs": {
            "max_completion_length": batch.MAX_COMPLETION_LENGTH,
            "completion_mask": batch.MASK.tolist(),
            "advantages": batch.ADVANTAGES.tolist(),
            "new_logps": batch.NEW.tolist(),
            "ref_logps": batch.REF.tolist(),
            # NaN as null in JSON.
            "sampled_logps": [[None if math.isnan(x) else x for x in row] for row in SAMPLED.tolist()],
        },
        "cases": cases,
    }
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
