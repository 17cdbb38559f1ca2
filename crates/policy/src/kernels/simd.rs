//! Loops written so the compiler vectorises them, and the float types they run on.

use candle_core::Layout;

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
