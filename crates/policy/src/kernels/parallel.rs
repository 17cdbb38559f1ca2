//! Splitting a kernel's work over candle's CPU worker threads, and reading
//! tensors' CPU storage from a backward pass.

use std::ops::Range;

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// A pointer the worker threads write through; each writes disjoint parts.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
// SAFETY: only used for writes to disjoint ranges, joined before the owner is read.
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Through a method, so closures capture the wrapper, not the raw pointer.
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }

    /// Elements `range` as a slice.
    ///
    /// # Safety
    /// The range must lie inside the allocation and no other thread may use it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, range: Range<usize>) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(range.start), range.len())
    }
}

/// Runs `f` over chunks of `0..n` on candle's CPU worker pool.
pub(crate) fn par_for(n: usize, f: impl Fn(Range<usize>) + Sync) {
    candle_core::utils::barrier_pool().execute_chunked(n, f);
}

/// Calls `f` with the CPU storage and layout of each tensor.
pub(crate) fn with_cpu<R>(
    tensors: &[&Tensor],
    f: impl FnOnce(&[(&CpuStorage, &Layout)]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut cpu = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(s) => cpu.push((s, *layout)),
            _ => candle_core::bail!("fused kernels take CPU tensors only"),
        }
    }
    f(&cpu)
}

/// The contiguous data of a CPU tensor as `T`.
pub(crate) fn cpu_slice<'a, T: candle_core::WithDType>(
    (s, l): (&'a CpuStorage, &Layout),
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&T::cpu_storage_as_slice(s)?[a..b]),
        None => candle_core::bail!("fused kernels take contiguous inputs"),
    }
}
