//! Initial conditions and their VJP side by side: white noise → linear modes → LPT at a_start.
//!
//! Forward (docs/physics.md eqs. 2.1, 3.x; docs/adjoint.md eq. R5):
//! ```text
//!   δ_L(k) = ±W(k) sqrt(P_L(k)/V_cell)                 (noise.rs, W = DFT(w))
//!   s₁, s₂ = LPT fields of δ_L                          (lpt.rs)
//!   s₀ = D₁ s₁ + D₂ s₂,   p₀ = g_p s₁ + g_p2 s₂         (growth factors at a_start)
//! ```
//! VJP, given s̄₀ and p̄₀ (eq. R5, R9):
//! ```text
//!   s̄₁ = D₁ s̄₀ + g_p p̄₀,   s̄₂ = D₂ s̄₀ + g_p2 p̄₀,   δ̄_L = lpt_vjp(s̄₁, s̄₂)
//!   w̄ = ±linear_field(δ̄_L)        (the linear-mode operator is real and symmetric)
//!   D̄₁ = ⟨s̄₀, s₁⟩, D̄₂ = ⟨s̄₀, s₂⟩, ḡ_p = ⟨p̄₀, s₁⟩, ḡ_p2 = ⟨p̄₀, s₂⟩
//!   ∂L/∂ln sqrt(P_L(k_j)) = Σ_{|ν|²=j} Re[δ_L(k) D̄*(k)]/n³,   D̄ = DFT(δ̄_L)
//! ```
//! The last four feed the cosmology gradient (`pm_adjoint`, eq. T11).

use crate::backend::{dot3, Serial};
use crate::error::{Error, Result};
use crate::float::{Real, C};
use crate::lpt::{lpt_fields, lpt_vjp, LptOrder};
use crate::nbody::Cotangents;
use crate::noise::{linear_field, linear_modes, Amplitude};
use crate::sim::{Simulation, State};
use rayon::prelude::*;

/// The VJP of the initial conditions ([`Simulation::initial_conditions_vjp`]).
#[derive(Clone, Debug, Default)]
pub struct IcCotangents<T: Real> {
    /// ∂L/∂w, same shape and order as the white noise (n³, C order).
    pub white_noise: Vec<T>,
    /// ∂L/∂D₁ at a_start (with `cosmology`; else 0).
    pub d1: f64,
    /// ∂L/∂D₂ at a_start.
    pub d2: f64,
    /// ∂L/∂g_p at a_start.
    pub gp: f64,
    /// ∂L/∂g_p2 at a_start.
    pub gp2: f64,
    /// ∂L/∂ln sqrt(P_L(k_j)) per |ν|² = j of the particle lattice (with `cosmology`; else empty).
    pub power: Vec<f64>,
}

impl<T: Real> Simulation<T> {
    /// Linear modes δ_L(k) at a = 1 on the particle lattice (docs/physics.md eq. 2.1) from white
    /// noise `w` (n³, C order), after checking its length and values.
    pub fn linear_modes(&self, w: &[T]) -> Result<Vec<C<T>>> {
        let n = self.config.box_.particles;
        Error::check_array("white noise", w, n * n * n, "box.particles³")?;
        let amp = if self.config.run.fixed_amplitude {
            Amplitude::Fixed
        } else {
            Amplitude::Random
        };
        let lin = self.linear_power();
        let mut w = w.to_vec();
        Ok(linear_modes(
            &mut w,
            self.lattice(),
            self.fft_lattice(),
            &|k| lin.p(k),
            amp,
            self.config.run.paired,
        ))
    }

    /// Initial conditions at `time.a_start` from white noise `w` (n³, C order).
    pub fn initial_conditions(&mut self, w: Vec<T>) -> Result<State<T>> {
        let dk = self.linear_modes(&w)?;
        Ok(self.initial_conditions_from_modes(&dk))
    }

