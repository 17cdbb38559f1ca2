//! The run config: a TOML file with sections `run`, `model`, `tasks`,
//! `optimizer`, `sft`, `grpo`, `curriculum`, `eval`, `checkpoint` and `log`, plus `--set section.key=value`
//! overrides, resolved and validated once before any work starts.
//!
//! Every key, its default and its meaning are declared once below;
//! [`reference`] renders them (`verity train --help-config`,
//! configs/README.md).

mod docs;
mod load;
mod resume;
pub(crate) mod schema;
mod validate;

use serde::{Deserialize, Serialize};

use policy::{Architecture, DeviceSpec, Precision};

use crate::advantages::{AdvantageEstimator, ScaleRewards};
use crate::loss::{ImportanceSampling, KlEstimator, LossConfig, LossType};
use crate::optim::AdamWConfig;
use crate::sampler_correction::SamplerCorrection;
use crate::schedule::{Decay, LrSchedule};
use schema::section;

pub use docs::reference;
pub use resume::RESUMABLE_KEYS;
pub use schema::{KeyDoc, SectionDoc};

/// Where the model's weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// Random initialisation with the `model` section's sizes and a
    /// character-level tokenizer built from the tasks' text.
    Scratch,
    /// A local Hugging Face model folder (`model.path`).
    Local,
    /// A Hugging Face Hub repository (`model.repo`), through the local hub
    /// cache.
    Hub,
    /// A GGUF file (`model.path`), dequantized to float32; checkpoints are
    /// Hugging Face folders.
    Gguf,
}

/// How a problem's prompt becomes the model's input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    /// `chat` for pretrained models whose tokenizer has a chat template,
    /// `plain` otherwise (models trained from scratch).
    Auto,
    /// The tokenizer's chat template: an optional system message, the prompt
    /// as the user message, then the assistant's generation prompt.
    Chat,
    /// The prompt text followed by one newline; the completion starts right
    /// after it.
    Plain,
}

section! {
    /// Where the run's files go, its seed, and the hardware it runs on.
    pub struct RunSection in "run" {
        /// Name of the run: its files go to OUT_DIR/NAME. Empty means the
        /// config file's name without `.toml`.
        name: String = "",
        /// Folder that holds run folders, relative to the current directory.
        out_dir: String = "runs",
        /// Seeds everything: weights, data order, sampling. Every step's
        /// randomness is derived from (seed, phase, step), so a run is
        /// reproducible and resumable.
        seed: u64 = 0,
        /// CPU threads for tensor maths; 0 means every available core. The
        /// results do not depend on it: the same config and seed give the
        /// same weights and logs bit for bit on any number of threads (only
        /// the timings differ). Threads beyond the cores other work leaves
        /// free make steps many times slower. The resolved config records
        /// the number used.
        threads: usize = 0,
        /// `cpu`, `cuda` or `cuda:N` (CUDA needs verity built with
        /// `--features cuda`).
        device: DeviceSpec = DeviceSpec::Cpu,
        /// What the CPU decoder multiplies in when it generates (GRPO
        /// rollouts and evaluations): `float32`, the same numbers as the
        /// training forward, or `bfloat16`, weights and activations rounded
        /// to bfloat16 with float32 sums, as bf16 rollout engines compute:
        /// about 1.7x the tokens per second on CPUs with AVX-512 bf16, with
        /// log-probabilities about 1e-2 off the trained model's. Other
        /// devices generate in the model's own dtype.
        decode_precision: Precision = Precision::Float32,
        /// What the CPU training kernels' matrix products (every linear
        /// layer, the MLP and the LM head, forward and backward, in SFT and
        /// GRPO) multiply in: `float32`, or `bfloat16`, both operands
        /// rounded to bfloat16 with float32 sums, as PyTorch's
        /// `set_float32_matmul_precision("medium")` computes. Weights,
        /// gradients, optimizer state and every other operation stay
        /// float32; the KL reference scores at `grpo.reference_precision`.
        /// On CPUs with AVX-512 bf16 the products run at about twice the
        /// rate; elsewhere they are emulated, slower than float32. Other
        /// devices and float64 models ignore it.
        matmul_precision: Precision = Precision::Float32,
        /// A step whose loss or gradient is NaN or infinite makes no update
        /// and is logged with `"skipped": true`; this many such steps in a
        /// row stop the run with a checkpoint of the last good weights. 0
        /// never stops.
        max_nonfinite_steps: u64 = 3,
    }
}

