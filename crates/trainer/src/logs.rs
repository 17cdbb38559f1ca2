//! The run folder's JSON Lines logs: metrics.jsonl, samples.jsonl and
//! eval.jsonl. Each record is one line, flushed at once, so a run stopped at
//! any moment leaves whole lines behind. Checkpoints record the logs'
//! lengths ([`LogPositions`]); a resumed run cuts the logs back to them, so
//! lines the interrupted attempt wrote after its last checkpoint are dropped
//! and written again, once, by the resumed run.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One step's metrics per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Sampled completions with their verdicts.
pub const SAMPLES_FILE: &str = "samples.jsonl";
/// One evaluation per line.
pub const EVAL_FILE: &str = "eval.jsonl";

/// Whether a log field measures the machine rather than the run: wall
/// times (`*_s`, `time/*`, `seconds`) and the memory peak. Two runs of one
/// config and seed agree on every other field, bit for bit.
pub fn is_measurement(key: &str) -> bool {
    key.ends_with("_s") || key.starts_with("time/") || key == "seconds" || key == "peak_rss_mb"
}

/// Byte lengths of a run's three logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPositions {
    /// Length of metrics.jsonl.
    pub metrics: u64,
    /// Length of samples.jsonl.
    pub samples: u64,
    /// Length of eval.jsonl.
    pub eval: u64,
}

/// An append-only JSON Lines file.
pub(crate) struct Jsonl {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file, written lines included.
    len: u64,
}

impl Jsonl {
    /// Opens `path` for appending, creating it.
    pub(crate) fn append(path: &Path) -> Result<Self> {
        Self::open(path, None)
    }

    /// Opens `path` for appending, first cutting it to `keep` bytes when it
    /// is longer.
    fn open(path: &Path, keep: Option<u64>) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if let Some(keep) = keep.filter(|&k| k < len) {
            file.set_len(keep).map_err(|e| Error::io(path, e))?;
            len = keep;
        }
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            len,
        })
    }

    /// Writes `record` as one line and flushes it.
    pub(crate) fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::bad_file(&self.path, format!("cannot serialise a record: {e}")))?;
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))?;
        self.len += line.len() as u64 + 1;
        Ok(())
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

    /// Opens the logs of a resumed run, cut back to where a checkpoint
    /// left them.
    pub(crate) fn resume(run_dir: &Path, at: &LogPositions) -> Result<Self> {
        Ok(Self {
            metrics: Jsonl::open(&run_dir.join(METRICS_FILE), Some(at.metrics))?,
            samples: Jsonl::open(&run_dir.join(SAMPLES_FILE), Some(at.samples))?,
            eval: Jsonl::open(&run_dir.join(EVAL_FILE), Some(at.eval))?,
        })
    }

    /// The logs' current lengths.
    pub(crate) fn positions(&self) -> LogPositions {
        LogPositions {
            metrics: self.metrics.len,
            samples: self.samples.len,
            eval: self.eval.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_are_times_and_memory() {
        for key in [
            "step_s",
            "tokens_per_s",
            "time/backward_s",
            "seconds",
            "peak_rss_mb",
        ] {
            assert!(is_measurement(key), "{key}");
        }
        for key in [
            "loss",
            "reward_std",
            "num_tokens",
            "completions/max_length",
            "step",
        ] {
            assert!(!is_measurement(key), "{key}");
        }
    }

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
