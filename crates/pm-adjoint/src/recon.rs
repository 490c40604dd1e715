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
//!
//! **Joint fit of (Ω_m, σ₈)** (docs/reconstruction.md §J): forward
//! `J = ½χ² + ½|w|² + ½ Σ_k ln(1 + h(k; θ))` (eq. J1; calibrated weights: `½ Σ_k f(k) ln h`,
//! eq. J6) over w = B(θ) M u (eq. J4); adjoint `∂J/∂u = M B ∂J/∂w` and
//! `∂J/∂θ|_u = ∂J/∂θ|_w − ½ Σ_k Re[ĝ* ŵ]/n³ ∂ln P_L/∂θ` (eq. J5), with ∂J/∂θ|_w from the adjoint's
//! cosmology gradient and the forward-mode tangents of the Laplace term (eq. J2).

use crate::grad::{value_and_grad, GradOptions, Gradients};
use crate::objective::Objective;
use crate::optim::{lbfgs, Iteration, LbfgsOptions, LbfgsResult};
use pm_core::cic::Cic;
use pm_core::config::Config;
use pm_core::error::{Error, Result};
use pm_core::fft::Fft3;
use pm_core::float::{Real, C};
use pm_core::loss::DensityLoss;
use pm_core::mesh::MeshGeom;
use pm_core::noise::gaussian;
use pm_core::power::cic_window;
use pm_core::sim::{Simulation, State};
use pm_core::tangent::Param;
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

/// The reconstruction posterior of one simulation's white noise given data on a mesh of m_d³
/// cells (the force mesh, or any other, [`Posterior::on_mesh`]; see the module docs).
pub struct Posterior<T: Real> {
    /// The data mesh.
    geom: MeshGeom,
    /// CIC between the particle lattice and the data mesh.
    cic: Cic,
    fft: Fft3<T>,
    /// DFT of δ_obs (half spectrum).
    observed_k: Vec<C<T>>,
    noise: NoiseModel,
    data_smoothing: f64,
    anneal: f64,
    /// S(k)·W_R²(k)/σ²(k)·S(k)… per half-spectrum mode: `kernel[i] = (S(k), W_R²(k)/σ²(k))`.
    kernel: Vec<(f64, f64)>,
    /// How [`reconstruct`] preconditions the white noise ([`Preconditioner`]).
    precondition: Preconditioning,
    /// Starting (Ω_m, σ₈) of the joint cosmology fit, if any.
    fit: Option<[f64; 2]>,
    /// Calibrated weights of the Laplace term per radial bin of the lattice, if set.
    laplace_weights: Option<Vec<f64>>,
}

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

