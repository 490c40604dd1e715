//! Hybrid PM: train a learned force correction (pm-nn's `MlpCorrection`, a candle MLP f_θ(|k|, a)
//! multiplying the PM potential by 1 + f_θ) **through the reverse-time adjoint** so that a coarse PM
//! run (force mesh = particle grid, few steps) matches a fine one (mesh 2×, more steps) in P(k).
//!
//! Per seed, the fine run's final particles (and those of a snapshot at a = 0.5) are painted on the
//! coarse mesh and measured with the coarse run's estimator: the targets of a `PowerLoss` (log-ratio
//! χ², bins with k ≤ k_Nyq of the coarse mesh). The seeds are split into training and held-out
//! runs; pm-nn's training loop (AdamW, seeded shuffling, progress bar) steps θ with the adjoint's
//! ∂L/∂θ (`force_params`). The table compares P_coarse/P_fine − 1 on the held-out seeds before and
//! after training, at every bin and interpolated at k = k_Nyq/2.
//!
//! ```sh
//! cargo run --release --example hybrid_force            # small preset: 32³ particles, 2 cores, minutes
//! cargo run --release --example hybrid_force -- --full  # 64³ particles, more seeds and epochs
//! cargo run --release --example hybrid_force -- --checkpoint hf.safetensors [--resume | --force]
//! ```

