//! 3D convolution on candle (candle 0.11 has none): forward, input VJP and weight gradient.
//!
//! Shapes: input `x` is N×C_in×D×H×W, weight `w` is C_out×C_in×k×k×k, stride `s` ∈ {1, 2, ...},
//! zero padding `p` on every side; output `y` is N×C_out×D'×H'×W' with D' = (D + 2p − k)/s + 1.
//!
//! Forward (cross-correlation, as in every deep-learning library):
//!   y[n,o,z] = Σ_{c, κ} w[o,c,κ] · x[n, c, s·z + κ − p]        (x = 0 outside the box)
//! Input VJP (the transposed convolution, also the stride-s up-sampling layer):
//!   x̄[n,c,ξ] += Σ_{o, z, κ : s·z + κ − p = ξ} w[o,c,κ] · ȳ[n,o,z]
//! Weight gradient:
//!   w̄[o,c,κ] += Σ_{n, z} ȳ[n,o,z] · x[n, c, s·z + κ − p]
//! (docs/nn.md eqs. 1.1–1.3.) Each is a matrix product with the im2col matrix X[(c,κ), z] = x[n, c, s·z + κ − p]:
//! y = W·X, X̄ = Wᵀ·ȳ then col2im, w̄ = ȳ·Xᵀ (W viewed as C_out × C_in·k³).
//!
//! CPU path ([`conv3d`] on a CPU tensor of f32/f64): a fused, tiled im2col + gemm (the `gemm`
//! crate candle itself uses). Output positions are cut into tiles whose size depends only on the
//! shapes (never on the thread count); each tile's im2col block lives in a thread-local buffer and
//! goes straight into one single-threaded gemm. Rayon runs tiles in parallel. Every output value
//! is computed by one fixed sequence of operations, so results are bit-identical for any thread
//! count: the weight gradient sums per-chunk partial products in chunk order, and col2im gives
//! each input channel to one task that adds tiles in order.
//!
//! Other devices (CUDA, Metal): [`conv3d_candle`] / [`conv_transpose3d_candle`], built from candle
//! ops (strided narrows + matmul), so the same network runs under candle's `cuda` feature;
//! candle's autograd differentiates them.

use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, WithDType, D};
use pm_core::Real;
use rayon::prelude::*;

/// Geometry of one convolution: batch, channels, kernel, stride, padding, spatial sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size N.
    pub n: usize,
    /// Input channels C_in.
    pub cin: usize,
    /// Output channels C_out.
    pub cout: usize,
    /// Kernel side k (the kernel is k×k×k).
    pub k: usize,
    /// Stride s (same along the three axes).
    pub stride: usize,
    /// Zero padding p on each side of each axis.
    pub pad: usize,
    /// Input spatial size (D, H, W).
    pub din: [usize; 3],
    /// Output spatial size (D', H', W'), D' = (D + 2p − k)/s + 1.
    pub dout: [usize; 3],
}

impl ConvGeom {
    /// Geometry of a convolution of an N×C_in×D×H×W input with a C_out×C_in×k³ kernel.
    /// Errors name the argument at fault when the kernel is not cubic, channels differ,
    /// the stride is 0 or the padded input is smaller than the kernel.
    pub fn new(xdims: &[usize], wdims: &[usize], stride: usize, pad: usize) -> Result<Self> {
        if xdims.len() != 5 {
            return Err(shape_err("conv3d input", xdims, "rank 5: N×C_in×D×H×W".into()));
        }
        if wdims.len() != 5 || wdims[2] != wdims[3] || wdims[2] != wdims[4] || wdims[2] == 0 {
            return Err(shape_err(
                "conv3d weight",
                wdims,
                "rank 5 with a cubic kernel: C_out×C_in×k×k×k".into(),
            ));
        }
        if wdims[1] != xdims[1] {
            return Err(shape_err(
                "conv3d weight",
                wdims,
                format!("C_in = {} (the input's channel count)", xdims[1]),
            ));
        }
        if stride == 0 {
            return Err(Error::Config {
                field: "stride",
                value: "0".into(),
                expected: "a stride ≥ 1".into(),
            });
        }
        let k = wdims[2];
        let mut dout = [0; 3];
        for a in 0..3 {
            let l = xdims[2 + a] + 2 * pad;
            if l < k {
                return Err(shape_err("conv3d input", xdims, format!("spatial sizes + 2·pad ≥ kernel size {k}")));
            }
            dout[a] = (l - k) / stride + 1;
        }
        Ok(Self {
            n: xdims[0],
            cin: xdims[1],
            cout: wdims[0],
            k,
            stride,
            pad,
            din: [xdims[2], xdims[3], xdims[4]],
            dout,
        })
    }

    /// Rows of the im2col matrix, C_in·k³.
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k * self.k
    }

    /// Input voxels per channel.
    pub fn pin(&self) -> usize {
        self.din.iter().product()
    }

    /// Output voxels per channel.
    pub fn pout(&self) -> usize {
        self.dout.iter().product()
    }

    /// Floating-point operations of the forward pass (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.cout * self.pout()) as f64 * self.kdim() as f64
    }

    /// Output positions per tile: about 1 MiB of im2col per tile, fixed by the shapes only.
    fn tile(&self, elem: usize) -> usize {
        ((1 << 20) / (self.kdim() * elem)).clamp(64, 4096).min(self.pout())
    }
}

fn shape_err(what: &'static str, got: &[usize], expected: String) -> Error {
    Error::Shape {
        what,
        got: format!("{got:?}"),
        expected,
    }
}

/// A raw pointer that may cross threads: each task writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Visits the runs of output positions [p0, p1) that share (z, y): `f(z, y, x0, j, len)` with `j`
/// the offset of the run inside the tile.
#[inline]
fn for_runs(g: &ConvGeom, p0: usize, p1: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let [_, ho, wo] = g.dout;
    let mut p = p0;
    while p < p1 {
        let z = p / (ho * wo);
        let rem = p % (ho * wo);
        let (y, x0) = (rem / wo, rem % wo);
        let len = (wo - x0).min(p1 - p);
        f(z, y, x0, p - p0, len);
        p += len;
    }
}

