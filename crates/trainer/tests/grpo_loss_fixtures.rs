//! Reproduces every case of `shared/fixtures/grpo_loss_cases.json`: advantages
//! computed as TRL 1.16 computes them, and the GRPO loss of each config and
//! loss type, its gradient with respect to the new log-probs, the split into
//! two accumulated micro-batches and the logged metrics.
//!
//! Tolerance: 1e-6 relative in f64 (with an absolute floor of 1e-12 for
//! values that are exactly zero). TRL itself matches these numbers to 6.4e-9
//! in float64, so any formula slip (biased std, a wrong denominator, the KL
//! gradient without the ratio) fails by orders of magnitude more. The f32
//! run, the training dtype, is held to 1e-5 relative (absolute floor 1e-7).

use std::collections::BTreeMap;
use std::path::PathBuf;

mod common;
use common::values;

use candle_core::{DType, Device, Tensor, Var};
use serde::Deserialize;
use trainer::{
    compute_advantages, grpo_loss, per_token_loss, Accumulation, LossConfig, LossInputs, LossType,
    ScaleRewards,
};

const REL_TOL: f64 = 1e-6;
const ABS_FLOOR: f64 = 1e-12;
const REL_TOL_F32: f64 = 1e-5;
const ABS_FLOOR_F32: f64 = 1e-7;

type Matrix = Vec<Vec<f64>>;

/// The loss types this fixture covers (the clipped surrogate's four ways to
/// average; the others are in grpo_variant_fixtures.rs).
const CLIPPED_LOSSES: [LossType; 4] = [
    LossType::Grpo,
    LossType::Bnpo,
    LossType::DrGrpo,
    LossType::Dapo,
];

#[derive(Deserialize)]
struct Fixture {
    trl_version: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    inputs: Inputs,
    expected: Expected,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    name: String,
    #[allow(dead_code)]
    description: String,
    num_generations: usize,
    completion_mask: Matrix,
    max_completion_length: usize,
    microbatches: Vec<Vec<u32>>,
    rewards: Vec<f64>,
    new_logps: Matrix,
    old_logps: Matrix,
    ref_logps: Matrix,
    configs: Vec<CaseConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseConfig {
    name: String,
    epsilon_low: f64,
    epsilon_high: f64,
    beta: f64,
    use_bias_correction_kl: bool,
}

/// Unknown fields are errors: a value added to the fixture must be checked
/// here, not skipped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    advantages: Vec<f64>,
    advantages_biased_std: Vec<f64>,
    advantages_scale_none: Vec<f64>,
    advantages_scale_batch: Vec<f64>,
    group_mean: Vec<f64>,
    group_std_unbiased: Vec<f64>,
    group_std_biased: Vec<f64>,
    ratio: Matrix,
    per_token_kl_k3: Matrix,
    per_token_kl_k3_times_ratio: Matrix,
    configs: Vec<ExpectedConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedConfig {
    name: String,
    #[allow(dead_code)]
    epsilon_low: f64,
    #[allow(dead_code)]
    epsilon_high: f64,
    #[allow(dead_code)]
    beta: f64,
    #[allow(dead_code)]
    use_bias_correction_kl: bool,
    per_token_loss: Matrix,
    loss: BTreeMap<String, f64>,
    grad_wrt_new_logps: BTreeMap<String, Matrix>,
    microbatch_losses: BTreeMap<String, Vec<f64>>,
    microbatch_losses_sum: BTreeMap<String, f64>,
    metric_kl: Option<f64>,
    metric_clip_ratio_low_mean: f64,
    metric_clip_ratio_high_mean: f64,
}

/// The fixture lives beside the workspace: `<workspace>/../shared/fixtures`.
fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/grpo_loss_cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let fixture: Fixture = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not the expected layout: {e}", path.display()));
    assert_eq!(fixture.trl_version, "1.16.0");
    assert_eq!(fixture.cases.len(), 4, "the fixture holds 4 cases");
    fixture
}

fn close(got: f64, want: f64, rel: f64, floor: f64) -> bool {
    (got - want).abs() <= rel * want.abs() + floor
}

fn assert_close_with(what: &str, got: &[f64], want: &[f64], rel: f64, floor: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(g, w, rel, floor),
            "{what}[{i}]: got {g:e}, expected {w:e}\n  got      {got:?}\n  expected {want:?}"
        );
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_close_with(what, got, want, REL_TOL, ABS_FLOOR);
}

