//! GGUF files written here with candle's writer, laid out as llama.cpp's
//! converter lays them out: every quantization type dequantized within its
//! error, the fixture models' transformers logits reproduced through a GGUF
//! (Llama's permuted Q/K rows undone, Qwen2's tied output, biases), the
//! tokenizer rebuilt from metadata, and malformed files rejected with a
//! message naming the file and the problem.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::gguf_writer::*;
use common::*;
use policy::{Architecture, ChatMessage, GgufModel, ModelConfig, Policy, Tokenizer};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("gguf")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn error_of<T>(result: policy::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A random model whose widths are multiples of 256, so every weight can be
/// stored in every block type (K-quants have 256-wide blocks).
fn block_friendly_model(architecture: Architecture) -> (ModelConfig, HashMap<String, Tensor>) {
    let mut config = ModelConfig::new(architecture, 64, 256, 512, 1, 4, 2);
    config.tie_word_embeddings = false;
    config.max_position_embeddings = 64;
    let policy = Policy::random(&config, 7, &Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    // Gaussian-ish weights of scale 1 (random init is far smaller), norms
    // around 1: errors are then comparable across tensors.
    let weights = policy
        .named_vars()
        .into_iter()
        .map(|(name, var)| {
            let dims = var.as_tensor().dims().to_vec();
            let n: usize = dims.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * 1.7)
                .collect();
            let t = Tensor::from_vec(values, dims, &Device::Cpu).unwrap();
            (name, t)
        })
        .collect();
    (config, weights)
}

/// Relative RMS error each type must stay within: 1.3 times the largest
/// observed here (the draw is seeded); F32 is exact.
const TYPES: [(GgmlDType, f64); 13] = [
    (GgmlDType::F32, 0.0),
    (GgmlDType::F16, 3e-4),
    (GgmlDType::BF16, 2.2e-3),
    (GgmlDType::Q8_0, 6.7e-3),
    (GgmlDType::Q6K, 2.3e-2),
    (GgmlDType::Q5_0, 5.3e-2),
    (GgmlDType::Q5_1, 4.8e-2),
    (GgmlDType::Q5K, 4.7e-2),
    (GgmlDType::Q4_0, 0.107),
    (GgmlDType::Q4_1, 0.099),
    (GgmlDType::Q4K, 0.095),
    (GgmlDType::Q3K, 0.191),
    (GgmlDType::Q2K, 0.372),
];

fn rel_rms(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn every_tensor_type_dequantizes_within_its_error() {
    let dir = scratch("types");
    for architecture in [Architecture::Llama, Architecture::Qwen2] {
        let (config, weights) = block_friendly_model(architecture);
        for (dtype, tolerance) in TYPES {
            // Matrices in the type under test, vectors float32 (as llama.cpp).
            let pick = |_: &str, dims: &[usize]| {
                if dims.len() == 2 {
                    dtype
                } else {
                    GgmlDType::F32
                }
            };
            let mut builder = GgufBuilder::default();
            model_metadata(&mut builder, &config);
            weight_tensors(&mut builder, &config, &weights, pick);
            let path = dir.join(format!("{architecture:?}-{dtype:?}.gguf"));
            builder.write(&path);

            let gguf = GgufModel::open(&path).unwrap();
            let loaded_config = gguf.config().unwrap();
            assert_eq!(loaded_config.hidden_size, 256);
            assert!(!loaded_config.tie_word_embeddings);
            let loaded = gguf.weights(&loaded_config, &Device::Cpu).unwrap();
            assert_eq!(loaded.len(), weights.len());
            for (name, source) in &weights {
                let ours = to_f64(&loaded[name]);
                let want = to_f64(source);
                let error = rel_rms(&ours, &want);
                assert!(
                    error <= tolerance,
                    "{architecture:?} {dtype:?} {name}: relative error {error}"
                );
                if source.dims().len() == 2 {
                    // Exactly what candle's own round trip gives: the loader
                    // read the right bytes and put every row back in place.
                    let direct = QTensor::quantize(source, dtype)
                        .unwrap()
                        .dequantize(&Device::Cpu)
                        .unwrap();
                    assert_eq!(ours, to_f64(&direct), "{architecture:?} {dtype:?} {name}");
                    if dtype != GgmlDType::F32 {
                        assert!(error > 0.0, "{dtype:?} {name} was not quantized");
                    }
                }
            }
        }
    }
}

/// The fixture folder converted to GGUF, loaded back.
fn fixture_through_gguf(name: &str, pre: &str) -> (Policy, Tokenizer, PathBuf) {
    let path = scratch(name).join(format!("{name}.gguf"));
    folder_to_gguf(&model_dir(name), pre).write(&path);
    let gguf = GgufModel::open(&path).unwrap();
    (
        gguf.policy(&Device::Cpu).unwrap(),
        gguf.tokenizer().unwrap(),
        path,
    )
}

#[test]
fn fixture_models_through_gguf_give_transformers_logits() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let (policy, _, path) = fixture_through_gguf(name, "qwen2");
        let folder = Policy::load(model_dir(name), &Device::Cpu).unwrap();
        let mut config = folder.config.clone();
        // config.json keeps keys a GGUF has no place for; the model is the same.
        config = ModelConfig::from_json(config.to_json()).unwrap();
        assert_eq!(
            policy.config.to_json()["tie_word_embeddings"],
            config.to_json()["tie_word_embeddings"]
        );
        assert_eq!(policy.config.architecture, config.architecture, "{name}");
        assert_eq!(policy.config.num_parameters(), config.num_parameters());
        let reference = reference(name);
        for seq in reference["sequences"].as_array().unwrap() {
            let input = ids(&seq["input_ids"]);
            let x = tensor2(std::slice::from_ref(&input));
            let ours = to_f64(&policy.model.forward(&x, None, None).unwrap());
            let diff = max_abs_diff(&ours, &floats2(&seq["logits"]).concat());
            assert!(
                diff < 1e-4,
                "{name} via {}: logits differ by {diff}",
                path.display()
            );
            let folder_logits = to_f64(&folder.model.forward(&x, None, None).unwrap());
            assert!(max_abs_diff(&ours, &folder_logits) < 1e-5, "{name}");
        }
    }
}

