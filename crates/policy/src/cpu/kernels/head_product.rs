//! The products inside attention, one (sequence, head) at a time: queries
//! [len, D] by keys [D, prefix + len] and back. They are too small for a
//! general GEMM's packing to pay for itself, and causal: a block of query
//! rows needs only the keys up to its last row, and a block of key rows (in
//! the backward's key and value gradients) only the queries from its first
//! row on, so each block of output rows says how far it reads.
//!
//! Every output element is summed in order of k with fused multiply-adds,
//! on every CPU, so the AVX-512 path and the portable one give the same bits.

use std::ops::Range;

use crate::cpu::simd::Float;

/// Output rows computed together: what `by_rows!` dispatches on.
pub(super) const TILE: usize = crate::cpu::simd::MAX_BLOCK_ROWS;
/// Output columns computed together: two AVX-512 vectors of f32.
const LANES: usize = 32;

/// A matrix read one element at a time: pointer, row stride, column stride.
#[derive(Clone, Copy)]
pub(super) struct Strided<T> {
    pub(super) ptr: *const T,
    pub(super) row: usize,
    pub(super) col: usize,
}

/// A matrix of contiguous rows: pointer and row stride.
#[derive(Clone, Copy)]
pub(super) struct Rows<P> {
    pub(super) ptr: P,
    pub(super) stride: usize,
}

/// What one block of output rows reads: its range of k, and how many of
/// its columns it writes (the rest are left as they are).
pub(super) struct Reach {
    pub(super) depth: Range<usize>,
    pub(super) cols: usize,
}

/// The float types the products run on: the portable loop, which f32 on
/// AVX-512 replaces.
pub(super) trait ProductFloat: Float {
    /// One block of `rows` (at most [`TILE`]) output rows; see [`product`].
    ///
    /// # Safety
    /// As [`product`], for these rows.
    unsafe fn tile(
        rows: usize,
        a: Strided<Self>,
        b: Rows<*const Self>,
        reach: Reach,
        c: Rows<*mut Self>,
        accumulate: bool,
    ) {
        // SAFETY: as this function's.
        unsafe { portable::tile_dispatch(rows, a, b, reach, c, accumulate) }
    }
}

impl ProductFloat for f32 {
    unsafe fn tile(
        rows: usize,
        a: Strided<f32>,
        b: Rows<*const f32>,
        reach: Reach,
        c: Rows<*mut f32>,
        accumulate: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::simd::level() == crate::cpu::simd::Level::Avx512 {
            // SAFETY: the CPU has AVX-512F; the caller vouches for the views.
            return unsafe { avx512::tile(rows, a, b, reach, c, accumulate) };
        }
        // SAFETY: as this function's.
        unsafe { portable::tile_dispatch(rows, a, b, reach, c, accumulate) }
    }
}

impl ProductFloat for f64 {}

/// Where the block of output rows holding row `i` of `m` ends, as
/// [`product`] blocks them.
pub(super) fn block_end(i: usize, m: usize) -> usize {
    ((i / TILE + 1) * TILE).min(m)
}

/// `c[i, j] = (c[i, j] +) Σ_k a[i, k] b[k, j]` for the `m` rows of `c`, in
/// blocks of [`TILE`] rows: `reach(rows)` gives a block's range of k and the
/// columns j it writes. Terms outside that range must be zero for the
/// result to be the full product (the caller's causal mask makes them so).
///
/// # Safety
/// `a` must be readable at every (row, k) of a block's reach, `b` at every
/// (k, column) of it, and `c`'s columns of a block's rows writable by this
/// thread alone; when `accumulate`, those columns must be initialised.
pub(super) unsafe fn product<T: ProductFloat>(
    m: usize,
    c: Rows<*mut T>,
    a: Strided<T>,
    b: Rows<*const T>,
    accumulate: bool,
    reach: impl Fn(Range<usize>) -> Reach,
) {
    for r0 in (0..m).step_by(TILE) {
        let rows = block_end(r0, m) - r0;
        let block_reach = reach(r0..r0 + rows);
        // SAFETY: rows r0.. of a and c, as the caller vouches.
        unsafe {
            let a_rows = Strided {
                ptr: a.ptr.add(r0 * a.row),
                ..a
            };
            let c_rows = Rows {
                ptr: c.ptr.add(r0 * c.stride),
                stride: c.stride,
            };
            T::tile(rows, a_rows, b, block_reach, c_rows, accumulate);
        }
    }
}

