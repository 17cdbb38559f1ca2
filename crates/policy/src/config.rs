//! The model configuration, read from and written to a Hugging Face `config.json`.
//!
//! Both layouts are accepted: transformers 4 (top-level `rope_theta`,
//! `rope_scaling`, `torch_dtype`) and transformers 5 (`rope_parameters`,
//! `dtype`). Saving writes both, so either version reads the file.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// The model families verity implements. They share one transformer and
/// differ in biases, q/k normalisation and defaults. Serialised as the
/// `model_type` (`llama`, `qwen2`, `qwen3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// `LlamaForCausalLM`: optional biases everywhere (`attention_bias`, `mlp_bias`).
    Llama,
    /// `Qwen2ForCausalLM`: q/k/v projections always carry a bias, o_proj never.
    Qwen2,
    /// `Qwen3ForCausalLM`: RMSNorm over each query and key head (`q_norm`, `k_norm`), explicit `head_dim`.
    Qwen3,
}

impl Architecture {
    /// Parses an `architectures` entry or a `model_type`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "LlamaForCausalLM" | "llama" => Ok(Architecture::Llama),
            "Qwen2ForCausalLM" | "qwen2" => Ok(Architecture::Qwen2),
            "Qwen3ForCausalLM" | "qwen3" => Ok(Architecture::Qwen3),
            _ => Err(Error::UnknownArchitecture {
                name: name.to_string(),
            }),
        }
    }

    /// The class name transformers uses (`architectures[0]`).
    pub fn class_name(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    /// The `model_type` transformers uses.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }
}

/// How rotary frequencies are rescaled for long contexts (`rope_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// `"default"`: plain RoPE.
    Default,
    /// `"linear"`: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// `"llama3"`: Llama 3.1's piecewise frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// Everything needed to build the transformer. Field names follow config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Key/value heads for grouped-query attention; query head `h` reads KV head `h / (heads / kv_heads)`.
    pub num_key_value_heads: usize,
    /// Per-head width; config.json's `head_dim`, else `hidden_size / num_attention_heads`.
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// The LM head reuses `model.embed_tokens.weight` (no `lm_head.weight` tensor).
    pub tie_word_embeddings: bool,
    /// Bias on q_proj, k_proj and v_proj.
    pub qkv_bias: bool,
    /// Bias on o_proj.
    pub o_bias: bool,
    /// Bias on gate_proj, up_proj and down_proj.
    pub mlp_bias: bool,
    /// RMSNorm over each query and key head before RoPE (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    /// One or more end-of-sequence ids (config.json allows an int or a list).
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// Standard deviation of the normal used by random initialisation.
    pub initializer_range: f64,
    /// Keys of the original config.json this struct does not model, written back on save.
    extra: Map<String, Value>,
}

impl ModelConfig {
    /// The rotary embedding's inverse frequency per pair of a head's
    /// dimensions, scaled as `rope_scaling` asks; float32 throughout, as
    /// transformers computes them.
    pub(crate) fn rope_inverse_frequencies(&self) -> Vec<f32> {
        let dim = self.head_dim;
        let base = self.rope_theta as f32;
        (0..dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
            .map(|f| scale_frequency(f, self.rope_scaling))
            .collect()
    }

    /// A config with the usual defaults of `architecture`: head_dim =
    /// hidden / heads, rope_theta 10000, RMSNorm eps 1e-6, tied embeddings,
    /// the family's biases, 2048 positions, init std 0.02, no special ids.
    pub fn new(
        architecture: Architecture,
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
    ) -> Self {
        ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim: hidden_size / num_attention_heads.max(1),
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::Default,
            tie_word_embeddings: true,
            qkv_bias: architecture == Architecture::Qwen2,
            o_bias: false,
            mlp_bias: false,
            qk_norm: architecture == Architecture::Qwen3,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            initializer_range: 0.02,
            extra: Map::new(),
        }
    }

