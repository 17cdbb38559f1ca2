//! Choosing one token from one row of logits: greedy, temperature, top-k, top-p.

use rand::Rng;

use crate::cpu::simd::{exp_f32, simd_fn};

/// How the next token is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampler {
    /// 0 = greedy (argmax); otherwise logits are divided by it.
    pub(crate) temperature: f64,
    /// Keep only the k most likely tokens (0 = all).
    pub(crate) top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1 = all).
    pub(crate) top_p: f64,
}

/// The chosen token and its log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Choice {
    pub(crate) token: u32,
    /// Under softmax(logits / temperature) over the whole vocabulary
    /// (temperature 1 when greedy), before top-k / top-p.
    pub(crate) logprob: f32,
    /// Under softmax(logits).
    pub(crate) raw_logprob: f32,
}

impl Sampler {
    /// Picks a token from `logits`; draws exactly one uniform number unless greedy.
    pub(crate) fn choose<R: Rng + ?Sized>(&self, logits: &[f32], rng: &mut R) -> Choice {
        let (raw_max, raw_total) = exp_sum(logits, 1.0, f32::NEG_INFINITY);
        let raw_lse = lse(raw_max, raw_total);
        // An infinite logit takes all the probability, as greedy would.
        if self.temperature <= 0.0 || raw_max == f32::INFINITY {
            let token = argmax(logits);
            let raw_logprob = (logits[token] as f64 - raw_lse) as f32;
            return Choice {
                token: token as u32,
                logprob: raw_logprob,
                raw_logprob,
            };
        }
        let inv_t = 1.0 / self.temperature;
        let u: f64 = rng.random::<f64>();
        let scale = inv_t as f32;
        // Temperatures so small that 1/T overflows float32 take the float64 path.
        let filtered =
            self.top_k > 0 && self.top_k < logits.len() || self.top_p < 1.0 || !scale.is_finite();
        let (token, lse) = if filtered {
            let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 * inv_t).collect();
            let lse = log_sum_exp(scaled.iter().copied());
            (self.sample_filtered(&scaled, lse, u), lse)
        } else {
            let (max, total) = if scale == 1.0 {
                (raw_max, raw_total)
            } else {
                exp_sum(logits, scale, f32::NEG_INFINITY)
            };
            (sample_full(logits, scale, max, u * total), lse(max, total))
        };
        Choice {
            token: token as u32,
            logprob: (logits[token] as f64 * inv_t - lse) as f32,
            raw_logprob: (logits[token] as f64 - raw_lse) as f32,
        }
    }

    /// Top-k then top-p (as transformers applies them: top-p renormalises over
    /// what top-k kept), then an inverse-CDF draw among the survivors.
    fn sample_filtered(&self, scaled: &[f64], lse: f64, u: f64) -> usize {
        let v = scaled.len();
        let top_k = self.top_k > 0 && self.top_k < v;
        let candidates = if top_k {
            top_indices(scaled, self.top_k)
        } else {
            // Grow a sorted prefix until it covers top_p (usually a few dozen tokens).
            let mut k = v.min(64);
            loop {
                let top = top_indices(scaled, k);
                let mass: f64 = top.iter().map(|&i| (scaled[i] - lse).exp()).sum();
                if k == v || mass >= self.top_p {
                    break top;
                }
                k = (k * 4).min(v);
            }
        };
        // Weights relative to the best candidate. Top-p measures mass against
        // what top-k kept (transformers renormalises), else the whole vocabulary.
        let best = scaled[candidates[0]];
        let weights: Vec<f64> = candidates
            .iter()
            .map(|&i| (scaled[i] - best).exp())
            .collect();
        let total: f64 = if top_k {
            weights.iter().sum()
        } else {
            (lse - best).exp()
        };
        let mut kept = candidates.len();
        if self.top_p < 1.0 {
            let mut before = 0.0;
            for (n, w) in weights.iter().enumerate() {
                if before >= self.top_p * total {
                    kept = n.max(1);
                    break;
                }
                before += w;
            }
        }
        let kept_total: f64 = weights[..kept].iter().sum();
        let mut target = u * kept_total;
        for (n, w) in weights[..kept].iter().enumerate() {
            target -= w;
            if target < 0.0 {
                return candidates[n];
            }
        }
        candidates[kept - 1]
    }
}

