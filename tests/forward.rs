//! End-to-end checks of the forward simulation against linear theory (issue 2's bars).

use cosmograd::core::config::{Config, LptOrder};
use cosmograd::core::fft::Fft3;
use cosmograd::core::mesh::MeshGeom;
use cosmograd::core::noise::{linear_modes, white_noise, Amplitude};
use cosmograd::core::power::{power_spectrum, Deconvolve};
use cosmograd::core::sim::{Event, Simulation, State};
use cosmograd::core::Real;

/// Runs `config` to a_stop, returning the initial and final states.
fn run<T: Real>(config: &Config) -> (State<T>, State<T>) {
    let mut sim = Simulation::<T>::new(config).expect("valid config");
    let w = sim.white_noise();
    let mut s = sim.initial_conditions(w).expect("initial conditions");
    let init = s.clone();
    sim.run(&mut s, |_e: Event<'_, T>| Ok(())).expect("run");
    (init, s)
}

#[test]
fn initial_linear_field_has_the_linear_power_spectrum() {
    // 16 seeds at 64³ in 256 Mpc/h: the seed-averaged P(k) of δ_L against the mode-averaged P_L of
    // each bin, with the Gaussian variance 2 P² / N_modes / N_seeds: χ²/dof < 1.5.
    let config = Config::default();
    let sim = Simulation::<f64>::new(&config).unwrap();
    let n = config.box_.particles;
    let geom = MeshGeom::new(n, config.box_.size);
    let fft = Fft3::<f64>::new(n);
    let plin = |k: f64| sim.linear_power().p(k);
    let seeds = 16;
    let mut mean: Vec<f64> = Vec::new();
    let mut ps0 = None;
    for seed in 0..seeds {
        let mut w = white_noise::<f64>(n, 1000 + seed);
        let mut dk = linear_modes(&mut w, &geom, &fft, &plin, Amplitude::Random, false);
        let mut field = vec![0.0; n * n * n];
        fft.inverse(&mut dk, &mut field);
        field.iter_mut().for_each(|v| *v /= (n * n * n) as f64);
        let ps = power_spectrum(&field, &geom, &fft, Deconvolve::None);
        if mean.is_empty() {
            mean = vec![0.0; ps.p.len()];
        }
        mean.iter_mut().zip(&ps.p).for_each(|(m, p)| *m += p / seeds as f64);
        ps0 = Some(ps);
    }
    let ps = ps0.unwrap();
    // Mode-averaged P_L per bin (exact expectation of the estimator).
    let kf = geom.kf();
    let mut want = vec![0.0; ps.p.len()];
    let mut count = vec![0.0; ps.p.len()];
    let f = |i: usize| if i < n / 2 { i as f64 } else { i as f64 - n as f64 };
    for i in 0..n {
        for j in 0..n {
            for k in 0..n {
                let nu = (f(i).powi(2) + f(j).powi(2) + f(k).powi(2)).sqrt();
                let b = (nu + 0.5).floor() as usize;
                if b >= 1 && b <= n / 2 {
                    want[b - 1] += plin(nu * kf);
                    count[b - 1] += 1.0;
                }
            }
        }
    }
    let mut chi2 = 0.0;
    for b in 0..ps.p.len() {
        let w = want[b] / count[b];
        let var = 2.0 * w * w / ps.n_modes[b] as f64 / seeds as f64;
        chi2 += (mean[b] - w).powi(2) / var;
    }
    let dof = ps.p.len() as f64;
    assert!(chi2 / dof < 1.5, "χ²/dof = {:.3} over {dof} bins", chi2 / dof);
    // And a wrong normalisation would be caught: 2% too much power fails.
    let chi2_bad: f64 = (0..ps.p.len())
        .map(|b| {
            let w = 1.02 * want[b] / count[b];
            (mean[b] - w).powi(2) / (2.0 * w * w / ps.n_modes[b] as f64 / seeds as f64)
        })
        .sum();
    assert!(chi2_bad / dof > 1.5, "the test cannot tell a 2% error: χ²/dof = {}", chi2_bad / dof);
}

/// Growth of the fundamental P(k) bin over linear theory, √(P_final/P_init)/(D(1)/D(a_start)),
/// for a tiny-amplitude (σ₈ = 1e-5) 1LPT run of 5 steps from a = 0.02 in f64.
fn tiny_growth_error(n: usize, m: usize) -> f64 {
    let mut config = Config::default();
    config.box_.particles = n;
    config.box_.mesh = m;
    config.box_.size = 256.0;
    config.cosmology.sigma8 = Some(1e-5);
    config.time.lpt = LptOrder::One;
    config.time.steps = 5;
    let sim = Simulation::<f64>::new(&config).unwrap();
    let ratio = sim.growth().d1(1.0) / sim.growth().d1(config.time.a_start);
    let (init, fin) = run::<f64>(&config);
    let p0 = sim.power(&sim.density(&init));
    let p1 = sim.power(&sim.density(&fin));
    (p1.p[0] / p0.p[0]).sqrt() / ratio - 1.0
}

#[test]
fn tiny_amplitude_growth_converges_to_linear_theory() {
    // The FastPM factors are exact for the linear force (leapfrog.rs: 1e-10 for 1–5 steps). The
    // PM force on a perturbed lattice differs from the linear force by the lattice
    // discreteness error (docs/physics.md §4), so the fundamental mode's growth over 5 steps
    // agrees with D(1)/D(a_start) up to that error, which must vanish as the lattice is refined
    // at fixed box: second order in kΔ_p for m = n, first order for m = 2n (the lattice
    // frequency then sits on the mesh Nyquist and its two aliases cancel only to O(kΔ_p)).
    let b1: Vec<f64> = [16usize, 32, 64].iter().map(|&n| tiny_growth_error(n, n)).collect();
    let b2: Vec<f64> = [16usize, 32, 64].iter().map(|&n| tiny_growth_error(n, 2 * n)).collect();
    eprintln!("fundamental-bin growth error, n = 16, 32, 64: m = n {b1:.4?}, m = 2n {b2:.4?}");
    assert!(
        b1[0].abs() > 2.5 * b1[1].abs() && b1[1].abs() > 2.5 * b1[2].abs(),
        "m = n: not second order {b1:?}"
    );
    assert!(
        b2[0].abs() > 1.7 * b2[1].abs() && b2[1].abs() > 1.7 * b2[2].abs(),
        "m = 2n: not converging {b2:?}"
    );
    // Measured (2026-12-08) m = n [−0.0716, −0.0163, −0.0058], m = 2n [0.0857, 0.0478, 0.0240]:
    // the bounds at n = 64 are already within 3× of the measured figures.
    assert!(b1[2].abs() < 0.01 && b2[2].abs() < 0.03, "n = 64: m = n {b1:?}, m = 2n {b2:?}");
}

#[test]
fn large_scale_power_grows_as_linear_theory_on_the_same_realisation() {
    // P_final/P_initial per bin of one realisation against (D(a_stop)/D(a_start))²: cosmic
    // variance cancels in the ratio, so what is left is the code's own error on large scales.
    // 64³ particles on a 64³ mesh in 1024 Mpc/h (linear on these scales at a = 1; the default
    // times and 2LPT, 10 steps; ~0.5 s). The ratio falls below linear theory by the PM
    // resolution and lattice discreteness error, which depends on k Δ_p only (the same at 512,
    // 1024 and 2048 Mpc/h) and grows with it: measured (2026-12-08, seed 42) −2.0 %, −4.2 %,
    // −5.8 % in the bins k ≈ 0.008, 0.014, 0.019 h/Mpc (k Δ_p = 0.10, 0.20, 0.29); other seeds
    // −1.1…−1.4 %, −3.6…−4.3 %, −6.2…−7.0 %. The tolerance is ≈3× that per bin, 6 % × the bin
    // index. A force or time-step factor off by 1 % moves every bin by ~5 % (EdS: D ∝ a^(1+0.6ε)
    // for a force × (1 + ε)), so an error of 2 % either way fails.
    let mut config = Config::default();
    (config.box_.particles, config.box_.mesh, config.box_.size, config.time.steps) = (64, 64, 1024.0, 10);
    let sim = Simulation::<f32>::new(&config).unwrap();
    let (init, fin) = run::<f32>(&config);
    let g = sim.growth();
    let want = (g.d1(config.time.a_stop) / g.d1(config.time.a_start)).powi(2);
    let (p0, p1) = (sim.power(&sim.density(&init)), sim.power(&sim.density(&fin)));
    let kf = 2.0 * std::f64::consts::PI / config.box_.size;
    let bins: Vec<usize> = (0..p0.k.len()).filter(|&i| p0.k[i] < 0.02).collect();
    assert_eq!(bins.len(), 3, "bins below k = 0.02 h/Mpc: {:?}", &p0.k[..4]);
    for i in bins {
        let dev = p1.p[i] / p0.p[i] / want - 1.0;
        let j = (p0.k[i] / kf).round();
        let tol = 0.06 * j;
        eprintln!(
            "k = {:.4} h/Mpc ({} modes): P_final/P_initial / (D ratio)² − 1 = {dev:+.4} (tolerance {tol:.2})",
            p0.k[i], p0.n_modes[i]
        );
        assert!(dev.abs() < tol, "k = {:.4}: growth of P off linear theory by {dev:+.4}", p0.k[i]);
    }
}

#[test]
fn default_run_is_nonlinear_on_small_scales_conserves_momentum_and_is_thread_independent() {
    let config = Config::default();
    let runs: Vec<State<f32>> = [1usize, 2]
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| run::<f32>(&config).1)
        })
        .collect();
    let (a, b) = (&runs[0], &runs[1]);
    let same = a
        .disp
        .iter()
        .flatten()
        .zip(b.disp.iter().flatten())
        .all(|(x, y)| x.to_bits() == y.to_bits())
        && a.mom
            .iter()
            .flatten()
            .zip(b.mom.iter().flatten())
            .all(|(x, y)| x.to_bits() == y.to_bits());
    assert!(same, "1-thread and 2-thread runs differ");
    let sim = Simulation::<f32>::new(&config).unwrap();
    let ps = sim.power(&sim.density(a));
    let mut nonlinear = Vec::new();
    for i in 0..ps.k.len() {
        let pl = sim.p_linear(ps.k[i], 1.0);
        if ps.k[i] > 0.3 && ps.k[i] < 0.6 {
            nonlinear.push(ps.p[i] / pl);
        }
    }
    let boost = nonlinear.iter().sum::<f64>() / nonlinear.len() as f64;
    assert!(boost > 1.3, "no nonlinear growth at 0.3 < k < 0.6: mean P/P_lin = {boost:.3}");
    // Total momentum stays ~0 (PM forces conserve it; f32 rounding only).
    let tot: [f64; 3] = std::array::from_fn(|d| a.mom.iter().map(|p| p[d] as f64).sum());
    let abs: f64 = a.mom.iter().map(|p| (0..3).map(|d| (p[d] as f64).abs()).sum::<f64>()).sum();
    let rel = tot.iter().map(|v| v.abs()).sum::<f64>() / abs;
    assert!(rel < 1e-5, "total momentum / Σ|p| = {rel:.3e}");
}

#[test]
fn f32_and_f64_runs_agree() {
    let mut config = Config::default();
    config.box_.particles = 32;
    config.box_.mesh = 64;
    config.time.steps = 10;
    let (_, a) = run::<f32>(&config);
    config.run.precision = cosmograd::core::config::Precision::F64;
    let (_, b) = run::<f64>(&config);
    let num: f64 = a
        .disp
        .iter()
        .zip(&b.disp)
        .map(|(x, y)| (0..3).map(|d| (x[d] as f64 - y[d]).powi(2)).sum::<f64>())
        .sum();
    let den: f64 = b.disp.iter().map(|y| (0..3).map(|d| y[d] * y[d]).sum::<f64>()).sum();
    let rel = (num / den).sqrt();
    eprintln!("‖s_f32 − s_f64‖/‖s‖ = {rel:.3e}");
    // Measured 1.42e-6 (2026-12-08); tolerance ≈3×.
    assert!(rel < 4.3e-6, "‖s_f32 − s_f64‖/‖s‖ = {rel:.3e}");
}
