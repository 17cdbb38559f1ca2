//! Fused CPU kernels that, unlike candle's, pass gradients: softmax, RoPE,
//! RMSNorm and SwiGLU. Built from basic tensor operations, each is several
//! passes over an activation forward and more backward; on the CPU that, not
//! the matrix products, dominated a training step. Other devices (and dtypes
//! other than f32 / f64) use the compositions.

use candle_core::{DType, Tensor};

mod attention;
mod attention_block;
mod fused_block;
mod head_product;
mod linear;
mod lm_head;
mod mlp;
mod rms_norm;
mod rotary;
mod sequences;
mod softmax;
mod swiglu;
mod weight_grads;

pub(crate) use attention::{causal_attention, AttentionDims};
pub(crate) use attention_block::{attention_block, Attending};
pub(crate) use linear::linear;
pub(crate) use lm_head::{token_logprobs, token_stats_f32, Picks, NO_ROW};
pub(crate) use mlp::swiglu_block;
pub(crate) use rms_norm::rms_norm;
pub(crate) use rotary::rope;
pub(crate) use sequences::{Sequence, SequenceLayout};
pub(crate) use softmax::softmax_last_dim;
pub(crate) use swiglu::swiglu;
pub(crate) use weight_grads::{PendingGrads, WeightSink};

/// Whether the fused CPU kernels handle `x` (f32 or f64 on the CPU).
pub(crate) fn fused_cpu(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Largest absolute difference of two tensors, as f64.
#[cfg(test)]
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_dtype(DType::F64))
        .and_then(|d| d.to_scalar::<f64>())
        .expect("difference of two tensors")
}
