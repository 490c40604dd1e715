//! Backend seams: what a distributed (MPI) or GPU implementation of the engine must replace, as a
//! few small traits, each with the serial CPU implementation that is the only one today.
//!
//! | seam | trait | serial implementation |
//! |---|---|---|
//! | mesh storage and the r2c/c2r 3-D FFT | [`MeshFft`] | [`Fft3`] (whole mesh in one process) |
//! | paint/readout and their VJPs | [`MassAssignment`] | [`Cic`] (plane-sorted, thread-count independent) |
//! | particle storage and migration | [`Particles`] | [`State`] (all particles, Lagrangian order) |
//! | global reductions | [`Reduce`] | [`Serial`] (identity) |
//!
//! Contracts a replacement must keep (docs/architecture.md says how an MPI slab backend and the
//! CUDA backend meet them):
//! * **Determinism**: every reduction is summed in a fixed order that does not depend on the
//!   number of threads (nor, distributed, of ranks), so a seed gives the same bits.
//! * **Accumulation**: VJPs *add* into caller-owned cotangents (`foo_vjp` adds `+Jᵀv`).
//! * **Local views**: lengths returned by `real_len`, `complex_len`, `local_len` are the calling
//!   process's share; the serial backend's share is everything.
//!
//! The dot products and norms that the adjoint loop and the optimisers reduce over particles go
//! through [`dot3`] and [`rel_dist`], which reduce each process's fixed-order partial sum with
//! a [`Reduce`].

use crate::cic::{Cic, PaintScratch};
use crate::fft::Fft3;
use crate::float::{Real, C};
use crate::sim::State;
use rayon::prelude::*;

/// Mesh storage and the real-to-complex FFT of a periodic n³ mesh.
///
/// Real meshes are C order, `real_len` values; spectra are the half spectrum (last axis
/// 0..=n/2), `complex_len` values. `forward` is the unnormalised DFT (X(0) = Σx), `inverse` the
/// unnormalised inverse (inverse(forward(x)) = n³ x). Both may overwrite their input.
pub trait MeshFft<T: Real>: Send + Sync {
    /// Cells per side of the (global) mesh.
    fn cells_per_side(&self) -> usize;
    /// Number of real values this process holds.
    fn real_len(&self) -> usize;
    /// Number of complex values of this process's share of the half spectrum.
    fn complex_len(&self) -> usize;
    /// Real → half spectrum.
    fn forward(&self, input: &mut [T], output: &mut [C<T>]);
    /// Half spectrum → real (a non-Hermitian input's self-conjugate imaginary parts are dropped).
    fn inverse(&self, input: &mut [C<T>], output: &mut [T]);
    /// A zeroed real mesh of this process's share.
    fn alloc_real(&self) -> Vec<T> {
        vec![T::zero(); self.real_len()]
    }
    /// A zeroed half spectrum of this process's share.
    fn alloc_complex(&self) -> Vec<C<T>> {
        vec![C::default(); self.complex_len()]
    }
}

impl<T: Real> MeshFft<T> for Fft3<T> {
    fn cells_per_side(&self) -> usize {
        self.n()
    }
    fn real_len(&self) -> usize {
        Fft3::real_len(self)
    }
    fn complex_len(&self) -> usize {
        Fft3::complex_len(self)
    }
    fn forward(&self, input: &mut [T], output: &mut [C<T>]) {
        Fft3::forward(self, input, output)
    }
    fn inverse(&self, input: &mut [C<T>], output: &mut [T]) {
        Fft3::inverse(self, input, output)
    }
}

/// Mass assignment between particles (given by their lattice index and displacement) and a mesh,
/// with the VJPs the adjoint needs. Units: displacements in Mpc/h; painted values are masses per
/// cell in units of the particle mass (weights scale them).
pub trait MassAssignment<T: Real>: Sync {
    /// Adds each particle's weight (1 without `weights`) to the mesh with the assignment kernel.
    fn paint(&self, disp: &[[T; 3]], weights: Option<&[T]>, mesh: &mut [T], scratch: &mut PaintScratch);
    /// Interpolates `field` at every particle into `out` (one value per particle).
    fn readout(&self, disp: &[[T; 3]], field: &[T], out: &mut [T]);
    /// Adds `(∂ paint/∂s)ᵀ mesh_cot` to `disp_cot`.
    fn paint_vjp_pos(&self, disp: &[[T; 3]], weights: Option<&[T]>, mesh_cot: &[T], disp_cot: &mut [[T; 3]]);
    /// Adds `(∂ readout/∂field)ᵀ out_cot` (a paint of `out_cot`) to `field_cot`.
    fn readout_vjp_field(&self, disp: &[[T; 3]], out_cot: &[T], field_cot: &mut [T], scratch: &mut PaintScratch);
}

