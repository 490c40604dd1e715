//! `value_and_grad` (the CLI's `gradient`) and `vjp` (cotangents of the outputs pulled back to
//! the white noise and the cosmological parameters), both by pm-adjoint's reverse-time adjoint:
//! one forward and one reverse-time pass, memory independent of the number of steps.
//!
//! The VJP is `value_and_grad` of the linear functional
//! `L = ⟨δ̄, δ⟩ + ⟨x̄, x⟩ + ⟨v̄, v⟩` of the final density contrast δ (force mesh), positions x
//! (Mpc/h) and velocities v (km/s), whose gradient is exactly (∂(δ, x, v)/∂w)ᵀ(δ̄, x̄, v̄)
//! ([`Cotangent`]).

use crate::arrays::{self, Input};
use crate::compute::detached;
use crate::config;
use crate::errors::{invalid, py_err};
use crate::forward::{correction, simulation, white_noise, white_noise_is_f64};
use numpy::Element;
use pm_adjoint::{GradOptions, Gradients, Objective, Recover};
use pm_core::config::{Config, Precision};
use pm_core::correction::SplineCorrection;
use pm_core::cosmology::Cosmology;
use pm_core::leapfrog::Stepper;
use pm_core::loss::{FieldMse, Loss, PowerLoss};
use pm_core::pm::MeshContext;
use pm_core::sim::State;
use pm_core::Real;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// ∂L/∂(each cosmological parameter) as a dict with the config keys (`grad_cosmology.toml` of
/// the CLI): omega_m (at fixed omega_k), omega_b, h, n_s, sigma8 or a_s (whichever normalises
/// the run), w0, wa, omega_k, t_cmb.
fn cosmology_dict<'py>(py: Python<'py>, g: &Cosmology, at: &Cosmology) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("omega_m", g.omega_m)?;
    d.set_item("omega_b", g.omega_b)?;
    d.set_item("h", g.h)?;
    d.set_item("n_s", g.n_s)?;
    if at.sigma8.is_some() {
        d.set_item("sigma8", g.sigma8.unwrap_or(0.0))?;
    }
    if at.a_s.is_some() {
        d.set_item("a_s", g.a_s.unwrap_or(0.0))?;
    }
    d.set_item("w0", g.w0)?;
    d.set_item("wa", g.wa)?;
    d.set_item("omega_k", g.omega_k)?;
    d.set_item("t_cmb", g.t_cmb)?;
    Ok(d)
}

/// How the backward pass recovers the forward states (`checkpoint_every`).
fn recover(checkpoint_every: Option<usize>) -> PyResult<Recover> {
    match checkpoint_every {
        None => Ok(Recover::Reverse),
        Some(0) => Err(invalid("checkpoint_every", 0, "at least 1 step between checkpoints")),
        Some(every) => Ok(Recover::Checkpoint { every }),
    }
}

/// The gradient dict: "white_noise" (the dtype of the white noise), "cosmology" (a dict),
/// "reversal_error", and "force_params" when a correction is installed.
fn grads_dict<'py, T: Real + Element>(
    py: Python<'py>,
    g: Gradients<T>,
    at: &Cosmology,
    n: usize,
    wide: bool,
    with_params: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("white_noise", arrays::out_as(py, g.white_noise, &[n, n, n], wide)?)?;
    let gc = g.cosmology.as_ref().expect("cosmology gradients requested");
    d.set_item("cosmology", cosmology_dict(py, gc, at)?)?;
    d.set_item("reversal_error", g.reversal_error)?;
    if with_params {
        let np = g.force_params.len();
        d.set_item("force_params", arrays::out(py, g.force_params, &[np])?)?;
    }
    Ok(d)
}

/// The loss of `value_and_grad`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LossKind {
    FieldMse,
    Power,
}

