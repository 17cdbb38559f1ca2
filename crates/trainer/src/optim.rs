//! AdamW with decoupled weight decay, a decay mask, global-norm gradient
//! clipping, and moments that can be saved and restored.
//!
//! `candle_nn::AdamW` can do none of the last three, so the trainer keeps its
//! own. State is keyed by parameter name, never by position: a `VarMap`
//! iterates in a different order in every process.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, Var};
use candle_nn::VarMap;

use crate::error::{Error, Result};

/// AdamW settings: plain data, turned into an optimizer by [`AdamWConfig::init`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Exponential decay of the first moment (PyTorch default 0.9).
    pub beta1: f64,
    /// Exponential decay of the second moment (PyTorch default 0.999).
    pub beta2: f64,
    /// Added to the root of the second moment (PyTorch default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay, applied as `p -= lr * weight_decay * p`.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamWConfig {
    /// An optimizer over every variable in `varmap`, with zero moments.
    pub fn init(self, varmap: &VarMap) -> Result<AdamW> {
        AdamW::new(varmap, self)
    }
}

/// Whether weight decay applies to the parameter called `name` of rank `rank`.
///
/// Only weight matrices decay. Norm weights and biases (rank 1) do not, and
/// neither does the token embedding: decaying it pulls rare tokens' rows to
/// zero, the reason GPT-2-style recipes exclude it. An untied `lm_head` is an
/// ordinary projection and decays.
pub fn decays(name: &str, rank: usize) -> bool {
    rank >= 2 && !name.contains("embed_tokens")
}

/// One trainable parameter and its moments.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    /// First moment, f32 whatever the parameter's dtype.
    exp_avg: Tensor,
    /// Second moment, f32.
    exp_avg_sq: Tensor,
}

/// The AdamW optimizer (Loshchilov & Hutter), with PyTorch's update:
///
/// ```text
/// p  <- p - lr * wd * p                      (decaying parameters only)
/// m  <- b1 m + (1 - b1) g
/// v  <- b2 v + (1 - b2) g^2
/// p  <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
/// ```
pub struct AdamW {
    config: AdamWConfig,
    /// Sorted by name, so every run visits parameters in the same order.
    slots: Vec<Slot>,
    /// Updates applied so far (`t` above).
    step: u64,
}

