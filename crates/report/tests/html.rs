//! The page's structure on hand-written run folders: a plot for every
//! quantity a run logged and none for the others, SVG that parses as XML,
//! nothing fetched from anywhere, text escaped, runs overlaid with the
//! settings that differ, and runs still going, stopped or resumed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use report::{render, write_report, RunLog};

/// One GRPO metrics line with every key the trainer writes.
fn grpo_line(global_step: u64, step: u64, kl: Option<f64>, extra: &str) -> String {
    let kl = kl.map_or("null".to_string(), |v| v.to_string());
    let r = 0.2 + 0.05 * step as f64;
    format!(
        "{{\"phase\":\"grpo\",\"step\":{step},\"global_step\":{global_step},\"loss\":0.01,\
         \"reward\":{r},\"reward_std\":0.3,\"accuracy\":{r},\"format_rate\":0.9,\
         \"completions/mean_length\":20.5,\"completions/min_length\":12,\"completions/max_length\":31,\
         \"completions/clipped_ratio\":0.0,\"kl\":{kl},\"entropy\":0.8,\"clip_ratio/low_mean\":0.0,\
         \"sampling/sampling_logp_difference/mean\":0.008,\
         \"clip_ratio/high_mean\":0.01,\"clip_ratio/region_mean\":0.01,\"frac_reward_zero_std\":0.25,\
         \"groups_resampled\":0,\"learning_rate\":0.0001,\"grad_norm\":0.5,\"num_tokens\":2000,\
         \"tokens_per_s\":900.0,\"rollout_s\":0.4,\"update_s\":0.3,\"step_s\":0.7{extra}}}\n"
    )
}

fn sft_line(global_step: u64) -> String {
    format!(
        "{{\"phase\":\"sft\",\"step\":{global_step},\"global_step\":{global_step},\"loss\":{},\
         \"learning_rate\":0.001,\"grad_norm\":{},\"num_tokens\":400,\"tokens_per_s\":5000.0,\"step_s\":0.1}}\n",
        3.0 / global_step as f64,
        10.0 / global_step as f64
    )
}

fn eval_line(phase: &str, step: u64, global_step: u64, pass: f64, examples: bool) -> String {
    let examples = if examples {
        r#","examples":[{"problem_id":"add/1/heldout/0","prompt":"What is 2+3? <b>&</b>","completion":"<think>2+3=5</think><answer>5</answer>","verdict":{"reward":1.0,"format_ok":true,"extracted":"5","normalized":"5","reason":"correct"}},{"problem_id":"add/1/heldout/4","prompt":"What is 7+8?","completion":"<think>7+8=</think><answer>14</answer>","verdict":{"reward":0.0,"format_ok":true,"extracted":"14","normalized":"14","reason":"wrong answer"}}]"#
    } else {
        ""
    };
    format!(
        "{{\"phase\":\"{phase}\",\"step\":{step},\"global_step\":{global_step},\"k\":4,\
         \"problems\":20,\"pass_at_1\":{pass},\"pass_at_k\":{},\"format_rate\":0.95,\"seconds\":1.0,\
         \"tasks\":[{{\"task\":\"add\",\"level\":1,\"problems\":10,\"pass_at_1\":{pass},\"pass_at_k\":0.9,\"format_rate\":1.0}},\
         {{\"task\":\"sub\",\"level\":2,\"problems\":10,\"pass_at_1\":{pass},\"pass_at_k\":0.8,\"format_rate\":0.9}}]{examples}}}\n",
        (pass + 0.1).min(1.0)
    )
}

const SAMPLE: &str = r#"{"phase":"grpo","step":4,"problem_id":"add/1/train/9","prompt":"What is 1+1?","completion":"<think>1+1=2</think><answer>2</answer>","reward":1.0,"advantage":0.5,"length":14,"truncated":false,"verdict":{"reward":1.0,"format_ok":true,"extracted":"2","reason":"correct"}}
"#;