use clap::Parser;
use pm_adjoint::{loss_value, value_and_grad, GradOptions, Objective};
use pm_core::config::Config;
use pm_core::correction::ForceCorrection;
use pm_core::loss::{Loss, PowerLoss};
use pm_core::noise::white_noise;
use pm_core::sim::{Event, Simulation};
use pm_nn::force::{MlpConfig, MlpCorrection};
use pm_nn::train::{grad_store_flat, train, Existing, GradStore, Task, TrainConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Train a learned PM force correction through the adjoint (coarse → fine P(k))")]
struct Args {
    /// Larger preset (64³ particles, more seeds and epochs): for a fast machine.
    #[arg(long)]
    full: bool,
    /// Override the number of training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Write a training checkpoint (safetensors) here.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Resume from an existing checkpoint.
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Overwrite an existing checkpoint.
    #[arg(long, requires = "checkpoint", conflicts_with = "resume")]
    force: bool,
}

struct Preset {
    n: usize,
    size: f64,
    coarse_steps: usize,
    fine_steps: usize,
    seeds: usize,
    val_fraction: f64,
    epochs: usize,
    batch: usize,
    lr: f64,
}

const SMALL: Preset = Preset {
    n: 32,
    size: 64.0,
    coarse_steps: 10,
    fine_steps: 40,
    seeds: 8,
    val_fraction: 0.25,
    epochs: 60,
    batch: 2,
    lr: 0.02,
};

const FULL: Preset = Preset {
    n: 64,
    size: 128.0,
    coarse_steps: 10,
    fine_steps: 60,
    seeds: 16,
    val_fraction: 0.25,
    epochs: 30,
    batch: 4,
    lr: 0.01,
};

/// Scale factor of the intermediate snapshot that also enters the loss.
const A_MID: f64 = 0.5;

/// The training problem: one sample per seed (white noise and its P(k) targets).
struct Hybrid {
    sim: Simulation<f32>,
    mlp: MlpCorrection,
    noise: Vec<Vec<f32>>,
    /// Per seed: the loss at `A_MID` and at a_stop.
    losses: Vec<[PowerLoss<f32>; 2]>,
}

impl Hybrid {
    fn install(&mut self, with: bool) {
        let corr: Option<Box<dyn ForceCorrection>> = if with { Some(Box::new(self.mlp.clone())) } else { None };
        self.sim.set_force_correction(corr);
    }
}

impl Task for Hybrid {
    fn len(&self) -> usize {
        self.noise.len()
    }
    fn loss_and_grads(&mut self, batch: &[usize]) -> pm_nn::Result<(f64, GradStore)> {
        self.install(true);
        let opts = GradOptions {
            cosmology: false,
            ..Default::default()
        };
        let mut grad = vec![0.0; self.mlp.n_params()];
        let mut loss = 0.0;
        for &i in batch {
            let [mid, end] = &self.losses[i];
            let obj = Objective::new().at(A_MID, mid as &dyn Loss<f32>).at_end(end);
            let g = value_and_grad(&mut self.sim, &self.noise[i], &obj, &opts).map_err(nn_error)?;
            loss += g.loss / batch.len() as f64;
            grad.iter_mut().zip(&g.force_params).for_each(|(a, b)| *a += b / batch.len() as f64);
        }
        Ok((loss, grad_store_flat(&self.mlp.vars(), &grad)?))
    }
    fn loss(&mut self, batch: &[usize]) -> pm_nn::Result<f64> {
        self.install(true);
        let mut loss = 0.0;
        for &i in batch {
            let [mid, end] = &self.losses[i];
            let obj = Objective::new().at(A_MID, mid as &dyn Loss<f32>).at_end(end);
            loss += loss_value(&mut self.sim, &self.noise[i], &obj).map_err(nn_error)? / batch.len() as f64;
        }
        Ok(loss)
    }
}

/// pm-adjoint's error as the training loop's (pm-nn's): pm-core's errors pass through, pm-adjoint's
/// own keep their message word for word.
fn nn_error(e: pm_adjoint::Error) -> pm_nn::Error {
    match e {
        pm_adjoint::Error::Core(e) => pm_nn::Error::Core(e),
        e => pm_nn::Error::Candle(candle_core::Error::Msg(e.to_string())),
    }
}

/// P(k) on the coarse mesh of the coarse run's final state, with or without the correction.
fn coarse_power(h: &mut Hybrid, i: usize, with: bool) -> Vec<f64> {
    h.install(with);
    let mut st = h.sim.initial_conditions(h.noise[i].clone()).unwrap();
    h.sim.run(&mut st, |_| Ok(())).unwrap();
    h.sim.power(&h.sim.density(&st)).p
}

/// Linear interpolation of `y(x)` at `x0` (x increasing).
fn interp(x: &[f64], y: &[f64], x0: f64) -> f64 {
    let j = x.iter().position(|&v| v >= x0).unwrap_or(x.len() - 1).max(1);
    let t = (x0 - x[j - 1]) / (x[j] - x[j - 1]);
    y[j - 1] + t * (y[j] - y[j - 1])
}

fn main() {
    let args = Args::parse();
    let p = if args.full { FULL } else { SMALL };
    let epochs = args.epochs.unwrap_or(p.epochs);
    let mut coarse = Config::default();
    (coarse.box_.particles, coarse.box_.mesh, coarse.box_.size, coarse.time.steps) = (p.n, p.n, p.size, p.coarse_steps);
    coarse.time.snapshots = vec![A_MID];
    let mut fine = coarse.clone();
    (fine.box_.mesh, fine.time.steps) = (2 * p.n, p.fine_steps);
    let k_nyq = std::f64::consts::PI * p.n as f64 / p.size;
    println!(
        "hybrid_force: {}³ particles in {} Mpc/h; coarse: mesh {}³, {} steps; fine: mesh {}³, {} steps; {} seeds; k_Nyq = {k_nyq:.3} h/Mpc",
        p.n,
        p.size,
        p.n,
        p.coarse_steps,
        2 * p.n,
        p.fine_steps,
        p.seeds
    );

    // Targets: the fine runs painted on the coarse mesh, at A_MID and at a_stop.
    let t0 = Instant::now();
    let sim = Simulation::<f32>::new(&coarse).unwrap();
    let mut fine_sim = Simulation::<f32>::new(&fine).unwrap();
    let mut noise = Vec::new();
    let mut losses = Vec::new();
    let mut fine_p = Vec::new();
    for s in 0..p.seeds {
        let w = white_noise::<f32>(p.n, 1000 + s as u64);
        let mut st = fine_sim.initial_conditions(w.clone()).unwrap();
        let mut dens = Vec::new();
        fine_sim
            .run(&mut st, |e| {
                if let Event::Snapshot(state) = e {
                    dens.push(sim.density(state));
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(dens.len(), 2, "snapshots at a = {A_MID} and a_stop");
        let mk = |d: &[f32]| PowerLoss::from_density(&sim.mesh_context(), d, Some(k_nyq)).unwrap();
        fine_p.push(sim.power(&dens[1]).p);
        losses.push([mk(&dens[0]), mk(&dens[1])]);
        noise.push(w);
    }
    println!("fine runs (targets): {:.1} s", t0.elapsed().as_secs_f64());

    let mlp = MlpCorrection::new(MlpConfig::for_simulation(&coarse)).unwrap();
    let varmap = mlp.varmap().clone();
    let mut task = Hybrid { sim, mlp, noise, losses };
    let mut cfg = TrainConfig::default();
    (cfg.epochs, cfg.batch_size, cfg.val_fraction, cfg.seed) = (epochs, p.batch, p.val_fraction, 7);
    cfg.checkpoint = args.checkpoint.clone();
    cfg.existing = if args.resume {
        Existing::Resume
    } else if args.force {
        Existing::Overwrite
    } else {
        Existing::Refuse
    };
    cfg.progress = true;
    cfg.adamw.lr = p.lr;
    cfg.adamw.weight_decay = 0.0;
    let t1 = Instant::now();
    let report = match train(&mut task, &varmap, &cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "training: {} epochs in {:.1} s ({} training seeds, {} held out)",
        epochs - report.resumed_from,
        t1.elapsed().as_secs_f64(),
        report.train_idx.len(),
        report.val_idx.len()
    );
    println!("{:>5} {:>12} {:>12}", "epoch", "train loss", "val loss");
    for s in &report.history {
        println!("{:>5} {:>12.4e} {:>12.4e}", s.epoch, s.train_loss, s.val_loss);
    }

    // P(k) error on the held-out seeds, before (plain PM) and after (trained correction).
    let k = task.sim.power(&vec![0.0f32; p.n * p.n * p.n]).k;
    let nb = k.len();
    let (mut before, mut after) = (vec![0.0; nb], vec![0.0; nb]);
    let val = &report.val_idx;
    for &i in val {
        let (pb, pa) = (coarse_power(&mut task, i, false), coarse_power(&mut task, i, true));
        for b in 0..nb {
            before[b] += (pb[b] / fine_p[i][b] - 1.0) / val.len() as f64;
            after[b] += (pa[b] / fine_p[i][b] - 1.0) / val.len() as f64;
        }
    }
    let mut f = vec![0.0; nb];
    task.mlp.eval(1.0, &k, &mut f);
    println!("\nheld-out seeds {val:?}: P_coarse/P_fine − 1 at a = 1 (k ≤ k_Nyq)");
    println!("{:>9} {:>10} {:>10} {:>10}", "k h/Mpc", "before", "after", "f_θ(k,1)");
    for b in (0..nb).filter(|&b| k[b] <= k_nyq) {
        println!("{:>9.4} {:>+10.4} {:>+10.4} {:>+10.4}", k[b], before[b], after[b], f[b]);
    }
    let kh = 0.5 * k_nyq;
    let (eb, ea) = (interp(&k, &before, kh).abs(), interp(&k, &after, kh).abs());
    println!(
        "\n|P_coarse/P_fine − 1| at k_Nyq/2 = {kh:.3} h/Mpc: before {:.2} %, after {:.2} % → reduced {:.1}×",
        100.0 * eb,
        100.0 * ea,
        eb / ea
    );
    let rms = |e: &[f64]| {
        let v: Vec<f64> = (0..nb).filter(|&b| k[b] <= k_nyq).map(|b| e[b] * e[b]).collect();
        (v.iter().sum::<f64>() / v.len() as f64).sqrt()
    };
    println!(
        "rms over bins k ≤ k_Nyq: before {:.2} %, after {:.2} %",
        100.0 * rms(&before),
        100.0 * rms(&after)
    );
}
