//! Opening a saved model to evaluate it or read what it writes: a run
//! checkpoint (`OUT_DIR/NAME/checkpoints/step-N`), any Hugging Face model
//! folder, or a GGUF file.
//!
//! A run checkpoint is read as its run saw it: the prompt format recorded in
//! trainer_state.json, the tasks and evaluation settings of the run's
//! config.toml (two folders up), and the random stream the run's evaluation
//! at that step drew from, so evaluating it repeats the evaluation logged
//! when it was written. A plain model folder is read as training reads one
//! with `source = "local"` and `prompt_format = "auto"`: the chat template
//! when its tokenizer has one, else the plain format. A GGUF file is read
//! the same way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use policy::{
    Generation, GenerationCache, Precision, SamplingConfig, WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tasks::{Mixture, MixtureEntry, Problem, Source, Verdict};

use crate::checkpoint::{TrainerState, CHECKPOINTS_DIR, OPTIMIZER_FILE, STATE_FILE};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::eval::{evaluate, evaluate_budgets, BudgetRecord, EvalRecord, EvalSettings};
use crate::model::{Model, Prompting};
use crate::progress::Phase;
use crate::run::CONFIG_FILE;
use crate::seeds::{rng_for, Purpose};

/// A model folder opened for evaluation or sampling.
pub struct Checkpoint {
    /// The folder (or GGUF file) as given.
    pub dir: PathBuf,
    /// Weights, tokenizer and prompt format.
    pub model: Model,
    /// trainer_state.json of a run checkpoint; `None` for a plain model folder.
    pub state: Option<TrainerState>,
    /// The run's config.toml, when the folder is a run checkpoint whose run
    /// folder still holds it.
    pub run_config: Option<Config>,
}

