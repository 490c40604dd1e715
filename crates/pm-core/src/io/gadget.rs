//! Gadget-format HDF5 snapshots: written by `simulate` (`output.formats = ["gadget"]`), read as
//! observed or target density (`reconstruct --observed snap.hdf5`, `gradient --target snap.hdf5`).
//!
//! **The file written** ([`write_gadget_hdf5`]), one file per snapshot, laid out as Gadget-2/4,
//! Arepo and SWIFT lay out a dark-matter-only snapshot, so that h5py, Pylians' `readgadget` and
//! Gadget-aware tools read it unchanged:
//!
//! | object | type | value |
//! |---|---|---|
//! | `Header/BoxSize` | f64 | L in kpc/h (L·1000 for L in Mpc/h) |
//! | `Header/Time`, `Header/Redshift` | f64 | scale factor a, z = 1/a − 1 |
//! | `Header/NumPart_ThisFile` | i64\[6\] | (0, N, 0, 0, 0, 0) |
//! | `Header/NumPart_Total`, `Header/NumPart_Total_HighWord` | u32\[6\] | low and high 32 bits of N (type 1) |
//! | `Header/MassTable` | f64\[6\] | (0, m_p, 0, 0, 0, 0), m_p = Ω_m ρ_crit L³/N in 10¹⁰ M_sun/h |
//! | `Header/Omega0`, `OmegaLambda`, `OmegaBaryon`, `HubbleParam` | f64 | Ω_m, Ω_DE, Ω_b, h |
//! | `Header/NumFilesPerSnapshot` | i32 | 1 |
//! | `Header/Flag_Sfr`, `Flag_Cooling`, `Flag_StellarAge`, `Flag_Metals`, `Flag_Feedback` | i32 | 0 |
//! | `Header/Flag_DoublePrecision` | i32 | 1 when the arrays are float64 (`run.precision = "f64"`) |
//! | `Header/UnitLength_in_cm`, `UnitMass_in_g`, `UnitVelocity_in_cm_per_s` | f64 | 3.085678e21 (kpc/h), 1.989e43 (10¹⁰ M_sun/h), 1e5 (km/s) |
//! | `PartType1/Coordinates` | N×3 f32 (f64) | comoving positions in kpc/h, in \[0, BoxSize) |
//! | `PartType1/Velocities` | N×3 f32 (f64) | Gadget's u = v_pec/√a in km/s (v_pec = u·√a is the peculiar velocity) |
//! | `PartType1/ParticleIDs` | N u32 | the Lagrangian index p = (ix·n + iy)·n + iz, from 0: row p of `positions.npy` |
//!
//! Units are Gadget's defaults (kpc/h, 10¹⁰ M_sun/h, km/s), the units of Gadget's own parameter
//! files, N-GenIC and the Quijote snapshots: a pipeline written for those (`BoxSize/1e3` → Mpc/h)
//! reads these files unchanged. The unit attributes say so in the file, as Arepo writes them.
//! Arrays are contiguous (no chunking, no compression), little-endian. The file is built in
//! memory and written whole through [`super::write_atomic`].
//!
//! **Reading** ([`read_gadget_hdf5`], [`gadget_density`]): one file (`NumFilesPerSnapshot` = 1)
//! with `Header/BoxSize` and `PartType1/Coordinates` (float32 or float64; gzip-compressed or
//! chunked arrays are read too); `PartType1/Masses` weights the particles when present. The
//! length unit comes from, in this order: `Header/UnitLength_in_cm` (Arepo, cosmograd),
//! `Parameters/UnitLength_in_cm` (Gadget-4), both in units with h⁻¹ as Gadget's are; the SWIFT
//! `Units` group's `Unit length in cgs (U_L)`, h-free (multiplied by `Cosmology/h`); without any,
//! the unit in which `BoxSize` equals the configured box, Mpc/h or kpc/h (Gadget-2 files carry no
//! units). The library is `hdf5-pure`, pure Rust: no system HDF5 is needed.

use crate::cic::Cic;
use crate::config::{Config, Precision};
use crate::error::{Error, Result};
use crate::float::Real;
use hdf5_pure::{AttrValue, FileBuilder};
use std::path::Path;

/// One Mpc in cm, Gadget's value (`UnitLength_in_cm = 3.085678e24` for Mpc).
pub const MPC_IN_CM: f64 = 3.085678e24;
/// `Header/UnitLength_in_cm` written: kpc/h in cm (h implicit, Gadget's convention).
pub const UNIT_LENGTH_IN_CM: f64 = 3.085678e21;
/// `Header/UnitMass_in_g` written: 10¹⁰ M_sun/h in g (Gadget's value).
pub const UNIT_MASS_IN_G: f64 = 1.989e43;
/// `Header/UnitVelocity_in_cm_per_s` written: km/s in cm/s.
pub const UNIT_VELOCITY_IN_CM_PER_S: f64 = 1e5;
/// Critical density today in 10¹⁰ (M_sun/h) per (Mpc/h)³: 3 (100 km/s/Mpc)² / (8πG) with
/// G = 6.67430e-11 m³ kg⁻¹ s⁻² and M_sun = 1.98841e30 kg (2.77536627e11 h² M_sun/Mpc³).
pub const RHO_CRIT_1E10: f64 = 27.7536627;
/// Positions in a file written here are in kpc/h: the file's value is 1000 × Mpc/h.
pub const KPC_PER_MPC: f64 = 1000.0;

