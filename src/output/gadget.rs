//! `snapshot.hdf5` (`snapshot_a0.5000.hdf5` per snapshot): the particles of `simulate` as a
//! Gadget-format HDF5 snapshot, written when `output.formats` holds `"gadget"`. The format (header
//! attributes, `PartType1/Coordinates` in kpc/h, `Velocities` = v/√a in km/s, `ParticleIDs` = the
//! Lagrangian index) is [`pm_core::io::gadget`]'s; this file only takes the particles out of a
//! simulation state.

use pm_core::cic::Cic;
use pm_core::config::OutputFormat;
use pm_core::io::gadget::{write_gadget_hdf5, GadgetHeader};
use pm_core::leapfrog::Stepper;
use pm_core::sim::{Simulation, State};
use pm_core::{Real, Result};
use rayon::prelude::*;
use std::path::Path;

/// Base name of the Gadget snapshot file: `snapshot.hdf5` at a_stop, `snapshot_a0.5000.hdf5` for
/// the snapshot at a = 0.5 (the tag of `cosmograd::simulate::snapshot_tag`).
pub const GADGET_FILE: &str = "snapshot.hdf5";

/// The per-snapshot file names of the format `format` (without the snapshot tag).
pub fn format_files(format: OutputFormat) -> &'static [&'static str] {
    match format {
        OutputFormat::Npy => &["positions.npy", "velocities.npy", "density.npy"],
        OutputFormat::Gadget => &[GADGET_FILE],
    }
}

/// Writes the particles of `state` as a Gadget-format HDF5 snapshot at `path`
/// ([`write_gadget_hdf5`]): positions from the displacements (wrapped into the box), peculiar
/// velocities 100 p/a km/s, float32 or float64 after `run.precision`, the header from the
/// configuration and `state.a`.
pub fn write_gadget_snapshot<T: Real>(sim: &Simulation<T>, state: &State<T>, path: &Path) -> Result<()> {
    let cfg = sim.config();
    let cic = Cic::new(cfg.box_.particles, cfg.box_.particles, cfg.box_.size);
    let pos: Vec<[T; 3]> = state
        .disp
        .par_iter()
        .enumerate()
        .map(|(p, s)| cic.position(p, s).map(T::of))
        .collect();
    let f = Stepper::velocity_factor(state.a);
    let vel: Vec<[T; 3]> = state.mom.par_iter().map(|p| p.map(|x| T::of(x.f64() * f))).collect();
    write_gadget_hdf5(path, &GadgetHeader::new(cfg, state.a), &pos, &vel, cfg.run.precision)
}