/// Input index along one axis, or None when it falls in the zero padding.
#[inline(always)]
fn src(o: usize, kk: usize, g: &ConvGeom, axis: usize) -> Option<usize> {
    let i = (o * g.stride + kk) as isize - g.pad as isize;
    (i >= 0 && (i as usize) < g.din[axis]).then_some(i as usize)
}

/// im2col of one tile: `col[r·tl + j] = x[c, s·z + κ − p]` for row r = (c, κ) and position p0 + j.
fn im2col<T: Real>(g: &ConvGeom, x: &[T], p0: usize, p1: usize, col: &mut [T]) {
    let tl = p1 - p0;
    let k = g.k;
    let [_, hi, wi] = g.din;
    let pin = g.pin();
    for_runs(g, p0, p1, |z, y, x0, j, len| {
        for c in 0..g.cin {
            for kz in 0..k {
                let iz = src(z, kz, g, 0);
                for ky in 0..k {
                    let iy = src(y, ky, g, 1);
                    for kx in 0..k {
                        let r = ((c * k + kz) * k + ky) * k + kx;
                        let out = &mut col[r * tl + j..r * tl + j + len];
                        match (iz, iy) {
                            (Some(iz), Some(iy)) => {
                                let row = &x[c * pin + (iz * hi + iy) * wi..][..wi];
                                for (t, o) in out.iter_mut().enumerate() {
                                    *o = match src(x0 + t, kx, g, 2) {
                                        Some(ix) => row[ix],
                                        None => T::zero(),
                                    };
                                }
                            }
                            _ => out.fill(T::zero()),
                        }
                    }
                }
            }
        }
    });
}

/// col2im of one tile for one channel c: `x̄[c, s·z + κ − p] += col[r·tl + j]`.
fn col2im_channel<T: Real>(g: &ConvGeom, col: &[T], tl: usize, p0: usize, p1: usize, c: usize, xc: &mut [T]) {
    let k = g.k;
    let [_, hi, wi] = g.din;
    for_runs(g, p0, p1, |z, y, x0, j, len| {
        for kz in 0..k {
            let Some(iz) = src(z, kz, g, 0) else { continue };
            for ky in 0..k {
                let Some(iy) = src(y, ky, g, 1) else { continue };
                let row = &mut xc[(iz * hi + iy) * wi..][..wi];
                for kx in 0..k {
                    let r = ((c * k + kz) * k + ky) * k + kx;
                    let cr = &col[r * tl + j..r * tl + j + len];
                    for (t, v) in cr.iter().enumerate() {
                        if let Some(ix) = src(x0 + t, kx, g, 2) {
                            row[ix] += *v;
                        }
                    }
                }
            }
        }
    });
}

/// dst (m×n, strides rs/cs) = lhs (m×k) · rhs (k×n), or += when `acc`; single-threaded gemm.
#[allow(clippy::too_many_arguments)]
unsafe fn mm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    dst_cs: usize,
    acc: bool,
    lhs: *const T,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const T,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    // SAFETY: the caller guarantees the pointers cover the strided m×k, k×n and m×n blocks.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            acc,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The (n, tile) work items of a geometry.
fn tiles(g: &ConvGeom, tl: usize) -> Vec<(usize, usize, usize)> {
    let pout = g.pout();
    (0..g.n)
        .flat_map(|n| (0..pout).step_by(tl).map(move |p0| (n, p0, (p0 + tl).min(pout))))
        .collect()
}

/// Forward convolution on slices: `x` (N·C_in·D·H·W), `w` (C_out·C_in·k³) → `y` (N·C_out·D'·H'·W').
pub fn conv3d_fwd_slice<T: Real>(g: &ConvGeom, x: &[T], w: &[T]) -> Vec<T> {
    assert_eq!(x.len(), g.n * g.cin * g.pin(), "conv3d_fwd_slice: input length");
    assert_eq!(w.len(), g.cout * g.kdim(), "conv3d_fwd_slice: weight length");
    let (pout, kd) = (g.pout(), g.kdim());
    let mut y = vec![T::zero(); g.n * g.cout * pout];
    let tl = g.tile(std::mem::size_of::<T>());
    let yp = SendPtr(y.as_mut_ptr());
    // Runs of tiles share one column buffer, allocated once per run (a fresh megabyte per tile
    // costs page faults); every tile writes its own output columns, so the bits do not depend on
    // how the runs are split.
    let items = tiles(g, tl);
    let run = items.len().div_ceil(4 * rayon::current_num_threads()).max(1);
    items.par_chunks(run).for_each(|chunk| {
        let mut col = vec![T::zero(); kd * tl];
        for &(n, p0, p1) in chunk {
            let t = p1 - p0;
            im2col(g, &x[n * g.cin * g.pin()..(n + 1) * g.cin * g.pin()], p0, p1, &mut col);
            let yp = yp;
            // SAFETY: tile (n, p0..p1) owns columns p0..p1 of batch n in y, disjoint across tasks.
            unsafe {
                mm(
                    g.cout,
                    t,
                    kd,
                    yp.0.add(n * g.cout * pout + p0),
                    pout,
                    1,
                    false,
                    w.as_ptr(),
                    kd,
                    1,
                    col.as_ptr(),
                    t,
                    1,
                );
            }
        }
    });
    y
}

