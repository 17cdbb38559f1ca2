//! Tokenizers: a Hugging Face `tokenizer.json` with the settings around it
//! (`tokenizer_config.json`, `generation_config.json`, the chat template), or
//! a character-level tokenizer built here for training from scratch.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Map, Value};

use crate::chat_template::{ChatMessage, ChatTemplate, SpecialTokens};
use crate::error::{Error, Result};

const TOKENIZER_FILE: &str = "tokenizer.json";
const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
const GENERATION_CONFIG_FILE: &str = "generation_config.json";
const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Padding (and beginning-of-text) token of character-level tokenizers.
const ENDOFTEXT: &str = "<|endoftext|>";
/// Opens a chat turn in character-level tokenizers.
const IM_START: &str = "<|im_start|>";
/// Closes a chat turn; the end-of-sequence token of character-level tokenizers.
const IM_END: &str = "<|im_end|>";

/// ChatML, the template character-level tokenizers carry (Qwen's format):
/// `<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n`.
const CHATML_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Qwen2's pre-tokenizer split pattern: character-level tokenizers keep
/// Qwen2's whole pipeline so that transformers, which rebuilds a Qwen2
/// tokenizer's pipeline from the model type, tokenizes them the same way.
pub(crate) const QWEN2_SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A text tokenizer with its special tokens and chat template.
///
/// Ids follow the `tokenizers` crate exactly, so they equal the ids Python's
/// `tokenizers` and transformers produce from the same files.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// tokenizer_config.json as read; [`Tokenizer::save`] writes it back.
    config: Map<String, Value>,
    special_tokens: SpecialTokens,
    eos_ids: Vec<u32>,
    pad_id: Option<u32>,
    bos_id: Option<u32>,
    chat_template: Option<ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special_tokens", &self.special_tokens)
            .field("eos_ids", &self.eos_ids)
            .field("pad_id", &self.pad_id)
            .field("bos_id", &self.bos_id)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Loads the tokenizer of a model folder: `tokenizer.json` (required), and
    /// when present `tokenizer_config.json` (bos/eos/pad/unk tokens, chat
    /// template), `chat_template.jinja` (preferred over the config's
    /// template, as transformers does) and `generation_config.json` (more
    /// end-of-sequence ids, a pad id).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        if !tokenizer_path.is_file() {
            return Err(Error::Tokenizer {
                path: tokenizer_path,
                message: "not found (verity reads tokenizer.json; sentencepiece \
                          tokenizer.model files alone are not supported)"
                    .into(),
            });
        }
        let inner = load_tokenizer_json(&tokenizer_path)?;
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config = read_json_object(&config_path)?.unwrap_or_default();
        let generation_path = dir.join(GENERATION_CONFIG_FILE);
        let generation = read_json_object(&generation_path)?.unwrap_or_default();
        let template_path = dir.join(CHAT_TEMPLATE_FILE);
        let template = if template_path.is_file() {
            let source = std::fs::read_to_string(&template_path)
                .map_err(|e| Error::io(&template_path, e))?;
            Some((source, template_path))
        } else {
            config_chat_template(&config, &config_path)?.map(|source| (source, config_path.clone()))
        };
        Self::assemble(
            inner,
            config,
            &config_path,
            &generation,
            &generation_path,
            template,
        )
    }

    /// A character-level tokenizer for training from scratch.
    ///
    /// Ids: the characters of `alphabet` in the order given (duplicates
    /// ignored), then the control tokens `<|endoftext|>` (pad and bos),
    /// `<|im_start|>` and `<|im_end|>` (eos), then `extra_tokens` in order.
    /// Every control and extra token is one added token, so `"<answer>"`
    /// encodes to a single id wherever it appears. Control tokens are
    /// special (dropped by `decode(.., true)`); extra tokens such as the
    /// format tags `<think>`, `</think>`, `<answer>`, `</answer>` are not, so
    /// decoded completions keep them.
    ///
    /// The layout is Qwen2's byte-level BPE with no merges (the layout of the
    /// reference fixtures): alphabet characters must be ASCII, and characters
    /// outside the alphabet are dropped when encoding (there is no unknown
    /// token), so `decode(encode(text))` gives back `text` exactly when every
    /// character of `text` is in the alphabet. Prompts are formatted with
    /// the ChatML template it carries:
    /// `<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n`.
    pub fn char_level(alphabet: &str, extra_tokens: &[&str]) -> Result<Self> {
        let mut vocab = Map::new();
        let mut seen = std::collections::HashSet::new();
        for c in alphabet.chars() {
            if !c.is_ascii() {
                return Err(Error::Input(format!(
                    "character-level alphabet: {c:?} is not ASCII (only ASCII characters are supported)"
                )));
            }
            if seen.insert(c) {
                vocab.insert(byte_level_char(c as u8).to_string(), json!(vocab.len()));
            }
        }
        if vocab.is_empty() {
            return Err(Error::Input("character-level alphabet is empty".into()));
        }
        let mut added_tokens = Vec::new();
        let controls = [ENDOFTEXT, IM_START, IM_END].map(|t| (t, true));
        for (content, special) in controls
            .into_iter()
            .chain(extra_tokens.iter().map(|t| (*t, false)))
        {
            if content.is_empty()
                || vocab.contains_key(content)
                || single_char(content).is_some_and(|c| seen.contains(&c))
            {
                return Err(Error::Input(format!(
                    "character-level extra token {content:?} is empty, repeated, a control token or an alphabet character"
                )));
            }
            let id = vocab.len();
            vocab.insert(content.to_owned(), json!(id));
            added_tokens.push(json!({
                "id": id,
                "content": content,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": special,
            }));
        }
        let tokenizer_json = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {
                        "type": "Split",
                        "pattern": {"Regex": QWEN2_SPLIT_PATTERN},
                        "behavior": "Isolated",
                        "invert": false
                    },
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
                ]
            },
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": []
            }
        });
        let inner = tokenizers::Tokenizer::from_str(&tokenizer_json.to_string()).map_err(|e| {
            Error::Input(format!("character-level tokenizer could not be built: {e}"))
        })?;
        let config: Map<String, Value> = [
            ("bos_token", json!(ENDOFTEXT)),
            ("clean_up_tokenization_spaces", json!(false)),
            ("eos_token", json!(IM_END)),
            ("pad_token", json!(ENDOFTEXT)),
            ("padding_side", json!("left")),
            ("tokenizer_class", json!("PreTrainedTokenizerFast")),
            ("unk_token", Value::Null),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let origin = PathBuf::from(TOKENIZER_CONFIG_FILE);
        Self::assemble(
            inner,
            config,
            &origin,
            &Map::new(),
            Path::new(GENERATION_CONFIG_FILE),
            Some((
                CHATML_TEMPLATE.to_owned(),
                PathBuf::from(CHAT_TEMPLATE_FILE),
            )),
        )
    }

    /// Resolves special tokens and compiles the chat template; `*_path` only
    /// name the files in errors.
    pub(crate) fn assemble(
        inner: tokenizers::Tokenizer,
        config: Map<String, Value>,
        config_path: &Path,
        generation: &Map<String, Value>,
        generation_path: &Path,
        template: Option<(String, PathBuf)>,
    ) -> Result<Self> {
        let text = |key: &str| config_token_text(&config, key, config_path);
        let special_tokens = SpecialTokens {
            bos: text("bos_token")?,
            eos: text("eos_token")?,
            pad: text("pad_token")?,
            unk: text("unk_token")?,
        };
        let id_of = |key: &str, token: &Option<String>| -> Result<Option<u32>> {
            token
                .as_deref()
                .map(|token| {
                    inner.token_to_id(token).ok_or_else(|| Error::Tokenizer {
                        path: config_path.to_owned(),
                        message: format!(
                            "{key} {token:?} is not in the vocabulary of tokenizer.json"
                        ),
                    })
                })
                .transpose()
        };
        let vocab_size = inner.get_vocab_size(true);
        let generation_ids =
            |key: &str| generation_token_ids(generation, key, vocab_size, generation_path);

        let mut eos_ids: Vec<u32> = id_of("eos_token", &special_tokens.eos)?
            .into_iter()
            .collect();
        for id in generation_ids("eos_token_id")? {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let pad_id = match id_of("pad_token", &special_tokens.pad)? {
            Some(id) => Some(id),
            None => generation_ids("pad_token_id")?.first().copied(),
        };
        let bos_id = id_of("bos_token", &special_tokens.bos)?;

        let chat_template = template
            .map(|(source, path)| {
                ChatTemplate::new(&source, special_tokens.clone()).map_err(|e| Error::Tokenizer {
                    path,
                    message: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            inner,
            config,
            special_tokens,
            eos_ids,
            pad_id,
            bos_id,
            chat_template,
        })
    }

    /// The same tokenizer with another chat template.
    pub fn with_chat_template(mut self, source: &str) -> Result<Self> {
        self.chat_template = Some(ChatTemplate::new(source, self.special_tokens.clone())?);
        Ok(self)
    }

    /// Token ids of `text`. `add_special_tokens` lets the tokenizer's
    /// post-processor add its tokens (Llama 3 prepends `<|begin_of_text|>`);
    /// pass `false` for text rendered by a chat template, which already
    /// holds them (as transformers' `apply_chat_template` does).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenize(format!("encoding {:?}: {e}", preview(text))))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`; with `skip_special_tokens`, special tokens (the
    /// control tokens, not the format tags of a character-level tokenizer)
    /// are left out. Ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenize(format!("decoding {} ids: {e}", ids.len())))
    }

    /// Renders `messages` with the chat template (see [`ChatTemplate::render`]).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.chat_template()?
            .render(messages, add_generation_prompt)
    }

    /// The chat template, or an error saying the tokenizer has none.
    pub fn chat_template(&self) -> Result<&ChatTemplate> {
        self.chat_template.as_ref().ok_or_else(|| {
            Error::ChatTemplate(
                "this tokenizer has none (no chat_template.jinja and no chat_template in \
                 tokenizer_config.json)"
                    .into(),
            )
        })
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token's text, if it is one token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of a token id as stored in the vocabulary (byte-level
    /// tokenizers store a space as `Ġ`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// End-of-sequence ids: tokenizer_config.json's `eos_token` first, then
    /// generation_config.json's `eos_token_id` entries. Generation stops on any.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Padding id: tokenizer_config.json's `pad_token`, else
    /// generation_config.json's `pad_token_id`; `None` if neither is set
    /// (Llama 3 has none: callers commonly pad with an eos id).
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// tokenizer_config.json's `bos_token` id, as transformers reports it
    /// (`None` for Qwen2, which starts sequences with no such token).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The special token strings (bos, eos, pad, unk).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and (with a
    /// template) `chat_template.jinja` into `dir`, creating it.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let tokenizer_json = self.inner.to_string(true).map_err(|e| Error::Tokenizer {
            path: tokenizer_path.clone(),
            message: format!("serializing: {e}"),
        })?;
        write_file(&tokenizer_path, &tokenizer_json)?;
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config =
            serde_json::to_string_pretty(&self.config).map_err(|e| Error::json(&config_path, e))?;
        write_file(&config_path, &config)?;
        if let Some(template) = &self.chat_template {
            write_file(&dir.join(CHAT_TEMPLATE_FILE), template.source())?;
        }
        Ok(())
    }
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(path, e))
}

