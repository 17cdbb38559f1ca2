//! Reproduces `tests/fixtures/grpo_variants.json`, written by
//! `scripts/grpo_variant_fixtures.py` from TRL 1.16's own
//! `GRPOTrainer._compute_loss` (values and autograd gradients) and verl
//! 0.9's `core_algos` functions:
//!
//! - GSPO's sequence-level ratio, CISPO, SAPO, two-sided clipping (`delta`),
//!   entropy masking and off-policy sequence masking, with and without the KL
//!   term: loss, d loss / d new log-probs, the batch split into two
//!   accumulated micro-batches, and TRL's logged metrics;
//! - the same losses from verl where it has them (the script asserts TRL and
//!   verl agree on these inputs; verl's CISPO is called with
//!   `clip_ratio_low = 1, clip_ratio_high = 4`, its two-sided form of TRL's
//!   cap at `epsilon_high = 5`), and the k1 / k2 / k3 KL losses of verl's
//!   `ppo_loss` (TRL has only k3);
//! - RLOO advantages (TRL's `RLOOTrainer` and verl agree), REINFORCE++ and
//!   REINFORCE++-baseline (verl's functions), GRPO (TRL's).
//!
//! Tolerances: 1e-6 relative (absolute floor 1e-12) in f64, 1e-5 relative
//! (floor 1e-6) in f32. TRL and verl agree with each other to 1e-9 here, so
//! a formula slip (a missing stop-gradient, a token ratio where a sequence
//! ratio belongs, the wrong denominator) fails by orders of magnitude more.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod common;
use common::values;

use candle_core::{DType, Device, Tensor, Var};
use serde::Deserialize;
use trainer::{
    estimate_advantages, grpo_loss, per_token_loss, Accumulation, AdvantageEstimator,
    ImportanceSampling, KlEstimator, LossConfig, LossInputs, LossType, ScaleRewards,
};

type Matrix = Vec<Vec<f64>>;

#[derive(Deserialize)]
struct Fixture {
    trl_version: String,
    verl_version: Option<String>,
    inputs: Inputs,
    losses: Vec<LossCase>,
    advantages: Vec<AdvantageCase>,
    verl_losses: Vec<VerlLoss>,
    verl_kl: Vec<VerlKl>,
}

#[derive(Deserialize)]
struct Inputs {
    max_completion_length: usize,
    microbatches: Vec<Vec<u32>>,
    completion_mask: Matrix,
    advantages: Vec<f64>,
    new_logps: Matrix,
    old_logps: Matrix,
    ref_logps: Matrix,
    entropies: Matrix,
}

/// TRL's `GRPOConfig` fields of one case; absent ones take the values the
/// script defaults them to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    loss_type: LossType,
    importance_sampling_level: Option<ImportanceSampling>,
    epsilon_low: Option<f64>,
    epsilon_high: Option<f64>,
    beta: Option<f64>,
    use_bias_correction_kl: Option<bool>,
    delta: Option<f64>,
    top_entropy_quantile: Option<f64>,
    sapo_temperature_pos: Option<f64>,
    sapo_temperature_neg: Option<f64>,
    off_policy_mask_threshold: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LossCase {
    name: String,
    settings: Settings,
    loss: f64,
    grad_wrt_new_logps: Matrix,
    metrics: BTreeMap<String, f64>,
    microbatch_losses: Vec<f64>,
    microbatch_grad_wrt_new_logps: Matrix,
    #[allow(dead_code)]
    microbatch_metrics: Vec<BTreeMap<String, f64>>,
    entropy_mask: Option<Matrix>,
}

#[derive(Deserialize)]
struct VerlLoss {
    trl_config: String,
    verl: String,
    loss: f64,
    grad_wrt_new_logps: Matrix,
}

#[derive(Deserialize)]
struct VerlKl {
    kl_estimator: KlEstimator,
    beta: f64,
    loss: f64,
    grad_wrt_new_logps: Matrix,
    per_token_kl: Matrix,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvantageCase {
    name: String,
    rewards: Vec<f64>,
    group_size: usize,
    lengths: Vec<usize>,
    trl_grpo: Vec<f64>,
    trl_rloo: Vec<f64>,
    verl_rloo: Vec<f64>,
    verl_reinforce_plus_plus: Vec<f64>,
    verl_reinforce_plus_plus_baseline: Vec<f64>,
    verl_grpo: Vec<f64>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpo_variants.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let fixture: Fixture = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not the expected layout: {e}", path.display()));
    assert_eq!(fixture.trl_version, "1.16.0");
    assert_eq!(fixture.verl_version.as_deref(), Some("0.9.1"));
    assert_eq!(fixture.losses.len(), 17);
    fixture
}

fn assert_close_with(what: &str, got: &[f64], want: &[f64], rel: f64, floor: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs() + floor,
            "{what}[{i}]: got {g:e}, expected {w:e}\n  got      {got:?}\n  expected {want:?}"
        );
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_close_with(what, got, want, 1e-6, 1e-12);
}

