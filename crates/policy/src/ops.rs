//! Fused CPU kernels that, unlike candle's, pass gradients: softmax, RoPE and
//! RMSNorm. Built from basic tensor operations, each is several passes over
//! an activation forward and more backward; on the CPU that, not the matrix
//! products, dominated a training step. Other devices (and dtypes other than
//! f32 / f64) use the compositions.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};

use crate::error::Result;

/// Defines `$name(args)`, which runs `$body` compiled for AVX2 + FMA when
/// the CPU has them (the kernels are written so they vectorise) and as
/// plain code otherwise.
macro_rules! vectorised {
    ($name:ident, $avx2:ident, $body:ident::<$t:ty>($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the features $avx2 is compiled for.
                return unsafe { $avx2($($arg),*) };
            }
            $body::<$t>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) -> $ret {
            $body::<$t>($($arg),*)
        }
    };
}

/// Sum with eight independent partial sums, so it vectorises.
#[inline(always)]
fn sum<T: num_like::Float>(values: &[T]) -> T {
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
fn dot3<T: num_like::Float>(a: &[T], b: &[T], c: Option<&[T]>) -> T {
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

/// Softmax over the last dimension with an analytic backward pass. On other
/// devices it falls back to candle's differentiable composition.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_cpu(x) {
        Ok(x.contiguous()?.apply_op1(SoftmaxLastDim)?)
    } else {
        Ok(candle_nn::ops::softmax(x, D::Minus1)?)
    }
}

struct SoftmaxLastDim;

#[inline(always)]
fn softmax_rows<T: num_like::Float>(src: &[T], dim: usize) -> Vec<T> {
    let mut dst = vec![T::ZERO; src.len()];
    for (row, out) in src.chunks_exact(dim).zip(dst.chunks_exact_mut(dim)) {
        let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
        for (o, &x) in out.iter_mut().zip(row) {
            *o = (x - max).exp_fast();
        }
        let inv = T::ONE / sum(out);
        for o in out.iter_mut() {
            *o = *o * inv;
        }
    }
    dst
}

vectorised!(softmax_rows_f32, softmax_rows_f32_avx2, softmax_rows::<f32>(src: &[f32], dim: usize) -> Vec<f32>);

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "verity-softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax input must be contiguous")
        };
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(softmax_rows_f32(&v[start..end], dim)),
            CpuStorage::F64(v) => CpuStorage::F64(softmax_rows(&v[start..end], dim)),
            _ => candle_core::bail!("softmax: only f32 and f64 on the CPU"),
        };
        Ok((out, layout.shape().clone()))
    }

    /// d softmax: `y * (dy - sum(dy * y))` along the last dimension.
    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some(res.mul(&grad_res.broadcast_sub(&dot)?)?))
    }
}

/// Whether the fused CPU kernels handle `x` (f32 or f64 on the CPU).
pub(crate) fn fused_cpu(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Rotary embedding of `x` [B, T, heads, D] with per-token `cos`, `sin`
/// [B, T, D/2] (rotate-half form), with a backward pass: the rotation's
/// transpose, i.e. the same rotation with `-sin`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope)?)
}

struct Rope;

