//! The decoder-only transformer of the Llama / Qwen2 / Qwen3 families.
//!
//! Order as in candle's model files: the configuration lives in
//! `config.rs`, the weights' names and shapes in `weight_names.rs`, the
//! private layers in `rope.rs`, `layers.rs` and `attention.rs`; this file
//! holds the decoder layer and the public model. On f32 / f64 CPU tensors
//! the layers call the fused kernels of the CPU backend (`cpu/`).

use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::attention::{Attention, LayerCache};
use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::cpu::{PendingGrads, SequenceLayout};
use crate::error::{Error, Result};
use crate::layers::{get, Kernels, Linear, Mlp, RmsNorm};
use crate::rope::RotaryEmbedding;
use crate::weight_names::{all_weights, Weight};

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(cfg: &ModelConfig, vb: &VarBuilder, layer: usize) -> Result<Self> {
        Ok(DecoderLayer {
            self_attn: Attention::new(cfg, vb, layer)?,
            mlp: Mlp::new(cfg, vb, layer)?,
            input_layernorm: RmsNorm::new(cfg, vb, Weight::InputNorm, layer)?,
            post_attention_layernorm: RmsNorm::new(cfg, vb, Weight::PostNorm, layer)?,
        })
    }

    fn tensor(&self, weight: Weight) -> Option<&Tensor> {
        match weight {
            Weight::InputNorm => Some(self.input_layernorm.weight()),
            Weight::PostNorm => Some(self.post_attention_layernorm.weight()),
            _ => self
                .self_attn
                .tensor(weight)
                .or_else(|| self.mlp.tensor(weight)),
        }
    }

    /// The layer's output for every row of `x`, or for the rows `read`
    /// alone (u32 row indices): the MLP half works row by row, so rows no
    /// one reads skip it.
    fn forward(
        &self,
        x: &Tensor,
        ctx: &ForwardContext,
        cache: Option<LayerCache>,
        read: Option<&Tensor>,
    ) -> Result<Tensor> {
        let fused = match (&ctx.layout, &cache, ctx.kernels) {
            (Some(layout), None, Kernels::Trainable) => self.self_attn.residual_block(
                x,
                &self.input_layernorm,
                &ctx.angles,
                layout,
                ctx.pending.as_ref(),
            )?,
            _ => None,
        };
        let x = match fused {
            Some(x) => x,
            None => {
                let attn_in = self.input_layernorm.forward(x, ctx.kernels)?;
                let attn_out = self.self_attn.forward(
                    &attn_in,
                    ctx.batch_seq,
                    &ctx.angles,
                    ctx.mask.as_ref(),
                    ctx.layout.as_ref(),
                    cache,
                    ctx.kernels,
                )?;
                (x + attn_out)?
            }
        };
        let x = match read {
            Some(rows) => x.index_select(rows, 0)?,
            None => x,
        };
        if ctx.kernels == Kernels::Trainable {
            if let Some(out) =
                self.mlp
                    .residual_block(&x, &self.post_attention_layernorm, ctx.pending.as_ref())?
            {
                return Ok(out);
            }
        }
        let mlp_in = self.post_attention_layernorm.forward(&x, ctx.kernels)?;
        Ok((&x + self.mlp.forward(&mlp_in, ctx.kernels)?)?)
    }
}

/// What every layer of one forward pass shares: the batch shape (the layers
/// see [B*T, hidden]), rotary angles per (row, token), the attention mask
/// (additive, or for the fused CPU attention the sequences and their real
/// tokens) and the kernel choice.
struct ForwardContext {
    batch_seq: (usize, usize),
    angles: crate::rope::RopeAngles,
    mask: Option<Tensor>,
    layout: Option<Arc<SequenceLayout>>,
    kernels: Kernels,
    /// Where the fused blocks leave their weights' gradients (trainable
    /// kernels only).
    pending: Option<PendingGrads>,
}

