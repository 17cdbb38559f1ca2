//! Checks that a parsed config makes sense, once, before any work starts.
//! Every error names its key (`grpo.group_size`); the loader adds the line.

use std::path::Path;

use super::{Config, GrpoSection, ModelSection, ModelSource, OptimizerSection, SftSection};
use crate::advantages::{AdvantageEstimator, ScaleRewards};
use crate::error::{Error, Result};

/// Every rule, section by section.
pub(crate) fn validate(config: &Config) -> Result<()> {
    run(config)?;
    model(&config.model)?;
    tasks(config)?;
    optimizer(&config.optimizer)?;
    sft(&config.sft)?;
    grpo(&config.grpo)?;
    curriculum(config)?;
    eval(config)?;
    Ok(())
}

fn run(config: &Config) -> Result<()> {
    let name = &config.run.name;
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(Error::invalid(
            "run.name",
            format!("'{name}' is not a folder name (no slashes, not empty)"),
        ));
    }
    Ok(())
}

fn model(m: &ModelSection) -> Result<()> {
    match m.source {
        ModelSource::Scratch => scratch_model(m),
        ModelSource::Local => local_model(Path::new(&m.path)),
        ModelSource::Hub if m.repo.trim().is_empty() => Err(Error::invalid(
            "model.repo",
            "source = \"hub\" needs a repo id such as \"Qwen/Qwen2.5-0.5B-Instruct\"",
        )),
        ModelSource::Hub => Ok(()),
        ModelSource::Gguf => gguf_model(Path::new(&m.path)),
    }
}

/// A GGUF source needs an existing file (its contents are checked when it loads).
fn gguf_model(path: &Path) -> Result<()> {
    let key = "model.path";
    if path.as_os_str().is_empty() {
        return Err(Error::invalid(
            key,
            "source = \"gguf\" needs the .gguf file's path",
        ));
    }
    if !path.is_file() {
        return Err(Error::invalid(
            key,
            format!("{} is not a file", path.display()),
        ));
    }
    Ok(())
}

fn scratch_model(m: &ModelSection) -> Result<()> {
    for (key, value) in [
        ("model.hidden_size", m.hidden_size),
        ("model.intermediate_size", m.intermediate_size),
        ("model.num_hidden_layers", m.num_hidden_layers),
        ("model.num_attention_heads", m.num_attention_heads),
        ("model.num_key_value_heads", m.num_key_value_heads),
        ("model.max_position_embeddings", m.max_position_embeddings),
    ] {
        at_least(key, value, 1)?;
    }
    let heads = m.num_attention_heads;
    if !m.hidden_size.is_multiple_of(heads) || !(m.hidden_size / heads).is_multiple_of(2) {
        return Err(Error::invalid(
            "model.num_attention_heads",
            format!(
                "hidden_size {} must split into {heads} heads of an even width",
                m.hidden_size
            ),
        ));
    }
    if !heads.is_multiple_of(m.num_key_value_heads) {
        return Err(Error::invalid(
            "model.num_key_value_heads",
            format!(
                "{} must divide num_attention_heads {heads}",
                m.num_key_value_heads
            ),
        ));
    }
    finite_positive("model.rope_theta", m.rope_theta)?;
    finite_positive("model.initializer_range", m.initializer_range)
}

/// A local model folder needs config.json, safetensors weights and
/// tokenizer.json.
fn local_model(dir: &Path) -> Result<()> {
    let key = "model.path";
    if dir.as_os_str().is_empty() {
        return Err(Error::invalid(
            key,
            "source = \"local\" needs the model folder's path",
        ));
    }
    if !dir.is_dir() {
        return Err(Error::invalid(
            key,
            format!("{} is not a folder", dir.display()),
        ));
    }
    for file in ["config.json", "tokenizer.json"] {
        if !dir.join(file).is_file() {
            return Err(Error::invalid(
                key,
                format!("{} has no {file}", dir.display()),
            ));
        }
    }
    let has_weights = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok())
        .any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .ends_with(".safetensors")
        });
    if !has_weights {
        return Err(Error::invalid(
            key,
            format!("{} has no *.safetensors weights", dir.display()),
        ));
    }
    Ok(())
}

