//! What generation is asked and what it returns: the sampling settings, a
//! checked request with every sequence's seed, and the completions. Both
//! the tensor path ([`crate::generate`]) and the CPU decoder serve it.

use rand::Rng;

use crate::error::{Error, Result};
use crate::sampling::Sampler;

/// How to sample completions.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Most tokens generated per sequence (default 256).
    pub max_new_tokens: usize,
    /// Logits are divided by this before sampling; 0 means greedy (default 1.0).
    pub temperature: f64,
    /// Sample among the k most likely tokens only; 0 = off (default 0).
    pub top_k: usize,
    /// Sample among the smallest set of tokens whose probability reaches p; 1.0 = off (default 1.0).
    pub top_p: f64,
    /// A sequence stops after producing any of these (kept as its last token). Default none.
    pub stop_token_ids: Vec<u32>,
    /// A sequence stops once its completion ends with any of these (kept). Default none.
    pub stop_sequences: Vec<Vec<u32>>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            max_new_tokens: 256,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            stop_token_ids: Vec::new(),
            stop_sequences: Vec::new(),
        }
    }
}

/// The arithmetic a CPU product multiplies in: the decoder's weights
/// (`run.decode_precision`) or the training kernels' matrix products
/// (`run.matmul_precision`).
///
/// bfloat16 rounds both operands of each product to bfloat16 and keeps the
/// sums in float32, as bf16 inference engines and PyTorch's
/// `set_float32_matmul_precision("medium")` compute. For decoding it halves
/// the bytes of every weight and, on CPUs with AVX-512 bf16 dot products,
/// doubles the products' rate; the sampled tokens then come from a slightly
/// different model than the one trained (log-probabilities shift by about
/// 1e-2, where float32 reproduces the training forward to 1e-5). For
/// training, weights, gradients and optimizer state stay float32; only the
/// products' inputs are rounded.
///
/// Configs and the command line spell it as [`Precision::name`]
/// says (or `f32` / `bf16`), read by its `FromStr`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Precision {
    /// float32 weights and products (the default).
    #[default]
    Float32,
    /// bfloat16 weights and products with float32 sums.
    Bfloat16,
}

impl Precision {
    /// Whether this CPU multiplies in this precision with instructions of
    /// its own; bfloat16 without AVX-512 bf16 is emulated, slower than
    /// float32.
    pub fn is_native(self) -> bool {
        match self {
            Precision::Float32 => true,
            Precision::Bfloat16 => crate::cpu::has_bf16_dot(),
        }
    }

    /// The name configuration files use.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Bfloat16 => "bfloat16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "float32" | "f32" => Ok(Precision::Float32),
            "bfloat16" | "bf16" => Ok(Precision::Bfloat16),
            other => Err(Error::Input(format!(
                "precision {other:?} is not one of \"float32\", \"bfloat16\""
            ))),
        }
    }
}

impl TryFrom<String> for Precision {
    type Error = Error;

    fn try_from(name: String) -> Result<Self> {
        name.parse()
    }
}

impl From<Precision> for String {
    fn from(precision: Precision) -> String {
        precision.name().to_string()
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token, stop sequence or the caller's stop test ended it.
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// One sampled completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Which prompt it continues.
    pub prompt_index: usize,
    /// Which of that prompt's samples it is (0..samples_per_prompt).
    pub sample_index: usize,
    /// The new tokens, including the stop token or sequence that ended it.
    pub tokens: Vec<u32>,
    /// Per token: log-probability under the sampling distribution,
    /// softmax(logits / temperature) over the whole vocabulary, before top-k /
    /// top-p (temperature 1 when greedy). This is what TRL computes and what
    /// [`crate::completion_logprobs`] recomputes at the same temperature.
    pub logprobs: Vec<f32>,
    /// Per token: log-probability under the untempered model, softmax(logits).
    pub raw_logprobs: Vec<f32>,
    /// Why it ended.
    pub finish: FinishReason,
}

/// A checked generation request: every sequence's random seed drawn.
pub(crate) struct Request<'a> {
    pub(crate) prompts: &'a [Vec<u32>],
    /// Samples per prompt; sequence `i` continues prompt `i / group`.
    pub(crate) group: usize,
    pub(crate) config: &'a SamplingConfig,
    pub(crate) sampler: Sampler,
    /// Sequence `i` draws from a generator seeded with `seeds[i]`.
    pub(crate) seeds: Vec<u64>,
}

impl<'a> Request<'a> {
    pub(crate) fn new<R: Rng + ?Sized>(
        prompts: &'a [Vec<u32>],
        group: usize,
        config: &'a SamplingConfig,
        rng: &mut R,
    ) -> Result<Self> {
        let sampler = validate(prompts, group, config)?;
        let seeds = (0..prompts.len() * group).map(|_| rng.random()).collect();
        Ok(Request {
            prompts,
            group,
            config,
            sampler,
            seeds,
        })
    }
}

impl Request<'_> {
    /// Sequence `i`, before its first token.
    pub(crate) fn start(&self, i: usize) -> Generation {
        // Room for the usual lengths; a huge limit must not allocate up front.
        let room = self.config.max_new_tokens.min(1024);
        Generation {
            prompt_index: i / self.group,
            sample_index: i % self.group,
            tokens: Vec::with_capacity(room),
            logprobs: Vec::with_capacity(room),
            raw_logprobs: Vec::with_capacity(room),
            finish: FinishReason::Length,
        }
    }
}

pub(crate) fn stops(tokens: &[u32], config: &SamplingConfig) -> bool {
    let Some(last) = tokens.last() else {
        return false;
    };
    config.stop_token_ids.contains(last)
        || config
            .stop_sequences
            .iter()
            .any(|s| !s.is_empty() && tokens.ends_with(s))
}

fn validate(
    prompts: &[Vec<u32>],
    samples_per_prompt: usize,
    config: &SamplingConfig,
) -> Result<Sampler> {
    if samples_per_prompt == 0 && !prompts.is_empty() {
        return Err(Error::Input("samples_per_prompt must be at least 1".into()));
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::Input(format!("prompt {i} is empty")));
    }
    if !config.temperature.is_finite() || config.temperature < 0.0 {
        return Err(Error::Input(format!(
            "temperature {} must be a finite number >= 0",
            config.temperature
        )));
    }
    if config.top_p.is_nan() || config.top_p <= 0.0 || config.top_p > 1.0 {
        return Err(Error::Input(format!(
            "top_p {} must be in (0, 1]",
            config.top_p
        )));
    }
    Ok(Sampler {
        temperature: config.temperature,
        top_k: config.top_k,
        top_p: config.top_p,
    })
}
