//! Log-probabilities of given tokens, differentiable end to end: what a
//! policy-gradient or supervised update backpropagates through.
//!
//! With the fused CPU kernels ([`Transformer::fused_training`]) the scores
//! come from the LM head a chunk of positions at a time, so no [B, C,
//! vocabulary] logits are held; elsewhere from the logits.

use std::sync::Arc;

use candle_core::{DType, Tensor, D};

use crate::cpu::{Picks, Sequence, SequenceLayout, NO_ROW};
use crate::error::{Error, Result};
use crate::layers::Kernels;
use crate::model::Transformer;

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
    if model.fused_training() {
        let scores = fused_scores(
            model,
            input_ids,
            attention_mask,
            completion_len,
            temperature,
        )?;
        return Ok(scores.logprobs);
    }
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
    if model.fused_training() {
        return fused_scores(
            model,
            input_ids,
            attention_mask,
            completion_len,
            temperature,
        );
    }
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

/// Completions that continue one prompt.
#[derive(Debug, Clone)]
pub struct PromptGroup<'a> {
    /// The prompt's token ids (at least one).
    pub prompt: &'a [u32],
    /// Each completion's token ids.
    pub completions: Vec<&'a [u32]>,
}

/// Log-probabilities and entropies [n, C] of the tokens of every completion
/// of `groups`, rows in order (the first group's completions, then the
/// next group's), C the longest completion; each token is scored given its
/// prompt and the completion before it, logits divided by `temperature` as
/// in [`completion_logprobs`]. Values past a completion's end are
/// meaningless: mask them.
///
/// The numbers, gradients included, are those of scoring every `[prompt |
/// completion]` row on its own. With [`Transformer::fused_training`] the
/// rows are packed without padding and each prompt's forward pass runs once
/// for its group: the completions attend to its keys and values, and their
/// gradients flow back into it summed. Otherwise the rows are padded into
/// one batch.
pub fn grouped_completion_scores(
    model: &Transformer,
    groups: &[PromptGroup<'_>],
    temperature: f64,
) -> Result<TokenScores> {
    check_temperature(temperature)?;
    check_groups(groups, model.config().vocab_size)?;
    let width = groups
        .iter()
        .flat_map(|g| g.completions.iter().map(|c| c.len()))
        .max()
        .unwrap_or(0);
    let n: usize = groups.iter().map(|g| g.completions.len()).sum();
    if width == 0 {
        // No token to score, on any path.
        let none = Tensor::zeros((n, 0), model.dtype(), model.device())?;
        return Ok(TokenScores {
            logprobs: none.clone(),
            entropy: none,
        });
    }
    if !model.fused_training() {
        return padded_group_scores(model, groups, width, temperature);
    }
    let (mut ids, mut positions, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
    let mut picks = Picks {
        rows: Vec::with_capacity(n * width),
        targets: Vec::with_capacity(n * width),
    };
    for group in groups.iter().filter(|g| !g.completions.is_empty()) {
        let (prompt_seq, prompt_start, p) = (seqs.len(), ids.len(), group.prompt.len());
        seqs.push(Sequence {
            start: prompt_start,
            len: p,
            prefix: None,
        });
        ids.extend_from_slice(group.prompt);
        positions.extend(0..p as u32);
        for completion in &group.completions {
            let start = ids.len();
            if !completion.is_empty() {
                seqs.push(Sequence {
                    start,
                    len: completion.len(),
                    prefix: Some(prompt_seq),
                });
            }
            ids.extend_from_slice(completion);
            positions.extend((p..p + completion.len()).map(|x| x as u32));
            // Token j is predicted by the row before it: the prompt's last
            // for the first token.
            for j in 0..width {
                let (row, target) = match completion.get(j) {
                    Some(&token) if j == 0 => ((prompt_start + p - 1) as u32, token),
                    Some(&token) => ((start + j - 1) as u32, token),
                    None => (NO_ROW, 0),
                };
                picks.rows.push(row);
                picks.targets.push(target);
            }
        }
    }
    let layout = Arc::new(SequenceLayout::new(seqs, ids.len())?);
    let read = picks.compact_rows();
    let hidden = model.packed_hidden_states(&ids, &positions, layout, &read)?;
    let scores = crate::cpu::token_logprobs(
        &hidden,
        model.lm_head_weight(),
        Arc::new(picks),
        scoring_temperature(temperature),
    )?;
    split_scores(&scores, n, width)
}

/// [`grouped_completion_scores`] on one padded batch: `[left-padded prompt
/// | right-padded completion]` rows.
fn padded_group_scores(
    model: &Transformer,
    groups: &[PromptGroup<'_>],
    width: usize,
    temperature: f64,
) -> Result<TokenScores> {
    let rows: Vec<(&[u32], &[u32])> = groups
        .iter()
        .flat_map(|g| g.completions.iter().map(move |c| (g.prompt, *c)))
        .collect();
    let p = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for (prompt, completion) in &rows {
        let (left, right) = (p - prompt.len(), width - completion.len());
        ids.extend(std::iter::repeat_n(0, left));
        ids.extend_from_slice(prompt);
        ids.extend_from_slice(completion);
        ids.extend(std::iter::repeat_n(0, right));
        mask.extend(std::iter::repeat_n(0u32, left));
        mask.extend(std::iter::repeat_n(1u32, prompt.len() + completion.len()));
        mask.extend(std::iter::repeat_n(0u32, right));
    }
    let shape = (rows.len(), p + width);
    let ids = Tensor::from_vec(ids, shape, model.device())?;
    let mask = Tensor::from_vec(mask, shape, model.device())?;
    completion_logprobs_and_entropy(model, &ids, &mask, width, temperature)
}

/// Every prompt has a token, and every token is in the vocabulary.
pub(crate) fn check_groups(groups: &[PromptGroup<'_>], vocab: usize) -> Result<()> {
    if let Some(g) = groups.iter().find(|g| g.prompt.is_empty()) {
        return Err(Error::Input(format!(
            "a prompt has no tokens (its group has {} completions)",
            g.completions.len()
        )));
    }
    let mut tokens = groups.iter().flat_map(|g| {
        let completions = g.completions.iter().flat_map(|c| c.iter());
        g.prompt.iter().chain(completions)
    });
    if let Some(&id) = tokens.find(|&&id| id as usize >= vocab) {
        return Err(Error::Input(format!(
            "token id {id} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// The temperature the logits are divided by: 0 (greedy) scores at 1.
pub(crate) fn scoring_temperature(temperature: f64) -> f64 {
    if temperature > 0.0 {
        temperature
    } else {
        1.0
    }
}

pub(crate) fn check_temperature(temperature: f64) -> Result<()> {
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(Error::Input(format!(
            "temperature {temperature} must be >= 0"
        )));
    }
    Ok(())
}

fn check_completion_len(t: usize, completion_len: usize) -> Result<()> {
    if completion_len == 0 || completion_len >= t {
        return Err(Error::Input(format!(
            "completion length {completion_len} must be between 1 and {} for rows of {t} tokens",
            t.saturating_sub(1)
        )));
    }
    Ok(())
}

/// The `[rows, 2]` output of the fused scores as [b, c] log-probs and entropies.
fn split_scores(scores: &Tensor, b: usize, c: usize) -> Result<TokenScores> {
    Ok(TokenScores {
        logprobs: scores.narrow(1, 0, 1)?.reshape((b, c))?,
        entropy: scores.narrow(1, 1, 1)?.reshape((b, c))?,
    })
}

/// [`completion_logprobs_and_entropy`] through the chunked LM head.
fn fused_scores(
    model: &Transformer,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    completion_len: usize,
    temperature: f64,
) -> Result<TokenScores> {
    let (b, t) = input_ids.dims2()?;
    check_completion_len(t, completion_len)?;
    check_temperature(temperature)?;
    let ids = input_ids.to_vec2::<u32>()?;
    let c = completion_len;
    let mut picks = Picks {
        rows: Vec::with_capacity(b * c),
        targets: Vec::with_capacity(b * c),
    };
    for (row, ids) in ids.iter().enumerate() {
        for j in 0..c {
            // Position t predicts token t + 1.
            picks.rows.push((row * t + t - c - 1 + j) as u32);
            picks.targets.push(ids[t - c + j]);
        }
    }
    let read = picks.compact_rows();
    let hidden = model.hidden_states_at(input_ids, attention_mask, &read)?;
    let scores = crate::cpu::token_logprobs(
        &hidden,
        model.lm_head_weight(),
        Arc::new(picks),
        scoring_temperature(temperature),
    )?;
    split_scores(&scores, b, c)
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
    check_completion_len(t, completion_len)?;
    check_temperature(temperature)?;
    let hidden = model.hidden_states(input_ids, Some(attention_mask), None, Kernels::Trainable)?;
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
