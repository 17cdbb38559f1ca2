//! Learning-rate schedules: linear warmup, then cosine, linear or constant.

use serde::{Deserialize, Serialize};

/// How the learning rate moves after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Stay at the peak.
    Constant,
    /// Fall in a straight line to `min_lr_ratio * peak` at the last step.
    Linear,
    /// Fall along half a cosine to `min_lr_ratio * peak` at the last step.
    Cosine,
}

/// The learning rate of every optimizer step of one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Learning rate at the end of warmup.
    pub peak: f64,
    /// Steps of linear warmup from `peak / warmup` up to `peak`.
    pub warmup: u64,
    /// Optimizer steps in the phase; decay ends at the last one.
    pub total: u64,
    /// Shape after warmup.
    pub decay: Decay,
    /// Floor of the decay as a fraction of `peak`.
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// Learning rate for optimizer step `step` (0-based) of the phase.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup + 1);
        let progress = if span == 0 {
            0.0
        } else {
            ((step - self.warmup) as f64 / span as f64).min(1.0)
        };
        let floor = self.min_lr_ratio;
        let factor = match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - (1.0 - floor) * progress,
            Decay::Cosine => {
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: Decay) -> LrSchedule {
        LrSchedule {
            peak: 1.0,
            warmup: 4,
            total: 14,
            decay,
            min_lr_ratio: 0.1,
        }
    }

    #[test]
    fn warmup_rises_linearly_to_the_peak() {
        let s = schedule(Decay::Cosine);
        let lrs: Vec<f64> = (0..4).map(|i| s.lr(i)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0]);
        assert_eq!(s.lr(4), 1.0);
    }

    #[test]
    fn decays_end_at_the_floor_on_the_last_step() {
        for decay in [Decay::Linear, Decay::Cosine] {
            let s = schedule(decay);
            assert!((s.lr(13) - 0.1).abs() < 1e-12, "{decay:?}");
            assert!((s.lr(100) - 0.1).abs() < 1e-12, "{decay:?}");
        }
        // Step 8 is 4/9 of the way from the peak to the floor.
        let mid_linear = 1.0 - 0.9 * (4.0 / 9.0);
        assert!((schedule(Decay::Linear).lr(8) - mid_linear).abs() < 1e-12);
        let cos = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 4.0 / 9.0).cos());
        assert!((schedule(Decay::Cosine).lr(8) - cos).abs() < 1e-12);
        assert_eq!(schedule(Decay::Constant).lr(13), 1.0);
    }

    #[test]
    fn no_warmup_and_a_single_step_use_the_peak() {
        let s = LrSchedule {
            peak: 3e-4,
            warmup: 0,
            total: 1,
            decay: Decay::Cosine,
            min_lr_ratio: 0.0,
        };
        assert_eq!(s.lr(0), 3e-4);
    }
}
