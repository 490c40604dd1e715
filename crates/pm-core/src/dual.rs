//! Forward-mode dual numbers and the sealed [`Scalar`] trait that the cosmology code is generic
//! over.
//!
//! **What is differentiated.** A [`Dual<N>`] carries a value `x` and its gradient `∂x/∂θ_j`
//! (j < N) with respect to N input parameters. Every operation applies the chain rule to the
//! gradient (docs/adjoint.md eq. T1), so running f64 code on duals seeded with
//! [`Dual::variable`] yields the exact derivative of that discrete computation (not of the
//! continuous equations it approximates).
//!
//! **The scalar trait.** [`Scalar`] is implemented for `f64` and `Dual<N>` only (sealed). The
//! background (`cosmology.rs`), the growth ODE integration and interpolation (`growth.rs`), the
//! Eisenstein–Hu fit and σ_8 / A_s normalisations (`linear.rs`) and the FastPM kick/drift factors
//! (`leapfrog.rs`) are written once, generic over it. For `f64` the generic code performs exactly
//! the floating-point operations the earlier f64-only code did, so f64 results are bit-identical;
//! the value part of a dual is computed by the same f64 operations, so it equals the f64 result
//! bit for bit too.
//!
//! Formulas are written with the generic operand on the left (`x * 1.5`, not `1.5 * x`), and
//! constants on the left of a non-commutative operation are lifted with `S::from` (`S::from(1.0)
//! - x`). IEEE addition and multiplication are commutative, so `x * 1.5` rounds exactly as
//! `1.5 * x` did.
//!
//! **Why not the `num-dual` crate.** Its current release (0.15) needs Rust 1.89 while the
//! workspace declares `rust-version = 1.80`, and its gradient type (`DualVec`) is built on
//! `nalgebra` (default feature), a large dependency to compile on the shared build machines for
//! the nine-element gradients used here. The type below is ~300 lines, has no dependencies and is
//! checked against central finite differences in its tests.
//!
//! Comparisons (`PartialEq`, `PartialOrd`) of duals look at the value only (as `num-dual` does):
//! they are what a branch in primal code means.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl<const N: usize> Sealed for super::Dual<N> {}
}

/// A real scalar of the cosmology code: `f64`, or a [`Dual`] carrying derivatives with respect to
/// the cosmological parameters (sealed).
///
/// Arithmetic with `f64` is available with the scalar on the left (`x + 1.0`, `x * 2.0`,
/// `x / 3.0`, `x - 1.0`); lift a constant with `S::from(c)` where it must stand on the left of
/// `-` or `/`. Branches in generic code look at [`Scalar::re`].
pub trait Scalar:
    sealed::Sealed
    + Copy
    + Debug
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + 'static
    + From<f64>
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
{
    /// The value (real part).
    fn re(self) -> f64;
    /// The same tangent with the value replaced by `value` (for `f64`: `value`). Used where the
    /// primal code returns an exact constant but the derivative of the formula it stands for is
    /// not zero.
    fn with_value(self, value: f64) -> Self;
    /// True if the value and every derivative are finite.
    fn is_finite(self) -> bool;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Cube root.
    fn cbrt(self) -> Self;
    /// Exponential.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Sine (radians).
    fn sin(self) -> Self;
    /// Cosine (radians).
    fn cos(self) -> Self;
    /// Integer power, as `f64::powi`.
    fn powi(self, n: i32) -> Self;
    /// Power with a constant exponent, as `f64::powf`.
    fn powf(self, e: f64) -> Self;
    /// Power with a differentiable exponent: `self^e` (`self > 0`).
    fn pow(self, e: Self) -> Self;
    /// A constant base raised to a differentiable exponent: `base^e` (`base > 0`), as
    /// `base.powf(e)` for `f64`.
    fn pow_base(base: f64, e: Self) -> Self;
}

