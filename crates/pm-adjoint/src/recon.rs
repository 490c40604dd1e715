//! Initial-field reconstruction: the posterior of the white noise given an observed late-time
//! density mesh, its gradient by the adjoint, and the annealed L-BFGS driver
//! (derivation and choices in docs/reconstruction.md).
//!
//! **Data model** (docs/reconstruction.md eq. X1): on the force mesh (m³ cells, C order)
//! `δ_obs = S δ(w) + n`, with δ(w) the CIC density contrast of the final particles run from white
//! noise w ([`Simulation::density`]), S a Gaussian smoothing `S(k) = exp(−k²R_d²/2)` (R_d ≥ 0
//! Mpc/h, `R_d = 0`: none), and n Gaussian noise, white with per-cell standard deviation σ or with
//! a noise power spectrum P_N(k) in (Mpc/h)³, i.e. per-mode variance `σ²(k) = P_N(k)/V_cell`.
//!
//! **Forward** (eq. X2): with the residual `r = S δ − δ_obs`, the annealing window
//! `W_R(k) = exp(−k²R²/2)` and `C_R⁻¹ = F⁻¹ diag(W_R²(k)/σ²(k)) F` (F the DFT on the mesh, a
//! symmetric positive operator on real fields),
//! `−ln p(w | δ_obs) = ½ rᵀ C_R⁻¹ r + ½ |w|² + const`. At R = 0 this is the exact posterior.
//!
//! **Adjoint** (eq. X3): `∂/∂δ (½ rᵀC⁻¹r) = S C_R⁻¹ r` (S and C_R⁻¹ are symmetric), pulled back
//! to w by [`value_and_grad`]; the prior adds w.

use crate::grad::{value_and_grad, GradOptions, Gradients};
use crate::objective::Objective;
use crate::optim::{lbfgs, Iteration, LbfgsOptions, LbfgsResult};
use pm_core::error::{Error, Result};
use pm_core::fft::Fft3;
use pm_core::float::{Real, C};
use pm_core::loss::DensityLoss;
use pm_core::mesh::MeshGeom;
use pm_core::noise::gaussian;
use pm_core::sim::Simulation;
use rayon::prelude::*;
use std::cell::Cell;

/// The noise of the observed density mesh.
#[derive(Clone, Debug, PartialEq)]
pub enum NoiseModel {
    /// White noise with standard deviation `sigma` per cell (units of δ; > 0).
    White {
        /// Per-cell standard deviation.
        sigma: f64,
    },
    /// Gaussian noise with power spectrum P_N(k), tabulated at increasing `k` (h/Mpc) with `p`
    /// ((Mpc/h)³, > 0) and interpolated linearly in (ln k, ln P), constant beyond the ends.
    Power {
        /// Wavenumbers, h/Mpc, strictly increasing, > 0.
        k: Vec<f64>,
        /// Noise power at each k, (Mpc/h)³, > 0.
        p: Vec<f64>,
    },
}

