//! Batched sampling with a KV cache.
//!
//! Float32 models on the CPU generate with [`crate::cpu`]'s decoder, which batches
//! continuously over threads. Elsewhere all sequences run as one batch of
//! tensors: each prompt is prefilled once, left-padded beside the others; its
//! cache row is then copied to the group of samples that share it. Rows
//! finish independently (stop token, stop sequence, caller's stop test, or
//! the length limit); finished rows are dropped from the batch once a
//! quarter of it has finished. Either way every sequence draws from its own
//! random stream, seeded from the caller's generator.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::cpu::{CpuDecoder, Fingerprint};
use crate::error::Result;
use crate::layers::Kernels;
use crate::logprobs::{
    check_groups, check_temperature, grouped_completion_scores, scoring_temperature, PromptGroup,
};
use crate::model::Transformer;
use crate::request::{stops, FinishReason, Generation, Precision, Request, SamplingConfig};

/// Samples `samples_per_prompt` completions of every prompt, returned prompt
/// by prompt, sample by sample. The same `rng` state gives the same samples.
/// (Packs the weights afresh: a [`GenerationCache`] keeps them between calls.)
pub fn generate<R: Rng + ?Sized>(
    model: &Transformer,
    prompts: &[Vec<u32>],
    samples_per_prompt: usize,
    config: &SamplingConfig,
    rng: &mut R,
) -> Result<Vec<Generation>> {
    GenerationCache::new().generate(model, prompts, samples_per_prompt, config, rng)
}

/// [`generate`] with a stop test: `is_done(completion_so_far)` is asked after
/// every new token, so a caller can stop on decoded text (a stop string).
/// It may be called from several threads at once.
pub fn generate_until<R, F>(
    model: &Transformer,
    prompts: &[Vec<u32>],
    samples_per_prompt: usize,
    config: &SamplingConfig,
    rng: &mut R,
    is_done: F,
) -> Result<Vec<Generation>>
where
    R: Rng + ?Sized,
    F: Fn(&[u32]) -> bool + Sync,
{
    GenerationCache::new().generate_until(model, prompts, samples_per_prompt, config, rng, is_done)
}

/// The weights of a float32 CPU model packed for generation (and for
/// scoring without gradients), kept between calls while they stay the
/// same: hold one across calls that share weights (an evaluation's greedy
/// and sampled passes, a training step's rollouts, a frozen reference).
///
/// Each call checks the model's weights against those the copy was packed
/// from (one read of the weights, several times cheaper than packing) and
/// packs again when any value differs, so an optimizer step, a loaded
/// checkpoint or any other write to the weights is always seen. The copy is
/// as large as the model: drop the cache (or [`GenerationCache::clear`]
/// it) when it will not be used for a while. Other devices and dtypes
/// generate through the tensor model and keep nothing here.
///
/// The copy multiplies in the cache's [`Precision`] (float32 unless
/// made [`GenerationCache::with_precision`]); the tensor path ignores it.
#[derive(Debug, Default)]
pub struct GenerationCache {
    packed: Mutex<Option<Packed>>,
    precision: Precision,
}

/// A packed decoder and the model configuration it was packed for.
#[derive(Debug)]
struct Packed {
    config: ModelConfig,
    decoder: Arc<CpuDecoder>,
}

impl GenerationCache {
    /// An empty cache, packing float32 weights.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache packing weights in `precision`.
    pub fn with_precision(precision: Precision) -> Self {
        GenerationCache {
            packed: Mutex::default(),
            precision,
        }
    }

    /// The precision the packed copy multiplies in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// [`generate`], reusing the packed weights while they are current.
    pub fn generate<R: Rng + ?Sized>(
        &self,
        model: &Transformer,
        prompts: &[Vec<u32>],
        samples_per_prompt: usize,
        config: &SamplingConfig,
        rng: &mut R,
    ) -> Result<Vec<Generation>> {
        self.generate_until(model, prompts, samples_per_prompt, config, rng, |_| false)
    }

