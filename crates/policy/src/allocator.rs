//! The one process-wide allocator setting a program training on the CPU
//! should make.

/// Keeps large freed blocks in glibc's heap instead of handing them back to
/// the system. By default glibc returns them and faults fresh zeroed pages in
/// on the next allocation; a training step frees and reallocates its
/// activations that way every time (measured: 23% of a training pass).
/// Call it first thing in `main`, before any other thread starts; it does
/// nothing outside Linux with glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; the caller calls
    // it before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        // Blocks above the mmap threshold (at most 32 MiB) would still be
        // mapped and unmapped each time, their pages faulted in afresh.
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}
