//! Where a computation runs: [`Device::Cpu`] or [`Device::Cuda`], one API for both.
//!
//! The CUDA backend is behind the `cuda` cargo feature. Without it the
//! [`Device::Cuda`] variant holds an uninhabited placeholder ([`CudaDevice`]), so it can never be
//! constructed, and [`Device::open`] of [`DeviceKind::Cuda`] returns [`CudaError::NotBuilt`]; no
//! CUDA toolkit is needed to build or test. With it, [`Device::open`] loads the driver, picks the
//! GPU and compiles the kernels with NVRTC, each failure a typed [`CudaError`] (never a panic).
//! How to build, what is verified and what is not: `docs/cuda.md`.

use std::fmt;

/// The device a user asks for (the CLI's `--device cpu|cuda`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The host CPU (rayon threads). Always available.
    #[default]
    Cpu,
    /// The first CUDA GPU (ordinal 0). Needs the `cuda` feature, an NVIDIA driver and NVRTC.
    Cuda,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        })
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda),
            _ => Err(crate::Error::invalid("device", s, "`cpu` or `cuda`")),
        }
    }
}

/// Why the CUDA device could not be used. Every message is one line naming the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CudaError {
    /// This build has no CUDA backend.
    #[error("built without the cuda feature: rebuild with --features cuda")]
    NotBuilt,
    /// The CUDA driver library (libcuda.so) could not be loaded.
    #[error("no CUDA driver found (libcuda.so could not be loaded): install the NVIDIA driver, or use --device cpu")]
    NoDriver,
    /// The driver loaded but reports no usable GPU (or not the requested one).
    #[error("no CUDA GPU found ({detail}): run on a machine with an NVIDIA GPU, or use --device cpu")]
    NoGpu {
        /// What the driver said (device count, requested ordinal, or the driver error).
        detail: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver call `{call}` failed: {detail}")]
    Driver {
        /// The driver call.
        call: String,
        /// The driver's error code and text.
        detail: String,
    },
    /// The NVRTC library (libnvrtc.so) could not be loaded, so the kernels cannot be compiled.
    #[error(
        "NVRTC not found (libnvrtc.so could not be loaded): install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc-cu12` and add its nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH"
    )]
    NvrtcMissing,
    /// NVRTC rejected a kernel source; `log` is the compiler's log.
    #[error("NVRTC could not compile the {what} kernels for {arch}: {log}")]
    Compile {
        /// Which source (e.g. `pm-core f32`).
        what: String,
        /// The virtual architecture compiled for, e.g. `compute_80`.
        arch: String,
        /// The NVRTC log (errors with line numbers).
        log: String,
    },
    /// The GPU is there but the requested computation has no GPU path yet.
    #[error("{what} is not available on the CUDA device yet (kernels are compiled but the GPU path has not been run or validated): use --device cpu")]
    Unsupported {
        /// The computation asked for.
        what: String,
    },
}

#[cfg(feature = "cuda")]
pub use crate::cuda::CudaDevice;

/// Placeholder of the CUDA device in builds without the `cuda` feature: uninhabited, so
/// [`Device::Cuda`] cannot be constructed.
#[cfg(not(feature = "cuda"))]
#[derive(Debug, Clone)]
pub struct CudaDevice {
    never: std::convert::Infallible,
}

#[cfg(not(feature = "cuda"))]
impl CudaDevice {
    /// Always [`CudaError::NotBuilt`].
    pub fn new(_ordinal: usize) -> Result<Self, CudaError> {
        Err(CudaError::NotBuilt)
    }
    /// A one-line description (unreachable: the type has no values).
    pub fn describe(&self) -> String {
        match self.never {}
    }
}

/// A device to run on.
#[derive(Debug, Clone)]
pub enum Device {
    /// The host CPU.
    Cpu,
    /// A CUDA GPU with its context, stream and compiled kernels (placeholder without `cuda`).
    Cuda(CudaDevice),
}

impl Device {
    /// Opens the device of `kind` (GPU ordinal 0 for [`DeviceKind::Cuda`]).
    pub fn open(kind: DeviceKind) -> Result<Device, CudaError> {
        match kind {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => Device::cuda(0),
        }
    }
    /// Opens CUDA GPU `ordinal`: loads the driver, creates the context and compiles the kernels.
    pub fn cuda(ordinal: usize) -> Result<Device, CudaError> {
        CudaDevice::new(ordinal).map(Device::Cuda)
    }
    /// The kind of this device.
    pub fn kind(&self) -> DeviceKind {
        match self {
            Device::Cpu => DeviceKind::Cpu,
            Device::Cuda(_) => DeviceKind::Cuda,
        }
    }
    /// A one-line description (`cpu`, or the GPU's name and compute capability).
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Cuda(d) => d.describe(),
        }
    }
}

/// Checks that a computation (`what`, e.g. `simulate`) can run on `kind`: `Ok` for the CPU; for
/// CUDA, opens the device (each missing piece a typed error) and then refuses with
/// [`CudaError::Unsupported`], because the GPU time loop has not been run on a GPU yet.
pub fn require(kind: DeviceKind, what: &str) -> Result<(), CudaError> {
    match Device::open(kind)? {
        Device::Cpu => Ok(()),
        Device::Cuda(_) => Err(CudaError::Unsupported { what: what.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_kind_parses_and_names_the_field() {
        assert_eq!("cpu".parse::<DeviceKind>().unwrap(), DeviceKind::Cpu);
        assert_eq!("CUDA".parse::<DeviceKind>().unwrap(), DeviceKind::Cuda);
        let e = "tpu".parse::<DeviceKind>().unwrap_err().to_string();
        assert!(e.contains("device") && e.contains("cuda"), "{e}");
        assert_eq!(DeviceKind::Cuda.to_string(), "cuda");
    }

    #[test]
    fn cpu_always_opens() {
        let d = Device::open(DeviceKind::Cpu).unwrap();
        assert_eq!(d.kind(), DeviceKind::Cpu);
        assert_eq!(d.describe(), "cpu");
        assert!(require(DeviceKind::Cpu, "simulate").is_ok());
    }

    /// Without the feature, asking for CUDA is the typed "rebuild" error.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_rebuild() {
        let e = Device::open(DeviceKind::Cuda).unwrap_err();
        assert_eq!(e, CudaError::NotBuilt);
        assert_eq!(e.to_string(), "built without the cuda feature: rebuild with --features cuda");
        assert_eq!(require(DeviceKind::Cuda, "simulate").unwrap_err(), CudaError::NotBuilt);
    }
}
