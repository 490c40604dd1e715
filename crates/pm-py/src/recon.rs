//! `reconstruct`: the CLI's `cosmograd reconstruct` (maximum-a-posteriori white noise of an
//! observed late-time density mesh, annealed L-BFGS with adjoint gradients; docs/reconstruction.md)
//! returning its arrays and diagnostics instead of writing files. The steps are those of
//! `src/reconstruct/{solve,outputs}.rs`, so the arrays equal the CLI's files bit for bit.

use crate::arrays::{self, Input};
use crate::compute::detached;
use crate::config;
use crate::errors::{invalid, py_err};
use numpy::Element;
use pm_adjoint::optim::LbfgsOptions;
use pm_adjoint::recon::{
    calibrate_laplace_weights, config_at, default_schedule, linear_wiener, mock_observation, reconstruct as recon_run, CosmologyFit,
    NoiseModel, Posterior, Preconditioning, ReconProgress, Stage,
};
use pm_adjoint::Recover;
use pm_core::config::{Config, Precision};
use pm_core::fft::Fft3;
use pm_core::mesh::MeshGeom;
use pm_core::noise::linear_field;
use pm_core::power::{cross_spectrum, Deconvolve};
use pm_core::sim::Simulation;
use pm_core::Real;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The CLI's constants (src/reconstruct/mod.rs): default mock noise σ, the mock's offset of the
/// fit start, the seed offsets of the mock noise and of the calibration mock, and the embedded
/// default box and steps.
const DEFAULT_MOCK_SIGMA: f64 = 0.01;
const MOCK_FIT_OFFSET: [f64; 2] = [0.05, -0.05];
const NOISE_SEED: u64 = 0x6e6f697365;
const CALIBRATION_SEED: u64 = 0x63616c6962;
const RECON_DEFAULT_BOX: f64 = 128.0;
const RECON_DEFAULT_STEPS: usize = 10;
const MIN_NOISE_SIGMA: f64 = 1e-8;
const MAX_NOISE_SIGMA: f64 = 1e8;

/// Everything the reconstruction needs, checked before it runs.
struct Setup {
    cfg: Config,
    noise: NoiseModel,
    smoothing: f64,
    schedule: Vec<Stage>,
    preconditioning: Preconditioning,
    fit: bool,
    fit_start: Option<[f64; 2]>,
    recover: Recover,
    observed: Option<Input>,
    data_mesh: usize,
    truth: Option<Input>,
}

/// What the run leaves for Python.
struct Outcome<T> {
    white_noise: Vec<T>,
    linear_density: Vec<T>,
    final_density: Vec<T>,
    rows: Vec<ReconProgress>,
    reversal_error: f64,
    evaluations: usize,
    seconds: f64,
    stops: Vec<String>,
    cosmology: Option<CosmologyFit>,
    mock: Option<Mock<T>>,
}

struct Mock<T> {
    true_white_noise: Vec<T>,
    observed: Vec<T>,
    /// k, r, T, n_modes, r_wiener, T_wiener (r_k.txt).
    k: Vec<f64>,
    r: Vec<f64>,
    t: Vec<f64>,
    n_modes: Vec<u64>,
    r_wiener: Vec<f64>,
    t_wiener: Vec<f64>,
}

