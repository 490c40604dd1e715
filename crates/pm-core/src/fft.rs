//! Parallel 3-D real FFT of a cubic `n³` mesh, planned once and shared by every thread.
//!
//! # Transforms and normalisation
//!
//! Both transforms are **unnormalised**. With `x` a real field stored C-order `[ix][iy][iz]`
//! (flat index `(ix·n + iy)·n + iz`, as in [`crate::mesh`]) and `X` its half spectrum stored
//! C-order `[kx][ky][kz]` with `kz ∈ 0..=n/2` (flat index `(kx·n + ky)·(n/2+1) + kz`):
//!
//! * forward (r2c): `X[k] = Σ_r x[r] · exp(−2πi k·r / n)`;
//! * inverse (c2r): `x[r] = Re Σ_k w(kz) · X[k] · exp(+2πi k·r / n)`, the sum running over the
//!   stored half spectrum, with `w(kz) = 1` for `kz = 0` and (even `n`) `kz = n/2`, `w = 2` else.
//!
//! Hence `inverse(forward(x)) = n³ · x`. For a hermitian half spectrum (one that a real field can
//! have) the inverse is the ordinary inverse DFT of the full spectrum. For any other input it does
//! what `numpy.fft.irfftn` does: the imaginary parts that no real field can produce (those of the
//! self-conjugate `kz = 0` and `kz = n/2` planes) are discarded, i.e. those two planes are replaced
//! by their hermitian part `(X(k) + X*(−k)) / 2`.
//!
//! # Algorithm
//!
//! Two sweeps over memory, each made of 1-D transforms that are each done by one thread:
//!
//! 1. per `x`-slab (`n × (n/2+1)` complex values, L2-sized): the `z` pass and then the `y` pass.
//!    * `z`, even `n`: the real rows, viewed as `n/2` complex pairs, go through one batched
//!      half-length rustfft call (in place in `input`, which is scratch), then a twiddle split
//!      writes each row's `n/2+1` modes into the output slab. Odd `n`: realfft, row by row.
//!    * `y` (stride `n/2+1`): one 64-byte cache line of each row at a time is gathered into a small
//!      transposed buffer `[kz][y]` with an AVX 4×4 (f32) or 2×2 (f64) register transpose, the
//!      buffer goes through rustfft's batched `process_with_scratch` (consecutive length-`n`
//!      chunks), and the block is scattered back.
//! 2. per `ky`-plane: the `x` pass (stride `n·(n/2+1)`), gathered and scattered the same way.
//!
//! The inverse runs the same passes in reverse order (`x`; then per slab `y` and the `z` c2r: the
//! twiddle merge followed by one batched half-length inverse FFT in place in `output`).
//! Measured alternatives that were slower or no faster on a 2-core Zen 3 (see the bench):
//! realfft row by row for even `n`, gathering whole slabs or planes instead of cache-line blocks,
//! 16- or 32-column blocks, and software prefetching of the next block, plane or slab.
//!
//! # Threads and determinism
//!
//! Work is split over the ambient rayon pool: `x`-slabs for the `z`/`y` sweep, `ky`-planes for the
//! `x` sweep. Which values go into each 1-D transform, how transforms are batched and the code path
//! (SIMD or not) depend only on `n`, `T` and the CPU, never on the number of threads or on which
//! thread runs a task, so results are **bit-identical for any thread count**. Scratch is one small
//! buffer per rayon task (a few allocations per call, none per 1-D transform).

