//! Reading a config file, applying `--set` overrides, and turning every
//! mistake into a message that names the file, line and key.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{validate, Config};
use crate::error::{Error, Result};

impl Config {
    /// Reads the TOML file at `path`, applies `overrides` (`section.key=value`,
    /// in order, later ones winning), validates everything and resolves what
    /// depends on the machine or the file (run name, thread count, absolute
    /// paths).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
            path: path.to_path_buf(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_toml(&text, &path.display().to_string(), &stem, overrides)
    }

    /// [`Config::load`] on text already read: `file` names it in errors and
    /// `stem` is the run name used when `run.name` is empty.
    pub fn from_toml(text: &str, file: &str, stem: &str, overrides: &[String]) -> Result<Config> {
        match upgrade(text, file)? {
            None => Self::from_current_toml(text, file, stem, overrides),
            // Lines of the upgraded text are not the file's: name the key only.
            Some(upgraded) => {
                Self::from_current_toml(&upgraded, file, stem, overrides).map_err(|e| match e {
                    Error::ConfigSyntax { file, message, .. } => {
                        Error::Invalid { key: file, message }
                    }
                    other => other,
                })
            }
        }
    }

    fn from_current_toml(
        text: &str,
        file: &str,
        stem: &str,
        overrides: &[String],
    ) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| syntax_error(text, file, &e))?;
        if !overrides.is_empty() {
            config = apply_overrides(text, overrides)?;
        }
        if config.run.name.is_empty() {
            config.run.name = stem.to_string();
        }
        validate::validate(&config).map_err(|e| locate_invalid(e, text, file, overrides))?;
        resolve(&mut config)?;
        Ok(config)
    }
}

/// AdamW and clipping keys that were per phase (`sft.*`, `grpo.*`) before
/// they moved to `[optimizer]`.
const MOVED_TO_OPTIMIZER: [&str; 5] = [
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
];

/// A file written before `[optimizer]` existed (a user's config, or the
/// saved config.toml of an older run), with its per-phase AdamW keys moved
/// there; `None` when there is nothing to move. The phases must agree on
/// each key, and `[optimizer]` must not set it too.
fn upgrade(text: &str, file: &str) -> Result<Option<String>> {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Ok(None); // the normal path reports the syntax error
    };
    let mut moved = toml::Table::new();
    for phase in ["sft", "grpo"] {
        let Some(section) = table.get_mut(phase).and_then(toml::Value::as_table_mut) else {
            continue;
        };
        for key in MOVED_TO_OPTIMIZER {
            let Some(value) = section.remove(key) else {
                continue;
            };
            match moved.get(key) {
                Some(other) if *other != value => {
                    return Err(Error::Invalid {
                        key: format!("{file}: {phase}.{key}"),
                        message: format!(
                            "{key} moved to [optimizer], one setting for both phases, but sft and grpo set {other} and {value}: keep one in [optimizer]"
                        ),
                    })
                }
                _ => {
                    moved.insert(key.to_string(), value);
                }
            }
        }
    }
    if moved.is_empty() {
        return Ok(None);
    }
    let optimizer = table
        .entry("optimizer")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(optimizer) = optimizer.as_table_mut() else {
        return Ok(None); // not a table: the normal path names the error
    };
    for (key, value) in moved {
        if optimizer.contains_key(&key) {
            return Err(Error::Invalid {
                key: format!("{file}: optimizer.{key}"),
                message: format!(
                    "set both in [optimizer] and in a phase section: keep only optimizer.{key}"
                ),
            });
        }
        optimizer.insert(key, value);
    }
    Ok(Some(toml::to_string(&table).unwrap_or_default()))
}

