//! # pm-core
//!
//! The particle-mesh core of cosmograd: cosmology and growth, linear power, white noise and
//! linear modes, LPT, CIC paint/readout, FFT gravity, the FastPM leapfrog, power spectra.
//! Every operator has its vector-Jacobian product (VJP) in the same file as its forward.
//! The scalars taken from the cosmology (growth, step factors, P_L(k)) also come with their
//! derivatives with respect to the cosmological parameters, by forward-mode dual numbers
//! ([`tangent::CosmoTangents`], [`dual`]).
//!
//! The forward pipeline, operator by operator (the same as [`sim::Simulation`] does; units and
//! equations in `docs/physics.md`):
//! ```
//! use pm_core::{cosmology::Cosmology, growth::Growth, linear::{LinearPower, Transfer}};
//! use pm_core::{fft::Fft3, mesh::MeshGeom, noise, lpt, gravity::{Gradient, Gravity}};
//! use pm_core::{leapfrog::{drift, kick, midpoint, step_boundaries, Spacing, Stepper}};
//! use pm_core::power::{power_spectrum, Deconvolve};
//! let (n, m, l) = (16, 32, 128.0);                  // particles/side, mesh/side, Mpc/h
//! let cosmo = Cosmology::planck18();
//! let growth = Growth::new(&cosmo, 1.0)?;           // D₁, D₂, g_p, g_f tables
//! let plin = LinearPower::new(&cosmo, Transfer::EisensteinHu, &growth)?; // σ₈-normalised P(k)
//! let lattice = MeshGeom::new(n, l);
//! let fft_n = Fft3::<f32>::new(n);
//! let mut w = noise::white_noise::<f32>(n, 42);     // counter-based, thread-independent
//! let dk = noise::linear_modes(&mut w, &lattice, &fft_n, &|k| plin.p(k), noise::Amplitude::Random, false);
//! let f = lpt::lpt_fields(&dk, &lattice, &fft_n, lpt::LptOrder::Two);
//! let a0 = 0.05;
//! let (d1, d2) = (growth.d1(a0) as f32, growth.d2(a0) as f32);
//! let (p1, p2) = (growth.gp(a0) as f32, growth.gp2(a0) as f32);
//! let s2 = f.s2.as_ref().unwrap();
//! let mut s: Vec<[f32; 3]> = (0..n * n * n).map(|i| std::array::from_fn(|d| d1 * f.s1[i][d] + d2 * s2[i][d])).collect();
//! let mut p: Vec<[f32; 3]> = (0..n * n * n).map(|i| std::array::from_fn(|d| p1 * f.s1[i][d] + p2 * s2[i][d])).collect();
//! let grav = Gravity::<f32>::new(n, m, l, Gradient::Spectral);
//! let mut ws = grav.workspace();
//! let mut acc = vec![[0.0f32; 3]; n * n * n];
//! grav.accel(&s, 1.0, &mut acc, &mut ws);           // A = −∇∇⁻²δ at the particles
//! let stepper = Stepper::new(growth.clone(), cosmo.omega_m);
//! for w in step_boundaries(a0, 1.0, 5, Spacing::A, &[]).windows(2) {
//!     let (a, b) = (w[0], w[1]);
//!     let h = midpoint(a, b, Spacing::A);
//!     kick(&mut p, &acc, stepper.kick_factor(a, h, a));
//!     drift(&mut s, &p, stepper.drift_factor(a, b, h));
//!     grav.accel(&s, 1.0, &mut acc, &mut ws);
//!     kick(&mut p, &acc, stepper.kick_factor(h, b, b));
//! }
//! let mut delta = vec![0.0f32; m * m * m];
//! grav.cic().density_contrast(&s, &mut delta, &mut Default::default());
//! let pk = power_spectrum(&delta, grav.geom(), grav.fft(), Deconvolve::Cic);
//! assert!(pk.p.iter().all(|v| v.is_finite()));
//! # Ok::<(), pm_core::Error>(())
//! ```

pub mod backend;
pub mod cic;
pub mod config;
pub mod correction;
pub mod cosmology;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod dual;
pub mod error;
pub mod fft;
pub mod float;
pub mod gravity;
pub mod growth;
pub mod ic;
pub mod io;
pub mod leapfrog;
pub mod linear;
pub mod loss;
pub mod lpt;
pub mod mesh;
pub mod nbody;
pub mod noise;
pub mod pm;
pub mod power;
pub mod sim;
pub mod tables;
pub mod tangent;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use cosmology::Cosmology;
pub use device::{CudaError, Device, DeviceKind};
pub use error::{Error, Result};
pub use float::Real;
