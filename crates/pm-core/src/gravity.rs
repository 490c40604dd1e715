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
//!
//! **Learned correction** (correction.rs, docs/adjoint.md eqs. G4–G6): with a
//! [`ForceCorrection`] at scale factor a, `DFT(ρ)` is multiplied by the radial filter
//! `1 + f_θ(|k|, a)` before the kernels (G4). In the VJP the accumulated spectrum
//! `R = Σ_d −K_d DFT(ḡ_d)/N_p` is multiplied by the same real, even filter (G5), and
//! `θ̄ += Σ_k Re[DFT(ρ) R*] ∂f_θ/∂θ` (G6), summed per |ν|² and passed to [`ForceCorrection::vjp`].

use crate::cic::{Cic, PaintScratch};
use crate::correction::ForceCorrection;
use crate::fft::Fft3;
use crate::float::{Real, C};
use crate::mesh::MeshGeom;
use rayon::prelude::*;

pub use crate::config::Gradient;

/// A learned force correction evaluated at scale factor `a` (see [`ForceCorrection`]).
#[derive(Clone, Copy)]
pub struct Corrected<'a> {
    /// The correction model f_θ(|k|, a).
    pub model: &'a dyn ForceCorrection,
    /// Scale factor at which the force is evaluated.
    pub a: f64,
}

impl Corrected<'_> {
    /// A fingerprint of (θ, a) so cached meshes are reused only for the same filter.
    fn fingerprint(&self) -> u64 {
        let mut h = self.a.to_bits().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for v in self.model.params() {
            h = (h ^ v.to_bits()).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h ^= h >> 29;
        }
        h
    }
}

/// PM gravity on an m³ mesh for an n³ particle lattice: plans and k-tables built once.
pub struct Gravity<T: Real> {
    geom: MeshGeom,
    cic: Cic,
    fft: Fft3<T>,
    /// Gradient factor `D_d(k)` per full-axis index (h/Mpc), same on every axis.
    dk: Vec<T>,
    /// Same for the half axis (0..=m/2).
    dkz: Vec<T>,
    /// 1/|ν|² per squared integer frequency |ν|² (0 for ν = 0); 1/k² = inv_nu2/k_f².
    inv_nu2: Vec<T>,
    /// |k| (h/Mpc) per |ν|², where a learned correction is evaluated.
    radial_k: Vec<f64>,
    n_particles: usize,
}

