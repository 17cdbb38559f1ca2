//! The training kernels' matrix products in bfloat16 (`run.matmul_precision
//! = "bfloat16"`): both operands rounded to bfloat16 once per product, two
//! to a word along the summed dimension, then multiplied by the packed
//! kernels' bf16 dot products with float32 sums, in the tiles
//! [`super::parallel`] shares out. On CPUs with AVX-512 bf16 a
//! `vdpbf16ps` does twice the multiply-adds of a float32 FMA.

use std::cell::Cell;
use std::ops::Range;

use super::packed::{bf16_panel_product, round_to_bf16_pairs, Output, PairPanels, RowLayout, NR};
use super::parallel::{par_for, SharedMut, Uninit, View};
use super::simd::{bf16_bits, simd_fn, MAX_BLOCK_ROWS as R};
use crate::request::Precision;

thread_local! {
    static MATMUL_PRECISION: Cell<Precision> = const { Cell::new(Precision::Float32) };
}

/// Sets what the float32 matrix products of the CPU training kernels
/// (every linear layer, the MLP and the LM head, forward and backward) run
/// from this thread multiply in, and returns the previous setting.
/// [`Precision::Bfloat16`] rounds both operands to bfloat16 and sums in
/// float32, as PyTorch's `set_float32_matmul_precision("medium")`;
/// weights, gradients, optimizer state and the other kernels stay float32.
pub fn set_matmul_precision(precision: Precision) -> Precision {
    MATMUL_PRECISION.replace(precision)
}

/// This thread's [`set_matmul_precision`].
pub(crate) fn matmul_precision() -> Precision {
    MATMUL_PRECISION.get()
}

/// Both operands of `lhs [m, k] * rhs [k, n]` rounded to bfloat16 pairs:
/// the left as rows of `ceil(k / 2)` words (in blocks of [`R`] rows, the
/// way the kernel reads them, when it is stored by columns; else row after
/// row), the right as panels of [`NR`] columns (`[ceil(k / 2), NR]` words
/// each, columns past n zero).
pub(crate) struct Bf16Operands {
    lhs: Vec<u32>,
    lhs_layout: RowLayout,
    rhs: Vec<u32>,
    pairs: usize,
    m: usize,
    n: usize,
}

impl Bf16Operands {
    /// Rounds and packs both operands, on the worker threads when
    /// `parallel`. Each word is computed from its two values alone, so the
    /// result does not depend on the threads.
    pub(crate) fn pack(
        (m, n, k): (usize, usize, usize),
        lhs: View<f32>,
        rhs: View<f32>,
        parallel: bool,
    ) -> Self {
        let pairs = k.div_ceil(2);
        let tasks = |tasks: usize, f: &(dyn Fn(usize) + Sync)| match parallel {
            true => par_for(tasks, |range| range.for_each(f)),
            false => (0..tasks).for_each(f),
        };
        // Each task below writes its own words of a buffer (through
        // `SharedMut::uninit`), and all the tasks together write every word.
        let filled = |len: usize, write: &(dyn Fn(SharedMut<u32>) + Sync)| {
            let mut words: Vec<u32> = Vec::with_capacity(len);
            write(SharedMut(words.as_mut_ptr()));
            // SAFETY: every word was written (above).
            unsafe { words.set_len(len) };
            words
        };

        // The left operand stored by columns (a transposed view) is read a
        // stretch of each source row at a time, into blocks of R rows.
        let by_columns = lhs.2 != 1 && lhs.1 == 1 && k > 1;
        let (packed_lhs, lhs_layout) = if by_columns {
            let blocks = m.div_ceil(R);
            let (spans, chunks) = (blocks.div_ceil(SPAN / R), pairs.div_ceil(CHUNK_PAIRS));
            let words = filled(blocks * R * pairs, &|out| {
                tasks(spans * chunks, &|t| {
                    let (span, chunk) = (t % spans, t / spans);
                    let blocks = span * SPAN / R..((span + 1) * SPAN / R).min(blocks);
                    let chunk = chunk * CHUNK_PAIRS..((chunk + 1) * CHUNK_PAIRS).min(pairs);
                    // SAFETY: pairs `chunk` of blocks `blocks`, this task's alone.
                    unsafe { pack_row_pairs((lhs.0, lhs.2), (k, m), (R, blocks), chunk, out) };
                })
            });
            (words, RowLayout::blocked(pairs))
        } else {
            let words = filled(m * pairs, &|out| {
                tasks(m.div_ceil(R), &|block| {
                    let rows = block * R..((block + 1) * R).min(m);
                    // SAFETY: these rows' words, inside the capacity, this task's alone.
                    let words = unsafe { out.uninit(rows.start * pairs..rows.end * pairs) };
                    pack_rows(lhs, rows, k, words);
                })
            });
            (words, RowLayout::by_rows(pairs))
        };

        let n_panels = n.div_ceil(NR);
        let panel_len = pairs * NR;
        let packed_rhs = if rhs.2 == 1 {
            // Stored by rows: a stretch of two rows at a time, into panels.
            let (spans, chunks) = (n_panels.div_ceil(SPAN / NR), pairs.div_ceil(CHUNK_PAIRS));
            filled(n_panels * panel_len, &|out| {
                tasks(spans * chunks, &|t| {
                    let (span, chunk) = (t % spans, t / spans);
                    let panels = span * SPAN / NR..((span + 1) * SPAN / NR).min(n_panels);
                    let chunk = chunk * CHUNK_PAIRS..((chunk + 1) * CHUNK_PAIRS).min(pairs);
                    // SAFETY: pairs `chunk` of panels `panels`, this task's alone.
                    unsafe { pack_row_pairs((rhs.0, rhs.1), (k, n), (NR, panels), chunk, out) };
                })
            })
        } else {
            filled(n_panels * panel_len, &|out| {
                tasks(n_panels, &|p| {
                    // SAFETY: panel p's words, inside the capacity, this task's alone.
                    let panel = unsafe { out.uninit(p * panel_len..(p + 1) * panel_len) };
                    pack_panel(rhs, p * NR..((p + 1) * NR).min(n), k, panel);
                })
            })
        };

        Bf16Operands {
            lhs: packed_lhs,
            lhs_layout,
            rhs: packed_rhs,
            pairs,
            m,
            n,
        }
    }

