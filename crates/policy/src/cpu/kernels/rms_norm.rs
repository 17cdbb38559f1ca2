//! RMSNorm and its backward, each one pass over the rows, split over the
//! CPU worker threads.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor};

use crate::cpu::parallel::{cpu_slice, filled_rows, par_for, with_cpu, SharedMut, Uninit};
use crate::cpu::simd::simd_fn;
use crate::cpu::simd::{dot3, Float};
use crate::error::Result;

/// RMSNorm `x / sqrt(mean(x^2) + eps) * weight` over the last dimension, with
/// a backward pass for `x` and `weight`.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2(weight, RmsNorm { eps })?)
}

#[derive(Clone, Copy)]
struct RmsNorm {
    eps: f64,
}

/// Rows per task of the backward; also the granularity of the weight
/// gradient's partial sums, added in a fixed order so results do not
/// depend on thread timing.
const BLOCK: usize = 64;

#[inline(always)]
fn inv_rms<T: Float>(xs: &[T], eps: f64) -> T {
    let mean_sq = dot3(xs, xs, None) * T::from_f64(1.0 / xs.len() as f64);
    T::ONE / (mean_sq + T::from_f64(eps)).sqrt()
}

/// `x * r * w` for the rows of `x`.
#[inline(always)]
fn forward_rows<T: Float>(x: &[T], w: &[T], eps: f64, out: Uninit<'_, T>) {
    let d = w.len();
    for (xs, dst) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let r = inv_rms(xs, eps);
        for ((o, &v), &wi) in dst.iter_mut().zip(xs).zip(w) {
            o.write(v * r * wi);
        }
    }
}

/// For the rows of `x`: the input gradient `r * (dy*w - x * r^2 * mean(dy*w*x))`
/// into `dx`, and `sum(dy * x * r)` over the rows added to `dw`.
#[inline(always)]
fn backward_rows<T: Float>(x: &[T], w: &[T], dy: &[T], eps: f64, dx: Uninit<'_, T>, dw: &mut [T]) {
    let d = w.len();
    let inv_d = T::from_f64(1.0 / d as f64);
    for ((xs, g), dst) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        let r = inv_rms(xs, eps);
        let k = r * r * dot3(xs, g, Some(w)) * inv_d;
        for ((((o, acc), &v), &gi), &wi) in dst.iter_mut().zip(dw.iter_mut()).zip(xs).zip(g).zip(w)
        {
            o.write(r * (gi * wi - v * k));
            *acc = *acc + gi * v * r;
        }
    }
}

