//! The thread count changes no result: the same config and seed on 1 and 3
//! threads give bit-identical checkpoints (weights, optimizer moments,
//! trainer state), metrics (timings aside), evaluations and samples; and a
//! run resumed on another number of threads continues exactly as the
//! uninterrupted one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// SFT then GRPO with a reference model, on a model whose products are big
/// enough to be cut into pieces for the threads.
const RUN: &str = r#"
[run]
seed = 5
[model]
hidden_size = 64
intermediate_size = 160
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 128
[tasks]
mixture = [{ task = "add", level = 1 }]
[sft]
steps = 3
batch_size = 16
lr = 3e-3
lr_decay = "constant"
[grpo]
steps = 2
batch_size = 16
group_size = 4
max_completion_length = 24
beta = 0.04
lr = 1e-4
[eval]
problems = 8
samples = 2
k = 2
"#;

/// A fresh scratch folder under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("threads")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("run.toml"), RUN).unwrap();
    dir
}

/// `verity train` in `dir` with `args`; panics unless it succeeds.
fn train(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_verity"))
        .arg("train")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "verity train {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The run folder of the config trained on `threads` threads with the
/// training products in `matmul` precision (once per test binary for each).
fn run_on(threads: usize, matmul: &str) -> PathBuf {
    type Runs = std::sync::Mutex<Vec<((usize, String), PathBuf)>>;
    static RUNS: OnceLock<Runs> = OnceLock::new();
    let runs = RUNS.get_or_init(Default::default);
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    let key = (threads, matmul.to_string());
    if let Some((_, dir)) = runs.iter().find(|(k, _)| *k == key) {
        return dir.clone();
    }
    let dir = scratch(&format!("t{threads}-{matmul}"));
    let set = format!("run.threads={threads}");
    let precision = format!("run.matmul_precision={matmul}");
    train(
        &dir,
        &["--config", "run.toml", "--set", &set, "--set", &precision],
    );
    let run = dir.join("runs/run");
    runs.push((key, run.clone()));
    run
}

/// A JSON Lines log with its wall-clock and memory fields removed.
fn log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            strip_timings(&mut v);
            v
        })
        .collect()
}

fn strip_timings(v: &mut Value) {
    if let Some(object) = v.as_object_mut() {
        object.retain(|key, _| !trainer::is_measurement(key));
        for value in object.values_mut() {
            strip_timings(value);
        }
    }
}

/// Every file of every checkpoint, by path relative to the run folder.
fn checkpoint_files(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let root = run.join("checkpoints");
    for step in std::fs::read_dir(&root).unwrap() {
        let step = step.unwrap().path();
        for file in std::fs::read_dir(&step).unwrap() {
            let file = file.unwrap().path();
            let name = file.strip_prefix(run).unwrap().display().to_string();
            files.push((name, std::fs::read(&file).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn one_and_three_threads_give_the_same_bits() {
    same_bits(&run_on(1, "float32"), &run_on(3, "float32"));
}

/// Products in bfloat16 too: their operands are rounded and packed word by
/// word, and summed in pieces fixed by the shape.
#[test]
fn bfloat16_products_on_one_and_three_threads_give_the_same_bits() {
    let (one, three) = (run_on(1, "bfloat16"), run_on(3, "bfloat16"));
    same_bits(&one, &three);
    let weights = |run: &Path| {
        checkpoint_files(run)
            .into_iter()
            .filter(|(name, _)| name.ends_with("model.safetensors"))
            .collect::<Vec<_>>()
    };
    assert!(
        weights(&one) != weights(&run_on(1, "float32")),
        "run.matmul_precision changed nothing"
    );
}

/// The two runs' checkpoints and logs are the same, timings aside.
fn same_bits(one: &Path, three: &Path) {
    let (a, b) = (checkpoint_files(one), checkpoint_files(three));
    assert!(a
        .iter()
        .any(|(name, _)| name.ends_with("model.safetensors")));
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if name.ends_with("trainer_state.json") {
            // Its log positions are byte offsets, which the timings move.
            let state = |bytes: &[u8]| {
                let mut v: Value = serde_json::from_slice(bytes).unwrap();
                v.as_object_mut().unwrap().remove("logs");
                v
            };
            assert_eq!(state(x), state(y), "{name}");
        } else {
            assert!(x == y, "{name} differs between 1 and 3 threads");
        }
    }
    for file in ["metrics.jsonl", "eval.jsonl", "samples.jsonl"] {
        assert_eq!(log(&one.join(file)), log(&three.join(file)), "{file}");
    }
}

#[test]
fn resuming_on_another_thread_count_continues_exactly() {
    let whole = run_on(1, "float32");
    // One GRPO step on three threads, then the second on one thread.
    let dir = scratch("resumed");
    train(
        &dir,
        &[
            "--config",
            "run.toml",
            "--set",
            "run.threads=3",
            "--set",
            "grpo.steps=1",
        ],
    );
    train(
        &dir,
        &[
            "--resume",
            "runs/run",
            "--set",
            "run.threads=1",
            "--set",
            "grpo.steps=2",
        ],
    );
    let resumed = dir.join("runs/run");
    let last = |run: &Path| -> Vec<(String, Vec<u8>)> {
        checkpoint_files(run)
            .into_iter()
            .filter(|(name, _)| name.contains("step-5/"))
            .collect()
    };
    let (a, b) = (last(&whole), last(&resumed));
    assert!(!a.is_empty(), "no checkpoint of step 5");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if name.ends_with(".safetensors") {
            assert!(
                x == y,
                "{name} differs after resuming on another thread count"
            );
        }
    }
    assert_eq!(
        log(&whole.join("metrics.jsonl")),
        log(&resumed.join("metrics.jsonl"))
    );
}
