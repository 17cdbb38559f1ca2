//! The model being trained: policy weights, tokenizer, and how a problem's
//! prompt and worked solution become token ids.
//!
//! Prompt formats:
//! - **plain** (models trained from scratch): the prompt text, one newline,
//!   then the completion; a completion ends with the end-of-sequence token
//!   `<|im_end|>`. For `What is 12+34?` the model reads `What is 12+34?\n`
//!   and should write `<think>…</think><answer>46</answer><|im_end|>`.
//! - **chat** (pretrained models): the tokenizer's chat template renders an
//!   optional system message and the prompt as the user's message, with the
//!   assistant's generation prompt; the completion ends with the template's
//!   end-of-turn token.

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::Device;
use policy::{ChatMessage, GgufModel, HubOptions, ModelConfig, Policy, SamplingConfig, Tokenizer};
use serde::{Deserialize, Serialize};
use tasks::{Mixture, Problem, Split};

use crate::config::{Config, ModelSection, ModelSource, PromptFormat};
use crate::error::{Error, Result};
use crate::seeds::{seed_for, Purpose};

/// The output-format tags: single tokens in character-level tokenizers.
pub const FORMAT_TAGS: [&str; 4] = ["<think>", "</think>", "<answer>", "</answer>"];

/// Training problems sampled per mixture entry to collect a scratch
/// tokenizer's alphabet (on top of every held-out problem).
const ALPHABET_SAMPLES: u64 = 2000;

/// How prompts are rendered for this model, after `auto` is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "prompt_format", rename_all = "snake_case")]
pub enum Prompting {
    /// `{prompt}\n`.
    Plain,
    /// The tokenizer's chat template with an optional system message.
    Chat {
        /// System message; empty for none.
        system_prompt: String,
    },
}

/// A policy with its tokenizer and prompt format.
pub struct Model {
    /// Weights and transformer.
    pub policy: Policy,
    /// Text to ids and back.
    pub tokenizer: Tokenizer,
    /// How prompts are rendered.
    pub prompting: Prompting,
    /// Generation stops at any of these; SFT targets end with the first.
    eos_ids: Vec<u32>,
    /// Fills padded positions (never attended to or scored).
    pad_id: u32,
}

impl Model {
    /// The model a config asks for: random weights and a character-level
    /// tokenizer over the tasks' text, or a pretrained folder (local or from
    /// the hub) or GGUF file.
    pub fn from_config(config: &Config, mixture: &Mixture, device: &Device) -> Result<Model> {
        let m = &config.model;
        match m.source {
            ModelSource::Scratch => scratch(m, mixture, config.run.seed, device),
            ModelSource::Local => Self::load(Path::new(&m.path), prompting(m, true), device),
            ModelSource::Hub => {
                let mut options = HubOptions::from_env()?;
                options.revision = m.revision.clone();
                let dir = policy::hub_model_dir(&m.repo, &options)?;
                Self::load(&dir, prompting(m, true), device)
            }
            ModelSource::Gguf => Self::load_gguf(Path::new(&m.path), prompting(m, true), device),
        }
    }

    /// A Hugging Face model folder (config.json, safetensors, tokenizer.json)
    /// with the given prompt format.
    pub fn load(dir: &Path, prompting: Prompting, device: &Device) -> Result<Model> {
        let policy = Policy::load(dir, device)?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        Self::assemble(policy, tokenizer, prompting)
    }

    /// A GGUF file, dequantized to float32, with its tokenizer and chat
    /// template from the metadata.
    pub fn load_gguf(path: &Path, prompting: Prompting, device: &Device) -> Result<Model> {
        let gguf = GgufModel::open(path)?;
        let tokenizer = gguf.tokenizer()?;
        let policy = gguf.policy(device)?;
        Self::assemble(policy, tokenizer, prompting)
    }

    fn assemble(policy: Policy, tokenizer: Tokenizer, prompting: Prompting) -> Result<Model> {
        if matches!(prompting, Prompting::Chat { .. }) {
            tokenizer.chat_template()?;
        }
        let eos_ids = if tokenizer.eos_ids().is_empty() {
            policy.config.eos_token_ids.clone()
        } else {
            tokenizer.eos_ids().to_vec()
        };
        let Some(&eos) = eos_ids.first() else {
            return Err(Error::invalid(
                "model",
                "the tokenizer and config.json name no end-of-sequence token",
            ));
        };
        let pad_id = tokenizer.pad_id().unwrap_or(eos);
        Ok(Model {
            policy,
            tokenizer,
            prompting,
            eos_ids,
            pad_id,
        })
    }

