//! The GRPO policy loss: a policy-gradient objective per completion token,
//! optional masks, an optional KL penalty to a frozen reference, averaged as
//! the chosen [`LossType`] says. Every formula is TRL 1.16's
//! (`GRPOTrainer._compute_loss`), checked against its values and gradients.
//!
//! With `r` the importance weight and `A` the completion's advantage:
//!
//! ```text
//! token level:     r_t = exp(new_t - old_t)
//! sequence level:  r_t = exp(mean_t'(new_t' - old_t'))   for every t of a completion (GSPO)
//!
//! clipped losses:  loss_t = -min(min(r, delta) A, clamp(r, 1 - eps_low, 1 + eps_high) A)
//! cispo:           loss_t = -sg(min(r, eps_high)) A new_t
//! sapo:            loss_t = -sigmoid(tau (r - 1)) (4 / tau) A,   tau = tau_pos if A > 0 else tau_neg
//!
//! masks:           loss_t *= off_policy_keep * high_entropy_t
//! KL penalty:      loss_t += beta kl_t,   kl_t = k(new_t, ref_t) (times r with use_bias_correction_kl)
//! k1 = new - ref,  k2 = (new - ref)^2 / 2,  k3 = exp(ref - new) - (ref - new) - 1
//! ```
//!
//! What exists here:
//! - token-level and sequence-level importance weights (GSPO; Zheng et al.
//!   2025), asymmetric clipping (DAPO's clip-higher) and two-sided clipping
//!   `delta` (INTELLECT-2);
//! - three objectives: the clipped surrogate, CISPO's clipped importance
//!   weight as a stop-gradient coefficient on the log-prob (MiniMax-M1) and
//!   SAPO's soft gate (Gao et al. 2025);
//! - six ways to average ([`LossType`]): `grpo` and `sapo` (per-sequence
//!   mean, then batch mean), `bnpo` (token mean of the micro-batch),
//!   `dr_grpo` (sum over a fixed `B * max_completion_length`), `dapo` and
//!   `cispo` (token mean over every micro-batch of the optimizer step), each
//!   scaled for gradient accumulation exactly as TRL scales it;
//! - training only on the highest-entropy tokens (`top_entropy_quantile`,
//!   Wang et al. 2025) and off-policy sequence masking
//!   (`off_policy_mask_threshold`, DeepSeek-V3.2);
//! - the k1, k2 and k3 KL estimators (Schulman 2020), with or without the
//!   importance-ratio correction of TRL 1.16;
//! - the metrics TRL logs: `kl`, `clip_ratio/*`, `cispo_clip_ratio`.
//!
//! Deliberately not implemented: importance-sampling corrections for a
//! separate rollout engine (TIS / MIS; verity samples with the model it
//! trains), verl's straight-through `k1+` / `k3+` KL forms, an entropy bonus,
//! and the `luspo` and `vespo` losses.
//!
//! Where TRL and verl disagree, this follows TRL: CISPO's weight is capped at
//! `epsilon_high` itself (verl clips it to `[1 - low, 1 + high]`), and k3 is
//! not clamped to `[-10, 10]` (verl clamps it).

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::sampler_correction::SamplerCorrection;
use crate::{Error, Result};

/// The loss: an objective and a way to average it (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Clipped surrogate; mean over each completion's tokens, then over
    /// completions (DeepSeekMath). Long completions weigh less per token.
    Grpo,
    /// Clipped surrogate; mean over all tokens of the micro-batch.
    Bnpo,
    /// Clipped surrogate; sum over tokens divided by
    /// `B * max_completion_length`, a constant (Dr. GRPO): no length bias.
    DrGrpo,
    /// Clipped surrogate; mean over all tokens of every micro-batch in the
    /// optimizer step (DAPO; TRL 1.16's default).
    #[default]
    Dapo,
    /// The importance weight, capped at `epsilon_high` and held constant,
    /// times the advantage and the log-prob (MiniMax-M1); averaged as `dapo`.
    Cispo,
    /// A sigmoid gate of the importance weight instead of clipping (SAPO);
    /// averaged as `grpo`.
    Sapo,
}

/// The per-token objective a [`LossType`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Objective {
    Clipped,
    Cispo,
    Sapo,
}