fn flat(m: &Matrix) -> Vec<f64> {
    m.iter().flatten().copied().collect()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

fn loss_config(s: &Settings, max_completion_length: usize) -> LossConfig {
    LossConfig {
        loss_type: s.loss_type,
        importance_sampling: s.importance_sampling_level.unwrap_or_default(),
        epsilon_low: s.epsilon_low.unwrap_or(0.2),
        epsilon_high: s.epsilon_high.unwrap_or(0.2),
        delta: s.delta,
        sapo_temperature_pos: s.sapo_temperature_pos.unwrap_or(1.0),
        sapo_temperature_neg: s.sapo_temperature_neg.unwrap_or(1.05),
        beta: s.beta.unwrap_or(0.0),
        kl_estimator: KlEstimator::K3,
        use_bias_correction_kl: s.use_bias_correction_kl.unwrap_or(true),
        top_entropy_quantile: s.top_entropy_quantile.unwrap_or(1.0),
        off_policy_mask_threshold: s.off_policy_mask_threshold,
        max_completion_length,
        ..LossConfig::default()
    }
}

/// The fixture's rows `rows` as tensors in `dtype`, the new log-probs a
/// trainable variable.
struct Batch {
    new: Var,
    old: Tensor,
    reference: Tensor,
    entropies: Tensor,
    advantages: Tensor,
    mask: Tensor,
}

impl Batch {
    fn new(inputs: &Inputs, rows: &[u32], dtype: DType) -> Batch {
        let pick = |m: &Matrix| -> Tensor {
            let picked: Matrix = rows.iter().map(|&r| m[r as usize].clone()).collect();
            let (b, t) = (picked.len(), picked[0].len());
            Tensor::from_vec(flat(&picked), (b, t), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let advantages: Vec<f64> = rows
            .iter()
            .map(|&r| inputs.advantages[r as usize])
            .collect();
        Batch {
            new: Var::from_tensor(&pick(&inputs.new_logps)).unwrap(),
            old: pick(&inputs.old_logps),
            reference: pick(&inputs.ref_logps),
            entropies: pick(&inputs.entropies),
            advantages: Tensor::new(advantages.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
            mask: pick(&inputs.completion_mask),
        }
    }

    fn inputs(&self) -> LossInputs<'_> {
        LossInputs {
            new_logps: self.new.as_tensor(),
            old_logps: Some(&self.old),
            ref_logps: Some(&self.reference),
            entropies: Some(&self.entropies),
            advantages: &self.advantages,
            completion_mask: &self.mask,
            sampler_weights: None,
        }
    }
}

fn all_rows(inputs: &Inputs) -> Vec<u32> {
    (0..inputs.new_logps.len() as u32).collect()
}

fn active_tokens(inputs: &Inputs) -> usize {
    flat(&inputs.completion_mask)
        .iter()
        .filter(|&&m| m != 0.0)
        .count()
}

/// Loss and gradient of the whole batch as one micro-batch.
fn whole_batch(inputs: &Inputs, cfg: &LossConfig, dtype: DType) -> (f64, Vec<f64>) {
    let batch = Batch::new(inputs, &all_rows(inputs), dtype);
    let out = grpo_loss(
        cfg,
        &batch.inputs(),
        Accumulation::single(active_tokens(inputs)),
    )
    .unwrap();
    let grads = out.loss.backward().unwrap();
    let grad = values(grads.get(&batch.new).unwrap());
    (scalar(&out.loss), grad)
}

#[test]
fn losses_and_gradients_equal_trl() {
    let f = fixture();
    for case in &f.losses {
        let cfg = loss_config(&case.settings, f.inputs.max_completion_length);
        let (loss, grad) = whole_batch(&f.inputs, &cfg, DType::F64);
        assert_close(&format!("{} loss", case.name), &[loss], &[case.loss]);
        assert_close(
            &format!("{} gradient", case.name),
            &grad,
            &flat(&case.grad_wrt_new_logps),
        );
    }
}

#[test]
fn losses_and_gradients_equal_trl_in_f32() {
    let f = fixture();
    for case in &f.losses {
        let cfg = loss_config(&case.settings, f.inputs.max_completion_length);
        let (loss, grad) = whole_batch(&f.inputs, &cfg, DType::F32);
        let (rel, floor) = (1e-5, 1e-6);
        assert_close_with(
            &format!("{} f32 loss", case.name),
            &[loss],
            &[case.loss],
            rel,
            floor,
        );
        let want = flat(&case.grad_wrt_new_logps);
        assert_close_with(
            &format!("{} f32 gradient", case.name),
            &grad,
            &want,
            rel,
            floor,
        );
    }
}

/// Two micro-batches, gradients accumulated: each micro-batch's loss is
/// TRL's, and so is the summed gradient. With entropy masking the quantile is
/// taken per micro-batch, as TRL takes it per forward pass.
#[test]
fn accumulated_micro_batches_equal_trl() {
    let f = fixture();
    let total = active_tokens(&f.inputs);
    let width = f.inputs.new_logps[0].len();
    for case in &f.losses {
        let cfg = loss_config(&case.settings, f.inputs.max_completion_length);
        let accumulation = Accumulation {
            micro_batches: f.inputs.microbatches.len(),
            active_tokens: total,
        };
        let mut grad = vec![0.0; f.inputs.new_logps.len() * width];
        let mut losses = Vec::new();
        for rows in &f.inputs.microbatches {
            let batch = Batch::new(&f.inputs, rows, DType::F64);
            let out = grpo_loss(&cfg, &batch.inputs(), accumulation).unwrap();
            let g = values(out.loss.backward().unwrap().get(&batch.new).unwrap());
            for (i, &row) in rows.iter().enumerate() {
                let at = row as usize * width;
                grad[at..at + width].copy_from_slice(&g[i * width..(i + 1) * width]);
            }
            losses.push(scalar(&out.loss));
        }
        assert_close(
            &format!("{} micro-batch losses", case.name),
            &losses,
            &case.microbatch_losses,
        );
        assert_close(
            &format!("{} accumulated gradient", case.name),
            &grad,
            &flat(&case.microbatch_grad_wrt_new_logps),
        );
    }
}

/// `kl`, `clip_ratio/*` and `cispo_clip_ratio` as TRL logs them (clip
/// fractions of completions, not tokens, with sequence-level ratios), and
/// the high-entropy token mask of TRL's `get_high_entropy_mask`.
#[test]
fn metrics_and_entropy_masks_equal_trl() {
    let f = fixture();
    for case in &f.losses {
        let cfg = loss_config(&case.settings, f.inputs.max_completion_length);
        let batch = Batch::new(&f.inputs, &all_rows(&f.inputs), DType::F64);
        let accumulation = Accumulation::single(active_tokens(&f.inputs));
        let m = grpo_loss(&cfg, &batch.inputs(), accumulation)
            .unwrap()
            .metrics;
        let metric = |key: &str| case.metrics.get(key).copied();
        let name = &case.name;
        match metric("kl") {
            Some(kl) => assert_close(&format!("{name} kl"), &[m.kl.unwrap()], &[kl]),
            None => assert_eq!(m.kl, None, "{name}"),
        }
        let clip = [
            ("clip_ratio/low_mean", m.clip_ratio_low),
            ("clip_ratio/high_mean", m.clip_ratio_high),
            ("clip_ratio/region_mean", m.clip_ratio_region),
        ];
        for (key, got) in clip {
            // TRL logs no clip fractions for cispo and sapo: verity logs 0.
            let want = metric(key).unwrap_or(0.0);
            assert_close(&format!("{name} {key}"), &[got], &[want]);
        }
        match metric("cispo_clip_ratio") {
            Some(want) => assert_close(
                &format!("{name} cispo_clip_ratio"),
                &[m.cispo_clip_ratio.unwrap()],
                &[want],
            ),
            None => assert_eq!(m.cispo_clip_ratio, None, "{name}"),
        }
        if let Some(want) = &case.entropy_mask {
            let per_token = per_token_loss(&cfg, &batch.inputs()).unwrap();
            assert_eq!(
                values(&per_token.policy_mask),
                flat(want),
                "{name} entropy mask"
            );
            let kept = flat(want).iter().sum::<f64>();
            let active = active_tokens(&f.inputs) as f64;
            let rho = case.settings.top_entropy_quantile.unwrap();
            // The top rho of 26 tokens, give or take the interpolated rank.
            assert!(
                (kept - rho * active).abs() <= 1.0,
                "{name}: kept {kept} of {active}"
            );
        }
    }
}

#[test]
fn the_losses_verl_shares_equal_verl() {
    let f = fixture();
    assert_eq!(f.verl_losses.len(), 6);
    for v in &f.verl_losses {
        let case = f.losses.iter().find(|c| c.name == v.trl_config).unwrap();
        let cfg = loss_config(&case.settings, f.inputs.max_completion_length);
        let (loss, grad) = whole_batch(&f.inputs, &cfg, DType::F64);
        let what = format!("verl {} ({})", v.verl, v.trl_config);
        assert_close(&format!("{what} loss"), &[loss], &[v.loss]);
        assert_close(
            &format!("{what} gradient"),
            &grad,
            &flat(&v.grad_wrt_new_logps),
        );
    }
}

/// verl's KL loss (`kl_penalty` then `agg_loss`, token-mean) added to the
/// clipped surrogate is verity's `dapo` loss with the same estimator and no
/// ratio correction. k2's gradient is `beta (new - ref) / N` per token, k1's
/// `beta / N`: different estimators, different gradients.
#[test]
fn kl_estimators_equal_verl() {
    let f = fixture();
    assert_eq!(f.verl_kl.len(), 3);
    for v in &f.verl_kl {
        let cfg = LossConfig {
            loss_type: LossType::Dapo,
            beta: v.beta,
            kl_estimator: v.kl_estimator,
            use_bias_correction_kl: false,
            max_completion_length: f.inputs.max_completion_length,
            ..LossConfig::default()
        };
        let (loss, grad) = whole_batch(&f.inputs, &cfg, DType::F64);
        let what = format!("{:?}", v.kl_estimator);
        assert_close(&format!("{what} loss"), &[loss], &[v.loss]);
        assert_close(
            &format!("{what} gradient"),
            &grad,
            &flat(&v.grad_wrt_new_logps),
        );
        let batch = Batch::new(&f.inputs, &all_rows(&f.inputs), DType::F64);
        let per_token = per_token_loss(&cfg, &batch.inputs()).unwrap();
        assert_close(
            &format!("{what} per-token kl"),
            &values(per_token.kl.as_ref().unwrap()),
            &flat(&v.per_token_kl),
        );
    }
    let k1 = &f.verl_kl[0];
    assert!(
        flat(&k1.per_token_kl).iter().any(|&k| k < 0.0),
        "k1 can be negative"
    );
}

#[test]
fn advantages_equal_trl_and_verl() {
    let f = fixture();
    assert_eq!(f.advantages.len(), 3);
    for case in &f.advantages {
        let run = |estimator: AdvantageEstimator| -> Vec<f64> {
            estimate_advantages(
                estimator,
                &case.rewards,
                &case.lengths,
                case.group_size,
                ScaleRewards::Group,
            )
            .unwrap()
            .values
        };
        let name = &case.name;
        assert_close(
            &format!("{name} grpo"),
            &run(AdvantageEstimator::Grpo),
            &case.trl_grpo,
        );
        let rloo = run(AdvantageEstimator::Rloo);
        assert_close(&format!("{name} rloo (TRL)"), &rloo, &case.trl_rloo);
        // verl multiplies by the response mask: a completion without counted
        // tokens shows 0 there (its advantage never reaches the loss).
        let counted: Vec<f64> = rloo
            .iter()
            .zip(&case.lengths)
            .map(|(&a, &n)| if n == 0 { 0.0 } else { a })
            .collect();
        assert_close(&format!("{name} rloo (verl)"), &counted, &case.verl_rloo);
        assert_close(
            &format!("{name} reinforce++"),
            &run(AdvantageEstimator::ReinforcePlusPlus),
            &case.verl_reinforce_plus_plus,
        );
        assert_close(
            &format!("{name} reinforce++ baseline"),
            &run(AdvantageEstimator::ReinforcePlusPlusBaseline),
            &case.verl_reinforce_plus_plus_baseline,
        );
        // verl's GRPO adds 1e-6 to the std where TRL adds 1e-4: verity
        // follows TRL, and that epsilon is the whole difference.
        let stats = estimate_advantages(
            AdvantageEstimator::Grpo,
            &case.rewards,
            &case.lengths,
            case.group_size,
            ScaleRewards::Group,
        )
        .unwrap();
        let with_verl_eps: Vec<f64> = case
            .rewards
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let g = i / case.group_size;
                match case.lengths[i] {
                    0 => 0.0,
                    _ => (r - stats.group_mean[g]) / (stats.group_std[g] + 1e-6),
                }
            })
            .collect();
        assert_close(
            &format!("{name} verl grpo"),
            &with_verl_eps,
            &case.verl_grpo,
        );
    }
}