    /// Pairs of the summed dimension.
    pub(crate) fn pairs(&self) -> usize {
        self.pairs
    }

    /// `dst (+)= ` the product's rows `rows` x columns `cols`, summed over
    /// pairs `depth`, for `dst` the product's row-major [m, n] (or a
    /// partial sum of that shape). `rows` starts at a multiple of [`R`],
    /// `cols` at a panel.
    ///
    /// # Safety
    /// `dst` must hold m x n values (initialised when accumulating) whose
    /// `rows` x `cols` no other thread touches meanwhile.
    pub(crate) unsafe fn piece(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        depth: Range<usize>,
        dst: *mut f32,
        accumulate: bool,
    ) {
        assert!(cols.start.is_multiple_of(NR) && cols.end <= self.n && depth.end <= self.pairs);
        assert!(rows.start.is_multiple_of(R) && rows.end <= self.m);
        let stride = self.pairs * NR;
        let b = PairPanels {
            panels: &self.rhs[(cols.start / NR) * stride + depth.start * NR..],
            stride,
            pairs: depth.len(),
            cols: cols.len(),
        };
        let layout = self.lhs_layout;
        let x = &self.lhs[rows.start * layout.stride + depth.start * layout.step..];
        let output = if accumulate {
            Output::Accumulate
        } else {
            Output::Overwrite
        };
        // SAFETY: the caller vouches for dst; row `rows.start`, column
        // `cols.start` lies inside it.
        unsafe {
            let y = dst.add(rows.start * self.n + cols.start);
            bf16_panel_product((x, layout), rows.len(), b, (y, self.n), output);
        }
    }
}

/// Rows or columns of a source row one packing task reads: 1 KiB of it.
const SPAN: usize = 256;
/// Pairs (of source rows) one packing task reads.
const CHUNK_PAIRS: usize = 64;

/// A word of two bfloat16: `lo` in the low half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) as u32 | (bf16_bits(hi) as u32) << 16
}

/// Writes `src` into `dst` (as long).
#[inline(always)]
fn write_words(dst: Uninit<u32>, src: &[u32]) {
    for (d, &w) in dst.iter_mut().zip(src) {
        d.write(w);
    }
}