fn rope_rows<T: num_like::Float>(x: &[T], cos: &[T], sin: &[T], heads: usize, d: usize) -> Vec<T> {
    let half = d / 2;
    let mut out = vec![T::ZERO; x.len()];
    let tokens = x.len() / (heads * d);
    for tok in 0..tokens {
        let (c, s) = (
            &cos[tok * half..(tok + 1) * half],
            &sin[tok * half..(tok + 1) * half],
        );
        for h in 0..heads {
            let base = (tok * heads + h) * d;
            let (src, dst) = (&x[base..base + d], &mut out[base..base + d]);
            for i in 0..half {
                let (x1, x2) = (src[i], src[i + half]);
                dst[i] = x1 * c[i] - x2 * s[i];
                dst[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
    out
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "verity-rope"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        cos: &CpuStorage,
        lc: &Layout,
        sin: &CpuStorage,
        ls: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some(ox), Some(oc), Some(os)) = (
            lx.contiguous_offsets(),
            lc.contiguous_offsets(),
            ls.contiguous_offsets(),
        ) else {
            candle_core::bail!("rope inputs must be contiguous")
        };
        let dims = lx.dims();
        let (heads, d) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        if lc.shape().elem_count() * 2 * heads != lx.shape().elem_count() {
            candle_core::bail!("rope: cos {:?} does not fit x {:?}", lc.dims(), dims)
        }
        let out = match (x, cos, sin) {
            (CpuStorage::F32(x), CpuStorage::F32(c), CpuStorage::F32(s)) => CpuStorage::F32(
                rope_rows(&x[ox.0..ox.1], &c[oc.0..oc.1], &s[os.0..os.1], heads, d),
            ),
            (CpuStorage::F64(x), CpuStorage::F64(c), CpuStorage::F64(s)) => CpuStorage::F64(
                rope_rows(&x[ox.0..ox.1], &c[oc.0..oc.1], &s[os.0..os.1], heads, d),
            ),
            _ => candle_core::bail!("rope: only f32 and f64 on the CPU, all three alike"),
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_x = grad
            .contiguous()?
            .apply_op3_no_bwd(cos, &sin.neg()?, &Rope)?;
        Ok((Some(grad_x), None, None))
    }
}

/// RMSNorm `x / sqrt(mean(x^2) + eps) * weight` over the last dimension, with
/// a backward pass for `x` and `weight`.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2(weight, RmsNorm { eps })?)
}

#[derive(Clone, Copy)]
struct RmsNorm {
    eps: f64,
}

/// What one pass over the rows computes.
#[derive(Clone, Copy)]
enum RmsPass {
    /// `x * r * w`.
    Forward,
    /// `x * r` (the normalised input, for the weight's gradient).
    Normalise,
    /// `r * (dy*w - x * r^2 * mean(dy*w*x))`, the input's gradient; `other` is dy.
    GradInput,
}

#[inline(always)]
fn rms_rows<T: num_like::Float>(x: &[T], w: &[T], other: &[T], eps: f64, pass: RmsPass) -> Vec<T> {
    let d = w.len();
    let mut out = vec![T::ZERO; x.len()];
    let inv_d = T::from_f64(1.0 / d as f64);
    let eps = T::from_f64(eps);
    for (row, (xs, dst)) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let mean_sq = dot3(xs, xs, None) * inv_d;
        let r = T::ONE / (mean_sq + eps).sqrt();
        match pass {
            RmsPass::Forward => {
                for ((o, &v), &wi) in dst.iter_mut().zip(xs).zip(w) {
                    *o = v * r * wi;
                }
            }
            RmsPass::Normalise => {
                for (o, &v) in dst.iter_mut().zip(xs) {
                    *o = v * r;
                }
            }
            RmsPass::GradInput => {
                let dy = &other[row * d..(row + 1) * d];
                let dot = dot3(xs, dy, Some(w)) * inv_d;
                let k = r * r * dot;
                for (((o, &v), &g), &wi) in dst.iter_mut().zip(xs).zip(dy).zip(w) {
                    *o = r * (g * wi - v * k);
                }
            }
        }
    }
    out
}

vectorised!(rms_rows_f32, rms_rows_f32_avx2, rms_rows::<f32>(x: &[f32], w: &[f32], other: &[f32], eps: f64, pass: RmsPass) -> Vec<f32>);

fn rms_apply(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    other: Option<(&CpuStorage, &Layout)>,
    eps: f64,
    pass: RmsPass,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let offsets = |l: &Layout| match l.contiguous_offsets() {
        Some(o) => Ok(o),
        None => candle_core::bail!("rms-norm inputs must be contiguous"),
    };
    let (ox, ow) = (offsets(x.1)?, offsets(w.1)?);
    let oo = match other {
        Some((_, l)) => offsets(l)?,
        None => (0, 0),
    };
    if x.1.dims().last() != Some(&w.1.shape().elem_count()) {
        candle_core::bail!(
            "rms-norm: weight {:?} does not fit x {:?}",
            w.1.dims(),
            x.1.dims()
        )
    }
    let out = match (x.0, w.0, other.map(|o| o.0)) {
        (CpuStorage::F32(xv), CpuStorage::F32(wv), o) => {
            let o = match o {
                Some(CpuStorage::F32(v)) => &v[oo.0..oo.1],
                Some(_) => candle_core::bail!("rms-norm: mixed dtypes"),
                None => &[][..],
            };
            CpuStorage::F32(rms_rows_f32(&xv[ox.0..ox.1], &wv[ow.0..ow.1], o, eps, pass))
        }
        (CpuStorage::F64(xv), CpuStorage::F64(wv), o) => {
            let o = match o {
                Some(CpuStorage::F64(v)) => &v[oo.0..oo.1],
                Some(_) => candle_core::bail!("rms-norm: mixed dtypes"),
                None => &[][..],
            };
            CpuStorage::F64(rms_rows(&xv[ox.0..ox.1], &wv[ow.0..ow.1], o, eps, pass))
        }
        _ => candle_core::bail!("rms-norm: only f32 and f64 on the CPU"),
    };
    Ok((out, x.1.shape().clone()))
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "verity-rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        rms_apply((x, lx), (w, lw), None, self.eps, RmsPass::Forward)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_x = x.apply_op3_no_bwd(w, &grad, &RmsGrad { eps: self.eps })?;
        let normalised = x.apply_op2_no_bwd(w, &RmsNormalise { eps: self.eps })?;
        let d = w.elem_count();
        let grad_w = (grad * normalised)?.reshape(((), d))?.sum(0)?;
        Ok((Some(grad_x), Some(grad_w)))
    }
}

