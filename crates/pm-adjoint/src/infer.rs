//! Inference of cosmological parameters with adjoint gradients: the P(k) likelihood of
//! (Ω_m, σ₈) at a fixed, known white noise ([`PowerFit`]), the Laplace (inverse-Hessian)
//! covariance at a maximum ([`laplace_covariance`]), and Hamiltonian Monte Carlo ([`hmc`]) with
//! the integrated-autocorrelation effective sample size ([`effective_sample_size`]).
//! Equations in docs/reconstruction.md §C.

use crate::grad::{value_and_grad, GradOptions};
use crate::objective::Objective;
use crate::{Error, Result};
use pm_core::config::Config;
use pm_core::loss::PowerLoss;
use pm_core::noise::{gaussian, uniform};
use pm_core::power::PowerSpectrum;
use pm_core::sim::Simulation;

/// −ln L(Ω_m, σ₈) of a measured power spectrum, for simulations of `config` run from the fixed
/// white noise `w` (docs/reconstruction.md eq. C1): the [`PowerLoss`] log-ratio χ²,
/// `Σ_b (N_b/2) [ln(P_b(θ)/P̂_b)]²`, with var(ln P̂_b) = 2/N_b. Runs in f64.
#[derive(Clone, Debug)]
pub struct PowerFit {
    config: Config,
    w: Vec<f64>,
    target: PowerSpectrum,
    k_max: Option<f64>,
}

impl PowerFit {
    /// The fit of `target` (binned on `config`'s force mesh, as [`Simulation::power`] measures it)
    /// using bins with k ≤ `k_max` h/Mpc, for white noise `w` (n³). The configuration must
    /// normalise the power by σ₈ (`cosmology.sigma8`).
    ///
    /// # Errors
    /// A config without σ₈, a white noise of the wrong length or with NaN, and the target
    /// checks of [`PowerLoss::new`].
    pub fn new(config: &Config, w: Vec<f64>, target: PowerSpectrum, k_max: Option<f64>) -> Result<Self> {
        if config.cosmology.sigma8.is_none() {
            return Err(Error::Sigma8Unset {
                why: "the fit varies σ₈"
            });
        }
        let n = config.box_.particles;
        pm_core::Error::check_array("white noise", &w, n * n * n, "box.particles³")?;
        PowerLoss::<f64>::new(target.clone(), k_max)?;
        Ok(PowerFit {
            config: config.clone(),
            w,
            target,
            k_max,
        })
    }

    /// The configuration at θ = (Ω_m, σ₈), other parameters unchanged.
    ///
    /// # Errors
    /// Parameters the cosmology refuses (e.g. Ω_m ≤ Ω_b, σ₈ ≤ 0).
    pub fn config_at(&self, theta: [f64; 2]) -> Result<Config> {
        crate::recon::config_at(&self.config, theta)
    }

    /// −ln L at θ = (Ω_m, σ₈) and its gradient (∂/∂Ω_m at fixed Ω_k, ∂/∂σ₈) by the adjoint.
    ///
    /// # Errors
    /// Parameters outside the valid range, or a run that goes non-finite.
    pub fn value_and_grad(&self, theta: [f64; 2]) -> Result<(f64, [f64; 2])> {
        let mut sim = Simulation::<f64>::new(&self.config_at(theta)?)?;
        let loss = PowerLoss::new(self.target.clone(), self.k_max)?;
        loss.check(&sim.mesh_context())?;
        let g = value_and_grad(&mut sim, &self.w, &Objective::final_state(&loss), &GradOptions::default())?;
        let c = g.cosmology.expect("cosmology gradient requested");
        Ok((g.loss, [c.omega_m, c.sigma8.expect("σ₈-normalised run")]))
    }

    /// The power spectrum of the run at θ (e.g. the mock data at the true parameters).
    ///
    /// # Errors
    /// As [`PowerFit::value_and_grad`].
    pub fn power_at(&self, theta: [f64; 2]) -> Result<PowerSpectrum> {
        simulated_power(&self.config_at(theta)?, &self.w)
    }
}

