//! Stopping and resuming: a run stopped inside SFT and again inside GRPO,
//! then resumed (once past a damaged checkpoint), ends with the same weights,
//! logs and curriculum levels, bit for bit, as a run that never stopped. Also: checkpoints
//! kept, steps with non-finite losses skipped, and a failed checkpoint write
//! that leaves the previous one intact.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use trainer::{
    resume, train, train_until, verify_checkpoint, Config, Error, Live, Phase, Progress, Silent,
    CHECKPOINTS_DIR, METRICS_FILE,
};

/// SFT then GRPO on a micro model, with the parts that carry state across
/// steps switched on: SFT's moments continued into GRPO, a KL reference,
/// several updates per batch, periodic evaluations, and a curriculum whose
/// window (3 groups, 2 per step) spans steps and checkpoints.
fn config(out_dir: &Path, name: &str, overrides: &[&str]) -> Config {
    let text = format!(
        r#"
[run]
out_dir = "{}"
seed = 5
threads = 1

[model]
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
max_position_embeddings = 64

[tasks]
mixture = [{{ task = "add", level = 2 }}]

[sft]
steps = 4
batch_size = 4
lr = 3e-3

[grpo]
steps = 4
batch_size = 4
group_size = 2
max_completion_length = 12
beta = 0.04
num_iterations = 2
fresh_optimizer = false
lr = 1e-3

[curriculum]
enabled = true
window = 3
raise_at = 0.9
lower_at = 0.5

[eval]
every = 2
problems = 2
samples = 2
k = 2

[log]
samples_per_step = 2
"#,
        out_dir.display()
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::from_toml(&text, &format!("{name}.toml"), name, &overrides).unwrap()
}

/// Sets the stop flag once `phase` finishes step `step`.
struct StopAt<'a> {
    phase: Phase,
    step: u64,
    flag: &'a AtomicBool,
    messages: Vec<String>,
}

impl Progress for StopAt<'_> {
    fn step_finished(&mut self, phase: Phase, step: u64, _live: &Live) {
        if phase == self.phase && step == self.step {
            self.flag.store(true, Ordering::SeqCst);
        }
    }

    fn message(&mut self, text: &str) {
        self.messages.push(text.to_string());
    }
}

/// The lines of a JSON Lines log with wall-clock fields removed.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            let object = v.as_object_mut().unwrap();
            object.retain(|key, _| !trainer::is_measurement(key));
            v
        })
        .collect()
}

fn checkpoint_names(run_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir.join(CHECKPOINTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // In step order: `.tmp-*` first, then `step-N` by N.
    names.sort_by_key(|n| {
        (
            n.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()),
            n.clone(),
        )
    });
    names
}

fn weights(checkpoint: &Path) -> Vec<u8> {
    std::fs::read(checkpoint.join("model.safetensors")).unwrap()
}

fn resume_config(run_dir: &Path, overrides: &[&str]) -> Config {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::for_resume(run_dir, None, &overrides).unwrap()
}

