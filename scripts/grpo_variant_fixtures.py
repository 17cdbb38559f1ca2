"""Reference values for verity's GRPO variants, from TRL's and verl's own code.

Writes crates/trainer/tests/fixtures/grpo_variants.json, which
crates/trainer/tests/grpo_variant_fixtures.rs reproduces. Nothing here runs at
test time.

    python scripts/grpo_variant_fixtures.py

Needs trl 1.16 and torch. verl is optional: where it imports, its functions
compute a second reference and the script asserts that the two agree (or
records where they differ). verl 0.9 installs without its dependencies into a
venv beside the one holding trl:

    python -m venv /tmp/verlenv
    echo "$(python -c 'import site; print(site.getsitepackages()[0])')" \
        > /tmp/verlenv/lib/python3.11/site-packages/base.pth
    /tmp/verlenv/bin/pip install --no-deps verl omegaconf antlr4-python3-runtime==4.9.3 \
        ray tensordict msgpack protobuf pyvers codetiming
    /tmp/verlenv/bin/python scripts/grpo_variant_fixtures.py

What is computed (float64 throughout, gradients by autograd):

* losses: TRL's own `GRPOTrainer._compute_loss`, run on a trainer object
  built without `__init__` whose forward returns the fixture's log-probs and
  entropies (the per-token log-probs are the autograd leaf, so the gradient is
  d loss / d new log-probs). One whole-batch pass (gradient accumulation 1)
  and the batch split into two micro-batches (accumulation 2).
* verl cross-checks of the same losses: `compute_policy_loss_gspo`,
  `compute_policy_loss_cispo`, `compute_policy_loss_vanilla` (dual-clip as
  TRL's `delta`), `compute_policy_loss_sapo` and the KL loss of
  `verl/workers/utils/losses.py::ppo_loss` (`kl_penalty` + `agg_loss`).
* advantages: verl's `compute_rloo_outcome_advantage`,
  `compute_reinforce_plus_plus_outcome_advantage`,
  `compute_reinforce_plus_plus_baseline_outcome_advantage` and
  `compute_grpo_outcome_advantage`; TRL's RLOO and GRPO advantages are lines
  inside `_generate_and_score_completions` (rloo_trainer.py, grpo_trainer.py),
  reproduced below as written there.
"""

import json
import math
import sys
import types
from collections import defaultdict
from pathlib import Path

import torch
import trl
from trl.trainer.grpo_trainer import GRPOTrainer

try:
    import verl.trainer.ppo.core_algos as verl_algos
    from verl.workers.config import ActorConfig

    VERL = True
except Exception as e:  # noqa: BLE001 - any import failure means "no verl"
    print(f"verl not available ({e}); writing TRL values only", file=sys.stderr)
    VERL = False

torch.set_default_dtype(torch.float64)
OUT = Path(__file__).resolve().parent.parent / "crates/trainer/tests/fixtures/grpo_variants.json"

# ---------------------------------------------------------------------------
# The batch: 2 prompts x 3 completions, padded to 6 tokens.

LENGTHS = [4, 6, 2, 5, 3, 6]
B, T = len(LENGTHS), 6
MAX_COMPLETION_LENGTH = 8
MICROBATCHES = [[0, 1, 2], [3, 4, 5]]
MASK = torch.tensor([[1.0 if t < n else 0.0 for t in range(T)] for n in LENGTHS])

gen = torch.Generator().manual_seed(13)


def uniform(lo, hi, shape):
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


NEW = uniform(-3.0, -0.05, (B, T))
# Per-row drift of the old policy: rows 0, 3, 4 barely moved (their sequence
# ratios stay inside GSPO's 3e-4 / 4e-4 range), the others moved a lot, and a
# few tokens moved far (ratios beyond 1.5 and beyond 5) for delta and CISPO.
ROW_SHIFT = torch.tensor([1e-4, 0.25, -0.3, -5e-4, 5e-5, 0.12])
TOKEN_NOISE = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]).unsqueeze(1) * uniform(-0.5, 0.5, (B, T))
TOKEN_NOISE[0] *= 1e-4
TOKEN_NOISE[3] *= 1e-4
TOKEN_NOISE[4] *= 1e-4
OLD = NEW - ROW_SHIFT.unsqueeze(1) - TOKEN_NOISE
OLD[1, 2] = NEW[1, 2] - 1.9  # ratio e^1.9 = 6.7 (above CISPO's cap 5), A < 0
OLD[5, 2] = NEW[5, 2] - 1.8  # ratio 6.0, A > 0
OLD[1, 1] = NEW[1, 1] - 0.7  # ratio 2.0 (above delta 1.5), A < 0
OLD[2, 0] = NEW[2, 0] - 0.8  # ratio 2.2, A > 0
OLD[5, 4] = NEW[5, 4] + 0.5  # ratio 0.61, A < 0
REF = NEW + uniform(-0.4, 0.4, (B, T))
# Entropies exactly representable in float32: TRL takes the quantile in
# float32 (`.float()`), and a float64 entropy that rounds up would then fall
# below its own quantile.
ENTROPY = uniform(0.05, 2.5, (B, T)).float().double()
for tensor in (NEW, OLD, REF):
    tensor.mul_(MASK)  # padding holds 0.0 in the log-probs
