//! The decoder's per-row operations: RMSNorm, RoPE, attention over one
//! sequence's cache, SwiGLU. Written as plain loops the compiler vectorises,
//! and compiled for AVX-512 or AVX2 + FMA when the CPU has them
//! (`simd_fn!`, crate::dispatch).

use crate::kernels::simd::{dot3, exp_f32, sum};

use super::Dims;

simd_fn! {
    /// `out = x / sqrt(mean(x^2) + eps) * weight`, row by row.
    fn rms_norm(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32]) => rms_norm_body
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
    fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f64) => rms_norm_in_place_body
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
    fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32]) => rotate_body
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
    scores.resize(visible.div_ceil(KEY_BLOCK) * KEY_BLOCK, 0.0);
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
    fn attend_heads(
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        kv_heads: usize,
        head_dim: usize,
        scores: &mut [f32],
        out: &mut [f32]
    ) => attend_body
}

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
    for (h, (q, out)) in q
        .chunks_exact(head_dim)
        .zip(out.chunks_exact_mut(head_dim))
        .enumerate()
    {
        let offset = (h / groups) * head_dim;
        let head = Head {
            keys,
            values,
            width,
            offset,
            visible,
            scale,
        };
        // The usual head sizes get loops with every bound known.
        match head_dim {
            16 => head.attend_fixed::<1>(q, scores, out),
            32 => head.attend_fixed::<2>(q, scores, out),
            64 => head.attend_fixed::<4>(q, scores, out),
            128 => head.attend_fixed::<8>(q, scores, out),
            _ => head.attend_any(q, scores, out),
        }
    }
}

/// One query head's view of the cache.
struct Head<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    width: usize,
    offset: usize,
    visible: usize,
    scale: f32,
}

impl Head<'_> {
    /// Attention for a head of `16 * C` dimensions.
    #[inline(always)]
    fn attend_fixed<const C: usize>(&self, q: &[f32], scores: &mut [f32], out: &mut [f32]) {
        let q: &[[f32; 4]] = q.as_chunks::<4>().0;
        for (block, s) in self
            .keys
            .chunks_exact(self.width * KEY_BLOCK)
            .zip(scores.chunks_exact_mut(KEY_BLOCK))
        {
            let rows = &block[self.offset * KEY_BLOCK..][..16 * C * KEY_BLOCK];
            let rows: &[[[f32; KEY_BLOCK]; 4]] = rows.as_chunks::<KEY_BLOCK>().0.as_chunks::<4>().0;
            // Four partial sums: one would make every step wait for the last.
            let mut acc = [[0f32; KEY_BLOCK]; 4];
            for (q4, r4) in q.iter().zip(rows) {
                for u in 0..4 {
                    for l in 0..KEY_BLOCK {
                        acc[u][l] = q4[u].mul_add(r4[u][l], acc[u][l]);
                    }
                }
            }
            for (l, s) in s.iter_mut().enumerate() {
                *s = ((acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])) * self.scale;
            }
        }
        let probs = &mut scores[..self.visible];
        softmax_in_place(probs);
        let mut acc = [[[0f32; 16]; C]; 2];
        let row = |j: usize| -> &[[f32; 16]; C] {
            let v = &self.values[j * self.width + self.offset..][..16 * C];
            v.as_chunks::<16>().0.try_into().expect("16 * C values")
        };
        let pairs = probs.as_chunks::<2>();
        for (j, p) in pairs.0.iter().enumerate() {
            for u in 0..2 {
                let v = row(2 * j + u);
                for c in 0..C {
                    for l in 0..16 {
                        acc[u][c][l] = p[u].mul_add(v[c][l], acc[u][c][l]);
                    }
                }
            }
        }
        if let [p] = pairs.1 {
            let v = row(self.visible - 1);
            for c in 0..C {
                for l in 0..16 {
                    acc[0][c][l] = p.mul_add(v[c][l], acc[0][c][l]);
                }
            }
        }
        for (c, out) in out.as_chunks_mut::<16>().0.iter_mut().enumerate() {
            for l in 0..16 {
                out[l] = acc[0][c][l] + acc[1][c][l];
            }
        }
    }

    /// Attention for a head of any size.
    #[inline(always)]
    fn attend_any(&self, q: &[f32], scores: &mut [f32], out: &mut [f32]) {
        for (block, s) in self
            .keys
            .chunks_exact(self.width * KEY_BLOCK)
            .zip(scores.chunks_exact_mut(KEY_BLOCK))
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
    fn swiglu(gate_up: &[f32], width: usize, hidden: &mut [f32]) => swiglu_body
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
                check_attention(head_dim, visible);
            }
        }
    }

    fn check_attention(d: usize, visible: usize) {
        let (heads, kv_heads) = (4, 2);
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
        let keys: Vec<f32> = (0..visible * width).map(|i| value(i + 7)).collect();
        let values: Vec<f32> = (0..visible * width).map(|i| value(i + 11)).collect();
        let mut blocked = Vec::new();
        for (position, key) in keys.chunks_exact(width).enumerate() {
            push_key(&mut blocked, position, key);
        }
        assert_eq!(
            blocked.len(),
            visible.div_ceil(KEY_BLOCK) * KEY_BLOCK * width
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
                    "d {d}, {visible} keys, head {h} [{i}]: {got} vs {expected}"
                );
            }
        }
    }
}
