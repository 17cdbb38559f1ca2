//! Advantages: how much better each completion scored than a baseline.
//!
//! Rewards arrive as consecutive groups of `G` completions, one group per
//! prompt. The [`AdvantageEstimator`] picks the baseline and the scale:
//!
//! - `grpo`: reward minus its group's mean, optionally divided by a standard
//!   deviation ([`ScaleRewards`]), as TRL 1.16's `GRPOTrainer` computes it:
//!   the std is UNBIASED (Bessel, `n - 1`, as `torch.std`) and `1e-4` is
//!   added to it before dividing (verl adds `1e-6`; this follows TRL);
//! - `rloo`: reward minus the mean of the other `G - 1` rewards of its group
//!   (Ahmadian et al. 2024; TRL's `RLOOTrainer` and verl agree);
//! - `reinforce_plus_plus`: rewards normalised over the whole batch
//!   (Hu 2025), and `reinforce_plus_plus_baseline`: the group mean removed
//!   first. As verl computes them, the batch mean and unbiased variance are
//!   taken over tokens (a completion counts once per token in the loss), with
//!   `1e-8` added to the variance; `γ = 1`, verl's default, so an outcome
//!   reward is every token's return.
//!
//! A group whose rewards all agree (std zero) carries no learning signal
//! relative to its group: `grpo` and `rloo` give it exactly 0, and the groups
//! are counted so the trainer can log `frac_reward_zero_std` or replace them
//! (dynamic sampling). The count is per group under every estimator and
//! scaling; TRL's batch scaling logs instead whether the whole batch has zero
//! std, which says nothing about single prompts.
//!
//! Deliberately not implemented: verl's `remax` (a greedy rollout per prompt
//! as the baseline), `grpo_passk`, `gpg`, `opo`, and per-token returns with
//! `γ < 1` (the rewards here are outcome rewards).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Added to the standard deviation before dividing by it (TRL's value).
const STD_EPS: f64 = 1e-4;

/// A std at or below this counts as zero (`torch.isclose(std, 0)`'s tolerance).
const ZERO_STD_TOL: f64 = 1e-8;

/// Added to token counts and to the variance in REINFORCE++'s whitening
/// (verl's `masked_mean` and `masked_whiten`).
const WHITEN_EPS: f64 = 1e-8;

/// How rewards become advantages (verl's `adv_estimator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageEstimator {
    /// Reward minus the group mean, scaled as [`ScaleRewards`] says (GRPO).
    #[default]
    Grpo,
    /// Reward minus the mean of the other rewards of its group (RLOO).
    Rloo,
    /// Rewards whitened over the batch's tokens (REINFORCE++).
    ReinforcePlusPlus,
    /// Reward minus the group mean, whitened over the batch's tokens
    /// (REINFORCE++-baseline).
    ReinforcePlusPlusBaseline,
}

/// What the centred rewards are divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleRewards {
    /// By the std of the completion's own group (GRPO; TRL's default).
    #[default]
    Group,
    /// By the std of all rewards in the batch, still centred on the group
    /// mean (TRL 1.16's `"batch"`, Lite PPO): no per-prompt difficulty bias.
    Batch,
    /// Not at all: advantages are the centred rewards (Dr. GRPO).
    None,
}

impl ScaleRewards {
    /// The name used in configs: `group`, `batch` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleRewards::Group => "group",
            ScaleRewards::Batch => "batch",
            ScaleRewards::None => "none",
        }
    }
}

impl fmt::Display for ScaleRewards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScaleRewards {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "group" => Ok(ScaleRewards::Group),
            "batch" => Ok(ScaleRewards::Batch),
            "none" => Ok(ScaleRewards::None),
            other => Err(Error::invalid(
                "grpo.scale_rewards",
                format!("unknown value '{other}' (expected group, batch or none)"),
            )),
        }
    }
}

/// Advantages of one batch of rewards, with the group statistics behind them.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// One advantage per completion, in the order of the rewards.
    pub values: Vec<f64>,
    /// Mean reward of each group.
    pub group_mean: Vec<f64>,
    /// Unbiased std of each group's rewards.
    pub group_std: Vec<f64>,
    /// Whether each group's rewards all agree (std zero): such a group carries
    /// no learning signal and its advantages are 0.
    pub zero_std: Vec<bool>,
}

