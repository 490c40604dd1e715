//! Cosmological-parameter gradients: the scalar cotangents the reverse loop collects (∂L/∂ of every
//! kick, drift and initial-condition coefficient, and of ln sqrt(P_L) per |k|; docs/adjoint.md
//! eq. R9), contracted with the forward-mode tangents of pm-core (eq. T11).

use crate::Result;
use pm_core::cosmology::Cosmology;
use pm_core::float::Real;
use pm_core::sim::Simulation;
use pm_core::tangent::{cosmology_cotangent, Tangent, N_PARAMS};

/// ∂L/∂(each scalar coefficient of the run).
#[derive(Clone, Debug, Default)]
pub(crate) struct ScalarCots {
    /// ∂L/∂K1ᵢ per step.
    pub k1: Vec<f64>,
    /// ∂L/∂K2ᵢ per step.
    pub k2: Vec<f64>,
    /// ∂L/∂Δᵢ per step.
    pub drift: Vec<f64>,
    /// ∂L/∂D₁ at a_start.
    pub d1: f64,
    /// ∂L/∂D₂ at a_start.
    pub d2: f64,
    /// ∂L/∂g_p at a_start.
    pub gp: f64,
    /// ∂L/∂g_p2 at a_start.
    pub gp2: f64,
    /// ∂L/∂ln sqrt(P_L(k_j)) per |ν|² = j of the particle lattice.
    pub power: Vec<f64>,
}

impl ScalarCots {
    pub fn new(nsteps: usize) -> Self {
        ScalarCots {
            k1: vec![0.0; nsteps],
            k2: vec![0.0; nsteps],
            drift: vec![0.0; nsteps],
            ..Default::default()
        }
    }
}

/// eq. T11: ∂L/∂θ = Σ_c (∂L/∂c) ∂c/∂θ over the step factors of `bounds`, the initial-condition
/// growth factors at bounds[0] and the linear power per |k|; returned as a [`Cosmology`] of
/// derivatives.
pub(crate) fn cosmology_gradient<T: Real>(sim: &Simulation<T>, bounds: &[f64], cots: &ScalarCots) -> Result<Cosmology> {
    let tan = sim.cosmo_tangents()?;
    let spacing = sim.config().time.spacing;
    let mut g = [0.0f64; N_PARAMS];
    let mut add = |c: f64, t: Tangent| g.iter_mut().zip(t.grad).for_each(|(gi, ti)| *gi += c * ti);
    for (i, w) in bounds.windows(2).enumerate() {
        let (k1, dr, k2) = tan.stepper().step_factors(w[0], w[1], spacing);
        add(cots.k1[i], k1);
        add(cots.drift[i], dr);
        add(cots.k2[i], k2);
    }
    let a0 = bounds[0];
    add(cots.d1, tan.d1(a0));
    add(cots.d2, tan.d2(a0));
    add(cots.gp, tan.gp(a0));
    add(cots.gp2, tan.gp2(a0));
    let kf = sim.lattice().kf();
    for (j, &c) in cots.power.iter().enumerate() {
        if c != 0.0 && j > 0 {
            let dlnp = tan.dlnp_dtheta(kf * (j as f64).sqrt());
            g.iter_mut().zip(dlnp).for_each(|(gi, d)| *gi += 0.5 * c * d);
        }
    }
    Ok(cosmology_cotangent(&g, sim.cosmology()))
}