use crate::float::{Real, C};
use rayon::prelude::*;
use realfft::{ComplexToReal, FftError, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Bytes of each row gathered per block in the strided passes: one cache line, i.e. 8 complex
/// `f32` or 4 complex `f64` columns per block.
const BLOCK_BYTES: usize = 64;

/// Rows per batched half-length FFT call in the even-`n` `z` pass.
const Z_ROWS: usize = 16;

/// A planned 3-D real FFT of a cubic `n³` mesh (transform definitions in the
/// [module docs](self)).
///
/// Build once with [`Fft3::new`]; [`forward`](Self::forward) and [`inverse`](Self::inverse) take
/// `&self`, so one plan serves any number of threads (`Fft3` is `Send + Sync`). Both parallelise
/// over the ambient rayon pool and give bit-identical results whatever its size.
///
/// ```
/// use pm_core::fft::Fft3;
/// use pm_core::float::C;
///
/// let fft = Fft3::<f64>::new(8);
/// let x: Vec<f64> = (0..fft.real_len()).map(|i| (i % 7) as f64).collect();
/// let mut spec = vec![C::new(0.0, 0.0); fft.complex_len()];
/// fft.forward(&mut x.clone(), &mut spec);
/// assert!((spec[0].re - x.iter().sum::<f64>()).abs() < 1e-9); // X(0) = Σ x
/// let mut back = vec![0.0; fft.real_len()];
/// fft.inverse(&mut spec, &mut back);
/// assert!((back[3] / 512.0 - x[3]).abs() < 1e-12); // inverse(forward(x)) = n³ x
/// ```
pub struct Fft3<T: Real> {
    n: usize,
    nc: usize,
    z: ZPass<T>,
    fwd: Arc<dyn Fft<T>>,
    inv: Arc<dyn Fft<T>>,
    /// Columns per gathered block (`BLOCK_BYTES` / size of a complex value).
    kb: usize,
    scratch_len: usize,
    /// AVX register transposes available (detected once at plan time).
    simd: bool,
    /// Unique per plan construction ([`Fft3::plan_id`]).
    id: u64,
}

/// Counter behind [`Fft3::plan_id`].
static NEXT_PLAN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The plans of the contiguous `z` pass.
enum ZPass<T: Real> {
    /// Even `n = 2m`: length-`m` complex FFTs of `(x[2j], x[2j+1])` plus a twiddle split/merge with
    /// `tw[k] = e^{−2πik/n}`, `k < m`.
    Even {
        fwd: Arc<dyn Fft<T>>,
        inv: Arc<dyn Fft<T>>,
        tw: Vec<C<T>>,
    },
    /// Odd `n`: realfft row by row.
    Odd {
        r2c: Arc<dyn RealToComplex<T>>,
        c2r: Arc<dyn ComplexToReal<T>>,
    },
}

impl<T: Real> std::fmt::Debug for Fft3<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fft3")
            .field("n", &self.n)
            .field("precision", &T::NAME)
            .field("simd", &self.simd)
            .finish_non_exhaustive()
    }
}

/// Per-task scratch: the transposed block buffer and the 1-D FFT scratch.
struct Work<T: Real> {
    buf: Vec<C<T>>,
    scratch: Vec<C<T>>,
}

/// A raw pointer that may cross threads, used only where tasks touch provably disjoint elements.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
// SAFETY: the pointer is dereferenced only by tasks that access pairwise disjoint elements of a
// buffer that is exclusively borrowed for the whole parallel loop.
unsafe impl<T: Send> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SyncPtr<T> {}

