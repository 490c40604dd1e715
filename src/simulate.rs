//! `cosmograd simulate`: run a configured simulation and write its outputs.
//!
//! Files written to the output directory (per snapshot, with `_a{a:.4}` before the extension;
//! the final state at a_stop without suffix):
//! `config.toml` (fully resolved, reusable with `--config`), `positions.npy` (N×3 f32, Mpc/h, in
//! [0, L)), `velocities.npy` (N×3 f32, peculiar km/s), `density.npy` (m³ f32 CIC δ on the force
//! mesh, value of cell (i,j,k) at its centre), `power.txt`, `power.png`, `slice.png` (CIC density on the particle grid, projected over
//! `output.slice_thickness`).

use crate::output::{plot_power_png, plot_slice_png, write_power_txt};
use indicatif::{ProgressBar, ProgressStyle};
use pm_core::config::{Config, Precision};
use pm_core::io::{read_white_noise, write_npy_f32};
use pm_core::sim::{Event, Simulation, State};
use pm_core::{Error, Real, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a run's configuration and white noise come from (shared by every command).
#[derive(Clone, Debug, Default)]
pub struct Input {
    /// Config file; `None` runs the embedded default.
    pub config: Option<PathBuf>,
    /// White-noise .npy file; `None` draws it from the seed.
    pub white_noise: Option<PathBuf>,
    /// Seed override.
    pub seed: Option<u64>,
    /// The device to run on (checked first by [`resolve_config`]).
    pub device: pm_core::DeviceKind,
}

/// Command-line options of `simulate`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Configuration and white noise.
    pub input: Input,
    /// Output directory.
    pub out: PathBuf,
    /// Overwrite a different earlier run's outputs.
    pub force: bool,
    /// Suppress the progress bar and summary.
    pub quiet: bool,
}

/// The files written per snapshot (the final state at a_stop without suffix).
pub const SNAPSHOT_FILES: [&str; 6] = [
    "positions.npy",
    "velocities.npy",
    "density.npy",
    "power.txt",
    "power.png",
    "slice.png",
];

/// The names of every file a run with `config` writes into its output directory.
pub fn output_files(config: &Config) -> Vec<String> {
    let mut names = vec!["config.toml".to_string()];
    let mut tags = vec![String::new()];
    for &a in &config.time.snapshots {
        if a != config.time.a_stop {
            tags.push(snapshot_tag(a));
        }
    }
    for t in &tags {
        for base in SNAPSHOT_FILES {
            let (stem, ext) = base.split_once('.').expect("file names have extensions");
            names.push(format!("{stem}{t}.{ext}"));
        }
    }
    names
}

/// Suffix naming a snapshot by its scale factor, e.g. `_a0.5000`.
pub fn snapshot_tag(a: f64) -> String {
    format!("_a{a:.4}")
}

/// Resolves the configuration from the input (file or default, then overrides) and validates it.
/// A CUDA device that cannot be used is an error, before anything is read (docs/cuda.md).
pub fn resolve_config(opts: &Input) -> Result<Config> {
    pm_core::device::require(opts.device, "the PM time loop (simulate, gradient)")?;
    let mut config = match &opts.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = opts.seed {
        config.run.seed = s;
    }
    if let Some(w) = &opts.white_noise {
        let abs = std::path::absolute(w).map_err(|e| Error::file(w, format!("cannot resolve path: {e}")))?;
        config.run.white_noise = Some(abs);
    }
    config.validate()?;
    Ok(config)
}

/// Refuses to overwrite the outputs of a different run: if `dir` holds any file this run would
/// write and its `config.toml` is not identical to `resolved` (same config → bit-identical
/// outputs), it is an error unless `force`.
pub fn check_output_dir(dir: &Path, config: &Config, resolved: &str, force: bool) -> Result<()> {
    let files = output_files(config);
    check_output_files(dir, &files, resolved, force)
}

/// [`check_output_dir`] for an explicit list of file names (used by every command that writes a
/// `config.toml` beside its outputs).
pub fn check_output_files<S: AsRef<str>>(dir: &Path, files: &[S], resolved: &str, force: bool) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(Error::file(dir, "exists and is not a directory; choose another --out"));
    }
    let existing: Vec<String> = files
        .iter()
        .map(|f| f.as_ref().to_string())
        .filter(|f| dir.join(f).exists())
        .collect();
    if existing.is_empty() || force {
        return Ok(());
    }
    let same = std::fs::read_to_string(dir.join("config.toml"))
        .map(|s| s == resolved)
        .unwrap_or(false);
    if same {
        return Ok(());
    }
    Err(Error::file(
        dir,
        format!(
            "already holds the outputs of a different run ({}); pass --force to overwrite them or choose another --out",
            existing.join(", ")
        ),
    ))
}

/// Runs `simulate` with the given options.
pub fn run(opts: &Options) -> Result<()> {
    let config = resolve_config(&opts.input)?;
    let resolved = config.to_toml_string();
    check_output_dir(&opts.out, &config, &resolved, opts.force)?;
    let threads = config.run.threads;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::invalid("run.threads", threads, format!("a thread count the system can start ({e})")))?;
    pool.install(|| match config.run.precision {
        Precision::F32 => run_typed::<f32>(&config, &resolved, opts),
        Precision::F64 => run_typed::<f64>(&config, &resolved, opts),
    })
}

