//! `cosmograd simulate`: run a configured simulation and write its outputs.
//!
//! Files written to the output directory (per snapshot, with `_a{a:.4}` before the extension;
//! the final state at a_stop without suffix), each whole through a temporary sibling and each
//! snapshot's as soon as the run reaches it: `config.toml` (fully resolved, reusable with
//! `--config`; written last, so a directory without it holds an interrupted run),
//! `positions.npy` (N×3, Mpc/h, in [0, L)), `velocities.npy` (N×3, peculiar km/s),
//! `density.npy` (m³ CIC δ on the force mesh, value of cell (i,j,k) at its centre) — the three
//! in the run's precision (float32 for `precision = "f32"`, float64 for `"f64"`) —,
//! `power.txt`, `power.png`, `slice.png` (CIC density on the particle grid, projected over
//! `output.slice_thickness`). The three `.npy` files are those of `output.formats = ["npy"]`;
//! `"gadget"` adds `snapshot.hdf5`, a Gadget-format HDF5 snapshot ([`crate::output::gadget`]).

use crate::cli::{resolve_config, thread_pool, Input, Output};
use crate::memory::{self, Job};
use crate::output::gadget::{format_files, write_gadget_snapshot, GADGET_FILE};
use crate::output::{check_output_files, create_output_dir, write_power_txt, write_record};
use crate::plot::{plot_power_png, plot_slice_png};
use indicatif::{ProgressBar, ProgressStyle};
use pm_core::config::{Config, OutputFormat, Precision};
use pm_core::io::{read_white_noise, write_npy_real};
use pm_core::sim::{Event, Simulation, State};
use pm_core::{Real, Result};
use std::path::Path;
use std::time::Instant;

/// Options of `cosmograd simulate`.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Configuration and white noise.
    #[command(flatten)]
    pub input: Input,
    /// Output directory, overwriting, quiet.
    #[command(flatten)]
    pub output: Output,
}

crate::cli::default_from_command_line!(Options);

/// The files written per snapshot with the default `output.formats = ["npy"]` (the final state at
/// a_stop without suffix); [`snapshot_files`] for any formats.
pub const SNAPSHOT_FILES: [&str; 6] = [
    "positions.npy",
    "velocities.npy",
    "density.npy",
    "power.txt",
    "power.png",
    "slice.png",
];

