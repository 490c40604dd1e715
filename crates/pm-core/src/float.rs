//! The sealed floating-point trait used by every field and particle array.
//!
//! Precision policy (docs/conventions.md §3): fields and particles are `f32` by default and `f64` for
//! verification (`precision = "f64"`); cosmology, time-step coefficients and all reductions
//! (P(k) bins, losses, dot products) are computed in `f64` whatever `T` is.

use num_complex::Complex;
use rustfft::num_traits::{Float, FloatConst, NumAssign};
use std::fmt::{Debug, Display};
use std::iter::Sum;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A real scalar for fields and particles: `f32` or `f64` (sealed).
pub trait Real:
    sealed::Sealed + Float + FloatConst + NumAssign + rustfft::FftNum + Default + Sum + Debug + Display + Send + Sync + 'static
{
    /// Name used in configs and file headers: `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(x: f64) -> Self;
    /// Widens to `f64` (exact).
    fn f64(self) -> f64;
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}

/// Complex number over a [`Real`].
pub type C<T> = Complex<T>;
