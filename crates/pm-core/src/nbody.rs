//! The time step and its adjoint side by side (as pmwd's `nbody.py`): the force and its VJP, the
//! FastPM kick–drift–kick step, its exact reversal, and the adjoint step that runs the primal
//! backwards while it pulls the cotangents back.
//!
//! Forward, one KDK step from a₀ to a₁ with coefficients (K1, Δ, K2) (docs/physics.md eq. 5.3):
//! ```text
//!   p' = p₀ + K1 A(s₀)      s₁ = s₀ + Δ p'      A₁ = A(s₁)      p₁ = p' + K2 A₁
//! ```
//! Adjoint (docs/adjoint.md eqs. L1–L3, R2–R4, R9), given s̄, p̄ at a₁ after the second half kick's
//! VJP (s̄ += K2 (∂A/∂s)ᵀ p̄ at s₁, K̄2 = ⟨p̄, A₁⟩, done by [`Simulation::kick_adj`]):
//! ```text
//!   drift:  p̄ += Δ s̄,                       Δ̄  = ⟨s̄, p'⟩,   p' = p₁ − K2 A₁
//!   reverse the primal: p' = p₁ − K2 A₁, s₀ = s₁ − Δ p', A(s₀), p₀ = p' − K1 A(s₀)
//!   kick 1: s̄ += c (∂A/∂s)ᵀ p̄ at s₀,        ⟨p̄, A(s₀)⟩ (→ K̄1, and K̄2 of the step before)
//! ```
//! where c = K1, or K1 + K2 of the step before when no loss term sits at a₀ (the two half kicks
//! that meet at s₀ share one force VJP, eq. R4). The reverse loop that chains these steps and
//! collects the coefficient cotangents is `pm_adjoint::value_and_grad`.

use crate::backend::{dot3, rel_dist, Serial};
use crate::float::Real;
use crate::gravity::Corrected;
use crate::leapfrog::{drift_vjp, kick, kick_dot, kick_drift};
use crate::sim::{Simulation, State};

/// A stored particle state (displacements, momenta), e.g. a checkpoint of the adjoint's forward
/// pass.
pub type Phase<T> = (Vec<[T; 3]>, Vec<[T; 3]>);

/// The cotangents the adjoint step carries: ∂L/∂s, ∂L/∂p per particle and ∂L/∂θ of the force
/// correction's parameters.
#[derive(Clone, Debug)]
pub struct Cotangents<T: Real> {
    /// ∂L/∂s (per particle, units of L per Mpc/h).
    pub disp: Vec<[T; 3]>,
    /// ∂L/∂p (per particle).
    pub mom: Vec<[T; 3]>,
    /// ∂L/∂θ of the installed force correction (empty without one).
    pub params: Vec<f64>,
}

impl<T: Real> Cotangents<T> {
    /// Zero cotangents for `n` particles and `n_params` correction parameters.
    pub fn zeros(n: usize, n_params: usize) -> Self {
        Cotangents {
            disp: vec![[T::zero(); 3]; n],
            mom: vec![[T::zero(); 3]; n],
            params: vec![0.0; n_params],
        }
    }
}

/// What one adjoint step returns besides the updated cotangents.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepAdjoint {
    /// Δ̄ = ∂L/∂Δ of the step's drift coefficient.
    pub drift: f64,
    /// ⟨p̄, A(s₀)⟩: the cotangent of the coefficient of a kick by A(s₀) (eq. R9).
    pub kick_at_start: f64,
    /// With a restore: ‖s(reversed) − s‖/‖s‖ and the same for p, the larger (eq. R7).
    pub reversal_error: Option<f64>,
}

impl<T: Real> Simulation<T> {
    /// Evaluates the force at `disp` and scale factor `a` into `out` (with the correction, if any).
    fn force(&mut self, disp: &[[T; 3]], a: f64, out: &mut [[T; 3]]) {
        let corr = self.correction.as_deref().map(|model| Corrected { model, a });
        let (gravity, ws) = self.pm.force_parts();
        gravity.accel_with(disp, 1.0, corr, out, ws);
    }

    /// Adds `scale · (∂A/∂s)ᵀ ā` to `disp_cot` for the force at displacements `disp` and scale
    /// factor `a` (the gravity VJP with this simulation's scratch and force correction), and, when
    /// `param_cot` is given and a correction is installed, `scale · (∂A/∂θ)ᵀ ā` to it.
    pub fn accel_vjp(
        &mut self,
        disp: &[[T; 3]],
        a: f64,
        scale: f64,
        accel_cot: &[[T; 3]],
        disp_cot: &mut [[T; 3]],
        param_cot: Option<&mut [f64]>,
    ) {
        let corr = self.correction.as_deref().map(|model| Corrected { model, a });
        let (gravity, ws) = self.pm.force_parts();
        gravity.accel_vjp_with(disp, scale, corr, accel_cot, disp_cot, param_cot, ws);
    }

