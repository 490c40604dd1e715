//! The joint fit of (Ω_m, σ₈) with the white noise (docs/reconstruction.md §J): the Laplace
//! term of the joint posterior, the free cosmology of the last stage of [`reconstruct`] and the
//! calibration of the Laplace weights on a mock.

use super::preconditioner::shell_sums;
use super::{mock_observation, reconstruct, Posterior, Preconditioner, ReconProgress, Stage};
use crate::optim::LbfgsOptions;
use crate::{Error, Recover, Result};
use pm_core::config::Config;
use pm_core::fft::Fft3;
use pm_core::float::{Real, C};
use pm_core::noise::gaussian;
use pm_core::power::cic_window;
use pm_core::sim::Simulation;
use pm_core::tangent::Param;
use rayon::prelude::*;

/// The linear-theory Laplace term of the joint posterior of the white noise and (Ω_m, σ₈)
/// ([`Posterior::laplace_term`], docs/reconstruction.md eqs. J1–J3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LaplaceTerm {
    /// ½ Σ_k ln(1 + h(k)) (dimensionless).
    pub value: f64,
    /// Its derivatives with respect to (Ω_m, σ₈).
    pub grad: [f64; 2],
    /// The Fisher matrix of (Ω_m, σ₈), ½ Σ_k [h/(1+h)]² ∂_i ln h ∂_j ln h.
    pub fisher: [[f64; 2]; 2],
}

/// The result of the joint fit of (Ω_m, σ₈) in [`reconstruct`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosmologyFit {
    /// The starting (Ω_m, σ₈).
    pub start: [f64; 2],
    /// The estimate (Ω_m, σ₈) at the joint maximum.
    pub theta: [f64; 2],
    /// The Laplace covariance of (Ω_m, σ₈): the inverse of the Fisher matrix of eq. J3 at the
    /// estimate (exact posterior, R = 0).
    pub covariance: [[f64; 2]; 2],
}

impl CosmologyFit {
    /// The standard deviations sqrt(diag(covariance)) of (Ω_m, σ₈).
    pub fn sigma(&self) -> [f64; 2] {
        [self.covariance[0][0].sqrt(), self.covariance[1][1].sqrt()]
    }
}

impl<T: Real> Posterior<T> {
    /// Replaces the linear-theory weights h/(1+h) of the Laplace term by calibrated ones, one per
    /// radial bin j = |ν|² of the white-noise lattice (eq. J6; from
    /// [`calibrate_laplace_weights`]); `None` restores eq. J1.
    ///
    /// # Errors
    /// Weights that are not finite and ≥ 0.
    pub fn set_laplace_weights(&mut self, weights: Option<Vec<f64>>) -> Result<()> {
        if let Some(w) = &weights {
            pm_core::Error::check_finite("Laplace weights", w)?;
            if let Some(i) = w.iter().position(|v| *v < 0.0) {
                return Err(Error::LaplaceWeight { weight: w[i] });
            }
        }
        self.laplace_weights = weights;
        Ok(())
    }

    /// The linear-theory Laplace term of the joint posterior of (w, Ω_m, σ₈) at the cosmology of
    /// `sim` and annealing scale `anneal` (docs/reconstruction.md eqs. J1–J3): its value
    /// ½ Σ_k ln(1 + h(k)) over the n³ modes k ≠ 0 of the white-noise lattice (h of eq. J1: X4 with
    /// W_R and the mesh's CIC window), its gradient with respect to (Ω_m, σ₈), and the Fisher matrix
    /// F_ij = ½ Σ_k [h/(1+h)]² ∂_i ln h ∂_j ln h of (Ω_m, σ₈) (Ω_m at fixed Ω_k).
    ///
    /// # Errors
    /// A cosmology the forward-mode tangents refuse (as [`Simulation::cosmo_tangents`]).
    pub fn laplace_term(&self, sim: &Simulation<T>, anneal: f64) -> Result<LaplaceTerm> {
        Ok(self.laplace_bins(sim, anneal)?.0)
    }

