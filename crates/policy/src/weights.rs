//! Reading and writing weights in Hugging Face's safetensors layout.
//!
//! A model folder holds `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`, or (without an index) any `*.safetensors`.
//! A tied checkpoint has no `lm_head.weight`; one that has it anyway is fine.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weight_names::parameter_shapes;

/// File name of a single-file checkpoint.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the shard index of a sharded checkpoint.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// Loads the tensors `config` needs from the safetensors files of `dir`,
/// converted to `dtype`. Missing or misshapen tensors are errors naming them.
pub fn load_weights(
    config: &ModelConfig,
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let files = weight_files(dir)?;
    let mut found: HashMap<String, (Tensor, PathBuf)> = HashMap::new();
    for file in &files {
        let tensors =
            candle_core::safetensors::load(file, device).map_err(|e| Error::Safetensors {
                path: file.clone(),
                message: e.to_string(),
            })?;
        for (name, tensor) in tensors {
            found.insert(name, (tensor, file.clone()));
        }
    }
    let mut weights = HashMap::new();
    for (name, shape) in parameter_shapes(config) {
        let Some((tensor, file)) = found.remove(&name) else {
            let files = files
                .iter()
                .filter_map(|f| f.file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::MissingTensor {
                dir: dir.to_path_buf(),
                name,
                files,
            });
        };
        if tensor.dims() != shape.as_slice() {
            return Err(Error::TensorShape {
                file,
                name,
                expected: shape,
                found: tensor.dims().to_vec(),
            });
        }
        weights.insert(name, tensor.to_dtype(dtype)?);
    }
    Ok(weights)
}

/// The safetensors files of a model folder, in load order.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::json(&index, e))?;
        let Some(map) = value.get("weight_map").and_then(|m| m.as_object()) else {
            return Err(Error::Safetensors {
                path: index,
                message: "no 'weight_map' object".into(),
            });
        };
        let mut shards = BTreeSet::new();
        for (name, file) in map {
            let Some(file) = file.as_str() else {
                return Err(Error::Safetensors {
                    path: index,
                    message: format!("weight_map entry '{name}' is not a file name"),
                });
            };
            // Shard names are plain file names inside the folder.
            if Path::new(file).components().count() != 1 {
                return Err(Error::Safetensors {
                    path: index,
                    message: format!("shard '{file}' is not a file inside the folder"),
                });
            }
            shards.insert(file.to_string());
        }
        return Ok(shards.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "safetensors") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Safetensors {
            path: dir.to_path_buf(),
            message: format!("no {WEIGHTS_FILE}, {WEIGHTS_INDEX_FILE} or *.safetensors file"),
        });
    }
    Ok(files)
}

/// Writes `tensors` to one safetensors file with the `{"format": "pt"}`
/// metadata transformers expects.
pub fn save_weights(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    // On the CPU and contiguous, serialisation cannot fail midway.
    let cpu = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(cpu, Some(metadata), path).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
