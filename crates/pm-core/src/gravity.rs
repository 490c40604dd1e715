//! PM gravity: CIC paint → FFT Poisson solve → gradient → CIC readout, and its VJP.
//!
//! **Forward** (docs/physics.md eq. 4.1–4.3). For particle displacements `s` the normalised
//! acceleration is `A(s) = −∇∇⁻²δ` evaluated at the particles, computed on the mesh as
//! ```text
//!   ρ     = paint(s)                       (unit masses; ρ/ρ̄ = ρ·m³/N_p)
//!   g_d   = IDFT[ K_d(k) · DFT(ρ) ] / N_p   d = x, y, z;  K_d(k) = i D_d(k) / k²,  K(0) = 0
//!   A_p,d = readout(s_p; g_d)
//! ```
//! with `D_d(k) = k_d` (spectral, the Nyquist index of axis d zeroed) or the 4th-order finite
//! difference `D(k) = (8 sin kΔ − sin 2kΔ)/(6Δ)`. The physical force (in H0 = 1 units) is
//! `F = (3/2) Ω_m / a · A`; in linear theory `A = D₁(a) s₁`. Cost: 1 forward + 3 inverse real FFTs.
//!
//! **Adjoint** (docs/adjoint.md eqs. G1–G3): with `Ā` the cotangent of `A` (N_p × 3),
//! ```text
//!   s̄ += readout_vjp_pos(s; g, Ā)                              (field gradient at the particles)
//!   ḡ_d = paint(s; Ā_d)                                         (readout VJP w.r.t. the field)
//!   ρ̄  = Σ_d G_dᵀ ḡ_d = IDFT[ Σ_d −K_d(k) · DFT(ḡ_d) ] / N_p    (G_d is antisymmetric: K_d odd, imaginary)
//!   s̄ += paint_vjp_pos(s; ρ̄)
//! ```
//! Cost: 3 forward + 1 inverse FFTs and two paints.

use crate::cic::{Cic, PaintScratch};
use crate::fft::Fft3;
use crate::float::{Real, C};
use crate::mesh::MeshGeom;
use rayon::prelude::*;

pub use crate::config::Gradient;

/// PM gravity on an m³ mesh for an n³ particle lattice: plans and k-tables built once.
pub struct Gravity<T: Real> {
    geom: MeshGeom,
    cic: Cic,
    fft: Fft3<T>,
    /// Gradient factor `D_d(k)` per full-axis index (h/Mpc), same on every axis.
    dk: Vec<T>,
    /// Same for the half axis (0..=m/2).
    dkz: Vec<T>,
    /// k² per full-axis index and half-axis index ((h/Mpc)²).
    k2: Vec<T>,
    k2z: Vec<T>,
    n_particles: usize,
}

/// Scratch for [`Gravity`]: meshes and sort buffers, allocated once and reused every step.
pub struct GravityWorkspace<T: Real> {
    rho: Vec<T>,
    rho_k: Vec<C<T>>,
    tmp_k: Vec<C<T>>,
    g: [Vec<T>; 3],
    paint: PaintScratch,
    /// Checksum of the displacements that `g` and the paint sort belong to (set by `accel`,
    /// cleared when `accel_vjp` overwrites `g`), so the VJP at the same positions reuses them.
    meshes_for: Option<u64>,
}

/// A 64-bit fingerprint of a displacement array (every value's bits, position-mixed).
fn fingerprint<T: Real>(disp: &[[T; 3]]) -> u64 {
    disp.par_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for v in s {
                h = (h ^ v.f64().to_bits()).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                h ^= h >> 31;
            }
            h
        })
        .reduce(|| 0u64, |a, b| a.wrapping_add(b))
}

impl<T: Real> Gravity<T> {
    /// Gravity for `n`³ particles on an `m`³ mesh in a box of `box_size` Mpc/h.
    pub fn new(n: usize, m: usize, box_size: f64, kernel: Gradient) -> Self {
        let geom = MeshGeom::new(m, box_size);
        let cell = geom.cell();
        let d_of = |i: usize, k: f64| -> f64 {
            match kernel {
                Gradient::Spectral => {
                    if geom.is_nyquist(i) {
                        0.0
                    } else {
                        k
                    }
                }
                Gradient::Fd4 => (8.0 * (k * cell).sin() - (2.0 * k * cell).sin()) / (6.0 * cell),
            }
        };
        let dk = (0..m).map(|i| T::of(d_of(i, geom.k_of(i)))).collect();
        let dkz = (0..geom.mc()).map(|i| T::of(d_of(i, geom.kz_of(i)))).collect();
        let k2 = (0..m).map(|i| T::of(geom.k_of(i).powi(2))).collect();
        let k2z = (0..geom.mc()).map(|i| T::of(geom.kz_of(i).powi(2))).collect();
        Gravity {
            cic: Cic::new(n, m, box_size),
            fft: Fft3::new(m),
            geom,
            dk,
            dkz,
            k2,
            k2z,
            n_particles: n * n * n,
        }
    }

