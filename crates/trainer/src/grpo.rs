//! One GRPO step (Shao et al. 2024, DeepSeekMath), read top to bottom in
//! [`grpo_step`]: rollout, score, advantages, loss, backward and optimizer
//! step, metrics. Each phase is a short free function below it.
//!
//! What exists:
//! - prompts drawn from the task mixture as a pure function of a stored
//!   index, `group_size` completions per prompt sampled with temperature,
//!   top-p and top-k, cut at `max_completion_length`;
//! - rewards: verifier correctness, plus an optional weighted format reward,
//!   plus DAPO's optional soft overlong punishment ([`crate::RewardShaping`]);
//! - advantages ([`crate::estimate_advantages`]): GRPO's group-centred
//!   rewards scaled by the group std, the batch std or nothing; RLOO's
//!   leave-one-out baseline; REINFORCE++ and REINFORCE++-baseline (batch
//!   whitening over tokens, as verl computes them). Groups whose rewards all
//!   agree are counted (`frac_reward_zero_std`) and, with `dynamic_sampling`,
//!   replaced by groups of fresh prompts for a bounded number of rounds (DAPO);
//! - the policy loss ([`crate::grpo_loss`], TRL 1.16's formulas): token- or
//!   sequence-level importance ratios (GSPO); the clipped surrogate with
//!   separate low and high clip ranges (clip-higher) and optional two-sided
//!   clipping (`delta`), CISPO or SAPO; only the highest-entropy tokens
//!   (`top_entropy_quantile`); off-policy sequence masking; a k1, k2 or k3
//!   KL penalty to a frozen copy of the starting model; the `grpo`, `bnpo`,
//!   `dr_grpo`, `dapo` aggregations (`cispo` averages as `dapo`, `sapo` as
//!   `grpo`);
//! - `num_iterations` optimizer updates per sampled batch, whose ratios use
//!   the log-probs the policy gave before the first update; gradient
//!   accumulation over micro-batches; optionally no loss on truncated
//!   completions; log-probs scored at the sampling temperature, as TRL does.
//!
//! Deliberately left out: a separate inference engine (vLLM) and the
//! importance-sampling corrections it needs (TIS / MIS), verl's `remax`,
//! `grpo_passk` and `gpg` estimators and straight-through KL forms, the
//! `luspo` and `vespo` losses, entropy bonuses, reward models (rewards come
//! only from verifiers), a value function (that would be PPO), and
//! multi-process data parallelism.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Tensor};
use policy::{Generation, GenerationCache, Precision};
use serde::Serialize;
use tasks::{Mixture, Problem, Split, Verdict};

use crate::advantages::{compute_advantages, estimate_advantages, Advantages, ScaleRewards};
use crate::batch::{completion_mask, masked_sum, score_rows, Reference, Row};
use crate::config::GrpoSection;
use crate::curriculum::GroupOutcome;
use crate::error::Result;
use crate::eval::passes;
use crate::loss::{grpo_loss, Accumulation, LossInputs};
use crate::model::Model;
use crate::optim::{AdamW, Applied, Gradients};
use crate::progress::Phase;
use crate::rewards::RewardShaping;
use crate::sampler_correction::{sampler_weights, SamplerCorrection, WeightSpread};
use crate::seeds::{rng_for, Purpose};

/// Everything a GRPO step reads but does not change.
pub(crate) struct GrpoContext<'a> {
    /// The policy being trained.
    pub model: &'a Model,
    /// The frozen starting model, when `beta > 0`.
    pub reference: Option<&'a Reference>,
    /// Where prompts come from.
    pub mixture: &'a Mixture,
    /// The phase's settings.
    pub cfg: &'a GrpoSection,
    /// Gradient clipping (`optimizer.max_grad_norm`).
    pub max_grad_norm: f64,
    /// How verdicts become rewards.
    pub shaping: RewardShaping,
    /// The run seed (rollout sampling streams derive from it).
    pub run_seed: u64,
    /// What the CPU decoder multiplies in (`run.decode_precision`).
    pub decode_precision: Precision,
    /// Seed of the GRPO prompt stream.
    pub data_seed: u64,
    /// Completions per step written to samples.jsonl.
    pub samples_per_step: usize,
}

