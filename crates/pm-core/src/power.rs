//! Power spectra and field observables (docs/physics.md §6).
//!
//! **Estimator.** For a real field δ on an m³ mesh in a box of side L, with
//! `δ(k) = Σ_x δ(x) e^{−ik·x}`: `P̂(k) = |δ(k)|² V / N_cells²` (V = L³), optionally divided by the
//! CIC window squared `W(k)² = Π_d sinc⁴(π ν_d/m)` (deconvolution). No shot-noise subtraction
//! unless asked for: [`PowerSpectrum::subtract_shot_noise`] with [`shot_noise`] = V/N removes the
//! Poisson level of N particles from every bin (`output.subtract_shot_noise`).
//! Cross spectra use `Re[δ_a(k) δ_b*(k)]`; `r(k) = P_ab/sqrt(P_aa P_bb)`.
//!
//! **Binning.** Linear shells of width k_f = 2π/L centred on multiples of k_f: bin j ≥ 1 holds the
//! modes with `j − ½ ≤ |k|/k_f < j + ½`, for j = 1 … ⌊m/2⌋ (up to the Nyquist wavenumber; the
//! k = 0 mode and the corner modes beyond are left out). Each bin reports the mean |k| of its
//! modes, the mean power and the number of modes counted over the full (not half) spectrum, so
//! k and −k both count. Sums are in f64 and reduced in a fixed order: results are bit-identical
//! for any thread count.
//!
//! **VJP** ([`power_spectrum_vjp`], docs/adjoint.md eqs. S1–S3). Write the estimator over the
//! stored half spectrum H with the hermitian weights w_k (1 on the kz = 0 plane and, for even m,
//! the kz = m/2 plane; 2 elsewhere): `P_b = (V/N²)(1/N_b) Σ_{k∈H_b} w_k |δ_k|²/W_k²` with
//! `N_b = Σ_{k∈H_b} w_k` (S1; N = m³ cells, W_k = 1 without deconvolution). Since
//! `∂|δ_k|²/∂δ(x) = 2 Re[δ_k e^{+ik·x}]`, the cotangent p̄ (one value per output bin) pulls back
//! to `δ̄(x) += Re Σ_{k∈H} w_k G_k e^{+ik·x}` with `G_k = (2V/N²) p̄_b(k) δ_k /(N_b W_k²)` (zero for
//! modes outside the bins) (S2): one forward FFT, a mode-wise scaling and one unnormalised
//! inverse FFT, whose weights are exactly the w_k of S1 (see [`crate::fft`]).

use crate::cic::{Cic, PaintScratch};
use crate::fft::Fft3;
use crate::float::{Real, C};
use crate::mesh::MeshGeom;
use rayon::prelude::*;

/// Whether the CIC window is divided out of the measured spectrum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deconvolve {
    /// Raw estimator.
    #[default]
    None,
    /// Divide each mode by the CIC window `Π_d sinc²(π ν_d/m)` (P by its square).
    Cic,
}

/// A binned auto or cross power spectrum.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerSpectrum {
    /// Mean |k| of the modes in each bin, h/Mpc.
    pub k: Vec<f64>,
    /// Mean power in each bin, (Mpc/h)³.
    pub p: Vec<f64>,
    /// Number of Fourier modes in each bin (full spectrum).
    pub n_modes: Vec<u64>,
}

impl PowerSpectrum {
    /// Subtracts a constant shot-noise power `shot` in (Mpc/h)³ from every bin, usually
    /// [`shot_noise`]`(L, N)` = V/N for N particles (`output.subtract_shot_noise` in `power.txt`).
    ///
    /// V/N is the Poisson level, the convention of Pylians' and nbodykit's users and the
    /// large-scale limit of the CIC-sampled noise; on the CIC mesh the true noise of a Poisson set
    /// falls below it towards k_Nyquist (Jing 2005: V/N Π_d [1 − ⅔ sin²(πν_d/(2m))] before
    /// deconvolution), and particles that started on a lattice carry much less than Poisson noise
    /// on large scales. The result can therefore be negative where the signal is below V/N.
    pub fn subtract_shot_noise(&mut self, shot: f64) {
        self.p.iter_mut().for_each(|p| *p -= shot);
    }
}

