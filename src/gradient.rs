//! `cosmograd gradient`: the loss of a configured run and its gradients with respect to the white
//! noise and the cosmological parameters, by the reverse-time adjoint (pm-adjoint).
//!
//! Files written to the output directory:
//! - `config.toml`: the resolved configuration (reusable with `--config`), written last;
//! - `loss.txt`: the loss, one f64;
//! - `grad_white_noise.npy`: ∂L/∂w, shape (n, n, n), the dtype of the `--white-noise` file (or of
//!   `run.precision` when the noise comes from the seed);
//! - `grad_cosmology.toml`: ∂L/∂(each cosmological parameter) under `[cosmology]`, with the keys
//!   of the config file;
//! - `reversal_error.txt`: how well the backward pass recovered the forward states (relative);
//! - `timings.txt`: forward and backward wall-clock seconds and the peak resident memory (MiB).
//!
//! Losses: `field-mse`, L = mean over the force mesh of (δ − δ_T)², δ the CIC density contrast of
//! the final particles exactly as `simulate` writes `density.npy` (δ_T = 0 without `--target`);
//! `power`, the P(k) log-ratio χ² against the spectrum of the `--target` density mesh. The target
//! is a `.npy` mesh or a Gadget-format HDF5 snapshot (recognised by the HDF5 signature), whose
//! `PartType1` particles are painted with CIC on the force mesh after its `BoxSize` is checked
//! against `box.size` (`pm_core::io::gadget`).

use crate::cli::{resolve_config, thread_pool, Input, Output, Reversal};
use crate::memory::{self, Job};
use crate::output::{check_output_files, create_output_dir, write_record, write_text};
use pm_adjoint::{value_and_grad, GradOptions, Objective};
use pm_core::config::{Config, Precision};
use pm_core::cosmology::Cosmology;
use pm_core::io::{read_npy, read_npy_header, read_white_noise, shape_string, write_npy_f32, write_npy_f64};
use pm_core::loss::{FieldMse, Loss, PowerLoss};
use pm_core::sim::Simulation;
use pm_core::{Error, Real, Result};
use std::path::{Path, PathBuf};

/// Which loss `gradient` differentiates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LossKind {
    /// Mean squared difference of the final CIC density contrast and the target mesh.
    #[default]
    FieldMse,
    /// P(k) log-ratio χ² of the final density against the spectrum of the target mesh.
    Power,
}

impl std::str::FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "field-mse" => Ok(LossKind::FieldMse),
            "power" => Ok(LossKind::Power),
            _ => Err(format!("unknown loss `{s}`: expected field-mse or power")),
        }
    }
}

/// Options of `cosmograd gradient`.
#[derive(clap::Args, Clone, Debug)]
#[command(
    mut_arg("out", |a| a.default_value("out-gradient")),
    mut_arg("quiet", |a| a.help("No summary"))
)]
pub struct Options {
    /// Configuration and white noise.
    #[command(flatten)]
    pub input: Input,
    /// Target density contrast on the force mesh: .npy of shape (m, m, m) (e.g. a density.npy
    /// written by `simulate`), or a Gadget-format HDF5 snapshot (e.g. a snapshot.hdf5 written by
    /// `simulate`, or Gadget's, Arepo's, SWIFT's) whose particles are painted on the force mesh.
    /// field-mse: δ_T = 0 without it; power: required.
    #[arg(long, value_name = "T.npy|SNAP.hdf5")]
    pub target: Option<PathBuf>,
    /// The loss: field-mse (mean over the mesh of (δ − δ_T)²) or power (P(k) log-ratio χ²).
    #[arg(long, value_name = "LOSS", default_value = "field-mse")]
    pub loss: LossKind,
    /// Checkpoints of the backward pass.
    #[command(flatten)]
    pub reversal: Reversal,
    /// Output directory (default `out-gradient`), overwriting, quiet (no summary).
    #[command(flatten)]
    pub output: Output,
}

crate::cli::default_from_command_line!(Options);

/// The files `gradient` writes.
pub const GRADIENT_FILES: [&str; 6] = [
    "config.toml",
    "loss.txt",
    "grad_white_noise.npy",
    "grad_cosmology.toml",
    "reversal_error.txt",
    "timings.txt",
];

/// Peak resident set size of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// `grad_cosmology.toml`: ∂L/∂ each parameter with the config keys.
pub fn cosmology_toml(grad: &Cosmology, at: &Cosmology) -> String {
    let mut s = String::from(
        "# d loss / d parameter (cosmograd gradient), at the parameters of config.toml.\n\
         # omega_m is varied at fixed omega_k (omega_de = 1 - omega_m - omega_k).\n[cosmology]\n",
    );
    let mut line = |k: &str, v: f64| s.push_str(&format!("{k} = {v:e}\n"));
    line("omega_m", grad.omega_m);
    line("omega_b", grad.omega_b);
    line("h", grad.h);
    line("n_s", grad.n_s);
    if at.sigma8.is_some() {
        line("sigma8", grad.sigma8.unwrap_or(0.0));
    }
    if at.a_s.is_some() {
        line("a_s", grad.a_s.unwrap_or(0.0));
    }
    line("w0", grad.w0);
    line("wa", grad.wa);
    line("omega_k", grad.omega_k);
    line("t_cmb", grad.t_cmb);
    s
}

/// What the memory estimate needs to know of this run.
fn job(opts: &Options) -> Job {
    Job::Gradient {
        checkpoint_every: opts.reversal.checkpoint_every,
    }
}