/// The loss of a configured run and its gradients with respect to the white noise, the
/// cosmological parameters (and a force correction's parameters), by the reverse-time adjoint:
/// the CLI's `cosmograd gradient`, with the same numbers.
///
/// `config`, `white_noise`, `force_correction`: as in `simulate`. `loss`: "field-mse", the mean
/// over the force mesh of (δ − δ_T)² (δ_T = 0 without a target), or "power", the P(k) log-ratio
/// χ² Σ_b (N_b/2) ln²(P_b/P_T,b) against the spectrum of `target` (required). `target`: a
/// density contrast on the force mesh, shape (m, m, m). `checkpoint_every`: store the state
/// every K steps and restart the reverse integration there (bounded reversal error); default
/// pure reverse integration (memory independent of the number of steps).
///
/// Returns `(loss, grads)`: the loss (float) and a dict with "white_noise" (∂L/∂w, shape
/// (n, n, n), the dtype of the white noise given, else of `run.precision`), "cosmology" (a dict
/// of ∂L/∂ omega_m (at fixed omega_k), omega_b, h, n_s, sigma8 or a_s, w0, wa, omega_k, t_cmb),
/// "reversal_error" (relative; above 1e-2 the gradient may be off by as much) and, with a
/// force correction, "force_params" (∂L/∂θ). GIL released. ValueError/OSError as the CLI.
#[pyfunction]
#[pyo3(signature = (config = None, white_noise = None, loss = "field-mse", target = None, *, checkpoint_every = None, force_correction = None))]
pub fn value_and_grad<'py>(
    py: Python<'py>,
    config: Option<&Bound<'py, PyAny>>,
    white_noise: Option<&Bound<'py, PyAny>>,
    loss: &str,
    target: Option<&Bound<'py, PyAny>>,
    checkpoint_every: Option<usize>,
    force_correction: Option<&Bound<'py, PyAny>>,
) -> PyResult<(f64, Bound<'py, PyDict>)> {
    let cfg = config::resolve(config)?;
    let kind = match loss {
        "field-mse" => LossKind::FieldMse,
        "power" => LossKind::Power,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown loss `{other}`: expected field-mse or power"
            )))
        }
    };
    let w = arrays::read_opt(white_noise, "white noise")?;
    let target = arrays::read_opt(target, "target density")?;
    if kind == LossKind::Power && target.is_none() {
        return Err(invalid(
            "target",
            "None",
            "a density mesh of shape (box.mesh,)*3 whose P(k) is the target of loss=\"power\"",
        ));
    }
    let m = cfg.box_.mesh;
    if let Some(t) = &target {
        t.check_shape("target density", &[m, m, m], "(box.mesh,)*3")?;
    }
    let recover = recover(checkpoint_every)?;
    let model = correction(force_correction, &cfg)?;
    match cfg.run.precision {
        Precision::F32 => grad_typed::<f32>(py, cfg, w, kind, target, recover, model),
        Precision::F64 => grad_typed::<f64>(py, cfg, w, kind, target, recover, model),
    }
}

fn grad_typed<'py, T: Real + Element>(
    py: Python<'py>,
    cfg: Config,
    w: Option<Input>,
    kind: LossKind,
    target: Option<Input>,
    recover: Recover,
    model: Option<SplineCorrection>,
) -> PyResult<(f64, Bound<'py, PyDict>)> {
    let wide = white_noise_is_f64(&cfg, w.as_ref())?;
    let with_params = model.is_some();
    let n = cfg.box_.particles;
    let (g, at) = detached(py, cfg.run.threads, move || {
        let mut sim = simulation::<T>(&cfg, model)?;
        let w = white_noise(&sim, w.as_ref())?;
        let target: Option<Vec<T>> = target.map(|t| t.finite_vec("target density")).transpose()?;
        let loss: Box<dyn Loss<T>> = match (kind, target) {
            (LossKind::FieldMse, t) => Box::new(FieldMse::new(t).map_err(py_err)?),
            (LossKind::Power, Some(t)) => {
                let l = PowerLoss::from_density(&sim.mesh_context(), &t, None).map_err(py_err)?;
                l.check(&sim.mesh_context()).map_err(py_err)?;
                Box::new(l)
            }
            (LossKind::Power, None) => unreachable!("refused above"),
        };
        let opts = GradOptions {
            recover,
            ..Default::default()
        };
        let g = pm_adjoint::value_and_grad(&mut sim, &w, &Objective::final_state(loss.as_ref()), &opts).map_err(py_err)?;
        Ok((g, sim.cosmology().clone()))
    })?;
    let loss = g.loss;
    Ok((loss, grads_dict(py, g, &at, n, wide, with_params)?))
}

