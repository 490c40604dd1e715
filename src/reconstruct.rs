//! `cosmograd reconstruct`: maximum-a-posteriori reconstruction of the initial white noise from a
//! late-time density mesh, by L-BFGS on −ln posterior = ½χ² + ½|w|² with gradients from the
//! adjoint (pm-adjoint `recon`, derivation in docs/reconstruction.md).
//!
//! With no `--observed` it runs an embedded mock: the true white noise comes from the seed (or
//! `--white-noise`), is simulated, smoothed by `--smoothing` and given noise, then reconstructed
//! from w = 0 and compared with the truth.
//!
//! Files written to the output directory:
//! - `config.toml`: the resolved configuration, with the reconstruction settings as comments;
//! - `white_noise.npy`: the reconstruction ŵ, (n, n, n) of the run's precision;
//! - `linear_density.npy`: δ_L(ŵ) at a = 1 on the particle grid (n³ f32);
//! - `final_density.npy`: the model's prediction of the observed mesh, S δ(ŵ) on the data mesh
//!   (M³ f32; M = the side of the observed array, `--data-mesh`, or the force mesh);
//! - `loss.txt`: per iteration: stage, annealing scale R, −ln posterior at R, ½χ² at R = 0, ½|w|²;
//! - `loss.png`: the loss against the iteration;
//! - `slices.png`: slices of the initial and final fields, truth (or observation) beside the
//!   reconstruction;
//! - mock only: `true_white_noise.npy`, `observed.npy`, `r_k.txt` (k, r(k) and T(k) between the
//!   reconstructed and the true linear field, and the r and T of the linear-theory Wiener filter
//!   of the same data, docs/reconstruction.md eq. W1) and `r_k.png`;
//! - with `--fit-cosmology`: `cosmology.txt` (start, estimate and Laplace σ of Ω_m and σ₈, their
//!   correlation, and in the mock the truth and the pulls), and (Ω_m, σ₈) per row of `loss.txt`.
//!
//! The optimiser works in preconditioned variables, by default with the Gauss–Newton curvature
//! measured at the start of each stage (`--preconditioner`, docs/reconstruction.md eqs. X5–X6;
//! `--no-precondition` for none). `--fit-cosmology` first reconstructs a calibration mock at
//! the starting cosmology (eq. J6), then fits the data with the cosmology free in an extra last
//! stage (§J).

use crate::output::{draw_png, magma, plain_label, DrawOutcome, FONT};
use crate::simulate::{check_output_files, resolve_config, Input};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::backend::RGBPixel;
use plotters::prelude::*;
use pm_adjoint::optim::LbfgsOptions;
use pm_adjoint::recon::{
    calibrate_laplace_weights, config_at, default_schedule, linear_wiener, mock_observation, reconstruct, NoiseModel, Posterior,
    Preconditioning, ReconProgress, Stage,
};
use pm_core::config::{Config, Precision};
use pm_core::fft::Fft3;
use pm_core::io::{read_npy, read_white_noise, shape_string, write_npy_f32, write_npy_real};
use pm_core::mesh::MeshGeom;
use pm_core::noise::linear_field;
use pm_core::power::{cross_spectrum, Deconvolve};
use pm_core::sim::Simulation;
use pm_core::{Error, Real, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Noise σ per cell of the mock when neither `--noise` nor `--noise-power` is given: small next
/// to the rms of the CIC density on the default mesh (≈ 1.5), i.e. an almost noise-free mock.
pub const DEFAULT_MOCK_SIGMA: f64 = 0.01;

/// Command-line options of `reconstruct`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Configuration and (mock mode) true white noise.
    pub input: Input,
    /// Observed density contrast on the data mesh, .npy (M, M, M); `None`: the embedded mock.
    pub observed: Option<PathBuf>,
    /// White noise σ per cell of the observation (units of δ).
    pub noise: Option<f64>,
    /// Noise power spectrum file: two columns k [h/Mpc], P_N [(Mpc/h)³].
    pub noise_power: Option<PathBuf>,
    /// Gaussian smoothing scale R_d of the data model, Mpc/h (0: none).
    pub smoothing: f64,
    /// Cells per side of the data mesh (`None`: the side of the observed array; in the mock,
    /// the force mesh).
    pub data_mesh: Option<usize>,
    /// Total L-BFGS iterations over the default annealing schedule.
    pub iterations: usize,
    /// An explicit annealing schedule "R:N,R:N,…" (R in Mpc/h, N iterations), replacing the
    /// default one built from `iterations`.
    pub schedule: Option<String>,
    /// The preconditioning of the white noise (`Posterior::set_preconditioning`,
    /// docs/reconstruction.md eqs. X5–X6; the CLI's default is `Measured`).
    pub precondition: Preconditioning,
    /// Fit (Ω_m, σ₈) jointly with the white noise and write `cosmology.txt`.
    pub fit_cosmology: bool,
    /// Starting point of the fit, "OMEGA_M,SIGMA8" (default: the configuration's values; in the
    /// mock, the truth offset by [`MOCK_FIT_OFFSET`]).
    pub fit_start: Option<String>,
    /// Output directory.
    pub out: PathBuf,
    /// Overwrite a different earlier run's outputs.
    pub force: bool,
    /// Suppress the progress bar and summary.
    pub quiet: bool,
}

