//! A linear layer packed for products with few rows.
//!
//! `y = x W^T + b` with W stored as panels of [`NR`] output columns, each
//! panel `[in, NR]` contiguous: the micro-kernel walks one panel top to
//! bottom, keeping an `R x NR` block of outputs in registers, so each weight
//! is loaded once per `R` rows. On AVX-512 this runs near the FMA peak of
//! the core for any row count; a general matrix library tuned for large
//! products loses most of that at the 8-64 rows of a decode step.
//!
//! In bfloat16 ([`Precision::Bfloat16`]) a panel holds pairs of
//! input rows side by side, `[in / 2, NR]` 32-bit words of two bfloat16
//! each, the layout AVX-512's `vdpbf16ps` multiplies: half the bytes and,
//! where the CPU has it, twice the products per instruction.

use std::cell::RefCell;
use std::ops::Range;

use crate::cpu::parallel::{par_for, SharedMut};
use crate::cpu::simd::{bf16_bits, bf16_value, has_bf16_dot, level, simd_fn, Level};
use crate::request::Precision;

/// Output columns per panel: two 16-lane vectors.
pub(crate) const NR: usize = 32;
/// Rows per micro-kernel call: what `by_rows!` dispatches on.
const R: usize = crate::cpu::simd::MAX_BLOCK_ROWS;

#[derive(Debug, Clone)]
pub(crate) struct PackedLinear {
    panels: Panels,
    /// Padded to whole panels.
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

/// `ceil(out / NR)` panels; columns past `out` are zero.
#[derive(Debug, Clone)]
enum Panels {
    /// `[in, NR]` each.
    F32(Vec<f32>),
    /// `[ceil(in / 2), NR]` each: word `[i, c]` holds column c's weights
    /// for inputs 2i (low half) and 2i + 1 (high half, 0 past the input).
    Bf16(Vec<u32>),
}

/// What a product does with the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// `y = x W^T + b`
    Overwrite,
    /// `y += x W^T + b` (a residual connection)
    Accumulate,
}