/// The transformer: token embedding, decoder layers, final norm, LM head.
///
/// `forward` returns logits for every position. Rows may be left-padded:
/// the attention mask hides padding, and each row's positions count only its
/// real tokens (what transformers' `generate` does), so a padded row computes
/// the same numbers as the row alone.
#[derive(Debug, Clone)]
pub struct Transformer {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: RotaryEmbedding,
    config: ModelConfig,
    /// Weight gradients the fused blocks left, for [`Transformer::backward`].
    pending: PendingGrads,
}

impl Transformer {
    /// Builds the model from weights named as in Hugging Face checkpoints
    /// (`model.layers.0.self_attn.q_proj.weight`, ...).
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let embed_tokens = get(config, &vb, Weight::Embed, 0)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::new(config, &vb, i))
            .collect::<Result<_>>()?;
        let norm = RmsNorm::new(config, &vb, Weight::Norm, 0)?;
        let lm_head = if config.tie_word_embeddings {
            Linear::from_weight(embed_tokens.clone())
        } else {
            Linear::new(config, &vb, Weight::LmHead, 0)?
        };
        Ok(Transformer {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: RotaryEmbedding::new(config),
            config: config.clone(),
            pending: PendingGrads::default(),
        })
    }

    /// The gradients of `loss` for every tracked tensor, this model's
    /// weights included: `loss.backward()`, plus the weight gradients the
    /// fused CPU blocks hand over outside the graph. Take a loss computed
    /// from this model's trainable forward passes with this, not with
    /// `loss.backward()`, which would leave those weights without one (the
    /// next forward pass then fails, naming this method).
    pub fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        for (weight, grad) in self.pending.take() {
            let grad = match grads.remove(&weight) {
                Some(other) => (other + grad)?,
                None => grad,
            };
            grads.insert(&weight, grad);
        }
        Ok(grads)
    }

    /// The context's sink for a forward pass with `kernels`, after checking
    /// that the last backward pass's weight gradients were collected.
    fn pending_for(&self, kernels: Kernels) -> Result<Option<PendingGrads>> {
        if !self.pending.is_empty() {
            self.pending.take();
            return Err(Error::Input(
                "weight gradients of an earlier backward pass were never collected: \
                 take gradients of this model's losses with Transformer::backward"
                    .into(),
            ));
        }
        Ok((kernels == Kernels::Trainable).then(|| self.pending.clone()))
    }

    /// Every weight under its Hugging Face name, in [`parameter_shapes`]
    /// order (a tied model lists no `lm_head.weight`). The tensors share
    /// storage with the model.
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        // Built from the same table, the model holds every weight it lists.
        all_weights(&self.config)
            .into_iter()
            .filter_map(|(w, l)| Some((w.name(l), self.tensor(w, l)?.clone())))
            .collect()
    }

    /// One weight (`layer` is ignored for global ones), None where the model has none.
    pub(crate) fn tensor(&self, weight: Weight, layer: usize) -> Option<&Tensor> {
        match weight {
            Weight::Embed => Some(&self.embed_tokens),
            Weight::Norm => Some(self.norm.weight()),
            Weight::LmHead if !self.config.tie_word_embeddings => Some(self.lm_head.weight()),
            Weight::LmHead => None,
            _ => self.layers.get(layer)?.tensor(weight),
        }
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.embed_tokens.dtype()
    }

    /// Logits [B, T, vocab] for every position of `input_ids` [B, T] (u32),
    /// with differentiable kernels.
    ///
    /// `attention_mask` [B, T] (any numeric dtype, 1 = token, 0 = padding)
    /// defaults to all ones. With a `cache`, the tokens continue the cached
    /// rows and their keys and values are appended to it.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        self.forward_with(input_ids, attention_mask, cache, Kernels::Trainable)
    }

    /// [`Transformer::forward`] with a choice of kernels.
    pub fn forward_with(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let hidden = self.hidden_states(input_ids, attention_mask, cache, kernels)?;
        self.lm_head.forward(&hidden, kernels)
    }

    /// The final-norm hidden states [B, T, hidden] of [`Transformer::forward`],
    /// so callers can apply the LM head to the positions they need only.
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let hidden = self.hidden_rows(input_ids, attention_mask, cache, kernels, None)?;
        Ok(hidden.reshape((b, t, self.config.hidden_size))?)
    }

    /// Final-norm hidden states [read.len(), hidden] of the rows `read` of
    /// the flattened batch (row b * T + t), with trainable kernels: what
    /// the LM head needs of a batch scored at some positions only.
    pub(crate) fn hidden_states_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        read: &[u32],
    ) -> Result<Tensor> {
        let read = Tensor::from_slice(read, read.len(), self.device())?;
        self.hidden_rows(
            input_ids,
            Some(attention_mask),
            None,
            Kernels::Trainable,
            Some(&read),
        )
    }

    /// Final-norm hidden states [B*T, hidden] of [`Transformer::hidden_states`],
    /// or of the rows `read` alone.
    fn hidden_rows(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        kernels: Kernels,
        read: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if t == 0 {
            return Err(Error::Input("input_ids has no tokens".into()));
        }
        let token_mask = read_mask(attention_mask, b, t)?;
        check_token_ids(input_ids, self.config.vocab_size)?;
        // Checked before planning: the plan reads one cache entry per row.
        let slot = match cache.as_deref() {
            Some(c) => Some(c.slot(b, t)?),
            None => None,
        };
        let plan = AttentionPlan::new(&token_mask, b, t, cache.as_deref());
        let mask_dtype = match self.dtype() {
            DType::F16 | DType::BF16 => DType::F32,
            d => d,
        };
        // Without a cache the fused CPU attention masks from the token mask
        // itself; the additive mask is built only for the other paths.
        let fused_attention = cache.is_none()
            && kernels == Kernels::Trainable
            && self.device().is_cpu()
            && matches!(self.dtype(), DType::F32 | DType::F64);
        let pending = self.pending_for(kernels)?;
        let ctx = ForwardContext {
            batch_seq: (b, t),
            angles: self
                .rotary
                .angles(&plan.positions, b, t, self.dtype(), self.device())?,
            mask: if fused_attention {
                None
            } else {
                plan.mask_tensor(b, t, mask_dtype, self.device())?
            },
            layout: fused_attention
                .then(|| Arc::new(SequenceLayout::rectangular(b, t, token_mask.clone()))),
            kernels,
            pending,
        };

        let mut x = self
            .embed_tokens
            .index_select(&input_ids.flatten_all()?, 0)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = match (cache.as_deref(), slot) {
                (Some(c), Some(slot)) => Some(LayerCache {
                    cache: c,
                    layer: i,
                    slot,
                }),
                _ => None,
            };
            x = layer.forward(&x, &ctx, layer_cache, read.filter(|_| i == last))?;
        }
        if let (Some(c), Some(slot)) = (cache, slot) {
            c.commit(slot, &token_mask, plan.seen);
        }
        self.norm.forward(&x, kernels)
    }

    /// Applies the LM head to hidden states [..., hidden] -> logits [..., vocab].
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden, Kernels::Trainable)
    }

    /// Whether training passes run on the fused CPU kernels (weights in f32
    /// or f64 on the CPU): log-probs then come from the LM head a chunk of
    /// positions at a time, and [`crate::grouped_completion_scores`] runs
    /// each prompt's forward pass once for its whole group.
    pub fn fused_training(&self) -> bool {
        self.device().is_cpu() && matches!(self.dtype(), DType::F32 | DType::F64)
    }

    /// The LM head's weight [vocab, hidden] (the embedding when tied).
    pub(crate) fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.weight()
    }

    /// Final-norm hidden states [read.len(), hidden] of the packed rows
    /// `read`: `ids` and `positions` per row, `layout` saying which rows
    /// each row attends to. Fused CPU kernels only
    /// ([`Transformer::fused_training`]).
    pub(crate) fn packed_hidden_states(
        &self,
        ids: &[u32],
        positions: &[u32],
        layout: Arc<SequenceLayout>,
        read: &[u32],
    ) -> Result<Tensor> {
        let n = ids.len();
        if !self.fused_training() || n == 0 || positions.len() != n || layout.rows() != n {
            return Err(Error::Input(format!(
                "packed sequences need f32/f64 weights on the CPU and one position per token \
                 ({n} tokens, {} positions, {} layout rows)",
                positions.len(),
                layout.rows()
            )));
        }
        let ids = Tensor::from_slice(ids, n, self.device())?;
        check_token_ids(&ids, self.config.vocab_size)?;
        let ctx = ForwardContext {
            batch_seq: (1, n),
            angles: self
                .rotary
                .angles(positions, 1, n, self.dtype(), self.device())?,
            mask: None,
            layout: Some(layout),
            kernels: Kernels::Trainable,
            pending: self.pending_for(Kernels::Trainable)?,
        };
        let read = Tensor::from_slice(read, read.len(), self.device())?;
        let mut x = self.embed_tokens.index_select(&ids, 0)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &ctx, None, (i == last).then_some(&read))?;
        }
        self.norm.forward(&x, Kernels::Trainable)
    }
}

