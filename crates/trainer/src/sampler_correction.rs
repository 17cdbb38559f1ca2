//! Weights that correct the policy loss for a sampler that is not quite the
//! trained model (TRL's `vllm_importance_sampling_correction`). Completions
//! sampled by the bfloat16 decoder carry log-probs about 1e-2 per token away
//! from the float32 model's: each token's policy loss is weighted by
//! `exp(trained - sampled)`, per token or per completion, truncated or masked
//! outside bounds, as TRL weights vLLM's rollouts.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// How the weights are taken and bounded (TRL's
/// `vllm_importance_sampling_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerCorrection {
    /// No weights: the sampler computes what training computes.
    #[default]
    None,
    /// `exp(trained - sampled)` per token, clamped to the bounds.
    TokenTruncate,
    /// Per token, 0 outside the bounds.
    TokenMask,
    /// One weight per completion, `exp` of its summed differences, clamped.
    SequenceTruncate,
    /// Per completion, 0 outside the bounds (TRL's default).
    SequenceMask,
}

impl SamplerCorrection {
    fn per_sequence(self) -> bool {
        matches!(self, Self::SequenceTruncate | Self::SequenceMask)
    }

    fn truncates(self) -> bool {
        matches!(self, Self::TokenTruncate | Self::SequenceTruncate)
    }
}

/// Smallest, largest and summed weights over what they were taken over
/// (tokens, or completions in the sequence modes), as TRL logs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightSpread {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: usize,
}

impl Default for WeightSpread {
    fn default() -> Self {
        WeightSpread {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            count: 0,
        }
    }
}

impl WeightSpread {
    fn add(&mut self, w: f64) {
        self.min = self.min.min(w);
        self.max = self.max.max(w);
        self.sum += w;
        self.count += 1;
    }

    /// Both spreads together.
    pub fn merge(self, other: WeightSpread) -> WeightSpread {
        WeightSpread {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            sum: self.sum + other.sum,
            count: self.count + other.count,
        }
    }

