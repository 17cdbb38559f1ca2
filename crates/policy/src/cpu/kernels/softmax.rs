//! Softmax over the last dimension, forward in one pass per row.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};

use super::fused_cpu;
use crate::cpu::simd::simd_fn;
use crate::cpu::simd::{sum, Float};
use crate::error::Result;

/// Softmax over the last dimension with an analytic backward pass. On other
/// devices it falls back to candle's differentiable composition.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_cpu(x) {
        Ok(x.contiguous()?.apply_op1(SoftmaxLastDim)?)
    } else {
        Ok(candle_nn::ops::softmax(x, D::Minus1)?)
    }
}

struct SoftmaxLastDim;

#[inline(always)]
fn softmax_rows<T: Float>(src: &[T], dim: usize) -> Vec<T> {
    let mut dst = vec![T::ZERO; src.len()];
    for (row, out) in src.chunks_exact(dim).zip(dst.chunks_exact_mut(dim)) {
        let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
        for (o, &x) in out.iter_mut().zip(row) {
            *o = (x - max).exp_fast();
        }
        let inv = T::ONE / sum(out);
        for o in out.iter_mut() {
            *o = *o * inv;
        }
    }
    dst
}

simd_fn! {
    fn softmax_rows_f32(src: &[f32], dim: usize) -> Vec<f32> => softmax_rows
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "verity-softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax input must be contiguous")
        };
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(softmax_rows_f32(&v[start..end], dim)),
            CpuStorage::F64(v) => CpuStorage::F64(softmax_rows(&v[start..end], dim)),
            _ => candle_core::bail!("softmax: only f32 and f64 on the CPU"),
        };
        Ok((out, layout.shape().clone()))
    }

    /// d softmax: `y * (dy - sum(dy * y))` along the last dimension.
    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some(res.mul(&grad_res.broadcast_sub(&dot)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::max_diff;
    use crate::init::test_randn;
    use candle_core::{DType, Device, Var};

    #[test]
    fn matches_candle_forward_and_backward() -> Result<()> {
        let x = Var::from_tensor(&test_randn(0f64, 2.0, (3, 4, 7), &Device::Cpu)?)?;
        let mask = Tensor::new(
            &[0f64, 0., f64::NEG_INFINITY, 0., 0., 0., f64::NEG_INFINITY],
            &Device::Cpu,
        )?;
        let xm = x.broadcast_add(&mask)?;
        let w = test_randn(0f64, 1.0, (3, 4, 7), &Device::Cpu)?;
        let ours = softmax_last_dim(&xm)?;
        let theirs = candle_nn::ops::softmax(&xm, D::Minus1)?;
        let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-15, "forward diff {diff}");
        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        let (g1, g2) = (g1.get(&x).expect("grad"), g2.get(&x).expect("grad"));
        let diff = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-14, "backward diff {diff}");
        assert_eq!(g1.dtype(), DType::F64);
        Ok(())
    }

    #[test]
    fn f32_softmax_matches_candle() -> Result<()> {
        let x = (test_randn(0f32, 4.0, (5, 33), &Device::Cpu)? - 30.0)?;
        let diff = max_diff(
            &softmax_last_dim(&x)?.to_dtype(DType::F64)?,
            &candle_nn::ops::softmax_last_dim(&x)?.to_dtype(DType::F64)?,
        );
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }
}