#[test]
fn a_run_stopped_in_sft_and_in_grpo_resumes_exactly() {
    let out = tempfile::tempdir().unwrap();
    let straight_config = config(
        out.path(),
        "straight",
        &["checkpoint.every=1", "checkpoint.keep_last=2"],
    );
    let straight = train(&straight_config, &mut Silent).unwrap();
    assert!(!straight.stopped);
    assert_eq!(straight.state.global_step, 12);
    // Only the newest two checkpoints are kept.
    assert_eq!(
        checkpoint_names(&straight.run_dir),
        vec!["step-10", "step-12"]
    );

    // Stopped after SFT step 2: a checkpoint of exactly that step.
    let flag = AtomicBool::new(false);
    let mut stop = StopAt {
        phase: Phase::Sft,
        step: 2,
        flag: &flag,
        messages: Vec::new(),
    };
    let first = train_until(&config(out.path(), "stopped", &[]), &mut stop, &flag).unwrap();
    assert!(first.stopped);
    let run_dir = first.run_dir.clone();
    assert_eq!(first.state.global_step, 2);
    assert_eq!(checkpoint_names(&run_dir), vec!["step-2"]);

    // Resumed, then stopped after GRPO step 2 (global step 4 + 2 * 2).
    flag.store(false, Ordering::SeqCst);
    stop.phase = Phase::Grpo;
    let second = resume(&resume_config(&run_dir, &[]), &mut stop, &flag).unwrap();
    assert!(second.stopped);
    assert_eq!(second.state.global_step, 8);
    assert_eq!(
        checkpoint_names(&run_dir),
        vec!["step-2", "step-4", "step-8"]
    );

    // Resumed inside GRPO, stopped again after GRPO step 3.
    flag.store(false, Ordering::SeqCst);
    stop.step = 3;
    let third = resume(&resume_config(&run_dir, &[]), &mut stop, &flag).unwrap();
    assert!(third.stopped);
    assert_eq!(
        checkpoint_names(&run_dir),
        vec!["step-4", "step-8", "step-10"]
    );

    // Damage the newest checkpoint: resume warns, names it, and goes back
    // to step-8; lines logged after step 8 are cut.
    let damaged = run_dir.join(CHECKPOINTS_DIR).join("step-10");
    let mut bytes = weights(&damaged);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(damaged.join("model.safetensors"), bytes).unwrap();
    assert!(verify_checkpoint(&damaged).is_err());
    flag.store(false, Ordering::SeqCst);
    let mut watch = StopAt {
        phase: Phase::Grpo,
        step: u64::MAX,
        flag: &flag,
        messages: Vec::new(),
    };
    let last = resume(&resume_config(&run_dir, &[]), &mut watch, &flag).unwrap();
    assert!(!last.stopped);
    let mut expected = straight.state.clone();
    expected.logs = last.state.logs;
    assert_eq!(last.state, expected);
    let warning = watch
        .messages
        .iter()
        .find(|m| m.starts_with("warning: skipping checkpoint"))
        .expect("a warning about the damaged checkpoint");
    assert!(
        warning.contains("step-10") && warning.contains("checksum"),
        "{warning}"
    );
    assert!(
        watch
            .messages
            .iter()
            .any(|m| m.starts_with("resuming") && m.contains("step-8")),
        "{:?}",
        watch.messages
    );

    // The curriculum moved add down a level after its first three groups
    // (two per step), and evaluation followed it there.
    let metrics = log_lines(&straight.run_dir.join(METRICS_FILE));
    let levels: Vec<u64> = metrics
        .iter()
        .filter(|m| m["phase"] == "grpo")
        .map(|m| m["curriculum/add"].as_u64().unwrap())
        .collect();
    assert_eq!(levels, [2, 2, 1, 1]);
    let curriculum = straight.state.curriculum.as_ref().unwrap();
    assert_eq!(curriculum.families["add"].level, 1);
    assert_eq!(
        curriculum.families["add"]
            .visited
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let evals = log_lines(&straight.run_dir.join("eval.jsonl"));
    let last_levels: Vec<u64> = evals.last().unwrap()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["level"].as_u64().unwrap())
        .collect();
    assert_eq!(last_levels, [1, 2]);

    // Same weights, bit for bit, and the same log lines.
    let straight_last = straight.last_checkpoint.clone().unwrap();
    let resumed_last = last.last_checkpoint.clone().unwrap();
    assert_eq!(
        straight_last.file_name(),
        resumed_last.file_name(),
        "final checkpoints"
    );
    assert!(
        weights(&straight_last) == weights(&resumed_last),
        "weights differ"
    );
    for log in [METRICS_FILE, "eval.jsonl", "samples.jsonl"] {
        let a = log_lines(&straight.run_dir.join(log));
        let b = log_lines(&run_dir.join(log));
        assert!(!a.is_empty(), "{log}");
        assert_eq!(a.len(), b.len(), "{log}: line counts");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "{log} line {}", i + 1);
        }
    }
}

