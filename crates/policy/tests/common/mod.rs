//! Shared helpers of the policy integration tests: the fixture folders and
//! reading the reference numbers transformers wrote.
#![allow(dead_code)]

pub mod gguf_writer;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde_json::Value;

/// `<workspace root>/../shared/fixtures`, where CI keeps the reference models.
pub fn fixtures_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("../shared/fixtures")
}

/// A fixture model folder (`tiny-qwen2`, `tiny-llama`).
pub fn model_dir(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The parsed `reference.json` of a fixture model.
pub fn reference(name: &str) -> Value {
    let path = model_dir(name).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

pub fn ids2(v: &Value) -> Vec<Vec<u32>> {
    v.as_array().expect("rows").iter().map(ids).collect()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

pub fn floats2(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("rows").iter().map(floats).collect()
}

/// A [rows, cols] u32 tensor.
pub fn tensor2(rows: &[Vec<u32>]) -> Tensor {
    let width = rows[0].len();
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), width), &Device::Cpu).expect("tensor")
}

/// Largest absolute difference, asserting equal lengths.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

pub fn to_f64(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .expect("tensor to f64")
}

/// The device the device-generic tests run on: `VERITY_TEST_DEVICE`
/// (`cpu`, `cuda:0`, ...), the CPU when unset. One device per process, so
/// every tensor of a test lives on the same one.
pub fn test_device() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let name = std::env::var("VERITY_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
            policy::parse_device(&name).unwrap_or_else(|e| panic!("VERITY_TEST_DEVICE={name}: {e}"))
        })
        .clone()
}
