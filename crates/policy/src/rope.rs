//! Rotary position embedding in the rotate-half ("NeoX") form transformers uses:
//! `x * cos + rotate_half(x) * sin`, with one position per (row, token) so a
//! left-padded batch gives every row its own positions.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::Kernels;

/// Inverse frequencies of one head; cos/sin are computed per call from positions.
#[derive(Debug, Clone)]
pub(crate) struct RotaryEmbedding {
    pub(crate) inv_freq: Vec<f32>,
}

/// cos and sin for a batch, each [B, T, head_dim / 2], also kept as host
/// f32 for the fused attention.
pub(crate) struct RopeAngles {
    cos: Tensor,
    sin: Tensor,
    pub(crate) cos_host: Arc<Vec<f32>>,
    pub(crate) sin_host: Arc<Vec<f32>>,
}

impl RotaryEmbedding {
    pub(crate) fn new(cfg: &ModelConfig) -> Self {
        RotaryEmbedding {
            inv_freq: cfg.rope_inverse_frequencies(),
        }
    }

    /// Angles for `positions` laid out row-major as [batch, seq_len].
    pub(crate) fn angles(
        &self,
        positions: &[u32],
        batch: usize,
        seq_len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<RopeAngles> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let shape = (batch, seq_len, half);
        Ok(RopeAngles {
            cos: Tensor::from_slice(&cos, shape, device)?.to_dtype(dtype)?,
            sin: Tensor::from_slice(&sin, shape, device)?.to_dtype(dtype)?,
            cos_host: Arc::new(cos),
            sin_host: Arc::new(sin),
        })
    }
}

impl RopeAngles {
    /// Rotates `x` of shape [B, T, heads, head_dim].
    pub(crate) fn apply(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        match kernels {
            Kernels::ForwardOnly => Ok(candle_nn::rotary_emb::rope_thd(
                &x.contiguous()?,
                &self.cos,
                &self.sin,
            )?),
            Kernels::Trainable if crate::cpu::fused_cpu(x) => {
                crate::cpu::rope(x, &self.cos, &self.sin)
            }
            Kernels::Trainable | Kernels::Composed => self.apply_composed(x),
        }
    }

    /// The rotation from narrow / cat, differentiable on every device.
    fn apply_composed(&self, x: &Tensor) -> Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let cos = self.cos.unsqueeze(2)?;
        let sin = self.sin.unsqueeze(2)?;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let first = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let second = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Ok(Tensor::cat(&[first, second], D::Minus1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;
    use crate::init::test_randn;

    #[test]
    fn fused_and_differentiable_rotations_agree() -> Result<()> {
        let cfg = ModelConfig::new(Architecture::Llama, 10, 32, 8, 1, 2, 1);
        let rope = RotaryEmbedding::new(&cfg);
        let device = Device::Cpu;
        let positions = [0u32, 1, 2, 7, 0, 0, 3, 4];
        let angles = rope.angles(&positions, 2, 4, DType::F32, &device)?;
        let x = test_randn(0f32, 1.0, (2, 4, 2, 16), &device)?;
        let a = angles.apply(&x, Kernels::ForwardOnly)?;
        for b in [
            angles.apply(&x, Kernels::Trainable)?,
            angles.apply_composed(&x)?,
        ] {
            let diff = (&a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "max diff {diff}");
        }
        Ok(())
    }

    #[test]
    fn position_zero_is_identity() -> Result<()> {
        let cfg = ModelConfig::new(Architecture::Llama, 10, 32, 8, 1, 2, 1);
        let angles = RotaryEmbedding::new(&cfg).angles(&[0], 1, 1, DType::F32, &Device::Cpu)?;
        let x = test_randn(0f32, 1.0, (1, 1, 2, 16), &Device::Cpu)?;
        let y = angles.apply(&x, Kernels::Trainable)?;
        let diff = (x - y)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