impl<T: Real> MassAssignment<T> for Cic {
    fn paint(&self, disp: &[[T; 3]], weights: Option<&[T]>, mesh: &mut [T], scratch: &mut PaintScratch) {
        Cic::paint(self, disp, weights, mesh, scratch)
    }
    fn readout(&self, disp: &[[T; 3]], field: &[T], out: &mut [T]) {
        let mut tmp = vec![[T::zero(); 1]; disp.len()];
        Cic::readout(self, disp, [field], &mut tmp);
        out.iter_mut().zip(&tmp).for_each(|(o, t)| *o = t[0]);
    }
    fn paint_vjp_pos(&self, disp: &[[T; 3]], weights: Option<&[T]>, mesh_cot: &[T], disp_cot: &mut [[T; 3]]) {
        Cic::paint_vjp_pos(self, disp, weights, mesh_cot, disp_cot)
    }
    fn readout_vjp_field(&self, disp: &[[T; 3]], out_cot: &[T], field_cot: &mut [T], scratch: &mut PaintScratch) {
        Cic::readout_vjp_field(self, disp, out_cot, field_cot, scratch)
    }
}

/// Particle storage: the particles a process owns and their migration after a drift.
pub trait Particles<T: Real> {
    /// Number of particles this process holds.
    fn local_len(&self) -> usize;
    /// The Lagrangian (lattice) index of local particle `i`: `(ix·n + iy)·n + iz`.
    fn lagrangian_id(&self, i: usize) -> u64;
    /// Hands particles that left this process's domain to their new owner, with their momenta,
    /// accelerations and the per-particle arrays in `carry` (cotangents in the adjoint), in one
    /// fixed order. Returns how many particles left. Serial: nothing leaves.
    fn migrate(&mut self, carry: &mut [&mut Vec<[T; 3]>]) -> usize;
}

impl<T: Real> Particles<T> for State<T> {
    fn local_len(&self) -> usize {
        self.disp.len()
    }
    fn lagrangian_id(&self, i: usize) -> u64 {
        i as u64
    }
    fn migrate(&mut self, carry: &mut [&mut Vec<[T; 3]>]) -> usize {
        debug_assert!(carry.iter().all(|c| c.len() == self.disp.len()));
        0
    }
}

/// Global reductions of per-process partial results. Each process first reduces its own share in
/// a fixed order; a distributed implementation then combines the partial results in rank order.
pub trait Reduce: Sync {
    /// The sum of `local` over all processes.
    fn sum(&self, local: f64) -> f64;
    /// The largest `local` over all processes.
    fn max(&self, local: f64) -> f64;
}

/// The single-process backend: every reduction is the identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Serial;

impl Reduce for Serial {
    fn sum(&self, local: f64) -> f64 {
        local
    }
    fn max(&self, local: f64) -> f64 {
        local
    }
}

/// Fixed-order f64 sum over chunks of 4096 particles of `f(chunk of a, chunk of b)`.
fn chunked<T: Real, R: Send, F>(a: &[[T; 3]], b: &[[T; 3]], f: F) -> Vec<R>
where
    F: Fn(&[[T; 3]], &[[T; 3]]) -> R + Sync + Send,
{
    a.par_chunks(4096).zip(b.par_chunks(4096)).map(|(x, y)| f(x, y)).collect()
}

/// ⟨a, b⟩ over particles in f64: each process sums its particles in a fixed order (chunks of
/// 4096, in chunk order; independent of the thread count), then `reduce` combines the processes.
pub fn dot3<T: Real>(reduce: &dyn Reduce, a: &[[T; 3]], b: &[[T; 3]]) -> f64 {
    let local = chunked(a, b, |x, y| {
        x.iter()
            .zip(y)
            .map(|(u, v)| (0..3).map(|c| u[c].f64() * v[c].f64()).sum::<f64>())
            .sum::<f64>()
    })
    .into_iter()
    .sum();
    reduce.sum(local)
}