impl AdamW {
    /// An optimizer over every variable in `varmap`, with zero moments.
    pub fn new(varmap: &VarMap, config: AdamWConfig) -> Result<Self> {
        let mut named: Vec<(String, Var)> = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| Error::invalid("model", "parameter map lock poisoned"))?;
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                // Two allocations: the moments are updated in place.
                let zeros = || Tensor::zeros(var.shape(), DType::F32, var.device());
                Ok(Slot {
                    decay: decays(&name, var.rank()),
                    exp_avg: zeros()?,
                    exp_avg_sq: zeros()?,
                    name,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            slots,
            step: 0,
        })
    }

    /// Updates applied so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The settings this optimizer was built with.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Number of scalar parameters under optimization.
    pub fn num_params(&self) -> usize {
        self.slots.iter().map(|s| s.var.elem_count()).sum()
    }

    /// An empty gradient accumulator for this optimizer's parameters.
    pub fn zero_grads(&self) -> Gradients {
        Gradients {
            grads: vec![None; self.slots.len()],
            scale: 1.0,
        }
    }

    /// Add the gradients of one backward pass to `acc` (gradient accumulation).
    /// Parameters the loss did not reach are left as they were.
    pub fn accumulate(&self, acc: &mut Gradients, store: &GradStore) -> Result<()> {
        for (slot, sum) in self.slots.iter().zip(acc.grads.iter_mut()) {
            if let Some(g) = store.get(slot.var.as_tensor()) {
                let g = g.to_dtype(DType::F32)?;
                *sum = Some(match sum.take() {
                    Some(prev) => (prev + g)?,
                    None => g,
                });
            }
        }
        Ok(())
    }

    /// Apply one AdamW update with learning rate `lr`. Parameters without a
    /// gradient are not touched (and their moments do not decay).
    pub fn step(&mut self, grads: &Gradients, lr: f64) -> Result<()> {
        self.step += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let t = self.step as i32;
        let step_size = lr / (1.0 - beta1.powi(t));
        let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let decay = 1.0 - lr * weight_decay;
        for (slot, grad) in self.slots.iter_mut().zip(grads.grads.iter()) {
            let Some(g) = grad else { continue };
            let param = slot.var.as_tensor();
            let host_f32 = [param, g, &slot.exp_avg, &slot.exp_avg_sq]
                .iter()
                .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous());
            if host_f32 {
                // The same update as below in one pass over memory, in place.
                let update = AdamUpdate {
                    beta1: beta1 as f32,
                    rest1: (1.0 - beta1) as f32,
                    beta2: beta2 as f32,
                    rest2: (1.0 - beta2) as f32,
                    scale: grads.scale as f32,
                    step_size: step_size as f32,
                    inv_bias_correction2_sqrt: (1.0 / bias_correction2_sqrt) as f32,
                    eps: eps as f32,
                    decay: if slot.decay { decay as f32 } else { 1.0 },
                };
                update.apply(param, g, &slot.exp_avg, &slot.exp_avg_sq)?;
                continue;
            }
            let scaled;
            let g = if grads.scale == 1.0 {
                g
            } else {
                scaled = (g * grads.scale)?;
                &scaled
            };
            slot.exp_avg = ((&slot.exp_avg * beta1)? + (g * (1.0 - beta1))?)?;
            slot.exp_avg_sq = ((&slot.exp_avg_sq * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((slot.exp_avg_sq.sqrt()? / bias_correction2_sqrt)? + eps)?;
            let update = ((&slot.exp_avg / denom)? * step_size)?;
            let param = slot.var.as_tensor().to_dtype(DType::F32)?;
            let param = if slot.decay && weight_decay != 0.0 {
                (param * (1.0 - lr * weight_decay))?
            } else {
                param
            };
            let new = (param - update)?.to_dtype(slot.var.dtype())?;
            slot.var.set(&new)?;
        }
        Ok(())
    }

    /// One training update, the same in both phases: clip `grads` to
    /// `max_grad_norm` (0 only measures), then step at `lr`, unless `loss` or
    /// the gradient norm is NaN or infinite. Such an update would poison the
    /// weights and moments, so it is skipped (and the step count stays).
    pub fn clip_and_step(
        &mut self,
        mut grads: Gradients,
        loss: f64,
        max_grad_norm: f64,
        lr: f64,
    ) -> Result<Applied> {
        let grad_norm = grads.clip_norm(max_grad_norm)?;
        let skipped = !(loss.is_finite() && grad_norm.is_finite());
        if !skipped {
            self.step(&grads, lr)?;
        }
        Ok(Applied {
            grad_norm,
            lr,
            skipped,
        })
    }

    /// Write the moments and the step count to a safetensors file: tensors
    /// `exp_avg.NAME` and `exp_avg_sq.NAME`, metadata `step`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, &Tensor)> = Vec::with_capacity(2 * self.slots.len());
        for slot in &self.slots {
            tensors.push((format!("exp_avg.{}", slot.name), &slot.exp_avg));
            tensors.push((format!("exp_avg_sq.{}", slot.name), &slot.exp_avg_sq));
        }
        let metadata = HashMap::from([("step".to_string(), self.step.to_string())]);
        safetensors::serialize_to_file(tensors, Some(metadata), path)
            .map_err(|e| Error::bad_file(path, e.to_string()))
    }

    /// Restore the moments and step count written by [`AdamW::save`]. Every
    /// parameter of this optimizer must be present with its shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        let step = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("step"))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Error::bad_file(path, "no `step` in the metadata"))?;
        let device = match self.slots.first() {
            Some(slot) => slot.var.device().clone(),
            None => candle_core::Device::Cpu,
        };
        let mut stored = candle_core::safetensors::load_buffer(&bytes, &device)?;
        for slot in &mut self.slots {
            for (prefix, target) in [
                ("exp_avg", &mut slot.exp_avg),
                ("exp_avg_sq", &mut slot.exp_avg_sq),
            ] {
                let key = format!("{prefix}.{}", slot.name);
                let t = stored
                    .remove(&key)
                    .ok_or_else(|| Error::bad_file(path, format!("missing tensor `{key}`")))?;
                if t.dims() != slot.var.dims() {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "tensor `{key}` has shape {:?}, the model needs {:?}",
                            t.dims(),
                            slot.var.dims()
                        ),
                    ));
                }
                *target = t.to_dtype(DType::F32)?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// What [`AdamW::clip_and_step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate of the update.
    pub lr: f64,
    /// The loss or gradient was NaN or infinite, so nothing changed.
    pub skipped: bool,
}

