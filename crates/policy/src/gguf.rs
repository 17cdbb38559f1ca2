//! GGUF files, llama.cpp's one-file models: the config, the (usually
//! quantized) weights and the tokenizer, read with candle's `gguf_file` and
//! dequantized to float32 so that the model trains like any other.
//!
//! What a GGUF stores differently from a Hugging Face folder:
//! - tensor names are llama.cpp's (`blk.3.attn_q.weight`); the weight-name
//!   table ([`crate::gguf_name`], [`crate::hf_name`]) maps them to the
//!   Hugging Face names the model uses;
//! - for the Llama architecture, llama.cpp's converter permutes the rows of
//!   the query and key projections per head so that its interleaved RoPE
//!   gives the same result; the model here rotates halves (as
//!   transformers does), so the permutation is undone;
//! - a model with tied embeddings has no `output.weight`;
//! - the config is `{arch}.*` metadata, the tokenizer `tokenizer.ggml.*`
//!   (see [`GgufModel::tokenizer`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::weight_names::{all_weights, hf_name, Weight};

/// File extension of GGUF files.
pub const GGUF_EXTENSION: &str = "gguf";

/// The tensor types candle dequantizes.
const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

/// An opened GGUF file: its metadata and tensor directory, read once; the
/// tensors are read when [`GgufModel::weights`] asks for them.
#[derive(Debug)]
pub struct GgufModel {
    path: PathBuf,
    content: Content,
    file_size: u64,
}

/// Whether `path` names a GGUF file rather than a model folder: a file
/// ending in `.gguf`, or any file starting with the GGUF magic.
pub fn is_gguf_file(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path.extension().is_some_and(|e| e == GGUF_EXTENSION) {
        return true;
    }
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"GGUF")
}

impl GgufModel {
    /// Reads the header, metadata and tensor directory of `path`, and checks
    /// that every tensor's data lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let file_size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut reader = BufReader::new(file);
        let content = guarded(&path, || Content::read(&mut reader))
            .map_err(|message| gguf_error(&path, header_message(&message)))?;
        let model = GgufModel {
            path,
            content,
            file_size,
        };
        model.check_extents()?;
        Ok(model)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every metadata entry, by key.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// Names of the tensors in the file, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .content
            .tensor_infos
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    /// `general.architecture` as one of the families verity implements.
    pub fn architecture(&self) -> Result<Architecture> {
        let name = self.string("general.architecture")?;
        match name.as_str() {
            "llama" => Ok(Architecture::Llama),
            "qwen2" => Ok(Architecture::Qwen2),
            "qwen3" => Ok(Architecture::Qwen3),
            other => Err(self.error(format!(
                "general.architecture '{other}' is not supported (llama, qwen2, qwen3)"
            ))),
        }
    }

