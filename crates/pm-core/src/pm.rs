//! What a simulation derives from the box alone: the particle lattice and its FFT plan, the force
//! mesh with its CIC assignment, FFT plan and k-tables ([`Gravity`]), and the scratch meshes of the
//! force. Built once per box and kept across changes of cosmology
//! ([`crate::sim::Simulation::set_cosmology`] rebuilds only [`crate::tables::CosmoTables`]).
//!
//! [`MeshContext`] is the view a loss or an observable needs of it: the mesh geometry, the CIC
//! assignment, the FFT plan and the deconvolution choice of P(k), and nothing of the cosmology
//! or the time stepping.

use crate::cic::Cic;
use crate::config::{BoxConfig, Gradient};
use crate::fft::Fft3;
use crate::float::Real;
use crate::gravity::{Gravity, GravityWorkspace};
use crate::mesh::MeshGeom;
use crate::power::{power_spectrum, Deconvolve, PowerSpectrum};
use rayon::prelude::*;

/// The box-dependent plans and scratch of a run in precision `T`.
pub struct Pm<T: Real> {
    gravity: Gravity<T>,
    ws: GravityWorkspace<T>,
    lattice: MeshGeom,
    fft_lattice: Fft3<T>,
}

impl<T: Real> Pm<T> {
    /// Plans for `b.particles`³ particles on a `b.mesh`³ force mesh in a box of `b.size` Mpc/h,
    /// with the force's gradient kernel. `b` must be valid (`Config::validate`).
    pub fn new(b: &BoxConfig, kernel: Gradient) -> Self {
        let gravity = Gravity::new(b.particles, b.mesh, b.size, kernel);
        let ws = gravity.workspace();
        Pm {
            gravity,
            ws,
            lattice: MeshGeom::new(b.particles, b.size),
            fft_lattice: Fft3::new(b.particles),
        }
    }

    /// PM gravity (force-mesh geometry, CIC, FFT plan, k-tables).
    pub fn gravity(&self) -> &Gravity<T> {
        &self.gravity
    }
    /// Geometry of the particle lattice (n per side).
    pub fn lattice(&self) -> &MeshGeom {
        &self.lattice
    }
    /// FFT plan of the particle lattice.
    pub fn fft_lattice(&self) -> &Fft3<T> {
        &self.fft_lattice
    }
    /// The view of the force mesh that losses and observables use, with the deconvolution
    /// `deconvolve` of their P(k).
    pub fn mesh_context(&self, deconvolve: Deconvolve) -> MeshContext<'_, T> {
        MeshContext {
            cic: self.gravity.cic(),
            geom: self.gravity.geom(),
            fft: self.gravity.fft(),
            deconvolve,
        }
    }

    /// The force ([`Gravity`]: `accel_with`, `accel_vjp_with`, `accel_and_vjp`) with this box's
    /// scratch meshes, for the time step and its adjoint (nbody.rs).
    pub fn force_parts(&mut self) -> (&Gravity<T>, &mut GravityWorkspace<T>) {
        (&self.gravity, &mut self.ws)
    }

    /// Particle positions `q + s` wrapped into `[0, L)` Mpc/h in precision `T` (N × 3, lattice
    /// order). Computed in f64; a coordinate that rounds up to L in `T` is written as 0, its
    /// periodic image, so every value lies in `[0, L)`.
    pub fn positions(&self, disp: &[[T; 3]]) -> Vec<[T; 3]> {
        let cic = self.gravity.cic();
        let l = self.lattice.box_size;
        disp.par_iter()
            .enumerate()
            .map(|(p, s)| {
                cic.position(p, s).map(|x| {
                    let v = T::of(x);
                    if v.f64() >= l {
                        T::zero()
                    } else {
                        v
                    }
                })
            })
            .collect()
    }
}

/// What a loss or an observable of the particles sees of a simulation: the force mesh's geometry,
/// its CIC assignment and FFT plan, and whether P(k) divides out the CIC window. Cheap to copy.
#[derive(Clone, Copy)]
pub struct MeshContext<'a, T: Real> {
    /// The CIC assignment between the particle lattice and the force mesh.
    pub cic: &'a Cic,
    /// The force mesh's geometry (cells per side, box size in Mpc/h, k tables).
    pub geom: &'a MeshGeom,
    /// The force mesh's FFT plan.
    pub fft: &'a Fft3<T>,
    /// Deconvolution of the CIC window in P(k) (the configuration's `output.deconvolve`).
    pub deconvolve: Deconvolve,
}

impl<T: Real> MeshContext<'_, T> {
    /// CIC density contrast δ of the displacements `disp` on the force mesh (m³, C order, mean 0).
    pub fn density(&self, disp: &[[T; 3]]) -> Vec<T> {
        self.cic.density(disp)
    }
    /// Binned power spectrum of a density contrast on the force mesh (power.rs).
    pub fn power(&self, density: &[T]) -> PowerSpectrum {
        power_spectrum(density, self.geom, self.fft, self.deconvolve)
    }
}
