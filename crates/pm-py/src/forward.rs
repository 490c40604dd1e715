//! `simulate`, `power_spectrum`, `cross_correlation`: the forward run and the spectra, with the
//! same numbers as the CLI's `simulate` (positions.npy, velocities.npy, density.npy, power.txt).

use crate::arrays::{self, Input};
use crate::compute::detached;
use crate::config;
use crate::errors::{invalid, py_err};
use numpy::Element;
use pm_core::config::{Config, Precision};
use pm_core::correction::{ForceCorrection, SplineCorrection};
use pm_core::fft::Fft3;
use pm_core::io::read_white_noise;
use pm_core::mesh::MeshGeom;
use pm_core::power::{cross_spectrum, power_spectrum as spectrum, Deconvolve, PowerSpectrum};
use pm_core::sim::{Event, Simulation, State};
use pm_core::Real;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The outputs of one snapshot (the CLI's files of that snapshot).
pub struct Snapshot<T> {
    a: f64,
    positions: Vec<T>,
    velocities: Vec<T>,
    density: Vec<T>,
    power: PowerSpectrum,
    power_linear: Vec<f64>,
}

impl<T: Real> Snapshot<T> {
    /// What `cosmograd simulate` writes for the state `s` (write_snapshot in src/simulate.rs).
    pub fn of(sim: &Simulation<T>, s: &State<T>) -> Self {
        let density = sim.density(s);
        let power = sim.power(&density);
        let power_linear = power.k.iter().map(|&k| sim.p_linear(k, s.a)).collect();
        Snapshot {
            a: s.a,
            positions: sim.positions(s).into_flattened(),
            velocities: sim.velocities(s).into_flattened(),
            density,
            power,
            power_linear,
        }
    }

    fn into_dict<'py>(self, py: Python<'py>, n_particles: usize, m: usize) -> PyResult<Bound<'py, PyDict>>
    where
        T: Element,
    {
        let d = PyDict::new(py);
        d.set_item("a", self.a)?;
        d.set_item("positions", arrays::out(py, self.positions, &[n_particles, 3])?)?;
        d.set_item("velocities", arrays::out(py, self.velocities, &[n_particles, 3])?)?;
        d.set_item("density", arrays::out(py, self.density, &[m, m, m])?)?;
        let nb = self.power.k.len();
        d.set_item("k", arrays::out(py, self.power.k, &[nb])?)?;
        d.set_item("power", arrays::out(py, self.power.p, &[nb])?)?;
        d.set_item("n_modes", arrays::out(py, self.power.n_modes, &[nb])?)?;
        d.set_item("power_linear", arrays::out(py, self.power_linear, &[nb])?)?;
        Ok(d)
    }
}

/// The white noise of a run, as the CLI picks it: the array given, else `run.white_noise` (a
/// .npy file), else the seed's. Checked: shape (n, n, n), finite.
pub fn white_noise<T: Real>(sim: &Simulation<T>, given: Option<&Input>) -> PyResult<Vec<T>> {
    let n = sim.config().box_.particles;
    match (given, &sim.config().run.white_noise) {
        (Some(w), _) => {
            w.check_shape("white noise", &[n, n, n], "(box.particles,)*3")?;
            w.finite_vec("white noise")
        }
        (None, Some(path)) => read_white_noise::<T>(path, n).map_err(py_err),
        (None, None) => Ok(sim.white_noise()),
    }
}

/// Whether the white noise is float64: the array's dtype, else the `run.white_noise` file's,
/// else `run.precision` (the dtype the CLI's `gradient` writes ∂L/∂w in).
pub fn white_noise_is_f64(cfg: &Config, given: Option<&Input>) -> PyResult<bool> {
    Ok(match (given, &cfg.run.white_noise) {
        (Some(w), _) => w.is_f64(),
        (None, Some(path)) => pm_core::io::read_npy_header(path).map_err(py_err)?.descr.ends_with("f8"),
        (None, None) => cfg.run.precision == Precision::F64,
    })
}