/// The files `reconstruct` writes in every mode.
pub const RECON_FILES: [&str; 7] = [
    "config.toml",
    "white_noise.npy",
    "linear_density.npy",
    "final_density.npy",
    "loss.txt",
    "loss.png",
    "slices.png",
];
/// The additional file of `--fit-cosmology`: the estimates and their Laplace uncertainty.
pub const FIT_FILE: &str = "cosmology.txt";
/// Offset (ΔΩ_m, Δσ₈) of the default starting point of `--fit-cosmology` from the truth in
/// the mock, so that the fit has to move to recover it.
pub const MOCK_FIT_OFFSET: [f64; 2] = [0.05, -0.05];

/// Seed offset (xor with `run.seed`) of the calibration mock of `--fit-cosmology`.
pub const CALIBRATION_SEED: u64 = 0x63616c6962; // "calib"

/// Parses `--fit-start` "OMEGA_M,SIGMA8" (0 < Ω_m < 1, σ₈ > 0, finite).
fn parse_fit_start(text: &str) -> Result<[f64; 2]> {
    let bad = || {
        Error::invalid(
            "--fit-start",
            text,
            "two numbers OMEGA_M,SIGMA8 with 0 < Ω_m < 1 and σ₈ > 0, e.g. 0.3,0.8",
        )
    };
    let v: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    match v[..] {
        [om, s8] if om.is_finite() && s8.is_finite() && om > 0.0 && om < 1.0 && s8 > 0.0 => Ok([om, s8]),
        _ => Err(bad()),
    }
}

/// Parses `--schedule` "R:N,R:N,…": stages of N ≥ 1 L-BFGS iterations at the residual
/// smoothing scale R ≥ 0 (Mpc/h), in the order given.
fn parse_schedule(text: &str) -> Result<Vec<Stage>> {
    let bad = || {
        Error::invalid(
            "--schedule",
            text,
            "comma-separated stages R:N (smoothing R ≥ 0 in Mpc/h, N ≥ 1 iterations), e.g. 8:20,4:20,2:20,1:20,0:120",
        )
    };
    text.split(',')
        .map(|stage| {
            let (r, it) = stage.split_once(':').ok_or_else(bad)?;
            let smoothing: f64 = r.trim().parse().map_err(|_| bad())?;
            let iterations: usize = it.trim().parse().map_err(|_| bad())?;
            if smoothing.is_finite() && smoothing >= 0.0 && iterations >= 1 {
                Ok(Stage { smoothing, iterations })
            } else {
                Err(bad())
            }
        })
        .collect()
}

/// The additional files of the mock mode.
pub const MOCK_FILES: [&str; 4] = ["true_white_noise.npy", "observed.npy", "r_k.txt", "r_k.png"];

