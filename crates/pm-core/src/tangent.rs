//! Derivatives with respect to the cosmological parameters of every scalar the simulation takes
//! from the cosmology, by forward mode (dual numbers, [`crate::dual`]).
//!
//! **What is differentiated.** With θ = (Ω_m, Ω_b, h, n_s, σ_8 or A_s, w0, wa, Ω_k, T_cmb)
//! ([`Param`], in this order):
//! * the growth factors D1, D2 and the FastPM factors gp, gp2, gf, gf2 at any a (the initial
//!   conditions at a_start use D1, D2, gp, gp2; docs/adjoint.md eqs. T3–T4);
//! * the kick and drift factors of every time step (docs/adjoint.md eqs. T9–T10);
//! * ln P_L(k, a = 1), whose square root scales the white noise (noise.rs), including the change of
//!   the σ_8 normalisation integral or of the A_s normalisation (eqs. T5–T8).
//!
//! [`CosmoTangents::new`] seeds one dual per parameter and runs the *same* generic code that
//! builds the f64 tables (`Growth`, `LinearPower`, `Stepper`), so each tangent is the exact
//! derivative of the discrete f64 computation (RK4, Hermite interpolation, Simpson quadrature,
//! the EH fit) and each value equals the f64 result bit for bit.
//!
//! Conventions: Ω_de = 1 − Ω_m − Ω_k, so ∂/∂Ω_m is taken at fixed Ω_k (Ω_de absorbs the change)
//! and ∂/∂Ω_k at fixed Ω_m. For a tabulated transfer ([`Transfer::Table`]) the table is held
//! fixed: P depends on θ only through the σ_8 rescaling, if any (n_s, Ω_b, h and T_cmb do not
//! enter). Ω_b, h and T_cmb enter only through the Eisenstein–Hu fit; h also through the A_s pivot.
//! A gradient ∂L/∂θ assembled with these tangents (docs/adjoint.md eq. T11) comes back with
//! physical names as a [`Cosmology`] ([`cosmology_cotangent`]; "Cosmology is its own cotangent
//! type").

use crate::cosmology::Cosmology;
use crate::dual::Dual;
use crate::error::Result;
use crate::growth::Growth;
use crate::leapfrog::Stepper;
use crate::linear::{LinearPower, Transfer};

/// Number of differentiable cosmological parameters ([`Param::ALL`]).
pub const N_PARAMS: usize = 9;

/// A value with its gradient with respect to the [`N_PARAMS`] parameters, in [`Param`] order:
/// `grad[Param::X.index()]` = ∂value/∂X, in the units of the value per unit of X.
pub type Tangent = Dual<N_PARAMS>;

/// The differentiable cosmological parameters, in this order (the index of the gradient arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Param {
    /// Ω_m, total matter density today (dimensionless); varied at fixed Ω_k (Ω_de = 1 − Ω_m − Ω_k).
    OmegaM,
    /// Ω_b, baryon density today (dimensionless); enters the EH transfer function only.
    OmegaB,
    /// h = H0/(100 km/s/Mpc) (dimensionless); enters the EH fit and the A_s pivot k_p = 0.05/h.
    H,
    /// n_s, scalar spectral index (dimensionless).
    NS,
    /// The normalisation the [`Cosmology`] gives: σ_8 (dimensionless) or A_s (dimensionless).
    Amplitude,
    /// w0, dark-energy equation of state today (dimensionless).
    W0,
    /// wa, slope of the dark-energy equation of state, w = w0 + wa (1 − a) (dimensionless).
    Wa,
    /// Ω_k, curvature density (dimensionless); varied at fixed Ω_m.
    OmegaK,
    /// T_cmb, CMB temperature today in K; enters the EH transfer function only.
    TCmb,
}

impl Param {
    /// All parameters, in gradient order.
    pub const ALL: [Param; N_PARAMS] = [
        Param::OmegaM,
        Param::OmegaB,
        Param::H,
        Param::NS,
        Param::Amplitude,
        Param::W0,
        Param::Wa,
        Param::OmegaK,
        Param::TCmb,
    ];

