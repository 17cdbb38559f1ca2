//! A linear layer packed for products with few rows.
//!
//! `y = x W^T + b` with W stored as panels of [`NR`] output columns, each
//! panel `[in, NR]` contiguous: the micro-kernel walks one panel top to
//! bottom, keeping an `R x NR` block of outputs in registers, so each weight
//! is loaded once per `R` rows. On AVX-512 this runs at the FMA peak of the
//! core for any row count; a general matrix library tuned for large
//! products loses most of that at the 8-64 rows of a decode step.

use std::ops::Range;

use crate::cpu::parallel::{par_for, SharedMut};
use crate::cpu::simd::{level, Level};

/// Output columns per panel: two 16-lane vectors.
pub(crate) const NR: usize = 32;
/// Rows per micro-kernel call.
const R: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct PackedLinear {
    /// `ceil(out / NR)` panels of `[in, NR]`; columns past `out` are zero.
    panels: Vec<f32>,
    /// Padded to whole panels.
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

/// What a product does with the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// `y = x W^T + b`
    Overwrite,
    /// `y += x W^T + b` (a residual connection)
    Accumulate,
}

impl PackedLinear {
    /// Packs `weight` ([out, in], row-major, as checkpoints store it).
    #[cfg(test)]
    pub(crate) fn new(weight: &[f32], out_dim: usize, in_dim: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(weight.len(), out_dim * in_dim, "weight shape");
        Self::stacked(&[weight], in_dim, bias.map(|b| vec![b]).as_deref())
    }

    /// Packs weights stacked by output ([out_i, in] each, row-major, as
    /// checkpoints store them): q, k and v become one product. `bias`, if
    /// given, has one part per weight.
    pub(crate) fn stacked(parts: &[&[f32]], in_dim: usize, bias: Option<&[&[f32]]>) -> Self {
        let rows: Vec<&[f32]> = parts.iter().flat_map(|p| p.chunks_exact(in_dim)).collect();
        assert!(parts.iter().all(|p| p.len() % in_dim == 0), "weight shape");
        let out_dim = rows.len();
        let n_panels = out_dim.div_ceil(NR);
        let panel_len = in_dim * NR;
        let mut panels = vec![0f32; n_panels * panel_len];
        let pack = |range: Range<usize>, out: SharedMut<f32>| {
            for p in range {
                // SAFETY: panel p's own span of `panels`, written by this call only.
                let panel = unsafe { out.slice(p * panel_len..(p + 1) * panel_len) };
                for (col, row) in rows[p * NR..].iter().take(NR).enumerate() {
                    for (i, &w) in row.iter().enumerate() {
                        panel[i * NR + col] = w;
                    }
                }
            }
        };
        let out = SharedMut(panels.as_mut_ptr());
        // Share big matrices out over the worker threads (panels are
        // disjoint); small ones stay here, leaving the workers idle rather
        // than spinning.
        if out_dim * in_dim >= 1 << 20 {
            par_for(n_panels, |range| pack(range, out));
        } else {
            pack(0..n_panels, out);
        }
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
        let panel = self.panel(o / NR);
        for (v, w) in out.iter_mut().zip(panel.iter().skip(o % NR).step_by(NR)) {
            *v = *w;
        }
    }

    /// Output width.
    pub(crate) fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `y[rows, out] (=|+=) x[rows, in] W^T + b`.
    pub(crate) fn forward(&self, x: &[f32], rows: usize, y: &mut [f32], output: Output) {
        assert!(x.len() >= rows * self.in_dim && y.len() >= rows * self.out_dim);
        // SAFETY: y holds rows x out values (asserted) and this thread owns all of them.
        unsafe { self.forward_panels(x, rows, y.as_mut_ptr(), 0..self.panels(), output) };
    }

