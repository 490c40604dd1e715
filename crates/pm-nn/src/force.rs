//! A learned PM force correction as a small candle MLP in (|k|, a): [`MlpCorrection`] implements
//! pm-core's [`ForceCorrection`], so its weights are trained through the reverse-time adjoint
//! (pm-adjoint's `value_and_grad` returns ∂L/∂θ as `force_params`).
//!
//! **Forward** (docs/adjoint.md eq. G4; Lanzieri, Lanusse & Starck 2022, arXiv:2207.05509). The PM
//! potential is filtered as `φ(k) = −(1 + f_θ(|k|, a)) δ(k)/k²` with
//! ```text
//!   x = (|k|/k_s, 2(a − a_lo)/(a_hi − a_lo) − 1)          (dimensionless inputs, k_s = mesh Nyquist)
//!   h₀ = x,  h_{l+1} = σ(W_l h_l + b_l)  (l < L−1),   f_θ = W_{L−1} h_{L−1} + b_{L−1}   (a scalar)
//! ```
//! σ a smooth activation ([`Activation`]). The last layer starts at zero, so f_θ ≡ 0 (plain PM)
//! until trained; the hidden layers start from a seeded uniform U(−1/√fan_in, 1/√fan_in) draw
//! (deterministic, independent of the thread count).
//!
//! **Adjoint.** [`ForceCorrection::vjp`] receives per-|k| cotangents `c_i` (docs/adjoint.md eq. G6)
//! and adds `∂/∂θ Σ_i c_i f_θ(k_i, a)` to `grad`, computed by candle's reverse mode on the scalar
//! `Σ_i c_i f_θ(k_i, a)` (the forward is recomputed: nothing is stored between calls).
//!
//! **Parameter order** of the flat θ ([`ForceCorrection::params`], `set_params`, the gradient):
//! layer 0 weight (out × in, row-major), layer 0 bias, layer 1 weight, layer 1 bias, …; the same
//! tensors are the [`VarMap`] entries `l{i}.weight` and `l{i}.bias` ([`MlpCorrection::varmap`]).
//! All parameters are f64 on the CPU (the batch is the few hundred distinct |k| of a mesh).

use crate::error::{Error, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use pm_core::correction::{check_params, ForceCorrection};

/// A smooth activation for the hidden layers (smooth so that finite-difference checks and the
/// adjoint see a differentiable force).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// tanh(x).
    #[default]
    Tanh,
    /// x·sigmoid(x).
    Silu,
    /// x·Φ(x) with the exact (erf) normal CDF.
    Gelu,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Silu => x.silu(),
            Activation::Gelu => x.gelu_erf(),
        }
    }
}

/// Architecture and input scaling of an [`MlpCorrection`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MlpConfig {
    /// Widths of the hidden layers (default `[16, 16]`; may be empty: a linear model in x).
    pub hidden: Vec<usize>,
    /// Activation of the hidden layers.
    pub activation: Activation,
    /// Wavenumber scale k_s in h/Mpc: the first input is |k|/k_s (use the force mesh's Nyquist
    /// wavenumber π m/L, so the input lies in [0, √3]).
    pub k_scale: f64,
    /// Scale factors (a_lo, a_hi) mapped to the second input in [−1, 1] (use the run's
    /// `time.a_start`, `time.a_stop`).
    pub a_range: (f64, f64),
    /// Seed of the hidden layers' initial weights.
    pub seed: u64,
}

impl MlpConfig {
    /// Two hidden layers of 16 tanh units, inputs scaled by `k_scale` (h/Mpc) and `a_range`.
    pub fn new(k_scale: f64, a_range: (f64, f64)) -> Self {
        MlpConfig {
            hidden: vec![16, 16],
            activation: Activation::Tanh,
            k_scale,
            a_range,
            seed: 0,
        }
    }

    /// [`MlpConfig::new`] with k_s the force mesh's Nyquist wavenumber π·`box.mesh`/`box.size` and
    /// a_range (`time.a_start`, `time.a_stop`) of a simulation configuration.
    pub fn for_simulation(c: &pm_core::config::Config) -> Self {
        let k_nyq = std::f64::consts::PI * c.box_.mesh as f64 / c.box_.size;
        MlpConfig::new(k_nyq, (c.time.a_start, c.time.a_stop))
    }

