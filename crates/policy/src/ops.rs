//! Fused CPU kernels that, unlike candle's, pass gradients: the training path
//! spends most of its non-matmul time in softmax, and the decomposed form
//! (max, subtract, exp, sum, divide, each with its own backward) is several
//! passes over the largest activation.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};

use crate::error::Result;

/// Softmax over the last dimension with an analytic backward pass. On other
/// devices it falls back to candle's differentiable composition.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        Ok(x.contiguous()?.apply_op1(SoftmaxLastDim)?)
    } else {
        Ok(candle_nn::ops::softmax(x, D::Minus1)?)
    }
}

struct SoftmaxLastDim;

fn softmax_rows<T: num_like::Float>(src: &[T], dim: usize) -> Vec<T> {
    let mut dst = vec![T::ZERO; src.len()];
    for (row, out) in src.chunks_exact(dim).zip(dst.chunks_exact_mut(dim)) {
        let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
        let mut sum = T::ZERO;
        for (o, &x) in out.iter_mut().zip(row) {
            *o = (x - max).exp();
            sum = sum + *o;
        }
        let inv = T::ONE / sum;
        for o in out.iter_mut() {
            *o = *o * inv;
        }
    }
    dst
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
            CpuStorage::F32(v) => CpuStorage::F32(softmax_rows(&v[start..end], dim)),
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

/// The few float operations the kernels need, for f32 and f64.
mod num_like {
    pub(crate) trait Float:
        Copy
        + std::ops::Add<Output = Self>
        + std::ops::Sub<Output = Self>
        + std::ops::Mul<Output = Self>
        + std::ops::Div<Output = Self>
    {
        const ZERO: Self;
        const ONE: Self;
        const NEG_INFINITY: Self;
        fn exp(self) -> Self;
        fn max(self, other: Self) -> Self;
    }

    macro_rules! float {
        ($t:ty) => {
            impl Float for $t {
                const ZERO: Self = 0.0;
                const ONE: Self = 1.0;
                const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
                fn exp(self) -> Self {
                    <$t>::exp(self)
                }
                fn max(self, other: Self) -> Self {
                    <$t>::max(self, other)
                }
            }
        };
    }
    float!(f32);
    float!(f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn matches_candle_forward_and_backward() -> Result<()> {
        let x = Var::from_tensor(&Tensor::randn(0f64, 2.0, (3, 4, 7), &Device::Cpu)?)?;
        let mask = Tensor::new(
            &[0f64, 0., f64::NEG_INFINITY, 0., 0., 0., f64::NEG_INFINITY],
            &Device::Cpu,
        )?;
        let xm = x.broadcast_add(&mask)?;
        let w = Tensor::randn(0f64, 1.0, (3, 4, 7), &Device::Cpu)?;
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
}
