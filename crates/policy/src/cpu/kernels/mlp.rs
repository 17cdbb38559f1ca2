//! The second half of a decoder layer, `x + down(silu(n Wg^T) * (n Wu^T))`
//! with `n = rms_norm(x)`, as one operation with its backward pass. As
//! separate nodes, candle's backward allocated, zeroed and added a full-size
//! gradient for every input of every node (three of them [rows,
//! intermediate] per layer); here the block keeps its own activations.

use std::sync::Mutex;

use candle_core::{CpuStorage, Layout, Tensor};

use super::fused_block::{self, BlockKernels, ResidualBlock};
use super::rms_norm::{self, RmsFloat};
use super::swiglu::sigmoid;
use super::WeightSink;
use crate::cpu::parallel::{
    add_assign, filled_rows, product, product_with_room, SharedMut, Uninit,
};
use crate::cpu::simd::simd_fn;
use crate::cpu::simd::Float;
use crate::error::Result;

/// `x + mlp(rms_norm(x))` for `x` [rows, hidden]. `weights` [2I + 1, hidden]
/// holds the gate weight's rows, the up weight's rows, then the norm's
/// weight; `down` is [hidden, I]. With a `sink` the weights' gradients go
/// there instead of to `weights` and `down` (given detached).
pub(crate) fn swiglu_block(
    x: &Tensor,
    weights: &Tensor,
    down: &Tensor,
    eps: f64,
    sink: Option<WeightSink>,
) -> Result<Tensor> {
    let op = SwigluBlock {
        eps,
        saved: Mutex::new(None),
        sink,
    };
    fused_block::apply(x, weights, down, op)
}

struct SwigluBlock {
    eps: f64,
    /// From the forward, for the backward: the gate/up projections [rows,
    /// 2I]. The normalised input and the activation are computed again
    /// from x and these (two cheap passes), which keeps a third of the
    /// block's memory free between forward and backward.
    saved: Mutex<Option<CpuStorage>>,
    /// Where the weights' gradients go, when not to the inputs.
    sink: Option<WeightSink>,
}

trait MlpFloat: RmsFloat {
    /// `silu(gate) * up` into every element of `out`.
    fn swiglu(gate: &[Self], up: &[Self], out: Uninit<'_, Self>);
    /// The activation into `h` and its gradients for the gate and up
    /// projections from the activation's gradient `dh`, in one pass.
    fn swiglu_with_grad(gate: &[Self], up: &[Self], dh: &[Self], grads: Grads<'_, Self>);
}

/// Where [`MlpFloat::swiglu_with_grad`] writes: the activation, then the
/// gradients for the gate and up projections, every element of each.
type Grads<'a, T> = (Uninit<'a, T>, Uninit<'a, T>, Uninit<'a, T>);

#[inline(always)]
fn swiglu_slices<T: Float>(gate: &[T], up: &[T], out: Uninit<'_, T>) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        o.write(g * sigmoid(g) * u);
    }
}

#[inline(always)]
fn swiglu_with_grad_slices<T: Float>(gate: &[T], up: &[T], dh: &[T], grads: Grads<'_, T>) {
    let (h, d_gate, d_up) = grads;
    for i in 0..gate.len() {
        let (g, u, dy) = (gate[i], up[i], dh[i]);
        let s = sigmoid(g);
        // The forward's arithmetic, in its order: the same bits.
        h[i].write(g * s * u);
        d_up[i].write(dy * g * s);
        d_gate[i].write(dy * u * s * (T::ONE + g * (T::ONE - s)));
    }
}

