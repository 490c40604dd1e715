//! The FastPM kick–drift–kick leapfrog (Feng et al. 2016, arXiv:1603.00476), growth-aware.
//!
//! State: displacements `s` (Mpc/h) and canonical momenta `p = a² dx/dτ` (Mpc/h, τ = H0 t).
//! With `F = (3/2) Ω_m / a · A` the force from the normalised PM acceleration `A = −∇∇⁻²δ`
//! (gravity.rs), the FastPM factors (docs/physics.md eqs. 5.1–5.3) are
//! ```text
//!   kick   a₀→a₁ with the force at a_c:  p += F(a_c) · [g_p(a₁) − g_p(a₀)] / g_f(a_c)
//!   drift  a₀→a₁ with the momentum at a_c: s += p · [D₁(a₁) − D₁(a₀)] / g_p(a_c)
//! ```
//! `g_p = a² E dD₁/dlna`, `g_f = dg_p/dτ` (docs/cosmology.md). For the Zel'dovich solution
//! `s = D₁ s₁`, `p = g_p s₁`, `A = D₁ s₁` both updates are exact for any step size.
//!
//! A KDK step from `a_i` to `a_{i+1}` with `a_h` the midpoint (in the stepping variable):
//! kick(a_i→a_h, force at a_i), drift(a_i→a_{i+1}, momentum at a_h), force at a_{i+1},
//! kick(a_h→a_{i+1}, force at a_{i+1}). One force evaluation per step.
//!
//! **Adjoints.** Kick `p += K A` and drift `s += Δ p` are linear in (s, p) with unit Jacobian
//! determinant; their VJPs are `Ā += K p̄` and `p̄ += Δ s̄` (docs/adjoint.md eqs. L1–L2),
//! provided here as [`kick`]/[`drift`] applied to the cotangents with the roles swapped.
//!
//! **What is differentiated.** The kick and drift factors are generic over the cosmology scalar
//! ([`Scalar`]); on duals they carry ∂K/∂θ and ∂Δ/∂θ (docs/adjoint.md eqs. T9–T10), used through
//! [`crate::tangent::CosmoTangents`].

use crate::dual::Scalar;
use crate::float::Real;
use crate::growth::Growth;
use rayon::prelude::*;

pub use crate::config::Spacing;

/// Growth-aware FastPM time-step coefficients for one cosmology.
///
/// `S` is `f64` (the default, what the simulation uses) or a [`crate::dual::Dual`]: then the
/// factors carry their derivatives with respect to the cosmological parameters
/// ([`crate::tangent::CosmoTangents`] holds such a `Stepper`; one formula serves both).
#[derive(Clone, Debug)]
pub struct Stepper<S = f64> {
    growth: Growth<S>,
    omega_m: S,
}

impl Stepper {
    /// Peculiar velocity in km/s of canonical momentum `p` at scale factor `a`: `v = 100 p / a`
    /// (H0 = 100 h km/s/Mpc, lengths in Mpc/h).
    pub fn velocity_factor(a: f64) -> f64 {
        100.0 / a
    }
}

impl<S: Scalar> Stepper<S> {
    /// Coefficients from the growth tables and Ω_m (the force prefactor (3/2) Ω_m / a).
    pub fn new(growth: Growth<S>, omega_m: S) -> Self {
        Stepper { growth, omega_m }
    }
    /// The growth tables.
    pub fn growth(&self) -> &Growth<S> {
        &self.growth
    }
    /// Multiplier of the normalised acceleration `A(a_c)` in a kick from `a0` to `a1`:
    /// `(3/2) Ω_m / a_c · [g_p(a1) − g_p(a0)] / g_f(a_c)` (dimensionless). Tangent:
    /// docs/adjoint.md eq. T9.
    pub fn kick_factor(&self, a0: f64, a1: f64, ac: f64) -> S {
        self.omega_m * 1.5 / ac * (self.growth.gp(a1) - self.growth.gp(a0)) / self.growth.gf(ac)
    }
    /// Multiplier of the momentum `p(a_c)` in a drift from `a0` to `a1`:
    /// `[D₁(a1) − D₁(a0)] / g_p(a_c)` (dimensionless in H0 = 1 units). Tangent: docs/adjoint.md
    /// eq. T10.
    pub fn drift_factor(&self, a0: f64, a1: f64, ac: f64) -> S {
        (self.growth.d1(a1) - self.growth.d1(a0)) / self.growth.gp(ac)
    }
    /// The three coefficients `(K1, Δ, K2)` of the KDK step from `a0` to `a1` with the midpoint
    /// in the stepping variable: first half kick (force at a0), drift (momentum at the midpoint),
    /// second half kick (force at a1) (docs/physics.md eq. 5.3).
    pub fn step_factors(&self, a0: f64, a1: f64, spacing: Spacing) -> (S, S, S) {
        let ah = midpoint(a0, a1, spacing);
        (
            self.kick_factor(a0, ah, a0),
            self.drift_factor(a0, a1, ah),
            self.kick_factor(ah, a1, a1),
        )
    }
}

