//! Causal self-attention over a batch without a cache, as one operation:
//! rotary positions, scaled scores, the causal and padding mask, softmax and
//! the value mix, with a backward pass. Composed from tensor operations it
//! was a dozen graph nodes per layer, and candle's backward allocates, zeroes
//! and adds a full-size gradient buffer for every input of every node; the
//! [B, heads, T, T] scores alone were several of those.
//!
//! Queries, keys and values stay in the projection's layout, [B*T, (heads +
//! 2 kv_heads) * D], and the products run per (row, head) on strided views.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};

use super::parallel::{cpu_slice, par_for, with_cpu, zeros, SharedMut};

use super::simd::{dot3, sum, Float};
use crate::error::Result;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionDims {
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

/// Causal attention over `qkv` [B*T, (heads + 2 kv_heads) * D]: the
/// queries, keys and values side by side, as one projection produces them
/// (rows batch-major). Query t of row b sees key j when j == t, or j < t
/// and key j is a real token (`key_valid` [B*T]); RoPE uses `cos`, `sin`
/// [B*T, D/2]. Returns [B*T, heads*D].
pub(crate) fn causal_attention(
    qkv: &Tensor,
    dims: AttentionDims,
    key_valid: Arc<Vec<bool>>,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
) -> Result<Tensor> {
    let op = CausalAttention {
        dims,
        key_valid,
        cos,
        sin,
        saved: Mutex::new(None),
    };
    Ok(qkv.contiguous()?.apply_op1(op)?)
}

struct CausalAttention {
    dims: AttentionDims,
    key_valid: Arc<Vec<bool>>,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    /// From the forward, for the backward: the probabilities [B, heads, T,
    /// T], the rotated, scaled queries and the rotated keys.
    saved: Mutex<Option<[CpuStorage; 3]>>,
}

/// A row-major view: data, row stride, first column.
type View<'a, T> = (&'a [T], usize, usize);

/// The float types the kernel runs on.
trait AttnFloat: Float + candle_core::WithDType {
    fn from_f32(v: f32) -> Self;
    /// Causal softmax of each row i of `p` [T, T] over keys j <= i, key j < i
    /// shifted by `bias[j]`; entries past the diagonal become 0.
    fn masked_softmax(p: &mut [Self], bias: &[Self]);
    /// Rotate-half RoPE of each head of `x` into `o`; `cs` holds cos then sin.
    fn rotate_heads(x: &[Self], o: &mut [Self], cs: &[Self]);
}

impl AttnFloat for f32 {
    fn from_f32(v: f32) -> f32 {
        v
    }
    fn masked_softmax(p: &mut [f32], bias: &[f32]) {
        masked_softmax_f32(p, bias)
    }
    fn rotate_heads(x: &[f32], o: &mut [f32], cs: &[f32]) {
        rotate_heads_f32(x, o, cs)
    }
}

impl AttnFloat for f64 {
    fn from_f32(v: f32) -> f64 {
        v as f64
    }
    fn masked_softmax(p: &mut [f64], bias: &[f64]) {
        masked_softmax_rows(p, bias)
    }
    fn rotate_heads(x: &[f64], o: &mut [f64], cs: &[f64]) {
        rotate_heads_rows(x, o, cs)
    }
}

#[inline(always)]
fn masked_softmax_rows<T: Float>(p: &mut [T], bias: &[T]) {
    let t = bias.len();
    for (i, row) in p.chunks_exact_mut(t).enumerate() {
        // A query always sees itself, so the max is finite.
        let (seen, hidden) = row.split_at_mut(i + 1);
        for (x, &b) in seen[..i].iter_mut().zip(&bias[..i]) {
            *x = *x + b;
        }
        let max = max_lanes(seen);
        for x in seen.iter_mut() {
            *x = (*x - max).exp_fast();
        }
        let inv = T::ONE / sum(seen);
        for x in seen.iter_mut() {
            *x = *x * inv;
        }
        hidden.fill(T::ZERO);
    }
}

#[inline(always)]
fn rotate_heads_rows<T: Float>(x: &[T], o: &mut [T], cs: &[T]) {
    let d = cs.len();
    let half = d / 2;
    let (c, s) = cs.split_at(half);
    for (x, o) in x.chunks_exact(d).zip(o.chunks_exact_mut(d)) {
        let (x1, x2) = x.split_at(half);
        let (o1, o2) = o.split_at_mut(half);
        let pairs = o1.iter_mut().zip(o2.iter_mut()).zip(x1.iter().zip(x2));
        for (((o1, o2), (&a, &b)), (&c, &s)) in pairs.zip(c.iter().zip(s)) {
            *o1 = a * c - b * s;
            *o2 = b * c + a * s;
        }
    }
}