fn tasks(config: &Config) -> Result<()> {
    let key = "tasks.mixture";
    if config.tasks.mixture.is_empty() {
        return Err(Error::invalid(
            key,
            "no problem sources: add e.g. mixture = [{ task = \"add\", level = 3 }]",
        ));
    }
    tasks::Mixture::from_specs(&config.tasks.mixture, Path::new("."))
        .map_err(|e| Error::invalid(key, e.to_string()))?;
    if !config.sft.mixture.is_empty() {
        tasks::Mixture::from_specs(&config.sft.mixture, Path::new("."))
            .map_err(|e| Error::invalid("sft.mixture", e.to_string()))?;
    }
    Ok(())
}

fn sft(s: &SftSection) -> Result<()> {
    at_least("sft.batch_size", s.batch_size, 1)?;
    micro_batches("sft.micro_batches", s.micro_batches, s.batch_size)?;
    schedule("sft", s.lr, s.min_lr_ratio)?;
    unit_interval("sft.stop_at_pass_at_1", s.stop_at_pass_at_1)?;
    if s.stop_at_pass_at_1 > 0.0 && s.check_every == 0 {
        return Err(Error::invalid(
            "sft.check_every",
            "must be at least 1 when stop_at_pass_at_1 is set",
        ));
    }
    Ok(())
}

fn grpo(g: &GrpoSection) -> Result<()> {
    at_least("grpo.group_size", g.group_size, 1)?;
    let std_scaled =
        g.advantage == AdvantageEstimator::Grpo && g.scale_rewards == ScaleRewards::Group;
    if g.group_size == 1 && std_scaled {
        return Err(Error::invalid(
            "grpo.group_size",
            "a group of 1 has no std to scale by: use group_size >= 2 or scale_rewards = \"none\"",
        ));
    }
    if g.group_size == 1 && g.advantage == AdvantageEstimator::Rloo {
        return Err(Error::invalid(
            "grpo.group_size",
            "rloo needs group_size >= 2: its baseline is the mean of the other completions of a prompt",
        ));
    }
    at_least("grpo.batch_size", g.batch_size, 1)?;
    if !g.batch_size.is_multiple_of(g.group_size) {
        return Err(Error::invalid(
            "grpo.batch_size",
            format!(
                "{} completions do not split into groups of group_size = {}",
                g.batch_size, g.group_size
            ),
        ));
    }
    micro_batches("grpo.micro_batches", g.micro_batches, g.batch_size)?;
    finite_positive("grpo.temperature", g.temperature)?;
    if !(g.top_p > 0.0 && g.top_p <= 1.0) {
        return Err(Error::invalid(
            "grpo.top_p",
            format!("must be in (0, 1], got {}", g.top_p),
        ));
    }
    at_least("grpo.max_completion_length", g.max_completion_length, 1)?;
    at_least("grpo.num_iterations", g.num_iterations, 1)?;
    schedule("grpo", g.lr, g.min_lr_ratio)?;
    g.loss().validate()?;
    if g.overlong_buffer >= g.max_completion_length && g.overlong_buffer > 0 {
        return Err(Error::invalid(
            "grpo.overlong_buffer",
            format!(
                "{} must be below max_completion_length {}",
                g.overlong_buffer, g.max_completion_length
            ),
        ));
    }
    non_negative("grpo.overlong_penalty", g.overlong_penalty)?;
    non_negative("grpo.format_weight", g.format_weight)
}

fn curriculum(config: &Config) -> Result<()> {
    let c = &config.curriculum;
    if !c.enabled {
        return Ok(());
    }
    at_least("curriculum.window", c.window, 1)?;
    unit_interval("curriculum.raise_at", c.raise_at)?;
    unit_interval("curriculum.lower_at", c.lower_at)?;
    if c.lower_at >= c.raise_at {
        return Err(Error::invalid(
            "curriculum.lower_at",
            format!("{} must be below raise_at {}", c.lower_at, c.raise_at),
        ));
    }
    at_least("curriculum.min_level", c.min_level as usize, 1)?;
    if c.max_level != 0 && c.max_level < c.min_level {
        return Err(Error::invalid(
            "curriculum.max_level",
            format!("{} is below min_level {}", c.max_level, c.min_level),
        ));
    }
    let mixture = tasks::Mixture::from_specs(&config.tasks.mixture, Path::new("."))
        .map_err(|e| Error::invalid("tasks.mixture", e.to_string()))?;
    crate::curriculum::check(c, &mixture)
}