/// Reconstructs the initial white noise from a late-time density mesh: the CLI's
/// `cosmograd reconstruct`, returning what it writes.
///
/// `observed`: the observed density contrast on a mesh spanning the box, shape (M, M, M) with
/// M ≥ 2 (the data mesh; float32 or float64); None runs the CLI's mock: the truth is the white
/// noise `white_noise` (or of `run.seed`), simulated, smoothed and given noise. `config`: as in
/// `simulate`; None is the CLI's reconstruction default (64³ particles, 128³ mesh, 128 Mpc/h,
/// 10 steps). `noise`: white noise σ per cell (units of δ, 1e-8..1e8; mock default 0.01) or
/// `noise_power`: a pair (k [h/Mpc], P_N [(Mpc/h)³]) of arrays (one of the two is required with
/// data). `smoothing`: Gaussian smoothing scale of the data model, Mpc/h. `data_mesh`: the mock's
/// data mesh (default the force mesh). `iterations`: L-BFGS iterations over the default annealing
/// schedule, or `schedule`: a list of (R [Mpc/h], iterations) stages. `preconditioner`:
/// "measured" (default), "linear" or None (none). `fit_cosmology`: fit (Ω_m, σ₈) jointly, from
/// `fit_start` (default the configuration's values; mock: the truth + (0.05, −0.05)).
/// `checkpoint_every`: as in `value_and_grad`.
///
/// Returns a dict: "white_noise" (the reconstruction, (n, n, n)), "linear_density" (δ_L at a = 1
/// on the particle grid), "final_density" (the model's prediction of the data, (M, M, M)) — each
/// in the run's precision —, "loss" (a dict of per-iteration arrays "stage", "smoothing" (Mpc/h),
/// "iteration", "loss" (−ln posterior at R), "chi2_half" (½χ² at R = 0), "prior" (½|w|²), and
/// with a cosmology fit "omega_m", "sigma8"), "reversal_error", "evaluations", "seconds",
/// "stops" (why each stage ended); with `fit_cosmology`, "cosmology": {"start", "estimate",
/// "sigma" (each [Ω_m, σ₈]), "covariance"}; for the mock, "true_white_noise", "observed" and
/// "r_k": {"k", "r", "T", "n_modes", "r_wiener", "T_wiener"} (r_k.txt). GIL released.
#[pyfunction]
#[pyo3(signature = (observed = None, config = None, *, white_noise = None, noise = None, noise_power = None, smoothing = 0.0, data_mesh = None, iterations = 100, schedule = None, preconditioner = Some("measured"), fit_cosmology = false, fit_start = None, checkpoint_every = None))]
pub fn reconstruct<'py>(
    py: Python<'py>,
    observed: Option<&Bound<'py, PyAny>>,
    config: Option<&Bound<'py, PyAny>>,
    white_noise: Option<&Bound<'py, PyAny>>,
    noise: Option<f64>,
    noise_power: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    smoothing: f64,
    data_mesh: Option<usize>,
    iterations: usize,
    schedule: Option<Vec<(f64, usize)>>,
    preconditioner: Option<&str>,
    fit_cosmology: bool,
    fit_start: Option<(f64, f64)>,
    checkpoint_every: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let default_config = config.is_none_or(|c| c.is_none());
    let mut cfg = config::resolve(config)?;
    if default_config {
        cfg.box_.size = RECON_DEFAULT_BOX;
        cfg.time.steps = RECON_DEFAULT_STEPS;
        cfg.validate().map_err(py_err)?;
    }
    let observed = arrays::read_opt(observed, "observed density")?;
    let noise = match (noise, noise_power) {
        (Some(_), Some(_)) => return Err(invalid("noise", "given with noise_power", "one of noise or noise_power")),
        (Some(sigma), None) => {
            if !(sigma.is_finite() && (MIN_NOISE_SIGMA..=MAX_NOISE_SIGMA).contains(&sigma)) {
                return Err(invalid(
                    "noise",
                    sigma,
                    format!("a standard deviation per cell (units of δ) with {MIN_NOISE_SIGMA:e} <= SIGMA <= {MAX_NOISE_SIGMA:e}"),
                ));
            }
            NoiseModel::White { sigma }
        }
        (None, Some((k, p))) => NoiseModel::Power {
            k: arrays::read(&k, "noise power k")?.to_f64(),
            p: arrays::read(&p, "noise power P_N")?.to_f64(),
        },
        (None, None) if observed.is_none() => NoiseModel::White { sigma: DEFAULT_MOCK_SIGMA },
        (None, None) => {
            return Err(invalid(
                "noise",
                "None",
                "the noise of the observed data: noise=SIGMA (per cell, units of δ) or noise_power=(k, P_N)",
            ))
        }
    };
    noise.validate().map_err(py_err)?;
    if iterations == 0 {
        return Err(invalid("iterations", 0, "at least 1 L-BFGS iteration"));
    }
    let schedule = match schedule {
        Some(s) => {
            let stages: Vec<Stage> = s
                .into_iter()
                .map(|(smoothing, iterations)| Stage { smoothing, iterations })
                .collect();
            if stages.is_empty()
                || stages
                    .iter()
                    .any(|s| !(s.smoothing.is_finite() && s.smoothing >= 0.0 && s.iterations >= 1))
            {
                return Err(invalid(
                    "schedule",
                    format!("{:?}", stages.iter().map(|s| (s.smoothing, s.iterations)).collect::<Vec<_>>()),
                    "stages (R, N) with smoothing R >= 0 in Mpc/h and N >= 1 iterations, e.g. [(8, 20), (4, 20), (0, 120)]",
                ));
            }
            stages
        }
        None => default_schedule(iterations, cfg.box_.particle_spacing()),
    };
    if !(smoothing.is_finite() && smoothing >= 0.0) {
        return Err(invalid("smoothing", smoothing, "a Gaussian smoothing scale ≥ 0 in Mpc/h"));
    }
    let preconditioning = match preconditioner {
        None => Preconditioning::Off,
        Some("measured") => Preconditioning::Measured,
        Some("linear") => Preconditioning::Linear,
        Some(other) => return Err(invalid("preconditioner", other, "\"measured\", \"linear\" or None")),
    };
    let fit_start = match (fit_start, fit_cosmology) {
        (Some((om, s8)), true) => {
            if !(om.is_finite() && s8.is_finite() && om > 0.0 && om < 1.0 && s8 > 0.0) {
                return Err(invalid(
                    "fit_start",
                    format!("({om}, {s8})"),
                    "(omega_m, sigma8) with 0 < Ω_m < 1 and σ₈ > 0",
                ));
            }
            config_at(&cfg, [om, s8]).map_err(|e| {
                invalid(
                    "fit_start",
                    format!("({om}, {s8})"),
                    format!("a cosmology the simulation accepts ({e})"),
                )
            })?;
            Some([om, s8])
        }
        (Some(t), false) => return Err(invalid("fit_start", format!("{t:?}"), "given together with fit_cosmology=True")),
        (None, _) => None,
    };
    if fit_cosmology && cfg.cosmology.sigma8.is_none() {
        return Err(invalid(
            "cosmology.sigma8",
            "unset (normalised by a_s)",
            "a σ₈ normalisation in the configuration for fit_cosmology",
        ));
    }
    let data_mesh = match &observed {
        Some(o) => {
            let md = o.shape.first().copied().unwrap_or(0);
            let cube = o.shape.len() == 3 && o.shape.iter().all(|&s| s == md) && md >= 2;
            if !cube || data_mesh.is_some_and(|e| e != md) {
                let want = match data_mesh {
                    Some(e) => format!("shape {} (data_mesh)", pm_core::io::shape_string(&[e, e, e])),
                    None => format!(
                        "a cube (M, M, M) with M ≥ 2, the data mesh: e.g. {} = (box.mesh,)*3, the force mesh",
                        pm_core::io::shape_string(&[cfg.box_.mesh; 3])
                    ),
                };
                return Err(py_err(pm_core::Error::Shape {
                    what: "observed density".into(),
                    found: format!("shape {}", pm_core::io::shape_string(&o.shape)),
                    expected: want,
                }));
            }
            md
        }
        None => data_mesh.unwrap_or(cfg.box_.mesh),
    };
    if !(2..=4096).contains(&data_mesh) {
        return Err(invalid("data_mesh", data_mesh, "2 to 4096 cells per side"));
    }
    let truth = match (&observed, white_noise) {
        (None, w) => arrays::read_opt(w, "white noise")?,
        (Some(_), Some(w)) if !w.is_none() => {
            return Err(invalid(
                "white_noise",
                "given with observed data",
                "None: the white noise is the true field of the mock (observed=None)",
            ))
        }
        _ => None,
    };
    let recover = match checkpoint_every {
        None => Recover::Reverse,
        Some(0) => return Err(invalid("checkpoint_every", 0, "at least 1 step between checkpoints")),
        Some(every) => Recover::Checkpoint { every },
    };
    let setup = Setup {
        cfg,
        noise,
        smoothing,
        schedule,
        preconditioning,
        fit: fit_cosmology,
        fit_start,
        recover,
        observed,
        data_mesh,
        truth,
    };
    match setup.cfg.run.precision {
        Precision::F32 => recon_typed::<f32>(py, setup),
        Precision::F64 => recon_typed::<f64>(py, setup),
    }
}

