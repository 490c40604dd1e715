//! Parallel 3-D real FFT on a cubic `n³` mesh, planned once and shared by every thread.
//!
//! # Transforms and normalisation
//!
//! Both transforms are **unnormalised**. With `x` a real field stored C-order `[ix][iy][iz]`
//! (flat index `(ix·n + iy)·n + iz`, see [`crate::mesh`]) and `X` its half spectrum stored C-order
//! `[kx][ky][kz]` with `kz ∈ 0..=n/2` (flat index `(kx·n + ky)·(n/2+1) + kz`):
//!
//! * forward (r2c): `X[k] = Σ_r x[r] · exp(−2πi k·r / n)`;
//! * inverse (c2r): `x[r] = Re Σ_k w(kz) · X[k] · exp(+2πi k·r / n)`, the sum running over the
//!   stored half spectrum, with `w(kz) = 1` for `kz = 0` and (even `n`) `kz = n/2`, `w = 2` else.
//!
//! Hence `inverse(forward(x)) = n³ · x`. For a hermitian half spectrum (one that came from a real
//! field) the inverse is the ordinary inverse DFT of the full spectrum. For any other input it
//! behaves like `numpy.fft.irfftn`: the imaginary parts that a real field cannot have (those of the
//! self-conjugate modes on the `kz = 0` and `kz = n/2` planes) are discarded, i.e. those planes are
//! replaced by their hermitian part `(X(k) + X*(−k)) / 2`.
//!
//! # Algorithm
//!
//! Three passes of 1-D transforms, each 1-D transform done by one thread with one plan:
//!
//! 1. `z` (contiguous rows): realfft r2c of each row straight into the output row;
//! 2. `y` (stride `n/2+1`): fused with pass 1 slab by slab (an `x`-slab of `n × (n/2+1)` complex
//!    values stays in L2), so the slab is transformed along `y` while it is still in cache;
//! 3. `x` (stride `n·(n/2+1)`): one `ky`-plane per task.
//!
//! A strided pass gathers a block of `KB` columns into a small transposed buffer `[kz][i]`, runs
//! rustfft's batched `process_with_scratch` on the buffer (consecutive length-`n` chunks) and
//! scatters the block back. The inverse runs the same passes in reverse order (`x`, then `y` fused
//! with the z-row c2r).
//!
//! # Threads and determinism
//!
//! Work is split over the ambient rayon pool: `x`-slabs for the fused `z`/`y` passes, `ky`-planes
//! for the `x` pass. The decomposition into 1-D transforms and their batching depends only on `n`,
//! never on the number of threads, so results are **bit-identical for any thread count**.
//! Scratch is one buffer per rayon task (a few allocations per call, none per 1-D transform).

use crate::float::{Real, C};
use rayon::prelude::*;
use realfft::{ComplexToReal, FftError, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Columns (complex values along the contiguous axis) gathered per block in the strided passes.
const KB_Y: usize = 16;
/// Same for the `x` pass.
const KB_X: usize = 16;
/// Rows per tile in the gather/scatter transposes.
const TILE: usize = 8;

/// A planned 3-D real FFT of a cubic `n³` mesh (see the [module docs](self) for definitions).
///
/// Build once with [`Fft3::new`]; `forward` and `inverse` take `&self`, so one plan serves any
/// number of threads (`Fft3` is `Send + Sync`). Both methods parallelise over the ambient rayon
/// pool and give bit-identical results whatever its size.
pub struct Fft3<T: Real> {
    n: usize,
    nc: usize,
    r2c: Arc<dyn RealToComplex<T>>,
    c2r: Arc<dyn ComplexToReal<T>>,
    fwd: Arc<dyn Fft<T>>,
    inv: Arc<dyn Fft<T>>,
    scratch_len: usize,
}

impl<T: Real> std::fmt::Debug for Fft3<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fft3")
            .field("n", &self.n)
            .field("precision", &T::NAME)
            .finish()
    }
}

/// Per-task scratch: the transposed block buffer and the 1-D FFT scratch.
struct Work<T: Real> {
    buf: Vec<C<T>>,
    scratch: Vec<C<T>>,
}

/// A raw pointer that may cross threads; used only where tasks touch provably disjoint elements.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
// SAFETY: the pointer is only dereferenced by tasks that access pairwise disjoint elements of a
// buffer that is exclusively borrowed for the duration of the parallel loop.
unsafe impl<T: Send> Send for SyncPtr<T> {}
unsafe impl<T: Send> Sync for SyncPtr<T> {}

