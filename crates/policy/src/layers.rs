//! The small building blocks: a linear layer, RMSNorm and the SwiGLU MLP.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::Kernels;

/// `y = x W^T + b` over the last dimension, as one matrix product for any batch shape.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// [out, in] as checkpoints store it, or [in, out] when `transposed`.
    weight: Tensor,
    bias: Option<Tensor>,
    transposed: bool,
}

impl Linear {
    pub(crate) fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            transposed: false,
        })
    }

    pub(crate) fn from_weight(weight: Tensor) -> Self {
        Linear {
            weight,
            bias: None,
            transposed: false,
        }
    }

    /// One layer computing `parts` side by side (their outputs concatenated),
    /// with the weight copied into [in, out] order: on the CPU, products with
    /// few rows (decoding) run markedly faster against that layout. Detached:
    /// no gradient reaches the parts.
    pub(crate) fn packed_transposed(parts: &[&Linear]) -> Result<Self> {
        let rows = parts
            .iter()
            .map(|p| p.weight_rows())
            .collect::<Result<Vec<_>>>()?;
        let weight = Tensor::cat(&rows, 0)?.t()?.contiguous()?;
        let bias = if parts.iter().any(|p| p.bias.is_some()) {
            let biases = parts
                .iter()
                .map(|p| match &p.bias {
                    Some(b) => Ok(b.detach()),
                    None => Ok(Tensor::zeros(
                        p.out_dim()?,
                        p.weight.dtype(),
                        p.weight.device(),
                    )?),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            transposed: true,
        })
    }

    /// The weight as [out, in], detached.
    fn weight_rows(&self) -> Result<Tensor> {
        let w = self.weight.detach();
        Ok(if self.transposed { w.t()? } else { w })
    }

    pub(crate) fn out_dim(&self) -> Result<usize> {
        Ok(self.weight.dim(if self.transposed { 1 } else { 0 })?)
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        // One [rows, in] x [in, out] product: batched matmuls would run one small gemm per row.
        let x2 = x.reshape((rows, in_dim))?;
        let y = if self.transposed {
            x2.matmul(&self.weight)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        out_dims[dims.len() - 1] = self.out_dim()?;
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
    gate_up: GateUp,
    down_proj: Linear,
}

/// The gate and up projections: separate (trainable) or packed into one
/// product (the generation layout).
#[derive(Debug, Clone)]
enum GateUp {
    Separate { gate_proj: Linear, up_proj: Linear },
    Packed { gate_up: Linear, width: usize },
}

impl Mlp {
    pub(crate) fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Mlp {
            gate_up: GateUp::Separate {
                gate_proj: Linear::new(h, i, bias, vb.pp("gate_proj"))?,
                up_proj: Linear::new(h, i, bias, vb.pp("up_proj"))?,
            },
            down_proj: Linear::new(i, h, bias, vb.pp("down_proj"))?,
        })
    }

    /// The generation layout: gate and up packed, weights transposed.
    pub(crate) fn for_generation(&self) -> Result<Self> {
        let gate_up = match &self.gate_up {
            GateUp::Separate { gate_proj, up_proj } => GateUp::Packed {
                gate_up: Linear::packed_transposed(&[gate_proj, up_proj])?,
                width: gate_proj.out_dim()?,
            },
            packed => packed.clone(),
        };
        Ok(Mlp {
            gate_up,
            down_proj: Linear::packed_transposed(&[&self.down_proj])?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = match &self.gate_up {
            GateUp::Separate { gate_proj, up_proj } => (gate_proj.forward(x)?, up_proj.forward(x)?),
            GateUp::Packed { gate_up, width } => {
                let both = gate_up.forward(x)?;
                (
                    both.narrow(D::Minus1, 0, *width)?,
                    both.narrow(D::Minus1, *width, *width)?,
                )
            }
        };
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
