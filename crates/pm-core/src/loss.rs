//! Scalar losses of a simulation's final state, with their VJPs: the capability trait the adjoint
//! loop (pm-adjoint) is generic over, and the field mean-squared error.
//!
//! **Field MSE** (forward): `L = (1/M) Σ_c (δ_c − δ_T,c)²` with δ the CIC density contrast of the
//! final particles on the force mesh (M = m³ cells), exactly as `simulate` writes `density.npy`.
//! **VJP**: `δ̄ = 2(δ − δ_T)/M`; δ = paint(s)·m³/N_p − 1, so the paint cotangent is `δ̄·m³/N_p` and
//! `s̄ += paint_vjp_pos(s; δ̄·m³/N_p)` (docs/adjoint.md eq. C1). The momenta do not enter.
//!
//! **Power-spectrum loss** ([`PowerLoss`], docs/adjoint.md eqs. S4–S6), forward:
//! `L = Σ_{b∈U} (N_b/2) [ln(P_b/P_T,b)]²` with P_b the binned spectrum of the final δ
//! ([`power_spectrum`], S1), U the bins with N_b > 0, P_T,b > 0 and k_b ≤ k_max. VJP:
//! `P̄_b = N_b ln(P_b/P_T,b)/P_b` (S5) → `δ̄ = power_spectrum_vjp(δ; P̄)` (S2) → the same pull-back
//! to the displacements as the field MSE (S6).
//!
//! **User losses**: [`DensityLoss`] wraps a closure `L(δ)` that adds ∂L/∂δ, pulled back by S6
//! (δ on the force mesh, or with [`DensityLoss::on_mesh`] on any mesh M³: δ = paint_M(s)·M³/N_p − 1
//! and `s̄ += paint_vjp_pos_M(s; δ̄·M³/N_p)`);
//! [`ParticleLoss`] wraps a closure `L(s, p)` that adds ∂L/∂s and ∂L/∂p directly (S7).

use crate::cic::Cic;
use crate::error::{Error, Result};
use crate::float::Real;
use crate::pm::MeshContext;
use crate::power::{power_spectrum, power_spectrum_vjp, spectrum_bins, PowerSpectrum};
use crate::sim::State;
use std::marker::PhantomData;

