//! Criterion benches of the PM operators: CIC paint, readout, one force evaluation and one force
//! with its VJP (a backward step's gravity) at 64³/128³ (short profile; `examples/bench_table.rs` prints the full table).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pm_core::cic::PaintScratch;
use pm_core::gravity::{Gradient, Gravity};
use pm_core::testing::rand_disp;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let (n, m) = (64usize, 128usize);
    let np = (n * n * n) as u64;
    let grav = Gravity::<f32>::new(n, m, 256.0, Gradient::Spectral);
    let disp = rand_disp::<f32>(n, 3.0, 1);
    let mut ws = grav.workspace();
    let mut out = vec![[0.0f32; 3]; n * n * n];
    let abar = rand_disp::<f32>(n, 1.0, 2);
    let mut disp_cot = vec![[0.0f32; 3]; n * n * n];
    let mut mesh = vec![0.0f32; m * m * m];
    let mut sc = PaintScratch::default();
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut g = c.benchmark_group(format!("pm_64_128_t{threads}"));
        g.sample_size(10)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_millis(500));
        g.throughput(Throughput::Elements(np));
        g.bench_function("cic_paint", |b| {
            b.iter(|| pool.install(|| grav.cic().paint(&disp, None, &mut mesh, &mut sc)))
        });
        g.bench_function("cic_readout3", |b| {
            b.iter(|| pool.install(|| grav.cic().readout(&disp, [&mesh[..], &mesh[..], &mesh[..]], &mut out)))
        });
        g.bench_function("force", |b| b.iter(|| pool.install(|| grav.accel(&disp, 1.0, &mut out, &mut ws))));
        // One backward step's gravity: the force and its VJP at the same positions (fused).
        g.bench_function("force_and_vjp", |b| {
            b.iter(|| pool.install(|| grav.accel_and_vjp(&disp, None, &mut out, 0.5, &abar, &mut disp_cot, None, &mut ws)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