/// The linear functional `L = ⟨δ̄, δ⟩ + ⟨x̄, x⟩ + ⟨v̄, v⟩` of the final state, whose gradient is
/// the VJP of the outputs (δ the CIC density contrast on the force mesh, x the positions in
/// Mpc/h, v the velocities in km/s). Pull-backs (docs/adjoint.md eqs. S6, S7):
/// δ = paint(s)·M/N_p − 1 so `s̄ += paint_vjp_pos(s; δ̄·M/N_p)`; x = q + s (mod L) so `s̄ += x̄`
/// (the periodic wrap is locally the identity); v = (100/a) p so `p̄ += (100/a) v̄`.
struct Cotangent<T> {
    density: Option<Vec<T>>,
    positions: Option<Vec<[T; 3]>>,
    velocities: Option<Vec<[T; 3]>>,
}

impl<T: Real> Loss<T> for Cotangent<T> {
    fn value_and_cot(&self, mesh: &MeshContext<'_, T>, state: &State<T>, disp_cot: &mut [[T; 3]], mom_cot: &mut [[T; 3]]) -> f64 {
        let mut value = 0.0f64;
        if let Some(c) = &self.density {
            let delta = mesh.density(&state.disp);
            value += c.iter().zip(&delta).map(|(a, b)| a.f64() * b.f64()).sum::<f64>();
            let scale = T::of(delta.len() as f64 / state.disp.len() as f64);
            let scaled: Vec<T> = c.iter().map(|&v| v * scale).collect();
            mesh.cic.paint_vjp_pos(&state.disp, None, &scaled, disp_cot);
        }
        if let Some(c) = &self.positions {
            for (p, (s, xbar)) in state.disp.iter().zip(c).enumerate() {
                let x = mesh.cic.position(p, s);
                for d in 0..3 {
                    value += xbar[d].f64() * x[d];
                    disp_cot[p][d] += xbar[d];
                }
            }
        }
        if let Some(c) = &self.velocities {
            let f = Stepper::velocity_factor(state.a);
            for ((p, vbar), pbar) in state.mom.iter().zip(c).zip(mom_cot.iter_mut()) {
                for d in 0..3 {
                    value += vbar[d].f64() * f * p[d].f64();
                    pbar[d] += T::of(f * vbar[d].f64());
                }
            }
        }
        value
    }
}

