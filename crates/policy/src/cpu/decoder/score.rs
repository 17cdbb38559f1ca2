//! Log-probabilities of given completions under the packed weights, with no
//! gradient: how a frozen model (GRPO's KL reference) scores a batch. Each
//! prompt runs once per thread's share of its group and its completions
//! continue copies of its cache, as in generation; the LM head then scores
//! every completion token.

use super::forward::{Run, Scratch, Sequence};
use super::{CpuDecoder, Split};
use crate::cpu::kernels::token_stats_f32;
use crate::cpu::packed::Output;
use crate::cpu::parallel::par_for;

/// Completion tokens per forward pass at most (unless one completion is
/// longer): bounds the activation buffers, as the prefill bound does.
/// Small in tests, so they cross pass boundaries.
const ROWS_PER_PASS: usize = if cfg!(test) { 7 } else { 2048 };
/// Positions whose logits are held at once: [`HEAD_ROWS`, vocabulary].
const HEAD_ROWS: usize = if cfg!(test) { 5 } else { 64 };

/// A prompt and the completions that continue it.
pub(crate) type Group<'a> = (&'a [u32], &'a [&'a [u32]]);

/// Per completion, groups in order, the log-probability of each of its
/// tokens under softmax(logits * `scale`), given its prompt and the tokens
/// before it. The numbers do not depend on `threads`: every row is computed
/// the same in any batch.
///
/// # Panics
/// If a prompt is empty or a token is outside the vocabulary: callers check
/// (`crate::logprobs::check_groups`).
pub(crate) fn score(
    decoder: &CpuDecoder,
    groups: &[Group<'_>],
    scale: f32,
    threads: usize,
) -> Vec<Vec<f32>> {
    // Split the groups so every thread has work; each part prefills its
    // prompt on its own.
    let n: usize = groups.iter().map(|g| g.1.len()).sum();
    let parts = threads.max(1).div_ceil(groups.len().max(1));
    let mut tasks: Vec<(usize, usize, &[&[u32]])> = Vec::new();
    let mut first = 0;
    for (g, &(_, completions)) in groups.iter().enumerate() {
        let size = completions.len().div_ceil(parts).max(1);
        for (i, part) in completions.chunks(size).enumerate() {
            tasks.push((g, first + i * size, part));
        }
        first += completions.len();
    }
    let out: Vec<std::sync::Mutex<Vec<f32>>> = (0..n).map(|_| Default::default()).collect();
    par_for(tasks.len(), |range| {
        let mut scratch = Scratch::new(decoder);
        for &(g, first, completions) in &tasks[range] {
            let scores = score_group(decoder, groups[g].0, completions, scale, &mut scratch);
            for (i, s) in scores.into_iter().enumerate() {
                *out[first + i].lock().unwrap_or_else(|p| p.into_inner()) = s;
            }
        }
    });
    out.into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// [`score`] of one prompt's completions, on this thread.
fn score_group(
    decoder: &CpuDecoder,
    prompt: &[u32],
    completions: &[&[u32]],
    scale: f32,
    scratch: &mut Scratch,
) -> Vec<Vec<f32>> {
    let (last, before) = prompt.split_last().expect("prompts are not empty");
    let mut context = Sequence::new(decoder, before.len());
    if !before.is_empty() {
        let mut runs = [Run {
            cache: &mut context,
            tokens: before,
        }];
        decoder.forward_hidden(&mut runs, scratch, Split::Rows);
    }
    let mut scores = Vec::with_capacity(completions.len());
    let mut start = 0;
    while start < completions.len() {
        // Completions in one pass, up to the row bound.
        let mut end = start + 1;
        let mut rows = completions[start].len();
        while end < completions.len() && rows + completions[end].len() <= ROWS_PER_PASS {
            rows += completions[end].len();
            end += 1;
        }
        scores.extend(score_pass(
            decoder,
            &context,
            *last,
            &completions[start..end],
            scale,
            scratch,
        ));
        start = end;
    }
    scores
}

/// The scores of `completions` of a prompt whose last token is `last` and
/// whose other tokens are cached in `context`, in one forward pass.
fn score_pass(
    decoder: &CpuDecoder,
    context: &Sequence,
    last: u32,
    completions: &[&[u32]],
    scale: f32,
    scratch: &mut Scratch,
) -> Vec<Vec<f32>> {
    // Each completion's run is the prompt's last token then all its tokens
    // but the last: row j predicts token j.
    let inputs: Vec<Vec<u32>> = completions
        .iter()
        .map(|c| match c.split_last() {
            Some((_, head)) => std::iter::once(last).chain(head.iter().copied()).collect(),
            None => Vec::new(),
        })
        .collect();
    let mut caches: Vec<Sequence> = completions.iter().map(|c| context.fork(c.len())).collect();
    let mut runs: Vec<Run> = caches
        .iter_mut()
        .zip(&inputs)
        .filter(|(_, tokens)| !tokens.is_empty())
        .map(|(cache, tokens)| Run { cache, tokens })
        .collect();
    if runs.is_empty() {
        return vec![Vec::new(); completions.len()];
    }
    let hidden = decoder.forward_hidden(&mut runs, scratch, Split::Rows);
    let targets: Vec<u32> = completions.iter().flat_map(|c| c.iter().copied()).collect();

    let (h, vocab) = (decoder.dims.hidden, decoder.dims.vocab);
    let mut logprobs = Vec::with_capacity(targets.len());
    let mut logits = vec![0f32; HEAD_ROWS.min(targets.len()) * vocab];
    for (x, targets) in hidden.chunks(HEAD_ROWS * h).zip(targets.chunks(HEAD_ROWS)) {
        let rows = targets.len();
        let logits = &mut logits[..rows * vocab];
        decoder.product(
            &decoder.lm_head,
            x,
            rows,
            logits,
            Output::Overwrite,
            Split::Rows,
        );
        for (z, &target) in logits.chunks_exact(vocab).zip(targets) {
            logprobs.push(token_stats_f32(z, scale, target as usize).0);
        }
    }
    let mut logprobs = logprobs.into_iter();
    completions
        .iter()
        .map(|c| logprobs.by_ref().take(c.len()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::cpu::decoder::tests::packed_in;
    use crate::request::Precision;
    use crate::{grouped_completion_scores, Architecture, ModelConfig, Policy, PromptGroup};

    /// Prompts of 1 and several tokens; completions of 0, 1 and many, one
    /// group with more completions than the others and one with only empty
    /// ones. A group spans several passes and head chunks (both bounds are
    /// small in tests).
    fn batch() -> (Vec<Vec<u32>>, Vec<Vec<Vec<u32>>>) {
        let prompts = vec![vec![3], (1..12).collect(), vec![9, 4, 7], vec![2, 2]];
        let completions = vec![
            vec![vec![5, 6, 7], vec![8], vec![1, 2, 3, 4, 5, 6, 7, 8, 9]],
            vec![
                vec![10, 11],
                vec![],
                vec![12, 13, 14, 15],
                vec![3; 20],
                vec![6],
            ],
            vec![vec![40, 41, 42, 43, 44, 45]],
            vec![vec![], vec![]],
        ];
        (prompts, completions)
    }

    /// The completions of [`batch`] as slices.
    fn borrowed(completions: &[Vec<Vec<u32>>]) -> Vec<Vec<&[u32]>> {
        completions
            .iter()
            .map(|g| g.iter().map(|c| &c[..]).collect())
            .collect()
    }

    fn groups<'a>(prompts: &'a [Vec<u32>], completions: &'a [Vec<&'a [u32]>]) -> Vec<Group<'a>> {
        prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| (&p[..], &c[..]))
            .collect()
    }

    /// The decoder's scores are the training path's (the fused kernels'
    /// packed groups), for every architecture, at a sampling temperature.
    #[test]
    fn scores_match_the_training_path() {
        let (prompts, owned) = batch();
        let completions = borrowed(&owned);
        for (arch, tied) in [
            (Architecture::Llama, false),
            (Architecture::Qwen2, true),
            (Architecture::Qwen3, false),
        ] {
            let mut cfg = ModelConfig::new(arch, 50, 64, 96, 2, 4, 2);
            cfg.tie_word_embeddings = tied;
            let policy = Policy::random(&cfg, 11, &Device::Cpu).unwrap();
            let decoder = packed_in(&policy.model, Precision::Float32);
            let scale = 1.0 / 0.7;
            let ours = score(&decoder, &groups(&prompts, &completions), scale, 2);
            let expected_groups: Vec<PromptGroup> = prompts
                .iter()
                .zip(&completions)
                .map(|(p, c)| PromptGroup {
                    prompt: p,
                    completions: c.clone(),
                })
                .collect();
            let expected = grouped_completion_scores(&policy.model, &expected_groups, 0.7)
                .unwrap()
                .logprobs
                .to_vec2::<f32>()
                .unwrap();
            let flat: Vec<&[u32]> = completions.iter().flatten().copied().collect();
            assert_eq!(ours.len(), flat.len());
            for (row, ((ours, expected), c)) in ours.iter().zip(&expected).zip(&flat).enumerate() {
                assert_eq!(ours.len(), c.len(), "{arch:?} row {row}");
                for (a, b) in ours.iter().zip(expected) {
                    assert!((a - b).abs() < 1e-4, "{arch:?} row {row}: {a} vs {b}");
                }
            }
        }
    }

    /// However the groups are shared out over threads, in float32 and in
    /// bfloat16, every score has the same bits; bfloat16 follows float32
    /// to its precision.
    #[test]
    fn scores_do_not_depend_on_the_threads() {
        let (prompts, owned) = batch();
        let completions = borrowed(&owned);
        let groups = groups(&prompts, &completions);
        let cfg = ModelConfig::new(Architecture::Llama, 50, 64, 96, 2, 4, 2);
        let policy = Policy::random(&cfg, 4, &Device::Cpu).unwrap();
        let mut by_precision = Vec::new();
        for precision in [Precision::Float32, Precision::Bfloat16] {
            let decoder = packed_in(&policy.model, precision);
            let one = score(&decoder, &groups, 1.0, 1);
            for threads in [2, 3, 8] {
                assert_eq!(score(&decoder, &groups, 1.0, threads), one, "{precision:?}");
            }
            by_precision.push(one.concat());
        }
        let (f32s, bf16s) = (&by_precision[0], &by_precision[1]);
        let worst = f32s
            .iter()
            .zip(bf16s)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst > 0.0 && worst < 0.05, "bfloat16 off by {worst}");
    }
}
