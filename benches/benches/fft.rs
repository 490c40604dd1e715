//! Criterion benches of the planned 3-D real FFT [`pm_core::fft::Fft3`]: `f32`, forward (r2c)
//! and inverse (c2r), n = 64, 128, 256, on rayon pools of 1 and 2 threads.
//!
//! Plans, pools and buffers are built outside the timed loop; both transforms use their input as
//! scratch, so each timed call is preceded by an untimed copy of a fixed input. Throughput is in
//! mesh cells per second. Quick run: `cargo bench -p cosmograd-benches --bench fft -- --quick`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pm_core::fft::Fft3;
use pm_core::float::C;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn bench_fft3(c: &mut Criterion) {
    let mut group = c.benchmark_group("fft3_f32");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in [64usize, 128, 256] {
        let fft = Fft3::<f32>::new(n);
        let x0: Vec<f32> = (0..fft.real_len())
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut x = x0.clone();
        let mut spec = vec![C::new(0.0f32, 0.0); fft.complex_len()];
        fft.forward(&mut x, &mut spec);
        let spec0 = spec.clone();
        let mut out = vec![0.0f32; fft.real_len()];
        group.throughput(Throughput::Elements(fft.real_len() as u64));
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
            group.bench_function(BenchmarkId::new(format!("forward/{threads}t"), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        x.copy_from_slice(&x0);
                        let t = Instant::now();
                        pool.install(|| fft.forward(black_box(&mut x), black_box(&mut spec)));
                        total += t.elapsed();
                    }
                    total
                })
            });
            group.bench_function(BenchmarkId::new(format!("inverse/{threads}t"), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        spec.copy_from_slice(&spec0);
                        let t = Instant::now();
                        pool.install(|| fft.inverse(black_box(&mut spec), black_box(&mut out)));
                        total += t.elapsed();
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_fft3);
criterion_main!(benches);
