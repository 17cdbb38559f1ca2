//! Writing small GGUF files the way llama.cpp's converter lays them out
//! (its tensor names, Q/K rows permuted for Llama, `{arch}.*` and
//! `tokenizer.ggml.*` metadata), with candle's own GGUF writer.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use policy::{gguf_name, Architecture, ModelConfig};
use serde_json::Value as Json;

/// Metadata and tensors of a GGUF file being put together.
#[derive(Default)]
pub struct GgufBuilder {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<(String, QTensor)>,
}

impl GgufBuilder {
    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn remove_meta(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self
    }

    pub fn tensor(&mut self, name: &str, tensor: &Tensor, dtype: GgmlDType) -> &mut Self {
        let q = QTensor::quantize(tensor, dtype).expect("quantizable");
        self.tensors.retain(|(n, _)| n != name);
        self.tensors.push((name.to_string(), q));
        self
    }

    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|(n, _)| n != name);
        self
    }

    pub fn write(&self, path: &Path) {
        let mut file = std::fs::File::create(path).expect("create gguf");
        let metadata: Vec<(&str, &Value)> =
            self.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> =
            self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut file, &metadata, &tensors).expect("write gguf");
    }
}

/// llama.cpp's `permute` (convert_hf_to_gguf.py): within each head, rows
/// (half, pair index) become (pair index, half).
pub fn llama_cpp_permute(t: &Tensor, heads: usize) -> Tensor {
    let dims = t.dims().to_vec();
    let mut split = vec![heads, 2, dims[0] / heads / 2];
    split.extend_from_slice(&dims[1..]);
    t.reshape(split)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape(dims)
        .unwrap()
}

/// The `{arch}.*` metadata of a config, as llama.cpp writes it.
pub fn model_metadata(builder: &mut GgufBuilder, config: &ModelConfig) {
    let arch = config.architecture.model_type();
    let u = |n: usize| Value::U32(n as u32);
    builder.meta("general.architecture", Value::String(arch.into()));
    builder.meta("general.name", Value::String("test model".into()));
    let entries = [
        ("block_count", u(config.num_hidden_layers)),
        ("context_length", u(config.max_position_embeddings)),
        ("embedding_length", u(config.hidden_size)),
        ("feed_forward_length", u(config.intermediate_size)),
        ("attention.head_count", u(config.num_attention_heads)),
        ("attention.head_count_kv", u(config.num_key_value_heads)),
        ("rope.freq_base", Value::F32(config.rope_theta as f32)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(config.rms_norm_eps as f32),
        ),
    ];
    for (key, value) in entries {
        builder.meta(&format!("{arch}.{key}"), value);
    }
    if config.architecture == Architecture::Qwen3 {
        builder.meta(&format!("{arch}.attention.key_length"), u(config.head_dim));
        builder.meta(
            &format!("{arch}.attention.value_length"),
            u(config.head_dim),
        );
    } else {
        builder.meta(&format!("{arch}.rope.dimension_count"), u(config.head_dim));
    }
}

/// Every weight under its llama.cpp name, Q/K permuted for Llama; `dtype`
/// picks each tensor's type from its Hugging Face name and shape.
pub fn weight_tensors(
    builder: &mut GgufBuilder,
    config: &ModelConfig,
    weights: &HashMap<String, Tensor>,
    dtype: impl Fn(&str, &[usize]) -> GgmlDType,
) {
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    for name in names {
        let mut tensor = weights[name].clone();
        if config.architecture == Architecture::Llama {
            if name.contains("self_attn.q_proj.") {
                tensor = llama_cpp_permute(&tensor, config.num_attention_heads);
            } else if name.contains("self_attn.k_proj.") {
                tensor = llama_cpp_permute(&tensor, config.num_key_value_heads);
            }
        }
        let gguf = gguf_name(name).unwrap_or_else(|| panic!("no llama.cpp name for {name}"));
        builder.tensor(&gguf, &tensor, dtype(name, tensor.dims()));
    }
}

/// `tokenizer.ggml.*` metadata from a model folder's tokenizer.json (a
/// byte-level BPE), with `pre` as the pre-tokenizer name.
pub fn tokenizer_metadata(builder: &mut GgufBuilder, dir: &Path, pre: &str) {
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let json: Json = serde_json::from_str(&text).unwrap();
    let mut tokens: Vec<(u64, String, i32)> = json["model"]["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, id)| (id.as_u64().unwrap(), t.clone(), 1))
        .collect();
    for added in json["added_tokens"].as_array().unwrap() {
        let id = added["id"].as_u64().unwrap();
        let kind = if added["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
        tokens.retain(|(i, _, _)| *i != id);
        tokens.push((id, added["content"].as_str().unwrap().to_string(), kind));
    }
    tokens.sort();
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Json::String(s) => Value::String(s.clone()),
            Json::Array(pair) => Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            )),
            _ => panic!("merge {m}"),
        })
        .collect();
    builder.meta("tokenizer.ggml.model", Value::String("gpt2".into()));
    builder.meta("tokenizer.ggml.pre", Value::String(pre.into()));
    builder.meta(
        "tokenizer.ggml.tokens",
        Value::Array(
            tokens
                .iter()
                .map(|(_, t, _)| Value::String(t.clone()))
                .collect(),
        ),
    );
    builder.meta(
        "tokenizer.ggml.token_type",
        Value::Array(tokens.iter().map(|(_, _, k)| Value::I32(*k)).collect()),
    );
    builder.meta("tokenizer.ggml.merges", Value::Array(merges));
    let id_of = |content: &str| {
        tokens
            .iter()
            .find(|(_, t, _)| t == content)
            .map(|(id, _, _)| Value::U32(*id as u32))
            .unwrap()
    };
    builder.meta("tokenizer.ggml.bos_token_id", id_of("<|endoftext|>"));
    builder.meta("tokenizer.ggml.eos_token_id", id_of("<|im_end|>"));
    builder.meta("tokenizer.ggml.padding_token_id", id_of("<|endoftext|>"));
    builder.meta("tokenizer.ggml.add_bos_token", Value::Bool(false));
    let template = std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap();
    builder.meta("tokenizer.chat_template", Value::String(template));
}

/// A fixture model folder (config.json, model.safetensors, tokenizer files)
/// as llama.cpp would convert it, every tensor float32.
pub fn folder_to_gguf(dir: &Path, pre: &str) -> GgufBuilder {
    let config = ModelConfig::from_file(dir.join("config.json")).unwrap();
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut builder = GgufBuilder::default();
    model_metadata(&mut builder, &config);
    weight_tensors(&mut builder, &config, &weights, |_, _| GgmlDType::F32);
    tokenizer_metadata(&mut builder, dir, pre);
    builder
}
