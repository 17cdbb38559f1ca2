//! Grouped-query self-attention with rotary positions and an optional KV cache.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::cache::{CacheSlot, KvCache};
use crate::config::ModelConfig;
use crate::cpu::{PendingGrads, SequenceLayout};
use crate::error::{Error, Result};
use crate::layers::Kernels;
use crate::layers::{block_weights, linear_concat, Linear, RmsNorm};
use crate::rope::RopeAngles;
use crate::weight_names::Weight;

/// Where this layer's keys and values go during a cached forward pass.
pub(crate) struct LayerCache<'a> {
    pub(crate) cache: &'a KvCache,
    pub(crate) layer: usize,
    pub(crate) slot: CacheSlot,
}

#[derive(Debug, Clone)]
pub(crate) struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub(crate) fn new(cfg: &ModelConfig, vb: &VarBuilder, layer: usize) -> Result<Self> {
        let (q_norm, k_norm) = if cfg.qk_norm {
            (
                Some(RmsNorm::new(cfg, vb, Weight::QNorm, layer)?),
                Some(RmsNorm::new(cfg, vb, Weight::KNorm, layer)?),
            )
        } else {
            (None, None)
        };
        Ok(Attention {
            q_proj: Linear::new(cfg, vb, Weight::QProj, layer)?,
            k_proj: Linear::new(cfg, vb, Weight::KProj, layer)?,
            v_proj: Linear::new(cfg, vb, Weight::VProj, layer)?,
            o_proj: Linear::new(cfg, vb, Weight::OProj, layer)?,
            q_norm,
            k_norm,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        })
    }

    /// One of the block's weights.
    pub(crate) fn tensor(&self, weight: Weight) -> Option<&Tensor> {
        match weight {
            Weight::QProj => Some(self.q_proj.weight()),
            Weight::KProj => Some(self.k_proj.weight()),
            Weight::VProj => Some(self.v_proj.weight()),
            Weight::OProj => Some(self.o_proj.weight()),
            Weight::QBias => self.q_proj.bias(),
            Weight::KBias => self.k_proj.bias(),
            Weight::VBias => self.v_proj.bias(),
            Weight::OBias => self.o_proj.bias(),
            Weight::QNorm => self.q_norm.as_ref().map(RmsNorm::weight),
            Weight::KNorm => self.k_norm.as_ref().map(RmsNorm::weight),
            _ => None,
        }
    }

    /// `x + forward(norm(x))` as one fused CPU operation, for `x` [rows,
    /// hidden] in f32 / f64 over the sequences of `layout`, without biases
    /// or query/key norms; None where that does not apply.
    pub(crate) fn residual_block(
        &self,
        x: &Tensor,
        norm: &RmsNorm,
        angles: &RopeAngles,
        layout: &Arc<SequenceLayout>,
        pending: Option<&PendingGrads>,
    ) -> Result<Option<Tensor>> {
        let projections = [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj];
        let plain = projections.iter().all(|l| l.bias().is_none()) && self.q_norm.is_none();
        if !(plain && x.rank() == 2 && crate::cpu::fused_cpu(x)) {
            return Ok(None);
        }
        // The query, key, value and norm weights concatenate so the block
        // is one operation of three inputs.
        let parts = [
            self.q_proj.weight(),
            self.k_proj.weight(),
            self.v_proj.weight(),
            norm.weight(),
        ];
        let (weights, o_proj, sink) = block_weights(&parts, self.o_proj.weight(), pending)?;
        let attending = crate::cpu::Attending {
            dims: crate::cpu::AttentionDims {
                heads: self.num_heads,
                kv_heads: self.num_kv_heads,
                head_dim: self.head_dim,
            },
            layout: layout.clone(),
            cos: angles.cos_host.clone(),
            sin: angles.sin_host.clone(),
        };
        let block = crate::cpu::attention_block(x, &weights, &o_proj, attending, norm.eps(), sink)?;
        Ok(Some(block))
    }

    /// `x`: [B*T, hidden], rows batch-major; returns the same shape.
    /// `mask`: additive, [B, 1, 1, T, S] where S counts cached plus new
    /// tokens (None: every key is visible). `layout`: without a cache, the
    /// sequences of the rows and their real tokens; on the CPU the fused
    /// attention then replaces the mask (and packed rows need it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        (b, t): (usize, usize),
        angles: &RopeAngles,
        mask: Option<&Tensor>,
        layout: Option<&Arc<SequenceLayout>>,
        cache: Option<LayerCache>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let (heads, kv_heads, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let groups = heads / kv_heads;

        let fused = cache.is_none() && kernels == Kernels::Trainable;
        // The model passes the token mask instead of an additive one only for
        // this path: anything else would attend to every key.
        let fused = match layout {
            Some(_) if !(fused && crate::cpu::fused_cpu(x)) => {
                return Err(Error::Input(
                    "attention: a token mask without an additive mask needs the fused CPU path"
                        .into(),
                ))
            }
            valid => valid,
        };
        let attend = |qkv: &Tensor, layout: &Arc<SequenceLayout>| -> Result<Tensor> {
            let dims = crate::cpu::AttentionDims {
                heads,
                kv_heads,
                head_dim: d,
            };
            let (cos, sin) = (angles.cos_host.clone(), angles.sin_host.clone());
            let out = crate::cpu::causal_attention(qkv, dims, layout.clone(), cos, sin)?;
            self.o_proj.forward(&out, kernels)
        };
        if let (Some(valid), None) = (fused, &self.q_norm) {
            let qkv = linear_concat(&[&self.q_proj, &self.k_proj, &self.v_proj], x, kernels)?;
            return attend(&qkv, valid);
        }
        let q = self.q_proj.forward(x, kernels)?;
        let k = self.k_proj.forward(x, kernels)?;
        let v = self.v_proj.forward(x, kernels)?;
        let (q, k) = match (&self.q_norm, &self.k_norm) {
            (Some(qn), Some(kn)) => (
                qn.forward(&q.reshape((b * t * heads, d))?, kernels)?
                    .reshape((b * t, heads * d))?,
                kn.forward(&k.reshape((b * t * kv_heads, d))?, kernels)?
                    .reshape((b * t, kv_heads * d))?,
            ),
            _ => (q, k),
        };
        if let Some(valid) = fused {
            return attend(&Tensor::cat(&[&q, &k, &v], 1)?, valid);
        }
        let q = q.reshape((b, t, heads, d))?;
        let k = k.reshape((b, t, kv_heads, d))?;
        let v = v.reshape((b, t, kv_heads, d))?;
        let q = angles.apply(&q, kernels)?;
        let k = angles.apply(&k, kernels)?;

        let scale = 1.0 / (d as f64).sqrt();
        let k = k.transpose(1, 2)?.contiguous()?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let (k, v) = match cache {
            Some(c) => c.cache.append(c.layer, c.slot, &k, &v)?,
            None => (k, v),
        };
        let s = k.dim(2)?;
        // Query heads of one KV head side by side: [B, KVH, G*T, D], so keys and
        // values are shared without copying them per query head.
        let q = (q.transpose(1, 2)? * scale)?.reshape((b, kv_heads, groups * t, d))?;

        let scores = q.matmul(&k.t()?)?;
        let dtype = scores.dtype();
        let scores = match dtype {
            DType::F16 | DType::BF16 => scores.to_dtype(DType::F32)?,
            _ => scores,
        };
        let scores = match mask {
            Some(m) => scores
                .reshape((b, kv_heads, groups, t, s))?
                .broadcast_add(m)?
                .reshape((b, kv_heads, groups * t, s))?,
            None => scores,
        };
        let probs = match kernels {
            Kernels::ForwardOnly => candle_nn::ops::softmax_last_dim(&scores)?,
            Kernels::Trainable => crate::cpu::softmax_last_dim(&scores)?,
            Kernels::Composed => candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?,
        };
        let out = probs.to_dtype(v.dtype())?.matmul(&v)?;
        let out = out
            .reshape((b, heads, t, d))?
            .transpose(1, 2)?
            .reshape((b * t, heads * d))?;
        self.o_proj.forward(&out, kernels)
    }
}
