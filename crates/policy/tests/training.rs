//! The training path: gradients reach every parameter, agree with finite
//! differences, and the supervised loss is the masked mean NLL.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::test_device;
use policy::{
    completion_logprobs, completion_logprobs_and_entropy, grouped_completion_scores,
    token_cross_entropy, Architecture, ModelConfig, Policy, PromptGroup,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn tiny(arch: Architecture, tied: bool) -> ModelConfig {
    let mut cfg = ModelConfig::new(arch, 23, 16, 24, 2, 4, 2);
    cfg.tie_word_embeddings = tied;
    if arch == Architecture::Llama && !tied {
        // Exercise every optional bias too.
        cfg.qkv_bias = true;
        cfg.o_bias = true;
        cfg.mlp_bias = true;
    }
    cfg
}

/// Two rows: a left-padded prompt with a right-padded completion, and a full row.
fn batch(device: &Device) -> (Tensor, Tensor, Tensor) {
    let ids = Tensor::new(
        &[[0u32, 0, 5, 6, 7, 8, 9, 0], [1, 2, 3, 4, 10, 11, 12, 13]],
        device,
    )
    .unwrap();
    let mask = Tensor::new(
        &[[0u32, 0, 1, 1, 1, 1, 1, 0], [1u32, 1, 1, 1, 1, 1, 1, 1]],
        device,
    )
    .unwrap();
    let completion_mask = Tensor::new(&[[1f32, 1., 1., 0.], [1., 1., 1., 1.]], device).unwrap();
    (ids, mask, completion_mask)
}

/// A policy-gradient-like loss: weighted sum of completion log-probs.
fn loss(policy: &Policy, temperature: f64) -> Tensor {
    let device = policy.device().clone();
    let (ids, mask, completion_mask) = batch(&device);
    let lp = completion_logprobs(&policy.model, &ids, &mask, 4, temperature).unwrap();
    let weights = Tensor::new(&[[0.7f32, -1.3, 0.4, 9.0], [1.1, 0.2, -0.6, 0.9]], &device)
        .unwrap()
        .to_dtype(lp.dtype())
        .unwrap();
    let completion_mask = completion_mask.to_dtype(lp.dtype()).unwrap();
    (lp * weights * completion_mask).unwrap().sum_all().unwrap()
}

/// On the CPU the fused blocks hand their weights' gradients to the model:
/// a loss taken with `loss.backward()` alone leaves them uncollected, and
/// the next forward pass says so rather than training without them.
#[test]
fn gradients_left_uncollected_stop_the_next_forward_pass() {
    // Without biases, so the fused blocks run.
    let policy = Policy::random(&tiny(Architecture::Llama, true), 3, &Device::Cpu).unwrap();
    let grads = loss(&policy, 1.0).backward().unwrap();
    let q = policy
        .named_vars()
        .into_iter()
        .find(|(name, _)| name.ends_with("q_proj.weight"))
        .unwrap()
        .1;
    assert!(grads.get(q.as_tensor()).is_none());
    let (ids, mask, _) = batch(&Device::Cpu);
    let err = completion_logprobs(&policy.model, &ids, &mask, 4, 1.0).unwrap_err();
    assert!(err.to_string().contains("Transformer::backward"), "{err}");
    // Said once: the stale gradients are dropped, and the model goes on.
    let grads = policy.model.backward(&loss(&policy, 1.0)).unwrap();
    assert!(grads.get(q.as_tensor()).is_some());
}

/// The gradients a backward pass leaves live until the optimizer step: their
/// buffers, views or not, hold no more than the weights do.
#[test]
fn gradients_hold_no_more_memory_than_the_weights() {
    use candle_core::Storage;
    let policy = Policy::random(&tiny(Architecture::Llama, true), 5, &Device::Cpu).unwrap();
    let grads = policy.model.backward(&loss(&policy, 1.0)).unwrap();
    let mut buffers = std::collections::HashMap::new();
    let mut weights = 0;
    for (name, var) in policy.named_vars() {
        weights += var.elem_count();
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}"));
        let (storage, _) = grad.storage_and_layout();
        let Storage::Cpu(candle_core::CpuStorage::F32(values)) = &*storage else {
            panic!("{name}: not f32 on the CPU")
        };
        buffers.insert(values.as_ptr() as usize, values.capacity());
    }
    let held: usize = buffers.values().sum();
    assert!(
        held <= weights,
        "{held} elements held for {weights} weights"
    );
}

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    for (arch, tied) in [
        (Architecture::Qwen2, true),
        (Architecture::Llama, false),
        (Architecture::Qwen3, true),
    ] {
        let policy = Policy::random(&tiny(arch, tied), 11, &test_device()).unwrap();
        let grads = policy.model.backward(&loss(&policy, 0.8)).unwrap();
        for (name, var) in policy.named_vars() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch:?}: no gradient for {name}"));
            let values = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                values.iter().all(|g| g.is_finite()),
                "{arch:?} {name}: non-finite gradient"
            );
            assert!(
                values.iter().any(|&g| g != 0.0),
                "{arch:?} {name}: zero gradient"
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences_in_f64() {
    for (arch, tied) in [(Architecture::Qwen3, false), (Architecture::Llama, false)] {
        let mut cfg = tiny(arch, tied);
        cfg.initializer_range = 0.3;
        let policy = Policy::random(&cfg, 5, &test_device())
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        // Non-trivial norm weights and biases so their gradients are generic.
        let mut rng = StdRng::seed_from_u64(17);
        for (name, var) in policy.named_vars() {
            if name.ends_with("norm.weight") || name.ends_with(".bias") {
                let noise: Vec<f64> = (0..var.elem_count())
                    .map(|_| rng.random_range(-0.3..0.3))
                    .collect();
                let noise = Tensor::from_vec(noise, var.shape(), &test_device()).unwrap();
                var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
            }
        }
        let grads = policy.model.backward(&loss(&policy, 0.9)).unwrap();
        let eps = 1e-5;
        let mut checked = 0;
        for (name, var) in policy.named_vars() {
            let grad = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
            let grad = grad.to_vec1::<f64>().unwrap();
            let n = grad.len();
            for &i in &[0, n / 3, n - 1] {
                let fd = (perturbed_loss(&policy, &var, i, eps)
                    - perturbed_loss(&policy, &var, i, -eps))
                    / (2.0 * eps);
                // Relative error, measured absolutely for gradients below 0.01
                // (central differences at eps 1e-5 are good to about 1e-10).
                let err = (fd - grad[i]).abs() / fd.abs().max(grad[i].abs()).max(1e-2);
                assert!(
                    err < 1e-6,
                    "{arch:?} {name}[{i}]: autograd {} vs finite difference {fd}",
                    grad[i]
                );
                checked += 1;
            }
        }
        assert!(checked > 50);
    }
}

fn perturbed_loss(policy: &Policy, var: &Var, index: usize, delta: f64) -> f64 {
    let original = var.as_tensor().copy().unwrap();
    let mut values = original.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    values[index] += delta;
    var.set(&Tensor::from_vec(values, var.shape(), &test_device()).unwrap())
        .unwrap();
    let value = loss(policy, 0.9).to_scalar::<f64>().unwrap();
    var.set(&original).unwrap();
    value
}

#[test]
fn entropy_and_logprobs_agree_with_a_direct_computation() {
    let policy = Policy::random(&tiny(Architecture::Qwen2, true), 2, &test_device()).unwrap();
    let (ids, mask, _) = batch(&test_device());
    let scores = completion_logprobs_and_entropy(&policy.model, &ids, &mask, 4, 0.5).unwrap();
    let plain = completion_logprobs(&policy.model, &ids, &mask, 4, 0.5).unwrap();
    let logits = policy.model.forward(&ids, Some(&mask), None).unwrap();
    let logits = (logits.narrow(1, 3, 4).unwrap() / 0.5).unwrap();
    let rows = logits.flatten_to(1).unwrap().to_vec2::<f32>().unwrap();
    let targets = ids
        .narrow(1, 4, 4)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let lp = scores
        .logprobs
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let lp_plain = plain.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let entropy = scores
        .entropy
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (k, row) in rows.iter().enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        let logp: Vec<f64> = row.iter().map(|&x| x as f64 - max - z.ln()).collect();
        let h: f64 = -logp.iter().map(|l| l.exp() * l).sum::<f64>();
        let want = logp[targets[k] as usize];
        assert!((lp[k] as f64 - want).abs() < 1e-5 && (lp_plain[k] as f64 - want).abs() < 1e-5);
        assert!(
            (entropy[k] as f64 - h).abs() < 1e-5,
            "entropy {} vs {h}",
            entropy[k]
        );
    }
}

