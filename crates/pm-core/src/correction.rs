//! Learned corrections of the PM force: the capability trait the adjoint loop trains through, and
//! a plain B-spline implementation.
//!
//! **Forward** (docs/physics.md §4, docs/adjoint.md eq. G4). The Poisson kernel of the PM force is
//! multiplied by a radial filter that depends on the scale factor:
//! ```text
//!   φ(k) = −δ(k)/k²  →  −(1 + f_θ(|k|, a)) δ(k)/k²,      A = −∇φ read out at the particles
//! ```
//! so the correction changes the acceleration `A(s; θ, a)` and enters the leapfrog only through
//! the kicks: the step stays exactly reversible (the drift does not depend on θ), which is what the
//! reverse-time adjoint needs. With θ = 0 the force is plain PM. This is the form of the hybrid
//! PM correction of Lanzieri, Lanusse & Starck (2022, arXiv:2207.05509), which uses an MLP.
//!
//! **Adjoint.** With `R(k)` the cotangent of the filtered density spectrum that the gravity VJP
//! builds (docs/adjoint.md eq. G5), `∂L/∂θ_j = Σ_k Re[ρ(k) R*(k)] ∂f_θ(|k|, a)/∂θ_j` over the full
//! spectrum (eq. G6). [`ForceCorrection::vjp`] receives those per-|k| cotangents (the sum of
//! `Re[ρ R*]` over all modes with the same |ν|², ν the integer frequency) and adds `Σ cot ∂f/∂θ`.
//!
//! [`SplineCorrection`] is a tensor product of uniform cubic B-splines in `x = |k|/k_max` and in
//! `u = (a − a_lo)/(a_hi − a_lo)`, both clamped to [0, 1]:
//! `f_θ(k, a) = Σ_ij θ_ij B_i(x) B_j(u)` (a linear model in θ, so its VJP is exact by construction;
//! tested against finite differences all the same).

use crate::error::{Error, Result};

/// A learned multiplicative correction `1 + f_θ(|k|, a)` of the PM potential (dimensionless).
///
/// Implementations must be pure functions of (θ, |k|, a): the adjoint evaluates the force again
/// during the reverse sweep and expects the same numbers.
pub trait ForceCorrection: Send + Sync {
    /// Number of parameters θ.
    fn n_params(&self) -> usize;
    /// The current parameters θ (length [`ForceCorrection::n_params`]).
    fn params(&self) -> Vec<f64>;
    /// Replaces θ. Errors if the length is wrong or a value is not finite.
    fn set_params(&mut self, theta: &[f64]) -> Result<()>;
    /// Writes `f_θ(k[i], a)` (dimensionless) to `out[i]` for wavenumbers `k` in h/Mpc at scale
    /// factor `a`.
    fn eval(&self, a: f64, k: &[f64], out: &mut [f64]);
    /// Adds `Σ_i cot[i] · ∂f_θ(k[i], a)/∂θ` to `grad` (length [`ForceCorrection::n_params`]).
    fn vjp(&self, a: f64, k: &[f64], cot: &[f64], grad: &mut [f64]);
}

/// Checks a parameter vector against the expected length and for finite values.
pub fn check_params(theta: &[f64], expected: usize) -> Result<()> {
    if theta.len() != expected {
        return Err(Error::Shape {
            what: "force-correction parameters".into(),
            found: format!("{} values", theta.len()),
            expected: format!("{expected} values"),
        });
    }
    if let Some(i) = theta.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "force-correction parameters".into(),
            detail: format!("value {} at index {i}", theta[i]),
        });
    }
    Ok(())
}

/// The uniform cubic B-spline kernel β₃(t), support (−2, 2), β₃(0) = 2/3.
#[inline]
fn bspline3(t: f64) -> f64 {
    let t = t.abs();
    if t < 1.0 {
        2.0 / 3.0 - t * t + 0.5 * t * t * t
    } else if t < 2.0 {
        let u = 2.0 - t;
        u * u * u / 6.0
    } else {
        0.0
    }
}

/// The nonzero basis values at `x ∈ [0, 1]` of `n` cubic B-splines centred on a uniform grid of
/// [0, 1] (spacing 1/(n−1)): up to four `(index, value)` pairs. `n = 1` is the constant 1.
fn basis(n: usize, x: f64) -> impl Iterator<Item = (usize, f64)> {
    let x = x.clamp(0.0, 1.0);
    let (lo, hi, pos) = if n == 1 {
        (0i64, 0i64, 0.0)
    } else {
        let pos = x * (n - 1) as f64;
        let c = pos.floor() as i64;
        ((c - 1).max(0), (c + 2).min(n as i64 - 1), pos)
    };
    (lo..=hi).map(move |i| (i as usize, if n == 1 { 1.0 } else { bspline3(pos - i as f64) }))
}

/// `f_θ(k, a) = Σ_ij θ_{i·n_a + j} B_i(|k|/k_max) B_j((a − a_lo)/(a_hi − a_lo))` with uniform cubic
/// B-splines, arguments clamped to [0, 1]. θ = 0 (the default) is plain PM.
#[derive(Clone, Debug, PartialEq)]
pub struct SplineCorrection {
    n_k: usize,
    n_a: usize,
    k_max: f64,
    a_range: (f64, f64),
    theta: Vec<f64>,
}