fn eval(config: &Config) -> Result<()> {
    let e = &config.eval;
    at_least("eval.problems", e.problems, 1)?;
    at_least("eval.batch_size", e.batch_size, 1)?;
    if e.samples > 0 {
        if e.k == 0 || e.k > e.samples {
            return Err(Error::invalid(
                "eval.k",
                format!(
                    "must be between 1 and eval.samples = {}, got {}",
                    e.samples, e.k
                ),
            ));
        }
        finite_positive("eval.temperature", e.temperature)?;
    }
    Ok(())
}

fn optimizer(o: &OptimizerSection) -> Result<()> {
    non_negative("optimizer.weight_decay", o.weight_decay)?;
    for (key, beta) in [
        ("optimizer.adam_beta1", o.adam_beta1),
        ("optimizer.adam_beta2", o.adam_beta2),
    ] {
        if !(0.0..1.0).contains(&beta) {
            return Err(Error::invalid(
                key,
                format!("must be in [0, 1), got {beta}"),
            ));
        }
    }
    finite_positive("optimizer.adam_epsilon", o.adam_epsilon)?;
    non_negative("optimizer.max_grad_norm", o.max_grad_norm)
}

/// A phase's learning-rate schedule.
fn schedule(section: &str, lr: f64, min_lr_ratio: f64) -> Result<()> {
    finite_positive(&format!("{section}.lr"), lr)?;
    unit_interval(&format!("{section}.min_lr_ratio"), min_lr_ratio)
}

fn micro_batches(key: &str, micro: usize, batch: usize) -> Result<()> {
    if micro == 0 || micro > batch {
        return Err(Error::invalid(
            key,
            format!("must be between 1 and the batch size {batch}, got {micro}"),
        ));
    }
    Ok(())
}

fn at_least(key: &str, value: usize, min: usize) -> Result<()> {
    if value < min {
        return Err(Error::invalid(
            key,
            format!("must be at least {min}, got {value}"),
        ));
    }
    Ok(())
}

fn finite_positive(key: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::invalid(
            key,
            format!("must be a finite number > 0, got {value}"),
        ));
    }
    Ok(())
}

fn non_negative(key: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(Error::invalid(
            key,
            format!("must be a finite number >= 0, got {value}"),
        ));
    }
    Ok(())
}