    /// Writes the weights, config.json and tokenizer files into `dir`: a
    /// Hugging Face model folder.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.policy.save(dir)?;
        self.tokenizer.save(dir)?;
        Ok(())
    }

    /// Token ids of a prompt, ready for the completion to follow.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let text = match &self.prompting {
            Prompting::Plain => format!("{prompt}\n"),
            Prompting::Chat { system_prompt } => {
                let mut messages = Vec::with_capacity(2);
                if !system_prompt.is_empty() {
                    messages.push(ChatMessage::system(system_prompt.clone()));
                }
                messages.push(ChatMessage::user(prompt));
                self.tokenizer.apply_chat_template(&messages, true)?
            }
        };
        let ids = self.tokenizer.encode(&text, false)?;
        if ids.is_empty() {
            return Err(Error::invalid(
                "tasks.mixture",
                format!("prompt {prompt:?} encodes to no tokens"),
            ));
        }
        Ok(ids)
    }

    /// Token ids of a target completion (a worked solution), ending with
    /// the end-of-sequence token.
    pub fn completion_ids(&self, completion: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(completion, false)?;
        ids.push(self.eos_ids[0]);
        Ok(ids)
    }

    /// The text of generated ids, control tokens left out (format tags kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(self.tokenizer.decode(ids, true)?)
    }

    /// Sampling settings that stop at this model's end-of-sequence tokens.
    pub fn sampling(
        &self,
        temperature: f64,
        top_p: f64,
        top_k: usize,
        max_new_tokens: usize,
    ) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            stop_token_ids: self.eos_ids.clone(),
            stop_sequences: Vec::new(),
        }
    }

    /// The id that fills padded positions.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Checks that prompts of up to `prompt_len` tokens plus `new_tokens` fit
    /// the model's context; `key` names the setting to change.
    pub fn check_fits(&self, prompt_len: usize, new_tokens: usize, key: &str) -> Result<()> {
        let limit = self.policy.config.max_position_embeddings;
        if prompt_len + new_tokens > limit {
            return Err(Error::invalid(
                key,
                format!(
                    "a prompt of {prompt_len} tokens plus {new_tokens} new tokens exceeds the \
                     model's {limit} positions (max_position_embeddings)"
                ),
            ));
        }
        Ok(())
    }
}

/// The prompt format a model section asks for; `pretrained` decides `auto`.
fn prompting(m: &ModelSection, pretrained: bool) -> Prompting {
    let chat = match m.prompt_format {
        PromptFormat::Auto => pretrained,
        PromptFormat::Chat => true,
        PromptFormat::Plain => false,
    };
    if chat {
        Prompting::Chat {
            system_prompt: m.system_prompt.clone(),
        }
    } else {
        Prompting::Plain
    }
}

/// A randomly initialised model with a character-level tokenizer over the
/// characters the mixture's problems use.
fn scratch(m: &ModelSection, mixture: &Mixture, seed: u64, device: &Device) -> Result<Model> {
    let alphabet = task_alphabet(mixture, seed)?;
    let tokenizer = Tokenizer::char_level(&alphabet, &FORMAT_TAGS)?;
    let mut config = ModelConfig::new(
        m.architecture,
        tokenizer.vocab_size(),
        m.hidden_size,
        m.intermediate_size,
        m.num_hidden_layers,
        m.num_attention_heads,
        m.num_key_value_heads,
    );
    config.max_position_embeddings = m.max_position_embeddings;
    config.rope_theta = m.rope_theta;
    config.tie_word_embeddings = m.tie_word_embeddings;
    config.initializer_range = m.initializer_range;
    config.bos_token_id = tokenizer.bos_id();
    config.eos_token_ids = tokenizer.eos_ids().to_vec();
    config.pad_token_id = tokenizer.pad_id();
    let policy = Policy::random(&config, seed_for(seed, Purpose::Init, 0), device)?;
    Model::assemble(policy, tokenizer, prompting(m, false))
}

