//! Reading a run folder as the trainer left it, however it was left: still
//! running (a last line half written), stopped, or resumed (steps written
//! twice: the later record wins, as the resumed run's are the ones that
//! count).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The resolved config the run used.
pub const CONFIG_FILE: &str = "config.toml";
/// One JSON object per optimizer step.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// One held-out evaluation per line.
pub const EVAL_FILE: &str = "eval.jsonl";
/// Sampled GRPO completions with their verdicts.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// Thinking-budget curves of the run's checkpoints (`verity eval --budgets`).
pub const BUDGETS_FILE: &str = "budgets.jsonl";

/// Everything a run folder holds that the report shows.
#[derive(Debug, Clone, Default)]
pub struct RunLog {
    /// The folder's name: what the legend calls the run.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// config.toml flattened to `section.key` -> the value as TOML text.
    pub config: BTreeMap<String, String>,
    /// One record per global step, in step order.
    pub steps: Vec<StepRecord>,
    /// Evaluations in the order they were made.
    pub evals: Vec<EvalLine>,
    /// GRPO samples of the latest step that has any.
    pub samples: Vec<SampleLine>,
    /// Budget curves, one per checkpoint evaluated, in step order.
    pub budgets: Vec<BudgetLine>,
    /// What was skipped while reading, for the reader to know.
    pub notes: Vec<String>,
}

/// One line of metrics.jsonl.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// `sft`, `grpo`, or whatever the line says.
    pub phase: String,
    /// Optimizer steps over both phases.
    pub global_step: u64,
    /// Every number on the line by its key (`reward`, `clip_ratio/low_mean`,
    /// `curriculum/add`, ...); nulls and non-numbers are left out.
    pub values: BTreeMap<String, f64>,
}

/// Scores of one evaluation (overall, or one task and level).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EvalScore {
    /// Problems scored.
    #[serde(default)]
    pub problems: usize,
    /// Greedy pass@1.
    pub pass_at_1: f64,
    /// Sampled pass@k.
    #[serde(default)]
    pub pass_at_k: Option<f64>,
    /// Share of greedy completions in the output format.
    #[serde(default)]
    pub format_rate: Option<f64>,
}

/// One task and level of an evaluation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskLine {
    /// Task name.
    pub task: String,
    /// Level.
    pub level: u32,
    /// Its scores.
    #[serde(flatten)]
    pub score: EvalScore,
}

/// A verifier's verdict as logged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VerdictLine {
    /// Correctness reward.
    pub reward: f64,
    /// Output format followed.
    #[serde(default)]
    pub format_ok: bool,
    /// The extracted answer.
    #[serde(default)]
    pub extracted: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// A greedy completion kept by an evaluation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExampleLine {
    /// Problem id.
    pub problem_id: String,
    /// Prompt text.
    #[serde(default)]
    pub prompt: String,
    /// Completion text.
    pub completion: String,
    /// Its verdict.
    pub verdict: VerdictLine,
}

/// One line of eval.jsonl.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EvalLine {
    /// Phase of the run when measured.
    pub phase: String,
    /// Steps of that phase done.
    pub step: u64,
    /// Optimizer steps over both phases.
    pub global_step: u64,
    /// The k of pass@k.
    #[serde(default)]
    pub k: Option<usize>,
    /// Overall scores.
    #[serde(flatten)]
    pub overall: EvalScore,
    /// Per task and level.
    #[serde(default)]
    pub tasks: Vec<TaskLine>,
    /// Best and worst greedy completions.
    #[serde(default)]
    pub examples: Vec<ExampleLine>,
}

/// One line of samples.jsonl.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SampleLine {
    /// GRPO step.
    pub step: u64,
    /// Problem id.
    pub problem_id: String,
    /// Prompt text.
    #[serde(default)]
    pub prompt: String,
    /// Completion text.
    pub completion: String,
    /// Shaped reward.
    pub reward: f64,
    /// Completion length in tokens.
    #[serde(default)]
    pub length: usize,
    /// The verdict.
    pub verdict: VerdictLine,
}

/// Accuracy at one budget.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BudgetPoint {
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// Greedy pass@1.
    pub pass_at_1: f64,
    /// Majority vote of the samples.
    #[serde(default)]
    pub maj_at_k: Option<f64>,
}

/// One line of budgets.jsonl: one checkpoint's curve.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BudgetLine {
    /// The checkpoint folder evaluated.
    #[serde(default)]
    pub checkpoint: String,
    /// Its global step.
    #[serde(default)]
    pub global_step: Option<u64>,
    /// Samples voting per problem.
    #[serde(default)]
    pub k: usize,
    /// One point per budget.
    pub budgets: Vec<BudgetPoint>,
}