simd_fn! {
    fn forward_f32(x: &[f32], w: &[f32], eps: f64, out: Uninit<'_, f32>) => forward_rows
}
simd_fn! {
    fn backward_f32(x: &[f32], w: &[f32], dy: &[f32], eps: f64, dx: Uninit<'_, f32>, dw: &mut [f32]) => backward_rows
}

pub(super) trait RmsFloat: Float + candle_core::WithDType {
    /// Writes every element of `out`.
    fn forward(x: &[Self], w: &[Self], eps: f64, out: Uninit<'_, Self>);
    /// Writes every element of `dx`, adds to `dw`.
    fn backward(
        x: &[Self],
        w: &[Self],
        dy: &[Self],
        eps: f64,
        dx: Uninit<'_, Self>,
        dw: &mut [Self],
    );
}

impl RmsFloat for f32 {
    fn forward(x: &[f32], w: &[f32], eps: f64, out: Uninit<'_, f32>) {
        forward_f32(x, w, eps, out)
    }
    fn backward(x: &[f32], w: &[f32], dy: &[f32], eps: f64, dx: Uninit<'_, f32>, dw: &mut [f32]) {
        backward_f32(x, w, dy, eps, dx, dw)
    }
}

impl RmsFloat for f64 {
    fn forward(x: &[f64], w: &[f64], eps: f64, out: Uninit<'_, f64>) {
        forward_rows(x, w, eps, out)
    }
    fn backward(x: &[f64], w: &[f64], dy: &[f64], eps: f64, dx: Uninit<'_, f64>, dw: &mut [f64]) {
        backward_rows(x, w, dy, eps, dx, dw)
    }
}

pub(super) fn forward<T: RmsFloat>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let d = w.len();
    filled_rows(x.len() / d, d, |rows, out| {
        T::forward(&x[rows.start * d..rows.end * d], w, eps, out)
    })
}

/// The gradients for `x` and `w`; `residual`, when given, is added to x's
/// (the gradient of a residual connection around the norm).
pub(super) fn backward<T: RmsFloat>(
    x: &[T],
    w: &[T],
    dy: &[T],
    eps: f64,
    residual: Option<&[T]>,
) -> (Vec<T>, Vec<T>) {
    let d = w.len();
    let rows = x.len() / d;
    let blocks = rows.div_ceil(BLOCK);
    // Written whole, block by block below.
    let mut dx: Vec<T> = Vec::with_capacity(x.len());
    let mut partial = vec![T::ZERO; blocks * d];
    let (dx_ptr, partial_ptr) = (SharedMut(dx.as_mut_ptr()), SharedMut(partial.as_mut_ptr()));
    par_for(blocks, |range| {
        for block in range {
            let span = block * BLOCK * d..((block + 1) * BLOCK).min(rows) * d;
            // SAFETY: these rows of `dx` and this block's partial sum belong
            // to this task only.
            let (dx, dw) = unsafe {
                (
                    dx_ptr.uninit(span.clone()),
                    partial_ptr.slice(block * d..(block + 1) * d),
                )
            };
            T::backward(&x[span.clone()], w, &dy[span.clone()], eps, dx, dw);
            // SAFETY: as above; `backward` wrote every element.
            let dx = unsafe { dx_ptr.slice(span.clone()) };
            if let Some(residual) = residual {
                for (g, &r) in dx.iter_mut().zip(&residual[span]) {
                    let own = *g;
                    *g = own + r;
                }
            }
        }
    });
    // SAFETY: the blocks cover every row of dx, each written whole.
    unsafe { dx.set_len(x.len()) };
    let dw = (0..d)
        .map(|j| {
            partial
                .iter()
                .skip(j)
                .step_by(d)
                .fold(T::ZERO, |a, &v| a + v)
        })
        .collect();
    (dx, dw)
}

fn check(lx: &Layout, lw: &Layout) -> candle_core::Result<()> {
    if lx.dims().last() != Some(&lw.shape().elem_count()) || lw.shape().elem_count() == 0 {
        candle_core::bail!(
            "rms-norm: weight {:?} does not fit x {:?}",
            lw.dims(),
            lx.dims()
        )
    }
    Ok(())
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "verity-rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        check(lx, lw)?;
        let out = match (x, w) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(forward::<f32>(
                cpu_slice((x, lx))?,
                cpu_slice((w, lw))?,
                self.eps,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(forward::<f64>(
                cpu_slice((x, lx))?,
                cpu_slice((w, lw))?,
                self.eps,
            )),
            _ => candle_core::bail!("rms-norm: only f32 and f64 on the CPU, both alike"),
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        fn run<T: RmsFloat>(
            cpu: &[(&CpuStorage, &Layout)],
            eps: f64,
            shapes: (&Shape, &Shape),
        ) -> candle_core::Result<(Tensor, Tensor)> {
            let (x, w, dy) = (cpu_slice(cpu[0])?, cpu_slice(cpu[1])?, cpu_slice(cpu[2])?);
            let (dx, dw) = backward::<T>(x, w, dy, eps, None);
            Ok((
                Tensor::from_vec(dx, shapes.0, &Device::Cpu)?,
                Tensor::from_vec(dw, shapes.1, &Device::Cpu)?,
            ))
        }
        let shapes = (x.shape(), w.shape());
        let (dx, dw) = with_cpu(&[x, w, &grad], |cpu| {
            check(cpu[0].1, cpu[1].1)?;
            match cpu[0].0 {
                CpuStorage::F32(_) => run::<f32>(cpu, self.eps, shapes),
                CpuStorage::F64(_) => run::<f64>(cpu, self.eps, shapes),
                _ => candle_core::bail!("rms-norm: only f32 and f64 on the CPU"),
            }
        })?;
        Ok((Some(dx), Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::max_diff;
    use crate::init::test_randn;
    use candle_core::{DType, Var};

    #[test]
    fn rms_norm_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        // 150 rows: more than two backward blocks, the last one partial.
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-4)] {
            let x = Var::from_tensor(&test_randn(0f64, 1.0, (3, 50, 16), &dev)?.to_dtype(dtype)?)?;
            let w = Var::from_tensor(&test_randn(1f64, 0.3, 16, &dev)?.to_dtype(dtype)?)?;
            let g = test_randn(0f64, 1.0, (3, 50, 16), &dev)?.to_dtype(dtype)?;
            let ours = rms_norm(&x, &w, 1e-6)?;
            let theirs = candle_nn::ops::rms_norm_slow(&x, &w, 1e-6)?;
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            assert!(max_diff(&f64_of(&ours), &f64_of(&theirs)) < tol);
            let g1 = (ours * &g)?.sum_all()?.backward()?;
            let g2 = (theirs * &g)?.sum_all()?.backward()?;
            for var in [&x, &w] {
                let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                let diff = max_diff(&f64_of(a), &f64_of(b));
                assert!(diff < tol, "{dtype:?} gradient diff {diff}");
            }
        }
        Ok(())
    }
}
