//! Shared test helpers: reproducible random inputs, dot products in f64,
//! the dot-product (adjoint) test and the central finite-difference check.
//!
//! Built for tests only (`cfg(test)`, or the `testing` feature that the other workspace crates
//! turn on in their dev-dependencies), so the helpers stay out of the library API.

use crate::float::Real;
use crate::noise::{gaussian, uniform};

/// f64 dot product of two equally long slices (any [`Real`]).
pub fn dot<T: Real>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    a.iter().zip(b).map(|(x, y)| x.f64() * y.f64()).sum()
}

/// f64 dot product of two particle arrays.
pub fn dot3<T: Real>(a: &[[T; 3]], b: &[[T; 3]]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot3: lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (0..3).map(|d| x[d].f64() * y[d].f64()).sum::<f64>())
        .sum()
}

/// A reproducible unit-Gaussian field of `len` values from `seed`.
pub fn rand_field<T: Real>(len: usize, seed: u64) -> Vec<T> {
    (0..len as u64).map(|i| T::of(gaussian(seed, i))).collect()
}

/// Reproducible displacements for an n³ lattice, uniform in [−amp, amp] Mpc/h per component.
pub fn rand_disp<T: Real>(n: usize, amp: f64, seed: u64) -> Vec<[T; 3]> {
    (0..(n * n * n) as u64)
        .map(|i| std::array::from_fn(|d| T::of(amp * (2.0 * uniform(seed ^ 0x5bd1e995, 3 * i + d as u64) - 1.0))))
        .collect()
}

/// Asserts `|a − b| ≤ rtol·max(|a|, |b|) + atol` with a message naming `what`.
#[track_caller]
pub fn assert_close(a: f64, b: f64, rtol: f64, atol: f64, what: &str) {
    let tol = rtol * a.abs().max(b.abs()) + atol;
    assert!(
        (a - b).abs() <= tol,
        "{what}: {a:.15e} vs {b:.15e} (diff {:.3e}, tol {tol:.3e})",
        (a - b).abs()
    );
}

/// Dot-product test of a linear operator `A` and its claimed transpose `At`:
/// `⟨A v, w⟩ = ⟨v, Aᵀ w⟩` for reproducible random `v`, `w`, to relative `rtol`. Returns the
/// relative error.
#[track_caller]
pub fn dot_test<A, At>(n_in: usize, n_out: usize, a: A, at: At, rtol: f64, seed: u64) -> f64
where
    A: Fn(&[f64]) -> Vec<f64>,
    At: Fn(&[f64]) -> Vec<f64>,
{
    let v = rand_field::<f64>(n_in, seed);
    let w = rand_field::<f64>(n_out, seed + 1);
    let av = a(&v);
    let atw = at(&w);
    assert_eq!(av.len(), n_out, "dot_test: A output length");
    assert_eq!(atw.len(), n_in, "dot_test: Aᵀ output length");
    let lhs = dot(&av, &w);
    let rhs = dot(&v, &atw);
    let rel = (lhs - rhs).abs() / lhs.abs().max(rhs.abs()).max(1e-300);
    assert!(
        rel <= rtol,
        "dot-product test: <Av,w> = {lhs:.15e}, <v,Aᵀw> = {rhs:.15e}, rel {rel:.3e} > {rtol:.1e}"
    );
    rel
}

/// Central finite-difference check of a gradient of a scalar function of particle
/// displacements along a random direction `u`: `(f(s+εu) − f(s−εu))/2ε ≈ ⟨∇f, u⟩`, with ε = 1e-6
/// (Mpc/h). Asserts relative error
/// ≤ `rtol` and returns it.
#[track_caller]
pub fn fd_check<F>(f: &F, s: &[[f64; 3]], grad: &[[f64; 3]], rtol: f64, seed: u64) -> f64
where
    F: Fn(&[[f64; 3]]) -> f64,
{
    let n = s.len();
    let dir: Vec<[f64; 3]> = (0..n as u64)
        .map(|i| std::array::from_fn(|d| gaussian(seed, 3 * i + d as u64)))
        .collect();
    let eps = 1e-6;
    let shift = |sign: f64| -> Vec<[f64; 3]> {
        s.iter()
            .zip(&dir)
            .map(|(a, b)| std::array::from_fn(|d| a[d] + sign * eps * b[d]))
            .collect()
    };
    let fd = (f(&shift(1.0)) - f(&shift(-1.0))) / (2.0 * eps);
    let an = dot3(grad, &dir);
    let rel = (fd - an).abs() / fd.abs().max(an.abs()).max(1e-300);
    assert!(
        rel <= rtol,
        "finite differences: fd = {fd:.12e}, adjoint = {an:.12e}, rel {rel:.3e} > {rtol:.1e}"
    );
    rel
}

/// Rows of a reference table from `crates/pm-core/tests/reference` (the CLASS/CCL tables):
/// whitespace-separated numbers, `#` comments and blank lines skipped.
#[track_caller]
pub fn reference_table(name: &str) -> Vec<Vec<f64>> {
    let path = format!("{}/tests/reference/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_whitespace()
                .map(|x| x.parse().unwrap_or_else(|e| panic!("{path}: {x}: {e}")))
                .collect()
        })
        .collect()
}

/// Central finite-difference check of the gradient `grad` of a scalar function `f` of a flat
/// array (e.g. a mesh) at `x`, along a reproducible unit-Gaussian direction `u`:
/// `(f(x+εu) − f(x−εu))/2ε ≈ ⟨grad, u⟩` with step `eps` in the units of `x`. Asserts relative
/// error ≤ `rtol` and returns it.
#[track_caller]
pub fn fd_check_flat<F>(f: &F, x: &[f64], grad: &[f64], eps: f64, rtol: f64, seed: u64) -> f64
where
    F: Fn(&[f64]) -> f64,
{
    assert_eq!(x.len(), grad.len(), "fd_check_flat: lengths differ");
    let dir = rand_field::<f64>(x.len(), seed);
    let shift = |sign: f64| -> Vec<f64> { x.iter().zip(&dir).map(|(a, b)| a + sign * eps * b).collect() };
    let fd = (f(&shift(1.0)) - f(&shift(-1.0))) / (2.0 * eps);
    let an = dot(grad, &dir);
    let rel = (fd - an).abs() / fd.abs().max(an.abs()).max(1e-300);
    assert!(
        rel <= rtol,
        "finite differences: fd = {fd:.12e}, adjoint = {an:.12e}, rel {rel:.3e} > {rtol:.1e}"
    );
    rel
}
