//! The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata,
//! rebuilt as a `tokenizers` pipeline (a tokenizer.json) with its special
//! tokens, settings and chat template.
//!
//! Two vocabulary kinds (`tokenizer.ggml.model`):
//! - `gpt2`: byte-level BPE. Text is split before BPE as llama.cpp splits it
//!   for the vocabulary's `tokenizer.ggml.pre` (see [`pre_tokenizer`]); an
//!   unknown split is an error rather than a silently different tokenizer.
//! - `llama`: sentencepiece BPE with byte fallback, as transformers rebuilds
//!   it (`▁` for spaces, a space put before the text unless
//!   `tokenizer.ggml.add_space_prefix` is false, merges ranked by the
//!   merged token's score when the file lists none).
//!
//! Tokens typed control (3) become special added tokens, user-defined ones
//! (4) plain added tokens, so either is matched whole in text.

use candle_core::quantized::gguf_file::Value as GgufValue;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use crate::error::Result;
use crate::gguf::GgufModel;
use crate::tokenizer::{build_tokenizer, byte_level_char, Tokenizer, QWEN2_SPLIT_PATTERN};

/// Token types of `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Llama 3's split pattern (also Falcon 3, DBRX, Pixtral, ...).
const LLAMA3_SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How byte-level text is split before BPE, by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizer {
    /// GPT-2's pattern.
    Gpt2,
    /// Every digit alone, then GPT-2's pattern (llama.cpp: `\p{N}` first).
    DigitsThenGpt2,
    /// One split pattern; `ignore_merges` takes a whole piece that is a
    /// token as it is (Llama 3).
    Pattern {
        pattern: &'static str,
        ignore_merges: bool,
    },
}

/// The split of a `tokenizer.ggml.pre` name, as llama.cpp's `llama-vocab.cpp`
/// and transformers' GGUF loader assign them. A file without the key (older
/// converters) gets GPT-2's, as in both.
fn pre_tokenizer(pre: Option<&str>) -> Option<PreTokenizer> {
    let llama3 = PreTokenizer::Pattern {
        pattern: LLAMA3_SPLIT_PATTERN,
        ignore_merges: true,
    };
    let qwen2 = PreTokenizer::Pattern {
        pattern: QWEN2_SPLIT_PATTERN,
        ignore_merges: false,
    };
    Some(match pre.unwrap_or("default") {
        "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => PreTokenizer::Gpt2,
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            PreTokenizer::DigitsThenGpt2
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" | "pixtral" => {
            llama3
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => qwen2,
        _ => return None,
    })
}

const KNOWN_PRE: &str = "default, gpt2, mpt, olmo, jais, smollm, starcoder, refact, command-r, \
                         codeshell, exaone, minerva, llama3, llama-v3, llama-bpe, falcon3, dbrx, \
                         smaug-bpe, pixtral, qwen2, deepseek-r1-qwen, megrez";

