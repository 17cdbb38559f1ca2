//! Continuous batching.
//!
//! Sequences wait in a queue, in order, for one of a bounded number of
//! slots. Each step, every sequence in a slot draws its next token from its
//! logits, finished sequences leave at once, and the queue refills the free
//! slots: a prompt is prefilled once, in the same step as the other
//! sequences' decode tokens, and each of its samples starts from a copy of
//! its cache. The threads share every step afresh ([`Split`]): small
//! models give each thread a balanced share of the slots and prefills to run
//! through the whole model, so a thread whose sequences finished early takes
//! over others' work at the next step; models too large for the cache run
//! one batch whose products are split by columns. Every sequence draws from
//! its own random stream and each row is computed the same in any batch, so
//! the samples depend on neither the thread count, the split nor the slots.

use std::sync::Mutex;

use rand::{rngs::StdRng, SeedableRng};

use super::forward::{Run, Scratch, Sequence};
use super::{CpuDecoder, Split};
use crate::error::{Error, Result};
use crate::generate::{stops, FinishReason, Generation, Request};
use crate::kernels::parallel::par_for;

/// Prompt tokens prefilled per step at most (unless one prompt is longer):
/// bounds the activation buffers.
const PREFILL_TOKENS: usize = 2048;

/// Weight bytes above which products are split by columns (a typical
/// last-level cache; bench-tiny has 12 MB, SmolLM2-135M 540 MB): threads
/// each running their own rows would each read all of them every step.
const SPLIT_COLUMNS_ABOVE: usize = 32 << 20;

/// Sequences decoded at once, at most.
const MAX_SLOTS: usize = 256;
/// Sequences decoded at once, at least (whatever their length).
const MIN_SLOTS: usize = 16;
/// Bytes of KV cache the slots may fill when every sequence runs to the
/// length limit; fewer slots when they would exceed it.
const KV_BUDGET: usize = 2 << 30;

/// How one generation call shares out its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) threads: usize,
    pub(crate) split: Split,
    /// Sequences decoded at once.
    pub(crate) slots: usize,
}

impl Plan {
    pub(crate) fn new(decoder: &CpuDecoder, request: &Request, threads: usize) -> Self {
        let threads = threads.max(1);
        let split = if threads > 1 && decoder.weight_bytes() > SPLIT_COLUMNS_ABOVE {
            Split::Columns
        } else {
            Split::Rows
        };
        let longest = request.prompts.iter().map(Vec::len).max().unwrap_or(0);
        let tokens = longest.saturating_add(request.config.max_new_tokens);
        let per_sequence = decoder.kv_bytes_per_token().saturating_mul(tokens).max(1);
        let slots = (KV_BUDGET / per_sequence).clamp(MIN_SLOTS, MAX_SLOTS);
        Plan {
            threads,
            split,
            slots,
        }
    }
}

/// Generates `request` on up to `threads` threads. The results do not
/// depend on `threads`.
pub(crate) fn generate<F>(
    decoder: &CpuDecoder,
    request: &Request,
    threads: usize,
    is_done: &F,
) -> Result<Vec<Generation>>
where
    F: Fn(&[u32]) -> bool + Sync,
{
    let plan = Plan::new(decoder, request, threads);
    Ok(generate_with(decoder, request, plan, is_done)?.0)
}

/// What a generation call did, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Forward passes (steps of the batch).
    pub(crate) steps: usize,
    /// Sequences holding a slot at once, at most.
    pub(crate) most_active: usize,
}

/// [`generate`] with a given plan.
pub(crate) fn generate_with<F>(
    decoder: &CpuDecoder,
    request: &Request,
    plan: Plan,
    is_done: &F,
) -> Result<(Vec<Generation>, Stats)>
where
    F: Fn(&[u32]) -> bool + Sync,
{
    let vocab = decoder.dims.vocab;
    for (i, prompt) in request.prompts.iter().enumerate() {
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "prompt {i}: token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
    }
    Ok(Batcher::new(decoder, request, plan).run(is_done))
}