#[test]
fn keeping_llamas_permuted_rows_would_be_caught() {
    // The same file with the rows stored unpermuted: the loader undoes a
    // permutation that is not there, and the logits move far.
    let dir = model_dir("tiny-llama");
    let config = ModelConfig::from_file(dir.join("config.json")).unwrap();
    let mut weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut builder = folder_to_gguf(&dir, "qwen2");
    for l in 0..config.num_hidden_layers {
        let q = weights
            .remove(&format!("model.layers.{l}.self_attn.q_proj.weight"))
            .unwrap();
        builder.tensor(&format!("blk.{l}.attn_q.weight"), &q, GgmlDType::F32);
    }
    let path = scratch("unpermuted").join("m.gguf");
    builder.write(&path);
    let policy = GgufModel::open(&path)
        .unwrap()
        .policy(&Device::Cpu)
        .unwrap();
    let seq = &reference("tiny-llama")["sequences"][0];
    let x = tensor2(&[ids(&seq["input_ids"])]);
    let ours = to_f64(&policy.model.forward(&x, None, None).unwrap());
    let diff = max_abs_diff(&ours, &floats2(&seq["logits"]).concat());
    assert!(diff > 0.1, "logits moved only {diff}");
}

#[test]
fn qwen3_through_gguf_matches_its_folder() {
    let mut config = ModelConfig::new(Architecture::Qwen3, 50, 64, 96, 2, 4, 2);
    config.head_dim = 32; // wider than hidden / heads, as Qwen3 allows
    config.max_position_embeddings = 128;
    let folder = scratch("qwen3");
    let policy = Policy::random(&config, 11, &Device::Cpu).unwrap();
    policy.save(&folder).unwrap();
    let weights: HashMap<String, Tensor> = policy
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let mut builder = GgufBuilder::default();
    model_metadata(&mut builder, &config);
    weight_tensors(&mut builder, &config, &weights, |_, _| GgmlDType::F32);
    let path = folder.join("m.gguf");
    builder.write(&path);
    let loaded = GgufModel::open(&path)
        .unwrap()
        .policy(&Device::Cpu)
        .unwrap();
    assert!(loaded.config.qk_norm && loaded.config.tie_word_embeddings);
    assert_eq!(loaded.config.head_dim, 32);
    let x = tensor2(&[vec![3, 1, 4, 1, 5, 9, 2, 6]]);
    let a = to_f64(&loaded.model.forward(&x, None, None).unwrap());
    let b = to_f64(
        &Policy::load(&folder, &Device::Cpu)
            .unwrap()
            .model
            .forward(&x, None, None)
            .unwrap(),
    );
    assert_eq!(a, b);
}

