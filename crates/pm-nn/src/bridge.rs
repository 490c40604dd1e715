//! The bridge from a candle network on the density mesh into the simulation's adjoint:
//! [`NetLoss`] implements pm-core's [`Loss`], so `pm_adjoint::value_and_grad` differentiates a
//! loss of a network's output with respect to the white noise, the cosmology and the force
//! parameters, and the same call accumulates the network's weight gradients.
//!
//! **Forward.** δ = CIC density contrast of the final particles on the force mesh
//! ([`Simulation::density`], m³ cells), as a candle tensor of shape (1, 1, m, m, m) (N, C, D, H, W;
//! C order, so `δ[0, 0, i, j, l]` is cell (i, j, l)); `L = F_w(δ)` with `F_w` a user closure
//! returning a scalar: typically `F_w(δ) = ℓ(net_w(δ))` (a loss ℓ on the output y = net_w(δ)), or
//! the network's output itself when it is a scalar observable.
//!
//! **Adjoint** (docs/adjoint.md eq. S6). candle's reverse mode on `L = F_w(δ)` gives
//! `δ̄ = ∂L/∂δ` and `w̄ = ∂L/∂w`; δ̄ is pulled back to the displacements by pm-core's density VJP
//! (through [`DensityLoss`]: `s̄ += paint_vjp_pos(s; δ̄·M/N_p)`), and w̄ is **added** to the
//! bridge's gradient accumulator ([`NetLoss::weight_grads`]). [`Loss::value`] (the adjoint's
//! forward pass) runs the network forward only; [`Loss::value_and_cot`] (its reverse pass)
//! recomputes the forward, so no activation is held across the simulation's reverse sweep.
//!
//! Precision: the network runs in the dtype given to [`NetLoss::new`] (F64 for gradient tests,
//! F32 for training); δ and δ̄ are converted from/to the simulation's precision T.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use pm_core::float::Real;
use pm_core::loss::{DensityLoss, Loss};
use pm_core::pm::MeshContext;
use pm_core::sim::State;
use std::sync::Mutex;

/// A loss `L = F_w(δ)` of the final density contrast computed by a candle closure (module docs).
///
/// `F` maps the (1, 1, m, m, m) density tensor to a scalar tensor (shape `()` or `(1)`), using the
/// variables `vars` (the network weights) whose gradients are accumulated.
pub struct NetLoss<F> {
    f: F,
    vars: Vec<Var>,
    dtype: DType,
    device: Device,
    /// Σ over reverse passes of ∂L/∂w, per variable (`None`: nothing accumulated yet).
    grads: Mutex<Vec<Option<Tensor>>>,
}

