//! CIC paint, readout and their VJPs on a CUDA device: launch wrappers of the kernels in
//! [`super::kernels`], on device-resident buffers (no host round trip).
//!
//! Forward and adjoint maps are those of [`crate::cic`] (docs/adjoint.md C1–C2, G1–G3):
//! - paint: `ρ[c] += Σ_p W_c(x_p)` ([`PaintMode::Atomic`] or [`PaintMode::Deterministic`]);
//! - readout of three fields: `A_p,d = scale · Σ_c W_c(x_p) g_d[c]`;
//! - readout VJP w.r.t. the fields: `ḡ_d += paint(scale · Ā_d)` (atomic);
//! - readout VJP w.r.t. positions: `s̄_p += Σ_d scale Ā_p,d Σ_c g_d[c] ∂W_c/∂x(x_p)`;
//! - paint VJP w.r.t. positions: `s̄_p += Σ_c ρ̄[c] ∂W_c/∂x(x_p)`.
//!
//! **Not run on a GPU yet** (issue 6): compile-checked; the test at the bottom compares every
//! operator with the CPU and skips with a message when no GPU is found.

use super::kernels::{Precision, SCAN_BLOCK};
use super::CudaDevice;
use crate::device::CudaError;
use crate::float::Real;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};

/// A float type with a compiled kernel module: `f32` or `f64`.
pub trait GpuReal: Real + DeviceRepr + ValidAsZeroBits {
    /// The module the kernels of this type live in.
    const PRECISION: Precision;
}
impl GpuReal for f32 {
    const PRECISION: Precision = Precision::F32;
}
impl GpuReal for f64 {
    const PRECISION: Precision = Precision::F64;
}

/// How [`GpuCic::paint`] accumulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PaintMode {
    /// Float atomics: fastest; the order of the additions (so the last bits) varies run to run.
    #[default]
    Atomic,
    /// Particles bucketed by cell and sorted, each cell summed in a fixed order: bit-identical
    /// run to run, two extra `m³` u32 arrays.
    Deterministic,
}

fn launch_err(kernel: &str, e: cudarc::driver::DriverError) -> CudaError {
    CudaError::Driver {
        call: format!("launch {kernel}"),
        detail: format!("{e:?}"),
    }
}

fn mem_err(what: &str, e: cudarc::driver::DriverError) -> CudaError {
    CudaError::Driver {
        call: what.into(),
        detail: format!("{e:?}"),
    }
}

/// Launches kernel `$name` of `$t`'s module ([`GpuReal::PRECISION`]) on the stream of `$dev`
/// with launch configuration `$cfg` and the arguments in the order of the kernel's signature;
/// `Ok(())` or the launch error naming the kernel. Looking the kernel up may return early with
/// its error (`?`). The launch itself is unsafe: call it inside an `unsafe` block whose SAFETY
/// comment says why the arguments match the signature and the buffers are long enough.
macro_rules! launch {
    ($dev:expr, $t:ty, $name:literal, $cfg:expr; $($arg:expr),+ $(,)?) => {{
        let f = $dev.function(<$t as GpuReal>::PRECISION, $name)?;
        let s = $dev.stream();
        let mut b = s.launch_builder(&f);
        $(b.arg($arg);)+
        b.launch($cfg).map(|_| ()).map_err(|e| launch_err($name, e))
    }};
}