/// Midpoint of a step in the stepping variable.
pub fn midpoint(a0: f64, a1: f64, spacing: Spacing) -> f64 {
    match spacing {
        Spacing::A => 0.5 * (a0 + a1),
        Spacing::LogA => (a0 * a1).sqrt(),
    }
}

/// Step boundaries from `a_start` to `a_stop`: `steps` uniform steps (in a or ln a), with each
/// snapshot scale factor inserted as an extra boundary if it is not already one (a step is ended
/// there). Returns strictly increasing values from a_start to a_stop.
pub fn step_boundaries(a_start: f64, a_stop: f64, steps: usize, spacing: Spacing, snapshots: &[f64]) -> Vec<f64> {
    assert!(steps >= 1 && a_start < a_stop, "step_boundaries: invalid range");
    let mut b: Vec<f64> = (0..=steps)
        .map(|i| {
            let t = i as f64 / steps as f64;
            match spacing {
                Spacing::A => a_start + (a_stop - a_start) * t,
                Spacing::LogA => (a_start.ln() + (a_stop.ln() - a_start.ln()) * t).exp(),
            }
        })
        .collect();
    b[steps] = a_stop;
    let tol = 1e-9 * (a_stop - a_start);
    for &s in snapshots {
        if !b.iter().any(|x| (x - s).abs() <= tol) {
            b.push(s);
        }
    }
    b.sort_by(|x, y| x.partial_cmp(y).expect("finite step boundaries"));
    // Snap snapshot values exactly so equality tests on a are reliable.
    for &s in snapshots {
        if let Some(x) = b.iter_mut().find(|x| (**x - s).abs() <= tol) {
            *x = s;
        }
    }
    b
}

/// Kick: `p += factor · A` for every particle.
pub fn kick<T: Real>(mom: &mut [[T; 3]], accel: &[[T; 3]], factor: f64) {
    let f = T::of(factor);
    mom.par_iter_mut().zip(accel.par_iter()).for_each(|(p, a)| {
        for d in 0..3 {
            p[d] += f * a[d];
        }
    });
}

/// Drift: `s += factor · p` for every particle.
pub fn drift<T: Real>(disp: &mut [[T; 3]], mom: &[[T; 3]], factor: f64) {
    let f = T::of(factor);
    disp.par_iter_mut().zip(mom.par_iter()).for_each(|(s, p)| {
        for d in 0..3 {
            s[d] += f * p[d];
        }
    });
}

/// VJP of the drift `s₁ = s₀ + Δ p'` of a KDK step, where `p' = p₁ − K2 A₁` is the momentum
/// the drift used, recovered from the state after the step (`mom` = p₁, `accel` = A₁, `kick2` =
/// K2): **adds** `Δ s̄` to `mom_cot` and returns `Δ̄ = ⟨s̄, p'⟩` in f64, reduced in a fixed order
/// (chunks of 4096 particles; docs/adjoint.md eqs. L2, R9). `drift` is Δ.
pub fn drift_vjp<T: Real>(mom_cot: &mut [[T; 3]], disp_cot: &[[T; 3]], mom: &[[T; 3]], accel: &[[T; 3]], drift: f64, kick2: f64) -> f64 {
    let (dr_t, k2_t) = (T::of(drift), T::of(kick2));
    mom_cot
        .par_chunks_mut(4096)
        .zip(disp_cot.par_chunks(4096))
        .zip(mom.par_chunks(4096).zip(accel.par_chunks(4096)))
        .map(|((pb, sb), (mom, acc))| {
            let mut sum = 0.0f64;
            for (((p, s), q), a) in pb.iter_mut().zip(sb).zip(mom).zip(acc) {
                for d in 0..3 {
                    sum += s[d].f64() * (q[d] - k2_t * a[d]).f64();
                    p[d] += dr_t * s[d];
                }
            }
            sum
        })
        .collect::<Vec<f64>>()
        .into_iter()
        .sum::<f64>()
}

/// Kick `p += factor · A` that also returns `⟨cot, A⟩` over the particles in f64, reduced in a
/// fixed order (chunks of 4096 particles, summed in chunk order: independent of the threads), in
/// the same pass. The adjoint uses it for the cotangent of a kick coefficient (docs/adjoint.md
/// eq. R9) without a separate pass over the accelerations.
pub fn kick_dot<T: Real>(mom: &mut [[T; 3]], accel: &[[T; 3]], factor: f64, cot: &[[T; 3]]) -> f64 {
    let f = T::of(factor);
    mom.par_chunks_mut(4096)
        .zip(accel.par_chunks(4096))
        .zip(cot.par_chunks(4096))
        .map(|((p, a), c)| {
            let mut sum = 0.0f64;
            for ((p, a), c) in p.iter_mut().zip(a).zip(c) {
                let mut s3 = 0.0f64;
                for d in 0..3 {
                    p[d] += f * a[d];
                    s3 += c[d].f64() * a[d].f64();
                }
                sum += s3;
            }
            sum
        })
        .collect::<Vec<f64>>()
        .into_iter()
        .sum()
}

