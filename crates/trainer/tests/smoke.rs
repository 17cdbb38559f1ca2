//! End to end on a micro model: SFT a few steps, GRPO a few steps with most
//! options on, evaluate, checkpoint; then check what the run folder holds.

use std::path::Path;

use serde_json::Value;
use trainer::{train, Config, Phase, Silent, TrainerState};

/// A micro run exercising micro-batches, a reference model, several updates
/// per batch, dynamic sampling, shaping, periodic evals and checkpoints.
fn micro_config(out_dir: &Path, extra: &str) -> Config {
    let text = format!(
        r#"
[run]
name = "micro"
out_dir = "{}"
seed = 11
threads = 1

[model]
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
max_position_embeddings = 96

[tasks]
mixture = [{{ task = "add", level = 1 }}, {{ task = "add", level = 2, weight = 0.5 }}]

[sft]
steps = 3
batch_size = 8
micro_batches = 2
lr = 3e-3

[grpo]
steps = 2
batch_size = 8
group_size = 4
micro_batches = 2
max_completion_length = 24
beta = 0.04
num_iterations = 2
dynamic_sampling = true
max_resample_rounds = 1
format_weight = 0.1
overlong_buffer = 8
mask_truncated_completions = true

[eval]
every = 1
problems = 4
samples = 2
k = 2

[checkpoint]
every = 2

[log]
samples_per_step = 3
{extra}
"#,
        out_dir.display()
    );
    Config::from_toml(&text, "micro.toml", "micro", &[]).unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every number in `v` is finite (JSON has no NaN: serde writes it as null,
/// so nulls are allowed only where listed).
fn assert_finite(v: &Value, nullable: &[&str], at: &str) {
    match v {
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{at}: {n}"),
        Value::Null => assert!(nullable.iter().any(|k| at.ends_with(k)), "{at} is null"),
        Value::Array(items) => items.iter().for_each(|x| assert_finite(x, nullable, at)),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, x)| assert_finite(x, nullable, &format!("{at}.{k}"))),
        _ => {}
    }
}