/// Grid-stride launch configuration for `len` elements (256 threads per block).
fn cfg(len: usize) -> LaunchConfig {
    let blocks = len.div_ceil(256).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The deterministic paint's buckets: `order[start[c] .. start[c] + counts[c]]` are the particles
/// whose lower CIC corner is cell `c`, in increasing index.
struct Buckets {
    start: CudaSlice<u32>,
    counts: CudaSlice<u32>,
    order: CudaSlice<u32>,
}

/// CIC geometry between an `n³` lattice and an `m³` mesh on a CUDA device (see [`crate::cic::Cic`]).
#[derive(Clone, Debug)]
pub struct GpuCic {
    dev: CudaDevice,
    n: usize,
    m: usize,
    box_size: f64,
}

impl GpuCic {
    /// CIC for `n³` particles and an `m³` mesh in a box of `box_size` Mpc/h on `dev`.
    /// [`CudaError::Unsupported`] if the deterministic paint's cell keys would not fit in u32.
    pub fn new(dev: &CudaDevice, n: usize, m: usize, box_size: f64) -> Result<Self, CudaError> {
        if (m as u64).pow(3) >= u32::MAX as u64 || (n as u64).pow(3) >= u32::MAX as u64 {
            return Err(CudaError::Unsupported {
                what: format!("a {n}³ lattice on a {m}³ mesh (more than 2³² cells or particles)"),
            });
        }
        Ok(GpuCic {
            dev: dev.clone(),
            n,
            m,
            box_size,
        })
    }
    fn np(&self) -> usize {
        self.n * self.n * self.n
    }
    fn ncells(&self) -> usize {
        self.m * self.m * self.m
    }
    fn inv_cell<T: GpuReal>(&self) -> T {
        T::of(self.m as f64 / self.box_size)
    }
    #[track_caller]
    fn check<T>(&self, disp: &CudaSlice<T>, meshes: &[&CudaSlice<T>]) {
        assert_eq!(disp.len(), 3 * self.np(), "GpuCic: displacement buffer length");
        for m in meshes {
            assert_eq!(m.len(), self.ncells(), "GpuCic: mesh buffer length");
        }
    }

    /// Paints unit masses at `disp` (3·n³, Mpc/h) onto `mesh` (m³), **adding**.
    pub fn paint<T: GpuReal>(&self, disp: &CudaSlice<T>, mesh: &mut CudaSlice<T>, mode: PaintMode) -> Result<(), CudaError> {
        self.check(disp, &[mesh]);
        let (n, m) = (self.n as i64, self.m as i64);
        let inv = self.inv_cell::<T>();
        let (null, stride, comp, scale) = (0u64, 1i64, 0i32, T::one());
        match mode {
            // SAFETY: argument list matches the kernel's signature; buffers sized as checked.
            PaintMode::Atomic => unsafe {
                launch!(self.dev, T, "cic_paint_atomic", cfg(self.np());
                    disp, &null, &stride, &comp, &scale, &n, &m, &inv, mesh)
            },
            PaintMode::Deterministic => {
                let Buckets { start, counts, order } = self.buckets(disp)?;
                // SAFETY: as above; start/counts are m³, order n³.
                unsafe {
                    launch!(self.dev, T, "cic_paint_gather", cfg(self.ncells());
                        disp, &null, &stride, &comp, &scale, &n, &m, &inv, &start, &counts, &order, mesh)
                }
            }
        }
    }

    /// Buckets of the deterministic paint: particles sorted by the cell of their lower corner and
    /// by index inside a cell.
    fn buckets<T: GpuReal>(&self, disp: &CudaSlice<T>) -> Result<Buckets, CudaError> {
        let s = self.dev.stream();
        let (np, nc) = (self.np(), self.ncells());
        let (n, m) = (self.n as i64, self.m as i64);
        let inv = self.inv_cell::<T>();
        let alloc = |len: usize| s.alloc_zeros::<u32>(len.max(1)).map_err(|e| mem_err("cuMemAlloc", e));
        let mut key = alloc(np)?;
        let mut counts = alloc(nc)?;
        let mut cursor = alloc(nc)?;
        let mut order = alloc(np)?;
        // SAFETY: matches `cic_cell_key(const real*, long long, long long, real, unsigned*)`.
        unsafe { launch!(self.dev, T, "cic_cell_key", cfg(np); disp, &n, &m, &inv, &mut key) }?;
        let npl = np as i64;
        // SAFETY: keys < m³ = counts.len().
        unsafe { launch!(self.dev, T, "count_keys", cfg(np); &key, &npl, &mut counts) }?;
        let start = self.exclusive_scan::<T>(&counts, nc)?;
        // SAFETY: start[k] + slot < n³ for every particle (start is the exclusive scan of counts).
        unsafe { launch!(self.dev, T, "fill_buckets", cfg(np); &key, &npl, &start, &mut cursor, &mut order) }?;
        let ncl = nc as i64;
        // SAFETY: each thread sorts its own bucket [start[c], start[c] + counts[c]).
        unsafe { launch!(self.dev, T, "sort_buckets", cfg(nc); &start, &counts, &ncl, &mut order) }?;
        Ok(Buckets { start, counts, order })
    }

    /// Exclusive prefix sum of `input[..len]` (block scans, the block sums scanned recursively).
    fn exclusive_scan<T: GpuReal>(&self, input: &CudaSlice<u32>, len: usize) -> Result<CudaSlice<u32>, CudaError> {
        let s = self.dev.stream();
        let blocks = len.div_ceil(SCAN_BLOCK).max(1);
        let mut out = s.alloc_zeros::<u32>(len.max(1)).map_err(|e| mem_err("cuMemAlloc", e))?;
        let mut sums = s.alloc_zeros::<u32>(blocks).map_err(|e| mem_err("cuMemAlloc", e))?;
        let lenl = len as i64;
        let c = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (SCAN_BLOCK as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: one block of SCAN_BLOCK threads per SCAN_BLOCK values; `sums` has one per block.
        unsafe { launch!(self.dev, T, "scan_block_u32", c; input, &mut out, &lenl, &mut sums) }?;
        if blocks > 1 {
            let offsets = self.exclusive_scan::<T>(&sums, blocks)?;
            // SAFETY: offsets has one value per block of `out`.
            unsafe { launch!(self.dev, T, "scan_add_u32", cfg(len); &mut out, &lenl, &offsets) }?;
        }
        Ok(out)
    }

    /// `out[3p + d] = scale · Σ_c W_c(x_p) g_d[c]` (overwrites `out`, 3·n³).
    pub fn readout3<T: GpuReal>(
        &self,
        disp: &CudaSlice<T>,
        g: [&CudaSlice<T>; 3],
        scale: f64,
        out: &mut CudaSlice<T>,
    ) -> Result<(), CudaError> {
        self.check(disp, &g);
        assert_eq!(out.len(), disp.len(), "GpuCic::readout3: output length");
        let (n, m, inv, sc) = (self.n as i64, self.m as i64, self.inv_cell::<T>(), T::of(scale));
        // SAFETY: matches `cic_readout3`; lengths checked.
        unsafe { launch!(self.dev, T, "cic_readout3", cfg(self.np()); disp, &n, &m, &inv, g[0], g[1], g[2], &sc, out) }
    }

    /// Readout VJP w.r.t. the fields: `g_cot_d += paint(scale · cot_d)` (atomic; adds).
    pub fn readout3_vjp_field<T: GpuReal>(
        &self,
        disp: &CudaSlice<T>,
        cot: &CudaSlice<T>,
        scale: f64,
        g_cot: [&mut CudaSlice<T>; 3],
    ) -> Result<(), CudaError> {
        self.check(disp, &[&*g_cot[0], &*g_cot[1], &*g_cot[2]]);
        assert_eq!(cot.len(), disp.len(), "GpuCic::readout3_vjp_field: cotangent length");
        let (n, m, inv, sc) = (self.n as i64, self.m as i64, self.inv_cell::<T>(), T::of(scale));
        let [g0, g1, g2] = g_cot;
        // SAFETY: matches `cic_paint3_atomic`; lengths checked.
        unsafe { launch!(self.dev, T, "cic_paint3_atomic", cfg(self.np()); disp, cot, &sc, &n, &m, &inv, g0, g1, g2) }
    }

    /// Readout VJP w.r.t. positions: `disp_cot[3p+d] += Σ_k scale·cot[3p+k] Σ_c g_k[c] ∂W_c/∂x_d`.
    pub fn readout3_vjp_pos<T: GpuReal>(
        &self,
        disp: &CudaSlice<T>,
        g: [&CudaSlice<T>; 3],
        cot: &CudaSlice<T>,
        scale: f64,
        disp_cot: &mut CudaSlice<T>,
    ) -> Result<(), CudaError> {
        self.check(disp, &g);
        assert_eq!(cot.len(), disp.len(), "GpuCic::readout3_vjp_pos: cotangent length");
        assert_eq!(disp_cot.len(), disp.len(), "GpuCic::readout3_vjp_pos: output length");
        let (n, m, inv, sc) = (self.n as i64, self.m as i64, self.inv_cell::<T>(), T::of(scale));
        // SAFETY: matches `cic_readout3_vjp_pos`; lengths checked.
        unsafe {
            launch!(self.dev, T, "cic_readout3_vjp_pos", cfg(self.np());
                disp, &n, &m, &inv, g[0], g[1], g[2], cot, &sc, disp_cot)
        }
    }

    /// Paint VJP w.r.t. positions (unit masses): `disp_cot[3p+d] += Σ_c ρ̄[c] ∂W_c/∂x_d(x_p)`.
    pub fn paint_vjp_pos<T: GpuReal>(
        &self,
        disp: &CudaSlice<T>,
        mesh_cot: &CudaSlice<T>,
        disp_cot: &mut CudaSlice<T>,
    ) -> Result<(), CudaError> {
        self.check(disp, &[mesh_cot]);
        assert_eq!(disp_cot.len(), disp.len(), "GpuCic::paint_vjp_pos: output length");
        let (n, m, inv, null) = (self.n as i64, self.m as i64, self.inv_cell::<T>(), 0u64);
        // SAFETY: matches `cic_paint_vjp_pos` (null weights = unit masses); lengths checked.
        unsafe { launch!(self.dev, T, "cic_paint_vjp_pos", cfg(self.np()); disp, &null, &n, &m, &inv, mesh_cot, disp_cot) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cic::{Cic, PaintScratch};
    use crate::testing::{rand_disp, rand_field};

    fn rel(a: &[f64], b: &[f64]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let r: f64 = b.iter().map(|y| y * y).sum();
        (d / r.max(1e-300)).sqrt()
    }

    /// Every GPU CIC operator against the CPU one (f32, ‖Δ‖/‖ref‖ ≤ 1e-5), and the deterministic
    /// paint bit-identical run to run. Skips with a message when no GPU can be opened.
    #[test]
    fn gpu_cic_matches_cpu() {
        let dev = match CudaDevice::new(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("SKIPPED gpu_cic_matches_cpu: {e}");
                return;
            }
        };
        let (n, m, l) = (16usize, 32usize, 64.0);
        let cpu = Cic::new(n, m, l);
        let gpu = GpuCic::new(&dev, n, m, l).unwrap();
        let disp = rand_disp::<f32>(n, 6.0, 5);
        let flat: Vec<f32> = disp.iter().flatten().copied().collect();
        let s = dev.stream();
        let d_disp = s.clone_htod(&flat).unwrap();
        let f64v = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
        // Paint.
        let mut ref_mesh = vec![0.0f32; m * m * m];
        cpu.paint(&disp, None, &mut ref_mesh, &mut PaintScratch::default());
        let mut runs = Vec::new();
        for mode in [PaintMode::Atomic, PaintMode::Deterministic, PaintMode::Deterministic] {
            let mut d_mesh = s.alloc_zeros::<f32>(m * m * m).unwrap();
            gpu.paint(&d_disp, &mut d_mesh, mode).unwrap();
            let h = s.clone_dtoh(&d_mesh).unwrap();
            let e = rel(&f64v(&h), &f64v(&ref_mesh));
            assert!(e <= 1e-5, "{mode:?} paint: relative error {e}");
            runs.push(h);
        }
        assert!(
            runs[1].iter().zip(&runs[2]).all(|(a, b)| a.to_bits() == b.to_bits()),
            "deterministic paint differs run to run"
        );
        // Readout and its position VJP.
        let g: Vec<Vec<f32>> = (0..3).map(|k| rand_field::<f32>(m * m * m, 40 + k as u64)).collect();
        let cot = rand_field::<f32>(3 * n * n * n, 50);
        let cot3: Vec<[f32; 3]> = cot.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        let mut ref_out = vec![[0.0f32; 3]; n * n * n];
        cpu.readout(&disp, [&g[0][..], &g[1][..], &g[2][..]], &mut ref_out);
        let d_g: Vec<CudaSlice<f32>> = g.iter().map(|v| s.clone_htod(v).unwrap()).collect();
        let mut d_out = s.alloc_zeros::<f32>(3 * n * n * n).unwrap();
        gpu.readout3(&d_disp, [&d_g[0], &d_g[1], &d_g[2]], 1.0, &mut d_out).unwrap();
        let h = s.clone_dtoh(&d_out).unwrap();
        let e = rel(&f64v(&h), &f64v(&ref_out.concat()));
        assert!(e <= 1e-5, "readout: relative error {e}");
        let mut ref_cot = vec![[0.0f32; 3]; n * n * n];
        cpu.readout_vjp_pos(&disp, [&g[0][..], &g[1][..], &g[2][..]], &mut ref_cot, |p| cot3[p]);
        let d_cot = s.clone_htod(&cot).unwrap();
        let mut d_dc = s.alloc_zeros::<f32>(3 * n * n * n).unwrap();
        gpu.readout3_vjp_pos(&d_disp, [&d_g[0], &d_g[1], &d_g[2]], &d_cot, 1.0, &mut d_dc)
            .unwrap();
        let e = rel(&f64v(&s.clone_dtoh(&d_dc).unwrap()), &f64v(&ref_cot.concat()));
        assert!(e <= 1e-5, "readout position VJP: relative error {e}");
        // Paint position VJP, and the readout field VJP (a paint of the cotangents).
        let mut ref_pc = vec![[0.0f32; 3]; n * n * n];
        cpu.paint_vjp_pos(&disp, None, &g[0], &mut ref_pc);
        let mut d_pc = s.alloc_zeros::<f32>(3 * n * n * n).unwrap();
        gpu.paint_vjp_pos(&d_disp, &d_g[0], &mut d_pc).unwrap();
        let e = rel(&f64v(&s.clone_dtoh(&d_pc).unwrap()), &f64v(&ref_pc.concat()));
        assert!(e <= 1e-5, "paint position VJP: relative error {e}");
        let mut ref_gc = vec![0.0f32; m * m * m];
        let c0: Vec<f32> = cot3.iter().map(|c| c[0]).collect();
        cpu.readout_vjp_field(&disp, &c0, &mut ref_gc, &mut PaintScratch::default());
        let mut d_gc: Vec<CudaSlice<f32>> = (0..3).map(|_| s.alloc_zeros::<f32>(m * m * m).unwrap()).collect();
        let [a, b, c] = &mut d_gc[..] else { unreachable!() };
        gpu.readout3_vjp_field(&d_disp, &d_cot, 1.0, [a, b, c]).unwrap();
        let e = rel(&f64v(&s.clone_dtoh(&d_gc[0]).unwrap()), &f64v(&ref_gc));
        assert!(e <= 1e-5, "readout field VJP: relative error {e}");
        eprintln!("GPU CIC matches the CPU on {}", dev.describe());
    }
}
