//! The SwiGLU feed-forward block, `down(silu(x Wg^T) * (x Wu^T))`, as one
//! operation with its backward pass. As separate nodes, candle's backward
//! allocated, zeroed and added a [rows, intermediate] gradient three times
//! per layer; here the block keeps its own activations for the backward.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};

use super::parallel::{cpu_slice, par_for, with_cpu, SharedMut};
use super::simd::Float;
use super::swiglu::sigmoid;
use crate::error::Result;

/// The SwiGLU block of `x` [rows, hidden] with `gate_up` [2I, hidden] (the
/// gate weight's rows, then the up weight's) and `down` [hidden, I].
pub(crate) fn swiglu_mlp(x: &Tensor, gate_up: &Tensor, down: &Tensor) -> Result<Tensor> {
    let op = SwigluMlp {
        saved: Mutex::new(None),
    };
    Ok(x.contiguous()?
        .apply_op3(&gate_up.contiguous()?, &down.contiguous()?, op)?)
}

struct SwigluMlp {
    /// The gate/up projections [rows, 2I] and the activation [rows, I] of
    /// the forward pass, for the backward.
    saved: Mutex<Option<(CpuStorage, CpuStorage)>>,
}

trait MlpFloat: Float + candle_core::WithDType {
    fn swiglu(gate: &[Self], up: &[Self], out: &mut [Self]);
    fn swiglu_grad(gate: &[Self], up: &[Self], dh: &[Self], d_gate: &mut [Self], d_up: &mut [Self]);
}

#[inline(always)]
fn swiglu_slices<T: Float>(gate: &[T], up: &[T], out: &mut [T]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g * sigmoid(g) * u;
    }
}

#[inline(always)]
fn swiglu_grad_slices<T: Float>(gate: &[T], up: &[T], dh: &[T], d_gate: &mut [T], d_up: &mut [T]) {
    for i in 0..gate.len() {
        let (g, u, dy) = (gate[i], up[i], dh[i]);
        let s = sigmoid(g);
        d_up[i] = dy * g * s;
        d_gate[i] = dy * u * s * (T::ONE + g * (T::ONE - s));
    }
}

vectorised!(swiglu_f32, swiglu_f32_avx2, swiglu_slices::<f32>(gate: &[f32], up: &[f32], out: &mut [f32]) -> ());
vectorised!(swiglu_grad_f32, swiglu_grad_f32_avx2, swiglu_grad_slices::<f32>(gate: &[f32], up: &[f32], dh: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) -> ());

impl MlpFloat for f32 {
    fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        swiglu_f32(gate, up, out)
    }
    fn swiglu_grad(gate: &[f32], up: &[f32], dh: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
        swiglu_grad_f32(gate, up, dh, d_gate, d_up)
    }
}

impl MlpFloat for f64 {
    fn swiglu(gate: &[f64], up: &[f64], out: &mut [f64]) {
        swiglu_slices(gate, up, out)
    }
    fn swiglu_grad(gate: &[f64], up: &[f64], dh: &[f64], d_gate: &mut [f64], d_up: &mut [f64]) {
        swiglu_grad_slices(gate, up, dh, d_gate, d_up)
    }
}

/// A row-major view: data, row stride, column stride.
type View<'a, T> = (&'a [T], usize, usize);

/// `lhs [m, k] * rhs [k, n]` into a new row-major [m, n], on the gemm
/// worker threads.
fn product<T: MlpFloat>(m: usize, n: usize, k: usize, lhs: View<T>, rhs: View<T>) -> Vec<T> {
    let reach = |(v, rs, cs): View<T>, rows: usize, cols: usize| {
        rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < v.len()
    };
    assert!(
        reach(lhs, m, k) && reach(rhs, k, n),
        "mlp: product views out of bounds"
    );
    let mut out = Vec::with_capacity(m * n);
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: both views lie inside their slices (checked above); gemm
    // writes every element of `out` without reading it (read_dst = false).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    out
}