fn flat(m: &Matrix) -> Vec<f64> {
    m.iter().flatten().copied().collect()
}

fn matrix(m: &Matrix, dtype: DType) -> Tensor {
    let (rows, cols) = (m.len(), m[0].len());
    Tensor::from_vec(flat(m), (rows, cols), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

fn loss_config(inputs: &Inputs, cfg: &CaseConfig, loss_type: LossType) -> LossConfig {
    LossConfig {
        loss_type,
        epsilon_low: cfg.epsilon_low,
        epsilon_high: cfg.epsilon_high,
        beta: cfg.beta,
        use_bias_correction_kl: cfg.use_bias_correction_kl,
        max_completion_length: inputs.max_completion_length,
        ..LossConfig::default()
    }
}

fn active_tokens(inputs: &Inputs) -> usize {
    flat(&inputs.completion_mask)
        .iter()
        .filter(|&&m| m != 0.0)
        .count()
}

/// The case's tensors in `dtype`, with `new` as a trainable variable and the
/// fixture's advantages (so loss checks do not hinge on the advantage code).
struct Batch {
    new: Var,
    old: Tensor,
    reference: Tensor,
    advantages: Tensor,
    mask: Tensor,
}

impl Batch {
    fn new(case: &Case, dtype: DType) -> Self {
        let inputs = &case.inputs;
        Batch {
            new: Var::from_tensor(&matrix(&inputs.new_logps, dtype)).unwrap(),
            old: matrix(&inputs.old_logps, dtype),
            reference: matrix(&inputs.ref_logps, dtype),
            advantages: Tensor::new(case.expected.advantages.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
            mask: matrix(&inputs.completion_mask, dtype),
        }
    }

    fn inputs(&self) -> LossInputs<'_> {
        LossInputs {
            new_logps: self.new.as_tensor(),
            old_logps: Some(&self.old),
            ref_logps: Some(&self.reference),
            entropies: None,
            advantages: &self.advantages,
            completion_mask: &self.mask,
            sampler_weights: None,
        }
    }
}

fn loss_name(lt: LossType) -> &'static str {
    lt.as_str()
}

/// TRL 1.16's `scale_rewards="batch"` centres on the GROUP mean and divides
/// by the batch std (`grpo_trainer.py`, `sum_then_normalize`). The fixture's
/// `advantages_scale_batch` centres on the BATCH mean instead; the two agree
/// only when every group has the batch mean. This takes the fixture's
/// denominator `std + 1e-4` (recovered from its own numbers, and checked to be
/// one value for the whole batch) and re-centres on the fixture's group means.
fn trl_batch_advantages(inputs: &Inputs, exp: &Expected) -> Vec<f64> {
    let r = &inputs.rewards;
    let batch_mean = r.iter().sum::<f64>() / r.len() as f64;
    let denominators: Vec<f64> = r
        .iter()
        .zip(&exp.advantages_scale_batch)
        .filter(|(_, a)| **a != 0.0)
        .map(|(ri, a)| (ri - batch_mean) / a)
        .collect();
    let d = denominators[0];
    assert_close(
        &format!("{}: fixture batch variant has one denominator", inputs.name),
        &denominators,
        &vec![d; denominators.len()],
    );
    let group_means_equal_batch_mean = exp
        .group_mean
        .iter()
        .all(|m| close(*m, batch_mean, 1e-12, 0.0));
    let trl: Vec<f64> = r
        .iter()
        .zip(&exp.group_mean)
        .map(|(ri, m)| (ri - m) / d)
        .collect();
    let same = trl
        .iter()
        .zip(&exp.advantages_scale_batch)
        .all(|(a, b)| close(*a, *b, REL_TOL, ABS_FLOOR));
    assert_eq!(
        same, group_means_equal_batch_mean,
        "{}: the fixture's batch variant should equal TRL's exactly when group means equal the batch mean",
        inputs.name
    );
    trl
}

#[test]
fn advantages_match_trl_with_unbiased_group_std() {
    for case in fixture().cases {
        let (inputs, exp) = (&case.inputs, &case.expected);
        let g = inputs.num_generations;
        let adv = compute_advantages(&inputs.rewards, g, ScaleRewards::Group).unwrap();
        let name = &inputs.name;
        assert_close(&format!("{name}: advantages"), &adv.values, &exp.advantages);
        // The fixture repeats the group statistics per completion.
        let per_completion = |xs: &[f64]| -> Vec<f64> {
            xs.iter().flat_map(|&x| std::iter::repeat_n(x, g)).collect()
        };
        let mean = per_completion(&adv.group_mean);
        let std = per_completion(&adv.group_std);
        assert_close(&format!("{name}: group mean"), &mean, &exp.group_mean);
        assert_close(&format!("{name}: group std"), &std, &exp.group_std_unbiased);

        let none = compute_advantages(&inputs.rewards, g, ScaleRewards::None).unwrap();
        assert_close(
            &format!("{name}: scale none"),
            &none.values,
            &exp.advantages_scale_none,
        );
        let batch = compute_advantages(&inputs.rewards, g, ScaleRewards::Batch).unwrap();
        assert_close(
            &format!("{name}: scale batch"),
            &batch.values,
            &trl_batch_advantages(inputs, exp),
        );

        // verity has no biased-std mode; the fixture's biased numbers follow
        // from its group statistics, and the unbiased ones are far from them.
        let biased: Vec<f64> = (0..inputs.rewards.len())
            .map(|i| {
                let centred = inputs.rewards[i] - exp.group_mean[i];
                if exp.group_std_biased[i] == 0.0 {
                    0.0
                } else {
                    centred / (exp.group_std_biased[i] + 1e-4)
                }
            })
            .collect();
        assert_close(
            &format!("{name}: biased-std advantages (fixture self-check)"),
            &biased,
            &exp.advantages_biased_std,
        );
        let n = g as f64;
        let biased_std: Vec<f64> = std.iter().map(|s| s * ((n - 1.0) / n).sqrt()).collect();
        assert_close(
            &format!("{name}: biased std from unbiased"),
            &biased_std,
            &exp.group_std_biased,
        );
        let differs = adv
            .values
            .iter()
            .zip(&exp.advantages_biased_std)
            .any(|(a, b)| !close(*a, *b, 1e-2, 0.0));
        assert!(
            differs,
            "{name}: biased and unbiased advantages must differ"
        );

        let zero_groups = exp
            .group_std_unbiased
            .chunks(g)
            .filter(|s| s[0] == 0.0)
            .count();
        assert_eq!(adv.num_zero_std(), zero_groups, "{name}");
        assert_eq!(
            adv.frac_reward_zero_std(),
            zero_groups as f64 / adv.num_groups() as f64
        );
    }
}

#[test]
fn ratio_kl_and_per_token_loss_match() {
    for case in fixture().cases {
        let (inputs, exp) = (&case.inputs, &case.expected);
        let batch = Batch::new(&case, DType::F64);
        for (cfg, want) in inputs.configs.iter().zip(&exp.configs) {
            assert_eq!(cfg.name, want.name);
            let what = format!("{} / {}", inputs.name, cfg.name);
            let lc = loss_config(inputs, cfg, LossType::Dapo);
            let per_token = per_token_loss(&lc, &batch.inputs()).unwrap();
            let masked_ratio = (&per_token.ratio * &per_token.mask).unwrap();
            assert_close(
                &format!("{what}: ratio"),
                &values(&masked_ratio),
                &flat(&exp.ratio),
            );
            assert_close(
                &format!("{what}: per-token loss"),
                &values(&per_token.loss),
                &flat(&want.per_token_loss),
            );
            match (&per_token.kl, cfg.beta) {
                (None, beta) => assert_eq!(beta, 0.0, "{what}: KL missing"),
                (Some(kl), _) => {
                    let want_kl = if cfg.use_bias_correction_kl {
                        &exp.per_token_kl_k3_times_ratio
                    } else {
                        &exp.per_token_kl_k3
                    };
                    assert_close(&format!("{what}: KL"), &values(kl), &flat(want_kl));
                }
            }
        }
    }
}

#[test]
fn losses_gradients_and_metrics_match_for_every_loss_type() {
    for case in fixture().cases {
        let inputs = &case.inputs;
        let tokens = active_tokens(inputs);
        for (cfg, want) in inputs.configs.iter().zip(&case.expected.configs) {
            for lt in CLIPPED_LOSSES {
                let what = format!("{} / {} / {lt}", inputs.name, cfg.name);
                let batch = Batch::new(&case, DType::F64);
                let lc = loss_config(inputs, cfg, lt);
                let out = grpo_loss(&lc, &batch.inputs(), Accumulation::single(tokens)).unwrap();
                assert_close(
                    &format!("{what}: loss"),
                    &[scalar(&out.loss)],
                    &[want.loss[loss_name(lt)]],
                );
                let grads = out.loss.backward().unwrap();
                let grad = grads.get(&batch.new).expect("gradient reaches new_logps");
                assert_close(
                    &format!("{what}: d loss / d new_logps"),
                    &values(grad),
                    &flat(&want.grad_wrt_new_logps[loss_name(lt)]),
                );

                let m = out.metrics;
                match (m.kl, want.metric_kl) {
                    (Some(got), Some(exp)) => assert_close(&format!("{what}: kl"), &[got], &[exp]),
                    (got, exp) => assert_eq!(got, exp, "{what}: kl"),
                }
                let (low, high) = (
                    want.metric_clip_ratio_low_mean,
                    want.metric_clip_ratio_high_mean,
                );
                assert_close(&format!("{what}: clip low"), &[m.clip_ratio_low], &[low]);
                assert_close(&format!("{what}: clip high"), &[m.clip_ratio_high], &[high]);
                assert_close(
                    &format!("{what}: clip region"),
                    &[m.clip_ratio_region],
                    &[low + high],
                );
                assert_eq!(m.active_tokens, tokens, "{what}");
            }
        }
    }
}

/// Gradient accumulation: each micro-batch's loss is scaled so that the
/// gradients summed over both equal the step's gradient. For grpo, dr_grpo
/// and dapo that is the one-batch gradient; bnpo normalises by the tokens of
/// each micro-batch, so its rows come out scaled by `N / (N_m * ga)`.
#[test]
fn two_micro_batches_accumulate_the_expected_gradient() {
    for case in fixture().cases {
        let inputs = &case.inputs;
        let tokens = active_tokens(inputs);
        let ga = inputs.microbatches.len();
        assert_eq!(ga, 2);
        for (cfg, want) in inputs.configs.iter().zip(&case.expected.configs) {
            for lt in CLIPPED_LOSSES {
                let what = format!("{} / {} / {lt} (ga {ga})", inputs.name, cfg.name);
                let batch = Batch::new(&case, DType::F64);
                let lc = loss_config(inputs, cfg, lt);
                let accumulation = Accumulation {
                    micro_batches: ga,
                    active_tokens: tokens,
                };
                let mut accumulated = batch.new.zeros_like().unwrap();
                let mut losses = Vec::new();
                let mut row_scale = vec![1.0; inputs.rewards.len()];
                for rows in &inputs.microbatches {
                    let idx = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
                    let pick = |t: &Tensor| t.index_select(&idx, 0).unwrap();
                    let (new, old, reference) = (
                        pick(batch.new.as_tensor()),
                        pick(&batch.old),
                        pick(&batch.reference),
                    );
                    let (advantages, mask) = (pick(&batch.advantages), pick(&batch.mask));
                    let micro = LossInputs {
                        new_logps: &new,
                        old_logps: Some(&old),
                        ref_logps: Some(&reference),
                        entropies: None,
                        advantages: &advantages,
                        completion_mask: &mask,
                        sampler_weights: None,
                    };
                    let out = grpo_loss(&lc, &micro, accumulation).unwrap();
                    losses.push(scalar(&out.loss));
                    let grads = out.loss.backward().unwrap();
                    accumulated = (accumulated + grads.get(&batch.new).unwrap()).unwrap();
                    if lt == LossType::Bnpo {
                        let micro_tokens = scalar(&mask.sum_all().unwrap());
                        for &r in rows {
                            row_scale[r as usize] = tokens as f64 / (micro_tokens * ga as f64);
                        }
                    }
                }
                let name = loss_name(lt);
                assert_close(
                    &format!("{what}: micro-batch losses"),
                    &losses,
                    &want.microbatch_losses[name],
                );
                assert_close(
                    &format!("{what}: sum of micro-batch losses"),
                    &[losses.iter().sum()],
                    &[want.microbatch_losses_sum[name]],
                );
                let expected: Vec<f64> = want.grad_wrt_new_logps[name]
                    .iter()
                    .zip(&row_scale)
                    .flat_map(|(row, s)| row.iter().map(move |g| g * s))
                    .collect();
                assert_close(
                    &format!("{what}: accumulated gradient"),
                    &values(&accumulated),
                    &expected,
                );
            }
        }
    }
}

/// Training runs in f32: the same numbers, to f32 precision.
#[test]
fn f32_matches_to_single_precision() {
    for case in fixture().cases {
        let inputs = &case.inputs;
        let tokens = active_tokens(inputs);
        for (cfg, want) in inputs.configs.iter().zip(&case.expected.configs) {
            for lt in CLIPPED_LOSSES {
                let what = format!("{} / {} / {lt} (f32)", inputs.name, cfg.name);
                let batch = Batch::new(&case, DType::F32);
                let lc = loss_config(inputs, cfg, lt);
                let out = grpo_loss(&lc, &batch.inputs(), Accumulation::single(tokens)).unwrap();
                assert_eq!(out.loss.dtype(), DType::F32);
                let name = loss_name(lt);
                assert_close_with(
                    &format!("{what}: loss"),
                    &[scalar(&out.loss)],
                    &[want.loss[name]],
                    REL_TOL_F32,
                    ABS_FLOOR_F32,
                );
                let grads = out.loss.backward().unwrap();
                assert_close_with(
                    &format!("{what}: gradient"),
                    &values(grads.get(&batch.new).unwrap()),
                    &flat(&want.grad_wrt_new_logps[name]),
                    REL_TOL_F32,
                    ABS_FLOOR_F32,
                );
            }
        }
    }
}

/// On the first inner iteration the caller may pass no old log-probs: the
/// loss then uses `new` detached, which is what the on-policy case stores.
#[test]
fn on_policy_without_old_logps_matches_the_on_policy_case() {
    let fixture = fixture();
    let case = fixture
        .cases
        .iter()
        .find(|c| c.inputs.old_logps == c.inputs.new_logps)
        .expect("an on-policy case");
    let inputs = &case.inputs;
    for (cfg, want) in inputs.configs.iter().zip(&case.expected.configs) {
        for lt in CLIPPED_LOSSES {
            let batch = Batch::new(case, DType::F64);
            let on_policy = LossInputs {
                old_logps: None,
                ..batch.inputs()
            };
            let lc = loss_config(inputs, cfg, lt);
            let out =
                grpo_loss(&lc, &on_policy, Accumulation::single(active_tokens(inputs))).unwrap();
            let what = format!("{} / {} / {lt} (old = new.detach())", inputs.name, cfg.name);
            assert_close(&what, &[scalar(&out.loss)], &[want.loss[loss_name(lt)]]);
            let grads = out.loss.backward().unwrap();
            assert_close(
                &what,
                &values(grads.get(&batch.new).unwrap()),
                &flat(&want.grad_wrt_new_logps[loss_name(lt)]),
            );
        }
    }
}

/// The checks above can only catch a wrong formula if the fixture tells the
/// variants apart: loss types give different gradients, and off-policy the
/// bias-corrected KL gives a different gradient from plain k3.
#[test]
fn fixture_tells_the_variants_apart() {
    let fixture = fixture();
    for case in &fixture.cases {
        for want in &case.expected.configs {
            let grads: Vec<Vec<f64>> = CLIPPED_LOSSES
                .iter()
                .map(|lt| flat(&want.grad_wrt_new_logps[lt.as_str()]))
                .collect();
            for (i, a) in grads.iter().enumerate() {
                for b in &grads[i + 1..] {
                    // bnpo and dapo coincide on one micro-batch by definition.
                    if a == b {
                        continue;
                    }
                    assert!(a.iter().zip(b).any(|(x, y)| !close(*x, *y, 1e-3, 0.0)));
                }
            }
        }
        if case.inputs.old_logps != case.inputs.new_logps {
            let by_name = |suffix: &str| {
                case.expected
                    .configs
                    .iter()
                    .find(|c| c.name.ends_with(suffix))
                    .map(|c| flat(&c.grad_wrt_new_logps["dapo"]))
                    .unwrap()
            };
            let (corrected, plain) = (by_name("klIS"), by_name("k3"));
            assert!(corrected
                .iter()
                .zip(&plain)
                .any(|(x, y)| !close(*x, *y, 1e-4, 0.0)));
        }
    }
}