    /// The model config from the `{arch}.*` metadata and the tensors present
    /// (biases, q/k norms, a separate output matrix); special token ids from
    /// `tokenizer.ggml.*`.
    pub fn config(&self) -> Result<ModelConfig> {
        let architecture = self.architecture()?;
        let arch = architecture.model_type();
        let key = |name: &str| format!("{arch}.{name}");
        let required = |name: &str| -> Result<usize> {
            let k = key(name);
            self.uint(&k)?
                .ok_or_else(|| self.error(format!("missing metadata key '{k}'")))
        };
        for unsupported in ["expert_count", "attention.sliding_window"] {
            if self.get(&key(unsupported)).is_some() {
                return Err(self.error(format!(
                    "'{}' is set: mixture-of-experts and sliding-window models are not supported",
                    key(unsupported)
                )));
            }
        }
        let embedding = self.tensor_dims("token_embd.weight")?;
        let [vocab_size, _] = embedding[..] else {
            return Err(self.error(format!(
                "token_embd.weight has shape {embedding:?}, expected [vocab, hidden]"
            )));
        };
        let hidden_size = required("embedding_length")?;
        let heads = required("attention.head_count")?;
        let kv_heads = self.uint(&key("attention.head_count_kv"))?.unwrap_or(heads);
        let mut config = ModelConfig::new(
            architecture,
            vocab_size,
            hidden_size,
            required("feed_forward_length")?,
            required("block_count")?,
            heads,
            kv_heads,
        );
        if let Some(head_dim) = self.uint(&key("attention.key_length"))? {
            config.head_dim = head_dim;
        }
        for other in ["attention.value_length", "rope.dimension_count"] {
            if let Some(dim) = self.uint(&key(other))? {
                if dim != config.head_dim {
                    return Err(self.error(format!(
                        "{} = {dim} differs from the head width {} (partial rotary and \
                         value heads of another width are not supported)",
                        key(other),
                        config.head_dim
                    )));
                }
            }
        }
        if let Some(positions) = self.uint(&key("context_length"))? {
            config.max_position_embeddings = positions;
        }
        if let Some(eps) = self.float(&key("attention.layer_norm_rms_epsilon"))? {
            config.rms_norm_eps = eps;
        }
        if let Some(theta) = self.float(&key("rope.freq_base"))? {
            config.rope_theta = theta;
        }
        config.rope_scaling = self.rope_scaling(&key)?;
        if self.has_tensor("rope_freqs.weight") {
            return Err(self.error(
                "rope_freqs.weight (Llama 3.1-style rope frequency factors) is not supported",
            ));
        }
        config.tie_word_embeddings = !self.has_tensor("output.weight");
        let layer = |name: &str| self.has_tensor(&format!("blk.0.{name}"));
        match architecture {
            Architecture::Llama | Architecture::Qwen3 => {
                let (qkv, o) = (layer("attn_q.bias"), layer("attn_output.bias"));
                if qkv != o {
                    return Err(self.error(format!(
                        "q/k/v projection biases {} but output projection bias {}: \
                         {arch} models have both or neither",
                        present(qkv),
                        present(o)
                    )));
                }
                config.qkv_bias = qkv;
                config.o_bias = o;
            }
            Architecture::Qwen2 => {}
        }
        config.mlp_bias = architecture == Architecture::Llama && layer("ffn_gate.bias");
        let special = |key: &str| -> Result<Option<u32>> {
            match self.token_id(key)? {
                Some(id) if id as usize >= vocab_size => Err(self.error(format!(
                    "{key} = {id} is outside the vocabulary of {vocab_size} tokens"
                ))),
                id => Ok(id),
            }
        };
        config.bos_token_id = special("tokenizer.ggml.bos_token_id")?;
        config.eos_token_ids = special("tokenizer.ggml.eos_token_id")?
            .into_iter()
            .collect();
        config.pad_token_id = special("tokenizer.ggml.padding_token_id")?;
        config
            .validate()
            .map_err(|e| self.error(format!("metadata describe no usable model: {e}")))?;
        Ok(config)
    }

    /// Every tensor `config` needs, dequantized to float32, named as Hugging
    /// Face names them, on `device`. Tensors the model would not use are an
    /// error (they would be silently dropped otherwise).
    pub fn weights(
        &self,
        config: &ModelConfig,
        device: &Device,
    ) -> Result<HashMap<String, Tensor>> {
        for name in self.tensor_names() {
            if hf_name(name).is_none() {
                return Err(self.error(format!(
                    "tensor '{name}' has no place in a {} model",
                    config.architecture.model_type()
                )));
            }
        }
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut reader = BufReader::new(file);
        let mut weights = HashMap::new();
        for (weight, layer) in all_weights(config) {
            let (name, gguf) = (weight.name(layer), weight.gguf_name(layer));
            let shape = weight.shape(config);
            let info = self.content.tensor_infos.get(&gguf).ok_or_else(|| {
                self.error(format!(
                    "missing tensor '{gguf}' ({name}), which the metadata imply"
                ))
            })?;
            if info.shape.dims() != shape.as_slice() {
                return Err(self.error(format!(
                    "tensor '{gguf}' has shape {:?}, the metadata imply {shape:?}",
                    info.shape.dims()
                )));
            }
            let dtype = info.ggml_dtype;
            let tensor = guarded(&self.path, || {
                let quantized = info.read(&mut reader, self.content.tensor_data_offset, device)?;
                quantized.dequantize(device)?.to_dtype(DType::F32)
            })
            .map_err(|message| {
                self.error(format!("tensor '{gguf}' ({}): {message}", type_name(dtype)))
            })?;
            let tensor = match rope_heads(config, weight) {
                Some(heads) => unpermute_rows(&tensor, heads)?,
                None => tensor,
            };
            weights.insert(name, tensor);
        }
        Ok(weights)
    }

