//! Generation on the CPU without tensors.
//!
//! A decode step multiplies a few dozen rows by every weight: per-operation
//! overhead and a matrix library tuned for large products dominate it. This
//! decoder holds float32 copies of the weights packed for few-row products
//! ([`packed`]), gives every sequence its own growing KV cache (so prompts
//! need no padding and finished sequences simply leave the batch), and runs
//! the sequences on several threads, each thread decoding its share of them
//! independently. It computes the same function as [`Transformer`]; tests
//! hold the two to each other and to the transformers fixtures.

mod forward;
mod ops;
mod packed;
mod workers;

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::model::Transformer;
use crate::rope::RotaryEmbedding;
use ops::RopeTable;
use packed::PackedLinear;

pub(crate) use workers::generate;

/// The sizes a forward pass needs.
#[derive(Debug, Clone)]
pub(crate) struct Dims {
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    eps: f64,
}

/// One decoder layer's weights.
#[derive(Debug, Clone)]
struct LayerWeights {
    input_norm: Vec<f32>,
    /// q, k and v side by side.
    qkv: PackedLinear,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    o_proj: PackedLinear,
    post_norm: Vec<f32>,
    /// gate and up side by side.
    gate_up: PackedLinear,
    down_proj: PackedLinear,
}

/// A float32 copy of a [`Transformer`] laid out for decoding.
#[derive(Debug, Clone)]
pub(crate) struct CpuDecoder {
    dims: Dims,
    embed: Vec<f32>,
    layers: Vec<LayerWeights>,
    norm: Vec<f32>,
    lm_head: PackedLinear,
    /// Rotary frequencies; each [`forward::Scratch`] grows its own angles.
    rope: RopeTable,
    /// Whether products split their columns over the worker threads (see
    /// [`workers`]) rather than running on the calling thread.
    split_products: bool,
}

impl CpuDecoder {
    /// Whether this decoder computes what `model` computes: float32 weights
    /// on the CPU. (Half-precision models keep their rounding on the tensor path.)
    pub(crate) fn handles(model: &Transformer) -> bool {
        model.device().is_cpu() && model.dtype() == DType::F32
    }

    /// Copies and packs the weights of `model`.
    pub(crate) fn new(model: &Transformer) -> Result<Self> {
        let cfg = model.config();
        let mut weights: HashMap<String, Tensor> = model.named_weights().into_iter().collect();
        let mut take = |name: &str| -> Result<Vec<f32>> {
            let t = weights
                .remove(name)
                .ok_or_else(|| Error::Input(format!("decoder: no weight named {name}")))?;
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (h, i, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_attention_heads * d, cfg.num_key_value_heads * d);
        let embed = take("model.embed_tokens.weight")?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut linear = |names: &[&str], out: usize, in_dim: usize, bias: bool| {
                let mut w = Vec::with_capacity(out * in_dim);
                let mut b = Vec::with_capacity(out);
                for name in names {
                    w.extend(take(&format!("{p}.{name}.weight"))?);
                    if bias {
                        b.extend(take(&format!("{p}.{name}.bias"))?);
                    }
                }
                Ok::<_, Error>(PackedLinear::new(&w, out, in_dim, bias.then_some(&b[..])))
            };
            let qkv = linear(
                &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                q_out + 2 * kv_out,
                h,
                cfg.qkv_bias,
            )?;
            let o_proj = linear(&["self_attn.o_proj"], h, q_out, cfg.o_bias)?;
            let gate_up = linear(&["mlp.gate_proj", "mlp.up_proj"], 2 * i, h, cfg.mlp_bias)?;
            let down_proj = linear(&["mlp.down_proj"], h, i, cfg.mlp_bias)?;
            let mut norm = |name: &str| take(&format!("{p}.{name}.weight"));
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(norm("self_attn.q_norm")?),
                    Some(norm("self_attn.k_norm")?),
                )
            } else {
                (None, None)
            };
            layers.push(LayerWeights {
                input_norm: norm("input_layernorm")?,
                qkv,
                q_norm,
                k_norm,
                o_proj,
                post_norm: norm("post_attention_layernorm")?,
                gate_up,
                down_proj,
            });
        }
        let norm = take("model.norm.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            PackedLinear::new(&embed, cfg.vocab_size, h, None)
        } else {
            PackedLinear::new(&take("lm_head.weight")?, cfg.vocab_size, h, None)
        };
        let rope = RopeTable::new(RotaryEmbedding::new(cfg).inv_freq);
        Ok(CpuDecoder {
            dims: Dims {
                hidden: h,
                intermediate: i,
                heads: cfg.num_attention_heads,
                kv_heads: cfg.num_key_value_heads,
                head_dim: d,
                vocab: cfg.vocab_size,
                eps: cfg.rms_norm_eps,
            },
            embed,
            layers,
            norm,
            lm_head,
            rope,
            split_products: false,
        })
    }
}