/// Where a step starts: which step, which prompt comes next, and how many
/// optimizer updates the phase has made (for the learning-rate schedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepPosition {
    /// GRPO steps done before this one.
    pub step: u64,
    /// Index of the next prompt in the GRPO prompt stream.
    pub cursor: u64,
    /// GRPO optimizer updates done before this step.
    pub updates: u64,
}

/// What a step produced.
pub(crate) struct StepOutput {
    /// Its line of metrics.jsonl (`global_step` left for the caller).
    pub metrics: GrpoMetrics,
    /// A few completions with their verdicts, for samples.jsonl.
    pub samples: Vec<SampleRecord>,
    /// Prompts drawn, dynamic-sampling refills included: the next cursor is
    /// the old one plus this.
    pub prompts_drawn: u64,
    /// Every group sampled, in order, refills and the groups they replaced
    /// included: what the curriculum learns from.
    pub groups_seen: Vec<GroupOutcome>,
}

/// One scored completion.
pub(crate) struct Completion {
    tokens: Vec<u32>,
    /// Per token, its log-prob when it was sampled (at the sampling
    /// temperature), as the decoder computed it.
    sampled_logps: Vec<f32>,
    text: String,
    truncated: bool,
    verdict: Verdict,
    reward: f64,
}

/// A prompt and its group of scored completions.
pub(crate) struct Group {
    problem: Problem,
    prompt: Vec<u32>,
    completions: Vec<Completion>,
}

impl Group {
    fn rewards(&self) -> Vec<f64> {
        self.completions.iter().map(|c| c.reward).collect()
    }

    /// How the group did, for the curriculum.
    fn outcome(&self) -> GroupOutcome {
        GroupOutcome {
            task: self.problem.task.clone(),
            level: self.problem.level,
            passes: self
                .completions
                .iter()
                .filter(|c| passes(c.verdict.reward))
                .count(),
            size: self.completions.len(),
        }
    }

    /// True when every completion got the same reward: no learning signal.
    fn is_flat(&self) -> Result<bool> {
        let n = self.completions.len();
        Ok(compute_advantages(&self.rewards(), n, ScaleRewards::None)?.zero_std[0])
    }
}

/// One GRPO step: sample, score, compute advantages, update, report.
pub(crate) fn grpo_step(
    ctx: &GrpoContext<'_>,
    optimizer: &mut AdamW,
    at: StepPosition,
) -> Result<StepOutput> {
    let start = Instant::now();
    crate::memory::reset_peak_rss();
    let mut clock = PhaseClock::default();
    let mut rng = rng_for(ctx.run_seed, Purpose::Rollout, at.step);
    let mut cursor = at.cursor;
    let problems = draw_problems(ctx, &mut cursor, ctx.cfg.batch_size / ctx.cfg.group_size)?;
    // The step's rollouts share the weights: packed once, freed before the update.
    let packed = GenerationCache::with_precision(ctx.decode_precision);
    let mut groups = score(ctx, rollout(ctx, &packed, problems, &mut rng, &mut clock)?)?;
    let mut groups_seen: Vec<GroupOutcome> = groups.iter().map(Group::outcome).collect();
    let refilled = match ctx.cfg.dynamic_sampling {
        true => refill_flat_groups(
            ctx,
            &packed,
            &mut groups,
            &mut cursor,
            &mut rng,
            &mut groups_seen,
            &mut clock,
        )?,
        false => 0,
    };
    drop(packed);
    let rollout_s = start.elapsed().as_secs_f64();

    let update_start = Instant::now();
    let advantages = advantages(ctx, &groups)?;
    let mut micro_batches = micro_batches(ctx, &groups, &advantages, &mut clock)?;
    let mut updates = Vec::with_capacity(ctx.cfg.num_iterations);
    for iteration in 0..ctx.cfg.num_iterations {
        let (grads, losses) =
            loss_and_backward(ctx, optimizer, &mut micro_batches, iteration, &mut clock)?;
        let optimizer_start = Instant::now();
        let lr = ctx.cfg.schedule().lr(at.updates + iteration as u64);
        let applied = optimizer.clip_and_step(grads, losses.loss, ctx.max_grad_norm, lr)?;
        clock.optimizer_s += optimizer_start.elapsed().as_secs_f64();
        updates.push(Update { losses, applied });
    }
    let update_s = update_start.elapsed().as_secs_f64();

    let timings = Timings {
        rollout_s,
        update_s,
        step_s: start.elapsed().as_secs_f64(),
        phases: clock,
    };
    Ok(StepOutput {
        metrics: metrics(
            at.step + 1,
            &groups,
            &advantages,
            &updates,
            refilled,
            timings,
        ),
        samples: samples(ctx, at.step + 1, &groups, &advantages),
        prompts_drawn: cursor - at.cursor,
        groups_seen,
    })
}

