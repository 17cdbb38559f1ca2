//! `verity report` driven through the real binary: where it writes, what it
//! prints, and exit code 2 with the reason for a folder that is not a run.

use std::path::Path;
use std::process::{Command, Output};

fn verity(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .current_dir(dir)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the verity binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tiny_run(dir: &Path, seed: u32) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.toml"), format!("[run]\nseed = {seed}\n")).unwrap();
    std::fs::write(
        dir.join("metrics.jsonl"),
        "{\"phase\":\"sft\",\"step\":1,\"global_step\":1,\"loss\":2.0}\n\
         {\"phase\":\"sft\",\"step\":2,\"global_step\":2,\"loss\":1.0}\n",
    )
    .unwrap();
}

#[test]
fn report_writes_where_asked_and_prints_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    tiny_run(&a, 1);
    tiny_run(&b, 2);

    let out = verity(dir.path(), &["report", "a"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        Path::new("a").join("report.html").to_str().unwrap()
    );
    assert!(a.join("report.html").is_file());

    let out = verity(dir.path(), &["report", "a", "b", "--out", "both.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "both.html");
    let html = std::fs::read_to_string(dir.path().join("both.html")).unwrap();
    assert!(html.contains("run.seed = 1") && html.contains("run.seed = 2"));
}

#[test]
fn a_folder_that_is_not_a_run_exits_with_code_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    tiny_run(&dir.path().join("a"), 1);
    for (args, reason) in [
        (
            vec!["report", "empty"],
            "not a run folder: it holds none of config.toml",
        ),
        (
            vec!["report", "a", "missing"],
            "missing: not a run folder: no such folder",
        ),
    ] {
        let out = verity(dir.path(), &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(reason),
            "{stderr}"
        );
        assert!(!stderr.contains("backtrace"), "{stderr}");
        assert!(text(&out.stdout).is_empty());
    }
    // Nothing was written for a failed report.
    assert!(!dir.path().join("report.html").exists());
    assert!(!dir.path().join("a/report.html").exists());
}