/// Gradients of an optimizer's parameters, summed over micro-batches.
#[derive(Clone)]
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
    /// A factor every gradient is taken to be multiplied by: scaling
    /// (clipping) is applied when the gradients are used, not by a pass of
    /// its own.
    scale: f64,
}

impl Gradients {
    /// The global L2 norm over all gradients.
    pub fn norm(&self) -> Result<f64> {
        let mut total = 0f64;
        for g in self.grads.iter().flatten() {
            total += squared_norm(g)?;
        }
        Ok(total.sqrt() * self.scale.abs())
    }

    /// Scale every gradient by `factor`.
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        self.scale *= factor;
        Ok(())
    }

    /// Clip to a global L2 norm of at most `max_norm` (PyTorch's
    /// `clip_grad_norm_`: scale by `max_norm / (norm + 1e-6)` when that is
    /// below 1) and return the norm before clipping. A `max_norm` of 0 or less
    /// only measures.
    pub fn clip_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.norm()?;
        if max_norm > 0.0 && norm.is_finite() {
            let coef = max_norm / (norm + 1e-6);
            if coef < 1.0 {
                self.scale(coef)?;
            }
        }
        Ok(norm)
    }

    /// True when no backward pass has reached any parameter.
    pub fn is_empty(&self) -> bool {
        self.grads.iter().all(Option::is_none)
    }
}

/// The sum of the squares of `g`'s elements, in f64.
fn squared_norm(g: &Tensor) -> Result<f64> {
    if g.device().is_cpu() && g.dtype() == DType::F32 {
        let (storage, layout) = g.storage_and_layout();
        if let (candle_core::Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(sum_of_squares(&v[a..b]));
        }
    }
    Ok(g.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?)
}

/// Sum of squares in f64, in fixed blocks added in order (the same bits
/// whatever the thread count).
fn sum_of_squares(values: &[f32]) -> f64 {
    const BLOCK: usize = 1 << 16;
    let blocks = values.len().div_ceil(BLOCK);
    let mut partial = vec![0f64; blocks];
    let out = Shared(partial.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(blocks, |range| {
        for b in range {
            let part = &values[b * BLOCK..((b + 1) * BLOCK).min(values.len())];
            let mut acc = [0f64; 8];
            let chunks = part.chunks_exact(8);
            let tail: f64 = chunks
                .remainder()
                .iter()
                .map(|&x| x as f64 * x as f64)
                .sum();
            for chunk in chunks {
                for (a, &x) in acc.iter_mut().zip(chunk) {
                    *a += x as f64 * x as f64;
                }
            }
            // SAFETY: block b's entry, written by this task only.
            unsafe { *out.get().add(b) = acc.iter().sum::<f64>() + tail };
        }
    });
    partial.iter().sum()
}

/// A pointer worker tasks write disjoint entries through.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: only used for writes to disjoint entries, joined before reading.
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `f` over fixed chunks of `0..n` on candle's CPU workers.
fn par_chunks(n: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    const CHUNK: usize = 1 << 16;
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(CHUNK), |blocks| {
        f(blocks.start * CHUNK..(blocks.end * CHUNK).min(n))
    });
}

fn slices<'a>((s, l): (&'a CpuStorage, &Layout), name: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{name}: contiguous f32 tensors only"),
    }
}

fn slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    name: &str,
) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{name}: contiguous f32 tensors only"),
    }
}

