//! SwiGLU, `silu(gate) * up`, and its gradients.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use crate::cpu::simd::simd_fn;
use crate::cpu::simd::{contiguous, Float};
use crate::error::Result;

/// `silu(gate) * up`, the SwiGLU activation, with a backward pass for both.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, Swiglu)?)
}

struct Swiglu;

/// sigmoid(x) from e^-|x| (never overflows).
#[inline(always)]
pub(super) fn sigmoid<T: Float>(x: T) -> T {
    let e = x.abs().neg().exp_fast();
    let inv = T::ONE / (T::ONE + e);
    if x >= T::ZERO {
        inv
    } else {
        e * inv
    }
}

#[inline(always)]
fn swiglu_rows<T: Float>(gate: &[T], up: &[T]) -> Vec<T> {
    let mut out = vec![T::ZERO; gate.len()];
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g * sigmoid(g) * u;
    }
    out
}

/// Gradients of `silu(g) * u`: d_gate then d_up, one after the other.
#[inline(always)]
fn swiglu_grad_rows<T: Float>(gate: &[T], up: &[T], grad: &[T]) -> Vec<T> {
    let n = gate.len();
    let mut out = vec![T::ZERO; 2 * n];
    let (d_gate, d_up) = out.split_at_mut(n);
    for i in 0..n {
        let (g, u, dy) = (gate[i], up[i], grad[i]);
        let s = sigmoid(g);
        d_up[i] = dy * g * s;
        d_gate[i] = dy * u * s * (T::ONE + g * (T::ONE - s));
    }
    out
}

simd_fn! {
    fn swiglu_f32(gate: &[f32], up: &[f32]) -> Vec<f32> => swiglu_rows
}
simd_fn! {
    fn swiglu_grad_f32(gate: &[f32], up: &[f32], grad: &[f32]) -> Vec<f32> => swiglu_grad_rows
}

impl CustomOp2 for Swiglu {
    fn name(&self) -> &'static str {
        "verity-swiglu"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        u: &CpuStorage,
        lu: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if lg.shape() != lu.shape() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ", lg.dims(), lu.dims())
        }
        let out = match (g, u) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => CpuStorage::F32(swiglu_f32(
                contiguous(g, lg, "swiglu")?,
                contiguous(u, lu, "swiglu")?,
            )),
            (CpuStorage::F64(g), CpuStorage::F64(u)) => CpuStorage::F64(swiglu_rows(
                contiguous(g, lg, "swiglu")?,
                contiguous(u, lu, "swiglu")?,
            )),
            _ => candle_core::bail!("swiglu: only f32 and f64 on the CPU"),
        };
        Ok((out, lg.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let both = gate.apply_op3_no_bwd(up, &grad.contiguous()?, &SwigluGrad)?;
        let d_gate = both.get(0)?.reshape(gate.shape())?;
        let d_up = both.get(1)?.reshape(up.shape())?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

struct SwigluGrad;

impl CustomOp3 for SwigluGrad {
    fn name(&self) -> &'static str {
        "verity-swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        u: &CpuStorage,
        lu: &Layout,
        dy: &CpuStorage,
        ldy: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = lg.shape().elem_count();
        let out = match (g, u, dy) {
            (CpuStorage::F32(g), CpuStorage::F32(u), CpuStorage::F32(dy)) => {
                CpuStorage::F32(swiglu_grad_f32(
                    contiguous(g, lg, "swiglu")?,
                    contiguous(u, lu, "swiglu")?,
                    contiguous(dy, ldy, "swiglu")?,
                ))
            }
            (CpuStorage::F64(g), CpuStorage::F64(u), CpuStorage::F64(dy)) => {
                CpuStorage::F64(swiglu_grad_rows(
                    contiguous(g, lg, "swiglu")?,
                    contiguous(u, lu, "swiglu")?,
                    contiguous(dy, ldy, "swiglu")?,
                ))
            }
            _ => candle_core::bail!("swiglu: only f32 and f64 on the CPU"),
        };
        Ok((out, Shape::from((2, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::max_diff;
    use crate::init::test_randn;
    use candle_core::{DType, Device, Var};

    #[test]
    fn swiglu_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let gate = Var::from_tensor(&(test_randn(0f64, 6.0, (4, 37), &dev)?.to_dtype(dtype)?))?;
            let up = Var::from_tensor(&test_randn(0f64, 1.0, (4, 37), &dev)?.to_dtype(dtype)?)?;
            let w = test_randn(0f64, 1.0, (4, 37), &dev)?.to_dtype(dtype)?;
            let ours = swiglu(&gate, &up)?;
            let theirs = (gate.silu()? * up.as_tensor())?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            assert!(max_diff(&f64_of(&ours), &f64_of(&theirs)) < tol);
            let g1 = (ours * &w)?.sum_all()?.backward()?;
            let g2 = (theirs * &w)?.sum_all()?.backward()?;
            for var in [&gate, &up] {
                let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                let diff = max_diff(&f64_of(a), &f64_of(b));
                assert!(diff < tol, "{dtype:?} gradient diff {diff}");
            }
        }
        Ok(())
    }
}
