//! Device names as configs and the command line spell them.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// A device named in a config: `cpu`, `cuda` (GPU 0) or `cuda:N`. Parsed
/// once where the name is read; [`DeviceSpec::open`] makes the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU.
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// The device. CUDA needs verity built with the `cuda` feature; without
    /// it a CUDA device is an error saying so.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(ordinal) => cuda_device(&self.to_string(), ordinal),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let bad = || Error::Device {
            name: name.to_string(),
            message: "expected cpu, cuda or cuda:N".into(),
        };
        match name.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Self, String> {
        name.parse().map_err(|e: Error| e.to_string())
    }
}

impl From<DeviceSpec> for String {
    fn from(spec: DeviceSpec) -> String {
        spec.to_string()
    }
}

/// Parses `"cpu"`, `"cuda"` or `"cuda:N"` and opens the device. CUDA needs
/// verity built with the `cuda` feature; without it a CUDA name is an error
/// saying so.
pub fn parse_device(name: &str) -> Result<Device> {
    name.parse::<DeviceSpec>()?.open()
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
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(
            " cuda:2 ".parse::<DeviceSpec>().unwrap().to_string(),
            "cuda:2"
        );
        let json = serde_json::to_string(&DeviceSpec::Cuda(1)).unwrap();
        assert_eq!(json, "\"cuda:1\"");
        assert!(serde_json::from_str::<DeviceSpec>("\"tpu\"").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:1")
            .unwrap_err()
            .to_string()
            .contains("--features cuda"));
    }
}