    /// [`PackedLinear::forward`] with the output panels shared out over
    /// candle's CPU worker threads. For large weights and few rows, reading
    /// the weights bounds the time: this way each core reads only its part.
    pub(crate) fn forward_split(&self, x: &[f32], rows: usize, y: &mut [f32], output: Output) {
        assert!(x.len() >= rows * self.in_dim && y.len() >= rows * self.out_dim);
        let out = SharedMut(y.as_mut_ptr());
        par_for(self.panels(), |panels| {
            // SAFETY: y holds rows x out values (asserted); each task writes
            // only the columns of its own panels.
            unsafe { self.forward_panels(x, rows, out.ptr(), panels, output) };
        });
    }

    /// Weights held, padding included.
    pub(crate) fn len(&self) -> usize {
        self.panels.len()
    }

    fn panels(&self) -> usize {
        self.out_dim.div_ceil(NR)
    }

    /// The products for output panels `panels` only.
    ///
    /// # Safety
    /// `y` must point to `rows * out_dim` values whose columns in `panels`
    /// no other thread touches meanwhile.
    unsafe fn forward_panels(
        &self,
        x: &[f32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        match level() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-512F; the caller vouches for y.
            Level::Avx512 => unsafe { avx512::forward(self, x, rows, y, panels, output) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA; the caller vouches for y.
            Level::Avx2 => unsafe { portable::forward_avx2(self, x, rows, y, panels, output) },
            // SAFETY: the caller vouches for y.
            _ => unsafe { portable::forward_generic(self, x, rows, y, panels, output) },
        }
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.panels[p * self.in_dim * NR..(p + 1) * self.in_dim * NR]
    }

    fn bias_panel(&self, p: usize) -> Option<&[f32]> {
        self.bias.as_deref().map(|b| &b[p * NR..(p + 1) * NR])
    }
}

/// Plain Rust the compiler vectorises; used where AVX-512 is missing.
mod portable {
    use std::ops::Range;

    use super::{Output, PackedLinear, NR, R};