    /// The mean weight (0 when there was nothing to weigh).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// The `[B, T]` weights (constants, in `trained`'s dtype) for the
/// log-probs the training model gives the sampled tokens, `trained`
/// `[B, T]`, and those they were sampled with, `sampled` `[B, T]`; `mask`
/// `[B, T]` is 1 on tokens that count. Bounds `[min, max]` (no lower bound
/// when `min` is None). None for [`SamplerCorrection::None`].
pub fn sampler_weights(
    mode: SamplerCorrection,
    (min, max): (Option<f64>, f64),
    trained: &Tensor,
    sampled: &Tensor,
    mask: &Tensor,
) -> Result<Option<(Tensor, WeightSpread)>> {
    if mode == SamplerCorrection::None {
        return Ok(None);
    }
    let rows = |t: &Tensor| -> Result<Vec<Vec<f64>>> {
        Ok(t.detach().to_dtype(DType::F64)?.to_vec2::<f64>()?)
    };
    let (trained_rows, sampled_rows, mask_rows) = (rows(trained)?, rows(sampled)?, rows(mask)?);
    let low = min.unwrap_or(f64::NEG_INFINITY);
    let bound = |ratio: f64| {
        if mode.truncates() {
            ratio.max(low).min(max)
        } else if ratio < low || ratio > max {
            0.0
        } else {
            ratio
        }
    };
    let mut spread = WeightSpread::default();
    let mut weights =
        Vec::with_capacity(trained_rows.len() * trained_rows.first().map_or(0, Vec::len));
    for ((trained, sampled), mask) in trained_rows.iter().zip(&sampled_rows).zip(&mask_rows) {
        // Padding and unscorable tokens (NaN) differ by 0: weight 1.
        let diffs = trained.iter().zip(sampled).zip(mask).map(|((&t, &s), &m)| {
            let d = if m == 0.0 { 0.0 } else { t - s };
            if d.is_nan() {
                0.0
            } else {
                d
            }
        });
        if mode.per_sequence() {
            let w = bound(diffs.sum::<f64>().exp());
            spread.add(w);
            weights.extend(std::iter::repeat_n(w, trained.len()));
        } else {
            for (d, &m) in diffs.zip(mask) {
                let w = bound(d.exp());
                if m != 0.0 {
                    spread.add(w);
                }
                weights.push(w);
            }
        }
    }
    let weights =
        Tensor::from_vec(weights, trained.dims2()?, trained.device())?.to_dtype(trained.dtype())?;
    Ok(Some((weights, spread)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(rows: &[&[f64]]) -> Tensor {
        let v: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(v, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
    }

    fn weights(
        mode: SamplerCorrection,
        bounds: (Option<f64>, f64),
    ) -> (Vec<Vec<f64>>, WeightSpread) {
        // Differences trained - sampled: row 0 [0.1, 1.5, pad], row 1 [-2.0, 0.2, 0.3].
        let trained = t(&[&[-1.0, -0.5, 9.0], &[-3.0, -0.2, -0.7]]);
        let sampled = t(&[&[-1.1, -2.0, f64::NAN], &[-1.0, -0.4, -1.0]]);
        let mask = t(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0]]);
        let (w, spread) = sampler_weights(mode, bounds, &trained, &sampled, &mask)
            .unwrap()
            .unwrap();
        (w.to_vec2::<f64>().unwrap(), spread)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn token_weights_are_truncated_or_masked() {
        let e = f64::exp;
        let (w, spread) = weights(SamplerCorrection::TokenTruncate, (Some(0.5), 3.0));
        let want = [[e(0.1), 3.0, 1.0], [0.5, e(0.2), e(0.3)]];
        for (got, want) in w.iter().flatten().zip(want.iter().flatten()) {
            assert!(close(*got, *want), "{w:?}");
        }
        assert_eq!(spread.count, 5);
        assert!(close(spread.min, 0.5) && close(spread.max, 3.0));
        let (w, spread) = weights(SamplerCorrection::TokenMask, (None, 3.0));
        let want = [[e(0.1), 0.0, 1.0], [e(-2.0), e(0.2), e(0.3)]];
        for (got, want) in w.iter().flatten().zip(want.iter().flatten()) {
            assert!(close(*got, *want), "{w:?}");
        }
        assert!(close(spread.sum, e(0.1) + e(-2.0) + e(0.2) + e(0.3)));
    }

    #[test]
    fn sequence_weights_cover_whole_completions() {
        let e = f64::exp;
        // Row sums: 1.6 and -1.5.
        let (w, spread) = weights(SamplerCorrection::SequenceMask, (None, 5.0));
        assert!(w[0].iter().all(|&x| close(x, e(1.6))), "{w:?}");
        assert!(w[1].iter().all(|&x| close(x, e(-1.5))), "{w:?}");
        assert_eq!(spread.count, 2);
        let (w, _) = weights(SamplerCorrection::SequenceMask, (None, 3.0));
        assert!(
            w[0].iter().all(|&x| x == 0.0) && close(w[1][0], e(-1.5)),
            "{w:?}"
        );
        let (w, _) = weights(SamplerCorrection::SequenceMask, (Some(0.3), 5.0));
        assert!(
            w[1].iter().all(|&x| x == 0.0) && close(w[0][0], e(1.6)),
            "{w:?}"
        );
        let (w, spread) = weights(SamplerCorrection::SequenceTruncate, (Some(0.3), 2.0));
        assert!(w[0].iter().all(|&x| close(x, 2.0)) && w[1].iter().all(|&x| close(x, 0.3)));
        assert!(close(spread.mean(), 1.15));
    }

    #[test]
    fn no_correction_gives_no_weights() {
        let x = t(&[&[0.0]]);
        assert!(
            sampler_weights(SamplerCorrection::None, (None, 3.0), &x, &x, &x)
                .unwrap()
                .is_none()
        );
    }
}