/// A sequence holding a slot.
struct Slot {
    /// Which sequence of the request.
    index: usize,
    cache: Sequence,
    rng: StdRng,
    out: Generation,
    /// The next token is drawn from these.
    logits: Vec<f32>,
    finished: bool,
}

/// A prompt's cache and last-token logits, from which its samples start.
struct Prompt {
    index: usize,
    cache: Sequence,
    logits: Vec<f32>,
}

/// The queue, the slots and what finished.
struct Batcher<'a> {
    decoder: &'a CpuDecoder,
    request: &'a Request<'a>,
    plan: Plan,
    /// The next sequence waiting for a slot.
    next: usize,
    active: Vec<Slot>,
    /// The last prompt prefilled, while some of its samples still wait.
    ready: Option<Prompt>,
    done: Vec<Option<Generation>>,
    /// One per thread when each runs its own rows, else one.
    scratch: Vec<Scratch>,
    stats: Stats,
}

impl<'a> Batcher<'a> {
    fn new(decoder: &'a CpuDecoder, request: &'a Request<'a>, plan: Plan) -> Self {
        let total = request.seeds.len();
        let scratches = match plan.split {
            Split::Rows => plan.threads,
            Split::Columns => 1,
        };
        Batcher {
            decoder,
            request,
            plan,
            next: 0,
            active: Vec::with_capacity(plan.slots.min(total)),
            ready: None,
            done: (0..total).map(|_| None).collect(),
            scratch: (0..scratches).map(|_| Scratch::new(decoder)).collect(),
            stats: Stats::default(),
        }
    }

    fn run<F: Fn(&[u32]) -> bool + Sync>(mut self, is_done: &F) -> (Vec<Generation>, Stats) {
        loop {
            let (mut prompts, joining) = self.admit();
            if self.active.is_empty() && prompts.is_empty() {
                break;
            }
            self.stats.steps += 1;
            let holding = self.active.len() + joining.len();
            self.stats.most_active = self.stats.most_active.max(holding);
            self.step(&mut prompts, is_done);
            self.retire();
            self.join(prompts, &joining);
        }
        let out: Vec<Generation> = self.done.into_iter().flatten().collect();
        debug_assert_eq!(out.len(), self.request.seeds.len(), "every sequence ends");
        (out, self.stats)
    }

    /// Fills free slots from the queue: sequences whose prompt is ready join
    /// now; the others wait for the prompts returned, prefilled this step.
    fn admit(&mut self) -> (Vec<Prompt>, Vec<usize>) {
        let (group, total) = (self.request.group, self.request.seeds.len());
        if self
            .ready
            .as_ref()
            .is_some_and(|r| self.next >= (r.index + 1) * group)
        {
            self.ready = None;
        }
        let mut prompts: Vec<Prompt> = Vec::new();
        let mut joining = Vec::new();
        let mut tokens = 0;
        while self.active.len() + joining.len() < self.plan.slots && self.next < total {
            let (i, p) = (self.next, self.next / group);
            if let Some(ready) = self.ready.as_ref().filter(|r| r.index == p) {
                let slot = self.slot(i, ready);
                self.active.push(slot);
                self.next += 1;
                continue;
            }
            if prompts.last().map(|q| q.index) != Some(p) {
                let len = self.request.prompts[p].len();
                if !prompts.is_empty() && tokens + len > PREFILL_TOKENS {
                    break;
                }
                tokens += len;
                prompts.push(Prompt {
                    index: p,
                    cache: Sequence::new(self.decoder, len),
                    logits: Vec::new(),
                });
            }
            joining.push(i);
            self.next += 1;
        }
        (prompts, joining)
    }

