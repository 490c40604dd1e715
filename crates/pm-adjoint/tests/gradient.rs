//! End-to-end gradients at the size of issue 3's bar (32³ particles, 64³ mesh, 10 steps, 2LPT,
//! field-MSE loss against a target), and training of a learned force correction.

use pm_adjoint::{loss_value, value_and_grad, GradOptions, Gradients, Objective};
use pm_core::config::Config;
use pm_core::correction::{ForceCorrection, SplineCorrection};
use pm_core::loss::FieldMse;
use pm_core::sim::Simulation;
use pm_core::tangent::Param;
use pm_core::testing::{dot, rand_field};
use pm_core::Real;

fn config() -> Config {
    let mut c = Config::default();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (32, 64, 128.0, 10);
    c
}

/// A target mesh: the density of another seed's run, so the loss is of order one.
fn target<T: Real>(c: &Config) -> Vec<T> {
    let mut c2 = c.clone();
    c2.run.seed = 999;
    let mut sim = Simulation::<T>::new(&c2).unwrap();
    let w = sim.white_noise();
    let mut st = sim.initial_conditions(w).unwrap();
    sim.run(&mut st, |_| Ok(())).unwrap();
    sim.density(&st)
}

fn loss_at(c: &Config, w: &[f64], loss: &FieldMse<f64>) -> f64 {
    loss_value(&mut Simulation::<f64>::new(c).unwrap(), w, &Objective::final_state(loss)).unwrap()
}

fn gradient<T: Real>(sim: &mut Simulation<T>, w: &[T], loss: &FieldMse<T>) -> Gradients<T> {
    value_and_grad(sim, w, &Objective::final_state(loss), &GradOptions::default()).unwrap()
}

