//! Helpers shared by the reconstruction tests.

use super::{mock_observation, reconstruct, NoiseModel, Posterior, ReconProgress, ReconResult, Stage};
use crate::grad::GradOptions;
use crate::optim::LbfgsOptions;
use pm_core::config::Config;
use pm_core::sim::Simulation;
use pm_core::testing::{fd_check_flat, rand_field};

pub(super) fn tiny(seed: u64) -> Simulation<f64> {
    let mut c = Config::default();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 64.0, 2);
    c.run.seed = seed;
    Simulation::<f64>::new(&c).unwrap()
}

/// Checks ∇(−ln p) of `post` on `tiny(sim_seed)` against central differences (f64, two random
/// directions, seeds from `seed`) at a point between the truth and random noise.
/// `tiny(sim_seed)`, its white noise w_true, and the posterior of a mock of it on the force mesh
/// without smoothing, with white noise `sigma` per cell drawn from `noise_seed`.
pub(super) fn tiny_mock(sim_seed: u64, sigma: f64, noise_seed: u64) -> (Simulation<f64>, Vec<f64>, Posterior<f64>) {
    let mut sim = tiny(sim_seed);
    let w_true = sim.white_noise();
    let noise = NoiseModel::White { sigma };
    let md = sim.config().box_.mesh;
    let (obs, _) = mock_observation(&mut sim, &w_true, &noise, 0.0, md, noise_seed).unwrap();
    let post = Posterior::new(&sim, &obs, noise, 0.0).unwrap();
    (sim, w_true, post)
}

pub(super) fn gradient_matches_differences(post: &Posterior<f64>, sim_seed: u64, w_true: &[f64], seed: u64) {
    let w0: Vec<f64> = w_true
        .iter()
        .zip(rand_field::<f64>(w_true.len(), 57 + seed))
        .map(|(a, b)| 0.5 * a + 0.3 * b)
        .collect();
    let (_, grad, g) = post.value_and_grad(&mut tiny(sim_seed), &w0, &GradOptions::default()).unwrap();
    assert!(g.reversal_error < 1e-10);
    let f = |x: &[f64]| post.value_and_grad(&mut tiny(sim_seed), x, &GradOptions::default()).unwrap().0;
    for s in 0..2 {
        fd_check_flat(&f, &w0, &grad, 1e-5, 1e-6, seed + s);
    }
}

/// [`reconstruct`] from w = 0 with the default L-BFGS settings; asserts that the loss of every
/// stage decreases strictly from one iteration to the next.
pub(super) fn reconstruct_from_zero(
    sim: &mut Simulation<f64>,
    post: &mut Posterior<f64>,
    schedule: &[Stage],
    progress: impl FnMut(&ReconProgress),
) -> ReconResult<f64> {
    let w0 = vec![0.0; sim.lattice().n_cells()];
    let r = reconstruct(
        sim,
        post,
        &w0,
        schedule,
        &LbfgsOptions::default(),
        crate::Recover::Reverse,
        progress,
    )
    .unwrap();
    for s in &r.stages {
        assert!(s.history.windows(2).all(|w| w[1] < w[0]), "{:?}", s.history);
    }
    r
}