thread_local! {
    /// The rows of x rounded to bfloat16 for the product under way, in
    /// pairs (one word each).
    static ROUNDED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl PackedLinear {
    /// Packs `weight` ([out, in], row-major, as checkpoints store it).
    #[cfg(test)]
    pub(crate) fn new(
        weight: &[f32],
        out_dim: usize,
        in_dim: usize,
        bias: Option<&[f32]>,
        precision: Precision,
    ) -> Self {
        assert_eq!(weight.len(), out_dim * in_dim, "weight shape");
        Self::stacked(
            &[weight],
            in_dim,
            bias.map(|b| vec![b]).as_deref(),
            precision,
        )
    }

    /// Packs weights stacked by output ([out_i, in] each, row-major, as
    /// checkpoints store them): q, k and v become one product. `bias`, if
    /// given, has one part per weight.
    pub(crate) fn stacked(
        parts: &[&[f32]],
        in_dim: usize,
        bias: Option<&[&[f32]]>,
        precision: Precision,
    ) -> Self {
        let rows: Vec<&[f32]> = parts.iter().flat_map(|p| p.chunks_exact(in_dim)).collect();
        assert!(parts.iter().all(|p| p.len() % in_dim == 0), "weight shape");
        let out_dim = rows.len();
        let n_panels = out_dim.div_ceil(NR);
        // Big matrices are packed on the worker threads (panels are
        // disjoint); small ones here, leaving the workers idle rather than
        // spinning.
        let big = out_dim * in_dim >= 1 << 20;
        let panels = match precision {
            Precision::Float32 => Panels::F32(pack(n_panels, in_dim, big, |p, panel| {
                let rows = &rows[p * NR..(p * NR + NR).min(rows.len())];
                match <&[&[f32]; NR]>::try_from(rows) {
                    // A full panel step by step: sequential writes, the NR
                    // rows read in step. Packing SmolLM2 took 11% less time
                    // than column by column (not so in bfloat16, below).
                    Ok(full) => {
                        for (i, out) in panel.chunks_exact_mut(NR).enumerate() {
                            for (o, row) in out.iter_mut().zip(full) {
                                *o = row[i];
                            }
                        }
                    }
                    Err(_) => {
                        for (col, row) in rows.iter().enumerate() {
                            for (i, &w) in row.iter().enumerate() {
                                panel[i * NR + col] = w;
                            }
                        }
                    }
                }
            })),
            Precision::Bfloat16 => {
                let pairs = in_dim.div_ceil(2);
                Panels::Bf16(pack(n_panels, pairs, big, |p, panel| {
                    for (col, row) in rows[p * NR..].iter().take(NR).enumerate() {
                        for (i, pair) in row.chunks(2).enumerate() {
                            let high = pair.get(1).map_or(0, |&w| bf16_bits(w));
                            panel[i * NR + col] = bf16_bits(pair[0]) as u32 | (high as u32) << 16;
                        }
                    }
                }))
            }
        };
        let bias = bias.map(|parts| {
            let mut padded: Vec<f32> = parts.concat();
            assert_eq!(padded.len(), out_dim, "bias shape");
            padded.resize(n_panels * NR, 0.0);
            padded
        });
        PackedLinear {
            panels,
            bias,
            in_dim,
            out_dim,
        }
    }

    /// Row `o` of the weight ([in]), gathered back from its panel: a tied
    /// LM head doubles as the embedding table.
    pub(crate) fn copy_row(&self, o: usize, out: &mut [f32]) {
        let (p, col) = (o / NR, o % NR);
        match &self.panels {
            Panels::F32(panels) => {
                let panel = &panels[p * self.in_dim * NR..(p + 1) * self.in_dim * NR];
                for (v, w) in out.iter_mut().zip(panel.iter().skip(col).step_by(NR)) {
                    *v = *w;
                }
            }
            Panels::Bf16(panels) => {
                let len = self.in_dim.div_ceil(2) * NR;
                let panel = &panels[p * len..(p + 1) * len];
                for (i, v) in out.iter_mut().enumerate().take(self.in_dim) {
                    let word = panel[(i / 2) * NR + col];
                    *v = bf16_value((word >> (16 * (i % 2))) as u16);
                }
            }
        }
    }

    /// Output width.
    pub(crate) fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `y[rows, out] (=|+=) x[rows, in] W^T + b`.
    pub(crate) fn forward(&self, x: &[f32], rows: usize, y: &mut [f32], output: Output) {
        assert!(x.len() >= rows * self.in_dim && y.len() >= rows * self.out_dim);
        self.with_input(x, rows, |input| {
            // SAFETY: y holds rows x out values (asserted) and this thread owns all of them.
            unsafe { self.forward_panels(input, rows, y.as_mut_ptr(), 0..self.panels(), output) };
        });
    }

    /// [`PackedLinear::forward`] with the output panels shared out over
    /// candle's CPU worker threads. For large weights and few rows, reading
    /// the weights bounds the time: this way each core reads only its part.
    pub(crate) fn forward_split(&self, x: &[f32], rows: usize, y: &mut [f32], output: Output) {
        assert!(x.len() >= rows * self.in_dim && y.len() >= rows * self.out_dim);
        let out = SharedMut(y.as_mut_ptr());
        self.with_input(x, rows, |input| {
            par_for(self.panels(), |panels| {
                // SAFETY: y holds rows x out values (asserted); each task
                // writes only the columns of its own panels.
                unsafe { self.forward_panels(input, rows, out.ptr(), panels, output) };
            });
        });
    }

    /// Bytes of weights held, padding included.
    pub(crate) fn bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(p) => 4 * p.len(),
            Panels::Bf16(p) => 4 * p.len(),
        }
    }

    fn panels(&self) -> usize {
        self.out_dim.div_ceil(NR)
    }

    /// Runs `f` on x as the panels multiply it: as it is in float32, rounded
    /// to bfloat16 pairs (rows padded to whole pairs) in bfloat16.
    fn with_input(&self, x: &[f32], rows: usize, f: impl FnOnce(Input)) {
        match &self.panels {
            Panels::F32(_) => f(Input::F32(x)),
            Panels::Bf16(_) => ROUNDED.with_borrow_mut(|rounded| {
                let (k, pairs) = (self.in_dim, self.in_dim.div_ceil(2));
                rounded.resize(rows * pairs, 0);
                for (r, words) in rounded.chunks_exact_mut(pairs).enumerate() {
                    round_to_bf16_pairs(&x[r * k..(r + 1) * k], words);
                }
                f(Input::Bf16(&rounded[..rows * pairs]))
            }),
        }
    }

    /// The products for output panels `panels` only.
    ///
    /// # Safety
    /// `y` must point to `rows * out_dim` values whose columns in `panels`
    /// no other thread touches meanwhile.
    unsafe fn forward_panels(
        &self,
        x: Input,
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        match (x, &self.panels) {
            (Input::F32(x), Panels::F32(weights)) => {
                let w = Weights::new(self, weights, self.in_dim);
                match level() {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX-512F; the caller vouches for y.
                    Level::Avx512 => unsafe { avx512::forward(&w, x, rows, y, panels, output) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX2 and FMA; the caller vouches for y.
                    Level::Avx2 => unsafe {
                        portable::forward_avx2(&w, x, rows, y, panels, output)
                    },
                    // SAFETY: the caller vouches for y.
                    _ => unsafe { portable::forward_generic(&w, x, rows, y, panels, output) },
                }
            }
            (Input::Bf16(x), Panels::Bf16(weights)) => {
                let w = Weights::new(self, weights, self.in_dim.div_ceil(2));
                // SAFETY: the caller vouches for y.
                unsafe { forward_bf16(&w, x, rows, y, panels, output) }
            }
            _ => unreachable!("the input is prepared for the panels it meets"),
        }
    }
}