section! {
    /// The policy model: trained from scratch, or a pretrained Hugging Face
    /// model or GGUF file. Size keys apply to `source = "scratch"` only;
    /// pretrained models bring their own config and tokenizer.
    pub struct ModelSection in "model" {
        /// `scratch` (random weights and a character-level tokenizer over the
        /// tasks' text), `local` (a Hugging Face folder at `path`), `hub`
        /// (a Hub repo id in `repo`, from the local hub cache, downloading
        /// only when `HF_HUB_OFFLINE` is not set) or `gguf` (a llama.cpp
        /// GGUF file at `path`, dequantized to float32; its tokenizer and
        /// chat template come from its metadata).
        source: ModelSource = ModelSource::Scratch,
        /// Model folder with config.json, *.safetensors and tokenizer.json
        /// (`source = "local"`), or a .gguf file (`source = "gguf"`),
        /// relative to the current directory.
        path: String = "",
        /// Hub repository id such as `Qwen/Qwen2.5-0.5B-Instruct`
        /// (`source = "hub"`).
        repo: String = "",
        /// Hub branch, tag or commit (`source = "hub"`).
        revision: String = "main",
        /// How prompts are fed to the model: `auto`, `chat` or `plain`. Auto
        /// uses the chat template of pretrained models and the plain format
        /// for models trained from scratch: the prompt, a newline, then the
        /// completion, which ends with the end-of-sequence token.
        prompt_format: PromptFormat = PromptFormat::Auto,
        /// System message placed before the prompt with the chat format;
        /// empty for none.
        system_prompt: String = "",
        /// Scratch architecture: `llama`, `qwen2` or `qwen3`.
        architecture: Architecture = Architecture::Llama,
        /// Scratch model width.
        hidden_size: usize = 128,
        /// Scratch SwiGLU inner width.
        intermediate_size: usize = 352,
        /// Scratch transformer blocks.
        num_hidden_layers: usize = 4,
        /// Scratch query heads (must divide `hidden_size`).
        num_attention_heads: usize = 4,
        /// Scratch key/value heads (must divide `num_attention_heads`).
        num_key_value_heads: usize = 4,
        /// Scratch context length: prompt plus completion must fit.
        max_position_embeddings: usize = 512,
        /// Scratch RoPE base.
        rope_theta: f64 = 10000.0,
        /// Scratch standard deviation of the normal weight initialisation.
        initializer_range: f64 = 0.02,
        /// Scratch models share the embedding with the output head.
        tie_word_embeddings: bool = true,
    }
}

section! {
    /// What the model is trained and evaluated on.
    pub struct TasksSection in "tasks" {
        /// Weighted problem sources: an array of tables, each either
        /// `{ task = "add", level = 3 }` (a built-in family; `verity tasks
        /// list` shows them) or `{ jsonl = "file.jsonl" }` (a problem set, path
        /// relative to the current directory), with an optional `weight`
        /// (default 1.0). Training draws from the training split; evaluation
        /// uses each entry's held-out set.
        mixture: Vec<tasks::EntrySpec> = Vec::new(),
    }
}

section! {
    /// AdamW and gradient clipping, shared by both phases (each phase has
    /// its own learning-rate schedule).
    pub struct OptimizerSection in "optimizer" {
        /// AdamW decoupled weight decay (weight matrices only; never norms,
        /// biases or the token embedding).
        weight_decay: f64 = 0.0,
        /// AdamW first-moment decay.
        adam_beta1: f64 = 0.9,
        /// AdamW second-moment decay.
        adam_beta2: f64 = 0.999,
        /// AdamW epsilon.
        adam_epsilon: f64 = 1e-8,
        /// Clip the global gradient norm to this; 0 turns clipping off.
        max_grad_norm: f64 = 1.0,
    }
}

