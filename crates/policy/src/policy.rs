//! A trainable model: its config, the transformer and the variables behind it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::init::random_weights;
use crate::model::Transformer;
use crate::weight_names::parameter_shapes;
use crate::weights::{load_weights, save_weights, WEIGHTS_FILE};

/// File name of the model config inside a model folder.
pub const CONFIG_FILE: &str = "config.json";

/// A transformer whose weights are trainable [`Var`]s, keyed by their Hugging
/// Face names in `varmap`. An optimizer updates the vars in place and the
/// model sees the new values at once.
pub struct Policy {
    /// The architecture and sizes.
    pub config: ModelConfig,
    /// The model, built over the vars.
    pub model: Transformer,
    /// Every trainable tensor, by Hugging Face name.
    pub varmap: VarMap,
}

impl Policy {
    /// A freshly initialised model (float32): the same `seed` gives the same
    /// weights on every machine.
    pub fn random(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        Self::from_weights(config, random_weights(config, seed, DType::F32, device)?)
    }

    /// Loads `config.json` and the safetensors weights of a local model folder
    /// (float32 whatever the checkpoint's dtype).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ModelConfig::from_file(dir.join(CONFIG_FILE))?;
        let weights = load_weights(&config, dir, DType::F32, device)?;
        Self::from_weights(&config, weights)
    }

    /// Builds a policy over the given tensors (named as [`parameter_shapes`]
    /// lists them), each becoming a trainable var.
    pub fn from_weights(
        config: &ModelConfig,
        mut weights: HashMap<String, Tensor>,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let mut tensors = HashMap::new();
        let mut device_dtype = None;
        {
            let mut vars = varmap
                .data()
                .lock()
                .map_err(|_| Error::Input("the variable map was poisoned by a panic".into()))?;
            for (name, shape) in parameter_shapes(config) {
                let tensor = weights.remove(&name).ok_or_else(|| {
                    Error::Input(format!("no tensor '{name}' among the given weights"))
                })?;
                if tensor.dims() != shape.as_slice() {
                    return Err(Error::Input(format!(
                        "tensor '{name}' has shape {:?}, the config needs {shape:?}",
                        tensor.dims()
                    )));
                }
                device_dtype.get_or_insert((tensor.device().clone(), tensor.dtype()));
                let var = Var::from_tensor(&tensor)?;
                tensors.insert(name.clone(), var.as_tensor().clone());
                vars.insert(name, var);
            }
        }
        let (device, dtype) = device_dtype.unwrap_or((Device::Cpu, DType::F32));
        let vb = VarBuilder::from_tensors(tensors, dtype, &device);
        let model = Transformer::new(config, vb)?;
        Ok(Policy {
            config: config.clone(),
            model,
            varmap,
        })
    }

    /// Writes `model.safetensors` and `config.json` into `dir` (created if
    /// needed): a folder that [`Policy::load`] and transformers both read.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tensors = self
            .named_vars()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect::<Vec<_>>();
        save_weights(&tensors, &dir.join(WEIGHTS_FILE))?;
        self.config.save(dir.join(CONFIG_FILE))
    }

    /// The vars sorted by name (a `VarMap` iterates in no fixed order).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let vars = match self.varmap.data().lock() {
            Ok(vars) => vars,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut named: Vec<(String, Var)> =
            vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// A copy of the current weights, detached from the vars: later updates to
    /// this policy leave it unchanged (a reference model for a KL penalty).
    pub fn frozen(&self) -> Result<Transformer> {
        let tensors = self
            .named_vars()
            .into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().detach().copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let vb = VarBuilder::from_tensors(tensors, self.dtype(), self.device());
        Transformer::new(&self.config, vb)
    }

    /// An independent policy with the same weights in `dtype` (for example
    /// float64 for finite-difference checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Policy> {
        let weights = self
            .named_vars()
            .into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().detach().to_dtype(dtype)?.copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Self::from_weights(&self.config, weights)
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.model.dtype()
    }
}