/// The first characters of `text`, for error messages.
fn preview(text: &str) -> String {
    const LIMIT: usize = 60;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// The character `text` consists of, if it is exactly one.
fn single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// GPT-2's byte-to-character table, which byte-level tokenizers store tokens
/// in: printable bytes stand for themselves, the others are shifted past 255
/// in order (space is `Ġ`, newline `Ċ`).
pub(crate) fn byte_level_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    // 256..=323 are all valid scalar values.
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Reads and checks a tokenizer.json, then hands it to the tokenizers crate.
fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::json(path, e))?;
    build_tokenizer(&text, &value, path)
}

/// Checks a parsed tokenizer.json (`text`, parsed as `value`), then builds it;
/// `path` names where it came from in errors.
pub(crate) fn build_tokenizer(
    text: &str,
    value: &Value,
    path: &Path,
) -> Result<tokenizers::Tokenizer> {
    check_bpe_merges(value).map_err(|message| Error::Tokenizer {
        path: path.to_owned(),
        message,
    })?;
    // The check above covers the panics known in tokenizers 0.23; a panic
    // the check missed still becomes an error naming the file.
    let loaded = panic::catch_unwind(AssertUnwindSafe(|| tokenizers::Tokenizer::from_str(text)));
    match loaded {
        Ok(Ok(tokenizer)) => Ok(tokenizer),
        Ok(Err(e)) => Err(Error::Tokenizer {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown reason");
            Err(Error::Tokenizer {
                path: path.to_owned(),
                message: format!("the tokenizers library failed on this file: {reason}"),
            })
        }
    }
}

/// Checks that every BPE merge joins two vocabulary tokens into a
/// vocabulary token. tokenizers 0.23 panics (slice out of range) on a merge
/// whose result is missing and longer than every token in the vocab.
fn check_bpe_merges(tokenizer: &Value) -> std::result::Result<(), String> {
    let Some(model) = tokenizer.get("model") else {
        return Ok(());
    };
    let (Some(Value::Object(vocab)), Some(Value::Array(merges))) =
        (model.get("vocab"), model.get("merges"))
    else {
        return Ok(());
    };
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .unwrap_or("");
    let vocab: HashMap<&str, ()> = vocab.keys().map(|k| (k.as_str(), ())).collect();
    for (rank, merge) in merges.iter().enumerate() {
        let (left, right) = match merge {
            Value::String(line) => match line.split(' ').collect::<Vec<_>>()[..] {
                [left, right] => (left, right),
                _ => {
                    return Err(format!(
                        "merge {rank} {line:?} is not two tokens separated by one space"
                    ))
                }
            },
            Value::Array(pair) => match &pair[..] {
                [Value::String(left), Value::String(right)] => (left.as_str(), right.as_str()),
                _ => return Err(format!("merge {rank} {merge} is not a pair of strings")),
            },
            other => {
                return Err(format!(
                    "merge {rank} {other} is neither \"a b\" nor [\"a\", \"b\"]"
                ))
            }
        };
        for token in [left, right] {
            if !vocab.contains_key(token) {
                return Err(format!(
                    "merge {rank} ({left:?}, {right:?}) uses {token:?}, which is not in the vocab"
                ));
            }
        }
        let Some(rest) = right.strip_prefix(prefix) else {
            return Err(format!(
                "merge {rank} ({left:?}, {right:?}): {right:?} does not start with the continuing-subword prefix {prefix:?}"
            ));
        };
        let merged = format!("{left}{rest}");
        if !vocab.contains_key(merged.as_str()) {
            return Err(format!(
                "merge {rank} ({left:?}, {right:?}) produces {merged:?}, which is not in the vocab"
            ));
        }
    }
    Ok(())
}

/// Reads a JSON object file; `None` when the file does not exist.
fn read_json_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    match serde_json::from_str(&text).map_err(|e| Error::json(path, e))? {
        Value::Object(map) => Ok(Some(map)),
        other => Err(Error::Tokenizer {
            path: path.to_owned(),
            message: format!("expected a JSON object, found {}", json_kind(&other)),
        }),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A special token in tokenizer_config.json: a string, an AddedToken object
/// (`{"content": "<s>", ...}`, transformers 4), or null.
fn config_token_text(
    config: &Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Option<String>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Object(token)) => match token.get("content") {
            Some(Value::String(text)) => Ok(Some(text.clone())),
            _ => Err(Error::Tokenizer {
                path: path.to_owned(),
                message: format!("{key} is an object without a string \"content\""),
            }),
        },
        Some(other) => Err(Error::Tokenizer {
            path: path.to_owned(),
            message: format!("{key} must be a string, found {}", json_kind(other)),
        }),
    }
}