fn recon_typed<'py, T: Real + Element>(py: Python<'py>, s: Setup) -> PyResult<Bound<'py, PyDict>> {
    let (n, m) = (s.cfg.box_.particles, s.data_mesh);
    let fit = s.fit;
    let o = detached(py, s.cfg.run.threads, move || solve::<T>(s))?;
    let d = PyDict::new(py);
    d.set_item("white_noise", arrays::out(py, o.white_noise, &[n, n, n])?)?;
    d.set_item("linear_density", arrays::out(py, o.linear_density, &[n, n, n])?)?;
    d.set_item("final_density", arrays::out(py, o.final_density, &[m, m, m])?)?;
    let rows = &o.rows;
    let col = |f: &dyn Fn(&ReconProgress) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let loss = PyDict::new(py);
    let nr = rows.len();
    loss.set_item(
        "stage",
        arrays::out(py, rows.iter().map(|r| r.stage as u64).collect::<Vec<_>>(), &[nr])?,
    )?;
    loss.set_item("smoothing", arrays::out(py, col(&|r| r.smoothing), &[nr])?)?;
    loss.set_item(
        "iteration",
        arrays::out(py, rows.iter().map(|r| r.iteration as u64).collect::<Vec<_>>(), &[nr])?,
    )?;
    loss.set_item("loss", arrays::out(py, col(&|r| r.loss), &[nr])?)?;
    loss.set_item("chi2_half", arrays::out(py, col(&|r| r.chi2_half), &[nr])?)?;
    loss.set_item("prior", arrays::out(py, col(&|r| r.prior), &[nr])?)?;
    if fit {
        loss.set_item("omega_m", arrays::out(py, col(&|r| r.theta.map_or(f64::NAN, |t| t[0])), &[nr])?)?;
        loss.set_item("sigma8", arrays::out(py, col(&|r| r.theta.map_or(f64::NAN, |t| t[1])), &[nr])?)?;
    }
    d.set_item("loss", loss)?;
    d.set_item("reversal_error", o.reversal_error)?;
    d.set_item("evaluations", o.evaluations)?;
    d.set_item("seconds", o.seconds)?;
    d.set_item("stops", PyList::new(py, &o.stops)?)?;
    if let Some(c) = &o.cosmology {
        let cd = PyDict::new(py);
        cd.set_item("start", c.start.to_vec())?;
        cd.set_item("estimate", c.theta.to_vec())?;
        cd.set_item("sigma", c.sigma().to_vec())?;
        cd.set_item("covariance", c.covariance.iter().map(|r| r.to_vec()).collect::<Vec<_>>())?;
        d.set_item("cosmology", cd)?;
    }
    if let Some(mk) = o.mock {
        d.set_item("true_white_noise", arrays::out(py, mk.true_white_noise, &[n, n, n])?)?;
        d.set_item("observed", arrays::out(py, mk.observed, &[m, m, m])?)?;
        let nb = mk.k.len();
        let rk = PyDict::new(py);
        rk.set_item("k", arrays::out(py, mk.k, &[nb])?)?;
        rk.set_item("r", arrays::out(py, mk.r, &[nb])?)?;
        rk.set_item("T", arrays::out(py, mk.t, &[nb])?)?;
        rk.set_item("n_modes", arrays::out(py, mk.n_modes, &[nb])?)?;
        rk.set_item("r_wiener", arrays::out(py, mk.r_wiener, &[nb])?)?;
        rk.set_item("T_wiener", arrays::out(py, mk.t_wiener, &[nb])?)?;
        d.set_item("r_k", rk)?;
    }
    Ok(d)
}

