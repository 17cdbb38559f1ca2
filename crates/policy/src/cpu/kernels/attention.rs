//! Causal self-attention over a batch without a cache, as one operation:
//! rotary positions, scaled scores, the causal and padding mask, softmax and
//! the value mix, with a backward pass. Composed from tensor operations it
//! was a dozen graph nodes per layer, and candle's backward allocates, zeroes
//! and adds a full-size gradient buffer for every input of every node; the
//! [B, heads, T, T] scores alone were several of those.
//!
//! Queries, keys and values stay in the projection's layout, [rows, (heads +
//! 2 kv_heads) * D]; the products run per (sequence, KV head), each block of
//! queries over the keys it can see ([`super::head_product`]). Which keys a
//! query sees comes from a [`SequenceLayout`]: a padded batch of rows, or
//! packed sequences of which some continue a shared prefix (a prompt
//! attended to by its whole group of completions). A prefix's key and value
//! gradients collect every continuing sequence's share in a fixed order, so
//! the result does not depend on the threads.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};

use super::head_product::{block_end, product, ProductFloat, Reach, Rows, Strided};
use super::sequences::SequenceLayout;
use crate::cpu::parallel::{cpu_slice, par_for, with_cpu, SharedMut, Uninit};
use crate::cpu::simd::simd_fn;
use crate::cpu::simd::{dot3, max, sum, Float};
use crate::error::Result;

/// The head sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionDims {
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

/// Causal attention over `qkv` [rows, (heads + 2 kv_heads) * D]: the
/// queries, keys and values side by side, as one projection produces them.
/// `layout` says which keys each query sees; RoPE uses `cos`, `sin` [rows,
/// D/2]. Returns [rows, heads*D].
pub(crate) fn causal_attention(
    qkv: &Tensor,
    dims: AttentionDims,
    layout: Arc<SequenceLayout>,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
) -> Result<Tensor> {
    let op = CausalAttention::new(dims, layout, cos, sin);
    Ok(qkv.contiguous()?.apply_op1(op)?)
}

pub(super) struct CausalAttention {
    dims: AttentionDims,
    layout: Arc<SequenceLayout>,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    /// From the forward, for the backward: the probabilities (per sequence
    /// and head, [len, prefix + len]). The rotated queries and keys are
    /// computed again from `qkv` (a cheap pass) rather than kept.
    saved: Mutex<Option<CpuStorage>>,
}

/// A row-major view: data, row stride, first column.
type View<'a, T> = (&'a [T], usize, usize);

/// How [`CausalAttention::gather`] lays out a head's rows.
#[derive(Clone, Copy)]
enum Order {
    /// [w, D], as they are.
    Rows,
    /// [D, w].
    Transposed,
}