/// The largest element, with eight running maxima so it vectorises.
#[inline(always)]
fn max_lanes<T: Float>(v: &[T]) -> T {
    let bigger = |a: T, b: T| if a > b { a } else { b };
    let mut acc = [T::NEG_INFINITY; 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(T::NEG_INFINITY, bigger);
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = bigger(*a, x);
        }
    }
    acc.iter().copied().fold(tail, bigger)
}

vectorised!(rotate_heads_f32, rotate_heads_f32_avx2, rotate_heads_rows::<f32>(x: &[f32], o: &mut [f32], cs: &[f32]) -> ());
vectorised!(masked_softmax_f32, masked_softmax_f32_avx2, masked_softmax_rows::<f32>(p: &mut [f32], bias: &[f32]) -> ());

/// `dst = lhs * rhs` (or `dst += ...` when `accumulate`), strided row-major
/// views given as (pointer, row stride, column stride).
///
/// # Safety
/// Every view must lie inside its allocation for the given sizes.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: AttnFloat>(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut T, usize, usize),
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    accumulate: bool,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

impl CausalAttention {
    /// RoPE (or, with `transpose`, its transpose) of the `heads` heads of
    /// `src`, times `scale`, written to `dst` (pointer, row stride, first column).
    fn rotate<T: AttnFloat>(
        &self,
        (src, src_stride, src_col): View<T>,
        heads: usize,
        transpose: bool,
        scale: T,
        (dst, dst_stride, dst_col): (SharedMut<T>, usize, usize),
    ) {
        let d = self.dims.head_dim;
        let half = d / 2;
        let rows = self.dims.batch * self.dims.seq;
        par_for(rows, |range| {
            let mut cs = vec![T::ZERO; d];
            for row in range {
                let (c, s) = (
                    &self.cos[row * half..(row + 1) * half],
                    &self.sin[row * half..(row + 1) * half],
                );
                let start = row * dst_stride + dst_col;
                // SAFETY: these columns of row `row` of `dst`, written by this task only.
                let o = unsafe { dst.slice(start..start + heads * d) };
                let start = row * src_stride + src_col;
                let x = &src[start..start + heads * d];
                // cos and sin (negated for the transpose) in T, times the scale.
                for i in 0..half {
                    let si = if transpose { -s[i] } else { s[i] };
                    cs[i] = T::from_f32(c[i]) * scale;
                    cs[half + i] = T::from_f32(si) * scale;
                }
                T::rotate_heads(x, o, &cs);
            }
        });
    }

    /// 0 for the real tokens of row `b`, -inf for its padding.
    fn key_bias<T: AttnFloat>(&self, b: usize, bias: &mut [T]) {
        let t = self.dims.seq;
        for (x, &real) in bias.iter_mut().zip(&self.key_valid[b * t..(b + 1) * t]) {
            *x = if real { T::ZERO } else { T::NEG_INFINITY };
        }
    }

    fn scale<T: AttnFloat>(&self) -> T {
        <T as Float>::from_f64(1.0 / (self.dims.head_dim as f64).sqrt())
    }

    /// Probabilities [T, T] of query head `h` of row `b` from the rotated,
    /// scaled queries `qr` and rotated keys `kr`.
    /// `bias` [T]: 0 for the real keys of row `b`, -inf for padding.
    fn probs<T: AttnFloat>(
        &self,
        qr: &[T],
        kr: &[T],
        (b, h): (usize, usize),
        bias: &[T],
        p: &mut [T],
    ) {
        let AttentionDims {
            seq: t,
            heads,
            kv_heads,
            head_dim: d,
            ..
        } = self.dims;
        let kvh = h / (heads / kv_heads);
        let (qw, kw) = (heads * d, kv_heads * d);
        let q0 = qr[b * t * qw + h * d..].as_ptr();
        let k0 = kr[b * t * kw + kvh * d..].as_ptr();
        // SAFETY: T rows of D columns at these strides lie inside qr, kr and p.
        unsafe {
            matmul(
                t,
                t,
                d,
                (p.as_mut_ptr(), t, 1),
                (q0, qw, 1),
                (k0, 1, kw),
                false,
            )
        };
        T::masked_softmax(p, bias);
    }

    /// Width of a `qkv` row and the first columns of the keys and values.
    fn columns(&self) -> (usize, usize, usize) {
        let AttentionDims {
            heads,
            kv_heads,
            head_dim: d,
            ..
        } = self.dims;
        (
            (heads + 2 * kv_heads) * d,
            heads * d,
            (heads + kv_heads) * d,
        )
    }

