//! What is differentiated: a sum of losses, each read at a step boundary of the run (the final
//! state, or any snapshot time), `L = Σ_t L_t(s(a_t), p(a_t))` (docs/adjoint.md eq. R6).

use crate::{Error, Result};
use pm_core::float::Real;
use pm_core::loss::Loss;

/// A sum of losses on the particle state at given scale factors.
///
/// Each time must be a step boundary of the run: `time.a_start`, `time.a_stop` or one of
/// `time.snapshots` (the stepper ends a step at every snapshot). Several losses may share a time.
pub struct Objective<'a, T: Real> {
    terms: Vec<(f64, &'a dyn Loss<T>)>,
}

impl<'a, T: Real> Objective<'a, T> {
    /// An objective with no terms (add them with [`Objective::at`] / [`Objective::at_end`]).
    pub fn new() -> Self {
        Objective { terms: Vec::new() }
    }
    /// The common case: one loss on the final state at `time.a_stop`.
    pub fn final_state(loss: &'a dyn Loss<T>) -> Self {
        Objective::new().at_end(loss)
    }
    /// Adds `loss` on the final state at `time.a_stop`.
    pub fn at_end(mut self, loss: &'a dyn Loss<T>) -> Self {
        self.terms.push((f64::INFINITY, loss));
        self
    }
    /// Adds `loss` on the state at scale factor `a` (a step boundary; checked when the objective
    /// is used).
    pub fn at(mut self, a: f64, loss: &'a dyn Loss<T>) -> Self {
        self.terms.push((a, loss));
        self
    }
    /// Number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }
    /// True without terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Maps every term to the index of its step boundary in `bounds`, or explains which time is
    /// not a boundary. Returns, per boundary, the losses read there.
    pub(crate) fn per_boundary(&self, bounds: &[f64]) -> Result<Vec<Vec<&'a dyn Loss<T>>>> {
        if self.terms.is_empty() {
            return Err(Error::EmptyObjective);
        }
        let mut out: Vec<Vec<&'a dyn Loss<T>>> = vec![Vec::new(); bounds.len()];
        let last = bounds.len() - 1;
        let tol = 1e-9 * (bounds[last] - bounds[0]);
        for &(a, loss) in &self.terms {
            let j = if a == f64::INFINITY {
                Some(last)
            } else {
                bounds.iter().position(|b| (b - a).abs() <= tol)
            };
            match j {
                Some(j) => out[j].push(loss),
                None => {
                    return Err(Error::LossTime {
                        a,
                        a_start: bounds[0],
                        a_stop: bounds[last],
                    })
                }
            }
        }
        Ok(out)
    }
}

impl<T: Real> Default for Objective<'_, T> {
    fn default() -> Self {
        Self::new()
    }
}