/// The float types the kernel runs on.
pub(super) trait AttnFloat: ProductFloat + candle_core::WithDType {
    /// Causal softmax of each row i of `p` [rows, width] over its first
    /// `width - rows + i + 1` keys (a prefix, then its own sequence up to
    /// itself), every key but the last of those shifted by `bias`; the
    /// entries after them become 0.
    fn masked_softmax(p: &mut [Self], bias: &[Self]);
    /// Rotate-half RoPE of the heads of consecutive rows; see [`rotate_rows`].
    fn rotate_rows(x: (&[Self], usize), o: (Uninit<'_, Self>, usize), rotation: Rotation<'_, Self>);
}

impl AttnFloat for f32 {
    fn masked_softmax(p: &mut [f32], bias: &[f32]) {
        masked_softmax_f32(p, bias)
    }
    fn rotate_rows(x: (&[f32], usize), o: (Uninit<'_, f32>, usize), rotation: Rotation<'_, f32>) {
        rotate_rows_f32(x, o, rotation)
    }
}

impl AttnFloat for f64 {
    fn masked_softmax(p: &mut [f64], bias: &[f64]) {
        masked_softmax_rows(p, bias)
    }
    fn rotate_rows(x: (&[f64], usize), o: (Uninit<'_, f64>, usize), rotation: Rotation<'_, f64>) {
        rotate_rows(x, o, rotation)
    }
}

#[inline(always)]
fn masked_softmax_rows<T: Float>(p: &mut [T], bias: &[T]) {
    let width = bias.len();
    let first = width - p.len() / width.max(1);
    for (i, row) in p.chunks_exact_mut(width).enumerate() {
        // A query always sees itself, so the max is finite.
        let seen_len = first + i + 1;
        let (seen, hidden) = row.split_at_mut(seen_len);
        for (x, &b) in seen[..seen_len - 1].iter_mut().zip(bias) {
            *x = *x + b;
        }
        let max = max(seen);
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

/// The angles of a run of rows and how to apply them.
#[derive(Clone, Copy)]
pub(super) struct Rotation<'a, T> {
    /// Each row's cos and sin, [rows, D/2] each.
    cos: &'a [f32],
    sin: &'a [f32],
    /// The heads' width, D.
    head_dim: usize,
    /// All the heads of a row, heads x D.
    width: usize,
    /// -1 for the transpose (the backward), else 1.
    sign: T,
    /// Applied to cos and sin alike.
    scale: T,
}

/// Rotate-half RoPE of every head of each row of `x` (row stride beside it)
/// into the same columns of `o`; both slices start at the first row's first
/// rotated column.
#[inline(always)]
fn rotate_rows<T: Float>(
    (x, x_stride): (&[T], usize),
    (o, o_stride): (Uninit<'_, T>, usize),
    r: Rotation<'_, T>,
) {
    let (d, half) = (r.head_dim, r.head_dim / 2);
    // cos then sin of one row, in T, scaled (sin signed).
    let mut cs = vec![T::ZERO; d];
    let angles = r.cos.chunks_exact(half).zip(r.sin.chunks_exact(half));
    for (row, (cos, sin)) in angles.enumerate() {
        let (c, s) = cs.split_at_mut(half);
        for ((c, s), (&cos, &sin)) in c.iter_mut().zip(s.iter_mut()).zip(cos.iter().zip(sin)) {
            *c = T::from_f64(cos as f64) * r.scale;
            *s = T::from_f64(sin as f64) * r.sign * r.scale;
        }
        let (c, s) = (&*c, &*s);
        let x = &x[row * x_stride..row * x_stride + r.width];
        let o = &mut o[row * o_stride..row * o_stride + r.width];
        for (x, o) in x.chunks_exact(d).zip(o.chunks_exact_mut(d)) {
            let (x1, x2) = x.split_at(half);
            let (o1, o2) = o.split_at_mut(half);
            let pairs = o1.iter_mut().zip(o2.iter_mut()).zip(x1.iter().zip(x2));
            for (((o1, o2), (&a, &b)), (&c, &s)) in pairs.zip(c.iter().zip(s)) {
                o1.write(a * c - b * s);
                o2.write(b * c + a * s);
            }
        }
    }
}

simd_fn! {
    fn rotate_rows_f32(x: (&[f32], usize), o: (Uninit<'_, f32>, usize), rotation: Rotation<'_, f32>) => rotate_rows
}
simd_fn! {
    fn masked_softmax_f32(p: &mut [f32], bias: &[f32]) => masked_softmax_rows
}

impl CausalAttention {
    pub(super) fn new(
        dims: AttentionDims,
        layout: Arc<SequenceLayout>,
        cos: Arc<Vec<f32>>,
        sin: Arc<Vec<f32>>,
    ) -> Self {
        CausalAttention {
            dims,
            layout,
            cos,
            sin,
            saved: Mutex::new(None),
        }
    }

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
        let (half, width) = (d / 2, heads * d);
        let sign = if transpose { T::ONE.neg() } else { T::ONE };
        par_for(self.layout.rows(), |range| {
            let last = range.end - 1;
            let span = range.start * dst_stride + dst_col..last * dst_stride + dst_col + width;
            // SAFETY: the task's rows of `dst`, inside its allocation; only
            // their `width` columns from `dst_col` are written, by this task
            // alone.
            let o = unsafe { dst.uninit(span) };
            let x = &src[range.start * src_stride + src_col..last * src_stride + src_col + width];
            let rotation = Rotation {
                cos: &self.cos[range.start * half..range.end * half],
                sin: &self.sin[range.start * half..range.end * half],
                head_dim: d,
                width,
                sign,
                scale,
            };
            T::rotate_rows((x, src_stride), (o, dst_stride), rotation);
        });
    }

    /// The keys sequence `s` sees, prefix first: 0 for real tokens, -inf for padding.
    fn key_bias<T: AttnFloat>(&self, s: usize, bias: &mut Vec<T>) {
        let (p_start, p_len) = self.layout.prefix_of(s);
        let own = self.layout.sequences()[s];
        bias.clear();
        for row in (p_start..p_start + p_len).chain(own.start..own.start + own.len) {
            bias.push(match self.layout.is_valid(row) {
                true => T::ZERO,
                false => T::NEG_INFINITY,
            });
        }
    }

    pub(super) fn dims(&self) -> AttentionDims {
        self.dims
    }

    fn scale<T: AttnFloat>(&self) -> T {
        <T as Float>::from_f64(1.0 / (self.dims.head_dim as f64).sqrt())
    }

    /// Where each sequence's probabilities start: heads blocks of [len,
    /// prefix + len] each; the last entry is the total.
    fn probs_offsets(&self) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(self.layout.sequences().len() + 1);
        let mut at = 0;
        offsets.push(0);
        for (s, seq) in self.layout.sequences().iter().enumerate() {
            let (_, p_len) = self.layout.prefix_of(s);
            at += self.dims.heads * seq.len * (p_len + seq.len);
            offsets.push(at);
        }
        offsets
    }

    /// Width of a `qkv` row and the first columns of the keys and values.
    fn columns(&self) -> (usize, usize, usize) {
        let AttentionDims {
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        (
            (heads + 2 * kv_heads) * d,
            heads * d,
            (heads + kv_heads) * d,
        )
    }

    /// The rotated, scaled queries [rows, heads*D] and rotated keys [rows, kv_heads*D].
    fn rotated<T: AttnFloat>(&self, qkv: &[T]) -> (Vec<T>, Vec<T>) {
        let AttentionDims {
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        let (width, k_col, _) = self.columns();
        let rows = qkv.len() / width;
        let (qw, kw) = (heads * d, kv_heads * d);
        let mut qr: Vec<T> = Vec::with_capacity(rows * qw);
        let mut kr: Vec<T> = Vec::with_capacity(rows * kw);
        let q_dst = (SharedMut(qr.as_mut_ptr()), qw, 0);
        self.rotate((qkv, width, 0), heads, false, self.scale(), q_dst);
        let k_dst = (SharedMut(kr.as_mut_ptr()), kw, 0);
        self.rotate((qkv, width, k_col), kv_heads, false, T::ONE, k_dst);
        // SAFETY: `rotate` wrote every head of every row of both.
        unsafe {
            qr.set_len(rows * qw);
            kr.set_len(rows * kw);
        }
        (qr, kr)
    }

    /// The output [rows, heads*D] and what the backward needs: the
    /// probabilities.
    pub(super) fn forward<T: AttnFloat>(&self, qkv: &[T]) -> (Vec<T>, Vec<T>) {
        let AttentionDims {
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        let groups = heads / kv_heads;
        let (width, _, v_col) = self.columns();
        let (qw, kw) = (heads * d, kv_heads * d);
        let (qr, kr) = self.rotated(qkv);
        let offsets = self.probs_offsets();
        // Both written whole below: the sequences tile the rows, and each
        // (sequence, head) writes its output columns and its probabilities.
        let mut out: Vec<T> = Vec::with_capacity(self.layout.rows() * qw);
        let mut probs: Vec<T> = Vec::with_capacity(offsets[offsets.len() - 1]);
        let (dst, probs_ptr) = (SharedMut(out.as_mut_ptr()), SharedMut(probs.as_mut_ptr()));
        // One task per (sequence, KV head): its query heads share the
        // gathered keys and values.
        par_for(self.layout.sequences().len() * kv_heads, |range| {
            let (mut bias, mut keys_t, mut values) = (Vec::new(), Vec::new(), Vec::new());
            for task in range {
                let (s, kvh) = (task / kv_heads, task % kv_heads);
                let seq = self.layout.sequences()[s];
                let p_len = self.layout.prefix_of(s).1;
                let (len, w) = (seq.len, p_len + seq.len);
                self.key_bias(s, &mut bias);
                self.gather(s, (&kr, kw, kvh * d), Order::Transposed, &mut keys_t);
                self.gather(s, (qkv, width, v_col + kvh * d), Order::Rows, &mut values);
                for h in kvh * groups..(kvh + 1) * groups {
                    let block = offsets[s] + h * len * w;
                    // The probabilities of (s, h), written by this task only.
                    let p_ptr = probs_ptr.ptr().wrapping_add(block);
                    let queries = Strided {
                        ptr: qr[seq.start * qw + h * d..].as_ptr(),
                        row: qw,
                        col: 1,
                    };
                    // SAFETY (both products): [len, D] and [len, w] blocks at
                    // their strides inside their buffers; the output block
                    // of (s, h) is this task's.
                    unsafe {
                        // Scores: each block of queries up to its last key.
                        let scores = Rows {
                            ptr: p_ptr,
                            stride: w,
                        };
                        let keys = Rows {
                            ptr: keys_t.as_ptr(),
                            stride: w,
                        };
                        product(len, scores, queries, keys, false, |rows| Reach {
                            depth: 0..d,
                            cols: p_len + rows.end,
                        });
                        // The keys past a block's last row, never computed:
                        // the softmax hides them (zeroed first, so the slice
                        // below holds initialised values).
                        for i in 0..len {
                            let seen = p_len + block_end(i, len);
                            p_ptr.add(i * w + seen).write_bytes(0, w - seen);
                        }
                    }
                    // SAFETY: written above, every one of the len x w.
                    let p = unsafe { probs_ptr.slice(block..block + len * w) };
                    T::masked_softmax(p, &bias);
                    // SAFETY: the output block [len, D] of (s, h) is this
                    // task's; p and the values are read within their rows.
                    unsafe {
                        let o = Rows {
                            ptr: dst.ptr().add(seq.start * qw + h * d),
                            stride: qw,
                        };
                        let p = Strided {
                            ptr: p.as_ptr(),
                            row: w,
                            col: 1,
                        };
                        let v = Rows {
                            ptr: values.as_ptr(),
                            stride: d,
                        };
                        product(len, o, p, v, false, |rows| Reach {
                            depth: 0..p_len + rows.end,
                            cols: d,
                        });
                    }
                }
            }
        });
        // SAFETY: every (sequence, head) above wrote its block of both.
        unsafe {
            out.set_len(self.layout.rows() * qw);
            probs.set_len(offsets[offsets.len() - 1]);
        }
        (out, probs)
    }

    /// Head `col..col + D` of the rows sequence `s` sees (its prefix's,
    /// then its own) from `src` (row stride `stride`), into `out` as [w, D]
    /// rows or transposed, [D, w].
    fn gather<T: AttnFloat>(
        &self,
        s: usize,
        (src, stride, col): View<T>,
        order: Order,
        out: &mut Vec<T>,
    ) {
        let d = self.dims.head_dim;
        let (p_start, p_len) = self.layout.prefix_of(s);
        let own = self.layout.sequences()[s];
        let w = p_len + own.len;
        let rows = (p_start..p_start + p_len).chain(own.start..own.start + own.len);
        out.clear();
        out.resize(w * d, T::ZERO);
        for (j, row) in rows.enumerate() {
            let head = &src[row * stride + col..row * stride + col + d];
            match order {
                Order::Rows => out[j * d..(j + 1) * d].copy_from_slice(head),
                Order::Transposed => {
                    for (c, &v) in head.iter().enumerate() {
                        out[c * w + j] = v;
                    }
                }
            }
        }
    }

    /// The gradient for `qkv` from the output `o`, its gradient `dout` and
    /// the forward's probabilities.
    pub(super) fn backward<T: AttnFloat>(
        &self,
        qkv: &[T],
        o: &[T],
        dout: &[T],
        probs: &[T],
    ) -> Vec<T> {
        let AttentionDims {
            heads,
            kv_heads,
            head_dim: d,
        } = self.dims;
        let groups = heads / kv_heads;
        let (width, k_col, v_col) = self.columns();
        let (qw, kw) = (heads * d, kv_heads * d);
        let seqs = self.layout.sequences();
        let (qr, kr) = self.rotated(qkv);
        let (qr, kr) = (&qr[..], &kr[..]);
        let offsets = self.probs_offsets();
        // A continuing sequence's share of its prefix's key and value
        // gradients goes to a block of its own, [prefix, D] per KV head.
        let mut share_at = Vec::with_capacity(seqs.len() + 1);
        share_at.push(0);
        for s in 0..seqs.len() {
            let last = share_at[s];
            share_at.push(last + self.layout.prefix_of(s).1 * kw);
        }
        // Every element of these is written below before it is read: the
        // sequences tile the rows; each (sequence, KV head) writes its rows
        // of dK, dV and the shares for its first query head and adds to them
        // for the others, and each head's dQ once. dqkv's value columns come
        // from those tasks, its query and key columns from the rotations.
        let mut dk_share: Vec<T> = Vec::with_capacity(share_at[seqs.len()]);
        let mut dv_share: Vec<T> = Vec::with_capacity(share_at[seqs.len()]);
        let mut dqr: Vec<T> = Vec::with_capacity(qr.len());
        let mut dkr: Vec<T> = Vec::with_capacity(kr.len());
        let mut dqkv: Vec<T> = Vec::with_capacity(qkv.len());
        let ptrs = [&mut dqr, &mut dkr, &mut dqkv, &mut dk_share, &mut dv_share]
            .map(|v| SharedMut(v.as_mut_ptr()));
        let [dq_ptr, dk_ptr, dqkv_ptr, dks_ptr, dvs_ptr] = ptrs;
        // One task per (sequence, KV head): the query heads sharing a KV
        // head add into the same key and value gradients.
        par_for(seqs.len() * kv_heads, |range| {
            let (mut ds, mut delta, mut keys, mut values_t) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for task in range {
                let (s, kvh) = (task / kv_heads, task % kv_heads);
                let seq = seqs[s];
                let p_len = self.layout.prefix_of(s).1;
                let (len, w) = (seq.len, p_len + seq.len);
                ds.resize(len * w, T::ZERO);
                delta.resize(len, T::ZERO);
                self.gather(s, (kr, kw, kvh * d), Order::Rows, &mut keys);
                self.gather(
                    s,
                    (qkv, width, v_col + kvh * d),
                    Order::Transposed,
                    &mut values_t,
                );
                for h in kvh * groups..(kvh + 1) * groups {
                    let first = h == kvh * groups;
                    let block = offsets[s] + h * len * w;
                    let p = &probs[block..block + len * w];
                    let base = seq.start * qw + h * d;
                    let by_row = |x: &[T], row: usize| Strided {
                        ptr: x.as_ptr(),
                        row,
                        col: 1,
                    };
                    let by_col = |x: *const T, col: usize| Strided {
                        ptr: x,
                        row: 1,
                        col,
                    };
                    let rows = |ptr: *const T, stride: usize| Rows { ptr, stride };
                    let rows_mut = |ptr: *mut T, stride: usize| Rows { ptr, stride };
                    let d_out = by_row(&dout[base..], qw);
                    // What each block of queries sees: the prefix and its
                    // own sequence up to its last row.
                    let seen = |rows: Range<usize>| p_len + rows.end;
                    // SAFETY (all products below): blocks at their row
                    // strides inside their buffers; the gradient blocks of
                    // (s, h), of (s, kvh) and the shares of s belong to
                    // this task only.
                    unsafe {
                        // dP = dO V^T.
                        let values = rows(values_t.as_ptr(), w);
                        let dp = rows_mut(ds.as_mut_ptr(), w);
                        product(len, dp, d_out, values, false, |r| Reach {
                            depth: 0..d,
                            cols: seen(r),
                        });
                    }
                    // dS = P * (dP - rowsum(dO * O)), 0 past each query's keys.
                    for (i, di) in delta.iter_mut().enumerate() {
                        let row = base + i * qw;
                        *di = dot3(&dout[row..row + d], &o[row..row + d], None);
                    }
                    let rows_of = p.chunks_exact(w).zip(ds.chunks_exact_mut(w));
                    for (i, ((prow, dsrow), &di)) in rows_of.zip(&delta).enumerate() {
                        let (visible, hidden) = dsrow.split_at_mut(p_len + i + 1);
                        for (g, &pj) in visible.iter_mut().zip(prow) {
                            *g = pj * (*g - di);
                        }
                        hidden.fill(T::ZERO);
                    }
                    unsafe {
                        // dQ = dS K.
                        let dq = rows_mut(dq_ptr.ptr().add(base), qw);
                        let keys = rows(keys.as_ptr(), d);
                        product(len, dq, by_row(&ds, w), keys, false, |r| Reach {
                            depth: 0..seen(r),
                            cols: d,
                        });
                        // dK = dS^T Q and dV = P^T dO: a key sees the
                        // queries from its own row on (a prefix's, all).
                        let queries = rows(qr[base..].as_ptr(), qw);
                        let d_out = rows(dout[base..].as_ptr(), qw);
                        let later = |r: Range<usize>| Reach {
                            depth: r.start..len,
                            cols: d,
                        };
                        let all = |_: Range<usize>| Reach {
                            depth: 0..len,
                            cols: d,
                        };
                        if p_len > 0 {
                            let share = share_at[s] + kvh * d;
                            let dk = rows_mut(dks_ptr.ptr().add(share), kw);
                            product(p_len, dk, by_col(ds.as_ptr(), w), queries, !first, all);
                            let dv = rows_mut(dvs_ptr.ptr().add(share), kw);
                            product(p_len, dv, by_col(p.as_ptr(), w), d_out, !first, all);
                        }
                        let dk = rows_mut(dk_ptr.ptr().add(seq.start * kw + kvh * d), kw);
                        let ds_own = by_col(ds.as_ptr().add(p_len), w);
                        product(len, dk, ds_own, queries, !first, later);
                        let dv = dqkv_ptr.ptr().add(seq.start * width + v_col + kvh * d);
                        let p_own = by_col(p.as_ptr().add(p_len), w);
                        product(len, rows_mut(dv, width), p_own, d_out, !first, later);
                    }
                }
            }
        });
        // SAFETY: the tasks above wrote all of the query and key gradients
        // and the shares (each (sequence, KV head) its rows, without
        // accumulating for its first query head).
        unsafe {
            dqr.set_len(qr.len());
            dkr.set_len(kr.len());
            dk_share.set_len(share_at[seqs.len()]);
            dv_share.set_len(share_at[seqs.len()]);
        }
        // Each prefix collects its continuing sequences' shares, in order.
        let prefixes: Vec<usize> = (0..seqs.len())
            .filter(|&p| seqs.iter().any(|s| s.prefix == Some(p)))
            .collect();
        par_for(prefixes.len(), |range| {
            for &p in &prefixes[range] {
                let prefix = seqs[p];
                for s in (0..seqs.len()).filter(|&s| seqs[s].prefix == Some(p)) {
                    for r in 0..prefix.len {
                        let share = share_at[s] + r * kw;
                        let row = prefix.start + r;
                        // SAFETY: the prefix's rows, written by this task only.
                        let (dk, dv) = unsafe {
                            (
                                dk_ptr.slice(row * kw..(row + 1) * kw),
                                dqkv_ptr.slice(row * width + v_col..row * width + v_col + kw),
                            )
                        };
                        for (x, &y) in dk.iter_mut().zip(&dk_share[share..share + kw]) {
                            let own = *x;
                            *x = own + y;
                        }
                        for (x, &y) in dv.iter_mut().zip(&dv_share[share..share + kw]) {
                            let own = *x;
                            *x = own + y;
                        }
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
        // SAFETY: the values' columns were written above, the queries' and
        // keys' by the two rotations.
        unsafe { dqkv.set_len(qkv.len()) };
        dqkv
    }

    fn check(&self, l: &Layout) -> candle_core::Result<()> {
        self.check_dims(l.dims())
    }

    /// Whether `qkv` of these dims fits the heads, the sequences and the angles.
    pub(super) fn check_dims(&self, qkv: &[usize]) -> candle_core::Result<()> {
        let AttentionDims {
            heads,
            kv_heads,
            head_dim,
        } = self.dims;
        let rows = self.layout.rows();
        let ok = kv_heads > 0
            && heads % kv_heads == 0
            && head_dim % 2 == 0
            && qkv == [rows, self.columns().0]
            && self.cos.len() == rows * head_dim / 2
            && self.sin.len() == self.cos.len();
        if !ok {
            candle_core::bail!("attention: qkv {:?} does not fit {:?}", qkv, self.dims)
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
            let (out, probs) = op.forward::<T>(cpu_slice(s)?);
            *op.saved.lock().expect("attention activations") = Some(T::to_cpu_storage_owned(probs));
            Ok(T::to_cpu_storage_owned(out))
        }
        let out = match s {
            CpuStorage::F32(_) => run::<f32>(self, (s, l))?,
            CpuStorage::F64(_) => run::<f64>(self, (s, l))?,
            _ => candle_core::bail!("attention: only f32 and f64 on the CPU"),
        };
        let rows = self.layout.rows();
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
            let Some(probs) = saved.as_ref() else {
                candle_core::bail!("attention: backward before forward")
            };
            let probs = T::cpu_storage_as_slice(probs)?;
            Tensor::from_vec(op.backward::<T>(qkv, o, dout, probs), shape, &Device::Cpu)
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
    use crate::cpu::kernels::max_diff;
    use crate::cpu::kernels::sequences::Sequence;
    use crate::init::test_randn;
    use candle_core::{DType, Var, D};

    /// The same attention from candle operations over a padded batch of
    /// `b` rows of `t` tokens, as the model composed it.
    #[allow(clippy::too_many_arguments)]
    fn composed(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        (b, t): (usize, usize),
        dims: AttentionDims,
        valid: &[bool],
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let AttentionDims {
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

    const DIMS: AttentionDims = AttentionDims {
        heads: 4,
        kv_heads: 2,
        head_dim: 8,
    };

    fn host(t: &Tensor) -> Arc<Vec<f32>> {
        Arc::new(t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
    }

    fn f64_of(t: &Tensor) -> Tensor {
        t.to_dtype(DType::F64).unwrap()
    }

    /// Heads wide enough for the products' full 32-column tiles, and
    /// sequences long enough for several blocks of rows.
    const WIDE: AttentionDims = AttentionDims {
        heads: 4,
        kv_heads: 2,
        head_dim: 32,
    };

    #[test]
    fn attention_matches_the_composition_forward_and_backward() -> Result<()> {
        matches_the_composition((3, 7), DIMS)?;
        matches_the_composition((3, 37), WIDE)
    }

    fn matches_the_composition((b, t): (usize, usize), dims: AttentionDims) -> Result<()> {
        let dev = Device::Cpu;
        let rows = b * t;
        // Left padding in row 0, right padding in row 1, none in row 2.
        let valid: Vec<bool> = (0..rows)
            .map(|i| {
                let (row, col) = (i / t, i % t);
                match row {
                    0 => col >= 2,
                    1 => col < 5,
                    _ => true,
                }
            })
            .collect();
        let layout = Arc::new(SequenceLayout::rectangular(b, t, valid.clone()));
        let angles = test_randn(0f32, 2.0, (b, t, dims.head_dim / 2), &dev)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        for dtype in [DType::F64, DType::F32] {
            let var = |cols: usize| -> Result<Var> {
                Ok(Var::from_tensor(
                    &test_randn(0f64, 1.5, (rows, cols), &dev)?.to_dtype(dtype)?,
                )?)
            };
            let q = var(dims.heads * dims.head_dim)?;
            let k = var(dims.kv_heads * dims.head_dim)?;
            let v = var(dims.kv_heads * dims.head_dim)?;
            let w =
                test_randn(0f64, 1.0, (rows, dims.heads * dims.head_dim), &dev)?.to_dtype(dtype)?;
            let qkv = Tensor::cat(&[q.as_tensor(), k.as_tensor(), v.as_tensor()], 1)?;
            let ours = causal_attention(&qkv, dims, layout.clone(), host(&cos), host(&sin))?;
            let (c, s) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
            let theirs = composed(&q, &k, &v, (b, t), dims, &valid, &c, &s)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
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

    /// A prompt shared by a group of continuations computes what each
    /// [prompt | continuation] row computes alone, gradients included (the
    /// prompt's gradient is the sum of its copies').
    #[test]
    fn a_shared_prefix_equals_its_copies_forward_and_backward() -> Result<()> {
        equals_its_copies(5, &[3, 6, 1], DIMS)?;
        equals_its_copies(9, &[20, 27, 1], WIDE)
    }

    fn equals_its_copies(p: usize, lens: &[usize], dims: AttentionDims) -> Result<()> {
        let dev = Device::Cpu;
        let t = p + lens.iter().max().expect("a continuation");
        // Packed: prompt, then the continuations; second prompt alone.
        let mut seqs = vec![Sequence {
            start: 0,
            len: p,
            prefix: None,
        }];
        let mut start = p;
        for &len in lens {
            seqs.push(Sequence {
                start,
                len,
                prefix: Some(0),
            });
            start += len;
        }
        seqs.push(Sequence {
            start,
            len: 2,
            prefix: None,
        });
        let packed_rows = start + 2;
        let layout = Arc::new(SequenceLayout::new(seqs, packed_rows)?);
        // Padded: each continuation after its own copy of the prompt,
        // right-padded to t; packed row of each padded row (None: padding).
        let mut source = Vec::new();
        for (g, &len) in lens.iter().enumerate() {
            let first = p + lens[..g].iter().sum::<usize>();
            source.extend((0..p).map(Some));
            source.extend((first..first + len).map(Some));
            source.extend(std::iter::repeat_n(None, t - p - len));
        }
        let valid: Vec<bool> = source.iter().map(Option::is_some).collect();
        let padded = Arc::new(SequenceLayout::rectangular(lens.len(), t, valid.clone()));
        let positions: Vec<usize> = (0..packed_rows)
            .map(|r| match r {
                r if r < p => r,
                r if r >= start => r - start,
                r => {
                    let mut first = p;
                    let mut g = 0;
                    while r >= first + lens[g] {
                        first += lens[g];
                        g += 1;
                    }
                    p + r - first
                }
            })
            .collect();
        let half = dims.head_dim / 2;
        let angle = |pos: usize, i: usize| pos as f32 * (1.0 + i as f32).recip();
        let positions = &positions;
        let trig = |rows: &[Option<usize>], f: fn(f32) -> f32| -> Arc<Vec<f32>> {
            let mut out = Vec::with_capacity(rows.len() * half);
            for r in rows {
                let pos = r.map_or(0, |r| positions[r]);
                out.extend((0..half).map(|i| f(angle(pos, i))));
            }
            Arc::new(out)
        };
        let all: Vec<Option<usize>> = (0..packed_rows).map(Some).collect();
        let width = (dims.heads + 2 * dims.kv_heads) * dims.head_dim;
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let qkv = Var::from_tensor(
                &test_randn(0f64, 1.5, (packed_rows, width), &dev)?.to_dtype(dtype)?,
            )?;
            let w_packed = test_randn(0f64, 1.0, (packed_rows, dims.heads * dims.head_dim), &dev)?
                .to_dtype(dtype)?;
            let ours = causal_attention(
                &qkv,
                dims,
                layout.clone(),
                trig(&all, f32::cos),
                trig(&all, f32::sin),
            )?;
            // The padded copy, its rows gathered from the packed ones (row
            // 0 stands in for padding: the mask hides it, its weight is 0).
            let index: Vec<u32> = source.iter().map(|r| r.unwrap_or(0) as u32).collect();
            let index = Tensor::from_vec(index, source.len(), &dev)?;
            let copy = qkv.index_select(&index, 0)?;
            let theirs = causal_attention(
                &copy,
                dims,
                padded.clone(),
                trig(&source, f32::cos),
                trig(&source, f32::sin),
            )?;
            // The prompt's weight split over its copies (each third), so both losses agree.
            let mut split = w_packed
                .index_select(&index, 0)?
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?;
            for (row, src) in split.iter_mut().zip(&source) {
                let share = match src {
                    None => 0.0,
                    Some(r) if *r < p => 1.0 / lens.len() as f64,
                    Some(_) => 1.0,
                };
                row.iter_mut().for_each(|x| *x *= share);
            }
            let cols = split[0].len();
            let split: Vec<f64> = split.into_iter().flatten().collect();
            let w_padded = Tensor::from_vec(split, (source.len(), cols), &dev)?.to_dtype(dtype)?;
            let gathered = ours.index_select(&index, 0)?;
            let mask = Tensor::from_vec(
                valid
                    .iter()
                    .map(|&v| f64::from(u8::from(v)))
                    .collect::<Vec<_>>(),
                (source.len(), 1),
                &dev,
            )?
            .to_dtype(dtype)?;
            let diff = max_diff(
                &f64_of(&gathered.broadcast_mul(&mask)?),
                &f64_of(&theirs.broadcast_mul(&mask)?),
            );
            assert!(diff < tol, "{dtype:?} forward diff {diff}");
            let g1 = (ours.narrow(0, 0, start)? * w_packed.narrow(0, 0, start)?)?
                .sum_all()?
                .backward()?;
            let g2 = (theirs * w_padded)?.sum_all()?.backward()?;
            let (a, b) = (g1.get(&qkv).expect("grad"), g2.get(&qkv).expect("grad"));
            let diff = max_diff(&f64_of(a), &f64_of(b));
            assert!(diff < tol * 10.0, "{dtype:?} gradient diff {diff}");
        }
        Ok(())
    }
}
