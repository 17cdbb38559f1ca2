//! Log-probabilities of chosen tokens, and the entropy of each position's
//! distribution, straight from hidden states through the LM head, a chunk of
//! positions at a time: the [positions, vocabulary] logits never exist
//! whole (at a 150k vocabulary they were gigabytes per micro-batch). When a
//! gradient may follow, the forward keeps the chunks' logits up to
//! [`KEPT_BYTES`] for the backward pass, which computes the others again.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor};

use crate::cpu::parallel::{cpu_slice, par_for, product, product_into, with_cpu, SharedMut};
use crate::cpu::simd::simd_fn;
use crate::cpu::simd::{max, Float};
use crate::error::Result;

/// Positions scored per chunk: its logits are CHUNK x vocabulary floats.
const CHUNK: usize = 256;
/// Logits kept from the forward pass for the backward, at most: a chunk
/// past it is computed again (one product of the LM head's size).
const KEPT_BYTES: usize = 256 << 20;

/// Marks a slot of [`Picks`] that scores nothing (its outputs are 0).
pub(crate) const NO_ROW: u32 = u32::MAX;

/// What to score: slot i holds log p(`targets[i]`) under the distribution
/// the hidden state in row `rows[i]` predicts.
#[derive(Debug, Clone)]
pub(crate) struct Picks {
    /// Hidden-state row of each slot ([`NO_ROW`] for an empty slot); a row
    /// may serve several slots.
    pub(crate) rows: Vec<u32>,
    /// The scored token of each slot.
    pub(crate) targets: Vec<u32>,
}

impl Picks {
    /// The rows the slots read, each once in ascending order; the slots
    /// then name their row by its place in that list. A forward pass that
    /// computes those rows alone feeds the renumbered picks.
    pub(crate) fn compact_rows(&mut self) -> Vec<u32> {
        let mut read: Vec<u32> = self.rows.iter().copied().filter(|&r| r != NO_ROW).collect();
        read.sort_unstable();
        read.dedup();
        for row in self.rows.iter_mut().filter(|r| **r != NO_ROW) {
            *row = read
                .binary_search(row)
                .expect("every read row is in the list") as u32;
        }
        read
    }
}

/// `[slots, 2]`: per slot of `picks`, the log-probability of its token and
/// the entropy of the distribution, under softmax(hidden weight^T /
/// temperature) for `hidden` [rows, H] and the LM head's `weight` [V, H].
/// Both columns are differentiable.
pub(crate) fn token_logprobs(
    hidden: &Tensor,
    weight: &Tensor,
    picks: Arc<Picks>,
    temperature: f64,
) -> Result<Tensor> {
    let op = TokenLogprobs {
        picks,
        inv_temperature: 1.0 / temperature,
        keep: hidden.track_op() || weight.track_op(),
        kept: Mutex::default(),
    };
    Ok(hidden.contiguous()?.apply_op2(&weight.contiguous()?, op)?)
}

struct TokenLogprobs {
    picks: Arc<Picks>,
    inv_temperature: f64,
    /// Whether a gradient may be asked for, so logits are worth keeping.
    keep: bool,
    /// The first chunks' logits, from the forward pass to the backward.
    kept: Mutex<Kept>,
}

/// Chunks' logits kept in the forward pass's precision.
#[derive(Default)]
enum Kept {
    #[default]
    Nothing,
    F32(Vec<Vec<f32>>),
    F64(Vec<Vec<f64>>),
}

trait HeadFloat: Float + candle_core::WithDType {
    /// (log p(target), entropy) of the row of raw logits `z`.
    fn stats(z: &[Self], scale: Self, target: usize) -> (Self, Self);
    /// Overwrites the raw logits `z` with the gradient of `g_lp * log
    /// p(target) + g_ent * entropy` with respect to them.
    fn grad(z: &mut [Self], scale: Self, target: usize, out: (Self, Self), g: (Self, Self));
    /// `chunks` as [`Kept`].
    fn kept(chunks: Vec<Vec<Self>>) -> Kept;
    /// The chunks `kept` holds in this precision (none in another).
    fn unkept(kept: Kept) -> Vec<Vec<Self>>;
}

