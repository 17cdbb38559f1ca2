//! Splitting a kernel's work over candle's CPU worker threads, and reading
//! tensors' CPU storage from a backward pass.

use std::ops::Range;

use candle_core::{CpuStorage, Layout, Storage, Tensor, WithDType};

use super::simd::Float;

/// A pointer the worker threads write through; each writes disjoint parts.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
// SAFETY: only used for writes to disjoint ranges, joined before the owner is read.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send + Sync> Sync for SharedMut<T> {}

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

/// `n` zeros, written by the worker threads: a large single-threaded
/// memset was a visible share of a training step.
pub(crate) fn zeros<T: Float>(n: usize) -> Vec<T> {
    const CHUNK: usize = 1 << 16;
    let mut v: Vec<T> = Vec::with_capacity(n);
    let dst = SharedMut(v.as_mut_ptr());
    par_for(n.div_ceil(CHUNK), |range| {
        let span = range.start * CHUNK..(range.end * CHUNK).min(n);
        // SAFETY: inside the capacity, and this task's span only; all-zero
        // bytes are 0.0 for f32 and f64, the floats this crate uses.
        unsafe { dst.ptr().add(span.start).write_bytes(0, span.len()) };
    });
    // SAFETY: every element was written above.
    unsafe { v.set_len(n) };
    v
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

/// A row-major view: data, row stride, column stride.
pub(crate) type View<'a, T> = (&'a [T], usize, usize);

/// `dst (+)= lhs [m, k] * rhs [k, n]` for row-major `dst` with row stride
/// `n`, on the calling thread.
///
/// # Safety
/// `dst` must hold m x n elements no other thread touches during the call.
unsafe fn gemm_serial<T: Float + WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        n as isize,
        false,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        T::ZERO,
        T::ONE,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// `lhs [m, k] * rhs [k, n]` into a new row-major [m, n], split over
/// candle's CPU worker threads (the ones the other kernels use, so none of
/// them spins while another pool computes): by rows when there are many,
/// else by k with the partial products added in a fixed order.
pub(crate) fn product<T: Float + WithDType>(
    m: usize,
    n: usize,
    k: usize,
    lhs: View<T>,
    rhs: View<T>,
) -> Vec<T> {
    let reach = |(v, rs, cs): View<T>, rows: usize, cols: usize| {
        rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < v.len()
    };
    assert!(
        reach(lhs, m, k) && reach(rhs, k, n),
        "product views out of bounds"
    );
    let parts = candle_core::utils::barrier_pool().n_workers() + 1;
    let split = |len: usize, p: usize| len * p / parts..len * (p + 1) / parts;
    if m >= k || parts == 1 {
        let mut out: Vec<T> = Vec::with_capacity(m * n);
        let dst = SharedMut(out.as_mut_ptr());
        par_for(parts, |range| {
            for p in range {
                let rows = split(m, p);
                // SAFETY: the views lie inside their slices (checked above);
                // this task writes rows `rows` of `out` only, every element
                // of them (gemm does not read dst).
                unsafe {
                    let lhs0 = lhs.0.as_ptr().add(rows.start * lhs.1);
                    let dst0 = dst.ptr().add(rows.start * n);
                    let rhs0 = (rhs.0.as_ptr(), rhs.1, rhs.2);
                    gemm_serial((rows.len(), n, k), dst0, (lhs0, lhs.1, lhs.2), rhs0);
                }
            }
        });
        // SAFETY: every row was written above.
        unsafe { out.set_len(m * n) };
        return out;
    }
    let mut partial = zeros::<T>(parts * m * n);
    let dst = SharedMut(partial.as_mut_ptr());
    par_for(parts, |range| {
        for p in range {
            let span = split(k, p);
            // SAFETY: as above; this task writes partial product `p` only.
            unsafe {
                let lhs0 = lhs.0.as_ptr().add(span.start * lhs.2);
                let rhs0 = rhs.0.as_ptr().add(span.start * rhs.1);
                let dst0 = dst.ptr().add(p * m * n);
                let (l, r) = ((lhs0, lhs.1, lhs.2), (rhs0, rhs.1, rhs.2));
                gemm_serial((m, n, span.len()), dst0, l, r);
            }
        }
    });
    let (first, rest) = partial.split_at_mut(m * n);
    for part in rest.chunks_exact(m * n) {
        for (acc, &v) in first.iter_mut().zip(part) {
            let own = *acc;
            *acc = own + v;
        }
    }
    partial.truncate(m * n);
    partial
}