/// One AdamW update of a float32 CPU parameter, element by element in a
/// single pass (with `g` scaled by `scale`):
///
/// ```text
/// m <- beta1 m + (1 - beta1) g
/// v <- beta2 v + (1 - beta2) g^2
/// p <- p decay - step_size m / (sqrt(v) / bias_correction2_sqrt + eps)
/// ```
#[derive(Clone, Copy)]
struct AdamUpdate {
    beta1: f32,
    /// 1 - beta1, rounded once from f64.
    rest1: f32,
    beta2: f32,
    rest2: f32,
    scale: f32,
    step_size: f32,
    inv_bias_correction2_sqrt: f32,
    eps: f32,
    decay: f32,
}

impl AdamUpdate {
    /// Updates `param`, `m` and `v` in place from `grad`. candle hands out
    /// one tensor's storage mutably per in-place operation, so the three
    /// nest: m's operation holds m while it runs v's, which runs the
    /// parameter's with the gradient.
    fn apply(self, param: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor) -> Result<()> {
        m.inplace_op1(&Moment {
            update: self,
            param,
            grad,
            v,
        })?;
        Ok(())
    }

    fn run(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * self.scale;
            *m = *m * self.beta1 + g * self.rest1;
            *v = *v * self.beta2 + g * g * self.rest2;
            let denom = v.sqrt() * self.inv_bias_correction2_sqrt + self.eps;
            *p = *p * self.decay - *m / denom * self.step_size;
        }
    }
}

/// The outer in-place operation, on the first moment.
struct Moment<'a> {
    update: AdamUpdate,
    param: &'a Tensor,
    grad: &'a Tensor,
    v: &'a Tensor,
}

/// The middle one, on the second moment.
struct SecondMoment<'a> {
    update: AdamUpdate,
    param: &'a Tensor,
    grad: &'a Tensor,
    m: Shared<f32>,
    len: usize,
}

/// The inner one, on the parameter with the gradient.
struct Parameter {
    update: AdamUpdate,
    m: Shared<f32>,
    v: Shared<f32>,
    len: usize,
}

impl candle_core::InplaceOp1 for Moment<'_> {
    fn name(&self) -> &'static str {
        "verity-adamw"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let m = slice_mut(s, l, self.name())?;
        self.v.inplace_op1(&SecondMoment {
            update: self.update,
            param: self.param,
            grad: self.grad,
            m: Shared(m.as_mut_ptr()),
            len: m.len(),
        })
    }
}

impl candle_core::InplaceOp1 for SecondMoment<'_> {
    fn name(&self) -> &'static str {
        "verity-adamw"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let v = slice_mut(s, l, self.name())?;
        if v.len() != self.len {
            candle_core::bail!("{}: the moments differ in size", self.name())
        }
        self.param.inplace_op2(
            self.grad,
            &Parameter {
                update: self.update,
                m: self.m,
                v: Shared(v.as_mut_ptr()),
                len: self.len,
            },
        )
    }
}

