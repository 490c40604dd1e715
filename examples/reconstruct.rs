//! Initial-field reconstruction through the library API: build the model, make a mock
//! observation, define the posterior, run L-BFGS with adjoint gradients, and compare the
//! reconstructed linear field with the truth.
//!
//! ```text
//! cargo run --release --example reconstruct [-- PARTICLES MESH BOX STEPS ITERATIONS SIGMA]
//! ```
//! Defaults: 32 particles/side, 64³ mesh, 64 Mpc/h, 10 steps, 60 iterations, σ = 0.05.

use pm_adjoint::optim::{lbfgs, LbfgsOptions};
use pm_adjoint::recon::{mock_observation, NoiseModel, Posterior};
use pm_adjoint::GradOptions;
use pm_core::config::Config;
use pm_core::fft::Fft3;
use pm_core::mesh::MeshGeom;
use pm_core::noise::linear_field;
use pm_core::power::{cross_spectrum, Deconvolve};
use pm_core::sim::Simulation;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<f64> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let arg = |i: usize, d: f64| args.get(i).copied().unwrap_or(d);
    let (n, m, l, steps) = (arg(0, 32.0) as usize, arg(1, 64.0) as usize, arg(2, 64.0), arg(3, 10.0) as usize);
    let (iterations, sigma) = (arg(4, 60.0) as usize, arg(5, 0.05));

    // 1. The model: a configured PM simulation (f32 fields, f64 reductions).
    let mut config = Config::default();
    (config.box_.particles, config.box_.mesh, config.box_.size, config.time.steps) = (n, m, l, steps);
    let mut sim = Simulation::<f32>::new(&config)?;

    // 2. A mock: the true white noise from the seed, run forward, plus white noise σ per cell.
    let w_true = sim.white_noise();
    let noise = NoiseModel::White { sigma };
    let t0 = Instant::now();
    // The data on the force mesh (any other data mesh: Posterior::on_mesh).
    let (observed, _signal) = mock_observation(&mut sim, &w_true, &noise, 0.0, m, 7)?;
    println!("forward run: {:.2} s", t0.elapsed().as_secs_f64());

    // 3. The loss: −ln posterior = ½χ²(δ_obs | δ(w)) + ½|w|², its gradient by the adjoint.
    let mut post = Posterior::new(&sim, &observed, noise, 0.0)?;
    let gopts = GradOptions {
        cosmology: false,
        ..Default::default()
    };

    // 4. L-BFGS, annealing the residual smoothing from 2 particle spacings to 0 in three stages.
    let spacing = l / n as f64;
    let mut x = vec![0.0f64; n * n * n];
    let t1 = Instant::now();
    let mut evals = 0;
    for (r, iters) in [
        (2.0 * spacing, iterations / 5),
        (spacing, iterations / 5),
        (0.0, iterations - 2 * (iterations / 5)),
    ] {
        post.set_anneal(r)?;
        let f = |xv: &[f64]| {
            let w: Vec<f32> = xv.iter().map(|&v| v as f32).collect();
            let (value, grad, _) = post.value_and_grad(&mut sim, &w, &gopts)?;
            Ok((value, grad))
        };
        let res = lbfgs(f, x, &LbfgsOptions::with_iterations(iters), |it| {
            if it.iteration % 10 == 0 {
                println!("  R = {r:.2} Mpc/h  iteration {:3}  -ln posterior {:.6e}", it.iteration, it.loss);
            }
            true
        })?;
        println!(
            "stage R = {r:.2}: {} iterations, {} evaluations, loss {:.6e} ({:?})",
            res.iterations, res.evaluations, res.loss, res.stop
        );
        evals += res.evaluations;
        x = res.x;
    }
    let dt = t1.elapsed().as_secs_f64();
    println!("{evals} loss+gradient evaluations in {dt:.1} s ({:.2} s each)", dt / evals as f64);

    // 5. Compare the reconstructed and true linear fields: r(k) and T(k).
    let lattice = MeshGeom::new(n, l);
    let fft = Fft3::<f32>::new(n);
    let lin = sim.linear_power().clone();
    let p = move |k: f64| lin.p(k);
    let mut w_rec: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let rec = linear_field(&mut w_rec, &lattice, &fft, &p);
    let truth = linear_field(&mut w_true.clone(), &lattice, &fft, &p);
    let cs = cross_spectrum(&rec, &truth, &lattice, &fft, Deconvolve::None);
    println!("{:>9} {:>7} {:>7}", "k[h/Mpc]", "r(k)", "T(k)");
    for i in (0..cs.k.len()).step_by(2) {
        println!("{:9.3} {:7.3} {:7.3}", cs.k[i], cs.r[i], (cs.p_aa[i] / cs.p_bb[i]).sqrt());
    }
    Ok(())
}
