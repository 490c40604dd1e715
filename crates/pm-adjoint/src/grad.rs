//! The reverse-time adjoint loop and the `value_and_grad` API (docs/adjoint.md §R, eqs. R1–R9).

use crate::cosmo::{cosmology_gradient, ScalarCots};
use crate::objective::Objective;
use crate::{Error, Result};
use pm_core::cosmology::Cosmology;
use pm_core::float::Real;
use pm_core::loss::Loss;
use pm_core::nbody::{Cotangents, Phase};
use pm_core::sim::{Simulation, State};
use std::time::Instant;

/// How the backward pass recovers the primal trajectory (docs/adjoint.md eq. R7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recover {
    /// Integrate the leapfrog backwards from the final state: O(1) memory in the number of steps;
    /// the reversal error grows with the number of steps (rounding only).
    #[default]
    Reverse,
    /// Also store (s, p) every `every` steps in the forward pass and restart the reverse
    /// integration from each stored state: the reversal error accumulates over at most `every`
    /// steps; memory grows as (steps / every) particle states.
    Checkpoint {
        /// Steps between stored states (≥ 1).
        every: usize,
    },
}

/// The reversal error above which `gradient` and `reconstruct` warn ([`reversal_warning`]): the
/// backward pass then recovers the forward states only to 1 %, and the gradient can be wrong by a
/// comparable fraction. Measured (docs/adjoint.md §R7): the default `gradient` (64³, 20 steps,
/// f32) reverses to 7.8e-4 and its ∂L/∂w differs from the f64 run's by 5.4e-4 (relative norm),
/// the f32 rounding floor (checkpointing every 5 steps: 4.6e-5 and 5.3e-4); at 100 steps 7.0e-4
/// (every 10: 6.6e-6).
pub const REVERSAL_WARN: f64 = 1e-2;

/// The warning for a reversal error above [`REVERSAL_WARN`], with the remedy; `None` below it.
pub fn reversal_warning(reversal_error: f64, recover: Recover) -> Option<String> {
    if reversal_error.is_nan() || reversal_error > REVERSAL_WARN {
        let remedy = match recover {
            Recover::Reverse => "store checkpoints with --checkpoint-every K (e.g. 10)".to_string(),
            Recover::Checkpoint { every } if every > 1 => {
                format!("checkpoint more often than --checkpoint-every {every}")
            }
            Recover::Checkpoint { .. } => "nothing in the integrator is left to tighten".to_string(),
        };
        Some(format!(
            "warning: reversal error {reversal_error:.2e} exceeds {REVERSAL_WARN:.0e}: the backward pass recovered the forward states only to that fraction, so the gradient may be off by as much; {remedy}, or run with precision = \"f64\""
        ))
    } else {
        None
    }
}

/// What [`value_and_grad`] computes and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GradOptions {
    /// How the primal is recovered in the backward pass.
    pub recover: Recover,
    /// Whether to compute ∂L/∂(cosmological parameters) (cheap: a few dot products per step and
    /// the forward-mode growth tables; off saves building them).
    pub cosmology: bool,
}

impl Default for GradOptions {
    fn default() -> Self {
        GradOptions {
            recover: Recover::Reverse,
            cosmology: true,
        }
    }
}

/// The loss and its gradients, with physical names.
#[derive(Clone, Debug)]
pub struct Gradients<T: Real> {
    /// The loss value (from the forward pass).
    pub loss: f64,
    /// ∂L/∂w, same shape and order as the white noise (n³, C order).
    pub white_noise: Vec<T>,
    /// ∂L/∂(each cosmological parameter), as a [`Cosmology`] whose fields hold the derivatives
    /// (`cosmology.omega_m` = ∂L/∂Ω_m, …; `sigma8` or `a_s` as normalised; Ω_m at fixed Ω_k).
    /// `None` when not requested.
    pub cosmology: Option<Cosmology>,
    /// ∂L/∂θ of the installed force correction (empty without one).
    pub force_params: Vec<f64>,
    /// How well the backward pass recovered the forward states: the largest of
    /// ‖s(reverse) − s‖/‖s‖ and ‖p(reverse) − p‖/‖p‖ at a_start (pure reversal) or at every
    /// checkpoint before it is restored.
    pub reversal_error: f64,
    /// Wall-clock seconds of the forward pass.
    pub forward_seconds: f64,
    /// Wall-clock seconds of the backward pass.
    pub backward_seconds: f64,
}

