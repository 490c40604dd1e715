//! The optimisation of `cosmograd reconstruct`: the observation (read, or the mock's truth and
//! data), the posterior, the calibration of `--fit-cosmology` and the annealed L-BFGS, with a
//! progress bar.

use super::{Options, CALIBRATION_SEED, MOCK_FIT_OFFSET};
use indicatif::{ProgressBar, ProgressStyle};
use pm_adjoint::optim::LbfgsOptions;
use pm_adjoint::recon::{
    calibrate_laplace_weights, config_at, mock_observation, reconstruct, NoiseModel, Posterior, ReconProgress, ReconResult, Stage,
};
use pm_adjoint::Result;
use pm_core::config::Config;
use pm_core::io::read_white_noise;
use pm_core::sim::Simulation;
use pm_core::Real;
use std::time::Instant;

/// What the optimisation leaves for the outputs.
pub(super) struct Solved<T: Real> {
    /// The simulation, at the estimated cosmology after `--fit-cosmology`.
    pub sim: Simulation<T>,
    pub post: Posterior<T>,
    pub r: ReconResult<T>,
    /// The rows of `loss.txt`: the progress after each iteration.
    pub rows: Vec<ReconProgress>,
    /// Mock only: the true white noise.
    pub w_true: Option<Vec<T>>,
    /// The observed density on the data mesh.
    pub obs: Vec<T>,
    /// Mock only: the noise-free data.
    pub signal: Option<Vec<T>>,
    /// (Ω_m, σ₈) of the configuration (the truth in the mock).
    pub theta_config: [f64; 2],
    /// Seconds of the mock's forward run (or of reading), and of the reconstruction.
    pub t_forward: f64,
    pub t_recon: f64,
}

/// Reconstructs the white noise of the observation (`observed` on an m³ data mesh, or the mock
/// when `None`) in precision `T`.
pub(super) fn solve<T: Real>(
    config: &Config,
    opts: &Options,
    schedule: &[Stage],
    noise: &NoiseModel,
    (observed, m): (Option<Vec<f64>>, usize),
    fit_start: Option<[f64; 2]>,
) -> Result<Solved<T>> {
    let mut sim = Simulation::<T>::new(config)?;
    let n = config.box_.particles;
    let mock = observed.is_none();
    let t0 = Instant::now();
    // Truth (mock) and observation.
    let (w_true, obs, signal) = match observed {
        Some(o) => (None, o.into_iter().map(T::of).collect::<Vec<T>>(), None),
        None => {
            let w = match &config.run.white_noise {
                Some(path) => read_white_noise::<T>(path, n)?,
                None => sim.white_noise(),
            };
            let noise_seed = config.run.seed ^ 0x6e6f697365; // "noise"
            let (o, s) = mock_observation(&mut sim, &w, noise, opts.smoothing, m, noise_seed)?;
            (Some(w), o, Some(s))
        }
    };
    let t_forward = t0.elapsed().as_secs_f64();
    let mut post = Posterior::on_mesh(&sim, m, &obs, noise.clone(), opts.smoothing)?;
    post.set_preconditioning(opts.preconditioning());
    let theta_config = [config.cosmology.omega_m, config.cosmology.sigma8.unwrap_or(f64::NAN)];
    let iterations: usize = schedule.iter().map(|s| s.iterations).sum();
    let lbfgs_opts = LbfgsOptions::default();
    let fit = opts.fit_cosmology.then(|| {
        fit_start.unwrap_or(if mock {
            [theta_config[0] + MOCK_FIT_OFFSET[0], theta_config[1] + MOCK_FIT_OFFSET[1]]
        } else {
            theta_config
        })
    });
    // With --fit-cosmology: the calibration reconstruction (same schedule, at the start) and
    // one more stage at R = 0 in which the cosmology is free (docs/reconstruction.md §J).
    let calibration_iterations = if fit.is_some() { iterations } else { 0 };
    let data_schedule = {
        let mut s = schedule.to_vec();
        if fit.is_some() {
            s.push(Stage {
                smoothing: 0.0,
                iterations: (iterations / 2).max(1),
            });
        }
        s
    };
    let total: usize = calibration_iterations + data_schedule.iter().map(|s| s.iterations).sum::<usize>();
    let bar = if opts.output.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} it {pos}/{len} {msg}").expect("valid template"));
    let mut done = 0usize;
    if let Some(start) = fit {
        let mut sim_start = Simulation::<T>::new(&config_at(config, start)?)?;
        let weights = calibrate_laplace_weights(
            &mut sim_start,
            &post,
            schedule,
            &lbfgs_opts,
            config.run.seed ^ CALIBRATION_SEED,
            |p| {
                if p.iteration > 0 {
                    done += 1;
                    bar.set_position(done as u64);
                }
                bar.set_message(format!("calibration mock: R = {:.2} Mpc/h, loss {:.6e}", p.smoothing, p.loss));
            },
        )?;
        post.set_laplace_weights(Some(weights))?;
    }
    post.set_fit_cosmology(fit);
    let mut rows: Vec<ReconProgress> = Vec::new();
    let r = reconstruct(
        &mut sim,
        &mut post,
        &vec![T::zero(); n * n * n],
        &data_schedule,
        &lbfgs_opts,
        opts.reversal.recover()?,
        |p: &ReconProgress| {
            rows.push(*p);
            if p.iteration > 0 {
                done += 1;
                bar.set_position(done as u64);
            }
            let th = p.theta.map_or(String::new(), |t| format!(", Ω_m {:.4}, σ₈ {:.4}", t[0], t[1]));
            bar.set_message(format!(
                "R = {:.2} Mpc/h, loss {:.6e}, chi2/2 {:.4e}{th}",
                p.smoothing, p.loss, p.chi2_half
            ));
        },
    )?;
    bar.finish_and_clear();
    let t_recon = t0.elapsed().as_secs_f64() - t_forward;
    Ok(Solved {
        sim,
        post,
        r,
        rows,
        w_true,
        obs,
        signal,
        theta_config,
        t_forward,
        t_recon,
    })
}