/// The eight bytes every HDF5 file starts with (at offset 0, or 512, 1024, ... after a user block).
pub const HDF5_SIGNATURE: [u8; 8] = *b"\x89HDF\r\n\x1a\n";

/// What a Gadget snapshot header records besides the particles (all as the config states them).
#[derive(Clone, Debug, PartialEq)]
pub struct GadgetHeader {
    /// Box side L in Mpc/h (comoving); written as `BoxSize` = 1000 L in kpc/h.
    pub box_size: f64,
    /// Scale factor a of the snapshot (`Time`; `Redshift` = 1/a − 1).
    pub a: f64,
    /// Ω_m today (`Omega0`).
    pub omega_m: f64,
    /// Ω of the dark energy today (`OmegaLambda`), 1 − Ω_m − Ω_k for this code's background.
    pub omega_lambda: f64,
    /// Ω_b today (`OmegaBaryon`).
    pub omega_b: f64,
    /// h = H0 / (100 km/s/Mpc) (`HubbleParam`).
    pub h: f64,
}

impl GadgetHeader {
    /// The header of a snapshot at scale factor `a` of the run `config`.
    pub fn new(config: &Config, a: f64) -> Self {
        let c = &config.cosmology;
        GadgetHeader {
            box_size: config.box_.size,
            a,
            omega_m: c.omega_m,
            omega_lambda: c.omega_de(),
            omega_b: c.omega_b,
            h: c.h,
        }
    }
}

/// Mass of one of `n_particles` equal-mass particles in a box of side `box_size` Mpc/h with
/// matter density `omega_m`: Ω_m ρ_crit L³ / N, in 10¹⁰ M_sun/h (Gadget's mass unit).
pub fn particle_mass(omega_m: f64, box_size: f64, n_particles: usize) -> f64 {
    omega_m * RHO_CRIT_1E10 * box_size.powi(3) / n_particles as f64
}