impl SplineCorrection {
    /// `n_k ≥ 2` splines in |k| over [0, `k_max`] (h/Mpc; larger |k| use the value at k_max) and
    /// `n_a ≥ 1` splines in a over `a_range` (n_a = 1: no time dependence). θ starts at 0.
    pub fn new(n_k: usize, n_a: usize, k_max: f64, a_range: (f64, f64)) -> Result<Self> {
        if n_k < 2 {
            return Err(Error::invalid("force_correction.n_k", n_k, "at least 2 splines in |k|"));
        }
        if n_a < 1 {
            return Err(Error::invalid("force_correction.n_a", n_a, "at least 1 spline in a"));
        }
        if !(k_max.is_finite() && k_max > 0.0) {
            return Err(Error::invalid("force_correction.k_max", k_max, "a finite wavenumber > 0 in h/Mpc"));
        }
        let (lo, hi) = a_range;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi > lo) {
            return Err(Error::invalid(
                "force_correction.a_range",
                format!("({lo}, {hi})"),
                "0 < a_lo < a_hi, both finite",
            ));
        }
        Ok(SplineCorrection {
            n_k,
            n_a,
            k_max,
            a_range,
            theta: vec![0.0; n_k * n_a],
        })
    }

    fn u(&self, a: f64) -> f64 {
        (a - self.a_range.0) / (self.a_range.1 - self.a_range.0)
    }
}

impl ForceCorrection for SplineCorrection {
    fn n_params(&self) -> usize {
        self.theta.len()
    }
    fn params(&self) -> Vec<f64> {
        self.theta.clone()
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        check_params(theta, self.theta.len())?;
        self.theta.copy_from_slice(theta);
        Ok(())
    }
    fn eval(&self, a: f64, k: &[f64], out: &mut [f64]) {
        assert_eq!(k.len(), out.len(), "SplineCorrection::eval: k and out differ in length");
        let ba: Vec<(usize, f64)> = basis(self.n_a, self.u(a)).collect();
        for (o, &kk) in out.iter_mut().zip(k) {
            *o = basis(self.n_k, kk / self.k_max)
                .map(|(i, bi)| bi * ba.iter().map(|&(j, bj)| self.theta[i * self.n_a + j] * bj).sum::<f64>())
                .sum();
        }
    }
    fn vjp(&self, a: f64, k: &[f64], cot: &[f64], grad: &mut [f64]) {
        assert_eq!(k.len(), cot.len(), "SplineCorrection::vjp: k and cot differ in length");
        assert_eq!(grad.len(), self.theta.len(), "SplineCorrection::vjp: grad has the wrong length");
        let ba: Vec<(usize, f64)> = basis(self.n_a, self.u(a)).collect();
        for (&kk, &c) in k.iter().zip(cot) {
            if c == 0.0 {
                continue;
            }
            for (i, bi) in basis(self.n_k, kk / self.k_max) {
                for &(j, bj) in &ba {
                    grad[i * self.n_a + j] += c * bi * bj;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_is_local_and_smooth() {
        // Interior partition of unity of uniform cubic B-splines, and at most 4 nonzero values.
        for n in [4usize, 7] {
            for x in [0.3, 0.5, 0.61] {
                let b: Vec<_> = basis(n, x).collect();
                assert!(b.len() <= 4);
                if x * (n - 1) as f64 >= 1.0 && x * ((n - 1) as f64) <= (n - 2) as f64 {
                    let s: f64 = b.iter().map(|v| v.1).sum();
                    assert!((s - 1.0).abs() < 1e-14, "n {n} x {x}: sum {s}");
                }
            }
        }
        assert_eq!(basis(1, 0.7).collect::<Vec<_>>(), vec![(0, 1.0)]);
        assert!((bspline3(1.0) - 1.0 / 6.0).abs() < 1e-16 && bspline3(2.0) == 0.0);
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut c = SplineCorrection::new(5, 3, 0.8, (0.1, 1.0)).unwrap();
        let theta: Vec<f64> = (0..15).map(|i| 0.1 * ((i * 7 % 11) as f64 - 5.0)).collect();
        c.set_params(&theta).unwrap();
        let k = [0.0, 0.05, 0.31, 0.77, 1.2];
        let cot = [0.3, -1.0, 2.0, 0.5, -0.7];
        for a in [0.05, 0.4, 0.93] {
            let mut g = vec![0.0; 15];
            c.vjp(a, &k, &cot, &mut g);
            for j in 0..15 {
                let eps = 1e-6;
                let mut f = [[0.0; 5]; 2];
                for (s, sign) in [1.0, -1.0].iter().enumerate() {
                    let mut t = theta.clone();
                    t[j] += sign * eps;
                    let mut cj = c.clone();
                    cj.set_params(&t).unwrap();
                    cj.eval(a, &k, &mut f[s]);
                }
                let fd: f64 = (0..5).map(|i| cot[i] * (f[0][i] - f[1][i]) / (2.0 * eps)).sum();
                assert!((fd - g[j]).abs() < 1e-8 * (1.0 + fd.abs()), "a {a} θ{j}: fd {fd} vjp {}", g[j]);
            }
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(SplineCorrection::new(1, 1, 1.0, (0.1, 1.0))
            .unwrap_err()
            .to_string()
            .contains("n_k"));
        assert!(SplineCorrection::new(4, 1, f64::NAN, (0.1, 1.0))
            .unwrap_err()
            .to_string()
            .contains("k_max"));
        assert!(SplineCorrection::new(4, 1, 1.0, (1.0, 0.1))
            .unwrap_err()
            .to_string()
            .contains("a_range"));
        let mut c = SplineCorrection::new(4, 2, 1.0, (0.1, 1.0)).unwrap();
        assert!(matches!(c.set_params(&[0.0; 3]), Err(Error::Shape { .. })));
        assert!(matches!(c.set_params(&[f64::NAN; 8]), Err(Error::NonFinite { .. })));
    }
}
