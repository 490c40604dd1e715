//! pm-nn's two seams with the simulation's adjoint, checked end to end in f64 against central
//! finite differences of the loss:
//! * a learned force correction ([`MlpCorrection`]) installed in a [`Simulation`]: ∂L/∂θ from
//!   `value_and_grad` (`force_params`);
//! * the bridge ([`NetLoss`]): white noise → simulation → density → a small candle network → loss,
//!   with ∂L/∂w (white noise) and ∂L/∂(weights) from one `value_and_grad` call.

use candle_core::{DType, Device, Tensor, Var};
use pm_adjoint::{loss_value, value_and_grad, GradOptions, Objective};
use pm_core::config::Config;
use pm_core::correction::ForceCorrection;
use pm_core::loss::FieldMse;
use pm_core::sim::Simulation;
use pm_core::testing::{dot, rand_field};
use pm_nn::bridge::{roll, NetLoss};
use pm_nn::force::{MlpConfig, MlpCorrection};

fn final_density(c: &Config) -> Vec<f64> {
    let mut sim = Simulation::<f64>::new(c).unwrap();
    let w = sim.white_noise();
    let mut st = sim.initial_conditions(w).unwrap();
    sim.run(&mut st, |_| Ok(())).unwrap();
    sim.density(&st)
}

/// Relative difference of a central difference and the adjoint's directional derivative.
fn rel(fd: f64, an: f64) -> f64 {
    (fd - an).abs() / fd.abs().max(an.abs())
}

#[test]
fn mlp_force_correction_gradient_through_the_adjoint_matches_finite_differences() {
    let mut c = Config::default();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (16, 32, 64.0, 4);
    let mut base = MlpCorrection::new(MlpConfig::for_simulation(&c).with_hidden(&[8, 8])).unwrap();
    // Random weights: f_θ of order 0.1–0.5 over the mesh's |k|.
    let theta: Vec<f64> = rand_field::<f64>(base.n_params(), 11).iter().map(|v| 0.3 * v).collect();
    base.set_params(&theta).unwrap();
    let k: Vec<f64> = (0..20).map(|i| 0.2 * i as f64 * c.box_.mesh as f64 / c.box_.size).collect();
    let mut f = vec![0.0; 20];
    base.eval(0.6, &k, &mut f);
    let fmax = f.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    eprintln!("max |f_θ| at a = 0.6: {fmax:.3}");
    assert!(fmax > 0.01, "the correction should not vanish");
    let sim_with = |t: &[f64]| {
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let mut m = base.clone();
        m.set_params(t).unwrap();
        sim.set_force_correction(Some(Box::new(m)));
        sim
    };
    let mut c2 = c.clone();
    c2.run.seed = 77;
    let loss = FieldMse::new(Some(final_density(&c2))).unwrap();
    let obj = Objective::final_state(&loss);
    let w = Simulation::<f64>::new(&c).unwrap().white_noise();
    let g = value_and_grad(&mut sim_with(&theta), &w, &obj, &GradOptions::default()).unwrap();
    assert_eq!(g.force_params.len(), base.n_params());
    for seed in [1u64, 2] {
        let dir = rand_field::<f64>(theta.len(), seed);
        // A small step: CIC makes the loss only piecewise smooth, and a larger stencil lets a
        // particle cross a cell-centre plane (docs/adjoint.md, finite-difference caveat): at
        // ε = 1e-6 one direction read rel 8.6e-5; at ε = 1e-8 both read ~1e-8.
        let eps = 1e-8;
        let at = |s: f64| {
            let t: Vec<f64> = theta.iter().zip(&dir).map(|(a, b)| a + s * eps * b).collect();
            loss_value(&mut sim_with(&t), &w, &obj).unwrap()
        };
        let fd = (at(1.0) - at(-1.0)) / (2.0 * eps);
        let an = dot(&g.force_params, &dir);
        let r = rel(fd, an);
        eprintln!("MLP force correction, direction {seed}: fd {fd:.10e}, adjoint {an:.10e}, rel {r:.2e}");
        // Measured 1.11e-8 and 7.6e-9 (2026-12-08); tolerance ≈3× the worst.
        assert!(r < 3.3e-8, "direction {seed}: rel {r:.2e}");
    }
}