impl<F> std::fmt::Debug for NetLoss<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetLoss")
            .field("vars", &self.vars.len())
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl<F> NetLoss<F>
where
    F: Fn(&Tensor) -> candle_core::Result<Tensor>,
{
    /// A loss computed by `f` on the density tensor in `dtype` (F32 or F64) on `device`, with
    /// weight gradients accumulated for `vars` (in that order).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a non-float `dtype`.
    pub fn new(vars: Vec<Var>, dtype: DType, device: Device, f: F) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(Error::invalid("NetLoss dtype", format!("{dtype:?}"), "F32 or F64"));
        }
        let n = vars.len();
        Ok(NetLoss {
            f,
            vars,
            dtype,
            device,
            grads: Mutex::new(vec![None; n]),
        })
    }

    /// The variables whose gradients are accumulated, in order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The density contrast `delta` (m³ values, C order) as a (1, 1, m, m, m) tensor in the
    /// bridge's dtype and device.
    pub fn density_tensor<T: Real>(&self, delta: &[T]) -> candle_core::Result<Tensor> {
        let m = (delta.len() as f64).cbrt().round() as usize;
        assert_eq!(m * m * m, delta.len(), "NetLoss: the density mesh is not a cube");
        let host: Vec<f64> = delta.iter().map(|v| v.f64()).collect();
        Tensor::from_vec(host, (1, 1, m, m, m), &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)
    }

    /// Runs `f` once on the zero density of `sim`'s mesh and checks that it returns one finite
    /// value: call it once before training, so that a wrong network shape is an error here and
    /// not a panic inside the adjoint loop.
    ///
    /// # Errors
    /// [`Error::Candle`] if the network fails on the mesh, [`Error::Shape`] if it does not return a
    /// scalar, [`Error::NonFinite`] if the value is NaN or infinite.
    pub fn check<T: Real>(&self, mesh: &MeshContext<'_, T>) -> Result<()> {
        let m = mesh.geom.m;
        let x = self.density_tensor(&vec![T::zero(); m * m * m])?;
        let l = self.scalar(&x)?;
        if !l.is_finite() {
            return Err(Error::NonFinite {
                what: "NetLoss value".into(),
                detail: format!("{l} on a zero density; check the network and its weights"),
            });
        }
        Ok(())
    }

    /// `f(x)` as an f64, or [`Error::Shape`] if it is not a single value.
    fn scalar(&self, x: &Tensor) -> Result<f64> {
        let l = (self.f)(x)?;
        if l.elem_count() != 1 {
            return Err(Error::Shape {
                what: "NetLoss network output",
                got: format!("shape {:?}", l.dims()),
                expected: "a scalar (shape () or (1)): reduce the output with a loss".into(),
            });
        }
        Ok(l.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0])
    }

    /// L = F_w(δ) and δ̄ = ∂L/∂δ **added** to `delta_cot`, with ∂L/∂w added to the accumulator.
    fn net_value_and_cot<T: Real>(&self, delta: &[T], delta_cot: &mut [T]) -> Result<f64> {
        let x = Var::from_tensor(&self.density_tensor(delta)?)?;
        let l = (self.f)(x.as_tensor())?;
        if l.elem_count() != 1 {
            return self.scalar(x.as_tensor());
        }
        let grads = l.backward()?;
        let value = l.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
        if let Some(g) = grads.get(x.as_tensor()) {
            let g = g.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            delta_cot.iter_mut().zip(&g).for_each(|(c, v)| *c += T::of(*v));
        }
        let mut acc = self.grads.lock().expect("NetLoss gradient lock");
        for (a, v) in acc.iter_mut().zip(&self.vars) {
            if let Some(g) = grads.get(v.as_tensor()) {
                *a = Some(match a.take() {
                    Some(prev) => (prev + g)?,
                    None => g.detach(),
                });
            }
        }
        Ok(value)
    }

    /// The accumulated ∂L/∂w, one tensor per variable (same shape and dtype; zeros where nothing
    /// was accumulated), summed over every reverse pass since construction or the last
    /// [`NetLoss::zero_grads`].
    pub fn weight_grads(&self) -> Result<Vec<Tensor>> {
        let acc = self.grads.lock().expect("NetLoss gradient lock");
        acc.iter()
            .zip(&self.vars)
            .map(|(g, v)| match g {
                Some(g) => Ok(g.clone()),
                None => Ok(v.as_tensor().zeros_like()?),
            })
            .collect()
    }

    /// [`NetLoss::weight_grads`] flattened into one f64 vector (variables in order, each
    /// row-major).
    pub fn weight_grads_flat(&self) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for g in self.weight_grads()? {
            out.extend(g.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        }
        Ok(out)
    }

    /// Clears the accumulated weight gradients.
    pub fn zero_grads(&self) {
        self.grads.lock().expect("NetLoss gradient lock").iter_mut().for_each(|g| *g = None);
    }
}

impl<T: Real, F> Loss<T> for NetLoss<F>
where
    F: Fn(&Tensor) -> candle_core::Result<Tensor>,
{
    /// Recomputes the forward, runs candle's backward, adds `δ̄` pulled back through the density
    /// to `disp_cot` and ∂L/∂w to the accumulator. Panics if the network fails (call
    /// [`NetLoss::check`] first).
    fn value_and_cot(&self, mesh: &MeshContext<'_, T>, state: &State<T>, disp_cot: &mut [[T; 3]], mom_cot: &mut [[T; 3]]) -> f64 {
        let inner = DensityLoss::new(|d: &[T], cot: &mut [T]| {
            self.net_value_and_cot(d, cot)
                .unwrap_or_else(|e| panic!("NetLoss: the network failed ({e}); call NetLoss::check first"))
        });
        inner.value_and_cot(mesh, state, disp_cot, mom_cot)
    }

    /// The forward alone: no backward, nothing accumulated.
    fn value(&self, mesh: &MeshContext<'_, T>, state: &State<T>) -> f64 {
        let x = self
            .density_tensor(&mesh.density(&state.disp))
            .unwrap_or_else(|e| panic!("NetLoss: density tensor ({e})"));
        self.scalar(&x)
            .unwrap_or_else(|e| panic!("NetLoss: the network failed ({e}); call NetLoss::check first"))
    }
}