impl InplaceOp2 for Parameter {
    fn name(&self) -> &'static str {
        "verity-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let p = slice_mut(s1, l1, self.name())?;
        let g = slices((s2, l2), self.name())?;
        if p.len() != self.len || g.len() != self.len {
            candle_core::bail!(
                "{}: parameter, gradient and moments differ in size",
                self.name()
            )
        }
        let (p_out, m, v) = (Shared(p.as_mut_ptr()), self.m, self.v);
        par_chunks(self.len, |span| {
            // SAFETY: this task's span of the parameter and of both moments,
            // whose storages the enclosing operations hold mutably.
            let part = |ptr: Shared<f32>| unsafe {
                std::slice::from_raw_parts_mut(ptr.get().add(span.start), span.len())
            };
            self.update
                .run(part(p_out), &g[span.clone()], part(m), part(v));
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Init;

    /// A VarMap with a decaying matrix `layer.weight` and a non-decaying
    /// norm weight `norm.weight`.
    fn toy() -> (VarMap, Var, Var) {
        let varmap = VarMap::new();
        let w = varmap
            .get(
                (2, 2),
                "layer.weight",
                Init::Const(0.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        let n = varmap
            .get(2, "norm.weight", Init::Const(0.0), DType::F32, &Device::Cpu)
            .unwrap();
        let vars = varmap.data().lock().unwrap();
        let w_var = vars["layer.weight"].clone();
        let n_var = vars["norm.weight"].clone();
        drop(vars);
        w_var
            .set(&Tensor::new(&[[1.0f32, -2.0], [0.5, 3.0]], &Device::Cpu).unwrap())
            .unwrap();
        n_var
            .set(&Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap())
            .unwrap();
        let _ = (w, n);
        (varmap, w_var, n_var)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn grads_of(opt: &AdamW, loss: &Tensor) -> Gradients {
        let mut acc = opt.zero_grads();
        opt.accumulate(&mut acc, &loss.backward().unwrap()).unwrap();
        acc
    }

    /// loss = sum(c * w) + sum(d * n): constant gradients c and d.
    fn linear_loss(w: &Var, n: &Var) -> Tensor {
        let dev = Device::Cpu;
        let c = Tensor::new(&[[0.1f32, -0.2], [0.3, 0.0]], &dev).unwrap();
        let d = Tensor::new(&[1.0f32, -4.0], &dev).unwrap();
        let a = (w.as_tensor() * c).unwrap().sum_all().unwrap();
        let b = (n.as_tensor() * d).unwrap().sum_all().unwrap();
        (a + b).unwrap()
    }

    #[test]
    fn two_steps_match_pytorch_formula() {
        // Golden numbers computed by hand with torch.optim.AdamW's update
        // (lr 0.1, betas (0.9, 0.999), eps 1e-8, weight_decay 0.5).
        let (varmap, w, n) = toy();
        let config = AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        };
        let mut opt = config.init(&varmap).unwrap();
        for _ in 0..2 {
            let g = grads_of(&opt, &linear_loss(&w, &n));
            opt.step(&g, 0.1).unwrap();
        }
        // A constant gradient g gives m_hat = g, v_hat = g^2 at every step, so
        // each step moves by -lr * sign(g) * |g| / (|g| + eps), after decay
        // p <- p * (1 - 0.05). Zero gradient: decay only.
        let step = |p: f64, g: f64| {
            let mut p = p;
            for _ in 0..2 {
                p *= 1.0 - 0.1 * 0.5;
                if g != 0.0 {
                    p -= 0.1 * g / (g.abs() + 1e-8);
                }
            }
            p
        };
        let want_w = [
            step(1.0, 0.1),
            step(-2.0, -0.2),
            step(0.5, 0.3),
            step(3.0, 0.0),
        ];
        for (got, want) in values(w.as_tensor()).iter().zip(want_w) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        // Norm weights never decay: 1 - 2 * 0.1 * sign(g).
        let got_n = values(n.as_tensor());
        assert!((got_n[0] - 0.8).abs() < 1e-6, "{got_n:?}");
        assert!((got_n[1] - 1.2).abs() < 1e-6, "{got_n:?}");
    }

    #[test]
    fn changing_gradient_matches_hand_computation() {
        // One scalar parameter p0 = 1, loss = p^2 (g = 2p), lr 0.01,
        // betas (0.9, 0.999), no decay. Hand computation (float64):
        // t=1: g=2, m=0.2, v=0.004, m_hat=2, v_hat=4, p = 1 - 0.01*2/(2+1e-8)
        //      = 0.99000000005
        // t=2: g=1.9800000001, m=0.18+0.19800000001=0.37800000001,
        //      v=0.003996+0.0039204000004=0.0079164000004,
        //      m_hat=0.37800000001/0.19=1.98947368426,
        //      v_hat=0.0079164000004/0.001999=3.96018009025,
        //      p = 0.98000274600 (PyTorch's AdamW formula in float64)
        let varmap = VarMap::new();
        varmap
            .get(1, "p", Init::Const(1.0), DType::F32, &Device::Cpu)
            .unwrap();
        let p = varmap.data().lock().unwrap()["p"].clone();
        let mut opt = AdamWConfig::default().init(&varmap).unwrap();
        for _ in 0..2 {
            let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
            let g = grads_of(&opt, &loss);
            opt.step(&g, 0.01).unwrap();
        }
        let got = values(p.as_tensor())[0] as f64;
        let m_hat = 0.378_000_000_01 / 0.19;
        let v_hat: f64 = 0.007_916_400_000_4 / 0.001_999;
        let want = 0.990_000_000_05 - 0.01 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert!((want - 0.980_002_746).abs() < 1e-9);
        assert_eq!(opt.step_count(), 2);
    }

    #[test]
    fn clipping_scales_to_max_norm_and_reports_the_norm_before() {
        let (varmap, w, n) = toy();
        let opt = AdamWConfig::default().init(&varmap).unwrap();
        let mut g = grads_of(&opt, &linear_loss(&w, &n));
        // sqrt(0.01 + 0.04 + 0.09 + 0 + 1 + 16) = sqrt(17.14)
        let before = g.clip_norm(1.0).unwrap();
        assert!((before - 17.14f64.sqrt()).abs() < 1e-5);
        assert!((g.norm().unwrap() - 1.0).abs() < 1e-5);
        // Below the limit nothing changes.
        let norm = g.clip_norm(5.0).unwrap();
        assert!((g.norm().unwrap() - norm).abs() < 1e-9);
    }

    #[test]
    fn accumulation_sums_backward_passes() {
        let (varmap, w, n) = toy();
        let opt = AdamWConfig::default().init(&varmap).unwrap();
        let mut acc = opt.zero_grads();
        assert!(acc.is_empty());
        for _ in 0..3 {
            opt.accumulate(&mut acc, &linear_loss(&w, &n).backward().unwrap())
                .unwrap();
        }
        let once = grads_of(&opt, &linear_loss(&w, &n));
        assert!((acc.norm().unwrap() - 3.0 * once.norm().unwrap()).abs() < 1e-5);
    }

    #[test]
    fn save_and_load_restore_moments_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let (varmap, w, n) = toy();
        let mut opt = AdamWConfig::default().init(&varmap).unwrap();
        let g = grads_of(&opt, &linear_loss(&w, &n));
        opt.step(&g, 0.1).unwrap();
        opt.save(&path).unwrap();

        // A twin optimizer restored from the file takes the same next step.
        let (varmap2, w2, n2) = toy();
        w2.set(w.as_tensor()).unwrap();
        n2.set(n.as_tensor()).unwrap();
        let mut twin = AdamWConfig::default().init(&varmap2).unwrap();
        twin.load(&path).unwrap();
        assert_eq!(twin.step_count(), 1);
        opt.step(&g, 0.1).unwrap();
        let g2 = grads_of(&twin, &linear_loss(&w2, &n2));
        twin.step(&g2, 0.1).unwrap();
        assert_eq!(values(w.as_tensor()), values(w2.as_tensor()));
        assert_eq!(values(n.as_tensor()), values(n2.as_tensor()));
    }

    #[test]
    fn loading_a_file_for_another_model_names_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let (varmap, _, _) = toy();
        AdamWConfig::default()
            .init(&varmap)
            .unwrap()
            .save(&path)
            .unwrap();
        let other = VarMap::new();
        other
            .get(3, "other.bias", Init::Const(0.0), DType::F32, &Device::Cpu)
            .unwrap();
        let mut opt = AdamWConfig::default().init(&other).unwrap();
        let err = opt.load(&path).unwrap_err().to_string();
        assert!(err.contains("exp_avg.other.bias"), "{err}");
    }

    #[test]
    fn decay_mask_spares_norms_biases_and_embeddings() {
        assert!(decays("model.layers.0.self_attn.q_proj.weight", 2));
        assert!(decays("lm_head.weight", 2));
        assert!(!decays("model.embed_tokens.weight", 2));
        assert!(!decays("model.norm.weight", 1));
        assert!(!decays("model.layers.0.self_attn.q_proj.bias", 1));
    }
}