/// Runs `gradient` with the given options.
pub fn run(opts: &Options) -> pm_adjoint::Result<()> {
    let config = resolve_config(&opts.input)?;
    if opts.loss == LossKind::Power && opts.target.is_none() {
        return Err(Error::invalid(
            "--target",
            "none",
            "a density mesh .npy of shape (box.mesh,)*3 whose P(k) is the target of --loss power",
        )
        .into());
    }
    opts.reversal.recover()?;
    opts.input.check_memory(&config, job(opts))?;
    let resolved = config.to_toml_string();
    // Held until the run ends, also on an error (docs in `lock_output_dir`).
    let _lock = crate::output::lock_output_dir(&opts.output.out)?;
    check_output_files(&opts.output.out, &GRADIENT_FILES, &resolved, opts.output.force)?;
    thread_pool(&config, opts.output.quiet)?.install(|| match config.run.precision {
        Precision::F32 => run_typed::<f32>(&config, &resolved, opts),
        Precision::F64 => run_typed::<f64>(&config, &resolved, opts),
    })
}

/// Reads the target density mesh: shape (m, m, m) of the force mesh, finite values; or paints
/// the particles of a Gadget-format HDF5 snapshot of a box of side `box_size` Mpc/h on it.
fn read_target<T: Real>(path: &Path, m: usize, box_size: f64) -> Result<Vec<T>> {
    if pm_core::io::gadget::is_hdf5(path) {
        let data = pm_core::io::gadget::gadget_density(path, box_size, m)?;
        return Ok(data.into_iter().map(T::of).collect());
    }
    let (shape, data) = read_npy(path)?;
    if shape != [m, m, m] {
        return Err(Error::Shape {
            what: format!("target density {}", path.display()),
            found: format!("shape {}", shape_string(&shape)),
            expected: format!("shape {} = (box.mesh,)*3", shape_string(&[m, m, m])),
        });
    }
    Error::check_finite(&format!("target density {}", path.display()), &data)?;
    Ok(data.into_iter().map(T::of).collect())
}

fn run_typed<T: Real>(config: &Config, resolved: &str, opts: &Options) -> pm_adjoint::Result<()> {
    let mut sim = Simulation::<T>::new(config)?;
    let (n, m) = (config.box_.particles, config.box_.mesh);
    let (w, wide) = match &config.run.white_noise {
        Some(path) => (read_white_noise::<T>(path, n)?, read_npy_header(path)?.descr.ends_with("f8")),
        None => (sim.white_noise(), config.run.precision == Precision::F64),
    };
    let target = opts
        .target
        .as_deref()
        .map(|p| read_target::<T>(p, m, config.box_.size))
        .transpose()?;
    let loss: Box<dyn Loss<T>> = match (opts.loss, target) {
        (LossKind::FieldMse, target) => Box::new(FieldMse::new(target)?),
        (LossKind::Power, Some(t)) => {
            let l = PowerLoss::from_density(&sim.mesh_context(), &t, None)?;
            l.check(&sim.mesh_context())?;
            Box::new(l)
        }
        (LossKind::Power, None) => unreachable!("`run` refuses --loss power without --target"),
    };
    let recover = opts.reversal.recover()?;
    let g = value_and_grad(
        &mut sim,
        &w,
        &Objective::final_state(loss.as_ref()),
        &GradOptions {
            recover,
            ..Default::default()
        },
    )?;
    let out = &opts.output.out;
    create_output_dir(out)?;
    write_text(&out.join("loss.txt"), &format!("{:e}\n", g.loss))?;
    let gw = out.join("grad_white_noise.npy");
    if wide {
        write_npy_f64(&gw, &[n, n, n], &g.white_noise.iter().map(|v| v.f64()).collect::<Vec<_>>())?;
    } else {
        write_npy_f32(&gw, &[n, n, n], &g.white_noise.iter().map(|v| v.f64() as f32).collect::<Vec<_>>())?;
    }
    let gc = g.cosmology.as_ref().expect("cosmology gradients requested");
    write_text(&out.join("grad_cosmology.toml"), &cosmology_toml(gc, sim.cosmology()))?;
    write_text(&out.join("reversal_error.txt"), &format!("{:e}\n", g.reversal_error))?;
    let rss = peak_rss_mib();
    write_text(
        &out.join("timings.txt"),
        &format!(
            "# cosmograd gradient: wall-clock seconds and peak resident memory of the process\nforward_seconds {:.4}\nbackward_seconds {:.4}\npeak_rss_mib {}\n",
            g.forward_seconds,
            g.backward_seconds,
            rss.map_or("unknown".to_string(), |r| format!("{r:.1}"))
        ),
    )?;
    // The record last: a directory without it is an interrupted run.
    write_record(out, resolved)?;
    opts.reversal.warn(g.reversal_error);
    if !opts.output.quiet {
        let steps = sim.boundaries().len() - 1;
        crate::say!(
            "cosmograd gradient: {n}³ particles, {m}³ mesh, {steps} steps ({}, {} threads, peak memory ≈ {} estimated, {} measured): loss {:.6e}",
            T::NAME,
            rayon::current_num_threads(),
            memory::human(memory::estimate(config, job(opts))),
            rss.map_or("unknown".to_string(), |r| memory::human(r * 1024.0 * 1024.0)),
            g.loss
        );
        crate::say!(
            "  forward {:.2} s, backward {:.2} s, reversal error {:.2e}, dL/domega_m {:.4e}, wrote {} files to {}",
            g.forward_seconds,
            g.backward_seconds,
            g.reversal_error,
            gc.omega_m,
            GRADIENT_FILES.len(),
            out.display()
        );
    }
    Ok(())
}
