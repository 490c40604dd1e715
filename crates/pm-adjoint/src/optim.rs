//! L-BFGS with a strong-Wolfe line search, for minimising a loss whose gradient comes from
//! [`value_and_grad`](crate::value_and_grad) (reconstruction of the white noise, cosmology fits).
//!
//! **Direction** (Nocedal & Wright 2006, *Numerical Optimization*, Alg. 7.4, the two-loop
//! recursion): `d = −H g` with H the L-BFGS inverse-Hessian estimate built from the last
//! `memory` pairs `s = x₊ − x`, `y = g₊ − g` (pairs with `sᵀy ≤ ε‖s‖‖y‖` are skipped so H stays
//! positive definite) and the initial scaling `H₀ = (sᵀy / yᵀy) I` (N&W eq. 7.20).
//!
//! **Step** (N&W Alg. 3.5 and 3.6 with cubic interpolation, the same bracketing/zoom as
//! More & Thuente 1994 without their modified function): α satisfies the strong Wolfe conditions
//! `f(x+αd) ≤ f(x) + c₁ α gᵀd` and `|g(x+αd)ᵀd| ≤ c₂ |gᵀd|`. The first is what makes the loss
//! history **strictly decreasing**; the second makes `sᵀy > 0`. A non-finite loss at a trial step
//! (e.g. particles running away) counts as "too long" and the step is shortened.
//!
//! Why hand-written rather than the `argmin` crate: the loss and gradient come from a fallible
//! simulation (`Result`), the parameter vectors are 10⁵–10⁷ long and must not be copied into a
//! generic math backend each iteration, and the CLI needs a per-iteration callback for its progress
//! bar and loss log; the algorithm is ~200 lines and tested below against analytic minima.

use crate::{Error, Result};

/// Settings of [`lbfgs`].
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsOptions {
    /// Number of (s, y) pairs kept (the rank of the Hessian estimate); 5–20 is typical.
    pub memory: usize,
    /// Maximum number of iterations (accepted steps).
    pub max_iterations: usize,
    /// Stop when ‖g‖₂ ≤ `grad_tol` · max(1, ‖x‖₂).
    pub grad_tol: f64,
    /// Stop when the relative decrease of the loss over one iteration,
    /// (f_prev − f)/max(|f|, |f_prev|, 1), is below `f_tol`.
    pub f_tol: f64,
    /// Sufficient-decrease constant c₁ of the Wolfe conditions (0 < c₁ < c₂ < 1).
    pub c1: f64,
    /// Curvature constant c₂ of the strong Wolfe conditions.
    pub c2: f64,
    /// Maximum loss-and-gradient evaluations in one line search.
    pub max_line_evals: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            memory: 10,
            max_iterations: 100,
            grad_tol: 1e-8,
            f_tol: 1e-12,
            c1: 1e-4,
            c2: 0.9,
            max_line_evals: 20,
        }
    }
}

impl LbfgsOptions {
    /// The defaults with `max_iterations` iterations.
    pub fn with_iterations(max_iterations: usize) -> Self {
        LbfgsOptions {
            max_iterations,
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<()> {
        if self.memory == 0 {
            return Err(Error::Options {
                field: "LbfgsOptions.memory",
                value: 0.to_string(),
                expected: "at least 1 stored pair".into(),
            });
        }
        if !(self.c1 > 0.0 && self.c1 < self.c2 && self.c2 < 1.0) {
            return Err(Error::Options {
                field: "LbfgsOptions.c1, c2",
                value: format!("{}, {}", self.c1, self.c2),
                expected: "0 < c1 < c2 < 1 (e.g. 1e-4 and 0.9)".into(),
            });
        }
        if self.max_line_evals < 2 {
            return Err(Error::Options {
                field: "LbfgsOptions.max_line_evals",
                value: self.max_line_evals.to_string(),
                expected: "at least 2".into(),
            });
        }
        if self.grad_tol.is_nan() || self.grad_tol < 0.0 || self.f_tol.is_nan() || self.f_tol < 0.0 {
            return Err(Error::Options {
                field: "LbfgsOptions.grad_tol, f_tol",
                value: format!("{}, {}", self.grad_tol, self.f_tol),
                expected: "tolerances ≥ 0".into(),
            });
        }
        Ok(())
    }
}

/// Why [`lbfgs`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// ‖g‖ fell below the gradient tolerance.
    GradientTolerance,
    /// The loss decreased by less than the relative tolerance in one iteration.
    LossTolerance,
    /// `max_iterations` were done.
    MaxIterations,
    /// No step satisfying the Wolfe conditions was found within `max_line_evals` evaluations
    /// (typically: the optimum is reached to rounding precision). The last accepted point is kept.
    LineSearchFailed,
    /// The callback asked to stop.
    Callback,
}

/// What the per-iteration callback of [`lbfgs`] sees.
#[derive(Clone, Copy, Debug)]
pub struct Iteration<'a> {
    /// Iteration number (1-based; 0 is the starting point).
    pub iteration: usize,
    /// Loss at `x`.
    pub loss: f64,
    /// ‖g‖₂ at `x`.
    pub grad_norm: f64,
    /// Accepted step length α along the search direction.
    pub step: f64,
    /// Loss-and-gradient evaluations so far.
    pub evaluations: usize,
    /// The current point.
    pub x: &'a [f64],
}