#[test]
fn token_cross_entropy_is_the_masked_mean_nll() {
    let policy = Policy::random(&tiny(Architecture::Llama, true), 3, &test_device()).unwrap();
    let (ids, mask, _) = batch(&test_device());
    let loss_mask = Tensor::new(
        &[
            [0f32, 0., 0., 0., 1., 1., 1., 0.],
            [0., 0., 0., 0., 1., 1., 1., 1.],
        ],
        &test_device(),
    )
    .unwrap();
    let ce = token_cross_entropy(&policy.model, &ids, &mask, &loss_mask).unwrap();
    let lp = completion_logprobs(&policy.model, &ids, &mask, 4, 1.0).unwrap();
    let lp = lp.to_vec2::<f32>().unwrap();
    let manual = -(lp[0][..3].iter().sum::<f32>() + lp[1].iter().sum::<f32>()) / 7.0;
    let ce = ce.to_scalar::<f32>().unwrap();
    assert!((ce - manual).abs() < 1e-5, "{ce} vs {manual}");

    let nothing = Tensor::zeros((2, 8), DType::F32, &test_device()).unwrap();
    let err = token_cross_entropy(&policy.model, &ids, &mask, &nothing).unwrap_err();
    assert!(err.to_string().contains("no target"), "{err}");
}