/// Checks a data mesh size (cells per side).
fn check_data_mesh(m: usize) -> Result<()> {
    if !(2..=4096).contains(&m) {
        return Err(Error::invalid("data mesh", m, "2 to 4096 cells per side"));
    }
    Ok(())
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
    /// [`Posterior::on_mesh`] takes data on another mesh.
    ///
    /// # Errors
    /// [`Error::Shape`] if `observed` does not have m³ values, [`Error::NonFinite`] for NaN/Inf in
    /// it, [`Error::Invalid`] for σ ≤ 0, a bad noise table or a negative smoothing scale.
    pub fn new(sim: &Simulation<T>, observed: &[T], noise: NoiseModel, data_smoothing: f64) -> Result<Self> {
        Self::on_mesh(sim, sim.config().box_.mesh, observed, noise, data_smoothing)
    }

    /// The posterior of white noise given `observed`, the CIC density contrast of the final
    /// particles on a data mesh of `data_mesh`³ cells spanning the box (C order, cell-centred
    /// like the force mesh), plus noise: as [`Posterior::new`], with the model density painted
    /// on that mesh instead of the force mesh (docs/reconstruction.md eq. X1). The data mesh need
    /// not be a multiple of the particle grid.
    ///
    /// # Errors
    /// As [`Posterior::new`], and [`Error::Invalid`] for `data_mesh` < 2 or > 4096.
    pub fn on_mesh(sim: &Simulation<T>, data_mesh: usize, observed: &[T], noise: NoiseModel, data_smoothing: f64) -> Result<Self> {
        check_data_mesh(data_mesh)?;
        let b = &sim.config().box_;
        let geom = MeshGeom::new(data_mesh, b.size);
        Error::check_array("observed density", observed, geom.n_cells(), "(data mesh)³")?;
        noise.validate()?;
        check_scale("data smoothing", data_smoothing)?;
        let fft = Fft3::new(geom.m);
        let mut observed_k = vec![C::<T>::default(); fft.complex_len()];
        fft.forward(&mut observed.to_vec(), &mut observed_k);
        let mut p = Posterior {
            cic: Cic::new(b.particles, data_mesh, b.size),
            geom,
            fft,
            observed_k,
            noise,
            data_smoothing,
            anneal: 0.0,
            kernel: Vec::new(),
            precondition: Preconditioning::Off,
            fit: None,
            laplace_weights: None,
        };
        p.build_kernel();
        Ok(p)
    }

    /// The same posterior at annealing scale `anneal` (Mpc/h), without preconditioning, cosmology
    /// fit or Laplace weights.
    fn at_anneal(&self, anneal: f64) -> Self {
        let mut p = Posterior {
            geom: self.geom.clone(),
            cic: self.cic.clone(),
            fft: Fft3::new(self.geom.m),
            observed_k: self.observed_k.clone(),
            noise: self.noise.clone(),
            data_smoothing: self.data_smoothing,
            anneal,
            kernel: Vec::new(),
            precondition: Preconditioning::Off,
            fit: None,
            laplace_weights: None,
        };
        p.build_kernel();
        p
    }

    /// Cells per side of the data mesh.
    pub fn data_mesh(&self) -> usize {
        self.geom.m
    }

    /// The CIC density contrast of `state`'s particles on the data mesh (m_d³, C order, mean 0):
    /// the model density δ(w) of eq. X1 before the smoothing S.
    pub fn density(&self, state: &State<T>) -> Vec<T> {
        self.cic.density(&state.disp)
    }

    /// A loss of the final state through the model density on the data mesh
    /// ([`DensityLoss::on_mesh`]): `f(δ, δ̄)` returns L(δ) and adds ∂L/∂δ to δ̄.
    fn data_loss<F: Fn(&[T], &mut [T]) -> f64>(&self, f: F) -> DensityLoss<F> {
        DensityLoss::on_mesh(self.cic.clone(), f)
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

    /// Makes [`reconstruct`] optimise over u with w = M u, M the [`Preconditioner`] of each
    /// stage chosen by `p` (docs/reconstruction.md eqs. X5–X6), instead of over w
    /// ([`Preconditioning::Off`], the default). The posterior itself (value, gradient in w)
    /// does not change.
    pub fn set_preconditioning(&mut self, p: Preconditioning) {
        self.precondition = p;
    }

    /// The preconditioning [`reconstruct`] uses.
    pub fn preconditioning(&self) -> Preconditioning {
        self.precondition
    }

    /// Fits (Ω_m, σ₈) jointly with the white noise in [`reconstruct`], starting from
    /// `start = [Ω_m, σ₈]` (`None`: the cosmology of the simulation is fixed, the default). The
    /// objective gains the linear-theory Laplace term of [`Posterior::laplace_term`]
    /// (docs/reconstruction.md eq. J1).
    pub fn set_fit_cosmology(&mut self, start: Option<[f64; 2]>) {
        self.fit = start;
    }

    /// Replaces the linear-theory weights h/(1+h) of the Laplace term by calibrated ones, one per
    /// radial bin j = |ν|² of the white-noise lattice (eq. J6; from
    /// [`calibrate_laplace_weights`]); `None` restores eq. J1.
    ///
    /// # Errors
    /// Weights that are not finite and ≥ 0.
    pub fn set_laplace_weights(&mut self, weights: Option<Vec<f64>>) -> Result<()> {
        if let Some(w) = &weights {
            Error::check_finite("Laplace weights", w)?;
            if let Some(i) = w.iter().position(|v| *v < 0.0) {
                return Err(Error::invalid(
                    "Laplace weights",
                    w[i],
                    "weights ≥ 0 (fractions of the prior power)",
                ));
            }
        }
        self.laplace_weights = weights;
        Ok(())
    }

    /// The starting (Ω_m, σ₈) of the joint fit, if one is set ([`Posterior::set_fit_cosmology`]).
    pub fn fit_cosmology(&self) -> Option<[f64; 2]> {
        self.fit
    }

    /// S²(k) W_R²(k) / (σ²(k) V_cell) at annealing scale `anneal` (Mpc/h), in (Mpc/h)⁻³: the
    /// factor that turns the linear power P_L(k, a_stop) into the signal-to-noise h(k) of eq. X4.
    fn snr_per_power(&self, k: f64, anneal: f64) -> f64 {
        let vcell = self.geom.cell().powi(3);
        let (rd, ra) = (self.data_smoothing, anneal);
        (-k * k * (rd * rd + ra * ra)).exp() / (self.noise.variance(k, vcell) * vcell)
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
            .for_each(|(d, &(s, _))| *d *= T::of(s));
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
        let loss = self.data_loss(|d: &[T], c: &mut [T]| self.chi2_half_and_cot(d, c));
        let g = value_and_grad(sim, w, &Objective::final_state(&loss), opts)?;
        let prior: f64 = 0.5 * w.iter().map(|v| v.f64() * v.f64()).sum::<f64>();
        let grad: Vec<f64> = g.white_noise.iter().zip(w).map(|(a, b)| a.f64() + b.f64()).collect();
        Ok((g.loss + prior, grad, g))
    }
}

/// How [`reconstruct`] preconditions the white noise (w = M u, M Fourier-diagonal, built at the
/// start of every stage; docs/reconstruction.md §X).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preconditioning {
    /// Optimise over w itself.
    #[default]
    Off,
    /// [`Preconditioner::linear`]: the linear-theory signal-to-noise per mode (eq. X5).
    Linear,
    /// [`Preconditioner::measured`]: the Gauss–Newton curvature measured at the stage's
    /// starting point, floored by the linear theory (eq. X6); one adjoint run per stage.
    Measured,
}

