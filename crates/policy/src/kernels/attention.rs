//! Causal self-attention over a batch without a cache, as one operation:
//! rotary positions, scaled scores, the causal and padding mask, softmax and
//! the value mix, with a backward pass. Composed from tensor operations it
//! was a dozen graph nodes per layer, and candle's backward allocates, zeroes
//! and adds a full-size gradient buffer for every input of every node; the
//! [B, heads, T, T] scores alone were several of those.
//!
//! Queries, keys and values stay in the projections' layout, [B*T, heads*D],
//! and the products run per (row, head) on strided views of them.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};

use super::parallel::{cpu_slice, par_for, with_cpu, SharedMut};

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

/// Causal attention of `q` [B*T, heads*D] over `k`, `v` [B*T, kv_heads*D]
/// (rows batch-major). Query t of row b sees key j when j == t, or j < t and
/// key j is a real token (`key_valid` [B*T]); RoPE uses `cos`, `sin`
/// [B*T, D/2]. Returns [B*T, heads*D] in the same layout as `q`.
pub(crate) fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
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
    };
    Ok(q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

struct CausalAttention {
    dims: AttentionDims,
    key_valid: Arc<Vec<bool>>,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
}

/// The float types the kernel runs on.
trait AttnFloat: Float + candle_core::WithDType {
    fn from_f32(v: f32) -> Self;
    /// Causal softmax of each row i of `p` [T, T] over keys j <= i, key j < i
    /// shifted by `bias[j]`; entries past the diagonal become 0.
    fn masked_softmax(p: &mut [Self], bias: &[Self]);
}

impl AttnFloat for f32 {
    fn from_f32(v: f32) -> f32 {
        v
    }
    fn masked_softmax(p: &mut [f32], bias: &[f32]) {
        masked_softmax_f32(p, bias)
    }
}

impl AttnFloat for f64 {
    fn from_f32(v: f32) -> f64 {
        v as f64
    }
    fn masked_softmax(p: &mut [f64], bias: &[f64]) {
        masked_softmax_rows(p, bias)
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
        let max = seen.iter().copied().fold(T::NEG_INFINITY, T::max);
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
    /// RoPE (or, with `transpose`, its transpose) of `x` [B*T, heads*D], times `scale`.
    fn rotate<T: AttnFloat>(&self, x: &[T], heads: usize, transpose: bool, scale: T) -> Vec<T> {
        let d = self.dims.head_dim;
        let half = d / 2;
        let width = heads * d;
        let rows = x.len() / width;
        let mut out = vec![T::ZERO; x.len()];
        let dst = SharedMut(out.as_mut_ptr());
        par_for(rows, |range| {
            for row in range {
                let (c, s) = (
                    &self.cos[row * half..(row + 1) * half],
                    &self.sin[row * half..(row + 1) * half],
                );
                // SAFETY: row `row` of `out`, written by this task only.
                let o =
                    unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(row * width), width) };
                let src = &x[row * width..(row + 1) * width];
                for h in 0..heads {
                    let (src, o) = (&src[h * d..(h + 1) * d], &mut o[h * d..(h + 1) * d]);
                    for i in 0..half {
                        let (ci, si) = (T::from_f32(c[i]), T::from_f32(s[i]));
                        let si = if transpose { si.neg() } else { si };
                        let (x1, x2) = (src[i], src[i + half]);
                        o[i] = (x1 * ci - x2 * si) * scale;
                        o[i + half] = (x2 * ci + x1 * si) * scale;
                    }
                }
            }
        });
        out
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

    fn forward<T: AttnFloat>(&self, q: &[T], k: &[T], v: &[T]) -> Vec<T> {
        let AttentionDims {
            batch,
            seq: t,
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        let (qw, kw) = (heads * d, kv_heads * d);
        let qr = self.rotate(q, heads, false, self.scale());
        let kr = self.rotate(k, kv_heads, false, T::ONE);
        let mut out = vec![T::ZERO; q.len()];
        let dst = SharedMut(out.as_mut_ptr());
        par_for(batch * heads, |range| {
            let mut p = vec![T::ZERO; t * t];
            let mut bias = vec![T::ZERO; t];
            for task in range {
                let (b, h) = (task / heads, task % heads);
                self.key_bias(b, &mut bias);
                self.probs(&qr, &kr, (b, h), &bias, &mut p);
                let kvh = h / (heads / kv_heads);
                let v0 = v[b * t * kw + kvh * d..].as_ptr();
                // SAFETY: the [T, D] block of (b, h) in `out`, written by this task only.
                unsafe {
                    let o0 = dst.ptr().add(b * t * qw + h * d);
                    matmul(t, d, t, (o0, qw, 1), (p.as_ptr(), t, 1), (v0, kw, 1), false);
                }
            }
        });
        out
    }

    /// Gradients for q, k and v from the output `o` and its gradient `dout`.
    fn backward<T: AttnFloat>(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        o: &[T],
        dout: &[T],
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let AttentionDims {
            batch,
            seq: t,
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        let groups = heads / kv_heads;
        let (qw, kw) = (heads * d, kv_heads * d);
        let qr = self.rotate(q, heads, false, self.scale());
        let kr = self.rotate(k, kv_heads, false, T::ONE);
        let mut dqr = vec![T::ZERO; q.len()];
        let mut dkr = vec![T::ZERO; k.len()];
        let mut dv = vec![T::ZERO; v.len()];
        let (dq_ptr, dk_ptr, dv_ptr) = (
            SharedMut(dqr.as_mut_ptr()),
            SharedMut(dkr.as_mut_ptr()),
            SharedMut(dv.as_mut_ptr()),
        );
        // One task per (row, KV head): the query heads sharing a KV head add
        // into the same key and value gradients.
        par_for(batch * kv_heads, |range| {
            let mut p = vec![T::ZERO; t * t];
            let mut ds = vec![T::ZERO; t * t];
            let mut delta = vec![T::ZERO; t];
            let mut bias = vec![T::ZERO; t];
            for task in range {
                let (b, kvh) = (task / kv_heads, task % kv_heads);
                self.key_bias(b, &mut bias);
                let k0 = kr[b * t * kw + kvh * d..].as_ptr();
                let v0 = v[b * t * kw + kvh * d..].as_ptr();
                for g in 0..groups {
                    let h = kvh * groups + g;
                    self.probs(&qr, &kr, (b, h), &bias, &mut p);
                    let base = b * t * qw + h * d;
                    let do0 = dout[base..].as_ptr();
                    // SAFETY (all products below): [T, D] blocks at row stride
                    // qw / kw inside their buffers; the gradient blocks of
                    // (b, h) and (b, kvh) belong to this task only.
                    unsafe {
                        // dP = dO V^T.
                        matmul(
                            t,
                            t,
                            d,
                            (ds.as_mut_ptr(), t, 1),
                            (do0, qw, 1),
                            (v0, 1, kw),
                            false,
                        );
                    }
                    // dS = P * (dP - rowsum(dO * O)).
                    for (i, di) in delta.iter_mut().enumerate() {
                        let row = base + i * qw;
                        *di = dot3(&dout[row..row + d], &o[row..row + d], None);
                    }
                    for ((prow, dsrow), &di) in
                        p.chunks_exact(t).zip(ds.chunks_exact_mut(t)).zip(&delta)
                    {
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
                        let kv_base = b * t * kw + kvh * d;
                        let q0 = qr[base..].as_ptr();
                        let dk0 = dk_ptr.ptr().add(kv_base);
                        matmul(
                            t,
                            d,
                            t,
                            (dk0, kw, 1),
                            (ds.as_ptr(), 1, t),
                            (q0, qw, 1),
                            !first,
                        );
                        let dv0 = dv_ptr.ptr().add(kv_base);
                        matmul(
                            t,
                            d,
                            t,
                            (dv0, kw, 1),
                            (p.as_ptr(), 1, t),
                            (do0, qw, 1),
                            !first,
                        );
                    }
                }
            }
        });
        let dq = self.rotate(&dqr, heads, true, self.scale());
        let dk = self.rotate(&dkr, kv_heads, true, T::ONE);
        (dq, dk, dv)
    }

    fn check(&self, lq: &Layout, lk: &Layout, lv: &Layout) -> candle_core::Result<()> {
        let AttentionDims {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        } = self.dims;
        let rows = batch * seq;
        let ok = heads % kv_heads.max(1) == 0
            && head_dim % 2 == 0
            && lq.dims() == [rows, heads * head_dim]
            && lk.dims() == [rows, kv_heads * head_dim]
            && lv.dims() == lk.dims()
            && self.key_valid.len() == rows
            && self.cos.len() == rows * head_dim / 2
            && self.sin.len() == self.cos.len();
        if !ok {
            candle_core::bail!(
                "attention: q {:?}, k {:?}, v {:?} do not fit {:?}",
                lq.dims(),
                lk.dims(),
                lv.dims(),
                self.dims
            )
        }
        Ok(())
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "verity-causal-attention"
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
        self.check(lq, lk, lv)?;
        fn run<T: AttnFloat>(
            op: &CausalAttention,
            (q, lq): (&CpuStorage, &Layout),
            (k, lk): (&CpuStorage, &Layout),
            (v, lv): (&CpuStorage, &Layout),
        ) -> candle_core::Result<CpuStorage> {
            let (q, k, v) = (
                cpu_slice::<T>((q, lq))?,
                cpu_slice((k, lk))?,
                cpu_slice((v, lv))?,
            );
            Ok(T::to_cpu_storage_owned(op.forward(q, k, v)))
        }
        let out = match q {
            CpuStorage::F32(_) => run::<f32>(self, (q, lq), (k, lk), (v, lv))?,
            CpuStorage::F64(_) => run::<f64>(self, (q, lq), (k, lk), (v, lv))?,
            _ => candle_core::bail!("attention: only f32 and f64 on the CPU"),
        };
        Ok((out, lq.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        fn run<T: AttnFloat>(
            op: &CausalAttention,
            cpu: &[(&CpuStorage, &Layout)],
            like: [&Tensor; 3],
        ) -> candle_core::Result<[Tensor; 3]> {
            let s = |i: usize| cpu_slice::<T>(cpu[i]);
            let (dq, dk, dv) = op.backward(s(0)?, s(1)?, s(2)?, s(3)?, s(4)?);
            let wrap = |g: Vec<T>, like: &Tensor| Tensor::from_vec(g, like.shape(), &Device::Cpu);
            Ok([wrap(dq, like[0])?, wrap(dk, like[1])?, wrap(dv, like[2])?])
        }
        let grads = with_cpu(&[q, k, v, res, &grad], |cpu| match cpu[0].0 {
            CpuStorage::F32(_) => run::<f32>(self, cpu, [q, k, v]),
            CpuStorage::F64(_) => run::<f64>(self, cpu, [q, k, v]),
            _ => candle_core::bail!("attention: only f32 and f64 on the CPU"),
        });
        let [dq, dk, dv] = grads?;
        Ok((Some(dq), Some(dk), Some(dv)))
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
            let ours = causal_attention(
                &q,
                &k,
                &v,
                dims,
                Arc::new(valid.clone()),
                host(&cos),
                host(&sin),
            )?;
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