fn check_finite<T: Real>(s: &State<T>) -> Result<()> {
    Ok(s.check_finite(|| format!("at a = {}", s.a))?)
}

fn check_differentiable<T: Real>(sim: &Simulation<T>) -> Result<()> {
    if sim.config().run.fixed_amplitude {
        return Err(Error::FixedAmplitude);
    }
    Ok(())
}

/// The objective of the configured simulation run from white noise `w`, forward only (e.g. for
/// finite-difference checks of [`value_and_grad`]).
pub fn loss_value<T: Real>(sim: &mut Simulation<T>, w: &[T], objective: &Objective<'_, T>) -> Result<f64> {
    let bounds = sim.boundaries();
    let terms = objective.per_boundary(&bounds)?;
    let mut state = sim.initial_conditions(w.to_vec())?;
    let mut value: f64 = terms[0].iter().map(|l| l.value(&sim.mesh_context(), &state)).sum();
    for (j, &a1) in bounds.iter().enumerate().skip(1) {
        sim.step(&mut state, a1);
        if !terms[j].is_empty() {
            check_finite(&state)?;
            value += terms[j].iter().map(|l| l.value(&sim.mesh_context(), &state)).sum::<f64>();
        }
    }
    Ok(value)
}

/// Runs the configured simulation from white noise `w` (n³, C order) and returns the objective and
/// its gradients with respect to the white noise, the cosmological parameters and the installed
/// force correction's parameters, by the reverse-time adjoint (docs/adjoint.md §R).
///
/// Memory: a fixed number of particle arrays and meshes, independent of the number of steps
/// ([`Recover::Reverse`]), plus one stored state per `every` steps with [`Recover::Checkpoint`].
///
/// Errors: a white noise of the wrong length or with NaN ([`pm_core::Error::Shape`],
/// [`pm_core::Error::NonFinite`]), `run.fixed_amplitude = true` ([`Error::FixedAmplitude`]), a
/// loss time that is not a step boundary ([`Error::LossTime`]), a checkpoint interval of 0
/// ([`Error::CheckpointEvery`]), or a run that goes non-finite.
pub fn value_and_grad<T: Real>(sim: &mut Simulation<T>, w: &[T], objective: &Objective<'_, T>, opts: &GradOptions) -> Result<Gradients<T>> {
    check_differentiable(sim)?;
    let every = match opts.recover {
        Recover::Reverse => usize::MAX,
        Recover::Checkpoint { every: 0 } => {
            return Err(Error::CheckpointEvery { every: 0 });
        }
        Recover::Checkpoint { every } => every,
    };
    let bounds = sim.boundaries();
    let terms = objective.per_boundary(&bounds)?;
    let nsteps = bounds.len() - 1;
    let t0 = Instant::now();

    // ---- Forward (R1): keep the running state, the initial state and the checkpoints. ----
    let dk = sim.linear_modes(w)?;
    let mut state = sim.initial_conditions_from_modes(&dk);
    let mut stored: Vec<Option<Phase<T>>> = vec![None; nsteps + 1];
    stored[0] = Some((state.disp.clone(), state.mom.clone()));
    let mut value: f64 = terms[0].iter().map(|l| l.value(&sim.mesh_context(), &state)).sum();
    for j in 1..=nsteps {
        sim.step(&mut state, bounds[j]);
        if j < nsteps && j % every == 0 {
            stored[j] = Some((state.disp.clone(), state.mom.clone()));
        }
        if !terms[j].is_empty() && j < nsteps {
            check_finite(&state)?;
            value += terms[j].iter().map(|l| l.value(&sim.mesh_context(), &state)).sum::<f64>();
        }
    }
    check_finite(&state)?;
    // (The final terms' value is added in the backward pass, with their cotangents.)
    let forward_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();

    // ---- Backward (R2–R4, R6–R8): the steps' adjoints (pm_core::nbody) in reverse order. ----
    let n_theta = sim.force_correction().map_or(0, |c| c.n_params());
    let mut cot = Cotangents::zeros(state.disp.len(), n_theta);
    let factors: Vec<(f64, f64, f64)> = (0..nsteps).map(|i| sim.step_factors(bounds[i], bounds[i + 1])).collect();
    let mut cots = ScalarCots::new(nsteps);
    let mut reversal_error = 0.0f64;
    // Boundary N: the final losses (R6), then the last half kick's VJP (R2). The final state's
    // value is exact here; the meshes of the forward's last force are reused.
    value += add_cotangents(sim, &terms[nsteps], &state, &mut cot);
    cots.k2[nsteps - 1] += sim.kick_adj(&state, factors[nsteps - 1].2, &mut cot);
    for j in (1..=nsteps).rev() {
        // The state is at boundary j and every VJP at s_j is done. Step i = j − 1 backwards.
        let i = j - 1;
        // The half kicks that meet at s_i share the force A(s_i) and, unless a loss term at i
        // changes p̄ between them, one VJP (R4; split as in R8 otherwise).
        let split = !terms[i].is_empty();
        let k2_prev = if i > 0 { factors[i - 1].2 } else { 0.0 };
        let coef = factors[i].0 + if split { 0.0 } else { k2_prev };
        // A checkpoint restart (R7) measures the reversal error and continues from the stored
        // state (at a_start this also hands the exact initial state to the last VJPs).
        let step = sim.step_adj(&mut state, bounds[i], coef, &mut cot, stored[i].take());
        reversal_error = reversal_error.max(step.reversal_error.unwrap_or(0.0));
        cots.drift[i] += step.drift;
        cots.k1[i] += step.kick_at_start;
        if split {
            // R6: cotangents at the recovered state (the values were taken in the forward pass).
            add_cotangents(sim, &terms[i], &state, &mut cot);
            if i > 0 {
                cots.k2[i - 1] += sim.kick_adj(&state, k2_prev, &mut cot);
            }
        } else if i > 0 {
            cots.k2[i - 1] += step.kick_at_start;
        }
    }

    // ---- Initial conditions (R5, R9): pm_core::ic. ----
    let ic = sim.initial_conditions_vjp(&dk, &cot, opts.cosmology);
    (cots.d1, cots.d2, cots.gp, cots.gp2, cots.power) = (ic.d1, ic.d2, ic.gp, ic.gp2, ic.power);
    let cosmology = if opts.cosmology {
        Some(cosmology_gradient(sim, &bounds, &cots)?)
    } else {
        None
    };
    Ok(Gradients {
        loss: value,
        white_noise: ic.white_noise,
        cosmology,
        force_params: cot.params,
        reversal_error,
        forward_seconds,
        backward_seconds: t1.elapsed().as_secs_f64(),
    })
}

