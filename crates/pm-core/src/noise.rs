//! White noise and the linear density modes (docs/physics.md §2).
//!
//! **White noise.** `w(x)` on the particle grid (n per side, C order `[ix][iy][iz]`), unit-variance
//! Gaussian. Value `i` (flat index) is a pure function of `(seed, i)`: a counter-based generator
//! (SplitMix64 output function applied to `key(seed) + c·γ`, γ the 64-bit golden ratio, two
//! counters `c = 2i, 2i+1` per value, Box–Muller cosine branch). It is therefore identical for any
//! thread count and any order of evaluation, and stable across versions of other crates (we
//! deliberately do not use `rand`, whose streams may change between releases).
//!
//! **Linear modes** (forward): with `W(k) = Σ_x w(x) e^{−ik·x}` (unnormalised DFT),
//! `δ_L(k) = W(k) · sqrt(P_L(k)/V_cell)`, `V_cell = (L/n)³`, `δ_L(k=0) = 0`, at a = 1
//! (docs/physics.md eq. 2.1). Options: fixed amplitude `W → W·sqrt(n³)/|W|` (Angulo & Pontzen
//! 2016) and pairing `W → −W`.
//!
//! **Adjoint.** The real-to-real map `w ↦ δ_L(x) = IDFT[A(k)·DFT(w)]/n³` with `A = sqrt(P/V_cell)`
//! real and even in k is symmetric, so its VJP is the same map applied to the cotangent
//! (docs/adjoint.md). The fixed-amplitude option is nonlinear and is forward-only.

use crate::fft::Fft3;
use crate::float::{Real, C};
use crate::mesh::MeshGeom;
use rayon::prelude::*;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `counter`-th 64-bit output of the stream keyed by `seed`.
#[inline(always)]
pub fn random_u64(seed: u64, counter: u64) -> u64 {
    let key = mix(seed.wrapping_add(GOLDEN));
    mix(key.wrapping_add(counter.wrapping_mul(GOLDEN)))
}

