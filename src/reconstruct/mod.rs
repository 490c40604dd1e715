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
//! - `linear_density.npy`: δ_L(ŵ) at a = 1 on the particle grid (n³, the run's precision, as every
//!   array below);
//! - `final_density.npy`: the model's prediction of the observed mesh, S δ(ŵ) on the data mesh
//!   (M³; M = the side of the observed array, `--data-mesh`, or the force mesh);
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

use crate::cli::{resolve_config, thread_pool, Input, Output, Reversal};
use crate::memory::Job;
use crate::output::check_output_files;
use pm_adjoint::recon::{config_at, default_schedule, NoiseModel, Preconditioning, Stage};
use pm_adjoint::Result;
use pm_core::config::{Config, Precision};
use pm_core::{Error, Real};
use std::path::PathBuf;

mod inputs;
mod outputs;
mod solve;

pub use inputs::read_noise_power;
use inputs::{noise_model, parse_fit_start, parse_schedule, read_observed};

/// Noise σ per cell of the mock when neither `--noise` nor `--noise-power` is given: small next
/// to the rms of the CIC density on the default mesh (≈ 1.5), i.e. an almost noise-free mock.
pub const DEFAULT_MOCK_SIGMA: f64 = 0.01;

/// Options of `cosmograd reconstruct`.
#[derive(clap::Args, Clone, Debug)]
#[command(mut_arg("out", |a| a.default_value("out-reconstruct")))]
pub struct Options {
    /// Configuration, and in mock mode the true white noise (file or seed).
    #[command(flatten)]
    pub input: Input,
    /// Observed density contrast on a mesh spanning the box (the data mesh, cell-centred like
    /// the force mesh): .npy of shape (M, M, M), any M ≥ 2, float32 or float64; or a
    /// Gadget-format HDF5 snapshot of the same box, whose particles are painted with CIC on the
    /// data mesh (M = --data-mesh, else box.mesh). Without it: the embedded mock.
    #[arg(long, value_name = "D.npy|SNAP.hdf5")]
    pub observed: Option<PathBuf>,
    /// White Gaussian noise of the observation: standard deviation per mesh cell (units of δ),
    /// 1e-8 ≤ SIGMA ≤ 1e8. Mock default: 0.01 (almost noise-free).
    #[arg(long, value_name = "SIGMA", conflicts_with = "noise_power", allow_negative_numbers = true)]
    pub noise: Option<f64>,
    /// Coloured noise: a text table of two columns, k [h/Mpc] and P_N(k) [(Mpc/h)³].
    #[arg(long, value_name = "FILE")]
    pub noise_power: Option<PathBuf>,
    /// Gaussian smoothing scale of the data model, Mpc/h (0: the CIC density as is).
    #[arg(long, value_name = "R", default_value_t = 0.0, allow_negative_numbers = true)]
    pub smoothing: f64,
    /// Cells per side of the data mesh on which the model paints the final particles (CIC).
    /// Default: the side of the --observed array; in the mock, the force mesh.
    #[arg(long, value_name = "M")]
    pub data_mesh: Option<usize>,
    /// Total L-BFGS iterations over the default annealing schedule (docs/reconstruction.md §A).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub iterations: usize,
    /// An explicit annealing schedule instead of the default: comma-separated stages R:N, N
    /// L-BFGS iterations at residual smoothing R (Mpc/h; 0: the exact posterior), in order. End
    /// with an R = 0 stage for the maximum of the exact posterior.
    #[arg(long, value_name = "R:N,...", conflicts_with = "iterations", allow_hyphen_values = true)]
    pub schedule: Option<String>,
    /// The preconditioner w = M u of the optimisation (docs/reconstruction.md §X): measured
    /// (the Gauss–Newton curvature per shell at the start of each stage, eq. X6; one extra
    /// adjoint run per stage) or linear (the linear-theory signal-to-noise, eq. X5).
    #[arg(long, value_name = "KIND", value_enum, default_value_t = Preconditioner::Measured)]
    pub preconditioner: Preconditioner,
    /// Optimise over the white noise itself, with no preconditioner.
    #[arg(long, conflicts_with = "preconditioner")]
    pub no_precondition: bool,
    /// Fit Ω_m and σ₈ jointly with the white noise (docs/reconstruction.md §J) and report the
    /// estimates with their Laplace uncertainty in cosmology.txt.
    #[arg(long)]
    pub fit_cosmology: bool,
    /// Starting point of --fit-cosmology: "OMEGA_M,SIGMA8". Default: the configuration's values
    /// with --observed; in the mock, the truth offset by (+0.05, −0.05).
    #[arg(long, value_name = "OMEGA_M,SIGMA8", requires = "fit_cosmology")]
    pub fit_start: Option<String>,
    /// Checkpoints of each evaluation's backward pass.
    #[command(flatten)]
    pub reversal: Reversal,
    /// Output directory (default `out-reconstruct`), overwriting, quiet.
    #[command(flatten)]
    pub output: Output,
}

