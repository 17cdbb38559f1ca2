//! Sampling: rollout log-probs agree with recomputed ones, seeds reproduce,
//! rows stop independently, fused kernels agree with differentiable ones.

mod common;

use candle_core::Tensor;
use common::test_device;
use policy::{
    completion_logprobs, generate, generate_until, Architecture, FinishReason, Generation, Kernels,
    ModelConfig, Policy, SamplingConfig,
};
use rand::{rngs::StdRng, SeedableRng};

fn policy(arch: Architecture) -> Policy {
    let mut cfg = ModelConfig::new(arch, 40, 32, 48, 2, 4, 2);
    // A wider init than transformers' so the distributions are far from uniform.
    cfg.initializer_range = 0.2;
    Policy::random(&cfg, 9, &test_device()).unwrap()
}

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![3, 4, 5, 6, 7, 8, 9],
        vec![10, 11],
        vec![12, 13, 14, 15],
    ]
}

/// `[left-padded prompt | right-padded completion]` rows, their mask and C.
fn scoring_batch(prompts: &[Vec<u32>], gens: &[Generation]) -> (Tensor, Tensor, usize) {
    let p_width = prompts.iter().map(Vec::len).max().unwrap();
    let c_width = gens.iter().map(|g| g.tokens.len()).max().unwrap();
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for g in gens {
        let p = &prompts[g.prompt_index];
        let (lp, rp) = (p_width - p.len(), c_width - g.tokens.len());
        ids.extend(std::iter::repeat_n(0, lp).chain(p.iter().copied()));
        ids.extend(g.tokens.iter().copied().chain(std::iter::repeat_n(0, rp)));
        mask.extend(std::iter::repeat_n(0u32, lp).chain(std::iter::repeat_n(1, p.len())));
        mask.extend(std::iter::repeat_n(1u32, g.tokens.len()).chain(std::iter::repeat_n(0, rp)));
    }
    let shape = (gens.len(), p_width + c_width);
    (
        Tensor::from_vec(ids, shape, &test_device()).unwrap(),
        Tensor::from_vec(mask, shape, &test_device()).unwrap(),
        c_width,
    )
}

