//! Scoring completions: per-token log-probabilities of `[prompt | completion]`
//! rows, with gradients.
//!
//! On the fused CPU kernels the rows are packed without padding, and
//! neighbouring rows that share their prompt (a GRPO group) are scored as a
//! group whose prompt runs through the model once
//! ([`policy::grouped_completion_scores`]). Elsewhere rows are packed as TRL
//! packs them (left-padded prompts, right-padded completions), but not all
//! in one tensor: they are sorted by completion length and scored in buckets
//! of similar length, then put back in their order and padded to the longest
//! completion. One long completion then costs its own bucket's padding, not
//! the whole batch's. Either way the loss sees the same `[B, C]` tensors as
//! with one pass, so its value and gradients are the same.

use candle_core::{DType, Device, Tensor};
use policy::{GenerationCache, PromptGroup, Transformer};

use crate::error::Result;

/// Rows per scoring pass: large enough for efficient matrix products, small
/// enough that sorted neighbours have similar lengths.
const BUCKET_ROWS: usize = 16;

/// One row: its prompt, its completion, and whether the completion counts in
/// the loss (a masked truncated completion does not).
pub(crate) struct Row<'a> {
    pub prompt: &'a [u32],
    pub completion: &'a [u32],
    pub counts: bool,
}

/// Scores of a batch of rows, in row order.
pub(crate) struct Scores {
    /// `[B, C]`: log-probs of the completion tokens at the given temperature,
    /// differentiable. Values past a row's completion are meaningless: mask
    /// them.
    pub logprobs: Tensor,
    /// `[B, C]`: entropy of each position's distribution, when asked for.
    pub entropy: Option<Tensor>,
}

/// `[B, C]` completion mask (1.0 for tokens that count) and its count of ones.
pub(crate) fn completion_mask(rows: &[Row<'_>], device: &Device) -> Result<(Tensor, usize)> {
    let c = rows.iter().map(|r| r.completion.len()).max().unwrap_or(0);
    let mut mask = Vec::with_capacity(rows.len() * c);
    let mut active = 0;
    for row in rows {
        let n = if row.counts { row.completion.len() } else { 0 };
        mask.extend(std::iter::repeat_n(1f32, n));
        mask.extend(std::iter::repeat_n(0f32, c - n));
        active += n;
    }
    Ok((Tensor::from_vec(mask, (rows.len(), c), device)?, active))
}

/// Log-probs (and optionally entropies) of every row's completion tokens
/// under `model`, logits divided by `temperature`.
pub(crate) fn score_rows(
    model: &Transformer,
    rows: &[Row<'_>],
    pad: u32,
    temperature: f64,
    with_entropy: bool,
) -> Result<Scores> {
    if model.fused_training() {
        return score_groups(model, rows, temperature, with_entropy);
    }
    let device = model.device();
    let width = rows.iter().map(|r| r.completion.len()).max().unwrap_or(0);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].completion.len(), rows[i].prompt.len()));
    let mut logprobs = Vec::new();
    let mut entropies = Vec::new();
    for bucket in order.chunks(BUCKET_ROWS) {
        let bucket_rows: Vec<&Row<'_>> = bucket.iter().map(|&i| &rows[i]).collect();
        let packed = pack(&bucket_rows, pad, device)?;
        let (lp, entropy) = if with_entropy {
            let s = policy::completion_logprobs_and_entropy(
                model,
                &packed.input_ids,
                &packed.attention_mask,
                packed.completion_len,
                temperature,
            )?;
            (s.logprobs, Some(s.entropy))
        } else {
            let lp = policy::completion_logprobs(
                model,
                &packed.input_ids,
                &packed.attention_mask,
                packed.completion_len,
                temperature,
            )?;
            (lp, None)
        };
        let right = width - packed.completion_len;
        logprobs.push(lp.pad_with_zeros(1, 0, right)?);
        if let Some(e) = entropy {
            entropies.push(e.pad_with_zeros(1, 0, right)?);
        }
    }
    // Row i of the batch is row position[i] of the sorted concatenation.
    let mut position = vec![0u32; rows.len()];
    for (sorted, &i) in order.iter().enumerate() {
        position[i] = sorted as u32;
    }
    let position = Tensor::from_vec(position, rows.len(), device)?;
    let unsort = |parts: &[Tensor]| -> Result<Tensor> {
        Ok(Tensor::cat(parts, 0)?.index_select(&position, 0)?)
    };
    Ok(Scores {
        logprobs: unsort(&logprobs)?,
        entropy: if with_entropy {
            Some(unsort(&entropies)?)
        } else {
            None
        },
    })
}