#[test]
fn f64_gradient_matches_finite_differences_and_f32_agrees() {
    let c = config();
    let loss = FieldMse::new(Some(target::<f64>(&c))).unwrap();
    let mut sim = Simulation::<f64>::new(&c).unwrap();
    let w = sim.white_noise();
    let g = gradient(&mut sim, &w, &loss);
    eprintln!("f64: loss {:.6e}, reversal error {:.2e}", g.loss, g.reversal_error);
    // Measured 1.37e-12 (2026-12-08); tolerance ≈3×.
    assert!(g.reversal_error < 4e-12, "f64 reversal error {:.2e}", g.reversal_error);
    // The PM loss is only piecewise smooth: CIC weights are piecewise linear, so a central
    // difference whose stencil lets a particle cross a cell-centre plane in any of the 11 force
    // evaluations sees an averaged slope. With 32³ particles that happens at ε ≳ 1e-7 (measured,
    // direction 21: rel. error 1.1e-2, 3.4e-3, 3.7e-4, 5.7e-7 at ε = 1e-4, 1e-5, 1e-7, 1e-8). At
    // ε = 1e-8 f64 rounding costs ~1e-7 relative and crossings are rare.
    for seed in [21u64, 22, 23] {
        let eps = 1e-8;
        let dir = rand_field::<f64>(w.len(), seed);
        let wp: Vec<f64> = w.iter().zip(&dir).map(|(a, b)| a + eps * b).collect();
        let wm: Vec<f64> = w.iter().zip(&dir).map(|(a, b)| a - eps * b).collect();
        let fd = (loss_at(&c, &wp, &loss) - loss_at(&c, &wm, &loss)) / (2.0 * eps);
        let an = dot(&g.white_noise, &dir);
        let rel = (fd - an).abs() / fd.abs().max(an.abs());
        eprintln!("direction {seed}: fd {fd:.10e}, adjoint {an:.10e}, rel {rel:.2e}");
        // Measured 9.1e-8, 1.74e-6, 1.3e-7 for directions 21, 22, 23 (2026-12-08); tolerance ≈3×
        // the worst.
        assert!(rel < 5e-6, "direction {seed}: rel {rel:.2e}");
    }
    // Every cosmological parameter. The same kinks bound the step from above (an error ∝ step:
    // 7.6e-5 for σ8 at a relative step of 1e-7) and f64 rounding of the loss (~4e-14) from below.
    // The step is set so that the loss changes by ~1e-9 of itself: h = 1e-9 L / |∂L/∂θ|, which
    // keeps both errors below ~1e-6 for every parameter.
    let gc = g.cosmology.as_ref().unwrap();
    let cosmo = c.cosmology.clone();
    for p in Param::ALL {
        let v = p.value(&cosmo).unwrap();
        let h = 1e-9 * g.loss / p.value(gc).unwrap().abs();
        let at = |x: f64| {
            let mut cc = c.clone();
            cc.cosmology = p.with(&cosmo, x);
            loss_value(&mut Simulation::<f64>::new(&cc).unwrap(), &w, &Objective::final_state(&loss)).unwrap()
        };
        let fd = (at(v + h) - at(v - h)) / (2.0 * h);
        let an = p.value(gc).unwrap();
        let rel = (fd - an).abs() / fd.abs().max(an.abs());
        eprintln!("{:8}: fd {fd:+.10e}, adjoint {an:+.10e}, rel {rel:.2e}", p.name(&cosmo));
        // Measured 3.8e-8 (wa) to 8.22e-7 (w0) (2026-12-08); tolerance ≈3× the worst.
        assert!(rel < 2.5e-6, "{}: rel {rel:.2e}", p.name(&cosmo));
    }
    // f32: the same gradient to 3e-3 (relative L2), with its reversal error reported.
    let loss32 = FieldMse::new(Some(target::<f32>(&c))).unwrap();
    let mut sim32 = Simulation::<f32>::new(&c).unwrap();
    let w32: Vec<f32> = w.iter().map(|v| *v as f32).collect();
    let g32 = gradient(&mut sim32, &w32, &loss32);
    let num: f64 = g32
        .white_noise
        .iter()
        .zip(&g.white_noise)
        .map(|(a, b)| (*a as f64 - b).powi(2))
        .sum();
    let den: f64 = g.white_noise.iter().map(|b| b * b).sum();
    let rel = (num / den).sqrt();
    eprintln!("f32: reversal error {:.2e}, ‖g32 − g64‖/‖g64‖ = {rel:.2e}", g32.reversal_error);
    // Measured 1.02e-3 (relative L2; tolerance ≈3×) and a reversal error of 7.38e-4 (2026-12-08;
    // the f32 floor of reversing 10 steps, see `checkpointed_f32_reversal_error_stays_bounded`;
    // the old bound 1e-3 is kept, as 3× would loosen it).
    assert!(
        rel < 3e-3 && g32.reversal_error < 1e-3,
        "f32 gradient rel {rel:.2e}, reversal {:.2e}",
        g32.reversal_error
    );
    let gc32 = g32.cosmology.as_ref().unwrap();
    for p in Param::ALL {
        let (a, b) = (p.value(gc32).unwrap(), p.value(gc).unwrap());
        let rel = (a - b).abs() / b.abs();
        eprintln!("f32 {:8}: {a:+.6e} vs f64 {b:+.6e}, rel {rel:.2e}", p.name(&cosmo));
        // Measured 4.0e-4 (σ8) to 7.88e-3 (h) (2026-12-08); the old bound 1e-2 is kept (3× the
        // worst would loosen it).
        assert!(rel < 1e-2, "f32 {}: rel {rel:.2e}", p.name(&cosmo));
    }
}

#[test]
fn gradient_descent_on_the_white_noise_lowers_the_loss() {
    // A few plain gradient steps towards another seed's final density must lower the loss
    // monotonically: the gradient is a descent direction at every iterate.
    let mut c = config();
    (c.box_.particles, c.box_.mesh, c.time.steps) = (16, 32, 5);
    let loss = FieldMse::new(Some(target::<f64>(&c))).unwrap();
    let mut sim = Simulation::<f64>::new(&c).unwrap();
    let mut w = sim.white_noise();
    let mut prev = f64::INFINITY;
    let mut lr = None;
    for it in 0..5 {
        let g = gradient(&mut sim, &w, &loss);
        assert!(g.loss < prev, "iteration {it}: loss {} did not decrease from {prev}", g.loss);
        prev = g.loss;
        let gn = dot(&g.white_noise, &g.white_noise).sqrt();
        let step = *lr.get_or_insert(0.05 * (w.len() as f64).sqrt() / gn);
        w.iter_mut().zip(&g.white_noise).for_each(|(x, gx)| *x -= step * gx);
    }
}