/// A spline force correction (pm-core `SplineCorrection`, docs/adjoint.md) from the dict
/// `{"n_k": int, "n_a": int, "k_max": float (h/Mpc), "params": sequence of n_k·n_a floats,
/// "a_range": (a_lo, a_hi) (default (time.a_start, time.a_stop))}`.
pub fn correction(obj: Option<&Bound<'_, PyAny>>, cfg: &Config) -> PyResult<Option<SplineCorrection>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let d = obj
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("force_correction must be a dict {n_k, n_a, k_max, params[, a_range]}"))?;
    for k in d.keys() {
        let k: String = k.extract()?;
        if !["n_k", "n_a", "k_max", "params", "a_range"].contains(&k.as_str()) {
            return Err(invalid(
                &format!("force_correction.{k}"),
                "given",
                "only the keys n_k, n_a, k_max, params, a_range",
            ));
        }
    }
    let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(k)?.ok_or_else(|| {
            invalid(
                &format!("force_correction.{k}"),
                "missing",
                "a value (n_k, n_a, k_max and params are required)",
            )
        })
    };
    let a_range: (f64, f64) = match d.get_item("a_range")? {
        Some(r) => r.extract()?,
        None => (cfg.time.a_start, cfg.time.a_stop),
    };
    let mut model =
        SplineCorrection::new(get("n_k")?.extract()?, get("n_a")?.extract()?, get("k_max")?.extract()?, a_range).map_err(py_err)?;
    let params = arrays::read(&get("params")?, "force_correction.params")?;
    model.set_params(&params.to_f64()).map_err(py_err)?;
    Ok(Some(model))
}

/// A simulation of `cfg` in precision `T` with the correction installed.
pub fn simulation<T: Real>(cfg: &Config, model: Option<SplineCorrection>) -> PyResult<Simulation<T>> {
    let mut sim = Simulation::<T>::new(cfg).map_err(py_err)?;
    if let Some(m) = model {
        sim.set_force_correction(Some(Box::new(m)));
    }
    Ok(sim)
}

/// Runs a configured simulation and returns its outputs.
///
/// `config`: None (the embedded default run), a `Config`, a dict of TOML sections or a TOML
/// file path (see `Config`). `white_noise`: the Gaussian white noise on the particle grid, shape
/// (n, n, n), float32 or float64, any memory order; None takes `run.white_noise` (a .npy file)
/// or else the white noise of `run.seed`. `force_correction`: optional spline correction of the
/// PM force, a dict {"n_k", "n_a", "k_max" (h/Mpc), "params", optional "a_range"}.
///
/// Returns a dict of the final state at `time.a_stop`, the same numbers as the CLI's
/// `cosmograd simulate` writes (bit for bit), arrays in the run's precision (float32, or
/// float64 for `run.precision = "f64"`) unless said:
/// - "a": the scale factor;
/// - "positions": (n³, 3) comoving positions in Mpc/h, in [0, L), Lagrangian (C) order;
/// - "velocities": (n³, 3) peculiar velocities in km/s;
/// - "density": (m, m, m) CIC density contrast δ on the force mesh (cell-centred);
/// - "k" (h/Mpc), "power" ((Mpc/h)³), "n_modes", "power_linear" ((Mpc/h)³ at that a): the binned
///   P(k) of δ (float64; n_modes int), as in power.txt;
/// - "snapshots": a list of such dicts for each `time.snapshots` before a_stop, in order.
///
/// The GIL is released while it runs. Raises ValueError (bad configuration, white noise of the
/// wrong shape or dtype or with NaN) or OSError (a file named in the configuration).
#[pyfunction]
#[pyo3(signature = (config = None, white_noise = None, *, force_correction = None))]
pub fn simulate<'py>(
    py: Python<'py>,
    config: Option<&Bound<'py, PyAny>>,
    white_noise: Option<&Bound<'py, PyAny>>,
    force_correction: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = config::resolve(config)?;
    let w = arrays::read_opt(white_noise, "white noise")?;
    let model = correction(force_correction, &cfg)?;
    match cfg.run.precision {
        Precision::F32 => simulate_typed::<f32>(py, cfg, w, model),
        Precision::F64 => simulate_typed::<f64>(py, cfg, w, model),
    }
}

