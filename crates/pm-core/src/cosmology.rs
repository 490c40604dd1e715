//! Cosmological parameters and the background expansion (no radiation).
//!
//! Computes, for a scale factor `a` (dimensionless, a = 1 today), the dimensionless Hubble rate
//! `E(a) = H(a)/H0` and its logarithmic slope, the matter fraction `Ω_m(a)` and the CPL dark-energy
//! equation of state (docs/cosmology.md eqs. 1–5):
//!
//! `E(a)² = Ω_m a⁻³ + Ω_k a⁻² + Ω_de ρ_de(a)/ρ_de(1)`, with Ω_de = 1 − Ω_m − Ω_k and the CPL
//! dark energy `w(a) = w0 + wa (1 − a)`, `ρ_de(a)/ρ_de(1) = a^{−3(1+w0+wa)} exp(−3 wa (1 − a))`.
//! No radiation (matter + dark energy), as PM codes integrate (docs/physics.md §1).
//! Lengths in Mpc/h, time in 1/H0. The public API is `f64`.
//!
//! **What is differentiated.** The background formulas (`Background`: w, ρ_de ratio, E²,
//! dln E/dln a) are generic over [`Scalar`], so `tangent.rs` evaluates them on duals carrying
//! ∂/∂(Ω_m, Ω_k, w0, wa) (docs/adjoint.md §T, eq. T2). Ω_de = 1 − Ω_m − Ω_k is derived: the Ω_m
//! derivative is taken at fixed Ω_k and the Ω_k derivative at fixed Ω_m.

use crate::dual::Scalar;
use crate::error::{Error, Result};
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;

/// The Hubble distance c/H0 in Mpc/h (c = 299 792.458 km/s, H0 = 100 h km/s/Mpc).
pub const C_OVER_H0: f64 = 2997.92458;

/// The cosmological model: the differentiable parameters and the choice of linear power
/// spectrum. One type serves everywhere a cosmology appears:
///
/// * the `[cosmology]` section of the run configuration (`Config::cosmology`; serde, f64);
/// * the tables built from it (growth, linear power, step factors: `S = f64`);
/// * their forward-mode tangents (`S` = [`crate::dual::Dual`], seeded in `tangent.rs`);
/// * gradients: it is its own cotangent type, a gradient comes back as a `Cosmology` whose
///   fields are ∂L/∂(that parameter) (`transfer` is then copied from the point of evaluation).
///
/// `transfer` is a static choice (not differentiated); the other fields are the parameters.
/// TOML: every key optional (the Planck-18 values below); `deny_unknown_fields`. Read through
/// [`Cosmology::deserialize_normalised`], as `Config` does, a section that names neither
/// `sigma8` nor `a_s` with an Eisenstein–Hu transfer gets the default σ₈ = 0.8102.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default = "Cosmology::unnormalised", deny_unknown_fields)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de> + From<f64>"))]
pub struct Cosmology<S = f64> {
    /// Total matter density today Ω_m (dimensionless). Default 0.3111.
    pub omega_m: S,
    /// Baryon density today Ω_b (dimensionless), 0 < Ω_b < Ω_m; enters the transfer function
    /// only. Default 0.049.
    pub omega_b: S,
    /// Dimensionless Hubble parameter h = H0 / (100 km/s/Mpc). Default 0.6766.
    pub h: S,
    /// Scalar spectral index n_s (dimensionless). Default 0.9665.
    pub n_s: S,
    /// σ_8: rms linear overdensity in top-hat spheres of 8 Mpc/h at a = 1 (normalisation), if
    /// used. Default 0.8102.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma8: Option<S>,
    /// A_s: primordial curvature power at k_pivot = 0.05 /Mpc (dimensionless normalisation), if
    /// used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_s: Option<S>,
    /// Dark energy equation of state today, w0 (dimensionless). Default −1.
    pub w0: S,
    /// Dark energy equation of state slope, wa: w(a) = w0 + wa (1 − a). Default 0.
    pub wa: S,
    /// Curvature density today Ω_k (dimensionless, 0 = flat). Default 0.
    pub omega_k: S,
    /// CMB temperature today in K (Eisenstein–Hu transfer only). Default 2.7255.
    pub t_cmb: S,
    /// The linear power spectrum at z = 0 (not differentiated). Default Eisenstein–Hu with BAO
    /// wiggles.
    pub transfer: TransferChoice,
}

