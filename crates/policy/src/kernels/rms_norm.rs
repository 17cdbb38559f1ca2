//! RMSNorm and the two passes of its backward.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::simd::{dot3, Float};
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

/// What one pass over the rows computes.
#[derive(Clone, Copy)]
enum RmsPass {
    /// `x * r * w`.
    Forward,
    /// `x * r` (the normalised input, for the weight's gradient).
    Normalise,
    /// `r * (dy*w - x * r^2 * mean(dy*w*x))`, the input's gradient; `other` is dy.
    GradInput,
}

#[inline(always)]
fn rms_rows<T: Float>(x: &[T], w: &[T], other: &[T], eps: f64, pass: RmsPass) -> Vec<T> {
    let d = w.len();
    let mut out = vec![T::ZERO; x.len()];
    let inv_d = T::from_f64(1.0 / d as f64);
    let eps = T::from_f64(eps);
    for (row, (xs, dst)) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let mean_sq = dot3(xs, xs, None) * inv_d;
        let r = T::ONE / (mean_sq + eps).sqrt();
        match pass {
            RmsPass::Forward => {
                for ((o, &v), &wi) in dst.iter_mut().zip(xs).zip(w) {
                    *o = v * r * wi;
                }
            }
            RmsPass::Normalise => {
                for (o, &v) in dst.iter_mut().zip(xs) {
                    *o = v * r;
                }
            }
            RmsPass::GradInput => {
                let dy = &other[row * d..(row + 1) * d];
                let dot = dot3(xs, dy, Some(w)) * inv_d;
                let k = r * r * dot;
                for (((o, &v), &g), &wi) in dst.iter_mut().zip(xs).zip(dy).zip(w) {
                    *o = r * (g * wi - v * k);
                }
            }
        }
    }
    out
}

vectorised!(rms_rows_f32, rms_rows_f32_avx2, rms_rows::<f32>(x: &[f32], w: &[f32], other: &[f32], eps: f64, pass: RmsPass) -> Vec<f32>);

fn rms_apply(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    other: Option<(&CpuStorage, &Layout)>,
    eps: f64,
    pass: RmsPass,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let offsets = |l: &Layout| match l.contiguous_offsets() {
        Some(o) => Ok(o),
        None => candle_core::bail!("rms-norm inputs must be contiguous"),
    };
    let (ox, ow) = (offsets(x.1)?, offsets(w.1)?);
    let oo = match other {
        Some((_, l)) => offsets(l)?,
        None => (0, 0),
    };
    if x.1.dims().last() != Some(&w.1.shape().elem_count()) {
        candle_core::bail!(
            "rms-norm: weight {:?} does not fit x {:?}",
            w.1.dims(),
            x.1.dims()
        )
    }
    let out = match (x.0, w.0, other.map(|o| o.0)) {
        (CpuStorage::F32(xv), CpuStorage::F32(wv), o) => {
            let o = match o {
                Some(CpuStorage::F32(v)) => &v[oo.0..oo.1],
                Some(_) => candle_core::bail!("rms-norm: mixed dtypes"),
                None => &[][..],
            };
            CpuStorage::F32(rms_rows_f32(&xv[ox.0..ox.1], &wv[ow.0..ow.1], o, eps, pass))
        }
        (CpuStorage::F64(xv), CpuStorage::F64(wv), o) => {
            let o = match o {
                Some(CpuStorage::F64(v)) => &v[oo.0..oo.1],
                Some(_) => candle_core::bail!("rms-norm: mixed dtypes"),
                None => &[][..],
            };
            CpuStorage::F64(rms_rows(&xv[ox.0..ox.1], &wv[ow.0..ow.1], o, eps, pass))
        }
        _ => candle_core::bail!("rms-norm: only f32 and f64 on the CPU"),
    };
    Ok((out, x.1.shape().clone()))
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
        rms_apply((x, lx), (w, lw), None, self.eps, RmsPass::Forward)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_x = x.apply_op3_no_bwd(w, &grad, &RmsGrad { eps: self.eps })?;
        let normalised = x.apply_op2_no_bwd(w, &RmsNormalise { eps: self.eps })?;
        let d = w.elem_count();
        let grad_w = (grad * normalised)?.reshape(((), d))?.sum(0)?;
        Ok((Some(grad_x), Some(grad_w)))
    }
}

struct RmsNormalise {
    eps: f64,
}

impl CustomOp2 for RmsNormalise {
    fn name(&self) -> &'static str {
        "verity-rms-normalise"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        rms_apply((x, lx), (w, lw), None, self.eps, RmsPass::Normalise)
    }
}

struct RmsGrad {
    eps: f64,
}

impl CustomOp3 for RmsGrad {
    fn name(&self) -> &'static str {
        "verity-rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        dy: &CpuStorage,
        ldy: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        rms_apply(
            (x, lx),
            (w, lw),
            Some((dy, ldy)),
            self.eps,
            RmsPass::GradInput,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::max_diff;
    use candle_core::{Device, Var};

    #[test]
    fn rms_norm_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (3, 5, 16), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f64, 0.3, 16, &dev)?)?;
        let g = Tensor::randn(0f64, 1.0, (3, 5, 16), &dev)?;
        let ours = rms_norm(&x, &w, 1e-6)?;
        let theirs = candle_nn::ops::rms_norm_slow(&x, &w, 1e-6)?;
        assert!(max_diff(&ours, &theirs) < 1e-12);
        let g1 = (ours * &g)?.sum_all()?.backward()?;
        let g2 = (theirs * &g)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&x).expect("grad"), g2.get(&x).expect("grad")) < 1e-12);
        assert!(max_diff(g1.get(&w).expect("grad"), g2.get(&w).expect("grad")) < 1e-12);
        Ok(())
    }
}