mod portable {
    use super::*;

    /// [`tile`] compiled with FMA where the CPU has it (else `mul_add`
    /// rounds the same way, more slowly).
    ///
    /// # Safety
    /// As [`super::product`].
    pub(super) unsafe fn tile_dispatch<T: Float>(
        rows: usize,
        a: Strided<T>,
        b: Rows<*const T>,
        reach: Reach,
        c: Rows<*mut T>,
        accumulate: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<T: Float>(
                rows: usize,
                a: Strided<T>,
                b: Rows<*const T>,
                reach: Reach,
                c: Rows<*mut T>,
                accumulate: bool,
            ) {
                // SAFETY: as the caller's.
                unsafe { tile(rows, a, b, reach, c, accumulate) }
            }
            if crate::cpu::simd::level() != crate::cpu::simd::Level::Baseline {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { avx2(rows, a, b, reach, c, accumulate) };
            }
        }
        // SAFETY: as this function's.
        unsafe { tile(rows, a, b, reach, c, accumulate) }
    }

    /// # Safety
    /// As [`super::product`].
    #[inline(always)]
    pub(super) unsafe fn tile<T: Float>(
        rows: usize,
        a: Strided<T>,
        b: Rows<*const T>,
        Reach { depth, cols }: Reach,
        c: Rows<*mut T>,
        accumulate: bool,
    ) {
        for c0 in (0..cols).step_by(LANES) {
            let width = LANES.min(cols - c0);
            let mut acc = [[T::ZERO; LANES]; TILE];
            for k in depth.clone() {
                // SAFETY: row k of b, columns c0..c0 + width.
                let b_row =
                    unsafe { std::slice::from_raw_parts(b.ptr.add(k * b.stride + c0), width) };
                for (r, acc) in acc[..rows].iter_mut().enumerate() {
                    // SAFETY: (r, k) of a.
                    let x = unsafe { *a.ptr.add(r * a.row + k * a.col) };
                    for (s, &y) in acc.iter_mut().zip(b_row) {
                        *s = x.mul_add(y, *s);
                    }
                }
            }
            for (r, acc) in acc[..rows].iter().enumerate() {
                // SAFETY: row r of c, columns c0..c0 + width: the caller's.
                let out =
                    unsafe { std::slice::from_raw_parts_mut(c.ptr.add(r * c.stride + c0), width) };
                for (o, &s) in out.iter_mut().zip(acc) {
                    *o = if accumulate { *o + s } else { s };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Reach, Rows, Strided, LANES};
    use crate::cpu::simd::by_rows;

    /// [`super::portable::tile`] on f32 with AVX-512: the block's rows in
    /// registers, two vectors of columns at a time.
    ///
    /// # Safety
    /// As [`super::product`]; the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile(
        rows: usize,
        a: Strided<f32>,
        b: Rows<*const f32>,
        reach: Reach,
        c: Rows<*mut f32>,
        accumulate: bool,
    ) {
        // SAFETY: as this function's.
        unsafe { by_rows!(rows, block(a, b, &reach, c, accumulate)) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const ROWS: usize>(
        a: Strided<f32>,
        b: Rows<*const f32>,
        Reach { depth, cols }: &Reach,
        c: Rows<*mut f32>,
        accumulate: bool,
    ) {
        let lanes = |n: usize| -> __mmask16 {
            match n {
                n if n >= 16 => 0xffff,
                n => (1u16 << n) - 1,
            }
        };
        for c0 in (0..*cols).step_by(LANES) {
            let width = LANES.min(cols - c0);
            let (m0, m1) = (lanes(width), lanes(width.saturating_sub(16)));
            let mut lo = [_mm512_setzero_ps(); ROWS];
            let mut hi = [_mm512_setzero_ps(); ROWS];
            // SAFETY (loads): the lanes of row k of b the masks keep, and
            // (r, k) of a, as the caller vouches; masked lanes are not read.
            if width > 16 {
                for k in depth.clone() {
                    let b_row = b.ptr.add(k * b.stride + c0);
                    let b0 = _mm512_loadu_ps(b_row);
                    let b1 = _mm512_maskz_loadu_ps(m1, b_row.add(16));
                    for r in 0..ROWS {
                        let x = _mm512_set1_ps(*a.ptr.add(r * a.row + k * a.col));
                        lo[r] = _mm512_fmadd_ps(x, b0, lo[r]);
                        hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
                    }
                }
            } else {
                for k in depth.clone() {
                    let b0 = _mm512_maskz_loadu_ps(m0, b.ptr.add(k * b.stride + c0));
                    for (r, lo) in lo.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*a.ptr.add(r * a.row + k * a.col));
                        *lo = _mm512_fmadd_ps(x, b0, *lo);
                    }
                }
            }
            for r in 0..ROWS {
                let out = c.ptr.add(r * c.stride + c0);
                // wrapping: with 16 columns or fewer the high half is fully
                // masked and this address may lie past the end of c.
                let high = out.wrapping_add(16);
                let (mut v0, mut v1) = (lo[r], hi[r]);
                if accumulate {
                    v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, out), v0);
                    v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, high), v1);
                }
                _mm512_mask_storeu_ps(out, m0, v0);
                _mm512_mask_storeu_ps(high, m1, v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        // A small linear congruential sequence: deterministic, varied signs.
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    type Tile = unsafe fn(usize, Strided<f32>, Rows<*const f32>, Reach, Rows<*mut f32>, bool);

    /// Runs `product` on f32 with the given tile function and on the
    /// definition in f64, at a transposed `a` and an offset `b`.
    fn check_shapes(tile: Tile) -> Vec<Vec<f32>> {
        let mut outputs = Vec::new();
        for (m, n, k, first) in [
            (1, 1, 1, 0),
            (7, 5, 9, 0),
            (8, 16, 3, 2),
            (9, 17, 40, 0),
            (20, 33, 64, 5),
            (21, 70, 47, 3),
        ] {
            for accumulate in [false, true] {
                // a is [k, m] in memory, read as [m, k] (row stride 1, column stride m).
                let a = values(m * k, 1);
                let b_stride = n + 3;
                let b = values(k * b_stride, 2);
                let c_stride = n + 2;
                let start = values(m * c_stride, 3);
                let mut c = start.clone();
                // Causal both ways: k from the block's first row on, and
                // columns up to `first` past its last row.
                let reach = |rows: Range<usize>| Reach {
                    depth: rows.start.min(k)..k,
                    cols: (first + rows.end).min(n),
                };
                for r0 in (0..m).step_by(TILE) {
                    let rows = TILE.min(m - r0);
                    // SAFETY: every view lies inside its vector.
                    unsafe {
                        tile(
                            rows,
                            Strided {
                                ptr: a.as_ptr().add(r0),
                                row: 1,
                                col: m,
                            },
                            Rows {
                                ptr: b.as_ptr(),
                                stride: b_stride,
                            },
                            reach(r0..r0 + rows),
                            Rows {
                                ptr: c.as_mut_ptr().add(r0 * c_stride),
                                stride: c_stride,
                            },
                            accumulate,
                        )
                    };
                }
                for i in 0..m {
                    let r0 = i / TILE * TILE;
                    let Reach { depth, cols } = reach(r0..(r0 + TILE).min(m));
                    for j in 0..c_stride {
                        let old = start[i * c_stride + j] as f64;
                        let expected = if j < cols {
                            let sum: f64 = depth
                                .clone()
                                .map(|kk| a[kk * m + i] as f64 * b[kk * b_stride + j] as f64)
                                .sum();
                            if accumulate {
                                old + sum
                            } else {
                                sum
                            }
                        } else {
                            old
                        };
                        let got = c[i * c_stride + j] as f64;
                        assert!(
                            (got - expected).abs() < 1e-4,
                            "{m}x{n}x{k} ({i}, {j}): {got} vs {expected}"
                        );
                    }
                }
                outputs.push(c);
            }
        }
        outputs
    }

    #[test]
    fn products_match_the_definition_within_their_reach() {
        let portable = check_shapes(portable::tile_dispatch::<f32>);
        let dispatched = check_shapes(<f32 as ProductFloat>::tile);
        // The vector path (where the CPU has one) and the portable one agree to the bit.
        assert_eq!(portable, dispatched);
    }
}