    /// The rotated, scaled queries [B*T, heads*D] and rotated keys [B*T, kv_heads*D].
    fn rotated<T: AttnFloat>(&self, qkv: &[T]) -> (Vec<T>, Vec<T>) {
        let AttentionDims {
            heads,
            kv_heads,
            head_dim: d,
            ..
        } = self.dims;
        let (width, k_col, _) = self.columns();
        let rows = qkv.len() / width;
        let mut qr = zeros::<T>(rows * heads * d);
        let mut kr = zeros::<T>(rows * kv_heads * d);
        let (qw, kw) = (heads * d, kv_heads * d);
        let q_dst = (SharedMut(qr.as_mut_ptr()), qw, 0);
        self.rotate((qkv, width, 0), heads, false, self.scale(), q_dst);
        let k_dst = (SharedMut(kr.as_mut_ptr()), kw, 0);
        self.rotate((qkv, width, k_col), kv_heads, false, T::ONE, k_dst);
        (qr, kr)
    }

    /// The output [B*T, heads*D] and what the backward needs: the
    /// probabilities [B, heads, T, T] and the rotated queries and keys.
    fn forward<T: AttnFloat>(&self, qkv: &[T]) -> (Vec<T>, [Vec<T>; 3]) {
        let AttentionDims {
            batch,
            seq: t,
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        let (width, _, v_col) = self.columns();
        let qw = heads * d;
        let (qr, kr) = self.rotated(qkv);
        let mut out = zeros::<T>(batch * t * qw);
        let mut probs = zeros::<T>(batch * heads * t * t);
        let (dst, probs_ptr) = (SharedMut(out.as_mut_ptr()), SharedMut(probs.as_mut_ptr()));
        par_for(batch * heads, |range| {
            let mut bias = vec![T::ZERO; t];
            for task in range {
                let (b, h) = (task / heads, task % heads);
                self.key_bias(b, &mut bias);
                // SAFETY: the probabilities of (b, h), written by this task only.
                let p = unsafe { probs_ptr.slice(task * t * t..(task + 1) * t * t) };
                self.probs(&qr, &kr, (b, h), &bias, p);
                let kvh = h / (heads / kv_heads);
                let v0 = qkv[b * t * width + v_col + kvh * d..].as_ptr();
                // SAFETY: the [T, D] block of (b, h) in `out`, written by this task only.
                unsafe {
                    let o0 = dst.ptr().add(b * t * qw + h * d);
                    matmul(
                        t,
                        d,
                        t,
                        (o0, qw, 1),
                        (p.as_ptr(), t, 1),
                        (v0, width, 1),
                        false,
                    );
                }
            }
        });
        (out, [probs, qr, kr])
    }

    /// The gradient for `qkv` from the output `o`, its gradient `dout` and
    /// the forward's probabilities and rotated queries and keys.
    fn backward<T: AttnFloat>(
        &self,
        qkv: &[T],
        o: &[T],
        dout: &[T],
        [probs, qr, kr]: [&[T]; 3],
    ) -> Vec<T> {
        let AttentionDims {
            batch,
            seq: t,
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        let groups = heads / kv_heads;
        let (width, k_col, v_col) = self.columns();
        let (qw, kw) = (heads * d, kv_heads * d);
        let mut dqr = zeros::<T>(qr.len());
        let mut dkr = zeros::<T>(kr.len());
        let mut dqkv = zeros::<T>(qkv.len());
        let (dq_ptr, dk_ptr, dqkv_ptr) = (
            SharedMut(dqr.as_mut_ptr()),
            SharedMut(dkr.as_mut_ptr()),
            SharedMut(dqkv.as_mut_ptr()),
        );
        // One task per (row, KV head): the query heads sharing a KV head add
        // into the same key and value gradients.
        par_for(batch * kv_heads, |range| {
            let mut ds = vec![T::ZERO; t * t];
            let mut delta = vec![T::ZERO; t];
            let mut bias = vec![T::ZERO; t];
            for task in range {
                let (b, kvh) = (task / kv_heads, task % kv_heads);
                self.key_bias(b, &mut bias);
                let k0 = kr[b * t * kw + kvh * d..].as_ptr();
                let v0 = qkv[b * t * width + v_col + kvh * d..].as_ptr();
                for g in 0..groups {
                    let h = kvh * groups + g;
                    let p = &probs[(b * heads + h) * t * t..(b * heads + h + 1) * t * t];
                    let base = b * t * qw + h * d;
                    let do0 = dout[base..].as_ptr();
                    // SAFETY (all products below): [T, D] blocks at their row
                    // strides inside their buffers; the gradient blocks of
                    // (b, h) and (b, kvh) belong to this task only.
                    unsafe {
                        // dP = dO V^T.
                        let ds0 = ds.as_mut_ptr();
                        matmul(t, t, d, (ds0, t, 1), (do0, qw, 1), (v0, 1, width), false);
                    }
                    // dS = P * (dP - rowsum(dO * O)).
                    for (i, di) in delta.iter_mut().enumerate() {
                        let row = base + i * qw;
                        *di = dot3(&dout[row..row + d], &o[row..row + d], None);
                    }
                    let rows = p.chunks_exact(t).zip(ds.chunks_exact_mut(t));
                    for ((prow, dsrow), &di) in rows.zip(&delta) {
                        for (g, &pj) in dsrow.iter_mut().zip(prow) {
                            *g = pj * (*g - di);
                        }
                    }
                    let first = g == 0;
                    unsafe {
                        let dq0 = dq_ptr.ptr().add(base);
                        matmul(
                            t,
                            d,
                            t,
                            (dq0, qw, 1),
                            (ds.as_ptr(), t, 1),
                            (k0, kw, 1),
                            false,
                        );
                        let q0 = qr[base..].as_ptr();
                        let dk0 = dk_ptr.ptr().add(b * t * kw + kvh * d);
                        matmul(
                            t,
                            d,
                            t,
                            (dk0, kw, 1),
                            (ds.as_ptr(), 1, t),
                            (q0, qw, 1),
                            !first,
                        );
                        let dv0 = dqkv_ptr.ptr().add(b * t * width + v_col + kvh * d);
                        let p0 = p.as_ptr();
                        matmul(t, d, t, (dv0, width, 1), (p0, 1, t), (do0, qw, 1), !first);
                    }
                }
            }
        });
        let scale = self.scale();
        self.rotate((&dqr, qw, 0), heads, true, scale, (dqkv_ptr, width, 0));
        self.rotate(
            (&dkr, kw, 0),
            kv_heads,
            true,
            T::ONE,
            (dqkv_ptr, width, k_col),
        );
        dqkv
    }

    fn check(&self, l: &Layout) -> candle_core::Result<()> {
        let AttentionDims {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        } = self.dims;
        let rows = batch * seq;
        let ok = kv_heads > 0
            && heads % kv_heads == 0
            && head_dim % 2 == 0
            && l.dims() == [rows, self.columns().0]
            && self.key_valid.len() == rows
            && self.cos.len() == rows * head_dim / 2
            && self.sin.len() == self.cos.len();
        if !ok {
            candle_core::bail!("attention: qkv {:?} does not fit {:?}", l.dims(), self.dims)
        }
        Ok(())
    }
}

impl CustomOp1 for CausalAttention {
    fn name(&self) -> &'static str {
        "verity-causal-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.check(l)?;
        fn run<T: AttnFloat>(
            op: &CausalAttention,
            s: (&CpuStorage, &Layout),
        ) -> candle_core::Result<CpuStorage> {
            let (out, saved) = op.forward::<T>(cpu_slice(s)?);
            *op.saved.lock().expect("attention activations") =
                Some(saved.map(T::to_cpu_storage_owned));
            Ok(T::to_cpu_storage_owned(out))
        }
        let out = match s {
            CpuStorage::F32(_) => run::<f32>(self, (s, l))?,
            CpuStorage::F64(_) => run::<f64>(self, (s, l))?,
            _ => candle_core::bail!("attention: only f32 and f64 on the CPU"),
        };
        let rows = self.dims.batch * self.dims.seq;
        let shape = Shape::from((rows, self.dims.heads * self.dims.head_dim));
        Ok((out, shape))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        fn run<T: AttnFloat>(
            op: &CausalAttention,
            cpu: &[(&CpuStorage, &Layout)],
            shape: &Shape,
        ) -> candle_core::Result<Tensor> {
            let (qkv, o, dout) = (cpu_slice(cpu[0])?, cpu_slice(cpu[1])?, cpu_slice(cpu[2])?);
            let saved = op.saved.lock().expect("attention activations");
            let Some([probs, qr, kr]) = saved.as_ref() else {
                candle_core::bail!("attention: backward before forward")
            };
            let saved = [
                T::cpu_storage_as_slice(probs)?,
                T::cpu_storage_as_slice(qr)?,
                T::cpu_storage_as_slice(kr)?,
            ];
            Tensor::from_vec(op.backward::<T>(qkv, o, dout, saved), shape, &Device::Cpu)
        }
        let shape = qkv.shape();
        let dqkv = with_cpu(&[qkv, res, &grad], |cpu| {
            self.check(cpu[0].1)?;
            match cpu[0].0 {
                CpuStorage::F32(_) => run::<f32>(self, cpu, shape),
                CpuStorage::F64(_) => run::<f64>(self, cpu, shape),
                _ => candle_core::bail!("attention: only f32 and f64 on the CPU"),
            }
        })?;
        Ok(Some(dqkv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::max_diff;
    use candle_core::{DType, Var, D};

    /// The same attention from candle operations, as the model composed it.
    fn composed(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        dims: AttentionDims,
        valid: &[bool],
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let AttentionDims {
            batch: b,
            seq: t,
            heads,
            kv_heads,
            head_dim: d,
        } = dims;
        let rope = |x: &Tensor, n: usize| -> Result<Tensor> {
            let x = x.reshape((b, t, n, d))?;
            let (c, s) = (cos.unsqueeze(2)?, sin.unsqueeze(2)?);
            let (x1, x2) = (
                x.narrow(D::Minus1, 0, d / 2)?,
                x.narrow(D::Minus1, d / 2, d / 2)?,
            );
            let first = (x1.broadcast_mul(&c)? - x2.broadcast_mul(&s)?)?;
            let second = (x2.broadcast_mul(&c)? + x1.broadcast_mul(&s)?)?;
            Ok(Tensor::cat(&[first, second], D::Minus1)?.transpose(1, 2)?)
        };
        let groups = heads / kv_heads;
        let q = (rope(q, heads)? / (d as f64).sqrt())?;
        let repeat = |x: Tensor| -> Result<Tensor> {
            Ok(Tensor::cat(&vec![&x; groups], 2)?.reshape((b, heads, t, d))?)
        };
        let k = repeat(rope(k, kv_heads)?.contiguous()?)?;
        let v = repeat(
            v.reshape((b, t, kv_heads, d))?
                .transpose(1, 2)?
                .contiguous()?,
        )?;
        let mut mask = Vec::new();
        for row in 0..b {
            for i in 0..t {
                for j in 0..t {
                    let seen = j == i || (j < i && valid[row * t + j]);
                    mask.push(if seen { 0.0 } else { f64::NEG_INFINITY });
                }
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), &Device::Cpu)?.to_dtype(q.dtype())?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        Ok(probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * t, heads * d))?)
    }

    #[test]
    fn attention_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let dims = AttentionDims {
            batch: 3,
            seq: 7,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let rows = dims.batch * dims.seq;
        // Left padding in row 0, right padding in row 1, none in row 2.
        let valid: Vec<bool> = (0..rows)
            .map(|i| {
                let (row, col) = (i / dims.seq, i % dims.seq);
                match row {
                    0 => col >= 2,
                    1 => col < 5,
                    _ => true,
                }
            })
            .collect();
        let angles = Tensor::randn(0f32, 2.0, (dims.batch, dims.seq, dims.head_dim / 2), &dev)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let host = |t: &Tensor| Arc::new(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        for dtype in [DType::F64, DType::F32] {
            let var = |cols: usize| -> Result<Var> {
                Ok(Var::from_tensor(
                    &Tensor::randn(0f64, 1.5, (rows, cols), &dev)?.to_dtype(dtype)?,
                )?)
            };
            let q = var(dims.heads * dims.head_dim)?;
            let k = var(dims.kv_heads * dims.head_dim)?;
            let v = var(dims.kv_heads * dims.head_dim)?;
            let w = Tensor::randn(0f64, 1.0, (rows, dims.heads * dims.head_dim), &dev)?
                .to_dtype(dtype)?;
            let qkv = Tensor::cat(&[q.as_tensor(), k.as_tensor(), v.as_tensor()], 1)?;
            let ours =
                causal_attention(&qkv, dims, Arc::new(valid.clone()), host(&cos), host(&sin))?;
            let (c, s) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
            let theirs = composed(&q, &k, &v, dims, &valid, &c, &s)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let diff = max_diff(&f64_of(&ours), &f64_of(&theirs));
            assert!(diff < tol, "{dtype:?} forward diff {diff}");
            let g1 = (ours * &w)?.sum_all()?.backward()?;
            let g2 = (theirs * &w)?.sum_all()?.backward()?;
            for (name, var) in [("q", &q), ("k", &k), ("v", &v)] {
                let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                let diff = max_diff(&f64_of(a), &f64_of(b));
                assert!(diff < tol, "{dtype:?} d{name} diff {diff}");
            }
        }
        Ok(())
    }
}
