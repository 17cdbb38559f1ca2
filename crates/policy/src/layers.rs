//! The small building blocks: a linear layer, RMSNorm and the SwiGLU MLP.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::Kernels;

/// `y = x W^T + b` over the last dimension, as one matrix product for any batch shape.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// [out, in], as checkpoints store it.
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    pub(crate) fn from_weight(weight: Tensor) -> Self {
        Linear { weight, bias: None }
    }

    /// The weight [out, in].
    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Appends `name.weight` (and `name.bias`) to `out`.
    pub(crate) fn export(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((format!("{name}.weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((format!("{name}.bias"), b.clone()));
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // A 2-D input needs no reshape: each reshape is one more node whose
        // gradient the backward pass allocates and adds.
        if x.rank() == 2 {
            let y = if crate::kernels::fused_cpu(x) && x.dtype() == self.weight.dtype() {
                crate::kernels::linear(x, &self.weight)?
            } else {
                x.matmul(&self.weight.t()?)?
            };
            return Ok(match &self.bias {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            });
        }
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        // One [rows, in] x [in, out] product: batched matmuls would run one small gemm per row.
        let y = self.forward(&x.reshape((rows, in_dim))?)?;
        let mut out_dims = dims.to_vec();
        out_dims[dims.len() - 1] = self.weight.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }
}

/// The outputs of several linear layers over the same input, side by side
/// ([rows, sum of outputs] for `x` [rows, in]), as one product: their weights
/// concatenate, a cheap node, and `x` gets one gradient instead of several.
pub(crate) fn linear_concat(layers: &[&Linear], x: &Tensor) -> Result<Tensor> {
    let weights: Vec<&Tensor> = layers.iter().map(|l| &l.weight).collect();
    let biases: Option<Vec<&Tensor>> = layers.iter().map(|l| l.bias.as_ref()).collect();
    let bias = match biases {
        Some(b) => Some(Tensor::cat(&b, 0)?),
        None if layers.iter().all(|l| l.bias.is_none()) => None,
        None => {
            // Mixed biases: no concatenation to make.
            let outs: Vec<Tensor> = layers.iter().map(|l| l.forward(x)).collect::<Result<_>>()?;
            return Ok(Tensor::cat(&outs, D::Minus1)?);
        }
    };
    Linear {
        weight: Tensor::cat(&weights, 0)?,
        bias,
    }
    .forward(x)
}

/// Root-mean-square normalisation: `x / sqrt(mean(x^2) + eps) * weight`.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(RmsNorm {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    /// Appends `name.weight` to `out`.
    pub(crate) fn export(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((format!("{name}.weight"), self.weight.clone()));
    }

    pub(crate) fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        match kernels {
            Kernels::Fused => Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight,
                self.eps as f32,
            )?),
            Kernels::Differentiable if crate::kernels::fused_cpu(x) => {
                crate::kernels::rms_norm(x, &self.weight, self.eps)
            }
            Kernels::Differentiable => self.forward_composed(x),
        }
    }

    /// RMSNorm from basic operations, differentiable on every device.
    fn forward_composed(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        // Half precision accumulates the mean in float32, as transformers does.
        let xf = match dtype {
            DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
            _ => x.clone(),
        };
        let mean_square = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_rms = (mean_square + self.eps)?.sqrt()?.recip()?;
        let normed = xf.broadcast_mul(&inv_rms)?.to_dtype(dtype)?;
        Ok(normed.broadcast_mul(&self.weight)?)
    }
}

/// SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub(crate) fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Mlp {
            gate_proj: Linear::new(h, i, bias, vb.pp("gate_proj"))?,
            up_proj: Linear::new(h, i, bias, vb.pp("up_proj"))?,
            down_proj: Linear::new(i, h, bias, vb.pp("down_proj"))?,
        })
    }

    /// Appends the weights under `name` (`name.gate_proj.weight`, ...) to `out`.
    pub(crate) fn export(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        self.gate_proj.export(&format!("{name}.gate_proj"), out);
        self.up_proj.export(&format!("{name}.up_proj"), out);
        self.down_proj.export(&format!("{name}.down_proj"), out);
    }

    /// `x + forward(norm(x))` as one fused CPU operation, for `x` [rows,
    /// hidden] in f32 / f64 without MLP biases; None where that does not apply.
    pub(crate) fn residual_block(&self, x: &Tensor, norm: &RmsNorm) -> Result<Option<Tensor>> {
        let no_bias = [&self.gate_proj, &self.up_proj, &self.down_proj]
            .iter()
            .all(|l| l.bias.is_none());
        if !(no_bias && x.rank() == 2 && crate::kernels::fused_cpu(x)) {
            return Ok(None);
        }
        // The gate, up and norm weights concatenate (a cheap node) so the
        // block is one operation of three inputs.
        let norm_weight = norm.weight.unsqueeze(0)?;
        let weights = Tensor::cat(
            &[&self.gate_proj.weight, &self.up_proj.weight, &norm_weight],
            0,
        )?;
        let block = crate::kernels::swiglu_block(x, &weights, &self.down_proj.weight, norm.eps)?;
        Ok(Some(block))
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?);
        let hidden = if crate::kernels::fused_cpu(&gate) {
            crate::kernels::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        self.down_proj.forward(&hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rms_norm_forms_agree() -> Result<()> {
        let dev = Device::Cpu;
        let norm = RmsNorm {
            weight: Tensor::randn(1f32, 0.2, 32, &dev)?,
            eps: 1e-6,
        };
        let x = Tensor::randn(0f32, 3.0, (2, 5, 32), &dev)?;
        let fused = norm.forward(&x, Kernels::Fused)?;
        for other in [
            norm.forward(&x, Kernels::Differentiable)?,
            norm.forward_composed(&x)?,
        ] {
            let diff = (&fused - other)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "max diff {diff}");
        }
        Ok(())
    }
}
