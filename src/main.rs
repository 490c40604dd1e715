//! The `cosmograd` command-line tool. `cosmograd simulate --help`, `cosmograd gradient --help` and
//! `cosmograd reconstruct --help` list the options.

use clap::{Parser, Subcommand};
use pm_adjoint::recon::Preconditioning;
use std::path::PathBuf;
use std::process::ExitCode;

/// Differentiable cosmological particle-mesh simulations.
#[derive(Parser, Debug)]
#[command(name = "cosmograd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a PM simulation from white noise to a_stop and write positions, velocities, density,
    /// power spectrum and figures. With no --config it runs the embedded default
    /// (Planck-18-like, 64³ particles, 128³ mesh, 256 Mpc/h, 2LPT at a = 0.02, 20 steps to a = 1).
    Simulate(SimulateArgs),
    /// Run a simulation and write the loss and its gradients with respect to the white noise and
    /// the cosmological parameters (reverse-time adjoint, memory independent of the number of
    /// steps): loss.txt, grad_white_noise.npy, grad_cosmology.toml, reversal_error.txt,
    /// timings.txt. With no --config it uses the embedded default; with no --white-noise, the seed.
    Gradient(GradientArgs),
    /// Reconstruct the initial white noise from a late-time density mesh (maximum a posteriori,
    /// L-BFGS with adjoint gradients, annealed smoothing): white_noise.npy, linear_density.npy,
    /// final_density.npy, loss.txt and figures. With no --observed it runs an embedded mock
    /// (truth from the seed; with no --config: 64³ particles, 128³ mesh, 128 Mpc/h, 10 steps)
    /// and reports r(k), T(k) in r_k.txt.
    Reconstruct(ReconstructArgs),
}

/// Where the configuration and the white noise come from (every command).
#[derive(clap::Args, Debug)]
struct InputArgs {
    /// TOML configuration (see docs/config.md); keys left out take the embedded defaults.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// White noise on the particle grid: .npy of shape (n, n, n), float32 or float64, C order
    /// (`gradient` writes ∂L/∂w with the same shape and dtype).
    #[arg(long, value_name = "FILE.npy")]
    white_noise: Option<PathBuf>,
    /// Random seed of the white noise when no file is given (overrides run.seed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Where to run: cpu, or cuda (needs a build with --features cuda, an NVIDIA driver and GPU;
    /// see docs/cuda.md).
    #[arg(long, value_name = "cpu|cuda", default_value = "cpu")]
    device: pm_core::DeviceKind,
}

impl From<InputArgs> for cosmograd::simulate::Input {
    fn from(a: InputArgs) -> Self {
        cosmograd::simulate::Input {
            config: a.config,
            white_noise: a.white_noise,
            seed: a.seed,
            device: a.device,
        }
    }
}

/// Options of `cosmograd gradient`.
#[derive(clap::Args, Debug)]
struct GradientArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Target density contrast on the force mesh: .npy of shape (m, m, m) (e.g. a density.npy
    /// written by `simulate`). field-mse: δ_T = 0 without it; power: required.
    #[arg(long, value_name = "T.npy")]
    target: Option<PathBuf>,
    /// The loss: field-mse (mean over the mesh of (δ − δ_T)²) or power (P(k) log-ratio χ²).
    #[arg(long, value_name = "LOSS", default_value = "field-mse")]
    loss: cosmograd::gradient::LossKind,
    /// Store the particle state every K steps and restart the reverse integration from each
    /// (bounded reversal error, memory ∝ steps/K). Default: pure reverse integration.
    #[arg(long, value_name = "K")]
    checkpoint_every: Option<usize>,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "out-gradient")]
    out: PathBuf,
    /// Overwrite the outputs of a different earlier run in DIR.
    #[arg(long)]
    force: bool,
    /// No summary.
    #[arg(long, short)]
    quiet: bool,
}

