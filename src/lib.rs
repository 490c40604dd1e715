//! # cosmograd
//!
//! Differentiable cosmological particle-mesh (PM) N-body simulations in Rust. This facade crate
//! re-exports the workspace crates and holds the `cosmograd` command-line tool:
//! - [`core`] (`pm-core`): cosmology, growth, linear P(k), white noise, LPT, CIC, FFT gravity,
//!   the FastPM leapfrog, power spectra — every operator with its VJP;
//! - [`adjoint`] (`pm-adjoint`): the reverse-time adjoint loop and gradient API;
//! - [`nn`] (`pm-nn`): 3D conv nets on candle and the bridge into the simulation.
//!
//! A forward run through the library:
//! ```
//! use cosmograd::core::{config::Config, sim::{Simulation, Event}};
//! let mut config = Config::default();
//! config.box_.particles = 8;
//! config.box_.mesh = 16;
//! config.box_.size = 64.0;
//! config.time.steps = 4;
//! let mut sim = Simulation::<f32>::new(&config)?;
//! let w = sim.white_noise();
//! let mut state = sim.initial_conditions(w)?;
//! sim.run(&mut state, |_ev: Event<'_, f32>| Ok(()))?;
//! let delta = sim.density(&state);
//! let pk = sim.power(&delta);
//! assert_eq!(state.a, 1.0);
//! assert!(pk.p.iter().all(|p| p.is_finite() && *p > 0.0));
//! # Ok::<(), cosmograd::core::Error>(())
//! ```

pub use pm_adjoint as adjoint;
pub use pm_core as core;
pub use pm_nn as nn;

pub mod cli;
pub mod gradient;
pub mod memory;
pub mod output;
pub mod plot;
pub mod reconstruct;
pub mod simulate;
#[cfg(test)]
mod test_data;
