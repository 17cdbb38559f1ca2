//! Continuous batching.
//!
//! Sequences wait in a queue, in order, for one of a bounded number of
//! slots. Each worker thread holds a share of the slots and steps its own
//! batch: every sequence draws its next token from its logits, finished
//! sequences leave at once, and the worker refills its free slots from the
//! shared queue: a prompt is prefilled once (in the same forward pass as
//! the other sequences' decode tokens) and each of its samples starts from a
//! copy of its cache. Once the queue is empty, a worker holding more than
//! its fair share hands the excess to idle workers, so a group of short and
//! long completions does not wait for its slowest member and no thread
//! waits for another between steps. Models too large for the cache, decoding
//! too few sequences to keep every core busy computing, run one worker
//! whose products are split by columns over all threads instead
//! ([`Split`]). Every sequence draws from its own random stream and each
//! row is computed the same in any batch, so the samples depend on neither
//! the thread count, the split nor the slots.

use std::sync::{Condvar, Mutex, MutexGuard};

use rand::{rngs::StdRng, SeedableRng};

use super::forward::{Run, Scratch, Sequence};
use super::{CpuDecoder, Split};
use crate::cpu::parallel::par_for;
use crate::error::{Error, Result};
use crate::request::{stops, FinishReason, Generation, Request};

/// Prompt tokens a worker prefills per step at most (unless one prompt is
/// longer): bounds the activation buffers.
const PREFILL_TOKENS: usize = 2048;

