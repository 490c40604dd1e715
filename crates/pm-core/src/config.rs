//! The run configuration: static choices read from a TOML file, validated once.
//!
//! A [`Config`] holds what `cosmograd simulate` needs to set up a run (box, cosmology, time
//! stepping, seeds, force kernel, outputs). Its `[cosmology]` section is the [`Cosmology`]
//! itself, the one parameter type that the tables, their tangents and the gradients share.
//!
//! Every key is optional and defaults to the embedded default run (Planck-18-like cosmology,
//! 64³ particles, 128³ mesh, 256 Mpc/h box, 2LPT at a = 0.02, 20 steps to a = 1), so
//! `Config::default()` *is* that run and an empty file reproduces it. Unknown keys and
//! sections are errors. `docs/config.md` lists every key with its unit, default, allowed
//! values and the error rules of [`Config::validate`].
//!
//! Lifecycle: [`Config::load`] (or [`Config::from_toml_str`]) parses, the caller applies any
//! command-line overrides, then [`Config::validate`] checks everything once;
//! [`Config::to_toml_string`] writes the fully resolved file, which parses back to an equal
//! `Config`.
//!
//! ```
//! use pm_core::config::{Config, LptOrder};
//! let cfg = Config::from_toml_str("[box]\nparticles = 32\nmesh = 64\n", "inline").unwrap();
//! cfg.validate().unwrap();
//! assert_eq!(cfg.box_.mesh / cfg.box_.particles, 2);
//! assert_eq!(cfg.time.lpt, LptOrder::Two);
//! let back = Config::from_toml_str(&cfg.to_toml_string(), "resolved").unwrap();
//! assert_eq!(back, cfg);
//! ```

use crate::cosmology::Cosmology;
pub use crate::cosmology::TransferChoice;
use crate::error::{Error, Result};
use crate::growth::A_INIT;
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest accepted `box.particles` (particles per side): the largest n with n³ ≤ `u32::MAX`,
/// as the CIC plane sort indexes the n³ particles with `u32` ([`crate::cic::Cic::new`]).
pub const MAX_PARTICLES: usize = 1625;
const _: () = assert!(MAX_PARTICLES.pow(3) <= u32::MAX as usize && (MAX_PARTICLES + 1).pow(3) > u32::MAX as usize);
/// Largest accepted `box.mesh` (cells per side).
pub const MAX_MESH: usize = 8192;
/// Largest accepted `time.steps`.
pub const MAX_STEPS: usize = 100_000;
/// Largest accepted `time.a_stop` (the growth tables are integrated to at least this far).
pub const MAX_A_STOP: f64 = 10.0;
/// Largest accepted `run.threads`.
pub const MAX_THREADS: usize = 1024;

// ---------------------------------------------------------------------------------------------
// The configuration
// ---------------------------------------------------------------------------------------------

/// A complete run configuration (the TOML file `cosmograd simulate --config` reads and the
/// resolved `config.toml` it writes). `Config::default()` is the embedded default run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[box]`: box size, particle grid and force mesh.
    #[serde(rename = "box")]
    pub box_: BoxConfig,
    /// `[cosmology]`: cosmological parameters and the linear power spectrum.
    #[serde(deserialize_with = "Cosmology::deserialize_normalised")]
    pub cosmology: Cosmology,
    /// `[time]`: initial conditions time, time steps and snapshots.
    pub time: TimeConfig,
    /// `[run]`: seed, floating-point precision, threads, initial-condition variants.
    pub run: RunConfig,
    /// `[force]`: the gravity solver's kernels.
    pub force: ForceConfig,
    /// `[output]`: what the written observables look like.
    pub output: OutputConfig,
}

/// `[box]`: the periodic comoving box, the Lagrangian particle grid and the force mesh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoxConfig {
    /// Side length L of the periodic box, in Mpc/h (comoving). Default 256.0.
    pub size: f64,
    /// Particles per side n (n³ particles on the Lagrangian grid). Default 64.
    pub particles: usize,
    /// Force mesh cells per side m, a positive multiple of `particles`. Default 128.
    pub mesh: usize,
}

impl Default for BoxConfig {
    fn default() -> Self {
        BoxConfig {
            size: 256.0,
            particles: 64,
            mesh: 128,
        }
    }
}

impl BoxConfig {
    /// Number of particles n³.
    pub fn n_particles(&self) -> usize {
        self.particles.pow(3)
    }
    /// Mean inter-particle spacing L/n, in Mpc/h.
    pub fn particle_spacing(&self) -> f64 {
        self.size / self.particles as f64
    }
    /// Force mesh cell size L/m, in Mpc/h.
    pub fn cell_size(&self) -> f64 {
        self.size / self.mesh as f64
    }
}

/// `[time]`: when the initial conditions are set, how the run steps, and when it writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeConfig {
    /// Scale factor of the initial conditions (dimensionless), 0 < a_start < a_stop. Default 0.02.
    pub a_start: f64,
    /// Final scale factor (dimensionless), at most 10. Default 1.0.
    pub a_stop: f64,
    /// Number of kick–drift–kick steps from a_start to a_stop, 1 ≤ steps ≤ 100000. Default 20.
    pub steps: usize,
    /// Order of the Lagrangian perturbation theory initial conditions. Default 2LPT.
    pub lpt: LptOrder,
    /// Scale factors at which outputs are also written, strictly increasing, each in
    /// (a_start, a_stop]. Default none (only a_stop is written).
    pub snapshots: Vec<f64>,
    /// How the step boundaries are spaced between a_start and a_stop. Default uniform in a.
    pub spacing: Spacing,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            a_start: 0.02,
            a_stop: 1.0,
            steps: 20,
            lpt: LptOrder::Two,
            snapshots: Vec::new(),
            spacing: Spacing::A,
        }
    }
}

