//! # pm-adjoint
//!
//! Exact gradients of a loss on a PM simulation by the **reverse-time adjoint**: the backward pass
//! runs the FastPM leapfrog in reverse from the final state, reconstructing each step's positions
//! and momenta, while it evolves the adjoint variables with the exact discrete transpose of every
//! kick, drift and force sub-step (discretize-then-optimize; Li et al. 2022, arXiv:2211.09815,
//! Sec. 3; derivation in docs/adjoint.md §R). No trajectory is stored: memory does not grow with
//! the number of steps.
//!
//! One call, [`value_and_grad`], returns the loss and [`Gradients`] with respect to
//! * the white noise (`white_noise`, same shape as the input),
//! * the cosmological parameters (`cosmology`: a [`pm_core::Cosmology`] holding ∂L/∂Ω_m, ∂L/∂σ₈, …),
//! * the parameters of a learned force correction installed with
//!   [`Simulation::set_force_correction`](pm_core::sim::Simulation::set_force_correction)
//!   (`force_params`).
//!
//! The objective is a sum of losses ([`pm_core::loss::Loss`]) on the state at the final time or at
//! any snapshot time ([`Objective`]). The primal is recovered by pure reverse integration or from
//! checkpoints every K steps ([`Recover`]); either way the reversal error is reported.
//!
//! ```
//! use pm_core::{config::Config, loss::FieldMse, sim::Simulation};
//! use pm_adjoint::{value_and_grad, GradOptions, Objective};
//! let mut c = Config::default();
//! (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 64.0, 3);
//! let mut sim = Simulation::<f64>::new(&c)?;
//! let w = sim.white_noise();
//! let loss = FieldMse::new(None)?;
//! let g = value_and_grad(&mut sim, &w, &Objective::final_state(&loss), &GradOptions::default())?;
//! assert_eq!(g.white_noise.len(), w.len());
//! assert!(g.reversal_error < 1e-10);
//! let dl_domega_m = g.cosmology.unwrap().omega_m;
//! assert!(dl_domega_m.is_finite());
//! # Ok::<(), pm_adjoint::Error>(())
//! ```

mod cosmo;
mod error;
mod grad;
pub mod infer;
mod objective;
pub mod optim;
pub mod recon;

pub use error::{Error, Result};
pub use grad::{loss_value, reversal_warning, value_and_grad, GradOptions, Gradients, Recover, REVERSAL_WARN};
pub use objective::Objective;