/// Rows of bfloat16 pairs times panels of them, in the instructions the CPU
/// has.
///
/// # Safety
/// `y` must hold `rows` rows at `w.ldc` whose columns in `panels` no other
/// thread touches meanwhile; x must hold `rows` rows as `w.x` lays them out.
unsafe fn forward_bf16(
    w: &Weights<u32>,
    x: &[u32],
    rows: usize,
    y: *mut f32,
    panels: Range<usize>,
    output: Output,
) {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512 bf16; the caller vouches for y.
        _ if has_bf16_dot() => unsafe { avx512::forward_bf16(w, x, rows, y, panels, output) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (or more); the caller vouches for y.
        Level::Avx512 | Level::Avx2 => unsafe {
            portable::forward_bf16_avx2(w, x, rows, y, panels, output)
        },
        // SAFETY: the caller vouches for y.
        _ => unsafe { portable::forward_bf16_generic(w, x, rows, y, panels, output) },
    }
}

/// Where a product's rows of x lie, in elements: row `r0 + r` of the block
/// of [`R`] rows starting at `r0` (a multiple of R), step i, at
/// `r0 * stride + r * row_step + i * step`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowLayout {
    pub(crate) stride: usize,
    pub(crate) row_step: usize,
    pub(crate) step: usize,
}

impl RowLayout {
    /// Row after row, `stride` apart.
    pub(crate) fn by_rows(stride: usize) -> Self {
        RowLayout {
            stride,
            row_step: stride,
            step: 1,
        }
    }

    /// Blocks of [`R`] rows, `steps` long, step by step: a step's R
    /// words side by side.
    pub(crate) fn blocked(steps: usize) -> Self {
        RowLayout {
            stride: steps,
            row_step: 1,
            step: R,
        }
    }

    /// The index of row `r`'s step `i`.
    fn index(&self, r: usize, i: usize) -> usize {
        let r0 = r / R * R;
        r0 * self.stride + (r - r0) * self.row_step + i * self.step
    }
}

/// Panels of bfloat16 pairs, the right side of a [`bf16_panel_product`]:
/// panel p's pair i, column c at `panels[p * stride + i * NR + c]`, where
/// `stride >= pairs * NR`.
#[derive(Clone, Copy)]
pub(crate) struct PairPanels<'a> {
    pub(crate) panels: &'a [u32],
    pub(crate) stride: usize,
    /// Pairs summed over, from each panel's start.
    pub(crate) pairs: usize,
    /// Real columns (the last panel's lanes past them are not written).
    pub(crate) cols: usize,
}

/// `y (+)= x b` for `rows` rows of x and the panels `b`, y's rows `ldc`
/// apart: the products of training in bfloat16 (`cpu::bf16_product`), on
/// this thread.
///
/// # Safety
/// `y` must hold `rows` rows of `b.cols` values `ldc` apart that no other
/// thread touches meanwhile.
pub(crate) unsafe fn bf16_panel_product(
    (x, layout): (&[u32], RowLayout),
    rows: usize,
    b: PairPanels,
    (y, ldc): (*mut f32, usize),
    output: Output,
) {
    let n_panels = b.cols.div_ceil(NR);
    assert!(b.stride >= b.pairs * NR);
    assert!(n_panels == 0 || b.panels.len() >= (n_panels - 1) * b.stride + b.pairs * NR);
    assert!(rows == 0 || b.pairs == 0 || x.len() > layout.index(rows - 1, b.pairs - 1));
    let w = Weights {
        panels: b.panels,
        bias: None,
        steps: b.pairs,
        out_dim: b.cols,
        panel_stride: b.stride,
        x: layout,
        ldc,
    };
    // SAFETY: the caller vouches for y; the operands' reach is asserted.
    unsafe { forward_bf16(&w, x, rows, y, 0..n_panels, output) }
}