impl NoiseModel {
    /// Checks the values (σ > 0 and finite; a table with ≥ 1 finite positive entry per k,
    /// increasing k).
    pub fn validate(&self) -> Result<()> {
        match self {
            NoiseModel::White { sigma } => {
                if !(sigma.is_finite() && *sigma > 0.0) {
                    return Err(Error::invalid(
                        "noise sigma",
                        sigma,
                        "a finite standard deviation > 0 (units of δ per cell)",
                    ));
                }
            }
            NoiseModel::Power { k, p } => {
                if k.is_empty() || k.len() != p.len() {
                    return Err(Error::Shape {
                        what: "noise power spectrum".into(),
                        found: format!("{} k and {} P values", k.len(), p.len()),
                        expected: "the same number (≥ 1) of k and P_N values".into(),
                    });
                }
                for (i, (&ki, &pi)) in k.iter().zip(p).enumerate() {
                    if !(ki.is_finite() && ki > 0.0) || (i > 0 && ki <= k[i - 1]) {
                        return Err(Error::invalid(
                            format!("noise power k[{i}]"),
                            ki,
                            "finite, > 0 and increasing (h/Mpc)",
                        ));
                    }
                    if !(pi.is_finite() && pi > 0.0) {
                        return Err(Error::invalid(
                            format!("noise power P_N[{i}]"),
                            pi,
                            "a finite power > 0 in (Mpc/h)³",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Noise variance of one mode at wavenumber `k` in per-cell units, σ²(k) = P_N(k)/V_cell.
    pub fn variance(&self, k: f64, cell_volume: f64) -> f64 {
        match self {
            NoiseModel::White { sigma } => sigma * sigma,
            NoiseModel::Power { k: ks, p } => {
                let n = ks.len();
                let pn = if n == 1 || k <= ks[0] {
                    p[0]
                } else if k >= ks[n - 1] {
                    p[n - 1]
                } else {
                    let j = ks.partition_point(|&x| x <= k).clamp(1, n - 1);
                    let t = (k.ln() - ks[j - 1].ln()) / (ks[j].ln() - ks[j - 1].ln());
                    (p[j - 1].ln() + t * (p[j].ln() - p[j - 1].ln())).exp()
                };
                pn / cell_volume
            }
        }
    }
}

/// The reconstruction posterior on one simulation's force mesh (see the module docs).
pub struct Posterior<T: Real> {
    geom: MeshGeom,
    fft: Fft3<T>,
    /// DFT of δ_obs (half spectrum).
    observed_k: Vec<C<T>>,
    noise: NoiseModel,
    data_smoothing: f64,
    anneal: f64,
    /// S(k)·W_R²(k)/σ²(k)·S(k)… per half-spectrum mode: `kernel[i] = (S(k), W_R²(k)/σ²(k))`.
    kernel: Vec<(f64, f64)>,
    /// Whether [`reconstruct`] optimises in preconditioned variables ([`Preconditioner`]).
    precondition: bool,
}

impl<T: Real> std::fmt::Debug for Posterior<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Posterior")
            .field("mesh", &self.geom.m)
            .field("noise", &self.noise)
            .field("data_smoothing", &self.data_smoothing)
            .field("anneal", &self.anneal)
            .finish_non_exhaustive()
    }
}

fn check_scale(what: &str, r: f64) -> Result<()> {
    if !(r.is_finite() && r >= 0.0) {
        return Err(Error::invalid(what, r, "a Gaussian smoothing scale ≥ 0 in Mpc/h (0: none)"));
    }
    Ok(())
}

impl<T: Real> Posterior<T> {
    /// The posterior of white noise given `observed` (δ_obs on `sim`'s force mesh, m³ C order),
    /// the `noise` model and the data smoothing scale `data_smoothing` (R_d, Mpc/h; 0 for none).
    /// The annealing scale starts at R = 0 (the exact posterior); see [`Posterior::set_anneal`].
    ///
    /// # Errors
    /// [`Error::Shape`] if `observed` does not have m³ values, [`Error::NonFinite`] for NaN/Inf in
    /// it, [`Error::Invalid`] for σ ≤ 0, a bad noise table or a negative smoothing scale.
    pub fn new(sim: &Simulation<T>, observed: &[T], noise: NoiseModel, data_smoothing: f64) -> Result<Self> {
        let b = &sim.config().box_;
        let geom = MeshGeom::new(b.mesh, b.size);
        Error::check_array("observed density", observed, geom.n_cells(), "box.mesh³")?;
        noise.validate()?;
        check_scale("data smoothing", data_smoothing)?;
        let fft = Fft3::new(geom.m);
        let mut observed_k = vec![C::<T>::default(); fft.complex_len()];
        fft.forward(&mut observed.to_vec(), &mut observed_k);
        let mut p = Posterior {
            geom,
            fft,
            observed_k,
            noise,
            data_smoothing,
            anneal: 0.0,
            kernel: Vec::new(),
            precondition: false,
        };
        p.build_kernel();
        Ok(p)
    }

    fn build_kernel(&mut self) {
        let g = &self.geom;
        let (m, mc) = (g.m, g.mc());
        let vcell = g.cell().powi(3);
        let (rd, ra) = (self.data_smoothing, self.anneal);
        self.kernel = (0..g.n_complex())
            .into_par_iter()
            .map(|i| {
                let (ix, iy, iz) = (i / (m * mc), (i / mc) % m, i % mc);
                let k2 = g.k_of(ix).powi(2) + g.k_of(iy).powi(2) + g.kz_of(iz).powi(2);
                let s = (-0.5 * k2 * rd * rd).exp();
                let w2 = (-k2 * ra * ra).exp();
                (s, w2 / self.noise.variance(k2.sqrt(), vcell))
            })
            .collect();
    }

    /// Sets the annealing scale R (Mpc/h) of the residual window W_R(k) = exp(−k²R²/2); R = 0 is
    /// the exact posterior.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a negative or non-finite R.
    pub fn set_anneal(&mut self, r: f64) -> Result<()> {
        check_scale("annealing scale", r)?;
        self.anneal = r;
        self.build_kernel();
        Ok(())
    }

    /// Makes [`reconstruct`] optimise over u with w = M u, M the linear-theory
    /// [`Preconditioner`] of each stage (docs/reconstruction.md eq. X5), instead of over w.
    /// Off by default. The posterior itself (value, gradient in w) does not change.
    pub fn set_preconditioning(&mut self, on: bool) {
        self.precondition = on;
    }

    /// Whether [`reconstruct`] uses the linear-theory preconditioner.
    pub fn preconditioning(&self) -> bool {
        self.precondition
    }

    /// The current annealing scale R, Mpc/h.
    pub fn anneal(&self) -> f64 {
        self.anneal
    }
    /// The noise model.
    pub fn noise(&self) -> &NoiseModel {
        &self.noise
    }
    /// The data smoothing scale R_d, Mpc/h.
    pub fn data_smoothing(&self) -> f64 {
        self.data_smoothing
    }

    /// ½ rᵀ C_R⁻¹ r for the model density `delta` (eq. X2, the likelihood term, dimensionless),
    /// and **adds** its derivative S C_R⁻¹ r (eq. X3) to `delta_cot`.
    #[track_caller]
    pub fn chi2_half_and_cot(&self, delta: &[T], delta_cot: &mut [T]) -> f64 {
        let n = self.geom.n_cells();
        assert_eq!(delta.len(), n, "Posterior: model density length");
        assert_eq!(delta_cot.len(), n, "Posterior: cotangent length");
        let inv_n = T::of(1.0 / n as f64);
        let mut dk = vec![C::<T>::default(); self.fft.complex_len()];
        self.fft.forward(&mut delta.to_vec(), &mut dk);
        // r̃ = S δ̃ − õ; ũ = K r̃; ḡ = S ũ.
        let mut rk = dk;
        let mut uk = vec![C::<T>::default(); rk.len()];
        let mut gk = vec![C::<T>::default(); rk.len()];
        rk.par_iter_mut()
            .zip(uk.par_iter_mut().zip(gk.par_iter_mut()))
            .zip(self.kernel.par_iter().zip(self.observed_k.par_iter()))
            .for_each(|((r, (u, g)), (&(s, kern), o))| {
                *r = *r * T::of(s) - *o;
                *u = *r * T::of(kern);
                *g = *u * T::of(s);
            });
        let mut r = vec![T::zero(); n];
        let mut u = vec![T::zero(); n];
        let mut gx = vec![T::zero(); n];
        self.fft.inverse(&mut rk, &mut r);
        self.fft.inverse(&mut uk, &mut u);
        self.fft.inverse(&mut gk, &mut gx);
        delta_cot.par_iter_mut().zip(gx.par_iter()).for_each(|(c, g)| *c += *g * inv_n);
        // ½ ⟨r, u⟩ with both carrying a factor n from the unnormalised inverse; fixed-order sum.
        let s: f64 = r
            .par_chunks(4096)
            .zip(u.par_chunks(4096))
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x.f64() * y.f64()).sum::<f64>())
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        0.5 * s / (n as f64 * n as f64)
    }

    /// The model's prediction of the observed mesh, S δ(w) (m³, C order), from a final density
    /// contrast `delta` ([`Simulation::density`]).
    pub fn smooth(&self, delta: &[T]) -> Vec<T> {
        if self.data_smoothing == 0.0 {
            return delta.to_vec();
        }
        let mut dk = vec![C::<T>::default(); self.fft.complex_len()];
        self.fft.forward(&mut delta.to_vec(), &mut dk);
        dk.par_iter_mut()
            .zip(self.kernel.par_iter())
            .for_each(|(d, &(s, _))| *d = *d * T::of(s));
        let mut out = vec![T::zero(); delta.len()];
        self.fft.inverse(&mut dk, &mut out);
        let inv_n = T::of(1.0 / delta.len() as f64);
        out.iter_mut().for_each(|v| *v *= inv_n);
        out
    }

    /// −ln posterior at `w` (eq. X2 at the current annealing scale) and its gradients: returns
    /// `(value, ∂/∂w, the adjoint's Gradients)`; `Gradients::loss` is the likelihood term ½χ²_R and
    /// `Gradients::white_noise` its gradient alone (the prior term ½|w|² and w are added in the
    /// first two outputs). With `opts.cosmology` the cosmology gradient is of the likelihood (the
    /// prior on w does not depend on it).
    pub fn value_and_grad(&self, sim: &mut Simulation<T>, w: &[T], opts: &GradOptions) -> Result<(f64, Vec<f64>, Gradients<T>)> {
        let loss = DensityLoss::new(|d: &[T], c: &mut [T]| self.chi2_half_and_cot(d, c));
        let g = value_and_grad(sim, w, &Objective::final_state(&loss), opts)?;
        let prior: f64 = 0.5 * w.iter().map(|v| v.f64() * v.f64()).sum::<f64>();
        let grad: Vec<f64> = g.white_noise.iter().zip(w).map(|(a, b)| a.f64() + b.f64()).collect();
        Ok((g.loss + prior, grad, g))
    }
}

/// A Fourier-diagonal change of variables on the white-noise lattice (n³, C order),
/// `w = M u`, `M = F⁻¹ diag(m(k)) F` with `m(k) > 0` real and even in k, so M is symmetric
/// positive definite and the gradient transforms as `∂/∂u = M ∂/∂w` (docs/reconstruction.md
/// eq. X5).
///
/// [`Preconditioner::linear`] takes `m(k) = (1 + h(k))^{-1/2}`, with h(k) the linear-theory
/// curvature of ½χ² per unit-variance white-noise mode, the signal-to-noise ratio
/// `h(k) = P_L(k, a_stop) S²(k) W_R²(k) / (σ²(k) V_cell)` (eq. X4): in u the Hessian of
/// −ln p is close to the identity on the scales where the forward map is close to linear.
pub struct Preconditioner {
    fft: Fft3<f64>,
    /// m(k) per half-spectrum mode of the lattice.
    m: Vec<f64>,
}

impl std::fmt::Debug for Preconditioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preconditioner")
            .field("lattice", &self.fft.n())
            .finish_non_exhaustive()
    }
}

impl Preconditioner {
    /// The linear-theory preconditioner of `posterior` at its current annealing scale, on
    /// `sim`'s white-noise lattice (eq. X4–X5).
    pub fn linear<T: Real>(sim: &Simulation<T>, posterior: &Posterior<T>) -> Self {
        let a = sim.config().time.a_stop;
        let vcell = posterior.geom.cell().powi(3);
        let (rd, ra) = (posterior.data_smoothing, posterior.anneal);
        let noise = &posterior.noise;
        Self::from_fn(sim.lattice(), |k| {
            if k == 0.0 {
                return 1.0;
            }
            let s2 = (-k * k * rd * rd).exp();
            let w2 = (-k * k * ra * ra).exp();
            let h = sim.p_linear(k, a) * s2 * w2 / (noise.variance(k, vcell) * vcell);
            1.0 / (1.0 + h).sqrt()
        })
    }

