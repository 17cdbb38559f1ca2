//! Splitting a kernel's work over candle's CPU worker threads, and reading
//! tensors' CPU storage from a backward pass.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use candle_core::{CpuStorage, Layout, Storage, Tensor, WithDType};

use super::bf16_product::{matmul_precision, Bf16Operands};
use super::simd::Float;
use crate::request::Precision;

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

    /// Elements `range` as possibly uninitialised memory, to be written.
    ///
    /// # Safety
    /// As [`SharedMut::slice`]; the range may lie past the owner's length,
    /// inside its capacity.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn uninit(&self, range: Range<usize>) -> Uninit<'_, T> {
        std::slice::from_raw_parts_mut(self.0.add(range.start).cast(), range.len())
    }
}

/// Runs `f` over chunks of `0..n` on candle's CPU worker pool (a single
/// item on the calling thread, without waking the pool).
pub(crate) fn par_for(n: usize, f: impl Fn(Range<usize>) + Sync) {
    match n {
        0 => {}
        1 => f(0..1),
        _ => candle_core::utils::barrier_pool().execute_chunked(n, f),
    }
}

/// Memory a kernel writes whole before anyone reads it.
pub(crate) type Uninit<'a, T> = &'a mut [MaybeUninit<T>];

/// `rows` rows of `width` elements that `fill(some rows, those rows)` writes
/// on the workers, every row once; `fill` must write every element it is
/// given.
pub(crate) fn filled_rows<T: Float>(
    rows: usize,
    width: usize,
    fill: impl Fn(Range<usize>, Uninit<'_, T>) + Sync,
) -> Vec<T> {
    const PIECE_BYTES: usize = 16 << 10;
    let piece = (PIECE_BYTES / (width * std::mem::size_of::<T>()).max(1)).max(1);
    let n = rows * width;
    let mut v: Vec<T> = Vec::with_capacity(n);
    let dst = SharedMut(v.as_mut_ptr());
    par_for(rows, |range| {
        let mut start = range.start;
        while start < range.end {
            let end = (start + piece).min(range.end);
            let span = start * width..end * width;
            // SAFETY: inside the capacity, and this task's rows only.
            fill(start..end, unsafe { dst.uninit(span) });
            start = end;
        }
    });
    // SAFETY: the tasks covered rows 0..rows, and `fill` wrote every element.
    unsafe { v.set_len(n) };
    v
}

/// `out += x` element by element on the workers (a residual connection).
pub(crate) fn add_assign<T: Float>(out: &mut [T], x: &[T]) {
    assert_eq!(out.len(), x.len(), "add_assign sizes");
    const CHUNK: usize = 1 << 14;
    let n = out.len();
    let dst = SharedMut(out.as_mut_ptr());
    par_for(n.div_ceil(CHUNK), |range| {
        let span = range.start * CHUNK..(range.end * CHUNK).min(n);
        // SAFETY: this task's span of `out` only.
        let out = unsafe { dst.slice(span.clone()) };
        for (o, &r) in out.iter_mut().zip(&x[span]) {
            let y = *o;
            *o = y + r;
        }
    });
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

/// `dst (+)= lhs [m, k] * rhs [k, n]` on the calling thread, every operand
/// a strided row-major view (pointer, row stride, column stride).
///
/// # Safety
/// `dst` must hold m rows of n elements at its strides that no other
/// thread touches during the call; the views must lie inside their
/// allocations.
pub(crate) unsafe fn gemm_serial<T: Float + WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, usize, usize),
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    accumulate: bool,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// How a product is cut into pieces that the worker threads share out.
/// It depends on the shape alone, never on the thread count, so every
/// output element is summed in the same order on one thread or many: a
/// training run gives the same bits whatever `run.threads` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tiling {
    /// Tiles cut along the output's rows (else along its columns).
    by_rows: bool,
    /// Width of a tile along that dimension (the last one may be narrower).
    block: usize,
    /// Tiles along that dimension.
    tiles: usize,
    /// Pieces of the summed dimension, each its own partial product; the
    /// partial products are added in order.
    depth_parts: usize,
}