impl Advantages {
    /// Number of groups (prompts).
    pub fn num_groups(&self) -> usize {
        self.group_mean.len()
    }

    /// Number of groups whose rewards all agree.
    pub fn num_zero_std(&self) -> usize {
        self.zero_std.iter().filter(|&&z| z).count()
    }

    /// Fraction of groups whose rewards all agree (TRL's `frac_reward_zero_std`
    /// under group scaling), in [0, 1].
    pub fn frac_reward_zero_std(&self) -> f64 {
        if self.zero_std.is_empty() {
            return 0.0;
        }
        self.num_zero_std() as f64 / self.zero_std.len() as f64
    }
}

/// Advantages of `rewards`, taken as consecutive groups of `group_size`
/// completions of the same prompt.
///
/// `A_i = (r_i - mean_g) / (std + 1e-4)` with the std chosen by `scale`
/// (unbiased: Bessel's `n - 1`); `ScaleRewards::None` leaves out the division.
/// Every completion of a group with zero reward std gets exactly 0.
///
/// # Errors
///
/// No rewards, a group size of 0, a reward count that is not a multiple of
/// the group size, a group size of 1 with std scaling (a group of one has no
/// std and no learning signal), or a reward that is not finite.
///
/// ```
/// use trainer::{compute_advantages, ScaleRewards};
///
/// let adv = compute_advantages(&[1.0, 0.0, 1.0, 1.0], 2, ScaleRewards::Group).unwrap();
/// // Group [1, 0]: mean 0.5, unbiased std 0.7071...; group [1, 1] carries no signal.
/// assert!((adv.values[0] - 0.5 / (0.5f64.sqrt() + 1e-4)).abs() < 1e-12);
/// assert_eq!(&adv.values[2..], &[0.0, 0.0]);
/// assert_eq!(adv.frac_reward_zero_std(), 0.5);
/// ```
pub fn compute_advantages(
    rewards: &[f64],
    group_size: usize,
    scale: ScaleRewards,
) -> Result<Advantages> {
    check_shape(rewards, group_size)?;
    if scale != ScaleRewards::None && group_size == 1 {
        return Err(Error::invalid(
            "grpo.group_size",
            format!(
                "a group of 1 has no std to scale by (scale_rewards = \"{scale}\"): \
                 use group_size >= 2"
            ),
        ));
    }
    let mut adv = group_stats(rewards, group_size)?;
    let batch_std = match scale {
        ScaleRewards::Batch => unbiased_std(rewards),
        ScaleRewards::Group | ScaleRewards::None => f64::NAN,
    };
    for (i, &r) in rewards.iter().enumerate() {
        let g = i / group_size;
        let centred = r - adv.group_mean[g];
        adv.values[i] = match scale {
            _ if adv.zero_std[g] => 0.0,
            ScaleRewards::Group => centred / (adv.group_std[g] + STD_EPS),
            ScaleRewards::Batch => centred / (batch_std + STD_EPS),
            ScaleRewards::None => centred,
        };
    }
    Ok(adv)
}

