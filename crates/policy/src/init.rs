//! Seeded random initialisation (candle's own CPU generator cannot be seeded).
//!
//! As transformers initialises these families: weights from N(0, initializer_range),
//! biases zero, norm weights one.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::weight_names::{all_weights, Role};

/// Fresh weights for `config`, the same for the same `seed` on every machine.
pub(crate) fn random_weights(
    config: &ModelConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let std = config.initializer_range;
    all_weights(config)
        .into_iter()
        .map(|(weight, layer)| {
            let shape = weight.shape(config);
            let n: usize = shape.iter().product();
            let values: Vec<f32> = match weight.role() {
                Role::Norm => vec![1.0; n],
                Role::Bias => vec![0.0; n],
                Role::Matrix => (0..n).map(|_| (normal(&mut rng) * std) as f32).collect(),
            };
            let tensor = Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?;
            Ok((weight.name(layer), tensor))
        })
        .collect()
}

/// One standard normal draw (Box-Muller; rand 0.9 has no normal distribution).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]: ln stays finite
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `Tensor::randn` from a generator seeded once per test thread, so a
/// test draws the same numbers on every run and a failure reproduces.
#[cfg(test)]
pub(crate) fn test_randn<T: candle_core::WithDType>(
    mean: T,
    std: T,
    shape: impl Into<candle_core::Shape>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    use std::cell::RefCell;
    thread_local! {
        static RNG: RefCell<StdRng> = RefCell::new(StdRng::seed_from_u64(0));
    }
    let shape = shape.into();
    let (mean, std) = (mean.to_f64(), std.to_f64());
    let values: Vec<f64> = RNG.with_borrow_mut(|rng| {
        (0..shape.elem_count())
            .map(|_| mean + std * normal(rng))
            .collect()
    });
    Tensor::from_vec(values, shape, device)?.to_dtype(T::DTYPE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;

    #[test]
    fn same_seed_same_weights_and_plausible_statistics() -> Result<()> {
        let cfg = ModelConfig::new(Architecture::Qwen2, 50, 32, 64, 1, 4, 2);
        let a = random_weights(&cfg, 7, DType::F32, &Device::Cpu)?;
        let b = random_weights(&cfg, 7, DType::F32, &Device::Cpu)?;
        let c = random_weights(&cfg, 8, DType::F32, &Device::Cpu)?;
        let name = "model.layers.0.mlp.up_proj.weight";
        let va = a[name].flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(va, b[name].flatten_all()?.to_vec1::<f32>()?);
        assert_ne!(va, c[name].flatten_all()?.to_vec1::<f32>()?);
        let n = va.len() as f64;
        let mean = va.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = va.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.002, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 0.002, "std {}", var.sqrt());
        let bias = a["model.layers.0.self_attn.q_proj.bias"]
            .sum_all()?
            .to_scalar::<f32>()?;
        assert_eq!(bias, 0.0);
        let norm = a["model.norm.weight"].mean_all()?.to_scalar::<f32>()?;
        assert_eq!(norm, 1.0);
        Ok(())
    }
}