/// `[run]`: seeds, precision, threads and the initial-condition variants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of the white noise (0 ≤ seed ≤ 2⁶³ − 1, TOML integers being signed 64-bit).
    /// Ignored when a white-noise file is given. Default 42.
    pub seed: u64,
    /// A white-noise file to start from instead of the seed: `.npy`, shape (n, n, n), float32
    /// or float64 (`--white-noise` sets it; [`Config::load`] makes a relative path absolute,
    /// relative to the config file). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub white_noise: Option<PathBuf>,
    /// Floating-point type of fields and particles. Default f32.
    pub precision: Precision,
    /// Worker threads, 0 = all cores; the CLI caps a larger count at the available cores
    /// (`cosmograd::cli::thread_count`). Results do not depend on it. Default 0.
    pub threads: usize,
    /// Fix |W(k)| to its rms value, keeping only the phases (Angulo & Pontzen 2016). Default false.
    pub fixed_amplitude: bool,
    /// Flip the sign of every mode (the partner of a paired-fixed run). Default false.
    pub paired: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 42,
            white_noise: None,
            precision: Precision::F32,
            threads: 0,
            fixed_amplitude: false,
            paired: false,
        }
    }
}

/// `[force]`: the gravity solver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForceConfig {
    /// Gradient kernel applied to the potential. Default spectral.
    pub gradient: Gradient,
}

/// `[output]`: options of the written observables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Deconvolve the CIC window from the power spectrum in `power.txt`. Default true.
    pub deconvolve: bool,
    /// Thickness in Mpc/h of the slab projected in `slice.png` (rounded up to whole mesh
    /// cells; more than the box projects the whole box). Default 16.0.
    pub slice_thickness: f64,
    /// The particle and mesh file formats written per snapshot: `"npy"` (`positions.npy`,
    /// `velocities.npy`, `density.npy`) and/or `"gadget"` (`snapshot.hdf5`, a Gadget/SWIFT-style
    /// HDF5 snapshot, [`crate::io::gadget`]). At least one, no repeats. Default `["npy"]`.
    pub formats: Vec<OutputFormat>,
    /// Subtract the Poisson shot noise V/N_particles ((Mpc/h)³) from every bin of `power.txt`
    /// ([`crate::power::PowerSpectrum::subtract_shot_noise`]). Default false.
    pub subtract_shot_noise: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            deconvolve: true,
            slice_thickness: 16.0,
            formats: vec![OutputFormat::Npy],
            subtract_shot_noise: false,
        }
    }
}

impl OutputConfig {
    /// Whether `format` is among [`OutputConfig::formats`].
    pub fn writes(&self, format: OutputFormat) -> bool {
        self.formats.contains(&format)
    }
}

/// A file format of the particle and mesh outputs (`output.formats`: `"npy"` | `"gadget"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// NumPy `.npy` arrays: `positions.npy`, `velocities.npy` (N×3) and `density.npy` (m³).
    Npy,
    /// A Gadget-format HDF5 snapshot `snapshot.hdf5` (header, `PartType1` coordinates in kpc/h,
    /// velocities in km/s / √a, IDs), readable by h5py, Pylians' `readgadget` and Gadget-aware
    /// tools ([`crate::io::gadget`]).
    Gadget,
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Npy => "npy",
            OutputFormat::Gadget => "gadget",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The small enums
// ---------------------------------------------------------------------------------------------

/// Floating-point type of fields and particles (`run.precision`: `"f32"` | `"f64"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision (default; cosmology and reductions stay f64).
    #[default]
    F32,
    /// Double precision, for verification and gradient tests.
    F64,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

/// Order of Lagrangian perturbation theory for the initial conditions (`time.lpt`: 1 | 2,
/// written as a TOML integer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LptOrder {
    /// Zel'dovich approximation (1LPT).
    One,
    /// Second-order LPT (default).
    #[default]
    Two,
}

impl LptOrder {
    /// The order as a number: 1 or 2.
    pub fn order(self) -> u8 {
        match self {
            LptOrder::One => 1,
            LptOrder::Two => 2,
        }
    }
}

impl fmt::Display for LptOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}LPT", self.order())
    }
}

impl Serialize for LptOrder {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_i64(self.order() as i64)
    }
}

