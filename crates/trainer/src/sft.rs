//! Supervised cold start: teach the output format and a basic skill from the
//! tasks' worked solutions before reinforcement learning.
//!
//! One step draws `batch_size` training problems (problem `i` of the run is a
//! pure function of the data seed and `i`, so a resumed run sees the same
//! data), packs `[prompt | solution + eos]` rows, and minimises the mean
//! negative log-likelihood of the solution tokens: the prompt is context,
//! never a target. Gradients are accumulated over micro-batches so that the
//! result equals one pass over the whole batch, then clipped, then AdamW
//! steps at the scheduled learning rate.

use std::time::Instant;

use serde::Serialize;
use tasks::{Mixture, Split};

use crate::batch::{completion_mask, score_rows, Row};
use crate::config::SftSection;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::optim::AdamW;
use crate::progress::Phase;

/// One line of metrics.jsonl for an SFT step.
#[derive(Debug, Clone, Serialize)]
pub struct SftMetrics {
    /// Always `sft`.
    pub phase: Phase,
    /// Steps of the phase done, this one included.
    pub step: u64,
    /// Optimizer steps over both phases, this one included.
    pub global_step: u64,
    /// Mean negative log-likelihood per solution token.
    pub loss: f64,
    /// Learning rate of this step.
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Solution tokens trained on.
    pub num_tokens: usize,
    /// Tokens (prompt and solution) processed per second.
    pub tokens_per_s: f64,
    /// Seconds the step took.
    pub step_s: f64,
    /// The loss or gradient was NaN or infinite, so the step made no
    /// update (written only when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// Where an SFT step's data comes from.
pub(crate) struct SftData<'a> {
    /// The training mixture.
    pub mixture: &'a Mixture,
    /// Seed of the SFT problem stream.
    pub seed: u64,
    /// Index of the step's first problem in that stream.
    pub first: u64,
}

/// One SFT step at phase step `step` (0-based): data, loss, backward,
/// clipping to `max_grad_norm` and the optimizer update. Returns its metrics
/// with `global_step` left for the caller to fill in.
pub(crate) fn sft_step(
    model: &Model,
    optimizer: &mut AdamW,
    cfg: &SftSection,
    max_grad_norm: f64,
    data: &SftData<'_>,
    step: u64,
) -> Result<SftMetrics> {
    let start = Instant::now();
    let rows = encode_batch(model, cfg, data)?;
    let target_tokens: usize = rows.iter().map(|(_, c)| c.len()).sum();
    let all_tokens: usize = rows.iter().map(|(p, c)| p.len() + c.len()).sum();

    let mut grads = optimizer.zero_grads();
    let mut loss_sum = 0f64;
    let chunk = cfg.batch_size.div_ceil(cfg.micro_batches);
    for micro in rows.chunks(chunk) {
        let loss = micro_batch_loss(model, micro, target_tokens)?;
        loss_sum += loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        optimizer.accumulate(&mut grads, &model.policy.model.backward(&loss)?)?;
    }
    let applied =
        optimizer.clip_and_step(grads, loss_sum, max_grad_norm, cfg.schedule().lr(step))?;

    let seconds = start.elapsed().as_secs_f64();
    Ok(SftMetrics {
        phase: Phase::Sft,
        step: step + 1,
        global_step: 0,
        loss: loss_sum,
        learning_rate: applied.lr,
        grad_norm: applied.grad_norm,
        num_tokens: target_tokens,
        tokens_per_s: all_tokens as f64 / seconds.max(1e-9),
        step_s: seconds,
        skipped: applied.skipped,
    })
}

/// Prompt and target ids of the step's problems.
fn encode_batch(
    model: &Model,
    cfg: &SftSection,
    data: &SftData<'_>,
) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    (0..cfg.batch_size as u64)
        .map(|i| {
            let problem = data.mixture.draw(Split::Train, data.seed, data.first + i)?;
            if problem.solution.is_empty() {
                return Err(Error::invalid(
                    "sft.steps",
                    format!(
                        "problem {} has no worked solution to learn from (SFT needs tasks with solutions)",
                        problem.id
                    ),
                ));
            }
            let prompt = model.prompt_ids(&problem.prompt)?;
            let target = model.completion_ids(&problem.solution)?;
            model.check_fits(prompt.len(), target.len(), "model.max_position_embeddings")?;
            Ok((prompt, target))
        })
        .collect()
}

