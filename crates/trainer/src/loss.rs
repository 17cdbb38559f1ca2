//! The GRPO policy loss: a clipped surrogate per completion token, an optional
//! KL penalty to a frozen reference, averaged as the chosen [`LossType`] says.
//!
//! Per token, with `r = exp(new - old)` the importance ratio and `A` the
//! completion's advantage (TRL 1.16, `importance_sampling_level="token"`):
//!
//! ```text
//! loss_t = -min(r * A, clamp(r, 1 - epsilon_low, 1 + epsilon_high) * A) + beta * kl_t
//! kl_t   = exp(ref - new) - (ref - new) - 1          (k3, Schulman's estimator)
//! kl_t   = k3 * r   when use_bias_correction_kl      (same value on-policy, unbiased gradient off-policy)
//! ```
//!
//! What exists here:
//! - token-level importance ratios with asymmetric clipping (DAPO's
//!   "clip-higher" when `epsilon_high > epsilon_low`);
//! - the k3 KL penalty, with or without the ratio correction of its gradient;
//! - four ways to average ([`LossType`]): `grpo` (per-sequence mean, then
//!   batch mean), `bnpo` (token mean of the micro-batch), `dr_grpo` (sum over a
//!   fixed `B * max_completion_length`) and `dapo` (token mean over every
//!   micro-batch of the optimizer step), each scaled for gradient accumulation
//!   exactly as TRL scales it, so accumulated gradients match;
//! - the metrics TRL logs for it: `kl`, `clip_ratio/low_mean`,
//!   `clip_ratio/high_mean`, `clip_ratio/region_mean`.
//!
//! Deliberately not implemented, because verity's rollouts come from the same
//! model code it trains (no separate inference engine) and its runs are small:
//! sequence-level importance sampling (GSPO, `importance_sampling_level =
//! "sequence"`), importance-sampling correction for a vLLM rollout engine
//! (TIS / MIS), entropy masking (`top_entropy_quantile < 1`), two-sided ratio
//! clipping (`delta`), off-policy sequence masking, an entropy bonus, and the
//! `cispo`, `sapo` and `luspo` losses.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How per-token losses are averaged into one number (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over each completion's tokens, then over completions
    /// (DeepSeekMath). Long completions weigh less per token.
    Grpo,
    /// Mean over all tokens of the micro-batch.
    Bnpo,
    /// Sum over tokens divided by `B * max_completion_length`, a constant
    /// (Dr. GRPO): no length bias.
    DrGrpo,
    /// Mean over all tokens of every micro-batch in the optimizer step (DAPO;
    /// TRL 1.16's default).
    #[default]
    Dapo,
}

impl LossType {
    /// The name used in configs: `grpo`, `bnpo`, `dr_grpo` or `dapo`.
    pub fn as_str(self) -> &'static str {
        match self {
            LossType::Grpo => "grpo",
            LossType::Bnpo => "bnpo",
            LossType::DrGrpo => "dr_grpo",
            LossType::Dapo => "dapo",
        }
    }

    /// Every loss type, in the order of the docs.
    pub const ALL: [LossType; 4] = [
        LossType::Grpo,
        LossType::Bnpo,
        LossType::DrGrpo,
        LossType::Dapo,
    ];
}

impl fmt::Display for LossType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LossType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        LossType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "grpo.loss_type",
                    format!("unknown value '{s}' (expected grpo, bnpo, dr_grpo or dapo)"),
                )
            })
    }
}

/// Settings of the policy loss. Plain data: the run config fills it in and
/// calls [`LossConfig::validate`] once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// How per-token losses are averaged.
    pub loss_type: LossType,
    /// Ratios below `1 - epsilon_low` stop the gradient of tokens with a
    /// negative advantage.
    pub epsilon_low: f64,
    /// Ratios above `1 + epsilon_high` stop the gradient of tokens with a
    /// positive advantage.
    pub epsilon_high: f64,
    /// Weight of the KL penalty to the reference model; 0 turns it off (and
    /// then no reference log-probs are needed).
    pub beta: f64,
    /// Multiply the k3 KL by the importance ratio (TRL 1.16's default).
    pub use_bias_correction_kl: bool,
    /// The configured completion length limit: `dr_grpo`'s constant
    /// denominator (not the padded width of a batch).
    pub max_completion_length: usize,
}

