//! NumPy arrays in and out.
//!
//! In: any float32 or float64 array (C order, Fortran order or strided), or anything
//! `numpy.asarray` turns into one (a list, a JAX or PyTorch CPU array), read in logical C order
//! (`[ix][iy][iz]`, docs/conventions.md) into one flat `Vec` in the run's precision; a C-contiguous
//! array is read by one memcpy. Out: a flat `Vec` handed to NumPy as the buffer of a C-order array
//! (no copy). Shape, dtype and finiteness errors have the CLI's wording with the argument's name
//! in place of the file's.

use crate::errors::py_err;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{Element, IntoPyArray, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pm_core::io::shape_string;
use pm_core::{Error, Real};
use pyo3::prelude::*;

/// A float array read from Python: its shape and its values in C order, in the dtype it had.
pub struct Input {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, flat in C order.
    pub data: Data,
}

/// Values in the dtype they came in.
pub enum Data {
    /// From a float32 array.
    F32(Vec<f32>),
    /// From a float64 array.
    F64(Vec<f64>),
}

impl Input {
    /// Whether the array was float64.
    pub fn is_f64(&self) -> bool {
        matches!(self.data, Data::F64(_))
    }

    /// The values in precision `T` (float64 → f32 rounds to nearest, as the CLI reads a file).
    pub fn to_vec<T: Real>(&self) -> Vec<T> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| T::of(x as f64)).collect(),
            Data::F64(v) => v.iter().map(|&x| T::of(x)).collect(),
        }
    }

    /// The values widened to f64 (exact).
    pub fn to_f64(&self) -> Vec<f64> {
        self.to_vec::<f64>()
    }

    /// [`Error::Shape`] unless the shape is `expected` (`desc` says what it is, e.g.
    /// `(box.particles,)*3`).
    pub fn check_shape(&self, what: &str, expected: &[usize], desc: &str) -> PyResult<()> {
        if self.shape != expected {
            return Err(py_err(Error::Shape {
                what: what.into(),
                found: format!("shape {}", shape_string(&self.shape)),
                expected: format!("shape {} = {desc}", shape_string(expected)),
            }));
        }
        Ok(())
    }

    /// The values in precision `T`, refused ([`Error::NonFinite`]) if one is NaN or infinite, or
    /// becomes infinite in f32 (the CLI's messages for a white-noise file, naming the 3-d index
    /// for a cube).
    pub fn finite_vec<T: Real>(&self, what: &str) -> PyResult<Vec<T>> {
        let v: Vec<T> = self.to_vec();
        let Some(i) = v.iter().position(|x| !x.is_finite()) else {
            return Ok(v);
        };
        let at = match self.shape.as_slice() {
            &[a, b, c] if a * b * c == v.len() => {
                format!("index [{}, {}, {}] (flat {i})", i / (b * c), (i / c) % b, i % c)
            }
            _ => format!("flat index {i}"),
        };
        let wide = self.to_f64()[i];
        if wide.is_finite() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{what} value {wide:e} at {at} does not fit in f32 (|x| <= {:e}); set run.precision = \"f64\" or rescale it",
                f32::MAX
            )));
        }
        Err(py_err(Error::NonFinite {
            what: what.into(),
            detail: format!("value {} at {at}; {what} must be finite", v[i]),
        }))
    }
}

/// Reads `obj` (a NumPy float array, or anything `numpy.asarray` makes one of). `what` names it
/// in errors, e.g. `white noise`.
pub fn read(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Input> {
    let arr = if obj.cast::<PyUntypedArray>().is_ok() {
        obj.clone()
    } else {
        obj.py().import("numpy")?.call_method1("asarray", (obj,))?
    };
    if let Ok(a) = arr.cast::<PyArrayDyn<f32>>() {
        let (shape, v) = take(a);
        return Ok(Input { shape, data: Data::F32(v) });
    }
    if let Ok(a) = arr.cast::<PyArrayDyn<f64>>() {
        let (shape, v) = take(a);
        return Ok(Input { shape, data: Data::F64(v) });
    }
    let dtype = arr
        .cast::<PyUntypedArray>()
        .map(|a| a.dtype().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Err(py_err(Error::Shape {
        what: what.into(),
        found: format!("dtype {dtype}"),
        expected: "float32 or float64".into(),
    }))
}

/// Shape and C-order values of a typed array: one copy of the buffer when C-contiguous, else a
/// walk in logical order (Fortran order, strides, negative strides).
fn take<T: Element + Copy>(a: &Bound<'_, PyArrayDyn<T>>) -> (Vec<usize>, Vec<T>) {
    let ro = a.readonly();
    let view = ro.as_array();
    let shape = view.shape().to_vec();
    let data = match view.as_slice() {
        // `as_slice` on the ndarray view is Some only for standard (C) layout.
        Some(s) => s.to_vec(),
        None => view.iter().copied().collect(),
    };
    (shape, data)
}

/// Reads an optional argument (None → None).
pub fn read_opt(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Input>> {
    match obj {
        Some(o) if !o.is_none() => read(o, what).map(Some),
        _ => Ok(None),
    }
}

/// A flat C-order `Vec` as a NumPy array of `shape`, NumPy owning the buffer (no copy).
pub fn out<'py, T: Element>(py: Python<'py>, data: Vec<T>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    let arr = ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cosmograd internal error: {e}")))?;
    Ok(arr.into_pyarray(py).into_any())
}

/// `data` (precision `T`) as a NumPy array of `shape` in float64 if `wide`, else float32 (the
/// dtype of the input it is the gradient of).
pub fn out_as<'py, T: Real + Element>(py: Python<'py>, data: Vec<T>, shape: &[usize], wide: bool) -> PyResult<Bound<'py, PyAny>> {
    match (wide, T::NAME) {
        (true, "f64") | (false, "f32") => out(py, data, shape),
        (true, _) => out(py, data.iter().map(|v| v.f64()).collect::<Vec<f64>>(), shape),
        (false, _) => out(py, data.iter().map(|v| v.f64() as f32).collect::<Vec<f32>>(), shape),
    }
}