/// Input VJP (transposed convolution) on slices: returns x̄ = Jᵀ ȳ for `ybar` (N·C_out·D'·H'·W').
pub fn conv3d_vjp_input_slice<T: Real>(g: &ConvGeom, ybar: &[T], w: &[T]) -> Vec<T> {
    assert_eq!(ybar.len(), g.n * g.cout * g.pout(), "conv3d_vjp_input_slice: cotangent length");
    assert_eq!(w.len(), g.cout * g.kdim(), "conv3d_vjp_input_slice: weight length");
    let (pin, pout, kd) = (g.pin(), g.pout(), g.kdim());
    let mut xbar = vec![T::zero(); g.n * g.cin * pin];
    let tl = g.tile(std::mem::size_of::<T>());
    // Chunks of tiles: about 32 MiB of columns at once, fixed by the shapes.
    let per_chunk = ((32usize << 20) / (kd * tl * std::mem::size_of::<T>())).max(1);
    let starts: Vec<usize> = (0..pout).step_by(tl).collect();
    // One column buffer for a chunk of tiles, allocated once and reused (tile j of a chunk
    // writes its kd×t block, row stride t, at offset j·kd·tl).
    let mut buf = vec![T::zero(); per_chunk.min(starts.len()) * kd * tl];
    for n in 0..g.n {
        for chunk in starts.chunks(per_chunk) {
            buf.par_chunks_mut(kd * tl).zip(chunk.par_iter()).for_each(|(col, &p0)| {
                let t = (p0 + tl).min(pout) - p0;
                // SAFETY: col holds kd×t (row stride t), w is cout×kd read transposed, the ybar
                // block is cout×t (row stride pout).
                unsafe {
                    mm(
                        kd,
                        t,
                        g.cout,
                        col.as_mut_ptr(),
                        t,
                        1,
                        false,
                        w.as_ptr(),
                        1,
                        kd,
                        ybar[n * g.cout * pout + p0..].as_ptr(),
                        pout,
                        1,
                    );
                }
            });
            xbar[n * g.cin * pin..(n + 1) * g.cin * pin]
                .par_chunks_mut(pin)
                .enumerate()
                .for_each(|(c, xc)| {
                    for (j, &p0) in chunk.iter().enumerate() {
                        let p1 = (p0 + tl).min(pout);
                        col2im_channel(g, &buf[j * kd * tl..(j + 1) * kd * tl], p1 - p0, p0, p1, c, xc);
                    }
                });
        }
    }
    xbar
}

/// Weight gradient on slices: returns w̄ = Σ ȳ·Xᵀ (C_out·C_in·k³) for input `x` and cotangent `ybar`.
pub fn conv3d_vjp_weight_slice<T: Real>(g: &ConvGeom, x: &[T], ybar: &[T]) -> Vec<T> {
    assert_eq!(x.len(), g.n * g.cin * g.pin(), "conv3d_vjp_weight_slice: input length");
    assert_eq!(ybar.len(), g.n * g.cout * g.pout(), "conv3d_vjp_weight_slice: cotangent length");
    let (pout, kd) = (g.pout(), g.kdim());
    let tl = g.tile(std::mem::size_of::<T>());
    // Chunks of 8 tiles accumulate one partial each; partials are summed in chunk order.
    let items = tiles(g, tl);
    let partials: Vec<Vec<T>> = items
        .par_chunks(8)
        .map(|chunk| {
            let mut col = vec![T::zero(); kd * tl];
            let mut part = vec![T::zero(); g.cout * kd];
            for (i, &(n, p0, p1)) in chunk.iter().enumerate() {
                let t = p1 - p0;
                im2col(g, &x[n * g.cin * g.pin()..(n + 1) * g.cin * g.pin()], p0, p1, &mut col);
                // SAFETY: part is cout×kd; ybar block cout×t (row stride pout); col read as t×kd.
                unsafe {
                    mm(
                        g.cout,
                        kd,
                        t,
                        part.as_mut_ptr(),
                        kd,
                        1,
                        i > 0,
                        ybar[n * g.cout * pout + p0..].as_ptr(),
                        pout,
                        1,
                        col.as_ptr(),
                        1,
                        t,
                    );
                }
            }
            part
        })
        .collect();
    let mut wbar = vec![T::zero(); g.cout * kd];
    for p in &partials {
        for (a, b) in wbar.iter_mut().zip(p) {
            *a += *b;
        }
    }
    wbar
}

fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &'static str) -> candle_core::Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => Err(candle_core::Error::Msg(format!("{what}: tensor must be contiguous"))),
    }
}

fn candle_err(e: Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// Runs `f32` or `f64` version of a slice kernel on two CPU storages.
fn dispatch2(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    name: &'static str,
    f32f: impl Fn(&[f32], &[f32]) -> Vec<f32>,
    f64f: impl Fn(&[f64], &[f64]) -> Vec<f64>,
) -> candle_core::Result<CpuStorage> {
    match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => Ok(CpuStorage::F32(f32f(cpu_slice(s1, l1, name)?, cpu_slice(s2, l2, name)?))),
        (CpuStorage::F64(_), CpuStorage::F64(_)) => Ok(CpuStorage::F64(f64f(cpu_slice(s1, l1, name)?, cpu_slice(s2, l2, name)?))),
        _ => Err(candle_core::Error::Msg(format!("{name}: f32 or f64 tensors of one dtype expected"))),
    }
}

/// Custom op (x, w) → y, the forward convolution.
struct Conv3dOp {
    stride: usize,
    pad: usize,
}

impl CustomOp2 for Conv3dOp {
    fn name(&self) -> &'static str {
        "conv3d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = ConvGeom::new(l1.dims(), l2.dims(), self.stride, self.pad).map_err(candle_err)?;
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "conv3d",
            |x, w| conv3d_fwd_slice(&g, x, w),
            |x, w| conv3d_fwd_slice(&g, x, w),
        )?;
        Ok((out, Shape::from_dims(&[g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]])))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, ybar: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ybar = ybar.contiguous()?;
        let d = x.dims();
        let xbar = ybar.apply_op2(
            w,
            ConvTOp {
                stride: self.stride,
                pad: self.pad,
                out: [d[2], d[3], d[4]],
            },
        )?;
        let wbar = x.apply_op2_no_bwd(
            &ybar,
            &WGradOp {
                stride: self.stride,
                pad: self.pad,
                k: w.dims()[2],
            },
        )?;
        Ok((Some(xbar), Some(wbar)))
    }
}