/// Multiply-adds below which a product runs as one piece: sharing it out
/// would cost more than it saves.
const SMALL_PRODUCT: usize = 1 << 20;
/// Most tiles along the split dimension (an even count keeps two threads busy alike).
const MAX_TILES: usize = 16;
/// Most row tiles: each packs the other operand again.
const MAX_ROW_TILES: usize = 8;
/// Narrowest tile: below this the repeated packing of the other operand
/// outweighs the work.
const MIN_BLOCK: usize = 64;
/// Column tiles are multiples of this: gemm's f32 register block along a
/// row-major product's columns on AVX-512.
const COLUMN_BLOCK: usize = 64;
/// Summed-dimension length per partial product when it is split (weight
/// gradients sum over all rows of a batch).
const DEPTH_BLOCK: usize = 1024;

impl Tiling {
    fn new(m: usize, n: usize, k: usize) -> Tiling {
        let longer = m.max(n);
        if m.saturating_mul(n).saturating_mul(k) < SMALL_PRODUCT {
            let by_rows = m >= n;
            return Tiling {
                by_rows,
                block: longer.max(1),
                tiles: 1,
                depth_parts: 1,
            };
        }
        // A long summed dimension and a small output: split the sum too.
        let depth_parts = if k >= 4 * longer && k >= 2 * DEPTH_BLOCK {
            (k / DEPTH_BLOCK).min(8)
        } else {
            1
        };
        // Every row tile packs the whole right operand again (gemm's
        // packed side, as it computes the product transposed): row tiles
        // are fewer and wider, and a split sum (a weight gradient over a
        // long batch) cuts columns, which packs it once. The products
        // this changes at bench-tiny's shapes ran 5-13% faster.
        let by_rows = m >= n && depth_parts == 1;
        let len = if by_rows { m } else { n };
        let most = MAX_TILES / depth_parts.min(4);
        let block = if by_rows {
            // Rows are gemm's narrow (6-wide) register block: any width
            // a multiple of 16 wastes little; an even count keeps two
            // threads alike.
            let mut tiles = (len / MIN_BLOCK).clamp(1, most.min(MAX_ROW_TILES));
            if tiles > 1 && !tiles.is_multiple_of(2) {
                tiles -= 1;
            }
            len.div_ceil(tiles).next_multiple_of(16).min(len)
        } else {
            // gemm computes a row-major product transposed, so columns are
            // its 64-wide register block (4 vectors of 16): whole blocks of
            // 64, since a ragged 16 or 32 runs its slow edge kernels in
            // every tile, which costs more than one thread doing a block
            // more than the other.
            let units = len.div_ceil(COLUMN_BLOCK);
            let tiles = units.clamp(1, most);
            (units.div_ceil(tiles) * COLUMN_BLOCK).min(len)
        };
        Tiling {
            by_rows,
            block,
            tiles: len.div_ceil(block),
            depth_parts,
        }
    }

    /// The summed indices of partial product `part`.
    fn depth(&self, k: usize, part: usize) -> Range<usize> {
        k * part / self.depth_parts..k * (part + 1) / self.depth_parts
    }
}

/// Wall time spent in [`product`] and [`product_into`] so far, in
/// nanoseconds, and the multiply-adds they did: process-wide, for
/// benchmarks that split a pass into its products and the rest.
static PRODUCT_NANOS: AtomicU64 = AtomicU64::new(0);
static PRODUCT_MACS: AtomicU64 = AtomicU64::new(0);

/// The matrix products of the CPU training kernels (forward and backward
/// of every linear layer, the MLP and the LM head; not attention's small
/// per-head products, nor decoding's) run in this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProductTally {
    /// Wall time inside the products, on the thread that called them.
    pub seconds: f64,
    /// Multiply-adds done (a product of [m, k] and [k, n] does m k n).
    pub multiply_adds: u64,
}

impl ProductTally {
    /// The tally so far.
    pub fn now() -> ProductTally {
        ProductTally {
            seconds: PRODUCT_NANOS.load(Ordering::Relaxed) as f64 * 1e-9,
            multiply_adds: PRODUCT_MACS.load(Ordering::Relaxed),
        }
    }