/// [`score_rows`] with consecutive rows of the same prompt as one group.
fn score_groups(
    model: &Transformer,
    rows: &[Row<'_>],
    temperature: f64,
    with_entropy: bool,
) -> Result<Scores> {
    let scores = policy::grouped_completion_scores(model, &groups(rows), temperature)?;
    Ok(Scores {
        logprobs: scores.logprobs,
        entropy: with_entropy.then_some(scores.entropy),
    })
}

/// Consecutive rows of the same prompt as one group.
fn groups<'a>(rows: &[Row<'a>]) -> Vec<PromptGroup<'a>> {
    let mut groups: Vec<PromptGroup<'a>> = Vec::new();
    for row in rows {
        match groups.last_mut() {
            Some(group) if group.prompt == row.prompt => group.completions.push(row.completion),
            _ => groups.push(PromptGroup {
                prompt: row.prompt,
                completions: vec![row.completion],
            }),
        }
    }
    groups
}

/// The frozen model of GRPO's KL penalty and, on the CPU, its weights
/// packed once for scoring (in `grpo.reference_precision`).
pub(crate) struct Reference {
    pub model: Transformer,
    pub packed: GenerationCache,
    /// Fills padded rows where the tensor model scores.
    pub pad: u32,
}

impl Reference {
    /// `[B, C]` log-probs of every row's completion tokens under the
    /// reference, without gradient. Values past a row's completion are
    /// meaningless: mask them.
    pub fn logprobs(&self, rows: &[Row<'_>], temperature: f64) -> Result<Tensor> {
        if GenerationCache::packs(&self.model) {
            let groups = groups(rows);
            return Ok(self
                .packed
                .completion_logprobs(&self.model, &groups, temperature)?);
        }
        let scores = score_rows(&self.model, rows, self.pad, temperature, false)?;
        Ok(scores.logprobs.detach())
    }
}

/// Rows packed into one forward pass.
struct Packed {
    /// `[b, P + C]` token ids (u32); padding holds the pad id.
    input_ids: Tensor,
    /// `[b, P + C]`: 1 for real tokens, 0 for padding (u32).
    attention_mask: Tensor,
    /// `C`, the widest completion of these rows.
    completion_len: usize,
}

/// `[left-padded prompt | right-padded completion]` rows.
fn pack(rows: &[&Row<'_>], pad: u32, device: &Device) -> Result<Packed> {
    let p = rows.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let c = rows.iter().map(|r| r.completion.len()).max().unwrap_or(0);
    let width = p + c;
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut attention = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let left = p - row.prompt.len();
        let right = c - row.completion.len();
        let real = row.prompt.len() + row.completion.len();
        ids.extend(std::iter::repeat_n(pad, left));
        ids.extend_from_slice(row.prompt);
        ids.extend_from_slice(row.completion);
        ids.extend(std::iter::repeat_n(pad, right));
        attention.extend(std::iter::repeat_n(0u32, left));
        attention.extend(std::iter::repeat_n(1u32, real));
        attention.extend(std::iter::repeat_n(0u32, right));
    }
    let b = rows.len();
    Ok(Packed {
        input_ids: Tensor::from_vec(ids, (b, width), device)?,
        attention_mask: Tensor::from_vec(attention, (b, width), device)?,
        completion_len: c,
    })
}

/// Sum of `x` where `mask` is 1, as f64 (no gradient).
pub(crate) fn masked_sum(x: &Tensor, mask: &Tensor) -> Result<f64> {
    let mask = mask.to_dtype(x.dtype())?;
    Ok((x.detach() * mask)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{Architecture, ModelConfig, Policy};

    #[test]
    fn prompts_pad_left_and_completions_pad_right() {
        let rows = [
            Row {
                prompt: &[1, 2, 3],
                completion: &[7],
                counts: true,
            },
            Row {
                prompt: &[4],
                completion: &[8, 9],
                counts: true,
            },
            Row {
                prompt: &[5, 6],
                completion: &[10, 11],
                counts: false,
            },
        ];
        let refs: Vec<&Row<'_>> = rows.iter().collect();
        let packed = pack(&refs, 0, &Device::Cpu).unwrap();
        let ids = packed.input_ids.to_vec2::<u32>().unwrap();
        assert_eq!(
            ids,
            vec![
                vec![1, 2, 3, 7, 0],
                vec![0, 0, 4, 8, 9],
                vec![0, 5, 6, 10, 11]
            ]
        );
        let mask = packed.attention_mask.to_vec2::<u32>().unwrap();
        assert_eq!(
            mask,
            vec![
                vec![1, 1, 1, 1, 0],
                vec![0, 0, 1, 1, 1],
                vec![0, 1, 1, 1, 1]
            ]
        );
        assert_eq!(packed.completion_len, 2);
        let (cm, active) = completion_mask(&rows, &Device::Cpu).unwrap();
        assert_eq!(
            cm.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 0.0], vec![1.0, 1.0], vec![0.0, 0.0]]
        );
        assert_eq!(active, 3);
    }

