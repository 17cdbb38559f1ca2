//! How training reports progress to whoever runs it. The library only calls
//! this trait; the `verity` binary draws progress bars with it, tests and
//! library users can ignore it ([`Silent`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A training phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Supervised cold start on worked solutions.
    Sft,
    /// Reinforcement learning from verifier rewards.
    Grpo,
}

impl Phase {
    /// `sft` or `grpo`, as in logs and file names.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Sft => "sft",
            Phase::Grpo => "grpo",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The latest numbers of a running phase, for a live display.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Live {
    /// Training loss of the last step.
    pub loss: f64,
    /// Mean reward of the last GRPO batch.
    pub reward: Option<f64>,
    /// Fraction of the last GRPO batch the verifier accepted.
    pub accuracy: Option<f64>,
    /// Held-out greedy pass@1 of the latest evaluation.
    pub pass_at_1: Option<f64>,
}

/// Receives progress while training runs. Every method has a default that
/// does nothing.
pub trait Progress {
    /// A phase starts (or resumes) with `done` of `total` steps behind it.
    fn phase_started(&mut self, _phase: Phase, _done: u64, _total: u64) {}
    /// Step `step` (1-based) of the phase finished.
    fn step_finished(&mut self, _phase: Phase, _step: u64, _live: &Live) {}
    /// The phase ended (all steps done, or stopped early).
    fn phase_finished(&mut self, _phase: Phase) {}
    /// A line worth showing: an evaluation table, a checkpoint, a notice.
    fn message(&mut self, _text: &str) {}
    /// The run folder's logs hold something new worth looking at: an
    /// evaluation was just written, or the run ended (finished or stopped).
    fn logs_updated(&mut self, _run_dir: &Path) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}