impl LossConfig {
    /// Checks every value, naming the offending key.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.epsilon_low) {
            return Err(Error::invalid(
                "grpo.epsilon_low",
                format!("must be in [0, 1), got {}", self.epsilon_low),
            ));
        }
        if !(self.epsilon_high >= 0.0 && self.epsilon_high.is_finite()) {
            return Err(Error::invalid(
                "grpo.epsilon_high",
                format!("must be a finite number >= 0, got {}", self.epsilon_high),
            ));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(Error::invalid(
                "grpo.beta",
                format!("must be a finite number >= 0, got {}", self.beta),
            ));
        }
        if self.max_completion_length == 0 {
            return Err(Error::invalid(
                "grpo.max_completion_length",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }
}

/// Where a micro-batch sits in its optimizer step: what its loss is divided by
/// so that the gradients summed over the step's micro-batches are those of
/// the whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accumulation {
    /// Micro-batches whose gradients are summed before one optimizer step
    /// (TRL's `gradient_accumulation_steps`), at least 1.
    pub micro_batches: usize,
    /// Active completion tokens (mask ones) in all of those micro-batches
    /// together (TRL's `num_items_in_batch`): the `dapo` denominator.
    ///
    /// TRL divides by `num_items_in_batch * ga / steps_per_generation`; verity
    /// feeds each generation batch to exactly one optimizer step
    /// (`steps_per_generation = ga`), which makes the two the same.
    pub active_tokens: usize,
}

impl Accumulation {
    /// The whole batch as one micro-batch with `active_tokens` mask ones.
    pub fn single(active_tokens: usize) -> Self {
        Accumulation {
            micro_batches: 1,
            active_tokens,
        }
    }
}

/// The tensors of one micro-batch of `B` completions padded to `T` tokens.
/// All `[B, T]` tensors are aligned with the completion mask; values at
/// masked positions are ignored (and receive no gradient).
#[derive(Debug, Clone, Copy)]
pub struct LossInputs<'a> {
    /// Log-probs of the sampled tokens under the policy being trained,
    /// `[B, T]`, carrying gradients back to the model.
    pub new_logps: &'a Tensor,
    /// Log-probs under the policy that sampled them, `[B, T]`, constants.
    /// `None` means on-policy (the first inner iteration): `new` detached.
    pub old_logps: Option<&'a Tensor>,
    /// Log-probs under the frozen reference model, `[B, T]`; needed when
    /// `beta > 0`.
    pub ref_logps: Option<&'a Tensor>,
    /// One advantage per completion, `[B]`.
    pub advantages: &'a Tensor,
    /// 1 for completion tokens that count, 0 for padding and masked
    /// completions, `[B, T]`, any dtype.
    pub completion_mask: &'a Tensor,
}

/// Per-token pieces of the loss, all `[B, T]` in the dtype of `new_logps`.
#[derive(Debug, Clone)]
pub struct PerTokenLoss {
    /// `-min(r A, clamp(r) A) + beta kl`, times the mask (0 where masked).
    pub loss: Tensor,
    /// The importance ratio `exp(new - old)` (1 where masked).
    pub ratio: Tensor,
    /// The KL term as it enters the loss (k3, times the ratio with bias
    /// correction; 0 where masked); `None` when `beta == 0`.
    pub kl: Option<Tensor>,
    /// The completion mask as 0.0 / 1.0.
    pub mask: Tensor,
    /// 1.0 where the ratio fell below `1 - epsilon_low` with a negative
    /// advantage (the clipped branch won: no gradient from the surrogate).
    pub low_clipped: Tensor,
    /// 1.0 where the ratio rose above `1 + epsilon_high` with a positive
    /// advantage.
    pub high_clipped: Tensor,
}

/// Numbers worth logging from one micro-batch's loss, as TRL computes them
/// (means over the micro-batch's active tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossMetrics {
    /// Mean KL term over active tokens (TRL's `kl`); `None` when `beta == 0`.
    pub kl: Option<f64>,
    /// Fraction of active tokens clipped at the low end (`clip_ratio/low_mean`).
    pub clip_ratio_low: f64,
    /// Fraction clipped at the high end (`clip_ratio/high_mean`).
    pub clip_ratio_high: f64,
    /// Fraction clipped at either end (`clip_ratio/region_mean`).
    pub clip_ratio_region: f64,
    /// Mean importance ratio over active tokens (1 on-policy).
    pub ratio_mean: f64,
    /// Active tokens in this micro-batch.
    pub active_tokens: usize,
}