impl Default for Cosmology {
    /// Planck-2018-like flat ΛCDM (the reference cosmology "A" of `crates/pm-core/tests/reference`).
    fn default() -> Self {
        Self::planck18()
    }
}

impl Cosmology {
    /// Planck-2018-like flat ΛCDM: Ω_m = 0.3111, Ω_b = 0.049, h = 0.6766, n_s = 0.9665,
    /// σ_8 = 0.8102, w0 = −1, wa = 0, T_cmb = 2.7255 K, Eisenstein–Hu transfer.
    pub fn planck18() -> Self {
        Cosmology {
            sigma8: Some(0.8102),
            ..Cosmology::unnormalised()
        }
    }

    /// Reads a `[cosmology]` section (serde `deserialize_with` hook of `Config::cosmology`):
    /// the derived deserializer, then the normalisation default — a section that names
    /// neither `sigma8` nor `a_s` with an Eisenstein–Hu transfer gets σ₈ = 0.8102 (a tabulated
    /// transfer keeps its own amplitude; a section naming `a_s` only must not inherit σ₈).
    pub fn deserialize_normalised<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut c = Cosmology::deserialize(d)?;
        if c.sigma8.is_none() && c.a_s.is_none() && c.transfer.is_eisenstein_hu() {
            c.sigma8 = Cosmology::planck18().sigma8;
        }
        Ok(c)
    }
}

impl<S: From<f64>> Cosmology<S> {
    /// The Planck-18 values of [`Cosmology::planck18`] without a normalisation (σ_8 and A_s
    /// unset): the defaults of keys a TOML section leaves out.
    fn unnormalised() -> Self {
        Cosmology {
            omega_m: S::from(0.3111),
            omega_b: S::from(0.049),
            h: S::from(0.6766),
            n_s: S::from(0.9665),
            sigma8: None,
            a_s: None,
            w0: S::from(-1.0),
            wa: S::from(0.0),
            omega_k: S::from(0.0),
            t_cmb: S::from(2.7255),
            transfer: TransferChoice::EisensteinHu,
        }
    }
}

impl<S: Scalar> Cosmology<S> {
    /// The background numbers; Ω_de = 1 − Ω_m − Ω_k (so Ω_m and Ω_k vary at fixed other one).
    pub(crate) fn background(&self) -> Background<S> {
        Background {
            omega_m: self.omega_m,
            omega_k: self.omega_k,
            omega_de: S::from(1.0) - self.omega_m - self.omega_k,
            w0: self.w0,
            wa: self.wa,
        }
    }
}

/// The few background numbers that E(a) needs, copied out of a [`Cosmology`] so that tables built
/// from it (e.g. `Growth`) own them and stay `'static`. docs/cosmology.md eqs. 1–5.
///
/// Generic over the [`Scalar`] `S`: `f64`, or duals carrying ∂/∂θ (docs/adjoint.md §T).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Background<S = f64> {
    pub(crate) omega_m: S,
    pub(crate) omega_k: S,
    pub(crate) omega_de: S,
    pub(crate) w0: S,
    pub(crate) wa: S,
}

impl Background {
    pub(crate) fn of(c: &Cosmology) -> Self {
        c.background()
    }
}

