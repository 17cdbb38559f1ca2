//! Device names as configs and the command line spell them.

use candle_core::Device;

use crate::error::{Error, Result};

/// Parses `"cpu"`, `"cuda"` or `"cuda:N"`. CUDA needs verity built with the
/// `cuda` feature; without it a CUDA name is an error saying so.
pub fn parse_device(name: &str) -> Result<Device> {
    let trimmed = name.trim();
    if trimmed == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match trimmed.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::Device {
                name: name.to_string(),
                message: "expected cpu, cuda or cuda:N".into(),
            })?,
        None => {
            return Err(Error::Device {
                name: name.to_string(),
                message: "expected cpu, cuda or cuda:N".into(),
            })
        }
    };
    cuda_device(name, ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(name: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::Device {
        name: name.to_string(),
        message: e.to_string(),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(name: &str, _ordinal: usize) -> Result<Device> {
    Err(Error::Device {
        name: name.to_string(),
        message: "this build has no CUDA support (rebuild with --features cuda)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_nonsense() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cuda0", ""] {
            let err = parse_device(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:1")
            .unwrap_err()
            .to_string()
            .contains("--features cuda"));
    }
}