    /// Sequence `i` in a slot, starting from its prompt.
    fn slot(&self, i: usize, prompt: &Prompt) -> Slot {
        let room = self.request.config.max_new_tokens.min(256);
        Slot {
            index: i,
            cache: prompt.cache.fork(room),
            rng: StdRng::seed_from_u64(self.request.seeds[i]),
            out: self.request.start(i),
            logits: prompt.logits.clone(),
            finished: false,
        }
    }

    /// Every slot draws a token; those that continue, and the new prompts,
    /// go through the model.
    fn step<F: Fn(&[u32]) -> bool + Sync>(&mut self, prompts: &mut [Prompt], is_done: &F) {
        let (decoder, request) = (self.decoder, self.request);
        match self.plan.split {
            Split::Rows => {
                let shares = shares(&mut self.active, prompts, request, self.scratch.len());
                let shares = shares.into_iter().zip(&mut self.scratch);
                in_parallel(shares.collect(), |((slots, prompts), scratch)| {
                    let mut share = Share {
                        slots,
                        prompts,
                        scratch,
                    };
                    share.sample(request, is_done);
                    share.forward(decoder, request, Split::Rows);
                });
            }
            Split::Columns => {
                let per_thread = self.active.len().div_ceil(self.plan.threads).max(1);
                in_parallel(self.active.chunks_mut(per_thread).collect(), |slots| {
                    for slot in slots.iter_mut() {
                        slot.sample(request, is_done);
                    }
                });
                let mut share = Share {
                    slots: &mut self.active,
                    prompts,
                    scratch: &mut self.scratch[0],
                };
                share.forward(decoder, request, Split::Columns);
            }
        }
    }

    /// Finished sequences leave their slots.
    fn retire(&mut self) {
        let (finished, active) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|s| s.finished);
        self.active = active;
        for slot in finished {
            let Slot { index, out, .. } = slot;
            self.done[index] = Some(out);
        }
    }

    /// Sequences waiting for this step's prompts take their slots.
    fn join(&mut self, prompts: Vec<Prompt>, joining: &[usize]) {
        let mut waiting = joining.iter().copied().peekable();
        for prompt in prompts {
            while let Some(i) = waiting.next_if(|&i| i / self.request.group == prompt.index) {
                let slot = self.slot(i, &prompt);
                self.active.push(slot);
            }
            self.ready = Some(prompt);
        }
    }
}

impl Slot {
    /// Draws the next token from `logits`; marks the sequence finished when
    /// it stops or reaches the length limit.
    fn sample<F: Fn(&[u32]) -> bool>(&mut self, request: &Request, is_done: &F) {
        let choice = request.sampler.choose(&self.logits, &mut self.rng);
        let out = &mut self.out;
        out.tokens.push(choice.token);
        out.logprobs.push(choice.logprob);
        out.raw_logprobs.push(choice.raw_logprob);
        if stops(&out.tokens, request.config) || is_done(&out.tokens) {
            out.finish = FinishReason::Stop;
            self.finished = true;
        } else if out.tokens.len() >= request.config.max_new_tokens {
            self.finished = true;
        }
    }

    /// The token to run next.
    fn run(&mut self) -> Run<'_> {
        let Slot { cache, out, .. } = self;
        let out: &Generation = out;
        Run {
            cache,
            tokens: &out.tokens[out.tokens.len() - 1..],
        }
    }
}

/// The slots and prompts one thread runs in a step.
struct Share<'s> {
    slots: &'s mut [Slot],
    prompts: &'s mut [Prompt],
    scratch: &'s mut Scratch,
}