    /// Position in the gradient arrays (0..[`N_PARAMS`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `[cosmology]` config/TOML key of this parameter: `"omega_m"`, `"omega_b"`, `"h"`,
    /// `"n_s"`, `"sigma8"` or `"a_s"`, `"w0"`, `"wa"`, `"omega_k"`, `"t_cmb"`. The amplitude is
    /// `"a_s"` when `c` gives A_s and no σ_8, else `"sigma8"`.
    pub fn name(self, c: &Cosmology) -> &'static str {
        match self {
            Param::OmegaM => "omega_m",
            Param::OmegaB => "omega_b",
            Param::H => "h",
            Param::NS => "n_s",
            Param::Amplitude if c.sigma8.is_none() && c.a_s.is_some() => "a_s",
            Param::Amplitude => "sigma8",
            Param::W0 => "w0",
            Param::Wa => "wa",
            Param::OmegaK => "omega_k",
            Param::TCmb => "t_cmb",
        }
    }

    /// The value of this parameter in `c` (units as in [`Cosmology`]); `None` only for
    /// [`Param::Amplitude`] when `c` gives neither σ_8 nor A_s (a table used as is).
    pub fn value(self, c: &Cosmology) -> Option<f64> {
        Some(match self {
            Param::OmegaM => c.omega_m,
            Param::OmegaB => c.omega_b,
            Param::H => c.h,
            Param::NS => c.n_s,
            Param::Amplitude => return c.sigma8.or(c.a_s),
            Param::W0 => c.w0,
            Param::Wa => c.wa,
            Param::OmegaK => c.omega_k,
            Param::TCmb => c.t_cmb,
        })
    }

    /// A copy of `c` with this parameter set to `v` (the amplitude sets σ_8 if `c` gives it, else
    /// A_s; panics if `c` gives neither). For finite-difference checks.
    #[track_caller]
    pub fn with(self, c: &Cosmology, v: f64) -> Cosmology {
        let mut c = c.clone();
        match self {
            Param::OmegaM => c.omega_m = v,
            Param::OmegaB => c.omega_b = v,
            Param::H => c.h = v,
            Param::NS => c.n_s = v,
            Param::Amplitude if c.sigma8.is_some() => c.sigma8 = Some(v),
            Param::Amplitude if c.a_s.is_some() => c.a_s = Some(v),
            Param::Amplitude => panic!("Param::with: the cosmology gives neither sigma8 nor a_s"),
            Param::W0 => c.w0 = v,
            Param::Wa => c.wa = v,
            Param::OmegaK => c.omega_k = v,
            Param::TCmb => c.t_cmb = v,
        }
        c
    }
}

/// The parameters of `c` as duals, θ_j seeded with the unit vector j.
fn seed(c: &Cosmology) -> Cosmology<Tangent> {
    let var = |p: Param, v: f64| Tangent::variable(v, p.index());
    let amp_is_s8 = c.sigma8.is_some();
    Cosmology {
        omega_m: var(Param::OmegaM, c.omega_m),
        omega_b: var(Param::OmegaB, c.omega_b),
        h: var(Param::H, c.h),
        n_s: var(Param::NS, c.n_s),
        sigma8: c.sigma8.map(|v| var(Param::Amplitude, v)),
        a_s: c.a_s.map(|v| {
            if amp_is_s8 {
                Tangent::constant(v)
            } else {
                var(Param::Amplitude, v)
            }
        }),
        w0: var(Param::W0, c.w0),
        wa: var(Param::Wa, c.wa),
        omega_k: var(Param::OmegaK, c.omega_k),
        t_cmb: var(Param::TCmb, c.t_cmb),
        transfer: c.transfer.clone(),
    }
}

/// The growth tables, FastPM factors and linear power of one cosmology with their derivatives
/// with respect to the [`N_PARAMS`] parameters (docs/adjoint.md §T).
///
/// Built once ([`CosmoTangents::new`], a few ms); every method is as cheap as its f64
/// counterpart times ~N_PARAMS. Values equal those of `Growth`, `Stepper` and `LinearPower` built
/// from the same cosmology bit for bit.
#[derive(Clone, Debug)]
pub struct CosmoTangents {
    stepper: Stepper<Tangent>,
    linear: LinearPower<Tangent>,
}