/// Writes one snapshot as a Gadget-format HDF5 file (layout in the module docs): `positions`
/// in Mpc/h (any real value: wrapped into [0, L)), `velocities` the peculiar velocities in km/s,
/// both in Lagrangian order; arrays stored as float32 or float64 after `precision`. The file is
/// built in memory and written whole through [`super::write_atomic`]; errors name `path`.
///
/// # Panics
/// If `positions` and `velocities` differ in length (a caller bug).
#[track_caller]
pub fn write_gadget_hdf5<T: Real>(
    path: &Path,
    header: &GadgetHeader,
    positions: &[[T; 3]],
    velocities: &[[T; 3]],
    precision: Precision,
) -> Result<()> {
    assert_eq!(positions.len(), velocities.len(), "write_gadget_hdf5: positions and velocities");
    let n = positions.len();
    let box_kpc = header.box_size * KPC_PER_MPC;
    let a = header.a;
    let mut b = FileBuilder::new();
    let mut h = b.create_group("Header");
    let n64 = n as u64;
    let types = |v: u64| vec![0, v, 0, 0, 0, 0];
    h.set_attr("BoxSize", AttrValue::F64(box_kpc));
    h.set_attr("Time", AttrValue::F64(a));
    h.set_attr("Redshift", AttrValue::F64(1.0 / a - 1.0));
    h.set_attr(
        "NumPart_ThisFile",
        AttrValue::I64Array(types(n64).into_iter().map(|v| v as i64).collect()),
    );
    h.set_attr(
        "NumPart_Total",
        AttrValue::U32Array(types(n64 & 0xffff_ffff).into_iter().map(|v| v as u32).collect()),
    );
    h.set_attr(
        "NumPart_Total_HighWord",
        AttrValue::U32Array(types(n64 >> 32).into_iter().map(|v| v as u32).collect()),
    );
    let m = if n > 0 {
        particle_mass(header.omega_m, header.box_size, n)
    } else {
        0.0
    };
    h.set_attr("MassTable", AttrValue::F64Array(vec![0.0, m, 0.0, 0.0, 0.0, 0.0]));
    h.set_attr("Omega0", AttrValue::F64(header.omega_m));
    h.set_attr("OmegaLambda", AttrValue::F64(header.omega_lambda));
    h.set_attr("OmegaBaryon", AttrValue::F64(header.omega_b));
    h.set_attr("HubbleParam", AttrValue::F64(header.h));
    h.set_attr("NumFilesPerSnapshot", AttrValue::I32(1));
    for flag in ["Flag_Sfr", "Flag_Cooling", "Flag_StellarAge", "Flag_Metals", "Flag_Feedback"] {
        h.set_attr(flag, AttrValue::I32(0));
    }
    h.set_attr("Flag_DoublePrecision", AttrValue::I32(i32::from(precision == Precision::F64)));
    h.set_attr("UnitLength_in_cm", AttrValue::F64(UNIT_LENGTH_IN_CM));
    h.set_attr("UnitMass_in_g", AttrValue::F64(UNIT_MASS_IN_G));
    h.set_attr("UnitVelocity_in_cm_per_s", AttrValue::F64(UNIT_VELOCITY_IN_CM_PER_S));
    b.add_group(h.finish());

    // Coordinates in kpc/h, wrapped into [0, BoxSize) after the rounding to the stored type.
    let wrap = |x: f64| {
        let v = (x * KPC_PER_MPC).rem_euclid(box_kpc);
        if v >= box_kpc {
            0.0
        } else {
            v
        }
    };
    let vfac = 1.0 / a.sqrt();
    let mut p = b.create_group("PartType1");
    let shape = [n as u64, 3];
    match precision {
        Precision::F32 => {
            let pos: Vec<f32> = positions
                .iter()
                .flatten()
                .map(|x| {
                    let v = wrap(x.f64()) as f32;
                    if v as f64 >= box_kpc {
                        0.0
                    } else {
                        v
                    }
                })
                .collect();
            p.create_dataset("Coordinates").with_f32_data(&pos).with_shape(&shape);
            let vel: Vec<f32> = velocities.iter().flatten().map(|v| (v.f64() * vfac) as f32).collect();
            p.create_dataset("Velocities").with_f32_data(&vel).with_shape(&shape);
        }
        Precision::F64 => {
            let pos: Vec<f64> = positions.iter().flatten().map(|x| wrap(x.f64())).collect();
            p.create_dataset("Coordinates").with_f64_data(&pos).with_shape(&shape);
            let vel: Vec<f64> = velocities.iter().flatten().map(|v| v.f64() * vfac).collect();
            p.create_dataset("Velocities").with_f64_data(&vel).with_shape(&shape);
        }
    }
    match u32::try_from(n) {
        Ok(_) => {
            let ids: Vec<u32> = (0..n as u32).collect();
            p.create_dataset("ParticleIDs").with_u32_data(&ids);
        }
        Err(_) => {
            let ids: Vec<u64> = (0..n as u64).collect();
            p.create_dataset("ParticleIDs").with_u64_data(&ids);
        }
    }
    b.add_group(p.finish());
    super::write_atomic(path, |w| {
        b.finish_to(w).map_err(|e| std::io::Error::other(format!("HDF5 encoder: {e}")))
    })
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Whether `path` is an HDF5 file: the HDF5 signature at offset 0 or at a user-block boundary
/// (512, 1024, 2048, ... bytes). False for anything but a readable regular file (a FIFO or a
/// device is never opened here, so it cannot block or stream forever).
pub fn is_hdf5(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if !meta.is_file() {
        return false;
    }
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let len = meta.len();
    let mut at = 0u64;
    while at + 8 <= len {
        let mut sig = [0u8; 8];
        if f.seek(SeekFrom::Start(at)).is_err() || f.read_exact(&mut sig).is_err() {
            return false;
        }
        if sig == HDF5_SIGNATURE {
            return true;
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    false
}

/// The dark-matter particles of a Gadget-format HDF5 snapshot, in this code's units.
#[derive(Clone, Debug, PartialEq)]
pub struct GadgetParticles {
    /// Box side in Mpc/h (the file's `BoxSize` converted).
    pub box_size: f64,
    /// Comoving positions of `PartType1` in Mpc/h, wrapped into [0, L), in file order.
    pub positions: Vec<[f64; 3]>,
    /// `PartType1/Masses` when the file has it (any unit: only ratios are used), else `None`
    /// (equal masses, `MassTable[1]`).
    pub masses: Option<Vec<f64>>,
    /// How the length unit was found, for messages (e.g. `kpc/h from Header/UnitLength_in_cm`).
    pub unit: String,
}

/// Relative tolerance of the `BoxSize` check against the configured box (f32 files store
/// `BoxSize` as f64 but tools round it).
pub const BOX_SIZE_RTOL: f64 = 1e-5;

/// Reads the `PartType1` particles of a one-file Gadget-format HDF5 snapshot (Gadget-2/3/4, Arepo,
/// SWIFT, cosmograd) and converts them to Mpc/h (unit resolution in the module docs), checking
/// that `BoxSize` is the configured box side `box_size` (Mpc/h) to [`BOX_SIZE_RTOL`]. Errors
/// ([`Error::File`] naming the path, one line, with the fix): not an HDF5 file; no `Header` or no
/// `PartType1/Coordinates`; a multi-file snapshot; a non-cubic box; a `BoxSize` that is not the
/// configured box; a length unit that cannot be found; a shape other than (N, 3); a NaN or
/// infinite coordinate ([`Error::NonFinite`]); negative or non-finite masses.
pub fn read_gadget_hdf5(path: &Path, box_size: f64) -> Result<GadgetParticles> {
    crate::io::require_regular_file(path, "Gadget HDF5 snapshot", "a Gadget-format HDF5 snapshot (.hdf5)")?;
    let bad = |msg: String| Error::file(path, msg);
    let file =
        hdf5_pure::File::open(path).map_err(|e| bad(format!("not a readable HDF5 file ({e}); expected a Gadget-format HDF5 snapshot")))?;
    let header = file
        .group("Header")
        .and_then(|g| g.attrs())
        .map_err(|_| bad("no `Header` group: not a Gadget-format snapshot (expected Header/BoxSize, PartType1/Coordinates, as Gadget, Arepo and SWIFT write them)".into()))?;
    let get = |map: &std::collections::HashMap<String, AttrValue>, key: &str| map.get(key).and_then(numbers);
    if let Some(files) = get(&header, "NumFilesPerSnapshot") {
        if files.first().is_some_and(|&f| f > 1.0) {
            return Err(bad(format!(
                "one file of a snapshot split over {} files (NumFilesPerSnapshot); combine them into one file (one PartType1 group) first",
                files[0]
            )));
        }
    }
    let box_file = match get(&header, "BoxSize").as_deref() {
        Some([b]) => *b,
        Some([x, y, z]) if x == y && y == z => *x,
        Some(v) if v.len() == 3 => {
            return Err(bad(format!(
                "BoxSize = {v:?} is not a cube; only cubic periodic boxes are supported"
            )))
        }
        _ => return Err(bad("Header/BoxSize missing or not a number: not a Gadget-format snapshot".into())),
    };
    if !(box_file.is_finite() && box_file > 0.0) {
        return Err(bad(format!("Header/BoxSize = {box_file} must be finite and > 0")));
    }
    let (to_mpc_h, unit) = length_unit(&file, &header, box_file, box_size).map_err(bad)?;
    let l = box_file * to_mpc_h;
    if ((l - box_size) / box_size).abs() > BOX_SIZE_RTOL {
        return Err(bad(format!(
            "BoxSize = {box_file} ({unit}) is {l} Mpc/h, but box.size = {box_size} Mpc/h; set [box] size = {l} in the config (the data must span the simulated box)"
        )));
    }
    let coords = file
        .dataset("PartType1/Coordinates")
        .map_err(|_| bad("no PartType1/Coordinates dataset: a Gadget-format snapshot without dark-matter (type 1) particles".into()))?;
    let shape = coords.shape().map_err(|e| bad(format!("cannot read PartType1/Coordinates: {e}")))?;
    let np = match shape[..] {
        [np, 3] => np as usize,
        _ => {
            return Err(Error::Shape {
                what: format!("PartType1/Coordinates of {}", path.display()),
                found: format!("shape {:?}", shape),
                expected: "shape (N, 3)".into(),
            })
        }
    };
    if np == 0 {
        return Err(bad("PartType1/Coordinates holds no particles".into()));
    }
    let flat = coords
        .read_f64()
        .map_err(|e| bad(format!("cannot read PartType1/Coordinates: {e}")))?;
    if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: format!("PartType1/Coordinates of {}", path.display()),
            detail: format!("value {} at particle {}, axis {}", flat[i], i / 3, i % 3),
        });
    }
    let positions: Vec<[f64; 3]> = flat
        .chunks_exact(3)
        .map(|c| {
            c.iter()
                .map(|&x| {
                    let v = (x * to_mpc_h).rem_euclid(box_size);
                    if v >= box_size {
                        0.0
                    } else {
                        v
                    }
                })
                .collect::<Vec<_>>()
                .try_into()
                .expect("three coordinates")
        })
        .collect();
    let masses = match file.dataset("PartType1/Masses") {
        Ok(ds) => {
            let m = ds.read_f64().map_err(|e| bad(format!("cannot read PartType1/Masses: {e}")))?;
            if m.len() != np {
                return Err(bad(format!("PartType1/Masses has {} values for {np} particles", m.len())));
            }
            if let Some(i) = m.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(bad(format!(
                    "PartType1/Masses: mass {} of particle {i} must be finite and >= 0",
                    m[i]
                )));
            }
            if m.iter().sum::<f64>() <= 0.0 {
                return Err(bad("PartType1/Masses are all zero".into()));
            }
            Some(m)
        }
        Err(_) => None,
    };
    Ok(GadgetParticles {
        box_size: l,
        positions,
        masses,
        unit,
    })
}