    /// The config and the dequantized weights as a trainable float32 policy.
    pub fn policy(&self, device: &Device) -> Result<Policy> {
        let config = self.config()?;
        let weights = self.weights(&config, device)?;
        Policy::from_weights(&config, weights)
    }

    /// A metadata value, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// A required string value.
    pub(crate) fn string(&self, key: &str) -> Result<String> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
            None => Err(self.error(format!("missing metadata key '{key}'"))),
        }
    }

    /// An optional non-negative integer of any integer type.
    pub(crate) fn uint(&self, key: &str) -> Result<Option<usize>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let n: Option<u64> = match *value {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        };
        n.and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", value))
    }

    /// An optional number. float32 values come back as the shortest decimal
    /// that reads back as the same float32 (1e-5, not 9.99999974e-6).
    pub(crate) fn float(&self, key: &str) -> Result<Option<f64>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let x = match *value {
            Value::F32(v) => format!("{v}").parse::<f64>().unwrap_or(v.into()),
            Value::F64(v) => v,
            _ => match self.uint(key) {
                Ok(Some(n)) => n as f64,
                _ => return Err(self.wrong_type(key, "a number", value)),
            },
        };
        if x.is_finite() {
            Ok(Some(x))
        } else {
            Err(self.error(format!("metadata '{key}' is {x}")))
        }
    }

    /// An optional boolean.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    /// An optional token id.
    pub(crate) fn token_id(&self, key: &str) -> Result<Option<u32>> {
        match self.uint(key)? {
            None => Ok(None),
            Some(id) => u32::try_from(id)
                .map(Some)
                .map_err(|_| self.error(format!("metadata '{key}' = {id} is not a token id"))),
        }
    }

    /// An error naming the file.
    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        gguf_error(&self.path, message.into())
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> Error {
        self.error(format!(
            "metadata '{key}' should be {expected}, found a {:?} value",
            found.value_type()
        ))
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn tensor_dims(&self, name: &str) -> Result<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|info| info.shape.dims().to_vec())
            .ok_or_else(|| self.error(format!("missing tensor '{name}'")))
    }

    fn rope_scaling(&self, key: &dyn Fn(&str) -> String) -> Result<RopeScaling> {
        let kind_key = key("rope.scaling.type");
        let kind = match self.get(&kind_key) {
            None => return Ok(RopeScaling::Default),
            Some(_) => self.string(&kind_key)?,
        };
        match kind.as_str() {
            "none" => Ok(RopeScaling::Default),
            "linear" => {
                let factor_key = key("rope.scaling.factor");
                let factor = self.float(&factor_key)?.ok_or_else(|| {
                    self.error(format!("linear rope scaling needs '{factor_key}'"))
                })?;
                Ok(RopeScaling::Linear { factor })
            }
            other => Err(self.error(format!(
                "{kind_key} '{other}' is not supported (none, linear)"
            ))),
        }
    }

    /// Every tensor's data must lie inside the file and be a whole number of
    /// blocks: a truncated download fails here, before anything is read.
    fn check_extents(&self) -> Result<()> {
        for name in self.tensor_names() {
            let info = &self.content.tensor_infos[name];
            let dtype = info.ggml_dtype;
            let elements = info
                .shape
                .dims()
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d));
            let bytes = elements.and_then(|n| {
                n.is_multiple_of(dtype.block_size())
                    .then(|| (n / dtype.block_size()).checked_mul(dtype.type_size()))
                    .flatten()
            });
            let Some(bytes) = bytes else {
                return Err(self.error(format!(
                    "tensor '{name}' of shape {:?} is not a whole number of {} blocks",
                    info.shape.dims(),
                    type_name(dtype)
                )));
            };
            let end = self
                .content
                .tensor_data_offset
                .checked_add(info.offset)
                .and_then(|start| start.checked_add(bytes as u64));
            match end {
                Some(end) if end <= self.file_size => {}
                _ => {
                    return Err(self.error(format!(
                        "truncated or corrupt: tensor '{name}' ends past the end of the file \
                         ({} bytes)",
                        self.file_size
                    )))
                }
            }
        }
        Ok(())
    }
}

fn present(yes: bool) -> &'static str {
    if yes {
        "present"
    } else {
        "absent"
    }
}

fn gguf_error(path: &Path, message: String) -> Error {
    Error::Gguf {
        path: path.to_path_buf(),
        message,
    }
}

