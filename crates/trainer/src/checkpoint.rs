//! Checkpoints: `OUT_DIR/NAME/checkpoints/step-N/`, N counting optimizer
//! steps over both phases, so names sort in training order.
//!
//! A checkpoint folder is a Hugging Face model folder (model.safetensors,
//! config.json, tokenizer files) plus optimizer.safetensors (AdamW moments
//! and step) and trainer_state.json (phase, steps, data positions, prompt
//! format). It is written to a hidden temporary folder and renamed into
//! place, so a folder named `step-N` is always complete.
//!
//! No generator state is stored: every random stream is derived from
//! `(run.seed, purpose, step)` and every data draw from a stored index, so
//! the state below is all a resumed run needs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Model, Prompting};
use crate::optim::AdamW;
use crate::progress::Phase;

/// The folder of a run that holds its checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// AdamW moments and step count.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The [`TrainerState`] as JSON.
pub const STATE_FILE: &str = "trainer_state.json";

/// Progress through one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseProgress {
    /// Steps done.
    pub steps_done: u64,
    /// Optimizer updates done (GRPO makes `num_iterations` per step).
    pub updates_done: u64,
    /// Index of the next problem in the phase's data stream.
    pub data_cursor: u64,
    /// The phase has ended (all steps done, or SFT stopped early).
    pub finished: bool,
    /// SFT ended because held-out pass@1 reached its target.
    pub stopped_early: bool,
}

/// Where a run stands: written into every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Layout version of this file.
    pub version: u32,
    /// The phase of the latest step.
    pub phase: Phase,
    /// Optimizer steps over both phases: the N of `step-N`.
    pub global_step: u64,
    /// The run seed every random stream derives from.
    pub seed: u64,
    /// How prompts are rendered for this model.
    #[serde(flatten)]
    pub prompting: Prompting,
    /// Progress of the SFT phase.
    pub sft: PhaseProgress,
    /// Progress of the GRPO phase.
    pub grpo: PhaseProgress,
}

impl TrainerState {
    /// The state of a run that has not taken a step.
    pub fn new(seed: u64, prompting: Prompting) -> Self {
        Self {
            version: 1,
            phase: Phase::Sft,
            global_step: 0,
            seed,
            prompting,
            sft: PhaseProgress::default(),
            grpo: PhaseProgress::default(),
        }
    }

    /// Reads trainer_state.json from a checkpoint folder.
    pub fn read(checkpoint: &Path) -> Result<Self> {
        let path = checkpoint.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&path, e.to_string()))
    }
}

/// Writes checkpoint `step-{state.global_step}` of `run_dir` and returns its
/// folder. An existing checkpoint of the same step is replaced only once the
/// new one is complete.
pub fn write_checkpoint(
    run_dir: &Path,
    state: &TrainerState,
    model: &Model,
    optimizer: &AdamW,
) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    let name = format!("step-{}", state.global_step);
    let target = root.join(&name);
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    model.save(&tmp)?;
    optimizer.save(&tmp.join(OPTIMIZER_FILE))?;
    let json = serde_json::to_string_pretty(state)
        .map_err(|e| Error::bad_file(&tmp.join(STATE_FILE), e.to_string()))?;
    let state_path = tmp.join(STATE_FILE);
    std::fs::write(&state_path, json + "\n").map_err(|e| Error::io(&state_path, e))?;
    if target.exists() {
        let old = root.join(format!(".old-{name}"));
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(&target, &old).map_err(|e| Error::io(&target, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&tmp, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&tmp, e))?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use candle_core::Device;
    use tasks::{Mixture, MixtureEntry};

    #[test]
    fn a_checkpoint_is_a_loadable_model_folder_with_optimizer_and_state() {
        let mixture = Mixture::new(vec![MixtureEntry::family("add", 1, 1.0)]).unwrap();
        let mut config = Config::default();
        config.model.hidden_size = 16;
        config.model.intermediate_size = 32;
        config.model.num_hidden_layers = 1;
        config.model.num_attention_heads = 2;
        config.model.num_key_value_heads = 2;
        let model = Model::from_config(&config, &mixture, &Device::Cpu).unwrap();
        let optimizer = config.sft.adamw().init(&model.policy.varmap).unwrap();
        let run = tempfile::tempdir().unwrap();
        let mut state = TrainerState::new(5, model.prompting.clone());
        state.global_step = 12;
        state.sft.steps_done = 12;
        state.sft.data_cursor = 768;
        let dir = write_checkpoint(run.path(), &state, &model, &optimizer).unwrap();
        assert_eq!(dir, run.path().join("checkpoints/step-12"));
        for file in [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            OPTIMIZER_FILE,
            STATE_FILE,
        ] {
            assert!(dir.join(file).is_file(), "{file}");
        }
        assert_eq!(TrainerState::read(&dir).unwrap(), state);
        let again = Model::load(&dir, state.prompting.clone(), &Device::Cpu).unwrap();
        let p = mixture.draw(tasks::Split::Train, 0, 0).unwrap();
        assert_eq!(
            again.prompt_ids(&p.prompt).unwrap(),
            model.prompt_ids(&p.prompt).unwrap()
        );
        // Writing the same step again replaces it; no temporary folder is left.
        state.sft.finished = true;
        write_checkpoint(run.path(), &state, &model, &optimizer).unwrap();
        assert!(TrainerState::read(&dir).unwrap().sft.finished);
        let names: Vec<String> = std::fs::read_dir(run.path().join(CHECKPOINTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["step-12"]);
    }
}
