//! Attention of one new token per row against the KV cache, on the CPU.
//!
//! Through matrix products this is 2 x rows x kv_heads tiny products per
//! layer and step (a [groups, D] x [D, S] each), plus a softmax: a fifth of a
//! decoding step at bench-tiny's shape. One pass per (row, KV head) does the
//! same work. Generation only (no backward); a test compares it with the
//! matrix-product path.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::error::Result;

/// `softmax(q k^T * scale + mask) v` for q [B, heads, D] (one token per row),
/// k and v [B, kv_heads, S, D] (any strides with a contiguous last dim), and
/// `key_valid` [B * S]: whether each cached column is a real token.
pub(crate) fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_valid: &[bool],
    scale: f32,
) -> Result<Tensor> {
    let op = DecodeAttention { key_valid, scale };
    Ok(q.contiguous()?.apply_op3_no_bwd(k, v, &op)?)
}

struct DecodeAttention<'a> {
    key_valid: &'a [bool],
    scale: f32,
}

/// Element offsets of a [B, KVH, S, D] view: start and the strides of B, KVH, S.
struct View {
    start: usize,
    stride: [usize; 3],
}

impl View {
    fn new(layout: &Layout) -> candle_core::Result<Self> {
        let s = layout.stride();
        if s.len() != 4 || s[3] != 1 {
            candle_core::bail!(
                "decode attention: cache view needs a contiguous last dim, got strides {s:?}"
            )
        }
        Ok(View {
            start: layout.start_offset(),
            stride: [s[0], s[1], s[2]],
        })
    }

    fn row(&self, b: usize, h: usize, s: usize) -> usize {
        self.start + b * self.stride[0] + h * self.stride[1] + s * self.stride[2]
    }
}

impl CustomOp3 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "verity-decode-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) = (q, k, v) else {
            candle_core::bail!("decode attention: f32 only")
        };
        let Some((q0, q1)) = lq.contiguous_offsets() else {
            candle_core::bail!("decode attention: q must be contiguous")
        };
        let (&[b, heads, d], &[kb, kv_heads, s, kd]) = (lq.dims(), lk.dims()) else {
            candle_core::bail!("decode attention: q {:?}, k {:?}", lq.dims(), lk.dims())
        };
        if kb != b
            || kd != d
            || lv.dims() != lk.dims()
            || heads % kv_heads != 0
            || self.key_valid.len() != b * s
        {
            candle_core::bail!(
                "decode attention: q {:?}, k {:?}, v {:?}, {} mask entries",
                lq.dims(),
                lk.dims(),
                lv.dims(),
                self.key_valid.len()
            )
        }
        let shape = Shapes {
            heads,
            kv_heads,
            s,
            d,
        };
        let (kview, vview) = (View::new(lk)?, View::new(lv)?);
        let mut out = vec![0f32; b * heads * d];
        attend_dispatch(&q[q0..q1], k, &kview, v, &vview, self, &shape, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((b, heads, d))))
    }
}

struct Shapes {
    heads: usize,
    kv_heads: usize,
    s: usize,
    d: usize,
}

#[allow(clippy::too_many_arguments)]
fn attend_dispatch(
    q: &[f32],
    k: &[f32],
    kv: &View,
    v: &[f32],
    vv: &View,
    op: &DecodeAttention,
    shape: &Shapes,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { attend_avx2(q, k, kv, v, vv, op, shape, out) };
        return;
    }
    attend(q, k, kv, v, vv, op, shape, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
    q: &[f32],
    k: &[f32],
    kv: &View,
    v: &[f32],
    vv: &View,
    op: &DecodeAttention,
    shape: &Shapes,
    out: &mut [f32],
) {
    attend(q, k, kv, v, vv, op, shape, out)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    k: &[f32],
    kv: &View,
    v: &[f32],
    vv: &View,
    op: &DecodeAttention,
    shape: &Shapes,
    out: &mut [f32],
) {
    let Shapes {
        heads,
        kv_heads,
        s,
        d,
    } = *shape;
    let groups = heads / kv_heads;
    let mut scores = vec![0f32; s];
    for (b, (q_row, out_row)) in q
        .chunks_exact(heads * d)
        .zip(out.chunks_exact_mut(heads * d))
        .enumerate()
    {
        let valid = &op.key_valid[b * s..(b + 1) * s];
        for h in 0..heads {
            let kvh = h / groups;
            let qh = &q_row[h * d..(h + 1) * d];
            let mut max = f32::NEG_INFINITY;
            for (j, score) in scores.iter_mut().enumerate() {
                *score = if valid[j] {
                    let start = kv.row(b, kvh, j);
                    dot(qh, &k[start..start + d]) * op.scale
                } else {
                    f32::NEG_INFINITY
                };
                max = max.max(*score);
            }
            if max == f32::NEG_INFINITY {
                // No visible key (a row of padding only): its output is never used.
                continue;
            }
            let mut sum = 0.0;
            for score in scores.iter_mut() {
                *score = fast_exp(*score - max);
                sum += *score;
            }
            let inv = 1.0 / sum;
            let oh = &mut out_row[h * d..(h + 1) * d];
            for (j, &p) in scores.iter().enumerate() {
                if p != 0.0 {
                    let start = vv.row(b, kvh, j);
                    axpy(p * inv, &v[start..start + d], oh);
                }
            }
        }
    }
}

/// Dot product with eight independent partial sums, so it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// e^x for x <= 0 to within about 2 ulp (Cephes' expf: x = n ln2 + r, a
/// degree-6 polynomial for e^r, 2^n from the exponent bits); -inf gives 0.
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    if x < -87.0 {
        return 0.0;
    }
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    #[test]
    fn fast_exp_is_accurate() {
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let (ours, exact) = (fast_exp(x) as f64, (x as f64).exp());
            assert!(
                (ours - exact).abs() <= 3e-7 * exact,
                "exp({x}): {ours} vs {exact}"
            );
        }
        // Below e^-87 (about 1.6e-38) it flushes to zero; softmax cannot tell.
        assert_eq!(fast_exp(-88.0), 0.0);
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn matches_the_matrix_product_path() -> Result<()> {
        let dev = Device::Cpu;
        let (b, heads, kv_heads, cap, s, d) = (3, 4, 2, 9, 7, 12);
        let q = Tensor::randn(0f32, 1.0, (b, heads, d), &dev)?;
        let k_buf = Tensor::randn(0f32, 1.0, (b, kv_heads, cap, d), &dev)?;
        let v_buf = Tensor::randn(0f32, 1.0, (b, kv_heads, cap, d), &dev)?;
        let (k, v) = (k_buf.narrow(2, 0, s)?, v_buf.narrow(2, 0, s)?);
        let mut valid = vec![true; b * s];
        valid[0] = false; // row 0: first column is padding
        valid[s] = false; // row 1: first two columns
        valid[s + 1] = false;
        let scale = 0.3;
        let ours = decode_attention(&q, &k, &v, &valid, scale)?;

        let mask: Vec<f32> = valid
            .iter()
            .map(|&ok| if ok { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let mask = Tensor::from_vec(mask, (b, 1, 1, s), &dev)?;
        let groups = heads / kv_heads;
        let qg = (q.reshape((b, kv_heads, groups, d))? * scale as f64)?;
        let scores = qg.matmul(&k.t()?)?.broadcast_add(&mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let theirs = probs.matmul(&v.contiguous()?)?.reshape((b, heads, d))?;
        let diff = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "max diff {diff}");
        Ok(())
    }
}