impl Share<'_> {
    fn sample<F: Fn(&[u32]) -> bool>(&mut self, request: &Request, is_done: &F) {
        for slot in self.slots.iter_mut() {
            slot.sample(request, is_done);
        }
    }

    /// One forward pass over the continuing slots' last tokens and the
    /// prompts; each gets its logits.
    fn forward(&mut self, decoder: &CpuDecoder, request: &Request, split: Split) {
        let mut runs: Vec<Run> = Vec::with_capacity(self.slots.len() + self.prompts.len());
        runs.extend(self.slots.iter_mut().filter(|s| !s.finished).map(Slot::run));
        runs.extend(self.prompts.iter_mut().map(|p| Run {
            cache: &mut p.cache,
            tokens: &request.prompts[p.index],
        }));
        if runs.is_empty() {
            return;
        }
        let logits = decoder.forward(&mut runs, self.scratch, split);
        drop(runs);
        let mut rows = logits.chunks_exact(decoder.dims.vocab);
        for (slot, row) in self.slots.iter_mut().filter(|s| !s.finished).zip(&mut rows) {
            slot.logits.copy_from_slice(row);
        }
        for (prompt, row) in self.prompts.iter_mut().zip(rows) {
            prompt.logits = row.to_vec();
        }
    }
}

/// Cuts the slots and prompts into `parts` contiguous shares of about equal
/// tokens (a slot runs one, a prompt its length), prompts first.
fn shares<'s>(
    slots: &'s mut [Slot],
    prompts: &'s mut [Prompt],
    request: &Request,
    parts: usize,
) -> Vec<(&'s mut [Slot], &'s mut [Prompt])> {
    let len = |p: &Prompt| request.prompts[p.index].len();
    let total = slots.len() + prompts.iter().map(len).sum::<usize>();
    let (mut slots, mut prompts) = (slots, prompts);
    let mut taken = 0;
    let mut out = Vec::with_capacity(parts);
    for part in 0..parts {
        let target = total * (part + 1) / parts;
        let mut n_prompts = 0;
        while n_prompts < prompts.len() && taken < target {
            taken += len(&prompts[n_prompts]);
            n_prompts += 1;
        }
        let n_slots = target.saturating_sub(taken).min(slots.len());
        taken += n_slots;
        let (mine, rest) = std::mem::take(&mut prompts).split_at_mut(n_prompts);
        prompts = rest;
        let (own, left) = std::mem::take(&mut slots).split_at_mut(n_slots);
        slots = left;
        out.push((own, mine));
    }
    debug_assert!(slots.is_empty() && prompts.is_empty(), "all shared out");
    out
}