impl CpuDecoder {
    /// Bytes of packed weights a forward pass reads.
    fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| l.qkv.len() + l.o_proj.len() + l.gate_up.len() + l.down_proj.len())
            .sum();
        4 * (layers + self.lm_head.len())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::forward::{Run, Scratch, Sequence};
    use super::*;
    use crate::{Architecture, ModelConfig, Policy};

    /// The decoder's last-token logits after a prefill and a few single-token
    /// steps equal the model's logits over the whole sequence.
    #[test]
    fn decoder_matches_the_model() {
        // Head sizes 16 and 32 (fixed-size loops) and 12 (the general one),
        // two and three query heads per KV head, tied and untied heads.
        for (arch, hidden, heads) in [
            (Architecture::Llama, 64, 4),
            (Architecture::Qwen2, 64, 4),
            (Architecture::Qwen3, 64, 4),
            (Architecture::Llama, 192, 6),
            (Architecture::Qwen2, 72, 6),
        ] {
            let mut cfg = ModelConfig::new(arch, 50, hidden, 96, 2, heads, 2);
            cfg.tie_word_embeddings = arch != Architecture::Llama;
            let policy = Policy::random(&cfg, 3, &Device::Cpu).unwrap();
            let decoder = CpuDecoder::new(&policy.model).unwrap();
            let split = CpuDecoder {
                split_products: true,
                ..decoder.clone()
            };
            // 20 tokens: the keys span two blocks.
            let long: Vec<u32> = (1..=20).collect();
            let prompts: [&[u32]; 2] = [&long, &[7, 8]];
            let steps: [[u32; 2]; 3] = [[9, 10], [11, 12], [13, 14]];
            let run = |decoder: &CpuDecoder| {
                let mut seqs = vec![Sequence::new(decoder, 8), Sequence::new(decoder, 8)];
                let mut scratch = Scratch::new(decoder);
                let runs: Vec<Run> = prompts
                    .iter()
                    .enumerate()
                    .map(|(sequence, tokens)| Run { sequence, tokens })
                    .collect();
                let mut logits = decoder.forward(&mut seqs, &runs, &mut scratch);
                for step in &steps {
                    let runs: Vec<Run> = (0..2)
                        .map(|s| Run {
                            sequence: s,
                            tokens: &step[s..s + 1],
                        })
                        .collect();
                    logits = decoder.forward(&mut seqs, &runs, &mut scratch);
                }
                (seqs, logits)
            };
            let (seqs, logits) = run(&decoder);
            // Products split over threads compute every output the same way.
            assert_eq!(run(&split).1, logits, "{arch:?} split products");
            for (s, prompt) in prompts.iter().enumerate() {
                let mut ids = prompt.to_vec();
                ids.extend(steps.iter().map(|step| step[s]));
                assert_eq!(seqs[s].len(), ids.len());
                let input = Tensor::new(&ids[..], &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                let expected = policy.model.forward(&input, None, None).unwrap();
                let expected: Vec<f32> = expected
                    .get(0)
                    .and_then(|t| t.get(ids.len() - 1))
                    .and_then(|t| t.to_vec1())
                    .unwrap();
                let ours = &logits[s * 50..(s + 1) * 50];
                for (a, b) in ours.iter().zip(&expected) {
                    assert!((a - b).abs() < 1e-4, "{arch:?} row {s}: {a} vs {b}");
                }
            }
        }
    }
}
