//! `verity train` stopped by SIGTERM writes a checkpoint, says how to
//! resume, and `--resume` finishes the run without logging a step twice;
//! resume errors (no such folder, a changed model) exit with code 2.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Many cheap SFT steps, so the run is still going when the signal comes.
const LONG: &str = r#"
[run]
threads = 1
[model]
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 2
max_position_embeddings = 64
[tasks]
mixture = [{ task = "add", level = 1 }]
[sft]
steps = 100000
batch_size = 2
[eval]
problems = 2
samples = 0
max_new_tokens = 8
"#;

fn verity(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verity"));
    command.arg("train").args(args).current_dir(dir);
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn metric_steps(run_dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["global_step"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn sigterm_checkpoints_and_resume_finishes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("long.toml"), LONG).unwrap();
    let run_dir = dir.path().join("runs/long");
    let child = verity(dir.path(), &["--config", "long.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while metric_steps(&run_dir).len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no steps logged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("verity train --resume"), "{err}");
    assert!(err.contains("runs/long"), "{err}");

    // The checkpoint holds the last step logged.
    let steps = metric_steps(&run_dir);
    let stopped_at = *steps.last().unwrap();
    assert_eq!(steps, (1..=stopped_at).collect::<Vec<_>>());
    let checkpoint = run_dir.join(format!("checkpoints/step-{stopped_at}"));
    assert!(
        trainer::verify_checkpoint(&checkpoint).is_ok(),
        "{}: {err}",
        checkpoint.display()
    );

    // Resume with two more steps to go: every step is logged once.
    let target = format!("sft.steps={}", stopped_at + 2);
    let out = verity(dir.path(), &["--resume", "runs/long", "--set", &target])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming long from"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        metric_steps(&run_dir),
        (1..=stopped_at + 2).collect::<Vec<_>>()
    );
    let last = run_dir.join(format!("checkpoints/step-{}", stopped_at + 2));
    let state = trainer::verify_checkpoint(&last).unwrap();
    assert!(state.sft.finished);

    // A changed model shape is refused, naming the key.
    let out = verity(
        dir.path(),
        &["--resume", "runs/long", "--set", "model.hidden_size=32"],
    )
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: model.hidden_size: cannot change when resuming"),
        "{err}"
    );
}

#[test]
fn resuming_a_folder_that_does_not_exist_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = verity(dir.path(), &["--resume", "runs/nope"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("runs/nope does not exist"), "{err}");
    assert!(err.contains("--config FILE"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