/// Periodic roll of `x` by `shift` cells along `dim` (`out[i] = x[(i − shift) mod n]`), built
/// from `narrow` and `cat` so it runs on any device and candle differentiates it.
pub fn roll(x: &Tensor, shift: isize, dim: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(dim)?;
    let s = shift.rem_euclid(n as isize) as usize;
    if s == 0 {
        return Ok(x.clone());
    }
    Tensor::cat(&[x.narrow(dim, n - s, s)?, x.narrow(dim, 0, n - s)?], dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pm_core::config::Config;
    use pm_core::sim::Simulation;

    fn tiny() -> (Simulation<f64>, State<f64>) {
        let mut c = Config::default();
        (c.box_.particles, c.box_.mesh, c.box_.size, c.time.steps) = (8, 8, 32.0, 2);
        let mut sim = Simulation::<f64>::new(&c).unwrap();
        let w = sim.white_noise();
        let mut st = sim.initial_conditions(w).unwrap();
        sim.run(&mut st, |_| Ok(())).unwrap();
        (sim, st)
    }

    #[test]
    fn roll_is_a_periodic_shift() {
        let x = Tensor::arange(0f64, 5.0, &Device::Cpu).unwrap().reshape((1, 5)).unwrap();
        let r = roll(&x, 2, 1).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(r, vec![3.0, 4.0, 0.0, 1.0, 2.0]);
        let r = roll(&x, -1, 1).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(r, vec![1.0, 2.0, 3.0, 4.0, 0.0]);
    }

    #[test]
    fn value_does_not_accumulate_and_reverse_passes_add_up() {
        let (sim, st) = tiny();
        let w = Var::new(&[0.7f64], &Device::Cpu).unwrap();
        // L = w · Σ δ³ : ∂L/∂w = Σ δ³.
        let wt = w.as_tensor().clone();
        let loss = NetLoss::new(vec![w], DType::F64, Device::Cpu, move |d: &Tensor| {
            (d.sqr()? * d)?.sum_all()?.broadcast_mul(&wt.squeeze(0)?)
        })
        .unwrap();
        loss.check(&sim.mesh_context()).unwrap();
        let d = sim.density(&st);
        let s3: f64 = d.iter().map(|v| v * v * v).sum();
        let v = Loss::<f64>::value(&loss, &sim.mesh_context(), &st);
        pm_core::testing::assert_close(v, 0.7 * s3, 1e-12, 0.0, "value");
        assert_eq!(loss.weight_grads_flat().unwrap(), vec![0.0], "value() accumulates nothing");
        let n = st.disp.len();
        let (mut sb, mut pb) = (vec![[0.0; 3]; n], vec![[0.0; 3]; n]);
        let v2 = loss.value_and_cot(&sim.mesh_context(), &st, &mut sb, &mut pb);
        pm_core::testing::assert_close(v2, v, 1e-12, 0.0, "value_and_cot value");
        pm_core::testing::assert_close(loss.weight_grads_flat().unwrap()[0], s3, 1e-12, 0.0, "∂L/∂w");
        loss.value_and_cot(&sim.mesh_context(), &st, &mut sb, &mut pb);
        pm_core::testing::assert_close(loss.weight_grads_flat().unwrap()[0], 2.0 * s3, 1e-12, 0.0, "two passes");
        assert!(pb.iter().all(|p| *p == [0.0; 3]), "the momenta do not enter");
        loss.zero_grads();
        assert_eq!(loss.weight_grads_flat().unwrap(), vec![0.0]);
    }

    #[test]
    fn the_displacement_cotangent_matches_finite_differences() {
        // L = Σ (roll_x δ − δ)² · w: the bridge's s̄ against central differences in s.
        let (sim, st) = tiny();
        let w = Var::new(&[1.3f64], &Device::Cpu).unwrap();
        let wt = w.as_tensor().clone();
        let loss = NetLoss::new(vec![w], DType::F64, Device::Cpu, move |d: &Tensor| {
            (roll(d, 1, 2)? - d)?.sqr()?.sum_all()?.broadcast_mul(&wt.squeeze(0)?)
        })
        .unwrap();
        let n = st.disp.len();
        let (mut sb, mut pb) = (vec![[0.0; 3]; n], vec![[0.0; 3]; n]);
        loss.value_and_cot(&sim.mesh_context(), &st, &mut sb, &mut pb);
        let f = |v: &[f64]| {
            let mut s = st.clone();
            s.disp = v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
            Loss::<f64>::value(&loss, &sim.mesh_context(), &s)
        };
        for seed in [1, 2] {
            let rel = pm_core::testing::fd_check_flat(&f, st.disp.as_flattened(), sb.as_flattened(), 1e-6, 1e-6, seed);
            eprintln!("bridge s̄ vs FD (direction {seed}): rel {rel:.2e}");
        }
    }

    #[test]
    fn a_network_that_does_not_return_a_scalar_is_refused() {
        let (sim, _) = tiny();
        let loss = NetLoss::new(vec![], DType::F32, Device::Cpu, |d: &Tensor| d.sqr()).unwrap();
        let e = loss.check(&sim.mesh_context()).unwrap_err();
        assert!(matches!(&e, Error::Shape { .. }) && e.to_string().contains("scalar"), "{e}");
        let loss = NetLoss::new(vec![], DType::F32, Device::Cpu, |d: &Tensor| d.log()?.sum_all()).unwrap();
        assert!(matches!(loss.check(&sim.mesh_context()).unwrap_err(), Error::NonFinite { .. }));
        assert!(NetLoss::new(vec![], DType::U8, Device::Cpu, |d: &Tensor| Ok(d.clone())).is_err());
    }
}
