//! # pm-py: the Python extension module `cosmograd._native`
//!
//! The Rust half of the Python package in `python/` (built by maturin, see docs/python.md). It
//! exposes, NumPy in and NumPy out:
//! - [`config::PyConfig`] (`cosmograd.Config`): a run configuration from a dict shaped like the
//!   TOML sections, a TOML file or TOML text;
//! - `simulate`, `power_spectrum`, `cross_correlation` ([`forward`]);
//! - `value_and_grad` and `vjp` ([`adjoint`]): the reverse-time adjoint of pm-adjoint;
//! - `reconstruct` ([`recon`]): the CLI's reconstruction, its arrays and diagnostics returned.
//!
//! Conventions shared by every function:
//! - arrays come in as any NumPy float32/float64 array in C or Fortran order (read in logical C
//!   order; copied once into the run's precision) and go out as new C-order arrays that NumPy
//!   owns (no copy on the way out);
//! - the computation runs with the GIL released, inside a rayon pool of `run.threads`
//!   ([`compute`]);
//! - errors are the one-line messages of the CLI ([`errors`]): `OSError` for files,
//!   `ValueError` for values and shapes, `TypeError` for an argument of the wrong kind; a Rust
//!   panic becomes a `RuntimeError` instead of crossing the FFI boundary.

use pyo3::prelude::*;

mod adjoint;
mod arrays;
mod compute;
mod config;
mod errors;
mod forward;
mod recon;

/// cosmograd's native module: differentiable particle-mesh N-body simulations (Rust).
/// Use it through the `cosmograd` package (docs/python.md).
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<config::PyConfig>()?;
    m.add_function(wrap_pyfunction!(forward::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(forward::power_spectrum, m)?)?;
    m.add_function(wrap_pyfunction!(forward::cross_correlation, m)?)?;
    m.add_function(wrap_pyfunction!(adjoint::value_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(adjoint::vjp, m)?)?;
    m.add_function(wrap_pyfunction!(recon::reconstruct, m)?)?;
    m.add_function(wrap_pyfunction!(compute::_panic_for_tests, m)?)?;
    Ok(())
}