/// Advantages of `rewards` (consecutive groups of `group_size`) under
/// `estimator`. `tokens[i]` is how many tokens of completion `i` count in the
/// loss: the REINFORCE++ estimators weigh each completion by it, as verl
/// does, and give a completion without counted tokens 0. `scale` applies to
/// `grpo` only.
///
/// # Errors
///
/// As [`compute_advantages`], plus a token count per reward, and a group of
/// at least 2 for `rloo`.
///
/// ```
/// use trainer::{estimate_advantages, AdvantageEstimator, ScaleRewards};
///
/// let rloo = AdvantageEstimator::Rloo;
/// let adv = estimate_advantages(rloo, &[1.0, 0.0, 0.5], &[4, 4, 4], 3, ScaleRewards::Group)?;
/// // 1 minus the mean of 0 and 0.5.
/// assert!((adv.values[0] - 0.75).abs() < 1e-12);
/// # Ok::<(), trainer::Error>(())
/// ```
pub fn estimate_advantages(
    estimator: AdvantageEstimator,
    rewards: &[f64],
    tokens: &[usize],
    group_size: usize,
    scale: ScaleRewards,
) -> Result<Advantages> {
    if tokens.len() != rewards.len() {
        return Err(Error::invalid(
            "rewards",
            format!(
                "{} rewards but {} token counts",
                rewards.len(),
                tokens.len()
            ),
        ));
    }
    if estimator == AdvantageEstimator::Grpo {
        return compute_advantages(rewards, group_size, scale);
    }
    check_shape(rewards, group_size)?;
    let mut adv = group_stats(rewards, group_size)?;
    match estimator {
        AdvantageEstimator::Grpo => unreachable!("handled above"),
        AdvantageEstimator::Rloo => {
            if group_size < 2 {
                return Err(Error::invalid(
                    "grpo.group_size",
                    "rloo needs a group of at least 2 (a baseline from the other completions)",
                ));
            }
            let n = group_size as f64;
            for (i, &r) in rewards.iter().enumerate() {
                let g = i / group_size;
                let others = (adv.group_mean[g] * n - r) / (n - 1.0);
                adv.values[i] = if adv.zero_std[g] { 0.0 } else { r - others };
            }
        }
        AdvantageEstimator::ReinforcePlusPlus => {
            adv.values = whiten_over_tokens(rewards, tokens);
        }
        AdvantageEstimator::ReinforcePlusPlusBaseline => {
            let centred: Vec<f64> = rewards
                .iter()
                .enumerate()
                .map(|(i, r)| r - adv.group_mean[i / group_size])
                .collect();
            adv.values = whiten_over_tokens(&centred, tokens);
        }
    }
    Ok(adv)
}

/// verl's `masked_whiten` of per-token returns that are constant over each
/// completion: `(x - mean) / sqrt(var + 1e-8)`, mean and unbiased variance
/// over tokens; 0 for completions without tokens, and for every completion
/// when fewer than 2 tokens count (verl refuses such a batch).
fn whiten_over_tokens(values: &[f64], tokens: &[usize]) -> Vec<f64> {
    let n: f64 = tokens.iter().map(|&t| t as f64).sum();
    if n < 2.0 {
        return vec![0.0; values.len()];
    }
    let weighted = |f: &dyn Fn(f64) -> f64| -> f64 {
        values
            .iter()
            .zip(tokens)
            .map(|(&v, &t)| f(v) * t as f64)
            .sum()
    };
    let mean = weighted(&|v| v) / (n + WHITEN_EPS);
    let var = weighted(&|v| (v - mean) * (v - mean)) / (n + WHITEN_EPS) * (n / (n - 1.0));
    let scale = 1.0 / (var + WHITEN_EPS).sqrt();
    values
        .iter()
        .zip(tokens)
        .map(|(&v, &t)| if t == 0 { 0.0 } else { (v - mean) * scale })
        .collect()
}

/// Group means, unbiased stds and zero-std flags; values left at 0.
fn group_stats(rewards: &[f64], group_size: usize) -> Result<Advantages> {
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        return Err(Error::invalid(
            "rewards",
            format!("reward {i} is {}, not a finite number", rewards[i]),
        ));
    }
    let groups: Vec<&[f64]> = rewards.chunks(group_size).collect();
    let group_std: Vec<f64> = groups.iter().map(|g| unbiased_std(g)).collect();
    Ok(Advantages {
        values: vec![0.0; rewards.len()],
        group_mean: groups.iter().map(|g| mean(g)).collect(),
        zero_std: group_std.iter().map(|&s| s <= ZERO_STD_TOL).collect(),
        group_std,
    })
}