/// The loss of one micro-batch and its metrics.
#[derive(Debug, Clone)]
pub struct GrpoLoss {
    /// Scalar loss; call `backward` on it and add the gradients over the
    /// step's micro-batches.
    pub loss: Tensor,
    /// What to log.
    pub metrics: LossMetrics,
}

/// The policy loss of one micro-batch, scaled for gradient accumulation.
///
/// # Errors
///
/// An invalid config, tensors whose shapes disagree, `beta > 0` without
/// reference log-probs, or a failing tensor operation.
pub fn grpo_loss(
    cfg: &LossConfig,
    inputs: &LossInputs<'_>,
    accumulation: Accumulation,
) -> Result<GrpoLoss> {
    let per_token = per_token_loss(cfg, inputs)?;
    let loss = aggregate(cfg, &per_token.loss, &per_token.mask, accumulation)?;
    let metrics = metrics(&per_token)?;
    Ok(GrpoLoss { loss, metrics })
}

/// The clipped-surrogate-plus-KL loss of every token, before averaging.
///
/// The `min(r A, clamp(r) A)` pair is written as a choice made on constant
/// masks: the clipped branch (a constant) where TRL's clip metrics say the
/// token is clipped, `r A` elsewhere. The value is the same, and the gradient
/// is the one torch gives (`-A r` inside the clip range, 0 where clipped)
/// without depending on how `min` splits ties.
pub fn per_token_loss(cfg: &LossConfig, inputs: &LossInputs<'_>) -> Result<PerTokenLoss> {
    cfg.validate()?;
    let (b, t) = check_shapes(cfg, inputs)?;
    let dtype = inputs.new_logps.dtype();
    let active = inputs.completion_mask.ne(0.0)?;
    let mask = active.to_dtype(dtype)?;
    let zeros = mask.zeros_like()?;
    // Padding may hold anything (even inf): zero it before exp, so that it
    // neither poisons sums with NaN nor receives gradient.
    let keep =
        |x: &Tensor| -> Result<Tensor> { Ok(active.where_cond(&x.to_dtype(dtype)?, &zeros)?) };

    let new = keep(inputs.new_logps)?;
    let old = match inputs.old_logps {
        Some(old) => keep(old)?.detach(),
        None => new.detach(),
    };
    let adv = inputs
        .advantages
        .to_dtype(dtype)?
        .detach()
        .reshape((b, 1))?
        .broadcast_as((b, t))?
        .contiguous()?;

    let ratio = (&new - &old)?.exp()?;
    let ratio_const = ratio.detach();
    let low_clipped = ratio_const.lt(1.0 - cfg.epsilon_low)?.mul(&adv.lt(0.0)?)?;
    let high_clipped = ratio_const.gt(1.0 + cfg.epsilon_high)?.mul(&adv.gt(0.0)?)?;
    let clipped = (&low_clipped + &high_clipped)?;
    let clamped = ratio_const.clamp(1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high)?;
    let surrogate = clipped.where_cond(&(clamped * &adv)?, &(&ratio * &adv)?)?;
    let mut loss = surrogate.neg()?;

    let kl = if cfg.beta != 0.0 {
        let reference = inputs.ref_logps.ok_or_else(|| {
            tensor_error("beta > 0 needs reference log-probs, but none were given".into())
        })?;
        let delta = (keep(reference)?.detach() - &new)?;
        let k3 = ((delta.exp()? - &delta)? - 1.0)?;
        let kl = if cfg.use_bias_correction_kl {
            (k3 * &ratio)?
        } else {
            k3
        };
        loss = (loss + (&kl * cfg.beta)?)?;
        Some((kl * &mask)?)
    } else {
        None
    };

    Ok(PerTokenLoss {
        loss: (loss * &mask)?,
        ratio,
        kl,
        low_clipped: (low_clipped.to_dtype(dtype)? * &mask)?,
        high_clipped: (high_clipped.to_dtype(dtype)? * &mask)?,
        mask,
    })
}