/// Adds the cotangents of the loss `terms` at `state` to `cot` and returns their value.
fn add_cotangents<T: Real>(sim: &Simulation<T>, terms: &[&dyn Loss<T>], state: &State<T>, cot: &mut Cotangents<T>) -> f64 {
    let mesh = sim.mesh_context();
    terms
        .iter()
        .map(|l| l.value_and_cot(&mesh, state, &mut cot.disp, &mut cot.mom))
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reversal_warning_fires_above_the_threshold_with_the_remedy() {
        use super::{reversal_warning, Recover, REVERSAL_WARN};
        assert_eq!(reversal_warning(7.8e-4, Recover::Reverse), None);
        assert_eq!(reversal_warning(REVERSAL_WARN, Recover::Reverse), None);
        let w = reversal_warning(2.5e-2, Recover::Reverse).unwrap();
        assert!(w.contains("2.50e-2") && w.contains("--checkpoint-every K"), "{w}");
        let w = reversal_warning(f64::NAN, Recover::Checkpoint { every: 8 }).unwrap();
        assert!(w.contains("more often than --checkpoint-every 8"), "{w}");
        assert!(!reversal_warning(0.5, Recover::Checkpoint { every: 1 })
            .unwrap()
            .contains("--checkpoint-every"));
    }

    use super::*;
    use pm_core::backend::{dot3, Serial};
    use pm_core::config::{Config, LptOrder};
    use pm_core::correction::{ForceCorrection, SplineCorrection};
    use pm_core::loss::FieldMse;
    use pm_core::pm::MeshContext;
    use pm_core::testing::{dot, rand_disp, rand_field};

    fn small(lpt: LptOrder, steps: usize) -> Config {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size) = (8, 16, 64.0);
        c.time.steps = steps;
        c.time.lpt = lpt;
        c
    }

    /// A loss linear in the momenta, L = Σ_p ⟨v_p, p_p⟩, to exercise momentum cotangents.
    struct MomentumProbe(Vec<[f64; 3]>);
    impl Loss<f64> for MomentumProbe {
        fn value_and_cot(&self, _: &MeshContext<'_, f64>, st: &State<f64>, _: &mut [[f64; 3]], mom_cot: &mut [[f64; 3]]) -> f64 {
            for (c, v) in mom_cot.iter_mut().zip(&self.0) {
                (0..3).for_each(|d| c[d] += v[d]);
            }
            dot3(&Serial, &st.mom, &self.0)
        }
    }

    fn grad(c: &Config, w: &[f64], obj: &Objective<'_, f64>, opts: &GradOptions) -> Gradients<f64> {
        value_and_grad(&mut Simulation::<f64>::new(c).unwrap(), w, obj, opts).unwrap()
    }

    /// Central difference of the objective along `dir` in the white noise.
    fn fd_w(c: &Config, w: &[f64], obj: &Objective<'_, f64>, dir: &[f64], eps: f64) -> f64 {
        let at = |s: f64| {
            let x: Vec<f64> = w.iter().zip(dir).map(|(a, b)| a + s * eps * b).collect();
            loss_value(&mut Simulation::<f64>::new(c).unwrap(), &x, obj).unwrap()
        };
        (at(1.0) - at(-1.0)) / (2.0 * eps)
    }

    // Tolerances ≈3× the figures measured on 2026-12-08 (f64, 8³ particles, 16³ mesh):
    /// f64 reversal error: measured ≤ 1.25e-12.
    const TOL_REV: f64 = 4e-12;
    /// White-noise gradient vs central differences: measured worst 3.97e-8.
    const TOL_WN: f64 = 1.2e-7;
    /// The same with losses at a snapshot and on momenta: measured worst 1.86e-9.
    const TOL_SNAP: f64 = 6e-9;
    /// Checkpointed vs pure reversal gradient, relative L2: measured 5.6e-16 (rounding).
    const TOL_CK: f64 = 2e-15;
    /// Force-correction parameter gradient, relative to its largest component: measured 1.07e-10.
    const TOL_THETA: f64 = 3.2e-10;
    /// White-noise gradient with a correction installed: measured 1.35e-8.
    const TOL_WNC: f64 = 4e-8;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.abs().max(b.abs())
    }

    #[test]
    fn white_noise_gradient_matches_finite_differences() {
        let (mut worst, mut worst_rev): (f64, f64) = (0.0, 0.0);
        for (lpt, steps, paired) in [(LptOrder::One, 3, false), (LptOrder::Two, 5, false), (LptOrder::Two, 2, true)] {
            let mut c = small(lpt, steps);
            c.run.paired = paired;
            let w = Simulation::<f64>::new(&c).unwrap().white_noise();
            let m = c.box_.mesh;
            let target = FieldMse::new(Some(rand_field::<f64>(m * m * m, 3))).unwrap();
            let obj = Objective::final_state(&target);
            let g = grad(&c, &w, &obj, &GradOptions::default());
            worst_rev = worst_rev.max(g.reversal_error);
            assert!(g.reversal_error < TOL_REV, "reversal error {:.3e}", g.reversal_error);
            let v = loss_value(&mut Simulation::<f64>::new(&c).unwrap(), &w, &obj).unwrap();
            assert!((g.loss - v).abs() < 1e-12 * g.loss);
            for seed in [11u64, 12] {
                let dir = rand_field::<f64>(w.len(), seed);
                let (fd, an) = (fd_w(&c, &w, &obj, &dir, 1e-6), dot(&g.white_noise, &dir));
                worst = worst.max(rel(fd, an));
                assert!(
                    rel(fd, an) < TOL_WN,
                    "{lpt:?} {steps} steps paired {paired}: fd {fd:.10e} vs {an:.10e}"
                );
            }
        }
        eprintln!("white-noise gradient vs FD: worst rel {worst:.2e}; f64 reversal error ≤ {worst_rev:.2e}");
    }

    #[test]
    fn losses_at_snapshots_and_on_momenta() {
        // L = field MSE at a = 0.5 + momentum probe at a = 0.5 and at a_stop + field MSE at a_start:
        // cotangents injected mid-sweep, on positions and momenta (the split VJP of eq. R8).
        let mut c = small(LptOrder::Two, 4);
        c.time.snapshots = vec![0.5];
        let w = Simulation::<f64>::new(&c).unwrap().white_noise();
        let m = c.box_.mesh;
        let mse = FieldMse::new(Some(rand_field::<f64>(m * m * m, 5))).unwrap();
        let probe = MomentumProbe(rand_disp::<f64>(8, 0.05, 6));
        let obj = Objective::new()
            .at(0.5, &mse)
            .at(0.5, &probe)
            .at_end(&probe)
            .at(c.time.a_start, &mse);
        let g = grad(&c, &w, &obj, &GradOptions::default());
        for seed in [31u64, 32] {
            let dir = rand_field::<f64>(w.len(), seed);
            let (fd, an) = (fd_w(&c, &w, &obj, &dir, 1e-6), dot(&g.white_noise, &dir));
            eprintln!("losses at snapshots, direction {seed}: rel {:.2e}", rel(fd, an));
            assert!(rel(fd, an) < TOL_SNAP, "direction {seed}: fd {fd:.10e} vs {an:.10e}");
        }
        // A time that is not a step boundary is refused, naming the fix.
        let bad = Objective::new().at(0.3, &mse);
        let e = value_and_grad(&mut Simulation::<f64>::new(&c).unwrap(), &w, &bad, &GradOptions::default()).unwrap_err();
        assert!(e.to_string().contains("time.snapshots"), "{e}");
    }

    #[test]
    fn checkpoints_give_the_same_gradient() {
        let c = small(LptOrder::Two, 7);
        let w = Simulation::<f64>::new(&c).unwrap().white_noise();
        let mse = FieldMse::new(None).unwrap();
        let obj = Objective::final_state(&mse);
        let g0 = grad(&c, &w, &obj, &GradOptions::default());
        for every in [1usize, 3, 7, 100] {
            let opts = GradOptions {
                recover: Recover::Checkpoint { every },
                ..Default::default()
            };
            let g = grad(&c, &w, &obj, &opts);
            let d: f64 = g
                .white_noise
                .iter()
                .zip(&g0.white_noise)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let d = d / dot(&g0.white_noise, &g0.white_noise).sqrt();
            eprintln!(
                "checkpoint every {every}: rel L2 difference {d:.2e}, reversal error {:.2e} (pure {:.2e})",
                g.reversal_error, g0.reversal_error
            );
            assert!(d < TOL_CK, "every {every}: {d:.3e}");
            assert!(g.reversal_error <= g0.reversal_error * 1.0001 + 1e-16, "every {every}");
            assert_eq!(g.loss, g0.loss);
        }
        let opts = GradOptions {
            recover: Recover::Checkpoint { every: 0 },
            ..Default::default()
        };
        let e = value_and_grad(&mut Simulation::<f64>::new(&c).unwrap(), &w, &obj, &opts).unwrap_err();
        assert!(e.to_string().contains("checkpoint"), "{e}");
    }

    #[test]
    fn force_parameter_gradient_matches_finite_differences() {
        let c = small(LptOrder::Two, 3);
        let kmax = std::f64::consts::PI * 16.0 / 64.0 * 3f64.sqrt();
        let mut model = SplineCorrection::new(4, 2, kmax, (c.time.a_start, c.time.a_stop)).unwrap();
        let theta: Vec<f64> = (0..8).map(|i| 0.1 * ((i * 3 % 5) as f64 - 2.0)).collect();
        model.set_params(&theta).unwrap();
        let m = c.box_.mesh;
        let mse = FieldMse::new(Some(rand_field::<f64>(m * m * m, 9))).unwrap();
        let obj = Objective::final_state(&mse);
        let with = |t: &[f64]| {
            let mut sim = Simulation::<f64>::new(&c).unwrap();
            let mut mdl = model.clone();
            mdl.set_params(t).unwrap();
            sim.set_force_correction(Some(Box::new(mdl)));
            sim
        };
        let w = with(&theta).white_noise();
        let g = value_and_grad(&mut with(&theta), &w, &obj, &GradOptions::default()).unwrap();
        assert_eq!(g.force_params.len(), 8);
        let scale = g.force_params.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        for j in 0..8 {
            let eps = 1e-6;
            let at = |s: f64| {
                let mut t = theta.clone();
                t[j] += s * eps;
                loss_value(&mut with(&t), &w, &obj).unwrap()
            };
            let fd = (at(1.0) - at(-1.0)) / (2.0 * eps);
            eprintln!("θ{j}: |fd − adjoint|/max|∂L/∂θ| {:.2e}", (fd - g.force_params[j]).abs() / scale);
            assert!(
                (fd - g.force_params[j]).abs() < TOL_THETA * scale,
                "θ{j}: fd {fd:.10e} vs {:.10e}",
                g.force_params[j]
            );
        }
        // The white-noise gradient with a correction installed is right too.
        let dir = rand_field::<f64>(w.len(), 10);
        let eps = 1e-6;
        let at = |s: f64| {
            let x: Vec<f64> = w.iter().zip(&dir).map(|(a, b)| a + s * eps * b).collect();
            loss_value(&mut with(&theta), &x, &obj).unwrap()
        };
        let (fd, an) = ((at(1.0) - at(-1.0)) / (2.0 * eps), dot(&g.white_noise, &dir));
        eprintln!("white noise with a correction: rel {:.2e}", rel(fd, an));
        assert!(rel(fd, an) < TOL_WNC, "fd {fd:.10e} vs {an:.10e}");
    }

    #[test]
    fn fixed_amplitude_is_refused() {
        let mut c = small(LptOrder::One, 1);
        c.run.fixed_amplitude = true;
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let w = sim.white_noise();
        let mse = FieldMse::new(None).unwrap();
        let e = value_and_grad(&mut sim, &w, &Objective::final_state(&mse), &GradOptions::default()).unwrap_err();
        assert!(e.to_string().contains("run.fixed_amplitude"));
    }
}