fn unit_interval(key: &str, value: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        return Err(Error::invalid(
            key,
            format!("must be in [0, 1], got {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        let mut c = Config::default();
        c.run.name = "t".into();
        c.tasks.mixture = vec![tasks::EntrySpec {
            task: Some("add".into()),
            level: Some(2),
            jsonl: None,
            weight: 1.0,
        }];
        c
    }

    fn error_of(edit: impl FnOnce(&mut Config)) -> String {
        let mut c = base();
        edit(&mut c);
        validate(&c).unwrap_err().to_string()
    }

    #[test]
    fn defaults_with_a_task_are_valid() {
        validate(&base()).unwrap();
    }

    #[test]
    fn each_rule_names_its_key() {
        type Edit = Box<dyn FnOnce(&mut Config)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("run.name", Box::new(|c| c.run.name = "a/b".into())),
            (
                "model.num_attention_heads",
                Box::new(|c| c.model.num_attention_heads = 3),
            ),
            (
                "model.num_key_value_heads",
                Box::new(|c| c.model.num_key_value_heads = 3),
            ),
            (
                "model.repo",
                Box::new(|c| c.model.source = ModelSource::Hub),
            ),
            ("tasks.mixture", Box::new(|c| c.tasks.mixture.clear())),
            (
                "sft.mixture",
                Box::new(|c| {
                    c.sft.mixture = vec![tasks::EntrySpec {
                        task: Some("nope".into()),
                        level: Some(1),
                        jsonl: None,
                        weight: 1.0,
                    }]
                }),
            ),
            ("sft.micro_batches", Box::new(|c| c.sft.micro_batches = 65)),
            (
                "sft.check_every",
                Box::new(|c| {
                    c.sft.stop_at_pass_at_1 = 0.4;
                    c.sft.check_every = 0;
                }),
            ),
            ("grpo.temperature", Box::new(|c| c.grpo.temperature = 0.0)),
            ("grpo.top_p", Box::new(|c| c.grpo.top_p = 0.0)),
            ("grpo.epsilon_low", Box::new(|c| c.grpo.epsilon_low = 1.5)),
            ("grpo.lr", Box::new(|c| c.grpo.lr = f64::NAN)),
            (
                "optimizer.adam_beta2",
                Box::new(|c| c.optimizer.adam_beta2 = 1.0),
            ),
            (
                "optimizer.max_grad_norm",
                Box::new(|c| c.optimizer.max_grad_norm = -1.0),
            ),
            ("grpo.delta", Box::new(|c| c.grpo.delta = Some(1.1))),
            (
                "grpo.epsilon_high",
                Box::new(|c| c.grpo.loss_type = crate::loss::LossType::Cispo),
            ),
            (
                "grpo.top_entropy_quantile",
                Box::new(|c| c.grpo.top_entropy_quantile = 0.0),
            ),
            (
                "grpo.off_policy_mask_threshold",
                Box::new(|c| c.grpo.off_policy_mask_threshold = Some(-0.5)),
            ),
            (
                "grpo.sampler_correction_max",
                Box::new(|c| c.grpo.sampler_correction_max = 0.0),
            ),
            (
                "grpo.sampler_correction_min",
                Box::new(|c| c.grpo.sampler_correction_min = Some(5.0)),
            ),
            (
                "grpo.sapo_temperature_neg",
                Box::new(|c| c.grpo.sapo_temperature_neg = 0.0),
            ),
            (
                "grpo.overlong_buffer",
                Box::new(|c| c.grpo.overlong_buffer = 128),
            ),
            ("eval.k", Box::new(|c| c.eval.k = 9)),
            (
                "curriculum.lower_at",
                Box::new(|c| {
                    c.curriculum.enabled = true;
                    c.curriculum.lower_at = 0.8;
                }),
            ),
            (
                "curriculum.max_level",
                Box::new(|c| {
                    c.curriculum.enabled = true;
                    c.curriculum.min_level = 3;
                    c.curriculum.max_level = 2;
                }),
            ),
            (
                "tasks.mixture",
                Box::new(|c| {
                    c.curriculum.enabled = true;
                    c.curriculum.min_level = 3;
                }),
            ),
        ];
        for (key, edit) in cases {
            let m = error_of(edit);
            assert!(m.starts_with(&format!("{key}: ")), "{key}: {m}");
        }
    }

    #[test]
    fn group_and_batch_rules() {
        let m = error_of(|c| c.grpo.group_size = 1);
        assert!(m.contains("group of 1"), "{m}");
        let mut c = base();
        c.grpo.group_size = 1;
        c.grpo.scale_rewards = ScaleRewards::None;
        c.grpo.batch_size = 5;
        validate(&c).unwrap();
        let mut c = base();
        c.grpo.group_size = 1;
        c.grpo.batch_size = 4;
        c.grpo.advantage = AdvantageEstimator::ReinforcePlusPlus;
        validate(&c).unwrap();
        c.grpo.advantage = AdvantageEstimator::Rloo;
        let m = validate(&c).unwrap_err().to_string();
        assert!(m.starts_with("grpo.group_size: rloo needs"), "{m}");
        let m = error_of(|c| c.grpo.batch_size = 100);
        assert!(
            m.contains("100 completions do not split into groups of group_size = 8"),
            "{m}"
        );
    }

    #[test]
    fn a_model_folder_without_weights_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        let m = error_of(|c| {
            c.model.source = ModelSource::Local;
            c.model.path = path.clone();
        });
        assert!(m.contains("has no config.json"), "{m}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let m = error_of(|c| {
            c.model.source = ModelSource::Local;
            c.model.path = path.clone();
        });
        assert!(
            m.starts_with("model.path: ") && m.contains("no *.safetensors weights"),
            "{m}"
        );
        let m = error_of(|c| {
            c.model.source = ModelSource::Local;
            c.model.path = "/no/such/model".into();
        });
        assert!(m.contains("/no/such/model is not a folder"), "{m}");
    }
}