/// Packs `n_panels` panels of `steps * NR` values, `fill(p, panel)` writing
/// panel p, on the worker threads when `parallel`. `T` is f32 or u32 (a
/// bfloat16 pair), for which all-zero bytes are 0.
fn pack<T: Copy + Send + Sync>(
    n_panels: usize,
    steps: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let len = steps * NR;
    let mut panels: Vec<T> = Vec::with_capacity(n_panels * len);
    let out = SharedMut(panels.as_mut_ptr());
    let run = |range: Range<usize>| {
        for p in range {
            // SAFETY: panel p's own span of `panels`, inside the capacity and
            // written by this call only. Zeroed (0.0 and bfloat16 pairs of
            // 0.0 for the element types used) just before `fill`, in the
            // cache: `fill` leaves the padding columns of the last panel.
            let panel = unsafe {
                out.ptr().add(p * len).write_bytes(0, len);
                out.slice(p * len..(p + 1) * len)
            };
            fill(p, panel);
        }
    };
    if parallel {
        par_for(n_panels, run);
    } else {
        run(0..n_panels);
    }
    // SAFETY: every panel was zeroed and filled above.
    unsafe { panels.set_len(n_panels * len) };
    panels
}

simd_fn! {
    /// `x` rounded to bfloat16, two to a word (`x[2i]` in the low half),
    /// the last high half 0 when `x` is odd.
    pub(crate) fn round_to_bf16_pairs(x: &[f32], out: &mut [u32]) => round_to_bf16_pairs_body
}

#[inline(always)]
fn round_to_bf16_pairs_body(x: &[f32], out: &mut [u32]) {
    let pairs = x.chunks_exact(2);
    if let &[last] = pairs.remainder() {
        out[x.len() / 2] = bf16_bits(last) as u32;
    }
    for (o, pair) in out.iter_mut().zip(pairs) {
        *o = bf16_bits(pair[0]) as u32 | (bf16_bits(pair[1]) as u32) << 16;
    }
}

/// x as a product reads it.
#[derive(Clone, Copy)]
enum Input<'a> {
    F32(&'a [f32]),
    /// Rows of `ceil(in / 2)` pairs of bfloat16, a word each (low half first).
    Bf16(&'a [u32]),
}

/// One product's panels in the element type a kernel reads (`T` is f32,
/// or u32 for a pair of bfloat16; a panel is `[steps, NR]`), and where its
/// rows of x and y lie.
struct Weights<'a, T> {
    panels: &'a [T],
    bias: Option<&'a [f32]>,
    /// Rows of a panel: inputs in float32, pairs of inputs in bfloat16.
    steps: usize,
    /// Output columns.
    out_dim: usize,
    /// Elements from one panel's start to the next's: `steps * NR` for a
    /// packed layer, more where a product sums part of the panels' depth.
    panel_stride: usize,
    /// Where the rows of x lie (row after row in float32).
    x: RowLayout,
    /// Elements from one row of y to the next.
    ldc: usize,
}

impl<'a, T> Weights<'a, T> {
    fn new(w: &'a PackedLinear, panels: &'a [T], steps: usize) -> Self {
        Weights {
            panels,
            bias: w.bias.as_deref(),
            steps,
            out_dim: w.out_dim,
            panel_stride: steps * NR,
            x: RowLayout::by_rows(steps),
            ldc: w.out_dim,
        }
    }

    fn panel(&self, p: usize) -> &'a [T] {
        &self.panels[p * self.panel_stride..p * self.panel_stride + self.steps * NR]
    }

    fn bias_panel(&self, p: usize) -> Option<&'a [f32]> {
        self.bias.map(|b| &b[p * NR..(p + 1) * NR])
    }
}

/// Plain Rust the compiler vectorises; used where AVX-512 is missing.
mod portable {
    use std::ops::Range;

    use super::{Output, Weights, NR, R};
    use crate::cpu::simd::bf16_value;

    /// # Safety
    /// As [`super::PackedLinear::forward_panels`]; the CPU must have AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_avx2(
        w: &Weights<f32>,
        x: &[f32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        // SAFETY: the caller vouches for y.
        unsafe { forward_generic(w, x, rows, y, panels, output) };
    }

    /// # Safety
    /// As [`super::PackedLinear::forward_panels`]; the CPU must have AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_bf16_avx2(
        w: &Weights<u32>,
        x: &[u32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        // SAFETY: the caller vouches for y.
        unsafe { forward_bf16_generic(w, x, rows, y, panels, output) };
    }

    /// # Safety
    /// As [`super::PackedLinear::forward_panels`].
    #[inline(always)]
    pub(super) unsafe fn forward_generic(
        w: &Weights<f32>,
        x: &[f32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        let k = w.x.stride;
        // SAFETY: the caller vouches for y.
        unsafe {
            for_each_block(w, rows, y, panels, output, |panel, r0, acc| {
                for (i, b) in panel.chunks_exact(NR).enumerate() {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let a = x[(r0 + r) * k + i];
                        for (c, &b) in acc.iter_mut().zip(b) {
                            *c += a * b;
                        }
                    }
                }
            })
        };
    }