/// Runs `f` on every item, spread over the worker threads.
fn in_parallel<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync) {
    if items.len() <= 1 {
        items.into_iter().for_each(f);
        return;
    }
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    par_for(items.len(), |range| {
        for item in &items[range] {
            let taken = item.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = taken {
                f(t);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BinaryHeap;

    use candle_core::Device;
    use rand::Rng;

    use super::*;
    use crate::decoder::tests::packed;
    use crate::{Architecture, ModelConfig, Policy, SamplingConfig};

    /// Steps a continuous batch of `slots` takes when sequence i needs one
    /// step for its prompt and then `lengths[i]` sampling steps, and a
    /// finished sequence's slot takes the next one in the queue at the
    /// following step (one sample per prompt).
    fn ideal_steps(lengths: &[usize], slots: usize) -> usize {
        // Min-heap of the first step at which each slot is free.
        let mut free: BinaryHeap<std::cmp::Reverse<usize>> =
            (0..slots).map(|_| std::cmp::Reverse(1)).collect();
        let mut last = 0;
        for &len in lengths {
            let std::cmp::Reverse(start) = free.pop().expect("a slot");
            let finish = start + len;
            last = last.max(finish);
            free.push(std::cmp::Reverse(finish + 1));
        }
        last
    }

    /// Sequences of very different lengths through few slots: the samples
    /// are those of any other schedule (threads, split, slots), no more
    /// sequences than slots run at once, and a finished sequence's slot is
    /// taken by the next one at once (the step count of an ideal queue).
    #[test]
    fn uneven_lengths_through_few_slots() {
        let cfg = ModelConfig::new(Architecture::Llama, 40, 32, 48, 2, 4, 2);
        let policy = Policy::random(&cfg, 4, &Device::Cpu).unwrap();
        let decoder = packed(&policy.model);
        let mut rng = StdRng::seed_from_u64(3);
        let prompts: Vec<Vec<u32>> = (0..14)
            .map(|i| (0..1 + i % 5).map(|_| rng.random_range(0..40)).collect())
            .collect();
        let config = SamplingConfig {
            max_new_tokens: 40,
            ..SamplingConfig::default()
        };
        // Lengths 1 to 40, set by each sequence's own first token.
        let is_done = |t: &[u32]| t.len() >= 1 + (t[0] as usize * 7) % 40;
        for group in [1, 3] {
            let request = Request::new(&prompts, group, &config, &mut rng).unwrap();
            let plan = |threads, split, slots| Plan {
                threads,
                split,
                slots,
            };
            let (all, _) =
                generate_with(&decoder, &request, plan(1, Split::Rows, 256), &is_done).unwrap();
            let lengths: Vec<usize> = all.iter().map(|g| g.tokens.len()).collect();
            assert!(lengths.iter().max() > Some(&30) && lengths.iter().min() < Some(&5));
            for (threads, split, slots) in [
                (1, Split::Rows, 1),
                (2, Split::Rows, 3),
                (3, Split::Rows, 4),
                (2, Split::Columns, 3),
                (5, Split::Columns, 7),
            ] {
                let p = plan(threads, split, slots);
                let (out, stats) = generate_with(&decoder, &request, p, &is_done).unwrap();
                assert_eq!(out, all, "{p:?}, group {group}");
                assert!(stats.most_active <= slots, "{p:?}: {stats:?}");
                if group == 1 {
                    assert_eq!(stats.steps, ideal_steps(&lengths, slots), "{p:?}");
                }
            }
        }
    }

    /// Shares cover every slot and prompt once, in order, with about equal tokens.
    #[test]
    fn shares_balance_tokens() {
        let cfg = ModelConfig::new(Architecture::Llama, 10, 16, 16, 1, 2, 1);
        let policy = Policy::random(&cfg, 1, &Device::Cpu).unwrap();
        let decoder = packed(&policy.model);
        let prompts: Vec<Vec<u32>> = [9, 1, 4, 6].iter().map(|&n| vec![1; n]).collect();
        let config = SamplingConfig::default();
        let request = Request::new(&prompts, 1, &config, &mut StdRng::seed_from_u64(0)).unwrap();
        let prompt = |index| Prompt {
            index,
            cache: Sequence::new(&decoder, 1),
            logits: Vec::new(),
        };
        let mut slots: Vec<Slot> = (0..30)
            .map(|i| Slot {
                index: i,
                cache: Sequence::new(&decoder, 1),
                rng: StdRng::seed_from_u64(0),
                out: request.start(0),
                logits: Vec::new(),
                finished: false,
            })
            .collect();
        let mut waiting: Vec<Prompt> = (0..4).map(prompt).collect();
        for parts in [1, 2, 3, 7, 64] {
            let shares = shares(&mut slots, &mut waiting, &request, parts);
            assert_eq!(shares.len(), parts);
            let tokens: Vec<usize> = shares
                .iter()
                .map(|(s, p)| s.len() + p.iter().map(|p| prompts[p.index].len()).sum::<usize>())
                .collect();
            assert_eq!(tokens.iter().sum::<usize>(), 50);
            // Whole prompts make shares uneven by at most the longest prompt.
            let (min, max) = (tokens.iter().min().unwrap(), tokens.iter().max().unwrap());
            assert!(max - min <= 9, "{parts} parts: {tokens:?}");
            let order: Vec<usize> = shares.iter().flat_map(|(s, _)| s.iter().map(|s| s.index)).collect();
            assert_eq!(order, (0..30).collect::<Vec<_>>());
            let order: Vec<usize> = shares.iter().flat_map(|(_, p)| p.iter().map(|p| p.index)).collect();
            assert_eq!(order, vec![0, 1, 2, 3]);
        }
    }
}
