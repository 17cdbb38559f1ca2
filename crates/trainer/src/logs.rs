//! The run folder's JSON Lines logs: metrics.jsonl, samples.jsonl and
//! eval.jsonl. Each record is one line, flushed at once, so a run stopped at
//! any moment leaves whole lines behind.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// One step's metrics per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Sampled completions with their verdicts.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// One evaluation per line.
pub const EVAL_FILE: &str = "eval.jsonl";

/// An append-only JSON Lines file.
pub(crate) struct Jsonl {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Jsonl {
    /// Opens `path` for appending, creating it.
    pub(crate) fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Writes `record` as one line and flushes it.
    pub(crate) fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::bad_file(&self.path, format!("cannot serialise a record: {e}")))?;
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The three logs of a run folder.
pub(crate) struct RunLogs {
    pub(crate) metrics: Jsonl,
    pub(crate) samples: Jsonl,
    pub(crate) eval: Jsonl,
}

impl RunLogs {
    /// Opens (appending to) the logs in `run_dir`.
    pub(crate) fn open(run_dir: &Path) -> Result<Self> {
        Ok(Self {
            metrics: Jsonl::append(&run_dir.join(METRICS_FILE))?,
            samples: Jsonl::append(&run_dir.join(SAMPLES_FILE))?,
            eval: Jsonl::append(&run_dir.join(EVAL_FILE))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_whole_lines_and_appends_keep_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut log = Jsonl::append(&path).unwrap();
        log.write(&serde_json::json!({"step": 1, "loss": 0.5}))
            .unwrap();
        drop(log);
        let mut log = Jsonl::append(&path).unwrap();
        log.write(&serde_json::json!({"step": 2, "loss": f64::NAN}))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![r#"{"loss":0.5,"step":1}"#, r#"{"loss":null,"step":2}"#]
        );
    }
}