fn simulate_typed<'py, T: Real + Element>(
    py: Python<'py>,
    cfg: Config,
    w: Option<Input>,
    model: Option<SplineCorrection>,
) -> PyResult<Bound<'py, PyDict>> {
    let (n, m) = (cfg.box_.particles, cfg.box_.mesh);
    let a_stop = cfg.time.a_stop;
    let snaps = detached(py, cfg.run.threads, move || {
        let mut sim = simulation::<T>(&cfg, model)?;
        let w = white_noise(&sim, w.as_ref())?;
        let mut state = sim.initial_conditions(w).map_err(py_err)?;
        let mut snaps = Vec::new();
        sim.run_with(&mut state, |sim, ev| {
            if let Event::Snapshot(s) = ev {
                snaps.push(Snapshot::of(sim, s));
            }
            Ok(())
        })
        .map_err(py_err)?;
        Ok(snaps)
    })?;
    let np = n * n * n;
    let mut earlier = Vec::new();
    let mut last = None;
    for s in snaps {
        if s.a == a_stop {
            last = Some(s.into_dict(py, np, m)?);
        } else {
            earlier.push(s.into_dict(py, np, m)?);
        }
    }
    let d = last.ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("cosmograd internal error: the run did not reach a_stop"))?;
    d.set_item("snapshots", PyList::new(py, earlier)?)?;
    Ok(d)
}

/// The spectrum as a dict of NumPy arrays: "k" (mean |k| of each bin, h/Mpc), "power"
/// ((Mpc/h)³), "n_modes".
fn spectrum_dict<'py>(py: Python<'py>, ps: PowerSpectrum) -> PyResult<Bound<'py, PyDict>> {
    let nb = ps.k.len();
    let d = PyDict::new(py);
    d.set_item("k", arrays::out(py, ps.k, &[nb])?)?;
    d.set_item("power", arrays::out(py, ps.p, &[nb])?)?;
    d.set_item("n_modes", arrays::out(py, ps.n_modes, &[nb])?)?;
    Ok(d)
}

/// Checks a field for the spectra: a cube of side ≥ 2, finite; returns the side.
fn cube(f: &Input, what: &str) -> PyResult<usize> {
    match f.shape.as_slice() {
        &[m, b, c] if m == b && b == c && m >= 2 => Ok(m),
        _ => Err(py_err(pm_core::Error::Shape {
            what: what.into(),
            found: format!("shape {}", pm_core::io::shape_string(&f.shape)),
            expected: "a cube (m, m, m) with m >= 2 cells per side".into(),
        })),
    }
}

fn check_box(box_size: f64) -> PyResult<()> {
    if box_size.is_finite() && box_size > 0.0 {
        Ok(())
    } else {
        Err(invalid("box_size", box_size, "a finite box side > 0 in Mpc/h"))
    }
}

fn deconvolution(deconvolve: bool) -> Deconvolve {
    if deconvolve {
        Deconvolve::Cic
    } else {
        Deconvolve::None
    }
}