/// Reads a noise power table: `#` comments, then rows `k P_N` (h/Mpc, (Mpc/h)³).
pub fn read_noise_power(path: &Path) -> Result<NoiseModel> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read the noise power table: {e}")))?;
    let (mut k, mut p) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = l.split_whitespace().collect();
        let parse = |s: &str| s.parse::<f64>().ok();
        match (cols.first().and_then(|s| parse(s)), cols.get(1).and_then(|s| parse(s))) {
            (Some(a), Some(b)) => {
                k.push(a);
                p.push(b);
            }
            _ => {
                return Err(Error::file(
                    path,
                    format!("line {}: expected two numbers `k P_N` (h/Mpc, (Mpc/h)^3), found `{l}`", i + 1),
                ))
            }
        }
    }
    let model = NoiseModel::Power { k, p };
    model
        .validate()
        .map_err(|e| Error::file(path, format!("bad noise power table: {e}")))?;
    Ok(model)
}

fn noise_model(opts: &Options) -> pm_adjoint::Result<NoiseModel> {
    let model = match (&opts.noise, &opts.noise_power) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("--noise", "given with --noise-power", "one of --noise SIGMA or --noise-power FILE").into());
        }
        (Some(s), None) => NoiseModel::White { sigma: *s },
        (None, Some(p)) => read_noise_power(p)?,
        (None, None) if opts.observed.is_none() => NoiseModel::White { sigma: DEFAULT_MOCK_SIGMA },
        (None, None) => {
            return Err(Error::invalid(
                "--noise",
                "none",
                "the noise of the --observed data: --noise SIGMA (per cell, units of δ) or --noise-power FILE",
            )
            .into())
        }
    };
    if let NoiseModel::White { sigma } = model {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(Error::invalid("--noise", sigma, "a standard deviation > 0 per cell (units of δ)").into());
        }
    }
    model.validate()?;
    Ok(model)
}

/// Box side of the embedded reconstruction default (no `--config`), Mpc/h.
pub const RECON_DEFAULT_BOX: f64 = 128.0;
/// Number of time steps of the embedded reconstruction default (no `--config`).
pub const RECON_DEFAULT_STEPS: usize = 10;