#[test]
fn frozen_copy_ignores_later_updates() {
    let policy = Policy::random(&tiny(Architecture::Qwen2, true), 4, &test_device()).unwrap();
    let frozen = policy.frozen().unwrap();
    let (ids, mask, _) = batch(&test_device());
    let before = frozen.forward(&ids, Some(&mask), None).unwrap();
    for (_, var) in policy.named_vars() {
        var.set(&(var.as_tensor() * 1.5).unwrap()).unwrap();
    }
    let after_frozen = frozen.forward(&ids, Some(&mask), None).unwrap();
    let after_live = policy.model.forward(&ids, Some(&mask), None).unwrap();
    let same = (&before - &after_frozen)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    let moved = (&before - &after_live)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(same.to_scalar::<f32>().unwrap(), 0.0);
    assert!(moved.to_scalar::<f32>().unwrap() > 1e-3);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let policy = Policy::random(&tiny(Architecture::Llama, true), 1, &test_device()).unwrap();
    let (ids, mask, _) = batch(&test_device());
    let err = completion_logprobs(&policy.model, &ids, &mask, 8, 1.0).unwrap_err();
    assert!(err.to_string().contains("completion length 8"), "{err}");
    let big = Tensor::new(&[[1u32, 99]], &test_device()).unwrap();
    let err = policy.model.forward(&big, None, None).unwrap_err();
    assert!(err.to_string().contains("token id 99"), "{err}");
    let short_mask = Tensor::new(&[[1u32, 1]], &test_device()).unwrap();
    let err = policy
        .model
        .forward(&ids, Some(&short_mask), None)
        .unwrap_err();
    assert!(err.to_string().contains("attention_mask"), "{err}");
}