/// Custom op (u, w) → z, the transposed convolution (input VJP of [`Conv3dOp`]) onto a grid of
/// spatial size `out`.
struct ConvTOp {
    stride: usize,
    pad: usize,
    out: [usize; 3],
}

impl ConvTOp {
    fn geom(&self, udims: &[usize], wdims: &[usize]) -> Result<ConvGeom> {
        if udims.len() != 5 || wdims.len() != 5 || udims[1] != wdims[0] {
            return Err(shape_err(
                "conv_transpose3d input",
                udims,
                format!("rank 5 with C = {} (weight is {:?})", wdims.first().unwrap_or(&0), wdims),
            ));
        }
        let xdims = [udims[0], wdims[1], self.out[0], self.out[1], self.out[2]];
        let g = ConvGeom::new(&xdims, wdims, self.stride, self.pad)?;
        if g.dout != [udims[2], udims[3], udims[4]] {
            return Err(shape_err(
                "conv_transpose3d input",
                udims,
                format!("spatial size {:?} for output {:?}", g.dout, self.out),
            ));
        }
        Ok(g)
    }
}

impl CustomOp2 for ConvTOp {
    fn name(&self) -> &'static str {
        "conv_transpose3d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geom(l1.dims(), l2.dims()).map_err(candle_err)?;
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "conv_transpose3d",
            |u, w| conv3d_vjp_input_slice(&g, u, w),
            |u, w| conv3d_vjp_input_slice(&g, u, w),
        )?;
        Ok((out, Shape::from_dims(&[g.n, g.cin, self.out[0], self.out[1], self.out[2]])))
    }

    fn bwd(&self, u: &Tensor, w: &Tensor, _z: &Tensor, zbar: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let zbar = zbar.contiguous()?;
        let ubar = zbar.apply_op2(
            w,
            Conv3dOp {
                stride: self.stride,
                pad: self.pad,
            },
        )?;
        // ⟨z̄, Xᵀ-fold(Wᵀu)⟩ = ⟨conv(z̄, W), u⟩, so w̄ is the conv weight gradient with x = z̄, ȳ = u.
        let wbar = zbar.apply_op2_no_bwd(
            u,
            &WGradOp {
                stride: self.stride,
                pad: self.pad,
                k: w.dims()[2],
            },
        )?;
        Ok((Some(ubar), Some(wbar)))
    }
}

/// Custom op (x, ȳ) → w̄, the weight gradient (no backward of its own).
struct WGradOp {
    stride: usize,
    pad: usize,
    k: usize,
}

impl CustomOp2 for WGradOp {
    fn name(&self) -> &'static str {
        "conv3d_weight_grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (xd, yd) = (l1.dims(), l2.dims());
        let k = self.k;
        let wdims = [yd[1], xd[1], k, k, k];
        let g = ConvGeom::new(xd, &wdims, self.stride, self.pad).map_err(candle_err)?;
        if [g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]] != yd {
            return Err(candle_core::Error::Msg(format!(
                "conv3d weight grad: cotangent {yd:?} does not match the output of {g:?}"
            )));
        }
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "conv3d_weight_grad",
            |x, yb| conv3d_vjp_weight_slice(&g, x, yb),
            |x, yb| conv3d_vjp_weight_slice(&g, x, yb),
        )?;
        Ok((out, Shape::from_dims(&wdims)))
    }
}

fn use_fused(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// 3D convolution `y = conv(x, w)` with stride and zero padding (module header for the formula).
///
/// `x`: N×C_in×D×H×W, `w`: C_out×C_in×k×k×k, both f32 or both f64. On a CPU device this is the
/// fused im2col + gemm custom op with its hand-written backward; elsewhere [`conv3d_candle`].
/// Errors name the argument whose shape is wrong.
pub fn conv3d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    ConvGeom::new(x.dims(), w.dims(), stride, pad)?;
    if x.dtype() != w.dtype() {
        return Err(Error::Shape {
            what: "conv3d weight",
            got: format!("{:?}", w.dtype()),
            expected: format!("{:?} (the input's dtype)", x.dtype()),
        });
    }
    if use_fused(x) {
        Ok(x.contiguous()?.apply_op2(&w.contiguous()?, Conv3dOp { stride, pad })?)
    } else {
        conv3d_candle(x, w, stride, pad)
    }
}

/// Transposed 3D convolution (the input VJP of [`conv3d`] with the same `w`, stride and pad),
/// used as the stride-s up-sampling layer.
///
/// `u`: N×C_out×D'×H'×W', `w`: C_out×C_in×k³ (the weight of the convolution it transposes);
/// output N×C_in×D×H×W with D = (D' − 1)·s + k − 2p + `out_pad` (0 ≤ `out_pad` < s picks among
/// the input sizes that the convolution maps to D').
pub fn conv_transpose3d(u: &Tensor, w: &Tensor, stride: usize, pad: usize, out_pad: usize) -> Result<Tensor> {
    let out = transpose_out(u.dims(), w.dims(), stride, pad, out_pad)?;
    if u.dtype() != w.dtype() {
        return Err(Error::Shape {
            what: "conv_transpose3d weight",
            got: format!("{:?}", w.dtype()),
            expected: format!("{:?} (the input's dtype)", u.dtype()),
        });
    }
    let op = ConvTOp { stride, pad, out };
    op.geom(u.dims(), w.dims())?;
    if use_fused(u) {
        Ok(u.contiguous()?.apply_op2(&w.contiguous()?, op)?)
    } else {
        conv_transpose3d_candle(u, w, stride, pad, out_pad)
    }
}