#[inline(always)]
fn stats_row<T: Float>(z: &[T], scale: T, target: usize) -> (T, T) {
    // scale > 0, so the largest scaled logit is the scaled largest.
    let max = max(z) * scale;
    // Sum of e^(s - max) and of e^(s - max) * s, s = z * scale, in eight lanes.
    let (mut sum, mut weighted) = ([T::ZERO; 8], [T::ZERO; 8]);
    let chunks = z.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for i in 0..8 {
            let s = chunk[i] * scale;
            let e = (s - max).exp_fast();
            sum[i] = sum[i] + e;
            weighted[i] = weighted[i] + e * s;
        }
    }
    let (mut total, mut total_weighted) = (T::ZERO, T::ZERO);
    for &v in tail {
        let s = v * scale;
        let e = (s - max).exp_fast();
        total = total + e;
        total_weighted = total_weighted + e * s;
    }
    for i in 0..8 {
        total = total + sum[i];
        total_weighted = total_weighted + weighted[i];
    }
    let lse = max + total.ln();
    (z[target] * scale - lse, lse - total_weighted / total)
}

#[inline(always)]
fn grad_row<T: Float>(
    z: &mut [T],
    scale: T,
    target: usize,
    (lp, h): (T, T),
    (g_lp, g_ent): (T, T),
) {
    // d log p_t / d s_j = [j = t] - p_j;  d H / d s_j = -p_j (log p_j + H).
    let lse = z[target] * scale - lp;
    for v in z.iter_mut() {
        let s = *v * scale;
        let log_p = s - lse;
        let p = log_p.exp_fast();
        *v = (T::ZERO - p * (g_lp + g_ent * (log_p + h))) * scale;
    }
    z[target] = z[target] + g_lp * scale;
}

simd_fn! {
    /// (log p(target), entropy) of the row of raw logits `z` under
    /// softmax(z * scale).
    pub(crate) fn token_stats_f32(z: &[f32], scale: f32, target: usize) -> (f32, f32) => stats_row
}
simd_fn! {
    fn grad_f32(z: &mut [f32], scale: f32, target: usize, out: (f32, f32), g: (f32, f32)) => grad_row
}

impl HeadFloat for f32 {
    fn stats(z: &[f32], scale: f32, target: usize) -> (f32, f32) {
        token_stats_f32(z, scale, target)
    }
    fn grad(z: &mut [f32], scale: f32, target: usize, out: (f32, f32), g: (f32, f32)) {
        grad_f32(z, scale, target, out, g)
    }
    fn kept(chunks: Vec<Vec<f32>>) -> Kept {
        Kept::F32(chunks)
    }
    fn unkept(kept: Kept) -> Vec<Vec<f32>> {
        match kept {
            Kept::F32(chunks) => chunks,
            _ => Vec::new(),
        }
    }
}

impl HeadFloat for f64 {
    fn stats(z: &[f64], scale: f64, target: usize) -> (f64, f64) {
        stats_row(z, scale, target)
    }
    fn grad(z: &mut [f64], scale: f64, target: usize, out: (f64, f64), g: (f64, f64)) {
        grad_row(z, scale, target, out, g)
    }
    fn kept(chunks: Vec<Vec<f64>>) -> Kept {
        Kept::F64(chunks)
    }
    fn unkept(kept: Kept) -> Vec<Vec<f64>> {
        match kept {
            Kept::F64(chunks) => chunks,
            _ => Vec::new(),
        }
    }
}

impl TokenLogprobs {
    /// The slots that score something, in chunks.
    fn chunks(&self) -> Vec<Vec<usize>> {
        let active: Vec<usize> = (0..self.picks.rows.len())
            .filter(|&i| self.picks.rows[i] != NO_ROW)
            .collect();
        active.chunks(CHUNK).map(<[usize]>::to_vec).collect()
    }

    /// The hidden rows of `slots`, [slots, H].
    fn gather<T: Float>(&self, hidden: &[T], h: usize, slots: &[usize]) -> Vec<T> {
        let mut xs = Vec::with_capacity(slots.len() * h);
        for &slot in slots {
            let row = self.picks.rows[slot] as usize;
            xs.extend_from_slice(&hidden[row * h..(row + 1) * h]);
        }
        xs
    }

