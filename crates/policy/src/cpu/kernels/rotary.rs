//! Rotary position embedding (rotate-half form) and its transpose.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::cpu::simd::Float;
use crate::error::Result;

/// Rotary embedding of `x` [B, T, heads, D] with per-token `cos`, `sin`
/// [B, T, D/2] (rotate-half form), with a backward pass: the rotation's
/// transpose, i.e. the same rotation with `-sin`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope)?)
}

struct Rope;

fn rope_rows<T: Float>(x: &[T], cos: &[T], sin: &[T], heads: usize, d: usize) -> Vec<T> {
    let half = d / 2;
    let mut out = vec![T::ZERO; x.len()];
    let tokens = x.len() / (heads * d);
    for tok in 0..tokens {
        let (c, s) = (
            &cos[tok * half..(tok + 1) * half],
            &sin[tok * half..(tok + 1) * half],
        );
        for h in 0..heads {
            let base = (tok * heads + h) * d;
            let (src, dst) = (&x[base..base + d], &mut out[base..base + d]);
            for i in 0..half {
                let (x1, x2) = (src[i], src[i + half]);
                dst[i] = x1 * c[i] - x2 * s[i];
                dst[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
    out
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "verity-rope"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        cos: &CpuStorage,
        lc: &Layout,
        sin: &CpuStorage,
        ls: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some(ox), Some(oc), Some(os)) = (
            lx.contiguous_offsets(),
            lc.contiguous_offsets(),
            ls.contiguous_offsets(),
        ) else {
            candle_core::bail!("rope inputs must be contiguous")
        };
        let dims = lx.dims();
        let (heads, d) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        if lc.shape().elem_count() * 2 * heads != lx.shape().elem_count() {
            candle_core::bail!("rope: cos {:?} does not fit x {:?}", lc.dims(), dims)
        }
        let out = match (x, cos, sin) {
            (CpuStorage::F32(x), CpuStorage::F32(c), CpuStorage::F32(s)) => CpuStorage::F32(
                rope_rows(&x[ox.0..ox.1], &c[oc.0..oc.1], &s[os.0..os.1], heads, d),
            ),
            (CpuStorage::F64(x), CpuStorage::F64(c), CpuStorage::F64(s)) => CpuStorage::F64(
                rope_rows(&x[ox.0..ox.1], &c[oc.0..oc.1], &s[os.0..os.1], heads, d),
            ),
            _ => candle_core::bail!("rope: only f32 and f64 on the CPU, all three alike"),
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_x = grad
            .contiguous()?
            .apply_op3_no_bwd(cos, &sin.neg()?, &Rope)?;
        Ok((Some(grad_x), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::max_diff;
    use crate::init::test_randn;
    use candle_core::{Device, Var};

    #[test]
    fn rope_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&test_randn(0f64, 1.0, (2, 3, 4, 8), &dev)?)?;
        let angles = test_randn(0f64, 3.0, (2, 3, 4), &dev)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let w = test_randn(0f64, 1.0, (2, 3, 4, 8), &dev)?;
        let ours = rope(&x, &cos, &sin)?;
        // Reference: x * cos + rotate_half(x) * sin with cos, sin repeated.
        let (c, s) = (
            Tensor::cat(&[&cos, &cos], 2)?.unsqueeze(2)?,
            Tensor::cat(&[&sin, &sin], 2)?.unsqueeze(2)?,
        );
        let rotated = Tensor::cat(&[&x.narrow(3, 4, 4)?.neg()?, &x.narrow(3, 0, 4)?], 3)?;
        let theirs = (x.broadcast_mul(&c)? + rotated.broadcast_mul(&s)?)?;
        assert!(max_diff(&ours, &theirs) < 1e-14);
        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&x).expect("grad"), g2.get(&x).expect("grad")) < 1e-14);
        Ok(())
    }
}
