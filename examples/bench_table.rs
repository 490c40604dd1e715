//! Prints the forward-model speed table: one force evaluation, one full KDK step and the four
//! FFTs alone, at 64³/128³ and 128³/256³ (particles/mesh), on 1 and 2 threads, plus the default
//! 20-step run end to end. Median of repeated runs; plans and buffers are built outside the timing.
//!
//! ```sh
//! cargo run --release --example bench_table            # both sizes
//! cargo run --release --example bench_table -- --quick # 64³/128³ only
//! ```

use cosmograd::core::config::Config;
use cosmograd::core::fft::Fft3;
use cosmograd::core::float::C;
use cosmograd::core::gravity::{Gradient, Gravity};
use cosmograd::core::sim::{Event, Simulation};
use cosmograd::core::testing::rand_disp;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[(usize, usize)] = if quick { &[(64, 128)] } else { &[(64, 128), (128, 256)] };
    println!("| particles/mesh | threads | 4 FFTs (1 r2c + 3 c2r) [ms] | force [ms] | KDK step [ms] | step / FFTs |");
    println!("|---|---|---|---|---|---|");
    for &(n, m) in sizes {
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let reps = if m >= 256 { 5 } else { 15 };
                let fft = Fft3::<f32>::new(m);
                let mut real = vec![0.5f32; m * m * m];
                let mut cplx = vec![C::<f32>::default(); fft.complex_len()];
                let t_fft = time(reps, || {
                    fft.forward(&mut real, &mut cplx);
                    for _ in 0..3 {
                        fft.inverse(&mut cplx, &mut real);
                    }
                });
                let grav = Gravity::<f32>::new(n, m, 256.0 * n as f64 / 64.0, Gradient::Spectral);
                let disp = rand_disp::<f32>(n, 3.0, 1);
                let mut out = vec![[0.0f32; 3]; n * n * n];
                let mut ws = grav.workspace();
                let t_force = time(reps, || grav.accel(&disp, 1.0, &mut out, &mut ws));
                let mut cfg = Config::default();
                cfg.box_.particles = n;
                cfg.box_.mesh = m;
                cfg.box_.size = 256.0 * n as f64 / 64.0;
                let mut sim = Simulation::<f32>::new(&cfg).unwrap();
                let w = sim.white_noise();
                let mut st = sim.initial_conditions(w).unwrap();
                let mut a = st.a;
                let t_step = time(reps, || {
                    let a1 = (a + 0.01).min(1.0);
                    sim.step(&mut st, a1);
                    a = a1;
                });
                println!(
                    "| {n}³/{m}³ | {threads} | {t_fft:.1} | {t_force:.1} | {t_step:.1} | {:.2} |",
                    t_step / t_fft
                );
            });
        }
    }
    // The default run end to end (initial conditions + 20 steps, no file output).
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let t = pool.install(|| {
            time(3, || {
                let mut sim = Simulation::<f32>::new(&Config::default()).unwrap();
                let w = sim.white_noise();
                let mut st = sim.initial_conditions(w).unwrap();
                sim.run(&mut st, |_e: Event<'_, f32>| Ok(())).unwrap();
            })
        });
        println!("default run (64³/128³, 2LPT, 20 steps), {threads} thread(s): {:.2} s", t / 1e3);
    }
}
