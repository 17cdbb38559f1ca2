//! Peak resident memory of the process, for metrics.jsonl's `peak_rss_mb`.
//!
//! Linux keeps the high-water mark of the resident set (`VmHWM` in
//! /proc/self/status) and resets it when "5" is written to
//! /proc/self/clear_refs, so a step's peak is read by resetting it when the
//! step starts and reading it when the step ends. Where the reset is not
//! allowed the figure is the peak since the process started; elsewhere
//! (other systems) there is no figure.

/// Starts a new peak: the next [`peak_rss_mb`] reports the largest resident
/// set from now on (where the system allows the reset).
pub(crate) fn reset_peak_rss() {
    #[cfg(target_os = "linux")]
    {
        // Failure only means the peak keeps counting from the process start.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
}

/// The largest resident set since the last [`reset_peak_rss`], in MB
/// (10^6 bytes); None where the system does not report it.
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib * 1024.0 / 1e6).round())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn peak_follows_a_large_allocation_and_resets() {
        reset_peak_rss();
        let before = peak_rss_mb().expect("VmHWM on Linux");
        // 200 MB, touched so it is resident.
        let block = std::hint::black_box(vec![1u8; 200_000_000]);
        let during = peak_rss_mb().unwrap();
        assert!(during >= before + 150.0, "{before} -> {during}");
        drop(block);
        reset_peak_rss();
        let after = peak_rss_mb().unwrap();
        assert!(after < during - 150.0, "reset: {during} -> {after}");
    }
}