/// tokenizer_config.json's `chat_template`: a string, or a list of named
/// templates of which transformers uses the one named "default".
fn config_chat_template(config: &Map<String, Value>, path: &Path) -> Result<Option<String>> {
    let bad = |message: String| Error::Tokenizer {
        path: path.to_owned(),
        message,
    };
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(source)) => Ok(Some(source.clone())),
        Some(Value::Array(templates)) => {
            for template in templates {
                if template.get("name").and_then(Value::as_str) == Some("default") {
                    return match template.get("template") {
                        Some(Value::String(source)) => Ok(Some(source.clone())),
                        _ => Err(bad(
                            "chat_template \"default\" has no string \"template\"".into()
                        )),
                    };
                }
            }
            Err(bad(
                "chat_template is a list without a template named \"default\"".into(),
            ))
        }
        Some(other) => Err(bad(format!(
            "chat_template must be a string or a list, found {}",
            json_kind(other)
        ))),
    }
}

/// A token id field of generation_config.json: a number, a list of numbers or null.
fn generation_token_ids(
    generation: &Map<String, Value>,
    key: &str,
    vocab_size: usize,
    path: &Path,
) -> Result<Vec<u32>> {
    let values = match generation.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(values)) => values.iter().collect(),
        Some(value) => vec![value],
    };
    values
        .into_iter()
        .map(|value| {
            value
                .as_u64()
                .filter(|&id| id < vocab_size as u64)
                .map(|id| id as u32)
                .ok_or_else(|| Error::Tokenizer {
                    path: path.to_owned(),
                    message: format!(
                        "{key}: {value} is not a token id below the vocabulary size {vocab_size}"
                    ),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_chars_match_gpt2_table() {
        assert_eq!(byte_level_char(b' '), 'Ġ');
        assert_eq!(byte_level_char(b'\n'), 'Ċ');
        assert_eq!(byte_level_char(b'\t'), 'ĉ');
        assert_eq!(byte_level_char(0), 'Ā');
        assert_eq!(byte_level_char(0x7f), 'ġ');
        assert_eq!(byte_level_char(b'a'), 'a');
        assert_eq!(byte_level_char(0xAD), 'Ń');
    }

    #[test]
    fn merge_check_accepts_consistent_merges_and_names_the_bad_one() {
        let model = |merges: Value, prefix: Value| {
            json!({"model": {"type": "BPE", "continuing_subword_prefix": prefix,
                "vocab": {"a": 0, "b": 1, "ab": 2, "##b": 3}, "merges": merges}})
        };
        assert!(check_bpe_merges(&model(json!(["a b", ["a", "b"]]), Value::Null)).is_ok());
        assert!(check_bpe_merges(&model(json!(["a ##b"]), json!("##"))).is_ok());
        let error = check_bpe_merges(&model(json!(["a b", "ab b"]), Value::Null)).unwrap_err();
        assert!(
            error.contains("merge 1") && error.contains("\"abb\""),
            "{error}"
        );
        let error = check_bpe_merges(&model(json!(["a b c"]), Value::Null)).unwrap_err();
        assert!(error.contains("merge 0"), "{error}");
        let error = check_bpe_merges(&model(json!(["a b"]), json!("##"))).unwrap_err();
        assert!(error.contains("prefix"), "{error}");
        let error = check_bpe_merges(&model(json!([1]), Value::Null)).unwrap_err();
        assert!(error.contains("merge 0"), "{error}");
        // Other models and files without a model are left to the tokenizers crate.
        assert!(check_bpe_merges(&json!({"model": {"type": "WordLevel", "vocab": {}}})).is_ok());
        assert!(check_bpe_merges(&json!({})).is_ok());
    }

    #[test]
    fn previews_cut_long_text_on_char_boundaries() {
        assert_eq!(preview("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(preview(&long), format!("{}...", "é".repeat(60)));
    }
}