#[test]
fn training_a_force_correction_through_the_adjoint_lowers_the_loss() {
    // Target: the final density of the same initial conditions run with a known correction θ*
    // (a boost of the force on small scales at late times). Starting from plain PM (θ = 0),
    // gradient descent on θ with the adjoint gradient must lower the loss, and
    // the parameter gradient must match central finite differences of the loss.
    let mut c = config();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (16, 32, 64.0, 5);
    let kmax = std::f64::consts::PI * 32.0 / 64.0 * 3f64.sqrt();
    let base = SplineCorrection::new(4, 1, kmax, (c.time.a_start, c.time.a_stop)).unwrap();
    let truth = vec![0.0, 0.1, 0.4, 0.8];
    let sim_with = |theta: &[f64]| {
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let mut m = base.clone();
        m.set_params(theta).unwrap();
        sim.set_force_correction(Some(Box::new(m)));
        sim
    };
    let mut sim = sim_with(&truth);
    let w = sim.white_noise();
    let mut st = sim.initial_conditions(w.clone()).unwrap();
    sim.run(&mut st, |_| Ok(())).unwrap();
    let loss = FieldMse::new(Some(sim.density(&st))).unwrap();
    let obj = Objective::final_state(&loss);
    let mut theta = vec![0.0; 4];
    let g0 = value_and_grad(&mut sim_with(&theta), &w, &obj, &GradOptions::default()).unwrap();
    // Finite differences of the parameter gradient along two directions.
    for seed in [1u64, 2] {
        let dir = rand_field::<f64>(4, seed);
        let eps = 1e-6;
        let at = |s: f64| {
            let t: Vec<f64> = theta.iter().zip(&dir).map(|(a, b)| a + s * eps * b).collect();
            loss_value(&mut sim_with(&t), &w, &obj).unwrap()
        };
        let fd = (at(1.0) - at(-1.0)) / (2.0 * eps);
        let an = dot(&g0.force_params, &dir);
        let rel = (fd - an).abs() / fd.abs().max(an.abs());
        eprintln!("force-correction gradient, direction {seed}: fd {fd:.10e}, adjoint {an:.10e}, rel {rel:.2e}");
        // Measured 3.85e-10 and 2.7e-12 (2026-12-08); tolerance ≈3× the worst.
        assert!(rel < 1.2e-9, "direction {seed}: rel {rel:.2e}");
    }
    // Gradient descent with a backtracking (Armijo) line search: every accepted step lowers the
    // loss; the test asserts it falls by more than half in 6 steps.
    let mut losses = vec![g0.loss];
    let (mut g, mut t) = (g0.force_params.clone(), g0.loss / dot(&g0.force_params, &g0.force_params));
    for _ in 0..6 {
        let gg = dot(&g, &g);
        let cur = *losses.last().unwrap();
        let trial = loop {
            let th: Vec<f64> = theta.iter().zip(&g).map(|(a, b)| a - t * b).collect();
            let l = loss_value(&mut sim_with(&th), &w, &obj).unwrap();
            if l < cur - 1e-4 * t * gg || t < 1e-12 {
                break th;
            }
            t *= 0.5;
        };
        theta = trial;
        let r = value_and_grad(&mut sim_with(&theta), &w, &obj, &GradOptions::default()).unwrap();
        losses.push(r.loss);
        g = r.force_params;
        t *= 2.0;
    }
    eprintln!("training losses: {losses:?}");
    assert!(
        losses.windows(2).all(|p| p[1] < p[0]),
        "loss did not decrease monotonically: {losses:?}"
    );
    assert!(
        losses[6] < 0.5 * losses[0],
        "loss fell only from {:.3e} to {:.3e}",
        losses[0],
        losses[6]
    );
}

