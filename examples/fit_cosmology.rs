//! Infer (Ω_m, σ₈) from a mock's measured P(k) with gradients through the simulation.
//!
//! The white noise is **fixed and known** (the same seed in the model and the mock); the data are
//! the mock's P(k) at the true parameters with a Gaussian scatter of ln P̂_b of variance 2/N_b
//! per bin (the cosmic variance of a Gaussian field's bin average) drawn from a per-trial seed.
//! Each trial finds the maximum of the likelihood by L-BFGS on (Ω_m, σ₈) with the adjoint
//! gradient, and its Laplace (inverse-Hessian) uncertainty; the estimates must scatter around the
//! truth as those uncertainties say (docs/reconstruction.md §C).
//!
//! ```text
//! cargo run --release --example fit_cosmology [-- TRIALS]     # default 5 trials
//! ```

use pm_adjoint::infer::{laplace_covariance, simulated_power, PowerFit};
use pm_adjoint::optim::{lbfgs, LbfgsOptions};
use pm_core::config::Config;
use pm_core::noise::gaussian;
use pm_core::sim::Simulation;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let trials: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(5);
    let mut config = Config::default();
    (config.box_.particles, config.box_.mesh, config.box_.size, config.time.steps) = (32, 64, 128.0, 6);
    let truth = [config.cosmology.omega_m, config.cosmology.sigma8.expect("σ₈-normalised default")];
    let w = Simulation::<f64>::new(&config)?.white_noise();
    let k_max = Some(1.0);
    // The noise-free spectrum at the truth.
    let clean = simulated_power(&config, &w)?;
    println!(
        "truth: Ω_m = {:.4}, σ₈ = {:.4}; {} bins up to k = 1 h/Mpc",
        truth[0],
        truth[1],
        clean.k.iter().filter(|&&k| k <= 1.0).count()
    );
    println!(
        "{:>5} {:>16} {:>16} {:>8} {:>8} {:>8} {:>6} {:>7}  stop",
        "trial", "Ω_m ± σ", "σ₈ ± σ", "pull Ω", "pull σ₈", "2ΔlnL", "iters", "time s"
    );
    let mut within = 0;
    for trial in 0..trials {
        let t0 = Instant::now();
        let mut data = clean.clone();
        for (b, p) in data.p.iter_mut().enumerate() {
            let nb = data.n_modes[b].max(1) as f64;
            *p *= ((2.0 / nb).sqrt() * gaussian(1000 + trial, b as u64)).exp();
        }
        let fit = PowerFit::new(&config, w.clone(), data, k_max)?;
        // Parameters the cosmology refuses count as an infinite loss (the line search backs off).
        let f = |x: &[f64]| match fit.value_and_grad([x[0], x[1]]) {
            Ok((v, g)) => Ok((v, g.to_vec())),
            Err(pm_adjoint::Error::Core(pm_core::Error::Invalid { .. })) => Ok((f64::INFINITY, vec![f64::NAN; 2])),
            Err(e) => Err(e),
        };
        let opts = LbfgsOptions {
            grad_tol: 1e-9,
            f_tol: 1e-14,
            ..LbfgsOptions::with_iterations(60)
        };
        let r = lbfgs(f, vec![0.27, 0.75], &opts, |_| true)?;
        let cov = laplace_covariance(|x| Ok(fit.value_and_grad([x[0], x[1]])?.1.to_vec()), &r.x, &[2e-3, 2e-3])?;
        let sd = [cov[0][0].sqrt(), cov[1][1].sqrt()];
        let pull = [(r.x[0] - truth[0]) / sd[0], (r.x[1] - truth[1]) / sd[1]];
        // 2[L(truth) − L(estimate)]: χ² with 2 degrees of freedom at a true maximum; negative
        // means the optimiser stopped short of it.
        let two_dl = 2.0 * (fit.value_and_grad(truth)?.0 - r.loss);
        if pull.iter().all(|p| p.abs() <= 2.0) {
            within += 1;
        }
        println!(
            "{trial:5} {:8.4} ± {:.4} {:8.4} ± {:.4} {:8.2} {:8.2} {:8.2} {:6} {:7.1}  {:?}",
            r.x[0],
            sd[0],
            r.x[1],
            sd[1],
            pull[0],
            pull[1],
            two_dl,
            r.iterations,
            t0.elapsed().as_secs_f64(),
            r.stop
        );
    }
    println!("{within} of {trials} trials within 2σ of the truth in both parameters");
    Ok(())
}