/// The power spectrum ([`Simulation::power`]) of the final density of `config` run in f64 from
/// white noise `w` (n³).
///
/// # Errors
/// An invalid config, a white noise of the wrong length or with NaN, or a non-finite run.
pub fn simulated_power(config: &Config, w: &[f64]) -> Result<PowerSpectrum> {
    let mut sim = Simulation::<f64>::new(config)?;
    let mut state = sim.initial_conditions(w.to_vec())?;
    sim.run(&mut state, |_| Ok(()))?;
    Ok(sim.power(&sim.density(&state)))
}

/// The Laplace covariance at a minimum x of a loss −ln p: the inverse of the Hessian, built by
/// central differences of the gradient with steps `h` per parameter (eq. C2), symmetrised.
/// `grad(x)` returns the gradient.
///
/// # Errors
/// A Hessian that is not positive definite (not a minimum; [`Error::NotPositiveDefinite`]), and errors of
/// `grad`.
pub fn laplace_covariance(mut grad: impl FnMut(&[f64]) -> Result<Vec<f64>>, x: &[f64], h: &[f64]) -> Result<Vec<Vec<f64>>> {
    let n = x.len();
    let mut hess = vec![vec![0.0; n]; n];
    for j in 0..n {
        let mut xp = x.to_vec();
        let mut xm = x.to_vec();
        xp[j] += h[j];
        xm[j] -= h[j];
        let (gp, gm) = (grad(&xp)?, grad(&xm)?);
        for i in 0..n {
            hess[i][j] = (gp[i] - gm[i]) / (2.0 * h[j]);
        }
    }
    for i in 0..n {
        for j in 0..i {
            let s = 0.5 * (hess[i][j] + hess[j][i]);
            hess[i][j] = s;
            hess[j][i] = s;
        }
    }
    invert_spd(&hess)
}

/// Inverse of a symmetric positive-definite matrix by Cholesky.
fn invert_spd(a: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return Err(Error::NotPositiveDefinite { hessian: a.to_vec() });
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    // A⁻¹ = L⁻ᵀ L⁻¹, column by column.
    let mut inv = vec![vec![0.0; n]; n];
    for c in 0..n {
        let mut y = vec![0.0; n];
        for i in 0..n {
            let b = if i == c { 1.0 } else { 0.0 };
            y[i] = (b - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
        }
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
        }
        for i in 0..n {
            inv[i][c] = x[i];
        }
    }
    Ok(inv)
}

/// Settings of [`hmc`].
#[derive(Clone, Debug, PartialEq)]
pub struct HmcOptions {
    /// Leapfrog step size ε (in units of the parameters scaled by `scale`).
    pub step: f64,
    /// Leapfrog steps per trajectory L.
    pub leapfrog_steps: usize,
    /// Number of samples (trajectories).
    pub samples: usize,
    /// Per-parameter scale (e.g. the Laplace standard deviations): the momentum of parameter i
    /// is drawn with standard deviation 1/scale_i (a diagonal mass matrix M = diag(1/scale²)).
    pub scale: Vec<f64>,
    /// Seed of the momenta and acceptance draws (counter-based).
    pub seed: u64,
}

/// The chain of [`hmc`].
#[derive(Clone, Debug)]
pub struct HmcResult {
    /// One row per sample (the state after each trajectory, accepted or not).
    pub samples: Vec<Vec<f64>>,
    /// Fraction of trajectories accepted.
    pub acceptance: f64,
    /// Loss-and-gradient evaluations.
    pub evaluations: usize,
}