/// Relative L2 distance ‖a − b‖/‖b‖ between two particle arrays in f64 (fixed order as [`dot3`]).
pub fn rel_dist<T: Real>(reduce: &dyn Reduce, a: &[[T; 3]], b: &[[T; 3]]) -> f64 {
    let (num, den) = chunked(a, b, |x, y| {
        let (mut n, mut d) = (0.0f64, 0.0f64);
        for (u, v) in x.iter().zip(y) {
            for c in 0..3 {
                n += (u[c].f64() - v[c].f64()).powi(2);
                d += v[c].f64().powi(2);
            }
        }
        (n, d)
    })
    .into_iter()
    .fold((0.0, 0.0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
    let (num, den) = (reduce.sum(num), reduce.sum(den));
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dot, rand_disp, rand_field};

    #[test]
    fn serial_fft_through_the_seam_round_trips() {
        let fft = Fft3::<f64>::new(6);
        let seam: &dyn MeshFft<f64> = &fft;
        let x = rand_field::<f64>(seam.real_len(), 1);
        let (mut a, mut k, mut back) = (x.clone(), seam.alloc_complex(), seam.alloc_real());
        seam.forward(&mut a, &mut k);
        assert!((k[0].re - x.iter().sum::<f64>()).abs() < 1e-12);
        seam.inverse(&mut k, &mut back);
        let n3 = 216.0;
        let err = x.iter().zip(&back).map(|(u, v)| (u - v / n3).abs()).fold(0.0, f64::max);
        assert!(err < 1e-13, "{err:e}");
        assert_eq!(seam.cells_per_side(), 6);
    }

    #[test]
    fn serial_mass_assignment_is_adjoint_to_readout() {
        // ⟨paint(w), f⟩ = ⟨w, readout(f)⟩ through the trait (the dot-product test of the seam).
        let cic = Cic::new(4, 8, 32.0);
        let seam: &dyn MassAssignment<f64> = &cic;
        let disp = rand_disp::<f64>(4, 3.0, 2);
        let w = rand_field::<f64>(64, 3);
        let f = rand_field::<f64>(512, 4);
        let mut mesh = vec![0.0; 512];
        seam.paint(&disp, Some(&w), &mut mesh, &mut PaintScratch::default());
        let mut r = vec![0.0; 64];
        seam.readout(&disp, &f, &mut r);
        let (lhs, rhs) = (dot(&mesh, &f), dot(&w, &r));
        assert!((lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
        // readout's field VJP is the paint of the cotangent.
        let mut fc = vec![0.0; 512];
        seam.readout_vjp_field(&disp, &w, &mut fc, &mut PaintScratch::default());
        assert_eq!(fc, mesh);
    }

    #[test]
    fn serial_particles_never_migrate_and_keep_lattice_ids() {
        let disp = rand_disp::<f64>(3, 30.0, 5);
        let mut st = State {
            a: 0.5,
            disp: disp.clone(),
            mom: disp.clone(),
            accel: disp.clone(),
        };
        let mut cot = disp.clone();
        assert_eq!(st.migrate(&mut [&mut cot]), 0);
        assert_eq!(st.local_len(), 27);
        assert_eq!(st.lagrangian_id(26), 26);
        assert_eq!((st.disp, cot), (disp.clone(), disp));
    }

    #[test]
    fn reductions_are_thread_count_independent() {
        let a = rand_disp::<f32>(24, 1.0, 6);
        let b = rand_disp::<f32>(24, 1.0, 7);
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| (dot3(&Serial, &a, &b), rel_dist(&Serial, &a, &b)))
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0.to_bits(), two.0.to_bits());
        assert_eq!(one.1.to_bits(), two.1.to_bits());
        let naive: f64 = a
            .iter()
            .zip(&b)
            .map(|(u, v)| (0..3).map(|c| u[c] as f64 * v[c] as f64).sum::<f64>())
            .sum();
        assert!((one.0 - naive).abs() < 1e-9 * naive.abs().max(1.0));
        assert_eq!(Serial.max(2.5), 2.5);
    }
}
