//! Where the work runs: with the GIL released, in a rayon pool of `run.threads`, and with any
//! Rust panic caught and turned into a Python `RuntimeError` (a panic must not unwind across the
//! FFI boundary, and a `pyo3_runtime.PanicException` derives from `BaseException`, which
//! `except Exception` does not catch).
//!
//! Results do not depend on the thread count (pm-core's reductions are in a fixed order), so a
//! call gives the same bits as the CLI with any `run.threads`.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

/// The rayon pool of `threads` workers, built once per count and kept (pools are cheap to keep
/// and slow to build per call).
fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| crate::errors::invalid("run.threads", threads, format!("a thread count the system can start ({e})")))?;
    let p = Arc::new(p);
    pools.insert(threads, p.clone());
    Ok(p)
}

/// The worker count for `run.threads = requested`: 0 (rayon's global pool, every core) stays 0,
/// and a request above the available cores is capped at them, as the CLI does
/// (`cosmograd::cli::thread_count`; results do not depend on it).
pub fn thread_count(requested: usize) -> usize {
    let available = std::thread::available_parallelism().map_or(0, |n| n.get());
    if requested > available && available > 0 {
        available
    } else {
        requested
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Runs `f` with the GIL released in the pool of `run.threads = threads` (0: the global pool),
/// turning a panic into a `RuntimeError`. `f` must not touch Python objects (the compiler checks:
/// it is `Send`).
pub fn detached<R, F>(py: Python<'_>, threads: usize, f: F) -> PyResult<R>
where
    R: Send,
    F: FnOnce() -> PyResult<R> + Send,
{
    py.detach(move || {
        let guarded = move || catch_unwind(AssertUnwindSafe(f));
        let outcome = match thread_count(threads) {
            0 => guarded(),
            t => pool(t)?.install(guarded),
        };
        outcome.unwrap_or_else(|payload| {
            Err(PyRuntimeError::new_err(format!(
                "cosmograd internal error (a Rust panic; please report it): {}",
                panic_message(payload.as_ref())
            )))
        })
    })
}

/// Panics inside [`detached`] (for the test that a Rust panic reaches Python as a
/// `RuntimeError`; not part of the API).
#[pyfunction]
pub fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    detached(py, 0, || -> PyResult<()> {
        use rayon::prelude::*;
        // Inside a rayon worker, as a panic in the library would be.
        (0..4).into_par_iter().for_each(|i| {
            if i == 3 {
                panic!("deliberate panic for the test");
            }
        });
        Ok(())
    })
}
