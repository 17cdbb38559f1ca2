//! `verity sample` and `verity eval` on a GGUF file: SmolLM2-135M-Instruct
//! (from `scripts/fetch-smollm2.sh`) gives transformers' greedy tokens past
//! EOS, raw and through its chat template; broken files exit with code 2
//! and one line naming the file.
//!
//! The model is looked for at `VERITY_SMOLLM2`, else
//! `models/SmolLM2-135M-Instruct.Q4_1.gguf` under the workspace root; the
//! tests that need it pass with a notice when it is absent, unless
//! `VERITY_REQUIRE_SMOLLM2=1` (CI sets it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the verity binary runs")
}

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

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("gguf_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The SmolLM2 GGUF, or `None` after a notice when it is absent and not required.
fn smollm2() -> Option<PathBuf> {
    let path = match std::env::var_os("VERITY_SMOLLM2") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("VERITY_REQUIRE_SMOLLM2").map_or(true, |v| v != "1"),
        "{} is missing and VERITY_REQUIRE_SMOLLM2=1: run scripts/fetch-smollm2.sh",
        path.display()
    );
    // Written past the test harness's capture, so the skip shows.
    let _ = writeln!(
        std::io::stderr(),
        "notice: {} not found; GGUF sampling tests skipped (run scripts/fetch-smollm2.sh)",
        path.display()
    );
    None
}

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy/tests/fixtures/smollm2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn generation(kind: &str, prompt: &str) -> Value {
    reference()["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == kind && g["prompt"] == prompt)
        .unwrap_or_else(|| panic!("no {kind} generation of {prompt:?}"))
        .clone()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn sample_on_a_gguf_gives_transformers_greedy_tokens() {
    let Some(model) = smollm2() else {
        return;
    };
    // A raw prompt, 32 tokens past EOS.
    let raw = generation("raw", "What is 17 + 25? The answer is");
    #[rustfmt::skip]
    let out = ok(&[
        "sample", "--checkpoint", s(&model), "--prompt", raw["prompt"].as_str().unwrap(),
        "--raw", "--temperature", "0", "--max-new-tokens", "32", "--ignore-eos", "--n", "1",
        "--json",
    ]);
    let sample: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&sample["prompt_ids"]), ids(&raw["prompt_ids"]));
    assert_eq!(ids(&sample["token_ids"]), ids(&raw["greedy_ids"]));
    assert_eq!(sample["finish"], "length");
    let eos = 2;
    assert!(
        ids(&sample["token_ids"]).contains(&eos),
        "EOS was not passed"
    );
    for (ours, theirs) in sample["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(raw["greedy_logprobs"].as_array().unwrap())
    {
        let diff = (ours.as_f64().unwrap() - theirs.as_f64().unwrap()).abs();
        assert!(diff < 2e-3, "log-prob differs by {diff}");
    }

    // Without --raw: the chat template with its default system message;
    // generation stops at EOS.
    let chat = generation("chat", "What is 12 + 30?");
    #[rustfmt::skip]
    let out = ok(&[
        "sample", "--checkpoint", s(&model), "--prompt", chat["prompt"].as_str().unwrap(),
        "--temperature", "0", "--max-new-tokens", "32", "--n", "1", "--json",
    ]);
    let sample: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&sample["prompt_ids"]), ids(&chat["prompt_ids"]));
    let tokens = ids(&sample["token_ids"]);
    let expected = ids(&chat["greedy_ids"]);
    let end = expected
        .iter()
        .position(|&t| t == eos)
        .expect("EOS in 32 tokens")
        + 1;
    assert_eq!(tokens, expected[..end]);
    assert_eq!(sample["finish"], "stop");
    assert_eq!(
        sample["completion"],
        "12 + 30 = 32\n\nThis is a classic example of arithmetic operations being added together."
    );

    let out = ok(&[
        "eval",
        "--checkpoint",
        s(&model),
        "--tasks",
        "add",
        "--levels",
        "1",
        "--n",
        "2",
        "--samples",
        "0",
        "--max-new-tokens",
        "24",
    ]);
    assert!(out.contains("pass@1") && out.contains("add"), "{out}");
}

/// `verity args` must fail with exit code 2 and one `error:` line that
/// contains every needle.
fn assert_bad_input(args: &[&str], needles: &[&str]) {
    let out = verity(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "verity {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle} missing: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn broken_gguf_files_exit_2_naming_the_file() {
    let dir = scratch("bad");
    let header_only = dir.join("header-only.gguf");
    std::fs::write(&header_only, b"GGUF\x03\x00\x00\x00\x10\x00").unwrap();
    let text = dir.join("text.gguf");
    std::fs::write(&text, "not a model at all").unwrap();
    let missing = dir.join("missing.gguf");
    let mut cases = vec![
        (header_only, "truncated"),
        (text, "not a readable GGUF"),
        (missing, "no such file"),
    ];
    if let Some(model) = smollm2() {
        // A download cut short: the header is intact, the tensors are not.
        let bytes = std::fs::read(&model).unwrap();
        let cut = dir.join("cut.gguf");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        cases.push((cut, "truncated"));
        let start = dir.join("start.gguf");
        std::fs::write(&start, &bytes[..100_000]).unwrap();
        cases.push((start, "GGUF"));
    }
    for (path, needle) in &cases {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_bad_input(
            &["sample", "--checkpoint", s(path), "--prompt", "hi"],
            &[name, needle],
        );
        assert_bad_input(
            &["eval", "--checkpoint", s(path), "--tasks", "add"],
            &[name, needle],
        );
    }
}
