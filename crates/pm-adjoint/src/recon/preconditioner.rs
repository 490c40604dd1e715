//! The Fourier-diagonal preconditioner w = M u of the reconstruction, from the linear-theory
//! signal-to-noise or the measured Gauss–Newton curvature (docs/reconstruction.md eqs. X4–X6).

#[cfg(doc)]
use super::reconstruct;
use super::Posterior;
use crate::grad::{value_and_grad, GradOptions};
use crate::objective::Objective;
use crate::Result;
use pm_core::fft::Fft3;
use pm_core::float::{Real, C};
use pm_core::mesh::MeshGeom;
use pm_core::noise::gaussian;
use pm_core::sim::Simulation;
use rayon::prelude::*;

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
    pub(super) fn cross_bins(&self, geom: &MeshGeom, a: &[f64], b: &[f64]) -> Vec<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recon::testing::{tiny, tiny_mock};
    use crate::recon::NoiseModel;
    use pm_core::config::Config;
    use pm_core::testing::{fd_check_flat, rand_field};

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
        let (mut sim, w_true, post) = tiny_mock(4, 0.2, 2);
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
}