    /// `[slots, 2]`: log-prob and entropy per slot.
    fn forward<T: HeadFloat>(&self, hidden: &[T], weight: &[T], (v, h): (usize, usize)) -> Vec<T> {
        let scale = <T as Float>::from_f64(self.inv_temperature);
        let mut out = vec![T::ZERO; 2 * self.picks.rows.len()];
        let dst = SharedMut(out.as_mut_ptr());
        let mut kept = Vec::new();
        let mut room = if self.keep { KEPT_BYTES } else { 0 };
        for slots in self.chunks() {
            let xs = self.gather(hidden, h, &slots);
            // The weight [V, H] as an [H, V] view.
            let logits = product(slots.len(), v, h, (&xs, h, 1), (weight, 1, h));
            par_for(slots.len(), |range| {
                for i in range {
                    let slot = slots[i];
                    let target = self.picks.targets[slot] as usize;
                    let (lp, ent) = T::stats(&logits[i * v..(i + 1) * v], scale, target);
                    // SAFETY: slot `slot`'s two outputs, written by this task only.
                    let pair = unsafe { dst.slice(2 * slot..2 * slot + 2) };
                    pair[0] = lp;
                    pair[1] = ent;
                }
            });
            // A prefix of the chunks, as the backward pass takes them.
            let bytes = std::mem::size_of_val(&logits[..]);
            if bytes <= room {
                room -= bytes;
                kept.push(logits);
            } else {
                room = 0;
            }
        }
        *self.lock() = T::kept(kept);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while keeping leaves at worst nothing kept: recomputed.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gradients for the hidden states and the weight.
    fn backward<T: HeadFloat>(
        &self,
        (hidden, weight, out, grad): (&[T], &[T], &[T], &[T]),
        (rows, v, h): (usize, usize, usize),
    ) -> (Vec<T>, Vec<T>) {
        let scale = <T as Float>::from_f64(self.inv_temperature);
        let mut dhidden = vec![T::ZERO; rows * h];
        let mut dweight: Option<Vec<T>> = None;
        // Taken, not borrowed: a second backward computes them all again.
        let mut kept = T::unkept(std::mem::take(&mut *self.lock())).into_iter();
        for slots in self.chunks() {
            let xs = self.gather(hidden, h, &slots);
            let mut dlogits = match kept.next() {
                Some(logits) => logits,
                None => product(slots.len(), v, h, (&xs, h, 1), (weight, 1, h)),
            };
            let dst = SharedMut(dlogits.as_mut_ptr());
            par_for(slots.len(), |range| {
                for i in range {
                    let slot = slots[i];
                    let target = self.picks.targets[slot] as usize;
                    let stats = (out[2 * slot], out[2 * slot + 1]);
                    let g = (grad[2 * slot], grad[2 * slot + 1]);
                    // SAFETY: row i of the chunk's logits, this task's only.
                    let z = unsafe { dst.slice(i * v..(i + 1) * v) };
                    T::grad(z, scale, target, stats, g);
                }
            });
            let n = slots.len();
            let dxs = product(n, h, v, (&dlogits, v, 1), (weight, h, 1));
            // Slots may share a row: added one after another.
            for (i, &slot) in slots.iter().enumerate() {
                let row = self.picks.rows[slot] as usize;
                for (d, &g) in dhidden[row * h..(row + 1) * h]
                    .iter_mut()
                    .zip(&dxs[i * h..])
                {
                    let own = *d;
                    *d = own + g;
                }
            }
            // dW (+)= dlogits^T xs, chunk after chunk.
            let (lhs, rhs) = ((&dlogits[..], 1, v), (&xs[..], h, 1));
            match dweight.as_mut() {
                None => dweight = Some(product(v, h, n, lhs, rhs)),
                Some(dw) => product_into(v, h, n, dw, true, lhs, rhs),
            }
        }
        (dhidden, dweight.unwrap_or_else(|| vec![T::ZERO; v * h]))
    }

    fn sizes(&self, lh: &Layout, lw: &Layout) -> candle_core::Result<(usize, usize, usize)> {
        let (rows, h) = lh.shape().dims2()?;
        let (v, wh) = lw.shape().dims2()?;
        let picks = &self.picks;
        let ok = wh == h
            && picks.rows.len() == picks.targets.len()
            && picks
                .rows
                .iter()
                .zip(&picks.targets)
                .all(|(&r, &t)| r == NO_ROW || ((r as usize) < rows && (t as usize) < v));
        if !(ok && self.inv_temperature > 0.0 && self.inv_temperature.is_finite()) {
            candle_core::bail!(
                "token log-probs: hidden {:?}, weight {:?} and the picked rows and tokens do not fit",
                lh.dims(),
                lw.dims()
            )
        }
        Ok((rows, v, h))
    }
}

impl CustomOp2 for TokenLogprobs {
    fn name(&self) -> &'static str {
        "verity-token-logprobs"
    }

