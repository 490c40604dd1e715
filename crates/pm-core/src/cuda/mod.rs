//! The CUDA backend (feature `cuda`): device context, NVRTC compilation of the kernels in
//! [`kernels`], typed errors for every missing piece.
//!
//! **Status** (issue 6, no GPU available): everything here is compiled and the kernels are
//! compiled to PTX by NVRTC in the tests when libnvrtc is found; nothing has been run on a GPU.
//! See `docs/cuda.md`.
//!
//! Libraries are loaded at run time (cudarc's dynamic loading): building needs no CUDA toolkit,
//! and a binary without a driver starts and reports [`CudaError::NoDriver`]. The probes that turn
//! a missing library into a typed error instead of cudarc's panic are
//! [`driver_available`] and [`nvrtc_available`]. When the feature `cuda-linked` is on (pm-nn's
//! `cuda`, through candle, links the CUDA libraries at build time) the dynamic loader has already
//! found them, and both probes return `true`.

pub mod cic;
pub mod kernels;

use crate::device::CudaError;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use kernels::{Precision, KERNEL_NAMES};
use std::sync::Arc;

/// True if the CUDA driver library (libcuda.so) can be loaded.
pub fn driver_available() -> bool {
    #[cfg(not(feature = "cuda-linked"))]
    {
        // SAFETY: only tries to dlopen the library by its usual names; nothing is called.
        unsafe { cudarc::driver::sys::is_culib_present() }
    }
    #[cfg(feature = "cuda-linked")]
    {
        true
    }
}

/// True if the NVRTC library (libnvrtc.so) can be loaded (it is searched on the dynamic
/// loader's path, e.g. `LD_LIBRARY_PATH`, under the names libnvrtc.so, libnvrtc.so.12, ...).
pub fn nvrtc_available() -> bool {
    #[cfg(not(feature = "cuda-linked"))]
    {
        // SAFETY: only tries to dlopen the library by its usual names; nothing is called.
        unsafe { cudarc::nvrtc::sys::is_culib_present() }
    }
    #[cfg(feature = "cuda-linked")]
    {
        true
    }
}

/// Default virtual architecture for compiling without a device (Ampere, `compute_80`); a
/// [`CudaDevice`] compiles for its own compute capability instead.
pub const DEFAULT_ARCH: &str = "compute_80";

/// Compiles CUDA C `src` to PTX for the virtual architecture `arch` (e.g. `compute_80`) with NVRTC.
/// `what` names the source in errors. FMA contraction is off (`--fmad=false`) so that the
/// arithmetic follows the CPU code's order of operations. Errors: [`CudaError::NvrtcMissing`]
/// when libnvrtc cannot be loaded, [`CudaError::Compile`] with NVRTC's log.
pub fn compile(what: &str, src: &str, arch: &str) -> Result<Ptx, CudaError> {
    if !nvrtc_available() {
        return Err(CudaError::NvrtcMissing);
    }
    let opts = CompileOptions {
        fmad: Some(false),
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++14".into()],
        name: Some(format!("{}.cu", what.replace(' ', "_"))),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| compile_error(what, arch, e))
}

fn compile_error(what: &str, arch: &str, e: CompileError) -> CudaError {
    let log = match e {
        CompileError::CompileError { nvrtc, log, .. } => {
            format!("{nvrtc:?}: {}", log.to_string_lossy().trim())
        }
        other => format!("{other:?}"),
    };
    CudaError::Compile {
        what: what.into(),
        arch: arch.into(),
        log,
    }
}

/// Compiles pm-core's kernels ([`kernels::source`]) in `precision` for `arch`.
pub fn compile_kernels(precision: Precision, arch: &str) -> Result<Ptx, CudaError> {
    compile(&format!("pm-core {}", precision.c_type()), &kernels::source(precision), arch)
}

/// The kernel names of [`KERNEL_NAMES`] that are **not** defined as entries of the PTX text
/// `ptx` (empty when all are there).
pub fn missing_entries(ptx: &str) -> Vec<&'static str> {
    KERNEL_NAMES
        .iter()
        .copied()
        .filter(|name| !ptx.contains(&format!(".entry {name}(")))
        .collect()
}

fn driver_err(call: &str, e: cudarc::driver::DriverError) -> CudaError {
    CudaError::Driver {
        call: call.into(),
        detail: format!("{e:?}"),
    }
}

