//! Generation on the CPU without tensors.
//!
//! A decode step multiplies a few dozen rows by every weight: per-operation
//! overhead and a matrix library tuned for large products dominate it. This
//! decoder holds float32 copies of the weights packed for few-row products
//! ([`packed`]), gives every sequence its own growing KV cache (so prompts
//! need no padding and finished sequences simply leave the batch), and
//! batches continuously ([`schedule`]): a finished sequence frees its slot
//! at once for the next one in the queue. It computes the same function as
//! [`Transformer`]; tests hold the two to each other and to the
//! transformers fixtures. A packed decoder is reused between calls while
//! the weights stay the same ([`fingerprint`]).

mod fingerprint;
mod forward;
mod ops;
mod schedule;
mod score;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;
use crate::cpu::packed::PackedLinear;
use crate::cpu::parallel::{cpu_slice, with_cpu};
use crate::error::{Error, Result};
use crate::request::Precision;
use crate::weight_names::Weight;
use ops::RopeTable;

pub(crate) use fingerprint::Fingerprint;
pub(crate) use schedule::generate;
pub(crate) use score::score;

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

/// How a forward pass shares its work with the worker threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// Not at all: each thread runs its own rows through the whole model
    /// (weights that fit in the cache are read by every thread cheaply).
    Rows,
    /// Every product split by output columns and attention by rows, so
    /// weights beyond the cache are read from memory once per step.
    Columns,
}

/// A float32 copy of a [`Transformer`] laid out for decoding.
#[derive(Debug, Clone)]
pub(crate) struct CpuDecoder {
    dims: Dims,
    /// The embedding table, or `None` when tied to the LM head (whose packed
    /// rows are read back instead of keeping a second copy).
    embed: Option<Vec<f32>>,
    layers: Vec<LayerWeights>,
    norm: Vec<f32>,
    lm_head: PackedLinear,
    /// Rotary frequencies; each [`forward::Scratch`] grows its own angles.
    rope: RopeTable,
    /// The weights this copy was packed from.
    fingerprint: Fingerprint,
    precision: Precision,
}

impl CpuDecoder {
    /// Whether this decoder computes what a model with weights on `device`
    /// in `dtype` computes: float32 weights on the CPU. (Half-precision
    /// models keep their rounding on the tensor path.)
    pub(crate) fn handles(device: &Device, dtype: DType) -> bool {
        device.is_cpu() && dtype == DType::F32
    }