    /// Reads a config.json file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::json(path, e))?;
        Self::from_json(value).map_err(|e| match e {
            Error::Config(message) => Error::Config(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// Builds a config from a parsed config.json.
    pub fn from_json(value: Value) -> Result<Self> {
        let Value::Object(mut map) = value else {
            return Err(Error::Config("config.json is not a JSON object".into()));
        };
        let architecture = match map.get("architectures").and_then(|a| a.get(0)) {
            Some(Value::String(name)) => Architecture::parse(name)?,
            _ => match map.get("model_type") {
                Some(Value::String(name)) => Architecture::parse(name)?,
                _ => {
                    return Err(Error::Config(
                        "neither 'architectures' nor 'model_type' is set".into(),
                    ))
                }
            },
        };
        if map.contains_key("quantization_config") {
            return Err(Error::Config(
                "quantized checkpoints ('quantization_config') are not supported".into(),
            ));
        }
        if let Some(act) = map.get("hidden_act").filter(|v| !v.is_null()) {
            if act.as_str() != Some("silu") {
                return Err(Error::Config(format!(
                    "hidden_act {act} is not supported (only \"silu\")"
                )));
            }
        }
        if map.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            return Err(Error::Config(
                "use_sliding_window = true is not supported".into(),
            ));
        }

        let vocab_size = usize_key(&map, "vocab_size")?;
        let hidden_size = usize_key(&map, "hidden_size")?;
        let intermediate_size = usize_key(&map, "intermediate_size")?;
        let num_hidden_layers = usize_key(&map, "num_hidden_layers")?;
        let num_attention_heads = usize_key(&map, "num_attention_heads")?;
        let num_key_value_heads =
            opt_usize_key(&map, "num_key_value_heads")?.unwrap_or(num_attention_heads);
        let default_head_dim = match architecture {
            Architecture::Qwen3 => 128,
            _ => hidden_size / num_attention_heads.max(1),
        };
        let head_dim = opt_usize_key(&map, "head_dim")?.unwrap_or(default_head_dim);
        let default_max_positions = match architecture {
            Architecture::Llama => 2048,
            Architecture::Qwen2 | Architecture::Qwen3 => 32768,
        };
        let max_position_embeddings =
            opt_usize_key(&map, "max_position_embeddings")?.unwrap_or(default_max_positions);
        let rms_norm_eps = opt_f64_key(&map, "rms_norm_eps")?.unwrap_or(1e-6);
        let (rope_theta, rope_scaling) = parse_rope(&map)?;
        let tie_word_embeddings = opt_bool_key(&map, "tie_word_embeddings")?.unwrap_or(false);
        let attention_bias = opt_bool_key(&map, "attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias, mlp_bias, qk_norm) = match architecture {
            Architecture::Llama => (
                attention_bias,
                attention_bias,
                opt_bool_key(&map, "mlp_bias")?.unwrap_or(false),
                false,
            ),
            Architecture::Qwen2 => (true, false, false, false),
            Architecture::Qwen3 => (attention_bias, attention_bias, false, true),
        };
        let bos_token_id = opt_token_key(&map, "bos_token_id")?;
        let pad_token_id = opt_token_key(&map, "pad_token_id")?;
        let eos_token_ids = match map.get("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| token_value("eos_token_id", v))
                .collect::<Result<_>>()?,
            Some(v) => vec![token_value("eos_token_id", v)?],
        };
        let initializer_range = opt_f64_key(&map, "initializer_range")?.unwrap_or(0.02);

        for key in MODELLED_KEYS {
            map.remove(*key);
        }
        let config = ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm,
            bos_token_id,
            eos_token_ids,
            pad_token_id,
            initializer_range,
            extra: map,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes fit together (non-zero, heads divisible by KV heads, even head_dim).
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        for (key, value) in sizes {
            if value == 0 {
                return Err(Error::Config(format!("{key} must be positive, got 0")));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(Error::Config(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "head_dim must be even for RoPE, got {}",
                self.head_dim
            )));
        }
        if self.rope_theta.is_nan()
            || self.rope_theta <= 0.0
            || self.rms_norm_eps.is_nan()
            || self.rms_norm_eps < 0.0
        {
            return Err(Error::Config(format!(
                "rope_theta {} must be positive and rms_norm_eps {} non-negative",
                self.rope_theta, self.rms_norm_eps
            )));
        }
        for id in self
            .eos_token_ids
            .iter()
            .chain(&self.bos_token_id)
            .chain(&self.pad_token_id)
        {
            if *id as usize >= self.vocab_size {
                return Err(Error::Config(format!(
                    "special token id {id} is outside the vocabulary of {}",
                    self.vocab_size
                )));
            }
        }
        Ok(())
    }

    /// The config.json that transformers 4 and 5 both read, including any
    /// keys of the original file this struct does not model.
    pub fn to_json(&self) -> Value {
        let mut map = self.extra.clone();
        let mut rope_parameters = json!({"rope_type": "default", "rope_theta": self.rope_theta});
        let rope_scaling = match self.rope_scaling {
            RopeScaling::Default => Value::Null,
            RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        if let (Value::Object(params), Value::Object(scaling)) =
            (&mut rope_parameters, &rope_scaling)
        {
            params.extend(scaling.clone());
        }
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let entries = [
            ("architectures", json!([self.architecture.class_name()])),
            ("model_type", json!(self.architecture.model_type())),
            ("vocab_size", json!(self.vocab_size)),
            ("hidden_size", json!(self.hidden_size)),
            ("intermediate_size", json!(self.intermediate_size)),
            ("num_hidden_layers", json!(self.num_hidden_layers)),
            ("num_attention_heads", json!(self.num_attention_heads)),
            ("num_key_value_heads", json!(self.num_key_value_heads)),
            ("head_dim", json!(self.head_dim)),
            ("hidden_act", json!("silu")),
            (
                "max_position_embeddings",
                json!(self.max_position_embeddings),
            ),
            ("rms_norm_eps", json!(self.rms_norm_eps)),
            ("rope_theta", json!(self.rope_theta)),
            ("rope_parameters", rope_parameters),
            ("tie_word_embeddings", json!(self.tie_word_embeddings)),
            ("bos_token_id", json!(self.bos_token_id)),
            ("eos_token_id", eos),
            ("pad_token_id", json!(self.pad_token_id)),
            ("initializer_range", json!(self.initializer_range)),
            ("dtype", json!("float32")),
            ("torch_dtype", json!("float32")),
            ("use_cache", json!(true)),
        ];
        for (key, value) in entries {
            map.insert(key.to_string(), value);
        }
        // transformers 4 reads scaling from rope_scaling; 5 from rope_parameters.
        if !rope_scaling.is_null() {
            map.insert("rope_scaling".into(), rope_scaling);
        }
        match self.architecture {
            Architecture::Llama => {
                map.insert("attention_bias".into(), json!(self.qkv_bias));
                map.insert("mlp_bias".into(), json!(self.mlp_bias));
            }
            Architecture::Qwen2 => {}
            Architecture::Qwen3 => {
                map.insert("attention_bias".into(), json!(self.qkv_bias));
            }
        }
        Value::Object(map)
    }

    /// Writes [`ModelConfig::to_json`] to `path`, pretty-printed.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text =
            serde_json::to_string_pretty(&self.to_json()).map_err(|e| Error::json(path, e))?;
        std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
    }

    /// Query heads per KV head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

/// Keys read into typed fields; everything else is kept in `extra`.
const MODELLED_KEYS: &[&str] = &[
    "architectures",
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "initializer_range",
    "dtype",
    "torch_dtype",
    "use_cache",
];

fn parse_rope(map: &Map<String, Value>) -> Result<(f64, RopeScaling)> {
    let params = map.get("rope_parameters").filter(|v| !v.is_null());
    let legacy = map.get("rope_scaling").filter(|v| !v.is_null());
    for (key, value) in [("rope_parameters", params), ("rope_scaling", legacy)] {
        if let Some(v) = value {
            if !v.is_object() {
                return Err(Error::Config(format!("{key} must be an object, got {v}")));
            }
        }
    }
    let theta = match params.and_then(|p| p.get("rope_theta")) {
        Some(v) => number("rope_parameters.rope_theta", v)?,
        None => opt_f64_key(map, "rope_theta")?.unwrap_or(10_000.0),
    };
    // transformers 5 keeps the scaling in rope_parameters, 4.x in rope_scaling.
    let scaling = match params {
        Some(p) if p.get("rope_type").is_some() || p.get("type").is_some() => Some(p),
        _ => legacy,
    };
    let Some(scaling) = scaling else {
        return Ok((theta, RopeScaling::Default));
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let field = |name: &str| -> Result<f64> {
        match scaling.get(name) {
            Some(v) => number(&format!("rope scaling {name}"), v),
            None => Err(Error::Config(format!("rope_type '{kind}' needs '{name}'"))),
        }
    };
    let rope_scaling = match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear {
            factor: field("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: field("factor")?,
            low_freq_factor: field("low_freq_factor")?,
            high_freq_factor: field("high_freq_factor")?,
            original_max_position_embeddings: field("original_max_position_embeddings")? as usize,
        },
        other => {
            return Err(Error::Config(format!(
                "rope_type '{other}' is not supported (default, linear, llama3)"
            )))
        }
    };
    Ok((theta, rope_scaling))
}

fn number(key: &str, value: &Value) -> Result<f64> {
    value
        .as_f64()
        .ok_or_else(|| Error::Config(format!("{key} must be a number, got {value}")))
}

fn usize_key(map: &Map<String, Value>, key: &str) -> Result<usize> {
    opt_usize_key(map, key)?.ok_or_else(|| Error::Config(format!("missing key '{key}'")))
}

fn opt_usize_key(map: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| Error::Config(format!("{key} must be a non-negative integer, got {v}"))),
    }
}

fn opt_f64_key(map: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => number(key, v).map(Some),
    }
}

fn opt_bool_key(map: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| Error::Config(format!("{key} must be true or false, got {v}"))),
    }
}

