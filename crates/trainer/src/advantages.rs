//! Group-relative advantages: how much better each completion scored than the
//! other completions of the same prompt.
//!
//! Rewards arrive as consecutive groups of `G` completions, one group per
//! prompt. Each completion's advantage is its reward minus its group's mean,
//! optionally divided by a standard deviation ([`ScaleRewards`]), as TRL 1.16's
//! `GRPOTrainer` computes it: the std is UNBIASED (Bessel, `n - 1`, as
//! `torch.std`) and `1e-4` is added to it before dividing.
//!
//! A group whose rewards all agree (std zero) carries no learning signal: its
//! advantages are exactly 0, and the groups are counted so the trainer can log
//! `frac_reward_zero_std` or replace them (dynamic sampling). The count is per
//! group under every scaling; TRL's batch scaling logs instead whether the
//! whole batch has zero std, which says nothing about single prompts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Added to the standard deviation before dividing by it (TRL's value).
const STD_EPS: f64 = 1e-4;

/// A std at or below this counts as zero (`torch.isclose(std, 0)`'s tolerance).
const ZERO_STD_TOL: f64 = 1e-8;

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
    check_shape(rewards, group_size, scale)?;
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        return Err(Error::invalid(
            "rewards",
            format!("reward {i} is {}, not a finite number", rewards[i]),
        ));
    }

    let groups: Vec<&[f64]> = rewards.chunks(group_size).collect();
    let group_mean: Vec<f64> = groups.iter().map(|g| mean(g)).collect();
    let group_std: Vec<f64> = groups.iter().map(|g| unbiased_std(g)).collect();
    let zero_std: Vec<bool> = group_std.iter().map(|&s| s <= ZERO_STD_TOL).collect();

    let batch_std = match scale {
        ScaleRewards::Batch => unbiased_std(rewards),
        ScaleRewards::Group | ScaleRewards::None => f64::NAN,
    };
    let mut values = Vec::with_capacity(rewards.len());
    for (g, group) in groups.iter().enumerate() {
        for &r in group.iter() {
            let centred = r - group_mean[g];
            let a = match scale {
                _ if zero_std[g] => 0.0,
                ScaleRewards::Group => centred / (group_std[g] + STD_EPS),
                ScaleRewards::Batch => centred / (batch_std + STD_EPS),
                ScaleRewards::None => centred,
            };
            values.push(a);
        }
    }
    Ok(Advantages {
        values,
        group_mean,
        group_std,
        zero_std,
    })
}

fn check_shape(rewards: &[f64], group_size: usize, scale: ScaleRewards) -> Result<()> {
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
    if scale != ScaleRewards::None && group_size == 1 {
        return Err(Error::invalid(
            "grpo.group_size",
            format!(
                "a group of 1 has no std to scale by (scale_rewards = \"{scale}\"): \
                 use group_size >= 2"
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
