//! The fused CPU kernels on slices: tiled im2col + single-threaded gemm for the forward
//! convolution (docs/nn.md 1.1), its input VJP (1.2, the transposed convolution: gemm then
//! col2im) and its weight gradient (1.3). Tiles depend only on the shapes, and every output value
//! is computed by one fixed sequence of operations, so results are bit-identical for any thread
//! count (see the header of [`super`]).

use super::geom::ConvGeom;
use pm_core::Real;
use rayon::prelude::*;

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
