//! `y = x W^T` on the CPU as one operation whose products run on candle's
//! CPU workers. As candle's matmul of `x` and `W.t()` it was two nodes (the
//! transpose's gradient buffer too) and its products ran on gemm's rayon
//! pool, beside which the other kernels' worker spun.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor, WithDType};

use crate::cpu::parallel::{cpu_slice, product, with_cpu};
use crate::cpu::simd::Float;
use crate::error::Result;

/// `x [rows, in] * weight^T` for `weight` [out, in]: [rows, out].
pub(crate) fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2(&weight.contiguous()?, Linear)?)
}

struct Linear;

fn sizes(lx: &Layout, lw: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (rows, inp) = lx.shape().dims2()?;
    let (out, w_in) = lw.shape().dims2()?;
    if w_in != inp {
        candle_core::bail!(
            "linear: x {:?} does not fit weight {:?}",
            lx.dims(),
            lw.dims()
        )
    }
    Ok((rows, inp, out))
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "verity-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, inp, out) = sizes(lx, lw)?;
        fn run<T: Float + WithDType>(
            x: (&CpuStorage, &Layout),
            w: (&CpuStorage, &Layout),
            (rows, inp, out): (usize, usize, usize),
        ) -> candle_core::Result<CpuStorage> {
            let (x, w) = (cpu_slice::<T>(x)?, cpu_slice::<T>(w)?);
            // The weight as an [in, out] view.
            let y = product(rows, out, inp, (x, inp, 1), (w, 1, inp));
            Ok(T::to_cpu_storage_owned(y))
        }
        let y = match x {
            CpuStorage::F32(_) => run::<f32>((x, lx), (w, lw), (rows, inp, out))?,
            CpuStorage::F64(_) => run::<f64>((x, lx), (w, lw), (rows, inp, out))?,
            _ => candle_core::bail!("linear: only f32 and f64 on the CPU"),
        };
        Ok((y, Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        fn run<T: Float + WithDType>(
            cpu: &[(&CpuStorage, &Layout)],
            shapes: (&Shape, &Shape),
        ) -> candle_core::Result<(Tensor, Tensor)> {
            let (rows, inp, out) = sizes(cpu[0].1, cpu[1].1)?;
            let (x, w, dy) = (
                cpu_slice::<T>(cpu[0])?,
                cpu_slice::<T>(cpu[1])?,
                cpu_slice::<T>(cpu[2])?,
            );
            let dx = product(rows, inp, out, (dy, out, 1), (w, inp, 1));
            let dw = product(out, inp, rows, (dy, 1, out), (x, inp, 1));
            Ok((
                Tensor::from_vec(dx, shapes.0, &Device::Cpu)?,
                Tensor::from_vec(dw, shapes.1, &Device::Cpu)?,
            ))
        }
        let shapes = (x.shape(), w.shape());
        let (dx, dw) = with_cpu(&[x, w, &grad], |cpu| match cpu[0].0 {
            CpuStorage::F32(_) => run::<f32>(cpu, shapes),
            CpuStorage::F64(_) => run::<f64>(cpu, shapes),
            _ => candle_core::bail!("linear: only f32 and f64 on the CPU"),
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
    fn linear_matches_matmul_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        // Tall and wide shapes: products split by rows, and by the summed rows.
        for (rows, inp, out) in [(37, 5, 9), (3, 40, 6)] {
            for dtype in [DType::F64, DType::F32] {
                let var = |shape: (usize, usize)| -> Result<Var> {
                    Ok(Var::from_tensor(
                        &test_randn(0f64, 1.0, shape, &dev)?.to_dtype(dtype)?,
                    )?)
                };
                let (x, w) = (var((rows, inp))?, var((out, inp))?);
                let g = test_randn(0f64, 1.0, (rows, out), &dev)?.to_dtype(dtype)?;
                let ours = linear(&x, &w)?;
                let theirs = x.matmul(&w.t()?)?;
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
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
        }
        Ok(())
    }
}