impl Scalar for f64 {
    #[inline(always)]
    fn re(self) -> f64 {
        self
    }
    #[inline(always)]
    fn with_value(self, value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn cbrt(self) -> Self {
        f64::cbrt(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn sin(self) -> Self {
        f64::sin(self)
    }
    #[inline(always)]
    fn cos(self) -> Self {
        f64::cos(self)
    }
    #[inline(always)]
    fn powi(self, n: i32) -> Self {
        f64::powi(self, n)
    }
    #[inline(always)]
    fn powf(self, e: f64) -> Self {
        f64::powf(self, e)
    }
    #[inline(always)]
    fn pow(self, e: Self) -> Self {
        f64::powf(self, e)
    }
    #[inline(always)]
    fn pow_base(base: f64, e: Self) -> Self {
        f64::powf(base, e)
    }
}

/// A forward-mode dual number: a value and its gradient with respect to `N` parameters.
///
/// `grad[j]` = ∂value/∂θ_j in the units of the value per unit of θ_j. Operations propagate the
/// gradient by the chain rule (docs/adjoint.md eq. T1); the value is computed by the same `f64`
/// operation as undifferentiated code. Comparisons look at the value only.
#[derive(Clone, Copy, Debug)]
pub struct Dual<const N: usize> {
    /// The value.
    pub value: f64,
    /// ∂value/∂θ_j for j = 0..N.
    pub grad: [f64; N],
}

impl<const N: usize> Dual<N> {
    /// A value with the given gradient.
    #[inline]
    pub fn new(value: f64, grad: [f64; N]) -> Self {
        Dual { value, grad }
    }
    /// A constant (zero gradient).
    #[inline]
    pub fn constant(value: f64) -> Self {
        Dual { value, grad: [0.0; N] }
    }
    /// The independent variable θ_`index` with value `value` (gradient = unit vector `index`).
    #[track_caller]
    pub fn variable(value: f64, index: usize) -> Self {
        assert!(index < N, "Dual::variable: index {index} >= {N}");
        let mut grad = [0.0; N];
        grad[index] = 1.0;
        Dual { value, grad }
    }
    /// Chain rule for a unary function with value `v` and derivative `d` at `self.value`.
    #[inline(always)]
    fn chain(self, v: f64, d: f64) -> Self {
        Dual {
            value: v,
            grad: self.grad.map(|g| d * g),
        }
    }
    /// The logarithmic gradient ∂ln|value|/∂θ_j = grad_j / value.
    pub fn dln(&self) -> [f64; N] {
        self.grad.map(|g| g / self.value)
    }
}

impl<const N: usize> From<f64> for Dual<N> {
    #[inline]
    fn from(value: f64) -> Self {
        Dual::constant(value)
    }
}

impl<const N: usize> PartialEq for Dual<N> {
    /// Compares values only.
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<const N: usize> PartialOrd for Dual<N> {
    /// Compares values only.
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}

#[inline(always)]
fn zip<const N: usize>(a: &[f64; N], b: &[f64; N], f: impl Fn(f64, f64) -> f64) -> [f64; N] {
    std::array::from_fn(|j| f(a[j], b[j]))
}

impl<const N: usize> Add for Dual<N> {
    type Output = Self;
    #[inline]
    fn add(self, o: Self) -> Self {
        Dual {
            value: self.value + o.value,
            grad: zip(&self.grad, &o.grad, |a, b| a + b),
        }
    }
}

impl<const N: usize> Sub for Dual<N> {
    type Output = Self;
    #[inline]
    fn sub(self, o: Self) -> Self {
        Dual {
            value: self.value - o.value,
            grad: zip(&self.grad, &o.grad, |a, b| a - b),
        }
    }
}

impl<const N: usize> Mul for Dual<N> {
    type Output = Self;
    /// Product rule: d(xy) = y dx + x dy.
    #[inline]
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn mul(self, o: Self) -> Self {
        let (x, y) = (self.value, o.value);
        Dual {
            value: x * y,
            grad: zip(&self.grad, &o.grad, |a, b| a * y + x * b),
        }
    }
}

impl<const N: usize> Div for Dual<N> {
    type Output = Self;
    #[inline]
    fn div(self, o: Self) -> Self {
        let (x, y) = (self.value, o.value);
        let inv = 1.0 / y;
        let q = x / y;
        Dual {
            value: q,
            grad: zip(&self.grad, &o.grad, |a, b| (a - q * b) * inv),
        }
    }
}

impl<const N: usize> Neg for Dual<N> {
    type Output = Self;
    #[inline]
    fn neg(self) -> Self {
        Dual {
            value: -self.value,
            grad: self.grad.map(|g| -g),
        }
    }
}

impl<const N: usize> Add<f64> for Dual<N> {
    type Output = Self;
    #[inline]
    fn add(self, c: f64) -> Self {
        Dual {
            value: self.value + c,
            grad: self.grad,
        }
    }
}

impl<const N: usize> Sub<f64> for Dual<N> {
    type Output = Self;
    #[inline]
    fn sub(self, c: f64) -> Self {
        Dual {
            value: self.value - c,
            grad: self.grad,
        }
    }
}

impl<const N: usize> Mul<f64> for Dual<N> {
    type Output = Self;
    #[inline]
    fn mul(self, c: f64) -> Self {
        Dual {
            value: self.value * c,
            grad: self.grad.map(|g| g * c),
        }
    }
}

impl<const N: usize> Div<f64> for Dual<N> {
    type Output = Self;
    #[inline]
    fn div(self, c: f64) -> Self {
        Dual {
            value: self.value / c,
            grad: self.grad.map(|g| g / c),
        }
    }
}

impl<const N: usize> Add<Dual<N>> for f64 {
    type Output = Dual<N>;
    #[inline]
    fn add(self, x: Dual<N>) -> Dual<N> {
        x + self
    }
}

impl<const N: usize> Sub<Dual<N>> for f64 {
    type Output = Dual<N>;
    #[inline]
    fn sub(self, x: Dual<N>) -> Dual<N> {
        Dual::constant(self) - x
    }
}

impl<const N: usize> Mul<Dual<N>> for f64 {
    type Output = Dual<N>;
    #[inline]
    fn mul(self, x: Dual<N>) -> Dual<N> {
        x * self
    }
}

impl<const N: usize> Div<Dual<N>> for f64 {
    type Output = Dual<N>;
    #[inline]
    fn div(self, x: Dual<N>) -> Dual<N> {
        Dual::constant(self) / x
    }
}

impl<const N: usize> Scalar for Dual<N> {
    #[inline(always)]
    fn re(self) -> f64 {
        self.value
    }
    #[inline]
    fn with_value(self, value: f64) -> Self {
        Dual { value, grad: self.grad }
    }
    fn is_finite(self) -> bool {
        self.value.is_finite() && self.grad.iter().all(|g| g.is_finite())
    }
    #[inline]
    fn sqrt(self) -> Self {
        let v = self.value.sqrt();
        self.chain(v, 0.5 / v)
    }
    #[inline]
    fn cbrt(self) -> Self {
        let v = self.value.cbrt();
        self.chain(v, 1.0 / (3.0 * v * v))
    }
    #[inline]
    fn exp(self) -> Self {
        let v = self.value.exp();
        self.chain(v, v)
    }
    #[inline]
    fn ln(self) -> Self {
        self.chain(self.value.ln(), 1.0 / self.value)
    }
    #[inline]
    fn sin(self) -> Self {
        let (s, c) = self.value.sin_cos();
        self.chain(s, c)
    }
    #[inline]
    fn cos(self) -> Self {
        let (s, c) = self.value.sin_cos();
        self.chain(c, -s)
    }
    #[inline]
    fn powi(self, n: i32) -> Self {
        let d = if n == 0 { 0.0 } else { n as f64 * self.value.powi(n - 1) };
        self.chain(self.value.powi(n), d)
    }
    #[inline]
    fn powf(self, e: f64) -> Self {
        let d = if e == 0.0 { 0.0 } else { e * self.value.powf(e - 1.0) };
        self.chain(self.value.powf(e), d)
    }
    #[inline]
    fn pow(self, e: Self) -> Self {
        // d(x^y) = y x^(y−1) dx + x^y ln x dy
        let (x, y) = (self.value, e.value);
        let v = x.powf(y);
        let dx = if y == 0.0 { 0.0 } else { y * x.powf(y - 1.0) };
        let dy = if e.grad.iter().all(|&g| g == 0.0) { 0.0 } else { v * x.ln() };
        Dual {
            value: v,
            grad: zip(&self.grad, &e.grad, |a, b| dx * a + dy * b),
        }
    }
    #[inline]
    fn pow_base(base: f64, e: Self) -> Self {
        let v = base.powf(e.value);
        e.chain(v, v * base.ln())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type D2 = Dual<2>;

    /// Central differences of f at (x, y) against the dual gradient, both components.
    fn check(name: &str, f: impl Fn(D2, D2) -> D2, g: impl Fn(f64, f64) -> f64, x: f64, y: f64) -> f64 {
        let d = f(D2::variable(x, 0), D2::variable(y, 1));
        assert_eq!(d.value.to_bits(), g(x, y).to_bits(), "{name}: value differs from the f64 code");
        let mut worst: f64 = 0.0;
        for j in 0..2 {
            let h = 1e-4 * if j == 0 { x.abs() } else { y.abs() };
            let (xp, yp, xm, ym) = if j == 0 { (x + h, y, x - h, y) } else { (x, y + h, x, y - h) };
            // Richardson extrapolation of two central differences (error O(h⁴)).
            let c1 = (g(xp, yp) - g(xm, ym)) / (2.0 * h);
            let (xp2, yp2, xm2, ym2) = if j == 0 {
                (x + 2.0 * h, y, x - 2.0 * h, y)
            } else {
                (x, y + 2.0 * h, x, y - 2.0 * h)
            };
            let c2 = (g(xp2, yp2) - g(xm2, ym2)) / (4.0 * h);
            let fd = (4.0 * c1 - c2) / 3.0;
            let err = (fd - d.grad[j]).abs() / fd.abs().max(d.grad[j].abs()).max(1e-12);
            // Measured worst 7.30e-9 over every op (2026-12-08); tolerance ≈3×.
            assert!(err < 2.2e-8, "{name} d/d{j}: dual {} vs fd {fd} ({err:e})", d.grad[j]);
            worst = worst.max(err);
        }
        worst
    }

    #[test]
    fn dual_ops_match_finite_differences() {
        let mut worst: f64 = 0.0;
        for &(x, y) in &[(0.7, 1.3), (2.5, -0.4), (0.05, 3.0)] {
            worst = worst.max(check("add", |a, b| a + b, |a, b| a + b, x, y));
            worst = worst.max(check("sub", |a, b| a - b, |a, b| a - b, x, y));
            worst = worst.max(check("mul", |a, b| a * b, |a, b| a * b, x, y));
            worst = worst.max(check("div", |a, b| a / b, |a, b| a / b, x, y));
            worst = worst.max(check("neg", |a, b| -a * b, |a, b| -a * b, x, y));
            worst = worst.max(check(
                "f64 ops",
                |a, b| (a + 1.5) * 2.0 - b / 3.0 - 0.5,
                |a, b| (a + 1.5) * 2.0 - b / 3.0 - 0.5,
                x,
                y,
            ));
            worst = worst.max(check(
                "lhs f64",
                |a, b| 2.0 - a + 3.0 / b + 2.0 * a + 1.0 + b,
                |a, b| 2.0 - a + 3.0 / b + 2.0 * a + 1.0 + b,
                x,
                y,
            ));
            worst = worst.max(check("sqrt", |a, b| (a * a + b * b).sqrt(), |a, b| (a * a + b * b).sqrt(), x, y));
            worst = worst.max(check("cbrt", |a, b| (a * b).cbrt(), |a, b| (a * b).cbrt(), x, y));
            worst = worst.max(check("exp", |a, b| (a * b).exp(), |a, b| (a * b).exp(), x, y));
            worst = worst.max(check("ln", |a, b| (a * a + b).ln(), |a, b| (a * a + b).ln(), x, y.abs()));
            worst = worst.max(check("sin", |a, b| (a * b).sin(), |a, b| (a * b).sin(), x, y));
            worst = worst.max(check("cos", |a, b| (a + b).cos(), |a, b| (a + b).cos(), x, y));
            worst = worst.max(check(
                "powi",
                |a, b| (a * b).powi(3) + a.powi(-2),
                |a, b| (a * b).powi(3) + a.powi(-2),
                x,
                y,
            ));
            worst = worst.max(check("powf", |a, b| a.powf(1.08) * b, |a, b| a.powf(1.08) * b, x, y));
            worst = worst.max(check("pow", |a, b| a.pow(b), |a: f64, b| a.powf(b), x, y));
            worst = worst.max(check(
                "pow_base",
                |a, b| D2::pow_base(0.37, a * b),
                |a, b| 0.37f64.powf(a * b),
                x,
                y,
            ));
        }
        eprintln!("dual ops: worst rel err vs Richardson central differences {worst:.2e}");
    }

    #[test]
    fn comparisons_and_helpers() {
        let a = D2::variable(1.0, 0);
        let b = D2::new(1.0, [5.0, 6.0]);
        assert!(a == b && a <= b && a >= b);
        assert!(D2::constant(0.5) < a);
        assert_eq!(a.with_value(3.0).grad, [1.0, 0.0]);
        assert_eq!(Scalar::with_value(2.0f64, 3.0), 3.0);
        assert!(!Scalar::is_finite(D2::new(1.0, [f64::NAN, 0.0])));
        assert_eq!(D2::new(2.0, [4.0, -2.0]).dln(), [2.0, -1.0]);
        // A constant exponent leaves no ln x term (finite even for x <= 0).
        let p = D2::variable(-2.0, 0).pow(D2::constant(2.0));
        assert_eq!((p.value, p.grad), (4.0, [-4.0, 0.0]));
    }
}
