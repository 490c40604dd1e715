//! # pm-nn
//!
//! 3D convolutional networks on candle for cosmological fields (U-net, CNN heads) and the bridge
//! that plugs a network's VJP into pm-core's traits:
//!
//! * [`force::MlpCorrection`]: a candle MLP f_θ(|k|, a) multiplying the PM potential, implementing
//!   pm-core's `ForceCorrection`, so its weights are trained through pm-adjoint's adjoint loop;
//! * [`bridge::NetLoss`]: a loss whose value is a candle network's output on the simulation's
//!   density mesh, implementing pm-core's `Loss`: its cotangent flows into the simulation's
//!   adjoint and the network's weight gradients are accumulated in the same call;
//! * [`train`]: a generic training loop (AdamW, validation split, safetensors checkpoints,
//!   progress bar, seeded shuffling).
//!
//! Errors: [`Error`].

pub mod bridge;
pub mod error;
pub mod force;
pub mod train;

pub use error::{Error, Result};