/// The next `n` training problems of the GRPO prompt stream.
fn draw_problems(ctx: &GrpoContext<'_>, cursor: &mut u64, n: usize) -> Result<Vec<Problem>> {
    let problems = (0..n as u64)
        .map(|i| ctx.mixture.draw(Split::Train, ctx.data_seed, *cursor + i))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    *cursor += n as u64;
    Ok(problems)
}

/// A prompt with its sampled completions, not yet scored.
struct Rollout {
    problem: Problem,
    prompt: Vec<u32>,
    generations: Vec<Generation>,
}

/// `group_size` completions of every problem from the current policy, no
/// gradients.
fn rollout(
    ctx: &GrpoContext<'_>,
    packed: &policy::GenerationCache,
    problems: Vec<Problem>,
    rng: &mut rand::rngs::StdRng,
    clock: &mut PhaseClock,
) -> Result<Vec<Rollout>> {
    let cfg = ctx.cfg;
    let prompts = problems
        .iter()
        .map(|p| ctx.model.prompt_ids(&p.prompt))
        .collect::<Result<Vec<_>>>()?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    ctx.model.check_fits(
        longest,
        cfg.max_completion_length,
        "grpo.max_completion_length",
    )?;
    let sampling = ctx.model.sampling(
        cfg.temperature,
        cfg.top_p,
        cfg.top_k,
        cfg.max_completion_length,
    );
    let generation_start = Instant::now();
    let generations = packed.generate(
        &ctx.model.policy.model,
        &prompts,
        cfg.group_size,
        &sampling,
        rng,
    )?;
    clock.generation_s += generation_start.elapsed().as_secs_f64();
    let mut rollouts: Vec<Rollout> = problems
        .into_iter()
        .zip(prompts)
        .map(|(problem, prompt)| Rollout {
            problem,
            prompt,
            generations: Vec::with_capacity(cfg.group_size),
        })
        .collect();
    for generation in generations {
        rollouts[generation.prompt_index]
            .generations
            .push(generation);
    }
    Ok(rollouts)
}

