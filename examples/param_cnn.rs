//! (Ω_m, σ_8) from the 3D density field with a CNN (after Pan et al. 2020), against a P(k)-based
//! estimator trained on the same runs.
//!
//! 1. A Latin hypercube of (Ω_m, σ_8) ∈ [0.25, 0.40] × [0.70, 0.90], one pm-core run per point
//!    (a different seed each), CIC density at a = 1.
//! 2. CNN (`pm_nn::cnn`, conv stages with stride 2, global pooling, MLP) on ln(1 + δ), trained
//!    by pm-nn's training loop (`pm_nn::train`: AdamW with a cosine learning-rate decay, seeded
//!    shuffling) on standardised parameters, the 48 cube symmetries as augmentation.
//! 3. Baseline: ridge regression of the standardised parameters on log P(k) in the bins
//!    k < k_Nyq (the same training runs).
//! 4. Relative errors |pred − true|/true on held-out runs; `param_cnn.txt` and a PNG of
//!    predicted vs true.
//!
//! Run (small preset, a few minutes on 2 cores):
//!   `cargo run --release --example param_cnn -- [--out DIR] [--epochs N] [--force]`
//! `--full`: 60³ inputs with the Pan-2020 60³ preset (conv 32-64-64-128), more runs and
//! iterations, for a fast machine. GPU: add `--features nn-cuda` (needs nvcc to build candle's
//! kernels); the CNN then runs on GPU 0. Not yet run on a GPU.

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cosmograd::core::config::Config;
use cosmograd::core::sim::{Event, Simulation};
use cosmograd::nn::cnn::{Cnn, CnnConfig};
use cosmograd::nn::layers::{Activation, Norm};
use cosmograd::nn::symmetry::pick;
use cosmograd::nn::train::{train, LrSchedule};
use plotters::prelude::*;
use std::io::Write;
use std::time::Instant;

mod common;
use common::{device, opt, outputs, train_config, MseTask};

struct Preset {
    box_size: f64,
    n: usize,
    steps: usize,
    train: usize,
    test: usize,
    channels: &'static [usize],
    hidden: usize,
    /// Passes over the training runs (40 batches each in the small preset, 50 in the full one).
    epochs: usize,
    batch: usize,
    lr: f64,
}

const SMALL: Preset = Preset {
    box_size: 128.0,
    n: 32,
    steps: 8,
    train: 320,
    test: 40,
    channels: &[8, 16, 16, 32],
    hidden: 32,
    epochs: 75,
    batch: 8,
    lr: 2e-3,
};
const FULL: Preset = Preset {
    box_size: 256.0,
    n: 60,
    steps: 16,
    train: 400,
    test: 50,
    channels: &[32, 64, 64, 128],
    hidden: 64,
    epochs: 160,
    batch: 8,
    lr: 1e-3,
};

const RANGES: [(f64, f64); 2] = [(0.25, 0.40), (0.70, 0.90)];

/// Deterministic uniform in [0, 1) from (seed, i) (splitmix64).
fn unif(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Latin hypercube of `n` points in the two ranges: one point per stratum of each axis,
/// strata paired by a seeded permutation, jittered inside each stratum.
fn latin_hypercube(n: usize, seed: u64) -> Vec<[f64; 2]> {
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (unif(seed, i as u64) * (i + 1) as f64) as usize;
        perm.swap(i, j);
    }
    (0..n)
        .map(|i| {
            let u = [
                (i as f64 + unif(seed + 1, i as u64)) / n as f64,
                (perm[i] as f64 + unif(seed + 2, i as u64)) / n as f64,
            ];
            [0, 1].map(|a| RANGES[a].0 + u[a] * (RANGES[a].1 - RANGES[a].0))
        })
        .collect()
}

