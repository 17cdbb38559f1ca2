//! `verity tasks`: list the families, show problems, export them as JSONL,
//! and check completions against their verifiers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use tasks::{Problem, Split, Verdict};

use crate::bad_input;

#[derive(Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    command: TasksCommand,
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Families, their levels, and what each level means.
    List,
    /// Prompts, answers and worked solutions of training problems.
    Show {
        /// Family name (see `verity tasks list`).
        name: String,
        /// Difficulty level.
        #[arg(long)]
        level: u32,
        /// How many problems.
        #[arg(long, default_value_t = 3)]
        n: u64,
        /// Index of the first problem; problem i uses seed S+i.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Problems as JSON Lines, one per line.
    Export {
        /// Family name.
        #[arg(long)]
        task: String,
        /// Difficulty level.
        #[arg(long)]
        level: u32,
        /// Which split to draw from.
        #[arg(long, value_enum)]
        split: SplitArg,
        /// How many problems.
        #[arg(long)]
        n: u64,
        /// Index of the first problem; problem i uses seed S+i (held-out
        /// indices run over the canonical held-out set).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify completions: reads exported lines, each with a `completion`
    /// field, and prints one JSON verdict per line, then a summary on stderr.
    Check {
        /// JSONL file of problems with completions.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Heldout,
}

impl From<SplitArg> for Split {
    fn from(arg: SplitArg) -> Self {
        match arg {
            SplitArg::Train => Split::Train,
            SplitArg::Heldout => Split::Heldout,
        }
    }
}

/// Run one `verity tasks` subcommand.
pub fn run(args: TasksArgs) -> Result<()> {
    match args.command {
        TasksCommand::List => list(),
        TasksCommand::Show {
            name,
            level,
            n,
            seed,
        } => show(&name, level, n, seed),
        TasksCommand::Export {
            task,
            level,
            split,
            n,
            seed,
            out,
        } => export(&task, level, split.into(), n, seed, out),
        TasksCommand::Check { file } => check(file),
    }
}

fn list() -> Result<()> {
    let mut out = std::io::stdout().lock();
    let families = tasks::all();
    writeln!(
        out,
        "{} families; held-out sets {} ({}/{})\n",
        families.len(),
        tasks::HELDOUT_VERSION,
        tasks::HELDOUT_DIR,
        tasks::HELDOUT_VERSION
    )?;
    for task in families {
        let levels = task.levels();
        writeln!(
            out,
            "{:<12} {} (levels {}-{})",
            task.name(),
            task.summary(),
            levels.start(),
            levels.end()
        )?;
        for level in levels {
            let held = task.heldout_size(level);
            let note = if held == tasks::HELDOUT_SIZE {
                String::new()
            } else {
                format!(" [{held} held out]")
            };
            writeln!(out, "  L{level:<3} {}{note}", task.level_doc(level))?;
        }
    }
    Ok(())
}

fn show(name: &str, level: u32, n: u64, seed: u64) -> Result<()> {
    let problems = problems(name, level, Split::Train, n, seed)?;
    let mut out = std::io::stdout().lock();
    for problem in problems {
        writeln!(out, "== {}", problem.id)?;
        writeln!(out, "prompt:   {}", problem.prompt)?;
        writeln!(out, "answer:   {}", problem.answer)?;
        writeln!(out, "solution:\n{}\n", problem.solution)?;
    }
    Ok(())
}

fn export(
    task: &str,
    level: u32,
    split: Split,
    n: u64,
    seed: u64,
    out: Option<PathBuf>,
) -> Result<()> {
    // Make every problem before writing anything, so bad input leaves no
    // half-written file.
    let problems = problems(task, level, split, n, seed)?;
    match out {
        Some(path) => {
            let write = || -> std::io::Result<()> {
                let mut file = BufWriter::new(File::create(&path)?);
                tasks::write_problems(&mut file, &problems)?;
                file.flush()
            };
            write().with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            tasks::write_problems(&mut stdout, &problems)?;
            Ok(stdout.flush()?)
        }
    }
}

/// Problems `seed..seed + n` of a split.
fn problems(task: &str, level: u32, split: Split, n: u64, seed: u64) -> Result<Vec<Problem>> {
    let end = seed
        .checked_add(n)
        .ok_or_else(|| bad_input(anyhow::anyhow!("--seed {seed} plus --n {n} overflows")))?;
    (seed..end)
        .map(|index| tasks::problem(task, level, split, index).map_err(anyhow::Error::from))
        .collect()
}

fn check(file: PathBuf) -> Result<()> {
    let lines = tasks::read_completions(&file).map_err(bad_input)?;
    let mut out = std::io::stdout().lock();
    let (mut reward_sum, mut full, mut format_ok) = (0.0, 0usize, 0usize);
    for line in &lines {
        let verdict = line.problem.verify(&line.completion);
        reward_sum += verdict.reward;
        full += usize::from(verdict.reward >= 1.0);
        format_ok += usize::from(verdict.format_ok);
        writeln!(out, "{}", verdict_line(&line.problem.id, &verdict)?)?;
    }
    out.flush()?;
    let count = lines.len();
    let mean = if count == 0 {
        0.0
    } else {
        reward_sum / count as f64
    };
    eprintln!(
        "checked {count} completions: mean reward {mean:.3}, reward 1 on {full}, format ok on {format_ok}"
    );
    Ok(())
}

/// `{"id": ..., "reward": ..., "format_ok": ..., "extracted": ..., "reason": ...}`.
fn verdict_line(id: &str, verdict: &Verdict) -> Result<String> {
    let fields = serde_json::to_string(verdict)?;
    let rest = fields.strip_prefix('{').unwrap_or(&fields);
    Ok(format!("{{\"id\":{},{rest}", serde_json::to_string(id)?))
}