/// Summed negative log-likelihood of a micro-batch's target tokens divided
/// by the target tokens of the whole batch: the micro-batches' losses (and
/// gradients) add up to the batch mean.
fn micro_batch_loss(
    model: &Model,
    rows: &[(Vec<u32>, Vec<u32>)],
    batch_tokens: usize,
) -> Result<candle_core::Tensor> {
    let rows: Vec<Row<'_>> = rows
        .iter()
        .map(|(prompt, completion)| Row {
            prompt,
            completion,
            counts: true,
        })
        .collect();
    let scores = score_rows(&model.policy.model, &rows, model.pad_id(), 1.0, false)?;
    let (mask, _) = completion_mask(&rows, model.policy.device())?;
    Ok(((scores.logprobs * mask)?.sum_all()?.neg()? / batch_tokens as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::optim::AdamWConfig;
    use candle_core::Device;
    use tasks::MixtureEntry;

    fn tiny(mixture: &Mixture) -> Model {
        let mut config = Config::default();
        config.model.hidden_size = 32;
        config.model.intermediate_size = 64;
        config.model.num_hidden_layers = 1;
        config.model.num_attention_heads = 2;
        config.model.num_key_value_heads = 2;
        Model::from_config(&config, mixture, &Device::Cpu).unwrap()
    }

    fn sft_config(micro_batches: usize) -> SftSection {
        SftSection {
            steps: 30,
            batch_size: 6,
            micro_batches,
            lr: 1e-2,
            ..SftSection::default()
        }
    }

    #[test]
    fn loss_falls_on_repeated_data() {
        let mixture = Mixture::new(vec![MixtureEntry::family("add", 1, 1.0)]).unwrap();
        let model = tiny(&mixture);
        let cfg = sft_config(1);
        let mut opt = AdamWConfig::default().init(&model.policy.varmap).unwrap();
        let data = SftData {
            mixture: &mixture,
            seed: 1,
            first: 0,
        };
        let first = sft_step(&model, &mut opt, &cfg, 1.0, &data, 0).unwrap();
        let mut last = first.clone();
        for step in 1..30 {
            last = sft_step(&model, &mut opt, &cfg, 1.0, &data, step).unwrap();
        }
        assert!(first.loss.is_finite() && first.grad_norm > 0.0);
        assert!(
            last.loss < 0.5 * first.loss,
            "{} -> {}",
            first.loss,
            last.loss
        );
    }

    #[test]
    fn micro_batches_give_the_same_gradient_as_one_batch() {
        let mixture = Mixture::new(vec![MixtureEntry::family("add", 2, 1.0)]).unwrap();
        let model = tiny(&mixture);
        let data = SftData {
            mixture: &mixture,
            seed: 3,
            first: 0,
        };
        let norms: Vec<f64> = [1, 3]
            .into_iter()
            .map(|micro| {
                let cfg = sft_config(micro);
                let opt = AdamWConfig::default().init(&model.policy.varmap).unwrap();
                let rows = encode_batch(&model, &cfg, &data).unwrap();
                let total: usize = rows.iter().map(|(_, c)| c.len()).sum();
                let mut grads = opt.zero_grads();
                for chunk in rows.chunks(cfg.batch_size.div_ceil(micro)) {
                    let loss = micro_batch_loss(&model, chunk, total).unwrap();
                    opt.accumulate(&mut grads, &model.policy.model.backward(&loss).unwrap())
                        .unwrap();
                }
                grads.norm().unwrap()
            })
            .collect();
        assert!((norms[0] - norms[1]).abs() < 1e-5 * norms[0], "{norms:?}");
    }
}