/// A Fourier-diagonal change of variables on the white-noise lattice (n³, C order),
/// `w = M u`, `M = F⁻¹ diag(m(k)) F` with `m(k) > 0` real and even in k, so M is symmetric
/// positive definite and the gradient transforms as `∂/∂u = M ∂/∂w` (docs/reconstruction.md
/// eq. X5).
///
/// [`Preconditioner::linear`] takes `m(k) = (1 + h(k))^{-1/2}`, with h(k) the linear-theory
/// curvature of ½χ² per unit-variance white-noise mode of the exact posterior, the
/// signal-to-noise ratio `h(k) = P_L(k, a_stop) S²(k) / (σ²(k) V_cell)` (eq. X4): in u the Hessian of
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
    /// The linear-theory preconditioner of `posterior` on `sim`'s white-noise lattice (eq.
    /// X4–X5), with h(k) of the exact posterior (R = 0) whatever the current annealing scale:
    /// with the stage's window W_R in h, the small-scale modes (where W_R → 0) would get m → 1
    /// and become the cheapest directions for L-BFGS, which then fits the smoothed density with
    /// them through mode coupling (measured: the run diverges, docs/reconstruction.md §X).
    pub fn linear<T: Real>(sim: &Simulation<T>, posterior: &Posterior<T>) -> Self {
        Self::floored(sim, posterior, |_| 0.0)
    }

    /// `m(k) = (1 + max(c(k), h(k)))^{-1/2}` (m(0) = 1) with h(k) of eq. X4 for the exact
    /// posterior and a curvature c(k) ≥ 0 (0: linear theory, eq. X5; measured: eq. X6).
    fn floored<T: Real>(sim: &Simulation<T>, posterior: &Posterior<T>, c: impl Fn(f64) -> f64 + Sync) -> Self {
        let a = sim.config().time.a_stop;
        Self::from_fn(sim.lattice(), |k| {
            if k == 0.0 {
                return 1.0;
            }
            let h = sim.p_linear(k, a) * posterior.snr_per_power(k, 0.0);
            1.0 / (1.0 + c(k).max(h)).sqrt()
        })
    }

    /// The preconditioner from the curvature of ½χ² measured at `w` (docs/reconstruction.md eq.
    /// X6): `m(k) = (1 + max(c(k), h(k)))^{-1/2}`, with c(k) the Gauss–Newton curvature of the
    /// posterior's likelihood term at its current annealing scale per unit-variance white-noise
    /// mode, averaged over the shell of width k_f around |k|, and h(k) the linear-theory
    /// curvature of the exact posterior ([`Preconditioner::linear`]) as a floor.
    ///
    /// c comes from one adjoint run: with ξ unit Gaussian on the mesh (counter-based, fixed
    /// seed) and z = (S C_R⁻¹ S)^{1/2} ξ, g = Jᵀ z has E[g gᵀ] = Jᵀ S C_R⁻¹ S J, the Gauss–Newton
    /// Hessian, so |ĝ(k)|²/n³ estimates its diagonal in the Fourier basis. Beyond the linear
    /// regime c exceeds h by orders of magnitude on large scales (the data fix the displacement
    /// of the small-scale structure there) and falls below it near the particle Nyquist
    /// frequency; this preconditioner equalises that. The floor keeps the modes that the
    /// stage's window hides from being the cheapest directions for L-BFGS (measured: without
    /// it the run diverges, as with the window in h, docs/reconstruction.md §X).
    ///
    /// # Errors
    /// Those of the forward and adjoint runs.
    pub fn measured<T: Real>(sim: &mut Simulation<T>, posterior: &Posterior<T>, w: &[f64]) -> Result<Self> {
        let c = measured_curvature(sim, posterior, w)?;
        let kf = sim.lattice().kf();
        Ok(Self::floored(sim, posterior, |k| c[(k / kf).round() as usize]))
    }

    /// The preconditioner with filter `m(|k|)` on the lattice `geom` (`m` must be > 0 and
    /// finite; k in h/Mpc).
    pub(crate) fn from_fn(geom: &MeshGeom, m_of: impl Fn(f64) -> f64 + Sync) -> Self {
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
            *z *= if inverse { inv_n / m } else { m * inv_n };
        });
        let mut out = vec![0.0; n];
        self.fft.inverse(&mut vk, &mut out);
        out
    }

    /// Per radial bin j = |ν|² of `geom` (the lattice of this filter): Σ_{|ν|²=j} Re[â*(k) b̂(k)]/n³
    /// over the full spectrum, so that the bins sum to Σ_x a(x) b(x).
    fn cross_bins(&self, geom: &MeshGeom, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut ak = vec![C::<f64>::default(); self.fft.complex_len()];
        let mut bk = vec![C::<f64>::default(); self.fft.complex_len()];
        self.fft.forward(&mut a.to_vec(), &mut ak);
        self.fft.forward(&mut b.to_vec(), &mut bk);
        let n3 = a.len() as f64;
        geom.radial_sum(|i| (ak[i].re * bk[i].re + ak[i].im * bk[i].im) / n3)
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

/// The Gauss–Newton curvature c_s of `posterior`'s ½χ² at `w` per unit-variance white-noise mode,
/// averaged over the modes of each shell s = round(|k|/k_f) of the lattice (eq. X6; index = s),
/// from one adjoint run with a random data-space probe ([`Preconditioner::measured`]).
pub(crate) fn measured_curvature<T: Real>(sim: &mut Simulation<T>, posterior: &Posterior<T>, w: &[f64]) -> Result<Vec<f64>> {
    let (g, fft) = (&posterior.geom, &posterior.fft);
    let nm = g.n_cells();
    // z = (S C_R⁻¹ S)^{1/2} ξ: the quadratic form of ½χ² is (1/m³) Σ_k S² W_R²/σ² |δ̃_k|² (eq. X2).
    let mut xi: Vec<T> = (0..nm as u64).into_par_iter().map(|i| T::of(gaussian(PROBE_SEED, i))).collect();
    let mut xk = vec![C::<T>::default(); fft.complex_len()];
    fft.forward(&mut xi, &mut xk);
    xk.par_iter_mut()
        .zip(posterior.kernel.par_iter())
        .for_each(|(z, &(s, kern))| *z *= T::of(s * kern.sqrt() / nm as f64));
    let mut z = vec![T::zero(); nm];
    fft.inverse(&mut xk, &mut z);
    let loss = posterior.data_loss(|d: &[T], c: &mut [T]| {
        c.iter_mut().zip(&z).for_each(|(a, b)| *a += *b);
        d.iter().zip(&z).map(|(a, b)| a.f64() * b.f64()).sum::<f64>()
    });
    let wt: Vec<T> = w.iter().map(|&v| T::of(v)).collect();
    let jz = value_and_grad(sim, &wt, &Objective::final_state(&loss), &GradOptions::default())?;
    // Per shell of width k_f: the mean of |ĝ(k)|²/n³ over its modes.
    let lat = sim.lattice();
    let n3 = lat.n_cells() as f64;
    let fft_w = Fft3::<f64>::new(lat.m);
    let mut gk = vec![C::<f64>::default(); fft_w.complex_len()];
    fft_w.forward(&mut jz.white_noise.iter().map(|v| v.f64()).collect::<Vec<f64>>(), &mut gk);
    let sum = shell_sums(&lat.radial_sum(|i| gk[i].norm_sqr() / n3));
    let count = shell_sums(&lat.radial_sum(|_| 1.0));
    Ok(sum.iter().zip(&count).map(|(s, n)| if *n > 0.0 { s / n } else { 0.0 }).collect())
}

/// Sums the radial bins j = |ν|² of [`MeshGeom::radial_sum`] into shells s = round(sqrt(j)) of
/// width k_f (index s; the k = 0 bin is left out).
pub(crate) fn shell_sums(bins: &[f64]) -> Vec<f64> {
    let shell = |j: usize| (j as f64).sqrt().round() as usize;
    let mut out = vec![0.0; shell(bins.len() - 1) + 1];
    for (j, b) in bins.iter().enumerate().skip(1) {
        out[shell(j)] += b;
    }
    out
}

/// Seed of the data-space probe of [`Preconditioner::measured`].
const PROBE_SEED: u64 = 0x70726f6265; // "probe"

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

/// One stage of the annealing schedule: L-BFGS iterations at a fixed residual smoothing scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// Annealing scale R, Mpc/h (0: the exact posterior).
    pub smoothing: f64,
    /// L-BFGS iterations at this scale.
    pub iterations: usize,
}

