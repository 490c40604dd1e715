//! Initial-field reconstruction: the posterior of the white noise given an observed late-time
//! density mesh, its gradient by the adjoint, and the annealed L-BFGS driver
//! (derivation and choices in docs/reconstruction.md).
//!
//! **Data model** (docs/reconstruction.md eq. X1): on the force mesh (m³ cells, C order)
//! `δ_obs = S δ(w) + n`, with δ(w) the CIC density contrast of the final particles run from white
//! noise w ([`Simulation::density`]), S a Gaussian smoothing `S(k) = exp(−k²R_d²/2)` (R_d ≥ 0
//! Mpc/h, `R_d = 0`: none), and n Gaussian noise, white with per-cell standard deviation σ or with
//! a noise power spectrum P_N(k) in (Mpc/h)³, i.e. per-mode variance `σ²(k) = P_N(k)/V_cell`.
//!
//! **Forward** (eq. X2): with the residual `r = S δ − δ_obs`, the annealing window
//! `W_R(k) = exp(−k²R²/2)` and `C_R⁻¹ = F⁻¹ diag(W_R²(k)/σ²(k)) F` (F the DFT on the mesh, a
//! symmetric positive operator on real fields),
//! `−ln p(w | δ_obs) = ½ rᵀ C_R⁻¹ r + ½ |w|² + const`. At R = 0 this is the exact posterior.
//!
//! **Adjoint** (eq. X3): `∂/∂δ (½ rᵀC⁻¹r) = S C_R⁻¹ r` (S and C_R⁻¹ are symmetric), pulled back
//! to w by [`value_and_grad`]; the prior adds w.
//!
//! **Joint fit of (Ω_m, σ₈)** (docs/reconstruction.md §J): forward
//! `J = ½χ² + ½|w|² + ½ Σ_k ln(1 + h(k; θ))` (eq. J1; calibrated weights: `½ Σ_k f(k) ln h`,
//! eq. J6) over w = B(θ) M u (eq. J4); adjoint `∂J/∂u = M B ∂J/∂w` and
//! `∂J/∂θ|_u = ∂J/∂θ|_w − ½ Σ_k Re[ĝ* ŵ]/n³ ∂ln P_L/∂θ` (eq. J5), with ∂J/∂θ|_w from the adjoint's
//! cosmology gradient and the forward-mode tangents of the Laplace term (eq. J2).
//!
//! [`Simulation::density`]: pm_core::sim::Simulation::density
//! [`value_and_grad`]: crate::value_and_grad

mod cosmology_fit;
mod driver;
mod mock;
mod noise;
mod posterior;
mod preconditioner;
mod schedule;
#[cfg(test)]
mod testing;

pub use cosmology_fit::{calibrate_laplace_weights, config_at, CosmologyFit, LaplaceTerm};
pub use driver::{reconstruct, ReconProgress, ReconResult};
pub use mock::{linear_wiener, mock_observation};
pub use noise::NoiseModel;
pub use posterior::Posterior;
pub use preconditioner::{Preconditioner, Preconditioning};
pub use schedule::{default_schedule, Stage, DEFAULT_STAGE_SHARES};