/// The result of [`lbfgs`].
#[derive(Clone, Debug)]
pub struct LbfgsResult {
    /// The last accepted point (the best one: the loss decreases at every iteration).
    pub x: Vec<f64>,
    /// Loss at `x`.
    pub loss: f64,
    /// Gradient at `x`.
    pub grad: Vec<f64>,
    /// Accepted iterations.
    pub iterations: usize,
    /// Loss-and-gradient evaluations (line-search trials included).
    pub evaluations: usize,
    /// Loss at the start and after each iteration (length `iterations + 1`, strictly decreasing).
    pub history: Vec<f64>,
    /// Why it stopped.
    pub stop: StopReason,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// One evaluated trial point of the line search.
struct Trial {
    alpha: f64,
    f: f64,
    /// Directional derivative gᵀd at the trial point.
    df: f64,
    g: Vec<f64>,
}

/// Minimiser of the cubic interpolating (a, fa, da) and (b, fb, db), safeguarded into the
/// interval between a and b (N&W eq. 3.59); falls back to bisection.
fn cubic_min(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    let mid = 0.5 * (a + b);
    if !disc.is_finite() || disc < 0.0 {
        return mid;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    // Keep away from the ends so the bracket shrinks.
    let margin = 0.1 * (hi - lo);
    if t.is_finite() && t > lo + margin && t < hi - margin {
        t
    } else {
        mid
    }
}

/// Minimises `f` from `x0` by L-BFGS with a strong-Wolfe line search (see the module docs).
///
/// `f(x)` returns the loss and its gradient (same length as x), or an error that stops the
/// optimisation and is returned. `callback` is called at the start (iteration 0) and after every
/// accepted step; returning `false` stops with [`StopReason::Callback`].
///
/// # Errors
/// Invalid options ([`Error::Options`]), a starting point where the loss or gradient is not
/// finite ([`pm_core::Error::NonFinite`]), a gradient of the wrong length
/// ([`pm_core::Error::Shape`]), or any error of `f`.
pub fn lbfgs<F, CB>(mut f: F, x0: Vec<f64>, opts: &LbfgsOptions, mut callback: CB) -> Result<LbfgsResult>
where
    F: FnMut(&[f64]) -> Result<(f64, Vec<f64>)>,
    CB: FnMut(&Iteration<'_>) -> bool,
{
    opts.validate()?;
    let n = x0.len();
    let mut x = x0;
    let (mut fx, mut g) = f(&x)?;
    let mut evaluations = 1usize;
    if g.len() != n {
        return Err(pm_core::Error::Shape {
            what: "gradient returned to lbfgs".into(),
            found: format!("{} values", g.len()),
            expected: format!("{n}, the length of x"),
        }
        .into());
    }
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err(pm_core::Error::NonFinite {
            what: "loss or gradient at the starting point".into(),
            detail: format!("loss {fx}; start from a point where the model is finite"),
        }
        .into());
    }
    let mut history = vec![fx];
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let mut iterations = 0usize;
    let mut gn = norm(&g);
    let mut keep_going = callback(&Iteration {
        iteration: 0,
        loss: fx,
        grad_norm: gn,
        step: 0.0,
        evaluations,
        x: &x,
    });
    let stop = loop {
        if !keep_going {
            break StopReason::Callback;
        }
        if gn <= opts.grad_tol * norm(&x).max(1.0) {
            break StopReason::GradientTolerance;
        }
        if iterations >= opts.max_iterations {
            break StopReason::MaxIterations;
        }
        // Two-loop recursion (N&W Alg. 7.4): d = −H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = match pairs.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0,
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut d: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut dg = dot(&d, &g);
        if dg.is_nan() || dg >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            pairs.clear();
            d = g.iter().map(|v| -v).collect();
            dg = -gn * gn;
        }
        // First step: unit step scaled so that ‖αd‖ = 1 (no curvature known yet); then α = 1.
        let alpha0 = if pairs.is_empty() { (1.0 / norm(&d)).min(1.0) } else { 1.0 };
        let mut eval = |alpha: f64| -> Result<Trial> {
            let xt: Vec<f64> = x.iter().zip(&d).map(|(xi, di)| xi + alpha * di).collect();
            let (ft, gt) = f(&xt)?;
            evaluations += 1;
            let df = if ft.is_finite() { dot(&gt, &d) } else { f64::NAN };
            let ok = ft.is_finite() && df.is_finite();
            Ok(Trial {
                alpha,
                f: if ok { ft } else { f64::INFINITY },
                df: if ok { df } else { f64::NAN },
                g: gt,
            })
        };
        let found = strong_wolfe(&mut eval, fx, dg, alpha0, opts)?;
        let Some(t) = found else {
            break StopReason::LineSearchFailed;
        };
        let s: Vec<f64> = d.iter().map(|v| t.alpha * v).collect();
        let y: Vec<f64> = t.g.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * norm(&s) * norm(&y) {
            if pairs.len() == opts.memory {
                pairs.pop_front();
            }
            pairs.push_back((s.clone(), y, 1.0 / sy));
        }
        x.iter_mut().zip(&s).for_each(|(xi, si)| *xi += si);
        let f_prev = fx;
        fx = t.f;
        g = t.g;
        gn = norm(&g);
        iterations += 1;
        history.push(fx);
        keep_going = callback(&Iteration {
            iteration: iterations,
            loss: fx,
            grad_norm: gn,
            step: t.alpha,
            evaluations,
            x: &x,
        });
        if (f_prev - fx) / f_prev.abs().max(fx.abs()).max(1.0) < opts.f_tol {
            break StopReason::LossTolerance;
        }
    };
    Ok(LbfgsResult {
        x,
        loss: fx,
        grad: g,
        iterations,
        evaluations,
        history,
        stop,
    })
}

/// Strong-Wolfe line search (N&W Alg. 3.5 with the zoom of Alg. 3.6). `phi(α)` evaluates the
/// loss and directional derivative at x + αd; `f0`, `d0` are those at α = 0 (d0 < 0). Returns the
/// accepted trial, or `None` when no trial satisfies the conditions within the evaluation budget
/// (then, if some trial decreased the loss sufficiently, that one is returned instead so progress
/// is not thrown away).
fn strong_wolfe(phi: &mut impl FnMut(f64) -> Result<Trial>, f0: f64, d0: f64, alpha0: f64, opts: &LbfgsOptions) -> Result<Option<Trial>> {
    let armijo = |t: &Trial| t.f <= f0 + opts.c1 * t.alpha * d0;
    let curvature = |t: &Trial| t.df.abs() <= -opts.c2 * d0;
    let mut best: Option<Trial> = None;
    let consider = |t: &Trial, best: &mut Option<Trial>| {
        let better = match best.as_ref() {
            Some(b) => t.f < b.f,
            None => true,
        };
        if armijo(t) && better {
            *best = Some(Trial {
                alpha: t.alpha,
                f: t.f,
                df: t.df,
                g: t.g.clone(),
            });
        }
    };
    let mut prev = Trial {
        alpha: 0.0,
        f: f0,
        df: d0,
        g: Vec::new(),
    };
    let mut alpha = alpha0;
    let mut evals = 0;
    // Bracketing phase.
    let (mut lo, mut hi) = loop {
        let t = phi(alpha)?;
        evals += 1;
        consider(&t, &mut best);
        if !t.f.is_finite() {
            // Too long: shrink towards the last good point.
            if evals >= opts.max_line_evals {
                return Ok(best);
            }
            alpha = prev.alpha + 0.1 * (alpha - prev.alpha);
            continue;
        }
        if !armijo(&t) || (evals > 1 && t.f >= prev.f) {
            break (prev, t);
        }
        if curvature(&t) {
            return Ok(Some(t));
        }
        if t.df >= 0.0 {
            break (t, prev);
        }
        if evals >= opts.max_line_evals {
            return Ok(best);
        }
        // Extrapolate: the minimum lies further along d; double the step.
        alpha = 2.0 * t.alpha;
        prev = t;
    };
    // Zoom phase: lo satisfies Armijo and has the lowest f so far; (hi − lo)·lo.df < 0.
    loop {
        if evals >= opts.max_line_evals || (hi.alpha - lo.alpha).abs() <= 1e-16 * lo.alpha.abs().max(1e-300) {
            return Ok(best);
        }
        let a = if hi.f.is_finite() && hi.df.is_finite() {
            cubic_min(lo.alpha, lo.f, lo.df, hi.alpha, hi.f, hi.df)
        } else {
            0.5 * (lo.alpha + hi.alpha)
        };
        let t = phi(a)?;
        evals += 1;
        consider(&t, &mut best);
        if !t.f.is_finite() || !armijo(&t) || t.f >= lo.f {
            hi = t;
        } else {
            if curvature(&t) {
                return Ok(Some(t));
            }
            if t.df * (hi.alpha - lo.alpha) >= 0.0 {
                hi = lo;
            }
            lo = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock in `n` dimensions: Σ 100(x_{i+1} − x_i²)² + (1 − x_i)², minimum 0 at (1, …, 1).
    fn rosenbrock(x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let n = x.len();
        let mut f = 0.0;
        let mut g = vec![0.0; n];
        for i in 0..n - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = 1.0 - x[i];
            f += 100.0 * a * a + b * b;
            g[i] += -400.0 * a * x[i] - 2.0 * b;
            g[i + 1] += 200.0 * a;
        }
        Ok((f, g))
    }

    #[test]
    fn rosenbrock_reaches_the_minimum_with_a_decreasing_loss() {
        let x0: Vec<f64> = (0..10).map(|i| if i % 2 == 0 { -1.2 } else { 1.0 }).collect();
        let opts = LbfgsOptions {
            max_iterations: 500,
            grad_tol: 1e-10,
            f_tol: 0.0,
            ..Default::default()
        };
        let r = lbfgs(rosenbrock, x0, &opts, |_| true).unwrap();
        assert!(r.x.iter().all(|v| (v - 1.0).abs() < 1e-6), "x = {:?} ({:?})", r.x, r.stop);
        assert!(r.loss < 1e-12, "loss {}", r.loss);
        assert!(r.history.windows(2).all(|w| w[1] < w[0]), "loss not strictly decreasing");
        assert_eq!(r.history.len(), r.iterations + 1);
        assert!(r.iterations < 200, "{} iterations", r.iterations);
    }

    /// On a convex quadratic ½xᵀAx − bᵀx in n dimensions, L-BFGS with memory ≥ n and exact-ish
    /// line searches converges in few more than n iterations, to A⁻¹b.
    #[test]
    fn quadratic_converges_to_the_solution_of_the_linear_system() {
        let n = 6;
        // A = diag(1..=n) + 0.1 (all ones): SPD, condition number ~ 7.
        let a = |i: usize, j: usize| if i == j { (i + 1) as f64 + 0.1 } else { 0.1 };
        let b: Vec<f64> = (0..n).map(|i| (i as f64 - 2.5) * 0.7).collect();
        let f = |x: &[f64]| -> Result<(f64, Vec<f64>)> {
            let ax: Vec<f64> = (0..n).map(|i| (0..n).map(|j| a(i, j) * x[j]).sum()).collect();
            let v = 0.5 * dot(x, &ax) - dot(&b, x);
            Ok((v, ax.iter().zip(&b).map(|(p, q)| p - q).collect()))
        };
        let opts = LbfgsOptions {
            memory: n,
            grad_tol: 1e-12,
            f_tol: 0.0,
            c2: 0.1,
            ..Default::default()
        };
        let r = lbfgs(f, vec![0.0; n], &opts, |_| true).unwrap();
        assert_eq!(r.stop, StopReason::GradientTolerance);
        // Residual of A x = b.
        let res: f64 = (0..n)
            .map(|i| ((0..n).map(|j| a(i, j) * r.x[j]).sum::<f64>() - b[i]).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(res < 1e-10, "residual {res}");
        assert!(r.iterations <= 3 * n, "{} iterations", r.iterations);
    }

    /// Every accepted step satisfies both strong Wolfe conditions (checked from the callback's
    /// points with an independent evaluation).
    #[test]
    fn accepted_steps_satisfy_the_strong_wolfe_conditions() {
        let x0 = vec![-1.2, 1.0, -1.2, 1.0];
        let opts = LbfgsOptions {
            max_iterations: 30,
            f_tol: 0.0,
            ..Default::default()
        };
        let mut pts: Vec<Vec<f64>> = Vec::new();
        let r = lbfgs(rosenbrock, x0, &opts, |it| {
            pts.push(it.x.to_vec());
            true
        })
        .unwrap();
        assert_eq!(pts.len(), r.iterations + 1);
        // Each step x_k → x_{k+1} along d = x_{k+1} − x_k (α = 1 in this parametrisation).
        for w in pts.windows(2) {
            let d: Vec<f64> = w[1].iter().zip(&w[0]).map(|(a, b)| a - b).collect();
            let (f0, g0) = rosenbrock(&w[0]).unwrap();
            let (f1, g1) = rosenbrock(&w[1]).unwrap();
            let (d0, d1) = (dot(&g0, &d), dot(&g1, &d));
            assert!(d0 < 0.0, "not a descent direction");
            assert!(f1 <= f0 + opts.c1 * d0, "Armijo: {f1} > {f0} + c1 {d0}");
            assert!(d1.abs() <= -opts.c2 * d0 * (1.0 + 1e-12), "curvature: |{d1}| > c2 |{d0}|");
        }
    }

    /// A loss that is +∞ (or NaN) beyond a wall is handled by shortening the step; the minimum
    /// inside is still found.
    #[test]
    fn non_finite_trial_losses_shorten_the_step() {
        // f = (x − 0.9)² for x < 1, NaN beyond: the first trial step from x = −50 overshoots.
        let f = |x: &[f64]| -> Result<(f64, Vec<f64>)> {
            if x[0] >= 1.0 {
                Ok((f64::NAN, vec![f64::NAN]))
            } else {
                Ok(((x[0] - 0.9).powi(2), vec![2.0 * (x[0] - 0.9)]))
            }
        };
        let opts = LbfgsOptions {
            grad_tol: 1e-9,
            ..Default::default()
        };
        let r = lbfgs(f, vec![-50.0], &opts, |_| true).unwrap();
        assert!((r.x[0] - 0.9).abs() < 1e-6, "x = {} ({:?})", r.x[0], r.stop);
        assert!(r.history.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn errors_of_the_loss_and_bad_starts_are_returned() {
        let bad = |_: &[f64]| -> Result<(f64, Vec<f64>)> { Err(pm_core::Error::invalid("x", 0, "something").into()) };
        assert!(lbfgs(bad, vec![0.0], &LbfgsOptions::default(), |_| true).is_err());
        let nan = |_: &[f64]| -> Result<(f64, Vec<f64>)> { Ok((f64::NAN, vec![0.0])) };
        let e = lbfgs(nan, vec![0.0], &LbfgsOptions::default(), |_| true).unwrap_err();
        assert!(matches!(e, Error::Core(pm_core::Error::NonFinite { .. })), "{e}");
        let short = |_: &[f64]| -> Result<(f64, Vec<f64>)> { Ok((0.0, vec![])) };
        assert!(matches!(
            lbfgs(short, vec![0.0], &LbfgsOptions::default(), |_| true),
            Err(Error::Core(pm_core::Error::Shape { .. }))
        ));
        let opts = LbfgsOptions {
            c1: 0.95,
            ..Default::default()
        };
        assert!(lbfgs(rosenbrock, vec![0.0, 0.0], &opts, |_| true).is_err());
    }

    #[test]
    fn the_callback_can_stop_the_run() {
        let r = lbfgs(rosenbrock, vec![-1.2, 1.0], &LbfgsOptions::default(), |it| it.iteration < 3).unwrap();
        assert_eq!(r.stop, StopReason::Callback);
        assert_eq!(r.iterations, 3);
    }

    #[test]
    fn cubic_interpolation_finds_the_minimum_of_a_cubic() {
        // φ(α) = (α − 0.3)² (α + 1): minimum at α = 0.3 inside [0, 1].
        let p = |a: f64| (a - 0.3f64).powi(2) * (a + 1.0);
        let dp = |a: f64| 2.0 * (a - 0.3) * (a + 1.0) + (a - 0.3f64).powi(2);
        let t = cubic_min(0.0, p(0.0), dp(0.0), 1.0, p(1.0), dp(1.0));
        assert!((t - 0.3).abs() < 1e-12, "{t}");
        // Reversed order gives the same point.
        let t2 = cubic_min(1.0, p(1.0), dp(1.0), 0.0, p(0.0), dp(0.0));
        assert!((t2 - 0.3).abs() < 1e-12, "{t2}");
    }
}