/// Verifier verdicts and shaped rewards of every completion.
fn score(ctx: &GrpoContext<'_>, rollouts: Vec<Rollout>) -> Result<Vec<Group>> {
    rollouts
        .into_iter()
        .map(|r| {
            let completions = r
                .generations
                .into_iter()
                .map(|g| {
                    let text = ctx.model.decode(&g.tokens)?;
                    let verdict = r.problem.verify(&text);
                    Ok(Completion {
                        reward: ctx.shaping.reward(&verdict, g.tokens.len()),
                        truncated: g.finish == policy::FinishReason::Length,
                        tokens: g.tokens,
                        sampled_logps: g.logprobs,
                        text,
                        verdict,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Group {
                problem: r.problem,
                prompt: r.prompt,
                completions,
            })
        })
        .collect()
}

/// Dynamic sampling (DAPO): groups whose rewards all agree are replaced by
/// groups of fresh prompts that do carry signal, for at most
/// `max_resample_rounds` rounds. Returns how many groups were replaced.
fn refill_flat_groups(
    ctx: &GrpoContext<'_>,
    packed: &policy::GenerationCache,
    groups: &mut [Group],
    cursor: &mut u64,
    rng: &mut rand::rngs::StdRng,
    seen: &mut Vec<GroupOutcome>,
    clock: &mut PhaseClock,
) -> Result<usize> {
    let mut replaced = 0;
    for _ in 0..ctx.cfg.max_resample_rounds {
        let mut flat = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            if group.is_flat()? {
                flat.push(i);
            }
        }
        if flat.is_empty() {
            break;
        }
        let fresh = score(
            ctx,
            rollout(
                ctx,
                packed,
                draw_problems(ctx, cursor, flat.len())?,
                rng,
                clock,
            )?,
        )?;
        seen.extend(fresh.iter().map(Group::outcome));
        let mut slots = flat.into_iter();
        for group in fresh {
            if group.is_flat()? {
                continue;
            }
            let Some(slot) = slots.next() else { break };
            groups[slot] = group;
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// Advantages of the batch's rewards under the configured estimator.
fn advantages(ctx: &GrpoContext<'_>, groups: &[Group]) -> Result<Advantages> {
    let rewards: Vec<f64> = groups.iter().flat_map(Group::rewards).collect();
    let tokens: Vec<usize> = groups
        .iter()
        .flat_map(|g| &g.completions)
        .map(|c| match ctx.counts(c) {
            true => c.tokens.len(),
            false => 0,
        })
        .collect();
    estimate_advantages(
        ctx.cfg.advantage,
        &rewards,
        &tokens,
        ctx.cfg.group_size,
        ctx.cfg.scale_rewards,
    )
}

impl GrpoContext<'_> {
    /// Whether a completion's tokens count in the loss.
    fn counts(&self, c: &Completion) -> bool {
        !(self.cfg.mask_truncated_completions && c.truncated)
    }
}

/// A slice of the batch whose gradients are computed in one backward pass.
struct MicroBatch<'a> {
    rows: Vec<Row<'a>>,
    /// `[b, C]` completion mask and its ones.
    mask: Tensor,
    active_tokens: usize,
    /// `[b]` advantages of its completions.
    advantages: Tensor,
    /// Log-probs under the policy that sampled the batch, kept from the
    /// first iteration for the later ones.
    old_logps: Option<Tensor>,
    /// Log-probs under the frozen reference, when `beta > 0`.
    ref_logps: Option<Tensor>,
    /// Per row, the log-probs its tokens were sampled with.
    sampled_logps: Vec<&'a [f32]>,
    /// With `grpo.sampler_correction`: the policy loss's weights, taken
    /// in the first iteration and kept for the later ones.
    sampler_weights: Option<Tensor>,
}

/// Completions in batch order, split into `micro_batches` contiguous slices;
/// reference log-probs computed once when `beta > 0`.
fn micro_batches<'a>(
    ctx: &GrpoContext<'_>,
    groups: &'a [Group],
    advantages: &Advantages,
    clock: &mut PhaseClock,
) -> Result<Vec<MicroBatch<'a>>> {
    let device = ctx.model.policy.device();
    let mut rows: Vec<Row<'a>> = Vec::with_capacity(advantages.values.len());
    let mut sampled: Vec<&'a [f32]> = Vec::with_capacity(rows.capacity());
    for g in groups {
        for c in &g.completions {
            rows.push(Row {
                prompt: &g.prompt,
                completion: &c.tokens,
                counts: ctx.counts(c),
            });
            sampled.push(&c.sampled_logps);
        }
    }
    let mut sampled = sampled.into_iter();
    let size = rows.len().div_ceil(ctx.cfg.micro_batches);
    let mut out = Vec::with_capacity(ctx.cfg.micro_batches);
    let mut adv = advantages.values.chunks(size);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Row<'a>> = rows.by_ref().take(size).collect();
        let values: Vec<f32> = adv
            .next()
            .unwrap_or(&[])
            .iter()
            .map(|&a| a as f32)
            .collect();
        let advantages = Tensor::from_vec(values, chunk.len(), device)?;
        let (mask, active_tokens) = completion_mask(&chunk, device)?;
        let reference_start = Instant::now();
        let ref_logps = match ctx.reference {
            Some(reference) if ctx.cfg.beta != 0.0 => {
                Some(reference.logprobs(&chunk, ctx.cfg.temperature)?)
            }
            _ => None,
        };
        clock.reference_s += reference_start.elapsed().as_secs_f64();
        out.push(MicroBatch {
            rows: chunk,
            mask,
            active_tokens,
            advantages,
            old_logps: None,
            ref_logps,
            sampled_logps: sampled.by_ref().take(size).collect(),
            sampler_weights: None,
        });
    }
    Ok(out)
}