/// A tiny density → field network: per voxel, features (δ, ∂ₓδ, ∂ᵧδ, ∂_zδ) by periodic central
/// differences (rolls), a 1³ conv (matmul) to 4 tanh channels, a 1³ conv to 1 output channel.
struct TinyNet {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

impl TinyNet {
    fn new(seed: u64) -> TinyNet {
        let r = |n: usize, s: u64, shape: (usize, usize)| {
            let v: Vec<f64> = rand_field::<f64>(n, s).iter().map(|x| 0.5 * x).collect();
            Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
        };
        TinyNet {
            w1: r(16, seed, (4, 4)),
            b1: r(4, seed + 1, (4, 1)),
            w2: r(4, seed + 2, (1, 4)),
            b2: r(1, seed + 3, (1, 1)),
        }
    }
    fn vars(&self) -> Vec<Var> {
        vec![self.w1.clone(), self.b1.clone(), self.w2.clone(), self.b2.clone()]
    }
    /// (1, 1, m, m, m) → (1, m³).
    fn forward(&self, d: &Tensor) -> candle_core::Result<Tensor> {
        let m3 = d.elem_count();
        let grad = |dim: usize| (roll(d, -1, dim)? - roll(d, 1, dim)?)? * 0.5;
        let feats = Tensor::cat(&[d.clone(), grad(2)?, grad(3)?, grad(4)?], 1)?.reshape((4, m3))?;
        let h = self.w1.as_tensor().matmul(&feats)?.broadcast_add(self.b1.as_tensor())?.tanh()?;
        self.w2.as_tensor().matmul(&h)?.broadcast_add(self.b2.as_tensor())
    }
}

#[test]
fn white_noise_to_network_loss_gradient_in_one_call_matches_finite_differences() {
    let mut c = Config::default();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 16, 32.0, 3);
    let m3 = 16 * 16 * 16;
    let net = TinyNet::new(3);
    let target = Tensor::from_vec(rand_field::<f64>(m3, 9), (1, m3), &Device::Cpu).unwrap();
    let loss = NetLoss::new(net.vars(), DType::F64, Device::Cpu, |d: &Tensor| {
        (net.forward(d)? - &target)?.sqr()?.mean_all()
    })
    .unwrap();
    let mut sim = Simulation::<f64>::new(&c).unwrap();
    loss.check(&sim.mesh_context()).unwrap();
    let w = sim.white_noise();
    let obj = Objective::final_state(&loss);
    let g = value_and_grad(&mut sim, &w, &obj, &GradOptions::default()).unwrap();
    let gw = loss.weight_grads_flat().unwrap();
    eprintln!("loss {:.6e}, reversal error {:.2e}", g.loss, g.reversal_error);
    assert_eq!(gw.len(), 25);
    // The white noise. CIC is piecewise linear in the positions: ε small enough that no particle
    // crosses a cell-centre plane within the stencil, large enough for f64 rounding.
    let value_at = |w: &[f64]| loss_value(&mut Simulation::<f64>::new(&c).unwrap(), w, &obj).unwrap();
    for seed in [21u64, 22] {
        let eps = 1e-7;
        let dir = rand_field::<f64>(w.len(), seed);
        let shift = |s: f64| -> Vec<f64> { w.iter().zip(&dir).map(|(a, b)| a + s * eps * b).collect() };
        let fd = (value_at(&shift(1.0)) - value_at(&shift(-1.0))) / (2.0 * eps);
        let an = dot(&g.white_noise, &dir);
        let r = rel(fd, an);
        eprintln!("white noise, direction {seed}: fd {fd:.10e}, adjoint {an:.10e}, rel {r:.2e}");
        // Measured 3.86e-7 and 2.08e-7 (2026-12-08); tolerance ≈3× the worst.
        assert!(r < 1.2e-6, "white noise direction {seed}: rel {r:.2e}");
    }
    // The weights (the loss is smooth in them).
    let w0: Vec<Vec<f64>> = net
        .vars()
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let set = |flat: &[f64]| {
        let mut off = 0;
        for v in net.vars() {
            let n = v.elem_count();
            v.set(&Tensor::from_slice(&flat[off..off + n], v.shape(), &Device::Cpu).unwrap())
                .unwrap();
            off += n;
        }
    };
    let flat0: Vec<f64> = w0.concat();
    for seed in [31u64, 32] {
        let eps = 1e-6;
        let dir = rand_field::<f64>(flat0.len(), seed);
        let shifted = |s: f64| -> Vec<f64> { flat0.iter().zip(&dir).map(|(a, b)| a + s * eps * b).collect() };
        set(&shifted(1.0));
        let lp = value_at(&w);
        set(&shifted(-1.0));
        let lm = value_at(&w);
        set(&flat0);
        let fd = (lp - lm) / (2.0 * eps);
        let an = dot(&gw, &dir);
        let r = rel(fd, an);
        eprintln!("weights, direction {seed}: fd {fd:.10e}, adjoint {an:.10e}, rel {r:.2e}");
        // Measured 4.41e-9 and 3.4e-9 (2026-12-08); tolerance ≈3× the worst.
        assert!(r < 1.3e-8, "weights direction {seed}: rel {r:.2e}");
    }
    // The loss value of the forward pass is the network on the final density.
    let value = value_at(&w);
    pm_core::testing::assert_close(value, g.loss, 1e-12, 0.0, "loss value");
}
