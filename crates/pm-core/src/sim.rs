//! The forward simulation: white noise → linear modes → LPT at a_start → FastPM KDK to a_stop,
//! with snapshots. Built once from a validated [`Config`]; the hot loop allocates nothing.
//!
//! ```text
//!   w ──linear_modes──▶ δ_L(k) ──lpt_fields──▶ s₁, s₂ ──(D₁, D₂, g_p, g_p2 at a_start)──▶ (s, p)
//!   repeat: kick ½ → drift → force → kick ½      (nbody.rs; the initial conditions in ic.rs)
//! ```
//! A [`Simulation`] is three parts: the box-dependent plans and scratch ([`Pm`]: FFT plans, CIC,
//! k-tables, meshes), the cosmology-dependent tables ([`CosmoTables`]: growth, P_L, step
//! coefficients) and an optional learned force correction. [`Simulation::set_cosmology`]
//! rebuilds only the tables and keeps the plans and the correction.
//!
//! Thread count: run inside a rayon pool (the CLI installs one with `run.threads`). Every stage
//! is bit-identical for any number of threads.

use crate::config::Config;
use crate::correction::ForceCorrection;
use crate::cosmology::Cosmology;
use crate::error::{Error, Result};
use crate::fft::Fft3;
use crate::float::Real;
use crate::gravity::Gravity;
use crate::growth::Growth;
use crate::leapfrog::{step_boundaries, Stepper};
use crate::linear::{LinearPower, Transfer};
use crate::mesh::MeshGeom;
use crate::noise::white_noise;
use crate::pm::{MeshContext, Pm};
use crate::power::{Deconvolve, PowerSpectrum};
use crate::tables::CosmoTables;
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

impl<T: Real> State<T> {
    /// [`Error::NonFinite`] if a displacement or momentum is NaN or infinite; `when()` (called
    /// only then) says when, e.g. "after the step to a = 0.5".
    pub fn check_finite(&self, when: impl FnOnce() -> String) -> Result<()> {
        if self
            .disp
            .par_iter()
            .chain(self.mom.par_iter())
            .any(|v| v.iter().any(|x| !x.is_finite()))
        {
            return Err(Error::NonFinite {
                what: "particle state".into(),
                detail: format!("{}; check the cosmology and time-step settings", when()),
            });
        }
        Ok(())
    }
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
    pub(crate) config: Config,
    pub(crate) pm: Pm<T>,
    pub(crate) tables: CosmoTables,
    pub(crate) correction: Option<Box<dyn ForceCorrection>>,
}

impl<T: Real> Simulation<T> {
    /// Validates `config` and builds the cosmology tables, linear power and FFT plans.
    /// The precision is the type parameter `T` (the CLI picks it from `run.precision`).
    pub fn new(config: &Config) -> Result<Self> {
        config.validate()?;
        let tables = CosmoTables::new(&config.cosmology, config.time.a_stop)?;
        Ok(Simulation {
            config: config.clone(),
            pm: Pm::new(&config.box_, config.force.gradient),
            tables,
            correction: None,
        })
    }