impl CosmoTangents {
    /// Integrates the growth ODEs on duals from [`crate::growth::A_INIT`] to max(`a_max`, 1) and
    /// normalises the linear power of `transfer`, as `Growth::new(c, a_max)` and
    /// `LinearPower::new(c, transfer, ..)` do (same errors: invalid cosmology, σ_8/A_s rule,
    /// `a_max` out of range). `a_max` is a dimensionless scale factor.
    pub fn new(c: &Cosmology, transfer: &Transfer, a_max: f64) -> Result<Self> {
        c.validate()?;
        let p = seed(c);
        let growth = Growth::integrate(p.background(), a_max)?;
        let linear = LinearPower::build(&p, transfer.clone(), growth.d1_edsnorm_today())?;
        Ok(CosmoTangents {
            stepper: Stepper::new(growth, p.omega_m),
            linear,
        })
    }

    /// The dual growth tables (all of `Growth`'s methods, with tangents).
    pub fn growth(&self) -> &Growth<Tangent> {
        self.stepper.growth()
    }

    /// The dual FastPM step coefficients.
    pub fn stepper(&self) -> &Stepper<Tangent> {
        &self.stepper
    }

    /// The dual linear power spectrum at a = 1.
    pub fn linear(&self) -> &LinearPower<Tangent> {
        &self.linear
    }

    /// D1(a) with its tangent (dimensionless, D1(1) = 1). docs/cosmology.md eqs. 6, 11; T3.
    #[track_caller]
    pub fn d1(&self, a: f64) -> Tangent {
        self.growth().d1(a)
    }

    /// D2(a) with its tangent (dimensionless, units of D1², D2 < 0). docs/cosmology.md eqs. 7, 11.
    #[track_caller]
    pub fn d2(&self, a: f64) -> Tangent {
        self.growth().d2(a)
    }

    /// gp(a) = a² E dD1/dln a with its tangent (time unit 1/H0). docs/cosmology.md eq. 12.
    #[track_caller]
    pub fn gp(&self, a: f64) -> Tangent {
        self.growth().gp(a)
    }

    /// gp2(a) = a² E dD2/dln a with its tangent (time unit 1/H0). docs/cosmology.md eq. 12.
    #[track_caller]
    pub fn gp2(&self, a: f64) -> Tangent {
        self.growth().gp2(a)
    }

    /// gf(a) = dgp/dτ with its tangent (time unit 1/H0). docs/cosmology.md eq. 13.
    #[track_caller]
    pub fn gf(&self, a: f64) -> Tangent {
        self.growth().gf(a)
    }

    /// gf2(a) = dgp2/dτ with its tangent (time unit 1/H0). docs/cosmology.md eq. 13.
    #[track_caller]
    pub fn gf2(&self, a: f64) -> Tangent {
        self.growth().gf2(a)
    }

    /// The kick factor `Stepper::kick_factor(a0, a1, ac)` with its tangent (dimensionless).
    /// docs/adjoint.md eq. T9.
    #[track_caller]
    pub fn kick_factor(&self, a0: f64, a1: f64, ac: f64) -> Tangent {
        self.stepper.kick_factor(a0, a1, ac)
    }

    /// The drift factor `Stepper::drift_factor(a0, a1, ac)` with its tangent (dimensionless).
    /// docs/adjoint.md eq. T10.
    #[track_caller]
    pub fn drift_factor(&self, a0: f64, a1: f64, ac: f64) -> Tangent {
        self.stepper.drift_factor(a0, a1, ac)
    }

    /// P_L(k, a = 1) in (Mpc/h)³ with its tangent, `k` in h/Mpc (0 for k ≤ 0).
    pub fn p(&self, k: f64) -> Tangent {
        self.linear.p(k)
    }

    /// ∂ ln P_L(k, a = 1) / ∂θ_j for each parameter (per unit of θ_j; all zero for k ≤ 0). `k` in
    /// h/Mpc. docs/adjoint.md eqs. T5–T8. The white-noise amplitude √P changes by half of this.
    pub fn dlnp_dtheta(&self, k: f64) -> [f64; N_PARAMS] {
        if k <= 0.0 {
            return [0.0; N_PARAMS];
        }
        self.linear.p(k).dln()
    }
}