/// Poisson shot noise of `n_particles` particles in a periodic box of side `box_size` Mpc/h:
/// V/N = L³/N in (Mpc/h)³.
pub fn shot_noise(box_size: f64, n_particles: usize) -> f64 {
    box_size.powi(3) / n_particles as f64
}

/// Auto spectra of two fields, their cross spectrum and the correlation coefficient per bin.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossSpectrum {
    /// Mean |k| per bin, h/Mpc.
    pub k: Vec<f64>,
    /// Modes per bin.
    pub n_modes: Vec<u64>,
    /// P_aa, (Mpc/h)³.
    pub p_aa: Vec<f64>,
    /// P_bb, (Mpc/h)³.
    pub p_bb: Vec<f64>,
    /// P_ab (real part), (Mpc/h)³.
    pub p_ab: Vec<f64>,
    /// r = P_ab / sqrt(P_aa P_bb), dimensionless.
    pub r: Vec<f64>,
}

/// CIC window of full-axis frequency ν on an m-cell axis: sinc²(πν/m) (dimensionless; the
/// window of a mode is the product over its three axes).
pub fn cic_window(nu: f64, m: usize) -> f64 {
    let x = std::f64::consts::PI * nu / m as f64;
    if x == 0.0 {
        1.0
    } else {
        (x.sin() / x).powi(2)
    }
}

/// Number of shells (bin 0, the k = 0 mode, included): m/2 + 1.
fn n_shells(geom: &MeshGeom) -> usize {
    geom.m / 2 + 1
}

/// Shell of half-spectrum mode (ix, iy, iz): `(j, |k|/k_f)` with `j = ⌊|k|/k_f + ½⌋`.
#[inline(always)]
fn shell(geom: &MeshGeom, ix: usize, iy: usize, iz: usize) -> (usize, f64) {
    let nu2 = (geom.freq[ix].pow(2) + geom.freq[iy].pow(2) + (iz * iz) as i64) as f64;
    let kn = nu2.sqrt();
    ((kn + 0.5).floor() as usize, kn)
}

/// Squared CIC window of every mode, as a closure over per-axis tables (1 without deconvolution).
fn window2(geom: &MeshGeom, deconv: Deconvolve) -> impl Fn(usize, usize, usize) -> f64 + Sync {
    let m = geom.m;
    let wins: Vec<f64> = (0..m).map(|i| cic_window(geom.freq[i] as f64, m)).collect();
    let winz: Vec<f64> = (0..geom.mc()).map(|i| cic_window(i as f64, m)).collect();
    move |ix, iy, iz| match deconv {
        Deconvolve::None => 1.0,
        Deconvolve::Cic => (wins[ix] * wins[iy] * winz[iz]).powi(2),
    }
}

/// Per shell, the sums `Σ w · term(idx, ix, iy, iz, k)` over the half spectrum with hermitian
/// weights w (k = |k| in h/Mpc, idx the flat half-spectrum index), accumulated per x-plane and then
/// over the planes in order: bit-identical for any thread count.
fn shell_reduce<const K: usize>(geom: &MeshGeom, term: impl Fn(usize, usize, usize, usize, f64) -> [f64; K] + Sync) -> Vec<[f64; K]> {
    let (m, mc, nbins, kf) = (geom.m, geom.mc(), n_shells(geom), geom.kf());
    let planes: Vec<Vec<[f64; K]>> = (0..m)
        .into_par_iter()
        .map(|ix| {
            let mut acc = vec![[0.0f64; K]; nbins];
            for iy in 0..m {
                for iz in 0..mc {
                    let (j, kn) = shell(geom, ix, iy, iz);
                    if j == 0 || j >= nbins {
                        continue;
                    }
                    let w = geom.hermitian_weight(iz);
                    let v = term((ix * m + iy) * mc + iz, ix, iy, iz, kn * kf);
                    for (e, x) in acc[j].iter_mut().zip(v) {
                        *e += w * x;
                    }
                }
            }
            acc
        })
        .collect();
    let mut tot = vec![[0.0f64; K]; nbins];
    for p in &planes {
        for (t, v) in tot.iter_mut().zip(p) {
            for c in 0..K {
                t[c] += v[c];
            }
        }
    }
    tot
}

/// Per shell (Σ w|k|, Σ w), summed as [`binned`] does, so the mean |k| is bit-identical.
fn shell_sums(geom: &MeshGeom) -> Vec<[f64; 2]> {
    shell_reduce(geom, |_, _, _, _, k| [k, 1.0])
}