/// A scalar loss of the final particle state whose VJP the adjoint loop can pull back.
///
/// A loss sees the particles and, through `mesh` ([`MeshContext`]), only what it may need to
/// measure them: the force mesh's geometry, CIC assignment and FFT plan, and the P(k)
/// deconvolution setting (`Simulation::mesh_context` gives it).
pub trait Loss<T: Real> {
    /// Returns L(state) and **adds** ∂L/∂s to `disp_cot` and ∂L/∂p to `mom_cot`.
    fn value_and_cot(&self, mesh: &MeshContext<'_, T>, state: &State<T>, disp_cot: &mut [[T; 3]], mom_cot: &mut [[T; 3]]) -> f64;

    /// L(state) alone (the default calls [`Loss::value_and_cot`] on scratch cotangents).
    fn value(&self, mesh: &MeshContext<'_, T>, state: &State<T>) -> f64 {
        let n = state.disp.len();
        self.value_and_cot(mesh, state, &mut vec![[T::zero(); 3]; n], &mut vec![[T::zero(); 3]; n])
    }
}

/// Mean squared difference between the final CIC density contrast on the force mesh and a
/// target mesh (δ_T = 0 when no target is given).
#[derive(Clone, Debug, Default)]
pub struct FieldMse<T: Real> {
    target: Option<Vec<T>>,
}

impl<T: Real> FieldMse<T> {
    /// Loss against `target` (m³, C order, the force mesh of the simulation it is used with), or
    /// against δ_T = 0. A target with NaN/Inf is refused.
    pub fn new(target: Option<Vec<T>>) -> Result<Self> {
        if let Some(t) = &target {
            Error::check_finite("loss target", t)?;
        }
        Ok(FieldMse { target })
    }
}

impl<T: Real> Loss<T> for FieldMse<T> {
    fn value_and_cot(&self, mesh: &MeshContext<'_, T>, state: &State<T>, disp_cot: &mut [[T; 3]], _mom_cot: &mut [[T; 3]]) -> f64 {
        let delta = mesh.density(&state.disp);
        let cells = delta.len();
        if let Some(t) = &self.target {
            assert_eq!(t.len(), cells, "FieldMse: target must have the force mesh's m³ cells");
        }
        let target = |c: usize| self.target.as_ref().map_or(0.0, |t| t[c].f64());
        // Compensated (Kahan–Neumaier) sum: the loss is differenced by finite-difference checks.
        let (mut sum, mut comp) = (0.0f64, 0.0f64);
        for (c, d) in delta.iter().enumerate() {
            let x = (d.f64() - target(c)).powi(2);
            let t = sum + x;
            comp += if sum.abs() >= x.abs() { (sum - t) + x } else { (x - t) + sum };
            sum = t;
        }
        let loss = (sum + comp) / cells as f64;
        let np = state.disp.len() as f64;
        let paint_scale = 2.0 / cells as f64 * cells as f64 / np;
        let cot: Vec<T> = delta
            .iter()
            .enumerate()
            .map(|(c, d)| T::of(paint_scale * (d.f64() - target(c))))
            .collect();
        mesh.cic.paint_vjp_pos(&state.disp, None, &cot, disp_cot);
        loss
    }
}

/// Pulls a cotangent of the CIC density contrast on `cic`'s mesh back to the displacements
/// (docs/adjoint.md eq. S6): δ = paint(s)·M/N_p − 1, so `s̄ += paint_vjp_pos(s; δ̄·M/N_p)`.
/// Scales `delta_cot` in place (M cells, N_p particles).
fn cot_to_disp<T: Real>(cic: &Cic, state: &State<T>, delta_cot: &mut [T], disp_cot: &mut [[T; 3]]) {
    let scale = T::of(delta_cot.len() as f64 / state.disp.len() as f64);
    delta_cot.iter_mut().for_each(|v| *v *= scale);
    cic.paint_vjp_pos(&state.disp, None, delta_cot, disp_cot);
}

/// Relative tolerance on the bin wavenumbers when a target spectrum is matched to a
/// simulation's mesh (loose enough for a `power.txt` read back with 9 significant digits).
const K_RTOL: f64 = 1e-6;

/// Log-ratio χ² between the power spectrum of the final CIC density contrast on the force mesh
/// and a target spectrum (docs/adjoint.md eq. S4):
///
/// `L = Σ_{b∈U} (N_b/2) [ln(P_b / P_T,b)]²`   (dimensionless),
///
/// over the bins U with N_b > 0 modes, target P_T,b > 0 and mean wavenumber k_b ≤ k_max. For a
/// Gaussian field a bin averages N_b/2 independent complex modes, so var(P̂_b)/P_b² ≈ 2/N_b and
/// var(ln P̂_b) ≈ 2/N_b: each term is the Gaussian χ² of ln P_b, and L = −2 ln(likelihood) + const.
///
/// P_b is measured exactly as `Simulation::power` does: bins of [`power_spectrum`], with the CIC
/// window divided out when the simulation's `output.deconvolve` is set (so a target read from the
/// `power.txt` of a run with the same setting compares like with like). N_b are the simulation
/// mesh's mode counts. If P_b = 0 in a used bin, L is +∞ and the cotangents are not finite.
///
/// The target must have the bins of the simulation's mesh (same count, same k to 1e-6 relative):
/// [`PowerLoss::check`] tests this; [`Loss::value_and_cot`] panics on a mismatch.
#[derive(Clone, Debug)]
pub struct PowerLoss<T: Real> {
    target: PowerSpectrum,
    k_max: Option<f64>,
    /// Bins with P_T > 0 and k ≤ k_max.
    used: Vec<bool>,
    _precision: PhantomData<fn() -> T>,
}

impl<T: Real> PowerLoss<T> {
    /// Loss against the binned spectrum `target` (k in h/Mpc, P in (Mpc/h)³, one entry per bin of
    /// the simulation's mesh, e.g. from `Simulation::power` or a `power.txt`), using the bins with
    /// k ≤ `k_max` h/Mpc (every bin for `None`) and P_T > 0.
    ///
    /// # Errors
    /// [`Error::Shape`] if `target.k`, `target.p`, `target.n_modes` differ in length or are empty;
    /// [`Error::Invalid`] if `k_max` is NaN or ≤ 0, a `target.k` is ≤ 0, or no bin is used;
    /// [`Error::NonFinite`] for a NaN/Inf `target.k`, or a NaN/Inf `target.p` in a bin with
    /// k ≤ k_max.
    pub fn new(target: PowerSpectrum, k_max: Option<f64>) -> Result<Self> {
        let n = target.k.len();
        if n == 0 || target.p.len() != n || target.n_modes.len() != n {
            return Err(Error::Shape {
                what: "PowerLoss target spectrum".into(),
                found: format!("k: {n}, p: {}, n_modes: {} values", target.p.len(), target.n_modes.len()),
                expected: "the same number (≥ 1) of values in each".into(),
            });
        }
        if let Some(km) = k_max {
            if km.is_nan() || km <= 0.0 {
                return Err(Error::invalid("k_max", km, "a wavenumber > 0 in h/Mpc, or None for every bin"));
            }
        }
        for (i, &k) in target.k.iter().enumerate() {
            if !k.is_finite() {
                return Err(Error::NonFinite {
                    what: "PowerLoss target k".into(),
                    detail: format!("value {k} at bin {i}"),
                });
            }
            if k <= 0.0 {
                return Err(Error::invalid(format!("target.k[{i}]"), k, "a bin wavenumber > 0 in h/Mpc"));
            }
        }
        let in_range = |k: f64| match k_max {
            Some(km) => k <= km,
            None => true,
        };
        for (i, (&k, &p)) in target.k.iter().zip(&target.p).enumerate() {
            if in_range(k) && !p.is_finite() {
                return Err(Error::NonFinite {
                    what: "PowerLoss target p".into(),
                    detail: format!("value {p} at bin {i} (k = {k} h/Mpc ≤ k_max)"),
                });
            }
        }
        let used: Vec<bool> = target.k.iter().zip(&target.p).map(|(&k, &p)| in_range(k) && p > 0.0).collect();
        if !used.contains(&true) {
            return Err(Error::invalid(
                "k_max",
                k_max.map_or("None".into(), |k| k.to_string()),
                format!(
                    "a value that keeps at least one bin with target P > 0 (first bin k = {} h/Mpc)",
                    target.k[0]
                ),
            ));
        }
        Ok(PowerLoss {
            target,
            k_max,
            used,
            _precision: PhantomData,
        })
    }