    /// The mesh geometry.
    pub fn geom(&self) -> &MeshGeom {
        &self.geom
    }
    /// The CIC assignment between the lattice and the mesh.
    pub fn cic(&self) -> &Cic {
        &self.cic
    }
    /// The mesh FFT plan.
    pub fn fft(&self) -> &Fft3<T> {
        &self.fft
    }

    /// Allocates the scratch meshes (≈ 5 m³ reals).
    pub fn workspace(&self) -> GravityWorkspace<T> {
        let nr = self.geom.n_cells();
        let nc = self.geom.n_complex();
        GravityWorkspace {
            rho: vec![T::zero(); nr],
            rho_k: vec![C::default(); nc],
            tmp_k: vec![C::default(); nc],
            g: [vec![T::zero(); nr], vec![T::zero(); nr], vec![T::zero(); nr]],
            paint: PaintScratch::default(),
            meshes_for: None,
        }
    }

    /// `out (=|+=) K_d(k)·src(k)·scale` for component `d` on the half spectrum, in `T` with the
    /// k-tables precomputed so the inner loop over kz vectorises.
    fn apply_kernel(&self, d: usize, src: &[C<T>], out: &mut [C<T>], scale: f64, accumulate: bool) {
        let m = self.geom.m;
        let mc = self.geom.mc();
        let scale = T::of(scale);
        out.par_chunks_mut(m * mc)
            .zip(src.par_chunks(m * mc))
            .enumerate()
            .for_each(|(ix, (o, s))| {
                for iy in 0..m {
                    let k2xy = self.k2[ix] + self.k2[iy];
                    let dxy = match d {
                        0 => self.dk[ix],
                        1 => self.dk[iy],
                        _ => T::zero(),
                    };
                    let row = iy * mc;
                    let (orow, srow) = (&mut o[row..row + mc], &s[row..row + mc]);
                    for iz in 0..mc {
                        let k2 = k2xy + self.k2z[iz];
                        let dd = if d == 2 { self.dkz[iz] } else { dxy };
                        let f = if k2 > T::zero() { dd * scale / k2 } else { T::zero() };
                        let v = srow[iz];
                        // i·f·(re + i im) = (−f im) + i (f re)
                        let r = C::new(-v.im * f, v.re * f);
                        if accumulate {
                            orow[iz] += r;
                        } else {
                            orow[iz] = r;
                        }
                    }
                }
            });
    }

    /// Computes `g_d = IDFT[K_d DFT(ρ)]/N_p` into `ws.g` from `ws.rho` (destroyed).
    fn potential_gradient(&self, ws: &mut GravityWorkspace<T>) {
        self.fft.forward(&mut ws.rho, &mut ws.rho_k);
        let scale = 1.0 / self.n_particles as f64;
        for d in 0..3 {
            self.apply_kernel(d, &ws.rho_k, &mut ws.tmp_k, scale, false);
            self.fft.inverse(&mut ws.tmp_k, &mut ws.g[d]);
        }
    }

    /// Normalised acceleration `A = −∇∇⁻²δ` at every particle, times `scale`, written to `out`
    /// (units of Mpc/h times `scale`). 1 forward + 3 inverse FFTs.
    pub fn accel(&self, disp: &[[T; 3]], scale: f64, out: &mut [[T; 3]], ws: &mut GravityWorkspace<T>) {
        ws.rho.par_iter_mut().for_each(|v| *v = T::zero());
        self.cic.paint(disp, None, &mut ws.rho, &mut ws.paint);
        self.potential_gradient(ws);
        ws.meshes_for = Some(fingerprint(disp));
        self.cic.readout(disp, [&ws.g[0][..], &ws.g[1][..], &ws.g[2][..]], out);
        if scale != 1.0 {
            let s = T::of(scale);
            out.par_iter_mut().for_each(|v| v.iter_mut().for_each(|x| *x *= s));
        }
    }