    fn cpu_fwd(
        &self,
        hs: &CpuStorage,
        lh: &Layout,
        ws: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, v, h) = self.sizes(lh, lw)?;
        let out = match (hs, ws) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(self.forward::<f32>(
                cpu_slice((hs, lh))?,
                cpu_slice((ws, lw))?,
                (v, h),
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(self.forward::<f64>(
                cpu_slice((hs, lh))?,
                cpu_slice((ws, lw))?,
                (v, h),
            )),
            _ => candle_core::bail!("token log-probs: only f32 and f64 on the CPU, both alike"),
        };
        Ok((out, Shape::from((self.picks.rows.len(), 2))))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        fn run<T: HeadFloat>(
            op: &TokenLogprobs,
            cpu: &[(&CpuStorage, &Layout)],
            shapes: (&Shape, &Shape),
        ) -> candle_core::Result<(Tensor, Tensor)> {
            let sizes = op.sizes(cpu[0].1, cpu[1].1)?;
            let s = |i: usize| cpu_slice::<T>(cpu[i]);
            let (dh, dw) = op.backward((s(0)?, s(1)?, s(2)?, s(3)?), sizes);
            Ok((
                Tensor::from_vec(dh, shapes.0, &Device::Cpu)?,
                Tensor::from_vec(dw, shapes.1, &Device::Cpu)?,
            ))
        }
        let shapes = (hidden.shape(), weight.shape());
        let (dh, dw) = with_cpu(&[hidden, weight, res, &grad], |cpu| match cpu[0].0 {
            CpuStorage::F32(_) => run::<f32>(self, cpu, shapes),
            CpuStorage::F64(_) => run::<f64>(self, cpu, shapes),
            _ => candle_core::bail!("token log-probs: only f32 and f64 on the CPU"),
        })?;
        Ok((Some(dh), Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::max_diff;
    use crate::init::test_randn;
    use candle_core::{DType, Var, D};

    #[test]
    fn compacting_lists_each_read_row_once_and_renumbers_the_picks() {
        let mut picks = Picks {
            rows: vec![7, NO_ROW, 2, 7, 5],
            targets: vec![1, 0, 2, 3, 4],
        };
        let read = picks.compact_rows();
        assert_eq!(read, [2, 5, 7]);
        assert_eq!(picks.rows, [2, NO_ROW, 0, 2, 1]);
        assert_eq!(picks.targets, [1, 0, 2, 3, 4]);
    }

    /// The same numbers from candle operations over the whole logits.
    fn composed(hidden: &Tensor, weight: &Tensor, picks: &Picks, t: f64) -> Result<Tensor> {
        let mut cols = Vec::new();
        for (&row, &target) in picks.rows.iter().zip(&picks.targets) {
            if row == NO_ROW {
                cols.push(Tensor::zeros((1, 2), hidden.dtype(), hidden.device())?);
                continue;
            }
            let z = (hidden.narrow(0, row as usize, 1)?.matmul(&weight.t()?)? / t)?;
            let log_p = candle_nn::ops::log_softmax(&z, D::Minus1)?;
            let entropy = (log_p.exp()? * &log_p)?.sum_keepdim(D::Minus1)?.neg()?;
            let lp = log_p.narrow(1, target as usize, 1)?;
            cols.push(Tensor::cat(&[lp, entropy], 1)?);
        }
        Ok(Tensor::cat(&cols, 0)?)
    }

    #[test]
    fn chunked_scores_match_the_full_log_softmax_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, h, v) = (300, 12, 37);
        // More slots than a chunk; empty slots; rows scored twice.
        let mut picks = Picks {
            rows: Vec::new(),
            targets: Vec::new(),
        };
        for i in 0..(CHUNK + 40) {
            let row = if i % 17 == 5 {
                NO_ROW
            } else {
                ((i * 7) % rows) as u32
            };
            picks.rows.push(row);
            picks.targets.push(((i * 11) % v) as u32);
        }
        let picks = Arc::new(picks);
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-4)] {
            let hidden =
                Var::from_tensor(&test_randn(0f64, 1.0, (rows, h), &dev)?.to_dtype(dtype)?)?;
            let weight = Var::from_tensor(&test_randn(0f64, 1.0, (v, h), &dev)?.to_dtype(dtype)?)?;
            let w = test_randn(0f64, 1.0, (picks.rows.len(), 2), &dev)?.to_dtype(dtype)?;
            for t in [1.0, 0.7] {
                let ours = token_logprobs(&hidden, &weight, picks.clone(), t)?;
                let theirs = composed(&hidden, &weight, &picks, t)?;
                let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
                let diff = max_diff(&f64_of(&ours), &f64_of(&theirs));
                assert!(diff < tol, "{dtype:?} T={t} forward diff {diff}");
                let loss = (ours * &w)?.sum_all()?;
                // The first backward uses the logits the forward kept; a
                // second one, with nothing kept, computes them again.
                let g1 = loss.backward()?;
                let again = loss.backward()?;
                let g2 = (theirs * &w)?.sum_all()?.backward()?;
                for (name, var) in [("hidden", &hidden), ("weight", &weight)] {
                    let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                    let scale = f64_of(b).abs()?.max_all()?.to_scalar::<f64>()?;
                    let diff = max_diff(&f64_of(a), &f64_of(b));
                    assert!(
                        diff < tol * (1.0 + scale),
                        "{dtype:?} T={t} d{name} diff {diff}"
                    );
                    let recomputed = again.get(var).expect("grad");
                    assert_eq!(max_diff(a, recomputed), 0.0, "{dtype:?} T={t} d{name}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gradient_agrees_with_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, h, v) = (5, 4, 9);
        let picks = Arc::new(Picks {
            rows: vec![0, 3, NO_ROW, 3, 4],
            targets: vec![2, 8, 0, 1, 5],
        });
        let hidden = Var::from_tensor(&test_randn(0f64, 1.0, (rows, h), &dev)?)?;
        let weight = Var::from_tensor(&test_randn(0f64, 1.0, (v, h), &dev)?)?;
        let w = test_randn(0f64, 1.0, (5, 2), &dev)?;
        let loss = |x: &Tensor, wt: &Tensor| -> Result<f64> {
            let out = token_logprobs(x, wt, picks.clone(), 0.8)?;
            Ok((out * &w)?.sum_all()?.to_scalar::<f64>()?)
        };
        let grads = (token_logprobs(&hidden, &weight, picks.clone(), 0.8)? * &w)?
            .sum_all()?
            .backward()?;
        for (var, is_hidden) in [(&hidden, true), (&weight, false)] {
            let g = grads
                .get(var)
                .expect("grad")
                .flatten_all()?
                .to_vec1::<f64>()?;
            let base = var.flatten_all()?.to_vec1::<f64>()?;
            for i in 0..base.len() {
                let eps = 1e-6;
                let at = |d: f64| -> Result<f64> {
                    let mut x = base.clone();
                    x[i] += d;
                    let x = Tensor::from_vec(x, var.shape(), &dev)?;
                    if is_hidden {
                        loss(&x, &weight)
                    } else {
                        loss(&hidden, &x)
                    }
                };
                let numeric = (at(eps)? - at(-eps)?) / (2.0 * eps);
                assert!((numeric - g[i]).abs() < 1e-6, "{i}: {numeric} vs {}", g[i]);
            }
        }
        Ok(())
    }
}