fn opt_token_key(map: &Map<String, Value>, key: &str) -> Result<Option<u32>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => token_value(key, v).map(Some),
    }
}

fn token_value(key: &str, value: &Value) -> Result<u32> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Error::Config(format!("{key} must be a token id, got {value}")))
}

fn scale_frequency(freq: f32, scaling: RopeScaling) -> f32 {
    match scaling {
        RopeScaling::Default => freq,
        RopeScaling::Linear { factor } => freq / factor as f32,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            // transformers' _compute_llama3_parameters.
            let old_context = original_max_position_embeddings as f64;
            let low_freq_wavelen = old_context / low_freq_factor;
            let high_freq_wavelen = old_context / high_freq_factor;
            let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
            if wavelen < high_freq_wavelen {
                freq
            } else if wavelen > low_freq_wavelen {
                (freq as f64 / factor) as f32
            } else {
                let smooth = (old_context / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                ((1.0 - smooth) * freq as f64 / factor + smooth * freq as f64) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": 99, "hidden_size": 64, "intermediate_size": 176,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        })
    }

    #[test]
    fn reads_transformers_4_and_5_rope_layouts() {
        let mut v4 = base();
        v4["rope_theta"] = json!(500000.0);
        v4["rope_scaling"] = json!({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let mut v5 = base();
        v5["rope_parameters"] = json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let a = ModelConfig::from_json(v4).unwrap();
        let b = ModelConfig::from_json(v5).unwrap();
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.rope_scaling, b.rope_scaling);
        assert!(matches!(
            a.rope_scaling,
            RopeScaling::Llama3 {
                original_max_position_embeddings: 8192,
                ..
            }
        ));
        assert_eq!(a.head_dim, 16);
        let written = a.to_json();
        assert_eq!(written["rope_scaling"]["rope_type"], json!("llama3"));
        assert_eq!(written["rope_parameters"]["factor"], json!(32.0));
        assert_eq!(ModelConfig::from_json(written).unwrap(), a);
        let plain = ModelConfig::from_json(base()).unwrap().to_json();
        assert!(plain.get("rope_scaling").is_none());
    }

    #[test]
    fn round_trips_through_json() {
        let mut v = base();
        v["eos_token_id"] = json!([98, 96]);
        v["some_unmodelled_key"] = json!("kept");
        let config = ModelConfig::from_json(v).unwrap();
        assert_eq!(config.eos_token_ids, vec![98, 96]);
        let written = config.to_json();
        assert_eq!(written["some_unmodelled_key"], json!("kept"));
        assert_eq!(written["rope_parameters"]["rope_theta"], json!(10000.0));
        assert_eq!(ModelConfig::from_json(written).unwrap(), config);
    }

    #[test]
    fn errors_name_the_problem() {
        let mut v = base();
        v["architectures"] = json!(["GPT2LMHeadModel"]);
        let err = ModelConfig::from_json(v).unwrap_err().to_string();
        assert!(err.contains("GPT2LMHeadModel"), "{err}");

        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        let err = ModelConfig::from_json(v).unwrap_err().to_string();
        assert!(err.contains("hidden_size"), "{err}");

        let mut v = base();
        v["num_key_value_heads"] = json!(3);
        let err = ModelConfig::from_json(v).unwrap_err().to_string();
        assert!(err.contains("num_key_value_heads 3"), "{err}");

        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        let err = ModelConfig::from_json(v).unwrap_err().to_string();
        assert!(err.contains("yarn"), "{err}");
    }

    #[test]
    fn family_defaults() {
        let mut v = base();
        v["architectures"] = json!(["Qwen2ForCausalLM"]);
        let qwen2 = ModelConfig::from_json(v).unwrap();
        assert!(qwen2.qkv_bias && !qwen2.o_bias && !qwen2.qk_norm);
        let mut v = base();
        v["architectures"] = json!(["Qwen3ForCausalLM"]);
        let qwen3 = ModelConfig::from_json(v).unwrap();
        assert!(qwen3.qk_norm && !qwen3.qkv_bias);
        assert_eq!(qwen3.head_dim, 128);
    }
}
