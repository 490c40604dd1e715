//! The reconstruction posterior −ln p(w | δ_obs) at an annealing scale, its value and its
//! gradient in the white noise by the adjoint (docs/reconstruction.md eqs. X1–X3).

#[cfg(doc)]
use super::{reconstruct, Preconditioner};
use super::{NoiseModel, Preconditioning};
use crate::grad::{value_and_grad, GradOptions, Gradients};
use crate::objective::Objective;
use crate::{Error, Result};
use pm_core::cic::Cic;
use pm_core::fft::Fft3;
use pm_core::float::{Real, C};
use pm_core::loss::DensityLoss;
use pm_core::mesh::MeshGeom;
use pm_core::sim::{Simulation, State};
use rayon::prelude::*;

/// The reconstruction posterior of one simulation's white noise given data on a mesh of m_d³
/// cells (the force mesh, or any other, [`Posterior::on_mesh`]; see the module docs).
pub struct Posterior<T: Real> {
    /// The data mesh.
    pub(super) geom: MeshGeom,
    /// CIC between the particle lattice and the data mesh.
    cic: Cic,
    pub(super) fft: Fft3<T>,
    /// DFT of δ_obs (half spectrum).
    observed_k: Vec<C<T>>,
    pub(super) noise: NoiseModel,
    pub(super) data_smoothing: f64,
    pub(super) anneal: f64,
    /// S(k)·W_R²(k)/σ²(k)·S(k)… per half-spectrum mode: `kernel[i] = (S(k), W_R²(k)/σ²(k))`.
    pub(super) kernel: Vec<(f64, f64)>,
    /// How [`reconstruct`] preconditions the white noise ([`Preconditioner`]).
    pub(super) precondition: Preconditioning,
    /// Starting (Ω_m, σ₈) of the joint cosmology fit, if any.
    pub(super) fit: Option<[f64; 2]>,
    /// Calibrated weights of the Laplace term per radial bin of the lattice, if set.
    pub(super) laplace_weights: Option<Vec<f64>>,
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
pub(super) fn check_data_mesh(m: usize) -> Result<()> {
    if !(2..=4096).contains(&m) {
        return Err(Error::DataMesh { m });
    }
    Ok(())
}

pub(super) fn check_scale(what: &'static str, r: f64) -> Result<()> {
    if !(r.is_finite() && r >= 0.0) {
        return Err(Error::SmoothingScale { what, r });
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
    /// [`pm_core::Error::Shape`] if `observed` does not have m³ values,
    /// [`pm_core::Error::NonFinite`] for NaN/Inf in it, [`Error::NoiseSigma`] for σ ≤ 0,
    /// [`Error::NoiseTableK`], [`Error::NoiseTableP`] or [`pm_core::Error::Shape`] for a bad noise
    /// table, [`Error::SmoothingScale`] for a negative smoothing scale.
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
    /// As [`Posterior::new`], and [`Error::DataMesh`] for `data_mesh` < 2 or > 4096.
    pub fn on_mesh(sim: &Simulation<T>, data_mesh: usize, observed: &[T], noise: NoiseModel, data_smoothing: f64) -> Result<Self> {
        check_data_mesh(data_mesh)?;
        let b = &sim.config().box_;
        let geom = MeshGeom::new(data_mesh, b.size);
        pm_core::Error::check_array("observed density", observed, geom.n_cells(), "(data mesh)³")?;
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
    pub(super) fn at_anneal(&self, anneal: f64) -> Self {
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
    pub(super) fn data_loss<F: Fn(&[T], &mut [T]) -> f64>(&self, f: F) -> DensityLoss<F> {
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
    /// [`Error::SmoothingScale`] for a negative or non-finite R.
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

    /// The starting (Ω_m, σ₈) of the joint fit, if one is set ([`Posterior::set_fit_cosmology`]).
    pub fn fit_cosmology(&self) -> Option<[f64; 2]> {
        self.fit
    }

    /// S²(k) W_R²(k) / (σ²(k) V_cell) at annealing scale `anneal` (Mpc/h), in (Mpc/h)⁻³: the
    /// factor that turns the linear power P_L(k, a_stop) into the signal-to-noise h(k) of eq. X4.
    pub(super) fn snr_per_power(&self, k: f64, anneal: f64) -> f64 {
        let vcell = self.geom.cell().powi(3);
        let (rd, ra) = (self.data_smoothing, anneal);
        (-k * k * (rd * rd + ra * ra)).exp() / (self.noise.variance(k, vcell) * vcell)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recon::mock_observation;
    use crate::recon::testing::{gradient_matches_differences, tiny};
    use pm_core::testing::{fd_check_flat, rand_field};

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

    #[test]
    fn bad_observations_and_noise_are_refused_with_the_field_named() {
        let sim = tiny(1);
        let n = 16 * 16 * 16;
        let e = Posterior::new(&sim, &vec![0.0; n - 1], NoiseModel::White { sigma: 1.0 }, 0.0).unwrap_err();
        assert!(
            matches!(e, Error::Core(pm_core::Error::Shape { .. })) && e.to_string().contains("observed density"),
            "{e}"
        );
        let mut obs = vec![0.0; n];
        obs[17] = f64::NAN;
        let e = Posterior::new(&sim, &obs, NoiseModel::White { sigma: 1.0 }, 0.0).unwrap_err();
        assert!(
            matches!(e, Error::Core(pm_core::Error::NonFinite { .. })) && e.to_string().contains("17"),
            "{e}"
        );
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
        assert!(
            matches!(e, Error::Core(pm_core::Error::Shape { .. })) && e.to_string().contains("data mesh"),
            "{e}"
        );
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
}