impl RunLog {
    /// Reads the run in `dir`. A folder with none of config.toml,
    /// metrics.jsonl and eval.jsonl is not a run.
    pub fn read(dir: &Path) -> Result<RunLog> {
        let not_a_run = |reason: &str| Error::NotARun {
            dir: dir.to_path_buf(),
            reason: reason.to_string(),
        };
        if !dir.exists() {
            return Err(not_a_run("no such folder"));
        }
        if !dir.is_dir() {
            return Err(not_a_run("not a folder"));
        }
        if ![CONFIG_FILE, METRICS_FILE, EVAL_FILE]
            .iter()
            .any(|f| dir.join(f).is_file())
        {
            return Err(not_a_run(
                "it holds none of config.toml, metrics.jsonl, eval.jsonl",
            ));
        }
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let mut run = RunLog {
            name,
            dir: dir.to_path_buf(),
            ..RunLog::default()
        };
        run.config = read_config(&dir.join(CONFIG_FILE))?;

        let mut steps = BTreeMap::new();
        for line in read_jsonl::<Value>(&dir.join(METRICS_FILE), &mut run.notes)? {
            if let Some(record) = step_record(&line) {
                steps.insert(record.global_step, record);
            }
        }
        run.steps = steps.into_values().collect();

        let mut evals = BTreeMap::new();
        for (order, e) in read_jsonl::<EvalLine>(&dir.join(EVAL_FILE), &mut run.notes)?
            .into_iter()
            .enumerate()
        {
            // A repeated evaluation replaces the earlier one where it stood.
            let key = (e.global_step, e.phase.clone(), e.step);
            let order = evals.get(&key).map_or(order, |(o, _)| *o);
            evals.insert(key, (order, e));
        }
        let mut evals: Vec<(usize, EvalLine)> = evals.into_values().collect();
        evals.sort_by_key(|(order, e)| (e.global_step, *order));
        run.evals = evals.into_iter().map(|(_, e)| e).collect();

        run.samples = latest_samples(read_jsonl(&dir.join(SAMPLES_FILE), &mut run.notes)?);

        let mut budgets = BTreeMap::new();
        for b in read_jsonl::<BudgetLine>(&dir.join(BUDGETS_FILE), &mut run.notes)? {
            budgets.insert((b.global_step, b.checkpoint.clone()), b);
        }
        run.budgets = budgets.into_values().collect();
        Ok(run)
    }

    /// The last global step of the SFT phase when a GRPO phase follows it:
    /// where the plots mark the boundary.
    pub fn sft_end(&self) -> Option<u64> {
        let last_sft = self
            .steps
            .iter()
            .filter(|s| s.phase == "sft")
            .map(|s| s.global_step)
            .max()?;
        self.steps
            .iter()
            .any(|s| s.phase == "grpo")
            .then_some(last_sft)
    }

    /// The newest evaluation (the last in step order).
    pub fn last_eval(&self) -> Option<&EvalLine> {
        self.evals.last()
    }
}

/// config.toml as `section.key` -> TOML text; an absent file is an empty config.
fn read_config(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("not a TOML run config: {}", e.message().trim()),
    })?;
    let mut flat = BTreeMap::new();
    flatten("", &table, &mut flat);
    Ok(flat)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (key, value) in table {
        let name = match prefix {
            "" => key.clone(),
            p => format!("{p}.{key}"),
        };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out),
            other => {
                out.insert(name, other.to_string());
            }
        }
    }
}

/// The records of a JSON Lines file, in order; an absent file has none. A
/// last line without its newline is one the run is still writing: left out
/// unless it is whole. Other unreadable lines are left out with a note.
fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<Vec<T>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let file = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut records = Vec::with_capacity(lines.len());
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() && !complete => {
                notes.push(format!(
                    "{file}: the last line is still being written; left out"
                ));
            }
            Err(_) => bad.push(i + 1),
        }
    }
    if !bad.is_empty() {
        let shown: Vec<String> = bad.iter().take(5).map(usize::to_string).collect();
        notes.push(format!(
            "{file}: {} unreadable line(s) left out (line {}{})",
            bad.len(),
            shown.join(", "),
            if bad.len() > 5 { ", ..." } else { "" }
        ));
    }
    Ok(records)
}

/// A metrics line as a step record; lines without a global step are skipped.
fn step_record(line: &Value) -> Option<StepRecord> {
    let object = line.as_object()?;
    let global_step = object.get("global_step")?.as_u64()?;
    let phase = object
        .get("phase")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let values = object
        .iter()
        .filter_map(|(key, value)| Some((key.clone(), value.as_f64()?)))
        .collect();
    Some(StepRecord {
        phase,
        global_step,
        values,
    })
}