impl<S: Scalar> Background<S> {
    /// w(a), eq. 2.
    #[inline]
    pub(crate) fn w(&self, a: f64) -> S {
        self.w0 + self.wa * (1.0 - a)
    }
    /// ρ_de(a)/ρ_de(1), eq. 3 (exactly 1 for a cosmological constant).
    #[inline]
    pub(crate) fn de_density_ratio(&self, a: f64) -> S {
        let x = (self.w0 + 1.0 + self.wa) * -3.0 * a.ln() - self.wa * 3.0 * (1.0 - a);
        if self.w0.re() == -1.0 && self.wa.re() == 0.0 {
            // Λ: exactly 1 (also at a = 0). A dual keeps the tangent of e^x at x = 0, which is
            // ∂x/∂θ (∂/∂w0 and ∂/∂wa are not zero at Λ). docs/adjoint.md eq. T2.
            return x.with_value(1.0);
        }
        x.exp()
    }
    /// E²(a), eq. 1.
    #[inline]
    pub(crate) fn e2(&self, a: f64) -> S {
        let ia = 1.0 / a;
        self.omega_m * ia * ia * ia + self.omega_k * ia * ia + self.omega_de * self.de_density_ratio(a)
    }
    /// (E², dlnE/dlna), eq. 4, sharing the work.
    #[inline]
    pub(crate) fn e2_and_dlne(&self, a: f64) -> (S, S) {
        let ia = 1.0 / a;
        let m = self.omega_m * ia * ia * ia;
        let k = self.omega_k * ia * ia;
        let de = self.omega_de * self.de_density_ratio(a);
        let e2 = m + k + de;
        let de2 = m * -3.0 - k * 2.0 - (self.w(a) + 1.0) * 3.0 * de;
        (e2, de2 * 0.5 / e2)
    }
}

