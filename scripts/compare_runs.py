"""Summarise GRPO runs side by side: the numbers behind the README's
curriculum comparison.

    python3 scripts/compare_runs.py runs/curriculum-s0 runs/fixed-s0 ...

For each run folder: the mean of `frac_reward_zero_std` over its GRPO steps
(and over the first and second half), the mean training accuracy, the levels
`curriculum/<family>` visited, and held-out greedy pass@1 per task and level
at every GRPO evaluation (eval.jsonl). Standard library only.
"""

import json
import sys
from pathlib import Path


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def summarise(run):
    run = Path(run)
    grpo = [m for m in lines(run / "metrics.jsonl") if m.get("phase") == "grpo"]
    zero = [m["frac_reward_zero_std"] for m in grpo]
    half = len(zero) // 2
    levels = {}
    for m in grpo:
        for key, value in m.items():
            if key.startswith("curriculum/"):
                levels.setdefault(key.removeprefix("curriculum/"), []).append(value)
    evals = [e for e in lines(run / "eval.jsonl") if e["phase"] == "grpo"]
    return {
        "run": run.name,
        "grpo_steps": len(grpo),
        "frac_reward_zero_std": mean(zero),
        "frac_reward_zero_std_first_half": mean(zero[:half]),
        "frac_reward_zero_std_second_half": mean(zero[half:]),
        "accuracy": mean([m["accuracy"] for m in grpo]),
        "levels": {f: {"mean": mean(v), "last": v[-1], "min": min(v), "max": max(v)} for f, v in levels.items()},
        "evals": [
            {
                "step": e["step"],
                "pass_at_1": e["pass_at_1"],
                "tasks": {f"{t['task']}-{t['level']}": t["pass_at_1"] for t in e["tasks"]},
            }
            for e in evals
        ],
    }


def main():
    runs = [summarise(r) for r in sys.argv[1:]]
    for s in runs:
        print(f"== {s['run']}: {s['grpo_steps']} GRPO steps")
        print(
            f"  frac_reward_zero_std {s['frac_reward_zero_std']:.3f} "
            f"(first half {s['frac_reward_zero_std_first_half']:.3f}, "
            f"second half {s['frac_reward_zero_std_second_half']:.3f}); "
            f"train accuracy {s['accuracy']:.3f}"
        )
        for family, lv in s["levels"].items():
            print(f"  {family} level: mean {lv['mean']:.2f}, range {lv['min']}..{lv['max']}, last {lv['last']}")
        for e in s["evals"]:
            tasks = "  ".join(f"{k} {v:.2f}" for k, v in sorted(e["tasks"].items()))
            print(f"  eval step {e['step']:>3}: pass@1 {e['pass_at_1']:.3f}  [{tasks}]")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