# Padding holds large entropies: they must never be counted.
ENTROPY = torch.where(MASK.bool(), ENTROPY, torch.full_like(ENTROPY, 50.0))

REWARDS = [1.0, 0.0, 0.3, 0.2, 0.9, 0.6]
GROUP = 3


def trl_grpo_advantages(rewards, group):
    """grpo_trainer.py, _generate_and_score_completions, scale_rewards="group"."""
    r = torch.tensor(rewards)
    grouped = r.view(-1, group)
    mean = grouped.mean(dim=1).repeat_interleave(group)
    std = grouped.std(dim=1).repeat_interleave(group)
    return (r - mean) / (std + 1e-4)


ADVANTAGES = trl_grpo_advantages(REWARDS, GROUP)

# ---------------------------------------------------------------------------
# TRL's _compute_loss on a trainer built without __init__.


class Accelerator:
    num_processes = 1

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x

    def pad_across_processes(self, x, dim=0, pad_index=0):
        return x


def trl_loss(settings, rows, accumulation, num_items, sampler_ratio=None):
    """TRL's loss of `rows` with gradient accumulation `accumulation`;
    returns (loss, d loss / d new log-probs of those rows, metrics).
    `sampler_ratio` ([B, T] or [B, 1]), when given, is TRL's
    `importance_sampling_ratio` for vLLM rollouts."""
    trainer = GRPOTrainer.__new__(GRPOTrainer)
    args = types.SimpleNamespace(
        use_bias_correction_kl=settings.get("use_bias_correction_kl", True),
        delta=settings.get("delta"),
        sapo_temperature_pos=settings.get("sapo_temperature_pos", 1.0),
        sapo_temperature_neg=settings.get("sapo_temperature_neg", 1.05),
        steps_per_generation=accumulation,
    )
    new = NEW[rows].clone().requires_grad_(True)
    entropy = ENTROPY[rows].clone()

    def forward(*_args, **_kwargs):
        return new, entropy, None

    attrs = dict(
        args=args,
        _get_per_token_logps_and_entropies=forward,
        aux_loss_enabled=False,
        top_entropy_quantile=settings.get("top_entropy_quantile", 1.0),
        off_policy_mask_threshold=settings.get("off_policy_mask_threshold"),
        importance_sampling_level=settings.get("importance_sampling_level", "token"),
        beta=settings.get("beta", 0.0),
        loss_type=settings["loss_type"],
        epsilon_low=settings.get("epsilon_low", 0.2),
        epsilon_high=settings.get("epsilon_high", 0.2),
        use_vllm=sampler_ratio is not None,
        vllm_importance_sampling_correction=sampler_ratio is not None,
        current_gradient_accumulation_steps=accumulation,
        max_completion_length=MAX_COMPLETION_LENGTH,
        accelerator=Accelerator(),
        _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    for key, value in attrs.items():
        object.__setattr__(trainer, key, value)
    object.__setattr__(trainer, "model", types.SimpleNamespace(training=True))
    inputs = {
        "prompt_ids": torch.zeros((len(rows), 1), dtype=torch.long),
        "prompt_mask": torch.ones((len(rows), 1), dtype=torch.long),
        "completion_ids": torch.zeros((len(rows), T), dtype=torch.long),
        "completion_mask": MASK[rows].clone(),
        "advantages": ADVANTAGES[rows].clone(),
        "old_per_token_logps": OLD[rows].clone(),
        "ref_per_token_logps": REF[rows].clone(),
        "num_items_in_batch": torch.tensor(float(num_items)),
    }
    if sampler_ratio is not None:
        inputs["importance_sampling_ratio"] = sampler_ratio[rows].clone()
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    loss.backward()
    metrics = {k: v[0] for k, v in trainer._metrics["train"].items()}
    entropy_mask = None
    if settings.get("top_entropy_quantile", 1.0) < 1.0:
        entropy_mask = GRPOTrainer.get_high_entropy_mask(
            trainer, entropy, MASK[rows], 1 - settings["top_entropy_quantile"]
        )
    return loss.item(), new.grad.clone(), metrics, entropy_mask


# name -> TRL settings. Every config runs whole-batch and as 2 micro-batches.
CONFIGS = {
    "gspo_grpo": dict(importance_sampling_level="sequence", loss_type="grpo", epsilon_low=3e-4, epsilon_high=4e-4),
    "gspo_dapo": dict(importance_sampling_level="sequence", loss_type="dapo", epsilon_low=0.05, epsilon_high=0.1),
    "gspo_grpo_kl": dict(
        importance_sampling_level="sequence", loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28, beta=0.04
    ),
    "cispo_5": dict(loss_type="cispo", epsilon_high=5.0),
    "cispo_1.2_kl": dict(loss_type="cispo", epsilon_high=1.2, beta=0.04, use_bias_correction_kl=False),
    "cispo_sequence": dict(loss_type="cispo", epsilon_high=1.2, importance_sampling_level="sequence"),
    "delta_dapo": dict(loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28, delta=1.5),
    "delta_grpo_kl": dict(loss_type="grpo", epsilon_low=0.2, epsilon_high=0.2, delta=1.5, beta=0.04),
    "entropy_0.2_dapo": dict(loss_type="dapo", top_entropy_quantile=0.2),
    "entropy_0.5_grpo_kl": dict(loss_type="grpo", top_entropy_quantile=0.5, beta=0.04),
    "entropy_0.3_bnpo": dict(loss_type="bnpo", top_entropy_quantile=0.3),
    "sapo": dict(loss_type="sapo"),
    "sapo_kl": dict(loss_type="sapo", sapo_temperature_pos=0.5, sapo_temperature_neg=2.0, beta=0.04),
    "off_policy_1e-4": dict(loss_type="dapo", off_policy_mask_threshold=1e-4),
    "off_policy_1e-4_dr_grpo": dict(loss_type="dr_grpo", off_policy_mask_threshold=1e-4, beta=0.04),
    "k3_dapo": dict(loss_type="dapo", beta=0.1, use_bias_correction_kl=False),
    "k3_dapo_bias": dict(loss_type="dapo", beta=0.1, use_bias_correction_kl=True),
}


def run_config(name, settings):
    total = int(MASK.sum().item())
    all_rows = list(range(B))
    loss, grad, metrics, entropy_mask = trl_loss(settings, all_rows, 1, total)
    micro_losses = []
    micro_grad = torch.zeros(B, T)
    micro_metrics = []
    for rows in MICROBATCHES:
        l, g, m, _ = trl_loss(settings, rows, len(MICROBATCHES), total)
        micro_losses.append(l)
        micro_grad[rows] = g
        micro_metrics.append(m)
    out = {
        "name": name,
        "settings": settings,
        "loss": loss,
        "grad_wrt_new_logps": grad.tolist(),
        "metrics": metrics,
        "microbatch_losses": micro_losses,
        "microbatch_grad_wrt_new_logps": micro_grad.tolist(),
        "microbatch_metrics": micro_metrics,
    }
    if entropy_mask is not None:
        out["entropy_mask"] = entropy_mask.double().tolist()
    return out


# ---------------------------------------------------------------------------
# verl's losses on the same inputs.


def verl_config(**kw):
    base = dict(strategy="fsdp", rollout_n=GROUP, ppo_mini_batch_size=1, ppo_micro_batch_size_per_gpu=1)
    base.update(kw)
    return ActorConfig(**base)


def verl_value(fn, config, agg, advantages=None):
    new = NEW.clone().requires_grad_(True)
    adv = (ADVANTAGES if advantages is None else advantages).unsqueeze(1).expand(B, T)
    loss, _ = fn(OLD, new, adv, MASK, loss_agg_mode=agg, config=config)
    loss.backward()
    return loss.item(), new.grad.clone()


def verl_kl_loss(kind, beta, agg="token-mean"):
    """ppo_loss in verl/workers/utils/losses.py: policy loss (vanilla, dual
    clip out of reach) + kl_loss_coef * agg_loss(kl_penalty(...))."""
    new = NEW.clone().requires_grad_(True)
    adv = ADVANTAGES.unsqueeze(1).expand(B, T)
    config = verl_config(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=1e9)
    pg, _ = verl_algos.compute_policy_loss_vanilla(OLD, new, adv, MASK, loss_agg_mode=agg, config=config)
    kld = verl_algos.kl_penalty(logprob=new, ref_logprob=REF, kl_penalty=kind)
    kl = verl_algos.agg_loss(loss_mat=kld, loss_mask=MASK, loss_agg_mode=agg)
    loss = pg + beta * kl
    loss.backward()
    per_token = (kld * MASK).detach()
    return loss.item(), new.grad.clone(), per_token


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(b))