/// Hamiltonian Monte Carlo (Neal 2011, *MCMC using Hamiltonian dynamics*, §5.2) on the density
/// ∝ exp(−U(x)) with `f(x) = (U, ∇U)`: momenta p ~ N(0, M), L leapfrog steps of size ε, accepted
/// with probability min(1, exp(H₀ − H₁)), H = U + ½pᵀM⁻¹p. A trajectory that meets an error of
/// `f` (e.g. parameters outside their valid range) is rejected.
///
/// # Errors
/// Invalid options, or a starting point where `f` fails.
pub fn hmc(mut f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>)>, x0: &[f64], opts: &HmcOptions) -> Result<HmcResult> {
    let n = x0.len();
    if opts.scale.len() != n || opts.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::Options {
            field: "HmcOptions.scale",
            value: format!("{:?}", opts.scale),
            expected: format!("{n} values > 0"),
        });
    }
    if !(opts.step.is_finite() && opts.step > 0.0) || opts.leapfrog_steps == 0 {
        return Err(Error::Options {
            field: "HmcOptions.step, leapfrog_steps",
            value: format!("{}, {}", opts.step, opts.leapfrog_steps),
            expected: "a step > 0 and at least 1 leapfrog step".into(),
        });
    }
    // M⁻¹ = diag(scale²).
    let minv: Vec<f64> = opts.scale.iter().map(|s| s * s).collect();
    let mut x = x0.to_vec();
    let (mut u, mut g) = f(&x)?;
    let mut evaluations = 1;
    let mut accepted = 0usize;
    let mut samples = Vec::with_capacity(opts.samples);
    let mut counter = 0u64;
    for _ in 0..opts.samples {
        let mut p: Vec<f64> = (0..n)
            .map(|i| {
                counter += 1;
                gaussian(opts.seed, counter) / opts.scale[i]
            })
            .collect();
        let kinetic = |p: &[f64]| 0.5 * p.iter().zip(&minv).map(|(a, m)| a * a * m).sum::<f64>();
        let h0 = u + kinetic(&p);
        let (mut xn, mut gn, mut un) = (x.clone(), g.clone(), u);
        let mut ok = true;
        for _ in 0..opts.leapfrog_steps {
            p.iter_mut().zip(&gn).for_each(|(pi, gi)| *pi -= 0.5 * opts.step * gi);
            xn.iter_mut()
                .zip(p.iter().zip(&minv))
                .for_each(|(xi, (pi, m))| *xi += opts.step * m * pi);
            match f(&xn) {
                Ok((v, gr)) if v.is_finite() && gr.iter().all(|q| q.is_finite()) => {
                    un = v;
                    gn = gr;
                }
                _ => {
                    ok = false;
                    evaluations += 1;
                    break;
                }
            }
            evaluations += 1;
            p.iter_mut().zip(&gn).for_each(|(pi, gi)| *pi -= 0.5 * opts.step * gi);
        }
        counter += 1;
        if ok && uniform(opts.seed ^ 0xa5a5, counter).ln() < h0 - (un + kinetic(&p)) {
            x = xn;
            u = un;
            g = gn;
            accepted += 1;
        }
        samples.push(x.clone());
    }
    Ok(HmcResult {
        samples,
        acceptance: accepted as f64 / opts.samples.max(1) as f64,
        evaluations,
    })
}