/// Binned power spectrum of a density contrast on a periodic mesh.
///
/// `delta`: (m, m, m) float32 or float64, any memory order (computed in its precision, so a
/// float32 `simulate(...)["density"]` gives that run's "power" bit for bit). `box_size`: side L
/// in Mpc/h. `deconvolve`: divide out the CIC window (as `output.deconvolve`, default True).
///
/// Returns {"k": mean |k| per bin (h/Mpc), "power": P(k) ((Mpc/h)³), "n_modes": modes per bin}:
/// linear shells of width k_f = 2π/L centred on multiples of k_f up to the Nyquist wavenumber,
/// no shot-noise subtraction (docs/physics.md §6). GIL released. ValueError for a non-cube or
/// non-finite field or a bad box size.
#[pyfunction]
#[pyo3(signature = (delta, box_size, deconvolve = true))]
pub fn power_spectrum<'py>(py: Python<'py>, delta: &Bound<'py, PyAny>, box_size: f64, deconvolve: bool) -> PyResult<Bound<'py, PyDict>> {
    let f = arrays::read(delta, "delta")?;
    let m = cube(&f, "delta")?;
    check_box(box_size)?;
    let dec = deconvolution(deconvolve);
    let ps = if f.is_f64() {
        let v: Vec<f64> = f.finite_vec("delta")?;
        detached(py, 0, move || {
            Ok(spectrum(&v, &MeshGeom::new(m, box_size), &Fft3::<f64>::new(m), dec))
        })?
    } else {
        let v: Vec<f32> = f.finite_vec("delta")?;
        detached(py, 0, move || {
            Ok(spectrum(&v, &MeshGeom::new(m, box_size), &Fft3::<f32>::new(m), dec))
        })?
    };
    spectrum_dict(py, ps)
}

/// Auto and cross power spectra of two fields on the same periodic mesh and their correlation
/// coefficient r(k) = P_ab / sqrt(P_aa P_bb).
///
/// `a`, `b`: (m, m, m) float32 or float64 (computed in float64 unless both are float32).
/// `box_size`: side L in Mpc/h; `deconvolve`: divide out the CIC window (default True; r is
/// unaffected). Returns {"k" (h/Mpc), "n_modes", "p_aa", "p_bb", "p_ab" ((Mpc/h)³, real part of
/// the cross spectrum), "r" (dimensionless)}, binned as `power_spectrum`. GIL released.
#[pyfunction]
#[pyo3(signature = (a, b, box_size, deconvolve = true))]
pub fn cross_correlation<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    box_size: f64,
    deconvolve: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let (fa, fb) = (arrays::read(a, "a")?, arrays::read(b, "b")?);
    let m = cube(&fa, "a")?;
    if fb.shape != fa.shape {
        return Err(py_err(pm_core::Error::Shape {
            what: "b".into(),
            found: format!("shape {}", pm_core::io::shape_string(&fb.shape)),
            expected: format!("shape {}, the shape of a", pm_core::io::shape_string(&fa.shape)),
        }));
    }
    check_box(box_size)?;
    let dec = deconvolution(deconvolve);
    let cs = if fa.is_f64() || fb.is_f64() {
        let (va, vb): (Vec<f64>, Vec<f64>) = (fa.finite_vec("a")?, fb.finite_vec("b")?);
        detached(py, 0, move || {
            Ok(cross_spectrum(&va, &vb, &MeshGeom::new(m, box_size), &Fft3::<f64>::new(m), dec))
        })?
    } else {
        let (va, vb): (Vec<f32>, Vec<f32>) = (fa.finite_vec("a")?, fb.finite_vec("b")?);
        detached(py, 0, move || {
            Ok(cross_spectrum(&va, &vb, &MeshGeom::new(m, box_size), &Fft3::<f32>::new(m), dec))
        })?
    };
    let nb = cs.k.len();
    let d = PyDict::new(py);
    d.set_item("k", arrays::out(py, cs.k, &[nb])?)?;
    d.set_item("n_modes", arrays::out(py, cs.n_modes, &[nb])?)?;
    d.set_item("p_aa", arrays::out(py, cs.p_aa, &[nb])?)?;
    d.set_item("p_bb", arrays::out(py, cs.p_bb, &[nb])?)?;
    d.set_item("p_ab", arrays::out(py, cs.p_ab, &[nb])?)?;
    d.set_item("r", arrays::out(py, cs.r, &[nb])?)?;
    Ok(d)
}
