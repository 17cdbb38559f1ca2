//! `verity report`: one self-contained HTML page with the curves and tables
//! of one or more run folders, overlaid; prints where it wrote it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::bad_input;

#[derive(Args)]
pub struct ReportArgs {
    /// Run folders (OUT_DIR/NAME); several are overlaid, one colour each.
    #[arg(value_name = "RUN_DIR", required = true)]
    runs: Vec<PathBuf>,
    /// Where to write the page. Default: RUN_DIR/report.html for one run,
    /// ./report.html for several.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let out = match (&args.out, args.runs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [one]) => one.join(report::REPORT_FILE),
        (None, _) => PathBuf::from(report::REPORT_FILE),
    };
    report::write_report(&args.runs, &out).map_err(into_anyhow)?;
    println!("{}", out.display());
    Ok(())
}

/// A folder that is not a run, or a run file that cannot be read, exits with
/// code 2; a failure to write with 1.
pub(crate) fn into_anyhow(error: report::Error) -> anyhow::Error {
    if error.is_bad_input() {
        bad_input(error)
    } else {
        anyhow::Error::new(error)
    }
}