/// The file parsed as a table, with each override set in turn; every
/// override is checked on its own so an error names the one at fault.
fn apply_overrides(text: &str, overrides: &[String]) -> Result<Config> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Override {
        arg: overrides.join(" "),
        message: e.message().to_string(),
    })?;
    let mut config = Config::default();
    for arg in overrides {
        let bad = |message: String| Error::Override {
            arg: arg.clone(),
            message,
        };
        let (key, raw) = arg
            .split_once('=')
            .ok_or_else(|| bad("expected section.key=value".into()))?;
        let (section, field) = key
            .trim()
            .split_once('.')
            .filter(|(s, f)| !s.is_empty() && !f.is_empty() && !f.contains('.'))
            .ok_or_else(|| bad(format!("`{key}` is not of the form section.key")))?;
        let raw = raw.trim();
        let parsed = parse_value(raw);
        let mut candidates = vec![parsed.clone()];
        if !parsed.is_str() {
            // `--set run.name=123` means the text "123".
            candidates.push(toml::Value::String(raw.to_string()));
        }
        let mut last_error = String::new();
        let mut accepted = None;
        for value in candidates {
            let mut attempt = table.clone();
            let entry = attempt
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(section_table) = entry.as_table_mut() else {
                return Err(bad(format!("`{section}` is not a section")));
            };
            section_table.insert(field.to_string(), value);
            match attempt.clone().try_into::<Config>() {
                Ok(c) => {
                    accepted = Some((attempt, c));
                    break;
                }
                Err(e) => {
                    if last_error.is_empty() {
                        last_error = e.message().to_string();
                    }
                }
            }
        }
        let (next, parsed_config) = accepted.ok_or_else(|| bad(last_error))?;
        table = next;
        config = parsed_config;
    }
    Ok(config)
}

/// A `--set` value as TOML (`3`, `1e-4`, `true`, `"x"`, `[1, 2]`), or the text
/// itself as a string when it is not valid TOML (`scratch/runs`).
fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// A parse or type error as `file:line: key: message`.
fn syntax_error(text: &str, file: &str, err: &toml::de::Error) -> Error {
    let span = err.span();
    let line = span.as_ref().map(|s| line_of(text, s.start)).unwrap_or(1);
    let key = span.and_then(|s| key_at(text, &s));
    let message = match key {
        Some(key) => format!("{key}: {}", err.message().trim()),
        None => err.message().trim().to_string(),
    };
    Error::ConfigSyntax {
        file: file.to_string(),
        line,
        message,
    }
}

/// Points a validation error at the line of its key in the file, or at the
/// `--set` that gave the value.
fn locate_invalid(err: Error, text: &str, file: &str, overrides: &[String]) -> Error {
    let Error::Invalid { key, message } = err else {
        return err;
    };
    let from_override = overrides.iter().rev().find(|arg| {
        arg.split_once('=')
            .is_some_and(|(k, _)| k.trim() == key || key.starts_with(&format!("{}[", k.trim())))
    });
    if let Some(arg) = from_override {
        return Error::Override {
            arg: arg.clone(),
            message: format!("{key}: {message}"),
        };
    }
    match line_of_key(text, &key) {
        Some(line) => Error::ConfigSyntax {
            file: file.to_string(),
            line,
            message: format!("{key}: {message}"),
        },
        None => Error::Invalid {
            key: format!("{file}: {key}"),
            message,
        },
    }
}

/// 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key (`grpo.lr`, `tasks.mixture[1].level`) whose key or value
/// covers `span`.
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(table.get_ref(), span.start, &mut path).then(|| dotted(&path))
}

fn find_in_table(table: &DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&at) {
            return true;
        }
        // A value span covers the error: descend as far as possible. Tables
        // from `[section]` headers may not cover their keys, so look inside
        // every value anyway.
        if find_in_value(value, at, path) || value.span().contains(&at) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(value: &Spanned<DeValue<'_>>, at: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, at, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                if find_in_value(item, at, path) || item.span().contains(&at) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// `["tasks", "mixture", "[1]", "level"]` as `tasks.mixture[1].level`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

/// 1-based line where `key` (`grpo.lr`, or `tasks.mixture[1]`) is written.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let table = DeTable::parse(text).ok()?;
    let mut current: &DeTable<'_> = table.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let (k, v) = current.iter().find(|(k, _)| k.get_ref() == name)?;
        let mut target: &Spanned<DeValue<'_>> = v;
        let mut span = k.span();
        if let (Some(i), DeValue::Array(items)) = (index, v.get_ref()) {
            target = items.get(i)?;
            span = target.span();
        }
        if parts.peek().is_none() {
            return Some(line_of(text, span.start));
        }
        match target.get_ref() {
            DeValue::Table(t) => current = t,
            _ => return Some(line_of(text, span.start)),
        }
    }
    None
}