    /// What was added since `earlier`.
    pub fn since(self, earlier: ProductTally) -> ProductTally {
        ProductTally {
            seconds: self.seconds - earlier.seconds,
            multiply_adds: self.multiply_adds - earlier.multiply_adds,
        }
    }

    /// Floating-point operations per second (two per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * self.multiply_adds as f64 / self.seconds
    }
}

/// `lhs [m, k] * rhs [k, n]` into a new row-major [m, n], on candle's CPU
/// worker threads (the ones the other kernels use, so none of them spins
/// while another pool computes), in pieces fixed by the shape ([`Tiling`]).
pub(crate) fn product<T: Float + WithDType>(
    m: usize,
    n: usize,
    k: usize,
    lhs: View<T>,
    rhs: View<T>,
) -> Vec<T> {
    product_with_room(m, n, k, lhs, rhs, 0)
}

/// [`product`] in a buffer with room for `room` more elements after it. A
/// block appends its norm's gradient to its weights' this way: growing the
/// vector instead would double its capacity, and the buffer lives on as the
/// weights' gradient until the optimizer step.
pub(crate) fn product_with_room<T: Float + WithDType>(
    m: usize,
    n: usize,
    k: usize,
    lhs: View<T>,
    rhs: View<T>,
    room: usize,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(m * n + room);
    // SAFETY: the capacity holds m x n elements; without accumulating, the
    // product writes every one of them (gemm does not read dst then).
    unsafe {
        product_unchecked(m, n, k, (out.as_mut_ptr(), false), lhs, rhs);
        out.set_len(m * n);
    }
    out
}

/// `dst (+)= lhs [m, k] * rhs [k, n]` for row-major `dst` [m, n]; adds to
/// what `dst` holds when `accumulate`.
pub(crate) fn product_into<T: Float + WithDType>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: View<T>,
    rhs: View<T>,
) {
    assert_eq!(dst.len(), m * n, "product destination size");
    // SAFETY: dst holds m x n elements and is borrowed mutably.
    unsafe { product_unchecked(m, n, k, (dst.as_mut_ptr(), accumulate), lhs, rhs) }
}

/// # Safety
/// `dst` must hold m x n writable elements (initialised when accumulating).
unsafe fn product_unchecked<T: Float + WithDType + 'static>(
    m: usize,
    n: usize,
    k: usize,
    (dst, accumulate): (*mut T, bool),
    lhs: View<T>,
    rhs: View<T>,
) {
    let reach = |(v, rs, cs): View<T>, rows: usize, cols: usize| {
        rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < v.len()
    };
    assert!(
        reach(lhs, m, k) && reach(rhs, k, n),
        "product views out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    let start = Instant::now();
    let plan = Tiling::new(m, n, k);
    match as_f32(lhs, rhs) {
        // An empty sum (k = 0) is gemm's: zeros, or dst as it is.
        Some((lhs, rhs)) if matmul_precision() == Precision::Bfloat16 && k > 0 => {
            let parallel = plan.tiles * plan.depth_parts > 1;
            let operands = Bf16Operands::pack((m, n, k), lhs, rhs, parallel);
            let pairs = operands.pairs();
            // SAFETY (each piece): T is f32 here, and the piece writes only
            // its own rows and columns of its target.
            tiled_product(
                plan,
                (m, n),
                (dst, accumulate),
                |rows, cols, part, target, add| unsafe {
                    operands.piece(rows, cols, plan.depth(pairs, part), target.cast(), add)
                },
            );
        }
        _ => tiled_product(
            plan,
            (m, n),
            (dst, accumulate),
            |rows, cols, part, target, add| {
                let depth = plan.depth(k, part);
                // SAFETY: the views lie inside their slices (checked above);
                // this piece writes rows `rows` x columns `cols` of its target
                // only, every element of them (gemm does not read dst unless
                // accumulating).
                unsafe {
                    let l0 = lhs.0.as_ptr().add(rows.start * lhs.1 + depth.start * lhs.2);
                    let r0 = rhs.0.as_ptr().add(depth.start * rhs.1 + cols.start * rhs.2);
                    gemm_serial(
                        (rows.len(), cols.len(), depth.len()),
                        (target.add(rows.start * n + cols.start), n, 1),
                        (l0, lhs.1, lhs.2),
                        (r0, rhs.1, rhs.2),
                        add,
                    );
                }
            },
        ),
    }
    PRODUCT_NANOS.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    PRODUCT_MACS.fetch_add((m * n * k) as u64, Ordering::Relaxed);
}

/// The views as float32 ones, when T is f32.
fn as_f32<'a, T: 'static>(
    lhs: View<'a, T>,
    rhs: View<'a, T>,
) -> Option<(View<'a, f32>, View<'a, f32>)> {
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<f32>() {
        return None;
    }
    // SAFETY: T is f32.
    let cast = |(v, rs, cs): View<'a, T>| {
        let v = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) };
        (v, rs, cs)
    };
    Some((cast(lhs), cast(rhs)))
}