    /// Recomputes `state.accel` from `state.disp` at `state.a` (after the positions were replaced,
    /// e.g. from a checkpoint).
    pub fn refresh_accel(&mut self, state: &mut State<T>) {
        let mut acc = std::mem::take(&mut state.accel);
        acc.resize(state.disp.len(), [T::zero(); 3]);
        self.force(&state.disp, state.a, &mut acc);
        state.accel = acc;
    }

    /// Advances `state` by one FastPM KDK step to `a1`.
    pub fn step(&mut self, state: &mut State<T>, a1: f64) {
        let (k1, dr, k2) = self.step_factors(state.a, a1);
        kick_drift(&mut state.disp, &mut state.mom, &state.accel, k1, dr);
        self.force(&state.disp, a1, &mut state.accel);
        kick(&mut state.mom, &state.accel, k2);
        state.a = a1;
    }

    /// Runs one KDK step backwards, from `state.a` to `a0` (the exact algebraic inverse of
    /// [`Simulation::step`]; in floating point it recovers the earlier state up to rounding).
    pub fn step_back(&mut self, state: &mut State<T>, a0: f64) {
        let (k1, dr, k2) = self.step_factors(a0, state.a);
        kick_drift(&mut state.disp, &mut state.mom, &state.accel, -k2, -dr);
        self.force(&state.disp, a0, &mut state.accel);
        kick(&mut state.mom, &state.accel, -k1);
        state.a = a0;
    }

    /// The VJP of a half kick `p += k A(s)` at the current state: adds `k (∂A/∂s)ᵀ p̄` to s̄ (and
    /// the θ̄ term) and returns `⟨p̄, A(s)⟩`, the cotangent of `k` (docs/adjoint.md eqs. L1, R9).
    pub fn kick_adj(&mut self, state: &State<T>, k: f64, cot: &mut Cotangents<T>) -> f64 {
        let dot = dot3(&Serial, &cot.mom, &state.accel);
        self.accel_vjp(&state.disp, state.a, k, &cot.mom, &mut cot.disp, Some(&mut cot.params));
        dot
    }

    /// The adjoint of the KDK step from `a0` to `state.a` (module docs): the drift's VJP, then the
    /// primal runs back to `a0` — by reversal, or, with `restore`, by loading the stored state at
    /// `a0` after measuring the reversal error — and the force VJP at s₀ with coefficient `coef`
    /// (K1, or K1 plus the previous step's K2 when the two half kicks share it) is added.
    pub fn step_adj(
        &mut self,
        state: &mut State<T>,
        a0: f64,
        coef: f64,
        cot: &mut Cotangents<T>,
        restore: Option<Phase<T>>,
    ) -> StepAdjoint {
        let (k1, dr, k2) = self.step_factors(a0, state.a);
        let drift = drift_vjp(&mut cot.mom, &cot.disp, &state.mom, &state.accel, dr, k2);
        let params = Some(&mut cot.params[..]);
        if let Some((s, p)) = restore {
            self.step_back(state, a0);
            let err = rel_dist(&Serial, &state.disp, &s).max(rel_dist(&Serial, &state.mom, &p));
            (state.disp, state.mom) = (s, p);
            self.refresh_accel(state);
            self.accel_vjp(&state.disp, a0, coef, &cot.mom, &mut cot.disp, params);
            return StepAdjoint {
                drift,
                kick_at_start: dot3(&Serial, &cot.mom, &state.accel),
                reversal_error: Some(err),
            };
        }
        // Reversal and VJP at the same positions, fused (one paint, one set of meshes).
        kick_drift(&mut state.disp, &mut state.mom, &state.accel, -k2, -dr);
        let corr = self.correction.as_deref().map(|model| Corrected { model, a: a0 });
        let (gravity, ws) = self.pm.force_parts();
        gravity.accel_and_vjp(&state.disp, corr, &mut state.accel, coef, &cot.mom, &mut cot.disp, params, ws);
        let kick_at_start = kick_dot(&mut state.mom, &state.accel, -k1, &cot.mom);
        state.a = a0;
        StepAdjoint {
            drift,
            kick_at_start,
            reversal_error: None,
        }
    }
}
