//! The `cosmograd` command-line tool. `cosmograd simulate --help` lists the options.

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
}

/// Options of `cosmograd simulate`.
#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// TOML configuration (see docs/config.md); keys left out take the embedded defaults.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// White noise on the particle grid: .npy of shape (n, n, n), float32 or float64, C order.
    #[arg(long, value_name = "FILE.npy")]
    white_noise: Option<PathBuf>,
    /// Random seed of the white noise (overrides run.seed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
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
            config: a.config,
            white_noise: a.white_noise,
            seed: a.seed,
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
