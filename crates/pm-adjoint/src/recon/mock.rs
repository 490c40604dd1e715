//! Mock observations of a simulation and the linear-theory Wiener reconstruction of a mock, the
//! baseline a reconstruction is compared with (docs/reconstruction.md eqs. X1, W1).

use super::posterior::{check_data_mesh, check_scale};
use super::{NoiseModel, Posterior};
use crate::Result;
use pm_core::cic::Cic;
use pm_core::fft::Fft3;
use pm_core::float::{Real, C};
use pm_core::mesh::MeshGeom;
use pm_core::noise::gaussian;
use pm_core::power::cic_window;
use pm_core::sim::Simulation;
use rayon::prelude::*;

/// A mock observation: `S δ(w_true) + n` on a data mesh of `data_mesh`³ cells (the CIC density
/// contrast of the final particles, as [`Posterior::on_mesh`] models it), with the noise drawn
/// from `noise_seed` (counter-based, independent of the thread count). Returns
/// `(observed, S δ(w_true))`, both `data_mesh`³.
///
/// # Errors
/// Those of [`Posterior::new`]'s noise checks, a data mesh outside 2..=4096, and those of the
/// forward run.
pub fn mock_observation<T: Real>(
    sim: &mut Simulation<T>,
    w_true: &[T],
    noise: &NoiseModel,
    data_smoothing: f64,
    data_mesh: usize,
    noise_seed: u64,
) -> Result<(Vec<T>, Vec<T>)> {
    noise.validate()?;
    check_scale("data smoothing", data_smoothing)?;
    check_data_mesh(data_mesh)?;
    let mut state = sim.initial_conditions(w_true.to_vec())?;
    sim.run(&mut state, |_| Ok(()))?;
    let b = &sim.config().box_;
    let geom = MeshGeom::new(data_mesh, b.size);
    let delta = Cic::new(b.particles, data_mesh, b.size).density(&state.disp);
    let fft = Fft3::<T>::new(geom.m);
    let n = geom.n_cells();
    // Unit white noise per cell, coloured by σ(k) = sqrt(P_N(k)/V_cell) in Fourier space, and the
    // data smoothing S(k) applied to the signal, in one pass.
    let mut eps: Vec<T> = (0..n as u64).into_par_iter().map(|i| T::of(gaussian(noise_seed, i))).collect();
    let (mut ek, mut dk) = (
        vec![C::<T>::default(); fft.complex_len()],
        vec![C::<T>::default(); fft.complex_len()],
    );
    fft.forward(&mut eps, &mut ek);
    fft.forward(&mut delta.clone(), &mut dk);
    let (m, mc, vcell) = (geom.m, geom.mc(), geom.cell().powi(3));
    ek.par_iter_mut().zip(dk.par_iter_mut()).enumerate().for_each(|(i, (e, d))| {
        let (ix, iy, iz) = (i / (m * mc), (i / mc) % m, i % mc);
        let k2 = geom.k_of(ix).powi(2) + geom.k_of(iy).powi(2) + geom.kz_of(iz).powi(2);
        *e *= T::of(noise.variance(k2.sqrt(), vcell).sqrt());
        *d *= T::of((-0.5 * k2 * data_smoothing * data_smoothing).exp());
    });
    let (mut noise_x, mut signal) = (vec![T::zero(); n], vec![T::zero(); n]);
    fft.inverse(&mut ek, &mut noise_x);
    fft.inverse(&mut dk, &mut signal);
    let inv_n = T::of(1.0 / n as f64);
    signal.iter_mut().for_each(|v| *v *= inv_n);
    let observed: Vec<T> = signal.iter().zip(&noise_x).map(|(s, e)| *s + *e * inv_n).collect();
    Ok((observed, signal))
}