/// All the numbers of a numeric attribute, widened to f64 (`None` for strings and the like).
fn numbers(v: &AttrValue) -> Option<Vec<f64>> {
    Some(match v {
        AttrValue::F32(x) => vec![*x as f64],
        AttrValue::F64(x) => vec![*x],
        AttrValue::I8(x) => vec![*x as f64],
        AttrValue::I16(x) => vec![*x as f64],
        AttrValue::I32(x) => vec![*x as f64],
        AttrValue::I64(x) => vec![*x as f64],
        AttrValue::U8(x) => vec![*x as f64],
        AttrValue::U16(x) => vec![*x as f64],
        AttrValue::U32(x) => vec![*x as f64],
        AttrValue::U64(x) => vec![*x as f64],
        AttrValue::F32Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::F64Array(x) => x.clone(),
        AttrValue::I8Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::I16Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::I32Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::I64Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::U8Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::U16Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::U32Array(x) => x.iter().map(|&v| v as f64).collect(),
        AttrValue::U64Array(x) => x.iter().map(|&v| v as f64).collect(),
        _ => return None,
    })
}

/// `x` snapped to the nearest power of ten when within 1e-5 of it (so that Gadget's
/// 3.085678e21 and SWIFT's 3.08567758e21 cm both give exactly kpc), else `x`.
fn snap_decade(x: f64) -> f64 {
    let p = 10f64.powi(x.log10().round() as i32);
    if ((x - p) / p).abs() < 1e-5 {
        p
    } else {
        x
    }
}

