//! The one SIMD dispatch: the vector instructions of the running CPU,
//! detected once ([`level`]), and [`simd_fn!`], which compiles a loop body
//! for each level and runs the one the CPU has; hand-written intrinsics
//! (the packed products) match on [`level`] themselves. Also the loops
//! written so the compiler vectorises them, and the float types they run on.
//!
//! The levels change speed only: without fast-math the compiler neither
//! reorders nor fuses floating-point operations, so a body computes the
//! same bits at every level.

use std::sync::OnceLock;

use candle_core::Layout;

/// The widest vector instructions the CPU has, of those the hot loops are
/// compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// AVX-512 (F and VL) with FMA.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Neither: the target's baseline.
    Baseline,
}

/// The running CPU's [`Level`], detected on first use.
#[inline]
pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Whether the CPU has AVX-512 bfloat16 dot products (`vdpbf16ps`), beside
/// [`Level::Avx512`]; detected on first use.
#[inline]
pub(crate) fn has_bf16_dot() -> bool {
    static BF16: OnceLock<bool> = OnceLock::new();
    *BF16.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            level() == Level::Avx512 && std::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits; a
/// NaN stays a (quiet) NaN. Integer operations only, so loops over it
/// vectorise and give the same bits on every CPU.
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The float32 a bfloat16's bits stand for (exact).
#[inline(always)]
pub(crate) fn bf16_value(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Defines `$name`, which runs `$body` compiled for the CPU's [`level`].
macro_rules! simd_fn {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            $crate::cpu::simd::simd_fn!(@dispatch [] ($($arg: $ty),*) $(-> $ret)? => $body)
        }
    };
    // A body with a safety contract: it runs under the caller's promise.
    ($(#[$doc:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            $crate::cpu::simd::simd_fn!(@dispatch [unsafe] ($($arg: $ty),*) $(-> $ret)? => $body)
        }
    };
    // `$($unsafe)?` is empty for a safe body, so a safe function cannot
    // call an unsafe body without saying so.
    (@dispatch [$($unsafe:tt)?] ($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512vl,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                // SAFETY (an unsafe body): the caller's promise, passed on.
                $($unsafe)? { $body($($arg),*) }
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                // SAFETY (an unsafe body): the caller's promise, passed on.
                $($unsafe)? { $body($($arg),*) }
            }
            match $crate::cpu::simd::level() {
                // SAFETY: the CPU has the features `avx512` is compiled for.
                $crate::cpu::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                // SAFETY: the CPU has the features `avx2` is compiled for.
                $crate::cpu::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                $crate::cpu::simd::Level::Baseline => {}
            }
        }
        // SAFETY (an unsafe body): the caller's promise, passed on.
        $($unsafe)? { $body($($arg),*) }
    }};
}
pub(crate) use simd_fn;

/// The most rows [`by_rows!`] hands a block.
pub(crate) const MAX_BLOCK_ROWS: usize = 8;

/// Calls `$block::<ROWS>($args)` with ROWS = `$left`, from 1 to
/// [`MAX_BLOCK_ROWS`] (that for more), so a kernel keeps a block of rows in
/// registers.
macro_rules! by_rows {
    ($left:expr, $block:ident($($arg:expr),*)) => {
        match $left {
            1 => $block::<1>($($arg),*),
            2 => $block::<2>($($arg),*),
            3 => $block::<3>($($arg),*),
            4 => $block::<4>($($arg),*),
            5 => $block::<5>($($arg),*),
            6 => $block::<6>($($arg),*),
            7 => $block::<7>($($arg),*),
            _ => $block::<8>($($arg),*),
        }
    };
}
pub(crate) use by_rows;

/// Sum with eight independent partial sums, so it vectorises.
#[inline(always)]
pub(crate) fn sum<T: Float>(values: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(T::ZERO, |a, &v| a + v);
    for chunk in chunks {
        for i in 0..8 {
            acc[i] = acc[i] + chunk[i];
        }
    }
    acc.iter().fold(tail, |a, &v| a + v)
}

/// The largest element, with eight running maxima so it vectorises.
#[inline(always)]
pub(crate) fn max<T: Float>(v: &[T]) -> T {
    let bigger = |a: T, b: T| if a > b { a } else { b };
    let mut acc = [T::NEG_INFINITY; 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(T::NEG_INFINITY, bigger);
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = bigger(*a, x);
        }
    }
    acc.iter().copied().fold(tail, bigger)
}

/// `sum(a * b * c)` (c = 1 when None) with eight partial sums, so it vectorises.
#[inline(always)]
pub(crate) fn dot3<T: Float>(a: &[T], b: &[T], c: Option<&[T]>) -> T {
    let mut acc = [T::ZERO; 8];
    let n = a.len() / 8 * 8;
    match c {
        None => {
            for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
                for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
                    *s = *s + p * q;
                }
            }
        }
        Some(c) => {
            for ((x, y), z) in a
                .chunks_exact(8)
                .zip(b.chunks_exact(8))
                .zip(c.chunks_exact(8))
            {
                for (((s, &p), &q), &r) in acc.iter_mut().zip(x).zip(y).zip(z) {
                    *s = *s + p * q * r;
                }
            }
        }
    }
    let mut total = acc.iter().fold(T::ZERO, |x, &y| x + y);
    for k in n..a.len() {
        let p = a[k] * b[k];
        total = total + c.map_or(p, |c| p * c[k]);
    }
    total
}

/// The contiguous slice a layout covers.
pub(crate) fn contiguous<'a, T>(
    v: &'a [T],
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: inputs must be contiguous"),
    }
}

/// e^x to within about 2 ulp for x <= 88 (Cephes' expf: x = n ln2 + r, a
/// degree-6 polynomial for e^r, 2^n from the exponent bits); below -87 it
/// gives 0. Branch-free, so loops over it vectorise.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by the 1.5 * 2^23 trick: plain arithmetic, no libm call.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let rounded = xc * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    // 2^n from the bits of `rounded` (its low mantissa bits hold n): an
    // `as i32` cast would be converted one lane at a time.
    let two_n = f32::from_bits(rounded.to_bits().wrapping_add(127) << 23);
    let e = (p * r * r + r + 1.0) * two_n;
    if x < -87.0 {
        0.0
    } else {
        e
    }
}

/// e^x; for f32 the fast polynomial [`exp_f32`].
pub(crate) trait Exp {
    fn exp_fast(self) -> Self;
}

pub(crate) trait Float:
    Copy
    + Send
    + Sync
    + Exp
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn neg(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn ln(self) -> Self;
    fn from_f64(v: f64) -> Self;
    /// `self * a + b`, rounded once.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn neg(self) -> Self {
                -self
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
        }
    };
}
float!(f32);
float!(f64);

impl Exp for f32 {
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
}

impl Exp for f64 {
    fn exp_fast(self) -> Self {
        self.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_accurate() {
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (ours, exact) = (exp_f32(x) as f64, (x as f64).exp());
            assert!(
                (ours - exact).abs() <= 3e-7 * exact,
                "exp({x}): {ours} vs {exact}"
            );
        }
        // Below e^-87 (about 1.6e-38) it flushes to zero; softmax cannot tell.
        assert_eq!(exp_f32(-88.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    }
}