impl GgufModel {
    /// The tokenizer of the file's `tokenizer.ggml.*` metadata, with bos /
    /// eos / pad / unk from their ids (eos followed by `eot` and `eom` ids,
    /// so generation stops at the end of a turn), `add_bos_token`, and the
    /// chat template of `tokenizer.chat_template`.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let kind = self.string("tokenizer.ggml.model")?;
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(self.error("tokenizer.ggml.tokens is empty"));
        }
        let types = match self.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(_) => self.ints("tokenizer.ggml.token_type")?,
        };
        if types.len() != tokens.len() {
            return Err(self.error(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let merges = match self.get("tokenizer.ggml.merges") {
            None => None,
            Some(_) => Some(self.strings("tokenizer.ggml.merges")?),
        };
        let token_text = |key: &str| -> Result<Option<String>> {
            match self.token_id(key)? {
                None => Ok(None),
                Some(id) => tokens.get(id as usize).cloned().map(Some).ok_or_else(|| {
                    self.error(format!(
                        "{key} = {id} is past the {} tokens of tokenizer.ggml.tokens",
                        tokens.len()
                    ))
                }),
            }
        };
        let bos = token_text("tokenizer.ggml.bos_token_id")?;
        let eos = token_text("tokenizer.ggml.eos_token_id")?;
        let pad = token_text("tokenizer.ggml.padding_token_id")?;
        let unk = token_text("tokenizer.ggml.unknown_token_id")?;
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            token_text(key)?;
        }
        let sentencepiece = match kind.as_str() {
            "gpt2" => false,
            "llama" => true,
            other => {
                return Err(self.error(format!(
                    "tokenizer.ggml.model '{other}' cannot be built (gpt2, llama)"
                )))
            }
        };
        // llama.cpp adds BOS to sentencepiece vocabularies that do not say otherwise.
        let add_bos = self
            .boolean("tokenizer.ggml.add_bos_token")?
            .unwrap_or(sentencepiece);
        if add_bos && bos.is_none() {
            return Err(self.error(
                "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is unset",
            ));
        }

        let (model, pre_tokenizer, decoder) = if sentencepiece {
            let scores = match self.get("tokenizer.ggml.scores") {
                None => None,
                Some(_) => Some(self.floats("tokenizer.ggml.scores")?),
            };
            let prefix = self
                .boolean("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            self.sentencepiece_parts(&tokens, merges.as_deref(), scores, prefix)?
        } else {
            let pre = match self.get("tokenizer.ggml.pre") {
                None => None,
                Some(_) => Some(self.string("tokenizer.ggml.pre")?),
            };
            let split = pre_tokenizer(pre.as_deref()).ok_or_else(|| {
                self.error(format!(
                    "tokenizer.ggml.pre '{}' is not a pre-tokenizer verity knows ({KNOWN_PRE})",
                    pre.as_deref().unwrap_or_default()
                ))
            })?;
            let merges = merges.ok_or_else(|| {
                self.error("tokenizer.ggml.merges is missing (a gpt2 vocabulary needs its merges)")
            })?;
            self.byte_level_parts(&tokens, &types, &merges, split)?
        };

        let added_tokens: Vec<Value> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, &t))| t == CONTROL || t == USER_DEFINED)
            .map(|(id, (content, &t))| {
                json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": t == CONTROL})
            })
            .collect();
        let post_processor = match (&bos, add_bos) {
            (Some(bos), true) => {
                let id = tokens.iter().position(|t| t == bos).unwrap_or_default();
                json!({
                    "type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                               {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                             {"Sequence": {"id": "A", "type_id": 0}},
                             {"SpecialToken": {"id": bos, "type_id": 1}},
                             {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {bos.as_str(): {"id": bos, "ids": [id], "tokens": [bos]}},
                })
            }
            _ => Value::Null,
        };
        let tokenizer_json = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": decoder,
            "model": model,
        });
        let text = tokenizer_json.to_string();
        let label = self.path().join("tokenizer.ggml");
        let inner = build_tokenizer(&text, &tokenizer_json, &label)?;

        let mut config = Map::new();
        for (key, token) in [
            ("bos_token", &bos),
            ("eos_token", &eos),
            ("pad_token", &pad),
            ("unk_token", &unk),
        ] {
            config.insert(key.into(), json!(token));
        }
        config.insert("add_bos_token".into(), json!(add_bos));
        config.insert("add_eos_token".into(), json!(false));
        config.insert("clean_up_tokenization_spaces".into(), json!(false));
        // transformers keeps tokenizer.json's pipeline as it is only for this class.
        config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        if let Some(positions) = self.context_length()? {
            config.insert("model_max_length".into(), json!(positions));
        }
        let mut generation = Map::new();
        let stop_ids: Vec<u32> = [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ]
        .into_iter()
        .map(|key| self.token_id(key))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
        generation.insert("eos_token_id".into(), json!(stop_ids));
        let template = match self.get("tokenizer.chat_template") {
            None => None,
            Some(_) => Some((
                self.string("tokenizer.chat_template")?,
                self.path().join("tokenizer.chat_template"),
            )),
        };
        let metadata = self.path().join("tokenizer.ggml");
        Tokenizer::assemble(inner, config, &metadata, &generation, &metadata, template)
    }

    /// Byte-level BPE: tokens in GPT-2's byte alphabet (any token spelled
    /// otherwise is respelled byte by byte, as transformers does).
    fn byte_level_parts(
        &self,
        tokens: &[String],
        types: &[i32],
        merges: &[String],
        split: PreTokenizer,
    ) -> Result<(Value, Value, Value)> {
        let alphabet: std::collections::HashSet<char> = (0..=255u8).map(byte_level_char).collect();
        let vocab = vocab_object(tokens.iter().zip(types).map(|(token, &t)| {
            if t == CONTROL || t == USER_DEFINED || token.chars().all(|c| alphabet.contains(&c)) {
                token.clone()
            } else {
                token.bytes().map(byte_level_char).collect()
            }
        }));
        let merges = self.merge_pairs(merges)?;
        let byte_level = |use_regex: bool| {
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                   "use_regex": use_regex})
        };
        let (pre, ignore_merges) = match split {
            PreTokenizer::Gpt2 => (byte_level(true), false),
            PreTokenizer::DigitsThenGpt2 => (
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                false,
            ),
            PreTokenizer::Pattern {
                pattern,
                ignore_merges,
            } => (
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
                     "invert": false},
                    byte_level(false)]}),
                ignore_merges,
            ),
        };
        let model = json!({
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab, "merges": merges,
        });
        let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                             "use_regex": true});
        Ok((model, pre, decoder))
    }

    /// Sentencepiece BPE with byte fallback (`<0x0A>` tokens), as
    /// transformers' `LlamaTokenizer` builds it.
    fn sentencepiece_parts(
        &self,
        tokens: &[String],
        merges: Option<&[String]>,
        scores: Option<Vec<f32>>,
        add_space_prefix: bool,
    ) -> Result<(Value, Value, Value)> {
        let merges = match merges {
            Some(merges) => self.merge_pairs(merges)?,
            None => {
                let scores = scores.ok_or_else(|| {
                    self.error(
                        "a llama vocabulary needs tokenizer.ggml.merges or tokenizer.ggml.scores",
                    )
                })?;
                if scores.len() != tokens.len() {
                    return Err(self.error(format!(
                        "tokenizer.ggml.scores has {} entries for {} tokens",
                        scores.len(),
                        tokens.len()
                    )));
                }
                merges_from_scores(tokens, &scores)
            }
        };
        let vocab = vocab_object(tokens.iter().cloned());
        let model = json!({
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        });
        let scheme = if add_space_prefix { "first" } else { "never" };
        let pre = json!({"type": "Metaspace", "replacement": "\u{2581}",
                         "prepend_scheme": scheme, "split": false});
        let mut steps = vec![
            json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if add_space_prefix {
            steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        let decoder = json!({"type": "Sequence", "decoders": steps});
        Ok((model, pre, decoder))
    }

    /// `"a b"` merges as `["a", "b"]` pairs.
    fn merge_pairs(&self, merges: &[String]) -> Result<Vec<Value>> {
        merges
            .iter()
            .enumerate()
            .map(|(rank, merge)| match merge.split_once(' ') {
                Some((left, right)) if !left.is_empty() && !right.is_empty() => {
                    Ok(json!([left, right]))
                }
                _ => Err(self.error(format!(
                    "tokenizer.ggml.merges[{rank}] = {merge:?} is not two tokens separated by a space"
                ))),
            })
            .collect()
    }

    fn context_length(&self) -> Result<Option<usize>> {
        let arch = self.string("general.architecture")?;
        self.uint(&format!("{arch}.context_length"))
    }

    fn array(&self, key: &str) -> Result<&Vec<GgufValue>> {
        match self.get(key) {
            Some(GgufValue::Array(items)) => Ok(items),
            Some(other) => Err(self.error(format!(
                "metadata '{key}' should be an array, found a {:?} value",
                other.value_type()
            ))),
            None => Err(self.error(format!("missing metadata key '{key}'"))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                GgufValue::String(s) => Ok(s.clone()),
                other => Err(self.error(format!(
                    "{key}[{i}] should be a string, found a {:?} value",
                    other.value_type()
                ))),
            })
            .collect()
    }

    fn ints(&self, key: &str) -> Result<Vec<i32>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                match *v {
                    GgufValue::I32(x) => Ok(x),
                    GgufValue::U32(x) => i32::try_from(x).map_err(|_| x.to_string()),
                    GgufValue::U8(x) => Ok(x.into()),
                    GgufValue::I8(x) => Ok(x.into()),
                    ref other => Err(format!("a {:?} value", other.value_type())),
                }
                .map_err(|found| {
                    self.error(format!("{key}[{i}] should be an integer, found {found}"))
                })
            })
            .collect()
    }

    fn floats(&self, key: &str) -> Result<Vec<f32>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match *v {
                GgufValue::F32(x) => Ok(x),
                GgufValue::F64(x) => Ok(x as f32),
                ref other => Err(self.error(format!(
                    "{key}[{i}] should be a number, found a {:?} value",
                    other.value_type()
                ))),
            })
            .collect()
    }
}

