//! `verity`: train small language models to reason with reinforcement
//! learning from verifiable rewards.
//!
//! This file only parses the command line, hands each subcommand to its own
//! module, and turns errors into messages and exit codes:
//!
//! * 0: success;
//! * 1: a failure while running (a write failed, training diverged, ...);
//! * 2: bad usage or bad input: clap's own usage errors, and any error whose
//!   chain holds a [`BadInput`] or a `tasks::Error` that is the caller's
//!   input (unknown task, level out of range, malformed JSONL line).
//! * 130: `verity train` stopped by Ctrl-C or SIGTERM after writing a
//!   checkpoint (`verity train --resume OUT_DIR/NAME` continues it).
//!
//! Errors print as `error: <message>`, then one `caused by: <cause>` line per
//! underlying cause, on stderr, without a backtrace.

mod eval_cmd;
mod report_cmd;
mod sample_cmd;
mod tasks_cmd;
mod train;

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "verity",
    version,
    about = "Train small language models to reason with verifiable rewards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List, show, export and check problems of the task families.
    Tasks(tasks_cmd::TasksArgs),
    /// Train a model as a config file says: SFT, then GRPO, with held-out
    /// evaluations and checkpoints.
    Train(train::TrainArgs),
    /// Measure greedy pass@1 and sampled pass@k per task and level on
    /// held-out problems, for a run checkpoint, a Hugging Face model folder
    /// or a GGUF file.
    Eval(eval_cmd::EvalArgs),
    /// Print what a model writes for held-out problems (with verdicts) or a
    /// prompt of your own.
    Sample(sample_cmd::SampleArgs),
    /// Write one offline HTML page with the curves and tables of run
    /// folders (several are overlaid) and print its path.
    Report(report_cmd::ReportArgs),
}

fn main() -> ExitCode {
    policy::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tasks(args) => tasks_cmd::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Sample(args) => sample_cmd::run(args),
        Command::Report(args) => report_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Marks an error as the user's input (a file, a value, a config key) so it
/// exits with code 2. Wrap with [`bad_input`].
#[derive(Debug)]
pub struct BadInput(anyhow::Error);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for BadInput {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// `error`, marked as bad input (exit code 2).
pub fn bad_input(error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(BadInput(error.into()))
}

fn exit_code(error: &anyhow::Error) -> u8 {
    let is_input = |cause: &(dyn std::error::Error + 'static)| {
        cause.is::<BadInput>()
            || cause
                .downcast_ref::<tasks::Error>()
                .is_some_and(tasks::Error::is_bad_input)
    };
    if error.chain().any(is_input) {
        2
    } else {
        1
    }
}

fn report(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
}
