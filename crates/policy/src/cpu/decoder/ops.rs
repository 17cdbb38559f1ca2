//! The decoder's per-row operations: RMSNorm, RoPE, attention over one
//! sequence's cache, SwiGLU. Written as plain loops the compiler vectorises,
//! and compiled for AVX-512 or AVX2 + FMA when the CPU has them
//! ([`crate::cpu::simd`]).

use crate::cpu::simd::{dot3, exp_f32, simd_fn, sum};

use super::Dims;

simd_fn! {
    /// `out = x / sqrt(mean(x^2) + eps) * weight`, row by row.
    pub(crate) fn rms_norm(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32]) => rms_norm_body
}

#[inline(always)]
fn rms_norm_body(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32]) {
    let width = weight.len();
    for (x, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let inv = inverse_rms(x, eps);
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = v * inv * w;
        }
    }
}

/// `1 / sqrt(mean(x^2) + eps)`.
#[inline(always)]
fn inverse_rms(x: &[f32], eps: f64) -> f32 {
    let mean_square = dot3(x, x, None) / x.len() as f32;
    1.0 / (mean_square + eps as f32).sqrt()
}

simd_fn! {
    /// [`rms_norm`] in place.
    pub(crate) fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f64) => rms_norm_in_place_body
}

#[inline(always)]
fn rms_norm_in_place_body(x: &mut [f32], weight: &[f32], eps: f64) {
    let width = weight.len();
    for x in x.chunks_exact_mut(width) {
        let inv = inverse_rms(x, eps);
        for (v, &w) in x.iter_mut().zip(weight) {
            *v = *v * inv * w;
        }
    }
}

/// cos and sin of every (position, frequency), computed as the model's
/// rotary embedding computes them (float32 `position * inv_freq`).
#[derive(Debug, Clone)]
pub(crate) struct RopeTable {
    inv_freq: Vec<f32>,
    /// [position][cos.. | sin..], each half `inv_freq.len()` long.
    rows: Vec<f32>,
}

impl RopeTable {
    pub(crate) fn new(inv_freq: Vec<f32>) -> Self {
        RopeTable {
            inv_freq,
            rows: Vec::new(),
        }
    }

    /// Makes positions `0..len` available.
    pub(crate) fn extend_to(&mut self, len: usize) {
        let half = self.inv_freq.len();
        for position in self.rows.len() / (2 * half).max(1)..len {
            let angles = self.inv_freq.iter().map(|&f| position as f32 * f);
            self.rows.extend(angles.clone().map(f32::cos));
            self.rows.extend(angles.map(f32::sin));
        }
    }

    /// cos and sin at `position` (which [`RopeTable::extend_to`] covered).
    pub(crate) fn at(&self, position: usize) -> (&[f32], &[f32]) {
        let half = self.inv_freq.len();
        self.rows[position * 2 * half..(position + 1) * 2 * half].split_at(half)
    }
}

simd_fn! {
    /// Rotates one head in the rotate-half form:
    /// `x * cos + rotate_half(x) * sin`, rotate_half(x) = [-x2, x1].
    pub(crate) fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32]) => rotate_body
}

#[inline(always)]
fn rotate_body(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (x1, x2) = head.split_at_mut(cos.len());
    for (((a, b), &c), &s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
        let (u, v) = (*a, *b);
        *a = u * c - v * s;
        *b = v * c + u * s;
    }
}

/// Asks the CPU to start loading `data` into its caches (a hint, with no
/// effect elsewhere): attention streams each sequence's keys and values from
/// memory, and loading the next sequence's while computing this one's hides
/// the wait.
#[inline]
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults, and the address lies inside `data`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Keys are cached in blocks of this many positions, each block
/// `[kv_heads * head_dim][KEY_BLOCK]`, so one query's scores against a block
/// are a vector operation per head dimension rather than a reduction per key.
pub(crate) const KEY_BLOCK: usize = 16;

/// Appends the key of `position` (`[kv_heads * head_dim]`) to a blocked cache.
pub(crate) fn push_key(keys: &mut Vec<f32>, position: usize, key: &[f32]) {
    let lane = position % KEY_BLOCK;
    if lane == 0 {
        keys.resize(keys.len() + key.len() * KEY_BLOCK, 0.0);
    }
    let block = keys.len() - key.len() * KEY_BLOCK;
    for (c, &k) in key.iter().enumerate() {
        keys[block + c * KEY_BLOCK + lane] = k;
    }
}

