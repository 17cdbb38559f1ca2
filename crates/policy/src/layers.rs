//! The small building blocks: a linear layer, RMSNorm and the SwiGLU MLP,
//! and the choice of kernels they run with.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::cpu::{PendingGrads, WeightSink};
use crate::error::Result;
use crate::weight_names::Weight;

/// Which implementation of RoPE, RMSNorm and softmax a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Kernels that pass gradients: on the CPU (f32 / f64) the CPU backend's
    /// fused ones, elsewhere compositions of basic tensor operations.
    /// Training uses these.
    #[default]
    Trainable,
    /// candle's fused kernels: faster, but they pass no gradient. Generation
    /// through the tensor model uses these; tests check they agree with the
    /// trainable forms.
    ForwardOnly,
    /// Compositions of basic tensor operations only, on every device, with
    /// gradients: what the other devices run, and the reference the CPU
    /// backend is held to.
    Composed,
}

/// The weight `weight` of layer `layer`, named and shaped as the weight-name table says.
pub(crate) fn get(
    cfg: &ModelConfig,
    vb: &VarBuilder,
    weight: Weight,
    layer: usize,
) -> Result<Tensor> {
    Ok(vb.get(weight.shape(cfg), &weight.name(layer))?)
}

/// `y = x W^T + b` over the last dimension, as one matrix product for any batch shape.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// [out, in], as checkpoints store it.
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// The projection `weight` of layer `layer`, with its bias where the config has one.
    pub(crate) fn new(
        cfg: &ModelConfig,
        vb: &VarBuilder,
        weight: Weight,
        layer: usize,
    ) -> Result<Self> {
        let bias = match weight.bias(cfg) {
            Some(bias) => Some(get(cfg, vb, bias, layer)?),
            None => None,
        };
        Ok(Linear {
            weight: get(cfg, vb, weight, layer)?,
            bias,
        })
    }

    pub(crate) fn from_weight(weight: Tensor) -> Self {
        Linear { weight, bias: None }
    }

    /// The weight [out, in].
    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias [out], if any.
    pub(crate) fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub(crate) fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        // A 2-D input needs no reshape: each reshape is one more node whose
        // gradient the backward pass allocates and adds.
        if x.rank() == 2 {
            let y = if kernels != Kernels::Composed
                && crate::cpu::fused_cpu(x)
                && x.dtype() == self.weight.dtype()
            {
                crate::cpu::linear(x, &self.weight)?
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
        let y = self.forward(&x.reshape((rows, in_dim))?, kernels)?;
        let mut out_dims = dims.to_vec();
        out_dims[dims.len() - 1] = self.weight.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }
}

/// The outputs of several linear layers over the same input, side by side
/// ([rows, sum of outputs] for `x` [rows, in]), as one product: their weights
/// concatenate, a cheap node, and `x` gets one gradient instead of several.
pub(crate) fn linear_concat(layers: &[&Linear], x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let weights: Vec<&Tensor> = layers.iter().map(|l| &l.weight).collect();
    let biases: Option<Vec<&Tensor>> = layers.iter().map(|l| l.bias.as_ref()).collect();
    let bias = match biases {
        Some(b) => Some(Tensor::cat(&b, 0)?),
        None if layers.iter().all(|l| l.bias.is_none()) => None,
        None => {
            // Mixed biases: no concatenation to make.
            let outs: Vec<Tensor> = layers
                .iter()
                .map(|l| l.forward(x, kernels))
                .collect::<Result<_>>()?;
            return Ok(Tensor::cat(&outs, D::Minus1)?);
        }
    };
    Linear {
        weight: Tensor::cat(&weights, 0)?,
        bias,
    }
    .forward(x, kernels)
}