/// Loss numbers of one iteration over the micro-batches.
#[derive(Default)]
struct IterationLosses {
    /// Sum of the micro-batch losses: the batch loss.
    loss: f64,
    /// Token-weighted sum, divided by `tokens` for the mean.
    kl: Option<f64>,
    /// Sums weighted by `clip_units`, divided by it for the means.
    clip_low: f64,
    clip_high: f64,
    clip_region: f64,
    cispo_clip: Option<f64>,
    clip_units: usize,
    /// Entropy summed over active tokens (first iteration only).
    entropy: Option<f64>,
    /// How far the log-probs tokens were sampled with lie from the
    /// trained model's (first iteration only).
    sampling_gap: SamplingGap,
    /// The sampler correction's weights (first iteration, when on).
    sampler_weights: Option<WeightSpread>,
    tokens: usize,
}

/// |sampled log-prob - trained model's log-prob| over active tokens: 0 up
/// to rounding when the decoder computes what training computes; about
/// 1e-2 with a bfloat16 decoder (TRL logs the same with vLLM).
#[derive(Default, Clone, Copy)]
struct SamplingGap {
    sum: f64,
    max: f64,
    tokens: usize,
}

impl SamplingGap {
    /// Adds the active tokens of a micro-batch: `trained` its `[b, C]`
    /// log-probs, `sampled` per row.
    fn add(&mut self, trained: &Tensor, sampled: &[&[f32]], rows: &[Row<'_>]) -> Result<()> {
        let trained = trained.detach().to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for ((trained, sampled), row) in trained.iter().zip(sampled).zip(rows) {
            if !row.counts {
                continue;
            }
            for (&t, &s) in trained
                .iter()
                .zip(sampled.iter())
                .take(row.completion.len())
            {
                let gap = (t as f64 - s as f64).abs();
                self.sum += gap;
                self.max = self.max.max(gap);
                self.tokens += 1;
            }
        }
        Ok(())
    }
}

/// The policy loss of every micro-batch, backpropagated and accumulated.
/// The first iteration keeps its log-probs as the "old" ones of the later
/// iterations (the policy has not moved yet, so they are exact).
fn loss_and_backward(
    ctx: &GrpoContext<'_>,
    optimizer: &AdamW,
    micro_batches: &mut [MicroBatch<'_>],
    iteration: usize,
    clock: &mut PhaseClock,
) -> Result<(Gradients, IterationLosses)> {
    let loss_cfg = ctx.cfg.loss();
    let accumulation = Accumulation {
        micro_batches: micro_batches.len(),
        active_tokens: micro_batches.iter().map(|m| m.active_tokens).sum(),
    };
    let mut grads = optimizer.zero_grads();
    let mut out = IterationLosses::default();
    for mb in micro_batches.iter_mut() {
        let first = iteration == 0;
        let forward_start = Instant::now();
        let scores = score_rows(
            &ctx.model.policy.model,
            &mb.rows,
            ctx.model.pad_id(),
            ctx.cfg.temperature,
            first || loss_cfg.needs_entropy(),
        )?;
        if first && loss_cfg.sampler_correction != SamplerCorrection::None {
            let sampled = sampled_logps(&mb.sampled_logps, scores.logprobs.dims2()?)?;
            let weights = sampler_weights(
                loss_cfg.sampler_correction,
                (
                    loss_cfg.sampler_correction_min,
                    loss_cfg.sampler_correction_max,
                ),
                &scores.logprobs,
                &sampled,
                &mb.mask,
            )?;
            if let Some((weights, spread)) = weights {
                mb.sampler_weights = Some(weights);
                out.sampler_weights = Some(out.sampler_weights.unwrap_or_default().merge(spread));
            }
        }
        let inputs = LossInputs {
            new_logps: &scores.logprobs,
            old_logps: mb.old_logps.as_ref(),
            ref_logps: mb.ref_logps.as_ref(),
            entropies: scores.entropy.as_ref(),
            advantages: &mb.advantages,
            completion_mask: &mb.mask,
            sampler_weights: mb.sampler_weights.as_ref(),
        };
        let loss = grpo_loss(&loss_cfg, &inputs, accumulation)?;
        let backward_start = Instant::now();
        clock.loss_forward_s += (backward_start - forward_start).as_secs_f64();
        optimizer.accumulate(&mut grads, &ctx.model.policy.model.backward(&loss.loss)?)?;
        clock.backward_s += backward_start.elapsed().as_secs_f64();

        let m = loss.metrics;
        let tokens = m.active_tokens as f64;
        out.loss += scalar(&loss.loss)?;
        out.kl = m.kl.map(|kl| out.kl.unwrap_or(0.0) + kl * tokens);
        let units = m.clip_units as f64;
        out.clip_low += m.clip_ratio_low * units;
        out.clip_high += m.clip_ratio_high * units;
        out.clip_region += m.clip_ratio_region * units;
        out.cispo_clip = m
            .cispo_clip_ratio
            .map(|c| out.cispo_clip.unwrap_or(0.0) + c * units);
        out.clip_units += m.clip_units;
        out.tokens += m.active_tokens;
        if first {
            out.sampling_gap
                .add(&scores.logprobs, &mb.sampled_logps, &mb.rows)?;
        }
        if let (true, Some(entropy)) = (first, &scores.entropy) {
            out.entropy = Some(out.entropy.unwrap_or(0.0) + masked_sum(entropy, &mb.mask)?);
        }
        if first && ctx.cfg.num_iterations > 1 {
            mb.old_logps = Some(scores.logprobs.detach());
        }
    }
    Ok((grads, out))
}

/// The log-probs rows were sampled with as `[rows, width]`, 0 past each
/// row's end.
fn sampled_logps(rows: &[&[f32]], (b, width): (usize, usize)) -> Result<Tensor> {
    let mut padded = vec![0f32; b * width];
    for (dst, row) in padded.chunks_exact_mut(width.max(1)).zip(rows) {
        let n = row.len().min(width);
        dst[..n].copy_from_slice(&row[..n]);
    }
    Ok(Tensor::from_vec(
        padded,
        (b, width),
        &candle_core::Device::Cpu,
    )?)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// One optimizer update's numbers.
struct Update {
    losses: IterationLosses,
    applied: Applied,
}

/// Wall-clock seconds of a step's parts.
struct Timings {
    rollout_s: f64,
    update_s: f64,
    step_s: f64,
    phases: PhaseClock,
}

/// Seconds spent in each phase of a step, summed over its micro-batches,
/// iterations and sampling rounds (the phases a TRL profile names).
#[derive(Debug, Clone, Copy, Default)]
struct PhaseClock {
    generation_s: f64,
    reference_s: f64,
    loss_forward_s: f64,
    backward_s: f64,
    optimizer_s: f64,
}

/// One line of metrics.jsonl for a GRPO step; names follow TRL's logs.
#[derive(Debug, Clone, Serialize)]
pub struct GrpoMetrics {
    /// Always `grpo`.
    pub phase: Phase,
    /// GRPO steps done, this one included.
    pub step: u64,
    /// Optimizer steps over both phases, this one's included.
    pub global_step: u64,
    /// Policy loss, averaged over the step's updates.
    pub loss: f64,
    /// Mean shaped reward.
    pub reward: f64,
    /// Mean over groups of the reward std (TRL's `reward_std`).
    pub reward_std: f64,
    /// Mean verifier correctness reward.
    pub accuracy: f64,
    /// Fraction of completions in the output format.
    pub format_rate: f64,
    /// Mean completion length in tokens.
    #[serde(rename = "completions/mean_length")]
    pub mean_length: f64,
    /// Shortest completion.
    #[serde(rename = "completions/min_length")]
    pub min_length: usize,
    /// Longest completion.
    #[serde(rename = "completions/max_length")]
    pub max_length: usize,
    /// Fraction of completions cut at `max_completion_length`.
    #[serde(rename = "completions/clipped_ratio")]
    pub clipped_ratio: f64,
    /// Mean KL term over active tokens; `null` when `beta == 0`.
    pub kl: Option<f64>,
    /// Mean entropy of the sampling distribution over completion tokens.
    pub entropy: f64,
    /// Fraction of tokens whose ratio was clipped below.
    #[serde(rename = "clip_ratio/low_mean")]
    pub clip_ratio_low: f64,
    /// Fraction clipped above.
    #[serde(rename = "clip_ratio/high_mean")]
    pub clip_ratio_high: f64,
    /// Fraction clipped at either end.
    #[serde(rename = "clip_ratio/region_mean")]
    pub clip_ratio_region: f64,
    /// With `loss_type = "cispo"`: fraction of tokens with a positive
    /// advantage whose importance weight was capped (TRL's name; written
    /// only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cispo_clip_ratio: Option<f64>,
    /// Mean over active tokens of |log-prob the token was sampled with -
    /// the trained model's log-prob of it| (first update): rounding when
    /// the decoder runs in float32, about 1e-2 in bfloat16.
    #[serde(rename = "sampling/sampling_logp_difference/mean")]
    pub sampling_logp_difference_mean: f64,
    /// The largest such difference.
    #[serde(rename = "sampling/sampling_logp_difference/max")]
    pub sampling_logp_difference_max: f64,
    /// With `grpo.sampler_correction`: the smallest weight of the policy
    /// loss over tokens (completions in the sequence modes), first update.
    #[serde(
        rename = "sampling/importance_sampling_ratio/min",
        skip_serializing_if = "Option::is_none"
    )]
    pub importance_sampling_ratio_min: Option<f64>,
    /// Their mean.
    #[serde(
        rename = "sampling/importance_sampling_ratio/mean",
        skip_serializing_if = "Option::is_none"
    )]
    pub importance_sampling_ratio_mean: Option<f64>,
    /// The largest.
    #[serde(
        rename = "sampling/importance_sampling_ratio/max",
        skip_serializing_if = "Option::is_none"
    )]
    pub importance_sampling_ratio_max: Option<f64>,
    /// Fraction of groups whose rewards all agree, in the batch trained on.
    pub frac_reward_zero_std: f64,
    /// Groups replaced by dynamic sampling.
    pub groups_resampled: usize,
    /// Learning rate of the last update.
    pub learning_rate: f64,
    /// Gradient norm before clipping, averaged over the updates.
    pub grad_norm: f64,
    /// Completion tokens sampled.
    pub num_tokens: usize,
    /// Completion tokens sampled per second of rollout.
    pub tokens_per_s: f64,
    /// Seconds sampling and scoring (dynamic-sampling rounds included).
    pub rollout_s: f64,
    /// Seconds in loss, backward and optimizer.
    pub update_s: f64,
    /// Seconds the whole step took.
    pub step_s: f64,
    /// With `curriculum.enabled`: `curriculum/<family>`, the level the step
    /// drew that family's problems at.
    #[serde(flatten)]
    pub curriculum: BTreeMap<String, u32>,
    /// Seconds sampling completions (inside `rollout_s`).
    #[serde(rename = "time/generation_s")]
    pub generation_s: f64,
    /// Seconds scoring completions under the reference model (`beta > 0`).
    #[serde(rename = "time/reference_s")]
    pub reference_s: f64,
    /// Seconds computing log-probs with gradients and the loss.
    #[serde(rename = "time/loss_forward_s")]
    pub loss_forward_s: f64,
    /// Seconds in the backward pass and gradient accumulation.
    #[serde(rename = "time/backward_s")]
    pub backward_s: f64,
    /// Seconds clipping gradients and applying AdamW.
    #[serde(rename = "time/optimizer_s")]
    pub optimizer_s: f64,
    /// Largest resident memory of the process during the step, in MB
    /// (Linux's VmHWM, reset when the step starts; where it cannot be
    /// reset, the peak since the process started). Absent where the
    /// system does not report it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<f64>,
    /// An update's loss or gradient was NaN or infinite, so it was not
    /// applied (written only when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

