//! Test helpers (compiled only for the crate's own tests): deterministic random values and
//! tensors, the largest difference between two tensors, and a directional central-difference
//! check of a network's gradient with respect to its input and all its weights at once (f64).

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

/// Deterministic pseudo-random values in [−1, 1) (splitmix64).
pub(crate) fn rand_vec(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// An f64 CPU tensor of the given shape with entries in [−1, 1), fixed by `seed`.
pub(crate) fn rand_t(dims: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(rand_vec(dims.iter().product(), seed), dims, &Device::Cpu).unwrap()
}

/// max |a − b| over all elements of two f64 tensors of the same shape.
pub(crate) fn maxdiff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
}

/// Checks d/dε L(x + ε dx, θ + ε dθ) at ε = 0 by central differences (h = 1e-5) against
/// ⟨∇ₓL, dx⟩ + ⟨∇_θL, dθ⟩ from candle's backward, with L = ⟨r, f(x)⟩ (the network is non-linear),
/// random directions for x and for every Var of `vm` (whose values are first set to fixed
/// pseudo-random numbers in [−0.5, 0.5)); relative error ≤ `tol`.
pub(crate) fn directional_fd_check(vm: &VarMap, x: &Tensor, f: impl Fn(&Tensor) -> Tensor, r: &Tensor, tol: f64, label: &str) {
    let mut vars: Vec<(String, Var)> = vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!vars.is_empty(), "{label}: no weights");
    // Deterministic weights (candle's initialisers draw from a thread RNG): ±0.5 uniform.
    for (i, (_, v)) in vars.iter().enumerate() {
        v.set(&(rand_t(v.dims(), 3000 + i as u64) * 0.5).unwrap()).unwrap();
    }
    let loss = |x: &Tensor| (f(x) * r).unwrap().sum_all().unwrap();
    let xv = Var::from_tensor(x).unwrap();
    let grads = loss(xv.as_tensor()).backward().unwrap();
    let dx = rand_t(x.dims(), 1001);
    let mut analytic = dot(grads.get(&xv).unwrap(), &dx);
    let mut dirs = Vec::new();
    for (i, (name, v)) in vars.iter().enumerate() {
        let d = rand_t(v.dims(), 2000 + i as u64);
        let g = grads.get(v).unwrap_or_else(|| panic!("{label}: no gradient for weight {name}"));
        analytic += dot(g, &d);
        dirs.push(d);
    }
    let h = 1e-5;
    let orig: Vec<Tensor> = vars.iter().map(|(_, v)| v.as_tensor().copy().unwrap()).collect();
    let eval = |eps: f64| {
        for ((_, v), (o, d)) in vars.iter().zip(orig.iter().zip(&dirs)) {
            v.set(&(o + (d * eps).unwrap()).unwrap()).unwrap();
        }
        loss(&(x + (&dx * eps).unwrap()).unwrap()).to_scalar::<f64>().unwrap()
    };
    let fd = (eval(h) - eval(-h)) / (2.0 * h);
    eval(0.0);
    let err = (fd - analytic).abs() / analytic.abs().max(1e-6);
    assert!(
        err <= tol,
        "{label}: finite difference {fd} vs gradient {analytic} (relative error {err:.2e})"
    );
}