    /// The preconditioner with filter `m(|k|)` on the lattice `geom` (`m` must be > 0 and
    /// finite; k in h/Mpc).
    fn from_fn(geom: &MeshGeom, m_of: impl Fn(f64) -> f64 + Sync) -> Self {
        let (n, mc) = (geom.m, geom.mc());
        let m = (0..geom.n_complex())
            .into_par_iter()
            .map(|i| {
                let (ix, iy, iz) = (i / (n * mc), (i / mc) % n, i % mc);
                let k = (geom.k_of(ix).powi(2) + geom.k_of(iy).powi(2) + geom.kz_of(iz).powi(2)).sqrt();
                m_of(k)
            })
            .collect();
        Preconditioner { fft: Fft3::new(n), m }
    }

    fn filter(&self, v: &[f64], inverse: bool) -> Vec<f64> {
        let n = v.len();
        let mut vk = vec![C::<f64>::default(); self.fft.complex_len()];
        self.fft.forward(&mut v.to_vec(), &mut vk);
        let inv_n = 1.0 / n as f64;
        vk.par_iter_mut().zip(self.m.par_iter()).for_each(|(z, &m)| {
            *z = *z * if inverse { inv_n / m } else { m * inv_n };
        });
        let mut out = vec![0.0; n];
        self.fft.inverse(&mut vk, &mut out);
        out
    }