/// Log-probs and entropies from the logits of the whole batch, through
/// candle operations: the form the fused scores replace.
fn composed_scores(
    policy: &Policy,
    ids: &Tensor,
    mask: &Tensor,
    c: usize,
    t: f64,
) -> (Tensor, Tensor) {
    let (_, len) = ids.dims2().unwrap();
    let hidden = policy
        .model
        .hidden_states(ids, Some(mask), None, policy::Kernels::Trainable)
        .unwrap();
    let logits = (policy
        .model
        .lm_head(&hidden.narrow(1, len - c - 1, c).unwrap())
        .unwrap()
        / t)
        .unwrap();
    let log_p = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).unwrap();
    let entropy = (log_p.exp().unwrap() * &log_p)
        .unwrap()
        .sum(2)
        .unwrap()
        .neg()
        .unwrap();
    let targets = ids
        .narrow(1, len - c, c)
        .unwrap()
        .contiguous()
        .unwrap()
        .unsqueeze(2)
        .unwrap();
    let lp = log_p.gather(&targets, 2).unwrap().squeeze(2).unwrap();
    (lp, entropy)
}

/// Largest difference of the gradients two losses give every parameter,
/// relative to the largest gradient.
fn gradient_gap(policy: &Policy, a: &Tensor, b: &Tensor) -> f64 {
    let model = &policy.model;
    let (ga, gb) = (model.backward(a).unwrap(), model.backward(b).unwrap());
    let mut worst = 0f64;
    for (name, var) in policy.named_vars() {
        let x = ga
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let y = gb
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let x = x
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let y = y
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let scale = y.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max((p - q).abs() / scale);
        }
    }
    worst
}

#[test]
fn fused_scores_match_the_full_logits_with_gradients() {
    for (arch, tied) in [(Architecture::Qwen3, true), (Architecture::Llama, false)] {
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
            let policy = Policy::random(&tiny(arch, tied), 9, &test_device())
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let (ids, mask, completion_mask) = batch(&test_device());
            let completion_mask = completion_mask.to_dtype(dtype).unwrap();
            let fused =
                completion_logprobs_and_entropy(&policy.model, &ids, &mask, 4, 0.7).unwrap();
            let (lp, entropy) = composed_scores(&policy, &ids, &mask, 4, 0.7);
            for (x, y) in [(&fused.logprobs, &lp), (&fused.entropy, &entropy)] {
                let gap = (x - y).unwrap().abs().unwrap().max_all().unwrap();
                let gap = gap
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert!(gap < tol, "{arch:?} {dtype:?}: values differ by {gap}");
            }
            // A loss of both, weighted per token.
            let w = Tensor::new(
                &[[0.7f32, -1.3, 0.4, 9.0], [1.1, 0.2, -0.6, 0.9]],
                &test_device(),
            )
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
            let loss = |lp: &Tensor, h: &Tensor| {
                ((lp * &w).unwrap() + (h * 0.3).unwrap())
                    .unwrap()
                    .broadcast_mul(&completion_mask)
                    .unwrap()
                    .sum_all()
                    .unwrap()
            };
            let gap = gradient_gap(
                &policy,
                &loss(&fused.logprobs, &fused.entropy),
                &loss(&lp, &entropy),
            );
            assert!(
                gap < tol,
                "{arch:?} {dtype:?}: gradients differ by {gap} (relative)"
            );
        }
    }
}