/// A kick followed by a drift in one pass over the particles: `p += kick · A`, then
/// `s += drift · p` with the kicked `p` (the same bits as [`kick`] then [`drift`]).
pub fn kick_drift<T: Real>(disp: &mut [[T; 3]], mom: &mut [[T; 3]], accel: &[[T; 3]], kick: f64, drift: f64) {
    let (k, f) = (T::of(kick), T::of(drift));
    disp.par_chunks_mut(4096)
        .zip(mom.par_chunks_mut(4096))
        .zip(accel.par_chunks(4096))
        .for_each(|((s, p), a)| {
            for ((s, p), a) in s.iter_mut().zip(p.iter_mut()).zip(a) {
                for d in 0..3 {
                    p[d] += k * a[d];
                    s[d] += f * p[d];
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosmology::Cosmology;

    #[test]
    fn kick_drift_is_kick_then_drift() {
        let n = 21; // 9261 particles: several parallel chunks
        let v = |seed: u64| crate::testing::rand_disp::<f32>(n, 1.0, seed);
        let (mut s1, mut p1, a) = (v(1), v(2), v(3));
        let (mut s2, mut p2) = (s1.clone(), p1.clone());
        kick(&mut p1, &a, 0.37);
        drift(&mut s1, &p1, -1.3);
        kick_drift(&mut s2, &mut p2, &a, 0.37, -1.3);
        assert!(s1 == s2 && p1 == p2);
        // kick_dot: the same kick, and ⟨cot, A⟩ summed in f64.
        let (mut p3, c) = (p2.clone(), v(4));
        kick(&mut p2, &a, -0.6);
        let dot = kick_dot(&mut p3, &a, -0.6, &c);
        assert!(p2 == p3);
        let (want, scale) = c.iter().zip(&a).fold((0.0f64, 0.0f64), |(s, t), (x, y)| {
            let d: f64 = (0..3).map(|i| x[i] as f64 * y[i] as f64).sum();
            (s + d, t + d.abs())
        });
        assert!((dot - want).abs() < 1e-12 * scale, "{dot} vs {want}");
    }

    #[test]
    fn zeldovich_solution_is_exact_for_any_steps() {
        // One particle, linear force A = D₁(a) s₁ (the Zel'dovich force): the KDK integration
        // with the FastPM factors reproduces s = D₁ s₁, p = g_p s₁ to rounding for 1..5 steps.
        let c = Cosmology::planck18();
        let g = Growth::new(&c, 1.0).unwrap();
        let st = Stepper::new(g.clone(), c.omega_m);
        let s1 = 3.7;
        let mut worst: f64 = 0.0;
        for steps in [1usize, 2, 5] {
            for spacing in [Spacing::A, Spacing::LogA] {
                let b = step_boundaries(0.02, 1.0, steps, spacing, &[]);
                let mut s = [[g.d1(0.02) * s1, 0.0, 0.0]];
                let mut p = [[g.gp(0.02) * s1, 0.0, 0.0]];
                for w in b.windows(2) {
                    let (a0, a1) = (w[0], w[1]);
                    let ah = midpoint(a0, a1, spacing);
                    kick(&mut p, &[[g.d1(a0) * s1, 0.0, 0.0]], st.kick_factor(a0, ah, a0));
                    drift(&mut s, &p, st.drift_factor(a0, a1, ah));
                    let acc = [[s[0][0], 0.0, 0.0]]; // A = D₁ s₁ = s for the ZA solution
                    kick(&mut p, &acc, st.kick_factor(ah, a1, a1));
                }
                let want = g.d1(1.0) * s1;
                let es = (s[0][0] / want - 1.0).abs();
                let ep = (p[0][0] / (g.gp(1.0) * s1) - 1.0).abs();
                worst = worst.max(es).max(ep);
                // Measured worst 2.22e-16 (2026-12-08: one ulp; the README quoted 1e-10); the
                // tolerance allows a few ulps of rounding, ≈4.5×.
                assert!(es < 1e-15, "steps {steps}: {} vs {want}", s[0][0]);
                assert!(ep < 1e-15, "steps {steps}: p {} vs {}", p[0][0], g.gp(1.0) * s1);
            }
        }
        eprintln!("Zel'dovich solution: worst rel err of s and p at a = 1: {worst:.2e}");
    }

    #[test]
    fn boundaries_include_snapshots() {
        let b = step_boundaries(0.1, 1.0, 3, Spacing::A, &[0.5, 0.7, 1.0]);
        // Uniform boundaries 0.1, 0.4, 0.7, 1.0; 0.7 and 1.0 are already there, 0.5 is added.
        assert_eq!(b, vec![0.1, 0.4, 0.5, 0.7, 1.0]);
        assert!(b.contains(&0.5) && b.contains(&0.7) && b[0] == 0.1 && *b.last().unwrap() == 1.0);
        assert!(b.windows(2).all(|w| w[1] > w[0]));
        let c = step_boundaries(0.1, 1.0, 3, Spacing::A, &[0.4]);
        assert_eq!(c.len(), 4, "0.4 is already a boundary: {c:?}");
        let l = step_boundaries(0.01, 1.0, 2, Spacing::LogA, &[]);
        assert!((l[1] - 0.1).abs() < 1e-15 && l[2] == 1.0, "{l:?}");
    }
}