/// Attention of one token's query heads (`q`, [heads * head_dim]) over the
/// first `visible` cached positions: `keys` blocked as [`push_key`] writes
/// them, `values` `[position][kv_heads * head_dim]`. Writes `out` like `q`.
pub(crate) fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    visible: usize,
    dims: &Dims,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    scores.resize(MAX_GROUP * visible.div_ceil(KEY_BLOCK) * KEY_BLOCK, 0.0);
    attend_heads(
        q,
        keys,
        &values[..visible * dims.kv_heads * dims.head_dim],
        dims.kv_heads,
        dims.head_dim,
        &mut scores[..],
        out,
    );
}

simd_fn! {
    pub(crate) fn attend_heads(
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        kv_heads: usize,
        head_dim: usize,
        scores: &mut [f32],
        out: &mut [f32]
    ) => attend_body
}

/// Query heads attended together over one KV head, at most: each key and
/// value is loaded once for all of them.
const MAX_GROUP: usize = 4;
/// Head sizes up to this take the grouped loops (the usual ones are 64 and 128).
const MAX_HEAD_DIM: usize = 256;

#[inline(always)]
fn attend_body(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    kv_heads: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let width = kv_heads * head_dim;
    let visible = values.len() / width;
    let groups = q.len() / width;
    let scale = 1.0 / (head_dim as f32).sqrt();
    for kv in 0..kv_heads {
        let head = Head {
            keys,
            values,
            width,
            offset: kv * head_dim,
            visible,
            scale,
        };
        let mut h = kv * groups;
        while h < (kv + 1) * groups {
            let n = ((kv + 1) * groups - h).min(MAX_GROUP);
            let q = &q[h * head_dim..(h + n) * head_dim];
            let out = &mut out[h * head_dim..(h + n) * head_dim];
            // Sizes of 16 lanes get loops with every bound known.
            let grouped = head_dim.is_multiple_of(16) && head_dim <= MAX_HEAD_DIM;
            match (n, grouped) {
                (1, true) => head.attend_group::<1, 4>(q, head_dim, scores, out),
                (2, true) => head.attend_group::<2, 2>(q, head_dim, scores, out),
                (3, true) => head.attend_group::<3, 2>(q, head_dim, scores, out),
                (4, true) => head.attend_group::<4, 2>(q, head_dim, scores, out),
                _ => {
                    for (q, out) in q.chunks_exact(head_dim).zip(out.chunks_exact_mut(head_dim)) {
                        head.attend_any(q, scores, out);
                    }
                }
            }
            h += n;
        }
    }
}

/// One KV head's view of the cache.
struct Head<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    width: usize,
    offset: usize,
    visible: usize,
    scale: f32,
}