/// Runs `reconstruct` with the given options.
pub fn run(opts: &Options) -> pm_adjoint::Result<()> {
    let mut config = resolve_config(&opts.input)?;
    if opts.input.config.is_none() {
        // The embedded reconstruction default: the simulation default (64³ particles, 128³
        // mesh, Planck-18-like) in a 128 Mpc/h box with 10 steps, a few minutes on 2 cores.
        config.box_.size = RECON_DEFAULT_BOX;
        config.time.steps = RECON_DEFAULT_STEPS;
        config.validate()?;
    }
    let noise = noise_model(opts)?;
    if opts.iterations == 0 {
        return Err(Error::invalid("--iterations", 0, "at least 1 L-BFGS iteration").into());
    }
    let schedule = match &opts.schedule {
        Some(t) => parse_schedule(t)?,
        None => default_schedule(opts.iterations, config.box_.particle_spacing()),
    };
    if !(opts.smoothing.is_finite() && opts.smoothing >= 0.0) {
        return Err(Error::invalid("--smoothing", opts.smoothing, "a Gaussian smoothing scale ≥ 0 in Mpc/h").into());
    }
    let fit_start = match (&opts.fit_start, opts.fit_cosmology) {
        (Some(t), true) => Some(parse_fit_start(t)?),
        (Some(t), false) => return Err(Error::invalid("--fit-start", t, "given together with --fit-cosmology").into()),
        (None, _) => None,
    };
    if opts.fit_cosmology && config.cosmology.sigma8.is_none() {
        return Err(Error::invalid(
            "cosmology.sigma8",
            "unset (normalised by a_s)",
            "a σ₈ normalisation in the configuration for --fit-cosmology",
        )
        .into());
    }
    if let Some(t) = fit_start {
        config_at(&config, t).map_err(|e| {
            Error::invalid(
                "--fit-start",
                format!("{},{}", t[0], t[1]),
                format!("a cosmology the simulation accepts ({e})"),
            )
        })?;
    }
    // Read and check the observation before anything is written.
    let (observed, data_mesh) = match &opts.observed {
        Some(p) => {
            let (md, data) = read_observed(p, opts.data_mesh, config.box_.mesh)?;
            (Some(data), md)
        }
        None => (None, opts.data_mesh.unwrap_or(config.box_.mesh)),
    };
    if !(2..=4096).contains(&data_mesh) {
        return Err(Error::invalid("--data-mesh", data_mesh, "2 to 4096 cells per side").into());
    }
    let resolved = format!(
        "{}\n# cosmograd reconstruct: observed = {}, data mesh = {data_mesh}, noise = {:?}, smoothing = {} Mpc/h, schedule (R [Mpc/h]:iterations) = {}, preconditioning = {:?}, fit cosmology = {}{}\n",
        config.to_toml_string(),
        opts.observed.as_ref().map_or("mock".to_string(), |p| p.display().to_string()),
        noise,
        opts.smoothing,
        schedule.iter().map(|s| format!("{}:{}", s.smoothing, s.iterations)).collect::<Vec<_>>().join(","),
        opts.precondition,
        opts.fit_cosmology,
        fit_start.map_or(String::new(), |t| format!(" from {},{}", t[0], t[1]))
    );
    let mut files: Vec<&str> = RECON_FILES.to_vec();
    if observed.is_none() {
        files.extend(MOCK_FILES);
    }
    if opts.fit_cosmology {
        files.push(FIT_FILE);
    }
    check_output_files(&opts.out, &files, &resolved, opts.force)?;
    let threads = config.run.threads;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::invalid("run.threads", threads, format!("a thread count the system can start ({e})")))?;
    pool.install(|| match config.run.precision {
        Precision::F32 => run_typed::<f32>(&config, &resolved, opts, &schedule, noise, (observed, data_mesh), fit_start),
        Precision::F64 => run_typed::<f64>(&config, &resolved, opts, &schedule, noise, (observed, data_mesh), fit_start),
    })
}

/// Reads the observed density: a cube (m_d, m_d, m_d) with m_d ≥ 2 (equal to `expected` when
/// given), finite values. Returns (m_d, values). `force_mesh` is named in the error as the
/// usual choice.
fn read_observed(path: &Path, expected: Option<usize>, force_mesh: usize) -> Result<(usize, Vec<f64>)> {
    let (shape, data) = read_npy(path)?;
    let md = shape.first().copied().unwrap_or(0);
    let cube = shape.len() == 3 && shape.iter().all(|&s| s == md) && md >= 2;
    if !cube || expected.is_some_and(|e| e != md) {
        let want = match expected {
            Some(e) => format!("shape {} (--data-mesh)", shape_string(&[e, e, e])),
            None => format!(
                "a cube (M, M, M) with M ≥ 2, the data mesh: e.g. {} = (box.mesh,)*3, the force mesh",
                shape_string(&[force_mesh; 3])
            ),
        };
        return Err(Error::Shape {
            what: format!("observed density {}", path.display()),
            found: format!("shape {}", shape_string(&shape)),
            expected: want,
        });
    }
    Error::check_finite(&format!("observed density {}", path.display()), &data)?;
    Ok((md, data))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::file(path, e.to_string()))
}

fn to_f32<T: Real>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.f64() as f32).collect()
}

/// One row of `loss.txt`.
struct LossRow {
    stage: usize,
    smoothing: f64,
    iteration: usize,
    loss: f64,
    chi2_half: f64,
    prior: f64,
    theta: Option<[f64; 2]>,
}