    /// Initial conditions at `time.a_start` from linear modes `dk` (as [`Simulation::linear_modes`]
    /// returns them).
    pub fn initial_conditions_from_modes(&mut self, dk: &[C<T>]) -> State<T> {
        let n = self.config.box_.particles;
        let f = lpt_fields(dk, self.lattice(), self.fft_lattice(), self.config.time.lpt);
        let a = self.config.time.a_start;
        let g = self.growth();
        let (d1, d2, p1, p2) = (T::of(g.d1(a)), T::of(g.d2(a)), T::of(g.gp(a)), T::of(g.gp2(a)));
        let np = n * n * n;
        let mut disp = vec![[T::zero(); 3]; np];
        let mut mom = vec![[T::zero(); 3]; np];
        disp.par_iter_mut().zip(mom.par_iter_mut()).enumerate().for_each(|(i, (s, p))| {
            for d in 0..3 {
                let (a1, a2) = (f.s1[i][d], f.s2.as_ref().map_or(T::zero(), |s2| s2[i][d]));
                s[d] = d1 * a1 + d2 * a2;
                p[d] = p1 * a1 + p2 * a2;
            }
        });
        let mut state = State {
            a,
            disp,
            mom,
            accel: Vec::new(),
        };
        self.refresh_accel(&mut state);
        state
    }

    /// The VJP of [`Simulation::initial_conditions_from_modes`] ∘ [`Simulation::linear_modes`]
    /// (module docs): from the cotangents `cot` of the initial state (its `disp` and `mom`) and
    /// the modes `dk` of the forward pass, ∂L/∂w and, with `cosmology`, the cotangents of the
    /// growth factors at a_start and of ln sqrt(P_L).
    pub fn initial_conditions_vjp(&self, dk: &[C<T>], cot: &Cotangents<T>, cosmology: bool) -> IcCotangents<T> {
        let a0 = self.config.time.a_start;
        let g = self.growth();
        let (d1, d2, gp, gp2) = (g.d1(a0), g.d2(a0), g.gp(a0), g.gp2(a0));
        let order = self.config.time.lpt;
        let (s_bar, p_bar) = (&cot.disp, &cot.mom);
        let mut out = IcCotangents::default();
        if cosmology {
            let f = lpt_fields(dk, self.lattice(), self.fft_lattice(), order);
            out.d1 = dot3(&Serial, s_bar, &f.s1);
            out.gp = dot3(&Serial, p_bar, &f.s1);
            if let Some(s2) = &f.s2 {
                out.d2 = dot3(&Serial, s_bar, s2);
                out.gp2 = dot3(&Serial, p_bar, s2);
            }
        }
        let comb = |c1: f64, c2: f64| -> Vec<[T; 3]> {
            let (c1, c2) = (T::of(c1), T::of(c2));
            s_bar
                .par_iter()
                .zip(p_bar.par_iter())
                .map(|(s, p)| std::array::from_fn(|d| c1 * s[d] + c2 * p[d]))
                .collect()
        };
        let s1_bar = comb(d1, gp);
        let s2_bar = (order == LptOrder::Two).then(|| comb(d2, gp2));
        let mut delta_bar = lpt_vjp(dk, self.lattice(), self.fft_lattice(), &s1_bar, s2_bar.as_deref());
        if cosmology {
            out.power = self.power_cot(dk, &delta_bar);
        }
        // Linear modes: a symmetric real operator (noise.rs); the pairing sign is applied once here.
        let lin = self.linear_power();
        let mut wbar = linear_field(&mut delta_bar, self.lattice(), self.fft_lattice(), &|k| lin.p(k));
        if self.config.run.paired {
            wbar.par_iter_mut().for_each(|v| *v = -*v);
        }
        out.white_noise = wbar;
        out
    }

    /// docs/adjoint.md eq. R9 (last line): with δ_L(k) = W(k) sqrt(P_L(k)/V_cell), ∂L/∂ln sqrt(P_L)
    /// summed per |ν|² = Σ_{|ν|²=j} Re[δ_L(k) D̄*(k)]/n³ over the full spectrum, D̄ = DFT(δ̄_L).
    fn power_cot(&self, dk: &[C<T>], delta_bar: &[T]) -> Vec<f64> {
        let fft = self.fft_lattice();
        let mut tmp = delta_bar.to_vec();
        let mut dbar_k = vec![C::<T>::default(); fft.complex_len()];
        fft.forward(&mut tmp, &mut dbar_k);
        let n3 = delta_bar.len() as f64;
        self.lattice()
            .radial_sum(|i| (dk[i].re.f64() * dbar_k[i].re.f64() + dk[i].im.f64() * dbar_k[i].im.f64()) / n3)
    }
}