    /// `M v` (v on the lattice, n³ values).
    #[track_caller]
    pub fn apply(&self, v: &[f64]) -> Vec<f64> {
        assert_eq!(v.len(), self.fft.real_len(), "Preconditioner: vector length");
        self.filter(v, false)
    }

    /// `M⁻¹ v`.
    #[track_caller]
    pub fn apply_inverse(&self, v: &[f64]) -> Vec<f64> {
        assert_eq!(v.len(), self.fft.real_len(), "Preconditioner: vector length");
        self.filter(v, true)
    }
}

/// A mock observation: `S δ(w_true) + n` with the noise drawn from `noise_seed` (counter-based,
/// independent of the thread count). Returns `(observed, S δ(w_true))`, both m³ on `sim`'s mesh.
///
/// # Errors
/// Those of [`Posterior::new`]'s noise checks and of the forward run.
pub fn mock_observation<T: Real>(
    sim: &mut Simulation<T>,
    w_true: &[T],
    noise: &NoiseModel,
    data_smoothing: f64,
    noise_seed: u64,
) -> Result<(Vec<T>, Vec<T>)> {
    noise.validate()?;
    check_scale("data smoothing", data_smoothing)?;
    let mut state = sim.initial_conditions(w_true.to_vec())?;
    sim.run(&mut state, |_| Ok(()))?;
    let delta = sim.density(&state);
    let b = &sim.config().box_;
    let geom = MeshGeom::new(b.mesh, b.size);
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
        *e = *e * T::of(noise.variance(k2.sqrt(), vcell).sqrt());
        *d = *d * T::of((-0.5 * k2 * data_smoothing * data_smoothing).exp());
    });
    let (mut noise_x, mut signal) = (vec![T::zero(); n], vec![T::zero(); n]);
    fft.inverse(&mut ek, &mut noise_x);
    fft.inverse(&mut dk, &mut signal);
    let inv_n = T::of(1.0 / n as f64);
    signal.iter_mut().for_each(|v| *v *= inv_n);
    let observed: Vec<T> = signal.iter().zip(&noise_x).map(|(s, e)| *s + *e * inv_n).collect();
    Ok((observed, signal))
}

