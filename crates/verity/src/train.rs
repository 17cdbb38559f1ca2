//! `verity train`: run a training config, with a progress bar per phase.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trainer::{Config, Live, Phase, Progress};

use crate::bad_input;

#[derive(Args)]
pub struct TrainArgs {
    /// The run config (TOML). Every key is listed by --help-config.
    #[arg(long, required_unless_present = "help_config")]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set grpo.lr=3e-4` (repeatable; the
    /// value is read as TOML, anything else as a string).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Print every config key with its default and meaning, then exit.
    #[arg(long)]
    help_config: bool,
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.help_config {
        print!("{}", trainer::config_reference());
        return Ok(());
    }
    let Some(path) = args.config else {
        return Err(bad_input(anyhow::anyhow!("--config FILE is required")));
    };
    let config = Config::load(&path, &args.overrides).map_err(into_anyhow)?;
    let mut progress = Bars::default();
    let summary = trainer::train(&config, &mut progress).map_err(into_anyhow)?;
    progress.finish();
    if let Some((before, after)) = summary.grpo_gain() {
        eprintln!(
            "held-out greedy pass@1: {before:.3} when GRPO started -> {after:.3} after it ({:+.1} points)",
            100.0 * (after - before)
        );
    }
    eprintln!(
        "done in {:.0} s: {} steps; logs and checkpoints in {}",
        summary.seconds,
        summary.state.global_step,
        summary.run_dir.display()
    );
    Ok(())
}

/// Usage errors (a bad config) exit with code 2, the rest with 1.
fn into_anyhow(error: trainer::Error) -> anyhow::Error {
    if error.is_usage() {
        bad_input(error)
    } else {
        anyhow::Error::new(error)
    }
}

/// One indicatif bar per phase, on stderr; without a terminal the bars stay
/// hidden and messages are printed as plain lines.
#[derive(Default)]
struct Bars {
    bar: Option<ProgressBar>,
}

impl Bars {
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

impl Progress for Bars {
    fn phase_started(&mut self, phase: Phase, done: u64, total: u64) {
        self.finish();
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>4} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta_precise} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase.name());
        bar.set_position(done);
        bar.enable_steady_tick(Duration::from_millis(500));
        self.bar = Some(bar);
    }

    fn step_finished(&mut self, _phase: Phase, step: u64, live: &Live) {
        if let Some(bar) = &self.bar {
            let mut msg = format!("loss {:.4}", live.loss);
            if let Some(r) = live.reward {
                msg.push_str(&format!("  reward {r:.3}"));
            }
            if let Some(a) = live.accuracy {
                msg.push_str(&format!("  acc {a:.3}"));
            }
            if let Some(p) = live.pass_at_1 {
                msg.push_str(&format!("  held-out pass@1 {p:.3}"));
            }
            bar.set_message(msg);
            bar.set_position(step);
        }
    }

    fn phase_finished(&mut self, _phase: Phase) {
        self.finish();
    }

    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }
}
