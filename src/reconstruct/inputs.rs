//! The inputs of `cosmograd reconstruct` beyond the configuration: `--fit-start`, `--schedule`,
//! the noise model (`--noise`, `--noise-power`) and the `--observed` mesh, parsed and checked
//! before anything runs.

use super::{Options, DEFAULT_MOCK_SIGMA};
use pm_adjoint::recon::{NoiseModel, Stage};
use pm_adjoint::Result;
use pm_core::io::{read_npy, shape_string};
use pm_core::Error;
use std::path::Path;

/// Parses `--fit-start` "OMEGA_M,SIGMA8" (0 < Ω_m < 1, σ₈ > 0, finite).
pub(super) fn parse_fit_start(text: &str) -> Result<[f64; 2]> {
    let bad = || {
        Error::invalid(
            "--fit-start",
            text,
            "two numbers OMEGA_M,SIGMA8 with 0 < Ω_m < 1 and σ₈ > 0, e.g. 0.3,0.8",
        )
    };
    let v: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    match v[..] {
        [om, s8] if om.is_finite() && s8.is_finite() && om > 0.0 && om < 1.0 && s8 > 0.0 => Ok([om, s8]),
        _ => Err(bad().into()),
    }
}

/// Parses `--schedule` "R:N,R:N,…": stages of N ≥ 1 L-BFGS iterations at the residual
/// smoothing scale R ≥ 0 (Mpc/h), in the order given.
pub(super) fn parse_schedule(text: &str) -> Result<Vec<Stage>> {
    let bad = || {
        Error::invalid(
            "--schedule",
            text,
            "comma-separated stages R:N (smoothing R ≥ 0 in Mpc/h, N ≥ 1 iterations), e.g. 8:20,4:20,2:20,1:20,0:120",
        )
    };
    text.split(',')
        .map(|stage| {
            let (r, it) = stage.split_once(':').ok_or_else(bad)?;
            let smoothing: f64 = r.trim().parse().map_err(|_| bad())?;
            let iterations: usize = it.trim().parse().map_err(|_| bad())?;
            if smoothing.is_finite() && smoothing >= 0.0 && iterations >= 1 {
                Ok(Stage { smoothing, iterations })
            } else {
                Err(bad().into())
            }
        })
        .collect()
}

/// Reads a noise power table: `#` comments, then rows `k P_N` (h/Mpc, (Mpc/h)³).
pub fn read_noise_power(path: &Path) -> Result<NoiseModel> {
    pm_core::io::refuse_special_file(path, "--noise-power", "a two-column text table of k [h/Mpc] and P_N(k) [(Mpc/h)³]")?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read the noise power table: {e}")))?;
    let (mut k, mut p) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = l.split_whitespace().collect();
        let parse = |s: &str| s.parse::<f64>().ok();
        match (cols.first().and_then(|s| parse(s)), cols.get(1).and_then(|s| parse(s))) {
            (Some(a), Some(b)) => {
                k.push(a);
                p.push(b);
            }
            _ => {
                return Err(Error::file(
                    path,
                    format!("line {}: expected two numbers `k P_N` (h/Mpc, (Mpc/h)^3), found `{l}`", i + 1),
                )
                .into())
            }
        }
    }
    let model = NoiseModel::Power { k, p };
    model
        .validate()
        .map_err(|e| Error::file(path, format!("bad noise power table: {e}")))?;
    Ok(model)
}

/// Largest accepted data mesh (`--data-mesh`, or the mesh an `--observed` snapshot is painted on).
pub const MAX_DATA_MESH: usize = 4096;

/// Smallest accepted `--noise` σ (units of δ per cell): below it the data term's 1/σ² under- or
/// overflows f32 and the noise is below the f32 rounding of δ ~ 1 anyway.
pub const MIN_NOISE_SIGMA: f64 = 1e-8;
/// Largest accepted `--noise` σ (units of δ per cell): above it σ² overflows f32 and the data
/// carry no information.
pub const MAX_NOISE_SIGMA: f64 = 1e8;

pub(super) fn noise_model(opts: &Options) -> Result<NoiseModel> {
    let model = match (&opts.noise, &opts.noise_power) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("--noise", "given with --noise-power", "one of --noise SIGMA or --noise-power FILE").into());
        }
        (Some(s), None) => NoiseModel::White { sigma: *s },
        (None, Some(p)) => read_noise_power(p)?,
        (None, None) if opts.observed.is_none() => NoiseModel::White { sigma: DEFAULT_MOCK_SIGMA },
        (None, None) => {
            return Err(Error::invalid(
                "--noise",
                "none",
                "the noise of the --observed data: --noise SIGMA (per cell, units of δ) or --noise-power FILE",
            )
            .into())
        }
    };
    if let NoiseModel::White { sigma } = model {
        // σ² and 1/σ² must stay well inside f32 (run.precision = "f32"): a σ of 1e-20 or 1e200
        // turned into NaN further on and was reported as a bad white noise or observed density.
        if !(sigma.is_finite() && (MIN_NOISE_SIGMA..=MAX_NOISE_SIGMA).contains(&sigma)) {
            return Err(Error::invalid(
                "--noise",
                sigma,
                format!("a standard deviation per cell (units of δ) with {MIN_NOISE_SIGMA:e} <= SIGMA <= {MAX_NOISE_SIGMA:e}"),
            )
            .into());
        }
    }
    model.validate()?;
    Ok(model)
}

/// Reads the observed density: a cube (m_d, m_d, m_d) with m_d ≥ 2 (equal to `expected` when
/// given), finite values. Returns (m_d, values). `force_mesh` is named in the error as the
/// usual choice. A Gadget-format HDF5 snapshot (HDF5 signature) of a box of side `box_size`
/// Mpc/h instead has its particles painted on the data mesh, m_d = `expected` or `force_mesh`
/// ([`pm_core::io::gadget::gadget_density`]).
pub(super) fn read_observed(path: &Path, expected: Option<usize>, force_mesh: usize, box_size: f64) -> Result<(usize, Vec<f64>)> {
    if pm_core::io::gadget::is_hdf5(path) {
        let md = expected.unwrap_or(force_mesh);
        if !(2..=MAX_DATA_MESH).contains(&md) {
            return Err(Error::invalid("--data-mesh", md, format!("2 to {MAX_DATA_MESH} cells per side")).into());
        }
        return Ok((md, pm_core::io::gadget::gadget_density(path, box_size, md)?));
    }
    let (shape, data) = read_npy(path)?;
    let md = shape.first().copied().unwrap_or(0);
    let cube = shape.len() == 3 && shape.iter().all(|&s| s == md) && md >= 2;
    if !cube || expected.is_some_and(|e| e != md) {
        let want = match expected {
            Some(e) => format!("shape {} (--data-mesh)", shape_string(&[e, e, e])),
            None => format!(
                "a cube (M, M, M) with M ≥ 2, the data mesh: e.g. {} = (box.mesh,)*3, the force mesh",
                shape_string(&[force_mesh; 3])
            ),
        };
        return Err(Error::Shape {
            what: format!("observed density {}", path.display()),
            found: format!("shape {}", shape_string(&shape)),
            expected: want,
        }
        .into());
    }
    Error::check_finite(&format!("observed density {}", path.display()), &data)?;
    Ok((md, data))
}
