//! The first half of a decoder layer, `x + attention(n Wqkv^T) Wo^T` with
//! `n = rms_norm(x)`, as one operation with its backward pass. As five
//! nodes (norm, projection, attention, output projection, residual add),
//! candle's backward allocated, zeroed and added a full-size gradient for
//! each node's input, x twice; here x gets one.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, Layout, Tensor};

use super::attention::{AttnFloat, CausalAttention};
use super::fused_block::{self, BlockKernels, ResidualBlock};
use super::rms_norm::{self, RmsFloat};
use super::{AttentionDims, SequenceLayout, WeightSink};
use crate::cpu::parallel::{add_assign, product, product_with_room};
use crate::error::Result;

/// How the block attends: the heads, the sequences of the rows and the
/// rotary angles (as [`super::causal_attention`] takes them).
pub(crate) struct Attending {
    pub(crate) dims: AttentionDims,
    pub(crate) layout: Arc<SequenceLayout>,
    pub(crate) cos: Arc<Vec<f32>>,
    pub(crate) sin: Arc<Vec<f32>>,
}

/// `x + attention(rms_norm(x) Wqkv^T) Wo^T` for `x` [rows, hidden].
/// `weights` [W + 1, hidden] holds the query, key and value weights' rows
/// (W = (heads + 2 kv_heads) * head_dim), then the norm's weight; `o_proj`
/// is [hidden, heads * head_dim]. With a `sink` the weights' gradients go
/// there instead of to `weights` and `o_proj` (given detached).
pub(crate) fn attention_block(
    x: &Tensor,
    weights: &Tensor,
    o_proj: &Tensor,
    attending: Attending,
    eps: f64,
    sink: Option<WeightSink>,
) -> Result<Tensor> {
    let Attending {
        dims,
        layout,
        cos,
        sin,
    } = attending;
    let op = AttentionBlock {
        attention: CausalAttention::new(dims, layout, cos, sin),
        eps,
        saved: Mutex::new(None),
        sink,
    };
    fused_block::apply(x, weights, o_proj, op)
}

struct AttentionBlock {
    attention: CausalAttention,
    eps: f64,
    /// Where the weights' gradients go, when not to the inputs.
    sink: Option<WeightSink>,
    /// From the forward, for the backward: the projections, the attention
    /// output and its probabilities (what the separate nodes held). The
    /// normalised input is computed again from x (a cheap pass).
    saved: Mutex<Option<Saved>>,
}

struct Saved {
    qkv: CpuStorage,
    attended: CpuStorage,
    probs: CpuStorage,
}

trait BlockFloat: AttnFloat + RmsFloat {}
impl BlockFloat for f32 {}
impl BlockFloat for f64 {}

/// The block's sizes: rows, hidden, the projections' width W, and the
/// attention output's width.
#[derive(Clone, Copy)]
struct Sizes {
    rows: usize,
    hidden: usize,
    width: usize,
    attended: usize,
}

impl ResidualBlock for AttentionBlock {
    const NAME: &'static str = "verity-attention-block";
    const LABEL: &'static str = "attention block";
    type Sizes = Sizes;

    fn sizes(&self, lx: &Layout, lw: &Layout, lo: &Layout) -> candle_core::Result<Sizes> {
        let (rows, hidden) = lx.shape().dims2()?;
        let (weight_rows, w_in) = lw.shape().dims2()?;
        let (o_out, attended) = lo.shape().dims2()?;
        let width = weight_rows.saturating_sub(1);
        let dims = self.attention.dims();
        if w_in != hidden || o_out != hidden || attended != dims.heads * dims.head_dim {
            candle_core::bail!(
                "attention block: x {:?}, weights {:?}, o_proj {:?} do not fit",
                lx.dims(),
                lw.dims(),
                lo.dims()
            )
        }
        self.attention.check_dims(&[rows, width])?;
        Ok(Sizes {
            rows,
            hidden,
            width,
            attended,
        })
    }

    fn sink(&self) -> Option<&WeightSink> {
        self.sink.as_ref()
    }
}

impl<T: BlockFloat> BlockKernels<T> for AttentionBlock {
    fn forward(&self, (x, weights, o_proj): (&[T], &[T], &[T]), s: Sizes) -> Vec<T> {
        let (qkv_weight, norm) = weights.split_at(s.width * s.hidden);
        let xn = rms_norm::forward(x, norm, self.eps);
        // The weights as [in, out] views.
        let qkv = product(
            s.rows,
            s.width,
            s.hidden,
            (&xn, s.hidden, 1),
            (qkv_weight, 1, s.hidden),
        );
        drop(xn);
        let (attended, probs) = self.attention.forward(&qkv);
        let mut out = product(
            s.rows,
            s.hidden,
            s.attended,
            (&attended, s.attended, 1),
            (o_proj, 1, s.attended),
        );
        add_assign(&mut out, x);
        *self.saved.lock().expect("attention block activations") = Some(Saved {
            qkv: T::to_cpu_storage_owned(qkv),
            attended: T::to_cpu_storage_owned(attended),
            probs: T::to_cpu_storage_owned(probs),
        });
        out
    }