crate::cli::default_from_command_line!(Options);

/// `--preconditioner` of `cosmograd reconstruct`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preconditioner {
    /// The Gauss–Newton curvature measured at the start of each stage (eq. X6).
    Measured,
    /// Linear-theory signal-to-noise per mode (eq. X5).
    Linear,
}

impl Options {
    /// The preconditioning of the white noise (`Posterior::set_preconditioning`,
    /// docs/reconstruction.md eqs. X5–X6): `--preconditioner`, or none with `--no-precondition`.
    pub fn preconditioning(&self) -> Preconditioning {
        match (self.no_precondition, self.preconditioner) {
            (true, _) => Preconditioning::Off,
            (false, Preconditioner::Measured) => Preconditioning::Measured,
            (false, Preconditioner::Linear) => Preconditioning::Linear,
        }
    }
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

/// The additional files of the mock mode.
pub const MOCK_FILES: [&str; 4] = ["true_white_noise.npy", "observed.npy", "r_k.txt", "r_k.png"];

/// Box side of the embedded reconstruction default (no `--config`), Mpc/h.
pub const RECON_DEFAULT_BOX: f64 = 128.0;
/// Number of time steps of the embedded reconstruction default (no `--config`).
pub const RECON_DEFAULT_STEPS: usize = 10;

/// What the memory estimate needs to know of this run, on a `data_mesh`³ data mesh.
pub(crate) fn job(opts: &Options, data_mesh: usize) -> Job {
    Job::Reconstruct {
        data_mesh,
        checkpoint_every: opts.reversal.checkpoint_every,
    }
}

/// Runs `reconstruct` with the given options.
pub fn run(opts: &Options) -> Result<()> {
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
    // The memory check before the observation is read (its header gives the data mesh).
    let data_mesh_cells = match &opts.observed {
        // A Gadget snapshot is painted on --data-mesh or the force mesh.
        Some(p) if pm_core::io::gadget::is_hdf5(p) => opts.data_mesh.unwrap_or(config.box_.mesh),
        Some(p) => pm_core::io::read_npy_header(p)?.shape.first().copied().unwrap_or(config.box_.mesh),
        None => opts.data_mesh.unwrap_or(config.box_.mesh),
    };
    if !(2..=inputs::MAX_DATA_MESH).contains(&data_mesh_cells) {
        return Err(Error::invalid(
            "--data-mesh",
            data_mesh_cells,
            format!("2 to {} cells per side", inputs::MAX_DATA_MESH),
        )
        .into());
    }
    opts.input.check_memory(&config, job(opts, data_mesh_cells))?;
    // Read and check the observation before anything is written.
    let (observed, data_mesh) = match &opts.observed {
        Some(p) => {
            let (md, data) = read_observed(p, opts.data_mesh, config.box_.mesh, config.box_.size)?;
            (Some(data), md)
        }
        None => (None, opts.data_mesh.unwrap_or(config.box_.mesh)),
    };
    let resolved = format!(
        "{}\n# cosmograd reconstruct: observed = {}, data mesh = {data_mesh}, noise = {:?}, smoothing = {} Mpc/h, schedule (R [Mpc/h]:iterations) = {}, preconditioning = {:?}, fit cosmology = {}{}\n",
        config.to_toml_string(),
        opts.observed.as_ref().map_or("mock".to_string(), |p| p.display().to_string()),
        noise,
        opts.smoothing,
        schedule.iter().map(|s| format!("{}:{}", s.smoothing, s.iterations)).collect::<Vec<_>>().join(","),
        opts.preconditioning(),
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
    // Held until the run ends, also on an error (docs in `lock_output_dir`).
    let _lock = crate::output::lock_output_dir(&opts.output.out)?;
    check_output_files(&opts.output.out, &files, &resolved, opts.output.force)?;
    thread_pool(&config, opts.output.quiet)?.install(|| match config.run.precision {
        Precision::F32 => run_typed::<f32>(&config, &resolved, opts, &schedule, noise, (observed, data_mesh), fit_start),
        Precision::F64 => run_typed::<f64>(&config, &resolved, opts, &schedule, noise, (observed, data_mesh), fit_start),
    })
}

/// Reconstructs in precision `T` ([`solve::solve`]) and writes the outputs ([`outputs::write`]).
fn run_typed<T: Real>(
    config: &Config,
    resolved: &str,
    opts: &Options,
    schedule: &[Stage],
    noise: NoiseModel,
    (observed, m): (Option<Vec<f64>>, usize),
    fit_start: Option<[f64; 2]>,
) -> Result<()> {
    let solved = solve::solve::<T>(config, opts, schedule, &noise, (observed, m), fit_start)?;
    outputs::write(config, resolved, opts, &noise, m, solved)
}