/// Bin sums over the spectrum of `fa` (and `fb`), in f64: returns per bin (Σ|k|, Σ aa, Σ bb, Σ ab, count).
fn binned<T: Real>(geom: &MeshGeom, fa: &[C<T>], fb: Option<&[C<T>]>, deconv: Deconvolve) -> Vec<[f64; 5]> {
    let win2_of = window2(geom, deconv);
    shell_reduce(geom, |idx, ix, iy, iz, k| {
        let win2 = win2_of(ix, iy, iz);
        let a = fa[idx];
        let (ar, ai) = (a.re.f64(), a.im.f64());
        let aa = (ar * ar + ai * ai) / win2;
        let (bb, ab) = match fb {
            Some(fb) => {
                let b = fb[idx];
                let (br, bi) = (b.re.f64(), b.im.f64());
                ((br * br + bi * bi) / win2, (ar * br + ai * bi) / win2)
            }
            None => (aa, aa),
        };
        [k, aa, bb, ab, 1.0]
    })
}

/// Forward transform of a copy of `field`.
fn transform<T: Real>(field: &[T], fft: &Fft3<T>) -> Vec<C<T>> {
    let mut tmp = field.to_vec();
    let mut out = vec![C::default(); fft.complex_len()];
    fft.forward(&mut tmp, &mut out);
    out
}

/// Binned auto power spectrum of a real m³ field (e.g. δ from [`Cic::density_contrast`]) in a
/// box of `geom.box_size` Mpc/h.
pub fn power_spectrum<T: Real>(field: &[T], geom: &MeshGeom, fft: &Fft3<T>, deconv: Deconvolve) -> PowerSpectrum {
    assert_eq!(field.len(), geom.n_cells(), "power_spectrum: field length");
    let fk = transform(field, fft);
    let sums = binned(geom, &fk, None, deconv);
    let norm = geom.box_size.powi(3) / (geom.n_cells() as f64).powi(2);
    let mut ps = PowerSpectrum {
        k: vec![],
        p: vec![],
        n_modes: vec![],
    };
    for s in sums.iter().skip(1) {
        if s[4] > 0.0 {
            ps.k.push(s[0] / s[4]);
            ps.p.push(s[1] / s[4] * norm);
            ps.n_modes.push(s[4] as u64);
        }
    }
    ps
}

/// The bins of [`power_spectrum`] on `geom`, without a field: the mean |k| of each bin (h/Mpc)
/// and its number of modes (full spectrum), bit-identical to the `k` and `n_modes` that
/// [`power_spectrum`] reports for any field on this mesh.
pub fn spectrum_bins(geom: &MeshGeom) -> (Vec<f64>, Vec<u64>) {
    let sums = shell_sums(geom);
    sums.iter()
        .skip(1)
        .filter(|s| s[1] > 0.0)
        .map(|s| (s[0] / s[1], s[1] as u64))
        .unzip()
}