/// A finished run: 4 SFT steps, 4 GRPO steps, evaluations, samples; with
/// `curriculum`, levels per family; with `budgets`, a budget curve.
fn full_run(dir: &Path, lr: &str, curriculum: bool, budgets: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let config = format!(
        "[run]\nname = \"x\"\nseed = 1\n[sft]\nsteps = 4\n[grpo]\nsteps = 4\nlr = {lr}\nbeta = 0.04\n\
         [tasks]\nmixture = [{{ task = \"add\", level = 1 }}, {{ task = \"sub\", level = 2 }}]\n"
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let mut metrics: String = (1..=4).map(sft_line).collect();
    for step in 1..=4 {
        let extra = match curriculum {
            true => format!(",\"curriculum/add\":{},\"curriculum/sub\":2", 1 + step / 2),
            false => String::new(),
        };
        metrics.push_str(&grpo_line(
            4 + step,
            step,
            Some(0.001 * step as f64),
            &extra,
        ));
    }
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    let evals = [
        eval_line("sft", 2, 2, 0.1, false),
        eval_line("sft", 4, 4, 0.3, true),
        eval_line("grpo", 0, 4, 0.3, true),
        eval_line("grpo", 4, 8, 0.6, true),
    ];
    std::fs::write(dir.join("eval.jsonl"), evals.concat()).unwrap();
    std::fs::write(dir.join("samples.jsonl"), SAMPLE).unwrap();
    if budgets {
        let line = r#"{"checkpoint":"runs/x/checkpoints/step-8","phase":"grpo","step":4,"global_step":8,"k":4,"temperature":1.0,"seconds":2.0,"budgets":[{"max_new_tokens":8,"problems":20,"pass_at_1":0.0,"maj_at_k":0.0,"format_rate":0.0,"mean_length":8.0},{"max_new_tokens":32,"problems":20,"pass_at_1":0.5,"maj_at_k":0.6,"format_rate":0.9,"mean_length":20.0}]}
"#;
        std::fs::write(dir.join("budgets.jsonl"), line).unwrap();
    }
}

/// An SFT-only run still going: no GRPO, no samples, a half-written line.
fn sft_run(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.toml"), "[sft]\nsteps = 100\n").unwrap();
    let mut metrics: String = (1..=6).map(sft_line).collect();
    metrics.push_str("{\"phase\":\"sft\",\"step\":7,\"glo");
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    std::fs::write(dir.join("eval.jsonl"), eval_line("sft", 5, 5, 0.2, false)).unwrap();
}

fn page(dirs: &[PathBuf]) -> String {
    let runs: Vec<RunLog> = dirs.iter().map(|d| RunLog::read(d).unwrap()).collect();
    render(&runs).unwrap()
}

/// The `data-plot` ids of the page's figures.
fn plots(html: &str) -> BTreeSet<String> {
    html.split("data-plot=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

/// The inline `<svg …>…</svg>` elements (none nests another).
fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("a closed svg") + start + 6;
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

const STEP_PLOTS: [&str; 15] = [
    "heldout",
    "format",
    "reward",
    "zero-std",
    "length",
    "truncated",
    "kl",
    "entropy",
    "sampling-gap",
    "clip",
    "loss",
    "grad-norm",
    "lr",
    "time",
    "throughput",
];

#[test]
fn every_logged_quantity_gets_a_plot_and_no_other_does() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    full_run(&full, "1e-4", true, true);
    let mut want = set(&STEP_PLOTS);
    want.extend(set(&[
        "heldout-add-1",
        "heldout-sub-2",
        "curriculum-add",
        "curriculum-sub",
        "budgets-full",
    ]));
    let html = page(std::slice::from_ref(&full));
    assert_eq!(plots(&html), want);
    // groups_resampled is 0 throughout (dynamic sampling off): no plot.
    assert!(!html.contains("data-plot=\"resampled\""));
    // One svg per plot, plus the line samples of the keys.
    let charts = svgs(&html)
        .into_iter()
        .filter(|s| s.starts_with("<svg width=\"460\""))
        .count();
    assert_eq!(charts, want.len());

    let sft = dir.path().join("sft");
    sft_run(&sft);
    let html = page(std::slice::from_ref(&sft));
    let want = set(&[
        "heldout",
        "format",
        "loss",
        "grad-norm",
        "lr",
        "time",
        "throughput",
        "heldout-add-1",
        "heldout-sub-2",
    ]);
    assert_eq!(plots(&html), want);
    // Still going: the half-written line is left out and said so.
    assert!(html.contains("still being written"), "no note");
    assert!(html.contains("SFT step 6 of 100 (global 6)"));
    // No completions were logged: no completions table.
    assert!(!html.contains("data-table=\"eval-completions\""));
}

#[test]
fn svg_is_well_formed_and_nothing_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    full_run(&a, "1e-4", true, true);
    full_run(&b, "3e-4", false, false);
    let html = page(&[a, b]);
    let svgs = svgs(&html);
    assert!(svgs.len() > 20);
    for svg in &svgs {
        let doc = roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("{e}: {}", &svg[..svg.len().min(300)]));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert!(root.children().any(|n| n.is_element()), "an empty svg");
    }
    // The page as a whole is well-formed markup too (void elements closed).
    let body = html.trim_start_matches("<!DOCTYPE html>\n");
    roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}"));

    let lower = html.to_lowercase();
    for banned in [
        "<script",
        "<link",
        "<img",
        "<iframe",
        "@import",
        "url(",
        "@font-face",
    ] {
        assert!(!lower.contains(banned), "{banned}");
    }
    for attribute in ["src=", "href="] {
        for part in lower.split(attribute).skip(1) {
            let value = part.trim_start_matches(['"', '\'']);
            assert!(
                !(value.starts_with("http:")
                    || value.starts_with("https:")
                    || value.starts_with("//")),
                "{attribute}{}",
                &part[..part.len().min(60)]
            );
        }
    }
}