fn check_shape(rewards: &[f64], group_size: usize) -> Result<()> {
    if group_size == 0 {
        return Err(Error::invalid(
            "grpo.group_size",
            "must be at least 1, got 0",
        ));
    }
    if rewards.is_empty() {
        return Err(Error::invalid(
            "rewards",
            "no rewards to compute advantages from",
        ));
    }
    if !rewards.len().is_multiple_of(group_size) {
        return Err(Error::invalid(
            "grpo.group_size",
            format!(
                "{} rewards do not split into groups of {group_size}",
                rewards.len()
            ),
        ));
    }
    Ok(())
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (divides by `n - 1`); 0 for fewer than 2 values.
fn unbiased_std(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn group_scaling_uses_unbiased_std() {
        // [3, 5, 7]: mean 5, unbiased std 2 (biased would be 1.633).
        let adv = compute_advantages(&[3.0, 5.0, 7.0], 3, ScaleRewards::Group).unwrap();
        assert!(close(adv.group_std[0], 2.0));
        assert!(close(adv.values[0], -2.0 / (2.0 + 1e-4)));
        assert!(close(adv.values[1], 0.0));
        assert!(close(adv.values[2], 2.0 / (2.0 + 1e-4)));
    }

    #[test]
    fn batch_scaling_divides_by_the_std_of_all_rewards() {
        // Groups [0, 2] and [4, 6]: centred by group, scaled by std(0, 2, 4, 6).
        let adv = compute_advantages(&[0.0, 2.0, 4.0, 6.0], 2, ScaleRewards::Batch).unwrap();
        let batch_std = (20.0f64 / 3.0).sqrt();
        assert!(close(adv.values[0], -1.0 / (batch_std + 1e-4)));
        assert!(close(adv.values[3], 1.0 / (batch_std + 1e-4)));
    }

    #[test]
    fn no_scaling_leaves_centred_rewards() {
        let adv = compute_advantages(&[1.0, 0.0, 0.5, 0.5], 2, ScaleRewards::None).unwrap();
        assert_eq!(adv.values, vec![0.5, -0.5, 0.0, 0.0]);
        assert_eq!(adv.num_zero_std(), 1);
    }

    #[test]
    fn zero_std_groups_get_zero_and_are_counted() {
        // 0.1 * 3 / 3 is not exactly 0.1 in floating point: still exactly 0 out.
        let rewards = [0.1, 0.1, 0.1, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        for scale in [ScaleRewards::Group, ScaleRewards::Batch, ScaleRewards::None] {
            let adv = compute_advantages(&rewards, 3, scale).unwrap();
            assert_eq!(&adv.values[0..3], &[0.0; 3], "{scale}");
            assert_eq!(&adv.values[6..9], &[0.0; 3], "{scale}");
            assert_eq!(adv.zero_std, vec![true, false, true]);
            assert!(close(adv.frac_reward_zero_std(), 2.0 / 3.0));
        }
    }

    #[test]
    fn advantages_of_a_group_sum_to_zero() {
        let rewards = [0.3, 0.9, 0.0, 0.25, 1.0, 0.7, 0.7, 0.1];
        for scale in [ScaleRewards::Group, ScaleRewards::Batch, ScaleRewards::None] {
            let adv = compute_advantages(&rewards, 4, scale).unwrap();
            for g in adv.values.chunks(4) {
                assert!(g.iter().sum::<f64>().abs() < 1e-12, "{scale}: {g:?}");
            }
        }
    }

    #[test]
    fn rejects_bad_shapes_with_a_clear_message() {
        let err = compute_advantages(&[1.0; 7], 3, ScaleRewards::Group).unwrap_err();
        assert!(err.to_string().contains("7 rewards"), "{err}");
        let err = compute_advantages(&[1.0, 0.0], 1, ScaleRewards::Group).unwrap_err();
        assert!(err.to_string().contains("group of 1"), "{err}");
        assert!(compute_advantages(&[1.0, 0.0], 1, ScaleRewards::Batch).is_err());
        let lone = compute_advantages(&[1.0, 0.0], 1, ScaleRewards::None).unwrap();
        assert_eq!(lone.values, vec![0.0, 0.0]);
        assert!(compute_advantages(&[], 2, ScaleRewards::Group).is_err());
        assert!(compute_advantages(&[1.0, 0.0], 0, ScaleRewards::None).is_err());
        let err = compute_advantages(&[1.0, f64::NAN], 2, ScaleRewards::Group).unwrap_err();
        assert!(err.to_string().contains("reward 1 is NaN"), "{err}");
    }

    #[test]
    fn scale_rewards_names_round_trip() {
        for scale in [ScaleRewards::Group, ScaleRewards::Batch, ScaleRewards::None] {
            assert_eq!(scale.as_str().parse::<ScaleRewards>().unwrap(), scale);
        }
        assert!("Group".parse::<ScaleRewards>().is_err());
    }
}
