//! The CPU backend against the tensor model.
//!
//! On f32 CPU weights, training runs the backend's fused kernels and
//! generation its packed decoder over the worker threads; every other
//! device runs the tensor model built from basic operations
//! ([`Kernels::Composed`]). Here the two compute the same logits,
//! log-probabilities and gradients of every weight, and the decoder's
//! samples carry the log-probabilities the tensor model gives them, for
//! each architecture, bias and norm variant and a tied and an untied head.

use candle_core::{DType, Device, Tensor, D};
use policy::{
    completion_logprobs, generate, set_matmul_precision, Architecture, Kernels, ModelConfig,
    Policy, Precision, SamplingConfig,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

const VOCAB: usize = 61;

/// Every variant the backend branches on: query-key norms, biases on the
/// projections and the MLP, tied and untied heads, a head size of 12 (no
/// fixed-size loop) and two or three query heads per KV head.
fn configs() -> Vec<(&'static str, ModelConfig)> {
    let mut llama = ModelConfig::new(Architecture::Llama, VOCAB, 64, 96, 2, 4, 2);
    llama.tie_word_embeddings = false;
    let mut biased = ModelConfig::new(Architecture::Llama, VOCAB, 72, 80, 2, 6, 2);
    (biased.qkv_bias, biased.o_bias, biased.mlp_bias) = (true, true, true);
    biased.tie_word_embeddings = true;
    let qwen2 = ModelConfig::new(Architecture::Qwen2, VOCAB, 64, 96, 2, 4, 2);
    let qwen3 = ModelConfig::new(Architecture::Qwen3, VOCAB, 64, 96, 2, 4, 2);
    vec![
        ("llama", llama),
        ("llama-biased", biased),
        ("qwen2", qwen2),
        ("qwen3", qwen3),
    ]
}

/// Random weights at a scale where the layers matter (the default
/// initialisation leaves them close to the identity).
fn policy(cfg: &ModelConfig, seed: u64) -> Policy {
    let policy = Policy::random(cfg, seed, &Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, var) in policy.named_vars() {
        let values: Vec<f32> = (0..var.as_tensor().elem_count())
            .map(|_| {
                let noise = rng.random_range(-1.0f32..1.0);
                if name.ends_with("norm.weight") {
                    1.0 + 0.3 * noise
                } else {
                    0.15 * noise
                }
            })
            .collect();
        let t = Tensor::from_vec(values, var.as_tensor().shape(), &Device::Cpu).unwrap();
        var.set(&t).unwrap();
    }
    policy
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .and_then(|t| t.max_all())
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_scalar::<f64>())
        .unwrap()
}

/// Largest difference relative to the reference's largest value.
fn relative_diff(ours: &Tensor, reference: &Tensor) -> f64 {
    max_abs(&(ours - reference).unwrap()) / max_abs(reference).max(1e-12)
}

/// Two left-padded rows, a prompt of `prompt` tokens and a completion of
/// `completion`: ids, mask [2, T].
fn batch(rng: &mut StdRng, prompt: usize, completion: usize) -> (Tensor, Tensor) {
    let t = prompt + completion;
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for pad in [0, 3] {
        for j in 0..t {
            ids.push(if j < pad {
                0
            } else {
                rng.random_range(1..VOCAB as u32)
            });
            mask.push(u32::from(j >= pad));
        }
    }
    (
        Tensor::from_vec(ids, (2, t), &Device::Cpu).unwrap(),
        Tensor::from_vec(mask, (2, t), &Device::Cpu).unwrap(),
    )
}

/// How far the backend's fused training path lies from the composed tensor
/// model, relative to the reference's largest value: logits, completion
/// log-probabilities, and the gradient of every weight through them.
struct Distance {
    logits: f64,
    logprobs: f64,
    gradients: Vec<(String, f64)>,
}