/// (n³, 3) cotangent rows in precision `T`.
fn rows<T: Real>(v: Vec<T>) -> Vec<[T; 3]> {
    v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// Vector–Jacobian product of the final outputs: given cotangents of the density, positions
/// and/or velocities at `time.a_stop`, returns their pull-back to the white noise and the
/// cosmological parameters: one forward and one reverse-time pass (memory independent of the
/// number of steps).
///
/// `config`, `white_noise`, `force_correction`: as in `simulate`. `density`: cotangent δ̄ of the
/// density contrast, shape (m, m, m); `positions`: x̄, shape (n³, 3), per Mpc/h; `velocities`:
/// v̄, shape (n³, 3), per km/s (at least one is required; float32 or float64, any order).
/// `checkpoint_every`: as in `value_and_grad`.
///
/// Returns a dict: "white_noise" (the cotangent of w, shape (n, n, n), the dtype of the white
/// noise given, else of `run.precision`), "cosmology" (a dict like `value_and_grad`'s: the
/// cotangent of each parameter), "value" (⟨δ̄, δ⟩ + ⟨x̄, x⟩ + ⟨v̄, v⟩ at the forward run),
/// "reversal_error", and "force_params" with a correction. The periodic wrap of positions into
/// [0, L) is taken as locally the identity. GIL released.
#[pyfunction]
#[pyo3(signature = (config = None, white_noise = None, *, density = None, positions = None, velocities = None, checkpoint_every = None, force_correction = None))]
pub fn vjp<'py>(
    py: Python<'py>,
    config: Option<&Bound<'py, PyAny>>,
    white_noise: Option<&Bound<'py, PyAny>>,
    density: Option<&Bound<'py, PyAny>>,
    positions: Option<&Bound<'py, PyAny>>,
    velocities: Option<&Bound<'py, PyAny>>,
    checkpoint_every: Option<usize>,
    force_correction: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = config::resolve(config)?;
    let w = arrays::read_opt(white_noise, "white noise")?;
    let (n, m) = (cfg.box_.particles, cfg.box_.mesh);
    let np = n * n * n;
    let dens = arrays::read_opt(density, "density cotangent")?;
    let pos = arrays::read_opt(positions, "positions cotangent")?;
    let vel = arrays::read_opt(velocities, "velocities cotangent")?;
    if dens.is_none() && pos.is_none() && vel.is_none() {
        return Err(invalid(
            "density, positions, velocities",
            "None",
            "at least one cotangent of the outputs",
        ));
    }
    if let Some(c) = &dens {
        c.check_shape("density cotangent", &[m, m, m], "(box.mesh,)*3")?;
    }
    if let Some(c) = &pos {
        c.check_shape("positions cotangent", &[np, 3], "(box.particles³, 3)")?;
    }
    if let Some(c) = &vel {
        c.check_shape("velocities cotangent", &[np, 3], "(box.particles³, 3)")?;
    }
    let recover = recover(checkpoint_every)?;
    let model = correction(force_correction, &cfg)?;
    let cots = [dens, pos, vel];
    match cfg.run.precision {
        Precision::F32 => vjp_typed::<f32>(py, cfg, w, cots, recover, model),
        Precision::F64 => vjp_typed::<f64>(py, cfg, w, cots, recover, model),
    }
}

fn vjp_typed<'py, T: Real + Element>(
    py: Python<'py>,
    cfg: Config,
    w: Option<Input>,
    cots: [Option<Input>; 3],
    recover: Recover,
    model: Option<SplineCorrection>,
) -> PyResult<Bound<'py, PyDict>> {
    let wide = white_noise_is_f64(&cfg, w.as_ref())?;
    let with_params = model.is_some();
    let n = cfg.box_.particles;
    let [dens, pos, vel] = cots;
    let (g, at) = detached(py, cfg.run.threads, move || {
        let loss = Cotangent::<T> {
            density: dens.map(|c| c.finite_vec("density cotangent")).transpose()?,
            positions: pos.map(|c| c.finite_vec("positions cotangent").map(rows)).transpose()?,
            velocities: vel.map(|c| c.finite_vec("velocities cotangent").map(rows)).transpose()?,
        };
        let mut sim = simulation::<T>(&cfg, model)?;
        let w = white_noise(&sim, w.as_ref())?;
        let opts = GradOptions {
            recover,
            ..Default::default()
        };
        let g = pm_adjoint::value_and_grad(&mut sim, &w, &Objective::final_state(&loss), &opts).map_err(py_err)?;
        Ok((g, sim.cosmology().clone()))
    })?;
    let value = g.loss;
    let d = grads_dict(py, g, &at, n, wide, with_params)?;
    d.set_item("value", value)?;
    Ok(d)
}
