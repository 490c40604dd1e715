//! Density → velocity with a 3D U-net (after Wu et al. 2021, ApJ 913:2), against linear theory.
//!
//! 1. Simulates training and held-out boxes with pm-core (`Simulation`, 2LPT + FastPM leapfrog),
//!    and paints the CIC density δ and the mass-weighted velocity field v on the mesh at a = 1.
//! 2. Normalises by linear theory (`pm_nn::normalize`): u = v/(a H f D) (Mpc/h), δ/D.
//!    The linear-theory baseline is u_lin(k) = i δ(k) k/k² (v(k) = i a H f δ(k) k/k²).
//! 3. Trains a periodic U-net (pm-nn's training loop `pm_nn::train`: AdamW, seeded shuffling; MSE,
//!    the 48 cube symmetries as augmentation) whose input is
//!    (δ, u_lin) and whose output is added to u_lin: the network learns the non-linear correction.
//! 4. On the held-out boxes: r(k) and power ratios P_pred/P_true of v, θ = ∇·v and |∇×v|, for
//!    the network and for linear theory; writes `velocity_unet.txt` and `velocity_unet.png`.
//!
//! Run (small preset, a few minutes on 2 cores):
//!   `cargo run --release --example velocity_unet -- [--out DIR] [--epochs N] [--force]`
//! `--full` is a larger preset (128 Mpc/h, 64³, more boxes and iterations) meant for a fast
//! machine. GPU: `cargo run --release --features nn-cuda --example velocity_unet -- --full` (needs
//! the CUDA toolkit with nvcc to build candle's kernels); the network then runs on GPU 0 (the
//! convolutions take pm-nn's candle-ops path), the simulations stay on the CPU. Not yet run on a
//! GPU.

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cosmograd::core::config::Config;
use cosmograd::core::fft::Fft3;
use cosmograd::core::float::C;
use cosmograd::core::mesh::MeshGeom;
use cosmograd::core::power::{cross_spectrum, velocity_field, Deconvolve};
use cosmograd::core::sim::{Event, Simulation};
use cosmograd::nn::layers::{Activation, Norm, Padding};
use cosmograd::nn::normalize::LinearScaling;
use cosmograd::nn::symmetry::{pick, Symmetry};
use cosmograd::nn::train;
use cosmograd::nn::unet::{Bypass, UNet, UNetConfig};
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
    width: usize,
    /// Passes over the training boxes (4 batches each in the small preset, 8 in the full one).
    epochs: usize,
    batch: usize,
    lr: f64,
}

const SMALL: Preset = Preset {
    box_size: 64.0,
    n: 32,
    steps: 10,
    train: 8,
    test: 2,
    width: 8,
    epochs: 75,
    batch: 2,
    lr: 2e-3,
};
const FULL: Preset = Preset {
    box_size: 128.0,
    n: 64,
    steps: 20,
    train: 32,
    test: 4,
    width: 16,
    epochs: 375,
    batch: 4,
    lr: 1e-3,
};

/// One box: δ/D (m³), true and linear-theory normalised velocities (3 × m³), all f32.
struct BoxData {
    delta: Vec<f32>,
    u_true: [Vec<f32>; 3],
    u_lin: [Vec<f32>; 3],
}

/// Spectral derivatives on an m³ periodic mesh of side `l` (Nyquist modes zeroed).
struct Spectral {
    m: usize,
    geom: MeshGeom,
    fft: Fft3<f32>,
}

impl Spectral {
    fn new(m: usize, l: f64) -> Self {
        Self {
            m,
            geom: MeshGeom::new(m, l),
            fft: Fft3::new(m),
        }
    }

    fn fwd(&self, f: &[f32]) -> Vec<C<f32>> {
        let mut a = f.to_vec();
        let mut out = vec![C::new(0.0, 0.0); self.fft.complex_len()];
        self.fft.forward(&mut a, &mut out);
        out
    }

    fn inv(&self, mut k: Vec<C<f32>>) -> Vec<f32> {
        let mut out = vec![0.0; self.m * self.m * self.m];
        self.fft.inverse(&mut k, &mut out);
        let s = 1.0 / (self.m * self.m * self.m) as f32;
        out.iter_mut().for_each(|v| *v *= s);
        out
    }