/// The default annealing schedule for `iterations` in total (docs/reconstruction.md §A): the
/// residual smoothing R = (4, 2, 1, ½) × the particle spacing with [`DEFAULT_STAGE_SHARES`] of the
/// iterations (10 %, 10 %, 30 %, 30 %), then the rest (≥ 20 %) at R = 0, the exact posterior.
/// Stages that would get no iteration are left out.
pub fn default_schedule(iterations: usize, particle_spacing: f64) -> Vec<Stage> {
    let mut v: Vec<Stage> = DEFAULT_STAGE_SHARES
        .iter()
        .map(|&(f, share)| Stage {
            smoothing: f * particle_spacing,
            iterations: iterations * share / 100,
        })
        .filter(|s| s.iterations > 0)
        .collect();
    let used: usize = v.iter().map(|s| s.iterations).sum();
    v.push(Stage {
        smoothing: 0.0,
        iterations: iterations - used,
    });
    v
}

/// The annealed stages of [`default_schedule`]: (R in particle spacings, per cent of the
/// iterations). Measured on a 32³ mock (docs/reconstruction.md §A): moving iterations from the
/// R = 0 stage to R = 1 and ½ spacings raises r(k) at k = 0.5–1 h/Mpc by 0.08–0.18 and lowers the
/// final exact χ².
pub const DEFAULT_STAGE_SHARES: [(f64, usize); 4] = [(4.0, 10), (2.0, 10), (1.0, 30), (0.5, 30)];

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
    /// (Ω_m, σ₈) at the same point, when fitting the cosmology.
    pub theta: Option<[f64; 2]>,
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
    /// The cosmology fit ([`Posterior::set_fit_cosmology`]), if one was made.
    pub cosmology: Option<CosmologyFit>,
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
struct AtTheta {
    theta: [f64; 2],
    /// The Laplace term at the stage's annealing scale.
    laplace: LaplaceTerm,
    /// ∂ln P_L(k_j, a_stop)/∂θ per radial bin of the lattice.
    dlnp: Vec<[f64; 2]>,
    /// B(θ) of eq. J4.
    b: Preconditioner,
}