/// Inverse-CDF draw over softmax(logits * scale): the first token at which
/// the running sum of `exp(logits * scale - max)` passes `target` (a
/// uniform draw times their total). Blocks of tokens are summed whole until
/// the one holding the target, so only that block is walked token by token.
fn sample_full(logits: &[f32], scale: f32, max: f32, target: f64) -> usize {
    const BLOCK: usize = 256;
    let mut target = target;
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        let (_, mass) = exp_sum(block, scale, max);
        if target >= mass {
            target -= mass;
            continue;
        }
        for (i, &l) in block.iter().enumerate() {
            target -= exp_f32(l * scale - max) as f64;
            if target < 0.0 {
                return b * BLOCK + i;
            }
        }
    }
    // Rounding left a sliver of mass: give it to the last token that has any.
    logits
        .iter()
        .rposition(|&l| exp_f32(l * scale - max) > 0.0)
        .unwrap_or(0)
}

/// `max + ln(total)`, or the max itself when nothing is finite.
fn lse(max: f32, total: f64) -> f64 {
    if max.is_finite() {
        max as f64 + total.ln()
    } else {
        max as f64
    }
}

simd_fn! {
    /// `(m, sum of exp(x * scale - m))` over `x`, with `m` the largest
    /// `x * scale` unless a `max` is given (anything but -inf). Summed in
    /// float64 lanes so a 150,000-token vocabulary loses no precision.
    pub(crate) fn exp_sum(x: &[f32], scale: f32, max: f32) -> (f32, f64) => exp_sum_body
}

#[inline(always)]
fn exp_sum_body(x: &[f32], scale: f32, max: f32) -> (f32, f64) {
    let max = if max == f32::NEG_INFINITY {
        let mut lanes = [f32::NEG_INFINITY; 16];
        let chunks = x.chunks_exact(16);
        let tail = chunks
            .remainder()
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
        for chunk in chunks {
            for (m, &v) in lanes.iter_mut().zip(chunk) {
                *m = m.max(v * scale);
            }
        }
        lanes.iter().fold(tail, |m, &v| m.max(v))
    } else {
        max
    };
    if !max.is_finite() {
        return (max, 0.0);
    }
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| exp_f32(v * scale - max) as f64)
        .sum();
    for chunk in chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += exp_f32(v * scale - max) as f64;
        }
    }
    (max, lanes.iter().sum::<f64>() + tail)
}

/// Indices of the k largest values, largest first (ties: lower index first).
fn top_indices(values: &[f64], k: usize) -> Vec<usize> {
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..values.len()).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable_by(cmp);
    idx
}

fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn sampler(temperature: f64, top_k: usize, top_p: f64) -> Sampler {
        Sampler {
            temperature,
            top_k,
            top_p,
        }
    }

    fn frequencies(s: Sampler, logits: &[f32], n: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            counts[s.choose(logits, &mut rng).token as usize] += 1;
        }
        counts.into_iter().map(|c| c as f64 / n as f64).collect()
    }

    #[test]
    fn greedy_picks_the_argmax_and_reports_its_logprob() {
        let logits = [0.5f32, 2.0, 1.0];
        let c = sampler(0.0, 0, 1.0).choose(&logits, &mut StdRng::seed_from_u64(0));
        assert_eq!(c.token, 1);
        let lse = (0.5f64.exp() + 2f64.exp() + 1f64.exp()).ln();
        assert!((c.raw_logprob as f64 - (2.0 - lse)).abs() < 1e-6);
        assert_eq!(c.logprob, c.raw_logprob);
    }

    #[test]
    fn sampling_follows_the_tempered_distribution() {
        let logits = [0.0f32, 1.0, 2.0];
        let freq = frequencies(sampler(2.0, 0, 1.0), &logits, 40_000);
        let z: f64 = [0.0f64, 0.5, 1.0].iter().map(|x| x.exp()).sum();
        for (i, f) in freq.iter().enumerate() {
            let p = (i as f64 * 0.5).exp() / z;
            assert!((f - p).abs() < 0.01, "token {i}: {f} vs {p}");
        }
        let c = sampler(2.0, 0, 1.0).choose(&logits, &mut StdRng::seed_from_u64(3));
        let expected = (c.token as f64 * 0.5 - z.ln()) as f32;
        assert!((c.logprob - expected).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [3.0f32, 2.0, 1.0, 0.0, -1.0];
        let top2 = frequencies(sampler(1.0, 2, 1.0), &logits, 20_000);
        assert!(top2[2..].iter().all(|&f| f == 0.0));
        let p = 1.0 / (1.0 + (-1f64).exp());
        assert!((top2[0] - p).abs() < 0.015, "{top2:?}");
        // Probabilities are about .64 .23 .09 .03 .01: top-p 0.8 keeps the first two.
        let nucleus = frequencies(sampler(1.0, 0, 0.8), &logits, 20_000);
        assert!(nucleus[0] > 0.6 && nucleus[1] > 0.2 && nucleus[2..].iter().all(|&f| f == 0.0));
        // A tiny top-p still keeps the best token.
        let one = frequencies(sampler(1.0, 0, 1e-9), &logits, 100);
        assert_eq!(one[0], 1.0);
    }

    #[test]
    fn wide_vocabularies_grow_the_top_p_prefix() {
        let logits: Vec<f32> = (0..1000).map(|i| -(i as f32) * 0.001).collect();
        let freq = frequencies(sampler(1.0, 0, 0.5), &logits, 5_000);
        let kept = freq.iter().rposition(|&f| f > 0.0).unwrap();
        // The nucleus: the shortest prefix holding half the probability.
        let weights: Vec<f64> = logits.iter().map(|&l| (l as f64).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut mass = 0.0;
        let nucleus = weights
            .iter()
            .take_while(|&&w| {
                let before = mass;
                mass += w;
                before < 0.5 * total
            })
            .count();
        assert_eq!(kept + 1, nucleus);
    }

    /// Temperatures whose inverse overflows float32 still sample the most
    /// likely token, and an infinite logit takes the draw.
    #[test]
    fn extreme_temperatures_and_logits() {
        let logits = [0.5f32, 1.0, 2.0];
        let c = sampler(1e-39, 0, 1.0).choose(&logits, &mut StdRng::seed_from_u64(0));
        assert_eq!(c.token, 2);
        let c =
            sampler(1.0, 0, 1.0).choose(&[0.0, f32::INFINITY, 1.0], &mut StdRng::seed_from_u64(0));
        assert_eq!(c.token, 1);
        let c = sampler(1.0, 0, 1.0).choose(&[f32::NAN; 3], &mut StdRng::seed_from_u64(0));
        assert!(c.token < 3);
    }

    /// On a Qwen-sized vocabulary the draw is the f64 inverse CDF's and the
    /// log-probabilities match f64 arithmetic.
    #[test]
    fn large_vocabularies_match_float64_arithmetic() {
        let logits: Vec<f32> = (0..151_936u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) % 20_011) as f32 / 1000.0) - 12.0)
            .collect();
        for temperature in [1.0, 0.7] {
            let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
            let lse = log_sum_exp(scaled.iter().copied());
            let raw_lse = log_sum_exp(logits.iter().map(|&l| l as f64));
            let mut rng = StdRng::seed_from_u64(9);
            for _ in 0..50 {
                let u: f64 = StdRng::clone(&rng).random();
                let c = sampler(temperature, 0, 1.0).choose(&logits, &mut rng);
                // The f64 inverse CDF at u, allowing for rounding at a boundary.
                let mut cdf = 0.0;
                let expected = scaled
                    .iter()
                    .position(|&s| {
                        cdf += (s - lse).exp();
                        cdf > u
                    })
                    .unwrap();
                assert!(
                    (c.token as i64 - expected as i64).abs() <= 1,
                    "T={temperature}"
                );
                let t = c.token as usize;
                assert!((c.logprob as f64 - (scaled[t] - lse)).abs() < 1e-5);
                assert!((c.raw_logprob as f64 - (logits[t] as f64 - raw_lse)).abs() < 1e-5);
            }
        }
    }
}