fn run_typed<T: Real>(
    config: &Config,
    resolved: &str,
    opts: &Options,
    schedule: &[Stage],
    noise: NoiseModel,
    (observed, m): (Option<Vec<f64>>, usize),
    fit_start: Option<[f64; 2]>,
) -> pm_adjoint::Result<()> {
    let mut sim = Simulation::<T>::new(config)?;
    let (n, l) = (config.box_.particles, config.box_.size);
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
            let (o, s) = mock_observation(&mut sim, &w, &noise, opts.smoothing, m, noise_seed)?;
            (Some(w), o, Some(s))
        }
    };
    let t_forward = t0.elapsed().as_secs_f64();
    let mut post = Posterior::on_mesh(&sim, m, &obs, noise.clone(), opts.smoothing)?;
    post.set_preconditioning(opts.precondition);
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
    let bar = if opts.quiet {
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
    let mut rows: Vec<LossRow> = Vec::new();
    let r = reconstruct(
        &mut sim,
        &mut post,
        &vec![T::zero(); n * n * n],
        &data_schedule,
        &lbfgs_opts,
        |p: &ReconProgress| {
            rows.push(LossRow {
                stage: p.stage,
                smoothing: p.smoothing,
                iteration: p.iteration,
                loss: p.loss,
                chi2_half: p.chi2_half,
                prior: p.prior,
                theta: p.theta,
            });
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

    // Outputs.
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, format!("cannot create the output directory: {e}")))?;
    write_text(&out.join("config.toml"), resolved)?;
    write_npy_real(&out.join("white_noise.npy"), &[n, n, n], &r.white_noise)?;
    let lattice = MeshGeom::new(n, l);
    let fft_n = Fft3::<T>::new(n);
    let lin = sim.linear_power().clone();
    let p_lin = move |k: f64| lin.p(k);
    let lin_rec = linear_field(&mut r.white_noise.clone(), &lattice, &fft_n, &p_lin);
    write_npy_f32(&out.join("linear_density.npy"), &[n, n, n], &to_f32(&lin_rec))?;
    let mut state = sim.initial_conditions(r.white_noise.clone())?;
    sim.run(&mut state, |_| Ok(()))?;
    let final_rec = post.smooth(&post.density(&state));
    write_npy_f32(&out.join("final_density.npy"), &[m, m, m], &to_f32(&final_rec))?;
    let mut text = String::from("# cosmograd reconstruct: per L-BFGS iteration (0 = the stage's starting point)\n# stage smoothing_R[Mpc/h] iteration neg_log_posterior_at_R chi2_half_at_R0 prior_half_w2");
    text.push_str(if opts.fit_cosmology {
        " omega_m sigma8 (the loss includes the Laplace term, docs/reconstruction.md eq. J1)\n"
    } else {
        "\n"
    });
    for row in &rows {
        text.push_str(&format!(
            "{} {:.4} {} {:.10e} {:.10e} {:.10e}",
            row.stage, row.smoothing, row.iteration, row.loss, row.chi2_half, row.prior
        ));
        text.push_str(&row.theta.map_or("\n".to_string(), |t| format!(" {:.8} {:.8}\n", t[0], t[1])));
    }
    write_text(&out.join("loss.txt"), &text)?;
    plot_loss(&out.join("loss.png"), &rows)?;
    let mut fit_summary = String::new();
    if let Some(fit) = &r.cosmology {
        let sig = fit.sigma();
        let rho = fit.covariance[0][1] / (sig[0] * sig[1]);
        let mut t = String::from("# cosmograd reconstruct --fit-cosmology: joint maximum of the posterior of (w, Ω_m, σ₈) with the\n# linear-theory Laplace term; sigma from the inverse Fisher matrix at the estimate (docs/reconstruction.md §J)\n");
        t.push_str(if mock {
            "# parameter start estimate sigma truth pull=(estimate-truth)/sigma\n"
        } else {
            "# parameter start estimate sigma\n"
        });
        for (i, name) in ["omega_m", "sigma8"].iter().enumerate() {
            t.push_str(&format!("{name} {:.6} {:.6} {:.6}", fit.start[i], fit.theta[i], sig[i]));
            let line = if mock {
                let pull = (fit.theta[i] - theta_config[i]) / sig[i];
                fit_summary.push_str(&format!(
                    "  {name} = {:.4} ± {:.4} (truth {:.4}, pull {pull:+.2}; start {:.4})\n",
                    fit.theta[i], sig[i], theta_config[i], fit.start[i]
                ));
                format!(" {:.6} {pull:.4}\n", theta_config[i])
            } else {
                fit_summary.push_str(&format!(
                    "  {name} = {:.4} ± {:.4} (start {:.4})\n",
                    fit.theta[i], sig[i], fit.start[i]
                ));
                "\n".to_string()
            };
            t.push_str(&line);
        }
        t.push_str(&format!("# correlation coefficient of (omega_m, sigma8): {rho:.4}\n"));
        fit_summary.push_str(&format!("  correlation(Ω_m, σ₈) = {rho:.3} (cosmology.txt)\n"));
        write_text(&out.join(FIT_FILE), &t)?;
    }

    let mut summary = String::new();
    let (lin_top, fin_top, top_label) = match (&w_true, &signal) {
        (Some(wt), Some(sig)) => {
            write_npy_real(&out.join("true_white_noise.npy"), &[n, n, n], wt)?;
            write_npy_f32(&out.join("observed.npy"), &[m, m, m], &to_f32(&obs))?;
            // The truth's cosmology (a cosmology fit leaves `sim` at its estimate).
            let sim_truth = Simulation::<T>::new(config)?;
            let lin_truth = sim_truth.linear_power().clone();
            let p_truth = move |k: f64| lin_truth.p(k);
            let lin_true = linear_field(&mut wt.clone(), &lattice, &fft_n, &p_truth);
            let cs = cross_spectrum(&lin_rec, &lin_true, &lattice, &fft_n, Deconvolve::None);
            // The linear-theory Wiener reconstruction of this mock's data, with its own noise
            // realisation (docs/reconstruction.md eq. W1), against the same truth.
            let noise_x: Vec<T> = obs.iter().zip(sig).map(|(o, s)| *o - *s).collect();
            let lin_w = linear_wiener(&sim_truth, &post, &lin_true, &noise_x);
            let cw = cross_spectrum(&lin_w, &lin_true, &lattice, &fft_n, Deconvolve::None);
            let t: Vec<f64> = cs.p_aa.iter().zip(&cs.p_bb).map(|(a, b)| (a / b).sqrt()).collect();
            let tw: Vec<f64> = cw.p_aa.iter().zip(&cw.p_bb).map(|(a, b)| (a / b).sqrt()).collect();
            let mut rk = String::from("# cosmograd reconstruct (mock): reconstructed vs true linear density on the particle grid\n# k[h/Mpc] r(k) T(k)=sqrt(P_rec/P_true) N_modes r_wiener T_wiener (the linear-theory Wiener filter of this mock's data, docs/reconstruction.md eq. W1)\n");
            for i in 0..cs.k.len() {
                rk.push_str(&format!(
                    "{:.8e} {:.8e} {:.8e} {} {:.8e} {:.8e}\n",
                    cs.k[i], cs.r[i], t[i], cs.n_modes[i], cw.r[i], tw[i]
                ));
            }
            write_text(&out.join("r_k.txt"), &rk)?;
            plot_rk(&out.join("r_k.png"), &cs.k, &cs.r, &t, (&cw.r, &tw))?;
            let at = |k0: f64| {
                let i = cs.k.partition_point(|&x| x < k0).min(cs.k.len() - 1);
                (cs.k[i], cs.r[i], t[i])
            };
            let (k1, r1, t1) = at(0.5);
            let (k2, r2, t2) = at(1.0);
            summary = format!("  r(k = {k1:.3}) = {r1:.3}, T = {t1:.3}; r(k = {k2:.3}) = {r2:.3}, T = {t2:.3} (r_k.txt)\n");
            (lin_true, sig.clone(), "true")
        }
        _ => (Vec::new(), obs.clone(), "observed"),
    };
    plot_slices(
        &out.join("slices.png"),
        n,
        m,
        l,
        if mock { Some(lin_top.as_slice()) } else { None },
        &lin_rec,
        &fin_top,
        &final_rec,
        top_label,
    )?;
    if !opts.quiet {
        let evals = r.evaluations.max(1);
        let iters: usize = r.stages.iter().map(|s| s.iterations).sum();
        println!(
            "cosmograd reconstruct: {n}³ particles, {}³ force mesh, {m}³ data mesh, {l} Mpc/h, {} steps ({}, {} threads), noise {:?}",
            config.box_.mesh,
            sim.boundaries().len() - 1,
            T::NAME,
            rayon::current_num_threads(),
            noise
        );
        println!(
            "  {iters} L-BFGS iterations ({} stages), {evals} loss+gradient evaluations in {t_recon:.1} s: {:.2} s per evaluation (forward run alone {:.2} s)",
            r.stages.len(),
            r.seconds / evals as f64,
            t_forward
        );
        let stops: Vec<String> = r.stages.iter().map(|s| format!("{:?}", s.stop)).collect();
        println!("  stages ended by: {}", stops.join(", "));
        let last = rows.last().expect("at least one row");
        print!(
            "  final -ln posterior {:.6e} (chi2/2 {:.6e}, |w|²/2 {:.6e})\n{summary}",
            last.loss, last.chi2_half, last.prior
        );
        print!("{fit_summary}");
        println!(
            "  wrote {} files to {}",
            files_written(mock) + usize::from(opts.fit_cosmology),
            out.display()
        );
    }
    Ok(())
}

