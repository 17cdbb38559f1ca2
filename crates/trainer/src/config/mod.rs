//! The run config: a TOML file with sections `run`, `model`, `tasks`, `sft`,
//! `grpo`, `eval`, `checkpoint` and `log`, plus `--set section.key=value`
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

use crate::advantages::ScaleRewards;
use crate::loss::LossType;
use crate::optim::AdamWConfig;
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
        device: String = "cpu",
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
        architecture: String = "llama",
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
    /// Supervised cold start: cross-entropy on the worked solutions (the
    /// prompt is masked), before GRPO.
    pub struct SftSection in "sft" {
        /// Optimizer steps; 0 skips the phase.
        steps: u64 = 0,
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
    /// verifiers, and push up the better-than-average ones.
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
        /// AdamW decoupled weight decay (weight matrices only).
        weight_decay: f64 = 0.0,
        /// AdamW first-moment decay.
        adam_beta1: f64 = 0.9,
        /// AdamW second-moment decay.
        adam_beta2: f64 = 0.999,
        /// AdamW epsilon.
        adam_epsilon: f64 = 1e-8,
        /// Clip the global gradient norm to this; 0 turns clipping off.
        max_grad_norm: f64 = 1.0,
        /// Start GRPO with fresh AdamW moments instead of SFT's.
        fresh_optimizer: bool = true,
        /// How per-token losses are averaged: `grpo`, `bnpo`, `dr_grpo` or
        /// `dapo` (TRL's definitions; `dapo` is TRL 1.16's default).
        loss_type: LossType = LossType::Dapo,
        /// Advantages are reward minus group mean, divided by the std of the
        /// `group`, of the whole `batch`, or by nothing (`none`, Dr. GRPO).
        scale_rewards: ScaleRewards = ScaleRewards::Group,
        /// Lower clip range of the importance ratio (1 - epsilon_low).
        epsilon_low: f64 = 0.2,
        /// Upper clip range (1 + epsilon_high); DAPO's clip-higher uses 0.28.
        epsilon_high: f64 = 0.2,
        /// Weight of the k3 KL penalty to the frozen starting model; 0 turns
        /// it off (and no reference model is kept).
        beta: f64 = 0.0,
        /// Multiply the KL term by the importance ratio (TRL 1.16's default).
        use_bias_correction_kl: bool = true,
        /// Optimizer updates per sampled batch (TRL's `num_iterations`, mu);
        /// the ratio uses the log-probs stored at sampling time.
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
    pub sft: SftSection,
    pub grpo: GrpoSection,
    pub eval: EvalSection,
    pub checkpoint: CheckpointSection,
    pub log: LogSection,
}

impl Config {
    /// The documentation of every section, in file order.
    pub const SECTIONS: [SectionDoc; 8] = [
        RunSection::DOC,
        ModelSection::DOC,
        TasksSection::DOC,
        SftSection::DOC,
        GrpoSection::DOC,
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

impl SftSection {
    /// The AdamW settings of the SFT phase.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

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
    /// The AdamW settings of the GRPO phase.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

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
    pub fn loss(&self) -> crate::loss::LossConfig {
        crate::loss::LossConfig {
            loss_type: self.loss_type,
            epsilon_low: self.epsilon_low,
            epsilon_high: self.epsilon_high,
            beta: self.beta,
            use_bias_correction_kl: self.use_bias_correction_kl,
            max_completion_length: self.max_completion_length,
        }
    }
}