#[cfg(test)]
mod cosmology_tests {
    use super::*;
    use pm_core::config::{Config, LptOrder, Spacing};
    use pm_core::loss::FieldMse;
    use pm_core::tangent::Param;
    use pm_core::testing::rand_field;

    /// Cosmological gradient vs central differences: measured worst 8.16e-8 (Ω_k, A_s-normalised
    /// w0waCDM; 2026-12-08); tolerance ≈3×.
    const TOL_COSMO: f64 = 2.5e-7;

    /// Central difference of the objective in one cosmological parameter (relative step 1e-6,
    /// absolute for parameters at 0).
    pub(crate) fn fd_param(c: &Config, w: &[f64], obj: &Objective<'_, f64>, p: Param) -> f64 {
        let cosmo = c.cosmology.clone();
        let v = p.value(&cosmo).unwrap();
        let h = if v == 0.0 { 1e-6 } else { 1e-6 * v.abs() };
        let at = |x: f64| {
            let mut cc = c.clone();
            cc.cosmology = p.with(&cosmo, x);
            loss_value(&mut Simulation::<f64>::new(&cc).unwrap(), w, obj).unwrap()
        };
        (at(v + h) - at(v - h)) / (2.0 * h)
    }

    #[test]
    fn cosmology_gradient_matches_finite_differences() {
        // Every parameter, for a σ8-normalised ΛCDM run in a, and an A_s-normalised w0waCDM run
        // with curvature in ln a, 1LPT, and losses at a snapshot and at the end.
        let mut a = Config::default();
        (a.box_.particles, a.box_.mesh, a.box_.size, a.time.steps) = (8, 16, 64.0, 3);
        let mut b = a.clone();
        b.cosmology.sigma8 = None;
        b.cosmology.a_s = Some(2.1e-9);
        (b.cosmology.w0, b.cosmology.wa, b.cosmology.omega_k) = (-0.9, 0.1, 0.01);
        b.time.spacing = Spacing::LogA;
        b.time.lpt = LptOrder::One;
        b.time.snapshots = vec![0.5];
        for c in [a, b] {
            let w = Simulation::<f64>::new(&c).unwrap().white_noise();
            let m = c.box_.mesh;
            let mse = FieldMse::new(Some(rand_field::<f64>(m * m * m, 4))).unwrap();
            let mut obj = Objective::final_state(&mse);
            if !c.time.snapshots.is_empty() {
                obj = obj.at(0.5, &mse);
            }
            let g = value_and_grad(&mut Simulation::<f64>::new(&c).unwrap(), &w, &obj, &GradOptions::default()).unwrap();
            let gc = g.cosmology.unwrap();
            for p in Param::ALL {
                let (fd, an) = (fd_param(&c, &w, &obj, p), p.value(&gc).unwrap());
                let rel = (fd - an).abs() / fd.abs().max(an.abs()).max(1e-12);
                eprintln!("{:8}: fd {fd:+.10e} adjoint {an:+.10e} rel {rel:.2e}", p.name(&c.cosmology.clone()));
                assert!(rel < TOL_COSMO, "{p:?}: fd {fd:.10e} vs adjoint {an:.10e} (rel {rel:.2e})");
            }
        }
    }
}