struct RmsNormalise {
    eps: f64,
}

impl CustomOp2 for RmsNormalise {
    fn name(&self) -> &'static str {
        "verity-rms-normalise"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        rms_apply((x, lx), (w, lw), None, self.eps, RmsPass::Normalise)
    }
}

struct RmsGrad {
    eps: f64,
}

impl CustomOp3 for RmsGrad {
    fn name(&self) -> &'static str {
        "verity-rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        dy: &CpuStorage,
        ldy: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        rms_apply(
            (x, lx),
            (w, lw),
            Some((dy, ldy)),
            self.eps,
            RmsPass::GradInput,
        )
    }
}

/// `silu(gate) * up`, the SwiGLU activation, with a backward pass for both.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, Swiglu)?)
}

struct Swiglu;

/// sigmoid(x) from e^-|x| (never overflows).
#[inline(always)]
fn sigmoid<T: num_like::Float>(x: T) -> T {
    let e = x.abs().neg().exp_fast();
    let inv = T::ONE / (T::ONE + e);
    if x >= T::ZERO {
        inv
    } else {
        e * inv
    }
}

#[inline(always)]
fn swiglu_rows<T: num_like::Float>(gate: &[T], up: &[T]) -> Vec<T> {
    let mut out = vec![T::ZERO; gate.len()];
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g * sigmoid(g) * u;
    }
    out
}

/// Gradients of `silu(g) * u`: d_gate then d_up, one after the other.
#[inline(always)]
fn swiglu_grad_rows<T: num_like::Float>(gate: &[T], up: &[T], grad: &[T]) -> Vec<T> {
    let n = gate.len();
    let mut out = vec![T::ZERO; 2 * n];
    let (d_gate, d_up) = out.split_at_mut(n);
    for i in 0..n {
        let (g, u, dy) = (gate[i], up[i], grad[i]);
        let s = sigmoid(g);
        d_up[i] = dy * g * s;
        d_gate[i] = dy * u * s * (T::ONE + g * (T::ONE - s));
    }
    out
}

vectorised!(swiglu_f32, swiglu_f32_avx2, swiglu_rows::<f32>(gate: &[f32], up: &[f32]) -> Vec<f32>);
vectorised!(swiglu_grad_f32, swiglu_grad_f32_avx2, swiglu_grad_rows::<f32>(gate: &[f32], up: &[f32], grad: &[f32]) -> Vec<f32>);

fn contiguous<'a, T>(v: &'a [T], l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: inputs must be contiguous"),
    }
}