impl Checkpoint {
    /// Opens `dir` on `device` (`cpu`, `cuda`, `cuda:N`); without one, on
    /// the run's device, else the CPU. Missing folders and files, unreadable
    /// trainer state or run config and unusable model files are usage
    /// errors naming the file.
    pub fn open(dir: &Path, device: Option<&str>) -> Result<Checkpoint> {
        if policy::is_gguf_file(dir) {
            let device = parse_device(device.unwrap_or("cpu"))?;
            let model = Model::load_gguf(dir, Prompting::Plain, &device).map_err(as_input)?;
            return Ok(Checkpoint {
                dir: dir.to_path_buf(),
                model: chat_if_templated(model),
                state: None,
                run_config: None,
            });
        }
        check_model_folder(dir)?;
        let state_path = dir.join(STATE_FILE);
        let state = if state_path.is_file() {
            Some(TrainerState::read(dir).map_err(as_input)?)
        } else {
            None
        };
        let run_config = match &state {
            Some(_) => read_run_config(dir)?,
            None => None,
        };
        let device_name = device
            .map(str::to_string)
            .or_else(|| run_config.as_ref().map(|c| c.run.device.to_string()))
            .unwrap_or_else(|| "cpu".to_string());
        let device = parse_device(&device_name)?;
        let model = match &state {
            Some(state) => Model::load(dir, state.prompting.clone(), &device),
            None => Model::load(dir, Prompting::Plain, &device).map(chat_if_templated),
        }
        .map_err(as_input)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            model,
            state,
            run_config,
        })
    }

    /// Where a run checkpoint stands: its phase, the steps done in that
    /// phase and the optimizer steps over both phases (what eval.jsonl
    /// records); `None` for a plain model folder.
    pub fn position(&self) -> Option<(Phase, u64, u64)> {
        self.state.as_ref().map(|s| {
            let done = match s.phase {
                Phase::Sft => s.sft.steps_done,
                Phase::Grpo => s.grpo.steps_done,
            };
            (s.phase, done, s.global_step)
        })
    }

    /// The run's seed (0 for a plain model folder).
    pub fn seed(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.seed)
    }

    /// The run's config, or every default when there is none: where the
    /// settings a caller leaves unset come from.
    pub fn config(&self) -> Config {
        self.run_config.clone().unwrap_or_default()
    }

    /// The settings of the run's held-out evaluations (the defaults for a
    /// plain model folder).
    pub fn eval_settings(&self) -> EvalSettings {
        let config = self.config();
        let e = &config.eval;
        EvalSettings {
            samples: e.samples,
            k: e.k,
            temperature: e.temperature,
            max_new_tokens: config.eval_max_new_tokens(),
            batch_size: e.batch_size,
            decode_precision: config.run.decode_precision,
        }
    }

    /// The run's task mixture; `None` without a run config.
    pub fn run_mixture(&self) -> Result<Option<Mixture>> {
        let Some(config) = &self.run_config else {
            return Ok(None);
        };
        Mixture::from_specs(&config.tasks.mixture, Path::new("."))
            .map(Some)
            .map_err(|e| Error::invalid("tasks.mixture", e.to_string()))
    }

    /// What to evaluate: every `(task, level)` of `tasks` (families, in the
    /// order given) and `levels`. No tasks means the run's tasks; no levels
    /// means the levels the run used for each task, else every level of the
    /// family. With neither, the run's mixture as it is (problem sets
    /// included).
    pub fn selection(&self, tasks: &[String], levels: Option<&[u32]>) -> Result<Mixture> {
        let run = self.run_mixture()?;
        let run_levels = |task: &str| -> Vec<u32> {
            run.iter()
                .flat_map(|m| m.entries())
                .filter_map(|e| match &e.source {
                    Source::Family { task: t, level } if t == task => Some(*level),
                    _ => None,
                })
                .collect()
        };
        let names: Vec<String> = if tasks.is_empty() {
            let Some(run) = &run else {
                return Err(Error::invalid(
                    "tasks",
                    format!(
                        "{} is not a run checkpoint with its config.toml: name the tasks to evaluate",
                        self.dir.display()
                    ),
                ));
            };
            if levels.is_none() {
                return Ok(run.clone());
            }
            run.entries()
                .iter()
                .filter_map(|e| match &e.source {
                    Source::Family { task, .. } => Some(task.clone()),
                    Source::Set(_) => None,
                })
                .collect()
        } else {
            tasks.to_vec()
        };
        let mut pairs: Vec<(String, u32)> = Vec::new();
        for name in &names {
            let family = tasks::find(name)?;
            let chosen = match levels {
                Some(levels) => levels.to_vec(),
                None => match run_levels(name) {
                    used if !used.is_empty() => used,
                    _ => (1..=family.max_level()).collect(),
                },
            };
            for level in chosen {
                tasks::check_level(family, level)?;
                let pair = (name.clone(), level);
                if !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
        }
        let entries = pairs
            .iter()
            .map(|(task, level)| MixtureEntry::family(task, *level, 1.0))
            .collect();
        Ok(Mixture::new(entries)?)
    }

    /// Evaluates on `problems` with the trainer's held-out evaluation. Pass@k
    /// samples come from the stream the run's evaluation at this step drew
    /// from, seeded by `seed` instead of the run's seed when given.
    pub fn evaluate(
        &self,
        problems: &[Problem],
        settings: &EvalSettings,
        seed: Option<u64>,
    ) -> Result<EvalRecord> {
        let (phase, step, global_step) = self.position().unwrap_or((Phase::Sft, 0, 0));
        let mut rng = rng_for(
            seed.unwrap_or_else(|| self.seed()),
            Purpose::EvalSampling,
            global_step,
        );
        evaluate(
            &self.model,
            problems,
            settings,
            &mut rng,
            phase,
            step,
            global_step,
        )
    }

    /// [`evaluate_budgets`] on `problems`, sampling from the same stream as
    /// [`Checkpoint::evaluate`].
    pub fn evaluate_budgets(
        &self,
        problems: &[Problem],
        budgets: &[usize],
        settings: &EvalSettings,
        seed: Option<u64>,
    ) -> Result<BudgetRecord> {
        let global_step = self.position().map_or(0, |(_, _, g)| g);
        let mut rng = rng_for(
            seed.unwrap_or_else(|| self.seed()),
            Purpose::EvalSampling,
            global_step,
        );
        evaluate_budgets(&self.model, problems, budgets, settings, &mut rng)
    }

    /// The run folder of a run checkpoint whose run folder still holds its
    /// config.toml (`OUT_DIR/NAME`); `None` otherwise.
    pub fn run_dir(&self) -> Option<PathBuf> {
        self.run_config.as_ref()?;
        let full = std::fs::canonicalize(&self.dir).ok()?;
        Some(full.parent()?.parent()?.to_path_buf())
    }

    /// The characters of `text` the tokenizer drops: a model trained from
    /// scratch reads only the characters of its run's tasks, so a prompt of
    /// another task can reach it garbled.
    pub fn dropped_chars(&self, text: &str) -> Result<BTreeSet<char>> {
        let tokenizer = &self.model.tokenizer;
        let kept: BTreeSet<char> = tokenizer
            .decode(&tokenizer.encode(text, false)?, false)?
            .chars()
            .collect();
        Ok(text.chars().filter(|c| !kept.contains(c)).collect())
    }

    /// Samples `per_prompt` completions of each prompt, drawing from a
    /// generator seeded by `seed`. A prompt is formatted as training formats
    /// it, or with `raw` encoded exactly as given (no chat template, no
    /// newline after it). Completions of problems get their verdicts. The
    /// CPU decoder multiplies in `precision`.
    pub fn sample(
        &self,
        prompts: &[SamplePrompt],
        per_prompt: usize,
        sampling: &SamplingConfig,
        raw: bool,
        (seed, precision): (u64, Precision),
    ) -> Result<Vec<Sample>> {
        let model = &self.model;
        let ids = prompts
            .iter()
            .map(|p| {
                let text = p.text();
                let ids = if raw {
                    model.tokenizer.encode(text, false)?
                } else {
                    model.prompt_ids(text)?
                };
                if ids.is_empty() {
                    return Err(Error::invalid(
                        "prompt",
                        format!("{text:?} encodes to no tokens"),
                    ));
                }
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        model.check_fits(longest, sampling.max_new_tokens, "max_new_tokens")?;
        let mut rng = StdRng::seed_from_u64(seed);
        let generations = GenerationCache::with_precision(precision).generate(
            &model.policy.model,
            &ids,
            per_prompt,
            sampling,
            &mut rng,
        )?;
        generations
            .into_iter()
            .map(|generation| {
                let prompt = &prompts[generation.prompt_index];
                let completion = model.decode(&generation.tokens)?;
                let verdict = match prompt {
                    SamplePrompt::Problem(p) => Some(p.verify(&completion)),
                    SamplePrompt::Text(_) => None,
                };
                Ok(Sample {
                    prompt: prompt.clone(),
                    prompt_ids: ids[generation.prompt_index].clone(),
                    completion,
                    generation,
                    verdict,
                })
            })
            .collect()
    }
}

/// What [`Checkpoint::sample`] prompts with.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplePrompt {
    /// A problem: its completions are verified.
    Problem(Problem),
    /// Text of the caller's own.
    Text(String),
}

impl SamplePrompt {
    /// The prompt text.
    pub fn text(&self) -> &str {
        match self {
            SamplePrompt::Problem(p) => &p.prompt,
            SamplePrompt::Text(t) => t,
        }
    }
}

/// One completion from [`Checkpoint::sample`].
#[derive(Debug, Clone)]
pub struct Sample {
    /// What was asked.
    pub prompt: SamplePrompt,
    /// The ids the model read: the prompt as formatted (chat template or
    /// plain) and encoded.
    pub prompt_ids: Vec<u32>,
    /// The completion's text, control tokens left out: what a verifier reads.
    pub completion: String,
    /// The generated ids with their log-probabilities
    /// (`raw_logprobs` are the untempered ones).
    pub generation: Generation,
    /// The verifier's judgement, for a problem.
    pub verdict: Option<Verdict>,
}

fn parse_device(name: &str) -> Result<candle_core::Device> {
    policy::parse_device(name).map_err(|e| Error::invalid("device", e.to_string()))
}

/// A model without a run's recorded format: the chat template when its
/// tokenizer has one, with no system message (the template's default
/// applies), as training with `prompt_format = "auto"` would.
fn chat_if_templated(mut model: Model) -> Model {
    if model.tokenizer.chat_template().is_ok() {
        model.prompting = Prompting::Chat {
            system_prompt: String::new(),
        };
    }
    model
}

/// A model folder needs config.json, tokenizer.json and safetensors weights.
fn check_model_folder(dir: &Path) -> Result<()> {
    let bad = |message: String| Error::invalid("checkpoint", message);
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a folder (nor a GGUF file)"
        } else if dir.extension().is_some_and(|e| e == policy::GGUF_EXTENSION) {
            "no such file"
        } else {
            "no such folder"
        };
        return Err(bad(format!("{}: {what}", dir.display())));
    }
    for file in [policy::CONFIG_FILE, "tokenizer.json"] {
        if !dir.join(file).is_file() {
            return Err(bad(format!("{} has no {file}", dir.display())));
        }
    }
    let has_weights = dir.join(WEIGHTS_FILE).is_file()
        || dir.join(WEIGHTS_INDEX_FILE).is_file()
        || std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|entry| entry.ok())
            .any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.ends_with(".safetensors") && name != OPTIMIZER_FILE
            });
    if !has_weights {
        return Err(bad(format!(
            "{} has no weights ({WEIGHTS_FILE} or other *.safetensors)",
            dir.display()
        )));
    }
    Ok(())
}