/// Fills in what depends on the machine: the thread count and absolute paths.
fn resolve(config: &mut Config) -> Result<()> {
    if config.run.threads == 0 {
        config.run.threads = all_cores();
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
    let absolute = |p: &str| -> String {
        let path = PathBuf::from(p);
        if path.is_absolute() {
            p.to_string()
        } else {
            cwd.join(path).display().to_string()
        }
    };
    config.run.out_dir = absolute(&config.run.out_dir);
    if !config.model.path.is_empty() {
        config.model.path = absolute(&config.model.path);
    }
    for entry in config
        .tasks
        .mixture
        .iter_mut()
        .chain(&mut config.sft.mixture)
    {
        if let Some(p) = &entry.jsonl {
            entry.jsonl = Some(PathBuf::from(absolute(&p.display().to_string())));
        }
    }
    Ok(())
}

/// Every core the process may run on.
pub(crate) fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[run]
seed = 3

[tasks]
mixture = [{ task = "add", level = 2 }]
"#;

    fn load(text: &str, overrides: &[&str]) -> Result<Config> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Config::from_toml(text, "test.toml", "test", &overrides)
    }

    fn message(text: &str, overrides: &[&str]) -> String {
        load(text, overrides).unwrap_err().to_string()
    }

    #[test]
    fn defaults_fill_missing_keys_and_the_name_comes_from_the_file() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.run.seed, 3);
        assert_eq!(c.run.name, "test");
        assert_eq!(c.run.threads, all_cores());
        assert!(Path::new(&c.run.out_dir).is_absolute());
        assert_eq!(c.grpo.group_size, 8);
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let text = format!("{MINIMAL}\n[grpo]\ngroup_size = 4\nbogus = 1\n");
        let m = message(&text, &[]);
        assert!(
            m.starts_with("test.toml:10: grpo.bogus: unknown field `bogus`"),
            "{m}"
        );
        let m = message("[nope]\nx = 1\n", &[]);
        assert!(
            m.starts_with("test.toml:1: nope: unknown field `nope`"),
            "{m}"
        );
    }

    #[test]
    fn wrong_types_name_file_line_and_key() {
        let text = format!("{MINIMAL}\n[sft]\nlr = \"fast\"\n");
        let m = message(&text, &[]);
        assert!(
            m.starts_with("test.toml:9: sft.lr: invalid type: string \"fast\""),
            "{m}"
        );
        let m = message("[grpo]\nloss_type = \"ppo\"\n", &[]);
        assert!(
            m.contains("test.toml:2: grpo.loss_type: unknown variant `ppo`"),
            "{m}"
        );
        let m = message("[run\nseed = 1\n", &[]);
        assert!(m.starts_with("test.toml:1: "), "{m}");
    }

    #[test]
    fn errors_inside_the_mixture_name_the_entry() {
        let text = "[tasks]\nmixture = [\n  { task = \"add\", level = 2 },\n  { task = \"add\", lvl = 2 },\n]\n";
        let m = message(text, &[]);
        assert!(m.starts_with("test.toml:4: tasks.mixture[1]"), "{m}");
        assert!(m.contains("unknown field `lvl`"), "{m}");
        let text = "[tasks]\nmixture = [{ task = \"nope\", level = 2 }]\n";
        let m = message(text, &[]);
        assert!(m.starts_with("test.toml:2: tasks.mixture"), "{m}");
        assert!(m.contains("unknown task 'nope'"), "{m}");
    }

    #[test]
    fn overrides_parse_toml_values_or_take_text() {
        let c = load(
            MINIMAL,
            &[
                "grpo.lr=3e-4",
                "run.out_dir=scratch/runs",
                "run.name=123",
                "grpo.loss_type=dr_grpo",
                "sft.steps = 7",
            ],
        )
        .unwrap();
        assert_eq!(c.grpo.lr, 3e-4);
        assert!(c.run.out_dir.ends_with("scratch/runs"), "{}", c.run.out_dir);
        assert_eq!(c.run.name, "123");
        assert_eq!(c.grpo.loss_type, crate::loss::LossType::DrGrpo);
        assert_eq!(c.sft.steps, 7);
        // Later overrides win; sections missing from the file are created.
        let c = load(MINIMAL, &["eval.every=5", "eval.every=6"]).unwrap();
        assert_eq!(c.eval.every, 6);
    }

    #[test]
    fn bad_overrides_name_the_argument() {
        let m = message(MINIMAL, &["grpo.nope=1"]);
        assert!(
            m.starts_with("--set grpo.nope=1: unknown field `nope`"),
            "{m}"
        );
        let m = message(MINIMAL, &["grpo.lr=fast"]);
        assert!(m.starts_with("--set grpo.lr=fast: invalid type"), "{m}");
        let m = message(MINIMAL, &["grpo"]);
        assert!(m.contains("expected section.key=value"), "{m}");
        let m = message(MINIMAL, &["lr=1"]);
        assert!(m.contains("not of the form section.key"), "{m}");
        // A default that an override made invalid is named with both values.
        let m = message(MINIMAL, &["grpo.group_size=3"]);
        assert!(
            m.starts_with("test.toml: grpo.batch_size: 128 completions do not split into groups of group_size = 3"),
            "{m}"
        );
    }

    #[test]
    fn validation_errors_point_at_the_line_of_the_key() {
        let text = format!("{MINIMAL}\n[grpo]\ngroup_size = 1\n");
        let m = message(&text, &[]);
        assert!(m.starts_with("test.toml:9: grpo.group_size:"), "{m}");
        assert!(m.contains("group of 1"), "{m}");
        let text = format!("{MINIMAL}\n[grpo]\nbatch_size = 20\ngroup_size = 8\n");
        let m = message(&text, &[]);
        assert!(m.starts_with("test.toml:9: grpo.batch_size:"), "{m}");
        assert!(m.contains("20") && m.contains("8"), "{m}");
    }

    #[test]
    fn a_missing_file_is_a_usage_error() {
        let err = Config::load(Path::new("/no/such/config.toml"), &[]).unwrap_err();
        assert!(err.is_usage());
        assert!(err.to_string().contains("/no/such/config.toml"), "{err}");
    }

    #[test]
    fn per_phase_optimizer_keys_of_older_files_move_to_the_optimizer_section() {
        let text = format!(
            "{MINIMAL}\n[sft]\nlr = 1e-3\nmax_grad_norm = 0.5\nadam_beta2 = 0.98\n[grpo]\nmax_grad_norm = 0.5\n"
        );
        let c = load(&text, &["grpo.steps=2"]).unwrap();
        assert_eq!(c.optimizer.max_grad_norm, 0.5);
        assert_eq!(c.optimizer.adam_beta2, 0.98);
        assert_eq!((c.sft.lr, c.grpo.steps), (1e-3, 2));
        let text = format!("{MINIMAL}\n[sft]\nweight_decay = 0.1\n[grpo]\nweight_decay = 0.0\n");
        let m = message(&text, &[]);
        assert!(
            m.starts_with("test.toml: grpo.weight_decay: weight_decay moved to [optimizer]"),
            "{m}"
        );
        let text =
            format!("{MINIMAL}\n[optimizer]\nadam_epsilon = 1e-6\n[grpo]\nadam_epsilon = 1e-6\n");
        let m = message(&text, &[]);
        assert!(m.contains("keep only optimizer.adam_epsilon"), "{m}");
        // Errors elsewhere in an upgraded file name the key, not a line.
        let text = format!("{MINIMAL}\n[grpo]\nmax_grad_norm = 0.5\ngroup_size = 1\n");
        let m = message(&text, &[]);
        assert!(m.starts_with("test.toml: grpo.group_size:"), "{m}");
    }

    #[test]
    fn devices_and_architectures_are_parsed_once_when_read() {
        let c = load(MINIMAL, &["run.device=cuda:1", "model.architecture=qwen3"]).unwrap();
        assert_eq!(c.run.device, policy::DeviceSpec::Cuda(1));
        assert_eq!(c.model.architecture, policy::Architecture::Qwen3);
        let m = message(
            &format!("{MINIMAL}\n[model]\narchitecture = \"gpt2\"\n"),
            &[],
        );
        assert!(
            m.starts_with("test.toml:9: model.architecture: unknown variant `gpt2`"),
            "{m}"
        );
        let m = message(
            &MINIMAL.replace("seed = 3", "seed = 3\ndevice = \"tpu\""),
            &[],
        );
        assert!(
            m.starts_with("test.toml:4: run.device: device 'tpu'"),
            "{m}"
        );
        let m = message(MINIMAL, &["run.device=cuda:x"]);
        assert!(
            m.starts_with("--set run.device=cuda:x: device 'cuda:x'"),
            "{m}"
        );
    }

    #[test]
    fn every_shipped_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                // Pretrained configs name a model folder that need not exist here.
                let scratch = ["model.source=scratch".to_string()];
                Config::load(&path, &scratch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 3, "{seen} configs");
    }

    #[test]
    fn the_resolved_config_reads_back_the_same() {
        let c = load(MINIMAL, &["grpo.loss_type=bnpo"]).unwrap();
        let again = load(&c.to_toml(), &[]).unwrap();
        assert_eq!(c, again);
    }
}