    /// Calls f(index, k vector) for each stored mode; returns None for Nyquist/zero modes.
    fn map(&self, src: &[C<f32>], f: impl Fn([f64; 3], C<f32>) -> C<f32>) -> Vec<C<f32>> {
        let (m, mc) = (self.m, self.m / 2 + 1);
        let mut out = vec![C::new(0.0, 0.0); src.len()];
        for ix in 0..m {
            for iy in 0..m {
                for iz in 0..mc {
                    let i = (ix * m + iy) * mc + iz;
                    if self.geom.is_nyquist(ix) || self.geom.is_nyquist(iy) || iz == m / 2 || (ix == 0 && iy == 0 && iz == 0) {
                        continue;
                    }
                    out[i] = f([self.geom.k_of(ix), self.geom.k_of(iy), self.geom.kz_of(iz)], src[i]);
                }
            }
        }
        out
    }

    /// u_lin = i k/k² δ.
    fn linear_velocity(&self, delta: &[f32]) -> [Vec<f32>; 3] {
        let dk = self.fwd(delta);
        std::array::from_fn(|a| {
            self.inv(self.map(&dk, |k, d| {
                let k2 = k[0] * k[0] + k[1] * k[1] + k[2] * k[2];
                C::new(0.0, (k[a] / k2) as f32) * d
            }))
        })
    }

    /// θ = ∇·u and |∇×u| in real space.
    fn div_curl(&self, u: &[Vec<f32>; 3]) -> (Vec<f32>, Vec<f32>) {
        let uk: Vec<Vec<C<f32>>> = u.iter().map(|c| self.fwd(c)).collect();
        let i = C::new(0.0, 1.0f32);
        let deriv = |a: usize, b: usize| self.inv(self.map(&uk[b], |k, v| i * (k[a] as f32) * v)); // ∂_a u_b
        let theta_parts: Vec<Vec<f32>> = (0..3).map(|a| deriv(a, a)).collect();
        let theta: Vec<f32> = (0..theta_parts[0].len())
            .map(|j| theta_parts[0][j] + theta_parts[1][j] + theta_parts[2][j])
            .collect();
        let w: Vec<Vec<f32>> = [(1, 2), (2, 0), (0, 1)]
            .iter()
            .map(|&(a, b)| {
                let (p, q) = (deriv(a, b), deriv(b, a));
                p.iter().zip(&q).map(|(x, y)| x - y).collect()
            })
            .collect();
        let mag = (0..theta.len())
            .map(|j| (w[0][j].powi(2) + w[1][j].powi(2) + w[2][j].powi(2)).sqrt())
            .collect();
        (theta, mag)
    }
}

fn simulate(p: &Preset, seed: u64, sp: &Spectral) -> Result<BoxData, Box<dyn std::error::Error>> {
    let mut cfg = Config::default();
    cfg.box_.size = p.box_size;
    cfg.box_.particles = p.n;
    cfg.box_.mesh = p.n;
    cfg.time.a_start = 0.05;
    cfg.time.steps = p.steps;
    cfg.run.seed = seed;
    let mut sim = Simulation::<f32>::new(&cfg)?;
    let w = sim.white_noise();
    let mut state = sim.initial_conditions(w)?;
    sim.run(&mut state, |_e: Event<'_, f32>| Ok(()))?;
    let scale = LinearScaling::new(sim.growth(), state.a)?;
    let mut delta = sim.density(&state);
    delta.iter_mut().for_each(|d| *d *= scale.density_factor() as f32);
    let vel = sim.velocities(&state);
    let mut v = velocity_field(sim.gravity().cic(), &state.disp, &vel, &mut Default::default());
    for c in v.iter_mut() {
        c.iter_mut().for_each(|x| *x *= scale.velocity_factor() as f32);
    }
    let u_lin = sp.linear_velocity(&delta);
    Ok(BoxData { delta, u_true: v, u_lin })
}

fn tensor(fields: &[&[f32]], m: usize) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = fields.iter().flat_map(|f| f.iter().copied()).collect();
    Tensor::from_vec(data, (1, fields.len(), m, m, m), device())
}

/// Network input (δ, u_lin) and the residual target u_true − u_lin, 1×4×m³ and 1×3×m³.
fn sample(b: &BoxData, m: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let x = tensor(&[&b.delta, &b.u_lin[0], &b.u_lin[1], &b.u_lin[2]], m)?;
    let res: Vec<Vec<f32>> = (0..3)
        .map(|a| b.u_true[a].iter().zip(&b.u_lin[a]).map(|(t, l)| t - l).collect())
        .collect();
    let y = tensor(&[&res[0], &res[1], &res[2]], m)?;
    Ok((x, y))
}

