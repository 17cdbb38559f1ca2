//! What the packed weights were packed from, so a cached decoder is reused
//! only while the model's weights are exactly the same.
//!
//! Weights change in place (an optimizer's `Var::set`, a loaded checkpoint,
//! a test poking one value) and no version number follows them, so the
//! fingerprint is taken from the values themselves: every weight's bits
//! go through a chain of bijections, one read of the weights, a fraction of
//! the cost of packing them. Changing any single weight always changes the
//! fingerprint (each step maps distinct states to distinct states); several
//! changes cancel with a chance of about 2^-64.

use candle_core::Tensor;

use crate::cpu::parallel::{cpu_slice, par_for, with_cpu, SharedMut};
use crate::error::{Error, Result};

/// Independent hash lanes per tensor: words `i` with `i % LANES == lane`
/// go through lane `lane`, so the loop keeps several multiplies in flight.
const LANES: usize = 8;
/// An odd multiplier: multiplying by it is a bijection of u64.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// The values of every weight of a model, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint(Vec<[u64; LANES]>);

impl Fingerprint {
    /// The fingerprint of a model's named weights as they are now (float32
    /// on the CPU only), computed on the worker threads.
    pub(crate) fn of(weights: &[(String, Tensor)]) -> Result<Self> {
        let mut lanes = vec![[0u64; LANES]; weights.len()];
        let out = SharedMut(lanes.as_mut_ptr());
        let failed = std::sync::Mutex::new(None);
        par_for(weights.len(), |range| {
            for i in range {
                let (name, tensor) = &weights[i];
                let hashed = with_cpu(&[tensor], |t| Ok(hash(cpu_slice::<f32>(t[0])?)));
                match hashed {
                    // SAFETY: entry i of `lanes`, written by this task only.
                    Ok(h) => unsafe { *out.ptr().add(i) = h },
                    Err(e) => {
                        let mut first = failed.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert(format!("decoder: weight {name}: {e}"));
                    }
                }
            }
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(Error::Input(e)),
            None => Ok(Fingerprint(lanes)),
        }
    }
}

/// Every value's bits through `state = (state ^ bits) * MIX`, lane by lane.
fn hash(values: &[f32]) -> [u64; LANES] {
    let mut state = [values.len() as u64; LANES];
    let words = values.chunks_exact(2 * LANES);
    let tail = words.remainder();
    for chunk in words {
        for (lane, pair) in state.iter_mut().zip(chunk.chunks_exact(2)) {
            let bits = u64::from(pair[0].to_bits()) | (u64::from(pair[1].to_bits()) << 32);
            *lane = (*lane ^ bits).wrapping_mul(MIX);
        }
    }
    for (lane, v) in state.iter_mut().zip(tail) {
        *lane = (*lane ^ u64::from(v.to_bits())).wrapping_mul(MIX);
    }
    state
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::{Architecture, ModelConfig, Policy};

    /// One value changed by one ulp anywhere, in any tensor, changes the
    /// fingerprint; the same values give the same fingerprint.
    #[test]
    fn any_changed_weight_changes_the_fingerprint() {
        let cfg = ModelConfig::new(Architecture::Qwen2, 40, 16, 24, 2, 2, 1);
        let policy = Policy::random(&cfg, 1, &Device::Cpu).unwrap();
        let before = Fingerprint::of(&policy.model.named_weights()).unwrap();
        assert_eq!(
            Fingerprint::of(&policy.model.named_weights()).unwrap(),
            before
        );
        for (name, var) in policy.named_vars() {
            let original = var.as_tensor().copy().unwrap();
            let mut values = original.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            // The first, a middle and the last value (inside the tail and the chunks).
            for i in [0, values.len() / 2, values.len() - 1] {
                let kept = values[i];
                values[i] = f32::from_bits(kept.to_bits() ^ 1);
                let changed = Tensor::from_slice(&values, original.shape(), &Device::Cpu).unwrap();
                var.set(&changed).unwrap();
                let after = Fingerprint::of(&policy.model.named_weights()).unwrap();
                assert_ne!(after, before, "{name}[{i}]");
                values[i] = kept;
            }
            var.set(&original).unwrap();
        }
        assert_eq!(
            Fingerprint::of(&policy.model.named_weights()).unwrap(),
            before
        );
    }

    #[test]
    fn swapped_values_change_the_hash() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        assert_ne!(hash(&a), hash(&[2.0, 1.0, 3.0, 4.0, 5.0]));
        assert_ne!(hash(&a), hash(&a[..4]));
        let long: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let mut swapped = long.clone();
        swapped.swap(3, 3 + 2 * LANES);
        assert_ne!(hash(&long), hash(&swapped));
    }
}