/// Runs a candle reading step, turning its errors and any panic on a
/// malformed file into a message.
fn guarded<T>(
    path: &Path,
    step: impl FnOnce() -> candle_core::Result<T>,
) -> std::result::Result<T, String> {
    match panic::catch_unwind(AssertUnwindSafe(step)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(candle_message(&e)),
        Err(_) => Err(format!(
            "reading {} failed on malformed data",
            path.display()
        )),
    }
}

/// A candle error on one line, without the backtrace candle attaches when
/// `RUST_BACKTRACE` is set.
fn candle_message(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        other => other.to_string().replace('\n', " "),
    }
}

/// candle's header errors, with the tensor type named when it is one
/// candle cannot dequantize.
fn header_message(message: &str) -> String {
    const UNKNOWN: &str = "unknown dtype for tensor ";
    if let Some(code) = message
        .find(UNKNOWN)
        .and_then(|at| message[at + UNKNOWN.len()..].trim().parse::<u32>().ok())
    {
        return format!(
            "a tensor has ggml type {code} ({}), which cannot be dequantized \
             (supported: {SUPPORTED_TYPES})",
            ggml_type_name(code)
        );
    }
    if message.contains("failed to fill whole buffer") {
        return "truncated: the file ends inside its header or metadata".into();
    }
    format!("not a readable GGUF file: {message}")
}

/// ggml's names of its tensor types (ggml.h), for messages.
fn ggml_type_name(code: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
    ];
    NAMES.get(code as usize).copied().unwrap_or("unknown")
}

fn type_name(dtype: GgmlDType) -> String {
    format!("{dtype:?}")
}

/// For a Llama model's query and key projections (weight or bias), the
/// number of heads whose rows llama.cpp permuted.
fn rope_heads(config: &ModelConfig, weight: Weight) -> Option<usize> {
    if config.architecture != Architecture::Llama {
        return None;
    }
    match weight {
        Weight::QProj | Weight::QBias => Some(config.num_attention_heads),
        Weight::KProj | Weight::KBias => Some(config.num_key_value_heads),
        _ => None,
    }
}

/// Undoes llama.cpp's `permute` of a projection's rows: within each head it
/// stored the rows as (pair index, half) where transformers has (half,
/// pair index).
fn unpermute_rows(tensor: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = tensor.dims().to_vec();
    let rows = dims.first().copied().unwrap_or(0);
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(Error::Input(format!(
            "cannot undo the rope permutation of {rows} rows over {heads} heads"
        )));
    }
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&dims[1..]);
    Ok(tensor
        .reshape(split)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `permute` (convert_hf_to_gguf.py), written out on indices.
    fn llama_cpp_permute(rows: &[f32], heads: usize, cols: usize) -> Vec<f32> {
        let head_dim = rows.len() / cols / heads;
        let half = head_dim / 2;
        let mut out = vec![0.0; rows.len()];
        for h in 0..heads {
            for i in 0..half {
                for j in 0..2 {
                    let from = h * head_dim + j * half + i;
                    let to = h * head_dim + i * 2 + j;
                    out[to * cols..(to + 1) * cols]
                        .copy_from_slice(&rows[from * cols..(from + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn the_rope_permutation_is_undone() {
        let (heads, head_dim, cols) = (3, 8, 5);
        let original: Vec<f32> = (0..heads * head_dim * cols).map(|x| x as f32).collect();
        let permuted = llama_cpp_permute(&original, heads, cols);
        assert_ne!(permuted, original);
        let t = Tensor::from_vec(permuted, (heads * head_dim, cols), &Device::Cpu).unwrap();
        let back = unpermute_rows(&t, heads).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            original
        );
        // Biases are permuted the same way.
        let bias: Vec<f32> = (0..heads * head_dim).map(|x| x as f32).collect();
        let t = Tensor::from_vec(
            llama_cpp_permute(&bias, heads, 1),
            heads * head_dim,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            unpermute_rows(&t, heads).unwrap().to_vec1::<f32>().unwrap(),
            bias
        );
        assert!(unpermute_rows(&t, 5).is_err());
    }

    #[test]
    fn header_errors_name_the_tensor_type() {
        let message = header_message("unknown dtype for tensor 16");
        assert!(
            message.contains("IQ2_XXS") && message.contains("Q4_K"),
            "{message}"
        );
        assert!(header_message("unknown magic 0x1234").contains("not a readable GGUF"));
    }
}