    /// Moves the simulation to the cosmology `c` (parameters and transfer): rebuilds the
    /// cosmology-dependent tables only. The FFT plans, meshes and scratch of the box are kept, and
    /// so is an installed force correction. `config().cosmology` becomes `c`.
    ///
    /// Errors: an invalid cosmology or transfer table (the simulation is then unchanged).
    pub fn set_cosmology(&mut self, c: &Cosmology) -> Result<()> {
        self.tables = self.tables.at(c)?;
        self.config.cosmology = c.clone();
        Ok(())
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The box-dependent plans (lattice, force mesh, FFTs, CIC, scratch).
    pub fn pm(&self) -> &Pm<T> {
        &self.pm
    }
    /// The cosmology-dependent tables (growth, P_L, step coefficients).
    pub fn tables(&self) -> &CosmoTables {
        &self.tables
    }
    /// The cosmological parameters.
    pub fn cosmology(&self) -> &Cosmology {
        self.tables.cosmology()
    }
    /// Growth tables (D₁, D₂ and the FastPM factors).
    pub fn growth(&self) -> &Growth {
        self.tables.growth()
    }
    /// Linear power spectrum at a = 1.
    pub fn linear_power(&self) -> &LinearPower {
        self.tables.linear_power()
    }
    /// Where the shape of the linear power spectrum comes from (`cosmology.transfer`, loaded).
    pub fn transfer(&self) -> &Transfer {
        self.tables.transfer()
    }
    /// PM gravity (mesh geometry, CIC, FFT plan).
    pub fn gravity(&self) -> &Gravity<T> {
        self.pm.gravity()
    }
    /// Linear P(k, a) = P_L(k)·D₁(a)² in (Mpc/h)³.
    pub fn p_linear(&self, k: f64, a: f64) -> f64 {
        self.tables.p_linear(k, a)
    }
    /// The FastPM time-step coefficients.
    pub fn stepper(&self) -> &Stepper {
        self.tables.stepper()
    }
    /// Geometry of the particle lattice (n per side).
    pub fn lattice(&self) -> &MeshGeom {
        self.pm.lattice()
    }
    /// FFT plan of the particle lattice.
    pub fn fft_lattice(&self) -> &Fft3<T> {
        self.pm.fft_lattice()
    }
    /// The forward-mode tangents of every cosmological scalar of this run (growth, step factors,
    /// P_L) with respect to the parameters (docs/adjoint.md §T), built on demand (a few ms).
    pub fn cosmo_tangents(&self) -> Result<crate::tangent::CosmoTangents> {
        self.tables.tangents()
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

    /// The white noise of `run.seed` on the particle grid (n³, C order).
    pub fn white_noise(&self) -> Vec<T> {
        white_noise(self.config.box_.particles, self.config.run.seed)
    }

    /// Step boundaries (scale factors) of the configured run, snapshots included.
    pub fn boundaries(&self) -> Vec<f64> {
        let t = &self.config.time;
        step_boundaries(t.a_start, t.a_stop, t.steps, t.spacing, &t.snapshots)
    }

    /// The three coefficients `(K1, Δ, K2)` of the KDK step from `a0` to `a1`: first half kick,
    /// drift, second half kick (docs/physics.md eq. 5.3).
    pub fn step_factors(&self, a0: f64, a1: f64) -> (f64, f64, f64) {
        self.tables.step_factors(a0, a1, self.config.time.spacing)
    }

    /// Runs `state` from its scale factor through every step boundary to `time.a_stop`, calling
    /// `on_event` after each step and at each snapshot (the final state is always a snapshot).
    /// Stops with [`Error::NonFinite`] if a displacement or momentum becomes NaN or infinite.
    pub fn run<F>(&mut self, state: &mut State<T>, mut on_event: F) -> Result<()>
    where
        F: FnMut(Event<'_, T>) -> Result<()>,
    {
        self.run_with(state, |_, ev| on_event(ev))
    }

    /// [`run`](Self::run), with the simulation passed to `on_event` too, so that a snapshot can be
    /// turned into outputs ([`positions`](Self::positions), [`density`](Self::density), …) and
    /// written when it is reached instead of being held until the end.
    pub fn run_with<F>(&mut self, state: &mut State<T>, mut on_event: F) -> Result<()>
    where
        F: FnMut(&Self, Event<'_, T>) -> Result<()>,
    {
        let bounds: Vec<f64> = self.boundaries().into_iter().filter(|&a| a > state.a).collect();
        let snaps = self.config.time.snapshots.clone();
        let a_stop = self.config.time.a_stop;
        let total = bounds.len();
        for (i, &a1) in bounds.iter().enumerate() {
            self.step(state, a1);
            state.check_finite(|| format!("after the step to a = {a1}"))?;
            on_event(
                self,
                Event::Step {
                    index: i + 1,
                    total,
                    a: a1,
                },
            )?;
            if a1 == a_stop || snaps.contains(&a1) {
                on_event(self, Event::Snapshot(state))?;
            }
        }
        Ok(())
    }

    /// Particle positions in `[0, L)` Mpc/h in the run's precision (N × 3, lattice order).
    pub fn positions(&self, state: &State<T>) -> Vec<[T; 3]> {
        self.pm.positions(&state.disp)
    }

    /// Peculiar velocities in km/s in the run's precision (N × 3, lattice order): `v = 100 p / a`.
    pub fn velocities(&self, state: &State<T>) -> Vec<[T; 3]> {
        let f = Stepper::velocity_factor(state.a);
        state.mom.par_iter().map(|p| p.map(|x| T::of(x.f64() * f))).collect()
    }

    /// What losses and observables see of this simulation: the force mesh, its CIC and FFT, and
    /// the P(k) deconvolution of `output.deconvolve`.
    pub fn mesh_context(&self) -> MeshContext<'_, T> {
        let dec = if self.config.output.deconvolve {
            Deconvolve::Cic
        } else {
            Deconvolve::None
        };
        self.pm.mesh_context(dec)
    }

    /// CIC density contrast δ on the force mesh (m³, C order, mean 0).
    pub fn density(&self, state: &State<T>) -> Vec<T> {
        self.mesh_context().density(&state.disp)
    }

    /// Power spectrum of a density field on the force mesh.
    pub fn power(&self, density: &[T]) -> PowerSpectrum {
        self.mesh_context().power(density)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correction::SplineCorrection;

    fn small() -> Config {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 64.0, 3);
        c
    }

    fn with_correction(c: &Config) -> Simulation<f64> {
        let mut model = SplineCorrection::new(4, 2, 1.0, (c.time.a_start, c.time.a_stop)).unwrap();
        model.set_params(&[0.1, -0.2, 0.05, 0.0, 0.1, 0.0, -0.1, 0.2]).unwrap();
        let mut sim = Simulation::<f64>::new(c).unwrap();
        sim.set_force_correction(Some(Box::new(model)));
        sim
    }

    fn final_state(sim: &mut Simulation<f64>) -> State<f64> {
        let mut st = sim.initial_conditions(sim.white_noise()).unwrap();
        sim.run(&mut st, |_| Ok(())).unwrap();
        st
    }

    #[test]
    fn set_cosmology_keeps_plans_and_correction() {
        let c = small();
        let mut sim = with_correction(&c);
        let plans = |s: &Simulation<f64>| (s.gravity().fft().plan_id(), s.fft_lattice().plan_id());
        let before = plans(&sim);
        let other = Cosmology {
            omega_m: 0.35,
            sigma8: Some(0.75),
            ..c.cosmology.clone()
        };
        sim.set_cosmology(&other).unwrap();
        assert_eq!(plans(&sim), before, "a change of cosmology rebuilt the FFT plans");
        assert!(sim.force_correction().is_some(), "a change of cosmology dropped the correction");
        assert_eq!(sim.config().cosmology, other);
        assert_eq!(sim.cosmology(), &other);
        // The result is that of a simulation built at the new cosmology, bit for bit.
        let mut c2 = c.clone();
        c2.cosmology = other;
        let mut fresh = with_correction(&c2);
        assert_ne!(plans(&fresh), before);
        let (a, b) = (final_state(&mut sim), final_state(&mut fresh));
        assert_eq!(a.disp, b.disp);
        assert_eq!(a.mom, b.mom);
        // An invalid cosmology is refused and leaves the simulation as it was.
        let bad = Cosmology {
            omega_b: 0.5,
            ..c2.cosmology.clone()
        };
        let e = sim.set_cosmology(&bad).unwrap_err();
        assert!(e.to_string().contains("cosmology.omega_b"), "{e}");
        assert_eq!(sim.config().cosmology, c2.cosmology);
        assert_eq!(final_state(&mut sim).disp, b.disp);
    }
}