impl Head<'_> {
    /// Attention for `G` query heads of `head_dim` (a multiple of 16, at
    /// most [`MAX_HEAD_DIM`]) over this KV head, with `P` partial sums per
    /// head so that enough multiply-adds are in flight (one sum would make
    /// every step wait for the last).
    #[inline(always)]
    fn attend_group<const G: usize, const P: usize>(
        &self,
        q: &[f32],
        head_dim: usize,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let padded = self.visible.div_ceil(KEY_BLOCK) * KEY_BLOCK;
        // The queries by dimension: [dim][head].
        let mut by_dim = [[0f32; G]; MAX_HEAD_DIM];
        for (g, q) in q.chunks_exact(head_dim).enumerate() {
            for (t, &v) in by_dim.iter_mut().zip(q) {
                t[g] = v * self.scale;
            }
        }
        let by_dim: &[[[f32; G]; P]] = by_dim[..head_dim].as_chunks::<P>().0;
        // The cache may hold later positions (a prompt's own later tokens).
        let blocks = self.keys.chunks_exact(self.width * KEY_BLOCK);
        for (b, block) in blocks.take(padded / KEY_BLOCK).enumerate() {
            let rows = &block[self.offset * KEY_BLOCK..][..head_dim * KEY_BLOCK];
            let rows: &[[[f32; KEY_BLOCK]; P]] = rows.as_chunks::<KEY_BLOCK>().0.as_chunks::<P>().0;
            let mut acc = [[[0f32; KEY_BLOCK]; G]; P];
            for (keys, qs) in rows.iter().zip(by_dim) {
                for u in 0..P {
                    for g in 0..G {
                        fma16(&mut acc[u][g], qs[u][g], &keys[u]);
                    }
                }
            }
            for g in 0..G {
                let mut total = acc[0][g];
                for part in &acc[1..] {
                    add16(&mut total, &part[g]);
                }
                scores[g * padded + b * KEY_BLOCK..][..KEY_BLOCK].copy_from_slice(&total);
            }
        }
        for g in 0..G {
            softmax_in_place(&mut scores[g * padded..][..self.visible]);
        }
        // The weights by position: [position][head].
        let probs: [&[f32]; G] = std::array::from_fn(|g| &scores[g * padded..][..self.visible]);
        let values = &self.values[..self.visible * self.width];
        for c in 0..head_dim / 16 {
            let start = self.offset + 16 * c;
            let mut acc = [[[0f32; 16]; G]; P];
            let rows = values.chunks_exact(P * self.width);
            let tail = rows.remainder();
            for (j, rows) in rows.enumerate() {
                for u in 0..P {
                    let v: &[f32; 16] = rows[u * self.width + start..][..16]
                        .try_into()
                        .expect("16 values");
                    for g in 0..G {
                        fma16(&mut acc[u][g], probs[g][j * P + u], v);
                    }
                }
            }
            let done = self.visible - tail.len() / self.width;
            for (j, row) in tail.chunks_exact(self.width).enumerate() {
                let v: &[f32; 16] = row[start..][..16].try_into().expect("16 values");
                for g in 0..G {
                    fma16(&mut acc[0][g], probs[g][done + j], v);
                }
            }
            for g in 0..G {
                let mut total = acc[0][g];
                for part in &acc[1..] {
                    add16(&mut total, &part[g]);
                }
                out[g * head_dim + 16 * c..][..16].copy_from_slice(&total);
            }
        }
    }

    /// Attention for a head of any size.
    #[inline(always)]
    fn attend_any(&self, q: &[f32], scores: &mut [f32], out: &mut [f32]) {
        let blocks = self.visible.div_ceil(KEY_BLOCK);
        for (block, s) in self
            .keys
            .chunks_exact(self.width * KEY_BLOCK)
            .zip(scores.chunks_exact_mut(KEY_BLOCK))
            .take(blocks)
        {
            let start = self.offset * KEY_BLOCK;
            let sum = weighted_sum(q, block, KEY_BLOCK, start, KEY_BLOCK);
            for (s, v) in s.iter_mut().zip(sum) {
                *s = v * self.scale;
            }
        }
        let probs = &mut scores[..self.visible];
        softmax_in_place(probs);
        for (c, out) in out.chunks_mut(16).enumerate() {
            let start = self.offset + 16 * c;
            let sum = weighted_sum(probs, self.values, self.width, start, out.len());
            out.copy_from_slice(&sum[..out.len()]);
        }
    }
}

/// `acc += a * b`, lane by lane.
#[inline(always)]
fn fma16(acc: &mut [f32; 16], a: f32, b: &[f32; 16]) {
    for (acc, &b) in acc.iter_mut().zip(b) {
        *acc = a.mul_add(b, *acc);
    }
}

/// `acc += b`, lane by lane.
#[inline(always)]
fn add16(acc: &mut [f32; 16], b: &[f32; 16]) {
    for (acc, &b) in acc.iter_mut().zip(b) {
        *acc += b;
    }
}

/// `sum_j weights[j] * rows[j * stride + start..][..n]` for n <= 16.
#[inline(always)]
fn weighted_sum(weights: &[f32], rows: &[f32], stride: usize, start: usize, n: usize) -> [f32; 16] {
    if n == 16 {
        return weighted_sum16(weights, rows, stride, start);
    }
    let mut sum = [0f32; 16];
    for (j, &w) in weights.iter().enumerate() {
        for (s, &x) in sum.iter_mut().zip(&rows[j * stride + start..][..n]) {
            *s = w.mul_add(x, *s);
        }
    }
    sum
}

