//! Input and target normalisation by linear theory, so that a network sees fields of order one
//! whatever the scale factor and cosmology.
//!
//! In linear theory (1LPT) a particle's displacement is s = D₁(a) ψ and its peculiar velocity is
//! v = a H(a) f(a) D₁(a) ψ (ψ the linear displacement field at a = 1 in Mpc/h; H = 100 E(a)
//! km/s per Mpc/h; f = dln D₁/dln a), and the density contrast is δ = D₁(a) δ_L. So
//!   density / D₁,   displacement / D₁,   velocity / (a H f D₁)
//! are all a-independent in the linear regime (docs/nn.md §4); the last two are in Mpc/h. Units: velocity in km/s
//! (pm-core's `Simulation::velocities`), displacement in Mpc/h.

use crate::error::{Error, Result};
use candle_core::Tensor;
use pm_core::growth::Growth;

/// The linear-theory factors at one scale factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearScaling {
    /// Scale factor a.
    pub a: f64,
    /// Linear growth factor D₁(a) (D₁(1) = 1).
    pub d1: f64,
    /// Growth rate f = dln D₁/dln a.
    pub f: f64,
    /// Hubble rate H(a) in km/s per Mpc/h (= 100 E(a)).
    pub hubble: f64,
}

impl LinearScaling {
    /// The factors of `growth` at scale factor `a`; errors when a is outside the growth table.
    pub fn new(growth: &Growth, a: f64) -> Result<Self> {
        if !(a.is_finite() && a >= growth.a_min() && a <= growth.a_max()) {
            return Err(Error::Config {
                field: "a",
                value: a.to_string(),
                expected: format!("a scale factor in [{}, {}]", growth.a_min(), growth.a_max()),
            });
        }
        Ok(Self {
            a,
            d1: growth.d1(a),
            f: growth.f1(a),
            hubble: 100.0 * growth.e(a),
        })
    }

    /// Multiplier of a density contrast: 1/D₁.
    pub fn density_factor(&self) -> f64 {
        1.0 / self.d1
    }

    /// Multiplier of a displacement in Mpc/h: 1/D₁.
    pub fn displacement_factor(&self) -> f64 {
        1.0 / self.d1
    }

    /// Multiplier of a peculiar velocity in km/s: 1/(a H f D₁), in (Mpc/h)/(km/s).
    pub fn velocity_factor(&self) -> f64 {
        1.0 / (self.a * self.hubble * self.f * self.d1)
    }

    /// δ / D₁.
    pub fn normalize_density(&self, delta: &Tensor) -> Result<Tensor> {
        Ok((delta * self.density_factor())?)
    }

    /// s / D₁.
    pub fn normalize_displacement(&self, s: &Tensor) -> Result<Tensor> {
        Ok((s * self.displacement_factor())?)
    }

    /// v / (a H f D₁).
    pub fn normalize_velocity(&self, v: &Tensor) -> Result<Tensor> {
        Ok((v * self.velocity_factor())?)
    }

    /// The inverse of [`LinearScaling::normalize_velocity`]: back to km/s.
    pub fn denormalize_velocity(&self, u: &Tensor) -> Result<Tensor> {
        Ok((u / self.velocity_factor())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pm_core::leapfrog::Stepper;
    use pm_core::Cosmology;

    #[test]
    fn einstein_de_sitter_limit() {
        // Ω_m = 1: D₁ = a, f = 1, H = 100 a^(−3/2), so v/(aHfD) = v a^(−1/2)/100.
        let eds = Cosmology {
            omega_m: 1.0,
            omega_b: 0.05,
            w0: -1.0,
            wa: 0.0,
            omega_k: 0.0,
            ..Cosmology::planck18()
        };
        let g = Growth::new(&eds, 1.0).unwrap();
        for a in [0.1, 0.5, 1.0] {
            let s = LinearScaling::new(&g, a).unwrap();
            assert!((s.d1 - a).abs() < 1e-6 * a && (s.f - 1.0).abs() < 1e-6, "{s:?}");
            let expect = 1.0 / (100.0 * a.sqrt()); // 1/(a · 100 a^(−3/2) · a)
            assert!(
                (s.velocity_factor() / expect - 1.0).abs() < 1e-6,
                "{} vs {expect}",
                s.velocity_factor()
            );
        }
    }

    #[test]
    fn normalised_1lpt_velocity_equals_normalised_displacement() {
        // pm-core's 1LPT: s = D₁ψ, p = gp ψ, v = 100 p/a (km/s); after normalisation both are ψ.
        let g = Growth::new(&Cosmology::planck18(), 1.0).unwrap();
        for a in [0.05, 0.3, 1.0] {
            let s = LinearScaling::new(&g, a).unwrap();
            let v_per_psi = Stepper::velocity_factor(a) * g.gp(a);
            let s_per_psi = g.d1(a);
            assert!((v_per_psi * s.velocity_factor() - s_per_psi * s.displacement_factor()).abs() < 1e-10);
        }
        assert!(matches!(LinearScaling::new(&g, 2.0), Err(Error::Config { field: "a", .. })));
        assert!(matches!(LinearScaling::new(&g, f64::NAN), Err(Error::Config { field: "a", .. })));
    }
}