/// Calls `f(row, that row of out)` for every row of `out` [rows, width], in parallel.
fn rows_par<T: Send + Sync>(rows: usize, out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    let width = out.len() / rows.max(1);
    let dst = SharedMut(out.as_mut_ptr());
    par_for(rows, |range| {
        for row in range {
            // SAFETY: row `row` of `out`, written by this task only.
            f(row, unsafe { dst.slice(row * width..(row + 1) * width) });
        }
    });
}

/// The activation `silu(gate) * up` [rows, I] of the projections `gu` [rows, 2I].
fn activate<T: MlpFloat>(gu: &[T], rows: usize, inter: usize) -> Vec<T> {
    let mut h = Vec::with_capacity(rows * inter);
    h.resize(rows * inter, T::ZERO);
    rows_par(rows, &mut h, |row, out| {
        let gu = &gu[row * 2 * inter..(row + 1) * 2 * inter];
        T::swiglu(&gu[..inter], &gu[inter..], out);
    });
    h
}

impl SwigluMlp {
    fn forward<T: MlpFloat>(
        &self,
        x: &[T],
        gate_up: &[T],
        down: &[T],
        (rows, hidden, inter): (usize, usize, usize),
    ) -> Vec<T> {
        // x gate_up^T and h down^T: the weights as [in, out] views.
        let gu = product(
            rows,
            2 * inter,
            hidden,
            (x, hidden, 1),
            (gate_up, 1, hidden),
        );
        let h = activate(&gu, rows, inter);
        let out = product(rows, hidden, inter, (&h, inter, 1), (down, 1, inter));
        *self.saved.lock().expect("mlp activations") =
            Some((T::to_cpu_storage_owned(gu), T::to_cpu_storage_owned(h)));
        out
    }

    /// Gradients for x, gate_up and down from the output's gradient `dy`.
    #[allow(clippy::type_complexity)]
    fn backward<T: MlpFloat>(
        &self,
        (x, gate_up, down, dy): (&[T], &[T], &[T], &[T]),
        (rows, hidden, inter): (usize, usize, usize),
    ) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let saved = self.saved.lock().expect("mlp activations");
        let Some((gu, h)) = saved.as_ref() else {
            candle_core::bail!("mlp: backward before forward")
        };
        let (gu, h) = (T::cpu_storage_as_slice(gu)?, T::cpu_storage_as_slice(h)?);
        let d_down = product(hidden, inter, rows, (dy, 1, hidden), (h, inter, 1));
        let dh = product(rows, inter, hidden, (dy, hidden, 1), (down, inter, 1));
        let mut dgu = Vec::with_capacity(rows * 2 * inter);
        dgu.resize(rows * 2 * inter, T::ZERO);
        rows_par(rows, &mut dgu, |row, out| {
            let gu = &gu[row * 2 * inter..(row + 1) * 2 * inter];
            let (d_gate, d_up) = out.split_at_mut(inter);
            let dh = &dh[row * inter..(row + 1) * inter];
            T::swiglu_grad(&gu[..inter], &gu[inter..], dh, d_gate, d_up);
        });
        let two = 2 * inter;
        let d_gate_up = product(two, hidden, rows, (&dgu, 1, two), (x, hidden, 1));
        let dx = product(rows, hidden, two, (&dgu, two, 1), (gate_up, hidden, 1));
        Ok((dx, d_gate_up, d_down))
    }
}

fn sizes(lx: &Layout, lgu: &Layout, ld: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (rows, hidden) = lx.shape().dims2()?;
    let (two_inter, gu_in) = lgu.shape().dims2()?;
    let (down_out, inter) = ld.shape().dims2()?;
    if gu_in != hidden || two_inter != 2 * inter || down_out != hidden {
        candle_core::bail!(
            "mlp: x {:?}, gate_up {:?}, down {:?} do not fit",
            lx.dims(),
            lgu.dims(),
            ld.dims()
        )
    }
    Ok((rows, hidden, inter))
}

