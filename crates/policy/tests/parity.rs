//! Parity with Hugging Face transformers on the fixture checkpoints
//! (../shared/fixtures): logits, log-probs, greedy decoding with the KV
//! cache, left-padded batches and the TRL-style scoring batch.

mod common;

use candle_core::Tensor;
use common::*;
use policy::{
    completion_logprobs, generate, parameter_shapes, Kernels, KvCache, Policy, SamplingConfig,
};
use rand::{rngs::StdRng, SeedableRng};
use serde_json::Value;

const MODELS: [&str; 2] = ["tiny-qwen2", "tiny-llama"];
const TOL: f64 = 1e-4;

fn load(name: &str) -> (Policy, Value) {
    let policy = Policy::load(model_dir(name), &test_device()).expect("fixture loads");
    (policy, reference(name))
}

fn log_softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

#[test]
fn loads_exactly_the_checkpoint_tensors() {
    for name in MODELS {
        let (policy, reference) = load(name);
        let mut expected: Vec<(String, Vec<usize>)> = reference["safetensors_tensors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), ids(v).into_iter().map(|d| d as usize).collect()))
            .collect();
        expected.sort();
        let mut ours = parameter_shapes(&policy.config);
        ours.sort();
        assert_eq!(ours, expected, "{name}");
        assert_eq!(policy.named_vars().len(), expected.len(), "{name}");
        let exported: Vec<(String, Vec<usize>)> = policy
            .model
            .named_weights()
            .into_iter()
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        assert_eq!(exported, parameter_shapes(&policy.config), "{name}");
        for (n, t) in policy.model.named_weights() {
            let var = policy.named_vars().into_iter().find(|(v, _)| *v == n);
            let var = var.expect("every exported weight is a var").1;
            assert_eq!(to_f64(&t), to_f64(var.as_tensor()), "{name} {n}");
        }
    }
}

#[test]
fn all_position_logits_and_next_token_logprobs() {
    for name in MODELS {
        let (policy, reference) = load(name);
        for seq in reference["sequences"].as_array().unwrap() {
            let input = ids(&seq["input_ids"]);
            let expected = floats2(&seq["logits"]);
            let x = tensor2(std::slice::from_ref(&input));
            for kernels in [Kernels::Trainable, Kernels::ForwardOnly, Kernels::Composed] {
                let logits = policy.model.forward_with(&x, None, None, kernels).unwrap();
                assert_eq!(logits.dims(), [1, input.len(), 99]);
                let ours = to_f64(&logits);
                let diff = max_abs_diff(&ours, &expected.concat());
                assert!(diff < TOL, "{name} {kernels:?} logits: max diff {diff}");

                let ours_lp: Vec<f64> = ours
                    .chunks(99)
                    .zip(&input[1..])
                    .map(|(row, &next)| log_softmax(row)[next as usize])
                    .collect();
                let diff = max_abs_diff(&ours_lp, &floats(&seq["next_token_logprobs"]));
                assert!(
                    diff < TOL,
                    "{name} {kernels:?} next-token log-probs: max diff {diff}"
                );
            }
        }
    }
}

#[test]
fn greedy_continuations_with_the_kv_cache() {
    for name in MODELS {
        let (policy, reference) = load(name);
        let model = &policy.model;
        for seq in reference["sequences"].as_array().unwrap() {
            let prompt = ids(&seq["input_ids"]);
            let expected_ids = ids(&seq["greedy"]["new_ids"]);
            let expected_logits = floats2(&seq["greedy"]["step_logits"]);

            // Step by step through the cache, checking every step's logits.
            let mut cache = KvCache::new(
                model.config(),
                1,
                prompt.len() + 16,
                model.dtype(),
                &test_device(),
            )
            .unwrap();
            let mut input = tensor2(std::slice::from_ref(&prompt));
            let mut new_ids = Vec::new();
            for (step, expected_step) in expected_logits.iter().enumerate() {
                let logits = model
                    .forward_with(&input, None, Some(&mut cache), Kernels::ForwardOnly)
                    .unwrap();
                let t = logits.dim(1).unwrap();
                let last = to_f64(&logits.narrow(1, t - 1, 1).unwrap());
                let diff = max_abs_diff(&last, expected_step);
                assert!(diff < TOL, "{name} step {step}: max logit diff {diff}");
                let next = last
                    .iter()
                    .enumerate()
                    .fold(0, |best, (i, &v)| if v > last[best] { i } else { best })
                    as u32;
                new_ids.push(next);
                input = Tensor::from_vec(vec![next], (1, 1), &test_device()).unwrap();
            }
            assert_eq!(new_ids, expected_ids, "{name}: stepwise greedy ids");

            let greedy = SamplingConfig {
                max_new_tokens: 16,
                temperature: 0.0,
                ..Default::default()
            };
            let out =
                generate(model, &[prompt], 1, &greedy, &mut StdRng::seed_from_u64(0)).unwrap();
            assert_eq!(out[0].tokens, expected_ids, "{name}: generate() greedy ids");
        }
    }
}

#[test]
fn teacher_forced_continuation_logprobs() {
    for name in MODELS {
        let (policy, reference) = load(name);
        for seq in reference["sequences"].as_array().unwrap() {
            let prompt = ids(&seq["input_ids"]);
            let cont = ids(&seq["continuation"]["ids"]);
            let row: Vec<u32> = prompt.iter().chain(&cont).copied().collect();
            let x = tensor2(std::slice::from_ref(&row));
            let mask = Tensor::ones(x.dims(), candle_core::DType::U32, &test_device()).unwrap();
            let lp = completion_logprobs(&policy.model, &x, &mask, cont.len(), 1.0).unwrap();
            let diff = max_abs_diff(&to_f64(&lp), &floats(&seq["continuation"]["logprobs"]));
            assert!(
                diff < TOL,
                "{name}: teacher-forced log-probs max diff {diff}"
            );
        }
    }
}

#[test]
fn left_padded_batch_matches_unbatched() {
    for name in MODELS {
        let (policy, reference) = load(name);
        let batch = &reference["batched_left_padded"];
        let input = ids2(&batch["input_ids"]);
        let mask = tensor2(&ids2(&batch["attention_mask"]));
        let x = tensor2(&input);
        for kernels in [Kernels::Trainable, Kernels::ForwardOnly, Kernels::Composed] {
            let logits = policy
                .model
                .forward_with(&x, Some(&mask), None, kernels)
                .unwrap();
            let t = logits.dim(1).unwrap();
            let last = to_f64(&logits.narrow(1, t - 1, 1).unwrap());
            for key in [
                "last_logits",
                "last_logits_with_position_ids",
                "unbatched_last_logits",
            ] {
                let diff = max_abs_diff(&last, &floats2(&batch[key]).concat());
                assert!(diff < TOL, "{name} {kernels:?} vs {key}: max diff {diff}");
            }
        }

        // Batched greedy generation from the unpadded prompts gives the same ids.
        let prompts: Vec<Vec<u32>> = reference["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| ids(&s["input_ids"]))
            .collect();
        let greedy = SamplingConfig {
            max_new_tokens: 16,
            temperature: 0.0,
            ..Default::default()
        };
        let out = generate(
            &policy.model,
            &prompts,
            1,
            &greedy,
            &mut StdRng::seed_from_u64(0),
        )
        .unwrap();
        let ours: Vec<Vec<u32>> = out.into_iter().map(|g| g.tokens).collect();
        assert_eq!(
            ours,
            ids2(&batch["greedy_new_ids_batched_generate"]),
            "{name}"
        );
    }
}

#[test]
fn trl_style_scoring_batch() {
    for name in MODELS {
        let (policy, reference) = load(name);
        let batch = &reference["trl_style_scoring_batch"];
        let x = tensor2(&ids2(&batch["input_ids"]));
        let mask = tensor2(&ids2(&batch["attention_mask"]));
        let keep = batch["logits_to_keep"].as_u64().unwrap() as usize;
        let lp = completion_logprobs(&policy.model, &x, &mask, keep, 1.0).unwrap();
        assert_eq!(lp.dims(), [3, keep]);
        let ours = to_f64(&lp);
        let completion_mask = ids2(&batch["completion_mask"]).concat();
        let expected = floats2(&batch["per_token_logps"]).concat();
        let masked = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .zip(&completion_mask)
                .map(|(x, &m)| if m == 1 { *x } else { 0.0 })
                .collect()
        };
        let diff = max_abs_diff(&masked(&ours), &expected);
        assert!(
            diff < TOL,
            "{name}: TRL-style per-token log-probs max diff {diff}"
        );
    }
}
