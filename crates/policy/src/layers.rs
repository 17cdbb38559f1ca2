//! The small building blocks: a linear layer, RMSNorm and the SwiGLU MLP.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::Kernels;

/// `y = x W^T + b` over the last dimension, as one matrix product for any batch shape.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
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

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        // One [rows, in] x [in, out] product: batched matmuls would run one small gemm per row.
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        out_dims[dims.len() - 1] = self.weight.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }
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

    pub(crate) fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        match kernels {
            Kernels::Fused => Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight,
                self.eps as f32,
            )?),
            Kernels::Differentiable => {
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

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.silu()?;
        let up = self.up_proj.forward(x)?;
        self.down_proj.forward(&(gate * up)?)
    }
}
