//! Speed and memory of the full gradient (white noise, cosmological parameters; reverse-time
//! adjoint, f32) against the forward run, and of the gradient with checkpoints every 10 steps.
//! Each measurement runs in its own process so that the peak RSS (VmHWM) is its alone.
//!
//! ```sh
//! cargo run --release --example bench_adjoint            # 64³/128³ and 128³/256³
//! cargo run --release --example bench_adjoint -- --quick # 64³/128³ only
//! ```

use pm_adjoint::{value_and_grad, GradOptions, Objective, Recover};
use pm_core::config::Config;
use pm_core::loss::FieldMse;
use pm_core::sim::Simulation;
use std::process::Command;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One measurement in this process: prints "seconds peak_rss_mib".
fn child(n: usize, m: usize, steps: usize, mode: &str) {
    let mut c = Config::default();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (n, m, 4.0 * n as f64, steps);
    let mut sim = Simulation::<f32>::new(&c).unwrap();
    let w = sim.white_noise();
    let t = Instant::now();
    if mode != "fwd" {
        let recover = if mode == "ckpt" {
            Recover::Checkpoint { every: 10 }
        } else {
            Recover::Reverse
        };
        let loss = FieldMse::new(None).unwrap();
        let opts = GradOptions {
            recover,
            ..Default::default()
        };
        let g = value_and_grad(&mut sim, &w, &Objective::final_state(&loss), &opts).unwrap();
        assert!(g.loss.is_finite() && g.cosmology.is_some());
    } else {
        let mut st = sim.initial_conditions(w).unwrap();
        sim.run(&mut st, |_| Ok(())).unwrap();
    }
    println!("{} {}", t.elapsed().as_secs_f64(), peak_rss_mib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 6 && args[1] == "--child" {
        let p = |i: usize| args[i].parse::<usize>().unwrap();
        return child(p(2), p(3), p(4), &args[5]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[(usize, usize)] = if quick { &[(64, 128)] } else { &[(64, 128), (128, 256)] };
    let exe = std::env::current_exe().unwrap();
    println!("| particles/mesh | steps | forward [s] | forward+gradient [s] | ratio | peak RSS forward [MiB] | peak RSS gradient [MiB] | checkpointed every 10: time [s] / RSS [MiB] |");
    println!("|---|---|---|---|---|---|---|---|");
    for &(n, m) in sizes {
        for steps in [10usize, 100] {
            let run = |mode: &str| -> (f64, f64) {
                let out = Command::new(&exe)
                    .args(["--child", &n.to_string(), &m.to_string(), &steps.to_string(), mode])
                    .output()
                    .unwrap();
                let s = String::from_utf8_lossy(&out.stdout);
                let v: Vec<f64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
                (v[0], v[1])
            };
            let (tf, rf) = run("fwd");
            let (tg, rg) = run("grad");
            let (tc, rc) = run("ckpt");
            println!(
                "| {n}³/{m}³ | {steps} | {tf:.2} | {tg:.2} | {:.2} | {rf:.0} | {rg:.0} | {tc:.2} / {rc:.0} |",
                tg / tf
            );
        }
    }
}
