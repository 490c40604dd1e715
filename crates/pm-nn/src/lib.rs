//! # pm-nn
//!
//! 3D convolutional networks on candle for cosmological fields (U-net, CNN heads) and the bridge
//! that plugs a network's VJP into pm-core's traits:
//!
//! - [`conv`]: conv3d (fused im2col + gemm custom op on CPU with a hand-written backward, a
//!   candle-ops fallback for other devices), transposed conv3d, 1³ kernels, stride 2.
//! - [`pad`]: periodic padding (exact translation equivariance on periodic boxes) and crops of a
//!   periodic box with a halo for valid convolutions, with their reassembly.
//! - [`layers`], [`unet`], [`cnn`]: a configurable U-net (Wu et al. 2021 preset) and a CNN
//!   regression head (Pan et al. 2020 presets for 60³ and 128³), weights as candle `Var`s.
//! - [`symmetry`]: the 48 cube symmetries for augmentation (vector components permuted/negated).
//! - [`normalize`]: linear-theory normalisation (δ/D, s/D, v/(aHfD)).
//! - [`weights`]: safetensors files with the architecture config in the header.
//! - [`force::MlpCorrection`]: a candle MLP f_θ(|k|, a) multiplying the PM potential, implementing
//!   pm-core's `ForceCorrection`, so its weights are trained through pm-adjoint's adjoint loop.
//! - [`bridge::NetLoss`]: a loss whose value is a candle network's output on the simulation's
//!   density mesh, implementing pm-core's `Loss`: its cotangent flows into the simulation's
//!   adjoint and the network's weight gradients are accumulated in the same call.
//! - [`train`]: a generic training loop (AdamW, validation split, safetensors checkpoints,
//!   progress bar, seeded shuffling).
//! - [`error`]: the crate's error type.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::randn(0f32, 1.0, (1, 2, 8, 8, 8), &Device::Cpu)?;
//! let w = Tensor::randn(0f32, 0.1, (4, 2, 3, 3, 3), &Device::Cpu)?;
//! let y = pm_nn::conv::conv3d(&pm_nn::pad::pad_periodic(&x, 1)?, &w, 1, 0)?; // periodic "same" conv
//! assert_eq!(y.dims(), &[1, 4, 8, 8, 8]);
//! # Ok::<(), pm_nn::Error>(())
//! ```

pub mod bridge;
pub mod cnn;
pub mod conv;
pub mod error;
pub mod force;
pub mod layers;
pub mod normalize;
pub mod pad;
pub mod symmetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod train;
pub mod unet;
pub mod weights;

pub use error::{Error, Result};
