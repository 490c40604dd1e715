//! Scalar losses of a simulation's final state, with their VJPs: the capability trait the adjoint
//! loop (pm-adjoint) is generic over, and the field mean-squared error.
//!
//! **Field MSE** (forward): `L = (1/M) Σ_c (δ_c − δ_T,c)²` with δ the CIC density contrast of the
//! final particles on the force mesh (M = m³ cells), exactly as `simulate` writes `density.npy`.
//! **VJP**: `δ̄ = 2(δ − δ_T)/M`; δ = paint(s)·m³/N_p − 1, so the paint cotangent is `δ̄·m³/N_p` and
//! `s̄ += paint_vjp_pos(s; δ̄·m³/N_p)` (docs/adjoint.md eq. C1). The momenta do not enter.

use crate::error::{Error, Result};
use crate::float::Real;
use crate::sim::{Simulation, State};

/// A scalar loss of the final particle state whose VJP the adjoint loop can pull back.
pub trait Loss<T: Real> {
    /// Returns L(state) and **adds** ∂L/∂s to `disp_cot` and ∂L/∂p to `mom_cot`.
    fn value_and_cot(&self, sim: &Simulation<T>, state: &State<T>, disp_cot: &mut [[T; 3]], mom_cot: &mut [[T; 3]]) -> f64;

    /// L(state) alone (the default calls [`Loss::value_and_cot`] on scratch cotangents).
    fn value(&self, sim: &Simulation<T>, state: &State<T>) -> f64 {
        let n = state.disp.len();
        self.value_and_cot(sim, state, &mut vec![[T::zero(); 3]; n], &mut vec![[T::zero(); 3]; n])
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
            if let Some(i) = t.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: "loss target".into(),
                    detail: format!("value {} at flat index {i}", t[i]),
                });
            }
        }
        Ok(FieldMse { target })
    }
}

impl<T: Real> Loss<T> for FieldMse<T> {
    fn value_and_cot(&self, sim: &Simulation<T>, state: &State<T>, disp_cot: &mut [[T; 3]], _mom_cot: &mut [[T; 3]]) -> f64 {
        let delta = sim.density(state);
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
        sim.gravity().cic().paint_vjp_pos(&state.disp, None, &cot, disp_cot);
        loss
    }
}