fn transpose_out(ud: &[usize], wd: &[usize], stride: usize, pad: usize, out_pad: usize) -> Result<[usize; 3]> {
    if ud.len() != 5 || wd.len() != 5 || ud[1] != wd[0] || wd[2] != wd[3] || wd[2] != wd[4] {
        return Err(shape_err(
            "conv_transpose3d input",
            ud,
            format!("rank 5, C = weight's first dim, weight C_out×C_in×k³ (weight {wd:?})"),
        ));
    }
    if stride == 0 || out_pad >= stride {
        return Err(Error::Config {
            field: "out_pad",
            value: out_pad.to_string(),
            expected: format!("0 ≤ out_pad < stride = {stride}"),
        });
    }
    let mut out = [0; 3];
    for a in 0..3 {
        let l = (ud[2 + a].max(1) - 1) * stride + wd[2] + out_pad;
        if ud[2 + a] == 0 || l < 2 * pad + 1 {
            return Err(shape_err(
                "conv_transpose3d input",
                ud,
                "non-empty output after removing the padding".into(),
            ));
        }
        out[a] = l - 2 * pad;
    }
    Ok(out)
}

/// Every `s`-th slice of length `len` along `dim`, starting at `start` (zero beyond the end).
fn strided_narrow(t: &Tensor, dim: usize, start: usize, len: usize, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(t.narrow(dim, start, len)?);
    }
    let avail = (t.dims()[dim] - start).min(s * len);
    let mut v = t.narrow(dim, start, avail)?;
    if avail < s * len {
        v = v.pad_with_zeros(dim, 0, s * len - avail)?;
    }
    let mut dims = v.dims().to_vec();
    dims[dim] = len;
    dims.insert(dim + 1, s);
    Ok(v.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?)
}

/// Device-agnostic [`conv3d`] from candle ops: zero padding, k³ strided narrows stacked into the
/// im2col matrix, one batched matmul. Differentiated by candle's autograd.
pub fn conv3d_candle(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let g = ConvGeom::new(x.dims(), w.dims(), stride, pad)?;
    let mut xp = x.clone();
    for dim in 2..5 {
        xp = xp.pad_with_zeros(dim, pad, pad)?;
    }
    let k = g.k;
    let mut cols = Vec::with_capacity(k * k * k);
    for kz in 0..k {
        let a = strided_narrow(&xp, 2, kz, g.dout[0], stride)?;
        for ky in 0..k {
            let b = strided_narrow(&a, 3, ky, g.dout[1], stride)?;
            for kx in 0..k {
                cols.push(strided_narrow(&b, 4, kx, g.dout[2], stride)?);
            }
        }
    }
    let col = Tensor::stack(&cols, 2)?.reshape((g.n, g.kdim(), g.pout()))?;
    let y = w.reshape((g.cout, g.kdim()))?.broadcast_matmul(&col)?;
    Ok(y.reshape((g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]))?)
}

/// Zero-interleaves `t` along `dim` by `s` (x0 0 0 x1 0 0 ... x_{L−1}) → length (L − 1)·s + 1.
fn upsample_zeros(t: &Tensor, dim: usize, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(t.clone());
    }
    let l = t.dims()[dim];
    let z = t.unsqueeze(dim + 1)?.pad_with_zeros(dim + 1, 0, s - 1)?;
    let mut dims = t.dims().to_vec();
    dims[dim] = l * s;
    Ok(z.reshape(dims)?.narrow(dim, 0, (l - 1) * s + 1)?)
}

/// Device-agnostic [`conv_transpose3d`] from candle ops: Wᵀ·u, then col2im as a sum over the k³
/// kernel offsets of zero-interleaved, shifted copies, cropped by the padding.
pub fn conv_transpose3d_candle(u: &Tensor, w: &Tensor, stride: usize, pad: usize, out_pad: usize) -> Result<Tensor> {
    let out = transpose_out(u.dims(), w.dims(), stride, pad, out_pad)?;
    let ud = u.dims().to_vec();
    let (n, cout, cin, k) = (ud[0], ud[1], w.dims()[1], w.dims()[2]);
    let pu = ud[2] * ud[3] * ud[4];
    let kd = cin * k * k * k;
    let wt = w.reshape((cout, kd))?.t()?.contiguous()?;
    let col = wt
        .broadcast_matmul(&u.reshape((n, cout, pu))?)?
        .reshape((n, cin, k * k * k, ud[2], ud[3], ud[4]))?;
    // Full (uncropped) output length along each axis: (D' − 1)·s + k + out_pad.
    let full: Vec<usize> = (0..3).map(|a| out[a] + 2 * pad).collect();
    let mut acc: Option<Tensor> = None;
    for kz in 0..k {
        for ky in 0..k {
            for kx in 0..k {
                let kk = (kz * k + ky) * k + kx;
                let mut c = col.narrow(2, kk, 1)?.squeeze(2)?;
                for (a, off) in [kz, ky, kx].into_iter().enumerate() {
                    c = upsample_zeros(&c, 2 + a, stride)?;
                    let l = c.dims()[2 + a];
                    c = c.pad_with_zeros(2 + a, off, full[a] - off - l)?;
                }
                acc = Some(match acc {
                    None => c,
                    Some(s) => (s + c)?,
                });
            }
        }
    }
    let mut z = acc.expect("k ≥ 1");
    for a in 0..3 {
        z = z.narrow(2 + a, pad, out[a])?;
    }
    Ok(z)
}

/// A 3D convolution layer: weight C_out×C_in×k³ and optional bias C_out, stride, zero padding.
#[derive(Clone, Debug)]
pub struct Conv3d {
    /// Weight, C_out×C_in×k×k×k.
    pub weight: Tensor,
    /// Bias, C_out (added to every voxel of its channel).
    pub bias: Option<Tensor>,
    /// Stride.
    pub stride: usize,
    /// Zero padding per side.
    pub pad: usize,
}

impl Conv3d {
    /// A layer whose weight ("weight", Kaiming-normal) and bias ("bias", uniform ±1/√fan_in)
    /// are created in (or loaded from) `vb`.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((cout, cin, k, k, k), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = if bias {
            let bound = 1.0 / ((cin * k * k * k) as f64).sqrt();
            Some(vb.get_with_hints(cout, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        Ok(Self { weight, bias, stride, pad })
    }

    /// y = conv3d(x, weight) + bias.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv3d(x, &self.weight, self.stride, self.pad)?;
        add_bias(y, self.bias.as_ref())
    }
}