/// The run's config.toml of a checkpoint at OUT_DIR/NAME/checkpoints/step-N,
/// read as written (not validated again: the run's model source may be gone
/// by now, and only its tasks and evaluation settings are needed).
fn read_run_config(dir: &Path) -> Result<Option<Config>> {
    let full = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let Some(checkpoints) = full.parent() else {
        return Ok(None);
    };
    if checkpoints.file_name() != Some(CHECKPOINTS_DIR.as_ref()) {
        return Ok(None);
    }
    let Some(run_dir) = checkpoints.parent() else {
        return Ok(None);
    };
    let path = run_dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let config = toml::from_str(&text).map_err(|e| {
        Error::invalid(
            "checkpoint",
            format!("{}: {}", path.display(), e.message().trim()),
        )
    })?;
    Ok(Some(config))
}

/// Errors caused by the files of the folder being read are the caller's
/// input; failures of the tensor library are not.
fn as_input(error: Error) -> Error {
    match error {
        Error::Policy(policy::Error::Candle(_)) | Error::Candle(_) => error,
        Error::Policy(_) | Error::BadFile { .. } | Error::Io { .. } => {
            Error::invalid("checkpoint", error.to_string())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A scratch model saved as a run checkpoint of a run with `mixture`.
    fn run_checkpoint(root: &Path, mixture: &str) -> PathBuf {
        let run_dir = root.join("run");
        let text = format!(
            "[run]\nseed = 4\n[model]\nhidden_size = 16\nintermediate_size = 32\n\
             num_hidden_layers = 1\nnum_attention_heads = 2\nnum_key_value_heads = 2\n\
             [tasks]\nmixture = {mixture}\n[eval]\nproblems = 3\nsamples = 2\nk = 2\n"
        );
        let config = Config::from_toml(&text, "run.toml", "run", &[]).unwrap();
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join(CONFIG_FILE), config.to_toml()).unwrap();
        let mixture = Mixture::from_specs(&config.tasks.mixture, Path::new(".")).unwrap();
        let model = Model::from_config(&config, &mixture, &Device::Cpu).unwrap();
        let optimizer = config.optimizer.adamw().init(&model.policy.varmap).unwrap();
        let mut state = TrainerState::new(4, model.prompting.clone());
        state.global_step = 7;
        state.phase = Phase::Grpo;
        state.grpo.steps_done = 2;
        crate::checkpoint::write_checkpoint(&run_dir, &state, &model, &optimizer).unwrap()
    }

    #[test]
    fn a_run_checkpoint_brings_its_run_settings() {
        let root = tempfile::tempdir().unwrap();
        let dir = run_checkpoint(
            root.path(),
            r#"[{ task = "add", level = 2 }, { task = "mul", level = 1 }]"#,
        );
        let ckpt = Checkpoint::open(&dir, None).unwrap();
        assert_eq!(ckpt.model.prompting, Prompting::Plain);
        assert_eq!(ckpt.position(), Some((Phase::Grpo, 2, 7)));
        assert_eq!(ckpt.seed(), 4);
        let settings = ckpt.eval_settings();
        assert_eq!((settings.samples, settings.k), (2, 2));

        let ids =
            |m: &Mixture| -> Vec<String> { heldout(m, 1).iter().map(|p| p.id.clone()).collect() };
        let all = ckpt.selection(&[], None).unwrap();
        assert_eq!(ids(&all), ["add/2/heldout/0", "mul/1/heldout/0"]);
        let add = ckpt.selection(&["add".into()], None).unwrap();
        assert_eq!(ids(&add), ["add/2/heldout/0"]);
        let levels = ckpt.selection(&[], Some(&[3, 1, 3])).unwrap();
        assert_eq!(
            ids(&levels),
            [
                "add/3/heldout/0",
                "add/1/heldout/0",
                "mul/3/heldout/0",
                "mul/1/heldout/0"
            ]
        );
        // A family the run did not train: every level.
        let sub = ckpt.selection(&["sub".into()], None).unwrap();
        let max = tasks::find("sub").unwrap().max_level() as usize;
        assert_eq!(sub.entries().len(), max);

        // The scratch tokenizer knows + but not ^.
        assert!(ckpt.dropped_chars("What is 2*3+1?").unwrap().is_empty());
        let dropped = ckpt.dropped_chars("2^3 ^ 1").unwrap();
        assert_eq!(dropped.into_iter().collect::<String>(), "^");

        let unknown = ckpt.selection(&["nope".into()], None).unwrap_err();
        assert!(
            unknown.is_usage() && unknown.to_string().contains("nope"),
            "{unknown}"
        );
        let level = ckpt.selection(&["add".into()], Some(&[99])).unwrap_err();
        assert!(
            level.is_usage() && level.to_string().contains("99"),
            "{level}"
        );
    }

    #[test]
    fn a_plain_folder_uses_its_chat_template_and_needs_tasks() {
        let root = tempfile::tempdir().unwrap();
        let dir = run_checkpoint(root.path(), r#"[{ task = "add", level = 1 }]"#);
        let copy = root.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != STATE_FILE {
                std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
            }
        }
        let ckpt = Checkpoint::open(&copy, None).unwrap();
        assert!(matches!(ckpt.model.prompting, Prompting::Chat { .. }));
        assert_eq!(ckpt.position(), None);
        assert!(ckpt.selection(&[], None).unwrap_err().is_usage());
        assert_eq!(ckpt.eval_settings().k, Config::default().eval.k);
    }

    #[test]
    fn folders_without_a_model_are_usage_errors_naming_them() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        let err = Checkpoint::open(&missing, None).err().unwrap();
        assert!(
            err.is_usage() && err.to_string().contains("no such folder"),
            "{err}"
        );
        let dir = run_checkpoint(root.path(), r#"[{ task = "add", level = 1 }]"#);
        std::fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
        let err = Checkpoint::open(&dir, None).err().unwrap();
        assert!(
            err.is_usage() && err.to_string().contains("no weights"),
            "{err}"
        );
        std::fs::write(dir.join(WEIGHTS_FILE), b"not safetensors").unwrap();
        let err = Checkpoint::open(&dir, None).err().unwrap();
        assert!(err.is_usage(), "{err}");
    }

    fn heldout(mixture: &Mixture, n: usize) -> Vec<Problem> {
        crate::model::heldout_problems(mixture, n).unwrap()
    }
}
