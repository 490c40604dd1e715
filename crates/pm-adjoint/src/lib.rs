//! # pm-adjoint
//!
//! Gradients of a loss on the final state of a PM simulation by the **reverse-time adjoint**:
//! the backward pass runs the FastPM leapfrog in reverse from the final state, reconstructing each
//! step's positions and momenta, while it evolves the adjoint variables with the exact discrete
//! transpose of every kick, drift and force sub-step (discretize-then-optimize; Li et al. 2022,
//! arXiv:2211.09815, Sec. 3; derivation in docs/adjoint.md §R). No trajectory is stored: memory
//! does not grow with the number of steps.
//!
//! Status: gradients with respect to the white noise (pure reverse integration). Cosmological
//! parameters, learned force corrections, checkpointing and the CLI are still to come.
//!
//! ```
//! use pm_core::{config::{Config, Precision}, loss::FieldMse, sim::Simulation};
//! let mut c = Config::default();
//! (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 64.0, 3);
//! let mut sim = Simulation::<f64>::new(&c)?;
//! let w = sim.white_noise();
//! let g = pm_adjoint::white_noise_gradient(&mut sim, &w, &FieldMse::new(None)?)?;
//! assert_eq!(g.white_noise.len(), w.len());
//! assert!(g.reversal_error < 1e-10);
//! # Ok::<(), pm_core::Error>(())
//! ```

use pm_core::error::{Error, Result};
use pm_core::float::Real;
use pm_core::loss::Loss;
use pm_core::lpt::lpt_vjp;
use pm_core::noise::linear_field;
use pm_core::sim::{Simulation, State};
use rayon::prelude::*;

/// The loss and its gradient with respect to the white noise.
#[derive(Clone, Debug)]
pub struct WhiteNoiseGradient<T: Real> {
    /// Loss value at the given white noise.
    pub loss: f64,
    /// ∂L/∂w, same shape and order as the white noise (n³, C order).
    pub white_noise: Vec<T>,
    /// ‖s₀(reverse) − s₀‖/‖s₀‖ ⊕ ‖p₀(reverse) − p₀‖/‖p₀‖ (the larger of the two): how well the
    /// reverse integration recovered the initial state.
    pub reversal_error: f64,
}