/// The factor from the file's length unit to Mpc/h, and a description of the unit for messages.
fn length_unit(
    file: &hdf5_pure::File,
    header: &std::collections::HashMap<String, AttrValue>,
    box_file: f64,
    box_size: f64,
) -> std::result::Result<(f64, String), String> {
    let first = |v: Option<Vec<f64>>| v.and_then(|v| v.first().copied());
    let name = |f: f64| match f {
        1.0 => "Mpc/h".to_string(),
        0.001 => "kpc/h".to_string(),
        _ => format!("{f} Mpc/h"),
    };
    let check = |cm: f64, what: &str| -> std::result::Result<f64, String> {
        if cm.is_finite() && cm > 0.0 {
            Ok(cm)
        } else {
            Err(format!("{what} = {cm} must be finite and > 0"))
        }
    };
    if let Some(cm) = first(header.get("UnitLength_in_cm").and_then(numbers)) {
        let f = snap_decade(check(cm, "Header/UnitLength_in_cm")? / MPC_IN_CM);
        return Ok((f, format!("{} from Header/UnitLength_in_cm", name(f))));
    }
    if let Some(cm) = file
        .group("Parameters")
        .and_then(|g| g.attrs())
        .ok()
        .and_then(|p| first(p.get("UnitLength_in_cm").and_then(numbers)))
    {
        let f = snap_decade(check(cm, "Parameters/UnitLength_in_cm")? / MPC_IN_CM);
        return Ok((f, format!("{} from Parameters/UnitLength_in_cm", name(f))));
    }
    if let Some(cm) = file
        .group("Units")
        .and_then(|g| g.attrs())
        .ok()
        .and_then(|u| first(u.get("Unit length in cgs (U_L)").and_then(numbers)))
    {
        // SWIFT: lengths without h; x [Mpc/h] = x [U_L] · (U_L / Mpc) · h.
        let h = file
            .group("Cosmology")
            .and_then(|g| g.attrs())
            .ok()
            .and_then(|c| first(c.get("h").and_then(numbers)))
            .ok_or("SWIFT-style Units group without Cosmology/h: cannot convert its h-free lengths to Mpc/h")?;
        let f = snap_decade(check(cm, "Units/Unit length in cgs (U_L)")? / MPC_IN_CM) * h;
        return Ok((f, format!("U_L = {cm} cm from the SWIFT Units group, times h = {h}")));
    }
    // Gadget-2 files carry no units: the box must be the configured one in Mpc/h or kpc/h.
    for (f, unit) in [(1.0, "Mpc/h"), (1e-3, "kpc/h")] {
        if ((box_file * f - box_size) / box_size).abs() <= BOX_SIZE_RTOL {
            return Ok((f, format!("{unit}, inferred from BoxSize (no UnitLength_in_cm in the file)")));
        }
    }
    Err(format!(
        "BoxSize = {box_file} in a unit the file does not state (no UnitLength_in_cm) is neither box.size = {box_size} Mpc/h nor {} kpc/h; set [box] size to the snapshot's box in Mpc/h",
        box_size * KPC_PER_MPC
    ))
}

/// Paints `positions` (Mpc/h) with CIC on an `m³` mesh spanning a box of side `box_size`, with
/// [`Cic`]'s cell convention (the one of `density.npy` and of the model's prediction), and
/// returns the density contrast δ = ρ/ρ̄ − 1 (m³, C order, mean 0 up to rounding). Particles
/// weigh `masses` when given, else 1. Any particle count N ≥ 1 works: the particles are painted as
/// the first N of a ⌈N^⅓⌉³ lattice, the rest with weight 0.
///
/// # Panics
/// If `positions` is empty, holds more than 1625³ particles, or `masses` has another length.
pub fn paint_density(positions: &[[f64; 3]], masses: Option<&[f64]>, m: usize, box_size: f64) -> Vec<f64> {
    let np = positions.len();
    assert!(np >= 1, "paint_density: no particles");
    assert!(masses.is_none_or(|w| w.len() == np), "paint_density: masses length");
    let mut n = (np as f64).cbrt().round() as usize;
    while n.pow(3) < np {
        n += 1;
    }
    while n > 1 && (n - 1).pow(3) >= np {
        n -= 1;
    }
    let cic = Cic::new(n, m, box_size);
    let half = 0.5 * box_size;
    let mut disp = vec![[0.0f64; 3]; n * n * n];
    for (p, x) in positions.iter().enumerate() {
        let q = cic.position(p, &[0.0f64; 3]);
        for d in 0..3 {
            // The displacement from the lattice site, wrapped into [-L/2, L/2).
            disp[p][d] = (x[d] - q[d] + half).rem_euclid(box_size) - half;
        }
    }
    let weights: Vec<f64> = (0..n * n * n)
        .map(|p| if p < np { masses.map_or(1.0, |w| w[p]) } else { 0.0 })
        .collect();
    let mut mesh = vec![0.0f64; m * m * m];
    cic.paint(&disp, Some(&weights), &mut mesh, &mut Default::default());
    let total: f64 = weights.iter().sum();
    let norm = (m * m * m) as f64 / total;
    mesh.iter_mut().for_each(|v| *v = *v * norm - 1.0);
    mesh
}

