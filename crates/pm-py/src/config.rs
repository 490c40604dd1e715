//! `cosmograd.Config`: the run configuration of pm-core ([`Config`]) seen from Python.
//!
//! A configuration comes from a dict shaped like the TOML sections (`{"box": {"particles": 32},
//! "time": {"steps": 10}}`), a TOML file path, TOML text ([`PyConfig::from_toml`]) or nothing
//! (the embedded default run). Every key is optional and defaults as in the TOML file; every
//! function that takes `config=` accepts any of these (or a `Config`). The dict is turned into
//! TOML and parsed by the same parser as the CLI's `--config`, so unknown keys, wrong types and
//! out-of-range values get the CLI's one-line messages (without the line number, which means
//! nothing for a dict), raised as `ValueError`; a file that cannot be read raises `OSError`.

use crate::errors::{py_err, ToPyErr};
use pm_core::config::Config;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::path::{Path, PathBuf};

/// A validated run configuration (box, cosmology, time stepping, seed, precision, force kernel,
/// outputs): what `cosmograd simulate --config FILE.toml` reads. Keys, units and defaults are
/// those of docs/config.md.
///
/// `Config(source=None)`: `source` is a dict shaped like the TOML sections, e.g.
/// `{"box": {"size": 64.0, "particles": 8, "mesh": 16}, "run": {"precision": "f64"}}`
/// (lengths in Mpc/h), a path (str or os.PathLike) of a TOML file, another `Config`, or None for
/// the embedded default run (Planck-18-like, 64³ particles, 128³ mesh, 256 Mpc/h, 2LPT at
/// a = 0.02, 20 steps to a = 1). Relative file paths inside a dict (`cosmology.transfer`,
/// `run.white_noise`) are taken relative to the working directory, inside a file relative to
/// the file. Raises ValueError for an unknown key, a wrong type or an invalid value, and
/// OSError for a file that cannot be read.
#[pyclass(name = "Config", module = "cosmograd", frozen, eq)]
#[derive(Clone, Debug, PartialEq)]
pub struct PyConfig {
    pub inner: Config,
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (source = None))]
    fn py_new(source: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(PyConfig { inner: resolve(source)? })
    }

    /// A configuration from TOML text (the content of a config file; relative paths inside are
    /// taken relative to the working directory).
    #[staticmethod]
    fn from_toml(text: &str) -> PyResult<Self> {
        let mut cfg = Config::from_toml_str(text, "config text").map_err(content_error)?;
        cfg.resolve_paths(Path::new("."));
        cfg.validate().map_err(py_err)?;
        Ok(PyConfig { inner: cfg })
    }

    /// The fully resolved configuration as TOML text, every key written with its unit as a
    /// comment: the `config.toml` the CLI writes for this run, byte for byte.
    fn to_toml(&self) -> String {
        self.inner.to_toml_string()
    }

    /// The configuration as a dict of sections (`{"box": {...}, "cosmology": {...}, ...}`), every
    /// key present; `Config(c.to_dict()) == c`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = toml::Value::try_from(&self.inner).map_err(|e| PyValueError::new_err(format!("config: {e}")))?;
        toml_to_py(py, &value)
    }

    /// A copy with some keys changed: `changes` is a dict of sections like the constructor's,
    /// merged key by key into this configuration (a value of None removes the key, e.g.
    /// `{"cosmology": {"sigma8": None, "a_s": 2.1e-9}}` to normalise by A_s). Validated again.
    fn replace(&self, changes: &Bound<'_, PyDict>) -> PyResult<Self> {
        let mut base = toml::Value::try_from(&self.inner).map_err(|e| PyValueError::new_err(format!("config: {e}")))?;
        merge(&mut base, changes, "")?;
        let mut cfg = parse_value(&base)?;
        cfg.resolve_paths(Path::new("."));
        cfg.validate().map_err(py_err)?;
        Ok(PyConfig { inner: cfg })
    }

    /// Particles per side n (n³ particles).
    #[getter]
    fn particles(&self) -> usize {
        self.inner.box_.particles
    }
    /// Force-mesh cells per side m.
    #[getter]
    fn mesh(&self) -> usize {
        self.inner.box_.mesh
    }
    /// Box side L in Mpc/h.
    #[getter]
    fn box_size(&self) -> f64 {
        self.inner.box_.size
    }
    /// Floating-point precision of fields and particles: "f32" or "f64".
    #[getter]
    fn precision(&self) -> String {
        self.inner.run.precision.to_string()
    }
    /// Number of time steps.
    #[getter]
    fn steps(&self) -> usize {
        self.inner.time.steps
    }
    /// Scale factor of the initial conditions.
    #[getter]
    fn a_start(&self) -> f64 {
        self.inner.time.a_start
    }
    /// Final scale factor.
    #[getter]
    fn a_stop(&self) -> f64 {
        self.inner.time.a_stop
    }
    /// Seed of the white noise (used when no white noise is given).
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.run.seed
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "Config(box: {} Mpc/h, {}³ particles, {}³ mesh; {} steps a = {} → {}; {}; seed {})",
            c.box_.size, c.box_.particles, c.box_.mesh, c.time.steps, c.time.a_start, c.time.a_stop, c.run.precision, c.run.seed
        )
    }

    /// Pickling (e.g. to send a configuration to worker processes): rebuilt from its TOML text.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_toml = slf.get_type().getattr("from_toml")?;
        Ok((from_toml, (slf.get().inner.to_toml_string(),)))
    }
}