/// One stage of the annealing schedule: L-BFGS iterations at a fixed residual smoothing scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// Annealing scale R, Mpc/h (0: the exact posterior).
    pub smoothing: f64,
    /// L-BFGS iterations at this scale.
    pub iterations: usize,
}

/// The default annealing schedule for `iterations` in total (docs/reconstruction.md §A): the
/// residual smoothing R = (4, 2, 1, 0.5, 0) × the particle spacing, with 10 % of the iterations in
/// each of the first four stages and the rest (≥ 60 %) at R = 0, the exact posterior.
pub fn default_schedule(iterations: usize, particle_spacing: f64) -> Vec<Stage> {
    let early = iterations / 10;
    let mut v: Vec<Stage> = [4.0, 2.0, 1.0, 0.5]
        .iter()
        .map(|&f| Stage {
            smoothing: f * particle_spacing,
            iterations: early,
        })
        .filter(|s| s.iterations > 0)
        .collect();
    v.push(Stage {
        smoothing: 0.0,
        iterations: iterations - early * v.len(),
    });
    v
}

/// Progress of [`reconstruct`], passed to its callback after each iteration.
#[derive(Clone, Copy, Debug)]
pub struct ReconProgress {
    /// Stage index (0-based) in the schedule.
    pub stage: usize,
    /// The stage's annealing scale R, Mpc/h.
    pub smoothing: f64,
    /// Iteration within the stage (0 = the stage's starting point).
    pub iteration: usize,
    /// −ln posterior at the stage's annealing scale.
    pub loss: f64,
    /// ½χ² at R = 0 (the exact likelihood term) at the same point.
    pub chi2_half: f64,
    /// ½|w|² at the same point.
    pub prior: f64,
    /// ‖∂/∂w‖₂ (‖∂/∂u‖₂ with the preconditioner, [`Posterior::set_preconditioning`]).
    pub grad_norm: f64,
    /// Loss-and-gradient evaluations in this stage so far.
    pub evaluations: usize,
}

/// The result of [`reconstruct`].
#[derive(Clone, Debug)]
pub struct ReconResult<T: Real> {
    /// The MAP white noise (n³, C order).
    pub white_noise: Vec<T>,
    /// The L-BFGS result of each stage.
    pub stages: Vec<LbfgsResult>,
    /// Total loss-and-gradient evaluations.
    pub evaluations: usize,
    /// Wall-clock seconds spent in evaluations (forward + backward).
    pub seconds: f64,
}