fn augment(g: &Symmetry, x: &Tensor, y: &Tensor) -> cosmograd::nn::Result<(Tensor, Tensor)> {
    let d = g.apply_scalar(&x.narrow(1, 0, 1)?)?;
    let ul = g.apply_vector(&x.narrow(1, 1, 3)?)?;
    Ok((Tensor::cat(&[&d, &ul], 1)?, g.apply_vector(y)?))
}

/// Spectra accumulated over boxes: (k, P_aa, P_bb, P_ab) summed, r and ratio computed at the end.
#[derive(Default, Clone)]
struct Acc {
    k: Vec<f64>,
    paa: Vec<f64>,
    pbb: Vec<f64>,
    pab: Vec<f64>,
}

impl Acc {
    fn add(&mut self, pred: &[f32], truth: &[f32], sp: &Spectral) {
        let cs = cross_spectrum(pred, truth, &sp.geom, &sp.fft, Deconvolve::None);
        if self.k.is_empty() {
            self.k = cs.k.clone();
            self.paa = vec![0.0; cs.k.len()];
            self.pbb = vec![0.0; cs.k.len()];
            self.pab = vec![0.0; cs.k.len()];
        }
        for i in 0..cs.k.len() {
            self.paa[i] += cs.p_aa[i];
            self.pbb[i] += cs.p_bb[i];
            self.pab[i] += cs.p_ab[i];
        }
    }
    fn r(&self, i: usize) -> f64 {
        self.pab[i] / (self.paa[i] * self.pbb[i]).sqrt()
    }
    fn ratio(&self, i: usize) -> f64 {
        self.paa[i] / self.pbb[i]
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("device: {:?}", device());
    let args: Vec<String> = std::env::args().collect();
    let p = if args.iter().any(|a| a == "--full") { FULL } else { SMALL };
    let epochs: usize = opt(&args, "--epochs").unwrap_or(p.epochs);
    let (txt, png) = outputs(&args, "velocity_unet")?;
    let m = p.n;
    let sp = Spectral::new(m, p.box_size);
    let t0 = Instant::now();
    let boxes: Vec<BoxData> = (0..p.train + p.test)
        .map(|i| simulate(&p, 1000 + i as u64, &sp))
        .collect::<Result<_, _>>()?;
    println!(
        "simulated {} boxes of {m}³ particles, {} Mpc/h, in {:.1} s",
        boxes.len(),
        p.box_size,
        t0.elapsed().as_secs_f64()
    );
    let (train, test) = boxes.split_at(p.train);
    let train_s: Vec<(Tensor, Tensor)> = train.iter().map(|b| sample(b, m)).collect::<Result<_, _>>()?;

    let cfg = UNetConfig {
        in_channels: 4,
        out_channels: 3,
        levels: 3,
        width: p.width,
        convs: vec![2, 2, 2],
        norm: Norm::None,
        activation: Activation::LeakyRelu,
        bypass: Bypass::Concat,
        padding: Padding::Periodic,
        crop: 0,
    };
    let vm = VarMap::new();
    let net = UNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, device()))?;
    // Sample i of the task is training box i, under a cube symmetry drawn from (step, slot).
    let steps = epochs * train_s.len().div_ceil(p.batch);
    let augmented = |step: u64, j: u64, i: usize| augment(&pick(7, step, j), &train_s[i].0, &train_s[i].1);
    let mut task = MseTask::new(train_s.len(), steps, 25, augmented, |x: &Tensor| net.forward(x));
    train::train(&mut task, &vm, &train_config(epochs, p.batch, p.lr, 7))?;

    // Held-out evaluation.
    let mut acc: Vec<Acc> = vec![Acc::default(); 6]; // v net, v lin, θ net, θ lin, |ω| net, |ω| lin
    let mut mse = [0.0f64; 2];
    for b in test {
        let (x, _) = sample(b, m)?;
        let corr = net.forward(&x)?.squeeze(0)?;
        let pred: [Vec<f32>; 3] = std::array::from_fn(|a| {
            let c = corr
                .get(a)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .expect("prediction");
            c.iter().zip(&b.u_lin[a]).map(|(c, l)| c + l).collect()
        });
        for a in 0..3 {
            acc[0].add(&pred[a], &b.u_true[a], &sp);
            acc[1].add(&b.u_lin[a], &b.u_true[a], &sp);
            for j in 0..pred[a].len() {
                mse[0] += ((pred[a][j] - b.u_true[a][j]) as f64).powi(2);
                mse[1] += ((b.u_lin[a][j] - b.u_true[a][j]) as f64).powi(2);
            }
        }
        let (th_t, w_t) = sp.div_curl(&b.u_true);
        let (th_p, w_p) = sp.div_curl(&pred);
        let (th_l, w_l) = sp.div_curl(&b.u_lin);
        acc[2].add(&th_p, &th_t, &sp);
        acc[3].add(&th_l, &th_t, &sp);
        acc[4].add(&w_p, &w_t, &sp);
        acc[5].add(&w_l, &w_t, &sp);
    }
    let k = acc[0].k.clone();
    let mut f = std::fs::File::create(&txt)?;
    writeln!(
        f,
        "# velocity_unet: held-out boxes {}, box {} Mpc/h, mesh {m}³, {epochs} epochs ({steps} iterations) of batch {}",
        p.test, p.box_size, p.batch
    )?;
    writeln!(
        f,
        "# r = cross-correlation with the true field, T = P_pred/P_true; net = U-net, lin = linear theory (|curl v| = 0 in linear theory)"
    )?;
    writeln!(
        f,
        "# k[h/Mpc]  r_v_net  r_v_lin  T_v_net  T_v_lin  r_div_net  r_div_lin  T_div_net  T_div_lin  r_curl_net  T_curl_net"
    )?;
    for i in 0..k.len() {
        writeln!(
            f,
            "{:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4}",
            k[i],
            acc[0].r(i),
            acc[1].r(i),
            acc[0].ratio(i),
            acc[1].ratio(i),
            acc[2].r(i),
            acc[3].r(i),
            acc[2].ratio(i),
            acc[3].ratio(i),
            acc[4].r(i),
            acc[4].ratio(i)
        )?;
    }
    let hi: Vec<usize> = (0..k.len()).filter(|&i| k[i] > 0.3).collect();
    let mean = |a: &Acc| hi.iter().map(|&i| a.r(i)).sum::<f64>() / hi.len() as f64;
    let (rn, rl) = (mean(&acc[2]), mean(&acc[3]));
    let summary = format!(
        "held-out: mean r(k) of div v over k > 0.3 h/Mpc: U-net {rn:.4}, linear theory {rl:.4} ({}); velocity MSE U-net {:.4e}, linear {:.4e} (Mpc/h)²",
        if rn > rl { "U-net better" } else { "linear theory better" },
        mse[0] / (3 * m * m * m * p.test) as f64,
        mse[1] / (3 * m * m * m * p.test) as f64
    );
    writeln!(f, "# {summary}")?;
    println!("{}", std::fs::read_to_string(&txt)?);
    plot(&png, &k, &acc)?;
    println!(
        "{summary}\nwrote {} and {}; total {:.0} s",
        txt.display(),
        png.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn plot(path: &std::path::Path, k: &[f64], acc: &[Acc]) -> Result<(), Box<dyn std::error::Error>> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let kmax = k.iter().cloned().fold(0.0, f64::max) * 1.05;
    let series = [("v", 0usize, &BLUE), ("div v", 2, &RED), ("|curl v|", 4, &GREEN)];
    for (area, title, is_r) in [(left, "r(k) with the true field", true), (right, "P_pred / P_true", false)] {
        let (y0, y1) = if is_r { (-0.2, 1.05) } else { (0.0, 1.6) };
        let mut ch = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..kmax, y0..y1)?;
        ch.configure_mesh().x_desc("k [h/Mpc]").draw()?;
        for (name, idx, col) in series {
            let val = |a: &Acc, i: usize| if is_r { a.r(i) } else { a.ratio(i) };
            ch.draw_series(LineSeries::new(
                (0..k.len()).map(|i| (k[i], val(&acc[idx], i))),
                col.stroke_width(2),
            ))?
            .label(format!("{name} U-net"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
            if idx < 4 {
                ch.draw_series(LineSeries::new(
                    (0..k.len()).map(|i| (k[i], val(&acc[idx + 1], i))),
                    col.mix(0.5).stroke_width(1),
                ))?
                .label(format!("{name} linear"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.mix(0.5)));
            }
        }
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