/// How a [`LossType`] averages per-token losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Averaging {
    PerSequence,
    MicroBatchTokens,
    Constant,
    StepTokens,
}

impl LossType {
    /// The name used in configs: `grpo`, `bnpo`, `dr_grpo`, `dapo`, `cispo`
    /// or `sapo`.
    pub fn as_str(self) -> &'static str {
        match self {
            LossType::Grpo => "grpo",
            LossType::Bnpo => "bnpo",
            LossType::DrGrpo => "dr_grpo",
            LossType::Dapo => "dapo",
            LossType::Cispo => "cispo",
            LossType::Sapo => "sapo",
        }
    }

    /// Every loss type, in the order of the docs.
    pub const ALL: [LossType; 6] = [
        LossType::Grpo,
        LossType::Bnpo,
        LossType::DrGrpo,
        LossType::Dapo,
        LossType::Cispo,
        LossType::Sapo,
    ];

    fn objective(self) -> Objective {
        match self {
            LossType::Grpo | LossType::Bnpo | LossType::DrGrpo | LossType::Dapo => {
                Objective::Clipped
            }
            LossType::Cispo => Objective::Cispo,
            LossType::Sapo => Objective::Sapo,
        }
    }

    fn averaging(self) -> Averaging {
        match self {
            LossType::Grpo | LossType::Sapo => Averaging::PerSequence,
            LossType::Bnpo => Averaging::MicroBatchTokens,
            LossType::DrGrpo => Averaging::Constant,
            LossType::Dapo | LossType::Cispo => Averaging::StepTokens,
        }
    }
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
                    format!(
                        "unknown value '{s}' (expected grpo, bnpo, dr_grpo, dapo, cispo or sapo)"
                    ),
                )
            })
    }
}

/// Where the importance weight is taken (TRL's `importance_sampling_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceSampling {
    /// One ratio per token (PPO, GRPO).
    #[default]
    Token,
    /// One ratio per completion: the geometric mean of its token ratios,
    /// clipped as a whole (GSPO).
    Sequence,
}

/// How the KL divergence to the reference is estimated per token
/// (Schulman, "Approximating KL divergence", 2020).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// `new - ref`: unbiased, high variance, can be negative (verl's `kl`).
    K1,
    /// `(new - ref)^2 / 2`: biased, low variance, its gradient is the KL's
    /// (verl's `mse`).
    K2,
    /// `exp(ref - new) - (ref - new) - 1`: unbiased, low variance, never
    /// negative (TRL's only estimator, verl's `low_var_kl`).
    #[default]
    K3,
}

/// Settings of the policy loss. Plain data: the run config fills it in and
/// calls [`LossConfig::validate`] once. `Default` is TRL 1.16's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// The objective and how per-token losses are averaged.
    pub loss_type: LossType,
    /// One importance weight per token or per completion.
    pub importance_sampling: ImportanceSampling,
    /// Ratios below `1 - epsilon_low` stop the gradient of tokens with a
    /// negative advantage (clipped losses).
    pub epsilon_low: f64,
    /// Ratios above `1 + epsilon_high` stop the gradient of tokens with a
    /// positive advantage (clipped losses); for `cispo`, the largest
    /// importance weight itself.
    pub epsilon_high: f64,
    /// Two-sided clipping: ratios above `delta` stop the gradient of tokens
    /// with a negative advantage too (clipped losses; above
    /// `1 + epsilon_high`). `None` turns it off.
    pub delta: Option<f64>,
    /// SAPO's gate temperature for positive advantages.
    pub sapo_temperature_pos: f64,
    /// SAPO's gate temperature for other advantages.
    pub sapo_temperature_neg: f64,
    /// Weight of the KL penalty to the reference model; 0 turns it off (and
    /// then no reference log-probs are needed).
    pub beta: f64,
    /// How the per-token KL is estimated.
    pub kl_estimator: KlEstimator,
    /// Multiply the KL term by the importance weight (TRL 1.16's default).
    pub use_bias_correction_kl: bool,
    /// Only tokens whose entropy is in this top fraction of the micro-batch's
    /// tokens carry policy loss; 1 keeps every token.
    pub top_entropy_quantile: f64,
    /// Completions with a negative advantage whose mean `old - new` log-prob
    /// exceeds this carry no policy loss; `None` turns it off.
    pub off_policy_mask_threshold: Option<f64>,
    /// The configured completion length limit: `dr_grpo`'s constant
    /// denominator (not the padded width of a batch).
    pub max_completion_length: usize,
    /// Weights for a sampler that differs from the trained model, taken
    /// from [`LossInputs::sampler_weights`]; this says how they were made.
    pub sampler_correction: SamplerCorrection,
    /// Their lower bound (none when unset).
    pub sampler_correction_min: Option<f64>,
    /// Their upper bound.
    pub sampler_correction_max: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            loss_type: LossType::Dapo,
            importance_sampling: ImportanceSampling::Token,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            delta: None,
            sapo_temperature_pos: 1.0,
            sapo_temperature_neg: 1.05,
            beta: 0.0,
            kl_estimator: KlEstimator::K3,
            use_bias_correction_kl: true,
            top_entropy_quantile: 1.0,
            off_policy_mask_threshold: None,
            max_completion_length: 256,
            sampler_correction: SamplerCorrection::None,
            sampler_correction_min: None,
            sampler_correction_max: 3.0,
        }
    }
}