/// The CLI's `solve` and the arrays of its `outputs::write` (src/reconstruct/), without files.
fn solve<T: Real>(s: Setup) -> PyResult<Outcome<T>> {
    let cfg = &s.cfg;
    let mut sim = Simulation::<T>::new(cfg).map_err(py_err)?;
    let (n, m) = (cfg.box_.particles, s.data_mesh);
    let mock = s.observed.is_none();
    let (w_true, obs, signal) = match &s.observed {
        Some(o) => (None, o.finite_vec::<T>("observed density")?, None),
        None => {
            let w = crate::forward::white_noise(&sim, s.truth.as_ref())?;
            let (o, sig) = mock_observation(&mut sim, &w, &s.noise, s.smoothing, m, cfg.run.seed ^ NOISE_SEED).map_err(py_err)?;
            (Some(w), o, Some(sig))
        }
    };
    let mut post = Posterior::on_mesh(&sim, m, &obs, s.noise.clone(), s.smoothing).map_err(py_err)?;
    post.set_preconditioning(s.preconditioning);
    let theta_config = [cfg.cosmology.omega_m, cfg.cosmology.sigma8.unwrap_or(f64::NAN)];
    let iterations: usize = s.schedule.iter().map(|st| st.iterations).sum();
    let lbfgs_opts = LbfgsOptions::default();
    let fit = s.fit.then(|| {
        s.fit_start.unwrap_or(if mock {
            [theta_config[0] + MOCK_FIT_OFFSET[0], theta_config[1] + MOCK_FIT_OFFSET[1]]
        } else {
            theta_config
        })
    });
    let mut data_schedule = s.schedule.clone();
    if fit.is_some() {
        data_schedule.push(Stage {
            smoothing: 0.0,
            iterations: (iterations / 2).max(1),
        });
    }
    if let Some(start) = fit {
        let mut sim_start = Simulation::<T>::new(&config_at(cfg, start).map_err(py_err)?).map_err(py_err)?;
        let weights = calibrate_laplace_weights(
            &mut sim_start,
            &post,
            &s.schedule,
            &lbfgs_opts,
            cfg.run.seed ^ CALIBRATION_SEED,
            |_| {},
        )
        .map_err(py_err)?;
        post.set_laplace_weights(Some(weights)).map_err(py_err)?;
    }
    post.set_fit_cosmology(fit);
    let mut rows: Vec<ReconProgress> = Vec::new();
    let r = recon_run(
        &mut sim,
        &mut post,
        &vec![T::zero(); n * n * n],
        &data_schedule,
        &lbfgs_opts,
        s.recover,
        |p: &ReconProgress| rows.push(*p),
    )
    .map_err(py_err)?;

    // The fields of outputs::write.
    let lattice = MeshGeom::new(n, cfg.box_.size);
    let fft_n = Fft3::<T>::new(n);
    let lin = sim.linear_power().clone();
    let p_lin = move |k: f64| lin.p(k);
    let linear_density = linear_field(&mut r.white_noise.clone(), &lattice, &fft_n, &p_lin);
    let mut state = sim.initial_conditions(r.white_noise.clone()).map_err(py_err)?;
    sim.run(&mut state, |_| Ok(())).map_err(py_err)?;
    let final_density = post.smooth(&post.density(&state));
    let mock = match (w_true, signal) {
        (Some(wt), Some(sig)) => {
            let sim_truth = Simulation::<T>::new(cfg).map_err(py_err)?;
            let lin_truth = sim_truth.linear_power().clone();
            let p_truth = move |k: f64| lin_truth.p(k);
            let lin_true = linear_field(&mut wt.clone(), &lattice, &fft_n, &p_truth);
            let cs = cross_spectrum(&linear_density, &lin_true, &lattice, &fft_n, Deconvolve::None);
            let noise_x: Vec<T> = obs.iter().zip(&sig).map(|(o, s)| *o - *s).collect();
            let lin_w = linear_wiener(&sim_truth, &post, &lin_true, &noise_x);
            let cw = cross_spectrum(&lin_w, &lin_true, &lattice, &fft_n, Deconvolve::None);
            let ratio = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x / y).sqrt()).collect::<Vec<f64>>();
            Some(Mock {
                true_white_noise: wt,
                observed: obs,
                t: ratio(&cs.p_aa, &cs.p_bb),
                t_wiener: ratio(&cw.p_aa, &cw.p_bb),
                k: cs.k,
                r: cs.r,
                n_modes: cs.n_modes,
                r_wiener: cw.r,
            })
        }
        _ => None,
    };
    Ok(Outcome {
        white_noise: r.white_noise,
        linear_density,
        final_density,
        rows,
        reversal_error: r.reversal_error,
        evaluations: r.evaluations,
        seconds: r.seconds,
        stops: r.stages.iter().map(|st| format!("{:?}", st.stop)).collect(),
        cosmology: r.cosmology,
        mock,
    })
}