    #[test]
    fn bucketed_scores_equal_one_pass_in_row_order() {
        let config = ModelConfig::new(Architecture::Llama, 20, 16, 32, 1, 2, 1);
        let policy = Policy::random(&config, 3, &Device::Cpu).unwrap();
        // 40 rows (three buckets) of varied lengths, listed out of length order.
        let data: Vec<(Vec<u32>, Vec<u32>)> = (0..40u32)
            .map(|i| {
                let prompt = (0..1 + i % 4).map(|j| (i + j) % 19 + 1).collect();
                let completion = (0..1 + (i * 7) % 11)
                    .map(|j| (i * 3 + j) % 19 + 1)
                    .collect();
                (prompt, completion)
            })
            .collect();
        let rows: Vec<Row<'_>> = data
            .iter()
            .map(|(p, c)| Row {
                prompt: p,
                completion: c,
                counts: true,
            })
            .collect();
        let scores = score_rows(&policy.model, &rows, 0, 0.7, true).unwrap();
        let got = scores.logprobs.to_vec2::<f32>().unwrap();
        let got_entropy = scores.entropy.unwrap().to_vec2::<f32>().unwrap();
        for (i, (prompt, completion)) in data.iter().enumerate() {
            let ids: Vec<u32> = prompt.iter().chain(completion).copied().collect();
            let n = ids.len();
            let ids = Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap();
            let mask = Tensor::ones((1, n), DType::U32, &Device::Cpu).unwrap();
            let alone = policy::completion_logprobs_and_entropy(
                &policy.model,
                &ids,
                &mask,
                completion.len(),
                0.7,
            )
            .unwrap();
            let want = alone.logprobs.to_vec2::<f32>().unwrap();
            let want_entropy = alone.entropy.to_vec2::<f32>().unwrap();
            for j in 0..completion.len() {
                assert!((got[i][j] - want[0][j]).abs() < 1e-5, "row {i} token {j}");
                assert!(
                    (got_entropy[i][j] - want_entropy[0][j]).abs() < 1e-5,
                    "row {i} token {j}"
                );
            }
        }
    }
}