simd_fn! {
    fn swiglu_f32(gate: &[f32], up: &[f32], out: Uninit<'_, f32>) => swiglu_slices
}
simd_fn! {
    fn swiglu_with_grad_f32(gate: &[f32], up: &[f32], dh: &[f32], grads: Grads<'_, f32>) => swiglu_with_grad_slices
}

impl MlpFloat for f32 {
    fn swiglu(gate: &[f32], up: &[f32], out: Uninit<'_, f32>) {
        swiglu_f32(gate, up, out)
    }
    fn swiglu_with_grad(gate: &[f32], up: &[f32], dh: &[f32], grads: Grads<'_, f32>) {
        swiglu_with_grad_f32(gate, up, dh, grads)
    }
}

impl MlpFloat for f64 {
    fn swiglu(gate: &[f64], up: &[f64], out: Uninit<'_, f64>) {
        swiglu_slices(gate, up, out)
    }
    fn swiglu_with_grad(gate: &[f64], up: &[f64], dh: &[f64], grads: Grads<'_, f64>) {
        swiglu_with_grad_slices(gate, up, dh, grads)
    }
}

/// [rows, width] from `f(row, that row)` for every row, in parallel; `f`
/// writes the whole row.
fn by_rows<T: Float>(rows: usize, width: usize, f: impl Fn(usize, Uninit<'_, T>) + Sync) -> Vec<T> {
    filled_rows(rows, width, |range, out| {
        for (row, out) in range.zip(out.chunks_exact_mut(width)) {
            f(row, out);
        }
    })
}

/// The activation `silu(gate) * up` [rows, I] of the projections `gu` [rows, 2I].
fn activate<T: MlpFloat>(gu: &[T], rows: usize, inter: usize) -> Vec<T> {
    by_rows(rows, inter, |row, out| {
        let gu = &gu[row * 2 * inter..(row + 1) * 2 * inter];
        T::swiglu(&gu[..inter], &gu[inter..], out);
    })
}

/// From the projections `gu` [rows, 2I] and the activation's gradient `dh`
/// [rows, I], in one pass: the activation `silu(gate) * up` [rows, I] and
/// the projections' gradient [rows, 2I].
fn activate_with_grad<T: MlpFloat>(
    gu: &[T],
    dh: &[T],
    rows: usize,
    inter: usize,
) -> (Vec<T>, Vec<T>) {
    let mut h: Vec<T> = Vec::with_capacity(rows * inter);
    let h_ptr = SharedMut(h.as_mut_ptr());
    let dgu = filled_rows(rows, 2 * inter, |range, out| {
        for (row, out) in range.zip(out.chunks_exact_mut(2 * inter)) {
            let gu = &gu[row * 2 * inter..(row + 1) * 2 * inter];
            let dh = &dh[row * inter..(row + 1) * inter];
            let (d_gate, d_up) = out.split_at_mut(inter);
            let span = row * inter..(row + 1) * inter;
            // SAFETY: row `row` of h, inside its capacity and written by
            // this task only.
            let h = unsafe { h_ptr.uninit(span) };
            T::swiglu_with_grad(&gu[..inter], &gu[inter..], dh, (h, d_gate, d_up));
        }
    });
    // SAFETY: filled_rows ran every row, so every row of h was written.
    unsafe { h.set_len(rows * inter) };
    (h, dgu)
}

impl ResidualBlock for SwigluBlock {
    const NAME: &'static str = "verity-swiglu-block";
    const LABEL: &'static str = "mlp";
    /// Rows, hidden, intermediate.
    type Sizes = (usize, usize, usize);

    fn sizes(
        &self,
        lx: &Layout,
        lw: &Layout,
        ld: &Layout,
    ) -> candle_core::Result<(usize, usize, usize)> {
        let (rows, hidden) = lx.shape().dims2()?;
        let (weight_rows, w_in) = lw.shape().dims2()?;
        let (down_out, inter) = ld.shape().dims2()?;
        if w_in != hidden || weight_rows != 2 * inter + 1 || down_out != hidden {
            candle_core::bail!(
                "mlp: x {:?}, weights {:?}, down {:?} do not fit",
                lx.dims(),
                lw.dims(),
                ld.dims()
            )
        }
        Ok((rows, hidden, inter))
    }

    fn sink(&self) -> Option<&WeightSink> {
        self.sink.as_ref()
    }
}

impl<T: MlpFloat> BlockKernels<T> for SwigluBlock {
    fn forward(
        &self,
        (x, weights, down): (&[T], &[T], &[T]),
        (rows, hidden, inter): (usize, usize, usize),
    ) -> Vec<T> {
        let (gate_up, norm) = weights.split_at(2 * inter * hidden);
        let xn = rms_norm::forward(x, norm, self.eps);
        // xn gate_up^T and h down^T: the weights as [in, out] views.
        let gu = product(
            rows,
            2 * inter,
            hidden,
            (&xn, hidden, 1),
            (gate_up, 1, hidden),
        );
        let h = activate(&gu, rows, inter);
        let mut out = product(rows, hidden, inter, (&h, inter, 1), (down, 1, inter));
        add_assign(&mut out, x);
        *self.saved.lock().expect("mlp activations") = Some(T::to_cpu_storage_owned(gu));
        out
    }

    fn backward(
        &self,
        (x, weights, down, dy): (&[T], &[T], &[T], &[T]),
        (rows, hidden, inter): (usize, usize, usize),
    ) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let saved = self.saved.lock().expect("mlp activations");
        let Some(gu) = saved.as_ref() else {
            candle_core::bail!("mlp: backward before forward")
        };
        let gu = T::cpu_storage_as_slice(gu)?;
        let (gate_up, norm) = weights.split_at(2 * inter * hidden);
        let xn = rms_norm::forward(x, norm, self.eps);
        // dh, h and dgu are alive together here: [rows, 4I] at the peak,
        // for one pass over gu instead of two.
        let dh = product(rows, inter, hidden, (dy, hidden, 1), (down, inter, 1));
        let (h, dgu) = activate_with_grad(gu, &dh, rows, inter);
        drop(dh);
        let d_down = product(hidden, inter, rows, (dy, 1, hidden), (&h, inter, 1));
        drop(h);
        let two = 2 * inter;
        let mut d_weights =
            product_with_room(two, hidden, rows, (&dgu, 1, two), (&xn, hidden, 1), hidden);
        let dxn = product(rows, hidden, two, (&dgu, two, 1), (gate_up, hidden, 1));
        // The residual passes dy straight through to x.
        let (dx, d_norm) = rms_norm::backward(x, norm, &dxn, self.eps, Some(dy));
        d_weights.extend_from_slice(&d_norm);
        Ok((dx, d_weights, d_down))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::max_diff;
    use crate::init::test_randn;
    use candle_core::{DType, Device, Var};

    #[test]
    fn block_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        // 150 rows: several row blocks of the norm's backward.
        let (rows, hidden, inter) = (150, 8, 12);
        for dtype in [DType::F64, DType::F32] {
            let var = |shape: &[usize], mean: f64, std: f64| -> Result<Var> {
                Ok(Var::from_tensor(
                    &test_randn(mean, std, shape, &dev)?.to_dtype(dtype)?,
                )?)
            };
            let x = var(&[rows, hidden], 0.0, 1.0)?;
            let norm = var(&[hidden], 1.0, 0.3)?;
            let gate = var(&[inter, hidden], 0.0, 1.0)?;
            let up = var(&[inter, hidden], 0.0, 0.5)?;
            let down = var(&[hidden, inter], 0.0, 0.5)?;
            let w = test_randn(0f64, 1.0, (rows, hidden), &dev)?.to_dtype(dtype)?;
            let weights = Tensor::cat(&[gate.as_tensor(), up.as_tensor(), &norm.unsqueeze(0)?], 0)?;
            let ours = swiglu_block(&x, &weights, &down, 1e-6, None)?;
            let n = candle_nn::ops::rms_norm_slow(&x, &norm, 1e-6)?;
            let act = (n.matmul(&gate.t()?)?.silu()? * n.matmul(&up.t()?)?)?;
            let theirs = (x.as_tensor() + act.matmul(&down.t()?)?)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let diff = max_diff(&f64_of(&ours), &f64_of(&theirs));
            // Relative to the output's size, as for the gradients below.
            let scale = f64_of(&theirs).abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(
                diff < tol * (1.0 + scale),
                "{dtype:?} forward diff {diff} at scale {scale}"
            );
            let g1 = (ours * &w)?.sum_all()?.backward()?;
            let g2 = (theirs * &w)?.sum_all()?.backward()?;
            let vars = [
                ("x", &x),
                ("norm", &norm),
                ("gate", &gate),
                ("up", &up),
                ("down", &down),
            ];
            for (name, var) in vars {
                let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                let diff = max_diff(&f64_of(a), &f64_of(b));
                // Relative to the gradient's size: some sum over all rows.
                let scale = f64_of(b).abs()?.max_all()?.to_scalar::<f64>()?;
                assert!(diff < tol * (1.0 + scale), "{dtype:?} d{name} diff {diff}");
            }
        }
        Ok(())
    }
}