/// The files written per snapshot by a run with `config`: those of each of `output.formats`
/// (`.npy` arrays, `snapshot.hdf5`), then `power.txt`, `power.png`, `slice.png`.
pub fn snapshot_files(config: &Config) -> Vec<&'static str> {
    let mut files: Vec<&'static str> = config
        .output
        .formats
        .iter()
        .flat_map(|&f| format_files(f).iter().copied())
        .collect();
    files.extend(["power.txt", "power.png", "slice.png"]);
    files
}

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
        for base in snapshot_files(config) {
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

/// Refuses to overwrite the outputs of a different run ([`check_output_files`] with the files of
/// [`output_files`]).
pub fn check_output_dir(dir: &Path, config: &Config, resolved: &str, force: bool) -> Result<()> {
    let files = output_files(config);
    check_output_files(dir, &files, resolved, force)
}

/// Runs `simulate` with the given options.
pub fn run(opts: &Options) -> Result<()> {
    let config = resolve_config(&opts.input)?;
    opts.input.check_memory(&config, Job::Simulate)?;
    let resolved = config.to_toml_string();
    // Held until the run ends, also on an error (docs in `lock_output_dir`).
    let _lock = crate::output::lock_output_dir(&opts.output.out)?;
    check_output_dir(&opts.output.out, &config, &resolved, opts.output.force)?;
    thread_pool(&config, opts.output.quiet)?.install(|| match config.run.precision {
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
    let out = &opts.output.out;
    create_output_dir(out)?;
    let mut state = sim.initial_conditions(w)?;
    let t_ic = t0.elapsed().as_secs_f64();
    let bar = if opts.output.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(sim.boundaries().len() as u64 - 1)
    };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} step {pos}/{len} {msg}").expect("valid template"));
    let t1 = Instant::now();
    let mut written: Vec<String> = Vec::new();
    // Each snapshot is written when it is reached (not held until the end), so a long run that is
    // interrupted keeps the snapshots it has passed; the time spent writing is counted apart.
    let mut t_out = 0.0;
    sim.run_with(&mut state, |sim, ev| {
        match ev {
            Event::Step { index, a, .. } => {
                bar.set_position(index as u64);
                bar.set_message(format!("a = {a:.4}"));
            }
            Event::Snapshot(s) => {
                let t = Instant::now();
                let tag = if s.a == config.time.a_stop {
                    String::new()
                } else {
                    snapshot_tag(s.a)
                };
                written.extend(write_snapshot(sim, s, out, &tag)?);
                t_out += t.elapsed().as_secs_f64();
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let t_run = t1.elapsed().as_secs_f64() - t_out;
    let t2 = Instant::now();
    // The record last: a directory without it is an interrupted run.
    write_record(out, resolved)?;
    let t_out = t_out + t2.elapsed().as_secs_f64();
    if !opts.output.quiet {
        let steps = sim.boundaries().len() - 1;
        crate::say!(
            "cosmograd simulate: {n}³ particles, {}³ mesh, {} Mpc/h, {steps} steps a = {} → {} ({}, {} threads, peak memory ≈ {})",
            config.box_.mesh,
            config.box_.size,
            config.time.a_start,
            config.time.a_stop,
            T::NAME,
            rayon::current_num_threads(),
            memory::human(memory::estimate(config, Job::Simulate))
        );
        crate::say!(
            "  initial conditions {t_ic:.2} s, time stepping {t_run:.2} s ({:.1} ms/step), outputs {t_out:.2} s",
            1e3 * t_run / steps as f64
        );
        crate::say!("  wrote {} files to {}", written.len() + 1, out.display());
    }
    Ok(())
}

/// Writes the files of one snapshot; returns their names.
fn write_snapshot<T: Real>(sim: &Simulation<T>, s: &State<T>, dir: &Path, tag: &str) -> Result<Vec<String>> {
    let cfg = sim.config();
    let (n, m, l) = (cfg.box_.particles, cfg.box_.mesh, cfg.box_.size);
    let np = n * n * n;
    let name = |base: &str, ext: &str| format!("{base}{tag}.{ext}");
    // In the run's precision: an f64 run keeps its precision on disk.
    let npy = cfg.output.writes(OutputFormat::Npy);
    if npy {
        let pos = sim.positions(s);
        write_npy_real(&dir.join(name("positions", "npy")), &[np, 3], pos.as_flattened())?;
        let vel = sim.velocities(s);
        write_npy_real(&dir.join(name("velocities", "npy")), &[np, 3], vel.as_flattened())?;
    }
    if cfg.output.writes(OutputFormat::Gadget) {
        let (stem, ext) = GADGET_FILE.split_once('.').expect("extension");
        write_gadget_snapshot(sim, s, &dir.join(name(stem, ext)))?;
    }
    let delta = sim.density(s);
    if npy {
        write_npy_real(&dir.join(name("density", "npy")), &[m, m, m], &delta)?;
    }
    let mut ps = sim.power(&delta);
    if cfg.output.subtract_shot_noise {
        ps.subtract_shot_noise(pm_core::power::shot_noise(l, np));
    }
    let p_lin: Vec<f64> = ps.k.iter().map(|&k| sim.p_linear(k, s.a)).collect();
    let header = format!(
        "cosmograd power spectrum at a = {} (z = {:.4})\nbox {l} Mpc/h, {n}^3 particles, CIC density on a {m}^3 mesh, CIC window {}\nbins: linear shells of width kf = 2pi/L = {:.6e} h/Mpc centred on multiples of kf, up to k_Nyquist; {}\nP_lin: linear theory at this a",
        s.a,
        1.0 / s.a - 1.0,
        if cfg.output.deconvolve { "deconvolved" } else { "not deconvolved" },
        2.0 * std::f64::consts::PI / l,
        if cfg.output.subtract_shot_noise {
            format!("shot noise V/N = {:.8e} (Mpc/h)^3 subtracted", pm_core::power::shot_noise(l, np))
        } else {
            "no shot-noise subtraction".to_string()
        }
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
    Ok(snapshot_files(cfg)
        .iter()
        .map(|b| {
            let (st, ext) = b.split_once('.').expect("extension");
            name(st, ext)
        })
        .collect())
}
