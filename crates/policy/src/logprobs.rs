//! Log-probabilities of given tokens, differentiable end to end: what a
//! policy-gradient or supervised update backpropagates through.

use candle_core::{DType, Tensor, D};

use crate::error::{Error, Result};
use crate::model::{Kernels, Transformer};

/// Per-token log-probabilities and entropies of completion tokens.
#[derive(Debug, Clone)]
pub struct TokenScores {
    /// [B, C]: log p(token | prefix) under softmax(logits / temperature).
    pub logprobs: Tensor,
    /// [B, C]: entropy of that distribution at each completion position.
    pub entropy: Tensor,
}

/// Log-probabilities [B, C] of the last `completion_len` tokens of each row.
///
/// `input_ids` [B, P + C] (u32) is `[left-padded prompt | right-padded
/// completion]` and `attention_mask` [B, P + C] marks its real tokens, as in
/// TRL's `_get_per_token_logps_and_entropies` with `logits_to_keep = C`.
/// The logits are divided by `temperature` first (use the sampling
/// temperature, as TRL does, so these match [`crate::Generation::logprobs`];
/// a temperature of 0 means greedy sampling and is scored at 1). Values at
/// padded completion positions are meaningless: mask them.
pub fn completion_logprobs(
    model: &Transformer,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    completion_len: usize,
    temperature: f64,
) -> Result<Tensor> {
    let logits = completion_logits(
        model,
        input_ids,
        attention_mask,
        completion_len,
        temperature,
    )?;
    let targets = completion_targets(input_ids, completion_len)?;
    gather_logprobs(&logits, &targets)
}

/// [`completion_logprobs`] plus the entropy of each position's distribution
/// (for metrics; it is differentiable too).
pub fn completion_logprobs_and_entropy(
    model: &Transformer,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    completion_len: usize,
    temperature: f64,
) -> Result<TokenScores> {
    let logits = completion_logits(
        model,
        input_ids,
        attention_mask,
        completion_len,
        temperature,
    )?;
    let targets = completion_targets(input_ids, completion_len)?;
    let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let entropy = (log_p.exp()? * &log_p)?.sum(D::Minus1)?.neg()?;
    let logprobs = log_p
        .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)?;
    Ok(TokenScores { logprobs, entropy })
}

/// Mean negative log-likelihood of the tokens `loss_mask` selects: the
/// supervised (SFT) loss, a differentiable scalar.
///
/// `loss_mask` [B, T] is 1 where token t is a target, predicted from tokens
/// before it (position 0 can never be one); typically the completion tokens
/// of `[prompt | completion]` rows.
pub fn token_cross_entropy(
    model: &Transformer,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    loss_mask: &Tensor,
) -> Result<Tensor> {
    let (b, t) = input_ids.dims2()?;
    if t < 2 {
        return Err(Error::Input(format!(
            "need at least 2 tokens per row to score, got {t}"
        )));
    }
    if loss_mask.dims() != [b, t] {
        return Err(Error::Input(format!(
            "loss_mask has shape {:?}, input_ids has [{b}, {t}]",
            loss_mask.dims()
        )));
    }
    let logprobs = completion_logprobs(model, input_ids, attention_mask, t - 1, 1.0)?;
    let mask = loss_mask.narrow(1, 1, t - 1)?.to_dtype(logprobs.dtype())?;
    let count = mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if count <= 0.0 {
        return Err(Error::Input("loss_mask selects no target token".into()));
    }
    Ok(((logprobs * mask)?.sum_all()?.neg()? / count)?)
}

/// Tempered logits [B, C, V] predicting the last C tokens.
fn completion_logits(
    model: &Transformer,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    completion_len: usize,
    temperature: f64,
) -> Result<Tensor> {
    let (_, t) = input_ids.dims2()?;
    if completion_len == 0 || completion_len >= t {
        return Err(Error::Input(format!(
            "completion length {completion_len} must be between 1 and {} for rows of {t} tokens",
            t.saturating_sub(1)
        )));
    }
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(Error::Input(format!(
            "temperature {temperature} must be >= 0"
        )));
    }
    let hidden = model.hidden_states(
        input_ids,
        Some(attention_mask),
        None,
        Kernels::Differentiable,
    )?;
    // Position t predicts token t + 1: keep the C positions before each target.
    let hidden = hidden.narrow(1, t - completion_len - 1, completion_len)?;
    let logits = model.lm_head(&hidden)?;
    if temperature > 0.0 && temperature != 1.0 {
        Ok((logits / temperature)?)
    } else {
        Ok(logits)
    }
}

fn completion_targets(input_ids: &Tensor, completion_len: usize) -> Result<Tensor> {
    let (_, t) = input_ids.dims2()?;
    Ok(input_ids
        .narrow(1, t - completion_len, completion_len)?
        .contiguous()?)
}

/// log softmax(logits)[target] without materialising the full log-softmax:
/// the target logit minus the log-sum-exp.
fn gather_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    // The max only stabilises exp; its gradient cancels, so it is detached.
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let lse = (logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + max)?;
    let picked = logits.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?;
    Ok((picked - lse)?.squeeze(D::Minus1)?)
}
