//! `verity train` through the real binary: bad input exits with code 2 and a
//! one-line message naming the file, key or value; the pretrained-model
//! config trains a couple of steps on the tiny Qwen2 fixture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    repo_root().join("../shared/fixtures")
}

/// Runs `verity train` with `args` in `dir`.
fn verity_train(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .arg("train")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A valid micro config: the base the bad-input cases break one key of.
const MICRO: &str = r#"
[run]
threads = 1
[model]
hidden_size = 16
intermediate_size = 32
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 2
[tasks]
mixture = [{ task = "add", level = 1 }]
[sft]
steps = 1
batch_size = 4
[eval]
problems = 2
samples = 0
"#;

/// Writes `text` as `name` in a fresh folder and runs it with `args`.
fn run_config(text: &str, args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let mut all = vec!["--config", "c.toml"];
    all.extend_from_slice(args);
    (verity_train(dir.path(), &all), dir)
}

fn assert_usage_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in {err}");
    }
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn bad_configs_exit_with_code_2_and_say_where() {
    let (out, _d) = run_config(MICRO, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the base config must work: {}",
        stderr(&out)
    );

    let out = verity_train(Path::new("."), &["--config", "/no/such/file.toml"]);
    assert_usage_error(&out, &["/no/such/file.toml"]);

    let (out, _d) = run_config(&format!("{MICRO}\n[grpo]\nbogus = 1\n"), &[]);
    assert_usage_error(&out, &["c.toml:20: grpo.bogus: unknown field `bogus`"]);

    let (out, _d) = run_config(&MICRO.replace("steps = 1", "steps = \"many\""), &[]);
    assert_usage_error(
        &out,
        &["c.toml:13: sft.steps: invalid type: string \"many\""],
    );

    let (out, _d) = run_config(&MICRO.replace("\"add\"", "\"nope\""), &[]);
    assert_usage_error(&out, &["c.toml:11: tasks.mixture", "unknown task 'nope'"]);

    let (out, _d) = run_config(MICRO, &["--set", "grpo.group_size=1"]);
    assert_usage_error(
        &out,
        &["--set grpo.group_size=1: grpo.group_size", "group of 1"],
    );

    let (out, _d) = run_config(
        MICRO,
        &["--set", "grpo.batch_size=12", "--set", "grpo.group_size=8"],
    );
    assert_usage_error(
        &out,
        &["12 completions do not split into groups of group_size = 8"],
    );

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("config.json"), "{}").unwrap();
    std::fs::write(empty.path().join("tokenizer.json"), "{}").unwrap();
    let folder = format!("model.path={}", empty.path().display());
    let (out, _d) = run_config(MICRO, &["--set", "model.source=local", "--set", &folder]);
    assert_usage_error(&out, &["model.path", "no *.safetensors weights"]);

    let (out, _d) = run_config(MICRO, &["--set", "sft.nope=3"]);
    assert_usage_error(&out, &["--set sft.nope=3: unknown field `nope`"]);
}

#[test]
fn help_config_lists_every_key() {
    let out = verity_train(Path::new("."), &["--help-config"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "name = ",
        "out_dir = ",
        "seed = ",
        "threads = ",
        "steps = ",
        "every = ",
    ] {
        assert!(text.contains(key), "{key}");
    }
    assert_eq!(text, trainer::config_reference());
}

#[test]
fn finetune_config_trains_the_tiny_qwen2_fixture() {
    let out_dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("configs/finetune-qwen2.toml");
    let model = format!("model.path={}", fixtures().join("tiny-qwen2").display());
    let runs = format!("run.out_dir={}", out_dir.path().display());
    let sets = [
        model.as_str(),
        runs.as_str(),
        "run.device=cpu",
        // The fixture has 256 positions: short prompts, no system message.
        "model.system_prompt=\"\"",
        "tasks.mixture=[{ task = \"add\", level = 2 }, { task = \"linear\", level = 1 }]",
        "run.threads=1",
        "sft.steps=2",
        "sft.batch_size=4",
        "grpo.steps=2",
        "grpo.batch_size=8",
        "grpo.group_size=4",
        "grpo.micro_batches=2",
        "grpo.max_completion_length=16",
        "grpo.overlong_buffer=4",
        "eval.problems=2",
        "eval.samples=2",
        "eval.k=2",
        "eval.max_new_tokens=16",
        "checkpoint.every=0",
    ];
    let mut args = vec!["--config".to_string(), config.display().to_string()];
    for s in sets {
        args.push("--set".into());
        args.push(s.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = verity_train(Path::new("."), &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = out_dir.path().join("finetune-qwen2");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["phase"], "grpo");
    assert!(last["loss"].as_f64().is_some_and(f64::is_finite), "{last}");
    // The checkpoint is a Hugging Face folder with the fixture's tokenizer
    // and chat template.
    let ckpt = run.join("checkpoints/step-4");
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
    ] {
        assert!(ckpt.join(file).is_file(), "{file}");
    }
    let state = std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap();
    assert!(state.contains("\"prompt_format\": \"chat\""), "{state}");
}
