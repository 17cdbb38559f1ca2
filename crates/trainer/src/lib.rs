//! verity's trainer: a supervised cold start, then GRPO from verifier
//! rewards, with held-out evaluation, checkpoints and JSON Lines logs.
//!
//! - [`Config`] is the run config (sections `run`, `model`, `tasks`,
//!   `optimizer`, `sft`, `grpo`, `eval`, `checkpoint`, `log`), read from TOML with `--set`
//!   overrides and validated once; [`config_reference`] documents every key.
//! - [`train`] runs it: builds the [`Model`] (from scratch with a
//!   character-level tokenizer, or a pretrained Hugging Face folder),
//!   trains, evaluates and checkpoints into `OUT_DIR/NAME/`, and reports
//!   through a [`Progress`]. [`train_until`] stops cleanly when a flag is
//!   set; [`resume`] continues a stopped run exactly where it left off.
//! - The pieces are usable alone: [`AdamW`] with a decay mask, clipping and
//!   saved moments; [`LrSchedule`]; [`estimate_advantages`] and
//!   [`grpo_loss`] (TRL's and verl's GRPO maths and variants); [`pass_at_k`];
//!   [`evaluate`].
//!
//! ```no_run
//! use std::path::Path;
//! use trainer::{train, Config, Silent};
//!
//! let config = Config::load(
//!     Path::new("configs/quickstart.toml"),
//!     &["grpo.steps=5".to_string()],
//! )?;
//! let summary = train(&config, &mut Silent)?;
//! if let Some((before, after)) = summary.grpo_gain() {
//!     println!("held-out pass@1 {before:.2} -> {after:.2}");
//! }
//! # Ok::<(), trainer::Error>(())
//! ```
//!
//! A micro run, end to end:
//!
//! ```
//! use trainer::{train, Config, Silent};
//!
//! let out = tempfile::tempdir().unwrap();
//! let text = format!(
//!     r#"
//!     [run]
//!     out_dir = "{}"
//!     threads = 1
//!     [model]
//!     hidden_size = 16
//!     intermediate_size = 32
//!     num_hidden_layers = 1
//!     num_attention_heads = 2
//!     num_key_value_heads = 2
//!     [tasks]
//!     mixture = [{{ task = "add", level = 1 }}]
//!     [sft]
//!     steps = 2
//!     batch_size = 4
//!     [grpo]
//!     steps = 1
//!     batch_size = 4
//!     group_size = 2
//!     max_completion_length = 8
//!     [eval]
//!     problems = 2
//!     samples = 2
//!     k = 2
//!     "#,
//!     out.path().display()
//! );
//! let config = Config::from_toml(&text, "micro.toml", "micro", &[])?;
//! let summary = train(&config, &mut Silent)?;
//! assert_eq!(summary.state.global_step, 3);
//! assert!(summary.run_dir.join("metrics.jsonl").is_file());
//! # Ok::<(), trainer::Error>(())
//! ```

mod advantages;
mod batch;
mod checkpoint;
mod config;
mod curriculum;
mod error;
mod eval;
mod grpo;
mod inspect;
mod logs;
mod loss;
mod memory;
mod model;
mod optim;
mod pass_at_k;
mod progress;
mod rewards;
mod run;
mod sampler_correction;
mod schedule;
mod seeds;
mod sft;

pub use advantages::{
    compute_advantages, estimate_advantages, AdvantageEstimator, Advantages, ScaleRewards,
};
pub use checkpoint::{
    latest_checkpoint, verify_checkpoint, write_checkpoint, PhaseProgress, TrainerState,
    CHECKPOINTS_DIR, OPTIMIZER_FILE, REFERENCE_FILE, STATE_FILE,
};
pub use config::{
    reference as config_reference, CheckpointSection, Config, CurriculumSection, EvalSection,
    GrpoSection, KeyDoc, LogSection, ModelSection, ModelSource, OptimizerSection, PromptFormat,
    RunSection, SectionDoc, SftSection, TasksSection, RESUMABLE_KEYS,
};
pub use curriculum::{CurriculumState, FamilyLevel};
pub use error::{Error, Result};
pub use eval::{
    evaluate, evaluate_budgets, render_table, BudgetRecord, BudgetScore, EvalExample, EvalRecord,
    EvalSettings, Score, TaskScore, BUDGETS_FILE, EXAMPLE_CHARS,
};
pub use grpo::{GrpoMetrics, SampleRecord};
pub use inspect::{Checkpoint, Sample, SamplePrompt};
pub use logs::{is_measurement, LogPositions, EVAL_FILE, METRICS_FILE, SAMPLES_FILE};
pub use loss::{
    aggregate, grpo_loss, per_token_loss, Accumulation, GrpoLoss, ImportanceSampling, KlEstimator,
    LossConfig, LossInputs, LossMetrics, LossType, PerTokenLoss,
};
pub use model::{heldout_problems, task_alphabet, Model, Prompting, FORMAT_TAGS};
pub use optim::{decays, AdamW, AdamWConfig, Applied, Gradients};
pub use pass_at_k::pass_at_k;
pub use progress::{Live, Phase, Progress, Silent};
pub use rewards::RewardShaping;
pub use run::{resume, train, train_until, RunSummary, CONFIG_FILE};
pub use sampler_correction::{sampler_weights, SamplerCorrection, WeightSpread};
pub use schedule::{Decay, LrSchedule};
pub use sft::SftMetrics;