impl<'de> Deserialize<'de> for LptOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LptOrder;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the integer 1 or 2")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<LptOrder, E> {
                match v {
                    1 => Ok(LptOrder::One),
                    2 => Ok(LptOrder::Two),
                    _ => Err(E::invalid_value(Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<LptOrder, E> {
                match v {
                    1 => Ok(LptOrder::One),
                    2 => Ok(LptOrder::Two),
                    _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Spacing of the time-step boundaries (`time.spacing`: `"a"` | `"loga"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Spacing {
    /// Uniform in the scale factor a (default; FastPM's choice).
    #[default]
    #[serde(rename = "a")]
    A,
    /// Uniform in ln a.
    #[serde(rename = "loga")]
    LogA,
}

impl fmt::Display for Spacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Spacing::A => "a",
            Spacing::LogA => "loga",
        })
    }
}

/// Gradient kernel of the force solver (`force.gradient`: `"spectral"` | `"fd4"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gradient {
    /// Exact spectral derivative ik, with the Nyquist plane zeroed (default).
    #[default]
    Spectral,
    /// Fourth-order finite-difference kernel, i(8 sin(kΔ) − sin(2kΔ))/(6Δ).
    Fd4,
}

impl fmt::Display for Gradient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gradient::Spectral => "spectral",
            Gradient::Fd4 => "fd4",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing, loading, writing
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Parses a TOML document. `origin` names it in errors (usually the file name).
    ///
    /// Errors are one line, `"{origin}: line L: {message}"`, e.g.
    /// ``config.toml: line 3: unknown field `sizee`, expected one of `size`, `particles`, `mesh` ``;
    /// a type error also names the dotted key (`box.particles: invalid type: ...`).
    /// Values are not range-checked here: call [`Config::validate`].
    pub fn from_toml_str(s: &str, origin: &str) -> Result<Config> {
        toml::from_str::<Config>(s).map_err(|e| toml_error(&e, s, origin))
    }

    /// Reads and parses a config file (see [`Config::from_toml_str`]). Relative
    /// `cosmology.transfer` and `run.white_noise` file paths are resolved against the config
    /// file's directory and stored absolute, so the resolved config works from anywhere.
    /// Does not validate.
    pub fn load(path: &Path) -> Result<Config> {
        crate::io::refuse_special_file(path, "config file", "a TOML configuration file")?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "config file not found".to_string(),
                std::io::ErrorKind::InvalidData => "config file is not valid UTF-8 text".to_string(),
                _ => format!("cannot read config file: {e}"),
            };
            Error::file(path, reason)
        })?;
        let mut cfg = Config::from_toml_str(&text, &path.display().to_string())?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        cfg.resolve_paths(dir);
        Ok(cfg)
    }

    /// Makes the relative file paths of the configuration (`cosmology.transfer`,
    /// `run.white_noise`) absolute against `dir`, the directory of the file they were read from.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |p: &Path| {
            let joined = dir.join(p);
            std::path::absolute(&joined).unwrap_or(joined)
        };
        if let TransferChoice::File(p) = &self.cosmology.transfer {
            if p.is_relative() {
                self.cosmology.transfer = TransferChoice::File(resolve(p));
            }
        }
        if let Some(p) = &self.run.white_noise {
            if p.is_relative() {
                self.run.white_noise = Some(resolve(p));
            }
        }
    }

    /// The fully resolved configuration as TOML: every key written (with its unit as a
    /// comment), parsing back to an equal `Config`.
    ///
    /// # Panics
    /// If `run.seed` exceeds 2⁶³ − 1 or a size does not fit a TOML integer (both rejected by
    /// [`Config::validate`]), or a file path is not UTF-8.
    pub fn to_toml_string(&self) -> String {
        let body = toml::to_string(self).expect("a Config always serialises to TOML");
        let mut out = String::from(
            "# cosmograd run configuration, fully resolved (every key is written).\n\
             # Reuse it with `cosmograd simulate --config config.toml`; docs/config.md lists\n\
             # every key, its unit, default and allowed values.\n\n",
        );
        let mut section = String::new();
        for line in body.lines() {
            let t = line.trim();
            if t.starts_with('[') && t.ends_with(']') && !t.contains('=') {
                section = t.trim_matches(|c| c == '[' || c == ']').to_string();
                out.push_str(line);
                out.push('\n');
                continue;
            }
            // Floats in their shortest exact form (`2.1e-9`, not `0.0000000021`).
            let reformatted;
            let line = match t.split_once(" = ") {
                Some((k, v)) if v.contains('.') && !v.starts_with(['"', '[', '\'']) => match v.parse::<f64>() {
                    Ok(x) if x.is_finite() && format!("{x:?}").parse::<f64>() == Ok(x) => {
                        reformatted = format!("{k} = {x:?}");
                        reformatted.as_str()
                    }
                    _ => line,
                },
                _ => line,
            };
            let comment = t
                .split_once('=')
                .and_then(|(k, _)| key_comment(&section, k.trim()))
                .filter(|_| !line.contains('#'));
            match comment {
                Some(c) => {
                    let pad = 28usize.saturating_sub(line.chars().count()).max(1);
                    out.push_str(line);
                    out.push_str(&" ".repeat(pad));
                    out.push_str("# ");
                    out.push_str(c);
                }
                None => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }

    /// Checks every value once; the first problem comes back as one line naming the dotted
    /// key (e.g. `box.mesh`, `time.snapshots[2]`), the value and what would be accepted.
    /// `cosmology.transfer` and `run.white_noise` files must exist (relative paths are relative
    /// to the working directory here; [`Config::load`] has already made them absolute); the
    /// white noise's shape and dtype are checked when it is read
    /// ([`crate::io::read_white_noise`]).
    pub fn validate(&self) -> Result<()> {
        self.validate_box()?;
        self.validate_cosmology()?;
        self.validate_time()?;
        self.validate_run()?;
        self.validate_output()
    }

    fn validate_box(&self) -> Result<()> {
        let b = &self.box_;
        if !(b.size.is_finite() && b.size > 0.0) {
            return Err(Error::invalid("box.size", num(b.size), "a finite box side > 0 in Mpc/h"));
        }
        if !(2..=MAX_PARTICLES).contains(&b.particles) {
            return Err(Error::invalid(
                "box.particles",
                b.particles,
                format!("particles per side n with 2 <= n <= {MAX_PARTICLES} (n³ particles must fit a 32-bit index)"),
            ));
        }
        let n = b.particles;
        if b.mesh == 0 || b.mesh % n != 0 || b.mesh > MAX_MESH {
            let mut expected = format!("a positive multiple of box.particles = {n}, e.g. {n} or {}", 2 * n);
            if b.mesh > MAX_MESH {
                expected.push_str(&format!(", at most {MAX_MESH}"));
            }
            return Err(Error::invalid("box.mesh", b.mesh, expected));
        }
        Ok(())
    }

    fn validate_cosmology(&self) -> Result<()> {
        let c = &self.cosmology;
        positive("cosmology.omega_m", c.omega_m, "a finite Omega_m > 0")?;
        if !(c.omega_b.is_finite() && c.omega_b > 0.0 && c.omega_b < c.omega_m) {
            return Err(Error::invalid(
                "cosmology.omega_b",
                num(c.omega_b),
                format!("0 < omega_b < cosmology.omega_m = {:?}", c.omega_m),
            ));
        }
        positive("cosmology.h", c.h, "a finite h = H0 / (100 km/s/Mpc) > 0, e.g. 0.6766")?;
        finite("cosmology.n_s", c.n_s)?;
        if let Some(s8) = c.sigma8 {
            positive("cosmology.sigma8", s8, "a finite sigma8 > 0, e.g. 0.8102")?;
        }
        if let Some(a_s) = c.a_s {
            positive("cosmology.a_s", a_s, "a finite A_s > 0, e.g. 2.1e-9")?;
        }
        finite("cosmology.w0", c.w0)?;
        finite("cosmology.wa", c.wa)?;
        finite("cosmology.omega_k", c.omega_k)?;
        positive("cosmology.t_cmb", c.t_cmb, "a finite CMB temperature > 0 in K, e.g. 2.7255")?;
        match &c.transfer {
            TransferChoice::EisensteinHu | TransferChoice::EisensteinHuNoWiggle => match (c.sigma8, c.a_s) {
                (Some(_), Some(a_s)) => {
                    return Err(Error::invalid(
                        "cosmology.a_s",
                        num(a_s),
                        format!(
                            "exactly one of cosmology.sigma8 and cosmology.a_s with transfer = \"{}\" \
                                 (sigma8 is also set; remove one)",
                            c.transfer
                        ),
                    ))
                }
                (None, None) => {
                    return Err(Error::invalid(
                        "cosmology.sigma8",
                        "(unset)",
                        format!(
                            "exactly one of cosmology.sigma8 (e.g. 0.8102) and cosmology.a_s \
                                 (e.g. 2.1e-9) with transfer = \"{}\"",
                            c.transfer
                        ),
                    ))
                }
                _ => {}
            },
            TransferChoice::File(p) => {
                if let Some(a_s) = c.a_s {
                    return Err(Error::invalid(
                        "cosmology.a_s",
                        num(a_s),
                        "unset with a tabulated transfer file (the table fixes the amplitude; \
                         set cosmology.sigma8 to rescale it)",
                    ));
                }
                const WHAT: &str = "\"eh\", \"eh-nowiggle\" or the path of a two-column \
                                    k [h/Mpc] P [(Mpc/h)^3] text file";
                require_utf8_path(p, "cosmology.transfer")?;
                crate::io::require_regular_file(p, "cosmology.transfer", WHAT)?;
            }
        }
        Ok(())
    }

    fn validate_time(&self) -> Result<()> {
        let t = &self.time;
        // The growth tables start at A_INIT: an earlier a_start could not be evaluated.
        if !(t.a_start.is_finite() && t.a_start >= A_INIT) {
            return Err(Error::invalid(
                "time.a_start",
                num(t.a_start),
                format!("a finite scale factor {A_INIT:e} <= a_start < time.a_stop (the growth tables start at {A_INIT:e}), e.g. 0.02"),
            ));
        }
        if !(t.a_stop.is_finite() && t.a_stop <= MAX_A_STOP) {
            return Err(Error::invalid(
                "time.a_stop",
                num(t.a_stop),
                format!("a finite scale factor with time.a_start < a_stop <= {MAX_A_STOP}"),
            ));
        }
        if t.a_start >= t.a_stop {
            return Err(Error::invalid(
                "time.a_start",
                num(t.a_start),
                format!("a_start < time.a_stop = {:?}", t.a_stop),
            ));
        }
        if !(1..=MAX_STEPS).contains(&t.steps) {
            return Err(Error::invalid(
                "time.steps",
                t.steps,
                format!("a number of steps with 1 <= steps <= {MAX_STEPS}"),
            ));
        }
        let mut prev: Option<f64> = None;
        for (i, &a) in t.snapshots.iter().enumerate() {
            let field = format!("time.snapshots[{i}]");
            if !(a.is_finite() && a > t.a_start && a <= t.a_stop) {
                return Err(Error::invalid(
                    field,
                    num(a),
                    format!("a scale factor in (time.a_start, time.a_stop] = ({:?}, {:?}]", t.a_start, t.a_stop),
                ));
            }
            if let Some(p) = prev {
                if a <= p {
                    return Err(Error::invalid(
                        field,
                        num(a),
                        format!("strictly increasing snapshots: more than time.snapshots[{}] = {p:?}", i - 1),
                    ));
                }
            }
            prev = Some(a);
        }
        Ok(())
    }

    fn validate_run(&self) -> Result<()> {
        let r = &self.run;
        if r.seed > i64::MAX as u64 {
            return Err(Error::invalid(
                "run.seed",
                r.seed,
                format!("0 <= seed <= {} (TOML integers are signed 64-bit)", i64::MAX),
            ));
        }
        if let Some(p) = &r.white_noise {
            const WHAT: &str = "a .npy white-noise file of shape (n, n, n), n = box.particles, \
                                float32 or float64";
            require_utf8_path(p, "run.white_noise")?;
            crate::io::require_regular_file(p, "run.white_noise", WHAT)?;
        }
        if r.threads > MAX_THREADS {
            return Err(Error::invalid(
                "run.threads",
                r.threads,
                format!("0 (all cores) or a thread count <= {MAX_THREADS}"),
            ));
        }
        Ok(())
    }

    fn validate_output(&self) -> Result<()> {
        let o = &self.output;
        positive(
            "output.slice_thickness",
            o.slice_thickness,
            "a finite slab thickness > 0 in Mpc/h, e.g. 16.0",
        )?;
        if o.formats.is_empty() {
            return Err(Error::invalid(
                "output.formats",
                "[]",
                "at least one of \"npy\" and \"gadget\", e.g. [\"npy\"] or [\"npy\", \"gadget\"]",
            ));
        }
        for (i, f) in o.formats.iter().enumerate() {
            if o.formats[..i].contains(f) {
                return Err(Error::invalid(
                    format!("output.formats[{i}]"),
                    format!("\"{f}\""),
                    format!(
                        "each format once (\"{f}\" is already output.formats[{}])",
                        o.formats.iter().position(|g| g == f).unwrap_or(0)
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn positive(field: &str, v: f64, expected: &str) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(field, num(v), expected))
    }
}

fn finite(field: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(field, num(v), "a finite number"))
    }
}

/// A float as the user would write it: `2.1e-9`, `0.02`, `1.0`, `NaN`, `inf`.
fn num(v: f64) -> String {
    format!("{v:?}")
}

/// The unit/meaning comment written after each key by [`Config::to_toml_string`].
fn key_comment(section: &str, key: &str) -> Option<&'static str> {
    Some(match (section, key) {
        ("box", "size") => "Mpc/h, comoving box side",
        ("box", "particles") => "particles per side",
        ("box", "mesh") => "force mesh cells per side",
        ("cosmology", "omega_m") => "total matter density today",
        ("cosmology", "omega_b") => "baryon density today",
        ("cosmology", "h") => "H0 / (100 km/s/Mpc)",
        ("cosmology", "n_s") => "scalar spectral index",
        ("cosmology", "sigma8") => "linear rms in 8 Mpc/h spheres at a = 1",
        ("cosmology", "a_s") => "primordial amplitude at 0.05/Mpc",
        ("cosmology", "w0") => "w(a) = w0 + wa (1 - a)",
        ("cosmology", "wa") => "w(a) = w0 + wa (1 - a)",
        ("cosmology", "omega_k") => "curvature, 0 = flat",
        ("cosmology", "t_cmb") => "K",
        ("cosmology", "transfer") => "\"eh\" | \"eh-nowiggle\" | k P file",
        ("time", "a_start") => "scale factor of the initial conditions",
        ("time", "a_stop") => "final scale factor",
        ("time", "steps") => "kick-drift-kick steps",
        ("time", "lpt") => "1 | 2",
        ("time", "snapshots") => "extra output scale factors",
        ("time", "spacing") => "\"a\" | \"loga\"",
        ("run", "seed") => "white-noise seed",
        ("run", "white_noise") => ".npy white noise, used instead of the seed",
        ("run", "precision") => "\"f32\" | \"f64\"",
        ("run", "threads") => "0 = all cores",
        ("run", "fixed_amplitude") => "|W(k)| fixed to its rms",
        ("run", "paired") => "all modes sign-flipped",
        ("force", "gradient") => "\"spectral\" | \"fd4\"",
        ("output", "deconvolve") => "CIC window deconvolved in power.txt",
        ("output", "slice_thickness") => "Mpc/h, slab projected in slice.png",
        ("output", "formats") => "\"npy\" and/or \"gadget\" (snapshot.hdf5)",
        ("output", "subtract_shot_noise") => "V/N subtracted in power.txt",
        _ => return None,
    })
}

/// One line from a TOML/serde error: `"{origin}: line L: {key}: {message}"`.
fn toml_error(e: &toml::de::Error, src: &str, origin: &str) -> Error {
    let message = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else {
        return Error::file(origin, message);
    };
    let start = span.start.min(src.len());
    let line_no = src.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count();
    let lines: Vec<&str> = src.lines().collect();
    // The section the error is in, and the key on its line when the span is a value.
    let section = lines
        .iter()
        .take(line_no + 1)
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.strip_prefix('[').and_then(|l| l.split(']').next()))
        .map(|s| s.trim().to_string());
    let key = lines.get(line_no).and_then(|l| {
        let (k, _) = l.split_once('=')?;
        let k = k.trim();
        let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        bare.then(|| k.to_string())
    });
    let msg = match key {
        Some(k) if !message.contains(&format!("`{k}`")) => {
            let dotted = match section {
                Some(s) => format!("{s}.{k}"),
                None => k,
            };
            format!("line {}: {dotted}: {message}", line_no + 1)
        }
        _ => format!("line {}: {message}", line_no + 1),
    };
    Error::file(origin, msg)
}

/// A path the configuration holds must be valid UTF-8: the run's record (`config.toml`) stores it
/// as a TOML string, which cannot hold other bytes (such a path panicked when the record was
/// written).
fn require_utf8_path(p: &Path, key: &str) -> Result<()> {
    if p.to_str().is_some() {
        return Ok(());
    }
    Err(Error::file(
        p,
        format!("{key}: the path is not valid UTF-8, which the run's record config.toml cannot hold; rename the file or link it under a UTF-8 name"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::from_toml_str(s, "config.toml")
    }

    fn tmp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "cosmograd-config-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn one_line(e: &Error) -> String {
        let s = e.to_string();
        assert!(!s.contains('\n'), "multi-line error: {s:?}");
        s
    }

    fn invalid_field(e: &Error) -> &str {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_is_the_default_run() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
        assert_eq!(cfg.box_.size, 256.0);
        assert_eq!((cfg.box_.particles, cfg.box_.mesh), (64, 128));
        assert_eq!(cfg.cosmology.clone(), Cosmology::planck18());
        assert_eq!(cfg.cosmology.transfer, TransferChoice::EisensteinHu);
        assert_eq!(cfg.time.a_start, 0.02);
        assert_eq!(cfg.time.a_stop, 1.0);
        assert_eq!(cfg.time.steps, 20);
        assert_eq!(cfg.time.lpt, LptOrder::Two);
        assert_eq!(cfg.time.spacing, Spacing::A);
        assert!(cfg.time.snapshots.is_empty());
        assert_eq!(cfg.run.seed, 42);
        assert_eq!(cfg.run.precision, Precision::F32);
        assert_eq!(cfg.force.gradient, Gradient::Spectral);
        assert!(cfg.output.deconvolve);
        assert_eq!(cfg.output.slice_thickness, 16.0);
        assert_eq!(cfg.output.formats, vec![OutputFormat::Npy]);
        assert!(!cfg.output.subtract_shot_noise);
    }

    #[test]
    fn full_example_parses() {
        let s = r#"
[box]
size = 100.0
particles = 32
mesh = 96
[cosmology]
omega_m = 0.3
omega_b = 0.05
h = 0.7
n_s = 0.96
a_s = 2.1e-9
w0 = -0.9
wa = 0.1
omega_k = 0.01
t_cmb = 2.7
transfer = "eh-nowiggle"
[time]
a_start = 0.05
a_stop = 0.8
steps = 7
lpt = 1
snapshots = [0.1, 0.5]
spacing = "loga"
[run]
seed = 7
precision = "f64"
threads = 2
fixed_amplitude = true
paired = true
[force]
gradient = "fd4"
[output]
deconvolve = false
slice_thickness = 8.5
formats = ["gadget", "npy"]
subtract_shot_noise = true
"#;
        let cfg = parse(s).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.box_.mesh, 96);
        assert_eq!(cfg.cosmology.sigma8, None, "a_s alone must not inherit the default sigma8");
        assert_eq!(cfg.cosmology.a_s, Some(2.1e-9));
        assert_eq!(cfg.cosmology.transfer, TransferChoice::EisensteinHuNoWiggle);
        assert_eq!(cfg.time.lpt, LptOrder::One);
        assert_eq!(cfg.time.snapshots, vec![0.1, 0.5]);
        assert_eq!(cfg.time.spacing, Spacing::LogA);
        assert_eq!(cfg.run.precision, Precision::F64);
        assert!(cfg.run.fixed_amplitude && cfg.run.paired);
        assert_eq!(cfg.force.gradient, Gradient::Fd4);
        assert!(!cfg.output.deconvolve);
        assert_eq!(cfg.output.formats, vec![OutputFormat::Gadget, OutputFormat::Npy]);
        assert!(cfg.output.subtract_shot_noise);
        assert!(cfg.output.writes(OutputFormat::Gadget) && cfg.output.writes(OutputFormat::Npy));
        let c = cfg.cosmology.clone();
        assert_eq!((c.omega_m, c.w0, c.wa, c.omega_k), (0.3, -0.9, 0.1, 0.01));
        // ... and the resolved file parses back to the same thing.
        let back = parse(&cfg.to_toml_string()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn resolved_toml_round_trips() {
        let mut cfg = Config::default();
        assert_eq!(parse(&cfg.to_toml_string()).unwrap(), cfg);
        cfg.box_.size = 1.0 / 3.0;
        cfg.cosmology.omega_m = 0.1 + 0.2;
        cfg.cosmology.sigma8 = Some(0.8);
        cfg.cosmology.transfer = TransferChoice::File(PathBuf::from("/tmp/dir with space/pk \"z0\".txt"));
        cfg.time.snapshots = vec![0.1, 0.25, 1.0 / 3.0];
        cfg.time.lpt = LptOrder::One;
        cfg.run.seed = i64::MAX as u64;
        cfg.run.white_noise = Some(PathBuf::from("/data/w 64.npy"));
        cfg.run.threads = 3;
        cfg.output.slice_thickness = 1e-7;
        let text = cfg.to_toml_string();
        assert!(text.starts_with('#'));
        for key in [
            "size",
            "particles",
            "mesh",
            "omega_m",
            "omega_b",
            "h",
            "n_s",
            "sigma8",
            "w0",
            "wa",
            "omega_k",
            "t_cmb",
            "transfer",
            "a_start",
            "a_stop",
            "steps",
            "lpt",
            "snapshots",
            "spacing",
            "seed",
            "precision",
            "threads",
            "fixed_amplitude",
            "paired",
            "gradient",
            "deconvolve",
            "slice_thickness",
            "formats",
            "subtract_shot_noise",
        ] {
            assert!(
                text.lines().any(|l| l.trim_start().starts_with(&format!("{key} ="))),
                "key {key} missing from\n{text}"
            );
        }
        assert_eq!(parse(&text).unwrap(), cfg);
        // a_s instead of sigma8, written in its short form.
        cfg.cosmology.transfer = TransferChoice::EisensteinHu;
        cfg.cosmology.sigma8 = None;
        cfg.cosmology.a_s = Some(2.1e-9);
        let text = cfg.to_toml_string();
        assert!(text.contains("a_s = 2.1e-9"), "{text}");
        assert!(!text.contains("sigma8"), "{text}");
        assert_eq!(parse(&text).unwrap(), cfg);
        // Table without renormalisation: neither is written, neither comes back.
        cfg.cosmology.transfer = TransferChoice::File(PathBuf::from("pk.txt"));
        cfg.cosmology.a_s = None;
        assert_eq!(parse(&cfg.to_toml_string()).unwrap(), cfg);
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let e = parse("[box]\nsize = 100.0\nsizee = 3\n").unwrap_err();
        let s = one_line(&e);
        assert!(matches!(e, Error::File { .. }));
        assert_eq!(
            s,
            "config.toml: line 3: unknown field `sizee`, expected one of `size`, `particles`, `mesh`"
        );
        let s = one_line(&parse("# comment\n[boxx]\nsize = 1.0\n").unwrap_err());
        assert!(s.starts_with("config.toml: line 2: unknown field `boxx`"), "{s}");
        let s = one_line(&parse("[cosmology]\nsigma_8 = 0.8\n").unwrap_err());
        assert!(s.contains("line 2") && s.contains("sigma_8"), "{s}");
    }

    #[test]
    fn type_and_syntax_errors_are_one_line() {
        let s = one_line(&parse("[box]\nparticles = 64.5\n").unwrap_err());
        assert!(s.starts_with("config.toml: line 2: box.particles: invalid type"), "{s}");
        let s = one_line(&parse("[box]\nparticles = -4\n").unwrap_err());
        assert!(s.contains("line 2") && s.contains("box.particles"), "{s}");
        let s = one_line(&parse("[time]\nlpt = 3\n").unwrap_err());
        assert!(s.contains("line 2") && s.contains("time.lpt") && s.contains("1 or 2"), "{s}");
        let s = one_line(&parse("[time]\nlpt = \"2\"\n").unwrap_err());
        assert!(s.contains("time.lpt"), "{s}");
        let s = one_line(&parse("[run]\nprecision = \"f16\"\n").unwrap_err());
        assert!(s.contains("line 2") && s.contains("f16") && s.contains("f32"), "{s}");
        let s = one_line(&parse("[time]\nspacing = \"log\"\n").unwrap_err());
        assert!(s.contains("loga"), "{s}");
        let s = one_line(&parse("[output]\nformats = [\"npy\", \"hdf5\"]\n").unwrap_err());
        assert!(
            s.starts_with("config.toml: line 2: output.formats: unknown variant `hdf5`, expected `npy` or `gadget`"),
            "{s}"
        );
        let s = one_line(&parse("[output]\nformats = \"gadget\"\n").unwrap_err());
        assert!(s.contains("line 2") && s.contains("output.formats"), "{s}");
        let s = one_line(&parse("[force]\ngradient = \"fd2\"\n").unwrap_err());
        assert!(s.contains("fd4"), "{s}");
        let s = one_line(&parse("[cosmology]\ntransfer = \"\"\n").unwrap_err());
        assert!(s.contains("eh-nowiggle"), "{s}");
        let s = one_line(&parse("[box]\nsize = \n").unwrap_err());
        assert!(s.starts_with("config.toml: line 2:"), "{s}");
        let s = one_line(&parse("[box\nsize = 1.0\n").unwrap_err());
        assert!(s.starts_with("config.toml: line 1:"), "{s}");
        let s = one_line(&parse("[box]\nsize = 1.0\nsize = 2.0\n").unwrap_err());
        assert!(s.contains("line 3"), "{s}");
    }

    #[test]
    fn validation_rules() {
        let bad = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            let e = c.validate().unwrap_err();
            one_line(&e);
            e
        };
        let e = bad(&|c| c.box_.mesh = 100);
        assert_eq!(invalid_field(&e), "box.mesh");
        assert!(
            e.to_string().contains("a positive multiple of box.particles = 64, e.g. 64 or 128"),
            "{e}"
        );
        assert_eq!(invalid_field(&bad(&|c| c.box_.mesh = 32)), "box.mesh");
        assert_eq!(invalid_field(&bad(&|c| c.box_.mesh = 0)), "box.mesh");
        assert_eq!(invalid_field(&bad(&|c| c.box_.size = 0.0)), "box.size");
        assert_eq!(invalid_field(&bad(&|c| c.box_.size = f64::NAN)), "box.size");
        assert_eq!(invalid_field(&bad(&|c| c.box_.size = f64::INFINITY)), "box.size");
        assert_eq!(invalid_field(&bad(&|c| c.box_.particles = 1)), "box.particles");
        // n³ > u32::MAX from n = 1626: the CIC particle indices would wrap.
        let e = bad(&|c| {
            c.box_.particles = 1626;
            c.box_.mesh = 1626
        });
        assert_eq!(invalid_field(&e), "box.particles");
        assert!(e.to_string().contains("n <= 1625"), "{e}");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.omega_m = 0.0)), "cosmology.omega_m");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.omega_m = -0.3)), "cosmology.omega_m");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.omega_b = 0.0)), "cosmology.omega_b");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.omega_b = 0.4)), "cosmology.omega_b");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.h = -0.7)), "cosmology.h");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.n_s = f64::NAN)), "cosmology.n_s");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.sigma8 = Some(0.0))), "cosmology.sigma8");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.w0 = f64::NEG_INFINITY)), "cosmology.w0");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.wa = f64::NAN)), "cosmology.wa");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.omega_k = f64::NAN)), "cosmology.omega_k");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.t_cmb = 0.0)), "cosmology.t_cmb");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.a_s = Some(2e-9))), "cosmology.a_s");
        assert_eq!(invalid_field(&bad(&|c| c.cosmology.sigma8 = None)), "cosmology.sigma8");
        let e = bad(&|c| {
            c.cosmology.sigma8 = None;
            c.cosmology.a_s = Some(-1.0)
        });
        assert_eq!(invalid_field(&e), "cosmology.a_s");
        assert_eq!(invalid_field(&bad(&|c| c.time.a_start = 0.0)), "time.a_start");
        assert_eq!(invalid_field(&bad(&|c| c.time.a_start = 1.0)), "time.a_start");
        assert_eq!(invalid_field(&bad(&|c| c.time.a_start = 2.0)), "time.a_start");
        assert_eq!(invalid_field(&bad(&|c| c.time.a_start = f64::NAN)), "time.a_start");
        // Below the growth tables' start (A_INIT = 1e-5): refused here, not a panic in growth.rs.
        let e = bad(&|c| c.time.a_start = 1e-6);
        assert_eq!(invalid_field(&e), "time.a_start");
        assert!(e.to_string().contains("1e-5 <= a_start"), "{e}");
        assert_eq!(invalid_field(&bad(&|c| c.time.a_stop = f64::INFINITY)), "time.a_stop");
        assert_eq!(invalid_field(&bad(&|c| c.time.a_stop = 11.0)), "time.a_stop");
        assert_eq!(invalid_field(&bad(&|c| c.time.steps = 0)), "time.steps");
        assert_eq!(invalid_field(&bad(&|c| c.time.steps = MAX_STEPS + 1)), "time.steps");
        assert_eq!(invalid_field(&bad(&|c| c.time.snapshots = vec![0.5, 0.02])), "time.snapshots[1]");
        assert_eq!(invalid_field(&bad(&|c| c.time.snapshots = vec![0.5, 1.5])), "time.snapshots[1]");
        assert_eq!(
            invalid_field(&bad(&|c| c.time.snapshots = vec![0.2, 0.5, 0.5])),
            "time.snapshots[2]"
        );
        assert_eq!(invalid_field(&bad(&|c| c.time.snapshots = vec![f64::NAN])), "time.snapshots[0]");
        assert_eq!(invalid_field(&bad(&|c| c.run.threads = 5000)), "run.threads");
        assert_eq!(invalid_field(&bad(&|c| c.run.seed = u64::MAX)), "run.seed");
        assert_eq!(invalid_field(&bad(&|c| c.output.slice_thickness = 0.0)), "output.slice_thickness");
        let e = bad(&|c| c.output.formats.clear());
        assert_eq!(invalid_field(&e), "output.formats");
        assert!(e.to_string().contains("at least one of \"npy\" and \"gadget\""), "{e}");
        let e = bad(&|c| c.output.formats = vec![OutputFormat::Gadget, OutputFormat::Npy, OutputFormat::Gadget]);
        assert_eq!(invalid_field(&e), "output.formats[2]");
        assert!(e.to_string().contains("already output.formats[0]"), "{e}");
        // Accepted edge cases.
        let mut c = Config::default();
        c.time.snapshots = vec![0.03, 0.5, 1.0];
        c.box_.mesh = 64;
        c.time.a_stop = 10.0;
        c.time.a_start = A_INIT;
        c.cosmology.sigma8 = None;
        c.cosmology.a_s = Some(2.1e-9);
        c.cosmology.w0 = -0.8;
        c.cosmology.omega_k = -0.05;
        c.validate().unwrap();
    }

    #[test]
    fn a_start_after_a_stop_from_toml() {
        let c = parse("[time]\na_start = 1.0\na_stop = 0.5\n").unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!(invalid_field(&e), "time.a_start");
        assert!(one_line(&e).contains("0.5"), "{e}");
    }

    #[test]
    fn transfer_file_rules_and_relative_paths() {
        let dir = tmp_dir("transfer");
        std::fs::write(dir.join("pk.txt"), "1e-3 1e3\n1e-2 1e4\n").unwrap();
        let cfg_path = dir.join("run.toml");
        std::fs::write(&cfg_path, "[cosmology]\ntransfer = \"pk.txt\"\n").unwrap();
        let cfg = Config::load(&cfg_path).unwrap();
        match &cfg.cosmology.transfer {
            TransferChoice::File(p) => {
                assert!(p.is_absolute(), "{}", p.display());
                assert!(p.ends_with("pk.txt"));
                assert!(p.is_file());
            }
            other => panic!("{other:?}"),
        }
        // Neither normalisation given with a table: the table's own amplitude.
        assert_eq!(cfg.cosmology.sigma8, None);
        cfg.validate().unwrap();
        // The resolved config works from anywhere.
        let back = parse(&cfg.to_toml_string()).unwrap();
        assert_eq!(back, cfg);
        back.validate().unwrap();
        // sigma8 rescales a table; a_s is refused.
        let mut c = cfg.clone();
        c.cosmology.sigma8 = Some(0.8);
        c.validate().unwrap();
        c.cosmology.a_s = Some(2e-9);
        assert_eq!(invalid_field(&c.validate().unwrap_err()), "cosmology.a_s");
        // A missing table names the file.
        std::fs::write(&cfg_path, "[cosmology]\ntransfer = \"eh-nowigle\"\n").unwrap();
        let e = Config::load(&cfg_path).unwrap().validate().unwrap_err();
        let s = one_line(&e);
        assert!(matches!(e, Error::File { .. }), "{e:?}");
        assert!(
            s.contains("eh-nowigle") && s.contains("not found") && s.contains("\"eh-nowiggle\""),
            "{s}"
        );
        // A directory is not a table.
        std::fs::write(&cfg_path, "[cosmology]\ntransfer = \".\"\n").unwrap();
        let e = Config::load(&cfg_path).unwrap().validate().unwrap_err();
        assert!(one_line(&e).contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn white_noise_file_key() {
        let dir = tmp_dir("wn");
        std::fs::create_dir_all(dir.join("ics")).unwrap();
        std::fs::write(dir.join("ics/w.npy"), b"placeholder").unwrap();
        let cfg_path = dir.join("run.toml");
        std::fs::write(&cfg_path, "[run]\nwhite_noise = \"ics/w.npy\"\n").unwrap();
        let cfg = Config::load(&cfg_path).unwrap();
        let p = cfg.run.white_noise.clone().unwrap();
        assert!(p.is_absolute() && p.ends_with("ics/w.npy") && p.is_file(), "{}", p.display());
        cfg.validate().unwrap();
        let text = cfg.to_toml_string();
        assert!(text.contains("white_noise = "), "{text}");
        assert_eq!(parse(&text).unwrap(), cfg);
        // Not written when unset.
        assert!(!Config::default().to_toml_string().contains("white_noise"));
        // Missing file.
        let mut c = cfg.clone();
        c.run.white_noise = Some(dir.join("nope.npy"));
        let e = c.validate().unwrap_err();
        let s = one_line(&e);
        assert!(matches!(e, Error::File { .. }));
        assert!(
            s.contains("nope.npy") && s.contains("run.white_noise") && s.contains("not found"),
            "{s}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = tmp_dir("load");
        let missing = dir.join("nope.toml");
        let e = Config::load(&missing).unwrap_err();
        let s = one_line(&e);
        assert!(s.contains("nope.toml") && s.contains("not found"), "{s}");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[box]\nmesh = 128\nparticle = 64\n").unwrap();
        let s = one_line(&Config::load(&bad).unwrap_err());
        assert!(
            s.starts_with(&format!("{}: line 3: unknown field `particle`", bad.display())),
            "{s}"
        );
        std::fs::write(&bad, [0xffu8, 0xfe, 0x00]).unwrap();
        let s = one_line(&Config::load(&bad).unwrap_err());
        assert!(s.contains("bad.toml"), "{s}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn enums_display() {
        assert_eq!(Precision::F64.to_string(), "f64");
        assert_eq!(LptOrder::One.to_string(), "1LPT");
        assert_eq!(LptOrder::Two.order(), 2);
        assert_eq!(Spacing::LogA.to_string(), "loga");
        assert_eq!(Gradient::Fd4.to_string(), "fd4");
        assert_eq!(TransferChoice::EisensteinHuNoWiggle.to_string(), "eh-nowiggle");
        let b = BoxConfig::default();
        assert_eq!(b.n_particles(), 64 * 64 * 64);
        assert_eq!(b.cell_size(), 2.0);
        assert_eq!(b.particle_spacing(), 4.0);
    }
}