    /// [`forward_generic`] on bfloat16 pairs: each product exact in float32,
    /// the pair's two added to the sum in turn.
    ///
    /// # Safety
    /// As [`super::PackedLinear::forward_panels`].
    #[inline(always)]
    pub(super) unsafe fn forward_bf16_generic(
        w: &Weights<u32>,
        x: &[u32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        let x_at = |r: usize, i: usize| x[w.x.index(r, i)];
        let halves = |word: u32| (bf16_value(word as u16), bf16_value((word >> 16) as u16));
        // SAFETY: the caller vouches for y.
        unsafe {
            for_each_block(w, rows, y, panels, output, |panel, r0, acc| {
                for (i, b) in panel.chunks_exact(NR).enumerate() {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let (a0, a1) = halves(x_at(r0 + r, i));
                        for (c, &b) in acc.iter_mut().zip(b) {
                            let (b0, b1) = halves(b);
                            *c = *c + a0 * b0 + a1 * b1;
                        }
                    }
                }
            })
        };
    }

    /// Runs `block(panel, r0, acc)` for each panel and block of up to `R`
    /// rows starting at r0 (`acc` as long as the block), then writes `acc`.
    ///
    /// # Safety
    /// As [`super::PackedLinear::forward_panels`].
    #[inline(always)]
    unsafe fn for_each_block<T>(
        w: &Weights<T>,
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
        block: impl Fn(&[T], usize, &mut [[f32; NR]]),
    ) {
        let (n, ldc) = (w.out_dim, w.ldc);
        for p in panels {
            let cols = NR.min(n - p * NR);
            let bias = w.bias_panel(p);
            for r0 in (0..rows).step_by(R) {
                let mut acc = [[0f32; NR]; R];
                let acc = &mut acc[..R.min(rows - r0)];
                block(w.panel(p), r0, acc);
                for (r, acc) in acc.iter().enumerate() {
                    // SAFETY: row r0 + r, columns of panel p: the caller's to write.
                    let out = unsafe {
                        std::slice::from_raw_parts_mut(y.add((r0 + r) * ldc + p * NR), cols)
                    };
                    for (c, o) in out.iter_mut().enumerate() {
                        let v = acc[c] + bias.map_or(0.0, |b| b[c]);
                        *o = match output {
                            Output::Overwrite => v,
                            Output::Accumulate => *o + v,
                        };
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{Output, Weights, NR, R};
    use crate::cpu::simd::by_rows;

    /// # Safety
    /// As [`super::PackedLinear::forward_panels`]; the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(
        w: &Weights<f32>,
        x: &[f32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        let (k, stride) = (w.steps, w.x.stride);
        // SAFETY (each block): rows r0.. of x hold k values each, and rows
        // r0.. of y hold n values, p * NR + cols <= n of them here.
        unsafe {
            for_each_block(w, rows, y, panels, output, |r0, left, b, c, ldc, store| {
                let a = x.as_ptr().add(r0 * stride);
                by_rows!(left, block(a, stride, k, b, c, ldc, store))
            })
        };
    }

    /// [`forward`] on bfloat16 pairs, with the CPU's bf16 dot products.
    ///
    /// # Safety
    /// As [`super::PackedLinear::forward_panels`]; the CPU must have AVX-512F and AVX-512 BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn forward_bf16(
        w: &Weights<u32>,
        x: &[u32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        let (pairs, layout) = (w.steps, w.x);
        // SAFETY (each block): x holds `pairs` words of rows r0.. where
        // `layout` puts them (the caller's bound), and rows r0.. of y hold
        // n values at ldc, p * NR + cols <= n of them here.
        unsafe {
            for_each_block(w, rows, y, panels, output, |r0, left, b, c, ldc, store| {
                let a = x.as_ptr().add(r0 * layout.stride);
                let steps = (layout.row_step, layout.step);
                by_rows!(left, block_bf16(a, steps, pairs, b, c, ldc, store))
            })
        };
    }

    /// Walks `panels` and blocks of up to [`R`] rows, calling
    /// `block(r0, rows_left, (panel, next_panel), c, ldc, store)`.
    ///
    /// # Safety
    /// As [`super::PackedLinear::forward_panels`].
    #[inline(always)]
    unsafe fn for_each_block<T>(
        w: &Weights<T>,
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
        block: impl Fn(usize, usize, (*const T, *const T), *mut f32, usize, &Store),
    ) {
        let (n, ldc) = (w.out_dim, w.ldc);
        for p in panels.clone() {
            let panel = w.panel(p).as_ptr();
            // The next panel is fetched into L2 while this one is computed,
            // so weights streamed from memory or L3 do not stall the first
            // rows of each panel.
            let ahead = w.panel(if p + 1 < panels.end { p + 1 } else { p }).as_ptr();
            let cols = NR.min(n - p * NR);
            let store = Store {
                masks: lane_masks(cols),
                bias: w.bias_panel(p).map(<[f32]>::as_ptr),
                accumulate: output == Output::Accumulate,
            };
            let mut r0 = 0;
            while r0 < rows {
                // SAFETY: row r0's outputs of panel p, the caller's to write.
                let c = unsafe { y.add(r0 * ldc + p * NR) };
                block(r0, rows - r0, (panel, ahead), c, ldc, &store);
                r0 += R.min(rows - r0);
            }
        }
    }

    /// How one panel's outputs are written.
    struct Store {
        /// Which lanes of the two vectors are real columns.
        masks: [__mmask16; 2],
        bias: Option<*const f32>,
        accumulate: bool,
    }

    fn lane_masks(cols: usize) -> [__mmask16; 2] {
        let lanes = |n: usize| -> __mmask16 {
            if n >= 16 {
                0xffff
            } else {
                (1u16 << n) - 1
            }
        };
        [lanes(cols), lanes(cols.saturating_sub(16))]
    }

    /// `ROWS` rows of x (`stride` apart) times one panel ([k, NR]) into
    /// `ROWS` rows of y (stride `ldc`), prefetching the panel after it.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const ROWS: usize>(
        a: *const f32,
        stride: usize,
        k: usize,
        (panel, ahead): (*const f32, *const f32),
        c: *mut f32,
        ldc: usize,
        store: &Store,
    ) {
        let mut lo = [_mm512_setzero_ps(); ROWS];
        let mut hi = [_mm512_setzero_ps(); ROWS];
        for i in 0..k {
            _mm_prefetch::<_MM_HINT_T1>(ahead.add(i * NR).cast());
            _mm_prefetch::<_MM_HINT_T1>(ahead.add(i * NR + 16).cast());
            let b0 = _mm512_loadu_ps(panel.add(i * NR));
            let b1 = _mm512_loadu_ps(panel.add(i * NR + 16));
            for r in 0..ROWS {
                let x = _mm512_set1_ps(*a.add(r * stride + i));
                lo[r] = _mm512_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
            }
        }
        write(&lo, &hi, c, ldc, store);
    }

    /// [`block`] on bfloat16: x rows of words (two bfloat16 each; row r's
    /// pair i at `a[r * row_step + i * step]`), a panel of `[pairs, NR]`
    /// words.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn block_bf16<const ROWS: usize>(
        a: *const u32,
        (row_step, step): (usize, usize),
        pairs: usize,
        (panel, ahead): (*const u32, *const u32),
        c: *mut f32,
        ldc: usize,
        store: &Store,
    ) {
        let mut lo = [_mm512_setzero_ps(); ROWS];
        let mut hi = [_mm512_setzero_ps(); ROWS];
        for i in 0..pairs {
            _mm_prefetch::<_MM_HINT_T1>(ahead.add(i * NR).cast());
            _mm_prefetch::<_MM_HINT_T1>(ahead.add(i * NR + 16).cast());
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(panel.add(i * NR).cast()));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(panel.add(i * NR + 16).cast()));
            for r in 0..ROWS {
                let x: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.add(r * row_step + i * step) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], x, b0);
                hi[r] = _mm512_dpbf16_ps(hi[r], x, b1);
            }
        }
        write(&lo, &hi, c, ldc, store);
    }

    /// Adds the bias (and y, when accumulating) to a block's sums and
    /// stores the real columns.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn write<const ROWS: usize>(
        lo: &[__m512; ROWS],
        hi: &[__m512; ROWS],
        c: *mut f32,
        ldc: usize,
        store: &Store,
    ) {
        let [m0, m1] = store.masks;
        let (bias0, bias1) = match store.bias {
            Some(b) => (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16))),
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        for r in 0..ROWS {
            let out = c.add(r * ldc);
            // wrapping: with fewer than 16 columns the high half is fully
            // masked and this address may lie past the end of y.
            let high = out.wrapping_add(16);
            let mut v0 = _mm512_add_ps(lo[r], bias0);
            let mut v1 = _mm512_add_ps(hi[r], bias1);
            if store.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, out));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, high));
            }
            _mm512_mask_storeu_ps(out, m0, v0);
            _mm512_mask_storeu_ps(high, m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRECISIONS: [Precision; 2] = [Precision::Float32, Precision::Bfloat16];

    /// x W^T + b in f64, straight from the definition, with x and W rounded
    /// to bfloat16 first in that precision (the sums are float32's to check).
    fn reference(
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        (rows, n, k): (usize, usize, usize),
        precision: Precision,
    ) -> Vec<f64> {
        let value = |v: f32| match precision {
            Precision::Float32 => v as f64,
            Precision::Bfloat16 => bf16_value(bf16_bits(v)) as f64,
        };
        let mut y = vec![0f64; rows * n];
        for r in 0..rows {
            for o in 0..n {
                let dot: f64 = (0..k)
                    .map(|i| value(x[r * k + i]) * value(w[o * k + i]))
                    .sum();
                y[r * n + o] = dot + b.map_or(0.0, |b| b[o] as f64);
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn check(y: &[f32], expected: &[f64], what: &str) {
        for (i, (&a, &b)) in y.iter().zip(expected).enumerate() {
            // Relative: long sums of float32 products round in their last digits.
            assert!(
                (a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{what}: [{i}] {a} vs {b}"
            );
        }
    }

    /// The plain-Rust kernels' product, whatever the CPU has.
    fn portable(packed: &PackedLinear, x: &[f32], rows: usize, y: &mut [f32], output: Output) {
        let panels = 0..packed.panels();
        packed.with_input(x, rows, |input| match (input, &packed.panels) {
            // SAFETY (both): y holds rows x out values, all this thread's.
            (Input::F32(x), Panels::F32(p)) => unsafe {
                let w = Weights::new(packed, p, packed.in_dim);
                portable::forward_generic(&w, x, rows, y.as_mut_ptr(), panels, output)
            },
            (Input::Bf16(x), Panels::Bf16(p)) => unsafe {
                let w = Weights::new(packed, p, packed.in_dim.div_ceil(2));
                portable::forward_bf16_generic(&w, x, rows, y.as_mut_ptr(), panels, output)
            },
            _ => unreachable!(),
        });
    }

    #[test]
    fn products_match_the_definition_at_every_shape() {
        // Row counts around the block size, widths with partial panels, odd depths.
        for &(rows, n, k) in &[
            (1, 1, 1),
            (3, 33, 7),
            (8, 32, 16),
            (9, 99, 40),
            (17, 70, 33),
            (64, 96, 5),
            // Over a million weights: packed on the worker threads.
            (3, 1030, 1024),
        ] {
            let (x, w) = (values(rows * k, 1), values(n * k, 2));
            let b = values(n, 3);
            for (bias, precision) in [None, Some(&b[..])]
                .into_iter()
                .flat_map(|b| PRECISIONS.map(|p| (b, p)))
            {
                let what = format!("{precision} {rows}x{k} * {n}");
                let packed = PackedLinear::new(&w, n, k, bias, precision);
                let expected = reference(&x, &w, bias, (rows, n, k), precision);
                let mut y = vec![f32::NAN; rows * n];
                packed.forward(&x, rows, &mut y, Output::Overwrite);
                check(&y, &expected, &what);
                let mut split_y = vec![f32::NAN; rows * n];
                packed.forward_split(&x, rows, &mut split_y, Output::Overwrite);
                assert_eq!(split_y, y, "{what}: split over threads");
                let mut portable_y = vec![f32::NAN; rows * n];
                portable(&packed, &x, rows, &mut portable_y, Output::Overwrite);
                check(&portable_y, &expected, &format!("portable {what}"));

                let start = values(rows * n, 4);
                let plus: Vec<f64> = expected
                    .iter()
                    .zip(&start)
                    .map(|(e, &s)| e + s as f64)
                    .collect();
                let mut acc = start.clone();
                packed.forward(&x, rows, &mut acc, Output::Accumulate);
                check(&acc, &plus, &format!("{what} accumulate"));
                let mut portable_acc = start.clone();
                portable(&packed, &x, rows, &mut portable_acc, Output::Accumulate);
                check(&portable_acc, &plus, &format!("portable {what} accumulate"));
            }
        }
    }

    /// As the training products call it: rows in blocks
    /// ([`RowLayout::blocked`]), part of the panels' depth, and an output
    /// wider than the panels; on this CPU's kernel and the portable one.
    #[test]
    fn blocked_rows_times_part_of_the_panels() {
        let (rows, n, pairs, ldc) = (19, 40, 9, 45);
        let depth = 2..7;
        let (x, w) = (values(rows * 2 * pairs, 7), values(n * 2 * pairs, 8));
        let packed = PackedLinear::new(&w, n, 2 * pairs, None, Precision::Bfloat16);
        let Panels::Bf16(panels) = &packed.panels else {
            unreachable!()
        };
        let layout = RowLayout::blocked(pairs);
        let mut words = vec![0u32; rows.next_multiple_of(R) * pairs];
        for (r, row) in x.chunks_exact(2 * pairs).enumerate() {
            let mut by_rows = vec![0u32; pairs];
            round_to_bf16_pairs(row, &mut by_rows);
            for (i, &word) in by_rows.iter().enumerate() {
                words[layout.index(r, i)] = word;
            }
        }
        let value = |v: f32| bf16_value(bf16_bits(v)) as f64;
        let expected: Vec<f64> = (0..rows * n)
            .map(|e| {
                let (r, o) = (e / n, e % n);
                (2 * depth.start..2 * depth.end)
                    .map(|i| value(x[r * 2 * pairs + i]) * value(w[o * 2 * pairs + i]))
                    .sum()
            })
            .collect();
        let b = PairPanels {
            panels: &panels[depth.start * NR..],
            stride: pairs * NR,
            pairs: depth.len(),
            cols: n,
        };
        let x = &words[depth.start * R..];
        let run = |portable: bool| {
            let mut y = vec![7f32; rows * ldc];
            // SAFETY: y holds rows rows of ldc >= n values, all this thread's.
            unsafe {
                if portable {
                    let w = Weights {
                        panels: b.panels,
                        bias: None,
                        steps: b.pairs,
                        out_dim: n,
                        panel_stride: b.stride,
                        x: layout,
                        ldc,
                    };
                    let panels = 0..n.div_ceil(NR);
                    portable::forward_bf16_generic(
                        &w,
                        x,
                        rows,
                        y.as_mut_ptr(),
                        panels,
                        Output::Overwrite,
                    );
                } else {
                    bf16_panel_product(
                        (x, layout),
                        rows,
                        b,
                        (y.as_mut_ptr(), ldc),
                        Output::Overwrite,
                    );
                }
            }
            y
        };
        for (what, y) in [("this CPU", run(false)), ("portable", run(true))] {
            for (r, row) in y.chunks_exact(ldc).enumerate() {
                check(&row[..n], &expected[r * n..(r + 1) * n], what);
                assert!(
                    row[n..].iter().all(|&v| v == 7.0),
                    "{what}: past the output"
                );
            }
        }
    }

    #[test]
    fn columns_past_the_output_are_not_written() {
        // y rows are exactly `out` wide: a write past column 2 would land in the next row.
        let (rows, n, k) = (5, 3, 4);
        let (x, w) = (values(rows * k, 5), values(n * k, 6));
        for precision in PRECISIONS {
            let packed = PackedLinear::new(&w, n, k, None, precision);
            let mut y = vec![0f32; rows * n + 8];
            y[rows * n..].fill(7.0);
            packed.forward(&x, rows, &mut y, Output::Overwrite);
            assert!(y[rows * n..].iter().all(|&v| v == 7.0));
            let expected = reference(&x, &w, None, (rows, n, k), precision);
            check(&y[..rows * n], &expected, "narrow");
        }
    }

    #[test]
    fn rows_read_back_as_packed() {
        let (n, k) = (40, 7);
        let w = values(n * k, 8);
        for precision in PRECISIONS {
            let packed = PackedLinear::new(&w, n, k, None, precision);
            for o in [0, 5, 31, 32, 39] {
                let mut row = vec![f32::NAN; k];
                packed.copy_row(o, &mut row);
                let expected: Vec<f32> = w[o * k..(o + 1) * k]
                    .iter()
                    .map(|&v| match precision {
                        Precision::Float32 => v,
                        Precision::Bfloat16 => bf16_value(bf16_bits(v)),
                    })
                    .collect();
                assert_eq!(row, expected, "{precision} row {o}");
            }
        }
    }

    #[test]
    fn bfloat16_rounds_to_nearest_even() {
        let cases: [(f32, u16); 7] = [
            (1.0, 0x3f80),
            (-2.5, 0xc020),
            // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to even (1).
            (1.0 + 1.0 / 256.0, 0x3f80),
            // 1 + 3 * 2^-8 lies halfway between two odd/even neighbours: up to even.
            (1.0 + 3.0 / 256.0, 0x3f82),
            (1.0 + 1.0 / 256.0 + 1.0 / 65536.0, 0x3f81),
            (f32::MAX, 0x7f80),
            (f32::INFINITY, 0x7f80),
        ];
        for (x, bits) in cases {
            assert_eq!(bf16_bits(x), bits, "{x}");
        }
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
        assert_eq!(bf16_value(0x3f80), 1.0);
    }
}