/// The samples of the newest step. A step written again after a resume
/// starts a new block that replaces the earlier one.
fn latest_samples(lines: Vec<SampleLine>) -> Vec<SampleLine> {
    let mut blocks: BTreeMap<u64, Vec<SampleLine>> = BTreeMap::new();
    let mut previous = None;
    for line in lines {
        if previous != Some(line.step) {
            blocks.insert(line.step, Vec::new());
        }
        previous = Some(line.step);
        blocks.entry(line.step).or_default().push(line);
    }
    blocks
        .pop_last()
        .map(|(_, block)| block)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn a_partial_last_line_is_left_out_and_repeated_steps_keep_the_later_record() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            METRICS_FILE,
            concat!(
                "{\"phase\":\"sft\",\"global_step\":1,\"loss\":3.0}\n",
                "{\"phase\":\"sft\",\"global_step\":2,\"loss\":2.0}\n",
                "{\"phase\":\"grpo\",\"global_step\":3,\"loss\":0.5,\"kl\":null}\n",
                // Resumed from the checkpoint at step 2: steps 3 and 4 again.
                "{\"phase\":\"grpo\",\"global_step\":3,\"loss\":0.25,\"reward\":0.5}\n",
                "{\"phase\":\"grpo\",\"global_step\":4,\"loss\":0.125}\n",
                "{\"phase\":\"grpo\",\"global_st"
            ),
        );
        let run = RunLog::read(dir.path()).unwrap();
        let steps: Vec<(u64, f64)> = run
            .steps
            .iter()
            .map(|s| (s.global_step, s.values["loss"]))
            .collect();
        assert_eq!(steps, [(1, 3.0), (2, 2.0), (3, 0.25), (4, 0.125)]);
        assert_eq!(run.steps[2].values.get("reward"), Some(&0.5));
        assert!(!run.steps[2].values.contains_key("kl"));
        assert_eq!(run.sft_end(), Some(2));
        assert_eq!(run.notes.len(), 1, "{:?}", run.notes);
        assert!(run.notes[0].contains("still being written"));
    }

    #[test]
    fn a_broken_middle_line_is_noted_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            EVAL_FILE,
            concat!(
                "{\"phase\":\"sft\",\"step\":10,\"global_step\":10,\"pass_at_1\":0.1,\"tasks\":[]}\n",
                "garbage\n",
                "{\"phase\":\"sft\",\"step\":20,\"global_step\":20,\"pass_at_1\":0.3,\"tasks\":[]}\n",
                "{\"phase\":\"sft\",\"step\":10,\"global_step\":10,\"pass_at_1\":0.2,\"tasks\":[]}\n",
            ),
        );
        let run = RunLog::read(dir.path()).unwrap();
        let evals: Vec<(u64, f64)> = run
            .evals
            .iter()
            .map(|e| (e.global_step, e.overall.pass_at_1))
            .collect();
        assert_eq!(evals, [(10, 0.2), (20, 0.3)]);
        assert_eq!(
            run.notes,
            ["eval.jsonl: 1 unreadable line(s) left out (line 2)"]
        );
    }

    #[test]
    fn samples_of_a_step_written_again_replace_the_first_attempt() {
        let line = |step: u64, id: &str| SampleLine {
            step,
            problem_id: id.into(),
            prompt: String::new(),
            completion: String::new(),
            reward: 0.0,
            length: 0,
            verdict: VerdictLine {
                reward: 0.0,
                format_ok: false,
                extracted: None,
                reason: String::new(),
            },
        };
        let kept = latest_samples(vec![
            line(4, "a"),
            line(5, "b"),
            line(5, "c"),
            line(5, "d"),
            line(5, "e"),
        ]);
        assert_eq!(kept.len(), 4);
        let kept = latest_samples(vec![line(5, "old"), line(4, "x"), line(5, "new")]);
        let ids: Vec<&str> = kept.iter().map(|s| s.problem_id.as_str()).collect();
        assert_eq!(ids, ["new"]);
    }

    #[test]
    fn folders_that_are_not_runs_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunLog::read(dir.path()).unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("none of config.toml"), "{err}");
        let err = RunLog::read(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().ends_with("no such folder"), "{err}");
        write(dir.path(), CONFIG_FILE, "[run\nname=");
        let err = RunLog::read(dir.path()).unwrap_err();
        assert!(
            err.is_bad_input() && err.to_string().contains("config.toml"),
            "{err}"
        );
    }

    #[test]
    fn config_is_flattened_to_section_keys() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            CONFIG_FILE,
            "[run]\nseed = 3\n[grpo]\nlr = 1e-4\n[tasks]\nmixture = [{ task = \"add\", level = 3 }]\n",
        );
        let run = RunLog::read(dir.path()).unwrap();
        assert_eq!(run.config["run.seed"], "3");
        assert_eq!(run.config["grpo.lr"], "0.0001");
        assert!(run.config["tasks.mixture"].contains("add"));
    }
}
