//! verity's run report: one self-contained HTML file with the curves and
//! tables of one or more training runs, readable offline.
//!
//! It reads only what a run folder holds (config.toml, metrics.jsonl,
//! eval.jsonl, samples.jsonl, budgets.jsonl), so it works on a run that is
//! still going, was stopped, or was resumed, and depends on nothing of the
//! trainer. Plots are drawn with plotters' SVG backend and inlined; the page
//! has no script and fetches nothing.
//!
//! - [`RunLog::read`] reads a run folder (a folder that is not one is an
//!   [`Error::NotARun`] saying why);
//! - [`render`] draws runs into the page: one colour per run, the SFT/GRPO
//!   boundary marked, plots only for what the runs logged;
//! - [`write_report`] does both and writes the file.
//!
//! ```
//! let run = tempfile::tempdir().unwrap();
//! std::fs::write(
//!     run.path().join("metrics.jsonl"),
//!     "{\"phase\":\"sft\",\"step\":1,\"global_step\":1,\"loss\":2.5}\n\
//!      {\"phase\":\"sft\",\"step\":2,\"global_step\":2,\"loss\":1.5}\n",
//! )
//! .unwrap();
//! let out = run.path().join("report.html");
//! report::write_report(&[run.path().to_path_buf()], &out)?;
//! let html = std::fs::read_to_string(&out).unwrap();
//! assert!(html.contains("data-plot=\"loss\""));
//! assert!(!html.contains("data-plot=\"reward\""));
//! # Ok::<(), report::Error>(())
//! ```

mod chart;
mod error;
mod page;
mod plots;
mod read;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use read::{
    BudgetLine, BudgetPoint, EvalLine, EvalScore, ExampleLine, RunLog, SampleLine, StepRecord,
    TaskLine, VerdictLine, BUDGETS_FILE, CONFIG_FILE, EVAL_FILE, METRICS_FILE, SAMPLES_FILE,
};

/// The report's file name inside a run folder.
pub const REPORT_FILE: &str = "report.html";

/// The page for `runs`, overlaid in the order given.
pub fn render(runs: &[RunLog]) -> Result<String> {
    page::render(runs)
}

/// Reads every run in `run_dirs` and writes their report to `out`,
/// replacing it whole (written beside it, then renamed, so a browser never
/// reads half a page).
pub fn write_report(run_dirs: &[PathBuf], out: &Path) -> Result<()> {
    let runs = run_dirs
        .iter()
        .map(|dir| RunLog::read(dir))
        .collect::<Result<Vec<_>>>()?;
    let html = render(&runs)?;
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}