    /// Sets the hidden widths (builder style).
    pub fn with_hidden(mut self, hidden: &[usize]) -> Self {
        self.hidden = hidden.to_vec();
        self
    }

    /// Sets the activation (builder style).
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the initialisation seed (builder style).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every field; the error names the field and what is accepted.
    pub fn validate(&self) -> Result<()> {
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return Err(Error::invalid(format!("mlp.hidden[{i}]"), 0, "a layer width ≥ 1"));
        }
        if !(self.k_scale.is_finite() && self.k_scale > 0.0) {
            return Err(Error::invalid(
                "mlp.k_scale",
                self.k_scale,
                "a finite wavenumber > 0 in h/Mpc (the mesh Nyquist π m/L)",
            ));
        }
        let (lo, hi) = self.a_range;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi > lo) {
            return Err(Error::invalid(
                "mlp.a_range",
                format!("({lo}, {hi})"),
                "0 < a_lo < a_hi, both finite",
            ));
        }
        Ok(())
    }
}

/// A candle MLP `f_θ(|k|, a)` multiplying the PM potential by `1 + f_θ` (module docs).
///
/// `Clone` makes an independent deep copy (new variables), unlike cloning the [`VarMap`].
pub struct MlpCorrection {
    config: MlpConfig,
    varmap: VarMap,
    /// (weight `out × in`, bias `out`) per layer, input layer first.
    layers: Vec<(Var, Var)>,
    n_params: usize,
}

impl std::fmt::Debug for MlpCorrection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlpCorrection")
            .field("config", &self.config)
            .field("n_params", &self.n_params)
            .finish_non_exhaustive()
    }
}

impl Clone for MlpCorrection {
    fn clone(&self) -> Self {
        let mut m = MlpCorrection::new(self.config.clone()).expect("a validated configuration");
        m.set_params(&self.params()).expect("parameters of the same architecture");
        m
    }
}

/// Layer sizes (fan_in, fan_out) of the MLP from 2 inputs to 1 output.
fn layer_sizes(hidden: &[usize]) -> Vec<(usize, usize)> {
    let mut dims = vec![2];
    dims.extend_from_slice(hidden);
    dims.push(1);
    dims.windows(2).map(|w| (w[0], w[1])).collect()
}

impl MlpCorrection {
    /// Builds the network with its initial weights (hidden layers seeded, last layer zero:
    /// f_θ ≡ 0).
    pub fn new(config: MlpConfig) -> Result<Self> {
        config.validate()?;
        let varmap = VarMap::new();
        let dev = Device::Cpu;
        let sizes = layer_sizes(&config.hidden);
        let last = sizes.len() - 1;
        let mut layers = Vec::with_capacity(sizes.len());
        let mut counter = 0u64;
        let mut n_params = 0;
        for (l, &(fan_in, fan_out)) in sizes.iter().enumerate() {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut draw = |n: usize| -> Vec<f64> {
                (0..n)
                    .map(|_| {
                        counter += 1;
                        if l == last {
                            0.0
                        } else {
                            bound * (2.0 * pm_core::noise::uniform(config.seed ^ 0x6d6c_7043, counter) - 1.0)
                        }
                    })
                    .collect()
            };
            let w = Var::from_tensor(&Tensor::from_vec(draw(fan_in * fan_out), (fan_out, fan_in), &dev)?)?;
            let b = Var::from_tensor(&Tensor::from_vec(draw(fan_out), fan_out, &dev)?)?;
            {
                let mut data = varmap.data().lock().expect("VarMap lock");
                data.insert(format!("l{l}.weight"), w.clone());
                data.insert(format!("l{l}.bias"), b.clone());
            }
            n_params += fan_in * fan_out + fan_out;
            layers.push((w, b));
        }
        Ok(MlpCorrection {
            config,
            varmap,
            layers,
            n_params,
        })
    }