fn fused_against_composed(name: &str, cfg: &ModelConfig) -> Distance {
    let (prompt, completion, temperature) = (9, 7, 0.7);
    let policy = policy(cfg, 5);
    assert!(
        policy.model.fused_training(),
        "{name}: f32 CPU runs the backend"
    );
    let mut rng = StdRng::seed_from_u64(11);
    let (ids, mask) = batch(&mut rng, prompt, completion);

    // Logits at real positions (padding positions are never read).
    let real = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let logits = |kernels| {
        let l = policy
            .model
            .forward_with(&ids, Some(&mask), None, kernels)
            .unwrap();
        l.broadcast_mul(&real).unwrap()
    };
    let logit_diff = relative_diff(&logits(Kernels::Trainable), &logits(Kernels::Composed));

    // The backend: fused kernels and the chunked LM head.
    let ours = completion_logprobs(&policy.model, &ids, &mask, completion, temperature).unwrap();
    // The reference: log-softmax of the composed logits.
    let t = prompt + completion;
    let composed = policy
        .model
        .forward_with(&ids, Some(&mask), None, Kernels::Composed)
        .unwrap()
        .narrow(1, t - completion - 1, completion)
        .unwrap();
    let scaled = (composed / temperature).unwrap();
    let log_probs = candle_nn::ops::log_softmax(&scaled.contiguous().unwrap(), D::Minus1).unwrap();
    let targets = ids
        .narrow(1, t - completion, completion)
        .unwrap()
        .contiguous()
        .unwrap();
    let reference = log_probs
        .gather(&targets.unsqueeze(2).unwrap(), 2)
        .unwrap()
        .squeeze(2)
        .unwrap();
    let logprob_diff = relative_diff(&ours, &reference);

    // Gradients of a weighted sum, so every position matters differently.
    let weights: Vec<f32> = (0..2 * completion)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let weights = Tensor::from_vec(weights, (2, completion), &Device::Cpu).unwrap();
    let loss = |lp: &Tensor| (lp * &weights).unwrap().sum_all().unwrap();
    let (ours, reference) = (
        policy.model.backward(&loss(&ours)).unwrap(),
        policy.model.backward(&loss(&reference)).unwrap(),
    );
    let gradients = policy
        .named_vars()
        .into_iter()
        .map(|(weight, var)| {
            let g = ours
                .get(var.as_tensor())
                .expect("a gradient for every weight");
            let r = reference
                .get(var.as_tensor())
                .expect("a gradient for every weight");
            (weight, relative_diff(g, r))
        })
        .collect();
    Distance {
        logits: logit_diff,
        logprobs: logprob_diff,
        gradients,
    }
}

#[test]
fn training_pass_matches_the_tensor_model() {
    for (name, cfg) in configs() {
        let d = fused_against_composed(name, &cfg);
        assert!(d.logits < 1e-5, "{name} logits: relative diff {}", d.logits);
        assert!(
            d.logprobs < 1e-5,
            "{name} log-probs: relative diff {}",
            d.logprobs
        );
        for (weight, diff) in d.gradients {
            assert!(
                diff < 1e-4,
                "{name} gradient of {weight}: relative diff {diff}"
            );
        }
    }
}

/// With `run.matmul_precision = "bfloat16"` the products round their
/// operands to bfloat16: the pass stays within bfloat16's rounding of the
/// float32 model (and visibly off it, so the setting took effect).
#[test]
fn training_pass_in_bfloat16_products_stays_near_the_tensor_model() {
    let previous = set_matmul_precision(Precision::Bfloat16);
    for (name, cfg) in configs() {
        let d = fused_against_composed(name, &cfg);
        assert!(d.logits < 2e-2, "{name} logits: relative diff {}", d.logits);
        assert!(
            d.logits > 1e-4,
            "{name} logits: the products were not rounded"
        );
        assert!(
            d.logprobs < 2e-2,
            "{name} log-probs: relative diff {}",
            d.logprobs
        );
        for (weight, diff) in d.gradients {
            assert!(
                diff < 5e-2,
                "{name} gradient of {weight}: relative diff {diff}"
            );
        }
    }
    set_matmul_precision(previous);
}

/// The packed decoder's samples, on several threads, carry the
/// log-probabilities the composed tensor model gives their tokens.
#[test]
fn decoder_matches_the_tensor_model() {
    let prompts = vec![
        vec![3, 14, 15, 9, 2, 6],
        vec![5],
        vec![35, 8, 9, 7, 9, 3, 2, 38, 4],
    ];
    let sampling = SamplingConfig {
        max_new_tokens: 12,
        temperature: 0.8,
        ..SamplingConfig::default()
    };
    for (name, cfg) in configs() {
        let policy = policy(&cfg, 7);
        let samples = generate(
            &policy.model,
            &prompts,
            2,
            &sampling,
            &mut StdRng::seed_from_u64(3),
        )
        .unwrap();
        assert_eq!(samples.len(), 2 * prompts.len(), "{name}");
        for s in &samples {
            let mut row = prompts[s.prompt_index].clone();
            let p = row.len();
            row.extend(&s.tokens);
            let ids = Tensor::from_slice(&row, (1, row.len()), &Device::Cpu).unwrap();
            let logits = policy
                .model
                .forward_with(&ids, None, None, Kernels::Composed)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap();
            for (i, &token) in s.tokens.iter().enumerate() {
                let row: Vec<f64> = logits.get(p + i - 1).unwrap().to_vec1().unwrap();
                let log_softmax = |scale: f64| {
                    let scaled: Vec<f64> = row.iter().map(|x| x / scale).collect();
                    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = max + scaled.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
                    scaled[token as usize] - lse
                };
                for (what, ours, expected) in [
                    ("log-prob", s.logprobs[i], log_softmax(sampling.temperature)),
                    ("raw log-prob", s.raw_logprobs[i], log_softmax(1.0)),
                ] {
                    assert!(
                        (ours as f64 - expected).abs() < 1e-4,
                        "{name} prompt {} sample {} token {i} {what}: {ours} vs {expected}",
                        s.prompt_index,
                        s.sample_index
                    );
                }
            }
        }
    }
}
