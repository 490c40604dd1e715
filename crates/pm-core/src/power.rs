//! Power spectra and field observables (docs/physics.md §6).
//!
//! **Estimator.** For a real field δ on an m³ mesh in a box of side L, with
//! `δ(k) = Σ_x δ(x) e^{−ik·x}`: `P̂(k) = |δ(k)|² V / N_cells²` (V = L³), optionally divided by the
//! CIC window squared `W(k)² = Π_d sinc⁴(π ν_d/m)` (deconvolution), no shot-noise subtraction.
//! Cross spectra use `Re[δ_a(k) δ_b*(k)]`; `r(k) = P_ab/sqrt(P_aa P_bb)`.
//!
//! **Binning.** Linear shells of width k_f = 2π/L centred on multiples of k_f: bin j ≥ 1 holds the
//! modes with `j − ½ ≤ |k|/k_f < j + ½`, for j = 1 … ⌊m/2⌋ (up to the Nyquist wavenumber; the
//! k = 0 mode and the corner modes beyond are left out). Each bin reports the mean |k| of its
//! modes, the mean power and the number of modes counted over the full (not half) spectrum, so
//! k and −k both count. Sums are in f64 and reduced in a fixed order: results are bit-identical
//! for any thread count.
//!
//! These are observables, not time-stepping operators; their VJPs (for losses) come with the
//! losses of pm-adjoint.

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

/// CIC window of full-axis frequency ν on an m-cell axis: sinc²(πν/m).
fn cic_window(nu: f64, m: usize) -> f64 {
    let x = std::f64::consts::PI * nu / m as f64;
    if x == 0.0 {
        1.0
    } else {
        (x.sin() / x).powi(2)
    }
}

/// Bin sums over the spectrum of `fa` (and `fb`), in f64: returns per bin (Σ|k|, Σ aa, Σ bb, Σ ab, count).
fn binned<T: Real>(geom: &MeshGeom, fa: &[C<T>], fb: Option<&[C<T>]>, deconv: Deconvolve) -> Vec<[f64; 5]> {
    let m = geom.m;
    let mc = geom.mc();
    let nbins = m / 2 + 1;
    let kf = geom.kf();
    let wins: Vec<f64> = (0..m).map(|i| cic_window(geom.freq[i] as f64, m)).collect();
    let winz: Vec<f64> = (0..mc).map(|i| cic_window(i as f64, m)).collect();
    let planes: Vec<Vec<[f64; 5]>> = (0..m)
        .into_par_iter()
        .map(|ix| {
            let mut acc = vec![[0.0f64; 5]; nbins];
            for iy in 0..m {
                for iz in 0..mc {
                    let nu2 = (geom.freq[ix].pow(2) + geom.freq[iy].pow(2) + (iz * iz) as i64) as f64;
                    let kn = nu2.sqrt();
                    let j = (kn + 0.5).floor() as usize;
                    if j == 0 || j >= nbins {
                        continue;
                    }
                    let w = geom.hermitian_weight(iz);
                    let idx = (ix * m + iy) * mc + iz;
                    let win2 = match deconv {
                        Deconvolve::None => 1.0,
                        Deconvolve::Cic => (wins[ix] * wins[iy] * winz[iz]).powi(2),
                    };
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
                    let e = &mut acc[j];
                    e[0] += w * kn * kf;
                    e[1] += w * aa;
                    e[2] += w * bb;
                    e[3] += w * ab;
                    e[4] += w;
                }
            }
            acc
        })
        .collect();
    let mut tot = vec![[0.0f64; 5]; nbins];
    for p in &planes {
        for (t, v) in tot.iter_mut().zip(p) {
            for c in 0..5 {
                t[c] += v[c];
            }
        }
    }
    tot
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
