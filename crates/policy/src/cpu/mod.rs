//! The CPU backend: everything that computes the tensor model's function
//! by other means on the CPU, for speed.
//!
//! - [`kernels`]: fused training kernels (attention, RMSNorm, RoPE, SwiGLU,
//!   softmax, the LM head's log-probs, and each half of a decoder layer as
//!   one residual block) that pass gradients, which the tensor model's layers
//!   call for f32 / f64 CPU tensors ([`fused_cpu`]);
//! - [`decoder`]: generation (and scoring without gradients) without
//!   tensors for float32 CPU models, over weights packed for products of
//!   few rows ([`packed`]);
//! - [`parallel`]: the worker threads every loop above is split over;
//! - [`simd`]: the one choice of vector instructions for the running CPU.
//!
//! The rest of the crate reaches the backend through the names re-exported
//! here; the backend reads the model only through its config and the
//! weight-name table. `tests/cpu_backend.rs` holds the whole backend to the
//! tensor model built from basic operations.

pub(crate) mod bf16_product;
pub(crate) mod decoder;
pub(crate) mod kernels;
pub(crate) mod packed;
pub(crate) mod parallel;
pub(crate) mod simd;

pub use bf16_product::set_matmul_precision;
pub(crate) use decoder::{generate as decode, score as decoder_scores, CpuDecoder, Fingerprint};
pub(crate) use kernels::{
    attention_block, causal_attention, fused_cpu, linear, rms_norm, rope, softmax_last_dim, swiglu,
    swiglu_block, token_logprobs, Attending, AttentionDims, PendingGrads, Picks, Sequence,
    SequenceLayout, WeightSink, NO_ROW,
};
pub use parallel::ProductTally;
pub(crate) use simd::has_bf16_dot;