def verl_checks(trl_cases):
    """verl's value of each loss TRL also has, asserted equal to TRL's."""
    by_name = {c["name"]: c for c in trl_cases}
    checks = []

    def check(config_name, what, value, grad, source):
        trl_case = by_name[config_name]
        assert close(value, trl_case["loss"]), (config_name, value, trl_case["loss"])
        diff = (grad - torch.tensor(trl_case["grad_wrt_new_logps"])).abs().max().item()
        assert diff < 1e-9, (config_name, diff)
        checks.append(
            {
                "trl_config": config_name,
                "verl": what,
                "source": source,
                "loss": value,
                "grad_wrt_new_logps": grad.tolist(),
            }
        )

    v, g = verl_value(
        verl_algos.compute_policy_loss_gspo,
        verl_config(clip_ratio_low=3e-4, clip_ratio_high=4e-4),
        "seq-mean-token-mean",
    )
    check("gspo_grpo", "gspo, loss_agg_mode seq-mean-token-mean", v, g, "core_algos.compute_policy_loss_gspo")
    v, g = verl_value(
        verl_algos.compute_policy_loss_gspo, verl_config(clip_ratio_low=0.05, clip_ratio_high=0.1), "token-mean"
    )
    check("gspo_dapo", "gspo, loss_agg_mode token-mean", v, g, "core_algos.compute_policy_loss_gspo")
    # verl clips the CISPO weight to [1 - low, 1 + high]; TRL caps it at
    # epsilon_high. low = 1 (a floor of 0) and high = 4 give TRL's cap of 5.
    v, g = verl_value(
        verl_algos.compute_policy_loss_cispo, verl_config(clip_ratio_low=1.0, clip_ratio_high=4.0), "token-mean"
    )
    check(
        "cispo_5",
        "cispo, clip_ratio_low 1.0, clip_ratio_high 4.0, token-mean",
        v,
        g,
        "core_algos.compute_policy_loss_cispo",
    )
    v, g = verl_value(
        verl_algos.compute_policy_loss_vanilla,
        verl_config(clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=1.5),
        "token-mean",
    )
    check("delta_dapo", "vanilla (dual-clip), clip_ratio_c 1.5, token-mean", v, g, "core_algos.compute_policy_loss_vanilla")
    v, g = verl_value(verl_algos.compute_policy_loss_sapo, verl_config(tau_pos=1.0, tau_neg=1.05), "seq-mean-token-mean")
    check("sapo", "sapo, tau_pos 1.0, tau_neg 1.05", v, g, "core_algos.compute_policy_loss_sapo")
    v, g, _ = verl_kl_loss("low_var_kl", 0.1)
    check("k3_dapo", "kl_loss_type low_var_kl (k3), kl_loss_coef 0.1", v, g, "workers/utils/losses.py ppo_loss")
    return checks