/// Averages masked per-token losses `[B, T]` into the scalar loss of one
/// micro-batch, as `cfg.loss_type` says, divided for gradient accumulation so
/// that the micro-batches' gradients add up to the step's gradient.
///
/// Sums run in at least f32: a bf16 sum of ones stops counting at 256.
pub fn aggregate(
    cfg: &LossConfig,
    per_token_loss: &Tensor,
    mask: &Tensor,
    accumulation: Accumulation,
) -> Result<Tensor> {
    let (b, _) = per_token_loss.dims2()?;
    let per_token_loss = &at_least_f32(per_token_loss)?;
    let mask = &at_least_f32(mask)?;
    let ga = accumulation.micro_batches.max(1) as f64;
    let loss = match cfg.loss_type {
        LossType::Grpo => {
            let lengths = mask.sum(D::Minus1)?.maximum(1.0)?;
            (per_token_loss.sum(D::Minus1)? / lengths)?.mean_all()?
        }
        LossType::Bnpo => {
            let tokens = mask.sum_all()?.maximum(1.0)?;
            per_token_loss.sum_all()?.div(&tokens)?
        }
        LossType::DrGrpo => (per_token_loss.sum_all()? / (b * cfg.max_completion_length) as f64)?,
        // The denominator already spans every micro-batch of the step, so
        // no division by the number of micro-batches.
        LossType::Dapo => {
            let tokens = accumulation.active_tokens.max(1) as f64;
            return Ok((per_token_loss.sum_all()? / tokens)?);
        }
    };
    Ok((loss / ga)?)
}

/// TRL's logged numbers: means over the micro-batch's active tokens.
fn metrics(per_token: &PerTokenLoss) -> Result<LossMetrics> {
    let sum = |x: &Tensor| -> Result<f64> { scalar(&at_least_f32(&x.detach())?.sum_all()?) };
    let active = sum(&per_token.mask)?;
    let denom = active.max(1.0);
    let masked_mean = |x: &Tensor| -> Result<f64> { Ok(sum(x)? / denom) };
    let low = masked_mean(&per_token.low_clipped)?;
    let high = masked_mean(&per_token.high_clipped)?;
    Ok(LossMetrics {
        kl: per_token.kl.as_ref().map(masked_mean).transpose()?,
        clip_ratio_low: low,
        clip_ratio_high: high,
        // A token cannot be clipped at both ends (the advantage has one sign).
        clip_ratio_region: low + high,
        ratio_mean: masked_mean(&(&per_token.ratio * &per_token.mask)?)?,
        active_tokens: active.round() as usize,
    })
}