    /// Loss against the spectrum of `target_density` (a density contrast on the force mesh,
    /// m³, C order), measured with the same estimator as the simulated one (`Simulation::power`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `target_density` does not have m³ values, [`Error::NonFinite`] if it
    /// holds NaN/Inf, and those of [`PowerLoss::new`].
    pub fn from_density(mesh: &MeshContext<'_, T>, target_density: &[T], k_max: Option<f64>) -> Result<Self> {
        let m = mesh.geom.m;
        Error::check_array("PowerLoss target density", target_density, m * m * m, "box.mesh³")?;
        Self::new(mesh.power(target_density), k_max)
    }

    /// The target spectrum.
    pub fn target(&self) -> &PowerSpectrum {
        &self.target
    }

    /// The largest bin wavenumber used, h/Mpc (`None`: every bin).
    pub fn k_max(&self) -> Option<f64> {
        self.k_max
    }

    /// Checks that the target has the bins of the force mesh (same number, each k within
    /// 1e-6 relative of the mesh's mean |k|).
    ///
    /// # Errors
    /// [`Error::Shape`] for a different number of bins, [`Error::Invalid`] naming the first bin
    /// whose k differs.
    pub fn check(&self, mesh: &MeshContext<'_, T>) -> Result<()> {
        self.match_bins(&spectrum_bins(mesh.geom).0, mesh)
    }

