//! Throughput of pm-nn's conv3d on the CPU: the fused im2col + gemm custom op against the
//! candle-ops fallback (plain im2col by strided narrows + one matmul), forward and
//! forward + backward, and one training step of the Wu-2021 U-net preset.
//!
//! Run (release, all cores): `cargo run --release -p pm-nn --example conv3d_bench`
//! Options: `--reps N` (default 3), `--channels C` (default 32), `--side S` (default 32),
//! `--batch B` (default 4). Prints a table; GFLOP/s counts 2 flops per multiply-add of the
//! forward (backward = 2 × forward flops), per wall second and per CPU second (÷ threads).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use pm_nn::conv::{conv3d, conv3d_candle, ConvGeom};
use pm_nn::unet::{UNet, UNetConfig};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .map(|v| v.parse().expect("integer option"))
        .unwrap_or(default)
}

/// Best of `reps` wall times in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> pm_nn::Result<()> {
    let (reps, c, s, b) = (arg("--reps", 3), arg("--channels", 32), arg("--side", 32), arg("--batch", 4));
    let threads = rayon::current_num_threads();
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, s, s, s), &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (c, c, 3, 3, 3), &dev)?)?;
    let g = ConvGeom::new(x.dims(), w.dims(), 1, 1)?;
    let gf = g.flops() * 1e-9;
    println!(
        "conv3d f32, batch {b}, {c}→{c} channels, {s}³, k = 3, pad 1; {threads} threads; {:.2} GFLOP per forward",
        gf
    );
    println!("| path | pass | time (ms) | GFLOP/s (wall) | GFLOP per CPU-s |");
    println!("|---|---|---|---|---|");
    type ConvFn = fn(&Tensor, &Tensor, usize, usize) -> pm_nn::Result<Tensor>;
    let paths: [(&str, ConvFn); 2] = [
        ("fused im2col+gemm (custom op)", conv3d),
        ("candle ops im2col + matmul", conv3d_candle),
    ];
    for (name, f) in paths {
        let t_f = best(reps, || {
            f(&x, &w, 1, 1).unwrap();
        });
        let t_fb = best(reps, || {
            let y = f(&x, &w, 1, 1).unwrap();
            y.sum_all().unwrap().backward().unwrap();
        });
        for (pass, t, fl) in [("forward", t_f, gf), ("forward+backward", t_fb, 3.0 * gf)] {
            println!(
                "| {name} | {pass} | {:.1} | {:.1} | {:.1} |",
                t * 1e3,
                fl / t,
                fl / t / threads as f64
            );
        }
    }
    // One U-net training step (forward, MSE loss, backward, AdamW update), Wu-2021 preset.
    let cfg = UNetConfig::wu2021();
    let vm = VarMap::new();
    let net = UNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let mut opt = candle_nn::AdamW::new(
        vm.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let xin = Tensor::randn(0f32, 1.0, (b, 1, 32, 32, 32), &dev)?;
    let target = Tensor::randn(0f32, 1.0, (b, 3, 20, 20, 20), &dev)?;
    let t = best(reps, || {
        let y = net.forward(&xin).unwrap();
        let loss = (y - &target).unwrap().sqr().unwrap().mean_all().unwrap();
        opt.backward_step(&loss).unwrap();
    });
    let (convs, deconvs) = cfg.layer_counts();
    println!("\nU-net (Wu 2021 preset: width {}, {convs} convs + {deconvs} deconvs), batch {b} of 32³ → 3×20³, one AdamW step: {:.0} ms ({:.0} ms per sample) on {threads} threads", cfg.width, t * 1e3, t * 1e3 / b as f64);
    Ok(())
}