section! {
    /// Supervised cold start: cross-entropy on the worked solutions (the
    /// prompt is masked), before GRPO.
    pub struct SftSection in "sft" {
        /// Optimizer steps; 0 skips the phase.
        steps: u64 = 0,
        /// What SFT trains on, written like `tasks.mixture`; empty means
        /// `tasks.mixture`. A cold start broader than the RL mixture (more
        /// levels, say) prepares the levels a curriculum may move to. The
        /// `stop_at_pass_at_1` check still measures `tasks.mixture`.
        mixture: Vec<tasks::EntrySpec> = Vec::new(),
        /// Problems per optimizer step.
        batch_size: usize = 64,
        /// Micro-batches per step (gradient accumulation): the batch is split
        /// into this many forward/backward passes to bound memory.
        micro_batches: usize = 1,
        /// Peak learning rate.
        lr: f64 = 1e-3,
        /// Steps of linear warmup to `lr`.
        warmup_steps: u64 = 0,
        /// Shape after warmup: `constant`, `linear` or `cosine` (down to
        /// `min_lr_ratio * lr` at `steps`).
        lr_decay: Decay = Decay::Cosine,
        /// Floor of the decay as a fraction of `lr`.
        min_lr_ratio: f64 = 0.1,
        /// Stop early once held-out greedy pass@1 reaches this (0..1): a cold
        /// start that leaves the model around 0.4 gives RL room to improve.
        /// 0 turns the check off.
        stop_at_pass_at_1: f64 = 0.0,
        /// Steps between those held-out checks.
        check_every: u64 = 25,
    }
}