def verl_kl_cases():
    """k1, k2 and k3 as verl's KL loss computes them (beta 0.1, token-mean):
    TRL has only k3, so these are the reference for k1 and k2."""
    cases = []
    for kind, alias in [("k1", "kl"), ("k2", "mse"), ("k3", "low_var_kl")]:
        loss, grad, per_token = verl_kl_loss(alias, 0.1)
        cases.append(
            {
                "kl_estimator": kind,
                "verl_kl_loss_type": alias,
                "beta": 0.1,
                "loss": loss,
                "grad_wrt_new_logps": grad.tolist(),
                "per_token_kl": per_token.tolist(),
            }
        )
    return cases


# ---------------------------------------------------------------------------
# Advantages.

ADVANTAGE_CASES = [
    {
        "name": "two groups of 4, varied lengths",
        "rewards": [1.0, 0.0, 0.0, 1.0, 0.5, 0.25, 0.0, 1.0],
        "group_size": 4,
        "lengths": [3, 7, 5, 2, 6, 6, 1, 4],
    },
    {
        "name": "three groups of 3, one flat, one row without tokens",
        "rewards": [1.0, 1.0, 1.0, 0.0, 1.0, 0.2, 0.7, 0.7, 0.1],
        "group_size": 3,
        "lengths": [4, 4, 2, 5, 0, 3, 6, 2, 2],
    },
    {
        "name": "one group of 6 with shaped rewards",
        "rewards": [0.9, -0.1, 0.45, 1.1, 0.0, 0.3],
        "group_size": 6,
        "lengths": [10, 3, 8, 2, 9, 5],
    },
]


