//! `verity train`: run a training config, with a progress bar per phase,
//! or resume a stopped run with `--resume OUT_DIR/NAME`.
//!
//! Ctrl-C (SIGINT) or SIGTERM asks the run to stop: the step under way
//! finishes, a checkpoint is written, the command to resume is printed, and
//! verity exits with code 130. A second signal exits at once (a checkpoint
//! being written then is left incomplete, and resume skips it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trainer::{Config, Live, Phase, Progress};

use crate::bad_input;

#[derive(Args)]
pub struct TrainArgs {
    /// The run config (TOML). Every key is listed by --help-config.
    #[arg(long, required_unless_present_any = ["help_config", "resume"])]
    config: Option<PathBuf>,
    /// Continue the run in this folder (OUT_DIR/NAME) from its newest
    /// complete checkpoint, with its saved config. `--config` and `--set`
    /// may change only the phases' steps and micro-batches, evaluation,
    /// checkpoint and log settings, threads and device (configs/README.md
    /// lists them); another changed key is an error naming it.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
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
    let config = match (&args.resume, &args.config) {
        (Some(run_dir), config) => {
            Config::for_resume(run_dir, config.as_deref(), &args.overrides).map_err(into_anyhow)?
        }
        (None, Some(path)) => Config::load(path, &args.overrides).map_err(into_anyhow)?,
        (None, None) => return Err(bad_input(anyhow::anyhow!("--config FILE is required"))),
    };
    install_stop_handlers();
    let mut progress = Bars::default();
    let summary = match args.resume {
        Some(_) => trainer::resume(&config, &mut progress, &STOP),
        None => trainer::train_until(&config, &mut progress, &STOP),
    }
    .map_err(into_anyhow)?;
    progress.finish();
    if summary.stopped {
        let checkpoint = summary.last_checkpoint.as_deref().unwrap_or(Path::new("?"));
        eprintln!(
            "stopped at step {}; checkpoint {}\nto continue: verity train --resume {}",
            summary.state.global_step,
            checkpoint.display(),
            summary.run_dir.display()
        );
        eprintln!(
            "report: {}",
            summary.run_dir.join(report::REPORT_FILE).display()
        );
        std::process::exit(130);
    }
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
    let report = summary.run_dir.join(report::REPORT_FILE);
    if report.is_file() {
        eprintln!("report: {}", report.display());
    }
    Ok(())
}

/// Set by SIGINT or SIGTERM: the run stops after its current step.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
    let note = b"\nstopping after this step, then writing a checkpoint (again to quit at once)\n";
    // SAFETY: write is async-signal-safe; the buffer is static.
    unsafe { libc::write(2, note.as_ptr().cast(), note.len()) };
}

/// Routes SIGINT and SIGTERM to [`STOP`]. The handler only stores to an
/// atomic and writes a fixed message, both allowed in a signal handler.
fn install_stop_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_stop_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler is async-signal-safe (see above).
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
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

    /// Rewrites RUN_DIR/report.html, so a page kept open shows the run so
    /// far on reload. A report that cannot be written does not stop training.
    fn logs_updated(&mut self, run_dir: &Path) {
        let out = run_dir.join(report::REPORT_FILE);
        if let Err(e) = report::write_report(&[run_dir.to_path_buf()], &out) {
            self.message(&format!("warning: report not written: {e}"));
        }
    }
}