/// Maximises the posterior of `posterior` over the white noise from `w0` by L-BFGS, stage by stage
/// through `schedule` (the annealing scale is set per stage and left at the last one). `lbfgs`
/// gives the per-stage settings (its `max_iterations` is replaced by the stage's); `progress` is
/// called after every accepted step with the stage's loss, the exact ½χ² and the prior.
///
/// # Errors
/// An empty schedule or a negative scale ([`Error::Invalid`]), `w0` of the wrong length or with
/// NaN, and any error of the simulation.
pub fn reconstruct<T: Real>(
    sim: &mut Simulation<T>,
    posterior: &mut Posterior<T>,
    w0: &[T],
    schedule: &[Stage],
    lbfgs_opts: &LbfgsOptions,
    mut progress: impl FnMut(&ReconProgress),
) -> Result<ReconResult<T>> {
    if schedule.is_empty() {
        return Err(Error::invalid("schedule", "empty", "at least one stage"));
    }
    let n = sim.config().box_.particles;
    Error::check_array("initial white noise", w0, n * n * n, "box.particles³")?;
    let gopts = GradOptions {
        cosmology: false,
        ..Default::default()
    };
    let mut x: Vec<f64> = w0.iter().map(|v| v.f64()).collect();
    let mut stages = Vec::new();
    let (mut evaluations, mut seconds) = (0usize, 0.0f64);
    for (si, st) in schedule.iter().enumerate() {
        posterior.set_anneal(st.smoothing)?;
        // The exact ½χ² of the last evaluated point, computed alongside in the same forward pass.
        let exact: Cell<(f64, f64)> = Cell::new((0.0, 0.0));
        let trial_exact: Cell<Vec<(f64, f64, f64)>> = Cell::new(Vec::new());
        let opts = LbfgsOptions {
            max_iterations: st.iterations,
            ..lbfgs_opts.clone()
        };
        // Preconditioned variables u (w = M u) when enabled: L-BFGS runs on u.
        let pc = posterior.precondition.then(|| Preconditioner::linear(sim, posterior));
        let u0 = match &pc {
            Some(p) => p.apply_inverse(&x),
            None => x.clone(),
        };
        let sim_ref = &mut *sim;
        let post: &Posterior<T> = posterior;
        let mut exact_post = None;
        if st.smoothing != 0.0 {
            let mut p = Posterior {
                geom: post.geom.clone(),
                fft: Fft3::new(post.geom.m),
                observed_k: post.observed_k.clone(),
                noise: post.noise.clone(),
                data_smoothing: post.data_smoothing,
                anneal: 0.0,
                kernel: Vec::new(),
                precondition: false,
            };
            p.build_kernel();
            exact_post = Some(p);
        }
        let f = |uv: &[f64]| -> Result<(f64, Vec<f64>)> {
            let x_owned;
            let xv: &[f64] = match &pc {
                Some(p) => {
                    x_owned = p.apply(uv);
                    &x_owned
                }
                None => uv,
            };
            let w: Vec<T> = xv.iter().map(|&v| T::of(v)).collect();
            let chi_exact = Cell::new(0.0f64);
            let loss = DensityLoss::new(|d: &[T], c: &mut [T]| {
                let v = post.chi2_half_and_cot(d, c);
                chi_exact.set(match &exact_post {
                    Some(p) => p.chi2_half_and_cot(d, &mut vec![T::zero(); d.len()]),
                    None => v,
                });
                v
            });
            let g = value_and_grad(sim_ref, &w, &Objective::final_state(&loss), &gopts)?;
            let prior: f64 = 0.5 * xv.iter().map(|v| v * v).sum::<f64>();
            let grad: Vec<f64> = g.white_noise.iter().zip(xv).map(|(a, b)| a.f64() + b).collect();
            seconds += g.forward_seconds + g.backward_seconds;
            let total = g.loss + prior;
            let mut te = trial_exact.take();
            te.push((total, chi_exact.get(), prior));
            trial_exact.set(te);
            let grad = match &pc {
                Some(p) => p.apply(&grad),
                None => grad,
            };
            Ok((total, grad))
        };
        let r = lbfgs(f, u0, &opts, |it: &Iteration<'_>| {
            // The exact χ² of the accepted point: the trial of this iteration with its loss.
            let te = trial_exact.take();
            if let Some((_, c, p)) = te.iter().rev().find(|(l, _, _)| *l == it.loss) {
                exact.set((*c, *p));
            }
            progress(&ReconProgress {
                stage: si,
                smoothing: st.smoothing,
                iteration: it.iteration,
                loss: it.loss,
                chi2_half: exact.get().0,
                prior: exact.get().1,
                grad_norm: it.grad_norm,
                evaluations: it.evaluations,
            });
            true
        })?;
        evaluations += r.evaluations;
        x = match &pc {
            Some(p) => p.apply(&r.x),
            None => r.x.clone(),
        };
        stages.push(r);
    }
    Ok(ReconResult {
        white_noise: x.into_iter().map(T::of).collect(),
        stages,
        evaluations,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pm_core::config::Config;
    use pm_core::testing::{fd_check_flat, rand_field};

    fn tiny(seed: u64) -> Simulation<f64> {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 64.0, 2);
        c.run.seed = seed;
        Simulation::<f64>::new(&c).unwrap()
    }

    /// White noise, no smoothing: ½χ² = ½ Σ_c (δ_c − δ_obs,c)²/σ² and its derivative (δ − δ_obs)/σ².
    #[test]
    fn white_chi2_is_the_plain_sum_of_squares() {
        let sim = tiny(1);
        let n = 16 * 16 * 16;
        let obs = rand_field::<f64>(n, 3);
        let delta = rand_field::<f64>(n, 4);
        let sigma = 0.7;
        let p = Posterior::new(&sim, &obs, NoiseModel::White { sigma }, 0.0).unwrap();
        let mut cot = vec![1.0; n];
        let v = p.chi2_half_and_cot(&delta, &mut cot);
        let direct: f64 = delta.iter().zip(&obs).map(|(d, o)| (d - o).powi(2)).sum::<f64>() * 0.5 / (sigma * sigma);
        assert!((v - direct).abs() <= 1e-12 * direct, "{v} vs {direct}");
        for c in 0..n {
            let want = 1.0 + (delta[c] - obs[c]) / (sigma * sigma);
            assert!((cot[c] - want).abs() < 1e-10, "cell {c}: {} vs {want} (must add)", cot[c]);
        }
    }

    /// With data smoothing, annealing and a coloured noise table, the derivative of ½χ² agrees
    /// with central finite differences (f64) along random directions.
    #[test]
    fn chi2_derivative_matches_finite_differences() {
        let sim = tiny(1);
        let n = 16 * 16 * 16;
        let obs = rand_field::<f64>(n, 5);
        let noise = NoiseModel::Power {
            k: vec![0.1, 0.5, 1.0],
            p: vec![50.0, 20.0, 80.0],
        };
        let mut p = Posterior::new(&sim, &obs, noise, 3.0).unwrap();
        p.set_anneal(5.0).unwrap();
        let delta = rand_field::<f64>(n, 6);
        let mut cot = vec![0.0; n];
        p.chi2_half_and_cot(&delta, &mut cot);
        let f = |x: &[f64]| p.chi2_half_and_cot(x, &mut vec![0.0; n]);
        for s in 0..3 {
            fd_check_flat(&f, &delta, &cot, 1e-4, 1e-7, 10 + s);
        }
    }

    /// The full −ln posterior through the simulation (adjoint + prior) against central finite
    /// differences in w, f64, at a point away from the truth.
    #[test]
    fn posterior_gradient_matches_finite_differences() {
        let mut sim = tiny(2);
        let w_true = sim.white_noise();
        let (obs, _) = mock_observation(&mut sim, &w_true, &NoiseModel::White { sigma: 0.5 }, 2.0, 9).unwrap();
        let mut post = Posterior::new(&sim, &obs, NoiseModel::White { sigma: 0.5 }, 2.0).unwrap();
        post.set_anneal(4.0).unwrap();
        let w0: Vec<f64> = w_true
            .iter()
            .zip(rand_field::<f64>(w_true.len(), 77))
            .map(|(a, b)| 0.5 * a + 0.3 * b)
            .collect();
        let (_, grad, g) = post.value_and_grad(&mut sim, &w0, &GradOptions::default()).unwrap();
        assert!(g.reversal_error < 1e-10);
        let f = |x: &[f64]| {
            let mut s = tiny(2);
            post.value_and_grad(&mut s, x, &GradOptions::default()).unwrap().0
        };
        for s in 0..2 {
            fd_check_flat(&f, &w0, &grad, 1e-5, 1e-6, 20 + s);
        }
    }

    /// The mock noise has the requested statistics: per-cell variance σ² (white), and a measured
    /// power spectrum equal to the table (coloured), within the sampling scatter of a 32³ mesh.
    #[test]
    fn mock_noise_has_the_requested_power() {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 32, 64.0, 1);
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let w = sim.white_noise();
        let sigma = 2.0;
        let (obs, sig) = mock_observation(&mut sim, &w, &NoiseModel::White { sigma }, 0.0, 4).unwrap();
        let n = obs.len() as f64;
        let var = obs.iter().zip(&sig).map(|(o, s)| (o - s).powi(2)).sum::<f64>() / n;
        // Relative standard error of a variance from 32768 Gaussian samples: sqrt(2/N) ≈ 0.8 %.
        assert!((var / (sigma * sigma) - 1.0).abs() < 0.04, "variance {var}");
        let table = NoiseModel::Power {
            k: vec![0.05, 3.0],
            p: vec![400.0, 4.0],
        };
        let (obs, sig) = mock_observation(&mut sim, &w, &table, 0.0, 5).unwrap();
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

    #[test]
    fn bad_observations_and_noise_are_refused_with_the_field_named() {
        let sim = tiny(1);
        let n = 16 * 16 * 16;
        let e = Posterior::new(&sim, &vec![0.0; n - 1], NoiseModel::White { sigma: 1.0 }, 0.0).unwrap_err();
        assert!(
            matches!(e, Error::Shape { .. }) && e.to_string().contains("observed density"),
            "{e}"
        );
        let mut obs = vec![0.0; n];
        obs[17] = f64::NAN;
        let e = Posterior::new(&sim, &obs, NoiseModel::White { sigma: 1.0 }, 0.0).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("17"), "{e}");
        for sigma in [0.0, -1.0, f64::NAN] {
            let e = Posterior::new(&sim, &vec![0.0; n], NoiseModel::White { sigma }, 0.0).unwrap_err();
            assert!(e.to_string().contains("noise sigma"), "{e}");
        }
        let bad = NoiseModel::Power {
            k: vec![0.2, 0.1],
            p: vec![1.0, 1.0],
        };
        assert!(Posterior::new(&sim, &vec![0.0; n], bad, 0.0).is_err());
        let e = Posterior::new(&sim, &vec![0.0; n], NoiseModel::White { sigma: 1.0 }, -1.0).unwrap_err();
        assert!(e.to_string().contains("data smoothing"), "{e}");
        let mut p = Posterior::new(&sim, &vec![0.0; n], NoiseModel::White { sigma: 1.0 }, 0.0).unwrap();
        assert!(p.set_anneal(f64::INFINITY).is_err());
    }

    #[test]
    fn default_schedule_ends_at_the_exact_posterior_and_spends_every_iteration() {
        for it in [1, 7, 10, 100, 333] {
            let s = default_schedule(it, 2.0);
            assert_eq!(s.iter().map(|x| x.iterations).sum::<usize>(), it);
            assert_eq!(s.last().unwrap().smoothing, 0.0);
            assert!(s.windows(2).all(|w| w[0].smoothing > w[1].smoothing));
        }
    }

    /// The preconditioner is symmetric (dot-product test), M⁻¹ inverts M, and on a single
    /// lattice Fourier mode it multiplies by m(k) = (1 + h(k))^{-1/2} of eq. X4 computed here
    /// directly from the linear power, the smoothing windows and the noise.
    #[test]
    fn preconditioner_is_symmetric_and_scales_each_mode_by_the_linear_signal_to_noise() {
        let sim = tiny(2);
        let (n, l) = (8usize, 64.0);
        let obs = rand_field::<f64>(16 * 16 * 16, 4);
        let noise = NoiseModel::White { sigma: 0.05 };
        let mut post = Posterior::new(&sim, &obs, noise, 2.0).unwrap();
        post.set_anneal(6.0).unwrap();
        let pc = Preconditioner::linear(&sim, &post);
        let (a, b) = (rand_field::<f64>(n * n * n, 7), rand_field::<f64>(n * n * n, 8));
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        let (lhs, rhs) = (dot(&pc.apply(&a), &b), dot(&a, &pc.apply(&b)));
        assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(rhs.abs()), "{lhs} vs {rhs}");
        let back = pc.apply_inverse(&pc.apply(&a));
        for (x, y) in back.iter().zip(&a) {
            assert!((x - y).abs() < 1e-12, "M⁻¹M a: {x} vs {y}");
        }
        // cos(2π·2·iy/n): |k| = 2·2π/L.
        let v: Vec<f64> = (0..n * n * n)
            .map(|i| (2.0 * std::f64::consts::PI * 2.0 * ((i / n) % n) as f64 / n as f64).cos())
            .collect();
        let k = 2.0 * 2.0 * std::f64::consts::PI / l;
        let vcell = (l / 16.0f64).powi(3);
        let h = sim.p_linear(k, sim.config().time.a_stop) * (-k * k * 4.0).exp() * (-k * k * 36.0).exp() / (0.05 * 0.05 * vcell);
        let want = 1.0 / (1.0 + h).sqrt();
        assert!(h > 1.0, "the test mode should be signal-dominated (h = {h})");
        let mv = pc.apply(&v);
        for (x, y) in mv.iter().zip(&v) {
            assert!((x - want * y).abs() < 1e-12, "M cos: {x} vs {}", want * y);
        }
    }

    /// The preconditioned objective F(u) = −ln p(M u) has gradient M ∂/∂w (what `reconstruct`
    /// hands L-BFGS): central finite differences in f64.
    #[test]
    fn preconditioned_gradient_matches_finite_differences() {
        let mut sim = tiny(4);
        let w_true = sim.white_noise();
        let noise = NoiseModel::White { sigma: 0.2 };
        let (obs, _) = mock_observation(&mut sim, &w_true, &noise, 0.0, 2).unwrap();
        let post = Posterior::new(&sim, &obs, noise, 0.0).unwrap();
        let pc = Preconditioner::linear(&sim, &post);
        let u: Vec<f64> = rand_field::<f64>(w_true.len(), 9).iter().map(|v| 0.5 * v).collect();
        let gopts = GradOptions {
            cosmology: false,
            ..Default::default()
        };
        let (_, gw, _) = post.value_and_grad(&mut sim, &pc.apply(&u), &gopts).unwrap();
        let gu = pc.apply(&gw);
        let sim_cell = std::cell::RefCell::new(sim);
        let f = |x: &[f64]| post.value_and_grad(&mut sim_cell.borrow_mut(), &pc.apply(x), &gopts).unwrap().0;
        for s in 0..2 {
            fd_check_flat(&f, &u, &gu, 1e-6, 1e-6, 40 + s);
        }
    }

    /// A short annealed reconstruction on a tiny noisy mock: every stage's loss decreases
    /// monotonically, and the result is closer to the truth than the start (w = 0) on the
    /// large-scale modes.
    #[test]
    fn reconstruct_decreases_the_loss_in_every_stage() {
        for precondition in [false, true] {
            reconstruct_tiny(precondition);
        }
    }

    fn reconstruct_tiny(precondition: bool) {
        let mut sim = tiny(3);
        let w_true = sim.white_noise();
        let noise = NoiseModel::White { sigma: 0.3 };
        let (obs, _) = mock_observation(&mut sim, &w_true, &noise, 0.0, 1).unwrap();
        let mut post = Posterior::new(&sim, &obs, noise, 0.0).unwrap();
        post.set_preconditioning(precondition);
        let schedule = [
            Stage {
                smoothing: 8.0,
                iterations: 5,
            },
            Stage {
                smoothing: 0.0,
                iterations: 10,
            },
        ];
        let mut seen = 0;
        let r = reconstruct(
            &mut sim,
            &mut post,
            &vec![0.0; w_true.len()],
            &schedule,
            &LbfgsOptions::default(),
            |p| {
                assert!(p.chi2_half.is_finite() && p.prior >= 0.0);
                seen += 1;
            },
        )
        .unwrap();
        assert_eq!(seen, r.stages.iter().map(|s| s.iterations + 1).sum::<usize>());
        for s in &r.stages {
            assert!(s.history.windows(2).all(|w| w[1] < w[0]), "{:?}", s.history);
        }
        // Correlation of the reconstructed and true white noise over all modes.
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let corr = dot(&r.white_noise, &w_true) / (dot(&r.white_noise, &r.white_noise) * dot(&w_true, &w_true)).sqrt();
        assert!(corr > 0.5, "preconditioning {precondition}: correlation with the truth {corr}");
    }
}