fn metrics(
    step: u64,
    groups: &[Group],
    advantages: &Advantages,
    updates: &[Update],
    groups_resampled: usize,
    t: Timings,
) -> GrpoMetrics {
    let all: Vec<&Completion> = groups.iter().flat_map(|g| &g.completions).collect();
    let n = all.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Completion) -> f64| all.iter().map(|c| f(c)).sum::<f64>() / n;
    let lengths = all.iter().map(|c| c.tokens.len());
    let num_tokens: usize = lengths.clone().sum();
    let first = &updates[0].losses;
    let per_token = |sum: f64, l: &IterationLosses| sum / l.tokens.max(1) as f64;
    let per_unit = |sum: f64, l: &IterationLosses| sum / l.clip_units.max(1) as f64;
    let over_updates =
        |f: &dyn Fn(&Update) -> f64| updates.iter().map(f).sum::<f64>() / updates.len() as f64;
    let group_std_mean =
        advantages.group_std.iter().sum::<f64>() / advantages.group_std.len().max(1) as f64;
    GrpoMetrics {
        phase: Phase::Grpo,
        step,
        global_step: 0,
        loss: over_updates(&|u| u.losses.loss),
        reward: mean(&|c| c.reward),
        reward_std: group_std_mean,
        accuracy: mean(&|c| c.verdict.reward),
        format_rate: mean(&|c| f64::from(u8::from(c.verdict.format_ok))),
        mean_length: num_tokens as f64 / n,
        min_length: lengths.clone().min().unwrap_or(0),
        max_length: lengths.max().unwrap_or(0),
        clipped_ratio: mean(&|c| f64::from(u8::from(c.truncated))),
        kl: first
            .kl
            .map(|_| over_updates(&|u| per_token(u.losses.kl.unwrap_or(0.0), &u.losses))),
        entropy: per_token(first.entropy.unwrap_or(0.0), first),
        sampling_logp_difference_mean: first.sampling_gap.sum
            / first.sampling_gap.tokens.max(1) as f64,
        sampling_logp_difference_max: first.sampling_gap.max,
        importance_sampling_ratio_min: first.sampler_weights.map(|w| w.min),
        importance_sampling_ratio_mean: first.sampler_weights.map(|w| w.mean()),
        importance_sampling_ratio_max: first.sampler_weights.map(|w| w.max),
        clip_ratio_low: over_updates(&|u| per_unit(u.losses.clip_low, &u.losses)),
        clip_ratio_high: over_updates(&|u| per_unit(u.losses.clip_high, &u.losses)),
        clip_ratio_region: over_updates(&|u| per_unit(u.losses.clip_region, &u.losses)),
        cispo_clip_ratio: first
            .cispo_clip
            .map(|_| over_updates(&|u| per_unit(u.losses.cispo_clip.unwrap_or(0.0), &u.losses))),
        frac_reward_zero_std: advantages.frac_reward_zero_std(),
        groups_resampled,
        learning_rate: updates.last().map_or(0.0, |u| u.applied.lr),
        grad_norm: over_updates(&|u| u.applied.grad_norm),
        num_tokens,
        tokens_per_s: num_tokens as f64 / t.rollout_s.max(1e-9),
        rollout_s: t.rollout_s,
        update_s: t.update_s,
        step_s: t.step_s,
        curriculum: BTreeMap::new(),
        generation_s: t.phases.generation_s,
        reference_s: t.phases.reference_s,
        loss_forward_s: t.phases.loss_forward_s,
        backward_s: t.phases.backward_s,
        optimizer_s: t.phases.optimizer_s,
        peak_rss_mb: crate::memory::peak_rss_mb(),
        skipped: updates.iter().any(|u| u.applied.skipped),
    }
}

