//! Fused CPU kernels that, unlike candle's, pass gradients: softmax, RoPE,
//! RMSNorm and SwiGLU. Built from basic tensor operations, each is several
//! passes over an activation forward and more backward; on the CPU that, not
//! the matrix products, dominated a training step. Other devices (and dtypes
//! other than f32 / f64) use the compositions.

use candle_core::{DType, Tensor};

/// Defines `$name(args)`, which runs `$body` compiled for AVX2 + FMA when
/// the CPU has them (the kernels are written so they vectorise) and as
/// plain code otherwise.
macro_rules! vectorised {
    ($name:ident, $avx2:ident, $body:ident::<$t:ty>($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the features $avx2 is compiled for.
                return unsafe { $avx2($($arg),*) };
            }
            $body::<$t>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) -> $ret {
            $body::<$t>($($arg),*)
        }
    };
}

mod attention;
mod linear;
mod lm_head;
mod mlp;
pub(crate) mod parallel;
mod rms_norm;
mod rotary;
mod sequences;
pub(crate) mod simd;
mod softmax;
mod swiglu;

pub(crate) use attention::{causal_attention, AttentionDims};
pub(crate) use linear::linear;
pub(crate) use lm_head::{token_logprobs, Picks, NO_ROW};
pub(crate) use mlp::swiglu_block;
pub(crate) use rms_norm::rms_norm;
pub(crate) use rotary::rope;
pub(crate) use sequences::{Sequence, SequenceLayout};
pub(crate) use softmax::softmax_last_dim;
pub(crate) use swiglu::swiglu;

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
