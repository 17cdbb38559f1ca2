//! The config of a resumed run: the run's saved config.toml, or a config
//! file given again, with `--set` overrides; only keys that do not change
//! what has been trained may differ from what the run started with.

use std::path::Path;

use super::Config;
use crate::error::{Error, Result};
use crate::run::CONFIG_FILE;

/// Keys that may change when a run is resumed: lengths of the phases,
/// evaluation, checkpoint and log settings, and the hardware. `section.*`
/// covers a whole section. Every other key (model shape, tokenizer source,
/// tasks, seed, optimizer and GRPO settings) must match the run's saved
/// config. `run.threads` never changes a result, so a run resumed on
/// another number of threads continues bit for bit as it would have; but
/// changing `steps` stretches a decaying learning-rate schedule, and
/// changing `run.device`, `run.decode_precision`, `run.matmul_precision`
/// or `grpo.reference_precision` changes float rounding,
/// so the resumed run then no longer matches an uninterrupted one bit for
/// bit.
pub const RESUMABLE_KEYS: &[&str] = &[
    "run.threads",
    "run.device",
    "run.decode_precision",
    "run.matmul_precision",
    "run.max_nonfinite_steps",
    "sft.steps",
    "sft.micro_batches",
    "sft.stop_at_pass_at_1",
    "sft.check_every",
    "grpo.steps",
    "grpo.micro_batches",
    "grpo.reference_precision",
    "eval.*",
    "checkpoint.*",
    "log.*",
];

impl Config {
    /// The config to resume the run in `run_dir` with: its saved
    /// config.toml, or `config_file` when given, with `overrides` applied.
    /// The run folder stays where it is now, whatever the config names.
    /// A key outside [`RESUMABLE_KEYS`] that differs from the saved config is
    /// an error naming it.
    pub fn for_resume(
        run_dir: &Path,
        config_file: Option<&Path>,
        overrides: &[String],
    ) -> Result<Config> {
        let saved_path = run_dir.join(CONFIG_FILE);
        if !run_dir.is_dir() {
            return Err(Error::invalid(
                "--resume",
                format!(
                    "{} does not exist: give the folder of an earlier run (OUT_DIR/NAME), or start a new run with --config FILE",
                    run_dir.display()
                ),
            ));
        }
        if !saved_path.is_file() {
            return Err(Error::invalid(
                "--resume",
                format!(
                    "{} has no {CONFIG_FILE}, so it is not a verity run folder: start a new run with --config FILE",
                    run_dir.display()
                ),
            ));
        }
        let mut saved = Config::load(&saved_path, &[])?;
        let mut config = Config::load(config_file.unwrap_or(&saved_path), overrides)?;
        let dir = std::path::absolute(run_dir).map_err(|e| Error::io(run_dir, e))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out_dir = dir
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        for c in [&mut saved, &mut config] {
            c.run.name = name.clone();
            c.run.out_dir = out_dir.clone();
        }
        check_unchanged(&saved, &config)?;
        Ok(config)
    }
}

/// The first key outside [`RESUMABLE_KEYS`] whose value differs, as an error.
fn check_unchanged(saved: &Config, config: &Config) -> Result<()> {
    let as_table = |c: &Config| toml::Table::try_from(c).unwrap_or_default();
    let (old, new) = (as_table(saved), as_table(config));
    for (section, old_keys) in &old {
        let empty = toml::Table::new();
        let old_keys = old_keys.as_table().unwrap_or(&empty);
        let new_keys = new
            .get(section)
            .and_then(toml::Value::as_table)
            .unwrap_or(&empty);
        for (key, before) in old_keys {
            let dotted = format!("{section}.{key}");
            if resumable(&dotted) || new_keys.get(key) == Some(before) {
                continue;
            }
            let now = new_keys
                .get(key)
                .map_or("nothing".to_string(), |v| v.to_string());
            return Err(Error::invalid(
                &dotted,
                format!(
                    "cannot change when resuming (the run used {before}, now {now}); only {} may change, so start a new run to change it",
                    RESUMABLE_KEYS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn resumable(key: &str) -> bool {
    RESUMABLE_KEYS.iter().any(|k| match k.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => *k == key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"
[run]
seed = 3
threads = 1
[tasks]
mixture = [{ task = "add", level = 2 }]
[sft]
steps = 4
"#;

    fn saved_run() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("r");
        std::fs::create_dir(&run).unwrap();
        let config = Config::from_toml(RUN, "r.toml", "r", &[]).unwrap();
        std::fs::write(run.join(CONFIG_FILE), config.to_toml()).unwrap();
        dir
    }

    #[test]
    fn safe_keys_may_change_and_the_folder_is_where_it_is() {
        let dir = saved_run();
        let run = dir.path().join("r");
        let overrides = ["sft.steps=9".to_string(), "eval.every=2".to_string()];
        let c = Config::for_resume(&run, None, &overrides).unwrap();
        assert_eq!((c.sft.steps, c.eval.every, c.run.seed), (9, 2, 3));
        assert_eq!(c.run_dir(), run);
    }

    #[test]
    fn other_keys_are_errors_naming_the_key() {
        let dir = saved_run();
        let run = dir.path().join("r");
        for (set, key) in [
            ("model.hidden_size=64", "model.hidden_size"),
            ("run.seed=4", "run.seed"),
            ("grpo.lr=1.0", "grpo.lr"),
        ] {
            let err = Config::for_resume(&run, None, &[set.to_string()]).unwrap_err();
            assert!(err.is_usage(), "{err}");
            let m = err.to_string();
            assert!(m.starts_with(&format!("{key}: cannot change")), "{m}");
        }
        let file = dir.path().join("other.toml");
        std::fs::write(&file, RUN.replace("level = 2", "level = 3")).unwrap();
        let m = Config::for_resume(&run, Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("tasks.mixture: cannot change"), "{m}");
    }

    #[test]
    fn the_configs_readme_lists_the_resumable_keys() {
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/README.md");
        let text = std::fs::read_to_string(readme).unwrap();
        for key in RESUMABLE_KEYS {
            let shown = format!("`{}`", key.trim_end_matches(".*"));
            assert!(
                text.contains(&shown),
                "configs/README.md does not name {shown}"
            );
        }
    }

    #[test]
    fn a_missing_run_folder_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::for_resume(&dir.path().join("nope"), None, &[]).unwrap_err();
        assert!(err.is_usage());
        let m = err.to_string();
        assert!(
            m.contains("does not exist") && m.contains("--config"),
            "{m}"
        );
        let err = Config::for_resume(dir.path(), None, &[]).unwrap_err();
        assert!(err.to_string().contains("not a verity run folder"), "{err}");
    }
}