#[test]
fn gradient_is_bit_identical_with_1_and_2_threads() {
    // The loss, every gradient (white noise, cosmology, force correction) and the reversal error
    // of the same f32 run with a learned correction, in a 1-thread and a 2-thread rayon pool: any
    // reduction or work split that depends on the thread count changes low bits and fails this.
    // 32³ particles (several parallel chunks per particle loop), 10 steps: ~1 s.
    let c = config();
    let loss = FieldMse::new(Some(target::<f32>(&c))).unwrap();
    let kmax = std::f64::consts::PI * 64.0 / 128.0 * 3f64.sqrt();
    let mut model = SplineCorrection::new(4, 1, kmax, (c.time.a_start, c.time.a_stop)).unwrap();
    model.set_params(&[0.0, 0.1, 0.3, 0.5]).unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            assert_eq!(rayon::current_num_threads(), threads);
            let mut sim = Simulation::<f32>::new(&c).unwrap();
            sim.set_force_correction(Some(Box::new(model.clone())));
            let w = sim.white_noise();
            gradient(&mut sim, &w, &loss)
        })
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "loss {} vs {}", a.loss, b.loss);
    let differ = a
        .white_noise
        .iter()
        .zip(&b.white_noise)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(
        differ,
        0,
        "{differ} of {} white-noise gradient components differ",
        a.white_noise.len()
    );
    let (ca, cb) = (a.cosmology.as_ref().unwrap(), b.cosmology.as_ref().unwrap());
    for p in Param::ALL {
        let (x, y) = (p.value(ca).unwrap(), p.value(cb).unwrap());
        assert_eq!(x.to_bits(), y.to_bits(), "∂L/∂{}: {x:e} vs {y:e}", p.name(&c.cosmology));
    }
    assert_eq!(a.force_params.len(), 4);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&a.force_params),
        bits(&b.force_params),
        "{:?} vs {:?}",
        a.force_params,
        b.force_params
    );
    assert_eq!(a.reversal_error.to_bits(), b.reversal_error.to_bits());
}

#[test]
fn checkpointed_f32_reversal_error_stays_bounded() {
    // In f32 the reverse integration cannot recover the initial state better than the rounding
    // of the final one allows: the pure reversal error is a floor of ~8e-4 whatever the steps
    // (measured 2026-12-08, 16³/32³/64 Mpc/h from a = 0.02: 7.7e-4, 8.2e-4, 7.2e-4, 8.1e-4,
    // 8.4e-4 at 10, 20, 50, 100, 200 steps). With a checkpoint every 10 steps each segment is
    // reversed over a tenth of the run only: 7.7e-4, 1.8e-4, 1.9e-5, 3.73e-6, 1.6e-6. So from 10
    // to 100 steps the checkpointed error must not grow, and at 100 steps it stays near the
    // measured 3.73e-6 (bound ≈3×). Checkpoints that were not restored (or not stored) would
    // leave the pure reversal error, ~200× the bound: checked here on the same run. ~1 s.
    use pm_adjoint::Recover;
    let mse = FieldMse::<f32>::new(None).unwrap();
    let reversal_error = |steps: usize, recover: Recover| {
        let mut c = config();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (16, 32, 64.0, steps);
        let mut sim = Simulation::<f32>::new(&c).unwrap();
        let w = sim.white_noise();
        let opts = GradOptions { recover, cosmology: false };
        value_and_grad(&mut sim, &w, &Objective::final_state(&mse), &opts)
            .unwrap()
            .reversal_error
    };
    let every = Recover::Checkpoint { every: 10 };
    let (e10, e100) = (reversal_error(10, every), reversal_error(100, every));
    let pure100 = reversal_error(100, Recover::Reverse);
    eprintln!(
        "f32 reversal error, checkpoint every 10: {e10:.3e} (10 steps), {e100:.3e} (100 steps); pure reversal at 100 steps {pure100:.3e}"
    );
    assert!(
        e100 <= e10,
        "checkpointed reversal error grew from {e10:.3e} (10 steps) to {e100:.3e} (100 steps)"
    );
    assert!(e100 < 1.1e-5, "checkpointed reversal error at 100 steps {e100:.3e}");
    assert!(
        pure100 > 10.0 * 1.1e-5,
        "the test cannot tell checkpoints from pure reversal: {pure100:.3e}"
    );
}
