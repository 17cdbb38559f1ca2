//! Reproduces `tests/fixtures/sampler_correction.json`, written by
//! `scripts/sampler_correction_fixtures.py` from TRL 1.16: the weights TRL
//! gives vLLM's rollouts (`importance_sampling_ratio` in every
//! `vllm_importance_sampling_mode`, with its logged min / mean / max) and
//! the loss and gradient of TRL's `_compute_loss` with them, on-policy, for
//! a sampler whose log-probs differ from the trained model's (one token
//! unscorable, NaN; junk in the padding).
//!
//! Tolerances as the variant fixtures': 1e-6 relative, floor 1e-12, in f64.
//! A weight applied after the KL term, per token where it belongs per
//! completion, or a bound applied to the wrong side fails by far more.

use std::path::PathBuf;

mod common;
use common::values;

use candle_core::{Device, Tensor, Var};
use serde::Deserialize;
use trainer::{
    grpo_loss, sampler_weights, Accumulation, LossConfig, LossInputs, LossType, SamplerCorrection,
};

type Matrix = Vec<Vec<f64>>;

#[derive(Deserialize)]
struct Fixture {
    trl_version: String,
    inputs: Inputs,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Inputs {
    max_completion_length: usize,
    completion_mask: Matrix,
    advantages: Vec<f64>,
    new_logps: Matrix,
    ref_logps: Matrix,
    /// NaN where the sampler gave no log-prob (null in JSON).
    sampled_logps: Vec<Vec<Option<f64>>>,
}

#[derive(Deserialize)]
struct Case {
    mode: SamplerCorrection,
    clip_min: Option<f64>,
    clip_max: f64,
    loss_type: LossType,
    #[serde(default)]
    beta: f64,
    ratio: Matrix,
    spread: Spread,
    loss: f64,
    grad_wrt_new_logps: Matrix,
}

#[derive(Deserialize)]
struct Spread {
    min: f64,
    mean: f64,
    max: f64,
}

fn fixture() -> Fixture {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sampler_correction.json");
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn matrix(m: &Matrix) -> Tensor {
    let flat: Vec<f64> = m.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (m.len(), m[0].len()), &Device::Cpu).unwrap()
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = (1e-6 * w.abs()).max(1e-12);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g:e}, expected {w:e}"
        );
    }
}

#[test]
fn weights_and_their_spread_equal_trl() {
    let f = fixture();
    assert!(f.trl_version.starts_with("1."), "TRL {}", f.trl_version);
    let new = matrix(&f.inputs.new_logps);
    let sampled: Matrix = f
        .inputs
        .sampled_logps
        .iter()
        .map(|r| r.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
        .collect();
    let (sampled, mask) = (matrix(&sampled), matrix(&f.inputs.completion_mask));
    for case in &f.cases {
        let what = format!("{:?} {:?} {}", case.mode, case.clip_min, case.clip_max);
        let (weights, spread) = sampler_weights(
            case.mode,
            (case.clip_min, case.clip_max),
            &new,
            &sampled,
            &mask,
        )
        .unwrap()
        .expect("weights");
        let want: Vec<f64> = case.ratio.iter().flatten().copied().collect();
        assert_close(&format!("{what} weights"), &values(&weights), &want);
        assert_close(
            &format!("{what} min / mean / max"),
            &[spread.min, spread.mean(), spread.max],
            &[case.spread.min, case.spread.mean, case.spread.max],
        );
    }
}

#[test]
fn weighted_losses_and_gradients_equal_trl() {
    let f = fixture();
    let mask = matrix(&f.inputs.completion_mask);
    let (b, t) = mask.dims2().unwrap();
    let active = f
        .inputs
        .completion_mask
        .iter()
        .flatten()
        .filter(|&&m| m != 0.0)
        .count();
    let advantages = Tensor::from_vec(f.inputs.advantages.clone(), b, &Device::Cpu).unwrap();
    let reference = matrix(&f.inputs.ref_logps);
    for case in &f.cases {
        let cfg = LossConfig {
            loss_type: case.loss_type,
            beta: case.beta,
            max_completion_length: f.inputs.max_completion_length,
            sampler_correction: case.mode,
            sampler_correction_min: case.clip_min,
            sampler_correction_max: case.clip_max,
            ..LossConfig::default()
        };
        let new = Var::from_tensor(&matrix(&f.inputs.new_logps)).unwrap();
        let weights = matrix(&case.ratio);
        assert_eq!(weights.dims2().unwrap(), (b, t));
        let inputs = LossInputs {
            new_logps: new.as_tensor(),
            old_logps: None,
            ref_logps: Some(&reference),
            entropies: None,
            advantages: &advantages,
            completion_mask: &mask,
            sampler_weights: Some(&weights),
        };
        let out = grpo_loss(&cfg, &inputs, Accumulation::single(active)).unwrap();
        let grad = values(out.loss.backward().unwrap().get(&new).unwrap());
        let what = format!("{:?} {:?}", case.mode, case.loss_type);
        assert_close(&format!("{what} loss"), &values(&out.loss), &[case.loss]);
        let want: Vec<f64> = case.grad_wrt_new_logps.iter().flatten().copied().collect();
        assert_close(&format!("{what} gradient"), &grad, &want);
    }
}
