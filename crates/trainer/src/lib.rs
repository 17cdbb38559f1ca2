//! verity trainer.

mod advantages;
mod config;
mod error;
mod loss;
mod optim;
mod pass_at_k;
mod schedule;

pub use advantages::{compute_advantages, Advantages, ScaleRewards};
pub use config::{
    reference as config_reference, CheckpointSection, Config, EvalSection, GrpoSection, KeyDoc,
    LogSection, ModelSection, ModelSource, PromptFormat, RunSection, SectionDoc, SftSection,
    TasksSection,
};
pub use error::{Error, Result};
pub use loss::{
    aggregate, grpo_loss, per_token_loss, Accumulation, GrpoLoss, LossConfig, LossInputs,
    LossMetrics, LossType, PerTokenLoss,
};
pub use optim::{decays, AdamW, AdamWConfig, Gradients};
pub use pass_at_k::pass_at_k;
pub use schedule::{Decay, LrSchedule};