    /// Packs the weights of a model of config `cfg` (`named` under their
    /// Hugging Face names), whose current values `fingerprint` summarises.
    pub(crate) fn new(
        cfg: &ModelConfig,
        named: &[(String, Tensor)],
        fingerprint: Fingerprint,
        precision: Precision,
    ) -> Result<Self> {
        let index: HashMap<&str, usize> = named
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.as_str(), i))
            .collect();
        let tensors: Vec<_> = named.iter().map(|(_, t)| t).collect();
        let (h, i, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (layers, norm, embed, lm_head) = with_cpu(&tensors, |storage| {
            let get = |weight: Weight, layer: usize| -> candle_core::Result<&[f32]> {
                let name = weight.name(layer);
                match index.get(name.as_str()) {
                    Some(&i) => cpu_slice::<f32>(storage[i]),
                    None => candle_core::bail!("decoder: no weight named {name}"),
                }
            };
            let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
            for l in 0..cfg.num_hidden_layers {
                // Projections of the same input, stacked into one product.
                let linear = |stack: &[Weight], in_dim: usize| {
                    let weights = stack
                        .iter()
                        .map(|&w| get(w, l))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    let biases = match stack[0].bias(cfg) {
                        Some(_) => Some(
                            stack
                                .iter()
                                .filter_map(|w| w.bias(cfg))
                                .map(|b| get(b, l))
                                .collect::<candle_core::Result<Vec<_>>>()?,
                        ),
                        None => None,
                    };
                    Ok::<_, candle_core::Error>(PackedLinear::stacked(
                        &weights,
                        in_dim,
                        biases.as_deref(),
                        precision,
                    ))
                };
                let norm = |weight: Weight| get(weight, l).map(<[f32]>::to_vec);
                let (q_norm, k_norm) = if cfg.qk_norm {
                    (Some(norm(Weight::QNorm)?), Some(norm(Weight::KNorm)?))
                } else {
                    (None, None)
                };
                layers.push(LayerWeights {
                    input_norm: norm(Weight::InputNorm)?,
                    qkv: linear(&[Weight::QProj, Weight::KProj, Weight::VProj], h)?,
                    q_norm,
                    k_norm,
                    o_proj: linear(&[Weight::OProj], cfg.num_attention_heads * d)?,
                    post_norm: norm(Weight::PostNorm)?,
                    gate_up: linear(&[Weight::GateProj, Weight::UpProj], h)?,
                    down_proj: linear(&[Weight::DownProj], i)?,
                });
            }
            let embed = get(Weight::Embed, 0)?;
            let (embed, lm_head) = if cfg.tie_word_embeddings {
                (None, PackedLinear::stacked(&[embed], h, None, precision))
            } else {
                let head = PackedLinear::stacked(&[get(Weight::LmHead, 0)?], h, None, precision);
                (Some(embed.to_vec()), head)
            };
            Ok((layers, get(Weight::Norm, 0)?.to_vec(), embed, lm_head))
        })?;
        if lm_head.out_dim() != cfg.vocab_size {
            return Err(Error::Input(format!(
                "decoder: the LM head has {} rows, the vocabulary {}",
                lm_head.out_dim(),
                cfg.vocab_size
            )));
        }
        let rope = RopeTable::new(cfg.rope_inverse_frequencies());
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
            fingerprint,
            precision,
        })
    }

    /// Whether this copy was packed from weights with this fingerprint, in
    /// this precision.
    pub(crate) fn packed_from(&self, fingerprint: &Fingerprint, precision: Precision) -> bool {
        &self.fingerprint == fingerprint && self.precision == precision
    }

    /// Bytes of packed weights a forward pass reads.
    fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| l.qkv.bytes() + l.o_proj.bytes() + l.gate_up.bytes() + l.down_proj.bytes())
            .sum();
        layers + self.lm_head.bytes()
    }

    /// Bytes of keys and values one cached token holds.
    fn kv_bytes_per_token(&self) -> usize {
        4 * 2 * self.layers.len() * self.dims.kv_heads * self.dims.head_dim
    }

    /// Writes the embedding of token `id` into `x`.
    fn embed(&self, id: usize, x: &mut [f32]) {
        match &self.embed {
            Some(table) => x.copy_from_slice(&table[id * x.len()..(id + 1) * x.len()]),
            None => self.lm_head.copy_row(id, x),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use candle_core::{Device, Tensor};

    use super::forward::{Run, Scratch, Sequence};
    use super::*;
    use crate::model::Transformer;
    use crate::{Architecture, Policy};

    /// `model` packed for decoding.
    pub(crate) fn packed(model: &Transformer) -> CpuDecoder {
        packed_in(model, Precision::Float32)
    }

    /// `model` packed for decoding in `precision`.
    pub(crate) fn packed_in(model: &Transformer, precision: Precision) -> CpuDecoder {
        let named = model.named_weights();
        let fingerprint = Fingerprint::of(&named).unwrap();
        CpuDecoder::new(model.config(), &named, fingerprint, precision).unwrap()
    }

    /// The tensor model's logits after the last of `ids`.
    fn last_logits(model: &Transformer, ids: &[u32]) -> Vec<f32> {
        let input = Tensor::new(ids, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .unwrap();
        let logits = model.forward(&input, None, None).unwrap();
        logits
            .get(0)
            .and_then(|t| t.get(ids.len() - 1))
            .and_then(|t| t.to_vec1())
            .unwrap()
    }

    /// Runs `prompts` (each as one run), then `steps` (one token per
    /// sequence each): the caches and the last pass's logits.
    fn run(
        decoder: &CpuDecoder,
        prompts: &[&[u32]],
        steps: &[Vec<u32>],
        split: Split,
    ) -> (Vec<Sequence>, Vec<f32>) {
        let mut seqs: Vec<Sequence> = prompts.iter().map(|_| Sequence::new(decoder, 8)).collect();
        let mut scratch = Scratch::new(decoder);
        let mut runs: Vec<Run> = seqs
            .iter_mut()
            .zip(prompts)
            .map(|(cache, tokens)| Run { cache, tokens })
            .collect();
        let mut logits = decoder.forward(&mut runs, &mut scratch, split).to_vec();
        for step in steps {
            let mut runs: Vec<Run> = seqs
                .iter_mut()
                .zip(step.chunks(1))
                .map(|(cache, tokens)| Run { cache, tokens })
                .collect();
            logits = decoder.forward(&mut runs, &mut scratch, split).to_vec();
        }
        (seqs, logits)
    }

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
            let decoder = packed(&policy.model);
            // 20 tokens: the keys span two blocks.
            let long: Vec<u32> = (1..=20).collect();
            let prompts: [&[u32]; 2] = [&long, &[7, 8]];
            let steps = [vec![9, 10], vec![11, 12], vec![13, 14]];
            let (seqs, logits) = run(&decoder, &prompts, &steps, Split::Rows);
            // Products split over threads compute every output the same way.
            let split = run(&decoder, &prompts, &steps, Split::Columns).1;
            assert_eq!(split, logits, "{arch:?} split products");
            for (s, prompt) in prompts.iter().enumerate() {
                let mut ids = prompt.to_vec();
                ids.extend(steps.iter().map(|step| step[s]));
                assert_eq!(seqs[s].len(), ids.len());
                let expected = last_logits(&policy.model, &ids);
                let ours = &logits[s * 50..(s + 1) * 50];
                for (a, b) in ours.iter().zip(&expected) {
                    assert!((a - b).abs() < 1e-4, "{arch:?} row {s}: {a} vs {b}");
                }
            }
        }
    }

    /// In bfloat16 the decoder computes the model's logits to bfloat16's
    /// precision (weights and activations rounded, sums in float32), the
    /// same bits however the products are shared out.
    #[test]
    fn bfloat16_decoder_follows_the_model() {
        for arch in [Architecture::Llama, Architecture::Qwen3] {
            let mut cfg = ModelConfig::new(arch, 50, 64, 96, 2, 4, 2);
            cfg.tie_word_embeddings = arch == Architecture::Llama;
            let policy = Policy::random(&cfg, 5, &Device::Cpu).unwrap();
            let decoder = packed_in(&policy.model, Precision::Bfloat16);
            let prompt: Vec<u32> = (1..=11).collect();
            let steps = [vec![12], vec![13]];
            let (_, logits) = run(&decoder, &[&prompt], &steps, Split::Rows);
            let split = run(&decoder, &[&prompt], &steps, Split::Columns).1;
            assert_eq!(split, logits, "{arch:?} split products");
            let ids: Vec<u32> = (1..=13).collect();
            let expected = last_logits(&policy.model, &ids);
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = logits
                .iter()
                .zip(&expected)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // bfloat16 keeps 8 bits: a few parts in a thousand of the
            // logits' scale after two layers; a kernel that mixed up inputs
            // or columns would be off by the scale itself.
            assert!(worst < 0.02 * scale, "{arch:?}: {worst} of {scale}");
            assert!(worst > 0.0, "{arch:?}: rounded nothing");
        }
    }

    /// A prompt prefilled as one batched run leaves the same cache and
    /// logits, bit for bit, as the same tokens fed one at a time, and a
    /// mixed pass (a prompt beside decode tokens) computes each row as
    /// alone.
    #[test]
    fn batched_prefill_equals_token_by_token() {
        for arch in [Architecture::Llama, Architecture::Qwen3] {
            let cfg = ModelConfig::new(arch, 61, 64, 96, 2, 4, 2);
            let policy = Policy::random(&cfg, 9, &Device::Cpu).unwrap();
            let decoder = packed(&policy.model);
            let prompt: Vec<u32> = (0..37).map(|i| (i * 7 % 61) as u32).collect();
            for split in [Split::Rows, Split::Columns] {
                let (batched, batched_logits) = run(&decoder, &[&prompt], &[], split);
                let steps: Vec<Vec<u32>> = prompt[1..].iter().map(|&t| vec![t]).collect();
                let (single, single_logits) = run(&decoder, &[&prompt[..1]], &steps, split);
                assert_eq!(batched_logits, single_logits, "{arch:?} {split:?}");
                assert_eq!(batched[0].len(), single[0].len());
                assert_eq!(batched[0].keys_and_values(), single[0].keys_and_values());

                // The prompt beside two decode tokens of other sequences.
                let other: Vec<u32> = vec![5, 6, 7];
                let (_, mixed) = run(&decoder, &[&other[..2], &prompt], &[], split);
                let (_, alone) = run(&decoder, &[&other[..2]], &[], split);
                assert_eq!(&mixed[61..], &batched_logits[..], "{arch:?} {split:?}");
                assert_eq!(&mixed[..61], &alone[..], "{arch:?} {split:?}");
            }
        }
    }
}