/// Effective sample size of a scalar chain, N / (1 + 2 Σ_t ρ_t), with the autocorrelations ρ_t
/// summed in pairs while the pair sums stay positive (Geyer 1992's initial positive sequence).
/// Returns N for an uncorrelated chain and less for a correlated one; 0 for a constant chain.
pub fn effective_sample_size(chain: &[f64]) -> f64 {
    let n = chain.len();
    if n < 4 {
        return n as f64;
    }
    let mean = chain.iter().sum::<f64>() / n as f64;
    let var = chain.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    if var <= 0.0 {
        return 0.0;
    }
    let rho = |t: usize| (0..n - t).map(|i| (chain[i] - mean) * (chain[i + t] - mean)).sum::<f64>() / (n as f64 * var);
    let mut tau = -1.0; // 1 + 2 Σ_{t≥1} ρ_t = −1 + 2 Σ_{pairs} (ρ_{2k} + ρ_{2k+1}) from ρ_0 = 1.
    let mut k = 0;
    while 2 * k + 1 < n {
        let pair = rho(2 * k) + rho(2 * k + 1);
        if pair <= 0.0 {
            break;
        }
        tau += 2.0 * pair;
        k += 1;
    }
    n as f64 / tau.max(1.0 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// U = ½ (x−μ)ᵀ Σ⁻¹ (x−μ) for a correlated 2-D Gaussian.
    fn gauss2(x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (mu, s) = ([0.3, 0.8], [[0.04, 0.012], [0.012, 0.01]]);
        let det = s[0][0] * s[1][1] - s[0][1] * s[1][0];
        let p = [[s[1][1] / det, -s[0][1] / det], [-s[1][0] / det, s[0][0] / det]];
        let d = [x[0] - mu[0], x[1] - mu[1]];
        let g = vec![p[0][0] * d[0] + p[0][1] * d[1], p[1][0] * d[0] + p[1][1] * d[1]];
        Ok((0.5 * (d[0] * g[0] + d[1] * g[1]), g))
    }

    #[test]
    fn laplace_covariance_of_a_gaussian_is_its_covariance() {
        let cov = laplace_covariance(|x| Ok(gauss2(x)?.1), &[0.3, 0.8], &[1e-3, 1e-3]).unwrap();
        let want = [[0.04, 0.012], [0.012, 0.01]];
        for i in 0..2 {
            for j in 0..2 {
                assert!((cov[i][j] - want[i][j]).abs() < 1e-10, "{cov:?}");
            }
        }
        // A maximum is refused.
        let neg = |x: &[f64]| -> Result<Vec<f64>> { Ok(gauss2(x)?.1.iter().map(|v| -v).collect()) };
        assert!(laplace_covariance(neg, &[0.3, 0.8], &[1e-3, 1e-3]).is_err());
    }

    /// HMC on a correlated Gaussian: the sample mean and covariance match within their Monte
    /// Carlo errors, the acceptance is high for a small step, and the ESS is sensible.
    #[test]
    fn hmc_samples_a_gaussian() {
        let opts = HmcOptions {
            step: 0.3,
            leapfrog_steps: 8,
            samples: 4000,
            scale: vec![0.2, 0.1],
            seed: 11,
        };
        let r = hmc(gauss2, &[0.0, 0.0], &opts).unwrap();
        assert!(r.acceptance > 0.8, "acceptance {}", r.acceptance);
        let burn = 100;
        let s = &r.samples[burn..];
        let ns = s.len() as f64;
        for (i, (mu, sd)) in [(0.3, 0.2), (0.8, 0.1)].into_iter().enumerate() {
            let c: Vec<f64> = s.iter().map(|v| v[i]).collect();
            let ess = effective_sample_size(&c);
            assert!(ess > 200.0 && ess < 3.0 * ns, "ESS {ess}");
            let m = c.iter().sum::<f64>() / ns;
            let var = c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / ns;
            assert!((m - mu).abs() < 5.0 * sd / ess.sqrt(), "mean {m} vs {mu} (ESS {ess})");
            assert!((var.sqrt() / sd - 1.0).abs() < 0.15, "sd {} vs {sd}", var.sqrt());
        }
        // Errors of U reject the trajectory instead of failing the chain.
        let wall = |x: &[f64]| {
            if x[0] > 0.5 {
                Err(pm_core::Error::invalid("x", x[0], "≤ 0.5").into())
            } else {
                gauss2(x)
            }
        };
        let r = hmc(wall, &[0.0, 0.8], &opts).unwrap();
        assert!(r.samples.iter().all(|v| v[0] <= 0.5));
    }

    #[test]
    fn ess_of_independent_and_correlated_chains() {
        let iid: Vec<f64> = (0..4000).map(|i| gaussian(3, i)).collect();
        let e = effective_sample_size(&iid);
        assert!(e > 3000.0 && e < 5000.0, "iid ESS {e}");
        // AR(1) with φ = 0.9: ESS ≈ N (1−φ)/(1+φ) ≈ 210.
        let mut ar = vec![0.0; 4000];
        for i in 1..4000 {
            ar[i] = 0.9 * ar[i - 1] + (1.0f64 - 0.81).sqrt() * gaussian(4, i as u64);
        }
        let e = effective_sample_size(&ar);
        assert!(e > 120.0 && e < 350.0, "AR(1) ESS {e}");
        assert_eq!(effective_sample_size(&[1.0; 10]), 0.0);
    }
}