    fn backward(
        &self,
        (x, weights, o_proj, dy): (&[T], &[T], &[T], &[T]),
        s: Sizes,
    ) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let saved = self.saved.lock().expect("attention block activations");
        let Some(saved) = saved.as_ref() else {
            candle_core::bail!("attention block: backward before forward")
        };
        let qkv = T::cpu_storage_as_slice(&saved.qkv)?;
        let attended = T::cpu_storage_as_slice(&saved.attended)?;
        let probs = T::cpu_storage_as_slice(&saved.probs)?;
        let (qkv_weight, norm) = weights.split_at(s.width * s.hidden);
        let d_o_proj = product(
            s.hidden,
            s.attended,
            s.rows,
            (dy, 1, s.hidden),
            (attended, s.attended, 1),
        );
        let d_attended = product(
            s.rows,
            s.attended,
            s.hidden,
            (dy, s.hidden, 1),
            (o_proj, s.attended, 1),
        );
        let dqkv = self.attention.backward(qkv, attended, &d_attended, probs);
        drop(d_attended);
        let xn = rms_norm::forward(x, norm, self.eps);
        let mut d_weights = product_with_room(
            s.width,
            s.hidden,
            s.rows,
            (&dqkv, 1, s.width),
            (&xn, s.hidden, 1),
            s.hidden,
        );
        drop(xn);
        let dxn = product(
            s.rows,
            s.hidden,
            s.width,
            (&dqkv, s.width, 1),
            (qkv_weight, s.hidden, 1),
        );
        // The residual passes dy straight through to x.
        let (dx, d_norm) = rms_norm::backward(x, norm, &dxn, self.eps, Some(dy));
        d_weights.extend_from_slice(&d_norm);
        Ok((dx, d_weights, d_o_proj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::{causal_attention, linear, max_diff, rms_norm};
    use crate::init::test_randn;
    use candle_core::{DType, Device, Var};

    /// The block equals the chain of the separate kernels (each held to
    /// candle's operations by its own test), forward and backward.
    #[test]
    fn block_matches_the_separate_kernels_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let dims = AttentionDims {
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
        };
        let (b, t, hidden) = (3, 9, 12);
        let rows = b * t;
        let valid: Vec<bool> = (0..rows).map(|i| i / t != 1 || i % t < 6).collect();
        let layout = Arc::new(SequenceLayout::rectangular(b, t, valid));
        let angles = test_randn(0f32, 2.0, rows * dims.head_dim / 2, &dev)?;
        let host = |t: Tensor| Arc::new(t.to_vec1::<f32>().unwrap());
        let (cos, sin) = (host(angles.cos()?), host(angles.sin()?));
        let attending = || Attending {
            dims,
            layout: layout.clone(),
            cos: cos.clone(),
            sin: sin.clone(),
        };
        let width = (dims.heads + 2 * dims.kv_heads) * dims.head_dim;
        for dtype in [DType::F64, DType::F32] {
            let var = |shape: &[usize], mean: f64, std: f64| -> Result<Var> {
                Ok(Var::from_tensor(
                    &test_randn(mean, std, shape, &dev)?.to_dtype(dtype)?,
                )?)
            };
            let x = var(&[rows, hidden], 0.0, 1.0)?;
            let norm = var(&[hidden], 1.0, 0.3)?;
            let qkv_w = var(&[width, hidden], 0.0, 0.5)?;
            let o_w = var(&[hidden, dims.heads * dims.head_dim], 0.0, 0.5)?;
            let w = test_randn(0f64, 1.0, (rows, hidden), &dev)?.to_dtype(dtype)?;
            let weights = Tensor::cat(&[qkv_w.as_tensor(), &norm.unsqueeze(0)?], 0)?;
            let ours = attention_block(&x, &weights, &o_w, attending(), 1e-6, None)?;
            let n = rms_norm(&x, &norm, 1e-6)?;
            let a = causal_attention(
                &linear(&n, &qkv_w)?,
                dims,
                layout.clone(),
                cos.clone(),
                sin.clone(),
            )?;
            let theirs = (x.as_tensor() + linear(&a, &o_w)?)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let diff = max_diff(&f64_of(&ours), &f64_of(&theirs));
            assert!(diff < tol, "{dtype:?} forward diff {diff}");
            let g1 = (ours * &w)?.sum_all()?.backward()?;
            let g2 = (theirs * &w)?.sum_all()?.backward()?;
            for (name, var) in [("x", &x), ("norm", &norm), ("qkv", &qkv_w), ("o", &o_w)] {
                let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                let diff = max_diff(&f64_of(a), &f64_of(b));
                let scale = f64_of(b).abs()?.max_all()?.to_scalar::<f64>()?;
                assert!(diff < tol * (1.0 + scale), "{dtype:?} d{name} diff {diff}");
            }
        }
        Ok(())
    }
}