/// A transposed convolution layer (stride-s up-sampling): weight C_in×C_out×k³ (the weight of the
/// convolution it transposes, mapping C_out → C_in), optional bias C_out.
#[derive(Clone, Debug)]
pub struct ConvTranspose3d {
    /// Weight, C_in×C_out×k×k×k (input channels first).
    pub weight: Tensor,
    /// Bias, C_out.
    pub bias: Option<Tensor>,
    /// Stride (the up-sampling factor when k = s and pad = 0).
    pub stride: usize,
    /// Padding removed from each side.
    pub pad: usize,
}

impl ConvTranspose3d {
    /// A layer mapping C_in → C_out channels with weight "weight" and bias "bias" in `vb`.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        // Fan-in of each output voxel: cin·k³/s³ on average; Kaiming on (cout, cin, k³) is close.
        let std = (2.0 / ((cin * k * k * k) as f64 / (stride * stride * stride) as f64).max(1.0)).sqrt();
        let weight = vb.get_with_hints((cin, cout, k, k, k), "weight", candle_nn::Init::Randn { mean: 0.0, stdev: std })?;
        let bias = if bias {
            let bound = 1.0 / ((cin * k * k * k) as f64).sqrt();
            Some(vb.get_with_hints(cout, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        Ok(Self { weight, bias, stride, pad })
    }

    /// z = conv_transpose3d(x, weight) + bias; output size (D − 1)·s + k − 2p.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let z = conv_transpose3d(x, &self.weight, self.stride, self.pad, 0)?;
        add_bias(z, self.bias.as_ref())
    }
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => Ok(y.broadcast_add(&b.reshape((1, b.dims()[0], 1, 1, 1))?)?),
        None => Ok(y),
    }
}