section! {
    /// GRPO: sample a group of completions per prompt, score them with the
    /// verifiers, and push up the better-than-average ones. The variants
    /// (loss, importance sampling, advantage estimator, masks, KL estimator)
    /// are TRL's and verl's, checked against their values.
    pub struct GrpoSection in "grpo" {
        /// Steps: each samples one batch of completions and makes
        /// `num_iterations` optimizer updates from it; 0 skips the phase.
        steps: u64 = 0,
        /// Completions per step (TRL's generation batch); prompts per step
        /// are `batch_size / group_size`.
        batch_size: usize = 128,
        /// Completions per prompt (G, TRL's `num_generations`).
        group_size: usize = 8,
        /// Micro-batches per optimizer update (gradient accumulation).
        micro_batches: usize = 1,
        /// Sampling temperature of rollouts; the loss scores tokens at the
        /// same temperature (as TRL does).
        temperature: f64 = 1.0,
        /// Nucleus sampling threshold; 1.0 turns it off.
        top_p: f64 = 1.0,
        /// Sample among the k most likely tokens only; 0 turns it off.
        top_k: usize = 0,
        /// Most tokens per completion; longer ones are cut (truncated).
        max_completion_length: usize = 128,
        /// Peak learning rate.
        lr: f64 = 1e-4,
        /// Steps of linear warmup to `lr`.
        warmup_steps: u64 = 0,
        /// Shape after warmup: `constant`, `linear` or `cosine`.
        lr_decay: Decay = Decay::Constant,
        /// Floor of the decay as a fraction of `lr`.
        min_lr_ratio: f64 = 0.0,
        /// Start GRPO with fresh AdamW moments instead of SFT's.
        fresh_optimizer: bool = true,
        /// The objective and how per-token losses are averaged (TRL's
        /// definitions): `grpo` (per-completion mean, DeepSeekMath,
        /// arXiv:2402.03300), `bnpo` (token mean of the micro-batch),
        /// `dr_grpo` (sum over batch x max_completion_length, Dr. GRPO,
        /// arXiv:2503.20783), `dapo` (token mean of the step, DAPO,
        /// arXiv:2503.14476; TRL 1.16's default), `cispo` (the importance
        /// weight capped at `epsilon_high` as a constant coefficient of the
        /// log-prob, MiniMax-M1, arXiv:2506.13585; averaged as `dapo`) or
        /// `sapo` (a sigmoid gate of the weight instead of clipping, SAPO,
        /// arXiv:2511.20347; averaged as `grpo`).
        loss_type: LossType = LossType::Dapo,
        /// `token`: one importance ratio per token; `sequence`: one per
        /// completion, the geometric mean of its token ratios, clipped as a
        /// whole (GSPO, arXiv:2507.18071; use it with `loss_type = "grpo"`
        /// and small clip ranges such as 3e-4 / 4e-4, as the paper does).
        importance_sampling_level: ImportanceSampling = ImportanceSampling::Token,
        /// How rewards become advantages: `grpo` (reward minus group mean,
        /// scaled by `scale_rewards`), `rloo` (minus the mean of the other
        /// completions of the prompt, arXiv:2402.14740),
        /// `reinforce_plus_plus` (whitened over the batch's tokens,
        /// arXiv:2501.03262) or `reinforce_plus_plus_baseline` (group mean
        /// removed, then whitened over the batch's tokens), as verl computes
        /// them.
        advantage: AdvantageEstimator = AdvantageEstimator::Grpo,
        /// With `advantage = "grpo"`: divide by the std of the `group`, of
        /// the whole `batch` (Lite PPO, arXiv:2508.08221), or by nothing
        /// (`none`, Dr. GRPO). The other estimators scale as their
        /// references do.
        scale_rewards: ScaleRewards = ScaleRewards::Group,
        /// Lower clip range of the importance ratio (1 - epsilon_low).
        epsilon_low: f64 = 0.2,
        /// Upper clip range (1 + epsilon_high); DAPO's clip-higher uses 0.28.
        /// With `loss_type = "cispo"` it is the largest importance weight
        /// itself (TRL's meaning; ScaleRL, arXiv:2510.13786, uses 5.0).
        epsilon_high: f64 = 0.2,
        /// Two-sided clipping: tokens with a negative advantage and a ratio
        /// above `delta` stop contributing gradient (INTELLECT-2,
        /// arXiv:2505.07291; verl's dual-clip `clip_ratio_c`). Must exceed
        /// 1 + epsilon_high. Unset turns it off.
        delta: Option<f64> = None,
        /// SAPO's gate temperature for tokens with a positive advantage.
        sapo_temperature_pos: f64 = 1.0,
        /// SAPO's gate temperature for the other tokens.
        sapo_temperature_neg: f64 = 1.05,
        /// Only the tokens whose entropy is in this top fraction of the
        /// micro-batch's tokens carry policy loss ("Beyond the 80/20 rule",
        /// arXiv:2506.01939, uses 0.2); 1 keeps every token. The KL term
        /// and the loss's denominators still cover every token, as in TRL.
        top_entropy_quantile: f64 = 1.0,
        /// Off-policy sequence masking (DeepSeek-V3.2, arXiv:2512.02556):
        /// completions with a negative advantage whose mean `old - new`
        /// log-prob exceeds this carry no policy loss. It only acts when
        /// `num_iterations > 1` (rollouts come from the model being
        /// trained). Unset turns it off.
        off_policy_mask_threshold: Option<f64> = None,
        /// Weigh each token's policy loss for a sampler that is not the
        /// trained model (TRL's `vllm_importance_sampling_mode`, for vLLM
        /// rollouts): by `exp(trained - sampled log-prob)` per token
        /// (`token_truncate`: clamped to the bounds, `token_mask`: 0
        /// outside them) or per completion, the exp of its summed
        /// differences (`sequence_truncate`, `sequence_mask`, TRL's
        /// default). For `run.decode_precision = "bfloat16"`, whose
        /// log-probs lie about 1e-2 from the float32 model's; `none`
        /// weighs 1 (the float32 decoder computes what training does).
        sampler_correction: SamplerCorrection = SamplerCorrection::None,
        /// Upper bound of those weights (TRL's
        /// `vllm_importance_sampling_clip_max`).
        sampler_correction_max: f64 = 3.0,
        /// Lower bound; unset leaves them unbounded below.
        sampler_correction_min: Option<f64> = None,
        /// Weight of the KL penalty to the frozen starting model; 0 turns
        /// it off (and no reference model is kept).
        beta: f64 = 0.0,
        /// What the reference model's log-probabilities are computed in on
        /// the CPU, where the decoder scores them (`beta > 0`): `float32`,
        /// or `bfloat16`, weights and activations rounded with float32
        /// sums, as bf16 reference workers compute: about 1.7x as fast on
        /// CPUs with AVX-512 bf16, the KL term's log-probs about 1e-2 off.
        /// Other devices score in the model's own dtype.
        reference_precision: Precision = Precision::Float32,
        /// The per-token KL estimator (Schulman 2020, "Approximating KL
        /// divergence"): `k1` (new - ref), `k2` ((new - ref)^2 / 2) or `k3`
        /// (exp(ref - new) - (ref - new) - 1, TRL's).
        kl_estimator: KlEstimator = KlEstimator::K3,
        /// Multiply the KL term by the importance ratio (TRL 1.16's default;
        /// DeepSeek-V3.2's unbiased KL gradient off-policy).
        use_bias_correction_kl: bool = true,
        /// Optimizer updates per sampled batch (TRL's `num_iterations`, mu);
        /// the ratio uses the log-probs the policy gave before the first
        /// update.
        num_iterations: usize = 1,
        /// Drop completions cut at `max_completion_length` from the loss.
        mask_truncated_completions: bool = false,
        /// Reward weight of following `<think>…</think><answer>…</answer>`,
        /// added to the verifier's correctness reward.
        format_weight: f64 = 0.0,
        /// DAPO's overlong shaping: in the last `overlong_buffer` tokens before
        /// `max_completion_length`, the reward falls linearly by up to
        /// `overlong_penalty`. 0 turns it off.
        overlong_buffer: usize = 0,
        /// Largest overlong punishment, reached at `max_completion_length`.
        overlong_penalty: f64 = 1.0,
        /// Replace groups whose rewards all agree (no learning signal) with
        /// groups of fresh prompts, until the batch is full or
        /// `max_resample_rounds` rounds have been sampled.
        dynamic_sampling: bool = false,
        /// Extra sampling rounds allowed per step with `dynamic_sampling`.
        max_resample_rounds: usize = 3,
    }
}