/// Options of `cosmograd reconstruct`.
#[derive(clap::Args, Debug)]
struct ReconstructArgs {
    /// Configuration, and in mock mode the true white noise (file or seed).
    #[command(flatten)]
    input: InputArgs,
    /// Observed density contrast on a mesh spanning the box (the data mesh, cell-centred like
    /// the force mesh): .npy of shape (M, M, M), any M ≥ 2, float32 or float64. Without it: the
    /// embedded mock.
    #[arg(long, value_name = "D.npy")]
    observed: Option<PathBuf>,
    /// White Gaussian noise of the observation: standard deviation per mesh cell (units of δ).
    /// Mock default: 0.01 (almost noise-free).
    #[arg(long, value_name = "SIGMA", conflicts_with = "noise_power", allow_negative_numbers = true)]
    noise: Option<f64>,
    /// Coloured noise: a text table of two columns, k [h/Mpc] and P_N(k) [(Mpc/h)³].
    #[arg(long, value_name = "FILE")]
    noise_power: Option<PathBuf>,
    /// Gaussian smoothing scale of the data model, Mpc/h (0: the CIC density as is).
    #[arg(long, value_name = "R", default_value_t = 0.0, allow_negative_numbers = true)]
    smoothing: f64,
    /// Cells per side of the data mesh on which the model paints the final particles (CIC).
    /// Default: the side of the --observed array; in the mock, the force mesh.
    #[arg(long, value_name = "M")]
    data_mesh: Option<usize>,
    /// Total L-BFGS iterations over the default annealing schedule (docs/reconstruction.md §A).
    #[arg(long, value_name = "N", default_value_t = 100)]
    iterations: usize,
    /// An explicit annealing schedule instead of the default: comma-separated stages R:N, N
    /// L-BFGS iterations at residual smoothing R (Mpc/h; 0: the exact posterior), in order. End
    /// with an R = 0 stage for the maximum of the exact posterior.
    #[arg(long, value_name = "R:N,...", conflicts_with = "iterations", allow_hyphen_values = true)]
    schedule: Option<String>,
    /// The preconditioner w = M u of the optimisation (docs/reconstruction.md §X): measured
    /// (the Gauss–Newton curvature per shell at the start of each stage, eq. X6; one extra
    /// adjoint run per stage) or linear (the linear-theory signal-to-noise, eq. X5).
    #[arg(long, value_name = "KIND", value_enum, default_value_t = PreconditionerArg::Measured)]
    preconditioner: PreconditionerArg,
    /// Optimise over the white noise itself, with no preconditioner.
    #[arg(long, conflicts_with = "preconditioner")]
    no_precondition: bool,
    /// Fit Ω_m and σ₈ jointly with the white noise (docs/reconstruction.md §J) and report the
    /// estimates with their Laplace uncertainty in cosmology.txt.
    #[arg(long)]
    fit_cosmology: bool,
    /// Starting point of --fit-cosmology: "OMEGA_M,SIGMA8". Default: the configuration's values
    /// with --observed; in the mock, the truth offset by (+0.05, −0.05).
    #[arg(long, value_name = "OMEGA_M,SIGMA8", requires = "fit_cosmology")]
    fit_start: Option<String>,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "out-reconstruct")]
    out: PathBuf,
    /// Overwrite the outputs of a different earlier run in DIR.
    #[arg(long)]
    force: bool,
    /// No progress bar or summary.
    #[arg(long, short)]
    quiet: bool,
}

/// `--preconditioner` of `cosmograd reconstruct`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PreconditionerArg {
    /// The Gauss–Newton curvature measured at the start of each stage (eq. X6).
    Measured,
    /// Linear-theory signal-to-noise per mode (eq. X5).
    Linear,
}

/// Options of `cosmograd simulate`.
#[derive(clap::Args, Debug)]
struct SimulateArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// Overwrite the outputs of a different earlier run in DIR.
    #[arg(long)]
    force: bool,
    /// No progress bar or summary.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(a) => cosmograd::simulate::run(&cosmograd::simulate::Options {
            input: a.input.into(),
            out: a.out,
            force: a.force,
            quiet: a.quiet,
        })
        .map_err(pm_adjoint::Error::from),
        Command::Gradient(a) => cosmograd::gradient::run(&cosmograd::gradient::Options {
            input: a.input.into(),
            target: a.target,
            loss: a.loss,
            checkpoint_every: a.checkpoint_every,
            out: a.out,
            force: a.force,
            quiet: a.quiet,
        }),
        Command::Reconstruct(a) => cosmograd::reconstruct::run(&cosmograd::reconstruct::Options {
            input: a.input.into(),
            observed: a.observed,
            noise: a.noise,
            noise_power: a.noise_power,
            smoothing: a.smoothing,
            data_mesh: a.data_mesh,
            iterations: a.iterations,
            schedule: a.schedule,
            precondition: match (a.no_precondition, a.preconditioner) {
                (true, _) => Preconditioning::Off,
                (false, PreconditionerArg::Measured) => Preconditioning::Measured,
                (false, PreconditionerArg::Linear) => Preconditioning::Linear,
            },
            fit_cosmology: a.fit_cosmology,
            fit_start: a.fit_start,
            out: a.out,
            force: a.force,
            quiet: a.quiet,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
