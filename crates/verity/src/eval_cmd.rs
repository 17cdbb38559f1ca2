//! `verity eval`: greedy pass@1 and sampled pass@k per task and level on
//! held-out problems, for a run checkpoint, any Hugging Face model folder or
//! a GGUF file, measured by the same code as training's evaluations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use std::io::Write;

use policy::Precision;
use tasks::Problem;
use trainer::{heldout_problems, render_table, Checkpoint, EvalRecord, EvalSettings, BUDGETS_FILE};

use crate::bad_input;

#[derive(Args)]
pub struct EvalArgs {
    /// A run checkpoint (runs/NAME/checkpoints/step-N), a Hugging Face
    /// model folder (config.json, *.safetensors, tokenizer.json) or a GGUF
    /// file (dequantized to float32).
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// Task families, comma-separated (`verity tasks list`). Default: the
    /// run's tasks; required for a folder that is not a run checkpoint.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    tasks: Vec<String>,
    /// Levels, comma-separated, ranges allowed (`1,3-5`). Default: the
    /// levels the run trained each task at, else every level of the family.
    #[arg(long, value_name = "LEVELS")]
    levels: Option<String>,
    /// Held-out problems per task and level. Default: the run's
    /// `eval.problems` (100).
    #[arg(long, value_name = "N")]
    n: Option<usize>,
    /// The k of pass@k. Default: the run's `eval.k` (8).
    #[arg(long, value_name = "K")]
    k: Option<usize>,
    /// Sampled completions per problem for pass@k; 0 measures greedy pass@1
    /// only. Default: the run's `eval.samples` (8), raised to --k when that
    /// is given.
    #[arg(long, value_name = "S")]
    samples: Option<usize>,
    /// Sampling temperature of pass@k. Default: the run's `eval.temperature` (1.0).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    temperature: Option<f64>,
    /// Most tokens per completion. Default: the run's `eval.max_new_tokens`
    /// (else `grpo.max_completion_length`, 128).
    #[arg(long, value_name = "M")]
    max_new_tokens: Option<usize>,
    /// Seed of the pass@k samples. Default: the run's seed, which with the
    /// checkpoint's step gives the samples training's evaluation drew.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// `cpu`, `cuda` or `cuda:N`. Default: the run's device, else cpu.
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// What the CPU decoder multiplies in: `float32` or `bfloat16` (faster
    /// where the CPU has AVX-512 bf16, log-probabilities about 1e-2 off).
    /// Default: the run's `run.decode_precision`, else float32.
    #[arg(long, value_name = "P")]
    decode_precision: Option<Precision>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Thinking budgets (most new tokens), comma-separated, e.g.
    /// `64,128,256`: measure greedy pass@1 and the majority vote of the
    /// samples (maj@k, k = --samples) at each instead of the usual
    /// evaluation. For a run checkpoint the curve is also added to the
    /// run's budgets.jsonl, which `verity report` draws.
    #[arg(long, value_name = "B,B", value_delimiter = ',')]
    budgets: Vec<usize>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let levels = args.levels.as_deref().map(parse_levels).transpose()?;
    let checkpoint = open(&args.checkpoint, args.device.as_deref())?;
    if args.tasks.is_empty() && checkpoint.run_config.is_none() {
        return Err(bad_input(anyhow!(
            "--tasks is required: {} is not a run checkpoint with its run's config.toml",
            args.checkpoint.display()
        )));
    }
    let settings = settings(&args, checkpoint.eval_settings())?;
    warn_if_emulated(settings.decode_precision);
    if args.budgets.contains(&0) {
        return Err(bad_input(anyhow!(
            "--budgets: every budget must be at least 1 token"
        )));
    }
    let mixture = checkpoint
        .selection(&args.tasks, levels.as_deref())
        .map_err(into_anyhow)?;
    let per_entry = args.n.unwrap_or(checkpoint.config().eval.problems);
    let problems = heldout_problems(&mixture, per_entry).map_err(into_anyhow)?;
    warn_dropped(&checkpoint, problems.iter().map(|p| p.prompt.as_str()))?;
    if !args.budgets.is_empty() {
        return budgets(&args, &checkpoint, &problems, &settings, per_entry);
    }
    eprintln!(
        "evaluating {} on {} held-out problems{}",
        args.checkpoint.display(),
        problems.len(),
        match settings.recorded_k() {
            Some(_) => format!(", {} samples each", settings.samples),
            None => String::new(),
        }
    );
    let record = checkpoint
        .evaluate(&problems, &settings, args.seed)
        .map_err(into_anyhow)?;
    print!("{}", table(&checkpoint, &record));
    if let Some(path) = &args.json {
        let json = report(&checkpoint, &record, &settings, per_entry, args.seed);
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `--budgets`: the budget curve, printed, written to `--json`, and added to
/// the run's budgets.jsonl for a run checkpoint.
fn budgets(
    args: &EvalArgs,
    checkpoint: &Checkpoint,
    problems: &[Problem],
    settings: &EvalSettings,
    per_entry: usize,
) -> Result<()> {
    let record = checkpoint
        .evaluate_budgets(problems, &args.budgets, settings, args.seed)
        .map_err(into_anyhow)?;
    println!(
        "{}: {} held-out problems, maj@{} at temperature {} ({:.1} s)",
        checkpoint.dir.display(),
        problems.len(),
        record.k,
        record.temperature,
        record.seconds
    );
    println!("  budget  pass@1  maj@{:<3} format  mean length", record.k);
    for b in &record.budgets {
        println!(
            "  {:>6}  {:>6.3}  {:>6}  {:>6.3}  {:>11.1}",
            b.max_new_tokens,
            b.pass_at_1,
            b.maj_at_k.map_or("-".to_string(), |v| format!("{v:.3}")),
            b.format_rate,
            b.mean_length
        );
    }
    let mut json = serde_json::to_value(&record)?;
    if let Some(map) = json.as_object_mut() {
        if let Some((phase, step, global_step)) = checkpoint.position() {
            map.insert("phase".into(), phase.name().into());
            map.insert("step".into(), step.into());
            map.insert("global_step".into(), global_step.into());
        }
        map.insert(
            "checkpoint".into(),
            checkpoint.dir.display().to_string().into(),
        );
        map.insert("problems_per_task".into(), per_entry.into());
        map.insert(
            "seed".into(),
            args.seed.unwrap_or_else(|| checkpoint.seed()).into(),
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(run_dir) = checkpoint.run_dir() {
        let path = run_dir.join(BUDGETS_FILE);
        let line = serde_json::to_string(&json)? + "\n";
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.write_all(line.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("added to {} (verity report draws it)", path.display());
    }
    Ok(())
}

/// Opens `--checkpoint`; every problem with the folder is the user's input.
pub(crate) fn open(dir: &Path, device: Option<&str>) -> Result<Checkpoint> {
    Checkpoint::open(dir, device).map_err(into_anyhow)
}

/// Warns when the tokenizer drops characters of the prompts (a model
/// trained from scratch on other tasks), since the model then reads
/// something else than the problem.
pub(crate) fn warn_dropped<'a>(
    checkpoint: &Checkpoint,
    prompts: impl Iterator<Item = &'a str>,
) -> Result<()> {
    let (mut chars, mut garbled, mut total) = (BTreeSet::new(), 0, 0);
    for prompt in prompts {
        total += 1;
        let dropped = checkpoint.dropped_chars(prompt).map_err(into_anyhow)?;
        if !dropped.is_empty() {
            garbled += 1;
            chars.extend(dropped);
        }
    }
    if garbled > 0 {
        let list: Vec<String> = chars.iter().map(|c| format!("{c:?}")).collect();
        eprintln!(
            "warning: the tokenizer drops {} from {garbled} of {total} prompts: \
             the model never learned these characters",
            list.join(" ")
        );
    }
    Ok(())
}

/// Says so when the decoder will emulate `precision` (slower than float32).
pub(crate) fn warn_if_emulated(precision: Precision) {
    if !precision.is_native() {
        eprintln!(
            "warning: --decode-precision {precision}: this CPU has no AVX-512 bf16 dot \
             products, so decoding emulates them, slower than float32"
        );
    }
}

/// Usage errors (a bad folder, task or setting) exit with code 2, the rest with 1.
pub(crate) fn into_anyhow(error: trainer::Error) -> anyhow::Error {
    if error.is_usage() {
        bad_input(error)
    } else {
        anyhow::Error::new(error)
    }
}

/// The run's evaluation settings with the flags given applied.
fn settings(args: &EvalArgs, run: EvalSettings) -> Result<EvalSettings> {
    let k = args.k.unwrap_or(run.k);
    // A k asked for gets enough samples; otherwise the run's count stands
    // (0 when the run measured greedy pass@1 only).
    let samples = match (args.samples, args.k) {
        (Some(samples), _) => samples,
        (None, Some(k)) => run.samples.max(k),
        (None, None) => run.samples,
    };
    let temperature = args.temperature.unwrap_or(run.temperature);
    let max_new_tokens = args.max_new_tokens.unwrap_or(run.max_new_tokens);
    if samples > 0 && !(1..=samples).contains(&k) {
        return Err(bad_input(anyhow!(
            "--k {k}: pass@k needs 1 <= k <= samples ({samples})"
        )));
    }
    if samples > 0 && !(temperature.is_finite() && temperature > 0.0) {
        return Err(bad_input(anyhow!(
            "--temperature {temperature}: pass@k samples need a finite temperature > 0"
        )));
    }
    if max_new_tokens == 0 {
        return Err(bad_input(anyhow!("--max-new-tokens must be at least 1")));
    }
    if args.n == Some(0) {
        return Err(bad_input(anyhow!("--n must be at least 1")));
    }
    Ok(EvalSettings {
        samples,
        k,
        temperature,
        max_new_tokens,
        batch_size: run.batch_size,
        decode_precision: args.decode_precision.unwrap_or(run.decode_precision),
    })
}

/// `1,3-5` as [1, 3, 4, 5].
fn parse_levels(text: &str) -> Result<Vec<u32>> {
    let bad = |item: &str| {
        bad_input(anyhow!(
            "--levels: '{item}' is not a level or a range such as 2-4"
        ))
    };
    let mut levels = Vec::new();
    for item in text.split(',').map(str::trim) {
        let (low, high) = item.split_once('-').unwrap_or((item, item));
        let low: u32 = low.trim().parse().map_err(|_| bad(item))?;
        let high: u32 = high.trim().parse().map_err(|_| bad(item))?;
        if low > high {
            return Err(bad(item));
        }
        levels.extend(low..=high);
    }
    Ok(levels)
}

/// A headline naming the checkpoint, then the trainer's table rows.
fn table(checkpoint: &Checkpoint, record: &EvalRecord) -> String {
    let mut out = format!("{}", checkpoint.dir.display());
    if let Some((phase, step, global_step)) = checkpoint.position() {
        out.push_str(&format!(
            " ({phase} step {step}, global step {global_step})"
        ));
    }
    out.push_str(&format!(": pass@1 {:.3}", record.overall.pass_at_1));
    if let (Some(k), Some(v)) = (record.k, record.overall.pass_at_k) {
        out.push_str(&format!("  pass@{k} {v:.3}"));
    }
    out.push_str(&format!(
        "  ({} problems, {:.1} s)\n",
        record.overall.problems, record.seconds
    ));
    let full = render_table(record);
    let rows = full.split_once('\n').map_or("", |(_, rows)| rows);
    out.push_str(rows);
    out
}

/// The evaluation as JSON: eval.jsonl's keys, the checkpoint and the
/// settings used. A plain model folder has no phase or steps.
fn report(
    checkpoint: &Checkpoint,
    record: &EvalRecord,
    settings: &EvalSettings,
    per_entry: usize,
    seed: Option<u64>,
) -> serde_json::Value {
    let mut json = serde_json::to_value(record).unwrap_or_default();
    if let Some(map) = json.as_object_mut() {
        if checkpoint.position().is_none() {
            for key in ["phase", "step", "global_step"] {
                map.remove(key);
            }
        }
        let extra = serde_json::json!({
            "checkpoint": checkpoint.dir.display().to_string(),
            "problems_per_task": per_entry,
            "samples": settings.samples,
            "temperature": settings.temperature,
            "max_new_tokens": settings.max_new_tokens,
            "seed": seed.unwrap_or_else(|| checkpoint.seed()),
        });
        if let Some(extra) = extra.as_object() {
            map.extend(extra.clone());
        }
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_take_lists_and_ranges() {
        assert_eq!(parse_levels("1,3-5").unwrap(), [1, 3, 4, 5]);
        assert_eq!(parse_levels(" 2 ").unwrap(), [2]);
        for bad in ["", "x", "3-1", "1,,2", "-2"] {
            assert!(parse_levels(bad).is_err(), "{bad}");
        }
    }
}