/// One run: density contrast (m³) and log P(k) bins.
fn simulate(p: &Preset, theta: [f64; 2], seed: u64) -> Result<(Vec<f32>, Vec<f64>), Box<dyn std::error::Error>> {
    let mut cfg = Config::default();
    cfg.box_.size = p.box_size;
    cfg.box_.particles = p.n;
    cfg.box_.mesh = p.n;
    cfg.time.a_start = 0.05;
    cfg.time.steps = p.steps;
    cfg.run.seed = seed;
    cfg.cosmology.omega_m = theta[0];
    cfg.cosmology.sigma8 = Some(theta[1]);
    let mut sim = Simulation::<f32>::new(&cfg)?;
    let w = sim.white_noise();
    let mut state = sim.initial_conditions(w)?;
    sim.run(&mut state, |_e: Event<'_, f32>| Ok(()))?;
    let delta = sim.density(&state);
    let pk = sim.power(&delta);
    let logp = pk.p.iter().map(|v| v.max(1e-30).ln()).collect();
    Ok((delta, logp))
}

/// Solves the ridge normal equations (XᵀX + λI) B = XᵀY by Gaussian elimination (f64).
fn ridge(x: &[Vec<f64>], y: &[[f64; 2]], lambda: f64) -> Vec<[f64; 2]> {
    let d = x[0].len();
    let mut a = vec![vec![0.0; d + 2]; d];
    for (xi, yi) in x.iter().zip(y) {
        for r in 0..d {
            for c in 0..d {
                a[r][c] += xi[r] * xi[c];
            }
            a[r][d] += xi[r] * yi[0];
            a[r][d + 1] += xi[r] * yi[1];
        }
    }
    for (r, row) in a.iter_mut().enumerate() {
        row[r] += lambda;
    }
    for col in 0..d {
        let piv = (col..d).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        a.swap(col, piv);
        for r in 0..d {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in col..d + 2 {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
    }
    (0..d).map(|r| [a[r][d] / a[r][r], a[r][d + 1] / a[r][r]]).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("device: {:?}", device());
    let args: Vec<String> = std::env::args().collect();
    let p = if args.iter().any(|a| a == "--full") { FULL } else { SMALL };
    let epochs: usize = opt(&args, "--epochs").unwrap_or(p.epochs);
    let (txt, png) = outputs(&args, "param_cnn")?;
    let m = p.n;
    let t0 = Instant::now();
    let nrun = p.train + p.test;
    let thetas = latin_hypercube(nrun, 11);
    let runs: Vec<(Vec<f32>, Vec<f64>)> = thetas
        .iter()
        .enumerate()
        .map(|(i, t)| simulate(&p, *t, 5000 + i as u64))
        .collect::<Result<_, _>>()?;
    println!("simulated {nrun} runs of {m}³ in {:.1} s", t0.elapsed().as_secs_f64());
    // Held-out runs: every 5th point of the hypercube (spread over the parameter space).
    let is_test = |i: usize| i % (nrun / p.test) == 0 && i / (nrun / p.test) < p.test;
    let (tr, te): (Vec<usize>, Vec<usize>) = (0..nrun).partition(|&i| !is_test(i));
    // Standardisation of targets and of the input field (training runs only).
    let mean = [0, 1].map(|a| tr.iter().map(|&i| thetas[i][a]).sum::<f64>() / tr.len() as f64);
    let std = [0, 1].map(|a| (tr.iter().map(|&i| (thetas[i][a] - mean[a]).powi(2)).sum::<f64>() / tr.len() as f64).sqrt());
    // The CNN sees ln(1 + δ) (floored at 1 + δ = 10⁻², for empty cells), standardised with
    // the mean and rms over the training runs: the log compresses the peaks that dominate δ.
    let logd = |v: f32| (1.0 + v as f64).max(1e-2).ln();
    let count = (tr.len() * m * m * m) as f64;
    let dmean = tr.iter().map(|&i| runs[i].0.iter().map(|&v| logd(v)).sum::<f64>()).sum::<f64>() / count;
    let dstd = (tr
        .iter()
        .map(|&i| runs[i].0.iter().map(|&v| (logd(v) - dmean).powi(2)).sum::<f64>())
        .sum::<f64>()
        / count)
        .sqrt();
    let z = |t: [f64; 2]| [0, 1].map(|a| (t[a] - mean[a]) / std[a]);
    let unz = |s: [f64; 2]| [0, 1].map(|a| s[a] * std[a] + mean[a]);
    let field = |i: usize| -> candle_core::Result<Tensor> {
        Tensor::from_vec(
            runs[i].0.iter().map(|&v| ((logd(v) - dmean) / dstd) as f32).collect::<Vec<f32>>(),
            (1, 1, m, m, m),
            device(),
        )
    };

    // P(k) baseline: ridge on [1, log P(k_1..k_B)], λ picked by leave-one-out over a small grid.
    let feats = |i: usize| -> Vec<f64> { std::iter::once(1.0).chain(runs[i].1.iter().copied()).collect() };
    let ztr: Vec<[f64; 2]> = tr.iter().map(|&i| z(thetas[i])).collect();
    let predict = |b: &[[f64; 2]], f: &[f64]| -> [f64; 2] { [0, 1].map(|a| b.iter().zip(f).map(|(w, x)| w[a] * x).sum::<f64>()) };
    let mut best = (f64::INFINITY, 0.0);
    for lambda in [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0] {
        let mut err = 0.0;
        for k in 0..tr.len() {
            let xs: Vec<Vec<f64>> = tr.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, &i)| feats(i)).collect();
            let ys: Vec<[f64; 2]> = ztr.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, y)| *y).collect();
            let b = ridge(&xs, &ys, lambda);
            let pr = predict(&b, &feats(tr[k]));
            err += (pr[0] - ztr[k][0]).powi(2) + (pr[1] - ztr[k][1]).powi(2);
        }
        if err < best.0 {
            best = (err, lambda);
        }
    }
    let b = ridge(&tr.iter().map(|&i| feats(i)).collect::<Vec<_>>(), &ztr, best.1);
    println!(
        "P(k) ridge baseline: {} features, λ = {} (leave-one-out)",
        runs[0].1.len() + 1,
        best.1
    );

    // CNN.
    let cfg = CnnConfig {
        in_channels: 1,
        channels: p.channels.to_vec(),
        hidden: vec![p.hidden],
        outputs: 2,
        norm: Norm::None,
        activation: Activation::LeakyRelu,
        input_side: m,
    };
    let vm = VarMap::new();
    let net = Cnn::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, device()))?;
    let fields: Vec<Tensor> = (0..nrun).map(field).collect::<Result<_, _>>()?;
    // Sample k of the task is training run tr[k], under a cube symmetry drawn from (step, slot).
    let mut tc = train_config(epochs, p.batch, p.lr, 99);
    tc.lr_schedule = LrSchedule::Cosine;
    let steps = epochs * tr.len().div_ceil(p.batch);
    let sample = |step: u64, j: u64, k: usize| -> cosmograd::nn::Result<(Tensor, Tensor)> {
        let i = tr[k];
        let y = Tensor::from_vec(z(thetas[i]).map(|v| v as f32).to_vec(), (1, 2), device())?;
        Ok((pick(3, step, j).apply_scalar(&fields[i])?, y))
    };
    let mut task = MseTask::new(tr.len(), steps, 50, sample, |x: &Tensor| net.forward(x));
    train(&mut task, &vm, &tc)?;

    // Held-out evaluation (CNN prediction averaged over the 48 symmetries of each field).
    let all = cosmograd::nn::symmetry::Symmetry::all();
    let mut rows = Vec::new();
    for &i in &te {
        let xs: Vec<Tensor> = all.iter().map(|g| g.apply_scalar(&fields[i])).collect::<Result<_, _>>()?;
        let out = net.forward(&Tensor::cat(&xs, 0)?)?.mean(0)?.to_vec1::<f32>()?;
        let cnn = unz([out[0] as f64, out[1] as f64]);
        let pk = unz(predict(&b, &feats(i)));
        rows.push((thetas[i], cnn, pk));
    }
    let rel = |f: &dyn Fn(&([f64; 2], [f64; 2], [f64; 2])) -> [f64; 2], a: usize| {
        rows.iter().map(|r| ((f(r)[a] - r.0[a]) / r.0[a]).abs()).sum::<f64>() / rows.len() as f64
    };
    let cnn_err = [rel(&|r| r.1, 0), rel(&|r| r.1, 1)];
    let pk_err = [rel(&|r| r.2, 0), rel(&|r| r.2, 1)];
    let mut f = std::fs::File::create(&txt)?;
    writeln!(
        f,
        "# param_cnn: {} training and {} held-out runs, {m}³ mesh, {} Mpc/h, {epochs} epochs ({steps} iterations)",
        tr.len(),
        te.len(),
        p.box_size
    )?;
    writeln!(f, "# Omega_m_true sigma8_true Omega_m_cnn sigma8_cnn Omega_m_pk sigma8_pk")?;
    for r in &rows {
        writeln!(
            f,
            "{:.4} {:.4} {:.4} {:.4} {:.4} {:.4}",
            r.0[0], r.0[1], r.1[0], r.1[1], r.2[0], r.2[1]
        )?;
    }
    let summary = format!(
        "mean relative error on held-out runs: CNN Ω_m {:.4}, σ_8 {:.4}; P(k) ridge Ω_m {:.4}, σ_8 {:.4}; prior half-width/centre Ω_m {:.3}, σ_8 {:.3}",
        cnn_err[0],
        cnn_err[1],
        pk_err[0],
        pk_err[1],
        0.075 / 0.325,
        0.1 / 0.8
    );
    writeln!(f, "# {summary}")?;
    println!("{}", std::fs::read_to_string(&txt)?);
    plot(&png, &rows)?;
    println!(
        "{summary}\nwrote {} and {}; total {:.0} s",
        txt.display(),
        png.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

type Row = ([f64; 2], [f64; 2], [f64; 2]);

fn plot(path: &std::path::Path, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    for (area, a, name) in [(left, 0usize, "Omega_m"), (right, 1, "sigma_8")] {
        let (lo, hi) = (RANGES[a].0 - 0.05, RANGES[a].1 + 0.05);
        let mut ch = ChartBuilder::on(&area)
            .caption(format!("{name}: predicted vs true"), ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(lo..hi, lo..hi)?;
        ch.configure_mesh().x_desc("true").y_desc("predicted").draw()?;
        ch.draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.mix(0.4)))?;
        ch.draw_series(rows.iter().map(|r| Circle::new((r.0[a], r.1[a]), 4, BLUE.filled())))?
            .label("CNN")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, BLUE.filled()));
        ch.draw_series(rows.iter().map(|r| TriangleMarker::new((r.0[a], r.2[a]), 5, RED.filled())))?
            .label("P(k) ridge")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, RED.filled()));
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