/// Runs the product's pieces as `plan` cuts it, each by
/// `piece(rows, columns, depth part, target, accumulate)` where target is
/// the row-major [m, n] it writes (dst for part 0, a partial sum for the
/// others); then adds the partial sums to dst in order.
///
/// # Safety
/// As [`product_unchecked`]; `piece` must write every element of its rows
/// and columns of its target, and nothing else.
unsafe fn tiled_product<T: Float + WithDType>(
    plan: Tiling,
    (m, n): (usize, usize),
    (dst, accumulate): (*mut T, bool),
    piece: impl Fn(Range<usize>, Range<usize>, usize, *mut T, bool) + Sync,
) {
    // Partial products past the first go to their own buffers, which the
    // pieces below write whole.
    let mut partial: Vec<T> = Vec::with_capacity((plan.depth_parts - 1) * m * n);
    let (out, rest) = (SharedMut(dst), SharedMut(partial.as_mut_ptr()));
    par_for(plan.tiles * plan.depth_parts, |range| {
        for index in range {
            let (tile, part) = (index % plan.tiles, index / plan.tiles);
            let span =
                tile * plan.block..((tile + 1) * plan.block).min(if plan.by_rows { m } else { n });
            let (rows, cols) = if plan.by_rows {
                (span.clone(), 0..n)
            } else {
                (0..m, span.clone())
            };
            let (target, add) = match part {
                0 => (out.ptr(), accumulate),
                p => (rest.ptr().wrapping_add((p - 1) * m * n), false),
            };
            piece(rows, cols, part, target, add);
        }
    });
    // SAFETY: every (part, row, column) of the partial products was written
    // by exactly one piece above (gemm without accumulating writes them all).
    unsafe { partial.set_len((plan.depth_parts - 1) * m * n) };
    if plan.depth_parts > 1 {
        // Partial sums added in order, element by element.
        const CHUNK: usize = 1 << 14;
        let total = m * n;
        par_for(total.div_ceil(CHUNK), |range| {
            let span = range.start * CHUNK..(range.end * CHUNK).min(total);
            // SAFETY: this task's span of dst only.
            let acc = unsafe { out.slice(span.clone()) };
            for part in partial.chunks_exact(total) {
                for (a, &v) in acc.iter_mut().zip(&part[span.clone()]) {
                    let own = *a;
                    *a = own + v;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::bf16_product::set_matmul_precision;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// `lhs [m, k] * rhs [k, n]` in f64, one element at a time.
    fn reference(m: usize, n: usize, k: usize, lhs: View<f32>, rhs: View<f32>) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| {
                        lhs.0[i * lhs.1 + p * lhs.2] as f64 * rhs.0[p * rhs.1 + j * rhs.2] as f64
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn tiled_products_match_f64_and_accumulate() {
        let mut rng = StdRng::seed_from_u64(5);
        // One piece, row tiles, column tiles, and a split summed dimension.
        for (m, n, k) in [(3, 5, 7), (300, 70, 90), (40, 500, 60), (70, 40, 4100)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            // lhs row-major, rhs as the transpose of a row-major [n, k].
            let (lhs, rhs) = ((&a[..], k, 1), (&b[..], 1, k));
            let want = reference(m, n, k, lhs, rhs);
            let before = ProductTally::now();
            let got = product(m, n, k, lhs, rhs);
            // Other tests' products may land in the tally meanwhile.
            let tally = ProductTally::now().since(before);
            assert!(tally.multiply_adds >= (m * n * k) as u64 && tally.seconds > 0.0);
            let mut twice = got.clone();
            product_into(m, n, k, &mut twice, true, lhs, rhs);
            for i in 0..m * n {
                let tol = 1e-5 * (k as f64).sqrt();
                assert!((got[i] as f64 - want[i]).abs() < tol, "{m}x{n}x{k} at {i}");
                assert!((twice[i] as f64 - 2.0 * want[i]).abs() < 2.0 * tol);
            }
        }
    }

    #[test]
    fn products_in_bfloat16_sum_rounded_operands() {
        let mut rng = StdRng::seed_from_u64(6);
        let rounded = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .map(|&x| crate::cpu::simd::bf16_value(crate::cpu::simd::bf16_bits(x)))
                .collect()
        };
        let previous = set_matmul_precision(Precision::Bfloat16);
        // As above, with each operand stored by rows and by columns.
        for (m, n, k) in [(3, 5, 7), (300, 70, 91), (40, 500, 60), (70, 40, 4101)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (ra, rb) = (rounded(&a), rounded(&b));
            for (l, r) in [((k, 1), (1, k)), ((1, m), (n, 1))] {
                let want = reference(m, n, k, (&ra[..], l.0, l.1), (&rb[..], r.0, r.1));
                let got = product(m, n, k, (&a[..], l.0, l.1), (&b[..], r.0, r.1));
                let mut twice = got.clone();
                product_into(
                    m,
                    n,
                    k,
                    &mut twice,
                    true,
                    (&a[..], l.0, l.1),
                    (&b[..], r.0, r.1),
                );
                for i in 0..m * n {
                    let tol = 1e-5 * (k as f64).sqrt();
                    assert!((got[i] as f64 - want[i]).abs() < tol, "{m}x{n}x{k} at {i}");
                    assert!((twice[i] as f64 - 2.0 * want[i]).abs() < 2.0 * tol);
                }
            }
        }
        // An empty sum: zeros, or dst as it was.
        let none: &[f32] = &[];
        assert_eq!(product(3, 4, 0, (none, 0, 1), (none, 4, 1)), vec![0.0; 12]);
        let mut kept = vec![1.5f32; 12];
        product_into(3, 4, 0, &mut kept, true, (none, 0, 1), (none, 4, 1));
        assert_eq!(kept, vec![1.5; 12]);
        // f64 products ignore the setting.
        let (a, b) = ([0.1f64, 0.2, 0.3], [1.0f64 / 3.0, 3.0, 7.0]);
        let exact = 0.1 / 3.0 + 0.2 * 3.0 + 0.3 * 7.0;
        assert!((product(1, 1, 3, (&a[..], 3, 1), (&b[..], 1, 1))[0] - exact).abs() < 1e-15);
        set_matmul_precision(previous);
    }

    #[test]
    fn tiling_keeps_pieces_even_and_wide() {
        for (m, n, k) in [
            (384, 960, 576),
            (384, 576, 576),
            (384, 1536, 576),
            (5120, 704, 256),
            (768, 256, 5120),
            (49152, 576, 256),
        ] {
            let t = Tiling::new(m, n, k);
            let len = if t.by_rows { m } else { n };
            assert!(
                t.block >= MIN_BLOCK && (t.tiles - 1) * t.block < len,
                "{t:?}"
            );
            if t.by_rows {
                assert!(t.tiles == 1 || t.tiles.is_multiple_of(2), "{t:?}");
                assert!(t.tiles <= MAX_ROW_TILES, "{t:?}");
            } else {
                // Whole register blocks of columns: no ragged tile but the last.
                assert!(t.block.is_multiple_of(COLUMN_BLOCK), "{t:?}");
            }
        }
        assert_eq!(Tiling::new(384, 576, 576).tiles, 9);
        // A split sum cuts columns: each tile packs its own part of the
        // right operand only.
        let weight_gradient = Tiling::new(768, 256, 5120);
        assert_eq!(weight_gradient.depth_parts, 5);
        assert!(!weight_gradient.by_rows);
    }
}