    /// # Safety
    /// As [`PackedLinear::forward_panels`]; the CPU must have AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_avx2(
        w: &PackedLinear,
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
    /// As [`PackedLinear::forward_panels`].
    #[inline(always)]
    pub(super) unsafe fn forward_generic(
        w: &PackedLinear,
        x: &[f32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        let (k, n) = (w.in_dim, w.out_dim);
        for p in panels {
            let panel = w.panel(p);
            let cols = NR.min(n - p * NR);
            for r0 in (0..rows).step_by(R) {
                let block = R.min(rows - r0);
                let mut acc = [[0f32; NR]; R];
                for (i, b) in panel.chunks_exact(NR).enumerate() {
                    for (r, acc) in acc.iter_mut().enumerate().take(block) {
                        let a = x[(r0 + r) * k + i];
                        for (c, &b) in acc.iter_mut().zip(b) {
                            *c += a * b;
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate().take(block) {
                    // SAFETY: row r0 + r, columns of panel p: the caller's to write.
                    let out = unsafe {
                        std::slice::from_raw_parts_mut(y.add((r0 + r) * n + p * NR), cols)
                    };
                    let bias = w.bias_panel(p);
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

    use super::{Output, PackedLinear, NR, R};

    /// # Safety
    /// As [`PackedLinear::forward_panels`]; the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(
        w: &PackedLinear,
        x: &[f32],
        rows: usize,
        y: *mut f32,
        panels: Range<usize>,
        output: Output,
    ) {
        let (k, n) = (w.in_dim, w.out_dim);
        for p in panels.clone() {
            let panel = w.panel(p).as_ptr();
            // The next panel is fetched into L2 while this one is computed,
            // so weights streamed from memory or L3 do not stall the first
            // rows of each panel.
            let ahead = w.panel(if p + 1 < panels.end { p + 1 } else { p }).as_ptr();
            let bias = w.bias_panel(p).map(<[f32]>::as_ptr);
            let cols = NR.min(n - p * NR);
            let store = Store {
                masks: lane_masks(cols),
                bias,
                accumulate: output == Output::Accumulate,
            };
            let mut r0 = 0;
            while r0 < rows {
                let a = x.as_ptr().add(r0 * k);
                let c = y.add(r0 * n + p * NR);
                let b = (panel, ahead);
                // SAFETY (all arms): rows r0.. of x hold k values each, and
                // rows r0.. of y hold n values, p * NR + cols <= n of them here.
                match rows - r0 {
                    1 => block::<1>(a, k, b, c, n, &store),
                    2 => block::<2>(a, k, b, c, n, &store),
                    3 => block::<3>(a, k, b, c, n, &store),
                    4 => block::<4>(a, k, b, c, n, &store),
                    5 => block::<5>(a, k, b, c, n, &store),
                    6 => block::<6>(a, k, b, c, n, &store),
                    7 => block::<7>(a, k, b, c, n, &store),
                    _ => block::<R>(a, k, b, c, n, &store),
                }
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

    /// `ROWS` rows of x (row stride `k`) times one panel ([k, NR]) into
    /// `ROWS` rows of y (stride `ldc`), prefetching the panel after it.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const ROWS: usize>(
        a: *const f32,
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
                let x = _mm512_set1_ps(*a.add(r * k + i));
                lo[r] = _mm512_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
            }
        }
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

    /// x W^T + b in f64, straight from the definition.
    fn reference(
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        rows: usize,
        n: usize,
        k: usize,
    ) -> Vec<f64> {
        let mut y = vec![0f64; rows * n];
        for r in 0..rows {
            for o in 0..n {
                let dot: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
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
            for bias in [None, Some(&b[..])] {
                let packed = PackedLinear::new(&w, n, k, bias);
                let expected = reference(&x, &w, bias, rows, n, k);
                let mut y = vec![f32::NAN; rows * n];
                packed.forward(&x, rows, &mut y, Output::Overwrite);
                check(&y, &expected, &format!("{rows}x{k} * {n}"));
                let mut portable_y = vec![f32::NAN; rows * n];
                // SAFETY: the buffer holds rows x n values, all this thread's.
                unsafe {
                    portable::forward_generic(
                        &packed,
                        &x,
                        rows,
                        portable_y.as_mut_ptr(),
                        0..n.div_ceil(NR),
                        Output::Overwrite,
                    )
                };
                let mut split_y = vec![f32::NAN; rows * n];
                packed.forward_split(&x, rows, &mut split_y, Output::Overwrite);
                assert_eq!(split_y, y, "split over threads");
                check(
                    &portable_y,
                    &expected,
                    &format!("portable {rows}x{k} * {n}"),
                );

                let start = values(rows * n, 4);
                let mut acc = start.clone();
                packed.forward(&x, rows, &mut acc, Output::Accumulate);
                let plus: Vec<f64> = expected
                    .iter()
                    .zip(&start)
                    .map(|(e, &s)| e + s as f64)
                    .collect();
                check(&acc, &plus, "accumulate");
                let mut portable_acc = start.clone();
                // SAFETY: as above.
                unsafe {
                    portable::forward_generic(
                        &packed,
                        &x,
                        rows,
                        portable_acc.as_mut_ptr(),
                        0..n.div_ceil(NR),
                        Output::Accumulate,
                    )
                };
                check(&portable_acc, &plus, "portable accumulate");
            }
        }
    }

    #[test]
    fn columns_past_the_output_are_not_written() {
        // y rows are exactly `out` wide: a write past column 2 would land in the next row.
        let (rows, n, k) = (5, 3, 4);
        let (x, w) = (values(rows * k, 5), values(n * k, 6));
        let packed = PackedLinear::new(&w, n, k, None);
        let mut y = vec![0f32; rows * n + 8];
        y[rows * n..].fill(7.0);
        packed.forward(&x, rows, &mut y, Output::Overwrite);
        assert!(y[rows * n..].iter().all(|&v| v == 7.0));
        check(
            &y[..rows * n],
            &reference(&x, &w, None, rows, n, k),
            "narrow",
        );
    }
}
