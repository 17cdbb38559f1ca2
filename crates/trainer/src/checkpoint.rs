//! Checkpoints: `OUT_DIR/NAME/checkpoints/step-N/`, N counting optimizer
//! steps over both phases, so names sort in training order.
//!
//! A checkpoint folder is a Hugging Face model folder (model.safetensors,
//! config.json, tokenizer files) plus optimizer.safetensors (AdamW moments
//! and step), reference.safetensors during GRPO with a KL penalty (the frozen
//! starting model), and trainer_state.json (phase, steps, data positions,
//! prompt format, log lengths, and an FNV-1a checksum of every other file).
//! It is written to a hidden temporary folder and renamed into place, so a
//! folder named `step-N` is complete unless a file was damaged later, which
//! the checksums catch. Only the newest `checkpoint.keep_last` are kept.
//!
//! No generator state is stored: every random stream is derived from
//! `(run.seed, purpose, step)` and every data draw from a stored index, so
//! the state below is all a resumed run needs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::curriculum::CurriculumState;
use crate::error::{Error, Result};
use crate::logs::LogPositions;
use crate::model::{Model, Prompting};
use crate::optim::AdamW;
use crate::progress::Phase;

/// The folder of a run that holds its checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// AdamW moments and step count.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The [`TrainerState`] as JSON.
pub const STATE_FILE: &str = "trainer_state.json";
/// Weights of the frozen GRPO reference model (only when `grpo.beta > 0`).
pub const REFERENCE_FILE: &str = "reference.safetensors";

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
    /// Lengths of the run's logs when the checkpoint was written: a resumed
    /// run cuts them back to these, so no line is logged twice.
    #[serde(default)]
    pub logs: LogPositions,
    /// The adaptive curriculum's levels and windows (`curriculum.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curriculum: Option<CurriculumState>,
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
            logs: LogPositions::default(),
            curriculum: None,
        }
    }

    /// Reads trainer_state.json from a checkpoint folder.
    pub fn read(checkpoint: &Path) -> Result<Self> {
        let path = checkpoint.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&path, e.to_string()))
    }
}

/// The checksums trainer_state.json carries besides the state.
#[derive(Deserialize)]
struct Checksums {
    #[serde(default)]
    checksums: BTreeMap<String, String>,
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
    write_checkpoint_with(run_dir, state, model, optimizer, None)
}

/// [`write_checkpoint`], with the frozen reference weights of a GRPO phase
/// that has a KL penalty. When writing fails, the temporary folder is
/// removed and earlier checkpoints are untouched; the error says so.
pub(crate) fn write_checkpoint_with(
    run_dir: &Path,
    state: &TrainerState,
    model: &Model,
    optimizer: &AdamW,
    reference: Option<&HashMap<String, Tensor>>,
) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    let name = format!("step-{}", state.global_step);
    let target = root.join(&name);
    let tmp = root.join(format!(".tmp-{name}"));
    let written = write_files(&root, &tmp, state, model, optimizer, reference)
        .and_then(|()| replace(&root, &tmp, &target, &name));
    if let Err(source) = written {
        // Best effort: the folder is incomplete whatever happens to it.
        let _ = std::fs::remove_dir_all(&tmp);
        let previous = checkpoint_dirs(run_dir)
            .ok()
            .and_then(|dirs| {
                dirs.into_iter()
                    .rev()
                    .find(|(step, _)| *step != state.global_step)
            })
            .map(|(_, dir)| dir);
        return Err(Error::CheckpointWrite {
            dir: target,
            source: Box::new(source),
            previous,
        });
    }
    Ok(target)
}

/// Every file of the checkpoint into `tmp`, the state file last with the
/// checksums of the others.
fn write_files(
    root: &Path,
    tmp: &Path,
    state: &TrainerState,
    model: &Model,
    optimizer: &AdamW,
    reference: Option<&HashMap<String, Tensor>>,
) -> Result<()> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    if tmp.is_dir() {
        std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    }
    std::fs::create_dir(tmp).map_err(|e| Error::io(tmp, e))?;
    model.save(tmp)?;
    optimizer.save(&tmp.join(OPTIMIZER_FILE))?;
    if let Some(weights) = reference {
        let path = tmp.join(REFERENCE_FILE);
        candle_core::safetensors::save(weights, &path)
            .map_err(|e| Error::bad_file(&path, e.to_string()))?;
    }
    let state_path = tmp.join(STATE_FILE);
    let mut json =
        serde_json::to_value(state).map_err(|e| Error::bad_file(&state_path, e.to_string()))?;
    let mut sums = serde_json::Map::new();
    for (file, sum) in checksum_files(tmp)? {
        sums.insert(file, serde_json::Value::String(sum));
    }
    if let Some(object) = json.as_object_mut() {
        object.insert("checksums".into(), serde_json::Value::Object(sums));
    }
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| Error::bad_file(&state_path, e.to_string()))?;
    std::fs::write(&state_path, text + "\n").map_err(|e| Error::io(&state_path, e))
}