/// An open CUDA GPU: its context and stream, and the kernels compiled for its architecture
/// (f32 always; f64 from compute capability 6.0). Cheap to clone (shared handles).
///
/// **Not run on a GPU yet** (issue 6): the constructor's error paths for a machine without a
/// driver are tested; the success path is compile-checked only.
#[derive(Clone)]
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    ordinal: usize,
    name: String,
    capability: (i32, i32),
    f32: Arc<CudaModule>,
    f64: Option<Arc<CudaModule>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("capability", &self.capability)
            .field("f64", &self.f64.is_some())
            .finish_non_exhaustive()
    }
}

impl CudaDevice {
    /// Opens GPU `ordinal`: loads the driver ([`CudaError::NoDriver`]), checks there is such a GPU
    /// ([`CudaError::NoGpu`]), creates its context and a stream, compiles the kernels with NVRTC
    /// for its compute capability ([`CudaError::NvrtcMissing`], [`CudaError::Compile`]) and loads
    /// them, checking that every kernel of [`KERNEL_NAMES`] is there.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        if !driver_available() {
            return Err(CudaError::NoDriver);
        }
        let count = CudaContext::device_count().map_err(|e| CudaError::NoGpu {
            detail: format!("cuInit/cuDeviceGetCount: {e:?}"),
        })?;
        if count <= 0 || ordinal >= count as usize {
            return Err(CudaError::NoGpu {
                detail: format!("the driver reports {count} device(s), GPU {ordinal} was requested"),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_err("CudaContext::new", e))?;
        let name = ctx.name().map_err(|e| driver_err("cuDeviceGetName", e))?;
        let capability = ctx
            .compute_capability()
            .map_err(|e| driver_err("cuDeviceGetAttribute(COMPUTE_CAPABILITY)", e))?;
        let stream = ctx.new_stream().map_err(|e| driver_err("cuStreamCreate", e))?;
        let arch = format!("compute_{}{}", capability.0, capability.1);
        let load = |precision: Precision| -> Result<Arc<CudaModule>, CudaError> {
            let ptx = compile_kernels(precision, &arch)?;
            let module = ctx.load_module(ptx).map_err(|e| driver_err("cuModuleLoadData", e))?;
            for name in KERNEL_NAMES {
                module
                    .load_function(name)
                    .map_err(|e| driver_err(&format!("cuModuleGetFunction({name})"), e))?;
            }
            Ok(module)
        };
        let f32 = load(Precision::F32)?;
        let f64 = if capability.0 >= 6 { Some(load(Precision::F64)?) } else { None };
        Ok(CudaDevice {
            ctx,
            stream,
            ordinal,
            name,
            capability,
            f32,
            f64,
        })
    }

    /// One line: `cuda:ORDINAL NAME (sm_XY)`.
    pub fn describe(&self) -> String {
        format!(
            "cuda:{} {} (sm_{}{})",
            self.ordinal, self.name, self.capability.0, self.capability.1
        )
    }
    /// The device's context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    /// The stream every kernel of this device is launched on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// Compute capability `(major, minor)`.
    pub fn capability(&self) -> (i32, i32) {
        self.capability
    }
    /// The kernel `name` of [`KERNEL_NAMES`] in `precision` ([`CudaError::Unsupported`] for f64
    /// below compute capability 6.0, [`CudaError::Driver`] for an unknown name).
    pub fn function(&self, precision: Precision, name: &str) -> Result<CudaFunction, CudaError> {
        let module = match precision {
            Precision::F32 => &self.f32,
            Precision::F64 => self.f64.as_ref().ok_or_else(|| CudaError::Unsupported {
                what: format!("f64 on {} (needs compute capability ≥ 6.0)", self.describe()),
            })?,
        };
        module
            .load_function(name)
            .map_err(|e| driver_err(&format!("cuModuleGetFunction({name})"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints why a test that needs libnvrtc did nothing, and returns whether it may go on.
    fn nvrtc_or_skip(test: &str) -> bool {
        if nvrtc_available() {
            return true;
        }
        eprintln!(
            "SKIPPED {test}: libnvrtc not found on the loader path (pip install nvidia-cuda-nvrtc-cu12 \
             and set LD_LIBRARY_PATH to its nvidia/cuda_nvrtc/lib; see docs/cuda.md)"
        );
        false
    }

    #[test]
    fn every_kernel_compiles_to_ptx_in_both_precisions() {
        if !nvrtc_or_skip("every_kernel_compiles_to_ptx_in_both_precisions") {
            return;
        }
        for arch in [DEFAULT_ARCH, "compute_90"] {
            for precision in [Precision::F32, Precision::F64] {
                let ptx = compile_kernels(precision, arch)
                    .unwrap_or_else(|e| panic!("{precision:?} {arch}: {e}"))
                    .to_src();
                assert!(
                    ptx.contains(&format!(".target sm_{}", &arch["compute_".len()..])),
                    "{arch}: wrong target"
                );
                let missing = missing_entries(&ptx);
                assert!(missing.is_empty(), "{precision:?} {arch}: no PTX entry for {missing:?}");
                // The PTX defines exactly the listed kernels (no stray or renamed entry).
                let entries = ptx.matches(".entry ").count();
                assert_eq!(entries, KERNEL_NAMES.len(), "{precision:?} {arch}: {entries} entries");
                // f64 kernels really are double: their paint uses a double atomic add.
                let atom = if precision == Precision::F64 {
                    "atom.global.add.f64"
                } else {
                    "atom.global.add.f32"
                };
                assert!(ptx.contains(atom), "{precision:?} {arch}: no {atom}");
                eprintln!(
                    "compiled {} kernels, {precision:?}, {arch}: {} bytes of PTX",
                    KERNEL_NAMES.len(),
                    ptx.len()
                );
            }
        }
    }

    #[test]
    fn a_broken_kernel_is_a_compile_error_with_the_log() {
        if !nvrtc_or_skip("a_broken_kernel_is_a_compile_error_with_the_log") {
            return;
        }
        // A kernel that uses an undeclared identifier: NVRTC must fail and its log name it.
        let src = format!(
            "{}\nextern \"C\" __global__ void broken(real* x) {{ x[0] = undeclared_value; }}\n",
            kernels::source(Precision::F32)
        );
        match compile("broken test", &src, DEFAULT_ARCH) {
            Err(CudaError::Compile { what, arch, log }) => {
                assert_eq!(what, "broken test");
                assert_eq!(arch, DEFAULT_ARCH);
                assert!(log.contains("undeclared_value"), "log does not name the error: {log}");
                let line = CudaError::Compile { what, arch, log }.to_string();
                assert!(line.starts_with("NVRTC could not compile the broken test kernels"), "{line}");
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
        // A well-formed source still compiles after a failure (no state left behind).
        assert!(compile("ok", "extern \"C\" __global__ void k(float* x) { x[0] = 1.0f; }", DEFAULT_ARCH).is_ok());
    }

    #[test]
    fn missing_entries_reports_kernels_that_are_not_in_the_ptx() {
        // Independent of NVRTC: the entry check must be able to fail.
        let fake: String = KERNEL_NAMES[1..].iter().map(|n| format!(".visible .entry {n}(\n")).collect();
        assert_eq!(missing_entries(&fake), vec![KERNEL_NAMES[0]]);
        assert_eq!(missing_entries("").len(), KERNEL_NAMES.len());
    }

    #[test]
    fn opening_a_gpu_without_a_driver_is_a_typed_error() {
        if driver_available() {
            // A machine with the driver: opening must either succeed or fail with a typed error.
            match CudaDevice::new(0) {
                Ok(d) => eprintln!("opened {}", d.describe()),
                Err(e) => eprintln!("driver present, device not usable: {e}"),
            }
            // An ordinal that no machine has is always NoGpu.
            assert!(matches!(CudaDevice::new(1 << 20), Err(CudaError::NoGpu { .. })));
            return;
        }
        let e = CudaDevice::new(0).unwrap_err();
        assert_eq!(e, CudaError::NoDriver);
        let line = e.to_string();
        assert!(line.contains("no CUDA driver found") && line.contains("--device cpu"), "{line}");
        assert!(!line.contains('\n'));
        let e = crate::device::Device::open(crate::device::DeviceKind::Cuda).unwrap_err();
        assert_eq!(e, CudaError::NoDriver);
    }
}