impl Cosmology {
    /// Checks every parameter and returns the first problem as [`Error::Invalid`] naming the field
    /// (`cosmology.omega_m`, …) and what would be accepted.
    ///
    /// Rules: all values finite; Ω_m > 0; 0 < Ω_b < Ω_m; h > 0; σ_8 > 0 and A_s > 0 when given;
    /// T_cmb > 0 K; and E²(a) > 0 (a real, positive expansion rate) on a log grid of a from 1e-8 to
    /// 10. Whether exactly one of σ_8 / A_s is given is checked where it matters
    /// (`LinearPower::new`), not here.
    pub fn validate(&self) -> Result<()> {
        const POS: &str = "a positive finite number";
        let pos = |field: &str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(format!("cosmology.{field}"), v, POS))
            }
        };
        let fin = |field: &str, v: f64| -> Result<()> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(Error::invalid(format!("cosmology.{field}"), v, "a finite number"))
            }
        };
        pos("omega_m", self.omega_m)?;
        pos("omega_b", self.omega_b)?;
        if self.omega_b >= self.omega_m {
            return Err(Error::invalid(
                "cosmology.omega_b",
                self.omega_b,
                format!(
                    "a positive number below omega_m = {} (baryons are part of the matter)",
                    self.omega_m
                ),
            ));
        }
        pos("h", self.h)?;
        fin("n_s", self.n_s)?;
        if let Some(s8) = self.sigma8 {
            pos("sigma8", s8)?;
        }
        if let Some(a_s) = self.a_s {
            pos("a_s", a_s)?;
        }
        fin("w0", self.w0)?;
        fin("wa", self.wa)?;
        fin("omega_k", self.omega_k)?;
        pos("t_cmb", self.t_cmb)?;
        // E²(a) > 0 on a grid covering early times, today and the future up to a = 10.
        let bg = Background::of(self);
        let n = 1000;
        let (lo, hi) = (1e-8f64.ln(), 10f64.ln());
        for i in 0..=n {
            let a = (lo + (hi - lo) * i as f64 / n as f64).exp();
            let e2 = bg.e2(a);
            if !(e2.is_finite() && e2 > 0.0) {
                return Err(Error::invalid(
                    "cosmology",
                    format!(
                        "omega_m = {}, omega_k = {}, w0 = {}, wa = {}",
                        self.omega_m, self.omega_k, self.w0, self.wa
                    ),
                    format!(
                        "parameters with E(a)^2 > 0 for 1e-8 <= a <= 10 (E^2 = {e2:e} at a = {a:.4e}): \
                         reduce omega_k or the dark-energy density, or change w0/wa"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Dark-energy density today Ω_de = 1 − Ω_m − Ω_k (dimensionless). docs/cosmology.md eq. 1.
    pub fn omega_de(&self) -> f64 {
        1.0 - self.omega_m - self.omega_k
    }

    /// CPL dark-energy equation of state w(a) = w0 + wa (1 − a) (dimensionless; `a` is the scale
    /// factor). docs/cosmology.md eq. 2.
    pub fn w(&self, a: f64) -> f64 {
        Background::of(self).w(a)
    }

    /// ρ_de(a)/ρ_de(1) = a^{−3(1+w0+wa)} exp(−3 wa (1 − a)) (dimensionless). docs/cosmology.md
    /// eq. 3.
    pub fn de_density_ratio(&self, a: f64) -> f64 {
        Background::of(self).de_density_ratio(a)
    }

    /// E²(a) = (H/H0)² = Ω_m a⁻³ + Ω_k a⁻² + Ω_de ρ_de(a)/ρ_de(1) (dimensionless, no radiation).
    /// docs/cosmology.md eq. 1.
    pub fn e2(&self, a: f64) -> f64 {
        Background::of(self).e2(a)
    }

    /// E(a) = H(a)/H0 (dimensionless). docs/cosmology.md eq. 1.
    pub fn e(&self, a: f64) -> f64 {
        self.e2(a).sqrt()
    }

    /// d ln E / d ln a (dimensionless) = [−3 Ω_m a⁻³ − 2 Ω_k a⁻² − 3 (1 + w(a)) Ω_de ρ_de(a)/ρ_de(1)]
    /// / (2 E²). docs/cosmology.md eq. 4.
    pub fn dlne_dlna(&self, a: f64) -> f64 {
        Background::of(self).e2_and_dlne(a).1
    }

    /// Matter density parameter at scale factor `a`: Ω_m(a) = Ω_m a⁻³ / E²(a) (dimensionless).
    /// docs/cosmology.md eq. 5.
    pub fn omega_m_a(&self, a: f64) -> f64 {
        self.omega_m / (a * a * a * self.e2(a))
    }
}

/// The linear power spectrum (`cosmology.transfer`: `"eh"` | `"eh-nowiggle"` | a file path).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransferChoice {
    /// Eisenstein & Hu (1998) transfer function with BAO wiggles (default).
    #[default]
    EisensteinHu,
    /// Eisenstein & Hu (1998) no-wiggle (zero-baryon-oscillation) form.
    EisensteinHuNoWiggle,
    /// A two-column text file: k [h/Mpc], P(k) [(Mpc/h)³] at z = 0 (e.g. CLASS or CAMB output).
    /// [`crate::config::Config::load`] makes a relative path absolute, relative to the config file.
    File(PathBuf),
}

impl TransferChoice {
    /// True for the two Eisenstein–Hu forms.
    pub fn is_eisenstein_hu(&self) -> bool {
        matches!(self, TransferChoice::EisensteinHu | TransferChoice::EisensteinHuNoWiggle)
    }
}

impl fmt::Display for TransferChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferChoice::EisensteinHu => f.write_str("eh"),
            TransferChoice::EisensteinHuNoWiggle => f.write_str("eh-nowiggle"),
            TransferChoice::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Serialize for TransferChoice {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            TransferChoice::File(p) => match p.to_str() {
                Some(p) => s.serialize_str(p),
                None => Err(serde::ser::Error::custom(format!(
                    "cosmology.transfer path {} is not valid UTF-8",
                    p.display()
                ))),
            },
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for TransferChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TransferChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"eh\", \"eh-nowiggle\" or the path of a two-column k P file")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<TransferChoice, E> {
                match v {
                    "eh" => Ok(TransferChoice::EisensteinHu),
                    "eh-nowiggle" => Ok(TransferChoice::EisensteinHuNoWiggle),
                    "" => Err(E::invalid_value(Unexpected::Str(v), &self)),
                    path => Ok(TransferChoice::File(PathBuf::from(path))),
                }
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::reference_table as table;

    #[test]
    fn e_matches_background_table() {
        let c = Cosmology::planck18();
        c.validate().unwrap();
        let mut worst = 0.0f64;
        for row in table("background.txt") {
            let (a, e_ref) = (row[0], row[2]);
            worst = worst.max((c.e(a) / e_ref - 1.0).abs());
        }
        eprintln!("max |E/E_mL - 1| = {worst:.3e}");
        // Measured 5.14e-13 (2026-12-08); tolerance ≈3×.
        assert!(worst < 1.5e-12, "E(a) deviates by {worst:e}");
        assert_eq!(c.e(1.0), 1.0);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let mut c = Cosmology::planck18();
        c.w0 = -0.9;
        c.wa = 0.3;
        c.omega_k = 0.02;
        c.validate().unwrap();
        for &a in &[0.01, 0.1, 0.5, 1.0, 3.0] {
            let h: f64 = 1e-5;
            let fd = (c.e(h.exp() * a).ln() - c.e((-h).exp() * a).ln()) / (2.0 * h);
            assert!((fd - c.dlne_dlna(a)).abs() < 1e-8, "a = {a}: {fd} vs {}", c.dlne_dlna(a));
            // ρ_de ∝ exp(−3 ∫ (1 + w) dln a)
            let fd = (c.de_density_ratio(h.exp() * a).ln() - c.de_density_ratio((-h).exp() * a).ln()) / (2.0 * h);
            assert!((fd + 3.0 * (1.0 + c.w(a))).abs() < 1e-8);
        }
        assert!((c.de_density_ratio(1.0) - 1.0).abs() < 1e-15);
        // Ω_m(a) + Ω_k(a) + Ω_de(a) = 1
        let a = 0.4;
        let sum = c.omega_m_a(a) + c.omega_k / (a * a * c.e2(a)) + c.omega_de() * c.de_density_ratio(a) / c.e2(a);
        assert!((sum - 1.0).abs() < 1e-14);
    }

    #[test]
    fn validation_names_the_field() {
        let check = |f: &dyn Fn(&mut Cosmology), field: &str| {
            let mut c = Cosmology::planck18();
            f(&mut c);
            let err = c.validate().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(field), "{msg} should name {field}");
            assert!(msg.contains("expected"), "{msg}");
        };
        check(&|c| c.omega_m = -0.1, "cosmology.omega_m");
        check(&|c| c.omega_m = f64::NAN, "cosmology.omega_m");
        check(&|c| c.omega_b = 0.0, "cosmology.omega_b");
        check(&|c| c.omega_b = 0.4, "cosmology.omega_b");
        check(&|c| c.h = 0.0, "cosmology.h");
        check(&|c| c.n_s = f64::INFINITY, "cosmology.n_s");
        check(&|c| c.sigma8 = Some(-1.0), "cosmology.sigma8");
        check(&|c| c.a_s = Some(0.0), "cosmology.a_s");
        check(&|c| c.t_cmb = 0.0, "cosmology.t_cmb");
        check(&|c| c.w0 = f64::NAN, "cosmology.w0");
        // A closed universe that recollapses before a = 10: E² < 0 somewhere.
        check(&|c| c.omega_k = -2.0, "cosmology");
        // Phantom-crossing dark energy with negative density that dominates early.
        check(
            &|c| {
                c.omega_k = 1.0;
                c.w0 = 1.0
            },
            "cosmology",
        );
        assert!(Cosmology::planck18().validate().is_ok());
    }
}
