//! The `cosmograd` command-line tool. `cosmograd simulate --help` and `cosmograd gradient --help`
//! list the options.

use clap::{Parser, Subcommand};
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
        }),
        Command::Gradient(a) => cosmograd::gradient::run(&cosmograd::gradient::Options {
            input: a.input.into(),
            target: a.target,
            loss: a.loss,
            checkpoint_every: a.checkpoint_every,
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