#[test]
fn rollout_logprobs_match_recomputed_logprobs() {
    for arch in [
        Architecture::Qwen2,
        Architecture::Llama,
        Architecture::Qwen3,
    ] {
        let policy = policy(arch);
        let prompts = prompts();
        let config = SamplingConfig {
            max_new_tokens: 12,
            temperature: 0.7,
            top_k: 20,
            top_p: 0.95,
            stop_token_ids: vec![1, 2],
            ..Default::default()
        };
        let gens = generate(
            &policy.model,
            &prompts,
            3,
            &config,
            &mut StdRng::seed_from_u64(4),
        )
        .unwrap();
        assert_eq!(gens.len(), 9);
        let (ids, mask, c) = scoring_batch(&prompts, &gens);
        for (temperature, raw) in [(0.7, false), (1.0, true)] {
            let lp = completion_logprobs(&policy.model, &ids, &mask, c, temperature).unwrap();
            let lp = lp.to_vec2::<f32>().unwrap();
            for (g, row) in gens.iter().zip(&lp) {
                let rollout = if raw { &g.raw_logprobs } else { &g.logprobs };
                for (j, (a, b)) in rollout.iter().zip(row).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "{arch:?} T={temperature} token {j}: rollout {a} vs recomputed {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn same_seed_same_samples() {
    let policy = policy(Architecture::Qwen2);
    let config = SamplingConfig {
        max_new_tokens: 10,
        stop_token_ids: vec![1],
        ..Default::default()
    };
    let run = |seed| {
        generate(
            &policy.model,
            &prompts(),
            4,
            &config,
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    let tokens = |g: &[Generation]| g.iter().map(|s| s.tokens.clone()).collect::<Vec<_>>();
    assert_ne!(tokens(&a), tokens(&run(2)));
    // Samples of one prompt differ from each other: the shared prefill does not share the draws.
    assert_ne!(a[0].tokens, a[1].tokens);
    for (i, g) in a.iter().enumerate() {
        assert_eq!((g.prompt_index, g.sample_index), (i / 4, i % 4));
    }
}

#[test]
fn rows_stop_independently() {
    let policy = policy(Architecture::Llama);
    let prompts = prompts();
    // Any token in the lower half of the vocabulary stops a row.
    let config = SamplingConfig {
        max_new_tokens: 30,
        temperature: 1.0,
        stop_token_ids: (0..20).collect(),
        ..Default::default()
    };
    let gens = generate(
        &policy.model,
        &prompts,
        8,
        &config,
        &mut StdRng::seed_from_u64(7),
    )
    .unwrap();
    let lengths: Vec<usize> = gens.iter().map(|g| g.tokens.len()).collect();
    assert!(lengths.iter().min() < lengths.iter().max(), "{lengths:?}");
    for g in &gens {
        let last = *g.tokens.last().unwrap();
        match g.finish {
            FinishReason::Stop => assert!(last < 20),
            FinishReason::Length => assert_eq!(g.tokens.len(), 30),
        }
        assert!(g.tokens[..g.tokens.len() - 1].iter().all(|&t| t >= 20));
        assert_eq!(g.logprobs.len(), g.tokens.len());
    }
    // Rows that ran on after others stopped still score as the model says.
    let (ids, mask, c) = scoring_batch(&prompts, &gens);
    let lp = completion_logprobs(&policy.model, &ids, &mask, c, 1.0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (g, row) in gens.iter().zip(&lp) {
        for (a, b) in g.logprobs.iter().zip(row) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}

#[test]
fn stop_sequences_and_stop_tests() {
    let policy = policy(Architecture::Qwen2);
    let greedy = SamplingConfig {
        max_new_tokens: 12,
        temperature: 0.0,
        ..Default::default()
    };
    let free = generate(
        &policy.model,
        &[vec![5, 6, 7]],
        1,
        &greedy,
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    let tokens = &free[0].tokens;
    assert_eq!(free[0].finish, FinishReason::Length);

    let with_sequence = SamplingConfig {
        stop_sequences: vec![tokens[3..5].to_vec()],
        ..greedy.clone()
    };
    let stopped = generate(
        &policy.model,
        &[vec![5, 6, 7]],
        1,
        &with_sequence,
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    let end = (1..=tokens.len())
        .find(|&n| tokens[..n].ends_with(&tokens[3..5]))
        .unwrap();
    assert_eq!(stopped[0].tokens, tokens[..end]);
    assert_eq!(stopped[0].finish, FinishReason::Stop);

    let until = generate_until(
        &policy.model,
        &[vec![5, 6, 7]],
        1,
        &greedy,
        &mut StdRng::seed_from_u64(0),
        |t| t.len() == 4,
    )
    .unwrap();
    assert_eq!(until[0].tokens, tokens[..4]);
    assert_eq!(until[0].finish, FinishReason::Stop);
}

#[test]
fn bad_requests_are_errors() {
    let policy = policy(Architecture::Qwen2);
    let config = SamplingConfig::default();
    let mut rng = StdRng::seed_from_u64(0);
    let err = generate(&policy.model, &[vec![]], 1, &config, &mut rng).unwrap_err();
    assert!(err.to_string().contains("prompt 0 is empty"), "{err}");
    let err = generate(&policy.model, &[vec![1, 400]], 1, &config, &mut rng).unwrap_err();
    assert!(err.to_string().contains("token id 400"), "{err}");
    let hot = SamplingConfig {
        temperature: f64::NAN,
        ..Default::default()
    };
    assert!(generate(&policy.model, &[vec![1]], 1, &hot, &mut rng).is_err());
    let nucleus = SamplingConfig {
        top_p: 0.0,
        ..Default::default()
    };
    assert!(generate(&policy.model, &[vec![1]], 1, &nucleus, &mut rng).is_err());
    // A cache for another batch size is an error, not a panic.
    let mut cache =
        policy::KvCache::new(policy.model.config(), 3, 8, policy.dtype(), &test_device()).unwrap();
    let two_rows = Tensor::new(&[[1u32], [2]], &test_device()).unwrap();
    let err = policy
        .model
        .forward(&two_rows, None, Some(&mut cache))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match the cache's 3 rows"),
        "{err}"
    );
    let none = SamplingConfig {
        max_new_tokens: 0,
        ..Default::default()
    };
    let out = generate(&policy.model, &[vec![1]], 2, &none, &mut rng).unwrap();
    assert!(out.iter().all(|g| g.tokens.is_empty()));
}

#[test]
fn fused_kernels_agree_with_differentiable_ones() {
    for arch in [
        Architecture::Qwen2,
        Architecture::Llama,
        Architecture::Qwen3,
    ] {
        let policy = policy(arch);
        let ids = Tensor::new(
            &[[0u32, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]],
            &test_device(),
        )
        .unwrap();
        let mask = Tensor::new(
            &[[0u32, 0, 1, 1, 1, 1], [1u32, 1, 1, 1, 1, 1]],
            &test_device(),
        )
        .unwrap();
        let a = policy
            .model
            .forward_with(&ids, Some(&mask), None, Kernels::ForwardOnly)
            .unwrap();
        let b = policy
            .model
            .forward_with(&ids, Some(&mask), None, Kernels::Trainable)
            .unwrap();
        // Padding positions carry no meaning: compare real tokens only.
        let a = a.narrow(1, 2, 4).unwrap();
        let b = b.narrow(1, 2, 4).unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff < 1e-5,
            "{arch:?}: fused vs differentiable max diff {diff}"
        );
    }
}

/// A length limit far beyond memory reserves nothing up front: generation
/// stops on the caller's test as usual, on the CPU decoder (float32) and on
/// the tensor path (half precision).
#[test]
fn a_huge_length_limit_reserves_nothing() {
    let policy = policy(Architecture::Llama);
    let half = policy.to_dtype(candle_core::DType::BF16).unwrap();
    let config = SamplingConfig {
        max_new_tokens: usize::MAX / 2,
        ..SamplingConfig::default()
    };
    for model in [&policy.model, &half.model] {
        let out = generate_until(
            model,
            &prompts(),
            2,
            &config,
            &mut StdRng::seed_from_u64(0),
            |t| t.len() == 3,
        )
        .unwrap();
        assert!(out
            .iter()
            .all(|g| g.tokens.len() == 3 && g.finish == FinishReason::Stop));
    }
}
