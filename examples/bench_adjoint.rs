//! Speed and memory of the full gradient (white noise, cosmological parameters; reverse-time
//! adjoint, f32) against the forward run, and of the gradient with checkpoints every 10 steps.
//! Each measurement runs in its own process so that the peak RSS (VmHWM) is its alone.
//!
//! ```sh
//! cargo run --release --example bench_adjoint            # 64³/128³ and 128³/256³
//! cargo run --release --example bench_adjoint -- --quick # 64³/128³ only
//! cargo run --release --example bench_adjoint -- --quick --repeat 3 --no-checkpoint
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

/// CPU seconds (user + system, all threads) of this process so far, from /proc/self/stat
/// (clock ticks of 1/100 s): a second measure that other work on the machine disturbs less than
/// the wall-clock time.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // utime and stime are fields 14 and 15 of the line, i.e. 11 and 12 after the state field.
    f.get(10).zip(f.get(11)).map_or(f64::NAN, |(u, s)| (u + s) / 100.0)
}

/// One measurement in this process: prints "seconds peak_rss_mib cpu_seconds".
fn child(n: usize, m: usize, steps: usize, mode: &str) {
    let mut c = Config::default();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (n, m, 4.0 * n as f64, steps);
    let mut sim = Simulation::<f32>::new(&c).unwrap();
    let w = sim.white_noise();
    let (t, c0) = (Instant::now(), cpu_seconds());
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
    println!("{} {} {}", t.elapsed().as_secs_f64(), peak_rss_mib(), cpu_seconds() - c0);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 6 && args[1] == "--child" {
        let p = |i: usize| args[i].parse::<usize>().unwrap();
        return child(p(2), p(3), p(4), &args[5]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let skip_ckpt = args.iter().any(|a| a == "--no-checkpoint");
    // --repeat R: each time is the minimum over R runs (each in its own process).
    let repeat = args
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| args.get(i + 1))
        .map_or(1, |r| r.parse::<usize>().expect("--repeat R: R a positive integer").max(1));
    let sizes: &[(usize, usize)] = if quick { &[(64, 128)] } else { &[(64, 128), (128, 256)] };
    let exe = std::env::current_exe().unwrap();
    println!("| particles/mesh | steps | forward [s] (CPU s) | forward+gradient [s] (CPU s) | ratio (CPU ratio) | peak RSS forward [MiB] | peak RSS gradient [MiB] | checkpointed every 10: time [s] / RSS [MiB] |");
    println!("|---|---|---|---|---|---|---|---|");
    for &(n, m) in sizes {
        for steps in [10usize, 100] {
            // (wall s, peak RSS MiB, CPU s), minimum time over the repeats.
            let run = |mode: &str| -> (f64, f64, f64) {
                let mut best = (f64::INFINITY, 0.0, f64::INFINITY);
                for _ in 0..repeat {
                    let out = Command::new(&exe)
                        .args(["--child", &n.to_string(), &m.to_string(), &steps.to_string(), mode])
                        .output()
                        .unwrap();
                    let s = String::from_utf8_lossy(&out.stdout);
                    let v: Vec<f64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
                    best = (best.0.min(v[0]), v[1], best.2.min(v[2]));
                }
                best
            };
            let (tf, rf, cf) = run("fwd");
            let (tg, rg, cg) = run("grad");
            let ckpt = if skip_ckpt {
                "–".to_string()
            } else {
                let (tc, rc, _) = run("ckpt");
                format!("{tc:.2} / {rc:.0}")
            };
            println!(
                "| {n}³/{m}³ | {steps} | {tf:.2} ({cf:.2}) | {tg:.2} ({cg:.2}) | {:.2} ({:.2}) | {rf:.0} | {rg:.0} | {ckpt} |",
                tg / tf,
                cg / cf
            );
        }
    }
}