/// Scratch for [`Gravity`]: meshes and sort buffers, allocated once and reused every step.
pub struct GravityWorkspace<T: Real> {
    rho: Vec<T>,
    rho_k: Vec<C<T>>,
    tmp_k: Vec<C<T>>,
    g: [Vec<T>; 3],
    paint: PaintScratch,
    /// The filter `1 + f_θ(k_f·sqrt(j), a)` per |ν|² = j (empty without a correction).
    filter: Vec<T>,
    /// Filtered spectrum (forward; allocated with a correction only).
    acc_k: Vec<C<T>>,
    /// The VJP accumulator R = Σ_d −K_d DFT(ḡ_d)/N_p (allocated by the first VJP).
    vjp_k: Vec<C<T>>,
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
        let radial_k = geom.radial_k();
        let inv_nu2 = (0..=geom.nu2_max())
            .map(|j| T::of(if j == 0 { 0.0 } else { 1.0 / j as f64 }))
            .collect();
        Gravity {
            cic: Cic::new(n, m, box_size),
            fft: Fft3::new(m),
            geom,
            dk,
            dkz,
            inv_nu2,
            radial_k,
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
            filter: Vec::new(),
            acc_k: Vec::new(),
            vjp_k: Vec::new(),
            meshes_for: None,
        }
    }

    /// `out (=|+=) K_d(k)·src(k)·scale` for component `d` on the half spectrum, in `T` with the
    /// k-tables precomputed so the inner loop over kz vectorises.
    fn apply_kernel(&self, d: usize, src: &[C<T>], out: &mut [C<T>], scale: f64, accumulate: bool) {
        let m = self.geom.m;
        let mc = self.geom.mc();
        let scale = T::of(scale / (self.geom.kf() * self.geom.kf()));
        out.par_chunks_mut(m * mc)
            .zip(src.par_chunks(m * mc))
            .enumerate()
            .for_each(|(ix, (o, s))| {
                for iy in 0..m {
                    let nu2xy = self.geom.nu2(ix, iy, 0);
                    let dxy = match d {
                        0 => self.dk[ix],
                        1 => self.dk[iy],
                        _ => T::zero(),
                    };
                    let row = iy * mc;
                    let (orow, srow) = (&mut o[row..row + mc], &s[row..row + mc]);
                    for iz in 0..mc {
                        let dd = if d == 2 { self.dkz[iz] } else { dxy };
                        // 1/k² from the |ν|² table (no division per mode; 0 at k = 0).
                        let f = dd * scale * self.inv_nu2[nu2xy + iz * iz];
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

    /// Fills `ws.filter` with `1 + f_θ(|k|, a)` per |ν|² (eq. G4).
    fn fill_filter(&self, corr: &Corrected<'_>, ws: &mut GravityWorkspace<T>) {
        let mut f = vec![0.0; self.radial_k.len()];
        corr.model.eval(corr.a, &self.radial_k, &mut f);
        ws.filter = f.iter().map(|v| T::of(1.0 + v)).collect();
    }

    /// `out[k] = src[k] · filter[|ν|²]` on the half spectrum (a real, even multiplier).
    fn apply_filter(&self, filter: &[T], src: &[C<T>], out: &mut [C<T>]) {
        let (m, mc) = (self.geom.m, self.geom.mc());
        out.par_chunks_mut(m * mc)
            .zip(src.par_chunks(m * mc))
            .enumerate()
            .for_each(|(ix, (o, s))| {
                for iy in 0..m {
                    let b = self.geom.nu2(ix, iy, 0);
                    for iz in 0..mc {
                        let f = filter[b + iz * iz];
                        let v = s[iy * mc + iz];
                        o[iy * mc + iz] = C::new(v.re * f, v.im * f);
                    }
                }
            });
    }

    /// Computes `g_d = IDFT[K_d (1 + f) DFT(ρ)]/N_p` into `ws.g` from `ws.rho` (destroyed);
    /// `ws.rho_k` keeps the unfiltered `DFT(ρ)`.
    fn potential_gradient(&self, corr: Option<&Corrected<'_>>, ws: &mut GravityWorkspace<T>) {
        self.fft.forward(&mut ws.rho, &mut ws.rho_k);
        let scale = 1.0 / self.n_particles as f64;
        if let Some(c) = corr {
            self.fill_filter(c, ws);
            ws.acc_k.resize(self.geom.n_complex(), C::default());
            self.apply_filter(&ws.filter, &ws.rho_k, &mut ws.acc_k);
        }
        for d in 0..3 {
            let src = if corr.is_some() { &ws.acc_k } else { &ws.rho_k };
            self.apply_kernel(d, src, &mut ws.tmp_k, scale, false);
            self.fft.inverse(&mut ws.tmp_k, &mut ws.g[d]);
        }
    }

    /// Paints `disp` and computes the force meshes, unless `ws` already holds them for the same
    /// displacements and filter.
    fn meshes(&self, disp: &[[T; 3]], corr: Option<&Corrected<'_>>, ws: &mut GravityWorkspace<T>) {
        let fp = fingerprint(disp) ^ corr.map_or(0, |c| c.fingerprint());
        if ws.meshes_for == Some(fp) {
            return;
        }
        self.fresh_meshes(disp, corr, ws);
        ws.meshes_for = Some(fp);
    }

    /// Paints `disp` and computes the force meshes (no reuse, no fingerprint).
    fn fresh_meshes(&self, disp: &[[T; 3]], corr: Option<&Corrected<'_>>, ws: &mut GravityWorkspace<T>) {
        ws.meshes_for = None;
        ws.rho.par_iter_mut().for_each(|v| *v = T::zero());
        self.cic.paint(disp, None, &mut ws.rho, &mut ws.paint);
        self.potential_gradient(corr, ws);
    }

    /// Normalised acceleration `A = −∇∇⁻²δ` at every particle, times `scale`, written to `out`
    /// (units of Mpc/h times `scale`). 1 forward + 3 inverse FFTs.
    pub fn accel(&self, disp: &[[T; 3]], scale: f64, out: &mut [[T; 3]], ws: &mut GravityWorkspace<T>) {
        self.accel_with(disp, scale, None, out, ws)
    }

    /// [`Gravity::accel`] with an optional learned correction of the potential (eq. G4).
    pub fn accel_with(&self, disp: &[[T; 3]], scale: f64, corr: Option<Corrected<'_>>, out: &mut [[T; 3]], ws: &mut GravityWorkspace<T>) {
        ws.meshes_for = None;
        self.meshes(disp, corr.as_ref(), ws);
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
        self.accel_vjp_with(disp, scale, None, accel_cot, disp_cot, None, ws)
    }

    /// [`Gravity::accel_vjp`] with an optional learned correction: also adds `(∂(scale·A)/∂θ)ᵀ ā`
    /// to `param_cot` when given (length `n_params` of the correction; eqs. G5–G6).
    pub fn accel_vjp_with(
        &self,
        disp: &[[T; 3]],
        scale: f64,
        corr: Option<Corrected<'_>>,
        accel_cot: &[[T; 3]],
        disp_cot: &mut [[T; 3]],
        param_cot: Option<&mut [f64]>,
        ws: &mut GravityWorkspace<T>,
    ) {
        let s = T::of(scale);
        self.meshes(disp, corr.as_ref(), ws);
        // Readout position term (G1).
        self.cic
            .readout_vjp_pos(disp, [&ws.g[0][..], &ws.g[1][..], &ws.g[2][..]], disp_cot, |p| {
                let a = accel_cot[p];
                [a[0] * s, a[1] * s, a[2] * s]
            });
        self.field_vjp(disp, corr, s, accel_cot, disp_cot, param_cot, ws);
    }

    /// The force at `disp` (into `out`, as [`Gravity::accel_with`] with scale 1) **and** its VJP at
    /// the same displacements (as [`Gravity::accel_vjp_with`] with `scale`), in two passes over
    /// the particles instead of four: one plane sort and one paint of the mass and the three
    /// cotangents, and one gather for the acceleration and both position terms. The forces have
    /// the same bits as `accel_with`'s. This is what one backward step of the adjoint needs: the
    /// reversed force and the VJP there. Uses one more complex mesh of scratch than the forward.
    pub fn accel_and_vjp(
        &self,
        disp: &[[T; 3]],
        corr: Option<Corrected<'_>>,
        out: &mut [[T; 3]],
        scale: f64,
        accel_cot: &[[T; 3]],
        disp_cot: &mut [[T; 3]],
        param_cot: Option<&mut [f64]>,
        ws: &mut GravityWorkspace<T>,
    ) {
        // The order differs from accel_with + accel_vjp_with so that each particle is visited
        // twice instead of four times: one paint of the mass and the three cotangents ḡ_d
        // together (into ws.rho and ws.g), their spectra, then the force meshes, ρ̄, and one
        // gather for the force values and both position terms (G1 and G3). The mass mesh, its
        // spectrum and the force meshes are computed exactly as in `accel_with` (same bits).
        let s = T::of(scale);
        ws.meshes_for = None;
        ws.rho.par_iter_mut().for_each(|v| *v = T::zero());
        {
            let [g0, g1, g2] = &mut ws.g;
            for g in [&mut *g0, &mut *g1, &mut *g2] {
                g.par_iter_mut().for_each(|v| *v = T::zero());
            }
            self.cic
                .paint_k(disp, [&mut ws.rho[..], &mut g0[..], &mut g1[..], &mut g2[..]], &mut ws.paint, |p| {
                    let a = accel_cot[p];
                    [T::one(), a[0] * s, a[1] * s, a[2] * s]
                });
        }
        self.cot_spectrum(ws);
        self.potential_gradient(corr.as_ref(), ws);
        self.rho_bar(corr, param_cot, ws);
        let [g0, g1, g2] = &ws.g;
        self.cic
            .readout_and_grad(disp, [&g0[..], &g1[..], &g2[..]], [&ws.rho[..]], out, disp_cot, |p| {
                let a = accel_cot[p];
                ([a[0] * s, a[1] * s, a[2] * s], [T::one()])
            });
    }

    /// `R = Σ_d −K_d DFT(ḡ_d)/N_p` into `ws.vjp_k` from the painted cotangents ḡ_d in `ws.g`
    /// (destroyed): eq. G2.
    fn cot_spectrum(&self, ws: &mut GravityWorkspace<T>) {
        ws.vjp_k.resize(self.geom.n_complex(), C::default());
        let scale_t = -1.0 / self.n_particles as f64;
        for d in 0..3 {
            self.fft.forward(&mut ws.g[d], &mut ws.tmp_k);
            self.apply_kernel(d, &ws.tmp_k, &mut ws.vjp_k, scale_t, d > 0);
        }
    }

    /// `ρ̄ = IDFT[(1 + f) R]` into `ws.rho` from `R` in `ws.vjp_k` (destroyed), and the θ̄ term
    /// (eqs. G5–G6), which needs `ws.rho_k = DFT(ρ)` and the filter of the forward meshes.
    fn rho_bar(&self, corr: Option<Corrected<'_>>, param_cot: Option<&mut [f64]>, ws: &mut GravityWorkspace<T>) {
        if let Some(c) = corr {
            if let Some(pc) = param_cot {
                // eq. G6: per-|ν|² sums of Re[DFT(ρ) R*], then the model's own VJP.
                let (rk, vk) = (&ws.rho_k, &ws.vjp_k);
                let cot = self
                    .geom
                    .radial_sum(|i| rk[i].re.f64() * vk[i].re.f64() + rk[i].im.f64() * vk[i].im.f64());
                c.model.vjp(c.a, &self.radial_k, &cot, pc);
            }
            // eq. G5: R ← (1 + f) R, then ρ̄ = IDFT[R].
            self.apply_filter(&ws.filter, &ws.vjp_k, &mut ws.tmp_k);
            self.fft.inverse(&mut ws.tmp_k, &mut ws.rho);
        } else {
            self.fft.inverse(&mut ws.vjp_k, &mut ws.rho);
        }
    }

    /// The field part of the VJP (G2, G3, G5, G6), after the readout's position term, with the
    /// force meshes and the plane sort of `disp` in `ws`: paints ḡ_d = paint(s·Ā_d) over the
    /// force meshes (so they are invalid afterwards), ρ̄, θ̄ and the paint's position term.
    fn field_vjp(
        &self,
        disp: &[[T; 3]],
        corr: Option<Corrected<'_>>,
        s: T,
        accel_cot: &[[T; 3]],
        disp_cot: &mut [[T; 3]],
        param_cot: Option<&mut [f64]>,
        ws: &mut GravityWorkspace<T>,
    ) {
        ws.meshes_for = None;
        let [g0, g1, g2] = &mut ws.g;
        for g in [&mut *g0, &mut *g1, &mut *g2] {
            g.par_iter_mut().for_each(|v| *v = T::zero());
        }
        self.cic
            .paint_sorted_k(disp, [&mut g0[..], &mut g1[..], &mut g2[..]], &ws.paint, |p| {
                let a = accel_cot[p];
                [a[0] * s, a[1] * s, a[2] * s]
            });
        self.cot_spectrum(ws);
        self.rho_bar(corr, param_cot, ws);
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
        grav.potential_gradient(None, &mut ws);
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
    fn corrected_accel_vjp_matches_finite_differences() {
        use crate::correction::SplineCorrection;
        let (n, m, l) = (4usize, 8usize, 20.0);
        let kmax = std::f64::consts::PI * m as f64 / l * 3f64.sqrt();
        let mut model = SplineCorrection::new(5, 2, kmax, (0.1, 1.0)).unwrap();
        let theta: Vec<f64> = (0..10).map(|i| 0.2 * ((i * 5 % 7) as f64 - 3.0)).collect();
        model.set_params(&theta).unwrap();
        let a = 0.6;
        for kernel in [Gradient::Spectral, Gradient::Fd4] {
            let grav = Gravity::<f64>::new(n, m, l, kernel);
            let disp = rand_disp::<f64>(n, 3.0, 7);
            let abar = rand_disp::<f64>(n, 1.0, 8);
            let force = |s: &[[f64; 3]], mdl: &SplineCorrection| {
                let mut out = vec![[0.0; 3]; n * n * n];
                let c = Corrected { model: mdl, a };
                grav.accel_with(s, 1.3, Some(c), &mut out, &mut grav.workspace());
                dot3(&out, &abar)
            };
            let mut grad = vec![[0.0; 3]; n * n * n];
            let mut pgrad = vec![0.0; 10];
            let mut ws = grav.workspace();
            let c = Corrected { model: &model, a };
            grav.accel_with(&disp, 1.3, Some(c), &mut vec![[0.0; 3]; n * n * n], &mut ws);
            grav.accel_vjp_with(&disp, 1.3, Some(c), &abar, &mut grad, Some(&mut pgrad), &mut ws);
            fd_check(&|s: &[[f64; 3]]| force(s, &model), &disp, &grad, 1e-6, 9);
            for j in 0..10 {
                let eps = 1e-6;
                let f = |sign: f64| {
                    let mut t = theta.clone();
                    t[j] += sign * eps;
                    let mut mj = model.clone();
                    mj.set_params(&t).unwrap();
                    force(&disp, &mj)
                };
                let fd = (f(1.0) - f(-1.0)) / (2.0 * eps);
                let scale = pgrad.iter().fold(0.0f64, |a, b| a.max(b.abs()));
                assert!(
                    (fd - pgrad[j]).abs() < 1e-6 * scale,
                    "{kernel:?} θ{j}: fd {fd:.10e} vjp {:.10e}",
                    pgrad[j]
                );
            }
            // θ = 0 is plain PM, bit for bit.
            let zero = SplineCorrection::new(5, 2, kmax, (0.1, 1.0)).unwrap();
            let mut o1 = vec![[0.0; 3]; n * n * n];
            let mut o2 = vec![[0.0; 3]; n * n * n];
            grav.accel(&disp, 1.0, &mut o1, &mut grav.workspace());
            grav.accel_with(&disp, 1.0, Some(Corrected { model: &zero, a }), &mut o2, &mut grav.workspace());
            assert!(same_bits(&o1, &o2));
        }
    }

    #[test]
    fn fused_force_and_vjp_equal_the_separate_calls() {
        use crate::correction::SplineCorrection;
        let (n, m, l) = (8usize, 16usize, 40.0);
        let mut model = SplineCorrection::new(4, 2, 2.0, (0.1, 1.0)).unwrap();
        model.set_params(&[0.1, -0.2, 0.3, 0.05, -0.1, 0.2, 0.0, 0.4]).unwrap();
        let grav = Gravity::<f64>::new(n, m, l, Gradient::Spectral);
        let disp = rand_disp::<f64>(n, 3.0, 17);
        let abar = rand_disp::<f64>(n, 1.0, 18);
        for corr in [None, Some(Corrected { model: &model, a: 0.4 })] {
            let (mut a1, mut a2) = (vec![[0.0; 3]; n * n * n], vec![[0.0; 3]; n * n * n]);
            let (mut g1, mut g2) = (vec![[0.0; 3]; n * n * n], vec![[0.0; 3]; n * n * n]);
            let (mut t1, mut t2) = (vec![0.0; 8], vec![0.0; 8]);
            let mut ws = grav.workspace();
            grav.accel_with(&disp, 1.0, corr, &mut a1, &mut ws);
            grav.accel_vjp_with(&disp, 0.7, corr, &abar, &mut g1, Some(&mut t1), &mut ws);
            grav.accel_and_vjp(&disp, corr, &mut a2, 0.7, &abar, &mut g2, Some(&mut t2), &mut grav.workspace());
            assert!(same_bits(&a1, &a2), "forces differ");
            let err = g1
                .iter()
                .flatten()
                .zip(g2.iter().flatten())
                .fold(0.0f64, |e, (x, y)| e.max((x - y).abs()));
            let scale = g1.iter().flatten().fold(0.0f64, |e, x| e.max(x.abs()));
            assert!(err < 1e-13 * scale, "VJPs differ by {err:.3e} (scale {scale:.3e})");
            assert!(t1.iter().zip(&t2).all(|(x, y)| (x - y).abs() <= 1e-13 * x.abs().max(1e-300)));
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