/// The free cosmology of a stage of [`reconstruct`] (docs/reconstruction.md §J): θ = θ_s + s ⊙ φ
/// with θ_s the stage's starting cosmology and s the Fisher standard deviations there, and the
/// white noise w = B(θ) w̃ with B(θ) = F⁻¹ diag(sqrt(P_L(k; θ_s)/P_L(k; θ))) F (eq. J4), so that
/// at fixed w̃ the linear density, and hence the model density, hardly moves with θ.
struct FreeCosmology<T: Real> {
    base: Config,
    theta_s: [f64; 2],
    scale: [f64; 2],
    /// P_L(k_j, a_stop; θ_s) per radial bin of the lattice.
    p_ref: Vec<f64>,
    /// The cosmology the simulation is at, with what depends on it.
    current: Option<AtTheta>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Real> FreeCosmology<T> {
    fn new(sim: &Simulation<T>, post: &Posterior<T>, theta_s: [f64; 2]) -> Result<Self> {
        let f = post.laplace_term(sim, 0.0)?.fisher;
        let scale = [1.0 / f[0][0].sqrt(), 1.0 / f[1][1].sqrt()];
        if scale.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::invalid(
                "cosmology fit",
                format!("Fisher matrix {f:?} at the start"),
                "data with signal-to-noise in some mode (lower the noise)",
            ));
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

    fn theta(&self, phi: &[f64]) -> [f64; 2] {
        [self.theta_s[0] + self.scale[0] * phi[0], self.theta_s[1] + self.scale[1] * phi[1]]
    }

    /// Moves `sim` to θ (a new simulation from the configuration) and caches the Laplace term
    /// at `anneal`, the per-bin ∂ln P_L/∂θ and B(θ). `Ok(false)`: θ outside the valid range.
    fn move_to(&mut self, sim: &mut Simulation<T>, post: &Posterior<T>, theta: [f64; 2], anneal: f64) -> Result<bool> {
        if self.current.as_ref().map(|c| c.theta) == Some(theta) {
            return Ok(true);
        }
        self.current = None;
        match config_at(&self.base, theta).and_then(|c| Simulation::new(&c)) {
            Ok(s) => *sim = s,
            Err(_) => return Ok(false),
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

/// The objective of one stage of [`reconstruct`] over x = [u (n³), φ (2, free cosmology only)]:
/// w = B(θ) M u (M the preconditioner, B of [`FreeCosmology`]; each the identity when off) and
/// −ln p(w | δ_obs) at the stage's annealing scale, plus the Laplace term with a free cosmology.
struct StageObjective<'a, T: Real> {
    sim: &'a mut Simulation<T>,
    post: &'a Posterior<T>,
    exact_post: Option<Posterior<T>>,
    pc: Option<Preconditioner>,
    free: Option<FreeCosmology<T>>,
    nw: usize,
    seconds: f64,
    /// (loss, exact ½χ², prior) of every evaluation, for the progress report.
    trials: Vec<(f64, f64, f64)>,
}

impl<T: Real> StageObjective<'_, T> {
    fn theta(&self, x: &[f64]) -> Option<[f64; 2]> {
        self.free.as_ref().map(|f| f.theta(&x[self.nw..]))
    }

    /// w = B(θ) M u of `x` (`sim` must be at θ(x), as after [`StageObjective::eval`]).
    fn white_noise(&self, x: &[f64]) -> Vec<f64> {
        let mut w = match &self.pc {
            Some(p) => p.apply(&x[..self.nw]),
            None => x[..self.nw].to_vec(),
        };
        if let Some(at) = self.free.as_ref().and_then(|f| f.current.as_ref()) {
            w = at.b.apply(&w);
        }
        w
    }

    fn eval(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let anneal = self.post.anneal;
        if let Some(theta) = self.theta(x) {
            let free = self.free.as_mut().expect("free cosmology");
            if !free.move_to(self.sim, self.post, theta, anneal)? {
                // Outside the valid parameter range: a step too long for the line search.
                return Ok((f64::INFINITY, vec![0.0; x.len()]));
            }
        }
        let wv = self.white_noise(x);
        let w: Vec<T> = wv.iter().map(|&v| T::of(v)).collect();
        let chi_exact = Cell::new(0.0f64);
        let (post, exact_post) = (self.post, &self.exact_post);
        let loss = post.data_loss(|d: &[T], c: &mut [T]| {
            let v = post.chi2_half_and_cot(d, c);
            chi_exact.set(match exact_post {
                Some(p) => p.chi2_half_and_cot(d, &mut vec![T::zero(); d.len()]),
                None => v,
            });
            v
        });
        let gopts = GradOptions {
            cosmology: self.free.is_some(),
            ..Default::default()
        };
        let g = value_and_grad(self.sim, &w, &Objective::final_state(&loss), &gopts)?;
        self.seconds += g.forward_seconds + g.backward_seconds;
        let prior: f64 = 0.5 * wv.iter().map(|v| v * v).sum::<f64>();
        // ∂/∂w of −ln p.
        let gw: Vec<f64> = g.white_noise.iter().zip(&wv).map(|(a, b)| a.f64() + b).collect();
        let mut total = g.loss + prior;
        let mut grad_phi = None;
        if let (Some(free), Some(c)) = (&self.free, &g.cosmology) {
            let AtTheta { laplace: lap, dlnp, b, .. } = free.current.as_ref().expect("moved to θ");
            total += lap.value;
            // eq. J5: ∂/∂θ at fixed u = ∂/∂θ at fixed w + ⟨∂/∂w, ∂B/∂θ M u⟩, with
            // ∂ln B(k)/∂θ = −½ ∂ln P_L(k)/∂θ (B, M Fourier-diagonal).
            let cross = b.cross_bins(self.sim.lattice(), &gw, &wv);
            let mut gt = [c.omega_m + lap.grad[0], c.sigma8.expect("σ₈-normalised run") + lap.grad[1]];
            for (cj, d) in cross.iter().zip(dlnp) {
                gt[0] -= 0.5 * cj * d[0];
                gt[1] -= 0.5 * cj * d[1];
            }
            grad_phi = Some([free.scale[0] * gt[0], free.scale[1] * gt[1]]);
            // ∂/∂(M u) = B ∂/∂w.
            let gu = b.apply(&gw);
            return self.finish(total, gu, grad_phi, chi_exact.get(), prior);
        }
        self.finish(total, gw, grad_phi, chi_exact.get(), prior)
    }

    fn finish(&mut self, total: f64, g_mu: Vec<f64>, grad_phi: Option<[f64; 2]>, chi: f64, prior: f64) -> Result<(f64, Vec<f64>)> {
        self.trials.push((total, chi, prior));
        let mut grad = match &self.pc {
            Some(p) => p.apply(&g_mu),
            None => g_mu,
        };
        if let Some(gp) = grad_phi {
            grad.extend(gp);
        }
        Ok((total, grad))
    }
}

/// Maximises the posterior of `posterior` over the white noise from `w0` by L-BFGS, stage by stage
/// through `schedule` (the annealing scale is set per stage and left at the last one). `lbfgs`
/// gives the per-stage settings (its `max_iterations` is replaced by the stage's); `progress` is
/// called after every accepted step with the stage's loss, the exact ½χ² and the prior.
///
/// With [`Posterior::set_fit_cosmology`], the cosmology stays at the starting (Ω_m, σ₈) through
/// the annealing stages and is fitted jointly with the white noise in the last stage, with the
/// Laplace term added to the loss (docs/reconstruction.md §J): the simulation is rebuilt from
/// its configuration at every trial (Ω_m, σ₈) (an installed force correction is not carried
/// over), `sim` is left at the estimate, and [`ReconResult::cosmology`] holds the estimate and
/// its Laplace covariance. The parameters enter L-BFGS in units of their Fisher standard
/// deviations; a trial outside the valid range (e.g. Ω_m ≤ Ω_b, σ₈ ≤ 0) counts as a step too
/// long.
///
/// # Errors
/// An empty schedule or a negative scale ([`Error::Invalid`]), `w0` of the wrong length or with
/// NaN, the cosmology fit with a configuration not normalised by σ₈, a starting cosmology the
/// simulation refuses, a Fisher matrix that is not positive definite at the estimate, and any
/// error of the simulation.
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
    let nw = n * n * n;
    Error::check_array("initial white noise", w0, nw, "box.particles³")?;
    let fit = posterior.fit;
    if let Some(start) = fit {
        if sim.config().cosmology.sigma8.is_none() {
            return Err(Error::invalid(
                "cosmology.sigma8",
                "unset",
                "a σ₈ normalisation (the cosmology fit varies Ω_m and σ₈)",
            ));
        }
        *sim = Simulation::new(&config_at(sim.config(), start)?)?;
    }
    let mut theta = fit;
    let mut w: Vec<f64> = w0.iter().map(|v| v.f64()).collect();
    let mut stages = Vec::new();
    let (mut evaluations, mut seconds) = (0usize, 0.0f64);
    for (si, st) in schedule.iter().enumerate() {
        posterior.set_anneal(st.smoothing)?;
        let opts = LbfgsOptions {
            max_iterations: st.iterations,
            ..lbfgs_opts.clone()
        };
        // The cosmology is free in the last stage only (docs/reconstruction.md §J).
        let free = match theta {
            Some(t) if si + 1 == schedule.len() => Some(FreeCosmology::new(sim, posterior, t)?),
            _ => None,
        };
        // Preconditioned variables u (w = M u) when enabled, M built at the stage's starting
        // point and cosmology and fixed through the stage.
        let pc = match posterior.precondition {
            Preconditioning::Off => None,
            Preconditioning::Linear => Some(Preconditioner::linear(sim, posterior)),
            Preconditioning::Measured => Some(Preconditioner::measured(sim, posterior, &w)?),
        };
        let mut u0 = match &pc {
            Some(p) => p.apply_inverse(&w),
            None => w.clone(),
        };
        if free.is_some() {
            u0.extend([0.0, 0.0]);
        }
        let post: &Posterior<T> = posterior;
        let exact_post = (st.smoothing != 0.0).then(|| post.at_anneal(0.0));
        let obj = std::cell::RefCell::new(StageObjective {
            sim: &mut *sim,
            post,
            exact_post,
            pc,
            free,
            nw,
            seconds: 0.0,
            trials: Vec::new(),
        });
        let mut exact = (0.0, 0.0);
        let r = lbfgs(
            |x: &[f64]| obj.borrow_mut().eval(x),
            u0,
            &opts,
            |it: &Iteration<'_>| {
                let mut o = obj.borrow_mut();
                // The exact χ² of the accepted point: the trial of this iteration with its loss.
                if let Some((_, c, p)) = o.trials.iter().rev().find(|(l, _, _)| *l == it.loss) {
                    exact = (*c, *p);
                }
                o.trials.clear();
                progress(&ReconProgress {
                    stage: si,
                    smoothing: st.smoothing,
                    iteration: it.iteration,
                    loss: it.loss,
                    chi2_half: exact.0,
                    prior: exact.1,
                    grad_norm: it.grad_norm,
                    evaluations: it.evaluations,
                    theta: o.theta(it.x).or(theta),
                });
                true
            },
        )?;
        let mut o = obj.into_inner();
        if let Some(t) = o.theta(&r.x) {
            let free = o.free.as_mut().expect("free cosmology");
            if !free.move_to(o.sim, o.post, t, st.smoothing)? {
                return Err(Error::invalid(
                    "cosmology fit",
                    format!("{t:?}"),
                    "an accepted point in the valid range",
                ));
            }
            theta = Some(t);
        }
        w = o.white_noise(&r.x);
        seconds += o.seconds;
        evaluations += r.evaluations;
        stages.push(r);
    }
    let mut cosmology = None;
    if let (Some(start), Some(t)) = (fit, theta) {
        let f = posterior.laplace_term(sim, 0.0)?.fisher;
        let det = f[0][0] * f[1][1] - f[0][1] * f[1][0];
        if !(det > 0.0 && f[0][0] > 0.0) {
            return Err(Error::invalid(
                "cosmology fit",
                format!("Fisher matrix {f:?} at the estimate"),
                "a positive-definite Fisher matrix (data with signal-to-noise in some mode)",
            ));
        }
        let covariance = [[f[1][1] / det, -f[0][1] / det], [-f[1][0] / det, f[0][0] / det]];
        cosmology = Some(CosmologyFit {
            start,
            theta: t,
            covariance,
        });
    }
    Ok(ReconResult {
        white_noise: w.into_iter().map(T::of).collect(),
        stages,
        evaluations,
        seconds,
        cosmology,
    })
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
    let r = reconstruct(sim, &mut post, &vec![T::zero(); n * n * n], schedule, lbfgs_opts, progress)?;
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
    let ns = shell(p_rec.len() - 1) + 1;
    let (mut sr, mut st) = (vec![0.0; ns], vec![0.0; ns]);
    for j in 1..p_rec.len() {
        sr[shell(j)] += p_rec[j];
        st[shell(j)] += p_true[j];
    }
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
        let md = sim.config().box_.mesh;
        let (obs, _) = mock_observation(&mut sim, &w_true, &NoiseModel::White { sigma: 0.5 }, 2.0, md, 9).unwrap();
        let mut post = Posterior::new(&sim, &obs, NoiseModel::White { sigma: 0.5 }, 2.0).unwrap();
        post.set_anneal(4.0).unwrap();
        gradient_matches_differences(&post, 2, &w_true, 20);
    }

    /// Checks ∇(−ln p) of `post` on `tiny(sim_seed)` against central differences (f64, two random
    /// directions, seeds from `seed`) at a point between the truth and random noise.
    fn gradient_matches_differences(post: &Posterior<f64>, sim_seed: u64, w_true: &[f64], seed: u64) {
        let w0: Vec<f64> = w_true
            .iter()
            .zip(rand_field::<f64>(w_true.len(), 57 + seed))
            .map(|(a, b)| 0.5 * a + 0.3 * b)
            .collect();
        let (_, grad, g) = post.value_and_grad(&mut tiny(sim_seed), &w0, &GradOptions::default()).unwrap();
        assert!(g.reversal_error < 1e-10);
        let f = |x: &[f64]| post.value_and_grad(&mut tiny(sim_seed), x, &GradOptions::default()).unwrap().0;
        for s in 0..2 {
            fd_check_flat(&f, &w0, &grad, 1e-5, 1e-6, seed + s);
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
        // A data mesh outside 2..=4096 cells, and data of the wrong size for the one named.
        for md in [0, 1, 5000] {
            let e = Posterior::on_mesh(&sim, md, &[0.0; 8], NoiseModel::White { sigma: 1.0 }, 0.0).unwrap_err();
            assert!(e.to_string().contains("data mesh"), "{e}");
            let mut s = tiny(1);
            let w = s.white_noise();
            let e = mock_observation(&mut s, &w, &NoiseModel::White { sigma: 1.0 }, 0.0, md, 1).unwrap_err();
            assert!(e.to_string().contains("data mesh"), "{e}");
        }
        let e = Posterior::on_mesh(&sim, 12, &vec![0.0; n], NoiseModel::White { sigma: 1.0 }, 0.0).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("data mesh"), "{e}");
    }

    /// Data on a mesh that is neither the force mesh nor a multiple of the particle grid (12³
    /// cells for 8³ particles and a 16³ force mesh): the mock is the CIC density contrast of the
    /// final particles on that mesh, `Posterior::density` paints the same, and the gradient of
    /// −ln posterior through the simulation matches central differences (f64).
    #[test]
    fn posterior_on_another_data_mesh() {
        let mut sim = tiny(3);
        let w_true = sim.white_noise();
        let md = 12;
        let (obs, sig) = mock_observation(&mut sim, &w_true, &NoiseModel::White { sigma: 0.3 }, 0.0, md, 5).unwrap();
        assert_eq!((obs.len(), sig.len()), (md * md * md, md * md * md));
        let mut st = sim.initial_conditions(w_true.clone()).unwrap();
        sim.run(&mut st, |_| Ok(())).unwrap();
        let mut direct = vec![0.0; md * md * md];
        Cic::new(8, md, 64.0).density_contrast(&st.disp, &mut direct, &mut Default::default());
        assert!(sig.iter().zip(&direct).all(|(a, b)| (a - b).abs() < 1e-12));
        // Mass conservation on the data mesh, and data that differ from the force-mesh density.
        assert!(direct.iter().sum::<f64>().abs() < 1e-9);
        assert_ne!(direct.len(), sim.density(&st).len());
        let mut post = Posterior::on_mesh(&sim, md, &obs, NoiseModel::White { sigma: 0.3 }, 1.0).unwrap();
        assert_eq!(post.data_mesh(), md);
        assert_eq!(post.density(&st), direct);
        post.set_anneal(3.0).unwrap();
        gradient_matches_differences(&post, 3, &w_true, 30);
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

    #[test]
    fn default_schedule_ends_at_the_exact_posterior_and_spends_every_iteration() {
        for it in [1, 7, 10, 100, 333] {
            let s = default_schedule(it, 2.0);
            assert_eq!(s.iter().map(|x| x.iterations).sum::<usize>(), it);
            assert_eq!(s.last().unwrap().smoothing, 0.0);
            assert!(s.last().unwrap().iterations * 5 >= it, "{it}: {s:?}");
            assert!(s.iter().all(|x| x.iterations > 0), "{it}: {s:?}");
            assert!(s.windows(2).all(|w| w[0].smoothing > w[1].smoothing));
        }
        let r: Vec<(f64, usize)> = default_schedule(100, 2.0).iter().map(|s| (s.smoothing, s.iterations)).collect();
        assert_eq!(r, [(8.0, 10), (4.0, 10), (2.0, 30), (1.0, 30), (0.0, 20)]);
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
        // h of the exact posterior: the annealing window is not in the preconditioner.
        let h = sim.p_linear(k, sim.config().time.a_stop) * (-k * k * 4.0).exp() / (0.05 * 0.05 * vcell);
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
        let md = sim.config().box_.mesh;
        let (obs, _) = mock_observation(&mut sim, &w_true, &noise, 0.0, md, 2).unwrap();
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

    /// The measured Gauss–Newton curvature (eq. X6) against a slow, independent reference. With
    /// the mesh equal to the particle lattice and w = 0 the particles sit on the mesh points and
    /// the forward map is linear and diagonal in Fourier space, so the curvature per shell is
    /// Σ|δ̃(ε w)|² / (ε² σ² Σ|w̃|²) from a plain forward run at a tiny amplitude ε (no adjoint, no
    /// probe): the one-probe estimate matches it shell by shell within its scatter. On the
    /// evolved field (the truth at z = 0) the large-scale curvature exceeds the linear-theory
    /// h(k) (eq. X4) many times over. The preconditioner's m(k) is never above the linear one
    /// (the floor) and is below it where c > h, and M is symmetric.
    #[test]
    fn measured_curvature_matches_the_linear_response_and_exceeds_it_when_nonlinear() {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (32, 32, 64.0, 10);
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let sigma = 0.01;
        let post = Posterior::new(&sim, &vec![0.0; 32 * 32 * 32], NoiseModel::White { sigma }, 0.0).unwrap();
        let lat = sim.lattice().clone();
        let n3 = lat.n_cells();
        let c0 = measured_curvature(&mut sim, &post, &vec![0.0; n3]).unwrap();
        // Reference: the forward map's linear response per shell.
        let shell_power = |v: &[f64]| -> Vec<f64> {
            let fft = Fft3::<f64>::new(lat.m);
            let mut vk = vec![C::<f64>::default(); fft.complex_len()];
            fft.forward(&mut v.to_vec(), &mut vk);
            shell_sums(&lat.radial_sum(|i| vk[i].norm_sqr()))
        };
        let w: Vec<f64> = sim.white_noise();
        let eps = 1e-5;
        let mut st = sim.initial_conditions(w.iter().map(|v| v * eps).collect()).unwrap();
        sim.run(&mut st, |_| Ok(())).unwrap();
        let (pd, pw) = (shell_power(&sim.density(&st)), shell_power(&w));
        // Measured: estimate/response = 1.01, 1.07, 1.02, 1.02, 0.97, 0.99, 0.97, 0.95, 1.05, 0.98
        // for shells 3–12 (the one-probe scatter is ≈ 1/sqrt(modes), 20 % at shell 3).
        let mut mean = 0.0;
        for s in 3..=12 {
            let ratio = c0[s] / (pd[s] / (eps * eps * sigma * sigma * pw[s]));
            assert!((ratio - 1.0).abs() < 0.35, "w = 0, shell {s}: estimate/response = {ratio}");
            mean += ratio / 10.0;
        }
        assert!((mean - 1.0).abs() < 0.06, "w = 0: mean estimate/response over shells 3–12 = {mean}");
        // Far from linear on the evolved field.
        let kf = lat.kf();
        let h = |sim: &Simulation<f64>, k: f64| sim.p_linear(k, 1.0) * post.snr_per_power(k, 0.0);
        let c1 = measured_curvature(&mut sim, &post, &w).unwrap();
        for s in 1..=2 {
            let ratio = c1[s] / h(&sim, s as f64 * kf);
            assert!(ratio > 10.0, "evolved field, shell {s}: c/h = {ratio}");
        }
        let (pm, pl) = (
            Preconditioner::measured(&mut sim, &post, &w).unwrap(),
            Preconditioner::linear(&sim, &post),
        );
        let v = rand_field(n3, 5);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        // vᵀ M v is smaller under the measured M (m ≤ m_lin mode by mode, strictly on large scales).
        let (qm, ql) = (dot(&v, &pm.apply(&v)), dot(&v, &pl.apply(&v)));
        assert!(qm < ql, "vᵀMv: measured {qm} vs linear {ql}");
        let u = rand_field(n3, 6);
        let (a, b) = (dot(&u, &pm.apply(&v)), dot(&pm.apply(&u), &v));
        assert!((a - b).abs() <= 1e-10 * a.abs().max(b.abs()), "{a} vs {b}");
    }

    /// [`reconstruct`] from w = 0 with the default L-BFGS settings; asserts that the loss of every
    /// stage decreases strictly from one iteration to the next.
    fn reconstruct_from_zero(
        sim: &mut Simulation<f64>,
        post: &mut Posterior<f64>,
        schedule: &[Stage],
        progress: impl FnMut(&ReconProgress),
    ) -> ReconResult<f64> {
        let w0 = vec![0.0; sim.lattice().n_cells()];
        let r = reconstruct(sim, post, &w0, schedule, &LbfgsOptions::default(), progress).unwrap();
        for s in &r.stages {
            assert!(s.history.windows(2).all(|w| w[1] < w[0]), "{:?}", s.history);
        }
        r
    }

    /// A short annealed reconstruction on a tiny noisy mock: every stage's loss decreases
    /// monotonically, and the result is closer to the truth than the start (w = 0) on the
    /// large-scale modes.
    #[test]
    fn reconstruct_decreases_the_loss_in_every_stage() {
        for precondition in [Preconditioning::Off, Preconditioning::Linear, Preconditioning::Measured] {
            reconstruct_tiny(precondition);
        }
    }

    fn reconstruct_tiny(precondition: Preconditioning) {
        let mut sim = tiny(3);
        let w_true = sim.white_noise();
        let noise = NoiseModel::White { sigma: 0.3 };
        let md = sim.config().box_.mesh;
        let (obs, _) = mock_observation(&mut sim, &w_true, &noise, 0.0, md, 1).unwrap();
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
        let r = reconstruct_from_zero(&mut sim, &mut post, &schedule, |p| {
            assert!(p.chi2_half.is_finite() && p.prior >= 0.0);
            seen += 1;
        });
        assert_eq!(seen, r.stages.iter().map(|s| s.iterations + 1).sum::<usize>());
        // Correlation of the reconstructed and true white noise over all modes.
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let corr = dot(&r.white_noise, &w_true) / (dot(&r.white_noise, &r.white_noise) * dot(&w_true, &w_true)).sqrt();
        assert!(corr > 0.5, "preconditioning {precondition:?}: correlation with the truth {corr}");
    }

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
            let mut sim = tiny(5);
            let w_true = sim.white_noise();
            let noise = NoiseModel::White { sigma: 0.4 };
            let md = sim.config().box_.mesh;
            let (obs, _) = mock_observation(&mut sim, &w_true, &noise, 0.0, md, 3).unwrap();
            let mut post = Posterior::new(&sim, &obs, noise, 0.0).unwrap();
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