    /// [`Posterior::laplace_term`] and, per radial bin j = |ν|² of the lattice,
    /// ∂ln P_L(k_j, a_stop)/∂(Ω_m, σ₈) (= ∂ln h/∂θ; zero at j = 0).
    fn laplace_bins(&self, sim: &Simulation<T>, anneal: f64) -> Result<(LaplaceTerm, Vec<[f64; 2]>)> {
        let tan = sim.cosmo_tangents()?;
        let d1 = tan.d1(sim.config().time.a_stop);
        let dlnd = d1.dln();
        let lat = sim.lattice();
        let (io, ia) = (Param::OmegaM.index(), Param::Amplitude.index());
        // Per radial bin: h without the CIC window, and ∂ln h/∂θ.
        let ks = lat.radial_k();
        let mut h_bin = vec![0.0; ks.len()];
        let mut bins = vec![[0.0; 2]; ks.len()];
        for (j, &k) in ks.iter().enumerate().skip(1) {
            let p = tan.p(k);
            h_bin[j] = p.value * d1.value * d1.value * self.snr_per_power(k, anneal);
            let dlnp = p.dln();
            bins[j] = [dlnp[io] + 2.0 * dlnd[io], dlnp[ia] + 2.0 * dlnd[ia]];
        }
        // Per mode: the CIC window of the mesh on the model density, W(k) = Π_d sinc²(π ν_d/m).
        let (n, m, nc) = (lat.m, self.geom.m, lat.mc());
        let h_mode = |i: usize| -> f64 {
            let (ix, iy, iz) = (i / (n * nc), (i / nc) % n, i % nc);
            let w = cic_window(lat.freq[ix] as f64, m) * cic_window(lat.freq[iy] as f64, m) * cic_window(iz as f64, m);
            h_bin[lat.nu2(ix, iy, iz)] * w * w
        };
        let mut out = LaplaceTerm {
            value: 0.0,
            grad: [0.0; 2],
            fisher: [[0.0; 2]; 2],
        };
        // Per bin: Σ ln(1+h) (or Σ f ln h with calibrated weights f, eq. J6), Σ f and Σ f².
        let (ln_term, f1, f2) = match &self.laplace_weights {
            Some(wts) => {
                let counts = lat.radial_sum(|_| 1.0);
                let lnh: Vec<f64> = (0..ks.len())
                    .map(|j| {
                        let f = wts.get(j).copied().unwrap_or(0.0);
                        if f > 0.0 && h_bin[j] > 0.0 {
                            counts[j] * f * h_bin[j].ln()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let f1 = (0..ks.len())
                    .map(|j| counts[j] * wts.get(j).copied().unwrap_or(0.0))
                    .collect::<Vec<_>>();
                let f2 = (0..ks.len())
                    .map(|j| counts[j] * wts.get(j).copied().unwrap_or(0.0).powi(2))
                    .collect::<Vec<_>>();
                (lnh, f1, f2)
            }
            None => {
                let ln1p = lat.radial_sum(|i| h_mode(i).ln_1p());
                let f1 = lat.radial_sum(|i| {
                    let h = h_mode(i);
                    h / (1.0 + h)
                });
                let f2 = lat.radial_sum(|i| {
                    let h = h_mode(i);
                    (h / (1.0 + h)).powi(2)
                });
                (ln1p, f1, f2)
            }
        };
        for j in 1..ks.len() {
            out.value += 0.5 * ln_term[j];
            for i in 0..2 {
                out.grad[i] += 0.5 * f1[j] * bins[j][i];
                for l in 0..2 {
                    out.fisher[i][l] += 0.5 * f2[j] * bins[j][i] * bins[j][l];
                }
            }
        }
        Ok((out, bins))
    }
}

/// Per radial bin j = |ν|² of the lattice: P_L(k_j, a_stop) of `sim` ((Mpc/h)³; 0 at j = 0).
fn lattice_power<T: Real>(sim: &Simulation<T>) -> Vec<f64> {
    let a = sim.config().time.a_stop;
    sim.lattice()
        .radial_k()
        .iter()
        .map(|&k| if k > 0.0 { sim.p_linear(k, a) } else { 0.0 })
        .collect()
}

/// The configuration `base` with (Ω_m, σ₈) = `theta` (σ₈ normalisation), validated.
///
/// # Errors
/// Parameters the configuration or the cosmology refuses (e.g. Ω_m ≤ Ω_b, σ₈ ≤ 0).
pub fn config_at(base: &Config, theta: [f64; 2]) -> Result<Config> {
    let mut c = base.clone();
    c.cosmology.omega_m = theta[0];
    c.cosmology.sigma8 = Some(theta[1]);
    c.validate()?;
    c.cosmology.validate()?;
    Ok(c)
}

/// What [`FreeCosmology`] caches at one θ.
pub(super) struct AtTheta {
    theta: [f64; 2],
    /// The Laplace term at the stage's annealing scale.
    pub(super) laplace: LaplaceTerm,
    /// ∂ln P_L(k_j, a_stop)/∂θ per radial bin of the lattice.
    pub(super) dlnp: Vec<[f64; 2]>,
    /// B(θ) of eq. J4.
    pub(super) b: Preconditioner,
}

/// The free cosmology of a stage of [`reconstruct`] (docs/reconstruction.md §J): θ = θ_s + s ⊙ φ
/// with θ_s the stage's starting cosmology and s the Fisher standard deviations there, and the
/// white noise w = B(θ) w̃ with B(θ) = F⁻¹ diag(sqrt(P_L(k; θ_s)/P_L(k; θ))) F (eq. J4), so that
/// at fixed w̃ the linear density, and hence the model density, hardly moves with θ.
pub(super) struct FreeCosmology<T: Real> {
    base: Config,
    theta_s: [f64; 2],
    pub(super) scale: [f64; 2],
    /// P_L(k_j, a_stop; θ_s) per radial bin of the lattice.
    p_ref: Vec<f64>,
    /// The cosmology the simulation is at, with what depends on it.
    pub(super) current: Option<AtTheta>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Real> FreeCosmology<T> {
    pub(super) fn new(sim: &Simulation<T>, post: &Posterior<T>, theta_s: [f64; 2]) -> Result<Self> {
        let f = post.laplace_term(sim, 0.0)?.fisher;
        let scale = [1.0 / f[0][0].sqrt(), 1.0 / f[1][1].sqrt()];
        if scale.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::FisherAtStart { fisher: f });
        }
        Ok(FreeCosmology {
            base: sim.config().clone(),
            theta_s,
            scale,
            p_ref: lattice_power(sim),
            current: None,
            _t: std::marker::PhantomData,
        })
    }

    pub(super) fn theta(&self, phi: &[f64]) -> [f64; 2] {
        [self.theta_s[0] + self.scale[0] * phi[0], self.theta_s[1] + self.scale[1] * phi[1]]
    }

    /// Moves `sim` to θ (a new simulation from the configuration) and caches the Laplace term
    /// at `anneal`, the per-bin ∂ln P_L/∂θ and B(θ). `Ok(false)`: θ outside the valid range.
    pub(super) fn move_to(&mut self, sim: &mut Simulation<T>, post: &Posterior<T>, theta: [f64; 2], anneal: f64) -> Result<bool> {
        if self.current.as_ref().map(|c| c.theta) == Some(theta) {
            return Ok(true);
        }
        self.current = None;
        // Only the cosmology tables are rebuilt: the FFT plans and scratch of the box are kept.
        if config_at(&self.base, theta)
            .and_then(|c| sim.set_cosmology(&c.cosmology).map_err(Error::from))
            .is_err()
        {
            return Ok(false);
        }
        let (lap, dlnp) = post.laplace_bins(sim, anneal)?;
        let p = lattice_power(sim);
        let kf = sim.lattice().kf();
        let ratio: Vec<f64> = self
            .p_ref
            .iter()
            .zip(&p)
            .map(|(a, b)| if *b > 0.0 { (a / b).sqrt() } else { 1.0 })
            .collect();
        let b = Preconditioner::from_fn(sim.lattice(), |k| ratio[((k / kf) * (k / kf)).round() as usize]);
        self.current = Some(AtTheta {
            theta,
            laplace: lap,
            dlnp,
            b,
        });
        Ok(true)
    }
}

/// Calibrates the weights of the Laplace term (docs/reconstruction.md eq. J6) on a mock: draws
/// white noise w_c from `seed` at the cosmology of `sim`, observes it with `posterior`'s noise
/// model and data smoothing (noise seed `seed + 1`), reconstructs it with `schedule` at fixed
/// cosmology from w = 0, and returns per radial bin j = |ν|² of the lattice the ratio
/// f_j = Σ|ŵ(k)|² / Σ|w_c(k)|² over the modes of its shell of width k_f (the power of the
/// reconstruction in units of the prior's): what the reconstruction actually recovers, which
/// replaces the linear-theory h/(1+h). Leaves `sim` as it was.
///
/// # Errors
/// Those of [`mock_observation`], [`Posterior::new`] and [`reconstruct`].
pub fn calibrate_laplace_weights<T: Real>(
    sim: &mut Simulation<T>,
    posterior: &Posterior<T>,
    schedule: &[Stage],
    lbfgs_opts: &LbfgsOptions,
    seed: u64,
    progress: impl FnMut(&ReconProgress),
) -> Result<Vec<f64>> {
    let n = sim.config().box_.particles;
    let w_c: Vec<T> = (0..(n * n * n) as u64).into_par_iter().map(|i| T::of(gaussian(seed, i))).collect();
    let md = posterior.data_mesh();
    let (obs, _) = mock_observation(sim, &w_c, &posterior.noise, posterior.data_smoothing, md, seed.wrapping_add(1))?;
    let mut post = Posterior::on_mesh(sim, md, &obs, posterior.noise.clone(), posterior.data_smoothing)?;
    post.set_preconditioning(posterior.precondition);
    let r = reconstruct(
        sim,
        &mut post,
        &vec![T::zero(); n * n * n],
        schedule,
        lbfgs_opts,
        Recover::Reverse,
        progress,
    )?;
    let lat = sim.lattice().clone();
    let fft = Fft3::<f64>::new(n);
    let power = |w: &[T]| -> Vec<f64> {
        let mut wk = vec![C::<f64>::default(); fft.complex_len()];
        fft.forward(&mut w.iter().map(|v| v.f64()).collect::<Vec<_>>(), &mut wk);
        lat.radial_sum(|i| wk[i].norm_sqr())
    };
    let (p_rec, p_true) = (power(&r.white_noise), power(&w_c));
    // Shells of width k_f: bin j belongs to shell round(sqrt(j)).
    let shell = |j: usize| (j as f64).sqrt().round() as usize;
    let (sr, st) = (shell_sums(&p_rec), shell_sums(&p_true));
    Ok((0..p_rec.len())
        .map(|j| {
            let s = shell(j);
            if j > 0 && st[s] > 0.0 {
                sr[s] / st[s]
            } else {
                0.0
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recon::driver::StageObjective;
    use crate::recon::testing::{reconstruct_from_zero, tiny, tiny_mock};
    use crate::recon::{NoiseModel, Preconditioning};
    use pm_core::testing::{fd_check_flat, rand_field};

    /// The Laplace term (eqs. J1–J3): its value equals a plain loop over the n³ lattice modes;
    /// its gradient matches central differences in (Ω_m, σ₈) (f64); with a tiny noise every mode
    /// has h ≫ 1 and the σ₈ entry of the Fisher matrix is 2(n³ − 1)/σ₈², the information of n³ − 1
    /// measured Gaussian modes on an amplitude.
    #[test]
    fn laplace_term_matches_a_mode_loop_finite_differences_and_the_noise_free_limit() {
        let (n, l) = (8usize, 64.0);
        let sim = tiny(1);
        let obs = vec![0.0; 16 * 16 * 16];
        let post = Posterior::new(&sim, &obs, NoiseModel::White { sigma: 0.02 }, 1.5).unwrap();
        let lt = post.laplace_term(&sim, 3.0).unwrap();
        let kf = 2.0 * std::f64::consts::PI / l;
        let freq = |i: usize| if i <= n / 2 { i as f64 } else { i as f64 - n as f64 };
        let vcell = (l / 16.0f64).powi(3);
        let a = sim.config().time.a_stop;
        let mut direct = 0.0;
        for ix in 0..n {
            for iy in 0..n {
                for iz in 0..n {
                    let k = kf * (freq(ix).powi(2) + freq(iy).powi(2) + freq(iz).powi(2)).sqrt();
                    let sinc = |nu: f64| {
                        if nu == 0.0 {
                            1.0
                        } else {
                            (std::f64::consts::PI * nu / 16.0).sin() / (std::f64::consts::PI * nu / 16.0)
                        }
                    };
                    let w = (sinc(freq(ix)) * sinc(freq(iy)) * sinc(freq(iz))).powi(2);
                    if k > 0.0 {
                        let h = sim.p_linear(k, a) * w * w * (-k * k * (1.5f64 * 1.5 + 9.0)).exp() / (0.02 * 0.02 * vcell);
                        direct += 0.5 * h.ln_1p();
                    }
                }
            }
        }
        assert!((lt.value - direct).abs() < 1e-10 * direct, "{} vs {direct}", lt.value);
        let theta = [sim.config().cosmology.omega_m, sim.config().cosmology.sigma8.unwrap()];
        for (i, eps) in [(0, 1e-5), (1, 1e-5)] {
            let at = |d: f64| {
                let mut t = theta;
                t[i] += d;
                let s = Simulation::<f64>::new(&config_at(sim.config(), t).unwrap()).unwrap();
                post.laplace_term(&s, 3.0).unwrap().value
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (fd - lt.grad[i]).abs() < 1e-6 * fd.abs().max(1.0),
                "parameter {i}: {} vs {fd}",
                lt.grad[i]
            );
        }
        // Calibrated weights (eq. J6): value ½ Σ f ln h, gradient ½ Σ f ∂ln h (central differences),
        // Fisher ½ Σ f² ∂ln h ∂ln h; with f = 1 everywhere F_σσ = 2(n³ − 1)/σ₈² exactly.
        let mut cal = Posterior::new(&sim, &obs, NoiseModel::White { sigma: 0.02 }, 1.5).unwrap();
        let nbins = sim.lattice().nu2_max() + 1;
        cal.set_laplace_weights(Some((0..nbins).map(|j| 1.0 / (1.0 + 0.1 * j as f64)).collect()))
            .unwrap();
        let lc = cal.laplace_term(&sim, 0.0).unwrap();
        for i in 0..2 {
            let at = |d: f64| {
                let mut t = theta;
                t[i] += d;
                let s = Simulation::<f64>::new(&config_at(sim.config(), t).unwrap()).unwrap();
                cal.laplace_term(&s, 0.0).unwrap().value
            };
            let fd = (at(1e-5) - at(-1e-5)) / 2e-5;
            assert!(
                (fd - lc.grad[i]).abs() < 1e-6 * fd.abs().max(1.0),
                "calibrated, parameter {i}: {} vs {fd}",
                lc.grad[i]
            );
        }
        cal.set_laplace_weights(Some(vec![1.0; nbins])).unwrap();
        let f1 = cal.laplace_term(&sim, 0.0).unwrap().fisher;
        let want1 = 2.0 * (n * n * n - 1) as f64 / (theta[1] * theta[1]);
        assert!((f1[1][1] / want1 - 1.0).abs() < 1e-12, "F_σσ {} vs {want1}", f1[1][1]);
        assert!(cal.set_laplace_weights(Some(vec![-1.0; nbins])).is_err());
        assert!(cal.set_laplace_weights(Some(vec![f64::NAN; nbins])).is_err());
        let quiet = Posterior::new(&sim, &obs, NoiseModel::White { sigma: 1e-4 }, 0.0).unwrap();
        let f = quiet.laplace_term(&sim, 0.0).unwrap().fisher;
        let want = 2.0 * (n * n * n - 1) as f64 / (theta[1] * theta[1]);
        assert!((f[1][1] / want - 1.0).abs() < 1e-6, "F_σσ {} vs {want}", f[1][1]);
        assert!(f[0][0] > 0.0 && f[0][0] * f[1][1] > f[0][1] * f[1][0]);
    }

    /// The free-cosmology stage objective (eqs. J1, J4, J5) over x = [u, φ], with and without the
    /// preconditioner: its gradient matches central differences (f64) along random directions
    /// that move the white noise and both parameters.
    #[test]
    fn free_cosmology_gradient_matches_finite_differences() {
        for precondition in [false, true] {
            let (sim, w_true, mut post) = tiny_mock(5, 0.4, 3);
            post.set_anneal(2.0).unwrap();
            let theta_s = [0.33, 0.78];
            let mut sim = Simulation::<f64>::new(&config_at(sim.config(), theta_s).unwrap()).unwrap();
            let free = FreeCosmology::new(&sim, &post, theta_s).unwrap();
            let pc = precondition.then(|| Preconditioner::linear(&sim, &post));
            let obj = std::cell::RefCell::new(StageObjective {
                sim: &mut sim,
                post: &post,
                exact_post: None,
                pc,
                free: Some(free),
                nw: w_true.len(),
                seconds: 0.0,
                trials: Vec::new(),
                recover: Recover::Reverse,
                reversal_error: 0.0,
            });
            let mut x: Vec<f64> = w_true
                .iter()
                .zip(rand_field::<f64>(w_true.len(), 31))
                .map(|(a, b)| 0.7 * a + 0.3 * b)
                .collect();
            x.extend([0.8, -0.6]);
            let (_, grad) = obj.borrow_mut().eval(&x).unwrap();
            assert_eq!(grad.len(), x.len());
            assert!(
                grad[x.len() - 2..].iter().all(|g| g.abs() > 1e-3),
                "parameter gradient {:?}",
                &grad[x.len() - 2..]
            );
            let f = |v: &[f64]| obj.borrow_mut().eval(v).unwrap().0;
            for s in 0..3 {
                fd_check_flat(&f, &x, &grad, 1e-5, 1e-6, 60 + s);
            }
            // Along the parameters alone.
            for i in [x.len() - 2, x.len() - 1] {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += 1e-5;
                xm[i] -= 1e-5;
                let fd = (f(&xp) - f(&xm)) / 2e-5;
                assert!(
                    (fd - grad[i]).abs() < 1e-5 * fd.abs().max(1.0),
                    "precondition {precondition}, φ{i}: {} vs {fd}",
                    grad[i]
                );
            }
        }
    }

    /// The joint fit on a small noisy mock (16³ particles, 32³ mesh, σ = 4 per cell) from a start
    /// offset from the truth, with the preconditioner and calibrated Laplace weights as the CLI
    /// runs it: the loss decreases in every stage, the cosmology moves only in the last stage,
    /// `sim` is left at the estimate, the covariance is positive definite, and the estimate is
    /// within 2.5σ of the truth in each parameter.
    #[test]
    fn joint_fit_recovers_the_cosmology_of_a_small_mock() {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (16, 32, 128.0, 4);
        let truth = [c.cosmology.omega_m, c.cosmology.sigma8.unwrap()];
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let w_true = sim.white_noise();
        let noise = NoiseModel::White { sigma: 4.0 };
        let md = sim.config().box_.mesh;
        let (obs, _) = mock_observation(&mut sim, &w_true, &noise, 0.0, md, 8).unwrap();
        let mut post = Posterior::new(&sim, &obs, noise, 0.0).unwrap();
        post.set_preconditioning(Preconditioning::Linear);
        let start = [truth[0] + 0.05, truth[1] - 0.05];
        let st = |smoothing, iterations| Stage { smoothing, iterations };
        let mut schedule = vec![st(16.0, 10), st(0.0, 60)];
        let mut s0 = Simulation::<f64>::new(&config_at(&c, start).unwrap()).unwrap();
        let wts = calibrate_laplace_weights(&mut s0, &post, &schedule, &LbfgsOptions::default(), 1234, |_| {}).unwrap();
        assert!(wts[1] > 0.3 && wts.iter().all(|f| (0.0..1.5).contains(f)), "{:?}", &wts[..8]);
        post.set_laplace_weights(Some(wts)).unwrap();
        post.set_fit_cosmology(Some(start));
        schedule.push(st(0.0, 60));
        let mut thetas = Vec::new();
        let r = reconstruct_from_zero(&mut sim, &mut post, &schedule, |p| thetas.push((p.stage, p.theta.unwrap())));
        assert!(thetas.iter().filter(|t| t.0 < 2).all(|t| t.1 == start));
        let fit = r.cosmology.unwrap();
        assert_eq!(fit.start, start);
        assert_ne!(fit.theta, start);
        assert_eq!(sim.config().cosmology.omega_m, fit.theta[0]);
        assert_eq!(sim.config().cosmology.sigma8, Some(fit.theta[1]));
        let (sig, cov) = (fit.sigma(), fit.covariance);
        assert!(sig.iter().all(|v| v.is_finite() && *v > 0.0) && cov[0][0] * cov[1][1] > cov[0][1] * cov[1][0]);
        for i in 0..2 {
            let pull = (fit.theta[i] - truth[i]) / sig[i];
            assert!(pull.abs() < 2.5, "parameter {i}: {:?} ± {sig:?} vs {truth:?}", fit.theta);
        }
    }
}