/// Rows `rows` of `lhs [.., k]` as rows of `ceil(k / 2)` words into `out`,
/// every word written (`k > 0`).
fn pack_rows((v, rs, cs): View<f32>, rows: Range<usize>, k: usize, out: Uninit<u32>) {
    let pairs = k.div_ceil(2);
    if cs == 1 {
        // Rounded a stretch at a time through the cache, then written out.
        let mut words = [0u32; SPAN];
        for (i, row) in rows.zip(out.chunks_exact_mut(pairs)) {
            let values = &v[i * rs..i * rs + k];
            for (stretch, dst) in values.chunks(2 * SPAN).zip(row.chunks_mut(SPAN)) {
                round_to_bf16_pairs(stretch, &mut words[..dst.len()]);
                write_words(dst, &words);
            }
        }
    } else {
        for (i, words) in rows.zip(out.chunks_exact_mut(pairs)) {
            for (j, w) in words.iter_mut().enumerate() {
                let hi = if 2 * j + 1 < k {
                    v[i * rs + (2 * j + 1) * cs]
                } else {
                    0.0
                };
                w.write(pair(v[i * rs + 2 * j * cs], hi));
            }
        }
    }
}

simd_fn! {
    /// Pairs `chunk` of the groups `groups` of `width` elements of a
    /// source `[k, len]` stored by rows (`source.1` apart), into `out`
    /// (`ceil(k / 2)` pairs of each group): group g's pair j is `width`
    /// words side by side, at `(g * pairs + j) * width`, elements past `len`
    /// zero. Reads source rows 2j and 2j + 1 a stretch at a time. The left
    /// operand stored by columns packs this way in blocks of [`R`] rows
    /// ([`RowLayout::blocked`]), the right one stored by rows in panels of
    /// [`NR`] columns.
    ///
    /// # Safety
    /// `out` must hold every group; no other thread may touch these words.
    unsafe fn pack_row_pairs(source: (&[f32], usize), shape: (usize, usize), groups: (usize, Range<usize>), chunk: Range<usize>, out: SharedMut<u32>) => pack_row_pairs_body
}

#[inline(always)]
unsafe fn pack_row_pairs_body(
    (v, stride): (&[f32], usize),
    (k, len): (usize, usize),
    (width, groups): (usize, Range<usize>),
    chunk: Range<usize>,
    out: SharedMut<u32>,
) {
    let pairs = k.div_ceil(2);
    let span = groups.start * width..(groups.end * width).min(len);
    let source = |kk: usize| &v[kk * stride + span.start..kk * stride + span.end];
    // Elements past `len` stay zero.
    let mut words = [0u32; SPAN];
    for j in chunk {
        if 2 * j + 2 * AHEAD + 1 < k {
            prefetch(source(2 * j + 2 * AHEAD));
            prefetch(source(2 * j + 2 * AHEAD + 1));
        }
        interleave(
            source(2 * j),
            (2 * j + 1 < k).then(|| source(2 * j + 1)),
            &mut words,
        );
        for (g, words) in groups.clone().zip(words.chunks_exact(width)) {
            let at = (g * pairs + j) * width;
            // SAFETY: the caller's words (pair j of group g).
            write_words(unsafe { out.uninit(at..at + width) }, words);
        }
    }
}

/// Pairs of source rows the packers prefetch ahead.
const AHEAD: usize = 1;

/// Asks for `values` in the cache ahead of their use: the packers read
/// short stretches of many rows, which the hardware does not foresee.
#[inline(always)]
fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in values.chunks(16) {
        // SAFETY: a prefetch only hints the cache; SSE is in every x86_64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
}

/// `words[t] = pair(lo[t], hi[t])` (hi 0 when absent).
#[inline(always)]
fn interleave(lo: &[f32], hi: Option<&[f32]>, words: &mut [u32]) {
    match hi {
        Some(hi) => {
            for ((w, &a), &b) in words.iter_mut().zip(lo).zip(hi) {
                *w = pair(a, b);
            }
        }
        None => {
            for (w, &a) in words.iter_mut().zip(lo) {
                *w = pair(a, 0.0);
            }
        }
    }
}

/// Columns `cols` (at most [`NR`]) of `rhs [k, ..]` stored by columns (row
/// stride 1) or with neither stride 1, as one panel of `[ceil(k / 2), NR]`
/// words into `out`, lanes past the columns zero; every word written.
fn pack_panel(rhs: View<f32>, cols: Range<usize>, k: usize, out: Uninit<u32>) {
    let (v, rs, cs) = rhs;
    if rs == 1 {
        pack_panel_by_columns(rhs, cols, k, out);
    } else {
        let value = |kk: usize, c: usize| match cols.start + c < cols.end && kk < k {
            true => v[kk * rs + (cols.start + c) * cs],
            false => 0.0,
        };
        for (j, row) in out.chunks_exact_mut(NR).enumerate() {
            for (c, w) in row.iter_mut().enumerate() {
                w.write(pair(value(2 * j, c), value(2 * j + 1, c)));
            }
        }
    }
}