fn run_typed<T: Real>(config: &Config, resolved: &str, opts: &Options) -> Result<()> {
    let t0 = Instant::now();
    let mut sim = Simulation::<T>::new(config)?;
    let n = config.box_.particles;
    let w = match &config.run.white_noise {
        Some(path) => read_white_noise::<T>(path, n)?,
        None => sim.white_noise(),
    };
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::file(&opts.out, format!("cannot create the output directory: {e}")))?;
    std::fs::write(opts.out.join("config.toml"), resolved).map_err(|e| Error::file(opts.out.join("config.toml"), e.to_string()))?;
    let mut state = sim.initial_conditions(w)?;
    let t_ic = t0.elapsed().as_secs_f64();
    let bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(sim.boundaries().len() as u64 - 1)
    };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} step {pos}/{len} {msg}").expect("valid template"));
    let t1 = Instant::now();
    let mut written: Vec<String> = Vec::new();
    let mut snaps = Vec::new();
    sim.run(&mut state, |ev| {
        match ev {
            Event::Step { index, a, .. } => {
                bar.set_position(index as u64);
                bar.set_message(format!("a = {a:.4}"));
            }
            Event::Snapshot(s) => snaps.push(s.clone()),
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let t_run = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for s in &snaps {
        let tag = if s.a == config.time.a_stop {
            String::new()
        } else {
            snapshot_tag(s.a)
        };
        written.extend(write_snapshot(&sim, s, &opts.out, &tag)?);
    }
    let t_out = t2.elapsed().as_secs_f64();
    if !opts.quiet {
        let steps = sim.boundaries().len() - 1;
        println!(
            "cosmograd simulate: {n}³ particles, {}³ mesh, {} Mpc/h, {steps} steps a = {} → {} ({}, {} threads)",
            config.box_.mesh,
            config.box_.size,
            config.time.a_start,
            config.time.a_stop,
            T::NAME,
            rayon::current_num_threads()
        );
        println!(
            "  initial conditions {t_ic:.2} s, time stepping {t_run:.2} s ({:.1} ms/step), outputs {t_out:.2} s",
            1e3 * t_run / steps as f64
        );
        println!("  wrote {} files to {}", written.len() + 1, opts.out.display());
    }
    Ok(())
}

/// Writes the files of one snapshot; returns their names.
fn write_snapshot<T: Real>(sim: &Simulation<T>, s: &State<T>, dir: &Path, tag: &str) -> Result<Vec<String>> {
    let cfg = sim.config();
    let (n, m, l) = (cfg.box_.particles, cfg.box_.mesh, cfg.box_.size);
    let np = n * n * n;
    let name = |base: &str, ext: &str| format!("{base}{tag}.{ext}");
    let pos = sim.positions(s);
    write_npy_f32(&dir.join(name("positions", "npy")), &[np, 3], pos.as_flattened())?;
    let vel = sim.velocities(s);
    write_npy_f32(&dir.join(name("velocities", "npy")), &[np, 3], vel.as_flattened())?;
    let delta = sim.density(s);
    let delta32: Vec<f32> = delta.iter().map(|v| v.f64() as f32).collect();
    write_npy_f32(&dir.join(name("density", "npy")), &[m, m, m], &delta32)?;
    let ps = sim.power(&delta);
    let p_lin: Vec<f64> = ps.k.iter().map(|&k| sim.p_linear(k, s.a)).collect();
    let header = format!(
        "cosmograd power spectrum at a = {} (z = {:.4})\nbox {l} Mpc/h, {n}^3 particles, CIC density on a {m}^3 mesh, CIC window {}\nbins: linear shells of width kf = 2pi/L = {:.6e} h/Mpc centred on multiples of kf, up to k_Nyquist; no shot-noise subtraction\nP_lin: linear theory at this a",
        s.a,
        1.0 / s.a - 1.0,
        if cfg.output.deconvolve { "deconvolved" } else { "not deconvolved" },
        2.0 * std::f64::consts::PI / l
    );
    write_power_txt(&dir.join(name("power", "txt")), &ps.k, &ps.p, &ps.n_modes, &p_lin, &header)?;
    plot_power_png(
        &dir.join(name("power", "png")),
        &ps.k,
        &ps.p,
        &p_lin,
        &format!("P(k) at a = {:.3}", s.a),
    )?;
    // The figure paints on the particle grid (n³, one particle per cell on average): on the finer
    // force mesh the voids would show the particle lattice as rows of empty cells.
    let mut coarse = vec![T::zero(); n * n * n];
    pm_core::cic::Cic::new(n, n, l).density_contrast(&s.disp, &mut coarse, &mut Default::default());
    let coarse32: Vec<f32> = coarse.iter().map(|v| v.f64() as f32).collect();
    plot_slice_png(
        &dir.join(name("slice", "png")),
        &coarse32,
        n,
        l,
        cfg.output.slice_thickness,
        &format!("projected density, a = {:.3}", s.a),
    )?;
    Ok(SNAPSHOT_FILES
        .iter()
        .map(|b| {
            let (st, ext) = b.split_once('.').expect("extension");
            name(st, ext)
        })
        .collect())
}
