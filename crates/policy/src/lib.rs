//! verity's policy: a trainable decoder-only transformer of the Llama, Qwen2
//! and Qwen3 families on candle, with batched KV-cached sampling and
//! differentiable log-probabilities.
//!
//! - [`ModelConfig`] reads and writes Hugging Face `config.json` (transformers
//!   4 and 5 layouts).
//! - [`Policy`] bundles a config, a [`Transformer`] and the trainable vars
//!   behind it, named as Hugging Face names them: [`Policy::random`] for
//!   training from scratch, [`Policy::load`] / [`Policy::save`] for model
//!   folders that transformers also reads, [`Policy::frozen`] for a
//!   reference model.
//! - [`Transformer::forward`] returns logits for every position of a
//!   (left-padded) batch.
//! - [`generate`] samples groups of completions per prompt; each token comes
//!   with its log-probability under the sampling distribution.
//! - [`completion_logprobs`] recomputes those log-probabilities with
//!   gradients (the same modules, so rollout and update agree);
//!   [`token_cross_entropy`] is the supervised loss. Take the gradients of a
//!   loss with [`Transformer::backward`]: on the CPU the fused blocks hand
//!   their weights' gradients to the model rather than through candle's
//!   graph.
//! - [`Tokenizer`] loads a model folder's tokenizer with its special tokens
//!   and chat template ([`ChatTemplate`], rendered as transformers renders
//!   it), or builds a character-level one for training from scratch
//!   ([`Tokenizer::char_level`]).
//! - [`hub_model_dir`] finds a hub repo in the Hugging Face cache, downloading
//!   it only when the cache lacks it and [`HubOptions::offline`] is off.
//! - [`GgufModel`] reads a llama.cpp GGUF file: its config, its weights
//!   dequantized to float32 under Hugging Face names ([`GgufModel::policy`]),
//!   and its tokenizer and chat template ([`GgufModel::tokenizer`]).
//!
//! The crate knows nothing of tasks or rewards.
//!
//! On the CPU, training runs softmax, RoPE, RMSNorm and SwiGLU as fused
//! kernels that pass gradients (candle's fused ones do not), and float32
//! models generate with a decoder of their own: weights packed for products
//! of few rows, a growing KV cache per sequence, and continuous batching
//! over `RAYON_NUM_THREADS` worker threads that take sequences from a shared
//! queue (the samples do not depend on the thread count). Packing costs
//! about one pass over the weights: a [`GenerationCache`] keeps the packed
//! copy between calls while the weights stay the same, and also scores
//! completions without gradients on it
//! ([`GenerationCache::completion_logprobs`], a frozen reference's job).
//! Other devices and dtypes generate through the tensor model. Two
//! process-wide settings matter to a program using the crate: set
//! `RAYON_NUM_THREADS` (otherwise candle re-reads `/proc/cpuinfo` on every
//! matrix product), and keep glibc from returning large freed blocks to the
//! system ([`keep_freed_memory`], as the `verity` binary and the benchmarks
//! do, or another allocator): a training step frees and refaults
//! gigabytes otherwise.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use policy::{generate, completion_logprobs, Architecture, ModelConfig, Policy, SamplingConfig};
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let config = ModelConfig::new(Architecture::Llama, 32, 16, 32, 1, 2, 1);
//! let policy = Policy::random(&config, 0, &Device::Cpu)?;
//! let sampling = SamplingConfig { max_new_tokens: 4, ..SamplingConfig::default() };
//! let samples = generate(&policy.model, &[vec![1, 2, 3]], 2, &sampling, &mut StdRng::seed_from_u64(0))?;
//! assert_eq!(samples.len(), 2);
//!
//! // Score the first sample again, now with gradients.
//! let row: Vec<u32> = [1, 2, 3].into_iter().chain(samples[0].tokens.iter().copied()).collect();
//! let n = row.len();
//! let ids = Tensor::from_vec(row, (1, n), &Device::Cpu)?;
//! let mask = Tensor::ones((1, n), candle_core::DType::U32, &Device::Cpu)?;
//! let c = samples[0].tokens.len();
//! let logprobs = completion_logprobs(&policy.model, &ids, &mask, c, sampling.temperature)?;
//! let again = logprobs.flatten_all()?.to_vec1::<f32>()?;
//! for (a, b) in again.iter().zip(&samples[0].logprobs) {
//!     assert!((a - b).abs() < 1e-4);
//! }
//! # Ok::<(), policy::Error>(())
//! ```

mod allocator;
mod attention;
mod cache;
mod chat_template;
mod config;
mod cpu;
mod device;
mod error;
mod generate;
mod gguf;
mod gguf_tokenizer;
mod hub;
mod init;
mod layers;
mod logprobs;
mod model;
mod policy;
mod request;
mod rope;
mod sampling;
mod tokenizer;
mod weight_names;
mod weights;

pub use allocator::keep_freed_memory;
pub use cache::KvCache;
pub use chat_template::{ChatMessage, ChatTemplate, SpecialTokens};
pub use config::{Architecture, ModelConfig, RopeScaling};
pub use cpu::{set_matmul_precision, ProductTally};
pub use device::{parse_device, DeviceSpec};
pub use error::{Error, Result};
pub use generate::{generate, generate_until, GenerationCache};
pub use gguf::{is_gguf_file, GgufModel, GGUF_EXTENSION};
pub use hub::{hub_model_dir, resolve_model_dir, HubOptions};
pub use layers::Kernels;
pub use logprobs::{
    completion_logprobs, completion_logprobs_and_entropy, grouped_completion_scores,
    token_cross_entropy, PromptGroup, TokenScores,
};
pub use model::Transformer;
pub use policy::{Policy, CONFIG_FILE};
pub use request::{FinishReason, Generation, Precision, SamplingConfig};
pub use tokenizer::Tokenizer;
pub use weight_names::{gguf_name, hf_name, parameter_shapes};
pub use weights::{load_weights, save_weights, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