#[test]
fn tokenizer_from_metadata_matches_the_fixture() {
    let (policy, tokenizer, _) = fixture_through_gguf("tiny-qwen2", "qwen2");
    let checks = &reference("tiny-qwen2")["tokenizer_checks"];
    for example in ["chat_template_example", "roundtrip_example"] {
        let text = checks[example]["text"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(text, false).unwrap(),
            ids(&checks[example]["ids"])
        );
        assert_eq!(
            tokenizer
                .decode(&ids(&checks[example]["ids"]), false)
                .unwrap(),
            text
        );
    }
    let chat = tokenizer
        .apply_chat_template(&[ChatMessage::user("2+2=?")], true)
        .unwrap();
    assert_eq!(
        chat,
        checks["chat_template_example"]["text"].as_str().unwrap()
    );
    assert_eq!(tokenizer.eos_ids(), [98]);
    assert_eq!(
        (tokenizer.bos_id(), tokenizer.pad_id()),
        (Some(96), Some(96))
    );
    assert_eq!(tokenizer.vocab_size(), 99);
    // Control tokens are special: dropped when decoding without them.
    assert_eq!(tokenizer.decode(&[97, 40, 98], true).unwrap(), "H");
    assert_eq!(policy.config.eos_token_ids, [98]);

    // add_bos_token puts BOS before text encoded with special tokens only.
    let dir = scratch("bos");
    let mut builder = folder_to_gguf(&model_dir("tiny-qwen2"), "qwen2");
    builder.meta("tokenizer.ggml.add_bos_token", Value::Bool(true));
    builder.write(&dir.join("m.gguf"));
    let with_bos = GgufModel::open(dir.join("m.gguf"))
        .unwrap()
        .tokenizer()
        .unwrap();
    assert_eq!(with_bos.encode("Hi", true).unwrap(), [96, 40, 73]);
    assert_eq!(with_bos.encode("Hi", false).unwrap(), [40, 73]);
}

#[test]
fn a_saved_gguf_model_is_a_folder_that_loads_the_same() {
    let (policy, tokenizer, _) = fixture_through_gguf("tiny-llama", "qwen2");
    let dir = scratch("saved");
    policy.save(&dir).unwrap();
    tokenizer.save(&dir).unwrap();
    let again = Policy::load(&dir, &Device::Cpu).unwrap();
    let x = tensor2(&[vec![5, 6, 7, 8]]);
    assert_eq!(
        to_f64(&again.model.forward(&x, None, None).unwrap()),
        to_f64(&policy.model.forward(&x, None, None).unwrap())
    );
    let reread = Tokenizer::from_dir(&dir).unwrap();
    let text = "<|im_start|>user\nWhat is 3+4?<|im_end|>\n";
    assert_eq!(
        reread.encode(text, false).unwrap(),
        tokenizer.encode(text, false).unwrap()
    );
    assert_eq!(
        reread.chat_template().unwrap().source(),
        tokenizer.chat_template().unwrap().source()
    );
    assert_eq!(reread.eos_ids(), tokenizer.eos_ids());
}