/// A [`Cosmology`] whose fields hold ∂L/∂(field) from the gradient array `grad` (in [`Param`]
/// order): a `Cosmology` is its own cotangent type (`transfer` copied from `like`). The amplitude entry goes
/// to `sigma8 = Some(..)` if `like` is normalised by σ_8, to `a_s = Some(..)` if by A_s (the other
/// is `None`), and is dropped if `like` gives neither. Units: those of L per unit of each field.
pub fn cosmology_cotangent(grad: &[f64; N_PARAMS], like: &Cosmology) -> Cosmology {
    let g = |p: Param| grad[p.index()];
    let amp = g(Param::Amplitude);
    let (sigma8, a_s) = match (like.sigma8, like.a_s) {
        (Some(_), _) => (Some(amp), None),
        (None, Some(_)) => (None, Some(amp)),
        (None, None) => (None, None),
    };
    Cosmology {
        omega_m: g(Param::OmegaM),
        omega_b: g(Param::OmegaB),
        h: g(Param::H),
        n_s: g(Param::NS),
        sigma8,
        a_s,
        w0: g(Param::W0),
        wa: g(Param::Wa),
        omega_k: g(Param::OmegaK),
        t_cmb: g(Param::TCmb),
        transfer: like.transfer.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::PowerTable;
    use std::path::Path;

    /// Reference cosmologies: Λ and w0 = −0.9, wa = 0.1; flat and curved; σ_8 and A_s.
    fn cosmologies() -> Vec<(&'static str, Cosmology)> {
        let p18 = Cosmology::planck18();
        let a_s = |c: Cosmology| Cosmology {
            sigma8: None,
            a_s: Some(2.1e-9),
            ..c
        };
        let w = |c: Cosmology| Cosmology { w0: -0.9, wa: 0.1, ..c };
        let k = |c: Cosmology, ok: f64| Cosmology { omega_k: ok, ..c };
        vec![
            ("LCDM s8", p18.clone()),
            ("w0wa s8", w(p18.clone())),
            ("LCDM As", a_s(p18.clone())),
            ("w0wa k=0.02 As", k(w(a_s(p18.clone())), 0.02)),
            ("LCDM k=-0.015 s8", k(p18.clone(), -0.015)),
        ]
    }

    /// Step scale for parameter j: relative to the value, at least 1 for w0, wa, Ω_k.
    fn scale(c: &Cosmology, p: Param) -> f64 {
        let v = p.value(c).map_or(1.0, f64::abs);
        match p {
            Param::W0 | Param::Wa | Param::OmegaK => v.max(1.0),
            _ => v,
        }
    }

    /// ∂f/∂θ for every parameter by Richardson-extrapolated central differences (relative step
    /// 1e-4 and 2e-4 of [`scale`]; error O(h⁴) + rounding ≈ 1e-12 relative). `None` for an
    /// amplitude the cosmology does not give.
    fn fd_grad(c: &Cosmology, f: &dyn Fn(&Cosmology) -> f64) -> [Option<f64>; N_PARAMS] {
        Param::ALL.map(|p| {
            let v = p.value(c)?;
            let h = 1e-4 * scale(c, p);
            let at = |x: f64| f(&p.with(c, x));
            let c1 = (at(v + h) - at(v - h)) / (2.0 * h);
            let c2 = (at(v + 2.0 * h) - at(v - 2.0 * h)) / (4.0 * h);
            Some((4.0 * c1 - c2) / 3.0)
        })
    }

    /// Relative error of the dual gradient against finite differences, per parameter, in terms of
    /// the elasticities θ_j ∂f/∂θ_j: |an − fd| / max(|an|, |fd|, 1e-4 · max_j |an_j|, 1e-5 |f|)
    /// (components below 1e-4 of the largest are held to an absolute error of 1e-4 `tol` of it,
    /// and exact zeros such as ∂D1(1)/∂θ to 1e-5 `tol` |f|, the rounding of the differences).
    /// Asserts each error is below `tol`; returns the worst.
    #[track_caller]
    fn compare(what: &str, c: &Cosmology, an: &Tangent, fd: &[Option<f64>; N_PARAMS], f64_value: f64, tol: f64) -> f64 {
        let dv = (an.value - f64_value).abs() / f64_value.abs().max(1e-300);
        assert!(dv <= 1e-14, "{what}: dual value {} vs f64 {f64_value}", an.value);
        let el = |p: Param, x: f64| x * scale(c, p);
        let big = Param::ALL.iter().map(|&p| el(p, an.grad[p.index()]).abs()).fold(0.0, f64::max);
        let mut worst: f64 = 0.0;
        for p in Param::ALL {
            let a = el(p, an.grad[p.index()]);
            match fd[p.index()] {
                Some(fd) => {
                    let f = el(p, fd);
                    let err = (a - f).abs() / a.abs().max(f.abs()).max(1e-4 * big).max(1e-5 * f64_value.abs()).max(1e-300);
                    assert!(
                        err < tol,
                        "{what}: d/d{}: dual {:.12e} vs fd {fd:.12e} (rel {err:.2e})",
                        p.name(c),
                        an.grad[p.index()]
                    );
                    worst = worst.max(err);
                }
                None => assert_eq!(a, 0.0, "{what}: d/d(absent amplitude) must be 0"),
            }
        }
        worst
    }

    #[test]
    fn growth_tangents_match_finite_differences() {
        let a_max = 1.0;
        // Measured worst 7.40e-8 (2026-12-08; docs/adjoint.md §T quotes 7e-8); tolerance ≈3×.
        let tol = 2.2e-7;
        let mut worst: f64 = 0.0;
        for (name, c) in cosmologies() {
            let t = CosmoTangents::new(&c, &Transfer::EisensteinHu, a_max).unwrap();
            let g = Growth::new(&c, a_max).unwrap();
            let eds = fd_grad(&c, &|c| Growth::new(c, a_max).unwrap().d1_edsnorm_today());
            worst = worst.max(compare(name, &c, &t.growth().d1_edsnorm_today(), &eds, g.d1_edsnorm_today(), tol));
            for &a in &[0.01, 0.0314, 0.1, 0.33, 0.5, 0.8, 1.0] {
                type Get = fn(&Growth, f64) -> f64;
                let quantities: [(&str, Tangent, Get); 6] = [
                    ("D1", t.d1(a), |g, a| g.d1(a)),
                    ("D2", t.d2(a), |g, a| g.d2(a)),
                    ("gp", t.gp(a), |g, a| g.gp(a)),
                    ("gp2", t.gp2(a), |g, a| g.gp2(a)),
                    ("gf", t.gf(a), |g, a| g.gf(a)),
                    ("gf2", t.gf2(a), |g, a| g.gf2(a)),
                ];
                for (q, an, get) in quantities {
                    let fd = fd_grad(&c, &|c| get(&Growth::new(c, a_max).unwrap(), a));
                    let w = compare(&format!("{name}: {q}({a})"), &c, &an, &fd, get(&g, a), tol);
                    worst = worst.max(w);
                }
            }
        }
        eprintln!("growth tangents (D1, D2, gp, gp2, gf, gf2, D1_EdS(1)): worst rel err vs FD {worst:.2e}");
    }

    #[test]
    fn step_factor_tangents_match_finite_differences() {
        let a_max = 1.2;
        let steps = [
            (0.01, 0.0505, 0.01),
            (0.01, 0.1, 0.0505),
            (0.3, 0.35, 0.35),
            (0.6, 1.0, 0.8),
            (0.9, 1.2, 1.05),
        ];
        // Measured worst 2.47e-8 (kick) and 3.58e-8 (drift) (2026-12-08; docs/adjoint.md §T
        // quotes 4e-8); tolerances ≈3×.
        let (tol_kick, tol_drift) = (7.5e-8, 1.1e-7);
        let (mut wk, mut wd): (f64, f64) = (0.0, 0.0);
        for (name, c) in cosmologies() {
            let t = CosmoTangents::new(&c, &Transfer::EisensteinHuNoWiggle, a_max).unwrap();
            let st = Stepper::new(Growth::new(&c, a_max).unwrap(), c.omega_m);
            let stepper = |c: &Cosmology| Stepper::new(Growth::new(c, a_max).unwrap(), c.omega_m);
            for &(a0, a1, ac) in &steps {
                let fd = fd_grad(&c, &|c| stepper(c).kick_factor(a0, a1, ac));
                let what = format!("{name}: kick({a0}, {a1}, {ac})");
                wk = wk.max(compare(
                    &what,
                    &c,
                    &t.kick_factor(a0, a1, ac),
                    &fd,
                    st.kick_factor(a0, a1, ac),
                    tol_kick,
                ));
                let fd = fd_grad(&c, &|c| stepper(c).drift_factor(a0, a1, ac));
                let what = format!("{name}: drift({a0}, {a1}, {ac})");
                wd = wd.max(compare(
                    &what,
                    &c,
                    &t.drift_factor(a0, a1, ac),
                    &fd,
                    st.drift_factor(a0, a1, ac),
                    tol_drift,
                ));
            }
        }
        eprintln!("kick factor tangents: worst rel err vs FD {wk:.2e}; drift factor: {wd:.2e}");
    }

    fn class_table() -> PowerTable {
        PowerTable::from_file(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/pk_lin_z0.txt"))).unwrap()
    }

    #[test]
    fn power_tangents_match_finite_differences() {
        let ks = [1e-4, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];
        let table = Transfer::Table(class_table());
        // Measured worst 1.79e-8 (A_s, EH no-wiggle; 2026-12-08; docs/adjoint.md §T quotes 2e-8);
        // tolerance ≈3×.
        let tol = 5.4e-8;
        let mut report = Vec::new();
        for (name, c) in cosmologies() {
            let mut transfers = vec![("EH", Transfer::EisensteinHu), ("EH no-wiggle", Transfer::EisensteinHuNoWiggle)];
            if c.a_s.is_none() {
                transfers.push(("table", table.clone()));
                let as_is = Cosmology { sigma8: None, ..c.clone() };
                let t = CosmoTangents::new(&as_is, &table, 1.0).unwrap();
                for &k in &ks {
                    assert_eq!(t.dlnp_dtheta(k), [0.0; N_PARAMS], "a table used as is is fixed");
                }
            }
            for (tname, transfer) in transfers {
                let t = CosmoTangents::new(&c, &transfer, 1.0).unwrap();
                let lp = |c: &Cosmology| LinearPower::new(c, transfer.clone(), &Growth::new(c, 1.0).unwrap()).unwrap();
                let base = lp(&c);
                let mut worst: f64 = 0.0;
                for &k in &ks {
                    let fd = fd_grad(&c, &|c| lp(c).p(k).ln());
                    let dln = t.dlnp_dtheta(k);
                    // Compare ∂ln P as a dual whose value is ln P.
                    let an = Tangent::new(base.p(k).ln(), dln);
                    let what = format!("{name}, {tname}: dlnP/dθ at k = {k}");
                    worst = worst.max(compare(&what, &c, &an, &fd, base.p(k).ln(), tol));
                    assert_eq!(t.p(k).value, base.p(k), "{what}: value");
                    if matches!(transfer, Transfer::Table(_)) {
                        // Only the σ_8 rescaling: ∂ln P/∂σ_8 = 2/σ_8 (eq. T8).
                        let s8 = c.sigma8.unwrap();
                        assert!((dln[Param::Amplitude.index()] * s8 / 2.0 - 1.0).abs() < 1e-12);
                        assert!(Param::ALL.iter().all(|&p| p == Param::Amplitude || dln[p.index()] == 0.0));
                    }
                }
                assert_eq!(t.dlnp_dtheta(0.0), [0.0; N_PARAMS]);
                assert_eq!(t.linear().sigma8().value, base.sigma8());
                report.push(format!("{name}, {tname}: {worst:.2e}"));
            }
        }
        eprintln!("dlnP/dθ worst rel err vs FD:\n  {}", report.join("\n  "));
    }

    #[test]
    fn a_s_tangents_follow_the_closed_form() {
        // eq. T7: ∂ln A/∂ln A_s = 1, ∂ln P/∂n_s = ln(k/k_p) + 2 ∂ln T/∂n_s (= 0), ∂ln A/∂h gets
        // −(1 − n_s)/h from the pivot k_p = 0.05/h; the rest of h comes from T.
        let c = Cosmology {
            sigma8: None,
            a_s: Some(2.1e-9),
            ..Cosmology::planck18()
        };
        let t = CosmoTangents::new(&c, &Transfer::EisensteinHu, 1.0).unwrap();
        for k in [0.01, 0.3] {
            let d = t.dlnp_dtheta(k);
            assert!((d[Param::Amplitude.index()] * 2.1e-9 - 1.0).abs() < 1e-12);
            let want = (k / (0.05 / c.h)).ln();
            assert!((d[Param::NS.index()] - want).abs() < 1e-12, "{} vs {want}", d[Param::NS.index()]);
            let dt = t.linear().transfer(k).unwrap();
            let want_h = -(1.0 - c.n_s) / c.h + 2.0 * dt.grad[Param::H.index()] / dt.value;
            assert!((d[Param::H.index()] - want_h).abs() < 1e-12 * want_h.abs().max(1.0));
        }
    }

    #[test]
    fn lambda_keeps_the_dark_energy_derivatives() {
        // At w0 = −1, wa = 0 the f64 code takes the ρ_de = 1 shortcut; the tangent must not.
        let c = Cosmology::planck18();
        let t = CosmoTangents::new(&c, &Transfer::EisensteinHu, 1.0).unwrap();
        let bg = t.growth().background();
        for a in [0.1, 0.5, 2.0] {
            let r = bg.de_density_ratio(a);
            assert_eq!(r.value, 1.0);
            let want_w0 = -3.0 * a.ln();
            let want_wa = -3.0 * a.ln() - 3.0 * (1.0 - a);
            assert!((r.grad[Param::W0.index()] - want_w0).abs() < 1e-15);
            assert!((r.grad[Param::Wa.index()] - want_wa).abs() < 1e-15);
        }
        let d = t.d1(0.5);
        assert!(d.grad[Param::W0.index()].abs() > 1e-3 && d.grad[Param::Wa.index()].abs() > 1e-4);
    }

    #[test]
    fn names_and_cotangent() {
        let c = Cosmology::planck18();
        let names: Vec<&str> = Param::ALL.iter().map(|p| p.name(&c)).collect();
        assert_eq!(names, ["omega_m", "omega_b", "h", "n_s", "sigma8", "w0", "wa", "omega_k", "t_cmb"]);
        for (i, p) in Param::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        let ca = Cosmology {
            sigma8: None,
            a_s: Some(2e-9),
            ..c.clone()
        };
        assert_eq!(Param::Amplitude.name(&ca), "a_s");
        let grad: [f64; N_PARAMS] = std::array::from_fn(|i| i as f64 + 1.0);
        let g = cosmology_cotangent(&grad, &c);
        assert_eq!((g.omega_m, g.omega_b, g.h, g.n_s), (1.0, 2.0, 3.0, 4.0));
        assert_eq!((g.sigma8, g.a_s), (Some(5.0), None));
        assert_eq!((g.w0, g.wa, g.omega_k, g.t_cmb), (6.0, 7.0, 8.0, 9.0));
        let g = cosmology_cotangent(&grad, &ca);
        assert_eq!((g.sigma8, g.a_s), (None, Some(5.0)));
        let g = cosmology_cotangent(&grad, &Cosmology { sigma8: None, ..c.clone() });
        assert_eq!((g.sigma8, g.a_s), (None, None));
        // Each field of the cotangent is the component named by Param::name.
        let toml = toml::to_string(&cosmology_cotangent(&grad, &c)).unwrap();
        for p in Param::ALL {
            assert!(toml.contains(&format!("{} = {:?}", p.name(&c), grad[p.index()])), "{toml}");
        }
    }

    #[test]
    fn errors_match_the_f64_builders() {
        let c = Cosmology::planck18();
        let both = Cosmology {
            a_s: Some(2e-9),
            ..c.clone()
        };
        let msg = CosmoTangents::new(&both, &Transfer::EisensteinHu, 1.0).unwrap_err().to_string();
        assert!(msg.contains("cosmology.sigma8"), "{msg}");
        let msg = CosmoTangents::new(&c, &Transfer::EisensteinHu, f64::NAN).unwrap_err().to_string();
        assert!(msg.contains("time.a_stop"), "{msg}");
        let msg = CosmoTangents::new(&Cosmology { h: -1.0, ..c }, &Transfer::EisensteinHu, 1.0)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cosmology.h"), "{msg}");
    }

    #[test]
    fn new_timing() {
        let c = Cosmology::planck18();
        let n = 5;
        let t0 = std::time::Instant::now();
        let mut s = 0.0;
        for _ in 0..n {
            s += CosmoTangents::new(&c, &Transfer::EisensteinHu, 1.0).unwrap().d1(0.5).value;
        }
        let per = t0.elapsed().as_secs_f64() / n as f64;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            let g = Growth::new(&c, 1.0).unwrap();
            s += LinearPower::new(&c, Transfer::EisensteinHu, &g).unwrap().p(0.1);
        }
        let per_f64 = t0.elapsed().as_secs_f64() / n as f64;
        eprintln!(
            "CosmoTangents::new (Planck18, EH): {:.2} ms; Growth::new + LinearPower::new in f64: {:.2} ms ({s:.3})",
            per * 1e3,
            per_f64 * 1e3
        );
        assert!(per < 1.0, "CosmoTangents::new took {per} s");
    }
}