    /// VJP of [`Gravity::accel`] (with `scale`) w.r.t. the displacements: adds `(∂(scale·A)/∂s)ᵀ ā`
    /// to `disp_cot`. Needs the forward meshes at `disp`: reused from `ws` when the last
    /// [`Gravity::accel`] with this workspace was at the same displacements (checked by a
    /// fingerprint), recomputed otherwise. Nothing else is kept between calls.
    pub fn accel_vjp(&self, disp: &[[T; 3]], scale: f64, accel_cot: &[[T; 3]], disp_cot: &mut [[T; 3]], ws: &mut GravityWorkspace<T>) {
        let s = T::of(scale);
        if ws.meshes_for != Some(fingerprint(disp)) {
            ws.rho.par_iter_mut().for_each(|v| *v = T::zero());
            self.cic.paint(disp, None, &mut ws.rho, &mut ws.paint);
            self.potential_gradient(ws);
        }
        ws.meshes_for = None;
        // Readout position term.
        self.cic
            .readout_vjp_pos(disp, [&ws.g[0][..], &ws.g[1][..], &ws.g[2][..]], disp_cot, |p| {
                let a = accel_cot[p];
                [a[0] * s, a[1] * s, a[2] * s]
            });
        // Field cotangents ḡ_d = paint(Ā_d), then ρ̄ = Σ_d G_dᵀ ḡ_d = IDFT[Σ_d −K_d DFT(ḡ_d)]/N_p.
        let scale_t = -1.0 / self.n_particles as f64;
        for d in 0..3 {
            let gd = &mut ws.g[d];
            gd.par_iter_mut().for_each(|v| *v = T::zero());
            self.cic.paint_sorted(disp, gd, &ws.paint, |p| accel_cot[p][d] * s);
            self.fft.forward(gd, &mut ws.tmp_k);
            self.apply_kernel(d, &ws.tmp_k, &mut ws.rho_k, scale_t, d > 0);
        }
        self.fft.inverse(&mut ws.rho_k, &mut ws.rho);
        self.cic.paint_vjp_pos(disp, None, &ws.rho, disp_cot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dot3, fd_check, rand_disp};

    #[test]
    fn mesh_operator_is_exact_for_a_plane_wave() {
        // ρ/ρ̄ = 1 + ε cos(k·x) on the mesh (values at cell centres) must give, spectrally,
        // A = −∇∇⁻²δ = −ε k̂ sin(k·x)/|k| exactly, for a mode along a diagonal direction.
        let (n, m, l) = (4usize, 16usize, 50.0);
        let grav = Gravity::<f64>::new(n, m, l, Gradient::Spectral);
        let mut ws = grav.workspace();
        let kf = 2.0 * std::f64::consts::PI / l;
        let nu = [2.0, -1.0, 3.0];
        let kv = nu.map(|v| v * kf);
        let k2: f64 = kv.iter().map(|v| v * v).sum();
        let eps = 0.3;
        let np = (n * n * n) as f64;
        let cell = l / m as f64;
        let pos = |c: usize| [(c / (m * m)) as f64, ((c / m) % m) as f64, (c % m) as f64].map(|i| (i + 0.5) * cell);
        for c in 0..m * m * m {
            let x = pos(c);
            let ph: f64 = (0..3).map(|d| kv[d] * x[d]).sum();
            ws.rho[c] = np / (m * m * m) as f64 * (1.0 + eps * ph.cos());
        }
        grav.potential_gradient(&mut ws);
        let mut err = 0.0f64;
        for c in 0..m * m * m {
            let x = pos(c);
            let ph: f64 = (0..3).map(|d| kv[d] * x[d]).sum();
            for d in 0..3 {
                err = err.max((ws.g[d][c] - (-eps * kv[d] * ph.sin() / k2)).abs());
            }
        }
        assert!(err < 1e-12, "max error {err:.3e}");
    }

    /// Relative max error of A against the Zel'dovich displacement for a tiny plane wave along x
    /// of wavenumber k_f on an n³ lattice and m³ mesh.
    fn plane_wave_error(n: usize, m: usize) -> f64 {
        let l = 100.0;
        let grav = Gravity::<f64>::new(n, m, l, Gradient::Spectral);
        let k = 2.0 * std::f64::consts::PI / l;
        let eps = 1e-4;
        let disp: Vec<[f64; 3]> = (0..n * n * n)
            .map(|p| {
                let qx = (p / (n * n)) as f64 * l / n as f64;
                [-(eps / k) * (k * qx).sin(), 0.0, 0.0]
            })
            .collect();
        let mut out = vec![[0.0; 3]; n * n * n];
        grav.accel(&disp, 1.0, &mut out, &mut grav.workspace());
        let norm = disp.iter().fold(0.0f64, |a, s| a.max(s[0].abs()));
        let mut err = 0.0f64;
        for (a, s) in out.iter().zip(&disp) {
            err = err.max((a[0] - s[0]).abs());
            assert!(a[1].abs() < 1e-12 * norm && a[2].abs() < 1e-12 * norm, "transverse force {a:?}");
        }
        err / norm
    }

    #[test]
    fn lattice_response_converges_to_linear_theory() {
        // Particles on the lattice displaced by the Zel'dovich displacement s = −(ε/k) sin(k q) of
        // a density mode δ = ε cos(k x) feel A = s (linear theory, D = 1) only up to the
        // discreteness error of a perturbed lattice (Joyce, Marcos et al. 2005), O((kΔ_p)²):
        // for m = n it is 1 − sin(kΔ)/(kΔ) ≈ (kΔ)²/6 (CIC paint and readout on a cell-centred
        // mesh). The error must fall ≈ 4× per doubling of n at fixed mesh ratio.
        let e: Vec<f64> = [8usize, 16, 32].iter().map(|&n| plane_wave_error(n, n)).collect();
        let x = 2.0 * std::f64::consts::PI / 32.0;
        assert!(
            (e[2] - (1.0 - x.sin() / x)).abs() < 0.1 * e[2],
            "m = n: {e:?} vs {}",
            1.0 - x.sin() / x
        );
        assert!(e[0] / e[1] > 3.5 && e[1] / e[2] > 3.5, "m = n errors {e:?}");
        let e2: Vec<f64> = [8usize, 16, 32].iter().map(|&n| plane_wave_error(n, 2 * n)).collect();
        assert!(e2[0] / e2[1] > 1.8 && e2[1] / e2[2] > 1.8 && e2[2] < 0.04, "m = 2n errors {e2:?}");
    }

    #[test]
    fn total_momentum_is_conserved() {
        // Σ_p A_p = Σ_c ρ_c g_c = ρᵀ G ρ = 0 exactly because paint and readout use the same CIC
        // weights and the Green's function gradient G is antisymmetric: PM forces conserve the
        // total momentum up to rounding.
        let (n, m) = (8usize, 16usize);
        let grav = Gravity::<f64>::new(n, m, 32.0, Gradient::Spectral);
        let disp = rand_disp::<f64>(n, 3.0, 5);
        let mut out = vec![[0.0; 3]; n * n * n];
        grav.accel(&disp, 1.0, &mut out, &mut grav.workspace());
        let np = (n * n * n) as f64;
        for d in 0..3 {
            let mean = out.iter().map(|a| a[d]).sum::<f64>() / np;
            let rms = (out.iter().map(|a| a[d] * a[d]).sum::<f64>() / np).sqrt();
            assert!(mean.abs() < 1e-12 * rms, "axis {d}: mean {mean:.3e}, rms {rms:.3e}");
        }
    }

    fn same_bits(a: &[[f64; 3]], b: &[[f64; 3]]) -> bool {
        a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn accel_vjp_matches_finite_differences() {
        for kernel in [Gradient::Spectral, Gradient::Fd4] {
            for &(n, m) in &[(4usize, 8usize), (4, 4), (3, 6)] {
                let grav = Gravity::<f64>::new(n, m, 20.0, kernel);
                let disp = rand_disp::<f64>(n, 4.0, 40 + m as u64);
                let abar = rand_disp::<f64>(n, 1.0, 41);
                let f = |s: &[[f64; 3]]| {
                    let mut out = vec![[0.0; 3]; n * n * n];
                    grav.accel(s, 1.7, &mut out, &mut grav.workspace());
                    dot3(&out, &abar)
                };
                let mut grad = vec![[0.0; 3]; n * n * n];
                grav.accel_vjp(&disp, 1.7, &abar, &mut grad, &mut grav.workspace());
                fd_check(&f, &disp, &grad, 1e-6, 42);
                // With the meshes reused from a forward call at the same positions: same bits.
                let mut ws = grav.workspace();
                grav.accel(&disp, 1.0, &mut vec![[0.0; 3]; n * n * n], &mut ws);
                let mut grad2 = vec![[0.0; 3]; n * n * n];
                grav.accel_vjp(&disp, 1.7, &abar, &mut grad2, &mut ws);
                assert!(same_bits(&grad, &grad2));
                // And a workspace left by a forward call at other positions is not reused.
                let other = rand_disp::<f64>(n, 4.0, 99);
                grav.accel(&other, 1.0, &mut vec![[0.0; 3]; n * n * n], &mut ws);
                let mut grad3 = vec![[0.0; 3]; n * n * n];
                grav.accel_vjp(&disp, 1.7, &abar, &mut grad3, &mut ws);
                assert!(same_bits(&grad, &grad3));
            }
        }
    }

    #[test]
    fn gravity_is_bit_identical_across_threads() {
        let (n, m) = (16usize, 32usize);
        let grav = Gravity::<f32>::new(n, m, 64.0, Gradient::Spectral);
        let disp = rand_disp::<f32>(n, 5.0, 77);
        let run = |t: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap().install(|| {
                let mut out = vec![[0.0f32; 3]; n * n * n];
                grav.accel(&disp, 1.0, &mut out, &mut grav.workspace());
                out
            })
        };
        let a = run(1);
        let b = run(2);
        assert!(a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
