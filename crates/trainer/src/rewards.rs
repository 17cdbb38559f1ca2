//! A completion's reward: the verifier's correctness, plus an optional
//! weighted format term, plus DAPO's optional soft overlong punishment.

use tasks::Verdict;

use crate::config::GrpoSection;

/// How a verdict and a completion length become one reward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardShaping {
    /// Added reward for following the output format.
    pub format_weight: f64,
    /// DAPO's `L_cache`: the punishment zone's length in tokens; 0 = off.
    pub overlong_buffer: usize,
    /// Punishment at the full length limit.
    pub overlong_penalty: f64,
    /// `L_max`: the completion length limit.
    pub max_completion_length: usize,
}

impl RewardShaping {
    /// The shaping a GRPO config asks for.
    pub fn from_config(cfg: &GrpoSection) -> Self {
        Self {
            format_weight: cfg.format_weight,
            overlong_buffer: cfg.overlong_buffer,
            overlong_penalty: cfg.overlong_penalty,
            max_completion_length: cfg.max_completion_length,
        }
    }

    /// `correctness + format_weight * format_ok + overlong(length)`.
    pub fn reward(&self, verdict: &Verdict, length: usize) -> f64 {
        let format = if verdict.format_ok {
            self.format_weight
        } else {
            0.0
        };
        verdict.reward + format + self.overlong(length)
    }

    /// DAPO's soft overlong punishment (eq. 13), scaled by the penalty: 0 up
    /// to `L_max - L_cache` tokens, then falling linearly to `-penalty` at
    /// `L_max` (and beyond).
    pub fn overlong(&self, length: usize) -> f64 {
        if self.overlong_buffer == 0 {
            return 0.0;
        }
        let free = self
            .max_completion_length
            .saturating_sub(self.overlong_buffer);
        if length <= free {
            return 0.0;
        }
        let over = (length - free) as f64 / self.overlong_buffer as f64;
        -self.overlong_penalty * over.min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(reward: f64, format_ok: bool) -> Verdict {
        Verdict {
            reward,
            format_ok,
            extracted: None,
            normalized: None,
            reason: String::new(),
        }
    }

    fn shaping(format_weight: f64, overlong_buffer: usize) -> RewardShaping {
        RewardShaping {
            format_weight,
            overlong_buffer,
            overlong_penalty: 1.0,
            max_completion_length: 100,
        }
    }

    #[test]
    fn correctness_plus_weighted_format() {
        let s = shaping(0.1, 0);
        assert_eq!(s.reward(&verdict(1.0, true), 100), 1.1);
        assert_eq!(s.reward(&verdict(0.0, true), 100), 0.1);
        assert_eq!(s.reward(&verdict(0.0, false), 100), 0.0);
        assert_eq!(shaping(0.0, 0).reward(&verdict(0.5, true), 7), 0.5);
    }

    #[test]
    fn overlong_punishment_follows_dapo() {
        // L_max 100, L_cache 20: free up to 80, then (80 - L) / 20.
        let s = shaping(0.0, 20);
        assert_eq!(s.overlong(80), 0.0);
        assert_eq!(s.overlong(90), -0.5);
        assert_eq!(s.overlong(100), -1.0);
        assert_eq!(s.overlong(130), -1.0);
        let half = RewardShaping {
            overlong_penalty: 0.5,
            ..s
        };
        assert_eq!(half.reward(&verdict(1.0, true), 90), 0.75);
    }
}