    fn match_bins(&self, k: &[f64], mesh: &MeshContext<'_, T>) -> Result<()> {
        let b = mesh.geom;
        if k.len() != self.target.k.len() {
            return Err(Error::Shape {
                what: "PowerLoss target spectrum".into(),
                found: format!("{} bins", self.target.k.len()),
                expected: format!(
                    "the {} bins of the force mesh (box.mesh = {}, box.size = {} Mpc/h)",
                    k.len(),
                    b.m,
                    b.box_size
                ),
            });
        }
        for (i, (&kt, &ks)) in self.target.k.iter().zip(k).enumerate() {
            if (kt - ks).abs() > K_RTOL * ks {
                return Err(Error::invalid(
                    format!("target.k[{i}]"),
                    kt,
                    format!(
                        "{ks} h/Mpc, bin {i}'s mean |k| on the force mesh (box.mesh = {}, box.size = {} Mpc/h)",
                        b.m, b.box_size
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl<T: Real> Loss<T> for PowerLoss<T> {
    /// # Panics
    /// If the target's bins do not match the mesh (see [`PowerLoss::check`]).
    #[track_caller]
    fn value_and_cot(&self, mesh: &MeshContext<'_, T>, state: &State<T>, disp_cot: &mut [[T; 3]], _mom_cot: &mut [[T; 3]]) -> f64 {
        let delta = mesh.density(&state.disp);
        let (geom, fft, deconv) = (mesh.geom, mesh.fft, mesh.deconvolve);
        let ps = power_spectrum(&delta, geom, fft, deconv);
        if let Err(e) = self.match_bins(&ps.k, mesh) {
            panic!("PowerLoss: target does not match the simulation's mesh ({e}); call PowerLoss::check first");
        }
        // L (S4) and P̄_b = N_b ln(P_b/P_T,b)/P_b (S5).
        let mut loss = 0.0f64;
        let mut p_cot = vec![0.0f64; ps.p.len()];
        for (b, c) in p_cot.iter_mut().enumerate() {
            if !self.used[b] || ps.n_modes[b] == 0 {
                continue;
            }
            let (nb, p) = (ps.n_modes[b] as f64, ps.p[b]);
            let r = (p / self.target.p[b]).ln();
            loss += 0.5 * nb * r * r;
            *c = nb * r / p;
        }
        let mut delta_cot = vec![T::zero(); delta.len()];
        power_spectrum_vjp(&delta, geom, fft, deconv, &p_cot, &mut delta_cot);
        cot_to_disp(mesh.cic, state, &mut delta_cot, disp_cot);
        loss
    }
}

/// A user loss of the final CIC density contrast δ on the force mesh (m³ cells, C order, as
/// `Simulation::density` returns it) or, with [`DensityLoss::on_mesh`], on another mesh
/// spanning the box, given as a closure `f(δ, δ̄) -> L` that returns L and **adds** ∂L/∂δ (per
/// cell, units of L) to δ̄ (which the wrapper zeroes first). The wrapper pulls δ̄ back to the
/// displacements through the CIC density (docs/adjoint.md eq. S6), as [`FieldMse`] does; the
/// momenta do not enter. `Sync` when the closure is.
///
/// ```
/// # use pm_core::loss::DensityLoss;
/// // Σ_c δ_c²/2: the cotangent is δ itself.
/// let loss = DensityLoss::new(|d: &[f64], cot: &mut [f64]| {
///     cot.iter_mut().zip(d).for_each(|(c, x)| *c += x);
///     d.iter().map(|x| x * x / 2.0).sum()
/// });
/// # let _ = loss;
/// ```
#[derive(Clone)]
pub struct DensityLoss<F> {
    f: F,
    /// The CIC of the mesh δ lives on; `None`: the simulation's force mesh.
    mesh: Option<Cic>,
}

impl<F> DensityLoss<F> {
    /// Wraps `f(δ, δ̄) -> L` on the force mesh (see the type's documentation).
    pub fn new<T: Real>(f: F) -> Self
    where
        F: Fn(&[T], &mut [T]) -> f64,
    {
        DensityLoss { f, mesh: None }
    }

    /// Wraps `f(δ, δ̄) -> L` with δ the CIC density contrast on the mesh of `cic` (its M³ cells
    /// spanning the box, cell-centred like the force mesh; built for the simulation's particle
    /// lattice and box, e.g. `Cic::new(n, M, L)`).
    pub fn on_mesh<T: Real>(cic: Cic, f: F) -> Self
    where
        F: Fn(&[T], &mut [T]) -> f64,
    {
        DensityLoss { f, mesh: Some(cic) }
    }
}

impl<F> std::fmt::Debug for DensityLoss<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DensityLoss").finish_non_exhaustive()
    }
}

impl<T: Real, F: Fn(&[T], &mut [T]) -> f64> Loss<T> for DensityLoss<F> {
    fn value_and_cot(&self, mesh: &MeshContext<'_, T>, state: &State<T>, disp_cot: &mut [[T; 3]], _mom_cot: &mut [[T; 3]]) -> f64 {
        let cic = self.mesh.as_ref().unwrap_or(mesh.cic);
        let delta = cic.density(&state.disp);
        let mut delta_cot = vec![T::zero(); delta.len()];
        let loss = (self.f)(&delta, &mut delta_cot);
        cot_to_disp(cic, state, &mut delta_cot, disp_cot);
        loss
    }
}

/// A user loss of the final particle state, given as a closure `f(state, s̄, p̄) -> L` that returns
/// L and **adds** ∂L/∂s (units of L per Mpc/h) to s̄ and ∂L/∂p (units of L per unit of canonical
/// momentum, [`State::mom`]) to p̄, lattice order (docs/adjoint.md eq. S7). The wrapper passes the
/// caller's cotangents straight through. `Sync` when the closure is.
#[derive(Clone)]
pub struct ParticleLoss<F> {
    f: F,
}

impl<F> ParticleLoss<F> {
    /// Wraps `f(state, s̄, p̄) -> L` (see the type's documentation).
    pub fn new<T: Real>(f: F) -> Self
    where
        F: Fn(&State<T>, &mut [[T; 3]], &mut [[T; 3]]) -> f64,
    {
        ParticleLoss { f }
    }
}

impl<F> std::fmt::Debug for ParticleLoss<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParticleLoss").finish_non_exhaustive()
    }
}

impl<T: Real, F: Fn(&State<T>, &mut [[T; 3]], &mut [[T; 3]]) -> f64> Loss<T> for ParticleLoss<F> {
    fn value_and_cot(&self, _mesh: &MeshContext<'_, T>, state: &State<T>, disp_cot: &mut [[T; 3]], mom_cot: &mut [[T; 3]]) -> f64 {
        (self.f)(state, disp_cot, mom_cot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::mesh::MeshGeom;
    use crate::sim::Simulation;
    use crate::testing::{fd_check_flat, rand_field};

    /// 8³ particles, 16³ mesh, 64 Mpc/h, 2 steps; returns the simulation and its final state.
    fn tiny(deconvolve: bool, seed: u64) -> (Simulation<f64>, State<f64>) {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 64.0, 2);
        c.output.deconvolve = deconvolve;
        c.run.seed = seed;
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let w = sim.white_noise();
        let mut state = sim.initial_conditions(w).unwrap();
        sim.run(&mut state, |_| Ok(())).unwrap();
        (sim, state)
    }

    /// L and its cotangents (s̄, p̄) at `state`.
    fn value_and_grads(loss: &impl Loss<f64>, sim: &Simulation<f64>, state: &State<f64>) -> (f64, Vec<[f64; 3]>, Vec<[f64; 3]>) {
        let n = state.disp.len();
        let (mut sb, mut pb) = (vec![[0.0; 3]; n], vec![[0.0; 3]; n]);
        let v = loss.value_and_cot(&sim.mesh_context(), state, &mut sb, &mut pb);
        (v, sb, pb)
    }

    /// L at `state` with its displacements (`mom = false`) or momenta replaced by `x`.
    fn value_at(loss: &impl Loss<f64>, sim: &Simulation<f64>, state: &State<f64>, x: &[[f64; 3]], mom: bool) -> f64 {
        let mut st = state.clone();
        if mom {
            st.mom = x.to_vec();
        } else {
            st.disp = x.to_vec();
        }
        value_and_grads(loss, sim, &st).0
    }

    /// Central differences (step `eps`) of `f` at the particle array `x` along three random
    /// directions against the cotangent `grad`; returns the worst relative error (≤ 1e-6 asserted).
    fn fd_particles(f: &dyn Fn(&[[f64; 3]]) -> f64, x: &[[f64; 3]], grad: &[[f64; 3]], eps: f64, seed: u64) -> f64 {
        let flat = |f: &dyn Fn(&[[f64; 3]]) -> f64, v: &[f64]| f(&v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect::<Vec<_>>());
        let g = |v: &[f64]| flat(f, v);
        (0..3)
            .map(|k| fd_check_flat(&g, x.as_flattened(), grad.as_flattened(), eps, 1e-6, seed + k))
            .fold(0.0, f64::max)
    }

    /// Central differences of `loss` w.r.t. the displacements along three random directions;
    /// returns the worst relative error. The density losses are piecewise smooth in s (CIC kinks
    /// at cell faces, 4 Mpc/h apart): a step of 1e-5 Mpc/h stays clear of rounding in the
    /// positions (x = q + s mod L, ~1e-14 Mpc/h) and, for these states, of the kinks.
    fn fd_disp(loss: &impl Loss<f64>, sim: &Simulation<f64>, state: &State<f64>, what: &str) -> f64 {
        let (_, sb, pb) = value_and_grads(loss, sim, state);
        let f = |s: &[[f64; 3]]| value_at(loss, sim, state, s, false);
        let worst = fd_particles(&f, &state.disp, &sb, 1e-5, 40);
        eprintln!(
            "{what}: FD worst rel = {worst:.3e}, |p̄| = {:.1e}",
            crate::testing::dot3(&pb, &pb).sqrt()
        );
        worst
    }

    #[test]
    fn power_loss_matches_finite_differences() {
        // Target: the final density of another seed (deconvolved), all bins.
        let (sim, state) = tiny(true, 1);
        let (other, other_state) = tiny(true, 2);
        let loss = PowerLoss::from_density(&sim.mesh_context(), &other.density(&other_state), None).unwrap();
        loss.check(&sim.mesh_context()).unwrap();
        let (v, _, pb) = value_and_grads(&loss, &sim, &state);
        assert!(v > 0.0 && v.is_finite());
        assert!(pb.iter().all(|p| *p == [0.0; 3]), "the momenta do not enter");
        fd_disp(&loss, &sim, &state, "PowerLoss (Cic, all bins)");
        // A theory-like target 0.8 × P without deconvolution, up to k_max between bins.
        let (sim, state) = tiny(false, 3);
        let mut target = sim.power(&sim.density(&state));
        target.p.iter_mut().for_each(|p| *p *= 0.8);
        let k_max = 0.5 * (target.k[3] + target.k[4]);
        let loss = PowerLoss::new(target, Some(k_max)).unwrap();
        fd_disp(&loss, &sim, &state, "PowerLoss (raw, 4 bins)");
    }

    #[test]
    fn power_loss_value_is_the_log_ratio_chi2() {
        let (sim, state) = tiny(true, 1);
        let mut target = sim.power(&sim.density(&state));
        target.p[1] = 0.0; // skipped bin
        target.p.iter_mut().skip(2).for_each(|p| *p *= 1.5);
        let k_max = 0.5 * (target.k[4] + target.k[5]);
        let loss = PowerLoss::new(target.clone(), Some(k_max)).unwrap();
        let ps = sim.power(&sim.density(&state));
        // Bin 0 has ratio 1, bin 1 is skipped, bins 2–4 have ratio 1/1.5.
        let want: f64 = (2..5).map(|b| ps.n_modes[b] as f64 / 2.0 * 1.5f64.ln().powi(2)).sum();
        let (v, _, _) = value_and_grads(&loss, &sim, &state);
        crate::testing::assert_close(v, want, 1e-12, 0.0, "PowerLoss value");
    }

    /// Field MSE against `target`, as a user closure on δ.
    fn mse_closure(target: Vec<f64>) -> DensityLoss<impl Fn(&[f64], &mut [f64]) -> f64> {
        DensityLoss::new(move |d: &[f64], cot: &mut [f64]| {
            let m = d.len() as f64;
            cot.iter_mut()
                .zip(d.iter().zip(&target))
                .for_each(|(c, (x, t))| *c += 2.0 * (x - t) / m);
            d.iter().zip(&target).map(|(x, t)| (x - t).powi(2)).sum::<f64>() / m
        })
    }

    #[test]
    fn density_closure_reproduces_field_mse() {
        let (sim, state) = tiny(true, 1);
        let target: Vec<f64> = rand_field::<f64>(16 * 16 * 16, 3).iter().map(|v| 0.5 * v).collect();
        let user = mse_closure(target.clone());
        let mse = FieldMse::new(Some(target)).unwrap();
        let (vu, su, pu) = value_and_grads(&user, &sim, &state);
        let (vm, sm, _) = value_and_grads(&mse, &sim, &state);
        crate::testing::assert_close(vu, vm, 1e-12, 0.0, "DensityLoss vs FieldMse value");
        let scale = sm.iter().flatten().fold(0.0f64, |a, x| a.max(x.abs()));
        let diff = su
            .iter()
            .flatten()
            .zip(sm.iter().flatten())
            .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
        assert!(diff <= 1e-12 * scale, "cotangents differ by {diff:.3e} (max |s̄| {scale:.3e})");
        assert!(pu.iter().all(|p| *p == [0.0; 3]));
        fd_disp(&user, &sim, &state, "DensityLoss (field MSE)");
    }

    /// The same closure on a 12³ mesh (neither the 16³ force mesh nor a multiple of the 8³
    /// lattice): δ is the CIC density there, and the pull-back matches central differences.
    #[test]
    fn density_closure_on_another_mesh_matches_finite_differences() {
        let (sim, state) = tiny(true, 1);
        let target: Vec<f64> = rand_field::<f64>(12 * 12 * 12, 4).iter().map(|v| 0.5 * v).collect();
        let t = target.clone();
        let user = DensityLoss::on_mesh(crate::cic::Cic::new(8, 12, 64.0), move |d: &[f64], cot: &mut [f64]| {
            assert_eq!(d.len(), 12 * 12 * 12, "δ on the 12³ mesh");
            let m = d.len() as f64;
            cot.iter_mut().zip(d.iter().zip(&t)).for_each(|(c, (x, t))| *c += 2.0 * (x - t) / m);
            d.iter().zip(&t).map(|(x, t)| (x - t).powi(2)).sum::<f64>() / m
        });
        let mut delta = vec![0.0; 12 * 12 * 12];
        crate::cic::Cic::new(8, 12, 64.0).density_contrast(&state.disp, &mut delta, &mut Default::default());
        let want = delta.iter().zip(&target).map(|(x, t)| (x - t).powi(2)).sum::<f64>() / delta.len() as f64;
        let (v, _, _) = value_and_grads(&user, &sim, &state);
        crate::testing::assert_close(v, want, 1e-12, 0.0, "DensityLoss::on_mesh value");
        fd_disp(&user, &sim, &state, "DensityLoss on a 12³ mesh");
    }

    #[test]
    fn particle_closure_on_momenta_and_displacements_matches_finite_differences() {
        // L = Σ_p (1 + 0.1 s_x) (p·u)² + |p|⁴/4: momenta and displacements both enter.
        let (sim, state) = tiny(true, 1);
        let u = [0.3, -0.7, 0.5];
        let loss = ParticleLoss::new(|st: &State<f64>, sb: &mut [[f64; 3]], pb: &mut [[f64; 3]]| {
            let mut l = 0.0;
            for (i, (s, p)) in st.disp.iter().zip(&st.mom).enumerate() {
                let pu: f64 = (0..3).map(|d| p[d] * u[d]).sum();
                let p2: f64 = p.iter().map(|x| x * x).sum();
                l += (1.0 + 0.1 * s[0]) * pu * pu + p2 * p2 / 4.0;
                sb[i][0] += 0.1 * pu * pu;
                (0..3).for_each(|d| pb[i][d] += 2.0 * (1.0 + 0.1 * s[0]) * pu * u[d] + p2 * p[d]);
            }
            l
        });
        let (_, sb, pb) = value_and_grads(&loss, &sim, &state);
        // Smooth (polynomial) in both: a step of 1e-4 keeps rounding negligible.
        let fm = |p: &[[f64; 3]]| value_at(&loss, &sim, &state, p, true);
        let fs = |s: &[[f64; 3]]| value_at(&loss, &sim, &state, s, false);
        let worst = fd_particles(&fm, &state.mom, &pb, 1e-4, 60).max(fd_particles(&fs, &state.disp, &sb, 1e-4, 70));
        eprintln!("ParticleLoss: FD worst rel = {worst:.3e}");
    }

    #[test]
    fn loss_wrappers_are_send_and_sync() {
        fn assert_sync<L: Send + Sync>(_: &L) {}
        assert_sync(&mse_closure(vec![0.0; 8]));
        assert_sync(&PowerLoss::<f32>::new(spectrum_like(&MeshGeom::new(8, 10.0)), None).unwrap());
    }

    /// A target with the bins of `geom` and P = 1.
    fn spectrum_like(geom: &MeshGeom) -> PowerSpectrum {
        let (k, n_modes) = spectrum_bins(geom);
        PowerSpectrum {
            p: vec![1.0; k.len()],
            k,
            n_modes,
        }
    }

    #[test]
    fn power_loss_refuses_bad_targets() {
        let (sim, _) = tiny(true, 1);
        let good = spectrum_like(sim.gravity().geom());
        let mut nan = good.clone();
        nan.p[2] = f64::NAN;
        assert!(matches!(PowerLoss::<f64>::new(nan.clone(), None), Err(Error::NonFinite { .. })));
        // A NaN beyond k_max is never used.
        PowerLoss::<f64>::new(nan, Some(0.5 * (good.k[0] + good.k[1]))).unwrap();
        let mut nan_k = good.clone();
        nan_k.k[0] = f64::NAN;
        assert!(matches!(PowerLoss::<f64>::new(nan_k, None), Err(Error::NonFinite { .. })));
        for k_max in [f64::NAN, 0.0, -1.0] {
            let e = PowerLoss::<f64>::new(good.clone(), Some(k_max)).unwrap_err();
            assert!(matches!(&e, Error::Invalid { field, .. } if field == "k_max"), "{e}");
        }
        // k_max below the first bin, or no positive target power: no bin used.
        assert!(matches!(
            PowerLoss::<f64>::new(good.clone(), Some(0.5 * good.k[0])),
            Err(Error::Invalid { .. })
        ));
        let mut zero = good.clone();
        zero.p.iter_mut().for_each(|p| *p = 0.0);
        assert!(matches!(PowerLoss::<f64>::new(zero, None), Err(Error::Invalid { .. })));
        let mut short = good.clone();
        short.p.pop();
        assert!(matches!(PowerLoss::<f64>::new(short, None), Err(Error::Shape { .. })));
        // from_density: wrong length and NaN.
        let e = PowerLoss::from_density(&sim.mesh_context(), &[0.0f64; 100], None).unwrap_err();
        assert!(matches!(&e, Error::Shape { .. }) && e.to_string().contains("box.mesh"), "{e}");
        let mut d = vec![0.1f64; 16 * 16 * 16];
        d[7] = f64::INFINITY;
        assert!(matches!(
            PowerLoss::from_density(&sim.mesh_context(), &d, None),
            Err(Error::NonFinite { .. })
        ));
        // Bins of another mesh (fewer bins) or another box (other k): check() says so.
        let e = PowerLoss::<f64>::new(spectrum_like(&MeshGeom::new(8, 64.0)), None)
            .unwrap()
            .check(&sim.mesh_context())
            .unwrap_err();
        assert!(matches!(&e, Error::Shape { .. }) && e.to_string().contains("box.mesh = 16"), "{e}");
        let e = PowerLoss::<f64>::new(spectrum_like(&MeshGeom::new(16, 32.0)), None)
            .unwrap()
            .check(&sim.mesh_context())
            .unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "target.k[0]"), "{e}");
        // The matching target passes, also after a round trip through 9 significant digits.
        let mut printed = good.clone();
        printed.k.iter_mut().for_each(|k| *k = format!("{k:.8e}").parse().unwrap());
        PowerLoss::<f64>::new(printed, None).unwrap().check(&sim.mesh_context()).unwrap();
    }

    #[test]
    #[should_panic(expected = "PowerLoss: target does not match the simulation's mesh")]
    fn power_loss_panics_on_unchecked_mismatch() {
        let (sim, state) = tiny(true, 1);
        let loss = PowerLoss::<f64>::new(spectrum_like(&MeshGeom::new(16, 32.0)), None).unwrap();
        value_and_grads(&loss, &sim, &state);
    }
}