/// The linear-theory Wiener reconstruction of a mock, with the mock's own noise realisation
/// (docs/reconstruction.md eq. W1): the estimate of the linear density that the maximum of the
/// posterior would be if the data were linear in it. Per mode k of the particle lattice,
///
/// `δ̂_W(k) = P₁ g S W / (P₁ g² S² W² + P_N) · (g S W δ_L(k) + n(k))`,
///
/// with δ_L = `linear_true` (the true linear density contrast on the lattice at a = 1, as
/// `linear_density.npy`; n³ C order), n = `noise` (the realisation's noise on the data mesh,
/// m_d³, restricted to the lattice modes), P₁(k) the linear power at a = 1, g = D(a_stop)/D(1)
/// (so that g² P₁ = P_L(k, a_stop)), S the data smoothing, W the data mesh's CIC window and
/// P_N(k) = σ²(k) V_cell the noise power: the Wiener filter W_F = C_{δd} C_{dd}⁻¹ of the linear
/// data model d = g S W δ_L + n. Lattice modes beyond the data mesh's Nyquist
/// frequency carry no data and get 0. Comparing a reconstruction with δ̂_W mode by mode removes
/// the scatter of one realisation's noise from the comparison with the Wiener expectation.
/// Returns δ̂_W on the lattice (n³, C order).
///
/// # Panics
/// If `linear_true` does not have n³ values or `noise` m_d³ values (a caller's bug).
#[track_caller]
pub fn linear_wiener<T: Real>(sim: &Simulation<T>, posterior: &Posterior<T>, linear_true: &[T], noise: &[T]) -> Vec<T> {
    let lat = sim.lattice();
    let (n, md) = (lat.m, posterior.geom.m);
    assert_eq!(linear_true.len(), n * n * n, "linear_wiener: linear field length");
    assert_eq!(noise.len(), md * md * md, "linear_wiener: noise length");
    let (fft_n, fft_m) = (sim.fft_lattice(), &posterior.fft);
    let mut dk = vec![C::<T>::default(); fft_n.complex_len()];
    fft_n.forward(&mut linear_true.to_vec(), &mut dk);
    let mut nk = vec![C::<T>::default(); fft_m.complex_len()];
    fft_m.forward(&mut noise.to_vec(), &mut nk);
    let a = sim.config().time.a_stop;
    let vcell = posterior.geom.cell().powi(3);
    let rd = posterior.data_smoothing;
    // DFT normalisations: a mode of amplitude δ_k is n³ δ_k on the lattice and m_d³ δ_k on the mesh.
    let to_lattice = (n as f64 / md as f64).powi(3);
    let (nc, mc) = (n / 2 + 1, md / 2 + 1);
    dk.par_iter_mut().enumerate().for_each(|(i, z)| {
        let (ix, iy, iz) = (i / (n * nc), (i / nc) % n, i % nc);
        let nu = [lat.freq[ix], lat.freq[iy], iz as i64];
        let k = (lat.k_of(ix).powi(2) + lat.k_of(iy).powi(2) + lat.kz_of(iz).powi(2)).sqrt();
        if k == 0.0 || nu.iter().any(|&v| 2 * v.unsigned_abs() as usize >= md) {
            *z = C::default();
            return;
        }
        let idx = |v: i64| v.rem_euclid(md as i64) as usize;
        let noise_k = nk[idx(nu[0]) * md * mc + idx(nu[1]) * mc + nu[2] as usize];
        let w: f64 = nu.iter().map(|&v| cic_window(v as f64, md)).product();
        let sw = (-0.5 * k * k * rd * rd).exp() * w;
        let (p1, ps) = (sim.p_linear(k, 1.0), sim.p_linear(k, a));
        let g = (ps / p1).sqrt();
        let pn = posterior.noise.variance(k, vcell) * vcell;
        let f = p1 * g * sw / (ps * sw * sw + pn);
        *z = (*z * T::of(g * sw) + noise_k * T::of(to_lattice)) * T::of(f);
    });
    let mut out = vec![T::zero(); n * n * n];
    fft_n.inverse(&mut dk, &mut out);
    let inv = T::of(1.0 / (n * n * n) as f64);
    out.iter_mut().for_each(|v| *v *= inv);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pm_core::config::Config;

    /// The mock noise has the requested statistics: per-cell variance σ² (white), and a measured
    /// power spectrum equal to the table (coloured), within the sampling scatter of a 32³ mesh.
    #[test]
    fn mock_noise_has_the_requested_power() {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 32, 64.0, 1);
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let w = sim.white_noise();
        let sigma = 2.0;
        let md = sim.config().box_.mesh;
        let (obs, sig) = mock_observation(&mut sim, &w, &NoiseModel::White { sigma }, 0.0, md, 4).unwrap();
        let n = obs.len() as f64;
        let var = obs.iter().zip(&sig).map(|(o, s)| (o - s).powi(2)).sum::<f64>() / n;
        // Relative standard error of a variance from 32768 Gaussian samples: sqrt(2/N) ≈ 0.8 %.
        assert!((var / (sigma * sigma) - 1.0).abs() < 0.04, "variance {var}");
        let table = NoiseModel::Power {
            k: vec![0.05, 3.0],
            p: vec![400.0, 4.0],
        };
        let (obs, sig) = mock_observation(&mut sim, &w, &table, 0.0, md, 5).unwrap();
        let noise: Vec<f64> = obs.iter().zip(&sig).map(|(o, s)| o - s).collect();
        let ps = pm_core::power::power_spectrum(&noise, &MeshGeom::new(32, 64.0), &Fft3::new(32), pm_core::power::Deconvolve::None);
        let vcell = (64.0f64 / 32.0).powi(3);
        for (b, (&k, &p)) in ps.k.iter().zip(&ps.p).enumerate() {
            let nb = ps.n_modes[b] as f64;
            if nb < 200.0 {
                continue;
            }
            let want = table.variance(k, vcell) * vcell;
            // 5 standard errors of a bin average of nb/2 independent complex modes.
            let tol = 5.0 * (2.0 / nb).sqrt();
            assert!((p / want - 1.0).abs() < tol, "bin k = {k}: P = {p}, P_N = {want}");
        }
    }

    /// The linear Wiener filter (eq. W1) multiplies each lattice mode of g S W δ_L + n by
    /// P₁ g S W/(P₁ g² S² W² + P_N), written out here from its definition: checked on one Fourier
    /// mode of δ_L without noise, on one mode of noise alone (given on the data mesh), and on a
    /// lattice mode beyond the data mesh's Nyquist frequency, which carries no data (0).
    #[test]
    fn linear_wiener_filters_each_mode_by_its_signal_to_noise() {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 64.0, 2);
        c.time.a_stop = 0.5;
        let sim = Simulation::<f64>::new(&c).unwrap();
        let (n, l, sigma, rd) = (8usize, 64.0, 0.4, 3.0);
        let cosine = |m: usize, nu: [usize; 3]| -> Vec<f64> {
            (0..m * m * m)
                .map(|i| {
                    let x = [i / (m * m), (i / m) % m, i % m];
                    let ph: f64 = (0..3).map(|d| (nu[d] * x[d]) as f64 / m as f64).sum();
                    (2.0 * std::f64::consts::PI * ph).cos()
                })
                .collect()
        };
        // The factor of one mode ν (integer frequencies) on a data mesh of md cells.
        let factor = |nu: [usize; 3], md: usize| -> (f64, f64) {
            let k = 2.0 * std::f64::consts::PI / l * ((nu[0] * nu[0] + nu[1] * nu[1] + nu[2] * nu[2]) as f64).sqrt();
            let w: f64 = nu
                .iter()
                .map(|&v| {
                    let x = std::f64::consts::PI * v as f64 / md as f64;
                    if x == 0.0 {
                        1.0
                    } else {
                        (x.sin() / x).powi(2)
                    }
                })
                .product();
            let sw = (-0.5 * k * k * rd * rd).exp() * w;
            let g = sim.growth().d1(0.5) / sim.growth().d1(1.0);
            let p1 = sim.p_linear(k, 1.0);
            let pn = sigma * sigma * (l / md as f64).powi(3);
            let f = p1 * g * sw / (p1 * g * g * sw * sw + pn);
            (f * g * sw, f) // (signal gain, noise gain)
        };
        for md in [12usize, 16] {
            let post = Posterior::on_mesh(&sim, md, &vec![0.0; md * md * md], NoiseModel::White { sigma }, rd).unwrap();
            let nu = [1, 2, 0];
            let (gain, _) = factor(nu, md);
            let out = linear_wiener(&sim, &post, &cosine(n, nu), &vec![0.0; md * md * md]);
            for (o, x) in out.iter().zip(cosine(n, nu)) {
                assert!((o - gain * x).abs() < 1e-12, "signal, md {md}: {o} vs {}", gain * x);
            }
            let nu = [2, 0, 1];
            let out = linear_wiener(&sim, &post, &vec![0.0; n * n * n], &cosine(md, nu));
            let (_, f2) = factor(nu, md);
            for (o, x) in out.iter().zip(cosine(n, nu)) {
                assert!((o - f2 * x).abs() < 1e-12, "noise, md {md}: {o} vs {}", f2 * x);
            }
        }
        // A 6³ data mesh has no mode at |ν| = 3 along an axis.
        let post = Posterior::on_mesh(&sim, 6, &[0.0; 216], NoiseModel::White { sigma }, rd).unwrap();
        let out = linear_wiener(&sim, &post, &cosine(n, [3, 0, 0]), &[0.0; 216]);
        assert!(out.iter().all(|v| v.abs() < 1e-14));
    }
}