def token_rewards(rewards, lengths):
    width = max(lengths)
    scores = torch.zeros(len(rewards), width)
    mask = torch.zeros(len(rewards), width)
    for i, (r, n) in enumerate(zip(rewards, lengths)):
        mask[i, :n] = 1.0
        # A completion whose tokens do not count (a masked truncated one)
        # still has its reward: on a masked position.
        scores[i, max(n - 1, 0)] = r
    return scores, mask


def per_row(adv, mask):
    """One value per completion (verl's outcome advantages are constant over a
    completion's tokens); 0 for a completion without tokens."""
    rows = []
    for i in range(adv.shape[0]):
        n = int(mask[i].sum().item())
        values = adv[i, :n]
        if n == 0:
            rows.append(0.0)
            continue
        assert (values - values[0]).abs().max().item() < 1e-12
        rows.append(values[0].item())
    return rows


def trl_rloo_advantages(rewards, group):
    """rloo_trainer.py, _generate_and_score_completions (normalize_advantages=False, the default)."""
    r = torch.tensor(rewards)
    grouped = r.view(-1, group)
    counts = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
    grouped_sum = torch.nansum(grouped, dim=1, keepdim=True)
    baselines = ((grouped_sum - grouped) / (counts - 1)).view(-1)
    return (r - baselines).tolist()


def advantage_case(case):
    rewards, group, lengths = case["rewards"], case["group_size"], case["lengths"]
    out = dict(case)
    out["trl_grpo"] = trl_grpo_advantages(rewards, group).tolist()
    out["trl_rloo"] = trl_rloo_advantages(rewards, group)
    if VERL:
        scores, mask = token_rewards(rewards, lengths)
        index = [i // group for i in range(len(rewards))]
        algo = types.SimpleNamespace(gamma=1.0)
        rloo, _ = verl_algos.compute_rloo_outcome_advantage(scores, mask, index)
        out["verl_rloo"] = per_row(rloo, mask)
        # verl multiplies by the response mask: a row without tokens gets 0.
        for a, b, n in zip(out["verl_rloo"], out["trl_rloo"], lengths):
            assert close(a, b, 1e-12) or n == 0, (a, b)
        rpp, _ = verl_algos.compute_reinforce_plus_plus_outcome_advantage(scores, mask, config=algo)
        out["verl_reinforce_plus_plus"] = per_row(rpp, mask)
        rppb, _ = verl_algos.compute_reinforce_plus_plus_baseline_outcome_advantage(scores, mask, index)
        out["verl_reinforce_plus_plus_baseline"] = per_row(rppb, mask)
        grpo, _ = verl_algos.compute_grpo_outcome_advantage(scores, mask, index)
        out["verl_grpo"] = per_row(grpo, mask)
    return out


def main():
    cases = [run_config(name, settings) for name, settings in CONFIGS.items()]
    fixture = {
        "trl_version": trl.__version__,
        "torch_version": torch.__version__,
        "verl_version": None,
        "source": "scripts/grpo_variant_fixtures.py",
        "inputs": {
            "lengths": LENGTHS,
            "max_completion_length": MAX_COMPLETION_LENGTH,
            "microbatches": MICROBATCHES,
            "completion_mask": MASK.tolist(),
            "rewards": REWARDS,
            "group_size": GROUP,
            "advantages": ADVANTAGES.tolist(),
            "new_logps": NEW.tolist(),
            "old_logps": OLD.tolist(),
            "ref_logps": REF.tolist(),
            "entropies": ENTROPY.tolist(),
        },
        "losses": cases,
        "advantages": [advantage_case(c) for c in ADVANTAGE_CASES],
    }
    if VERL:
        import verl

        fixture["verl_version"] = verl.__version__
        fixture["verl_losses"] = verl_checks(cases)
        fixture["verl_kl"] = verl_kl_cases()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