fn files_written(mock: bool) -> usize {
    RECON_FILES.len() + if mock { MOCK_FILES.len() } else { 0 }
}

/// `loss.png`: −ln posterior (at each stage's R) and ½χ² at R = 0 against the iteration, log y.
fn plot_loss(path: &Path, rows: &[LossRow]) -> Result<()> {
    // A global iteration index: stages follow each other (each stage's iteration 0 is the last
    // point of the previous one).
    let mut pts = Vec::new();
    let mut chi = Vec::new();
    let mut it = 0usize;
    for row in rows {
        if row.iteration > 0 {
            it += 1;
        }
        pts.push((it as f64, row.loss));
        chi.push((it as f64, row.chi2_half));
    }
    let ys = pts.iter().chain(&chi).map(|p| p.1).filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.1, 10.0)
    };
    let xmax = (it as f64).max(1.0);
    draw_png(path, (800, 500), |root| -> DrawOutcome {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("reconstruction loss", (FONT, 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..xmax, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("L-BFGS iteration")
            .y_desc("loss")
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()?;
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), blue.stroke_width(2)))?
            .label("-ln posterior at the stage's smoothing R")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(chi.iter().copied(), orange.stroke_width(2)))?
            .label("chi2/2 at R = 0")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2)));
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// `r_k.png`: r(k) and T(k) against k.
fn plot_rk(path: &Path, k: &[f64], r: &[f64], t: &[f64], wiener: (&[f64], &[f64])) -> Result<()> {
    let kmin = k.iter().copied().fold(f64::INFINITY, f64::min);
    let kmax = k.iter().copied().fold(0.0, f64::max);
    let ymax = t
        .iter()
        .chain(r)
        .chain(wiener.1)
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.1f64, f64::max)
        * 1.05;
    draw_png(path, (800, 500), |root| -> DrawOutcome {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("reconstructed vs true linear field", (FONT, 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d((kmin * 0.9..kmax * 1.1).log_scale(), 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("k  [h/Mpc]")
            .y_desc("r(k), T(k)")
            .x_label_formatter(&|v| plain_label(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()?;
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        chart.draw_series(LineSeries::new([(kmin * 0.9, 1.0), (kmax * 1.1, 1.0)], BLACK.mix(0.4)))?;
        chart
            .draw_series(LineSeries::new(k.iter().copied().zip(r.iter().copied()), blue.stroke_width(2)))?
            .label("r(k) = P_rt / sqrt(P_rr P_tt)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(k.iter().copied().zip(t.iter().copied()), orange.stroke_width(2)))?
            .label("T(k) = sqrt(P_rr / P_tt)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2)));
        // The linear-theory Wiener filter of the same data (eq. W1), thin dashed.
        for (vals, colour, label) in [
            (wiener.0, blue, "r, T of the linear Wiener filter (eq. W1)"),
            (wiener.1, orange, ""),
        ] {
            let pts: Vec<(f64, f64)> = k.iter().copied().zip(vals.iter().copied()).filter(|p| p.1.is_finite()).collect();
            let series = chart.draw_series(DashedLineSeries::new(pts, 6, 4, colour.stroke_width(1)))?;
            if !label.is_empty() {
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], BLACK.stroke_width(1)));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// `slices.png`: the plane x = 0 of the initial (linear, particle grid) and final (data mesh)
/// fields, truth or observation on the left, reconstruction on the right; each row shares one
/// colour scale (0.5th–99.5th percentile of the left panel).
#[allow(clippy::too_many_arguments)]
fn plot_slices<T: Real>(
    path: &Path,
    n: usize,
    m: usize,
    l: f64,
    lin_true: Option<&[T]>,
    lin_rec: &[T],
    fin_left: &[T],
    fin_rec: &[T],
    left_label: &str,
) -> Result<()> {
    let plane = |f: &[T], s: usize| -> Vec<f64> { f[..s * s].iter().map(|v| v.f64()).collect() };
    let range = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(|a, b| a.total_cmp(b));
        if s.is_empty() {
            return (-1.0, 1.0);
        }
        let q = |f: f64| s[((s.len() - 1) as f64 * f).round() as usize];
        let (a, b) = (q(0.005), q(0.995));
        if b > a {
            (a, b)
        } else {
            (a - 1.0, a + 1.0)
        }
    };
    let lin_rec_p = plane(lin_rec, n);
    let lin_left = lin_true.map(|t| plane(t, n));
    let fl = plane(fin_left, m);
    let fr = plane(fin_rec, m);
    let lr = range(lin_left.as_deref().unwrap_or(&lin_rec_p));
    let fr_range = range(&fl);
    let panels: Vec<(String, Option<&[f64]>, usize, (f64, f64))> = vec![
        (format!("initial δ_L, {left_label}"), lin_left.as_deref(), n, lr),
        ("initial δ_L, reconstructed".into(), Some(&lin_rec_p), n, lr),
        (format!("final δ, {left_label}"), Some(&fl), m, fr_range),
        ("final δ, reconstructed".into(), Some(&fr), m, fr_range),
    ];
    draw_png(path, (900, 900), |root| -> DrawOutcome {
        root.fill(&WHITE)?;
        let areas = root.split_evenly((2, 2));
        for (area, (title, data, s, (lo, hi))) in areas.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..l, 0.0..l)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(5)
                .y_labels(5)
                .x_label_formatter(&|v| plain_label(*v))
                .y_label_formatter(&|v| plain_label(*v))
                .label_style((FONT, 12))
                .draw()?;
            let Some(d) = data else {
                continue;
            };
            let (pw, ph) = chart.plotting_area().dim_in_pixel();
            let mut buf = vec![0u8; (pw * ph * 3) as usize];
            for py in 0..ph as usize {
                let iz = s - 1 - (py * s / ph as usize).min(s - 1);
                for px in 0..pw as usize {
                    let iy = (px * s / pw as usize).min(s - 1);
                    let c = magma((d[iy * s + iz] - lo) / (hi - lo));
                    let o = (py * pw as usize + px) * 3;
                    buf[o..o + 3].copy_from_slice(&c);
                }
            }
            let img = BitMapElement::<_, RGBPixel>::with_owned_buffer((0.0, l), (pw, ph), buf).expect("buffer sized to the plotting area");
            chart.draw_series(std::iter::once(img))?;
        }
        Ok(())
    })
}