section! {
    /// An adaptive curriculum for GRPO: per task family, the level moves up
    /// when the rolling pass rate of its groups reaches `raise_at` and down
    /// when it falls to `lower_at` (reasoning-gym's 0.70 / 0.10), within
    /// `min_level..=max_level` and the family's own levels. Each family's
    /// mixture level is where it starts (one entry per family); problem sets
    /// stay as they are. metrics.jsonl logs each step's levels as
    /// `curriculum/<family>`; evaluation covers every level visited.
    pub struct CurriculumSection in "curriculum" {
        /// Move the levels of the mixture's families during GRPO.
        enabled: bool = false,
        /// Groups (prompts) in a family's rolling pass rate. A level moves
        /// only once this many groups at it have been sampled, and each move
        /// starts an empty window. A pass is a completion with full reward.
        window: usize = 32,
        /// Raise the level when the window's pass rate reaches this.
        raise_at: f64 = 0.7,
        /// Lower it when the window's pass rate falls to this.
        lower_at: f64 = 0.1,
        /// Lowest level a family moves to.
        min_level: u32 = 1,
        /// Highest level a family moves to; 0 means each family's own highest.
        max_level: u32 = 0,
    }
}

section! {
    /// Held-out evaluation: greedy pass@1 and sampled pass@k per task and level.
    pub struct EvalSection in "eval" {
        /// GRPO steps between evaluations; 0 evaluates only before GRPO starts
        /// and at the end of each phase.
        every: u64 = 0,
        /// Held-out problems per mixture entry (at most its held-out set).
        problems: usize = 100,
        /// Sampled completions per problem for pass@k; 0 skips sampling.
        samples: usize = 8,
        /// The k of pass@k (at most `samples`).
        k: usize = 8,
        /// Sampling temperature for pass@k.
        temperature: f64 = 1.0,
        /// Most tokens per completion; 0 means `grpo.max_completion_length`.
        max_new_tokens: usize = 0,
        /// Prompts per generation batch.
        batch_size: usize = 128,
    }
}

