//! The `cosmograd` command-line tool. `cosmograd simulate --help`, `cosmograd gradient --help` and
//! `cosmograd reconstruct --help` list the options (declared once, in the options struct of each
//! subcommand's module of the library).

use clap::{Parser, Subcommand};
use cosmograd::{gradient, reconstruct, simulate};
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
    Simulate(simulate::Options),
    /// Run a simulation and write the loss and its gradients with respect to the white noise and
    /// the cosmological parameters (reverse-time adjoint, memory independent of the number of
    /// steps): loss.txt, grad_white_noise.npy, grad_cosmology.toml, reversal_error.txt,
    /// timings.txt. With no --config it uses the embedded default; with no --white-noise, the seed.
    Gradient(gradient::Options),
    /// Reconstruct the initial white noise from a late-time density mesh (maximum a posteriori,
    /// L-BFGS with adjoint gradients, annealed smoothing): white_noise.npy, linear_density.npy,
    /// final_density.npy, loss.txt and figures. With no --observed it runs an embedded mock
    /// (truth from the seed; with no --config: 64³ particles, 128³ mesh, 128 Mpc/h, 10 steps)
    /// and reports r(k), T(k) in r_k.txt.
    Reconstruct(reconstruct::Options),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Simulate(o) => simulate::run(&o).map_err(pm_adjoint::Error::from),
        Command::Gradient(o) => gradient::run(&o),
        Command::Reconstruct(o) => reconstruct::run(&o),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