    /// The architecture and input scaling.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The variables (`l{i}.weight`, `l{i}.bias`), e.g. to save them with [`VarMap::save`] or load
    /// them with [`VarMap::load`]. Shares storage with this network.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The variables in the flat parameter order (weight then bias, input layer first), e.g. for
    /// a candle optimiser. Shares storage with this network.
    pub fn vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect()
    }

    /// The network inputs (n × 2, f64) for wavenumbers `k` (h/Mpc) at scale factor `a`.
    fn inputs(&self, a: f64, k: &[f64]) -> candle_core::Result<Tensor> {
        let (lo, hi) = self.config.a_range;
        let u = 2.0 * (a - lo) / (hi - lo) - 1.0;
        let x: Vec<f64> = k.iter().flat_map(|&kk| [kk / self.config.k_scale, u]).collect();
        Tensor::from_vec(x, (k.len(), 2), &Device::Cpu)
    }

    /// `f_θ(k_i, a)` as an (n,) f64 tensor, differentiable in the variables.
    pub fn forward(&self, a: f64, k: &[f64]) -> candle_core::Result<Tensor> {
        let mut h = self.inputs(a, k)?;
        let last = self.layers.len() - 1;
        for (l, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
            if l < last {
                h = self.config.activation.apply(&h)?;
            }
        }
        h.squeeze(1)
    }
}

impl ForceCorrection for MlpCorrection {
    fn n_params(&self) -> usize {
        self.n_params
    }