/// Every character of the mixture's prompts, answers and worked solutions
/// (format tags removed: they are tokens of their own), plus the newline of
/// the plain format, in code-point order. Collected from every held-out
/// problem and a fixed sample of training problems of each entry.
pub fn task_alphabet(mixture: &Mixture, seed: u64) -> Result<String> {
    let mut chars = BTreeSet::from(['\n']);
    let mut add = |p: &Problem| {
        let mut solution = p.solution.clone();
        for tag in FORMAT_TAGS {
            solution = solution.replace(tag, "");
        }
        chars.extend(
            p.prompt
                .chars()
                .chain(p.answer.chars())
                .chain(solution.chars()),
        );
    };
    for problem in heldout_problems(mixture, usize::MAX)? {
        add(&problem);
    }
    let data_seed = seed_for(seed, Purpose::SftData, 0);
    let draws = ALPHABET_SAMPLES * mixture.entries().len() as u64;
    for index in 0..draws {
        add(&mixture.draw(Split::Train, data_seed, index)?);
    }
    Ok(chars.into_iter().collect())
}

/// The first `per_entry` problems of each mixture entry's held-out set (a
/// family's canonical held-out set, or a user set's held-out part), in
/// entry order.
pub fn heldout_problems(mixture: &Mixture, per_entry: usize) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for entry in mixture.entries() {
        match &entry.source {
            tasks::Source::Family { task, level } => {
                let set = tasks::heldout(task, *level)?;
                problems.extend(set.iter().take(per_entry).cloned());
            }
            tasks::Source::Set(set) => {
                let n = set.len(Split::Heldout).min(per_entry);
                problems.extend((0..n).filter_map(|i| set.get(Split::Heldout, i).cloned()));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasks::MixtureEntry;

    fn addition() -> Mixture {
        Mixture::new(vec![MixtureEntry::family("add", 2, 1.0)]).unwrap()
    }

    #[test]
    fn alphabet_covers_the_problems_and_leaves_out_the_tags() {
        let mix = addition();
        let alphabet = task_alphabet(&mix, 0).unwrap();
        for c in "0123456789+=What is?\n".chars() {
            assert!(alphabet.contains(c), "{c:?} missing from {alphabet:?}");
        }
        assert!(!alphabet.contains('<'), "{alphabet:?}");
        // Fresh problems never need a character outside it.
        for i in 0..200 {
            let p = mix.draw(Split::Train, 99, i).unwrap();
            assert!(p.prompt.chars().all(|c| alphabet.contains(c)));
        }
    }

    #[test]
    fn plain_prompts_and_targets_round_trip_through_a_scratch_model() {
        let mix = addition();
        let mut config = Config::default();
        config.model.hidden_size = 16;
        config.model.intermediate_size = 32;
        config.model.num_hidden_layers = 1;
        config.model.num_attention_heads = 2;
        config.model.num_key_value_heads = 1;
        let model = Model::from_config(&config, &mix, &Device::Cpu).unwrap();
        assert_eq!(model.prompting, Prompting::Plain);
        let p = mix.draw(Split::Train, 0, 0).unwrap();
        let prompt = model.prompt_ids(&p.prompt).unwrap();
        assert_eq!(model.decode(&prompt).unwrap(), format!("{}\n", p.prompt));
        let target = model.completion_ids(&p.solution).unwrap();
        assert_eq!(model.decode(&target).unwrap(), p.solution);
        // Tags are one token each; the target ends with the eos id.
        let answer_id = model.tokenizer.token_to_id("<answer>").unwrap();
        assert_eq!(target.iter().filter(|&&t| t == answer_id).count(), 1);
        assert_eq!(
            target.last(),
            model.sampling(1.0, 1.0, 0, 8).stop_token_ids.first()
        );
        assert!(model
            .check_fits(100, 400, "grpo.max_completion_length")
            .is_ok());
        let err = model
            .check_fits(100, 500, "grpo.max_completion_length")
            .unwrap_err();
        assert!(err.to_string().contains("512 positions"), "{err}");
    }

    #[test]
    fn heldout_problems_take_the_first_of_each_entry() {
        let mix = Mixture::new(vec![
            MixtureEntry::family("add", 2, 1.0),
            MixtureEntry::family("mul", 2, 1.0),
        ])
        .unwrap();
        let problems = heldout_problems(&mix, 3).unwrap();
        let ids: Vec<&str> = problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "add/2/heldout/0",
                "add/2/heldout/1",
                "add/2/heldout/2",
                "mul/2/heldout/0",
                "mul/2/heldout/1",
                "mul/2/heldout/2"
            ]
        );
    }
}
