//! What a simulation derives from the cosmology: the growth tables (D₁, D₂, g_p, g_f and their
//! second-order counterparts), the normalised linear power P_L(k) and the FastPM step
//! coefficients. Built in milliseconds; a change of cosmology rebuilds only these
//! ([`crate::sim::Simulation::set_cosmology`]), never the box-dependent plans of [`crate::pm::Pm`].
//!
//! The formulas live with their operators: growth in `growth.rs` (docs/cosmology.md eqs. 6–13),
//! P_L in `linear.rs` (eqs. 14–24), the step factors in `leapfrog.rs` (docs/physics.md eq. 5.3).
//! Their derivatives with respect to the parameters (forward mode) are
//! [`CosmoTables::tangents`] (docs/adjoint.md §T).

use crate::config::Spacing;
use crate::cosmology::{Cosmology, TransferChoice};
use crate::error::Result;
use crate::growth::Growth;
use crate::leapfrog::Stepper;
use crate::linear::{LinearPower, PowerTable, Transfer};
use crate::tangent::CosmoTangents;

/// The cosmology-dependent tables of a run (f64).
#[derive(Clone, Debug)]
pub struct CosmoTables {
    cosmo: Cosmology,
    transfer: Transfer,
    linear: LinearPower,
    stepper: Stepper,
    a_max: f64,
}

impl CosmoTables {
    /// Validates `cosmo`, loads its transfer (a table file is read here) and builds the growth
    /// tables up to scale factor `max(a_max, 1)` and the normalised P_L.
    ///
    /// Errors: an invalid cosmology, an unreadable transfer table, the σ₈/A_s rule.
    pub fn new(cosmo: &Cosmology, a_max: f64) -> Result<Self> {
        cosmo.validate()?;
        let transfer = match &cosmo.transfer {
            TransferChoice::EisensteinHu => Transfer::EisensteinHu,
            TransferChoice::EisensteinHuNoWiggle => Transfer::EisensteinHuNoWiggle,
            TransferChoice::File(path) => Transfer::Table(PowerTable::from_file(path)?),
        };
        Self::with_transfer(cosmo, transfer, a_max)
    }

    /// As [`CosmoTables::new`] with the transfer already loaded.
    fn with_transfer(cosmo: &Cosmology, transfer: Transfer, a_max: f64) -> Result<Self> {
        cosmo.validate()?;
        let a_max = a_max.max(1.0);
        let growth = Growth::new(cosmo, a_max)?;
        let linear = LinearPower::new(cosmo, transfer.clone(), &growth)?;
        Ok(CosmoTables {
            stepper: Stepper::new(growth, cosmo.omega_m),
            cosmo: cosmo.clone(),
            transfer,
            linear,
            a_max,
        })
    }

    /// The same tables at another cosmology. A tabulated transfer that `cosmo` names again is
    /// reused, not read again.
    pub fn at(&self, cosmo: &Cosmology) -> Result<Self> {
        if cosmo.transfer == self.cosmo.transfer {
            Self::with_transfer(cosmo, self.transfer.clone(), self.a_max)
        } else {
            Self::new(cosmo, self.a_max)
        }
    }

    /// The cosmological parameters.
    pub fn cosmology(&self) -> &Cosmology {
        &self.cosmo
    }
    /// Growth tables (D₁, D₂ and the FastPM factors).
    pub fn growth(&self) -> &Growth {
        self.stepper.growth()
    }
    /// Linear power spectrum at a = 1.
    pub fn linear_power(&self) -> &LinearPower {
        &self.linear
    }
    /// The loaded shape of the linear power spectrum.
    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }
    /// The FastPM time-step coefficients.
    pub fn stepper(&self) -> &Stepper {
        &self.stepper
    }
    /// Linear P(k, a) = P_L(k)·D₁(a)² in (Mpc/h)³, k in h/Mpc.
    pub fn p_linear(&self, k: f64, a: f64) -> f64 {
        self.linear.p(k) * self.growth().d1(a).powi(2)
    }
    /// The three coefficients `(K1, Δ, K2)` of the KDK step from `a0` to `a1`: first half kick,
    /// drift, second half kick (docs/physics.md eq. 5.3).
    pub fn step_factors(&self, a0: f64, a1: f64, spacing: Spacing) -> (f64, f64, f64) {
        self.stepper.step_factors(a0, a1, spacing)
    }
    /// The forward-mode tangents of every table with respect to the parameters (docs/adjoint.md
    /// §T), built on demand (a few ms).
    pub fn tangents(&self) -> Result<CosmoTangents> {
        CosmoTangents::new(&self.cosmo, &self.transfer, self.a_max)
    }
}