/// A short SFT-only run.
fn sft_only(out: &Path, name: &str, overrides: &[&str]) -> Config {
    let mut all = vec!["grpo.steps=0", "eval.every=0", "eval.samples=0"];
    all.extend_from_slice(overrides);
    config(out, name, &all)
}

#[test]
fn a_finished_run_resumed_with_more_steps_continues() {
    let out = tempfile::tempdir().unwrap();
    let config = sft_only(out.path(), "more", &["sft.steps=2"]);
    let first = train(&config, &mut Silent).unwrap();
    assert_eq!(first.state.global_step, 2);
    let flag = AtomicBool::new(false);
    let more = resume(
        &resume_config(&first.run_dir, &["sft.steps=3"]),
        &mut Silent,
        &flag,
    )
    .unwrap();
    assert_eq!((more.state.global_step, more.state.sft.steps_done), (3, 3));
    assert!(more.state.sft.finished);
    let steps: Vec<u64> = log_lines(&first.run_dir.join(METRICS_FILE))
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
    // Nothing left to do: resuming again changes nothing.
    let again = resume(&resume_config(&first.run_dir, &[]), &mut Silent, &flag).unwrap();
    assert_eq!(again.state.global_step, 3);
    assert_eq!(log_lines(&first.run_dir.join(METRICS_FILE)).len(), 3);
}

#[test]
fn steps_with_non_finite_losses_are_skipped_and_stop_the_run() {
    let out = tempfile::tempdir().unwrap();
    // An absurd learning rate overflows the weights after the first update;
    // every later step has a NaN or infinite loss.
    let config = sft_only(
        out.path(),
        "diverges",
        &["sft.lr=1e30", "sft.steps=10", "sft.lr_decay=\"constant\""],
    );
    let err = train(&config, &mut Silent).unwrap_err();
    assert!(matches!(err, Error::Diverged { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("3 steps in a row"), "{message}");
    assert!(message.contains("step-4"), "{message}");
    let run_dir = config.run_dir();
    let lines = log_lines(&run_dir.join(METRICS_FILE));
    let skipped: Vec<bool> = lines
        .iter()
        .map(|l| l.get("skipped") == Some(&Value::Bool(true)))
        .collect();
    assert_eq!(skipped, vec![false, true, true, true]);
    let state = verify_checkpoint(&run_dir.join(CHECKPOINTS_DIR).join("step-4")).unwrap();
    assert_eq!(state.sft.steps_done, 4);
}

#[test]
fn a_failed_checkpoint_write_leaves_the_previous_one_intact() {
    let out = tempfile::tempdir().unwrap();
    let config = sft_only(out.path(), "full", &["checkpoint.every=1"]);
    let flag = AtomicBool::new(false);
    let mut stop = StopAt {
        phase: Phase::Sft,
        step: 1,
        flag: &flag,
        messages: Vec::new(),
    };
    let first = train_until(&config, &mut stop, &flag).unwrap();
    assert!(first.stopped);
    let root: PathBuf = first.run_dir.join(CHECKPOINTS_DIR);
    // A file where the next checkpoint's temporary folder must go makes
    // its write fail, as a full disk would part way.
    std::fs::write(root.join(".tmp-step-2"), "in the way").unwrap();
    flag.store(false, Ordering::SeqCst);
    let err = resume(&resume_config(&first.run_dir, &[]), &mut Silent, &flag).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::CheckpointWrite { .. }), "{message}");
    assert!(message.contains("could not write checkpoint"), "{message}");
    assert!(message.contains("step-2"), "{message}");
    assert!(
        message.contains("the previous checkpoint") && message.contains("step-1 is intact"),
        "{message}"
    );
    assert_eq!(
        checkpoint_names(&first.run_dir),
        vec![".tmp-step-2", "step-1"]
    );
    assert_eq!(
        verify_checkpoint(&root.join("step-1")).unwrap().global_step,
        1
    );
}