/// A JSON vocab object, each token at its index; a repeated token takes its
/// last id, as in llama.cpp and transformers (the earlier ones decode to
/// nothing).
fn vocab_object(tokens: impl Iterator<Item = String>) -> Value {
    let mut vocab = Map::new();
    for (id, token) in tokens.enumerate() {
        vocab.insert(token, json!(id));
    }
    Value::Object(vocab)
}

/// The merges a sentencepiece vocabulary implies: every split of a token
/// into two tokens, ranked by the merged token's score, best first (ties:
/// longer left piece, then longer right piece), as transformers'
/// `generate_merges` ranks them.
fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<Value> {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.as_str(), id))
        .collect();
    let mut merges: Vec<(f32, usize, usize, usize, usize)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let mut local = Vec::new();
        for (at, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(at);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                local.push((
                    scores[id],
                    l,
                    r,
                    left.chars().count(),
                    right.chars().count(),
                ));
            }
        }
        local.sort_by_key(|&(_, l, r, _, _)| (l, r));
        merges.extend(local);
    }
    // Stable: equal keys keep the order above, as Python's sorted does.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    merges
        .into_iter()
        .map(|(_, l, r, _, _)| json!([tokens[l], tokens[r]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_pre_tokenizers_and_unknown_ones() {
        assert_eq!(
            pre_tokenizer(Some("smollm")),
            Some(PreTokenizer::DigitsThenGpt2)
        );
        assert_eq!(pre_tokenizer(None), Some(PreTokenizer::Gpt2));
        assert!(matches!(
            pre_tokenizer(Some("llama-bpe")),
            Some(PreTokenizer::Pattern {
                ignore_merges: true,
                ..
            })
        ));
        assert_eq!(pre_tokenizer(Some("made-up")), None);
        for name in KNOWN_PRE.split(", ") {
            assert!(pre_tokenizer(Some(name)).is_some(), "{name}");
        }
    }

    #[test]
    fn merges_follow_the_merged_tokens_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .map(String::from)
            .to_vec();
        let scores = [0.0, 0.0, 0.0, -1.0, -0.5, -2.0];
        let merges = merges_from_scores(&tokens, &scores);
        assert_eq!(
            merges,
            vec![
                json!(["b", "c"]),
                json!(["a", "b"]),
                json!(["ab", "c"]),
                json!(["a", "bc"])
            ]
        );
    }
}