impl CustomOp3 for SwigluMlp {
    fn name(&self) -> &'static str {
        "verity-swiglu-mlp"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        gate_up: &CpuStorage,
        lgu: &Layout,
        down: &CpuStorage,
        ld: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let sizes = sizes(lx, lgu, ld)?;
        let (rows, hidden, _) = sizes;
        let out = match x {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward::<f32>(
                cpu_slice((x, lx))?,
                cpu_slice((gate_up, lgu))?,
                cpu_slice((down, ld))?,
                sizes,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward::<f64>(
                cpu_slice((x, lx))?,
                cpu_slice((gate_up, lgu))?,
                cpu_slice((down, ld))?,
                sizes,
            )),
            _ => candle_core::bail!("mlp: only f32 and f64 on the CPU"),
        };
        Ok((out, Shape::from((rows, hidden))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gate_up: &Tensor,
        down: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        fn run<T: MlpFloat>(
            op: &SwigluMlp,
            cpu: &[(&CpuStorage, &Layout)],
            like: [&Tensor; 3],
        ) -> candle_core::Result<[Tensor; 3]> {
            let sizes = sizes(cpu[0].1, cpu[1].1, cpu[2].1)?;
            let s = |i: usize| cpu_slice::<T>(cpu[i]);
            let (dx, d_gate_up, d_down) = op.backward((s(0)?, s(1)?, s(2)?, s(3)?), sizes)?;
            let wrap = |g: Vec<T>, like: &Tensor| Tensor::from_vec(g, like.shape(), &Device::Cpu);
            Ok([
                wrap(dx, like[0])?,
                wrap(d_gate_up, like[1])?,
                wrap(d_down, like[2])?,
            ])
        }
        let like = [x, gate_up, down];
        let [dx, d_gate_up, d_down] = with_cpu(&[x, gate_up, down, &grad], |cpu| match cpu[0].0 {
            CpuStorage::F32(_) => run::<f32>(self, cpu, like),
            CpuStorage::F64(_) => run::<f64>(self, cpu, like),
            _ => candle_core::bail!("mlp: only f32 and f64 on the CPU"),
        })?;
        Ok((Some(dx), Some(d_gate_up), Some(d_down)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::max_diff;
    use candle_core::{DType, Var};

    #[test]
    fn mlp_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, hidden, inter) = (13, 8, 12);
        for dtype in [DType::F64, DType::F32] {
            let var = |shape: (usize, usize), std: f64| -> Result<Var> {
                Ok(Var::from_tensor(
                    &Tensor::randn(0f64, std, shape, &dev)?.to_dtype(dtype)?,
                )?)
            };
            let x = var((rows, hidden), 1.0)?;
            let gate = var((inter, hidden), 1.0)?;
            let up = var((inter, hidden), 0.5)?;
            let down = var((hidden, inter), 0.5)?;
            let w = Tensor::randn(0f64, 1.0, (rows, hidden), &dev)?.to_dtype(dtype)?;
            let gate_up = Tensor::cat(&[gate.as_tensor(), up.as_tensor()], 0)?;
            let ours = swiglu_mlp(&x, &gate_up, &down)?;
            let hidden_act = (x.matmul(&gate.t()?)?.silu()? * x.matmul(&up.t()?)?)?;
            let theirs = hidden_act.matmul(&down.t()?)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let diff = max_diff(&f64_of(&ours), &f64_of(&theirs));
            assert!(diff < tol, "{dtype:?} forward diff {diff}");
            let g1 = (ours * &w)?.sum_all()?.backward()?;
            let g2 = (theirs * &w)?.sum_all()?.backward()?;
            for (name, var) in [("x", &x), ("gate", &gate), ("up", &up), ("down", &down)] {
                let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                let diff = max_diff(&f64_of(a), &f64_of(b));
                assert!(diff < tol, "{dtype:?} d{name} diff {diff}");
            }
        }
        Ok(())
    }
}
