//! Prints a hash of every library output that the CLI does not reach: forward states and
//! gradients (white noise, cosmology, force-correction parameters) with a learned force
//! correction installed, in f32 and f64, with losses at a snapshot and with checkpoints.
//! `scripts/bit-identity.sh` runs it and compares the hashes before and after a refactor.
//!
//! ```sh
//! cargo run --release --example bit_identity
//! ```

use pm_adjoint::{value_and_grad, GradOptions, Objective, Recover};
use pm_core::config::Config;
use pm_core::correction::{ForceCorrection, SplineCorrection};
use pm_core::float::Real;
use pm_core::loss::{FieldMse, PowerLoss};
use pm_core::sim::{Event, Simulation};

/// FNV-1a over the little-endian bytes of the f64 values (bit-exact fingerprint).
fn fnv(values: impl IntoIterator<Item = f64>) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut count = 0usize;
    for v in values {
        for b in v.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        count += 1;
    }
    format!("{h:016x} ({count} values)")
}

fn flat<T: Real>(v: &[[T; 3]]) -> impl Iterator<Item = f64> + '_ {
    v.iter().flat_map(|x| x.iter().map(|c| c.f64()))
}

fn config() -> Config {
    let mut c = Config::default();
    (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (16, 32, 64.0, 6);
    c.time.snapshots = vec![0.5];
    c
}

fn with_correction<T: Real>(c: &Config) -> Simulation<T> {
    let kmax = std::f64::consts::PI * c.box_.mesh as f64 / c.box_.size * 3f64.sqrt();
    let mut model = SplineCorrection::new(4, 2, kmax, (c.time.a_start, c.time.a_stop)).unwrap();
    let theta: Vec<f64> = (0..8).map(|i| 0.05 * ((i * 3 % 5) as f64 - 2.0)).collect();
    model.set_params(&theta).unwrap();
    let mut sim = Simulation::<T>::new(c).unwrap();
    sim.set_force_correction(Some(Box::new(model)));
    sim
}

fn report<T: Real>(name: &str) {
    let c = config();
    // Forward with the correction: every snapshot's state and density.
    let mut sim = with_correction::<T>(&c);
    let w = sim.white_noise();
    let mut state = sim.initial_conditions(w.clone()).unwrap();
    let mut snaps = Vec::new();
    sim.run(&mut state, |ev| {
        if let Event::Snapshot(s) = ev {
            snaps.push(s.clone());
        }
        Ok(())
    })
    .unwrap();
    for s in &snaps {
        let dens = sim.density(s);
        println!("{name} forward a={:.4} disp {}", s.a, fnv(flat(&s.disp)));
        println!("{name} forward a={:.4} mom {}", s.a, fnv(flat(&s.mom)));
        println!("{name} forward a={:.4} accel {}", s.a, fnv(flat(&s.accel)));
        println!("{name} forward a={:.4} density {}", s.a, fnv(dens.iter().map(|x| x.f64())));
        let pk = sim.power(&dens);
        println!("{name} forward a={:.4} power {}", s.a, fnv(pk.p.iter().copied()));
    }
    // Gradient with the correction: field MSE at the end, P(k) loss at the snapshot.
    let target = sim.density(&snaps[0]);
    let mse = FieldMse::new(None).unwrap();
    let pl = PowerLoss::from_density(&sim.mesh_context(), &target, None).unwrap();
    let obj = Objective::final_state(&mse).at(0.5, &pl);
    let w2: Vec<T> = w.iter().map(|x| T::of(x.f64() * 1.01)).collect();
    for (label, recover) in [("reverse", Recover::Reverse), ("ckpt2", Recover::Checkpoint { every: 2 })] {
        let mut sim = with_correction::<T>(&c);
        let opts = GradOptions {
            recover,
            ..Default::default()
        };
        let g = value_and_grad(&mut sim, &w2, &obj, &opts).unwrap();
        let cg = g.cosmology.unwrap();
        println!("{name} grad {label} loss {}", fnv([g.loss]));
        println!("{name} grad {label} white_noise {}", fnv(g.white_noise.iter().map(|x| x.f64())));
        println!(
            "{name} grad {label} cosmology {}",
            fnv([
                cg.omega_m,
                cg.omega_b,
                cg.h,
                cg.n_s,
                cg.sigma8.unwrap_or(0.0),
                cg.w0,
                cg.wa,
                cg.omega_k,
                cg.t_cmb
            ])
        );
        println!("{name} grad {label} force_params {}", fnv(g.force_params.iter().copied()));
        println!("{name} grad {label} reversal_error {}", fnv([g.reversal_error]));
    }
}

fn main() {
    report::<f32>("f32");
    report::<f64>("f64");
}