#[test]
fn micro_run_writes_finite_metrics_samples_evals_and_checkpoints() {
    let out = tempfile::tempdir().unwrap();
    let config = micro_config(out.path(), "");
    let summary = train(&config, &mut Silent).unwrap();
    let run = out.path().join("micro");
    assert_eq!(summary.run_dir, run);

    // 3 SFT steps, then 2 GRPO steps of 2 updates each.
    assert_eq!(summary.state.global_step, 3 + 2 * 2);
    let metrics = lines(&run.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 5);
    for m in &metrics {
        assert_finite(m, &[], "metrics");
    }
    assert_eq!(metrics[0]["phase"], "sft");
    assert_eq!(metrics[4]["phase"], "grpo");
    assert_eq!(metrics[4]["global_step"], 7);
    for key in [
        "reward",
        "reward_std",
        "accuracy",
        "format_rate",
        "completions/mean_length",
        "completions/max_length",
        "completions/clipped_ratio",
        "kl",
        "entropy",
        "clip_ratio/region_mean",
        "frac_reward_zero_std",
        "learning_rate",
        "grad_norm",
        "tokens_per_s",
        "rollout_s",
        "update_s",
        "time/generation_s",
        "time/reference_s",
        "time/loss_forward_s",
        "time/backward_s",
        "time/optimizer_s",
        "peak_rss_mb",
    ] {
        assert!(metrics[4].get(key).is_some(), "metrics lack {key}");
    }

    let samples = lines(&run.join("samples.jsonl"));
    assert_eq!(samples.len(), 2 * 3);
    for s in &samples {
        assert_finite(s, &["verdict.extracted"], "samples");
        assert!(s["verdict"]["reason"].is_string());
        assert!(s["prompt"].as_str().unwrap().starts_with("What is "));
    }

    // SFT end, GRPO step 0 (the same model), after step 1, and the end.
    let evals = lines(&run.join("eval.jsonl"));
    let at: Vec<(String, u64)> = evals
        .iter()
        .map(|e| {
            (
                e["phase"].as_str().unwrap().to_string(),
                e["step"].as_u64().unwrap(),
            )
        })
        .collect();
    let at: Vec<(&str, u64)> = at.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    assert_eq!(at, [("sft", 3), ("grpo", 0), ("grpo", 1), ("grpo", 2)]);
    assert_eq!(evals[0]["pass_at_1"], evals[1]["pass_at_1"]);
    for e in &evals {
        assert_finite(e, &["verdict.extracted"], "eval");
        // The best and worst greedy completion of each of the 2 tasks and levels.
        let examples = e["examples"].as_array().expect("examples");
        assert!((2..=4).contains(&examples.len()), "{examples:?}");
        assert_eq!(e["k"], 2);
        assert_eq!(e["problems"], 8);
        let tasks = e["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0]["task"], "add");
    }
    assert_eq!(summary.evals.len(), 4);
    assert!(summary.grpo_gain().is_some());

    // Every 2 steps of a phase (SFT step 2) and at each phase end (3 and
    // 3 + 2 * 2; GRPO's step 2 is its end).
    let mut checkpoints: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    checkpoints.sort();
    assert_eq!(checkpoints, ["step-2", "step-3", "step-7"]);
    let state = TrainerState::read(&run.join("checkpoints/step-7")).unwrap();
    assert_eq!(state.phase, Phase::Grpo);
    assert!(state.sft.finished && state.grpo.finished);
    assert_eq!(state.sft.data_cursor, 24);
    assert!(state.grpo.data_cursor >= 4, "{state:?}");

    // The run folder holds the resolved config, which loads back unchanged.
    let saved = run.join("config.toml");
    assert_eq!(Config::load(&saved, &[]).unwrap(), config);
}

/// A log line without its wall times and memory peaks.
fn without_measurements(mut m: Value) -> Value {
    if let Value::Object(map) = &mut m {
        map.retain(|k, _| !trainer::is_measurement(k));
    }
    m
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let runs: Vec<Vec<Value>> = (0..2)
        .map(|_| {
            let out = tempfile::tempdir().unwrap();
            let config = micro_config(out.path(), "");
            train(&config, &mut Silent).unwrap();
            let run = out.path().join("micro");
            let mut all = lines(&run.join("metrics.jsonl"));
            all.extend(lines(&run.join("samples.jsonl")));
            all.extend(lines(&run.join("eval.jsonl")));
            all.into_iter().map(without_measurements).collect()
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
}

/// GRPO rollouts and evaluations decoded in bfloat16: the run is as
/// reproducible as in float32 and recorded in the resolved config; the
/// tokens were sampled from a bfloat16 model, whose log-probs lie further
/// from the trained float32 model's than the float32 decoder's do.
#[test]
fn bfloat16_decoding_runs_reproducibly() {
    let run = |precision| {
        let out = tempfile::tempdir().unwrap();
        let mut config = micro_config(out.path(), "");
        config.run.decode_precision = precision;
        train(&config, &mut Silent).unwrap();
        let run = out.path().join("micro");
        let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
        let metrics = lines(&run.join("metrics.jsonl"));
        let gaps: Vec<f64> = metrics
            .iter()
            .filter_map(|m| m["sampling/sampling_logp_difference/mean"].as_f64())
            .collect();
        let mut all = metrics;
        all.extend(lines(&run.join("samples.jsonl")));
        all.extend(lines(&run.join("eval.jsonl")));
        let all: Vec<Value> = all.into_iter().map(without_measurements).collect();
        (resolved, all, gaps)
    };
    let (resolved, bf16, bf16_gaps) = run(policy::Precision::Bfloat16);
    assert!(
        resolved.contains("decode_precision = \"bfloat16\""),
        "{resolved}"
    );
    assert_eq!(bf16, run(policy::Precision::Bfloat16).1);
    let (_, _, f32_gaps) = run(policy::Precision::Float32);
    assert_eq!((bf16_gaps.len(), f32_gaps.len()), (2, 2));
    for (bf16, f32) in bf16_gaps.iter().zip(&f32_gaps) {
        assert!(
            *f32 < 1e-5,
            "float32 decoder off the trained model by {f32}"
        );
        assert!(*bf16 > 1e-4 && *bf16 > 30.0 * f32, "bf16 {bf16}, f32 {f32}");
    }
}

/// The KL reference scores through the CPU decoder: before GRPO's first
/// update the policy is the reference, so the first step's KL is 0 up to
/// the float32 decoder's rounding, and of the order of bfloat16's rounding
/// squared with a bfloat16 reference; each run is reproducible.
#[test]
fn the_reference_scores_the_starting_policy() {
    let run = |precision| {
        let out = tempfile::tempdir().unwrap();
        let mut config = micro_config(out.path(), "");
        config.grpo.num_iterations = 1;
        config.grpo.reference_precision = precision;
        train(&config, &mut Silent).unwrap();
        let metrics = lines(&out.path().join("micro").join("metrics.jsonl"));
        let kl: Vec<f64> = metrics
            .iter()
            .filter(|m| m["phase"] == "grpo")
            .map(|m| m["kl"].as_f64().unwrap())
            .collect();
        (
            kl,
            metrics
                .into_iter()
                .map(without_measurements)
                .collect::<Vec<_>>(),
        )
    };
    let (f32_kl, _) = run(policy::Precision::Float32);
    let (bf16_kl, bf16) = run(policy::Precision::Bfloat16);
    assert_eq!((f32_kl.len(), bf16_kl.len()), (2, 2));
    // float32's k3 rounds to about 1e-10 per token at most on average.
    assert!(
        f32_kl[0].abs() < 1e-8,
        "float32 reference: kl {}",
        f32_kl[0]
    );
    assert!(
        bf16_kl[0] > 1e-9 && bf16_kl[0] < 1e-4,
        "bfloat16 reference: kl {}",
        bf16_kl[0]
    );
    // After an update the policy has moved from its reference.
    assert!(f32_kl[1] > 1e-7, "float32 reference: kl {}", f32_kl[1]);
    assert_eq!(bf16, run(policy::Precision::Bfloat16).1);
}

/// The sampler correction weighs bfloat16 rollouts' policy loss (two
/// updates per batch, so the first update's weights are kept for the
/// second) and logs TRL's spread of the weights; without it none is logged.
#[test]
fn sampler_correction_weighs_bfloat16_rollouts() {
    let run = |correction| {
        let out = tempfile::tempdir().unwrap();
        let mut config = micro_config(out.path(), "");
        config.run.decode_precision = policy::Precision::Bfloat16;
        config.grpo.sampler_correction = correction;
        config.grpo.num_iterations = 2;
        train(&config, &mut Silent).unwrap();
        lines(&out.path().join("micro").join("metrics.jsonl"))
    };
    let key = |stat: &str| format!("sampling/importance_sampling_ratio/{stat}");
    let grpo = |metrics: Vec<Value>| -> Vec<Value> {
        metrics
            .into_iter()
            .filter(|m| m["phase"] == "grpo")
            .collect()
    };
    let weighed = grpo(run(trainer::SamplerCorrection::TokenTruncate));
    assert_eq!(weighed.len(), 2);
    for m in &weighed {
        let stat = |s: &str| m[key(s).as_str()].as_f64().unwrap();
        let (min, mean, max) = (stat("min"), stat("mean"), stat("max"));
        assert!(min <= mean && mean <= max && max <= 3.0, "{m}");
        // Per-token gaps of about 1e-2: weights near 1, not all exactly 1.
        assert!((mean - 1.0).abs() < 0.05 && max > min, "{m}");
        assert!(m["loss"].as_f64().unwrap().is_finite(), "{m}");
    }
    for m in grpo(run(trainer::SamplerCorrection::None)) {
        assert!(m.get(key("mean")).is_none(), "{m}");
    }
}

#[test]
fn a_used_run_folder_is_not_overwritten() {
    let out = tempfile::tempdir().unwrap();
    let config = micro_config(out.path(), "");
    let run = out.path().join("micro");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("metrics.jsonl"), "{}\n").unwrap();
    let err = train(&config, &mut Silent).unwrap_err();
    assert!(err.is_usage());
    assert!(err.to_string().contains("already holds a run"), "{err}");
}

/// Every GRPO variant runs end to end (micro-batches, a reference model and
/// two updates per batch, so ratios leave 1 and the KL has a reference) and
/// logs finite metrics; CISPO logs its clip fraction.
#[test]
fn every_variant_trains_with_finite_metrics() {
    use trainer::{AdvantageEstimator, ImportanceSampling, KlEstimator, LossType};
    type Edit = fn(&mut trainer::GrpoSection);
    let variants: [(&str, Edit); 5] = [
        ("gspo", |g| {
            g.loss_type = LossType::Grpo;
            g.importance_sampling_level = ImportanceSampling::Sequence;
            g.epsilon_low = 3e-4;
            g.epsilon_high = 4e-4;
        }),
        ("cispo", |g| {
            g.loss_type = LossType::Cispo;
            g.epsilon_high = 5.0;
            g.kl_estimator = KlEstimator::K1;
            g.advantage = AdvantageEstimator::Rloo;
        }),
        ("sapo", |g| {
            g.loss_type = LossType::Sapo;
            g.top_entropy_quantile = 0.2;
            g.kl_estimator = KlEstimator::K2;
            g.advantage = AdvantageEstimator::ReinforcePlusPlus;
        }),
        ("dapo", |g| {
            g.epsilon_high = 0.28;
            g.delta = Some(1.5);
            g.off_policy_mask_threshold = Some(0.01);
            g.advantage = AdvantageEstimator::ReinforcePlusPlusBaseline;
        }),
        ("bnpo", |g| {
            g.loss_type = LossType::Bnpo;
            g.top_entropy_quantile = 0.5;
            g.use_bias_correction_kl = false;
        }),
    ];
    for (name, edit) in variants {
        let out = tempfile::tempdir().unwrap();
        let mut config = micro_config(out.path(), "");
        config.eval.every = 0;
        edit(&mut config.grpo);
        let summary = train(&config, &mut Silent).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.state.global_step, 3 + 2 * 2, "{name}");
        let metrics = lines(&out.path().join("micro/metrics.jsonl"));
        for m in &metrics[3..] {
            assert_finite(m, &[], name);
            assert!(m.get("skipped").is_none(), "{name}: {m}");
            assert!(m["grad_norm"].as_f64().unwrap() > 0.0, "{name}: {m}");
            assert_eq!(
                m.get("cispo_clip_ratio").is_some(),
                name == "cispo",
                "{name}: {m}"
            );
        }
    }
}

/// `sft.mixture` replaces what SFT trains on (here 3-digit sums, whose worked
/// solutions are longer) and leaves GRPO and evaluation on `tasks.mixture`.
#[test]
fn sft_can_train_on_its_own_mixture() {
    let sft_tokens = |sft_mixture: Vec<tasks::EntrySpec>| {
        let out = tempfile::tempdir().unwrap();
        let mut config = micro_config(out.path(), "");
        config.tasks.mixture.truncate(1);
        config.sft.mixture = sft_mixture;
        config.grpo.steps = 1;
        train(&config, &mut Silent).unwrap();
        let metrics = lines(&out.path().join("micro/metrics.jsonl"));
        let evals = lines(&out.path().join("micro/eval.jsonl"));
        assert!(
            evals.iter().all(|e| e["tasks"][0]["level"] == 1),
            "{evals:?}"
        );
        metrics[0]["num_tokens"].as_u64().unwrap()
    };
    let own = sft_tokens(vec![tasks::EntrySpec {
        task: Some("add".into()),
        level: Some(3),
        jsonl: None,
        weight: 1.0,
    }]);
    let shared = sft_tokens(Vec::new());
    assert!(own > 2 * shared, "{own} vs {shared}");
}
