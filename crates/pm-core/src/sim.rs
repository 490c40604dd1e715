//! The forward simulation: white noise → linear modes → LPT at a_start → FastPM KDK to a_stop,
//! with snapshots. Built once from a validated [`Config`]; the hot loop allocates nothing.
//!
//! ```text
//!   w ──linear_modes──▶ δ_L(k) ──lpt_fields──▶ s₁, s₂ ──(D₁, D₂, g_p, g_p2 at a_start)──▶ (s, p)
//!   repeat: kick ½ → drift → force → kick ½      (leapfrog.rs, gravity.rs)
//! ```
//! Thread count: run inside a rayon pool (the CLI installs one with `run.threads`). Every stage
//! is bit-identical for any number of threads.

use crate::config::{Config, TransferChoice};
use crate::correction::ForceCorrection;
use crate::cosmology::Cosmology;
use crate::error::{Error, Result};
use crate::fft::Fft3;
use crate::float::Real;
use crate::gravity::{Corrected, Gravity, GravityWorkspace};
use crate::growth::Growth;
use crate::leapfrog::{kick, kick_dot, kick_drift, step_boundaries, Stepper};
use crate::linear::{LinearPower, PowerTable, Transfer};
use crate::lpt::lpt_fields;
use crate::mesh::MeshGeom;
use crate::noise::{linear_modes, white_noise, Amplitude};
use crate::power::{power_spectrum, Deconvolve, PowerSpectrum};
use rayon::prelude::*;

/// Particle state at scale factor `a`: displacements, canonical momenta and the normalised
/// acceleration at `a` (kept so each step needs one force evaluation).
#[derive(Clone, Debug)]
pub struct State<T: Real> {
    /// Scale factor of positions and momenta.
    pub a: f64,
    /// Displacements `s = x − q` (Mpc/h), lattice order.
    pub disp: Vec<[T; 3]>,
    /// Canonical momenta `p = a² dx/dτ` (Mpc/h in H0 = 1 units); velocity = 100 p / a km/s.
    pub mom: Vec<[T; 3]>,
    /// Normalised PM acceleration `A = −∇∇⁻²δ` at `a` (Mpc/h).
    pub accel: Vec<[T; 3]>,
}

/// What the time loop reports to its caller.
#[derive(Debug)]
pub enum Event<'a, T: Real> {
    /// Step `index` (1-based) of `total` has ended at scale factor `a`.
    Step {
        /// 1-based step number.
        index: usize,
        /// Number of steps.
        total: usize,
        /// Scale factor reached.
        a: f64,
    },
    /// A requested snapshot scale factor (or a_stop) was reached.
    Snapshot(&'a State<T>),
}

/// A configured PM simulation in precision `T` (plans, tables and scratch built once).
pub struct Simulation<T: Real> {
    config: Config,
    cosmo: Cosmology,
    linear: LinearPower,
    transfer: Transfer,
    stepper: Stepper,
    gravity: Gravity<T>,
    ws: GravityWorkspace<T>,
    lattice: MeshGeom,
    fft_lattice: Fft3<T>,
    correction: Option<Box<dyn ForceCorrection>>,
}

