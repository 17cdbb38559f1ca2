//! `verity eval` and `verity sample` driven through the real binary, on a
//! micro run trained here and on the transformers fixture tiny-qwen2.
//!
//! Evaluating a run checkpoint must repeat the evaluation training logged
//! when it wrote it; greedy samples of the fixture must be transformers'
//! greedy tokens with its log-probabilities.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// Run `verity` with `args` on one thread (as the micro run trains), so its
/// numbers are those of training; backtraces requested, to prove none is
/// printed.
fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the verity binary runs")
}

/// `verity args` must succeed; returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = verity(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verity {args:?}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh scratch folder under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("eval_sample")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The transformers fixture, beside the workspace (../shared/fixtures).
fn tiny_qwen2() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/tiny-qwen2"
    ))
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The run folder of a micro run (add and sub at level 1, a short SFT that
/// leaves pass rates above 0, one GRPO step), trained once per test binary.
fn micro_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = scratch("micro");
        let config = root.join("micro.toml");
        let text = format!(
            r#"
[run]
out_dir = "{}"
seed = 3
threads = 1
[model]
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 2
max_position_embeddings = 64
[tasks]
mixture = [{{ task = "add", level = 1 }}, {{ task = "sub", level = 1 }}]
[sft]
steps = 60
batch_size = 32
lr = 1e-2
lr_decay = "constant"
[grpo]
steps = 1
batch_size = 8
group_size = 4
max_completion_length = 24
[eval]
problems = 8
samples = 4
k = 2
"#,
            s(&root.join("runs"))
        );
        std::fs::write(&config, text).unwrap();
        ok(&["train", "--config", s(&config)]);
        root.join("runs/micro")
    })
}