/// A small valid GGUF (the tiny Llama) to break in various ways.
fn tiny_builder() -> GgufBuilder {
    folder_to_gguf(&model_dir("tiny-llama"), "qwen2")
}

fn write(builder: &GgufBuilder, name: &str) -> PathBuf {
    let path = scratch("bad").join(format!("{name}.gguf"));
    builder.write(&path);
    path
}

/// Loads everything a model needs; the first error.
fn load_all(path: &Path) -> policy::Result<(Policy, Tokenizer)> {
    let gguf = GgufModel::open(path)?;
    Ok((gguf.policy(&Device::Cpu)?, gguf.tokenizer()?))
}

#[test]
fn truncated_and_corrupt_files_are_errors_naming_the_file() {
    let good = write(&tiny_builder(), "good");
    let bytes = std::fs::read(&good).unwrap();
    assert!(load_all(&good).is_ok());
    let dir = scratch("truncated");
    // Cut inside the header, the metadata, the tensor directory and the data.
    let cuts = [0, 3, 10, 30, 200, 2_000, bytes.len() / 2, bytes.len() - 1];
    for cut in cuts {
        let path = dir.join(format!("cut-{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let message = error_of(load_all(&path));
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("truncated") || message.contains("GGUF"),
            "cut at {cut}: {message}"
        );
    }
    let mut corrupt = bytes.clone();
    corrupt[..4].copy_from_slice(b"GGXX");
    let path = dir.join("magic.gguf");
    std::fs::write(&path, &corrupt).unwrap();
    assert!(error_of(load_all(&path)).contains("not a readable GGUF"));
    // Flipping bytes anywhere never panics.
    let mut rng = StdRng::seed_from_u64(5);
    for i in 0..60 {
        let mut flipped = bytes.clone();
        let at = rng.random_range(0..4_000.min(flipped.len()));
        flipped[at] ^= 0xff;
        let path = dir.join(format!("flip-{i}.gguf"));
        std::fs::write(&path, &flipped).unwrap();
        let _ = load_all(&path);
    }
    let message = error_of(load_all(&dir.join("missing.gguf")));
    assert!(message.contains("missing.gguf"), "{message}");
}

/// An edit that breaks a valid file.
type Change = Box<dyn Fn(&mut GgufBuilder)>;

#[test]
fn unsupported_models_name_what_is_missing() {
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "arch",
            Box::new(|b| {
                b.meta("general.architecture", Value::String("phi3".into()));
            }),
            "general.architecture 'phi3'",
        ),
        (
            "block-count",
            Box::new(|b| {
                b.remove_meta("llama.block_count");
            }),
            "llama.block_count",
        ),
        (
            "wrong-type",
            Box::new(|b| {
                b.meta("llama.block_count", Value::String("two".into()));
            }),
            "llama.block_count",
        ),
        (
            "missing-tensor",
            Box::new(|b| {
                b.remove_tensor("blk.1.ffn_up.weight");
            }),
            "blk.1.ffn_up.weight",
        ),
        (
            "extra-tensor",
            Box::new(|b| {
                let t = Tensor::zeros(8, candle_core::DType::F32, &Device::Cpu).unwrap();
                b.tensor("blk.0.attn_sinks.weight", &t, GgmlDType::F32);
            }),
            "blk.0.attn_sinks.weight",
        ),
        (
            "shape",
            Box::new(|b| {
                b.meta("llama.feed_forward_length", Value::U32(128));
            }),
            "ffn_gate.weight",
        ),
        (
            "rope-scaling",
            Box::new(|b| {
                b.meta("llama.rope.scaling.type", Value::String("yarn".into()));
            }),
            "yarn",
        ),
        (
            "tokenizer-model",
            Box::new(|b| {
                b.meta("tokenizer.ggml.model", Value::String("bert".into()));
            }),
            "tokenizer.ggml.model 'bert'",
        ),
        (
            "pre-tokenizer",
            Box::new(|b| {
                b.meta("tokenizer.ggml.pre", Value::String("made-up".into()));
            }),
            "tokenizer.ggml.pre 'made-up'",
        ),
        (
            "merges",
            Box::new(|b| {
                b.meta(
                    "tokenizer.ggml.merges",
                    Value::Array(vec![Value::String("H e".into())]),
                );
            }),
            "\"He\"",
        ),
        (
            "eos",
            Box::new(|b| {
                b.meta("tokenizer.ggml.eos_token_id", Value::U32(500));
            }),
            "tokenizer.ggml.eos_token_id",
        ),
        (
            "template",
            Box::new(|b| {
                b.meta("tokenizer.chat_template", Value::String("{% for %}".into()));
            }),
            "tokenizer.chat_template",
        ),
    ];
    for (name, change, expected) in cases {
        let mut builder = tiny_builder();
        change(&mut builder);
        let path = write(&builder, name);
        let message = error_of(load_all(&path));
        assert!(
            message.contains(&path.display().to_string()) && message.contains(expected),
            "{name}: {message}"
        );
    }
}