/// Relative L2 distance between two particle arrays, in f64.
fn rel_dist<T: Real>(a: &[[T; 3]], b: &[[T; 3]]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        for d in 0..3 {
            num += (x[d].f64() - y[d].f64()).powi(2);
            den += y[d].f64().powi(2);
        }
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// The loss of the configured simulation run from white noise `w` (forward only), e.g. for
/// finite-difference checks of [`white_noise_gradient`].
pub fn loss_value<T: Real>(sim: &mut Simulation<T>, w: &[T], loss: &impl Loss<T>) -> Result<f64> {
    let (state, _) = forward(sim, w, false)?;
    let n = state.disp.len();
    Ok(loss.value_and_cot(sim, &state, &mut vec![[T::zero(); 3]; n], &mut vec![[T::zero(); 3]; n]))
}

/// A particle state's displacements and momenta.
type Phase<T> = (Vec<[T; 3]>, Vec<[T; 3]>);

/// Initial conditions from `w` and every step to a_stop, checked for NaN/Inf; with
/// `keep_initial` also a copy of the initial (s, p).
fn forward<T: Real>(sim: &mut Simulation<T>, w: &[T], keep_initial: bool) -> Result<(State<T>, Option<Phase<T>>)> {
    let mut state = sim.initial_conditions(w.to_vec())?;
    let initial = keep_initial.then(|| (state.disp.clone(), state.mom.clone()));
    for &a1 in &sim.boundaries()[1..] {
        sim.step(&mut state, a1);
    }
    check_finite(&state)?;
    Ok((state, initial))
}

/// Runs the configured simulation from white noise `w` and returns the loss and ∂L/∂w by the
/// reverse-time adjoint (docs/adjoint.md §R, eqs. R1–R5).
pub fn white_noise_gradient<T: Real>(sim: &mut Simulation<T>, w: &[T], loss: &impl Loss<T>) -> Result<WhiteNoiseGradient<T>> {
    if sim.config().run.fixed_amplitude {
        return Err(Error::invalid(
            "run.fixed_amplitude",
            true,
            "false: fixed-amplitude modes are not a differentiable function of the white noise",
        ));
    }
    // Forward: keep only the initial state (for the reversal error) and the running state.
    let dk = sim.linear_modes(w)?;
    let (mut state, initial) = forward(sim, w, true)?;
    let (s0, p0) = initial.expect("kept");
    let bounds = sim.boundaries();
    // Loss and its cotangents at a_stop.
    let np = state.disp.len();
    let mut s_bar = vec![[T::zero(); 3]; np];
    let mut p_bar = vec![[T::zero(); 3]; np];
    let value = loss.value_and_cot(sim, &state, &mut s_bar, &mut p_bar);
    // Reverse sweep (R2–R4): at each step boundary one gravity VJP with the merged coefficient of
    // the two half kicks that meet there, then the drift transpose, then the primal step back.
    let nsteps = bounds.len() - 1;
    let factors: Vec<(f64, f64, f64)> = (0..nsteps).map(|i| sim.step_factors(bounds[i], bounds[i + 1])).collect();
    let mut coef = factors[nsteps - 1].2;
    for i in (0..nsteps).rev() {
        let (k1, dr, _) = factors[i];
        sim.accel_vjp(&state.disp, coef, &p_bar, &mut s_bar);
        let dr_t = T::of(dr);
        p_bar
            .par_iter_mut()
            .zip(s_bar.par_iter())
            .for_each(|(p, s)| (0..3).for_each(|d| p[d] += dr_t * s[d]));
        sim.step_back(&mut state, bounds[i]);
        coef = k1 + if i > 0 { factors[i - 1].2 } else { 0.0 };
    }
    sim.accel_vjp(&state.disp, coef, &p_bar, &mut s_bar);
    let reversal_error = rel_dist(&state.disp, &s0).max(rel_dist(&state.mom, &p0));
    // Initial conditions (R5): s₀ = D₁s₁ + D₂s₂, p₀ = g_p s₁ + g_p2 s₂.
    let a = bounds[0];
    let g = sim.growth();
    let (d1, d2, gp, gp2) = (T::of(g.d1(a)), T::of(g.d2(a)), T::of(g.gp(a)), T::of(g.gp2(a)));
    let two = sim.config().time.lpt == pm_core::lpt::LptOrder::Two;
    let s1_bar: Vec<[T; 3]> = s_bar
        .iter()
        .zip(&p_bar)
        .map(|(s, p)| std::array::from_fn(|d| d1 * s[d] + gp * p[d]))
        .collect();
    let s2_bar: Option<Vec<[T; 3]>> = two.then(|| {
        s_bar
            .iter()
            .zip(&p_bar)
            .map(|(s, p)| std::array::from_fn(|d| d2 * s[d] + gp2 * p[d]))
            .collect()
    });
    let mut delta_bar = lpt_vjp(&dk, sim.lattice(), sim.fft_lattice(), &s1_bar, s2_bar.as_deref());
    // Linear modes (self-adjoint real operator, times the pairing sign).
    let lin = sim.linear_power();
    let mut wbar = linear_field(&mut delta_bar, sim.lattice(), sim.fft_lattice(), &|k| lin.p(k));
    if sim.config().run.paired {
        wbar.iter_mut().for_each(|v| *v = -*v);
    }
    Ok(WhiteNoiseGradient {
        loss: value,
        white_noise: wbar,
        reversal_error,
    })
}

fn check_finite<T: Real>(s: &State<T>) -> Result<()> {
    if s.disp.iter().chain(&s.mom).any(|v| v.iter().any(|x| !x.is_finite())) {
        return Err(Error::NonFinite {
            what: "particle state".into(),
            detail: "at the end of the forward run".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pm_core::config::{Config, LptOrder};
    use pm_core::loss::FieldMse;
    use pm_core::testing::{dot, rand_field};

    fn small(lpt: LptOrder, steps: usize) -> Config {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size) = (8, 16, 64.0);
        c.time.steps = steps;
        c.time.lpt = lpt;
        c
    }

    fn loss_at(c: &Config, w: &[f64], target: &FieldMse<f64>) -> f64 {
        loss_value(&mut Simulation::<f64>::new(c).unwrap(), w, target).unwrap()
    }

    #[test]
    fn white_noise_gradient_matches_finite_differences() {
        for (lpt, steps, paired) in [(LptOrder::One, 3, false), (LptOrder::Two, 5, false), (LptOrder::Two, 2, true)] {
            let mut c = small(lpt, steps);
            c.run.paired = paired;
            let mut sim = Simulation::<f64>::new(&c).unwrap();
            let w = sim.white_noise();
            let m = c.box_.mesh;
            let target = FieldMse::new(Some(rand_field::<f64>(m * m * m, 3))).unwrap();
            let g = white_noise_gradient(&mut sim, &w, &target).unwrap();
            assert!(g.reversal_error < 1e-11, "reversal error {:.3e}", g.reversal_error);
            assert!((g.loss - loss_at(&c, &w, &target)).abs() < 1e-12 * g.loss);
            for seed in [11u64, 12] {
                let dir = rand_field::<f64>(w.len(), seed);
                let eps = 1e-6;
                let wp: Vec<f64> = w.iter().zip(&dir).map(|(a, b)| a + eps * b).collect();
                let wm: Vec<f64> = w.iter().zip(&dir).map(|(a, b)| a - eps * b).collect();
                let fd = (loss_at(&c, &wp, &target) - loss_at(&c, &wm, &target)) / (2.0 * eps);
                let an = dot(&g.white_noise, &dir);
                let rel = (fd - an).abs() / fd.abs().max(an.abs());
                eprintln!(
                    "{lpt:?} {steps} steps paired={paired}: rel {rel:.2e}, reversal {:.2e}",
                    g.reversal_error
                );
                assert!(
                    rel < 1e-6,
                    "{lpt:?}, {steps} steps, paired {paired}: fd {fd:.10e} vs adjoint {an:.10e} (rel {rel:.2e})"
                );
            }
        }
    }

    #[test]
    fn fixed_amplitude_is_refused() {
        let mut c = small(LptOrder::One, 1);
        c.run.fixed_amplitude = true;
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let w = sim.white_noise();
        let e = white_noise_gradient(&mut sim, &w, &FieldMse::new(None).unwrap()).unwrap_err();
        assert!(e.to_string().contains("run.fixed_amplitude"));
    }
}