/// Root-mean-square normalisation: `x / sqrt(mean(x^2) + eps) * weight`.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// The norm `weight` of layer `layer`.
    pub(crate) fn new(
        cfg: &ModelConfig,
        vb: &VarBuilder,
        weight: Weight,
        layer: usize,
    ) -> Result<Self> {
        Ok(RmsNorm {
            weight: get(cfg, vb, weight, layer)?,
            eps: cfg.rms_norm_eps,
        })
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(crate) fn eps(&self) -> f64 {
        self.eps
    }

    pub(crate) fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        match kernels {
            Kernels::ForwardOnly => Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight,
                self.eps as f32,
            )?),
            Kernels::Trainable if crate::cpu::fused_cpu(x) => {
                crate::cpu::rms_norm(x, &self.weight, self.eps)
            }
            Kernels::Trainable | Kernels::Composed => self.forward_composed(x),
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
    pub(crate) fn new(cfg: &ModelConfig, vb: &VarBuilder, layer: usize) -> Result<Self> {
        Ok(Mlp {
            gate_proj: Linear::new(cfg, vb, Weight::GateProj, layer)?,
            up_proj: Linear::new(cfg, vb, Weight::UpProj, layer)?,
            down_proj: Linear::new(cfg, vb, Weight::DownProj, layer)?,
        })
    }

    /// One of the block's weights.
    pub(crate) fn tensor(&self, weight: Weight) -> Option<&Tensor> {
        match weight {
            Weight::GateProj => Some(self.gate_proj.weight()),
            Weight::UpProj => Some(self.up_proj.weight()),
            Weight::DownProj => Some(self.down_proj.weight()),
            Weight::GateBias => self.gate_proj.bias(),
            Weight::UpBias => self.up_proj.bias(),
            Weight::DownBias => self.down_proj.bias(),
            _ => None,
        }
    }

    /// `x + forward(norm(x))` as one fused CPU operation, for `x` [rows,
    /// hidden] in f32 / f64 without MLP biases; None where that does not apply.
    pub(crate) fn residual_block(
        &self,
        x: &Tensor,
        norm: &RmsNorm,
        pending: Option<&PendingGrads>,
    ) -> Result<Option<Tensor>> {
        let no_bias = [&self.gate_proj, &self.up_proj, &self.down_proj]
            .iter()
            .all(|l| l.bias.is_none());
        if !(no_bias && x.rank() == 2 && crate::cpu::fused_cpu(x)) {
            return Ok(None);
        }
        // The gate, up and norm weights concatenate so the block is one
        // operation of three inputs.
        let parts = [&self.gate_proj.weight, &self.up_proj.weight, &norm.weight];
        let (weights, down, sink) = block_weights(&parts, &self.down_proj.weight, pending)?;
        let block = crate::cpu::swiglu_block(x, &weights, &down, norm.eps, sink)?;
        Ok(Some(block))
    }

    pub(crate) fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        let (gate, up) = (
            self.gate_proj.forward(x, kernels)?,
            self.up_proj.forward(x, kernels)?,
        );
        let hidden = if kernels != Kernels::Composed && crate::cpu::fused_cpu(&gate) {
            crate::cpu::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        self.down_proj.forward(&hidden, kernels)
    }
}

/// A fused block's weight inputs: `parts` (2-D weights, then a 1-D norm
/// weight as one row) concatenated, and `out`. When the weights are tracked
/// and there is a `pending` sink, both are detached and the block leaves
/// their gradients in the sink ([`crate::Transformer::backward`] collects
/// them); otherwise candle's graph carries them.
pub(crate) fn block_weights(
    parts: &[&Tensor],
    out: &Tensor,
    pending: Option<&PendingGrads>,
) -> Result<(Tensor, Tensor, Option<WeightSink>)> {
    let tracked = parts.iter().chain([&out]).any(|t| t.track_op());
    let sink = match pending {
        Some(pending) if tracked => Some(WeightSink {
            parts: parts.iter().map(|&t| t.clone()).collect(),
            out: out.clone(),
            pending: pending.clone(),
        }),
        _ => None,
    };
    let input = |t: &Tensor| match &sink {
        Some(_) => t.detach(),
        None => t.clone(),
    };
    let rows = parts
        .iter()
        .map(|t| match t.rank() {
            1 => input(t).unsqueeze(0),
            _ => Ok(input(t)),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((Tensor::cat(&rows, 0)?, input(out), sink))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::test_randn;
    use candle_core::Device;

    #[test]
    fn rms_norm_forms_agree() -> Result<()> {
        let dev = Device::Cpu;
        let norm = RmsNorm {
            weight: test_randn(1f32, 0.2, 32, &dev)?,
            eps: 1e-6,
        };
        let x = test_randn(0f32, 3.0, (2, 5, 32), &dev)?;
        let fused = norm.forward(&x, Kernels::ForwardOnly)?;
        for other in [
            norm.forward(&x, Kernels::Trainable)?,
            norm.forward_composed(&x)?,
        ] {
            let diff = (&fused - other)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "max diff {diff}");
        }
        Ok(())
    }
}