impl LossConfig {
    /// Checks every value, naming the offending key.
    pub fn validate(&self) -> Result<()> {
        let finite_at_least = |key: &str, value: f64, min: f64| -> Result<()> {
            if !(value.is_finite() && value >= min) {
                return Err(Error::invalid(
                    key,
                    format!("must be a finite number >= {min}, got {value}"),
                ));
            }
            Ok(())
        };
        if !(0.0..1.0).contains(&self.epsilon_low) {
            return Err(Error::invalid(
                "grpo.epsilon_low",
                format!("must be in [0, 1), got {}", self.epsilon_low),
            ));
        }
        finite_at_least("grpo.epsilon_high", self.epsilon_high, 0.0)?;
        let objective = self.loss_type.objective();
        if objective == Objective::Cispo && self.epsilon_high < 1.0 {
            return Err(Error::invalid(
                "grpo.epsilon_high",
                format!(
                    "with loss_type = \"cispo\" it is the largest importance weight (TRL's meaning; ScaleRL uses 5.0), so it must be at least 1, got {}",
                    self.epsilon_high
                ),
            ));
        }
        if let Some(delta) = self.delta {
            if objective != Objective::Clipped {
                return Err(Error::invalid(
                    "grpo.delta",
                    format!(
                        "two-sided clipping applies to the clipped losses (grpo, bnpo, dr_grpo, dapo), not {}",
                        self.loss_type
                    ),
                ));
            }
            if !(delta.is_finite() && delta > 1.0 + self.epsilon_high) {
                return Err(Error::invalid(
                    "grpo.delta",
                    format!(
                        "must be a finite number above 1 + epsilon_high = {}, got {delta}",
                        1.0 + self.epsilon_high
                    ),
                ));
            }
        }
        for (key, tau) in [
            ("grpo.sapo_temperature_pos", self.sapo_temperature_pos),
            ("grpo.sapo_temperature_neg", self.sapo_temperature_neg),
        ] {
            if !(tau.is_finite() && tau > 0.0) {
                return Err(Error::invalid(
                    key,
                    format!("must be a finite number > 0, got {tau}"),
                ));
            }
        }
        finite_at_least("grpo.beta", self.beta, 0.0)?;
        if !(self.top_entropy_quantile > 0.0 && self.top_entropy_quantile <= 1.0) {
            return Err(Error::invalid(
                "grpo.top_entropy_quantile",
                format!("must be in (0, 1], got {}", self.top_entropy_quantile),
            ));
        }
        if let Some(threshold) = self.off_policy_mask_threshold {
            finite_at_least("grpo.off_policy_mask_threshold", threshold, 0.0)?;
        }
        let max = self.sampler_correction_max;
        if !(max.is_finite() && max > 0.0) {
            return Err(Error::invalid(
                "grpo.sampler_correction_max",
                format!("must be a finite number > 0, got {max}"),
            ));
        }
        if let Some(min) = self.sampler_correction_min {
            if !(min.is_finite() && min >= 0.0 && min < max) {
                return Err(Error::invalid(
                    "grpo.sampler_correction_min",
                    format!(
                        "must be >= 0 and below grpo.sampler_correction_max ({max}), got {min}"
                    ),
                ));
            }
        }
        if self.max_completion_length == 0 {
            return Err(Error::invalid(
                "grpo.max_completion_length",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }

    /// The loss needs each token's entropy (`top_entropy_quantile < 1`).
    pub fn needs_entropy(&self) -> bool {
        self.top_entropy_quantile < 1.0
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
    /// together (TRL's `num_items_in_batch`): the `dapo` and `cispo`
    /// denominator.
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
    /// Entropy of each token's distribution under the policy being trained,
    /// `[B, T]`; needed when `top_entropy_quantile < 1`.
    pub entropies: Option<&'a Tensor>,
    /// One advantage per completion, `[B]`.
    pub advantages: &'a Tensor,
    /// 1 for completion tokens that count, 0 for padding and masked
    /// completions, `[B, T]`, any dtype.
    pub completion_mask: &'a Tensor,
    /// Weights of each token's policy loss for a sampler that is not the
    /// trained model (TRL's `importance_sampling_ratio` with vLLM), `[B,
    /// T]`, constants; see [`crate::sampler_weights`]. None weighs 1.
    pub sampler_weights: Option<&'a Tensor>,
}

/// Per-token pieces of the loss, all `[B, T]` in the dtype of `new_logps`.
#[derive(Debug, Clone)]
pub struct PerTokenLoss {
    /// The policy term times its masks plus `beta kl`, times the completion
    /// mask (0 where masked).
    pub loss: Tensor,
    /// The importance weight (1 where masked; per completion, repeated over
    /// its tokens, with sequence-level sampling).
    pub ratio: Tensor,
    /// The KL term as it enters the loss (times the ratio with bias
    /// correction; 0 where masked); `None` when `beta == 0`.
    pub kl: Option<Tensor>,
    /// The completion mask as 0.0 / 1.0.
    pub mask: Tensor,
    /// 1.0 where the ratio fell below `1 - epsilon_low` with a negative
    /// advantage (clipped losses: the clipped branch won, no gradient).
    pub low_clipped: Tensor,
    /// 1.0 where the ratio was capped from above with a positive advantage:
    /// above `1 + epsilon_high` (clipped losses) or `epsilon_high` (`cispo`).
    pub high_clipped: Tensor,
    /// 1.0 where the token carries policy loss: in the completion mask, kept
    /// by the off-policy mask, and among the highest-entropy tokens.
    pub policy_mask: Tensor,
    /// Clip fractions count completions, not tokens (sequence-level ratios).
    pub per_sequence: bool,
    /// The objective is CISPO's (its clip fraction is `cispo_clip_ratio`).
    pub cispo: bool,
}

/// Numbers worth logging from one micro-batch's loss, as TRL computes them
/// (means over the micro-batch's active tokens, or over its completions for
/// sequence-level clip fractions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossMetrics {
    /// Mean KL term over active tokens (TRL's `kl`); `None` when `beta == 0`.
    pub kl: Option<f64>,
    /// Fraction clipped at the low end (`clip_ratio/low_mean`); 0 for `cispo`
    /// and `sapo`.
    pub clip_ratio_low: f64,
    /// Fraction clipped at the high end (`clip_ratio/high_mean`).
    pub clip_ratio_high: f64,
    /// Fraction clipped at either end (`clip_ratio/region_mean`).
    pub clip_ratio_region: f64,
    /// Fraction of tokens with a positive advantage whose CISPO weight was
    /// capped (`cispo_clip_ratio`); `None` for other losses.
    pub cispo_clip_ratio: Option<f64>,
    /// What the clip fractions are fractions of: active tokens, or every
    /// completion of the micro-batch with sequence-level ratios.
    pub clip_units: usize,
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
/// reference log-probs, entropy masking without entropies, or a failing
/// tensor operation.
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

/// The loss of every token, before averaging.
///
/// The `min` and `clamp` of the clipped surrogate are written as a choice
/// made on constant masks: the clipped branch (a constant) where TRL's clip
/// metrics say the token is clipped, `r A` elsewhere. The value is the same,
/// and the gradient is the one torch gives (`-A dr` inside the clip range, 0
/// where clipped) without depending on how `min` splits ties.
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

    let log_ratio = (&new - &old)?;
    let log_weight = match cfg.importance_sampling {
        ImportanceSampling::Token => log_ratio,
        ImportanceSampling::Sequence => {
            let lengths = mask.sum_keepdim(D::Minus1)?.maximum(1.0)?;
            log_ratio
                .sum_keepdim(D::Minus1)?
                .div(&lengths)?
                .broadcast_as((b, t))?
                .contiguous()?
        }
    };
    let ratio = log_weight.exp()?;
    let ratio_const = ratio.detach();

    let objective = cfg.loss_type.objective();
    let (policy, low_clipped, high_clipped) = match objective {
        Objective::Clipped => clipped_surrogate(cfg, &ratio, &adv)?,
        Objective::Cispo => {
            let weight = ratio_const.minimum(cfg.epsilon_high)?;
            let capped = ratio_const.gt(cfg.epsilon_high)?.mul(&adv.gt(0.0)?)?;
            let loss = (weight * &adv)?.mul(&new)?.neg()?;
            (loss, zeros.to_dtype(DType::U8)?, capped)
        }
        Objective::Sapo => {
            let positive = adv.gt(0.0)?;
            let tau = positive.where_cond(
                &Tensor::full(cfg.sapo_temperature_pos, (b, t), adv.device())?.to_dtype(dtype)?,
                &Tensor::full(cfg.sapo_temperature_neg, (b, t), adv.device())?.to_dtype(dtype)?,
            )?;
            let gate = sigmoid(&((&ratio - 1.0)? * &tau)?)?.mul(&(tau.recip()? * 4.0)?)?;
            let none = zeros.to_dtype(DType::U8)?;
            ((gate * &adv)?.neg()?, none.clone(), none)
        }
    };

    let mut policy_mask = mask.clone();
    if let Some(threshold) = cfg.off_policy_mask_threshold {
        let kept = off_policy_keep(&old, &new, &mask, &adv, threshold)?;
        policy_mask = (policy_mask * kept)?;
    }
    if cfg.needs_entropy() {
        let entropies = inputs.entropies.ok_or_else(|| {
            tensor_error("top_entropy_quantile < 1 needs entropies, but none were given".into())
        })?;
        let high = high_entropy_mask(entropies, &active, cfg.top_entropy_quantile)?;
        policy_mask = (policy_mask * high.to_dtype(dtype)?)?;
    }
    let mut loss = (policy * &policy_mask)?;
    if let Some(weights) = inputs.sampler_weights {
        // Before the KL term, as TRL weights it.
        loss = (loss * keep(weights)?.detach())?;
    }

    let kl = if cfg.beta != 0.0 {
        let reference = inputs.ref_logps.ok_or_else(|| {
            tensor_error("beta > 0 needs reference log-probs, but none were given".into())
        })?;
        let kl = kl_estimate(cfg.kl_estimator, &new, &keep(reference)?.detach())?;
        let kl = if cfg.use_bias_correction_kl {
            (kl * &ratio)?
        } else {
            kl
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
        policy_mask,
        mask,
        per_sequence: cfg.importance_sampling == ImportanceSampling::Sequence,
        cispo: objective == Objective::Cispo,
    })
}

/// `-min(min(r, delta) A, clamp(r, 1 - eps_low, 1 + eps_high) A)` with the
/// low and high clip masks (u8).
fn clipped_surrogate(
    cfg: &LossConfig,
    ratio: &Tensor,
    adv: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let ratio_const = ratio.detach();
    let negative = adv.lt(0.0)?;
    let low = ratio_const.lt(1.0 - cfg.epsilon_low)?.mul(&negative)?;
    let high = ratio_const.gt(1.0 + cfg.epsilon_high)?.mul(&adv.gt(0.0)?)?;
    let clamped = ratio_const.clamp(1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high)?;
    let mut surrogate = (&low + &high)?.where_cond(&(clamped * adv)?, &(ratio * adv)?)?;
    if let Some(delta) = cfg.delta {
        // With A < 0 and r > delta (> 1 + eps_high), `min(r, delta) A` wins
        // and is a constant.
        let capped = ratio_const.gt(delta)?.mul(&negative)?;
        surrogate = capped.where_cond(&(adv * delta)?, &surrogate)?;
    }
    Ok((surrogate.neg()?, low, high))
}

/// `1 / (1 + exp(-x))` from differentiable operations.
fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

/// The per-token KL estimate of `new` from `reference` (both masked).
fn kl_estimate(estimator: KlEstimator, new: &Tensor, reference: &Tensor) -> Result<Tensor> {
    let delta = (reference - new)?;
    Ok(match estimator {
        KlEstimator::K1 => delta.neg()?,
        KlEstimator::K2 => (delta.sqr()? * 0.5)?,
        KlEstimator::K3 => ((delta.exp()? - &delta)? - 1.0)?,
    })
}

/// `[B, T]` 0/1: 1 for the tokens of completions kept by off-policy
/// sequence masking (DeepSeek-V3.2, TRL's `get_off_policy_mask`): a
/// completion is dropped when its advantage is negative and its mean
/// `old - new` log-prob over active tokens exceeds `threshold`.
fn off_policy_keep(
    old: &Tensor,
    new: &Tensor,
    mask: &Tensor,
    adv: &Tensor,
    threshold: f64,
) -> Result<Tensor> {
    let lengths = mask.sum_keepdim(D::Minus1)?.maximum(1.0)?;
    let mean_kl = (old - new.detach())?
        .mul(mask)?
        .sum_keepdim(D::Minus1)?
        .div(&lengths)?;
    let close = mean_kl.le(threshold)?.broadcast_as(adv.shape())?;
    let keep = adv.ge(0.0)?.maximum(&close)?;
    Ok(keep.to_dtype(mask.dtype())?)
}

/// `[B, T]` u8: 1 for active tokens whose entropy is at least the
/// `1 - rho` quantile (linear interpolation, as `torch.quantile`) of the
/// active tokens' entropies (Wang et al. 2025; TRL's `get_high_entropy_mask`).
fn high_entropy_mask(entropies: &Tensor, active: &Tensor, rho: f64) -> Result<Tensor> {
    let values = entropies.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let flags = active.to_vec2::<u8>()?;
    let mut sorted: Vec<f64> = values
        .iter()
        .zip(&flags)
        .flat_map(|(v, f)| v.iter().zip(f).filter(|(_, &f)| f != 0).map(|(&v, _)| v))
        .collect();
    let (b, t) = active.dims2()?;
    if sorted.is_empty() {
        return Ok(Tensor::zeros((b, t), DType::U8, active.device())?);
    }
    sorted.sort_by(f64::total_cmp);
    let threshold = quantile(&sorted, 1.0 - rho);
    let mask: Vec<u8> = values
        .iter()
        .zip(&flags)
        .flat_map(|(v, f)| {
            v.iter()
                .zip(f)
                .map(|(&v, &f)| u8::from(f != 0 && v >= threshold))
        })
        .collect();
    Ok(Tensor::from_vec(mask, (b, t), active.device())?)
}

/// The `q` quantile of sorted values, interpolating linearly between the two
/// nearest ranks (`torch.quantile`'s default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let lo = position.floor() as usize;
    let hi = position.ceil() as usize;
    let weight = position - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * weight
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
    let loss = match cfg.loss_type.averaging() {
        Averaging::PerSequence => {
            let lengths = mask.sum(D::Minus1)?.maximum(1.0)?;
            (per_token_loss.sum(D::Minus1)? / lengths)?.mean_all()?
        }
        Averaging::MicroBatchTokens => {
            let tokens = mask.sum_all()?.maximum(1.0)?;
            per_token_loss.sum_all()?.div(&tokens)?
        }
        Averaging::Constant => {
            (per_token_loss.sum_all()? / (b * cfg.max_completion_length) as f64)?
        }
        // The denominator already spans every micro-batch of the step, so
        // no division by the number of micro-batches.
        Averaging::StepTokens => {
            let tokens = accumulation.active_tokens.max(1) as f64;
            return Ok((per_token_loss.sum_all()? / tokens)?);
        }
    };
    Ok((loss / ga)?)
}

/// TRL's logged numbers: means over the micro-batch's active tokens, or over
/// its completions for sequence-level clip fractions.
fn metrics(per_token: &PerTokenLoss) -> Result<LossMetrics> {
    let sum = |x: &Tensor| -> Result<f64> { scalar(&at_least_f32(&x.detach())?.sum_all()?) };
    let active = sum(&per_token.mask)?;
    let denom = active.max(1.0);
    let masked_mean = |x: &Tensor| -> Result<f64> { Ok(sum(x)? / denom) };
    let (b, _) = per_token.mask.dims2()?;
    // A sequence-level clip flag is the same on every token of a completion;
    // TRL counts it once per completion, over all of them.
    let clip_mean = |x: &Tensor| -> Result<f64> {
        match per_token.per_sequence && x.dim(D::Minus1)? > 0 {
            true => Ok(sum(&at_least_f32(x)?.max(D::Minus1)?)? / b.max(1) as f64),
            false => masked_mean(x),
        }
    };
    let low = clip_mean(&per_token.low_clipped)?;
    let high = clip_mean(&per_token.high_clipped)?;
    let (clip_low, clip_high, cispo) = match per_token.cispo {
        true => (0.0, 0.0, Some(high)),
        false => (low, high, None),
    };
    Ok(LossMetrics {
        kl: per_token.kl.as_ref().map(masked_mean).transpose()?,
        clip_ratio_low: clip_low,
        clip_ratio_high: clip_high,
        // A token cannot be clipped at both ends (the advantage has one sign).
        clip_ratio_region: clip_low + clip_high,
        cispo_clip_ratio: cispo,
        clip_units: match per_token.per_sequence {
            true => b,
            false => active.round() as usize,
        },
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
    if cfg.needs_entropy() {
        if let Some(entropies) = inputs.entropies {
            same("entropies", entropies)?;
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
            ..LossConfig::default()
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
            entropies: None,
            advantages: &adv,
            completion_mask: &mask,
            sampler_weights: None,
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
        let entropies = t2(&[[0.3, f64::NAN, f64::INFINITY]]);
        let mask = t2(&[[1.0, 0.0, 0.0]]);
        let adv = Tensor::new(&[0.7f64], &Device::Cpu).unwrap();
        for lt in LossType::ALL {
            for importance_sampling in [ImportanceSampling::Token, ImportanceSampling::Sequence] {
                for kl_estimator in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
                    let cfg = LossConfig {
                        importance_sampling,
                        kl_estimator,
                        epsilon_high: if lt == LossType::Cispo { 5.0 } else { 0.28 },
                        top_entropy_quantile: 0.5,
                        off_policy_mask_threshold: Some(0.1),
                        ..config(lt)
                    };
                    let inputs = LossInputs {
                        new_logps: new.as_tensor(),
                        old_logps: Some(&old),
                        ref_logps: Some(&reference),
                        entropies: Some(&entropies),
                        advantages: &adv,
                        completion_mask: &mask,
                        sampler_weights: None,
                    };
                    let at = format!("{lt} {importance_sampling:?} {kl_estimator:?}");
                    let out = grpo_loss(&cfg, &inputs, Accumulation::single(1)).unwrap();
                    assert!(out.loss.to_scalar::<f64>().unwrap().is_finite(), "{at}");
                    let grads = out.loss.backward().unwrap();
                    let g = grads.get(&new).unwrap().to_vec2::<f64>().unwrap();
                    assert!(g[0][0].is_finite() && g[0][0] != 0.0, "{at}: {g:?}");
                    assert_eq!(&g[0][1..], &[0.0, 0.0], "{at}");
                }
            }
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
            entropies: None,
            advantages: &adv,
            completion_mask: &mask,
            sampler_weights: None,
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
                entropies: None,
                advantages: &adv,
                completion_mask: &mask,
                sampler_weights: None,
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
                entropies: None,
                advantages: adv,
                completion_mask: mask,
                sampler_weights: None,
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