/// Renames the finished `tmp` to `target`, replacing a checkpoint of the same
/// step only once the new one is in place.
fn replace(root: &Path, tmp: &Path, target: &Path, name: &str) -> Result<()> {
    if target.exists() {
        let old = root.join(format!(".old-{name}"));
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(target, &old).map_err(|e| Error::io(target, e))?;
        std::fs::rename(tmp, target).map_err(|e| Error::io(tmp, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))
    } else {
        std::fs::rename(tmp, target).map_err(|e| Error::io(tmp, e))
    }
}

/// FNV-1a (64-bit) checksums of every file in `dir` but the state file,
/// by file name.
fn checksum_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut sums = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == STATE_FILE || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        sums.insert(name, format!("{:016x}", fnv1a64(&bytes)));
    }
    Ok(sums)
}

/// 64-bit FNV-1a: small, dependency-free, and catches truncated or altered
/// files (it is not meant to resist deliberate tampering).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Checks that `dir` is a complete checkpoint whose files match the
/// checksums in its state file, and returns its state.
pub fn verify_checkpoint(dir: &Path) -> Result<TrainerState> {
    let state_path = dir.join(STATE_FILE);
    let state = TrainerState::read(dir)?;
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let stored: Checksums =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&state_path, e.to_string()))?;
    for required in ["model.safetensors", "config.json", OPTIMIZER_FILE] {
        if !stored.checksums.contains_key(required) {
            return Err(Error::bad_file(
                &state_path,
                format!("no checksum for {required}"),
            ));
        }
    }
    let actual = checksum_files(dir)?;
    for (file, sum) in &stored.checksums {
        match actual.get(file) {
            None => return Err(Error::bad_file(&dir.join(file), "missing")),
            Some(found) if found != sum => {
                return Err(Error::bad_file(
                    &dir.join(file),
                    format!("checksum {found} does not match {sum} recorded when it was written"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(state)
}

/// The `step-N` folders of a run, oldest first.
pub(crate) fn checkpoint_dirs(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
        let path = entry.map_err(|e| Error::io(&root, e))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let (Some(step), true) = (step, path.is_dir()) {
            dirs.push((step, path));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The newest checkpoint of `run_dir` that is complete and passes its
/// checksums, with its state. Each newer one that fails is reported to
/// `skipped` with the reason.
pub fn latest_checkpoint(
    run_dir: &Path,
    skipped: &mut dyn FnMut(&Path, &Error),
) -> Result<Option<(PathBuf, TrainerState)>> {
    for (_, dir) in checkpoint_dirs(run_dir)?.into_iter().rev() {
        match verify_checkpoint(&dir) {
            Ok(state) => return Ok(Some((dir, state))),
            Err(e) => skipped(&dir, &e),
        }
    }
    Ok(None)
}

/// Removes all but the newest `keep` checkpoints (0 keeps all), and
/// temporary folders left by writes that failed.
pub(crate) fn prune_checkpoints(run_dir: &Path, keep: usize) -> Result<()> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
        let path = entry.map_err(|e| Error::io(&root, e))?.path();
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-") || n.starts_with(".old-"));
        if stale && path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    if keep == 0 {
        return Ok(());
    }
    let dirs = checkpoint_dirs(run_dir)?;
    let excess = dirs.len().saturating_sub(keep);
    for (_, dir) in dirs.into_iter().take(excess) {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
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
        let optimizer = config.optimizer.adamw().init(&model.policy.varmap).unwrap();
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

        // A newer folder without its state file is incomplete: skipped, and
        // named to the caller.
        let partial = run.path().join("checkpoints/step-20");
        std::fs::create_dir(&partial).unwrap();
        std::fs::copy(
            dir.join("model.safetensors"),
            partial.join("model.safetensors"),
        )
        .unwrap();
        let mut skipped = Vec::new();
        let (found, found_state) =
            latest_checkpoint(run.path(), &mut |d, _| skipped.push(d.to_path_buf()))
                .unwrap()
                .unwrap();
        assert_eq!((found, skipped), (dir.clone(), vec![partial]));
        assert_eq!(found_state.global_step, 12);

        // keep_last keeps the newest by step number, not by name.
        std::fs::remove_dir_all(run.path().join("checkpoints/step-20")).unwrap();
        for step in [3, 100] {
            state.global_step = step;
            write_checkpoint(run.path(), &state, &model, &optimizer).unwrap();
        }
        prune_checkpoints(run.path(), 2).unwrap();
        let steps: Vec<u64> = checkpoint_dirs(run.path())
            .unwrap()
            .into_iter()
            .map(|(step, _)| step)
            .collect();
        assert_eq!(steps, vec![12, 100]);
    }

    #[test]
    fn fnv1a64_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