/// Weight bytes beyond a typical last-level cache (bench-tiny has 12 MB,
/// SmolLM2-135M 540 MB): workers each running their own rows each read all
/// of them from memory every step.
const SPLIT_COLUMNS_ABOVE: usize = 32 << 20;
/// Rows per worker below which such weights are split by columns instead:
/// with few rows a step waits for memory, and one read of the weights
/// beats one per worker. With more, a step is compute-bound either way,
/// and workers that never wait for each other keep going when other
/// processes take a core (a split product waits for its slowest part).
const SPLIT_COLUMNS_BELOW_ROWS: usize = 16;

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
        let longest = request.prompts.iter().map(Vec::len).max().unwrap_or(0);
        let tokens = longest.saturating_add(request.config.max_new_tokens);
        let per_sequence = decoder.kv_bytes_per_token().saturating_mul(tokens).max(1);
        let slots = (KV_BUDGET / per_sequence).clamp(MIN_SLOTS, MAX_SLOTS);
        let rows = slots.min(request.seeds.len());
        let split = if threads > 1
            && decoder.weight_bytes() > SPLIT_COLUMNS_ABOVE
            && rows < SPLIT_COLUMNS_BELOW_ROWS * threads
        {
            Split::Columns
        } else {
            Split::Rows
        };
        Plan {
            threads,
            split,
            slots,
        }
    }

    /// Worker threads stepping their own batches.
    fn workers(&self) -> usize {
        match self.split {
            Split::Rows => self.threads.min(self.slots),
            Split::Columns => 1,
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Forward passes, over all workers.
    pub(crate) steps: usize,
    /// Sequences holding a slot at once, at most.
    pub(crate) most_active: usize,
    /// Tokens each worker sampled.
    pub(crate) rows: Vec<usize>,
    /// Prompts each worker prefilled.
    pub(crate) prefilled: Vec<usize>,
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
    let queue = Queue::new(decoder, request, plan);
    let workers = plan.workers();
    std::thread::scope(|scope| {
        let queue = &queue;
        let others: Vec<_> = (1..workers)
            .map(|w| scope.spawn(move || queue.work(w, is_done)))
            .collect();
        queue.work(0, is_done);
        for handle in others {
            handle
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
    let state = queue.state.into_inner().unwrap_or_else(|p| p.into_inner());
    let out: Vec<Generation> = state.done.into_iter().flatten().collect();
    debug_assert_eq!(out.len(), request.seeds.len(), "every sequence ends");
    Ok((out, state.stats))
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

/// What the workers share.
struct Queue<'a> {
    decoder: &'a CpuDecoder,
    request: &'a Request<'a>,
    plan: Plan,
    state: Mutex<State>,
    /// Signalled when slots are handed over or everything is done.
    wake: Condvar,
}

struct State {
    /// The next sequence waiting for a slot.
    next: usize,
    /// Prefilled prompts some of whose samples still wait.
    ready: Vec<Prompt>,
    /// Slots handed over by a busy worker, for an idle one.
    spare: Vec<Slot>,
    /// Slots each worker holds (sequences joining a prefill included).
    held: Vec<usize>,
    done: Vec<Option<Generation>>,
    stats: Stats,
}

/// What a worker does after trading with the queue.
enum Next {
    Step,
    Wait,
    Stop,
}

impl<'a> Queue<'a> {
    fn new(decoder: &'a CpuDecoder, request: &'a Request<'a>, plan: Plan) -> Self {
        let workers = plan.workers();
        Queue {
            decoder,
            request,
            plan,
            state: Mutex::new(State {
                next: 0,
                ready: Vec::new(),
                spare: Vec::new(),
                held: vec![0; workers],
                done: (0..request.seeds.len()).map(|_| None).collect(),
                stats: Stats {
                    rows: vec![0; workers],
                    prefilled: vec![0; workers],
                    ..Stats::default()
                },
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked is re-raised by the scope; nothing to repair.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Worker `w`: trades with the queue, steps its batch, until all is done.
    fn work<F: Fn(&[u32]) -> bool + Sync>(&self, w: usize, is_done: &F) {
        let mut batch = Batch {
            slots: Vec::new(),
            prompts: Vec::new(),
            joining: Vec::new(),
            scratch: Scratch::new(self.decoder),
        };
        let mut state = self.lock();
        loop {
            match self.trade(&mut state, w, &mut batch) {
                Next::Step => {
                    drop(state);
                    batch.step(self, is_done);
                    batch.join(self);
                    state = self.lock();
                }
                Next::Wait => {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                Next::Stop => {
                    self.wake.notify_all();
                    return;
                }
            }
        }
    }

    /// Under the lock: hands in what finished and the prompts prefilled,
    /// balances the slots between workers and refills free ones.
    fn trade(&self, st: &mut State, w: usize, batch: &mut Batch) -> Next {
        let (group, total) = (self.request.group, self.request.seeds.len());
        let (finished, slots) = std::mem::take(&mut batch.slots)
            .into_iter()
            .partition(|s: &Slot| s.finished);
        batch.slots = slots;
        for slot in finished {
            st.done[slot.index] = Some(slot.out);
        }
        let next = st.next;
        st.ready.retain(|p| (p.index + 1) * group > next);
        st.ready.extend(
            batch
                .prompts
                .drain(..)
                .filter(|p| (p.index + 1) * group > next),
        );

        let workers = st.held.len();
        // A worker's share of the slots, and no more than its share of the
        // request's prompts (whole groups, each prompt prefilled once): a
        // request smaller than the slots would otherwise be prefilled by
        // whichever worker came first, alone.
        let prompts_share = self.request.prompts.len().div_ceil(workers) * group;
        let cap = (self.plan.slots / workers + usize::from(w < self.plan.slots % workers))
            .min(prompts_share);
        st.held[w] = batch.slots.len();
        if st.next >= total {
            // The queue is empty: even out the slots left.
            let fair = (st.held.iter().sum::<usize>() + st.spare.len()).div_ceil(workers);
            let short = st.held.iter().enumerate().any(|(v, &h)| v != w && h < fair);
            if batch.slots.len() > fair && short {
                st.spare.extend(batch.slots.drain(fair..));
                self.wake.notify_all();
            } else if batch.slots.len() < fair && !st.spare.is_empty() {
                let take = (fair - batch.slots.len()).min(st.spare.len());
                let from = st.spare.len() - take;
                batch.slots.extend(st.spare.drain(from..));
            }
        }
        self.admit(st, w, cap, batch);
        st.held[w] = batch.slots.len() + batch.joining.len();

        if batch.slots.is_empty() && batch.prompts.is_empty() {
            let idle = st.next >= total && st.spare.is_empty();
            return match idle && st.held.iter().all(|&h| h == 0) {
                true => Next::Stop,
                false => Next::Wait,
            };
        }
        st.stats.steps += 1;
        st.stats.rows[w] += batch.slots.len();
        let holding = st.held.iter().sum::<usize>();
        st.stats.most_active = st.stats.most_active.max(holding);
        Next::Step
    }

    /// Fills a worker's free slots (up to `cap`) from the queue: sequences
    /// whose prompt is ready join now; the others wait for the prompts
    /// their worker prefills in its next step.
    fn admit(&self, st: &mut State, w: usize, cap: usize, batch: &mut Batch) {
        let (group, total) = (self.request.group, self.request.seeds.len());
        let mut tokens = 0;
        while batch.slots.len() + batch.joining.len() < cap && st.next < total {
            let (i, p) = (st.next, st.next / group);
            if let Some(ready) = st.ready.iter().find(|r| r.index == p) {
                batch.slots.push(self.slot(i, ready));
                st.next += 1;
                continue;
            }
            if batch.prompts.last().map(|q| q.index) != Some(p) {
                let len = self.request.prompts[p].len();
                if !batch.prompts.is_empty() && tokens + len > PREFILL_TOKENS {
                    break;
                }
                tokens += len;
                st.stats.prefilled[w] += 1;
                batch.prompts.push(Prompt {
                    index: p,
                    cache: Sequence::new(self.decoder, len),
                    logits: Vec::new(),
                });
            }
            batch.joining.push(i);
            st.next += 1;
        }
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
}

/// One worker's slots, the prompts it prefills and the sequences waiting
/// for them.
struct Batch {
    slots: Vec<Slot>,
    prompts: Vec<Prompt>,
    joining: Vec<usize>,
    scratch: Scratch,
}

impl Batch {
    /// Every slot draws a token; those that continue, and the new prompts,
    /// go through the model.
    fn step<F: Fn(&[u32]) -> bool + Sync>(&mut self, queue: &Queue, is_done: &F) {
        let (decoder, request) = (queue.decoder, queue.request);
        let split = queue.plan.split;
        match split {
            Split::Rows => {
                for slot in &mut self.slots {
                    slot.sample(request, is_done);
                }
            }
            Split::Columns => {
                let per_thread = self.slots.len().div_ceil(queue.plan.threads).max(1);
                in_parallel(self.slots.chunks_mut(per_thread).collect(), |slots| {
                    for slot in slots.iter_mut() {
                        slot.sample(request, is_done);
                    }
                });
            }
        }
        let mut runs: Vec<Run> = Vec::with_capacity(self.slots.len() + self.prompts.len());
        runs.extend(self.slots.iter_mut().filter(|s| !s.finished).map(Slot::run));
        runs.extend(self.prompts.iter_mut().map(|p| Run {
            cache: &mut p.cache,
            tokens: &request.prompts[p.index],
        }));
        if runs.is_empty() {
            return;
        }
        let logits = decoder.forward(&mut runs, &mut self.scratch, split);
        drop(runs);
        let mut rows = logits.chunks_exact(decoder.dims.vocab);
        for (slot, row) in self.slots.iter_mut().filter(|s| !s.finished).zip(&mut rows) {
            slot.logits.copy_from_slice(row);
        }
        for (prompt, row) in self.prompts.iter_mut().zip(rows) {
            prompt.logits = row.to_vec();
        }
    }

    /// Sequences waiting for this step's prompts take their slots.
    fn join(&mut self, queue: &Queue) {
        let group = queue.request.group;
        let mut waiting = self.joining.drain(..).peekable();
        for prompt in &self.prompts {
            while let Some(i) = waiting.next_if(|&i| i / group == prompt.index) {
                self.slots.push(queue.slot(i, prompt));
            }
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
    use crate::cpu::decoder::tests::packed;
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
        let is_done = |t: &[u32]| t.len() > (t[0] as usize * 7) % 40;
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
                if group == 1 && p.workers() == 1 {
                    assert_eq!(stats.steps, ideal_steps(&lengths, slots), "{p:?}");
                }
            }
        }
    }

    /// Long sequences queued first all go to one worker; once the queue is
    /// empty it hands some to the idle one, so both sample about as many
    /// tokens (and the samples stay those of one thread).
    #[test]
    fn an_idle_worker_takes_over_a_busy_ones_slots() {
        let cfg = ModelConfig::new(Architecture::Llama, 40, 32, 48, 2, 4, 2);
        let policy = Policy::random(&cfg, 5, &Device::Cpu).unwrap();
        let decoder = packed(&policy.model);
        let mut rng = StdRng::seed_from_u64(8);
        let prompts: Vec<Vec<u32>> = (0..64)
            .map(|_| (0..3).map(|_| rng.random_range(0..40)).collect())
            .collect();
        let config = SamplingConfig {
            max_new_tokens: 40,
            temperature: 0.0,
            ..SamplingConfig::default()
        };
        // Greedy: the first token, and so the length, follows from the prompt.
        let is_done = |t: &[u32]| t.len() >= if t[0].is_multiple_of(2) { 40 } else { 1 };
        let one = |threads, prompts: &[Vec<u32>]| {
            let request = Request::new(prompts, 1, &config, &mut StdRng::seed_from_u64(0)).unwrap();
            let plan = Plan {
                threads,
                split: Split::Rows,
                slots: 32,
            };
            generate_with(&decoder, &request, plan, &is_done).unwrap()
        };
        let (out, _) = one(1, &prompts);
        let long = |g: &Generation| g.tokens.len() == 40;
        let mut ordered: Vec<Vec<u32>> = out
            .iter()
            .filter(|g| long(g))
            .map(|g| prompts[g.prompt_index].clone())
            .take(16)
            .collect();
        ordered.extend(
            out.iter()
                .filter(|g| !long(g))
                .map(|g| prompts[g.prompt_index].clone())
                .take(16),
        );
        assert_eq!(ordered.len(), 32, "16 long and 16 short sequences");
        let (alone, _) = one(1, &ordered);
        for threads in [2, 3] {
            let (shared, stats) = one(threads, &ordered);
            assert_eq!(shared, alone, "{threads} threads");
            assert_eq!(stats.rows.iter().sum::<usize>(), 16 * 40 + 16);
        }
    }

    /// A request smaller than the slots is shared out before its prompts
    /// are prefilled: the first worker to trade takes its share of the
    /// queue, not all of it, and leaves the rest to the others.
    #[test]
    fn the_workers_share_the_prefill() {
        let cfg = ModelConfig::new(Architecture::Llama, 10, 16, 16, 1, 2, 1);
        let policy = Policy::random(&cfg, 1, &Device::Cpu).unwrap();
        let decoder = packed(&policy.model);
        let prompts: Vec<Vec<u32>> = (0..6).map(|i| vec![1, i]).collect();
        let config = SamplingConfig::default();
        // Prompts each worker prefills: 6 shared out whole, at most 2 a worker of 4.
        for (group, threads, prefilled) in [
            (1, 2, vec![3, 3]),
            (2, 2, vec![3, 3]),
            (1, 3, vec![2, 2, 2]),
            (2, 4, vec![2, 2, 2, 0]),
        ] {
            let request =
                Request::new(&prompts, group, &config, &mut StdRng::seed_from_u64(0)).unwrap();
            let plan = Plan {
                threads,
                split: Split::Rows,
                slots: 256,
            };
            let queue = Queue::new(&decoder, &request, plan);
            let mut st = queue.lock();
            for (w, &n) in prefilled.iter().enumerate() {
                let mut batch = Batch {
                    slots: Vec::new(),
                    prompts: Vec::new(),
                    joining: Vec::new(),
                    scratch: Scratch::new(&decoder),
                };
                queue.trade(&mut st, w, &mut batch);
                assert_eq!(batch.joining.len(), n * group, "group {group}, worker {w}");
            }
            assert_eq!(st.stats.prefilled, prefilled, "group {group}");
            assert_eq!(st.next, 6 * group);
        }
    }

    /// The balancing itself, step by step: with the queue empty, a worker
    /// holding more than its share hands the excess over, an idle one takes
    /// it, and the last one out stops everyone.
    #[test]
    fn a_busy_worker_hands_its_excess_to_an_idle_one() {
        let cfg = ModelConfig::new(Architecture::Llama, 10, 16, 16, 1, 2, 1);
        let policy = Policy::random(&cfg, 1, &Device::Cpu).unwrap();
        let decoder = packed(&policy.model);
        let prompts = vec![vec![1u32]; 11];
        let config = SamplingConfig::default();
        let request = Request::new(&prompts, 1, &config, &mut StdRng::seed_from_u64(0)).unwrap();
        let plan = Plan {
            threads: 2,
            split: Split::Rows,
            slots: 32,
        };
        let queue = Queue::new(&decoder, &request, plan);
        let prompt = Prompt {
            index: 0,
            cache: Sequence::new(&decoder, 1),
            logits: vec![0.0; 10],
        };
        let batch = |n: usize| Batch {
            slots: (0..n).map(|i| queue.slot(i, &prompt)).collect(),
            prompts: Vec::new(),
            joining: Vec::new(),
            scratch: Scratch::new(&decoder),
        };
        let (mut busy, mut idle) = (batch(11), batch(0));
        let mut st = queue.lock();
        st.next = 11;
        st.held = vec![11, 0];
        assert!(matches!(queue.trade(&mut st, 1, &mut idle), Next::Wait));
        assert!(matches!(queue.trade(&mut st, 0, &mut busy), Next::Step));
        assert_eq!((busy.slots.len(), st.spare.len()), (6, 5));
        assert!(matches!(queue.trade(&mut st, 1, &mut idle), Next::Step));
        assert_eq!((idle.slots.len(), st.spare.len()), (5, 0));
        assert!(matches!(queue.trade(&mut st, 0, &mut busy), Next::Step));
        assert_eq!(st.held, vec![6, 5]);
        // Four finish on the busy worker: 2 against 5, one moves back.
        busy.slots
            .iter_mut()
            .take(4)
            .for_each(|s| s.finished = true);
        assert!(matches!(queue.trade(&mut st, 0, &mut busy), Next::Step));
        assert!(matches!(queue.trade(&mut st, 1, &mut idle), Next::Step));
        assert!(matches!(queue.trade(&mut st, 0, &mut busy), Next::Step));
        assert_eq!(st.held, vec![3, 4]);
        assert_eq!(st.done.iter().flatten().count(), 4);
        for batch in [&mut busy, &mut idle] {
            batch.slots.iter_mut().for_each(|s| s.finished = true);
        }
        assert!(matches!(queue.trade(&mut st, 0, &mut busy), Next::Wait));
        assert!(matches!(queue.trade(&mut st, 1, &mut idle), Next::Stop));
        assert!(matches!(queue.trade(&mut st, 0, &mut busy), Next::Stop));
        assert_eq!(st.done.iter().flatten().count(), 11);
    }
}