/// VJP of [`power_spectrum`] with respect to the field: **adds** `(∂P/∂field)ᵀ p̄` to
/// `field_cot` (m³, C order; units of p̄·(Mpc/h)³ per unit of the field) for the cotangent
/// `p_cot` of the binned power (one value per bin of [`power_spectrum`]'s output; 1/(Mpc/h)³ for a
/// dimensionless loss). Same bins, estimator, hermitian weights and deconvolution as the forward;
/// the exact transpose of the discrete estimator (docs/adjoint.md eq. S2). `field` is the point of
/// linearisation (P is quadratic in it). One forward and one inverse FFT.
///
/// # Panics
/// If `field` or `field_cot` does not have m³ values, or `p_cot` not one value per bin.
#[track_caller]
pub fn power_spectrum_vjp<T: Real>(field: &[T], geom: &MeshGeom, fft: &Fft3<T>, deconv: Deconvolve, p_cot: &[f64], field_cot: &mut [T]) {
    assert_eq!(field.len(), geom.n_cells(), "power_spectrum_vjp: field length");
    assert_eq!(field_cot.len(), geom.n_cells(), "power_spectrum_vjp: field_cot length");
    let (m, mc, nbins) = (geom.m, geom.mc(), n_shells(geom));
    // Coefficient (2V/N²) p̄_b / N_b of each shell; 0 for the k = 0 shell and empty shells, which
    // power_spectrum leaves out of its output.
    let norm = geom.box_size.powi(3) / (geom.n_cells() as f64).powi(2);
    let sums = shell_sums(geom);
    let used: Vec<usize> = (1..nbins).filter(|&j| sums[j][1] > 0.0).collect();
    assert_eq!(
        p_cot.len(),
        used.len(),
        "power_spectrum_vjp: p_cot must have one value per bin of power_spectrum"
    );
    let mut coef = vec![0.0f64; nbins];
    for (&j, c) in used.iter().zip(p_cot) {
        coef[j] = 2.0 * norm * c / sums[j][1];
    }
    // G_k = coef_b δ_k / W_k² (S2), then δ̄ = Re Σ_H w_k G_k e^{+ik·x} = Fft3::inverse(G).
    let mut g = transform(field, fft);
    let win2_of = window2(geom, deconv);
    g.par_chunks_mut(m * mc).enumerate().for_each(|(ix, plane)| {
        for iy in 0..m {
            for iz in 0..mc {
                let (j, _) = shell(geom, ix, iy, iz);
                let v = &mut plane[iy * mc + iz];
                if j == 0 || j >= nbins {
                    *v = C::default();
                } else {
                    let c = coef[j] / win2_of(ix, iy, iz);
                    *v = C::new(T::of(v.re.f64() * c), T::of(v.im.f64() * c));
                }
            }
        }
    });
    let mut back = vec![T::zero(); geom.n_cells()];
    fft.inverse(&mut g, &mut back);
    field_cot.par_iter_mut().zip(back.par_iter()).for_each(|(f, b)| *f += *b);
}

/// Auto and cross spectra of two real m³ fields and their correlation coefficient r(k).
pub fn cross_spectrum<T: Real>(a: &[T], b: &[T], geom: &MeshGeom, fft: &Fft3<T>, deconv: Deconvolve) -> CrossSpectrum {
    assert_eq!(a.len(), geom.n_cells(), "cross_spectrum: field a length");
    assert_eq!(b.len(), geom.n_cells(), "cross_spectrum: field b length");
    let (fa, fb) = (transform(a, fft), transform(b, fft));
    let sums = binned(geom, &fa, Some(&fb), deconv);
    let norm = geom.box_size.powi(3) / (geom.n_cells() as f64).powi(2);
    let mut cs = CrossSpectrum {
        k: vec![],
        n_modes: vec![],
        p_aa: vec![],
        p_bb: vec![],
        p_ab: vec![],
        r: vec![],
    };
    for s in sums.iter().skip(1) {
        if s[4] > 0.0 {
            cs.k.push(s[0] / s[4]);
            cs.n_modes.push(s[4] as u64);
            cs.p_aa.push(s[1] / s[4] * norm);
            cs.p_bb.push(s[2] / s[4] * norm);
            cs.p_ab.push(s[3] / s[4] * norm);
            cs.r.push(s[3] / (s[1] * s[2]).sqrt());
        }
    }
    cs
}