section! {
    /// Checkpoints under OUT_DIR/NAME/checkpoints/step-N, N counting optimizer
    /// steps over both phases.
    pub struct CheckpointSection in "checkpoint" {
        /// Steps of a phase between checkpoints; 0 writes them only at the end
        /// of each phase.
        every: u64 = 0,
        /// Checkpoints kept: older ones are deleted once a newer one is
        /// complete. 0 keeps every checkpoint.
        keep_last: usize = 3,
    }
}

section! {
    /// What is written to the run folder's logs.
    pub struct LogSection in "log" {
        /// GRPO completions per step written to samples.jsonl with their
        /// verdicts.
        samples_per_step: usize = 4,
    }
}

/// A whole run config. [`Config::load`] reads, overrides, validates and
/// resolves it; `Config::default()` is every default (it has no tasks, so it
/// does not validate on its own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub run: RunSection,
    pub model: ModelSection,
    pub tasks: TasksSection,
    pub optimizer: OptimizerSection,
    pub sft: SftSection,
    pub grpo: GrpoSection,
    pub curriculum: CurriculumSection,
    pub eval: EvalSection,
    pub checkpoint: CheckpointSection,
    pub log: LogSection,
}

impl Config {
    /// The documentation of every section, in file order.
    pub const SECTIONS: [SectionDoc; 10] = [
        RunSection::DOC,
        ModelSection::DOC,
        TasksSection::DOC,
        OptimizerSection::DOC,
        SftSection::DOC,
        GrpoSection::DOC,
        CurriculumSection::DOC,
        EvalSection::DOC,
        CheckpointSection::DOC,
        LogSection::DOC,
    ];

    /// The config as TOML text (what is written to OUT_DIR/NAME/config.toml).
    pub fn to_toml(&self) -> String {
        // Every field is a TOML-representable value, so this cannot fail.
        toml::to_string(self).unwrap_or_else(|e| format!("# config could not be written: {e}\n"))
    }

    /// The folder of this run: OUT_DIR/NAME.
    pub fn run_dir(&self) -> std::path::PathBuf {
        std::path::Path::new(&self.run.out_dir).join(&self.run.name)
    }

    /// Completions per GRPO step divided into groups: prompts per step.
    pub fn grpo_prompts_per_step(&self) -> usize {
        self.grpo.batch_size / self.grpo.group_size.max(1)
    }

    /// Tokens generated per evaluation completion.
    pub fn eval_max_new_tokens(&self) -> usize {
        match self.eval.max_new_tokens {
            0 => self.grpo.max_completion_length,
            n => n,
        }
    }
}

impl OptimizerSection {
    /// The AdamW settings of both phases.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }
}

impl SftSection {
    /// The learning rate of every SFT step.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            warmup: self.warmup_steps,
            total: self.steps,
            decay: self.lr_decay,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

impl GrpoSection {
    /// The learning rate of every GRPO optimizer update.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            warmup: self.warmup_steps,
            total: self.steps * self.num_iterations as u64,
            decay: self.lr_decay,
            min_lr_ratio: self.min_lr_ratio,
        }
    }

    /// The policy-loss settings.
    pub fn loss(&self) -> LossConfig {
        LossConfig {
            loss_type: self.loss_type,
            importance_sampling: self.importance_sampling_level,
            epsilon_low: self.epsilon_low,
            epsilon_high: self.epsilon_high,
            delta: self.delta,
            sapo_temperature_pos: self.sapo_temperature_pos,
            sapo_temperature_neg: self.sapo_temperature_neg,
            beta: self.beta,
            kl_estimator: self.kl_estimator,
            use_bias_correction_kl: self.use_bias_correction_kl,
            top_entropy_quantile: self.top_entropy_quantile,
            off_policy_mask_threshold: self.off_policy_mask_threshold,
            max_completion_length: self.max_completion_length,
            sampler_correction: self.sampler_correction,
            sampler_correction_min: self.sampler_correction_min,
            sampler_correction_max: self.sampler_correction_max,
        }
    }
}