/// The validated configuration that `config=` names: None (the default run), a `Config`, a dict
/// of TOML sections or a path of a TOML file.
pub fn resolve(source: Option<&Bound<'_, PyAny>>) -> PyResult<Config> {
    let cfg = match source {
        None => Config::default(),
        Some(obj) if obj.is_none() => Config::default(),
        Some(obj) => {
            if let Ok(c) = obj.cast::<PyConfig>() {
                return Ok(c.get().inner.clone());
            }
            if let Ok(d) = obj.cast::<PyDict>() {
                let mut table = toml::Value::Table(Default::default());
                merge(&mut table, d, "")?;
                let mut cfg = parse_value(&table)?;
                cfg.resolve_paths(Path::new("."));
                cfg
            } else if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
                let path: PathBuf = obj.extract()?;
                load(&path)?
            } else {
                return Err(PyTypeError::new_err(format!(
                    "config must be None, a cosmograd.Config, a dict of TOML sections or a TOML file path, not {}",
                    obj.get_type().name()?
                )));
            }
        }
    };
    cfg.validate().map_err(py_err)?;
    Ok(cfg)
}

/// [`Config::load`] with its errors split as the package promises: a file that cannot be read is
/// an `OSError`; a readable file with bad content (a TOML error, an unknown key) a `ValueError`.
fn load(path: &Path) -> PyResult<Config> {
    Config::load(path).map_err(|e| {
        let readable = path.is_file() && std::fs::read_to_string(path).is_ok();
        if readable {
            PyValueError::new_err(e.to_string())
        } else {
            e.to_py()
        }
    })
}

/// A parse error of TOML that came from Python (not a file): a `ValueError`.
fn content_error(e: pm_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Parses a TOML table built from a dict with the CLI's parser; the error names the dotted key
/// but not the line of the generated text.
fn parse_value(table: &toml::Value) -> PyResult<Config> {
    let text = toml::to_string(table).map_err(|e| PyValueError::new_err(format!("config dict: {e}")))?;
    Config::from_toml_str(&text, "config dict").map_err(|e| match e {
        pm_core::Error::File { path, reason } => {
            let reason = match reason.strip_prefix("line ") {
                Some(rest) => rest.split_once(": ").map_or(reason.clone(), |(_, r)| r.to_string()),
                None => reason,
            };
            PyValueError::new_err(format!("{}: {reason}", path.display()))
        }
        e => e.to_py(),
    })
}

/// Merges the dict `d` into the TOML table `base` (nested dicts into tables, key by key; None
/// removes a key). `at` is the dotted path of `d`, for messages.
fn merge(base: &mut toml::Value, d: &Bound<'_, PyDict>, at: &str) -> PyResult<()> {
    let toml::Value::Table(table) = base else {
        return Err(PyValueError::new_err(format!("config dict: `{at}` is a value, not a section")));
    };
    for (k, v) in d.iter() {
        let key: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "config dict: keys must be strings, got {}",
                k.repr().map_or("?".into(), |r| r.to_string())
            ))
        })?;
        let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        if v.is_none() {
            table.remove(&key);
        } else if let Ok(sub) = v.cast::<PyDict>() {
            let slot = table.entry(key).or_insert_with(|| toml::Value::Table(Default::default()));
            merge(slot, sub, &path)?;
        } else {
            table.insert(key, py_to_toml(&v, &path)?);
        }
    }
    Ok(())
}

/// A Python value as a TOML value: bool, int (or NumPy integer), float (or NumPy float, 0-d
/// array), str, os.PathLike (as its path), list/tuple (an array), dict (a table).
fn py_to_toml(v: &Bound<'_, PyAny>, path: &str) -> PyResult<toml::Value> {
    if v.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(v.extract()?));
    }
    if v.is_instance_of::<PyInt>() {
        return v.extract::<i64>().map(toml::Value::Integer).map_err(|_| {
            PyValueError::new_err(format!(
                "config dict: {path}: integer {v} does not fit in a TOML integer (64-bit signed)"
            ))
        });
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(v.extract()?));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(toml::Value::String(v.extract()?));
    }
    if v.hasattr("__fspath__")? {
        let p: PathBuf = v.extract()?;
        let s = p
            .to_str()
            .ok_or_else(|| PyValueError::new_err(format!("config dict: {path}: path {} is not valid UTF-8", p.display())))?;
        return Ok(toml::Value::String(s.to_string()));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut t = toml::Value::Table(Default::default());
        merge(&mut t, d, path)?;
        return Ok(t);
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items = v
            .try_iter()?
            .enumerate()
            .map(|(i, x)| py_to_toml(&x?, &format!("{path}[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(toml::Value::Array(items));
    }
    // NumPy scalars and 0-d arrays: integers through __index__, floats through __float__.
    if v.hasattr("__index__")? {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(toml::Value::Integer(i));
        }
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(toml::Value::Float(f));
    }
    Err(PyTypeError::new_err(format!(
        "config dict: {path}: a value of type {} is not a configuration value (bool, int, float, str, path, list or dict)",
        v.get_type().name()?
    )))
}

/// A TOML value as Python (tables as dicts, arrays as lists).
fn toml_to_py<'py>(py: Python<'py>, v: &toml::Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        toml::Value::String(s) => s.into_pyobject(py)?.into_any(),
        toml::Value::Integer(i) => i.into_pyobject(py)?.into_any(),
        toml::Value::Float(f) => f.into_pyobject(py)?.into_any(),
        toml::Value::Boolean(b) => b.into_pyobject(py)?.to_owned().into_any(),
        toml::Value::Datetime(d) => d.to_string().into_pyobject(py)?.into_any(),
        toml::Value::Array(a) => {
            let items = a.iter().map(|x| toml_to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        toml::Value::Table(t) => {
            let d = PyDict::new(py);
            for (k, x) in t {
                d.set_item(k, toml_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}