impl CustomOp2 for Swiglu {
    fn name(&self) -> &'static str {
        "verity-swiglu"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        u: &CpuStorage,
        lu: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if lg.shape() != lu.shape() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ", lg.dims(), lu.dims())
        }
        let out = match (g, u) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => CpuStorage::F32(swiglu_f32(
                contiguous(g, lg, "swiglu")?,
                contiguous(u, lu, "swiglu")?,
            )),
            (CpuStorage::F64(g), CpuStorage::F64(u)) => CpuStorage::F64(swiglu_rows(
                contiguous(g, lg, "swiglu")?,
                contiguous(u, lu, "swiglu")?,
            )),
            _ => candle_core::bail!("swiglu: only f32 and f64 on the CPU"),
        };
        Ok((out, lg.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let both = gate.apply_op3_no_bwd(up, &grad.contiguous()?, &SwigluGrad)?;
        let d_gate = both.get(0)?.reshape(gate.shape())?;
        let d_up = both.get(1)?.reshape(up.shape())?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

struct SwigluGrad;

impl CustomOp3 for SwigluGrad {
    fn name(&self) -> &'static str {
        "verity-swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        u: &CpuStorage,
        lu: &Layout,
        dy: &CpuStorage,
        ldy: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = lg.shape().elem_count();
        let out = match (g, u, dy) {
            (CpuStorage::F32(g), CpuStorage::F32(u), CpuStorage::F32(dy)) => {
                CpuStorage::F32(swiglu_grad_f32(
                    contiguous(g, lg, "swiglu")?,
                    contiguous(u, lu, "swiglu")?,
                    contiguous(dy, ldy, "swiglu")?,
                ))
            }
            (CpuStorage::F64(g), CpuStorage::F64(u), CpuStorage::F64(dy)) => {
                CpuStorage::F64(swiglu_grad_rows(
                    contiguous(g, lg, "swiglu")?,
                    contiguous(u, lu, "swiglu")?,
                    contiguous(dy, ldy, "swiglu")?,
                ))
            }
            _ => candle_core::bail!("swiglu: only f32 and f64 on the CPU"),
        };
        Ok((out, Shape::from((2, n))))
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
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = (p * r * r + r + 1.0) * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        e
    }
}

/// The few float operations the kernels need, for f32 and f64.
mod num_like {
    /// e^x; for f32 the fast polynomial [`super::exp_f32`].
    pub(crate) trait Exp {
        fn exp_fast(self) -> Self;
    }

    pub(crate) trait Float:
        Copy
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
            super::exp_f32(self)
        }
    }

    impl Exp for f64 {
        fn exp_fast(self) -> Self {
            self.exp()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn matches_candle_forward_and_backward() -> Result<()> {
        let x = Var::from_tensor(&Tensor::randn(0f64, 2.0, (3, 4, 7), &Device::Cpu)?)?;
        let mask = Tensor::new(
            &[0f64, 0., f64::NEG_INFINITY, 0., 0., 0., f64::NEG_INFINITY],
            &Device::Cpu,
        )?;
        let xm = x.broadcast_add(&mask)?;
        let w = Tensor::randn(0f64, 1.0, (3, 4, 7), &Device::Cpu)?;
        let ours = softmax_last_dim(&xm)?;
        let theirs = candle_nn::ops::softmax(&xm, D::Minus1)?;
        let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-15, "forward diff {diff}");
        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        let (g1, g2) = (g1.get(&x).expect("grad"), g2.get(&x).expect("grad"));
        let diff = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-14, "backward diff {diff}");
        assert_eq!(g1.dtype(), DType::F64);
        Ok(())
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn rope_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 4, 8), &dev)?)?;
        let angles = Tensor::randn(0f64, 3.0, (2, 3, 4), &dev)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let w = Tensor::randn(0f64, 1.0, (2, 3, 4, 8), &dev)?;
        let ours = rope(&x, &cos, &sin)?;
        // Reference: x * cos + rotate_half(x) * sin with cos, sin repeated.
        let (c, s) = (
            Tensor::cat(&[&cos, &cos], 2)?.unsqueeze(2)?,
            Tensor::cat(&[&sin, &sin], 2)?.unsqueeze(2)?,
        );
        let rotated = Tensor::cat(&[&x.narrow(3, 4, 4)?.neg()?, &x.narrow(3, 0, 4)?], 3)?;
        let theirs = (x.broadcast_mul(&c)? + rotated.broadcast_mul(&s)?)?;
        assert!(max_diff(&ours, &theirs) < 1e-14);
        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&x).expect("grad"), g2.get(&x).expect("grad")) < 1e-14);
        Ok(())
    }

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

    #[test]
    fn f32_softmax_matches_candle() -> Result<()> {
        let x = (Tensor::randn(0f32, 4.0, (5, 33), &Device::Cpu)? - 30.0)?;
        let diff = max_diff(
            &softmax_last_dim(&x)?.to_dtype(DType::F64)?,
            &candle_nn::ops::softmax_last_dim(&x)?.to_dtype(DType::F64)?,
        );
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }

    #[test]
    fn swiglu_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let gate =
                Var::from_tensor(&(Tensor::randn(0f64, 6.0, (4, 37), &dev)?.to_dtype(dtype)?))?;
            let up = Var::from_tensor(&Tensor::randn(0f64, 1.0, (4, 37), &dev)?.to_dtype(dtype)?)?;
            let w = Tensor::randn(0f64, 1.0, (4, 37), &dev)?.to_dtype(dtype)?;
            let ours = swiglu(&gate, &up)?;
            let theirs = (gate.silu()? * up.as_tensor())?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            assert!(max_diff(&f64_of(&ours), &f64_of(&theirs)) < tol);
            let g1 = (ours * &w)?.sum_all()?.backward()?;
            let g2 = (theirs * &w)?.sum_all()?.backward()?;
            for var in [&gate, &up] {
                let (a, b) = (g1.get(var).expect("grad"), g2.get(var).expect("grad"));
                let diff = max_diff(&f64_of(a), &f64_of(b));
                assert!(diff < tol, "{dtype:?} gradient diff {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn rms_norm_matches_the_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (3, 5, 16), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f64, 0.3, 16, &dev)?)?;
        let g = Tensor::randn(0f64, 1.0, (3, 5, 16), &dev)?;
        let ours = rms_norm(&x, &w, 1e-6)?;
        let theirs = candle_nn::ops::rms_norm_slow(&x, &w, 1e-6)?;
        assert!(max_diff(&ours, &theirs) < 1e-12);
        let g1 = (ours * &g)?.sum_all()?.backward()?;
        let g2 = (theirs * &g)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&x).expect("grad"), g2.get(&x).expect("grad")) < 1e-12);
        assert!(max_diff(g1.get(&w).expect("grad"), g2.get(&w).expect("grad")) < 1e-12);
        Ok(())
    }
}
