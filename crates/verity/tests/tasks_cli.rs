//! `verity tasks` driven through the real binary: output, exit codes and
//! error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `verity` with `args`; backtraces requested, to prove none is printed.
fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the verity binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh scratch folder under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn list_names_every_family_and_level() {
    let out = verity(&["tasks", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for family in tasks::all() {
        let name = family.name();
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.starts_with("25 families; held-out sets v2"), "{text}");
    assert!(text.contains("L3   both operands 3-digit"), "{text}");
    assert!(text.contains("(levels 1-8)"), "{text}");
    assert!(text.contains("[8 held out]"), "{text}");
}

#[test]
fn show_prints_prompt_answer_and_solution() {
    let out = verity(&[
        "tasks", "show", "add", "--level", "3", "--n", "2", "--seed", "5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("== add/3/train/5"), "{text}");
    assert!(text.contains("== add/3/train/6"), "{text}");
    assert_eq!(text.matches("prompt:").count(), 2);
    assert!(
        text.contains("<think>") && text.contains("</answer>"),
        "{text}"
    );
}

#[test]
fn export_writes_problems_as_json_lines() {
    let dir = scratch("export");
    let file = dir.join("linear.jsonl");
    let file_arg = file.to_str().unwrap();
    let args = [
        "tasks", "export", "--task", "linear", "--level", "5", "--split", "train", "--n", "7",
        "--seed", "3", "--out", file_arg,
    ];
    let out = verity(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["id"], "linear/5/train/3");
    for key in ["task", "level", "prompt", "answer", "solution", "verifier"] {
        assert!(lines[0].get(key).is_some(), "{key} missing");
    }
    // stdout gets the same bytes.
    let out = verity(&args[..args.len() - 2]);
    assert_eq!(stdout(&out), std::fs::read_to_string(&file).unwrap());
}

#[test]
fn heldout_export_reproduces_the_frozen_file() {
    let out = verity(&[
        "tasks", "export", "--task", "expr", "--level", "3", "--split", "heldout", "--n", "100",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let frozen = workspace_root()
        .join(tasks::HELDOUT_DIR)
        .join(tasks::HELDOUT_VERSION)
        .join("expr-L3.jsonl");
    assert_eq!(stdout(&out), std::fs::read_to_string(frozen).unwrap());
}

#[test]
fn check_prints_one_verdict_per_line_and_a_summary() {
    let dir = scratch("check");
    let out = verity(&[
        "tasks", "export", "--task", "fraction", "--level", "2", "--split", "heldout", "--n", "3",
    ]);
    let mut lines = json_lines(&stdout(&out));
    lines[0]["completion"] = lines[0]["solution"].clone();
    lines[1]["completion"] = "<think>no idea</think><answer>1/2 or 3/4</answer>".into();
    lines[2]["completion"] = "the answer is 1".into();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let file = dir.join("completions.jsonl");
    std::fs::write(&file, text).unwrap();

    let out = verity(&["tasks", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let verdicts = json_lines(&stdout(&out));
    assert_eq!(verdicts.len(), 3);
    let keys: Vec<&String> = verdicts[0].as_object().unwrap().keys().collect();
    for key in ["id", "reward", "format_ok", "extracted", "reason"] {
        assert!(
            keys.iter().any(|k| *k == key),
            "{key} missing from {keys:?}"
        );
    }
    assert_eq!(verdicts[0]["id"], "fraction/2/heldout/0");
    assert_eq!(verdicts[0]["reward"], 1.0);
    assert_eq!(verdicts[0]["format_ok"], true);
    assert_eq!(verdicts[1]["reward"], 0.0);
    assert_eq!(verdicts[1]["reason"], "several answers");
    assert_eq!(verdicts[2]["extracted"], serde_json::Value::Null);
    assert!(
        stderr(&out).contains("checked 3 completions"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_accepts_a_user_problem_file() {
    let dir = scratch("user");
    let file = dir.join("mine.jsonl");
    let text = "{\"prompt\":\"Sort 3 1 2\",\"answer\":\"[1, 2, 3]\",\"verifier\":\"list\",\"completion\":\"<think></think><answer>1 2 3</answer>\"}\n";
    std::fs::write(&file, text).unwrap();
    let out = verity(&["tasks", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let verdicts = json_lines(&stdout(&out));
    assert_eq!(verdicts[0]["id"], "mine/1");
    assert_eq!(verdicts[0]["reward"], 1.0);
}

/// Exit code 2 and a one-line `error:` naming the bad value, no backtrace.
fn assert_bad_input(args: &[&str], needle: &str) {
    let out = verity(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{err} lacks {needle}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn bad_input_exits_2_with_a_named_error() {
    assert_bad_input(
        &["tasks", "show", "nope", "--level", "1"],
        "unknown task 'nope'",
    );
    assert_bad_input(
        &["tasks", "show", "arith", "--level", "99"],
        "levels 1..=8, not 99",
    );
    assert_bad_input(
        &[
            "tasks", "export", "--task", "add", "--level", "3", "--split", "heldout", "--n", "101",
        ],
        "not index 100",
    );
    assert_bad_input(&["tasks", "export", "--task", "add"], "--level");
    assert_bad_input(
        &[
            "tasks", "export", "--task", "add", "--level", "1", "--split", "test", "--n", "1",
        ],
        "test",
    );
    let missing = scratch("missing").join("nothing.jsonl");
    assert_bad_input(
        &["tasks", "check", missing.to_str().unwrap()],
        "nothing.jsonl",
    );
}

#[test]
fn a_malformed_check_line_names_its_line_number() {
    let dir = scratch("malformed");
    let file = dir.join("bad.jsonl");
    let good = "{\"prompt\":\"1+1?\",\"answer\":\"2\",\"verifier\":\"number\",\"completion\":\"<answer>2</answer>\"}";
    std::fs::write(&file, format!("{good}\n\n{good}\n{{\"prompt\": 3}}\n")).unwrap();
    assert_bad_input(&["tasks", "check", file.to_str().unwrap()], "bad.jsonl:4:");
    std::fs::write(
        &file,
        format!("{good}\n{{\"prompt\":\"p\",\"answer\":\"1\",\"verifier\":\"number\"}}\n"),
    )
    .unwrap();
    assert_bad_input(
        &["tasks", "check", file.to_str().unwrap()],
        "bad.jsonl:2: missing field `completion`",
    );
}

#[test]
fn a_write_failure_exits_1() {
    let dir = scratch("unwritable");
    let target = dir.join("no/such/folder/out.jsonl");
    let out = verity(&[
        "tasks",
        "export",
        "--task",
        "add",
        "--level",
        "1",
        "--split",
        "train",
        "--n",
        "1",
        "--out",
        target.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: cannot write"), "{err}");
    assert!(err.contains("\ncaused by: "), "{err}");
}
