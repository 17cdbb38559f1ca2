//! Every weight of the model: its Hugging Face name, its llama.cpp (GGUF)
//! name, its shape and when a config has it. The one table that the model's
//! loading and export, [`parameter_shapes`], the CPU decoder and the GGUF
//! reader look names up in.

use crate::config::ModelConfig;

/// One weight of the model; a per-layer one is named with its layer index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weight {
    Embed,
    InputNorm,
    QProj,
    QBias,
    KProj,
    KBias,
    VProj,
    VBias,
    OProj,
    OBias,
    QNorm,
    KNorm,
    PostNorm,
    GateProj,
    GateBias,
    UpProj,
    UpBias,
    DownProj,
    DownBias,
    Norm,
    LmHead,
}

/// What a weight is, for initialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Matrix,
    Bias,
    Norm,
}

/// A size a shape is made of.
#[derive(Debug, Clone, Copy)]
enum Dim {
    Vocab,
    Hidden,
    Intermediate,
    HeadSize,
    /// Query heads x head size.
    QueryWidth,
    /// Key-value heads x head size.
    KvWidth,
}

/// Which configs have a weight.
#[derive(Debug, Clone, Copy)]
enum When {
    Always,
    QkvBias,
    OBias,
    QkNorm,
    MlpBias,
    Untied,
}

struct Entry {
    weight: Weight,
    /// `{}` stands for the layer index.
    hf: &'static str,
    gguf: &'static str,
    shape: &'static [Dim],
    when: When,
}

const fn entry(
    weight: Weight,
    hf: &'static str,
    gguf: &'static str,
    shape: &'static [Dim],
    when: When,
) -> Entry {
    Entry {
        weight,
        hf,
        gguf,
        shape,
        when,
    }
}

use Dim::*;
use Weight::*;

/// In parameter order: the embedding, one layer's weights (repeated per
/// layer), then the rest.
#[rustfmt::skip]
const TABLE: [Entry; 21] = [
    entry(Embed, "model.embed_tokens.weight", "token_embd.weight", &[Vocab, Hidden], When::Always),
    entry(InputNorm, "model.layers.{}.input_layernorm.weight", "blk.{}.attn_norm.weight", &[Hidden], When::Always),
    entry(QProj, "model.layers.{}.self_attn.q_proj.weight", "blk.{}.attn_q.weight", &[QueryWidth, Hidden], When::Always),
    entry(QBias, "model.layers.{}.self_attn.q_proj.bias", "blk.{}.attn_q.bias", &[QueryWidth], When::QkvBias),
    entry(KProj, "model.layers.{}.self_attn.k_proj.weight", "blk.{}.attn_k.weight", &[KvWidth, Hidden], When::Always),
    entry(KBias, "model.layers.{}.self_attn.k_proj.bias", "blk.{}.attn_k.bias", &[KvWidth], When::QkvBias),
    entry(VProj, "model.layers.{}.self_attn.v_proj.weight", "blk.{}.attn_v.weight", &[KvWidth, Hidden], When::Always),
    entry(VBias, "model.layers.{}.self_attn.v_proj.bias", "blk.{}.attn_v.bias", &[KvWidth], When::QkvBias),
    entry(OProj, "model.layers.{}.self_attn.o_proj.weight", "blk.{}.attn_output.weight", &[Hidden, QueryWidth], When::Always),
    entry(OBias, "model.layers.{}.self_attn.o_proj.bias", "blk.{}.attn_output.bias", &[Hidden], When::OBias),
    entry(QNorm, "model.layers.{}.self_attn.q_norm.weight", "blk.{}.attn_q_norm.weight", &[HeadSize], When::QkNorm),
    entry(KNorm, "model.layers.{}.self_attn.k_norm.weight", "blk.{}.attn_k_norm.weight", &[HeadSize], When::QkNorm),
    entry(PostNorm, "model.layers.{}.post_attention_layernorm.weight", "blk.{}.ffn_norm.weight", &[Hidden], When::Always),
    entry(GateProj, "model.layers.{}.mlp.gate_proj.weight", "blk.{}.ffn_gate.weight", &[Intermediate, Hidden], When::Always),
    entry(GateBias, "model.layers.{}.mlp.gate_proj.bias", "blk.{}.ffn_gate.bias", &[Intermediate], When::MlpBias),
    entry(UpProj, "model.layers.{}.mlp.up_proj.weight", "blk.{}.ffn_up.weight", &[Intermediate, Hidden], When::Always),
    entry(UpBias, "model.layers.{}.mlp.up_proj.bias", "blk.{}.ffn_up.bias", &[Intermediate], When::MlpBias),
    entry(DownProj, "model.layers.{}.mlp.down_proj.weight", "blk.{}.ffn_down.weight", &[Hidden, Intermediate], When::Always),
    entry(DownBias, "model.layers.{}.mlp.down_proj.bias", "blk.{}.ffn_down.bias", &[Hidden], When::MlpBias),
    entry(Norm, "model.norm.weight", "output_norm.weight", &[Hidden], When::Always),
    entry(LmHead, "lm_head.weight", "output.weight", &[Vocab, Hidden], When::Untied),
];

impl Entry {
    fn per_layer(&self) -> bool {
        self.hf.contains("{}")
    }
}