/// Pairs per tile of [`pack_panel_by_columns`].
const TILE_PAIRS: usize = 16;

simd_fn! {
    /// [`pack_panel`] of a right operand stored by columns (row stride 1,
    /// each column's pairs side by side): tiles of [`TILE_PAIRS`] pairs,
    /// rounded column by column, then written out row by row.
    fn pack_panel_by_columns(rhs: View<f32>, cols: Range<usize>, k: usize, out: Uninit<u32>) => pack_panel_by_columns_body
}

#[inline(always)]
fn pack_panel_by_columns_body(
    (v, _, cs): View<f32>,
    cols: Range<usize>,
    k: usize,
    out: Uninit<u32>,
) {
    // Columns past `cols` stay zero.
    let mut tile = [[0u32; TILE_PAIRS]; NR];
    for (t, rows) in out.chunks_mut(TILE_PAIRS * NR).enumerate() {
        let start = 2 * t * TILE_PAIRS;
        let end = (start + 2 * TILE_PAIRS).min(k);
        for (words, col) in tile.iter_mut().zip(cols.clone()) {
            let values = &v[col * cs + start..col * cs + end];
            let pairs = values.chunks_exact(2);
            let last = pairs.remainder().first().map(|&a| pair(a, 0.0));
            let full = pairs.len();
            for (w, p) in words.iter_mut().zip(pairs) {
                *w = pair(p[0], p[1]);
            }
            if let Some(last) = last {
                words[full] = last;
            }
        }
        for (j, row) in rows.chunks_exact_mut(NR).enumerate() {
            for (w, column) in row.iter_mut().zip(&tile) {
                w.write(column[j]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::simd::bf16_value;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn rounded(v: f32) -> f64 {
        bf16_value(bf16_bits(v)) as f64
    }

    #[test]
    fn pieces_match_the_rounded_definition_in_every_layout() {
        // Odd depths (a half-empty last pair), partial panels, row blocks
        // past R; each operand stored by rows, by columns and by neither.
        for (m, n, k) in [(1, 1, 1), (5, 33, 7), (19, 64, 16), (40, 70, 33)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let a_by_cols: Vec<f32> = (0..m * k).map(|e| a[(e % m) * k + e / m]).collect();
            let b_by_cols: Vec<f32> = (0..k * n).map(|e| b[(e % k) * n + e / k]).collect();
            let expected: Vec<f64> = (0..m * n)
                .map(|e| {
                    let (i, j) = (e / n, e % n);
                    (0..k)
                        .map(|l| rounded(a[i * k + l]) * rounded(b[l * n + j]))
                        .sum()
                })
                .collect();
            // Neither stride 1: every other element.
            let spread =
                |v: &[f32]| -> Vec<f32> { v.iter().flat_map(|&x| [x, f32::NAN]).collect() };
            let (a_spread, b_spread) = (spread(&a), spread(&b));
            let lhs_views = [
                (&a[..], k, 1),
                (&a_by_cols[..], 1, m),
                (&a_spread[..], 2 * k, 2),
            ];
            let rhs_views = [
                (&b[..], n, 1),
                (&b_by_cols[..], 1, k),
                (&b_spread[..], 2 * n, 2),
            ];
            for (lhs, rhs) in lhs_views.iter().flat_map(|l| rhs_views.map(|r| (*l, r))) {
                let what = format!(
                    "{m}x{k} * {k}x{n}, strides {:?} {:?}",
                    (lhs.1, lhs.2),
                    (rhs.1, rhs.2)
                );
                let ops = Bf16Operands::pack((m, n, k), lhs, rhs, true);
                let serial = Bf16Operands::pack((m, n, k), lhs, rhs, false);
                assert!(
                    ops.lhs == serial.lhs && ops.rhs == serial.rhs,
                    "{what}: threads"
                );
                let mut y = vec![f32::NAN; m * n];
                let pairs = ops.pairs();
                // Two row pieces, the second over two depth parts (accumulating).
                let split = m / 2 / R * R;
                unsafe {
                    ops.piece(0..split, 0..n, 0..pairs, y.as_mut_ptr(), false);
                    ops.piece(split..m, 0..n, 0..pairs / 2, y.as_mut_ptr(), false);
                    ops.piece(split..m, 0..n, pairs / 2..pairs, y.as_mut_ptr(), true);
                }
                for (e, (&got, &want)) in y.iter().zip(&expected).enumerate() {
                    assert!(
                        (got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()) * k as f64,
                        "{what}: [{e}] {got} vs {want}"
                    );
                }
            }
        }
    }
}