    fn params(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.n_params);
        for v in self.vars() {
            out.extend(
                v.as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f64>())
                    .expect("f64 CPU variables"),
            );
        }
        out
    }

    fn set_params(&mut self, theta: &[f64]) -> pm_core::Result<()> {
        check_params(theta, self.n_params)?;
        let mut off = 0;
        for v in self.vars() {
            let n = v.elem_count();
            let t = Tensor::from_slice(&theta[off..off + n], v.shape(), &Device::Cpu).expect("host tensor");
            v.set(&t).expect("same shape and dtype");
            off += n;
        }
        Ok(())
    }

    fn eval(&self, a: f64, k: &[f64], out: &mut [f64]) {
        assert_eq!(k.len(), out.len(), "MlpCorrection::eval: k and out differ in length");
        if k.is_empty() {
            return;
        }
        let f = self
            .forward(a, k)
            .and_then(|f| f.to_vec1::<f64>())
            .expect("MlpCorrection::eval: candle forward failed");
        out.copy_from_slice(&f);
    }

    fn vjp(&self, a: f64, k: &[f64], cot: &[f64], grad: &mut [f64]) {
        assert_eq!(k.len(), cot.len(), "MlpCorrection::vjp: k and cot differ in length");
        assert_eq!(grad.len(), self.n_params, "MlpCorrection::vjp: grad has the wrong length");
        if k.is_empty() {
            return;
        }
        let mut run = || -> candle_core::Result<()> {
            let f = self.forward(a, k)?;
            let c = Tensor::from_slice(cot, k.len(), &Device::Cpu)?;
            let grads = (f * c)?.sum_all()?.backward()?;
            let mut off = 0;
            for v in self.vars() {
                let n = v.elem_count();
                if let Some(g) = grads.get(v.as_tensor()) {
                    let g = g.flatten_all()?.to_vec1::<f64>()?;
                    grad[off..off + n].iter_mut().zip(&g).for_each(|(a, b)| *a += b);
                }
                off += n;
            }
            Ok(())
        };
        run().expect("MlpCorrection::vjp: candle backward failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pm_core::testing::rand_field;

    fn random_net(act: Activation) -> MlpCorrection {
        let mut m = MlpCorrection::new(MlpConfig::new(0.8, (0.1, 1.0)).with_hidden(&[6, 5]).with_activation(act)).unwrap();
        let theta: Vec<f64> = rand_field::<f64>(m.n_params(), 7).iter().map(|v| 0.7 * v).collect();
        m.set_params(&theta).unwrap();
        m
    }

    #[test]
    fn starts_as_plain_pm() {
        let m = MlpCorrection::new(MlpConfig::new(0.8, (0.1, 1.0))).unwrap();
        assert_eq!(m.n_params(), (2 * 16 + 16) + (16 * 16 + 16) + (16 + 1));
        let mut out = [1.0; 4];
        m.eval(0.5, &[0.0, 0.1, 0.9, 1.5], &mut out);
        assert_eq!(out, [0.0; 4]);
        // ...but the hidden layers are not zero, so ∂f/∂(last layer) is not zero.
        let mut g = vec![0.0; m.n_params()];
        m.vjp(0.5, &[0.1, 0.9], &[1.0, -0.5], &mut g);
        assert!(g[g.len() - 17..].iter().any(|v| v.abs() > 1e-3), "{:?}", &g[g.len() - 17..]);
        // Deterministic initialisation from the seed.
        let m2 = MlpCorrection::new(MlpConfig::new(0.8, (0.1, 1.0))).unwrap();
        assert_eq!(m.params(), m2.params());
        let m3 = MlpCorrection::new(MlpConfig::new(0.8, (0.1, 1.0)).with_seed(1)).unwrap();
        assert_ne!(m.params(), m3.params());
    }

    #[test]
    fn vjp_matches_central_differences_for_every_parameter() {
        let k = [0.0, 0.05, 0.31, 0.77, 1.2, 1.35];
        let cot = [0.3, -1.0, 2.0, 0.5, -0.7, 1.1];
        for act in [Activation::Tanh, Activation::Silu, Activation::Gelu] {
            let m = random_net(act);
            let theta = m.params();
            let mut worst = 0.0f64;
            for a in [0.1, 0.45, 0.97] {
                let mut g = vec![0.0; m.n_params()];
                m.vjp(a, &k, &cot, &mut g);
                let scale = g.iter().fold(0.0f64, |s, v| s.max(v.abs()));
                assert!(scale > 1e-2, "{act:?}: gradient vanishes");
                for j in 0..theta.len() {
                    let eps = 1e-6;
                    let mut f = [[0.0; 6]; 2];
                    for (s, sign) in [1.0, -1.0].iter().enumerate() {
                        let mut t = theta.clone();
                        t[j] += sign * eps;
                        let mut mj = m.clone();
                        mj.set_params(&t).unwrap();
                        mj.eval(a, &k, &mut f[s]);
                    }
                    let fd: f64 = (0..6).map(|i| cot[i] * (f[0][i] - f[1][i]) / (2.0 * eps)).sum();
                    let err = (fd - g[j]).abs() / scale;
                    worst = worst.max(err);
                    assert!(err < 1e-6, "{act:?} a {a} θ{j}: fd {fd} vjp {}", g[j]);
                }
            }
            eprintln!("{act:?}: worst |fd − vjp|/max|vjp| = {worst:.2e}");
        }
    }

    #[test]
    fn params_round_trip_and_clone_is_deep() {
        let m = random_net(Activation::Tanh);
        let theta: Vec<f64> = rand_field::<f64>(m.n_params(), 3);
        let mut c = m.clone();
        assert_eq!(c.params(), m.params());
        c.set_params(&theta).unwrap();
        assert_eq!(c.params(), theta, "bitwise round trip");
        assert_ne!(m.params(), theta, "the clone does not share variables");
        // The VarMap holds the same tensors under documented names and order.
        let w0 = c.varmap().data().lock().unwrap()["l0.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(w0, theta[..12].to_vec());
        let b2 = c.varmap().data().lock().unwrap()["l2.bias"].as_tensor().to_vec1::<f64>().unwrap();
        assert_eq!(b2, theta[theta.len() - 1..].to_vec());
    }

    #[test]
    fn bad_input_is_refused() {
        let e = MlpCorrection::new(MlpConfig::new(0.8, (0.1, 1.0)).with_hidden(&[4, 0])).unwrap_err();
        assert!(e.to_string().contains("mlp.hidden[1]"), "{e}");
        let e = MlpCorrection::new(MlpConfig::new(f64::NAN, (0.1, 1.0))).unwrap_err();
        assert!(e.to_string().contains("mlp.k_scale"), "{e}");
        let e = MlpCorrection::new(MlpConfig::new(1.0, (1.0, 1.0))).unwrap_err();
        assert!(e.to_string().contains("mlp.a_range"), "{e}");
        let mut m = random_net(Activation::Silu);
        let n = m.n_params();
        assert!(matches!(m.set_params(&vec![0.0; n - 1]), Err(pm_core::Error::Shape { .. })));
        let mut bad = vec![0.0; n];
        bad[3] = f64::NAN;
        assert!(matches!(m.set_params(&bad), Err(pm_core::Error::NonFinite { .. })));
    }
}