/// Reads a Gadget-format HDF5 snapshot ([`read_gadget_hdf5`], `BoxSize` checked against
/// `box_size` Mpc/h) and paints its particles on an `m³` mesh ([`paint_density`]): the density
/// contrast δ, m³ values in C order.
pub fn gadget_density(path: &Path, box_size: f64, m: usize) -> Result<Vec<f64>> {
    let snap = read_gadget_hdf5(path, box_size)?;
    if snap.positions.len() > crate::config::MAX_PARTICLES.pow(3) {
        return Err(Error::file(
            path,
            format!(
                "{} particles: at most {} can be painted",
                snap.positions.len(),
                crate::config::MAX_PARTICLES.pow(3)
            ),
        ));
    }
    Ok(paint_density(&snap.positions, snap.masses.as_deref(), m, box_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pm-core-gadget-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    fn one_line(e: &Error) -> String {
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    }

    fn header(l: f64, a: f64) -> GadgetHeader {
        GadgetHeader {
            box_size: l,
            a,
            omega_m: 0.3,
            omega_lambda: 0.7,
            omega_b: 0.05,
            h: 0.7,
        }
    }

    #[test]
    fn particle_mass_is_omega_m_rho_crit_volume_over_n() {
        // 1 (Mpc/h)³ per particle at Ω_m = 1 is ρ_crit = 2.775e11 M_sun/h.
        assert!((particle_mass(1.0, 1.0, 1) * 1e10 / 2.77536627e11 - 1.0).abs() < 1e-12);
        // Quijote fiducial: Ω_m = 0.3175, 1000 Mpc/h, 512³ → 6.56e11 M_sun/h.
        let m = particle_mass(0.3175, 1000.0, 512usize.pow(3)) * 1e10;
        assert!((m / 6.5636e11 - 1.0).abs() < 1e-3, "{m:e}");
    }

    #[test]
    fn written_file_has_every_header_attribute_and_dataset() {
        let path = tmp("snap.hdf5");
        // f64 input stored as float32.
        let pos = vec![[0.5f64, 99.9999999, -1.0], [100.0, 3.25, 50.0]];
        let vel = vec![[100.0f64, -50.0, 0.0], [1.0, 2.0, 3.0]];
        write_gadget_hdf5(&path, &header(100.0, 0.25), &pos, &vel, Precision::F32).unwrap();
        assert!(is_hdf5(&path));
        let f = hdf5_pure::File::open(&path).unwrap();
        let h = f.group("Header").unwrap().attrs().unwrap();
        let num = |k: &str| numbers(&h[k]).unwrap_or_else(|| panic!("{k}"));
        assert_eq!(num("BoxSize"), vec![100_000.0]);
        assert_eq!(num("Time"), vec![0.25]);
        assert_eq!(num("Redshift"), vec![3.0]);
        assert_eq!(h["NumPart_ThisFile"], AttrValue::I64Array(vec![0, 2, 0, 0, 0, 0]));
        assert_eq!(h["NumPart_Total"], AttrValue::U32Array(vec![0, 2, 0, 0, 0, 0]));
        assert_eq!(h["NumPart_Total_HighWord"], AttrValue::U32Array(vec![0; 6]));
        let mt = num("MassTable");
        assert_eq!(mt.len(), 6);
        assert!((mt[1] - 0.3 * RHO_CRIT_1E10 * 1e6 / 2.0).abs() < 1e-9 * mt[1]);
        assert_eq!(num("Omega0"), vec![0.3]);
        assert_eq!(num("OmegaLambda"), vec![0.7]);
        assert_eq!(num("OmegaBaryon"), vec![0.05]);
        assert_eq!(num("HubbleParam"), vec![0.7]);
        assert_eq!(h["NumFilesPerSnapshot"], AttrValue::I32(1));
        for flag in [
            "Flag_Sfr",
            "Flag_Cooling",
            "Flag_StellarAge",
            "Flag_Metals",
            "Flag_Feedback",
            "Flag_DoublePrecision",
        ] {
            assert_eq!(h[flag], AttrValue::I32(0), "{flag}");
        }
        assert_eq!(num("UnitLength_in_cm"), vec![3.085678e21]);
        assert_eq!(num("UnitMass_in_g"), vec![1.989e43]);
        assert_eq!(num("UnitVelocity_in_cm_per_s"), vec![1e5]);
        let c = f.dataset("PartType1/Coordinates").unwrap();
        assert_eq!(c.shape().unwrap(), vec![2, 3]);
        let c = c.read_f32().unwrap();
        // Wrapped into [0, BoxSize) kpc/h: 99.9999999 Mpc/h rounds to 1e5 in f32 and wraps to 0.
        assert_eq!(c, vec![500.0, 0.0, 99_000.0, 0.0, 3250.0, 50_000.0]);
        // u = v/sqrt(a) = 2v at a = 1/4.
        let v = f.dataset("PartType1/Velocities").unwrap().read_f32().unwrap();
        assert_eq!(v, vec![200.0, -100.0, 0.0, 2.0, 4.0, 6.0]);
        assert_eq!(f.dataset("PartType1/ParticleIDs").unwrap().read_u32().unwrap(), vec![0, 1]);
        // Double precision: float64 arrays and the flag.
        let pos64 = vec![[0.1f64, 0.2, 0.3]];
        write_gadget_hdf5(&path, &header(1.0, 1.0), &pos64, &pos64, Precision::F64).unwrap();
        let f = hdf5_pure::File::open(&path).unwrap();
        assert_eq!(
            f.group("Header").unwrap().attrs().unwrap()["Flag_DoublePrecision"],
            AttrValue::I32(1)
        );
        let c = f.dataset("PartType1/Coordinates").unwrap().read_f64().unwrap();
        assert_eq!(c, vec![0.1 * 1000.0, 0.2 * 1000.0, 0.3 * 1000.0]);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn read_back_converts_to_mpc_h_and_checks_the_box() {
        let path = tmp("back.hdf5");
        let pos = vec![[1.5f64, 2.5, 99.0], [10.0, 20.0, 30.0], [0.0, 0.0, 0.0]];
        write_gadget_hdf5(&path, &header(100.0, 0.5), &pos, &pos, Precision::F64).unwrap();
        let s = read_gadget_hdf5(&path, 100.0).unwrap();
        assert_eq!(s.box_size, 100.0);
        assert!(s.unit.starts_with("kpc/h from Header/UnitLength_in_cm"), "{}", s.unit);
        for (a, b) in s.positions.iter().zip(&pos) {
            for d in 0..3 {
                assert!((a[d] - b[d]).abs() < 1e-12, "{a:?} {b:?}");
            }
        }
        assert!(s.masses.is_none());
        let e = read_gadget_hdf5(&path, 256.0).unwrap_err();
        let s = one_line(&e);
        assert!(
            s.contains(
                "BoxSize = 100000 (kpc/h from Header/UnitLength_in_cm) is 100 Mpc/h, but box.size = 256 Mpc/h; set [box] size = 100"
            ),
            "{s}"
        );
        std::fs::remove_file(&path).ok();
    }

    /// A hand-built snapshot of another code's layout.
    fn foreign(path: &Path, build: impl FnOnce(&mut FileBuilder)) {
        let mut b = FileBuilder::new();
        build(&mut b);
        std::fs::write(path, b.finish().unwrap()).unwrap();
    }

    #[test]
    fn reads_gadget2_gadget4_and_swift_layouts() {
        let path = tmp("foreign.hdf5");
        let coords = [1000.0f32, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0];
        // Gadget-2: no units; BoxSize in kpc/h, inferred from the configured box.
        foreign(&path, |b| {
            let mut h = b.create_group("Header");
            h.set_attr("BoxSize", AttrValue::F64(50_000.0));
            h.set_attr("NumFilesPerSnapshot", AttrValue::I32(1));
            b.add_group(h.finish());
            let mut p = b.create_group("PartType1");
            p.create_dataset("Coordinates").with_f32_data(&coords).with_shape(&[2, 3]);
            p.create_dataset("Masses").with_f32_data(&[1.0, 3.0]);
            b.add_group(p.finish());
        });
        let s = read_gadget_hdf5(&path, 50.0).unwrap();
        assert_eq!(s.positions, vec![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert!(s.unit.contains("inferred"), "{}", s.unit);
        assert_eq!(s.masses, Some(vec![1.0, 3.0]));
        let e = one_line(&read_gadget_hdf5(&path, 60.0).unwrap_err());
        assert!(e.contains("neither box.size = 60 Mpc/h nor 60000 kpc/h"), "{e}");
        // Gadget-4: units in Parameters, here Mpc/h.
        foreign(&path, |b| {
            let mut h = b.create_group("Header");
            h.set_attr("BoxSize", AttrValue::F64(50.0));
            b.add_group(h.finish());
            let mut pa = b.create_group("Parameters");
            pa.set_attr("UnitLength_in_cm", AttrValue::F64(3.085678e24));
            b.add_group(pa.finish());
            let mut p = b.create_group("PartType1");
            p.create_dataset("Coordinates").with_f64_data(&[1.0, 2.0, 3.0]).with_shape(&[1, 3]);
            b.add_group(p.finish());
        });
        let s = read_gadget_hdf5(&path, 50.0).unwrap();
        assert_eq!(s.positions, vec![[1.0, 2.0, 3.0]]);
        assert!(s.unit.starts_with("Mpc/h from Parameters"), "{}", s.unit);
        // SWIFT: BoxSize an array of 3, h-free Mpc, h in Cosmology.
        foreign(&path, |b| {
            let mut h = b.create_group("Header");
            h.set_attr("BoxSize", AttrValue::F64Array(vec![100.0; 3]));
            b.add_group(h.finish());
            let mut u = b.create_group("Units");
            u.set_attr("Unit length in cgs (U_L)", AttrValue::F64Array(vec![3.08567758149e24]));
            b.add_group(u.finish());
            let mut c = b.create_group("Cosmology");
            c.set_attr("h", AttrValue::F64Array(vec![0.5]));
            b.add_group(c.finish());
            let mut p = b.create_group("PartType1");
            p.create_dataset("Coordinates")
                .with_f64_data(&[10.0, 20.0, 130.0])
                .with_shape(&[1, 3]);
            b.add_group(p.finish());
        });
        let s = read_gadget_hdf5(&path, 50.0).unwrap();
        assert_eq!(s.box_size, 50.0);
        assert_eq!(s.positions, vec![[5.0, 10.0, 15.0]]); // 130 Mpc = 65 Mpc/h, wrapped to 15
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn bad_snapshots_are_one_line_errors() {
        let path = tmp("bad.hdf5");
        let err = |build: &dyn Fn(&mut FileBuilder)| {
            foreign(&path, build);
            one_line(&read_gadget_hdf5(&path, 50.0).unwrap_err())
        };
        let with_header = |b: &mut FileBuilder, files: i32| {
            let mut h = b.create_group("Header");
            h.set_attr("BoxSize", AttrValue::F64(50.0));
            h.set_attr("UnitLength_in_cm", AttrValue::F64(3.085678e24));
            h.set_attr("NumFilesPerSnapshot", AttrValue::I32(files));
            b.add_group(h.finish());
        };
        let s = err(&|b| {
            b.create_dataset("x").with_f64_data(&[1.0]);
        });
        assert!(s.contains("no `Header` group"), "{s}");
        let s = err(&|b| with_header(b, 8));
        assert!(s.contains("split over 8 files"), "{s}");
        let s = err(&|b| with_header(b, 1));
        assert!(s.contains("no PartType1/Coordinates"), "{s}");
        let s = err(&|b| {
            with_header(b, 1);
            let mut p = b.create_group("PartType1");
            p.create_dataset("Coordinates")
                .with_f64_data(&[1.0, f64::NAN, 3.0])
                .with_shape(&[1, 3]);
            b.add_group(p.finish());
        });
        assert!(s.contains("non-finite") && s.contains("particle 0, axis 1"), "{s}");
        let s = err(&|b| {
            with_header(b, 1);
            let mut p = b.create_group("PartType1");
            p.create_dataset("Coordinates").with_f64_data(&[1.0, 2.0]).with_shape(&[1, 2]);
            b.add_group(p.finish());
        });
        assert!(s.contains("shape (N, 3)"), "{s}");
        std::fs::write(&path, b"not hdf5 at all").unwrap();
        assert!(!is_hdf5(&path));
        assert!(!is_hdf5(Path::new("/dev/zero")) && !is_hdf5(&std::env::temp_dir()));
        // After a 512-byte user block.
        let mut ub = vec![0u8; 512];
        ub.extend_from_slice(&HDF5_SIGNATURE);
        std::fs::write(&path, &ub).unwrap();
        assert!(is_hdf5(&path));
        let s = one_line(&read_gadget_hdf5(&path, 50.0).unwrap_err());
        assert!(s.contains("not a readable HDF5 file"), "{s}");
        let s = one_line(&read_gadget_hdf5(&tmp("missing.hdf5"), 50.0).unwrap_err());
        assert!(s.contains("file not found"), "{s}");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn painting_matches_the_lattice_cic() {
        // The particles of a displaced 4³ lattice, painted from their absolute positions, give
        // the same δ as Cic::density_contrast on their displacements; also in another order.
        let (n, m, l) = (4usize, 8usize, 32.0f64);
        let cic = Cic::new(n, m, l);
        let disp: Vec<[f64; 3]> = (0..n * n * n)
            .map(|p| [0.7 * (p as f64).sin() * 5.0, 3.0 * (p as f64 * 0.37).cos(), -2.5])
            .collect();
        let pos: Vec<[f64; 3]> = (0..n * n * n).map(|p| cic.position(p, &disp[p])).collect();
        let want = cic.density(&disp);
        let got = paint_density(&pos, None, m, l);
        let err = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-10, "{err}");
        // A non-cubic count with masses: total mass conserved, mean δ = 0.
        let got = paint_density(&pos[..10], Some(&[2.0; 10]), m, l);
        assert!(got.iter().sum::<f64>().abs() < 1e-9);
    }
}