/// [`weighted_sum`] of 16-wide rows, in four independent partial sums (one
/// would make every step wait for the previous one).
#[inline(always)]
fn weighted_sum16(weights: &[f32], rows: &[f32], stride: usize, start: usize) -> [f32; 16] {
    let row = |j: usize| -> &[f32; 16] {
        rows[j * stride + start..j * stride + start + 16]
            .try_into()
            .expect("16 values")
    };
    let mut s = [[0f32; 16]; 4];
    let full = weights.len() / 4 * 4;
    for j in (0..full).step_by(4) {
        for u in 0..4 {
            let (w, x) = (weights[j + u], row(j + u));
            for l in 0..16 {
                s[u][l] = w.mul_add(x[l], s[u][l]);
            }
        }
    }
    for (j, &w) in weights.iter().enumerate().skip(full) {
        let x = row(j);
        for l in 0..16 {
            s[0][l] = w.mul_add(x[l], s[0][l]);
        }
    }
    std::array::from_fn(|l| (s[0][l] + s[1][l]) + (s[2][l] + s[3][l]))
}

/// softmax over `x`, in place, in loops that vectorise.
#[inline(always)]
fn softmax_in_place(x: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for (m, &v) in maxes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    let max = maxes.iter().fold(tail, |m, &v| m.max(v));
    for v in x.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

simd_fn! {
    /// `hidden = silu(gate) * up` per row, `gate_up` rows being [gate | up].
    pub(crate) fn swiglu(gate_up: &[f32], width: usize, hidden: &mut [f32]) => swiglu_body
}

#[inline(always)]
fn swiglu_body(gate_up: &[f32], width: usize, hidden: &mut [f32]) {
    for (row, out) in gate_up
        .chunks_exact(2 * width)
        .zip(hidden.chunks_exact_mut(width))
    {
        let (gate, up) = row.split_at(width);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + exp_f32(-g)) * u;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every head size (the fixed-size loops and the general one), with
    /// and without a partly filled last key block, against f64 arithmetic.
    #[test]
    fn attention_matches_the_definition() {
        for head_dim in [8, 16, 32, 48, 64, 128] {
            for visible in [1, 5, 16, 21] {
                // One to seven query heads per KV head (groups of up to four
                // heads are attended together).
                for (heads, kv_heads) in [(4, 2), (2, 2), (6, 2), (8, 2), (5, 1), (7, 1)] {
                    check_attention(head_dim, visible, heads, kv_heads);
                }
            }
        }
    }

    fn check_attention(d: usize, visible: usize, heads: usize, kv_heads: usize) {
        let dims = Dims {
            hidden: 0,
            intermediate: 0,
            heads,
            kv_heads,
            head_dim: d,
            vocab: 0,
            eps: 0.0,
        };
        let width = kv_heads * d;
        let value = |i: usize| ((i * 37 % 101) as f32 / 50.0) - 1.0;
        let q: Vec<f32> = (0..heads * d).map(value).collect();
        // The cache holds 17 positions past the visible ones (a prompt's
        // later tokens), which must not count.
        let cached = visible + 17;
        let keys: Vec<f32> = (0..cached * width).map(|i| value(i + 7)).collect();
        let values: Vec<f32> = (0..cached * width).map(|i| value(i + 11)).collect();
        let mut blocked = Vec::new();
        for (position, key) in keys.chunks_exact(width).enumerate() {
            push_key(&mut blocked, position, key);
        }
        assert_eq!(
            blocked.len(),
            cached.div_ceil(KEY_BLOCK) * KEY_BLOCK * width
        );
        let mut out = vec![0f32; heads * d];
        attend(
            &q,
            &blocked,
            &values,
            visible,
            &dims,
            &mut Vec::new(),
            &mut out,
        );
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let scores: Vec<f64> = (0..visible)
                .map(|j| {
                    (0..d)
                        .map(|i| q[h * d + i] as f64 * keys[j * width + kvh * d + i] as f64)
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for i in 0..d {
                let expected: f64 = (0..visible)
                    .map(|j| {
                        (scores[j] - max).exp() / total * values[j * width + kvh * d + i] as f64
                    })
                    .sum();
                let got = out[h * d + i] as f64;
                assert!(
                    (got - expected).abs() < 1e-5,
                    "d {d}, {visible} keys, head {h} of {heads}/{kv_heads} [{i}]: {got} vs {expected}"
                );
            }
        }
    }
}