impl<T: Real> Simulation<T> {
    /// Validates `config` and builds the cosmology tables, linear power and FFT plans.
    /// The precision is the type parameter `T` (the CLI picks it from `run.precision`).
    pub fn new(config: &Config) -> Result<Self> {
        config.validate()?;
        let cosmo = config.cosmology.cosmology();
        cosmo.validate()?;
        let growth = Growth::new(&cosmo, config.time.a_stop.max(1.0))?;
        let transfer = match &config.cosmology.transfer {
            TransferChoice::EisensteinHu => Transfer::EisensteinHu,
            TransferChoice::EisensteinHuNoWiggle => Transfer::EisensteinHuNoWiggle,
            TransferChoice::File(path) => Transfer::Table(PowerTable::from_file(path)?),
        };
        let linear = LinearPower::new(&cosmo, transfer.clone(), &growth)?;
        let b = &config.box_;
        let gravity = Gravity::new(b.particles, b.mesh, b.size, config.force.gradient);
        let ws = gravity.workspace();
        Ok(Simulation {
            config: config.clone(),
            stepper: Stepper::new(growth, cosmo.omega_m),
            cosmo,
            linear,
            transfer,
            gravity,
            ws,
            lattice: MeshGeom::new(b.particles, b.size),
            fft_lattice: Fft3::new(b.particles),
            correction: None,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The cosmological parameters.
    pub fn cosmology(&self) -> &Cosmology {
        &self.cosmo
    }
    /// Growth tables (D₁, D₂ and the FastPM factors).
    pub fn growth(&self) -> &Growth {
        self.stepper.growth()
    }
    /// Linear power spectrum at a = 1.
    pub fn linear_power(&self) -> &LinearPower {
        &self.linear
    }
    /// Where the shape of the linear power spectrum comes from (`cosmology.transfer`).
    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }
    /// PM gravity (mesh geometry, CIC, FFT plan).
    pub fn gravity(&self) -> &Gravity<T> {
        &self.gravity
    }
    /// Linear P(k, a) = P_L(k)·D₁(a)² in (Mpc/h)³.
    pub fn p_linear(&self, k: f64, a: f64) -> f64 {
        self.linear.p(k) * self.growth().d1(a).powi(2)
    }

    /// Installs (or with `None` removes) a learned correction of the PM force (correction.rs):
    /// every force evaluation at scale factor a then uses the potential filter `1 + f_θ(|k|, a)`.
    pub fn set_force_correction(&mut self, model: Option<Box<dyn ForceCorrection>>) {
        self.correction = model;
    }
    /// The installed force correction, if any.
    pub fn force_correction(&self) -> Option<&dyn ForceCorrection> {
        self.correction.as_deref()
    }
    /// The installed force correction, mutably (e.g. to update θ between optimiser steps).
    pub fn force_correction_mut(&mut self) -> Option<&mut (dyn ForceCorrection + 'static)> {
        self.correction.as_deref_mut()
    }

    /// Evaluates the force at `disp` and scale factor `a` into `out` (with the correction, if any).
    fn force(&mut self, disp: &[[T; 3]], a: f64, out: &mut [[T; 3]]) {
        let corr = self.correction.as_deref().map(|model| Corrected { model, a });
        self.gravity.accel_with(disp, 1.0, corr, out, &mut self.ws);
    }

    /// Recomputes `state.accel` from `state.disp` at `state.a` (after the positions were replaced,
    /// e.g. from a checkpoint).
    pub fn refresh_accel(&mut self, state: &mut State<T>) {
        let mut acc = std::mem::take(&mut state.accel);
        acc.resize(state.disp.len(), [T::zero(); 3]);
        self.force(&state.disp, state.a, &mut acc);
        state.accel = acc;
    }

    /// The white noise of `run.seed` on the particle grid (n³, C order).
    pub fn white_noise(&self) -> Vec<T> {
        white_noise(self.config.box_.particles, self.config.run.seed)
    }

    /// The FastPM time-step coefficients.
    pub fn stepper(&self) -> &Stepper {
        &self.stepper
    }
    /// Geometry of the particle lattice (n per side).
    pub fn lattice(&self) -> &MeshGeom {
        &self.lattice
    }
    /// FFT plan of the particle lattice.
    pub fn fft_lattice(&self) -> &Fft3<T> {
        &self.fft_lattice
    }

    /// Linear modes δ_L(k) at a = 1 on the particle lattice (docs/physics.md eq. 2.1) from white
    /// noise `w` (n³, C order), after checking its length and values.
    pub fn linear_modes(&self, w: &[T]) -> Result<Vec<crate::float::C<T>>> {
        let n = self.config.box_.particles;
        Error::check_array("white noise", w, n * n * n, "box.particles³")?;
        let amp = if self.config.run.fixed_amplitude {
            Amplitude::Fixed
        } else {
            Amplitude::Random
        };
        let lin = &self.linear;
        let mut w = w.to_vec();
        Ok(linear_modes(
            &mut w,
            &self.lattice,
            &self.fft_lattice,
            &|k| lin.p(k),
            amp,
            self.config.run.paired,
        ))
    }

    /// Initial conditions at `time.a_start` from white noise `w` (n³, C order).
    pub fn initial_conditions(&mut self, w: Vec<T>) -> Result<State<T>> {
        let dk = self.linear_modes(&w)?;
        Ok(self.initial_conditions_from_modes(&dk))
    }

    /// Initial conditions at `time.a_start` from linear modes `dk` (as [`Simulation::linear_modes`]
    /// returns them).
    pub fn initial_conditions_from_modes(&mut self, dk: &[crate::float::C<T>]) -> State<T> {
        let n = self.config.box_.particles;
        let f = lpt_fields(dk, &self.lattice, &self.fft_lattice, self.config.time.lpt);
        let a = self.config.time.a_start;
        let g = self.stepper.growth();
        let (d1, d2, p1, p2) = (T::of(g.d1(a)), T::of(g.d2(a)), T::of(g.gp(a)), T::of(g.gp2(a)));
        let np = n * n * n;
        let mut disp = vec![[T::zero(); 3]; np];
        let mut mom = vec![[T::zero(); 3]; np];
        disp.par_iter_mut().zip(mom.par_iter_mut()).enumerate().for_each(|(i, (s, p))| {
            for d in 0..3 {
                let (a1, a2) = (f.s1[i][d], f.s2.as_ref().map_or(T::zero(), |s2| s2[i][d]));
                s[d] = d1 * a1 + d2 * a2;
                p[d] = p1 * a1 + p2 * a2;
            }
        });
        let mut state = State {
            a,
            disp,
            mom,
            accel: Vec::new(),
        };
        self.refresh_accel(&mut state);
        state
    }

    /// Step boundaries (scale factors) of the configured run, snapshots included.
    pub fn boundaries(&self) -> Vec<f64> {
        let t = &self.config.time;
        step_boundaries(t.a_start, t.a_stop, t.steps, t.spacing, &t.snapshots)
    }

    /// The three coefficients `(K1, Δ, K2)` of the KDK step from `a0` to `a1`: first half kick,
    /// drift, second half kick (docs/physics.md eq. 5.3).
    pub fn step_factors(&self, a0: f64, a1: f64) -> (f64, f64, f64) {
        self.stepper.step_factors(a0, a1, self.config.time.spacing)
    }

    /// The forward-mode tangents of every cosmological scalar of this run (growth, step factors,
    /// P_L) with respect to the parameters (docs/adjoint.md §T), built on demand (a few ms).
    pub fn cosmo_tangents(&self) -> Result<crate::tangent::CosmoTangents> {
        crate::tangent::CosmoTangents::new(&self.cosmo, &self.transfer, self.config.time.a_stop.max(1.0))
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

    /// [`Simulation::step_back`] fused with the gravity VJP at the earlier positions: the force
    /// evaluation at `a0` also adds `scale · (∂A/∂s)ᵀ ā` to `disp_cot` (and the θ̄ term to
    /// `param_cot`), as [`Simulation::accel_vjp`] there would, sharing the paint and the meshes.
    /// Returns `⟨ā, A(s₀)⟩` in f64 (fixed reduction order), the cotangent of the coefficient of
    /// a kick by `A(s₀)` (docs/adjoint.md eq. R9), taken in the pass of the last half kick.
    pub fn step_back_with_vjp(
        &mut self,
        state: &mut State<T>,
        a0: f64,
        scale: f64,
        accel_cot: &[[T; 3]],
        disp_cot: &mut [[T; 3]],
        param_cot: Option<&mut [f64]>,
    ) -> f64 {
        let (k1, dr, k2) = self.step_factors(a0, state.a);
        kick_drift(&mut state.disp, &mut state.mom, &state.accel, -k2, -dr);
        let corr = self.correction.as_deref().map(|model| Corrected { model, a: a0 });
        self.gravity.accel_and_vjp(
            &state.disp,
            corr,
            &mut state.accel,
            scale,
            accel_cot,
            disp_cot,
            param_cot,
            &mut self.ws,
        );
        let dot = kick_dot(&mut state.mom, &state.accel, -k1, accel_cot);
        state.a = a0;
        dot
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
        self.gravity
            .accel_vjp_with(disp, scale, corr, accel_cot, disp_cot, param_cot, &mut self.ws);
    }

    /// Runs `state` from its scale factor through every step boundary to `time.a_stop`, calling
    /// `on_event` after each step and at each snapshot (the final state is always a snapshot).
    /// Stops with [`Error::NonFinite`] if a displacement or momentum becomes NaN or infinite.
    pub fn run<F>(&mut self, state: &mut State<T>, mut on_event: F) -> Result<()>
    where
        F: FnMut(Event<'_, T>) -> Result<()>,
    {
        let bounds: Vec<f64> = self.boundaries().into_iter().filter(|&a| a > state.a).collect();
        let snaps = self.config.time.snapshots.clone();
        let a_stop = self.config.time.a_stop;
        let total = bounds.len();
        for (i, &a1) in bounds.iter().enumerate() {
            self.step(state, a1);
            if state
                .disp
                .par_iter()
                .chain(state.mom.par_iter())
                .any(|v| v.iter().any(|x| !x.is_finite()))
            {
                return Err(Error::NonFinite {
                    what: "particle state".into(),
                    detail: format!("after the step to a = {a1}; check the cosmology and time-step settings"),
                });
            }
            on_event(Event::Step {
                index: i + 1,
                total,
                a: a1,
            })?;
            if a1 == a_stop || snaps.contains(&a1) {
                on_event(Event::Snapshot(state))?;
            }
        }
        Ok(())
    }

    /// Particle positions in `[0, L)` Mpc/h (f32, N × 3, lattice order).
    pub fn positions(&self, state: &State<T>) -> Vec<[f32; 3]> {
        let cic = self.gravity.cic();
        state
            .disp
            .par_iter()
            .enumerate()
            .map(|(p, s)| cic.position(p, s).map(|x| x as f32))
            .collect()
    }

    /// Peculiar velocities in km/s (f32, N × 3): `v = 100 p / a`.
    pub fn velocities(&self, state: &State<T>) -> Vec<[f32; 3]> {
        let f = Stepper::velocity_factor(state.a);
        state.mom.par_iter().map(|p| p.map(|x| (x.f64() * f) as f32)).collect()
    }

    /// CIC density contrast δ on the force mesh (m³, C order, mean 0).
    pub fn density(&self, state: &State<T>) -> Vec<T> {
        self.gravity.cic().density(&state.disp)
    }

    /// Power spectrum of a density field on the force mesh.
    pub fn power(&self, density: &[T]) -> PowerSpectrum {
        let dec = if self.config.output.deconvolve {
            Deconvolve::Cic
        } else {
            Deconvolve::None
        };
        power_spectrum(density, self.gravity.geom(), self.gravity.fft(), dec)
    }
}