/// Positions and key visibility for one forward pass.
struct AttentionPlan {
    /// [B * T]: each token's position, counting only real tokens of its row.
    positions: Vec<u32>,
    /// Real tokens per row after this pass.
    seen: Vec<u32>,
    /// [B * S]: whether key column j of row b is a real token, S = past + T.
    key_valid: Vec<bool>,
    past: usize,
}

impl AttentionPlan {
    fn new(token_mask: &[bool], b: usize, t: usize, past: Option<&KvCache>) -> Self {
        let past_len = past.map_or(0, KvCache::len);
        let s = past_len + t;
        let mut positions = Vec::with_capacity(b * t);
        let mut seen = Vec::with_capacity(b);
        let mut key_valid = Vec::with_capacity(b * s);
        for row in 0..b {
            let mut count = past.map_or(0, |c| c.seen()[row]);
            for col in 0..past_len {
                key_valid.push(past.is_some_and(|c| c.is_valid(row, col)));
            }
            for &real in &token_mask[row * t..(row + 1) * t] {
                positions.push(count);
                if real {
                    count += 1;
                }
                key_valid.push(real);
            }
            seen.push(count);
        }
        AttentionPlan {
            positions,
            seen,
            key_valid,
            past: past_len,
        }
    }

    /// The additive mask [B, 1, 1, T, S]: 0 where query t may attend key j
    /// (causal and a real key), -inf elsewhere. A query always sees itself, so
    /// padding rows stay finite. None when nothing is hidden.
    fn mask_tensor(
        &self,
        b: usize,
        t: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        let s = self.past + t;
        if t == 1 && self.key_valid.iter().all(|&v| v) {
            return Ok(None);
        }
        let mut mask = Vec::with_capacity(b * t * s);
        for row in 0..b {
            let valid = &self.key_valid[row * s..(row + 1) * s];
            for q in 0..t {
                let q_col = self.past + q;
                mask.extend(valid.iter().enumerate().map(|(j, &real)| {
                    if j == q_col || (j < q_col && real) {
                        0f32
                    } else {
                        f32::NEG_INFINITY
                    }
                }));
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, 1, t, s), device)?.to_dtype(dtype)?;
        Ok(Some(mask))
    }
}

/// Reads an attention mask [B, T] of any numeric dtype into booleans.
fn read_mask(mask: Option<&Tensor>, b: usize, t: usize) -> Result<Vec<bool>> {
    let Some(mask) = mask else {
        return Ok(vec![true; b * t]);
    };
    if mask.dims() != [b, t] {
        return Err(Error::Input(format!(
            "attention_mask has shape {:?}, input_ids has [{b}, {t}]",
            mask.dims()
        )));
    }
    let values = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.into_iter().map(|v| v > 0.5).collect())
}

/// Rejects ids outside the vocabulary, which would otherwise index out of bounds.
fn check_token_ids(input_ids: &Tensor, vocab_size: usize) -> Result<()> {
    if input_ids.dtype() != DType::U32 {
        return Err(Error::Input(format!(
            "input_ids must be u32, got {:?}",
            input_ids.dtype()
        )));
    }
    let max = input_ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
    if max as usize >= vocab_size {
        return Err(Error::Input(format!(
            "token id {max} is outside the vocabulary of {vocab_size}"
        )));
    }
    Ok(())
}