impl<T: Real> Fft3<T> {
    /// Plans the transforms of an `n × n × n` real mesh, `n ≥ 2`. Even `n` is the fast path
    /// (half-length complex FFT along `z`); odd `n` is supported and exact.
    ///
    /// # Panics
    /// If `n < 2`.
    #[track_caller]
    pub fn new(n: usize) -> Self {
        assert!(n >= 2, "Fft3 needs n >= 2 cells per side, got {n}");
        let mut rplanner = RealFftPlanner::<T>::new();
        let r2c = rplanner.plan_fft_forward(n);
        let c2r = rplanner.plan_fft_inverse(n);
        let mut planner = FftPlanner::<T>::new();
        let fwd = planner.plan_fft_forward(n);
        let inv = planner.plan_fft_inverse(n);
        let scratch_len = [
            r2c.get_scratch_len(),
            c2r.get_scratch_len(),
            fwd.get_inplace_scratch_len(),
            inv.get_inplace_scratch_len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
        .max(1);
        Fft3 {
            n,
            nc: n / 2 + 1,
            r2c,
            c2r,
            fwd,
            inv,
            scratch_len,
        }
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

    fn work(&self, kb: usize) -> Work<T> {
        let z = C::new(T::zero(), T::zero());
        Work {
            buf: vec![z; kb.min(self.nc) * self.n],
            scratch: vec![z; self.scratch_len],
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
        assert_eq!(
            output.len(),
            self.complex_len(),
            "Fft3::forward: output length"
        );
        // Passes z and y, fused per x-slab.
        output
            .par_chunks_mut(n * nc)
            .zip(input.par_chunks_mut(n * n))
            .for_each_init(
                || self.work(KB_Y),
                |w, (o, i)| {
                    for (row_in, row_out) in i.chunks_exact_mut(n).zip(o.chunks_exact_mut(nc)) {
                        self.r2c
                            .process_with_scratch(row_in, row_out, &mut w.scratch)
                            .expect("realfft r2c: buffer sizes are checked");
                    }
                    // SAFETY: `o` is an exclusively borrowed n × nc slab.
                    unsafe { self.columns(o.as_mut_ptr(), nc, &*self.fwd, KB_Y, w) };
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
    /// `kz = 0` and `kz = n/2` planes) are discarded, like `numpy.fft.irfftn`. `output` receives the
    /// real field `[ix][iy][iz]` (length [`real_len`](Self::real_len)).
    ///
    /// # Panics
    /// If a buffer has the wrong length.
    #[track_caller]
    pub fn inverse(&self, input: &mut [C<T>], output: &mut [T]) {
        let (n, nc) = (self.n, self.nc);
        assert_eq!(
            input.len(),
            self.complex_len(),
            "Fft3::inverse: input length"
        );
        assert_eq!(
            output.len(),
            self.real_len(),
            "Fft3::inverse: output length"
        );
        self.x_pass(input, &*self.inv);
        // Passes y and z, fused per x-slab.
        input
            .par_chunks_mut(n * nc)
            .zip(output.par_chunks_mut(n * n))
            .for_each_init(
                || self.work(KB_Y),
                |w, (i, o)| {
                    // SAFETY: `i` is an exclusively borrowed n × nc slab.
                    unsafe { self.columns(i.as_mut_ptr(), nc, &*self.inv, KB_Y, w) };
                    for (row_in, row_out) in i.chunks_exact_mut(nc).zip(o.chunks_exact_mut(n)) {
                        match self
                            .c2r
                            .process_with_scratch(row_in, row_out, &mut w.scratch)
                        {
                            // Non-zero imaginary parts at kz = 0 / n/2 are dropped (documented).
                            Ok(()) | Err(FftError::InputValues(..)) => {}
                            Err(e) => panic!("realfft c2r: {e}"),
                        }
                    }
                },
            );
    }

    /// Transforms `data` (an n × n × nc half spectrum) along `x`, one `ky`-plane per task.
    fn x_pass(&self, data: &mut [C<T>], plan: &dyn Fft<T>) {
        let (n, nc) = (self.n, self.nc);
        debug_assert_eq!(data.len(), n * n * nc);
        let base = SyncPtr(data.as_mut_ptr());
        (0..n).into_par_iter().for_each_init(
            || self.work(KB_X),
            move |w, ky| {
                let base = base;
                // SAFETY: plane `ky` is the set {x·n·nc + ky·nc + kz}; planes of different `ky`
                // are disjoint, and `data` is exclusively borrowed for the whole loop.
                unsafe { self.columns(base.0.add(ky * nc), n * nc, plan, KB_X, w) };
            },
        );
    }

    /// Transforms the `n × nc` strided block `p[i·stride + k]` (`i < n`, `k < nc`) along `i` with
    /// `plan`, `kb` columns at a time: gather to `[k][i]`, batched 1-D FFT, scatter back.
    ///
    /// # Safety
    /// `p[i·stride + k]` must be valid for reads and writes and not accessed by anyone else
    /// for all `i < n`, `k < nc`.
    unsafe fn columns(
        &self,
        p: *mut C<T>,
        stride: usize,
        plan: &dyn Fft<T>,
        kb: usize,
        w: &mut Work<T>,
    ) {
        let (n, nc) = (self.n, self.nc);
        let mut k0 = 0;
        while k0 < nc {
            let kw = kb.min(nc - k0);
            let buf = &mut w.buf[..kw * n];
            // SAFETY: forwarded from the caller's contract (columns k0..k0+kw ⊂ 0..nc).
            unsafe {
                gather(p.add(k0), stride, n, kw, buf);
            }
            plan.process_with_scratch(buf, &mut w.scratch);
            // SAFETY: as above.
            unsafe {
                scatter(buf, p.add(k0), stride, n, kw);
            }
            k0 += kw;
        }
    }
}

/// `buf[k·rows + i] = src[i·stride + k]` for `i < rows`, `k < cols`.
///
/// # Safety
/// `src[i·stride + k]` must be valid for reads for all `i < rows`, `k < cols`.
#[inline]
unsafe fn gather<T: Copy>(src: *const T, stride: usize, rows: usize, cols: usize, buf: &mut [T]) {
    debug_assert!(buf.len() >= rows * cols);
    let mut i0 = 0;
    while i0 < rows {
        let ih = TILE.min(rows - i0);
        for i in i0..i0 + ih {
            // SAFETY: caller's contract.
            let row = unsafe { std::slice::from_raw_parts(src.add(i * stride), cols) };
            for (k, v) in row.iter().enumerate() {
                buf[k * rows + i] = *v;
            }
        }
        i0 += ih;
    }
}

/// `dst[i·stride + k] = buf[k·rows + i]` for `i < rows`, `k < cols`.
///
/// # Safety
/// `dst[i·stride + k]` must be valid for writes for all `i < rows`, `k < cols`.
#[inline]
unsafe fn scatter<T: Copy>(buf: &[T], dst: *mut T, stride: usize, rows: usize, cols: usize) {
    debug_assert!(buf.len() >= rows * cols);
    let mut i0 = 0;
    while i0 < rows {
        let ih = TILE.min(rows - i0);
        for i in i0..i0 + ih {
            // SAFETY: caller's contract.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.add(i * stride), cols) };
            for (k, v) in row.iter_mut().enumerate() {
                *v = buf[k * rows + i];
            }
        }
        i0 += ih;
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
            let w = if kz == 0 || (n % 2 == 0 && kz == n / 2) {
                1.0
            } else {
                2.0
            };
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
        out.iter()
            .map(|c| Cf::new(c.re.f64(), c.im.f64()))
            .collect()
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
        assert!(
            err <= tol * scale,
            "{} n={n}: forward error {err:e} vs scale {scale:e}",
            T::NAME
        );
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
        assert!(
            err <= tol * scale,
            "{} n={n}: round-trip error {err:e} vs scale {scale:e}",
            T::NAME
        );
    }

    #[test]
    fn sizes() {
        let f = Fft3::<f32>::new(6);
        assert_eq!(
            (f.n(), f.nc(), f.real_len(), f.complex_len()),
            (6, 4, 216, 144)
        );
        let f = Fft3::<f64>::new(5);
        assert_eq!(
            (f.n(), f.nc(), f.real_len(), f.complex_len()),
            (5, 3, 125, 75)
        );
    }

    #[test]
    fn forward_matches_naive_dft() {
        for n in [4, 5, 6, 8] {
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
            assert!(
                im <= 1e-13 * scale,
                "naive inverse of a hermitian spectrum is not real"
            );
            let half: Vec<Cf> = (0..n * n * nc)
                .map(|i| full[(i / nc) * n + i % nc])
                .collect();
            for (got, tol) in [
                (inverse_of::<f64>(n, &half), 1e-12),
                (inverse_of::<f32>(n, &half), 1e-5),
            ] {
                let err = max_abs(got.iter().zip(&field).map(|(g, w)| (g - w.re).abs()));
                assert!(
                    err <= tol * scale,
                    "n={n}: hermitian inverse error {err:e} vs {scale:e}"
                );
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
            for (got, tol) in [
                (inverse_of::<f64>(n, &spec), 1e-12),
                (inverse_of::<f32>(n, &spec), 1e-5),
            ] {
                let err = max_abs(got.iter().zip(&want).map(|(g, w)| (g - w).abs()));
                assert!(
                    err <= tol * scale,
                    "n={n}: c2r semantics error {err:e} vs {scale:e}"
                );
            }
        }
    }

    fn run_in_pool<T: Real>(threads: usize, f: &Fft3<T>, x: &[T]) -> (Vec<C<T>>, Vec<T>) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
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
            let same_spec = s.iter().zip(&s1).all(|(a, b)| {
                a.re.f64().to_bits() == b.re.f64().to_bits()
                    && a.im.f64().to_bits() == b.im.f64().to_bits()
            });
            let same_back = b
                .iter()
                .zip(&b1)
                .all(|(a, b)| a.f64().to_bits() == b.f64().to_bits());
            assert!(
                same_spec,
                "{} n={n}: forward differs between 1 and {threads} threads",
                T::NAME
            );
            assert!(
                same_back,
                "{} n={n}: inverse differs between 1 and {threads} threads",
                T::NAME
            );
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