/// Fields an evaluation record shares with eval.jsonl, timing left out.
fn scores(record: &Value) -> Value {
    let keys = [
        "phase",
        "step",
        "global_step",
        "k",
        "problems",
        "pass_at_1",
        "pass_at_k",
        "format_rate",
        "tasks",
    ];
    keys.iter()
        .map(|&k| (k.to_string(), record[k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn assert_rates_in_unit_interval(record: &Value) {
    let rows = record["tasks"].as_array().expect("a tasks array");
    for row in rows.iter().chain([record]) {
        for key in ["pass_at_1", "pass_at_k", "format_rate"] {
            if let Some(v) = row[key].as_f64() {
                assert!((0.0..=1.0).contains(&v), "{key} = {v} in {row}");
            }
        }
    }
}

#[test]
fn eval_of_a_run_checkpoint_repeats_the_logged_evaluations() {
    let run = micro_run();
    let logged = json_lines(&std::fs::read_to_string(run.join("eval.jsonl")).unwrap());
    let out = scratch("repeat");
    // step-60 is the end of SFT, step-61 the end of GRPO.
    for (name, phase, step) in [("step-60", "sft", 60), ("step-61", "grpo", 1)] {
        let json = out.join(format!("{name}.json"));
        let checkpoint = run.join("checkpoints").join(name);
        let table = ok(&["eval", "--checkpoint", s(&checkpoint), "--json", s(&json)]);
        let got = read_json(&json);
        let want = logged
            .iter()
            .find(|r| r["phase"] == phase && r["step"] == step)
            .expect("the evaluation logged with the checkpoint");
        assert_eq!(scores(&got), scores(want), "{name}");
        assert_rates_in_unit_interval(&got);
        assert_eq!(got["checkpoint"], s(&checkpoint));
        assert_eq!(
            (got["samples"].as_u64(), got["seed"].as_u64()),
            (Some(4), Some(3))
        );
        assert!(
            table.contains(&format!("({phase} step {step}, global step")),
            "{table}"
        );
        for family in ["add", "sub"] {
            assert!(
                table.lines().any(|l| l.trim_start().starts_with(family)),
                "{table}"
            );
        }
    }
    // The comparison means something only if some rate is above 0.
    let nonzero = logged
        .iter()
        .any(|r| r["pass_at_1"].as_f64() > Some(0.0) || r["pass_at_k"].as_f64() > Some(0.0));
    assert!(nonzero, "the micro run learned nothing: {logged:?}");
}

#[test]
fn eval_flags_pick_tasks_levels_and_counts() {
    let run = micro_run();
    let out = scratch("flags");
    let json = out.join("eval.json");
    let checkpoint = run.join("checkpoints/step-61");
    #[rustfmt::skip]
    ok(&[
        "eval", "--checkpoint", s(&checkpoint), "--tasks", "add", "--levels", "1-2",
        "--n", "3", "--samples", "3", "--k", "2", "--json", s(&json),
    ]);
    let got = read_json(&json);
    let rows: Vec<(String, u64, u64)> = got["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["task"].as_str().unwrap().to_string(),
                r["level"].as_u64().unwrap(),
                r["problems"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("add".into(), 1, 3), ("add".into(), 2, 3)]);
    assert_eq!(
        (got["k"].as_u64(), got["samples"].as_u64()),
        (Some(2), Some(3))
    );
    assert_rates_in_unit_interval(&got);

    // A Hugging Face folder: its tasks are named; no run, so no phase or step.
    let json = out.join("hf.json");
    #[rustfmt::skip]
    let table = ok(&[
        "eval", "--checkpoint", s(tiny_qwen2()), "--tasks", "add,mul", "--levels", "1",
        "--n", "2", "--samples", "2", "--k", "2", "--max-new-tokens", "6", "--json", s(&json),
    ]);
    let got = read_json(&json);
    assert!(
        got.get("phase").is_none() && got.get("global_step").is_none(),
        "{got}"
    );
    assert_eq!(got["problems"], 4);
    assert_eq!(got["tasks"].as_array().map(Vec::len), Some(2));
    assert_rates_in_unit_interval(&got);
    assert!(
        table.contains("pass@1") && table.contains("pass@2"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.trim_start().starts_with("mul")),
        "{table}"
    );
}

/// log_softmax(logits)[token], in f64.
fn logprob(logits: &[f64], token: usize) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    logits[token] - lse
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

fn ids(value: &Value) -> Vec<usize> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_u64().expect("an id") as usize)
        .collect()
}

/// The fixture's record of the prompt "12+3=": greedy ids and the logits
/// each was chosen from.
fn reference_greedy() -> (Vec<usize>, Vec<Vec<f64>>) {
    let reference = read_json(&tiny_qwen2().join("reference.json"));
    let sequence = &reference["sequences"][0];
    assert_eq!(sequence["text"], "12+3=");
    let greedy = &sequence["greedy"];
    let logits = greedy["step_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    (ids(&greedy["new_ids"]), logits)
}

#[test]
fn greedy_samples_are_the_transformers_greedy_tokens_and_repeat() {
    let (want_ids, step_logits) = reference_greedy();
    #[rustfmt::skip]
    let args = [
        "sample", "--checkpoint", s(tiny_qwen2()), "--prompt", "12+3=", "--raw",
        "--temperature", "0", "--max-new-tokens", "16", "--n", "1", "--json",
    ];
    let first = ok(&args);
    assert_eq!(first, ok(&args), "greedy sampling is not repeatable");
    let lines = json_lines(&first);
    assert_eq!(lines.len(), 1);
    let sample = &lines[0];
    assert_eq!(sample["prompt"], "12+3=");
    assert_eq!(ids(&sample["token_ids"]), want_ids);
    assert_eq!(sample["completion"], "a!Mq]\\zog'q8eeeD");
    assert!(sample.get("verdict").is_none());
    let logprobs = floats(&sample["logprobs"]);
    assert_eq!(logprobs.len(), want_ids.len());
    for (i, (&got, &id)) in logprobs.iter().zip(&want_ids).enumerate() {
        let want = logprob(&step_logits[i], id);
        assert!((got - want).abs() < 1e-4, "token {i}: {got} vs {want}");
    }
}

/// `--decode-precision bfloat16` samples from the bfloat16-rounded model:
/// the first token's log-prob (whose logits the fixture holds) close to
/// transformers' float32 one, but not the float32 decoder's to the bit.
#[test]
fn bfloat16_decoding_stays_near_the_float32_model() {
    let (want_ids, step_logits) = reference_greedy();
    let first = |precision: &str| {
        #[rustfmt::skip]
        let out = ok(&[
            "sample", "--checkpoint", s(tiny_qwen2()), "--prompt", "12+3=", "--raw",
            "--temperature", "0", "--max-new-tokens", "1", "--n", "1", "--json",
            "--decode-precision", precision,
        ]);
        let sample = json_lines(&out).remove(0);
        assert_eq!(ids(&sample["token_ids"]), want_ids[..1], "{precision}");
        floats(&sample["logprobs"])[0]
    };
    let want = logprob(&step_logits[0], want_ids[0]);
    let (f32, bf16) = (first("float32"), first("bfloat16"));
    assert!((f32 - want).abs() < 1e-4, "float32 {f32} vs {want}");
    assert!((bf16 - want).abs() < 5e-2, "bfloat16 {bf16} vs {want}");
    assert_ne!(bf16, f32, "bfloat16 decoding computed float32's numbers");

    let out = verity(&[
        "sample",
        "--checkpoint",
        s(tiny_qwen2()),
        "--prompt",
        "hi",
        "--decode-precision",
        "bf17",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: invalid value 'bf17' for '--decode-precision"),
        "{stderr}"
    );
}

#[test]
fn sampled_logprobs_are_untempered() {
    let (_, step_logits) = reference_greedy();
    let first_logits = &step_logits[0];
    let run = |seed: &str| {
        #[rustfmt::skip]
        let out = ok(&[
            "sample", "--checkpoint", s(tiny_qwen2()), "--prompt", "12+3=", "--raw",
            "--temperature", "1.7", "--max-new-tokens", "5", "--n", "6", "--seed", seed,
            "--json",
        ]);
        out
    };
    let text = run("7");
    assert_eq!(text, run("7"), "the same seed must give the same samples");
    assert_ne!(text, run("8"), "another seed should give other samples");
    let samples = json_lines(&text);
    assert_eq!(samples.len(), 6);
    let mut tempering_shows = false;
    for sample in &samples {
        let tokens = ids(&sample["token_ids"]);
        let logprobs = floats(&sample["logprobs"]);
        assert_eq!(logprobs.len(), tokens.len(), "{sample}");
        assert!(logprobs.iter().all(|&l| l <= 0.0), "{sample}");
        // The first token follows the prompt, whose logits the fixture holds.
        let untempered = logprob(first_logits, tokens[0]);
        assert!((logprobs[0] - untempered).abs() < 1e-4, "{sample}");
        let scaled: Vec<f64> = first_logits.iter().map(|l| l / 1.7).collect();
        tempering_shows |= (logprob(&scaled, tokens[0]) - untempered).abs() > 1e-2;
    }
    assert!(tempering_shows, "no sample tells tempered from untempered");
}

#[test]
fn the_chat_template_is_applied_unless_raw() {
    let templated = "<|im_start|>user\n12+3=<|im_end|>\n<|im_start|>assistant\n";
    #[rustfmt::skip]
    let sample = |prompt: &str, raw: bool| {
        let mut args = vec![
            "sample", "--checkpoint", s(tiny_qwen2()), "--prompt", prompt,
            "--temperature", "0", "--max-new-tokens", "8", "--n", "1", "--json",
        ];
        if raw {
            args.push("--raw");
        }
        json_lines(&ok(&args)).remove(0)["token_ids"].clone()
    };
    assert_eq!(sample("12+3=", false), sample(templated, true));
    assert_ne!(sample("12+3=", false), sample("12+3=", true));
}

#[test]
fn task_samples_carry_verdicts_that_agree_with_the_verifier_and_eval() {
    let run = micro_run();
    let checkpoint = run.join("checkpoints/step-61");
    #[rustfmt::skip]
    let text = ok(&[
        "sample", "--checkpoint", s(&checkpoint), "--task", "add", "--n", "8",
        "--temperature", "0", "--json",
    ]);
    let samples = json_lines(&text);
    assert_eq!(samples.len(), 8);
    let heldout = tasks::heldout("add", 1).unwrap();
    let mut passes = 0;
    for (i, sample) in samples.iter().enumerate() {
        let problem = &heldout[i];
        assert_eq!(sample["id"], problem.id.as_str());
        assert_eq!(sample["prompt"], problem.prompt.as_str());
        let completion = sample["completion"].as_str().unwrap();
        let verdict = problem.verify(completion);
        assert_eq!(sample["verdict"], serde_json::to_value(&verdict).unwrap());
        passes += usize::from(verdict.reward >= 1.0);
        assert_eq!(
            floats(&sample["logprobs"]).len(),
            ids(&sample["token_ids"]).len()
        );
    }
    // Greedy passes over the run's 8 held-out add problems: the pass@1 training logged.
    let logged = json_lines(&std::fs::read_to_string(run.join("eval.jsonl")).unwrap());
    let last = logged.last().unwrap();
    let add = last["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == "add")
        .unwrap();
    assert_eq!(passes as f64 / 8.0, add["pass_at_1"].as_f64().unwrap());

    // The plain format is the prompt and a newline: the same text given raw
    // gives the same greedy completion.
    let first = format!("{}\n", heldout[0].prompt);
    #[rustfmt::skip]
    let raw = ok(&[
        "sample", "--checkpoint", s(&checkpoint), "--prompt", &first, "--raw", "--n", "1",
        "--temperature", "0", "--json",
    ]);
    assert_eq!(json_lines(&raw)[0]["token_ids"], samples[0]["token_ids"]);

    // Text output shows prompt, completion and verdict.
    #[rustfmt::skip]
    let plain = ok(&[
        "sample", "--checkpoint", s(&checkpoint), "--task", "sub", "--n", "1",
        "--temperature", "0",
    ]);
    assert!(plain.starts_with("== sub/1/heldout/0"), "{plain}");
    for part in ["prompt: What is", "completion (", "verdict: reward"] {
        assert!(plain.contains(part), "{part} missing:\n{plain}");
    }
}

/// `verity args` must fail with exit code 2 and one `error:` line that
/// contains `needle`.
fn assert_bad_input(args: &[&str], needle: &str) {
    let out = verity(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "verity {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{needle} missing: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_exits_2_naming_it() {
    let dir = scratch("bad");
    let missing = dir.join("missing");
    let fixture = tiny_qwen2();
    assert_bad_input(
        &["eval", "--checkpoint", s(&missing), "--tasks", "add"],
        "missing",
    );
    assert_bad_input(
        &["sample", "--checkpoint", s(&missing), "--prompt", "hi"],
        "missing",
    );

    let no_weights = dir.join("no-weights");
    std::fs::create_dir_all(&no_weights).unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(file), no_weights.join(file)).unwrap();
    }
    assert_bad_input(
        &["eval", "--checkpoint", s(&no_weights), "--tasks", "add"],
        "no weights",
    );
    assert_bad_input(
        &["sample", "--checkpoint", s(&no_weights), "--prompt", "hi"],
        "no weights",
    );

    let f = s(fixture);
    assert_bad_input(&["eval", "--checkpoint", f], "--tasks is required");
    assert_bad_input(&["eval", "--checkpoint", f, "--tasks", "nope"], "'nope'");
    assert_bad_input(&["sample", "--checkpoint", f, "--task", "nope"], "'nope'");
    #[rustfmt::skip]
    assert_bad_input(&["eval", "--checkpoint", f, "--tasks", "add", "--levels", "9"], "not 9");
    #[rustfmt::skip]
    assert_bad_input(&["sample", "--checkpoint", f, "--task", "add", "--level", "0"], "not 0");
    #[rustfmt::skip]
    assert_bad_input(&["eval", "--checkpoint", f, "--tasks", "add", "--levels", "2-x"], "'2-x'");
    #[rustfmt::skip]
    assert_bad_input(&["sample", "--checkpoint", f, "--prompt", "hi", "--temperature", "-1"], "-1");
    #[rustfmt::skip]
    assert_bad_input(
        &["sample", "--checkpoint", f, "--prompt", "hi", "--max-new-tokens", "1000"],
        "256 positions",
    );
}

#[test]
fn budgets_are_measured_recorded_in_the_run_and_drawn_by_the_report() {
    let run = micro_run();
    // Training wrote the run's report after its evaluations.
    let trained = std::fs::read_to_string(run.join("report.html")).unwrap();
    for plot in ["heldout", "reward", "loss"] {
        assert!(trained.contains(&format!("data-plot=\"{plot}\"")), "{plot}");
    }

    let out = scratch("budgets");
    let json = out.join("budgets.json");
    let checkpoint = run.join("checkpoints/step-61");
    #[rustfmt::skip]
    let table = ok(&[
        "eval", "--checkpoint", s(&checkpoint), "--budgets", "24,2,12", "--samples", "3",
        "--json", s(&json),
    ]);
    assert!(table.contains("maj@3"), "{table}");
    let got = read_json(&json);
    let budgets: Vec<u64> = got["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["max_new_tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(budgets, [2, 12, 24]);
    assert_eq!(
        (got["k"].as_u64(), got["global_step"].as_u64()),
        (Some(3), Some(61))
    );
    assert_rates_in_unit_interval(&serde_json::json!({ "tasks": got["budgets"] }));
    for b in got["budgets"].as_array().unwrap() {
        assert!(b["maj_at_k"].as_f64().is_some(), "{b}");
    }
    // Recorded in the run, whole, as the last line of budgets.jsonl.
    let recorded = json_lines(&std::fs::read_to_string(run.join("budgets.jsonl")).unwrap());
    assert_eq!(recorded.last(), Some(&got));

    let page = out.join("report.html");
    let printed = ok(&["report", s(run), "--out", s(&page)]);
    assert_eq!(printed.trim(), s(&page));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("data-plot=\"budgets-micro\""));
    assert!(html.contains("checkpoint at step 61"));

    let c = s(&checkpoint);
    assert_bad_input(
        &["eval", "--checkpoint", c, "--budgets", "0,8"],
        "at least 1",
    );
    assert_bad_input(
        &["eval", "--checkpoint", c, "--budgets", "8,1000"],
        "64 positions",
    );
}
