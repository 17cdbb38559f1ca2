//! Generation split over threads. Each thread takes a contiguous share of
//! the sequences, prefills the prompts they continue and decodes them on
//! its own, so threads never wait for each other; every sequence draws from
//! its own random stream, so the split does not change the samples. Models
//! too large for the cache decode on one thread instead, with each matrix
//! product split over the worker threads by output columns.

use std::ops::Range;

use rand::{rngs::StdRng, SeedableRng};

use super::forward::{Run, Scratch, Sequence};
use super::CpuDecoder;
use crate::error::{Error, Result};
use crate::generate::{stops, FinishReason, Generation, Request};
use crate::model::Transformer;

/// Prompt tokens per prefill pass: bounds the activation buffers.
const PREFILL_TOKENS: usize = 2048;

/// Weight bytes above which one thread decodes every sequence and the
/// products are split over the worker threads instead (a typical
/// last-level cache; bench-tiny has 12 MB, SmolLM2-135M 540 MB).
const SPLIT_PRODUCTS_ABOVE: usize = 32 << 20;

/// Generates `request` on up to `threads` threads. The results do not
/// depend on `threads`.
pub(crate) fn generate<F>(
    model: &Transformer,
    request: &Request,
    threads: usize,
    is_done: &F,
) -> Result<Vec<Generation>>
where
    F: Fn(&[u32]) -> bool + Sync,
{
    let prompts = request.prompts;
    let vocab = model.config().vocab_size;
    for (i, prompt) in prompts.iter().enumerate() {
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "prompt {i}: token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
    }
    let mut decoder = CpuDecoder::new(model)?;
    let total = prompts.len() * request.group;
    let mut threads = threads.clamp(1, total.max(1));
    // Weights beyond the last-level cache: threads each decoding a share
    // would each read all of them every step; one decoding thread whose
    // products split their columns over the workers reads them once.
    if threads > 1 && decoder.weight_bytes() > SPLIT_PRODUCTS_ABOVE {
        decoder.split_products = true;
        threads = 1;
    }
    let share = |t: usize| t * total / threads..(t + 1) * total / threads;
    let job = Job {
        decoder: &decoder,
        request,
    };
    let shares: Vec<Vec<Generation>> = std::thread::scope(|scope| {
        let job = &job;
        let others: Vec<_> = (1..threads)
            .map(|t| scope.spawn(move || job.run(share(t), is_done)))
            .collect();
        let mut done = vec![job.run(share(0), is_done)];
        done.extend(
            others
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
        );
        done
    });
    Ok(shares.into_iter().flatten().collect())
}

/// What every thread shares.
struct Job<'a> {
    decoder: &'a CpuDecoder,
    request: &'a Request<'a>,
}

impl Job<'_> {
    /// Generates sequences `share`, in order.
    fn run<F: Fn(&[u32]) -> bool>(&self, share: Range<usize>, is_done: &F) -> Vec<Generation> {
        if share.is_empty() {
            return Vec::new();
        }
        let vocab = self.decoder.dims.vocab;
        let mut scratch = Scratch::new(self.decoder);
        let first = share.start / self.request.group;
        let (prompts, prompt_logits) = self.prefill(
            first..(share.end - 1) / self.request.group + 1,
            &mut scratch,
        );

        let mut caches: Vec<Sequence> = Vec::with_capacity(share.len());
        let mut logits = Vec::with_capacity(share.len() * vocab);
        let mut rngs = Vec::with_capacity(share.len());
        let mut out = Vec::with_capacity(share.len());
        for i in share.clone() {
            let p = i / self.request.group - first;
            caches.push(prompts[p].clone());
            logits.extend_from_slice(&prompt_logits[p * vocab..(p + 1) * vocab]);
            rngs.push(StdRng::seed_from_u64(self.request.seeds[i]));
            out.push(self.request.start(i));
        }

        // `logits` row r belongs to sequence active[r].
        let mut active: Vec<usize> = (0..share.len()).collect();
        loop {
            let mut continuing = Vec::with_capacity(active.len());
            for (row, &s) in active.iter().enumerate() {
                let choice = self
                    .request
                    .sampler
                    .choose(&logits[row * vocab..(row + 1) * vocab], &mut rngs[s]);
                let seq = &mut out[s];
                seq.tokens.push(choice.token);
                seq.logprobs.push(choice.logprob);
                seq.raw_logprobs.push(choice.raw_logprob);
                if stops(&seq.tokens, self.request.config) || is_done(&seq.tokens) {
                    seq.finish = FinishReason::Stop;
                } else if seq.tokens.len() < self.request.config.max_new_tokens {
                    continuing.push(s);
                }
            }
            active = continuing;
            if active.is_empty() {
                return out;
            }
            let runs: Vec<Run> = active
                .iter()
                .map(|&s| Run {
                    sequence: s,
                    tokens: &out[s].tokens[out[s].tokens.len() - 1..],
                })
                .collect();
            logits = self.decoder.forward(&mut caches, &runs, &mut scratch);
        }
    }

    /// Runs prompts `range` through the model: their caches and last-token
    /// logits `[prompts, vocab]`.
    fn prefill(&self, range: Range<usize>, scratch: &mut Scratch) -> (Vec<Sequence>, Vec<f32>) {
        let room = self.request.config.max_new_tokens.min(256);
        let mut caches: Vec<Sequence> = range
            .clone()
            .map(|p| Sequence::new(self.decoder, self.request.prompts[p].len() + room))
            .collect();
        let mut logits = Vec::with_capacity(range.len() * self.decoder.dims.vocab);
        let mut runs: Vec<Run> = Vec::new();
        let mut tokens = 0;
        for (k, p) in range.enumerate() {
            let prompt = &self.request.prompts[p];
            if tokens + prompt.len() > PREFILL_TOKENS && !runs.is_empty() {
                logits.extend(self.decoder.forward(&mut caches, &runs, scratch));
                runs.clear();
                tokens = 0;
            }
            runs.push(Run {
                sequence: k,
                tokens: prompt,
            });
            tokens += prompt.len();
        }
        logits.extend(self.decoder.forward(&mut caches, &runs, scratch));
        (caches, logits)
    }
}