impl<T: Real> Fft3<T> {
    /// Plans the transforms of an `n × n × n` real mesh, `n ≥ 2`. Even `n` is the fast path;
    /// odd `n` is supported and exact.
    ///
    /// # Panics
    /// If `n < 2`.
    #[track_caller]
    pub fn new(n: usize) -> Self {
        assert!(n >= 2, "Fft3 needs n >= 2 cells per side, got {n}");
        let mut planner = FftPlanner::<T>::new();
        let fwd = planner.plan_fft_forward(n);
        let inv = planner.plan_fft_inverse(n);
        let (z, z_scratch) = if n % 2 == 0 {
            let m = n / 2;
            let tw = (0..m)
                .map(|k| {
                    let (s, c) = (-2.0 * std::f64::consts::PI * k as f64 / n as f64).sin_cos();
                    C::new(T::of(c), T::of(s))
                })
                .collect();
            let (hf, hi) = (planner.plan_fft_forward(m), planner.plan_fft_inverse(m));
            let s = hf.get_inplace_scratch_len().max(hi.get_inplace_scratch_len());
            (ZPass::Even { fwd: hf, inv: hi, tw }, s)
        } else {
            let mut rplanner = RealFftPlanner::<T>::new();
            let (r2c, c2r) = (rplanner.plan_fft_forward(n), rplanner.plan_fft_inverse(n));
            let s = r2c.get_scratch_len().max(c2r.get_scratch_len());
            (ZPass::Odd { r2c, c2r }, s)
        };
        let scratch_len = z_scratch
            .max(fwd.get_inplace_scratch_len())
            .max(inv.get_inplace_scratch_len())
            .max(1);
        let kb = (BLOCK_BYTES / std::mem::size_of::<C<T>>()).max(1);
        Fft3 {
            n,
            nc: n / 2 + 1,
            z,
            fwd,
            inv,
            kb,
            scratch_len,
            simd: simd_available(),
            id: NEXT_PLAN_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// An identifier unique to this plan's construction in this process: two plans with the
    /// same id are the same plans (e.g. a change of cosmology kept them).
    pub fn plan_id(&self) -> u64 {
        self.id
    }

    /// Cells per side `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Complex values along the half (`kz`) axis: `n/2 + 1`.
    pub fn nc(&self) -> usize {
        self.nc
    }

    /// Length of a real field: `n³`.
    pub fn real_len(&self) -> usize {
        self.n * self.n * self.n
    }

    /// Length of a half spectrum: `n · n · (n/2 + 1)`.
    pub fn complex_len(&self) -> usize {
        self.n * self.n * self.nc
    }

    fn work(&self) -> Work<T> {
        let zero = C::new(T::zero(), T::zero());
        Work {
            buf: vec![zero; self.kb.min(self.nc) * self.n],
            scratch: vec![zero; self.scratch_len],
        }
    }

    /// Unnormalised forward r2c transform,
    /// `X[kx][ky][kz] = Σ x[ix][iy][iz] e^{−2πi(kx·ix + ky·iy + kz·iz)/n}`.
    ///
    /// `input` is the real field, C-order `[ix][iy][iz]`, length [`real_len`](Self::real_len);
    /// it is used as scratch and its contents are unspecified afterwards. `output` receives the
    /// half spectrum, C-order `[kx][ky][kz]` with `kz ∈ 0..=n/2`, length
    /// [`complex_len`](Self::complex_len).
    ///
    /// # Panics
    /// If a buffer has the wrong length.
    #[track_caller]
    pub fn forward(&self, input: &mut [T], output: &mut [C<T>]) {
        let (n, nc) = (self.n, self.nc);
        assert_eq!(input.len(), self.real_len(), "Fft3::forward: input length");
        assert_eq!(output.len(), self.complex_len(), "Fft3::forward: output length");
        output.par_chunks_mut(n * nc).zip(input.par_chunks_mut(n * n)).for_each_init(
            || self.work(),
            |w, (o, i)| {
                self.z_forward(i, o, w);
                // SAFETY: `o` is an exclusively borrowed n × nc slab.
                unsafe { self.columns(o.as_mut_ptr(), nc, &*self.fwd, w) };
            },
        );
        self.x_pass(output, &*self.fwd);
    }

    /// Unnormalised inverse c2r transform,
    /// `x[ix][iy][iz] = Re Σ_k w(kz) X[kx][ky][kz] e^{+2πi(kx·ix + ky·iy + kz·iz)/n}`
    /// (`w` = 1 on the `kz = 0` and `kz = n/2` planes, 2 elsewhere), so that
    /// `inverse(forward(x)) = n³ · x`.
    ///
    /// `input` is the half spectrum `[kx][ky][kz]` (length [`complex_len`](Self::complex_len)); it
    /// is used as scratch and its contents are unspecified afterwards. Hermitian symmetry is
    /// assumed, as in any c2r: imaginary parts a real field cannot produce (on the self-conjugate
    /// `kz = 0` and `kz = n/2` planes) are discarded, as `numpy.fft.irfftn` does. `output`
    /// receives the real field `[ix][iy][iz]` (length [`real_len`](Self::real_len)).
    ///
    /// # Panics
    /// If a buffer has the wrong length.
    #[track_caller]
    pub fn inverse(&self, input: &mut [C<T>], output: &mut [T]) {
        let (n, nc) = (self.n, self.nc);
        assert_eq!(input.len(), self.complex_len(), "Fft3::inverse: input length");
        assert_eq!(output.len(), self.real_len(), "Fft3::inverse: output length");
        self.x_pass(input, &*self.inv);
        input.par_chunks_mut(n * nc).zip(output.par_chunks_mut(n * n)).for_each_init(
            || self.work(),
            |w, (i, o)| {
                // SAFETY: `i` is an exclusively borrowed n × nc slab.
                unsafe { self.columns(i.as_mut_ptr(), nc, &*self.inv, w) };
                self.z_inverse(i, o, w);
            },
        );
    }

    /// r2c along `z` of the `n` rows of one x-slab: `i` (n × n real, destroyed) → `o` (n × nc).
    fn z_forward(&self, i: &mut [T], o: &mut [C<T>], w: &mut Work<T>) {
        let (n, nc) = (self.n, self.nc);
        match &self.z {
            ZPass::Even { fwd, tw, .. } => {
                for (ib, ob) in i.chunks_mut(Z_ROWS * n).zip(o.chunks_mut(Z_ROWS * nc)) {
                    let zc = as_complex_mut(ib);
                    fwd.process_with_scratch(zc, &mut w.scratch);
                    for (zr, orow) in zc.chunks_exact(n / 2).zip(ob.chunks_exact_mut(nc)) {
                        r2c_split(zr, orow, tw);
                    }
                }
            }
            ZPass::Odd { r2c, .. } => {
                for (row_in, row_out) in i.chunks_exact_mut(n).zip(o.chunks_exact_mut(nc)) {
                    r2c.process_with_scratch(row_in, row_out, &mut w.scratch)
                        .expect("realfft r2c: buffer sizes are checked");
                }
            }
        }
    }

    /// c2r along `z` of the `n` rows of one x-slab: `i` (n × nc, destroyed) → `o` (n × n real).
    fn z_inverse(&self, i: &mut [C<T>], o: &mut [T], w: &mut Work<T>) {
        let (n, nc) = (self.n, self.nc);
        match &self.z {
            ZPass::Even { inv, tw, .. } => {
                for (ib, ob) in i.chunks_mut(Z_ROWS * nc).zip(o.chunks_mut(Z_ROWS * n)) {
                    let zc = as_complex_mut(ob);
                    for (xrow, zr) in ib.chunks_exact(nc).zip(zc.chunks_exact_mut(n / 2)) {
                        c2r_merge(xrow, zr, tw);
                    }
                    inv.process_with_scratch(zc, &mut w.scratch);
                }
            }
            ZPass::Odd { c2r, .. } => {
                for (row_in, row_out) in i.chunks_exact_mut(nc).zip(o.chunks_exact_mut(n)) {
                    match c2r.process_with_scratch(row_in, row_out, &mut w.scratch) {
                        // realfft zeroes Im X[0] (the only self-conjugate mode of an odd row),
                        // transforms, and reports it; discarding it is the documented semantics.
                        Ok(()) | Err(FftError::InputValues(..)) => {}
                        Err(e) => panic!("realfft c2r: {e}"),
                    }
                }
            }
        }
    }

    /// Transforms `data` (an n × n × nc half spectrum) along `x`, one `ky`-plane per task.
    fn x_pass(&self, data: &mut [C<T>], plan: &dyn Fft<T>) {
        let (n, nc) = (self.n, self.nc);
        assert_eq!(data.len(), n * n * nc);
        let base = SyncPtr(data.as_mut_ptr());
        (0..n).into_par_iter().for_each_init(
            || self.work(),
            move |w, ky| {
                let base = base;
                // SAFETY: plane `ky` is the set {x·n·nc + ky·nc + kz : x < n, kz < nc} inside
                // `data`; planes of different `ky` are disjoint, and `data` is exclusively
                // borrowed for the whole loop.
                unsafe { self.columns(base.0.add(ky * nc), n * nc, plan, w) };
            },
        );
    }

    /// Transforms the strided `n × nc` block `p[i·stride + k]` (`i < n`, `k < nc`) along `i` with
    /// `plan`, `kb` columns at a time: gather to `[k][i]`, batched 1-D FFTs, scatter back.
    ///
    /// # Safety
    /// `p[i·stride + k]` must be valid for reads and writes, and accessed by no one else during
    /// the call, for all `i < n`, `k < nc`.
    unsafe fn columns(&self, p: *mut C<T>, stride: usize, plan: &dyn Fft<T>, w: &mut Work<T>) {
        let (n, nc) = (self.n, self.nc);
        let mut k0 = 0;
        while k0 < nc {
            let kw = self.kb.min(nc - k0);
            let buf = &mut w.buf[..kw * n];
            // SAFETY (both blocks): columns k0..k0+kw of rows 0..n lie inside the caller's block;
            // `buf` holds exactly kw·n values.
            unsafe { transpose(p.add(k0), stride, buf.as_mut_ptr(), n, n, kw, self.simd) };
            plan.process_with_scratch(buf, &mut w.scratch);
            unsafe { transpose(buf.as_ptr(), n, p.add(k0), stride, kw, n, self.simd) };
            k0 += kw;
        }
    }
}

/// Views an even-length real slice as the complex pairs `(x[2j], x[2j+1])`.
fn as_complex_mut<T: Real>(x: &mut [T]) -> &mut [C<T>] {
    assert!(x.len() % 2 == 0, "odd length {} viewed as complex", x.len());
    // SAFETY: `Complex<T>` is `#[repr(C)] { re: T, im: T }` with the alignment of `T`, and the
    // new slice covers exactly the same memory, borrowed mutably from `x`.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<C<T>>(), x.len() / 2) }
}

/// Even-`n` r2c split. From `z = FFT_m(x[2j] + i·x[2j+1])` (length `m = n/2`) to the `m + 1`
/// modes `X_k = E_k + w^k O_k`, with `E_k = (Z_k + Z*_{m−k})/2`, `O_k = (Z_k − Z*_{m−k})/(2i)`,
/// `w^k = tw[k]` and `Z_m ≡ Z_0`.
fn r2c_split<T: Real>(z: &[C<T>], x: &mut [C<T>], tw: &[C<T>]) {
    let m = z.len();
    let (x, tw) = (&mut x[..m + 1], &tw[..m]);
    let half = T::of(0.5);
    let z0 = z[0];
    x[0] = C::new(z0.re + z0.im, T::zero());
    x[m] = C::new(z0.re - z0.im, T::zero());
    for (((xk, a), b), t) in x[1..m].iter_mut().zip(&z[1..]).zip(z[1..].iter().rev()).zip(&tw[1..]) {
        let er = (a.re + b.re) * half;
        let ei = (a.im - b.im) * half;
        let or = (a.im + b.im) * half;
        let oi = (b.re - a.re) * half;
        *xk = C::new(er + (t.re * or - t.im * oi), ei + (t.re * oi + t.im * or));
    }
}

/// Even-`n` c2r merge, twice the inverse of [`r2c_split`]. From the `m + 1` modes `X_k` (the
/// imaginary parts of `X_0` and `X_m` are ignored) to
/// `Z_k = (X_k + X*_{m−k}) + i (X_k − X*_{m−k}) w^{−k}`, whose unnormalised inverse FFT_m is
/// `n·(x[2j] + i·x[2j+1])`.
fn c2r_merge<T: Real>(x: &[C<T>], z: &mut [C<T>], tw: &[C<T>]) {
    let m = z.len();
    let (x, tw) = (&x[..m + 1], &tw[..m]);
    let (x0, xm) = (x[0].re, x[m].re);
    z[0] = C::new(x0 + xm, x0 - xm);
    for (((zk, a), b), t) in z[1..].iter_mut().zip(&x[1..m]).zip(x[1..m].iter().rev()).zip(&tw[1..]) {
        let (sr, si) = (a.re + b.re, a.im - b.im);
        let (dr, di) = (a.re - b.re, a.im + b.im);
        // d · conj(t)
        let (er, ei) = (dr * t.re + di * t.im, di * t.re - dr * t.im);
        *zk = C::new(sr - ei, si + er);
    }
}

/// True if the AVX register transposes can be used on this CPU.
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst[c·ds + r] = src[r·ss + c]` for `r < rows`, `c < cols` (pure data movement, so every path
/// gives identical results).
///
/// # Safety
/// Those `src` elements must be valid for reads and those `dst` elements for writes, the two sets
/// must not overlap, and `simd` may be true only if the CPU has AVX.
#[inline]
unsafe fn transpose<E: Copy>(src: *const E, ss: usize, dst: *mut E, ds: usize, rows: usize, cols: usize, simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        let (s, d) = (src.cast::<f64>(), dst.cast::<f64>());
        match std::mem::size_of::<E>() {
            // SAFETY: caller's contract; an 8-byte element is moved as one f64 lane, a
            // 16-byte one as two (bit patterns are copied, never interpreted).
            8 => return unsafe { avx::transpose8(s, ss, d, ds, rows, cols) },
            16 => return unsafe { avx::transpose16(s, ss, d, ds, rows, cols) },
            _ => {}
        }
    }
    let _ = simd;
    // SAFETY: caller's contract.
    unsafe { transpose_scalar(src, ss, dst, ds, rows, cols) }
}

/// Portable fallback of [`transpose`], in 4 × 4 tiles.
///
/// # Safety
/// As for [`transpose`].
unsafe fn transpose_scalar<E: Copy>(src: *const E, ss: usize, dst: *mut E, ds: usize, rows: usize, cols: usize) {
    const B: usize = 4;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for c in c0..(c0 + B).min(cols) {
                for r in r0..(r0 + B).min(rows) {
                    // SAFETY: caller's contract.
                    unsafe { *dst.add(c * ds + r) = *src.add(r * ss + c) };
                }
            }
        }
    }
}

/// AVX register-tile transposes. Elements are moved as raw 64-bit lanes (`f64` loads and stores
/// of arbitrary bit patterns, no arithmetic), so they work for complex `f32` (one lane) and
/// complex `f64` (two lanes) alike.
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// [`super::transpose`] for 8-byte elements (indices in elements): 4 × 4 register tiles.
    ///
    /// # Safety
    /// As for [`super::transpose`], and the CPU must have AVX.
    #[target_feature(enable = "avx")]
    pub unsafe fn transpose8(src: *const f64, ss: usize, dst: *mut f64, ds: usize, rows: usize, cols: usize) {
        let (r4, c4) = (rows & !3, cols & !3);
        // SAFETY (whole body): every access is to an element the caller's contract covers.
        unsafe {
            for r in (0..r4).step_by(4) {
                for c in (0..c4).step_by(4) {
                    let s = src.add(r * ss + c);
                    let a = _mm256_loadu_pd(s);
                    let b = _mm256_loadu_pd(s.add(ss));
                    let e = _mm256_loadu_pd(s.add(2 * ss));
                    let f = _mm256_loadu_pd(s.add(3 * ss));
                    let ab_lo = _mm256_unpacklo_pd(a, b); // a0 b0 a2 b2
                    let ab_hi = _mm256_unpackhi_pd(a, b); // a1 b1 a3 b3
                    let ef_lo = _mm256_unpacklo_pd(e, f);
                    let ef_hi = _mm256_unpackhi_pd(e, f);
                    let o = dst.add(c * ds + r);
                    _mm256_storeu_pd(o, _mm256_permute2f128_pd(ab_lo, ef_lo, 0x20));
                    _mm256_storeu_pd(o.add(ds), _mm256_permute2f128_pd(ab_hi, ef_hi, 0x20));
                    _mm256_storeu_pd(o.add(2 * ds), _mm256_permute2f128_pd(ab_lo, ef_lo, 0x31));
                    _mm256_storeu_pd(o.add(3 * ds), _mm256_permute2f128_pd(ab_hi, ef_hi, 0x31));
                }
                for c in c4..cols {
                    for rr in r..r + 4 {
                        *dst.add(c * ds + rr) = *src.add(rr * ss + c);
                    }
                }
            }
            for rr in r4..rows {
                for c in 0..cols {
                    *dst.add(c * ds + rr) = *src.add(rr * ss + c);
                }
            }
        }
    }

    /// [`super::transpose`] for 16-byte elements (indices in elements, pointers to their first
    /// 64-bit lane): 2 × 2 register tiles.
    ///
    /// # Safety
    /// As for [`super::transpose`], and the CPU must have AVX.
    #[target_feature(enable = "avx")]
    pub unsafe fn transpose16(src: *const f64, ss: usize, dst: *mut f64, ds: usize, rows: usize, cols: usize) {
        let (r2, c2) = (rows & !1, cols & !1);
        // SAFETY (whole body): every access is to an element the caller's contract covers.
        unsafe {
            let el = |p: *const f64, i: usize| p.add(2 * i);
            let elm = |p: *mut f64, i: usize| p.add(2 * i);
            for r in (0..r2).step_by(2) {
                for c in (0..c2).step_by(2) {
                    let a = _mm256_loadu_pd(el(src, r * ss + c));
                    let b = _mm256_loadu_pd(el(src, (r + 1) * ss + c));
                    _mm256_storeu_pd(elm(dst, c * ds + r), _mm256_permute2f128_pd(a, b, 0x20));
                    _mm256_storeu_pd(elm(dst, (c + 1) * ds + r), _mm256_permute2f128_pd(a, b, 0x31));
                }
                if c2 < cols {
                    for rr in r..r + 2 {
                        let v = _mm_loadu_pd(el(src, rr * ss + c2));
                        _mm_storeu_pd(elm(dst, c2 * ds + rr), v);
                    }
                }
            }
            if r2 < rows {
                for c in 0..cols {
                    let v = _mm_loadu_pd(el(src, r2 * ss + c));
                    _mm_storeu_pd(elm(dst, c * ds + r2), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Cf = C<f64>;

    /// Deterministic pseudo-random values in [-0.5, 0.5) (splitmix64).
    fn noise(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    /// Direct O(n) DFT along one axis of a full n³ complex grid, `sign` = −1 forward, +1 inverse.
    fn dft_axis(a: &mut [Cf], n: usize, axis: usize, sign: f64) {
        let stride = [n * n, n, 1][axis];
        let tw: Vec<Cf> = (0..n)
            .map(|j| Cf::from_polar(1.0, sign * 2.0 * std::f64::consts::PI * j as f64 / n as f64))
            .collect();
        let mut line = vec![Cf::new(0.0, 0.0); n];
        for base in 0..n * n * n {
            if (base / stride) % n != 0 {
                continue;
            }
            for (j, v) in line.iter_mut().enumerate() {
                *v = a[base + j * stride];
            }
            for k in 0..n {
                a[base + k * stride] = (0..n).map(|j| line[j] * tw[(j * k) % n]).sum();
            }
        }
    }

    fn dft3(a: &mut [Cf], n: usize, sign: f64) {
        for axis in 0..3 {
            dft_axis(a, n, axis, sign);
        }
    }

    /// Naive forward: the stored half spectrum of the full 3-D DFT, in f64.
    fn naive_forward(x: &[f64], n: usize) -> Vec<Cf> {
        let nc = n / 2 + 1;
        let mut a: Vec<Cf> = x.iter().map(|&v| Cf::new(v, 0.0)).collect();
        dft3(&mut a, n, -1.0);
        (0..n * n * nc).map(|i| a[(i / nc) * n + i % nc]).collect()
    }

    /// Naive inverse with the documented semantics `Re Σ_k w(kz) X[k] e^{+2πi k·r/n}`.
    fn naive_inverse(x: &[Cf], n: usize) -> Vec<f64> {
        let nc = n / 2 + 1;
        let mut a = vec![Cf::new(0.0, 0.0); n * n * n];
        for (i, v) in x.iter().enumerate() {
            let kz = i % nc;
            let w = if kz == 0 || (n % 2 == 0 && kz == n / 2) { 1.0 } else { 2.0 };
            a[(i / nc) * n + kz] = v * w;
        }
        dft3(&mut a, n, 1.0);
        a.iter().map(|v| v.re).collect()
    }

    fn max_abs<I: IntoIterator<Item = f64>>(it: I) -> f64 {
        it.into_iter().fold(0.0, f64::max)
    }

    fn forward_of<T: Real>(n: usize, x: &[f64]) -> Vec<Cf> {
        let f = Fft3::<T>::new(n);
        let mut xi: Vec<T> = x.iter().map(|&v| T::of(v)).collect();
        let mut out = vec![C::new(T::zero(), T::zero()); f.complex_len()];
        f.forward(&mut xi, &mut out);
        out.iter().map(|c| Cf::new(c.re.f64(), c.im.f64())).collect()
    }

    fn inverse_of<T: Real>(n: usize, s: &[Cf]) -> Vec<f64> {
        let f = Fft3::<T>::new(n);
        let mut si: Vec<C<T>> = s.iter().map(|c| C::new(T::of(c.re), T::of(c.im))).collect();
        let mut out = vec![T::zero(); f.real_len()];
        f.inverse(&mut si, &mut out);
        out.iter().map(|v| v.f64()).collect()
    }

    fn check_forward<T: Real>(n: usize, tol: f64) {
        let x = noise(n * n * n, 17 + n as u64);
        let got = forward_of::<T>(n, &x);
        let want = naive_forward(&x, n);
        let scale = max_abs(want.iter().map(|c| c.norm()));
        let err = max_abs(got.iter().zip(&want).map(|(a, b)| (a - b).norm()));
        assert!(err <= tol * scale, "{} n={n}: forward error {err:e} vs scale {scale:e}", T::NAME);
    }

    fn check_round_trip<T: Real>(n: usize, x: &[f64], tol: f64) {
        let f = Fft3::<T>::new(n);
        let mut xi: Vec<T> = x.iter().map(|&v| T::of(v)).collect();
        let mut spec = vec![C::new(T::zero(), T::zero()); f.complex_len()];
        f.forward(&mut xi, &mut spec);
        let mut back = vec![T::zero(); f.real_len()];
        f.inverse(&mut spec, &mut back);
        let n3 = (n * n * n) as f64;
        let scale = max_abs(x.iter().map(|v| v.abs())).max(f64::MIN_POSITIVE);
        let err = max_abs(back.iter().zip(x).map(|(b, v)| (b.f64() / n3 - v).abs()));
        assert!(err <= tol * scale, "{} n={n}: round-trip error {err:e} vs scale {scale:e}", T::NAME);
    }

    #[test]
    fn sizes() {
        let f = Fft3::<f32>::new(6);
        assert_eq!((f.n(), f.nc(), f.real_len(), f.complex_len()), (6, 4, 216, 144));
        let f = Fft3::<f64>::new(5);
        assert_eq!((f.n(), f.nc(), f.real_len(), f.complex_len()), (5, 3, 125, 75));
    }

    #[test]
    fn forward_matches_naive_dft() {
        for n in [2, 3, 4, 5, 6, 8] {
            check_forward::<f64>(n, 1e-12);
            check_forward::<f32>(n, 1e-5);
        }
    }

    #[test]
    fn round_trip_is_n_cubed_identity() {
        for n in [8, 16, 9] {
            let x = noise(n * n * n, 3 * n as u64);
            check_round_trip::<f64>(n, &x, 1e-12);
            check_round_trip::<f32>(n, &x, 1e-5);
        }
    }

    #[test]
    fn inverse_of_real_symmetric_spectrum_matches_naive() {
        for n in [4, 5, 6, 8] {
            let nc = n / 2 + 1;
            // A real spectrum with S(k) = S(−k) on the full grid: its field is real (and even).
            let a = noise(n * n * n, 99 + n as u64);
            let neg = |i: usize| (n - i) % n;
            let full: Vec<Cf> = (0..n * n * n)
                .map(|i| {
                    let (kx, ky, kz) = (i / (n * n), (i / n) % n, i % n);
                    let j = (neg(kx) * n + neg(ky)) * n + neg(kz);
                    Cf::new(0.5 * (a[i] + a[j]), 0.0)
                })
                .collect();
            let mut field = full.clone();
            dft3(&mut field, n, 1.0);
            let im = max_abs(field.iter().map(|c| c.im.abs()));
            let scale = max_abs(field.iter().map(|c| c.re.abs()));
            assert!(im <= 1e-13 * scale, "naive inverse of a hermitian spectrum is not real");
            let half: Vec<Cf> = (0..n * n * nc).map(|i| full[(i / nc) * n + i % nc]).collect();
            for (got, tol) in [(inverse_of::<f64>(n, &half), 1e-12), (inverse_of::<f32>(n, &half), 1e-5)] {
                let err = max_abs(got.iter().zip(&field).map(|(g, w)| (g - w.re).abs()));
                assert!(err <= tol * scale, "n={n}: hermitian inverse error {err:e} vs {scale:e}");
            }
        }
    }

    #[test]
    fn inverse_of_non_hermitian_spectrum_discards_self_conjugate_imaginary_parts() {
        for n in [4, 5, 6, 8] {
            let nc = n / 2 + 1;
            let re = noise(n * n * nc, 5 + n as u64);
            let im = noise(n * n * nc, 6 + n as u64);
            let spec: Vec<Cf> = re.iter().zip(&im).map(|(&r, &i)| Cf::new(r, i)).collect();
            let want = naive_inverse(&spec, n);
            let scale = max_abs(want.iter().map(|v| v.abs()));
            for (got, tol) in [(inverse_of::<f64>(n, &spec), 1e-12), (inverse_of::<f32>(n, &spec), 1e-5)] {
                let err = max_abs(got.iter().zip(&want).map(|(g, w)| (g - w).abs()));
                assert!(err <= tol * scale, "n={n}: c2r semantics error {err:e} vs {scale:e}");
            }
        }
    }

    fn run_in_pool<T: Real>(threads: usize, f: &Fft3<T>, x: &[T]) -> (Vec<C<T>>, Vec<T>) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut xi = x.to_vec();
            let mut spec = vec![C::new(T::zero(), T::zero()); f.complex_len()];
            f.forward(&mut xi, &mut spec);
            let out_spec = spec.clone();
            let mut back = vec![T::zero(); f.real_len()];
            f.inverse(&mut spec, &mut back);
            (out_spec, back)
        })
    }

    fn check_thread_independence<T: Real>(n: usize) {
        let f = Fft3::<T>::new(n);
        let x: Vec<T> = noise(n * n * n, 7).into_iter().map(T::of).collect();
        let (s1, b1) = run_in_pool(1, &f, &x);
        for threads in [2, 3] {
            let (s, b) = run_in_pool(threads, &f, &x);
            // Widening to f64 is exact and injective, so this compares bit patterns.
            let same_spec = s
                .iter()
                .zip(&s1)
                .all(|(a, b)| a.re.f64().to_bits() == b.re.f64().to_bits() && a.im.f64().to_bits() == b.im.f64().to_bits());
            let same_back = b.iter().zip(&b1).all(|(a, b)| a.f64().to_bits() == b.f64().to_bits());
            assert!(same_spec, "{} n={n}: forward differs between 1 and {threads} threads", T::NAME);
            assert!(same_back, "{} n={n}: inverse differs between 1 and {threads} threads", T::NAME);
        }
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        for n in [16, 9, 34] {
            check_thread_independence::<f32>(n);
            check_thread_independence::<f64>(n);
        }
    }

    #[test]
    fn simd_and_scalar_transposes_agree() {
        fn check<E: Copy + PartialEq + std::fmt::Debug>(mk: impl Fn(usize) -> E) {
            for (rows, cols) in [(1, 1), (3, 5), (4, 4), (8, 9), (7, 13), (16, 3), (2, 2)] {
                let (ss, ds) = (cols + 2, rows + 1);
                let src: Vec<E> = (0..rows * ss).map(&mk).collect();
                let mut a = vec![mk(1 << 20); cols * ds];
                let mut b = a.clone();
                // SAFETY: every index touched is < rows·ss in `src` and < cols·ds in `a`, `b`.
                unsafe {
                    transpose(src.as_ptr(), ss, a.as_mut_ptr(), ds, rows, cols, simd_available());
                    transpose_scalar(src.as_ptr(), ss, b.as_mut_ptr(), ds, rows, cols);
                }
                assert_eq!(a, b, "{rows}x{cols}");
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(a[c * ds + r], src[r * ss + c]);
                    }
                }
            }
        }
        check(|i| C::new(i as f32, -(i as f32) - 0.5));
        check(|i| C::new(i as f64, 0.25 * i as f64));
    }

    #[test]
    fn portable_path_is_bit_identical_to_simd_path() {
        for n in [8, 9, 10] {
            let simd = Fft3::<f32>::new(n);
            let mut portable = Fft3::<f32>::new(n);
            portable.simd = false;
            let x: Vec<f32> = noise(n * n * n, 11).into_iter().map(|v| v as f32).collect();
            let a = run_in_pool(1, &simd, &x);
            let b = run_in_pool(1, &portable, &x);
            assert!(a
                .0
                .iter()
                .zip(&b.0)
                .all(|(p, q)| p.re.to_bits() == q.re.to_bits() && p.im.to_bits() == q.im.to_bits()));
            assert!(a.1.iter().zip(&b.1).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
    }

    #[test]
    fn plan_is_send_and_sync() {
        fn assert_send_sync<S: Send + Sync>() {}
        assert_send_sync::<Fft3<f32>>();
        assert_send_sync::<Fft3<f64>>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn prop_round_trip(
            n in prop::sample::select(vec![2usize, 3, 4, 6, 8]),
            x in prop::collection::vec(-1.0e3f64..1.0e3, 512),
        ) {
            let x = &x[..n * n * n];
            check_round_trip::<f64>(n, x, 1e-12);
            check_round_trip::<f32>(n, x, 1e-5);
        }
    }
}