/// Sum of all elements in f64 (used by tests and losses; candle's sum in the tensor's dtype).
pub fn sum_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.sum(D::Minus1)?.to_scalar::<f64>()?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Slow, obviously-correct 7-loop convolution (f64).
    fn naive(g: &ConvGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
        let k = g.k;
        let [d, h, wd] = g.din;
        let [dz, dy, dx] = g.dout;
        let mut y = vec![0.0; g.n * g.cout * g.pout()];
        for n in 0..g.n {
            for o in 0..g.cout {
                for z in 0..dz {
                    for yy in 0..dy {
                        for xx in 0..dx {
                            let mut s = 0.0;
                            for c in 0..g.cin {
                                for kz in 0..k {
                                    for ky in 0..k {
                                        for kx in 0..k {
                                            let iz = (z * g.stride + kz) as isize - g.pad as isize;
                                            let iy = (yy * g.stride + ky) as isize - g.pad as isize;
                                            let ix = (xx * g.stride + kx) as isize - g.pad as isize;
                                            if iz < 0 || iy < 0 || ix < 0 || iz >= d as isize || iy >= h as isize || ix >= wd as isize {
                                                continue;
                                            }
                                            let xi = (((n * g.cin + c) * d + iz as usize) * h + iy as usize) * wd + ix as usize;
                                            let wi = (((o * g.cin + c) * k + kz) * k + ky) * k + kx;
                                            s += w[wi] * x[xi];
                                        }
                                    }
                                }
                            }
                            y[(((n * g.cout + o) * dz + z) * dy + yy) * dx + xx] = s;
                        }
                    }
                }
            }
        }
        y
    }

    /// Naive input VJP and weight gradient by the same 7 loops, scattering.
    fn naive_vjp(g: &ConvGeom, x: &[f64], w: &[f64], yb: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let k = g.k;
        let [d, h, wd] = g.din;
        let [dz, dy, dx] = g.dout;
        let mut xb = vec![0.0; x.len()];
        let mut wb = vec![0.0; w.len()];
        for n in 0..g.n {
            for o in 0..g.cout {
                for z in 0..dz {
                    for yy in 0..dy {
                        for xx in 0..dx {
                            let ybv = yb[(((n * g.cout + o) * dz + z) * dy + yy) * dx + xx];
                            for c in 0..g.cin {
                                for kz in 0..k {
                                    for ky in 0..k {
                                        for kx in 0..k {
                                            let iz = (z * g.stride + kz) as isize - g.pad as isize;
                                            let iy = (yy * g.stride + ky) as isize - g.pad as isize;
                                            let ix = (xx * g.stride + kx) as isize - g.pad as isize;
                                            if iz < 0 || iy < 0 || ix < 0 || iz >= d as isize || iy >= h as isize || ix >= wd as isize {
                                                continue;
                                            }
                                            let xi = (((n * g.cin + c) * d + iz as usize) * h + iy as usize) * wd + ix as usize;
                                            let wi = (((o * g.cin + c) * k + kz) * k + ky) * k + kx;
                                            xb[xi] += w[wi] * ybv;
                                            wb[wi] += x[xi] * ybv;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (xb, wb)
    }

    /// Deterministic pseudo-random values in [−1, 1) (splitmix64).
    pub(crate) fn rand_vec(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        (0..len)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    fn max_rel(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Cases: (N, C_in, C_out, k, stride, pad, D, H, W), including 1³ kernels, stride 2, odd sizes.
    const CASES: &[(usize, usize, usize, usize, usize, usize, usize, usize, usize)] = &[
        (2, 3, 4, 3, 1, 1, 6, 5, 7),
        (1, 2, 3, 3, 2, 1, 7, 6, 8),
        (2, 3, 2, 2, 2, 0, 8, 6, 4),
        (1, 4, 5, 1, 1, 0, 5, 4, 3),
        (1, 2, 2, 3, 1, 0, 5, 5, 6),
        (1, 3, 3, 3, 2, 0, 9, 7, 5),
    ];

    fn case_geom(c: &(usize, usize, usize, usize, usize, usize, usize, usize, usize)) -> ConvGeom {
        let &(n, ci, co, k, s, p, d, h, w) = c;
        ConvGeom::new(&[n, ci, d, h, w], &[co, ci, k, k, k], s, p).unwrap()
    }

    #[test]
    fn slices_match_naive_f64_and_f32() {
        for (i, c) in CASES.iter().enumerate() {
            let g = case_geom(c);
            let x = rand_vec(g.n * g.cin * g.pin(), 10 + i as u64);
            let w = rand_vec(g.cout * g.kdim(), 20 + i as u64);
            let yb = rand_vec(g.n * g.cout * g.pout(), 30 + i as u64);
            let y0 = naive(&g, &x, &w);
            let (xb0, wb0) = naive_vjp(&g, &x, &w, &yb);
            let y = conv3d_fwd_slice(&g, &x, &w);
            let xb = conv3d_vjp_input_slice(&g, &yb, &w);
            let wb = conv3d_vjp_weight_slice(&g, &x, &yb);
            assert!(max_rel(&y, &y0) <= 1e-12, "case {c:?}: forward f64 {}", max_rel(&y, &y0));
            assert!(max_rel(&xb, &xb0) <= 1e-12, "case {c:?}: input vjp f64 {}", max_rel(&xb, &xb0));
            assert!(max_rel(&wb, &wb0) <= 1e-12, "case {c:?}: weight grad f64 {}", max_rel(&wb, &wb0));
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let b = |v: Vec<f32>| v.into_iter().map(|a| a as f64).collect::<Vec<f64>>();
            let (x32, w32, yb32) = (f(&x), f(&w), f(&yb));
            let y = b(conv3d_fwd_slice(&g, &x32, &w32));
            let xb = b(conv3d_vjp_input_slice(&g, &yb32, &w32));
            let wb = b(conv3d_vjp_weight_slice(&g, &x32, &yb32));
            assert!(max_rel(&y, &y0) <= 1e-5, "case {c:?}: forward f32 {}", max_rel(&y, &y0));
            assert!(max_rel(&xb, &xb0) <= 1e-5, "case {c:?}: input vjp f32 {}", max_rel(&xb, &xb0));
            assert!(max_rel(&wb, &wb0) <= 1e-5, "case {c:?}: weight grad f32 {}", max_rel(&wb, &wb0));
        }
    }

    #[test]
    fn dot_product_tests() {
        // ⟨conv(x), ȳ⟩ = ⟨x, Jₓᵀȳ⟩ and = ⟨w, J_wᵀȳ⟩ (conv is bilinear).
        for (i, c) in CASES.iter().enumerate() {
            let g = case_geom(c);
            let x = rand_vec(g.n * g.cin * g.pin(), 40 + i as u64);
            let w = rand_vec(g.cout * g.kdim(), 50 + i as u64);
            let yb = rand_vec(g.n * g.cout * g.pout(), 60 + i as u64);
            let y = conv3d_fwd_slice(&g, &x, &w);
            let lhs: f64 = y.iter().zip(&yb).map(|(a, b)| a * b).sum();
            let xb = conv3d_vjp_input_slice(&g, &yb, &w);
            let wb = conv3d_vjp_weight_slice(&g, &x, &yb);
            let r1: f64 = x.iter().zip(&xb).map(|(a, b)| a * b).sum();
            let r2: f64 = w.iter().zip(&wb).map(|(a, b)| a * b).sum();
            assert!((lhs - r1).abs() <= 1e-12 * lhs.abs().max(1.0), "case {c:?}: {lhs} vs {r1}");
            assert!((lhs - r2).abs() <= 1e-12 * lhs.abs().max(1.0), "case {c:?}: {lhs} vs {r2}");
        }
    }

    fn t64(v: Vec<f64>, dims: &[usize]) -> Tensor {
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    fn vec64(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    #[test]
    fn candle_op_gradients_match_finite_differences() {
        // L = ⟨conv(x, w) + b, r⟩² / 2 (non-linear in x, w), central differences in f64.
        let (n, ci, co, k, s, p) = (1, 2, 3, 3, 2, 1);
        let dims = [n, ci, 5, 6, 4];
        let x = Var::from_tensor(&t64(rand_vec(dims.iter().product(), 1), &dims)).unwrap();
        let w = Var::from_tensor(&t64(rand_vec(co * ci * k * k * k, 2), &[co, ci, k, k, k])).unwrap();
        let g = ConvGeom::new(&dims, w.dims(), s, p).unwrap();
        let r = t64(rand_vec(n * co * g.pout(), 3), &[n, co, g.dout[0], g.dout[1], g.dout[2]]);
        let loss = |x: &Tensor, w: &Tensor| -> Tensor {
            let y = conv3d(x, w, s, p).unwrap();
            let l = (y * &r).unwrap().sum_all().unwrap();
            (l.sqr().unwrap() * 0.5).unwrap()
        };
        let l = loss(x.as_tensor(), w.as_tensor());
        let grads = l.backward().unwrap();
        for (var, seed) in [(&x, 7u64), (&w, 8)] {
            let gvec = vec64(grads.get(var).unwrap());
            let dir = rand_vec(gvec.len(), seed);
            let analytic: f64 = gvec.iter().zip(&dir).map(|(a, b)| a * b).sum();
            let h = 1e-5;
            let dirt = t64(dir.clone(), var.dims());
            let eval = |sign: f64| {
                let shifted = (var.as_tensor() + (&dirt * (sign * h)).unwrap()).unwrap();
                let l = if std::ptr::eq(var, &x) {
                    loss(&shifted, w.as_tensor())
                } else {
                    loss(x.as_tensor(), &shifted)
                };
                l.to_scalar::<f64>().unwrap()
            };
            let fd = (eval(1.0) - eval(-1.0)) / (2.0 * h);
            assert!(
                (fd - analytic).abs() <= 1e-7 * analytic.abs().max(1.0),
                "fd {fd} vs analytic {analytic}"
            );
        }
    }

    #[test]
    fn fused_equals_candle_fallback_forward_and_backward() {
        for (i, c) in CASES.iter().enumerate() {
            let g = case_geom(c);
            let x = Var::from_tensor(&t64(
                rand_vec(g.n * g.cin * g.pin(), 70 + i as u64),
                &[g.n, g.cin, g.din[0], g.din[1], g.din[2]],
            ))
            .unwrap();
            let w = Var::from_tensor(&t64(rand_vec(g.cout * g.kdim(), 80 + i as u64), &[g.cout, g.cin, g.k, g.k, g.k])).unwrap();
            let r = t64(
                rand_vec(g.n * g.cout * g.pout(), 90 + i as u64),
                &[g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]],
            );
            let mut outs = vec![];
            for fused in [true, false] {
                let y = if fused {
                    conv3d(&x, &w, g.stride, g.pad)
                } else {
                    conv3d_candle(&x, &w, g.stride, g.pad)
                }
                .unwrap();
                let gr = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                outs.push((vec64(&y), vec64(gr.get(&x).unwrap()), vec64(gr.get(&w).unwrap())));
            }
            assert!(max_rel(&outs[0].0, &outs[1].0) <= 1e-12, "case {c:?} forward");
            assert!(max_rel(&outs[0].1, &outs[1].1) <= 1e-12, "case {c:?} input grad");
            assert!(max_rel(&outs[0].2, &outs[1].2) <= 1e-12, "case {c:?} weight grad");
        }
    }

    #[test]
    fn transposed_conv_is_the_adjoint_and_fallback_agrees() {
        for (i, c) in CASES.iter().enumerate() {
            let g = case_geom(c);
            // Output size of the transposed conv = the conv's input size, via out_pad.
            let base = (g.dout[0] - 1) * g.stride + g.k - 2 * g.pad;
            if (0..3).any(|a| (g.dout[a] - 1) * g.stride + g.k - 2 * g.pad + (g.din[0] - base) != g.din[a]) {
                continue; // the three axes would need different out_pad
            }
            let out_pad = g.din[0] - base;
            let u = Var::from_tensor(&t64(
                rand_vec(g.n * g.cout * g.pout(), 100 + i as u64),
                &[g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]],
            ))
            .unwrap();
            let w = Var::from_tensor(&t64(rand_vec(g.cout * g.kdim(), 110 + i as u64), &[g.cout, g.cin, g.k, g.k, g.k])).unwrap();
            let r = t64(
                rand_vec(g.n * g.cin * g.pin(), 120 + i as u64),
                &[g.n, g.cin, g.din[0], g.din[1], g.din[2]],
            );
            let z = conv_transpose3d(&u, &w, g.stride, g.pad, out_pad).unwrap();
            let zc = conv_transpose3d_candle(&u, &w, g.stride, g.pad, out_pad).unwrap();
            assert!(
                max_rel(&vec64(&z), &vec64(&zc)) <= 1e-12,
                "case {c:?}: fused vs candle transposed conv"
            );
            // ⟨convT(u), r⟩ = ⟨u, conv(r)⟩.
            let lhs = sum_f64(&(&z * &r).unwrap()).unwrap();
            let rhs = sum_f64(&(conv3d(&r, &w, g.stride, g.pad).unwrap() * u.as_tensor()).unwrap()).unwrap();
            assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "case {c:?}: {lhs} vs {rhs}");
            // Backward of the fused transposed conv vs the candle-ops one.
            let g1 = (&z * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&zc * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&u, &w] {
                assert!(
                    max_rel(&vec64(g1.get(v).unwrap()), &vec64(g2.get(v).unwrap())) <= 1e-12,
                    "case {c:?}: transposed conv gradient"
                );
            }
        }
    }

    #[test]
    fn fused_is_bit_identical_across_thread_counts() {
        let g = ConvGeom::new(&[2, 8, 12, 12, 12], &[8, 8, 3, 3, 3], 1, 1).unwrap();
        let x: Vec<f32> = rand_vec(g.n * g.cin * g.pin(), 5).into_iter().map(|v| v as f32).collect();
        let w: Vec<f32> = rand_vec(g.cout * g.kdim(), 6).into_iter().map(|v| v as f32).collect();
        let yb: Vec<f32> = rand_vec(g.n * g.cout * g.pout(), 7).into_iter().map(|v| v as f32).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                (
                    conv3d_fwd_slice(&g, &x, &w),
                    conv3d_vjp_input_slice(&g, &yb, &w),
                    conv3d_vjp_weight_slice(&g, &x, &yb),
                )
            })
        };
        let (a, b) = (run(1), run(3));
        assert!(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "results depend on the thread count");
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 4, 4, 4), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((3, 5, 3, 3, 3), DType::F32, &dev).unwrap();
        assert!(matches!(conv3d(&x, &w, 1, 1), Err(Error::Shape { what: "conv3d weight", .. })));
        let w = Tensor::zeros((3, 2, 3, 3, 3), DType::F64, &dev).unwrap();
        assert!(matches!(conv3d(&x, &w, 1, 1), Err(Error::Shape { what: "conv3d weight", .. })));
        let w = Tensor::zeros((3, 2, 5, 5, 5), DType::F32, &dev).unwrap();
        assert!(matches!(conv3d(&x, &w, 1, 0), Err(Error::Shape { what: "conv3d input", .. })));
        assert!(matches!(
            conv3d(&x.flatten_all().unwrap(), &w, 1, 0),
            Err(Error::Shape { what: "conv3d input", .. })
        ));
        let w = Tensor::zeros((3, 2, 2, 2, 2), DType::F32, &dev).unwrap();
        assert!(matches!(conv3d(&x, &w, 0, 0), Err(Error::Config { field: "stride", .. })));
    }
}