    /// [`generate_until`], reusing the packed weights while they are current.
    pub fn generate_until<R, F>(
        &self,
        model: &Transformer,
        prompts: &[Vec<u32>],
        samples_per_prompt: usize,
        config: &SamplingConfig,
        rng: &mut R,
        is_done: F,
    ) -> Result<Vec<Generation>>
    where
        R: Rng + ?Sized,
        F: Fn(&[u32]) -> bool + Sync,
    {
        let request = Request::new(prompts, samples_per_prompt, config, rng)?;
        if CpuDecoder::handles(model.device(), model.dtype())
            && !request.seeds.is_empty()
            && config.max_new_tokens > 0
        {
            let decoder = self.decoder(model)?;
            let threads = candle_core::utils::get_num_threads();
            return crate::cpu::decode(&decoder, &request, threads, &is_done);
        }
        generate_batched(model, &request, &is_done)
    }

    /// Whether a cache packs `model` (float32 weights on the CPU): it then
    /// generates and scores `model` on its packed copy; otherwise both go
    /// through the tensor model and the cache keeps nothing.
    pub fn packs(model: &Transformer) -> bool {
        CpuDecoder::handles(model.device(), model.dtype())
    }

    /// Log-probabilities [n, C] of the tokens of every completion of
    /// `groups`, without gradient: rows in order (the first group's
    /// completions, then the next group's), C the longest completion. The
    /// numbers of [`grouped_completion_scores`] (logits divided by
    /// `temperature`), computed from the packed copy in the cache's
    /// precision where the decoder handles the model, through the tensor
    /// model elsewhere: how a frozen model such as GRPO's KL reference
    /// scores a batch. Values past a completion's end are meaningless (0
    /// from the decoder): mask them.
    pub fn completion_logprobs(
        &self,
        model: &Transformer,
        groups: &[PromptGroup<'_>],
        temperature: f64,
    ) -> Result<Tensor> {
        if !Self::packs(model) {
            let scores = grouped_completion_scores(model, groups, temperature)?;
            return Ok(scores.logprobs.detach());
        }
        check_temperature(temperature)?;
        check_groups(groups, model.config().vocab_size)?;
        let decoder = self.decoder(model)?;
        let groups: Vec<(&[u32], &[&[u32]])> = groups
            .iter()
            .map(|g| (g.prompt, &g.completions[..]))
            .collect();
        let scale = (1.0 / scoring_temperature(temperature)) as f32;
        let threads = candle_core::utils::get_num_threads();
        let scores = crate::cpu::decoder_scores(&decoder, &groups, scale, threads);
        let width = scores.iter().map(Vec::len).max().unwrap_or(0);
        let mut padded = Vec::with_capacity(scores.len() * width);
        for row in &scores {
            padded.extend_from_slice(row);
            padded.resize(padded.len() + width - row.len(), 0.0);
        }
        Ok(Tensor::from_vec(
            padded,
            (scores.len(), width),
            model.device(),
        )?)
    }

    /// Frees the packed copy; the next call packs again.
    pub fn clear(&self) {
        *self.lock() = None;
    }

    /// The packed decoder for `model`'s current weights.
    fn decoder(&self, model: &Transformer) -> Result<Arc<CpuDecoder>> {
        let named = model.named_weights();
        let fingerprint = Fingerprint::of(&named)?;
        let mut packed = self.lock();
        if let Some(p) = packed.as_ref() {
            if &p.config == model.config() && p.decoder.packed_from(&fingerprint, self.precision) {
                return Ok(Arc::clone(&p.decoder));
            }
        }
        // Free the stale copy before packing the new one.
        *packed = None;
        let decoder = Arc::new(CpuDecoder::new(
            model.config(),
            &named,
            fingerprint,
            self.precision,
        )?);
        *packed = Some(Packed {
            config: model.config().clone(),
            decoder: Arc::clone(&decoder),
        });
        Ok(decoder)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Packed>> {
        // A panic while packing leaves at worst no copy: nothing to repair.
        self.packed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Generation as one batch of tensors (any device and dtype).
fn generate_batched<F>(
    model: &Transformer,
    request: &Request,
    is_done: &F,
) -> Result<Vec<Generation>>
where
    F: Fn(&[u32]) -> bool,
{
    let Request {
        prompts,
        group,
        config,
        sampler,
        seeds,
    } = request;
    let (prompts, group, config) = (*prompts, *group, *config);
    let mut rngs: Vec<StdRng> = seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
    let mut seqs: Vec<Generation> = (0..prompts.len() * group)
        .map(|i| request.start(i))
        .collect();
    if seqs.is_empty() || config.max_new_tokens == 0 {
        return Ok(seqs);
    }

    let (mut cache, prompt_logits) = prefill(model, prompts, config.max_new_tokens)?;
    let vocab = model.config().vocab_size;
    // The cache row and logits of every sequence, replicated from its prompt.
    let mut rows: Vec<usize> = (0..seqs.len()).collect();
    if group > 1 {
        let prompt_rows: Vec<usize> = rows.iter().map(|&i| i / group).collect();
        cache = cache.select_rows(&prompt_rows)?;
    }
    let mut logits: Vec<f32> = rows
        .iter()
        .flat_map(|&i| {
            let p = i / group;
            prompt_logits[p * vocab..(p + 1) * vocab].iter().copied()
        })
        .collect();
    let mut done = vec![false; seqs.len()];

    for _ in 0..config.max_new_tokens {
        for (row, &i) in rows.iter().enumerate() {
            if done[i] {
                continue;
            }
            let choice = sampler.choose(&logits[row * vocab..(row + 1) * vocab], &mut rngs[i]);
            let seq = &mut seqs[i];
            seq.tokens.push(choice.token);
            seq.logprobs.push(choice.logprob);
            seq.raw_logprobs.push(choice.raw_logprob);
            if stops(&seq.tokens, config) || is_done(&seq.tokens) {
                seq.finish = FinishReason::Stop;
                done[i] = true;
            } else if seq.tokens.len() >= config.max_new_tokens {
                done[i] = true;
            }
        }
        let finished = rows.iter().filter(|&&i| done[i]).count();
        if finished == rows.len() {
            break;
        }
        if finished * 4 >= rows.len() {
            let keep: Vec<usize> = (0..rows.len()).filter(|&r| !done[rows[r]]).collect();
            cache = cache.select_rows(&keep)?;
            rows = keep.into_iter().map(|r| rows[r]).collect();
        }
        let last: Vec<u32> = rows
            .iter()
            .map(|&i| seqs[i].tokens.last().copied().unwrap_or(0))
            .collect();
        let input = Tensor::from_vec(last, (rows.len(), 1), model.device())?;
        let hidden = model.hidden_states(&input, None, Some(&mut cache), Kernels::ForwardOnly)?;
        logits = model
            .lm_head(&hidden)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
    }
    Ok(seqs)
}

/// Runs the left-padded prompts through the model once; returns the cache
/// (room for `max_new_tokens` more) and each prompt's last-position logits,
/// flattened [prompts * vocab].
fn prefill(
    model: &Transformer,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
) -> Result<(KvCache, Vec<f32>)> {
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len() * width);
    let mut mask = Vec::with_capacity(prompts.len() * width);
    for p in prompts {
        let pad = width - p.len();
        ids.extend(std::iter::repeat_n(0u32, pad).chain(p.iter().copied()));
        mask.extend(std::iter::repeat_n(0u32, pad).chain(std::iter::repeat_n(1u32, p.len())));
    }
    let device = model.device();
    let ids = Tensor::from_vec(ids, (prompts.len(), width), device)?;
    let mask = Tensor::from_vec(mask, (prompts.len(), width), device)?;
    let mut cache = KvCache::new(
        model.config(),
        prompts.len(),
        // Sequences longer than the model's positions stop with an error, not
        // a cache sized by an arbitrary length limit.
        width + max_new_tokens.min(model.config().max_position_embeddings.max(1)),
        model.dtype(),
        device,
    )?;
    let hidden = model.hidden_states(&ids, Some(&mask), Some(&mut cache), Kernels::ForwardOnly)?;
    let last = hidden.narrow(1, width - 1, 1)?;
    let logits = model
        .lm_head(&last)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((cache, logits))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::cpu::decoder::tests::packed;
    use crate::{Architecture, ModelConfig, Policy};

    fn models() -> Vec<(String, Policy)> {
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
        let mut out: Vec<(String, Policy)> = ["tiny-qwen2", "tiny-llama"]
            .iter()
            .map(|name| {
                let policy =
                    Policy::load(fixtures.join(name), &Device::Cpu).expect("fixture loads");
                (name.to_string(), policy)
            })
            .collect();
        let mut qwen3 = ModelConfig::new(Architecture::Qwen3, 99, 64, 96, 2, 4, 2);
        qwen3.tie_word_embeddings = true;
        out.push((
            "random qwen3".into(),
            Policy::random(&qwen3, 5, &Device::Cpu).unwrap(),
        ));
        out
    }

    fn prompts() -> Vec<Vec<u32>> {
        vec![vec![5, 6, 7, 8, 9, 10], vec![11, 12], vec![20, 30, 40, 50]]
    }

    fn config(temperature: f64) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: 12,
            temperature,
            top_k: 40,
            stop_token_ids: vec![3],
            ..SamplingConfig::default()
        }
    }

    /// The CPU decoder and the tensor path sample the same tokens from the
    /// same seeds, with the same log-probabilities.
    #[test]
    fn the_decoder_and_the_tensor_path_agree() {
        for (name, policy) in models() {
            // Greedy, the whole distribution, tempered and cut by top-k.
            for (temperature, top_k) in [(0.0, 0), (1.0, 0), (0.7, 0), (1.0, 40)] {
                let config = SamplingConfig {
                    top_k,
                    ..config(temperature)
                };
                let prompts = prompts();
                let mut rng = StdRng::seed_from_u64(1000);
                let request = Request::new(&prompts, 3, &config, &mut rng).unwrap();
                let decoder = packed(&policy.model);
                let fast = crate::cpu::decode(&decoder, &request, 2, &|_| false).unwrap();
                let batched = generate_batched(&policy.model, &request, &|_| false).unwrap();
                assert_eq!(fast.len(), batched.len());
                for (a, b) in fast.iter().zip(&batched) {
                    assert_eq!(a.tokens, b.tokens, "{name} T={temperature}");
                    assert_eq!(a.finish, b.finish, "{name}");
                    assert_eq!(
                        (a.prompt_index, a.sample_index),
                        (b.prompt_index, b.sample_index)
                    );
                    for (x, y) in a
                        .logprobs
                        .iter()
                        .zip(&b.logprobs)
                        .chain(a.raw_logprobs.iter().zip(&b.raw_logprobs))
                    {
                        assert!((x - y).abs() < 1e-4, "{name}: {x} vs {y}");
                    }
                }
            }
        }
    }

    /// However the sequences are split over threads, each gets the same samples.
    #[test]
    fn samples_do_not_depend_on_the_thread_count() {
        let (_, policy) = models().remove(0);
        let (config, prompts) = (config(1.0), prompts());
        let request = Request::new(&prompts, 4, &config, &mut StdRng::seed_from_u64(0)).unwrap();
        let decoder = packed(&policy.model);
        let run = |threads| crate::cpu::decode(&decoder, &request, threads, &|_| false).unwrap();
        let one = run(1);
        for threads in [2, 3, 5, 16] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
        // Not all alike: the seeds do differ per sequence.
        assert!(one.iter().any(|g| g.tokens != one[0].tokens));
    }

    /// A cache packs once for calls with the same weights; a weight changed in
    /// place (as an optimizer step changes it) is seen by the next call.
    #[test]
    fn the_cache_repacks_when_a_weight_changes() {
        let (_, policy) = models().remove(0);
        let (config, prompts) = (config(0.0), prompts());
        let cache = GenerationCache::new();
        let run = |cache: &GenerationCache| {
            let mut rng = StdRng::seed_from_u64(0);
            cache
                .generate(&policy.model, &prompts, 2, &config, &mut rng)
                .unwrap()
        };
        let packed = |cache: &GenerationCache| Arc::clone(&cache.lock().as_ref().unwrap().decoder);
        let first = run(&cache);
        let before = packed(&cache);
        assert_eq!(run(&cache), first);
        assert!(Arc::ptr_eq(&packed(&cache), &before), "reused");

        // The final norm negated: every logit changes sign.
        let norm = policy
            .named_vars()
            .into_iter()
            .find(|(name, _)| name == "model.norm.weight")
            .unwrap()
            .1;
        norm.set(&norm.as_tensor().neg().unwrap()).unwrap();
        let after = run(&cache);
        assert!(!Arc::ptr_eq(&packed(&cache), &before), "packed again");
        assert_ne!(after, first);
        assert_eq!(after, run(&GenerationCache::new()), "as a fresh pack");
        cache.clear();
        assert!(cache.lock().is_none());
        assert_eq!(run(&cache), after);
    }

    /// A cache scores completions as the tensor path does, whichever path
    /// it takes (the decoder for float32; bfloat16 weights, which the
    /// decoder cannot read, must go through the tensor model), and names
    /// bad input.
    #[test]
    fn completion_logprobs_follow_the_tensor_path() {
        let (_, policy) = models().remove(0);
        let prompts: [&[u32]; 2] = [&[1, 2, 3], &[4]];
        let completions: [&[u32]; 3] = [&[5, 6], &[7, 8, 9, 10], &[11]];
        let groups = [
            PromptGroup {
                prompt: prompts[0],
                completions: vec![completions[0], completions[1]],
            },
            PromptGroup {
                prompt: prompts[1],
                completions: vec![completions[2]],
            },
        ];
        for model in [
            policy.model.clone(),
            policy.to_dtype(DType::BF16).unwrap().model,
        ] {
            let tolerance = if model.dtype() == DType::F32 {
                1e-4
            } else {
                1e-2
            };
            let expected = grouped_completion_scores(&model, &groups, 0.0)
                .and_then(|s| Ok(s.logprobs.to_dtype(DType::F32)?.to_vec2::<f32>()?))
                .unwrap();
            let ours = GenerationCache::new()
                .completion_logprobs(&model, &groups, 0.0)
                .and_then(|t| Ok(t.to_dtype(DType::F32)?.to_vec2::<f32>()?))
                .unwrap();
            assert_eq!(ours.len(), 3);
            for ((ours, expected), c) in ours.iter().zip(&expected).zip(completions) {
                assert_eq!(ours.len(), 4, "rows as wide as the longest completion");
                for (a, b) in ours.iter().zip(expected).take(c.len()) {
                    assert!((a - b).abs() < tolerance, "{:?}: {a} vs {b}", model.dtype());
                }
                if GenerationCache::packs(&model) {
                    assert!(
                        ours[c.len()..].iter().all(|&v| v == 0.0),
                        "padding {ours:?}"
                    );
                }
            }
        }
        let cache = GenerationCache::new();
        let outside = [2, policy.config.vocab_size as u32];
        let bad = [
            PromptGroup {
                prompt: &[],
                completions: vec![&[1]],
            },
            PromptGroup {
                prompt: &[1],
                completions: vec![&outside],
            },
        ];
        for group in bad {
            let err = cache.completion_logprobs(&policy.model, &[group], 1.0);
            assert!(err.is_err());
        }
        let err = cache.completion_logprobs(&policy.model, &groups, -1.0);
        assert!(err.is_err());
    }

    /// Half-precision models stay on the tensor path, which keeps their rounding.
    #[test]
    fn only_float32_cpu_models_use_the_decoder() {
        let (_, policy) = models().remove(0);
        assert!(CpuDecoder::handles(
            policy.model.device(),
            policy.model.dtype()
        ));
        let half = policy.to_dtype(DType::BF16).unwrap();
        assert!(!CpuDecoder::handles(
            half.model.device(),
            half.model.dtype()
        ));
        let out = generate(
            &half.model,
            &prompts(),
            2,
            &config(1.0),
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap();
        assert_eq!(out.len(), 6);
    }
}