impl Weight {
    fn entry(self) -> &'static Entry {
        TABLE
            .iter()
            .find(|e| e.weight == self)
            .expect("every weight has a table entry")
    }

    /// The Hugging Face name (`layer` is ignored for global weights).
    pub(crate) fn name(self, layer: usize) -> String {
        self.entry().hf.replace("{}", &layer.to_string())
    }

    /// The llama.cpp name (`layer` is ignored for global weights).
    pub(crate) fn gguf_name(self, layer: usize) -> String {
        self.entry().gguf.replace("{}", &layer.to_string())
    }

    pub(crate) fn shape(self, cfg: &ModelConfig) -> Vec<usize> {
        let size = |dim: &Dim| match dim {
            Vocab => cfg.vocab_size,
            Hidden => cfg.hidden_size,
            Intermediate => cfg.intermediate_size,
            HeadSize => cfg.head_dim,
            QueryWidth => cfg.num_attention_heads * cfg.head_dim,
            KvWidth => cfg.num_key_value_heads * cfg.head_dim,
        };
        self.entry().shape.iter().map(size).collect()
    }

    /// Whether a model of this config has the weight.
    pub(crate) fn present(self, cfg: &ModelConfig) -> bool {
        match self.entry().when {
            When::Always => true,
            When::QkvBias => cfg.qkv_bias,
            When::OBias => cfg.o_bias,
            When::QkNorm => cfg.qk_norm,
            When::MlpBias => cfg.mlp_bias,
            When::Untied => !cfg.tie_word_embeddings,
        }
    }

    pub(crate) fn role(self) -> Role {
        match self {
            InputNorm | PostNorm | QNorm | KNorm | Norm => Role::Norm,
            QBias | KBias | VBias | OBias | GateBias | UpBias | DownBias => Role::Bias,
            Embed | QProj | KProj | VProj | OProj | GateProj | UpProj | DownProj | LmHead => {
                Role::Matrix
            }
        }
    }

    /// The bias beside a projection, if the config has one.
    pub(crate) fn bias(self, cfg: &ModelConfig) -> Option<Weight> {
        let bias = match self {
            QProj => QBias,
            KProj => KBias,
            VProj => VBias,
            OProj => OBias,
            GateProj => GateBias,
            UpProj => UpBias,
            DownProj => DownBias,
            _ => return None,
        };
        bias.present(cfg).then_some(bias)
    }
}

/// Every weight of a config with its layer index (0 for global weights),
/// in parameter order.
pub(crate) fn all_weights(cfg: &ModelConfig) -> Vec<(Weight, usize)> {
    let (per_layer, global): (Vec<&Entry>, Vec<&Entry>) = TABLE.iter().partition(|e| e.per_layer());
    // The embedding comes before the layers, the other global weights after.
    let (before, after) = global.split_at(1);
    let layers = (0..cfg.num_hidden_layers).flat_map(|l| per_layer.iter().map(move |e| (e, l)));
    before
        .iter()
        .map(|e| (e, 0))
        .chain(layers)
        .chain(after.iter().map(|e| (e, 0)))
        .map(|(e, l)| (e.weight, l))
        .filter(|(w, _)| w.present(cfg))
        .collect()
}

/// Every trainable tensor of a config: Hugging Face name and shape, in a fixed order.
pub fn parameter_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    all_weights(cfg)
        .into_iter()
        .map(|(w, l)| (w.name(l), w.shape(cfg)))
        .collect()
}

impl ModelConfig {
    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> usize {
        all_weights(self)
            .iter()
            .map(|(w, _)| w.shape(self).iter().product::<usize>())
            .sum()
    }
}

/// The weight and layer index a Hugging Face name stands for.
pub(crate) fn parse_hf_name(name: &str) -> Option<(Weight, usize)> {
    parse(name, |e| e.hf)
}

/// The Hugging Face name of a llama.cpp tensor name.
pub fn hf_name(gguf: &str) -> Option<String> {
    parse(gguf, |e| e.gguf).map(|(w, l)| w.name(l))
}

/// The llama.cpp name of a Hugging Face tensor name.
pub fn gguf_name(hf: &str) -> Option<String> {
    parse_hf_name(hf).map(|(w, l)| w.gguf_name(l))
}

fn parse(name: &str, column: impl Fn(&Entry) -> &'static str) -> Option<(Weight, usize)> {
    TABLE.iter().find_map(|e| {
        let Some((prefix, suffix)) = column(e).split_once("{}") else {
            return (name == column(e)).then_some((e.weight, 0));
        };
        let layer = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
        let is_index = !layer.is_empty() && layer.bytes().all(|b| b.is_ascii_digit());
        is_index
            .then(|| layer.parse().ok())
            .flatten()
            .map(|l| (e.weight, l))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways_and_only_whole_layer_indices() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(
            gguf_name("model.layers.3.mlp.down_proj.weight").as_deref(),
            Some("blk.3.ffn_down.weight")
        );
        assert_eq!(hf_name("blk..attn_q.weight"), None);
        assert_eq!(hf_name("blk.1x.attn_q.weight"), None);
        assert_eq!(hf_name("rope_freqs.weight"), None);
        for e in &TABLE {
            let (g, h) = (e.weight.gguf_name(7), e.weight.name(7));
            assert_eq!(hf_name(&g).as_deref(), Some(h.as_str()));
            assert_eq!(gguf_name(&h).as_deref(), Some(g.as_str()));
            let layer = if e.per_layer() { 7 } else { 0 };
            assert_eq!(parse_hf_name(&h), Some((e.weight, layer)));
        }
    }
}