#[test]
fn an_unsupported_tensor_type_is_named() {
    let path = write(&tiny_builder(), "iq2");
    // Rewrite the type of `output_norm.weight` in the tensor directory to
    // 16 (IQ2_XXS): after the name come n_dims (u32), the dims (u64 each)
    // and the type (u32).
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"output_norm.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    bytes[type_at..type_at + 4].copy_from_slice(&16u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let message = error_of(load_all(&path));
    assert!(
        message.contains("IQ2_XXS") && message.contains("iq2.gguf"),
        "{message}"
    );
}

#[test]
fn a_sentencepiece_vocabulary_tokenizes_as_transformers_does() {
    // A Llama-2-style vocabulary (byte tokens, scores, no merges) and
    // transformers' ids, from scripts/spm_tokenizer_reference.py.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spm_tokenizer.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |key: &str| -> Vec<Value> {
        fixture[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Value::String(t.as_str().unwrap().to_string()))
            .collect()
    };
    let mut builder = GgufBuilder::default();
    builder
        .meta("general.architecture", Value::String("llama".into()))
        .meta("tokenizer.ggml.model", Value::String("llama".into()))
        .meta("tokenizer.ggml.tokens", Value::Array(strings("tokens")))
        .meta(
            "tokenizer.ggml.scores",
            Value::Array(
                floats(&fixture["scores"])
                    .into_iter()
                    .map(|s| Value::F32(s as f32))
                    .collect(),
            ),
        )
        .meta(
            "tokenizer.ggml.token_type",
            Value::Array(
                ids(&fixture["token_types"])
                    .into_iter()
                    .map(|t| Value::I32(t as i32))
                    .collect(),
            ),
        )
        .meta("tokenizer.ggml.bos_token_id", Value::U32(1))
        .meta("tokenizer.ggml.eos_token_id", Value::U32(2))
        .meta("tokenizer.ggml.unknown_token_id", Value::U32(0))
        .meta("tokenizer.ggml.add_bos_token", Value::Bool(true));
    let path = scratch("spm").join("spm.gguf");
    builder.write(&path);
    let tokenizer = GgufModel::open(&path).unwrap().tokenizer().unwrap();
    assert_eq!(tokenizer.bos_id(), Some(1));
    assert_eq!(tokenizer.eos_ids(), [2]);
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let plain = tokenizer.encode(text, false).unwrap();
        assert_eq!(plain, ids(&case["ids"]), "{text:?}");
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            ids(&case["ids_with_bos"]),
            "{text:?}"
        );
        assert_eq!(
            tokenizer.decode(&plain, false).unwrap(),
            case["decoded"].as_str().unwrap()
        );
    }
}