/// Mass-weighted velocity field on `cic`'s mesh: `v_d(c) = Σ_p W_c(x_p) v_p,d / Σ_p W_c(x_p)`
/// (momentum density over mass density) for per-particle velocities `vel` (any unit, e.g. km/s).
/// Cells that receive no mass get 0. Returns the three components (each m³, C order).
pub fn velocity_field<T: Real>(cic: &Cic, disp: &[[T; 3]], vel: &[[T; 3]], sc: &mut PaintScratch) -> [Vec<T>; 3] {
    let m = cic.m();
    let mut mass = vec![T::zero(); m * m * m];
    cic.paint(disp, None, &mut mass, sc);
    let comp = |d: usize, sc: &mut PaintScratch| {
        let mut f = vec![T::zero(); m * m * m];
        cic.paint_with(disp, &mut f, sc, |p| vel[p][d]);
        f.par_iter_mut()
            .zip(mass.par_iter())
            .for_each(|(v, w)| *v = if *w > T::zero() { *v / *w } else { T::zero() });
        f
    };
    [comp(0, sc), comp(1, sc), comp(2, sc)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::white_noise;

    #[test]
    fn poisson_particles_have_shot_noise_v_over_n() {
        // N uniform random particles: P(k) → V/N at low k (CIC window ≈ 1 there, Jing's factor
        // ≈ 1); subtracting shot_noise leaves zero within the scatter.
        let (n, m, l) = (32usize, 32usize, 64.0);
        let np = n * n * n;
        let mut state = 0x2545F4914F6CDD1Du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let cic = Cic::new(n, m, l);
        // Positions uniform in the box, written as displacements from the lattice sites.
        let disp: Vec<[f64; 3]> = (0..np).map(|_| [uniform() * l, uniform() * l, uniform() * l]).collect();
        let delta = cic.density(&disp);
        let geom = MeshGeom::new(m, l);
        let mut ps = power_spectrum(&delta, &geom, &Fft3::<f64>::new(m), Deconvolve::None);
        let shot = shot_noise(l, np);
        assert_eq!(shot, 64.0f64.powi(3) / 32768.0);
        let low: Vec<usize> = (0..ps.k.len()).filter(|&i| ps.k[i] < geom.kf() * m as f64 / 8.0).collect();
        let modes: f64 = low.iter().map(|&i| ps.n_modes[i] as f64).sum();
        let mean = |ps: &PowerSpectrum| low.iter().map(|&i| ps.p[i] * ps.n_modes[i] as f64).sum::<f64>() / modes;
        let sigma = shot * (2.0 / modes).sqrt();
        let before = mean(&ps);
        assert!((before - shot).abs() < 5.0 * sigma + 0.03 * shot, "P = {before}, V/N = {shot}");
        ps.subtract_shot_noise(shot);
        let after = mean(&ps);
        assert!((after - (before - shot)).abs() < 1e-12 * shot);
        assert!(after.abs() < 5.0 * sigma + 0.03 * shot, "{after}");
    }

    #[test]
    fn white_noise_has_flat_spectrum_and_correct_mode_counts() {
        // Unit white noise on n³ cells has P = V_cell in every bin.
        let (m, l) = (32usize, 64.0);
        let geom = MeshGeom::new(m, l);
        let fft = Fft3::<f64>::new(m);
        let w = white_noise::<f64>(m, 1);
        let ps = power_spectrum(&w, &geom, &fft, Deconvolve::None);
        let vcell = (l / m as f64).powi(3);
        let total: u64 = ps.n_modes.iter().sum();
        // Mode counts against a direct count over the full spectrum.
        let mut direct = vec![0u64; m / 2 + 1];
        for i in 0..m {
            for j in 0..m {
                for k in 0..m {
                    let f = |x: usize| if x < m / 2 { x as i64 } else { x as i64 - m as i64 };
                    let kn = ((f(i).pow(2) + f(j).pow(2) + f(k).pow(2)) as f64).sqrt();
                    let b = (kn + 0.5).floor() as usize;
                    if b >= 1 && b <= m / 2 {
                        direct[b] += 1;
                    }
                }
            }
        }
        assert_eq!(ps.n_modes, direct[1..].to_vec());
        assert_eq!(total, direct.iter().sum::<u64>());
        // Bins with many modes: P within 5 sigma of V_cell (sigma = P sqrt(2/N_modes) for a real field).
        for (p, n) in ps.p.iter().zip(&ps.n_modes) {
            let sig = vcell * (2.0 / *n as f64).sqrt();
            assert!((p - vcell).abs() < 5.0 * sig, "P = {p}, want {vcell} ± {sig} ({n} modes)");
        }
        // Mean |k| of bin 1: 6 modes at k_f and 12 at √2 k_f.
        let want_k1 = geom.kf() * (6.0 + 12.0 * 2f64.sqrt()) / 18.0;
        assert!((ps.k[0] - want_k1).abs() < 1e-12 * want_k1, "{} vs {want_k1}", ps.k[0]);
    }

    #[test]
    fn plane_wave_power_and_cross_correlation() {
        // δ = A cos(k₁·x) with k₁ = 3 k_f x̂: all power in bin 3, P = A² V / 4 / (modes in bin / 2)...
        // computed exactly: |δ(k)|² = (A N/2)² on the two modes ±k₁.
        let (m, l) = (16usize, 20.0);
        let geom = MeshGeom::new(m, l);
        let fft = Fft3::<f64>::new(m);
        let a = 0.3;
        let f: Vec<f64> = (0..m * m * m)
            .map(|c| a * (2.0 * std::f64::consts::PI * 3.0 * (c / (m * m)) as f64 / m as f64).cos())
            .collect();
        let ps = power_spectrum(&f, &geom, &fft, Deconvolve::None);
        let n = (m * m * m) as f64;
        let want = 2.0 * (a * n / 2.0).powi(2) * l.powi(3) / (n * n) / ps.n_modes[2] as f64;
        assert!((ps.p[2] - want).abs() < 1e-10 * want);
        assert!(ps.p.iter().enumerate().all(|(i, p)| i == 2 || p.abs() < 1e-20));
        let g: Vec<f64> = f.iter().map(|v| -2.0 * v).collect();
        let cs = cross_spectrum(&f, &g, &geom, &fft, Deconvolve::None);
        assert!((cs.r[2] + 1.0).abs() < 1e-12);
        assert!((cs.p_bb[2] - 4.0 * ps.p[2]).abs() < 1e-10 * ps.p[2]);
    }

    #[test]
    fn deconvolution_divides_by_window_squared() {
        let (m, l) = (8usize, 10.0);
        let geom = MeshGeom::new(m, l);
        let fft = Fft3::<f64>::new(m);
        // A wave along y with |ν| = 1: only the modes (0, ±1, 0), window sinc²(π/8) each.
        let f: Vec<f64> = (0..m * m * m)
            .map(|c| (2.0 * std::f64::consts::PI * ((c / m) % m) as f64 / m as f64).sin())
            .collect();
        let raw = power_spectrum(&f, &geom, &fft, Deconvolve::None);
        let dec = power_spectrum(&f, &geom, &fft, Deconvolve::Cic);
        let win = cic_window(1.0, m).powi(2);
        assert!((dec.p[0] * win - raw.p[0]).abs() < 1e-12 * raw.p[0]);
        let w = white_noise::<f64>(m, 3);
        let raw = power_spectrum(&w, &geom, &fft, Deconvolve::None);
        let dec = power_spectrum(&w, &geom, &fft, Deconvolve::Cic);
        assert!(dec.p.iter().zip(&raw.p).all(|(d, r)| d > r));
    }

    /// Σ_b p̄_b P_b(field): the scalar whose gradient is power_spectrum_vjp(p̄).
    fn weighted_power(field: &[f64], geom: &MeshGeom, fft: &Fft3<f64>, deconv: Deconvolve, p_cot: &[f64]) -> f64 {
        let ps = power_spectrum(field, geom, fft, deconv);
        ps.p.iter().zip(p_cot).map(|(p, c)| p * c).sum()
    }

    #[test]
    fn spectrum_bins_match_power_spectrum_exactly() {
        for m in [8usize, 9, 16] {
            let geom = MeshGeom::new(m, 37.0);
            let fft = Fft3::<f64>::new(m);
            let ps = power_spectrum(&crate::testing::rand_field::<f64>(m * m * m, 4), &geom, &fft, Deconvolve::None);
            let (k, n) = spectrum_bins(&geom);
            assert_eq!(k, ps.k, "m = {m}");
            assert_eq!(n, ps.n_modes, "m = {m}");
        }
    }

    #[test]
    fn power_spectrum_vjp_matches_finite_differences() {
        // P is quadratic in the field, so central differences are exact up to rounding: a large
        // step (1e-3 of a unit-variance field) keeps the rounding small. Even and odd meshes
        // exercise the kz = 0 / Nyquist planes' hermitian weights.
        let mut worst = 0.0f64;
        for (m, l) in [(8usize, 10.0), (9, 50.0), (16, 64.0)] {
            let geom = MeshGeom::new(m, l);
            let fft = Fft3::<f64>::new(m);
            let field = crate::testing::rand_field::<f64>(m * m * m, m as u64);
            let nb = power_spectrum(&field, &geom, &fft, Deconvolve::None).p.len();
            for deconv in [Deconvolve::None, Deconvolve::Cic] {
                for seed in 0..3u64 {
                    // Cotangent per bin in 1/(Mpc/h)³ so that Σ p̄ P is O(1).
                    let p_cot: Vec<f64> = crate::testing::rand_field::<f64>(nb, 100 + seed)
                        .iter()
                        .map(|c| c / geom.cell().powi(3))
                        .collect();
                    let mut grad = vec![0.0; m * m * m];
                    power_spectrum_vjp(&field, &geom, &fft, deconv, &p_cot, &mut grad);
                    let f = |x: &[f64]| weighted_power(x, &geom, &fft, deconv, &p_cot);
                    worst = worst.max(crate::testing::fd_check_flat(&f, &field, &grad, 1e-3, 1e-6, 200 + seed));
                }
            }
        }
        eprintln!("power_spectrum_vjp FD worst rel = {worst:.3e}");
    }

    #[test]
    fn power_spectrum_vjp_is_homogeneous_of_degree_two_and_adds() {
        // Euler: P(λδ) = λ²P(δ) ⇒ ⟨∇(Σ p̄ P), δ⟩ = 2 Σ p̄ P (docs/adjoint.md eq. S3), for every bin at once.
        let (m, l) = (16usize, 40.0);
        let geom = MeshGeom::new(m, l);
        let fft = Fft3::<f64>::new(m);
        let field = crate::testing::rand_field::<f64>(m * m * m, 11);
        for deconv in [Deconvolve::None, Deconvolve::Cic] {
            let ps = power_spectrum(&field, &geom, &fft, deconv);
            let p_cot = crate::testing::rand_field::<f64>(ps.p.len(), 12);
            let mut grad = vec![0.0; m * m * m];
            power_spectrum_vjp(&field, &geom, &fft, deconv, &p_cot, &mut grad);
            let lhs = crate::testing::dot(&grad, &field);
            let rhs = 2.0 * weighted_power(&field, &geom, &fft, deconv, &p_cot);
            crate::testing::assert_close(lhs, rhs, 1e-12, 0.0, "Euler identity");
            // A second call adds the same cotangent again.
            let once = grad.clone();
            power_spectrum_vjp(&field, &geom, &fft, deconv, &p_cot, &mut grad);
            assert!(grad
                .iter()
                .zip(&once)
                .all(|(g, o)| (g - 2.0 * o).abs() <= 1e-12 * o.abs().max(1e-300)));
        }
    }

    #[test]
    fn power_spectrum_vjp_in_f32_matches_f64() {
        let (m, l) = (16usize, 64.0);
        let geom = MeshGeom::new(m, l);
        let f32_field = crate::testing::rand_field::<f32>(m * m * m, 21);
        let f64_field: Vec<f64> = f32_field.iter().map(|v| *v as f64).collect();
        let nb = spectrum_bins(&geom).0.len();
        let p_cot = crate::testing::rand_field::<f64>(nb, 22);
        for deconv in [Deconvolve::None, Deconvolve::Cic] {
            let mut g32 = vec![0.0f32; m * m * m];
            power_spectrum_vjp(&f32_field, &geom, &Fft3::<f32>::new(m), deconv, &p_cot, &mut g32);
            let mut g64 = vec![0.0f64; m * m * m];
            power_spectrum_vjp(&f64_field, &geom, &Fft3::<f64>::new(m), deconv, &p_cot, &mut g64);
            let diff: f64 = g32.iter().zip(&g64).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
            let norm: f64 = g64.iter().map(|b| b * b).sum::<f64>().sqrt();
            assert!(g32.iter().all(|v| v.is_finite()));
            assert!(diff < 1e-5 * norm, "f32 vs f64 VJP: |diff| = {diff:.3e}, |g| = {norm:.3e}");
        }
    }

    #[test]
    #[should_panic(expected = "one value per bin")]
    fn power_spectrum_vjp_refuses_wrong_cotangent_length() {
        let geom = MeshGeom::new(8, 10.0);
        let field = vec![0.0f64; 512];
        power_spectrum_vjp(
            &field,
            &geom,
            &Fft3::<f64>::new(8),
            Deconvolve::None,
            &[1.0; 3],
            &mut vec![0.0; 512],
        );
    }

    #[test]
    fn velocity_field_of_uniform_flow() {
        let (n, m) = (8usize, 16usize);
        let cic = Cic::new(n, m, 32.0);
        let disp = crate::testing::rand_disp::<f64>(n, 1.0, 8);
        let vel = vec![[100.0, -50.0, 3.0]; n * n * n];
        let v = velocity_field(&cic, &disp, &vel, &mut PaintScratch::default());
        for (d, want) in [100.0, -50.0, 3.0].iter().enumerate() {
            assert!(v[d].iter().all(|x| *x == 0.0 || (x - want).abs() < 1e-10));
        }
    }
}