/// A uniform number in (0, 1] (53 bits), the `counter`-th of the stream keyed by `seed`.
#[inline(always)]
pub fn uniform(seed: u64, counter: u64) -> f64 {
    ((random_u64(seed, counter) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The `index`-th unit Gaussian of the stream keyed by `seed` (Box–Muller, cosine branch).
#[inline(always)]
pub fn gaussian(seed: u64, index: u64) -> f64 {
    let u1 = uniform(seed, 2 * index);
    let u2 = uniform(seed, 2 * index + 1);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Unit-variance white noise on an n³ grid (C order), a pure function of `(seed, index)`.
pub fn white_noise<T: Real>(n: usize, seed: u64) -> Vec<T> {
    let mut w = vec![T::zero(); n * n * n];
    w.par_chunks_mut(4096).enumerate().for_each(|(c, out)| {
        for (k, v) in out.iter_mut().enumerate() {
            *v = T::of(gaussian(seed, (c * 4096 + k) as u64));
        }
    });
    w
}

/// How the white-noise amplitudes enter the linear modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Amplitude {
    /// Gaussian amplitudes, as drawn (default).
    #[default]
    Random,
    /// `|W(k)|` fixed to its rms `sqrt(n³)` (Angulo & Pontzen 2016), phases kept.
    Fixed,
}

/// Linear density modes at a = 1 on the particle grid: `δ_L(k) = ±W(k)·sqrt(P_L(k)/V_cell)`
/// (half spectrum, layout of [`Fft3`]). `w` is consumed as FFT scratch. `paired` flips the sign.
/// `p_lin(k)` is P_L at a = 1 in (Mpc/h)³ for k in h/Mpc.
pub fn linear_modes<T: Real>(
    w: &mut [T],
    geom: &MeshGeom,
    fft: &Fft3<T>,
    p_lin: &(dyn Fn(f64) -> f64 + Sync),
    amplitude: Amplitude,
    paired: bool,
) -> Vec<C<T>> {
    let n = geom.m;
    assert_eq!(w.len(), n * n * n, "linear_modes: white noise length");
    let mut wk = vec![C::new(T::zero(), T::zero()); geom.n_complex()];
    fft.forward(w, &mut wk);
    let v_cell = geom.cell().powi(3);
    let rms = ((n * n * n) as f64).sqrt();
    let sign = if paired { -1.0 } else { 1.0 };
    let nc = geom.mc();
    wk.par_chunks_mut(n * nc).enumerate().for_each(|(ix, plane)| {
        let kx = geom.k_of(ix);
        for iy in 0..n {
            let ky = geom.k_of(iy);
            for iz in 0..nc {
                let kz = geom.kz_of(iz);
                let k = (kx * kx + ky * ky + kz * kz).sqrt();
                let v = &mut plane[iy * nc + iz];
                if k == 0.0 {
                    *v = C::new(T::zero(), T::zero());
                    continue;
                }
                let mut a = sign * (p_lin(k) / v_cell).sqrt();
                if amplitude == Amplitude::Fixed {
                    let mag = (v.re.f64().powi(2) + v.im.f64().powi(2)).sqrt();
                    a *= if mag > 0.0 { rms / mag } else { 0.0 };
                }
                *v *= T::of(a);
            }
        }
    });
    wk
}

/// The real-space linear density field at a = 1 on the particle grid, `δ_L(x)` (C order), from
/// white noise `w` (consumed as scratch): `IDFT[δ_L(k)]/n³`.
pub fn linear_field<T: Real>(w: &mut [T], geom: &MeshGeom, fft: &Fft3<T>, p_lin: &(dyn Fn(f64) -> f64 + Sync)) -> Vec<T> {
    let mut dk = linear_modes(w, geom, fft, p_lin, Amplitude::Random, false);
    let mut out = vec![T::zero(); geom.n_cells()];
    fft.inverse(&mut dk, &mut out);
    let norm = T::of(1.0 / geom.n_cells() as f64);
    out.par_iter_mut().for_each(|v| *v *= norm);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::dot_test;

    #[test]
    fn white_noise_is_unit_gaussian_and_thread_independent() {
        let n = 32;
        let w1 = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| white_noise::<f64>(n, 5));
        let w2 = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| white_noise::<f64>(n, 5));
        assert!(w1.iter().zip(&w2).all(|(a, b)| a.to_bits() == b.to_bits()));
        let nn = w1.len() as f64;
        let mean = w1.iter().sum::<f64>() / nn;
        let var = w1.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / nn;
        let kurt = w1.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / nn / (var * var);
        // 32768 samples: sd(mean) = 0.0055, sd(var) = 0.0078, sd(kurt) ≈ 0.027.
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.04, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.15, "kurtosis {kurt}");
        // Different seeds differ; neighbouring values are uncorrelated.
        let w3 = white_noise::<f64>(n, 6);
        assert!(w1.iter().zip(&w3).filter(|(a, b)| a == b).count() < 2);
        let lag1 = w1.windows(2).map(|p| p[0] * p[1]).sum::<f64>() / nn;
        assert!(lag1.abs() < 0.03, "lag-1 correlation {lag1}");
    }

    #[test]
    fn linear_field_is_self_adjoint() {
        let n = 8;
        let geom = MeshGeom::new(n, 50.0);
        let fft = Fft3::<f64>::new(n);
        let p = |k: f64| 1000.0 * k / (1.0 + (k / 0.02).powi(2)).powf(1.4);
        let op = |v: &[f64]| linear_field(&mut v.to_vec(), &geom, &fft, &p);
        dot_test(n * n * n, n * n * n, op, op, 1e-12, 3);
    }

    #[test]
    fn fixed_amplitude_and_pairing() {
        let n = 8;
        let geom = MeshGeom::new(n, 50.0);
        let fft = Fft3::<f64>::new(n);
        let p = |_k: f64| 2.0;
        let mut w = white_noise::<f64>(n, 9);
        let fixed = linear_modes(&mut w.clone(), &geom, &fft, &p, Amplitude::Fixed, false);
        let paired = linear_modes(&mut w.clone(), &geom, &fft, &p, Amplitude::Fixed, true);
        let plain = linear_modes(&mut w, &geom, &fft, &p, Amplitude::Random, false);
        let v_cell = geom.cell().powi(3);
        let want = ((n * n * n) as f64 * 2.0 / v_cell).sqrt();
        for (i, (f, q)) in fixed.iter().zip(&paired).enumerate() {
            if i == 0 {
                assert_eq!(f.norm(), 0.0);
                continue;
            }
            assert!((f.norm() - want).abs() < 1e-9 * want, "mode {i}: |δ| = {} want {want}", f.norm());
            assert!((f + q).norm() < 1e-9 * want);
            // Phases are those of the random modes.
            let r = plain[i];
            let dphi = (f.arg() - r.arg()).rem_euclid(std::f64::consts::TAU);
            assert!(
                !(1e-9..=std::f64::consts::TAU - 1e-9).contains(&dphi),
                "mode {i}: phase changed by {dphi}"
            );
        }
    }
}