fn scalar(x: &Tensor) -> Result<f64> {
    Ok(x.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// `x` itself in f32 or f64, half-precision `x` widened to f32 (keeps the
/// gradient path).
fn at_least_f32(x: &Tensor) -> Result<Tensor> {
    Ok(match x.dtype() {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    })
}

/// Checks that every input has the shape of `new_logps` `[B, T]` (advantages
/// `[B]`) and returns `(B, T)`.
fn check_shapes(cfg: &LossConfig, inputs: &LossInputs<'_>) -> Result<(usize, usize)> {
    let new = inputs.new_logps;
    if !new.dtype().is_float() {
        return Err(tensor_error(format!(
            "new log-probs must be floating point, got {:?}",
            new.dtype()
        )));
    }
    let (b, t) = new.dims2().map_err(|_| {
        tensor_error(format!(
            "new log-probs must be [B, T], got {:?}",
            new.dims()
        ))
    })?;
    let same = |name: &str, x: &Tensor| -> Result<()> {
        if x.dims() != [b, t] {
            return Err(tensor_error(format!(
                "{name} must have the shape of the new log-probs [{b}, {t}], got {:?}",
                x.dims()
            )));
        }
        Ok(())
    };
    same("completion mask", inputs.completion_mask)?;
    if let Some(old) = inputs.old_logps {
        same("old log-probs", old)?;
    }
    if cfg.beta != 0.0 {
        if let Some(reference) = inputs.ref_logps {
            same("reference log-probs", reference)?;
        }
    }
    if inputs.advantages.dims() != [b] {
        return Err(tensor_error(format!(
            "advantages must be [{b}], one per completion, got {:?}",
            inputs.advantages.dims()
        )));
    }
    Ok((b, t))
}

/// A malformed tensor input: a bug in the caller, not the user's mistake.
fn tensor_error(message: String) -> Error {
    Error::Candle(candle_core::Error::Msg(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn config(loss_type: LossType) -> LossConfig {
        LossConfig {
            loss_type,
            epsilon_low: 0.2,
            epsilon_high: 0.28,
            beta: 0.04,
            use_bias_correction_kl: true,
            max_completion_length: 4,
        }
    }

    fn t2(rows: &[[f64; 3]]) -> Tensor {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 3), &Device::Cpu).unwrap()
    }

    #[test]
    fn loss_type_names_round_trip_through_fromstr_and_serde() {
        for lt in LossType::ALL {
            assert_eq!(lt.as_str().parse::<LossType>().unwrap(), lt);
            let json = serde_json::to_string(&lt).unwrap();
            assert_eq!(json, format!("\"{}\"", lt.as_str()));
            assert_eq!(serde_json::from_str::<LossType>(&json).unwrap(), lt);
        }
        let err = "drgrpo".parse::<LossType>().unwrap_err().to_string();
        assert!(
            err.contains("grpo.loss_type") && err.contains("'drgrpo'"),
            "{err}"
        );
        assert_eq!(LossType::default(), LossType::Dapo);
    }

    #[test]
    fn validate_names_the_bad_key() {
        let mut cfg = config(LossType::Grpo);
        cfg.epsilon_low = 1.0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("grpo.epsilon_low"));
        let mut cfg = config(LossType::Grpo);
        cfg.beta = f64::NAN;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("grpo.beta"));
        let mut cfg = config(LossType::Grpo);
        cfg.max_completion_length = 0;
        assert!(cfg.validate().is_err());
        assert!(config(LossType::Dapo).validate().is_ok());
    }

    /// On-policy with one token per completion: ratio 1, so the surrogate's
    /// gradient is `-A / normaliser` and the loss is `-mean(A)` plus the KL.
    #[test]
    fn on_policy_gradient_is_minus_advantage_over_tokens() {
        let new = Var::from_tensor(&t2(&[[-0.5, -1.0, -2.0], [-0.1, -0.2, -0.3]])).unwrap();
        let mask = t2(&[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]);
        let adv = Tensor::new(&[1.5f64, -0.5], &Device::Cpu).unwrap();
        let mut cfg = config(LossType::Bnpo);
        cfg.beta = 0.0;
        let inputs = LossInputs {
            new_logps: new.as_tensor(),
            old_logps: None,
            ref_logps: None,
            advantages: &adv,
            completion_mask: &mask,
        };
        let out = grpo_loss(&cfg, &inputs, Accumulation::single(3)).unwrap();
        let loss = out.loss.to_scalar::<f64>().unwrap();
        assert!((loss - (-(1.5 + 1.5 - 0.5) / 3.0)).abs() < 1e-12, "{loss}");
        let grad = out.loss.backward().unwrap();
        let g = grad.get(&new).unwrap().to_vec2::<f64>().unwrap();
        let want = [[-0.5, -0.5, 0.0], [0.5 / 3.0, 0.0, 0.0]];
        for (gr, wr) in g.iter().zip(want.iter()) {
            for (a, b) in gr.iter().zip(wr.iter()) {
                assert!((a - b).abs() < 1e-12, "{g:?}");
            }
        }
        assert_eq!(out.metrics.kl, None);
        assert_eq!(out.metrics.active_tokens, 3);
        assert!((out.metrics.ratio_mean - 1.0).abs() < 1e-12);
    }

    #[test]
    fn padding_with_infinities_neither_poisons_the_loss_nor_gets_gradient() {
        let new = Var::from_tensor(&t2(&[[-0.5, f64::NEG_INFINITY, f64::NAN]])).unwrap();
        let old = t2(&[[-0.7, f64::INFINITY, 0.0]]);
        let reference = t2(&[[-0.4, f64::NAN, f64::NEG_INFINITY]]);
        let mask = t2(&[[1.0, 0.0, 0.0]]);
        let adv = Tensor::new(&[0.7f64], &Device::Cpu).unwrap();
        for lt in LossType::ALL {
            let inputs = LossInputs {
                new_logps: new.as_tensor(),
                old_logps: Some(&old),
                ref_logps: Some(&reference),
                advantages: &adv,
                completion_mask: &mask,
            };
            let out = grpo_loss(&config(lt), &inputs, Accumulation::single(1)).unwrap();
            assert!(out.loss.to_scalar::<f64>().unwrap().is_finite(), "{lt}");
            let grads = out.loss.backward().unwrap();
            let g = grads.get(&new).unwrap().to_vec2::<f64>().unwrap();
            assert!(g[0][0].is_finite() && g[0][0] != 0.0, "{lt}: {g:?}");
            assert_eq!(&g[0][1..], &[0.0, 0.0], "{lt}");
        }
    }

    #[test]
    fn works_in_f32() {
        let new = Var::from_tensor(
            &t2(&[[-0.5, -1.0, -2.0], [-0.1, -0.2, -0.3]])
                .to_dtype(DType::F32)
                .unwrap(),
        )
        .unwrap();
        let old = t2(&[[-0.9, -1.0, -2.0], [0.3, -0.2, -0.3]]);
        let reference = t2(&[[-0.6, -1.1, -2.0], [-0.2, -0.1, -0.3]]);
        let mask = Tensor::new(&[[1u8, 1, 1], [1, 1, 0]], &Device::Cpu).unwrap();
        let adv = Tensor::new(&[0.8f32, -0.8], &Device::Cpu).unwrap();
        let inputs = LossInputs {
            new_logps: new.as_tensor(),
            old_logps: Some(&old),
            ref_logps: Some(&reference),
            advantages: &adv,
            completion_mask: &mask,
        };
        let out = grpo_loss(&config(LossType::Grpo), &inputs, Accumulation::single(5)).unwrap();
        assert_eq!(out.loss.dtype(), DType::F32);
        assert!(out.loss.to_scalar::<f32>().unwrap().is_finite());
        // Row 0, token 0: ratio e^0.4 > 1.28 with A > 0; row 1, token 0:
        // ratio e^-0.4 < 0.8 with A < 0: one of 5 tokens at each end.
        assert!((out.metrics.clip_ratio_high - 0.2).abs() < 1e-7);
        assert!((out.metrics.clip_ratio_low - 0.2).abs() < 1e-7);
        assert!((out.metrics.clip_ratio_region - 0.4).abs() < 1e-7);
        let grads = out.loss.backward().unwrap();
        assert_eq!(grads.get(&new).unwrap().dtype(), DType::F32);
    }

    /// bf16 cannot count past 256 (256 + 1 rounds back to 256): a long
    /// bf16 batch must still average over every token.
    #[test]
    fn half_precision_sums_count_every_token() {
        let t = 600;
        let new_f32 = Tensor::full(-0.5f32, (1, t), &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, t), DType::U8, &Device::Cpu).unwrap();
        let adv = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut cfg = config(LossType::Bnpo);
        cfg.beta = 0.0;
        let run = |new: &Tensor| {
            let inputs = LossInputs {
                new_logps: new,
                old_logps: None,
                ref_logps: None,
                advantages: &adv,
                completion_mask: &mask,
            };
            grpo_loss(&cfg, &inputs, Accumulation::single(t)).unwrap()
        };
        let full = run(&new_f32);
        let half = run(&new_f32.to_dtype(DType::BF16).unwrap());
        let (a, b) = (scalar(&full.loss).unwrap(), scalar(&half.loss).unwrap());
        assert!(
            (a - -1.0).abs() < 1e-6 && (b - -1.0).abs() < 1e-2,
            "{a} {b}"
        );
        assert_eq!(half.metrics.active_tokens, t);
    }

    #[test]
    fn rejects_mismatched_shapes_and_a_missing_reference() {
        let new = t2(&[[-0.5, -1.0, -2.0]]);
        let mask = t2(&[[1.0, 1.0, 1.0]]);
        let bad_mask = Tensor::new(&[[1.0f64, 1.0]], &Device::Cpu).unwrap();
        let adv = Tensor::new(&[0.5f64], &Device::Cpu).unwrap();
        let two_adv = Tensor::new(&[0.5f64, 0.1], &Device::Cpu).unwrap();
        let cfg = config(LossType::Dapo);
        let run = |mask: &Tensor, adv: &Tensor, reference: Option<&Tensor>| {
            let inputs = LossInputs {
                new_logps: &new,
                old_logps: None,
                ref_logps: reference,
                advantages: adv,
                completion_mask: mask,
            };
            grpo_loss(&cfg, &inputs, Accumulation::single(3)).map(|_| ())
        };
        let err = run(&bad_mask, &adv, Some(&new)).unwrap_err().to_string();
        assert!(
            err.contains("completion mask") && err.contains("[1, 3]"),
            "{err}"
        );
        let err = run(&mask, &two_adv, Some(&new)).unwrap_err().to_string();
        assert!(err.contains("advantages must be [1]"), "{err}");
        let err = run(&mask, &adv, None).unwrap_err().to_string();
        assert!(err.contains("reference log-probs"), "{err}");
        assert!(run(&mask, &adv, Some(&new)).is_ok());
    }
}