/// Prompts shared by groups of completions, scored once per group, give the
/// numbers and gradients of scoring each row alone.
#[test]
fn grouped_scores_equal_row_by_row_scores_with_gradients() {
    let prompts: [&[u32]; 3] = [&[3, 4, 5, 6, 7], &[8, 1], &[2, 9, 10]];
    let completions: [Vec<&[u32]>; 3] = [
        vec![&[11, 12, 13], &[14], &[15, 16, 17, 18, 19, 20]],
        vec![&[21, 22]],
        vec![&[1, 2, 3, 4], &[5, 6, 7, 8]],
    ];
    let groups: Vec<PromptGroup<'_>> = prompts
        .iter()
        .zip(&completions)
        .map(|(p, c)| PromptGroup {
            prompt: p,
            completions: c.clone(),
        })
        .collect();
    let rows: Vec<(&[u32], &[u32])> = groups
        .iter()
        .flat_map(|g| g.completions.iter().map(move |c| (g.prompt, *c)))
        .collect();
    let width = rows.iter().map(|r| r.1.len()).max().unwrap();
    for (arch, tied) in [(Architecture::Llama, false), (Architecture::Qwen3, true)] {
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
            let policy = Policy::random(&tiny(arch, tied), 21, &test_device())
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let grouped = grouped_completion_scores(&policy.model, &groups, 0.8).unwrap();
            assert_eq!(grouped.logprobs.dims(), [rows.len(), width]);
            let mut rng = StdRng::seed_from_u64(3);
            let (mut loss_grouped, mut loss_alone) = (Vec::new(), Vec::new());
            for (i, (prompt, completion)) in rows.iter().enumerate() {
                let ids: Vec<u32> = prompt.iter().chain(completion.iter()).copied().collect();
                let n = ids.len();
                let ids = Tensor::from_vec(ids, (1, n), &test_device()).unwrap();
                let mask = Tensor::ones((1, n), DType::U32, &test_device()).unwrap();
                let alone = completion_logprobs_and_entropy(
                    &policy.model,
                    &ids,
                    &mask,
                    completion.len(),
                    0.8,
                )
                .unwrap();
                let c = completion.len();
                let w: Vec<f64> = (0..c).map(|_| rng.random_range(-1.0..1.0)).collect();
                let w = Tensor::from_vec(w, (1, c), &test_device())
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let ours_lp = grouped
                    .logprobs
                    .narrow(0, i, 1)
                    .unwrap()
                    .narrow(1, 0, c)
                    .unwrap();
                let ours_h = grouped
                    .entropy
                    .narrow(0, i, 1)
                    .unwrap()
                    .narrow(1, 0, c)
                    .unwrap();
                for (x, y) in [(&ours_lp, &alone.logprobs), (&ours_h, &alone.entropy)] {
                    let gap = (x - y).unwrap().abs().unwrap().max_all().unwrap();
                    let gap = gap
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap();
                    assert!(
                        gap < tol,
                        "{arch:?} {dtype:?} row {i}: values differ by {gap}"
                    );
                }
                let term = |lp: &Tensor, h: &Tensor| {
                    ((lp * &w).unwrap() - (h * &w).unwrap() * 0.5)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                };
                loss_grouped.push(term(&ours_lp, &ours_h));
                loss_alone.push(term(&alone.logprobs, &alone.entropy));
            }
            let total = |parts: &[Tensor]| Tensor::stack(parts, 0).unwrap().sum_all().unwrap();
            let gap = gradient_gap(&policy, &total(&loss_grouped), &total(&loss_alone));
            assert!(
                gap < tol,
                "{arch:?} {dtype:?}: gradients differ by {gap} (relative)"
            );
        }
    }
}

/// Groups whose completions are all empty score nothing, without an error,
/// whichever path the model takes.
#[test]
fn groups_of_empty_completions_score_nothing() {
    let policy = Policy::random(&tiny(Architecture::Llama, false), 5, &test_device()).unwrap();
    let groups = [PromptGroup {
        prompt: &[3, 4, 5],
        completions: vec![&[], &[]],
    }];
    let scores = grouped_completion_scores(&policy.model, &groups, 1.0).unwrap();
    assert_eq!(scores.logprobs.dims(), [2, 0]);
    assert_eq!(scores.entropy.dims(), [2, 0]);
}