/// One line of samples.jsonl: a completion and what the verifier said.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRecord {
    /// Always `grpo`.
    pub phase: Phase,
    /// GRPO steps done, this one included.
    pub step: u64,
    /// The problem's id (`add/3/train/17`).
    pub problem_id: String,
    /// The prompt text.
    pub prompt: String,
    /// The completion text (control tokens left out).
    pub completion: String,
    /// Shaped reward.
    pub reward: f64,
    /// Its advantage.
    pub advantage: f64,
    /// Completion length in tokens.
    pub length: usize,
    /// Cut at the length limit.
    pub truncated: bool,
    /// The verifier's verdict.
    pub verdict: Verdict,
}

/// A few completions spread over the batch's groups: the first completion
/// of each group, then the second, and so on.
fn samples(
    ctx: &GrpoContext<'_>,
    step: u64,
    groups: &[Group],
    advantages: &Advantages,
) -> Vec<SampleRecord> {
    let g = ctx.cfg.group_size;
    let total = groups.len() * g;
    (0..ctx.samples_per_step.min(total))
        .map(|i| {
            let (group, member) = (i % groups.len(), i / groups.len());
            let c = &groups[group].completions[member];
            SampleRecord {
                phase: Phase::Grpo,
                step,
                problem_id: groups[group].problem.id.clone(),
                prompt: groups[group].problem.prompt.clone(),
                completion: c.text.clone(),
                reward: c.reward,
                advantage: advantages.values[group * g + member],
                length: c.tokens.len(),
                truncated: c.truncated,
                verdict: c.verdict.clone(),
            }
        })
        .collect()
}