#[test]
fn completions_and_prompts_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    full_run(&run, "1e-4", false, false);
    let html = page(&[run]);
    assert!(!html.contains("<think>"));
    assert!(html.contains("&lt;think&gt;2+3=5&lt;/think&gt;&lt;answer&gt;5&lt;/answer&gt;"));
    assert!(html.contains("What is 2+3? &lt;b&gt;&amp;&lt;/b&gt;"));
    assert!(html.contains("data-table=\"eval-completions\""));
    assert!(html.contains("data-table=\"train-completions\""));
    assert!(html.contains("data-table=\"last-eval\""));
    assert!(html.contains("wrong answer"));
}

#[test]
fn overlaid_runs_get_a_colour_each_and_name_the_settings_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("lr-low"), dir.path().join("lr-high"));
    full_run(&a, "1e-4", false, false);
    full_run(&b, "3e-4", false, false);
    let html = page(&[a.clone(), b.clone()]);
    assert!(html.contains("grpo.lr = 0.0001") && html.contains("grpo.lr = 0.0003"));
    // Only the differing key is listed; run.name is not a setting.
    assert!(!html.contains("run.seed = 1;"));
    assert!(html.contains("<tr class=\"diff\"><td><code>grpo.lr</code>"));
    // The reward plot draws both runs, in their own colours.
    let reward = &html[html.find("data-plot=\"reward\"").unwrap()..];
    let reward = &reward[..reward.find("</figure>").unwrap()];
    for colour in ["#4E79A7", "#F28E2B"] {
        assert!(
            reward.contains(colour),
            "{colour} missing in the reward plot"
        );
    }
    // write_report writes the same page.
    let out = dir.path().join("both.html");
    write_report(&[a, b], &out).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), html);
}

#[test]
fn a_resumed_run_draws_each_step_once_with_its_later_record() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("resumed");
    full_run(&run, "1e-4", false, false);
    // The run was stopped after step 6, resumed from a checkpoint at step 5,
    // and wrote steps 6 to 8 again with other numbers.
    let mut metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first: String = metrics.lines().take(6).map(|l| format!("{l}\n")).collect();
    metrics = first;
    for step in 2..=4u64 {
        metrics.push_str(&grpo_line(4 + step, step, Some(0.5), ""));
    }
    std::fs::write(run.join("metrics.jsonl"), metrics).unwrap();
    let log = RunLog::read(&run).unwrap();
    let steps: Vec<u64> = log.steps.iter().map(|s| s.global_step).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(log.steps[5].values["kl"], 0.5);
    // The KL plot holds one point per step: the polyline has 4 vertices.
    let html = render(&[log]).unwrap();
    let kl = &html[html.find("data-plot=\"kl\"").unwrap()..];
    let kl = &kl[..kl.find("</figure>").unwrap()];
    let line = kl
        .split("<polyline")
        .find(|tag| tag.contains("stroke=\"#4E79A7\""))
        .expect("the KL line in the run's colour");
    let points = line.split("points=\"").nth(1).unwrap();
    let points = &points[..points.find('"').unwrap()];
    assert_eq!(points.split_whitespace().count(), 4, "{points}");
}
