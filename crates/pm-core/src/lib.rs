//! # pm-core
//!
//! The particle-mesh core of cosmograd: cosmology and growth, linear power, white noise and
//! linear modes, LPT, CIC paint/readout, FFT gravity, the FastPM leapfrog, power spectra.
//! Every operator has its vector-Jacobian product (VJP) in the same file as its forward.
#![doc = include_str!("../README.md")]

pub mod cic;
pub mod config;
pub mod cosmology;
pub mod error;
pub mod fft;
pub mod float;
pub mod gravity;
pub mod growth;
pub mod io;
pub mod leapfrog;
pub mod linear;
pub mod lpt;
pub mod mesh;
pub mod noise;
pub mod power;
pub mod sim;
pub mod testing;

pub use cosmology::Cosmology;
pub use error::{Error, Result};
pub use float::Real;
