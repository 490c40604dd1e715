//! Cloud-in-cell (CIC) mass assignment: paint, readout, and their vector-Jacobian products.
//!
//! **Geometry** (docs/conventions.md §2). Particle `p = (ix·n + iy)·n + iz` of the Lagrangian
//! lattice (n per side) sits at `x_p = q_p + s_p`, `q_p = (ix, iy, iz)·L/n`, `s_p` its displacement
//! (Mpc/h). Mesh values (m per side, cell Δ = L/m) sit at cell centres `(j + ½)Δ`. Along one axis,
//! with `t = x/Δ − ½`, `j₀ = ⌊t⌋`, `f = t − j₀`, the CIC weights are `W(j₀) = 1 − f`, `W(j₀+1) = f`
//! (indices mod m); in 3D the weight of a corner is the product of the three axes' weights.
//! The integer part `ix·m div n` is kept exact and only the fractional part goes through `T`,
//! so `f32` keeps the same precision everywhere in the box.
//!
//! **Forward maps** (docs/adjoint.md eqs. C1–C2):
//! - paint:   `ρ[c] += Σ_p w_p W_c(x_p)`            (w_p = 1 unless weights are given)
//! - readout: `v_p = Σ_c W_c(x_p) F[c]`
//!
//! **Adjoints** (they *add* to caller-owned cotangents, docs/conventions.md §5):
//! - paint, w.r.t. positions: `s̄_p += w_p Σ_c ρ̄[c] ∂W_c/∂x (x_p)`  (∂W/∂x = ±1/Δ × other weights)
//! - paint, w.r.t. weights:   `w̄_p += Σ_c ρ̄[c] W_c(x_p)` (a readout of ρ̄)
//! - readout, w.r.t. field:   `F̄[c] += Σ_p v̄_p W_c(x_p)`     (a paint of v̄)
//! - readout, w.r.t. positions: `s̄_p += v̄_p Σ_c F[c] ∂W_c/∂x (x_p)`
//!
//! **Determinism without atomics.** Paint bins particles by the x-plane `j₀x` of their lower
//! corner (a stable counting sort in fixed-size chunks), then paints the planes in two or three
//! colour phases: planes of one colour write to disjoint pairs of x-planes `{j, j+1}` and run in
//! parallel; inside a plane particles are added in their original order. Every cell therefore
//! receives its contributions in the same order whatever the thread count: paint is bit-identical
//! for any number of threads. Readout is a pure gather, also bit-identical.

use crate::float::Real;
use rayon::prelude::*;

/// Fixed number of chunks for the counting sort (independent of the thread count).
const SORT_CHUNKS: usize = 64;

/// CIC geometry between a Lagrangian lattice of `n³` particles and a mesh of `m³` cells.
#[derive(Clone, Debug)]
pub struct Cic {
    n: usize,
    m: usize,
    box_size: f64,
    /// Per lattice index along an axis: integer mesh cell of `q/Δ`, i.e. `i·m div n`.
    base: Vec<i64>,
    /// Per lattice index along an axis: fractional part `(i·m mod n)/n − ½` (the −½ of cell centres).
    off: Vec<f64>,
    /// log2(n) when n is a power of two (index arithmetic by shifts instead of divisions).
    shift: Option<u32>,
}

/// Reusable scratch of [`Cic::paint`]: the plane sort of the particles.
#[derive(Clone, Debug, Default)]
pub struct PaintScratch {
    plane: Vec<u32>,
    order: Vec<u32>,
    start: Vec<usize>,
    counts: Vec<usize>,
}

/// Raw pointer that may be shared across threads for provably disjoint writes.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
unsafe impl<T: Send> Send for SyncPtr<T> {}
unsafe impl<T: Send> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send + Sync` wrapper).
    #[inline(always)]
    fn get(self) -> *mut T {
        self.0
    }
}

/// The 2×2×2 stencil of one particle: lower corner indices and weights per axis, and the
/// derivative of each axis weight w.r.t. the position in Mpc/h (`∓1/Δ`).
#[derive(Clone, Copy, Debug)]
struct Stencil<T> {
    i0: [usize; 3],
    i1: [usize; 3],
    w0: [T; 3],
    w1: [T; 3],
}

impl Cic {
    /// CIC between an `n³` particle lattice and an `m³` mesh in a box of `box_size` Mpc/h.
    /// `m` need not be a multiple of `n`.
    ///
    /// # Panics
    /// On `n`, `m` = 0 or `box_size` ≤ 0, and when n³ exceeds `u32::MAX` (n > 1625: the plane sort
    /// stores particle indices as `u32`; `Config::validate` refuses such a `box.particles`).
    pub fn new(n: usize, m: usize, box_size: f64) -> Self {
        assert!(n >= 1 && m >= 1 && box_size > 0.0, "invalid CIC geometry");
        assert!(
            n.checked_pow(3).is_some_and(|np| np <= u32::MAX as usize),
            "Cic::new: {n}³ particles do not fit the u32 particle indices (at most 1625 per side)"
        );
        assert!(u32::try_from(m).is_ok(), "Cic::new: {m} mesh planes do not fit u32");
        let base = (0..n).map(|i| ((i * m) / n) as i64).collect();
        let off = (0..n).map(|i| ((i * m) % n) as f64 / n as f64 - 0.5).collect();
        let shift = n.is_power_of_two().then(|| n.trailing_zeros());
        Cic {
            n,
            m,
            box_size,
            base,
            off,
            shift,
        }
    }
    /// Particles per side.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Mesh cells per side.
    pub fn m(&self) -> usize {
        self.m
    }
    /// Number of particles n³.
    pub fn n_particles(&self) -> usize {
        self.n * self.n * self.n
    }
    /// Mesh cell size Δ = L/m in Mpc/h.
    pub fn cell(&self) -> f64 {
        self.box_size / self.m as f64
    }

    #[inline(always)]
    fn lattice(&self, p: usize) -> [usize; 3] {
        match self.shift {
            Some(s) => {
                let mask = self.n - 1;
                [p >> (2 * s), (p >> s) & mask, p & mask]
            }
            None => {
                let n = self.n;
                [p / (n * n), (p / n) % n, p % n]
            }
        }
    }

    /// `j` wrapped into `0..m` (periodic); the division is taken only for far-out indices.
    #[inline(always)]
    fn wrap(&self, j: i64) -> usize {
        let m = self.m as i64;
        if j >= 0 && j < m {
            j as usize
        } else if j >= m && j < 2 * m {
            (j - m) as usize
        } else if j < 0 && j >= -m {
            (j + m) as usize
        } else {
            j.rem_euclid(m) as usize
        }
    }

    /// `(⌊t⌋, t − ⌊t⌋)` without `floor()`, which on baseline x86-64 (no SSE4.1) is a libm call:
    /// a truncating conversion corrected for negative `t`.
    #[inline(always)]
    fn split<T: Real>(t: T) -> (i64, T) {
        let i = t.to_i64().unwrap_or(0);
        let f = t - T::of(i as f64);
        if f < T::zero() {
            (i - 1, f + T::one())
        } else {
            (i, f)
        }
    }

    #[inline(always)]
    fn stencil<T: Real>(&self, p: usize, s: &[T; 3], inv_cell: T) -> Stencil<T> {
        let q = self.lattice(p);
        let mut st = Stencil {
            i0: [0; 3],
            i1: [0; 3],
            w0: [T::zero(); 3],
            w1: [T::zero(); 3],
        };
        for d in 0..3 {
            let (fl, f) = Self::split(T::of(self.off[q[d]]) + s[d] * inv_cell);
            let j0 = self.wrap(self.base[q[d]] + fl);
            st.i0[d] = j0;
            st.i1[d] = if j0 + 1 == self.m { 0 } else { j0 + 1 };
            st.w0[d] = T::one() - f;
            st.w1[d] = f;
        }
        st
    }

    #[inline(always)]
    fn lower_plane<T: Real>(&self, p: usize, sx: T, inv_cell: T) -> u32 {
        let ix = self.lattice(p)[0];
        let (fl, _) = Self::split(T::of(self.off[ix]) + sx * inv_cell);
        self.wrap(self.base[ix] + fl) as u32
    }

    /// Stable counting sort of particles by the x-plane of their lower CIC corner.
    fn sort_planes<T: Real>(&self, disp: &[[T; 3]], sc: &mut PaintScratch) {
        let np = disp.len();
        let m = self.m;
        let inv_cell = T::of(1.0 / self.cell());
        sc.plane.resize(np, 0);
        sc.plane.par_chunks_mut(4096).enumerate().for_each(|(c, out)| {
            for (k, o) in out.iter_mut().enumerate() {
                let p = c * 4096 + k;
                *o = self.lower_plane(p, disp[p][0], inv_cell);
            }
        });
        let chunk = np.div_ceil(SORT_CHUNKS).max(1);
        let nchunks = np.div_ceil(chunk);
        // counts[c*m + j]: particles of chunk c in plane j.
        sc.counts.clear();
        sc.counts.resize(nchunks * m, 0);
        let plane = &sc.plane;
        sc.counts.par_chunks_mut(m).enumerate().for_each(|(c, cnt)| {
            for &j in &plane[c * chunk..((c + 1) * chunk).min(np)] {
                cnt[j as usize] += 1;
            }
        });
        // Exclusive prefix in (plane, chunk) order: plane-major so each plane is contiguous and,
        // inside it, particles keep their original order.
        sc.start.clear();
        sc.start.resize(m + 1, 0);
        let mut offsets = vec![0usize; nchunks * m];
        let mut acc = 0usize;
        for j in 0..m {
            sc.start[j] = acc;
            for c in 0..nchunks {
                offsets[c * m + j] = acc;
                acc += sc.counts[c * m + j];
            }
        }
        sc.start[m] = acc;
        sc.order.resize(np, 0);
        let order = SyncPtr(sc.order.as_mut_ptr());
        offsets.par_chunks_mut(m).enumerate().for_each(|(c, off)| {
            for p in c * chunk..((c + 1) * chunk).min(np) {
                let j = plane[p] as usize;
                // SAFETY: every (chunk, plane) pair owns the disjoint range
                // [offsets[c*m+j], offsets[c*m+j] + counts[c*m+j]) of `order`.
                unsafe { *order.get().add(off[j]) = p as u32 };
                off[j] += 1;
            }
        });
    }

    /// Paints particles (unit mass, or `weights`) onto `mesh` (m³, C order), **adding** to it.
    ///
    /// `disp` are the displacements `s_p` (Mpc/h) of all n³ lattice particles. Deterministic and
    /// bit-identical for any thread count (see the module docs).
    pub fn paint<T: Real>(&self, disp: &[[T; 3]], weights: Option<&[T]>, mesh: &mut [T], sc: &mut PaintScratch) {
        self.paint_with(disp, mesh, sc, |p| weights.map_or(T::one(), |w| w[p]));
    }

    /// Paints `value(p)` for each particle (a mass, a momentum component, a cotangent), adding.
    pub fn paint_with<T: Real, F>(&self, disp: &[[T; 3]], mesh: &mut [T], sc: &mut PaintScratch, value: F)
    where
        F: Fn(usize) -> T + Sync,
    {
        assert_eq!(disp.len(), self.n_particles(), "paint: displacement array length");
        self.sort_planes(disp, sc);
        self.paint_sorted(disp, mesh, sc, value);
    }

    /// Paints `value(p)[k]` onto `meshes[k]` for `K` meshes at once (adding), with one plane sort
    /// and one stencil per particle; each mesh gets the same bits as a single [`Cic::paint_with`].
    pub fn paint_k<T: Real, const K: usize, F>(&self, disp: &[[T; 3]], meshes: [&mut [T]; K], sc: &mut PaintScratch, value: F)
    where
        F: Fn(usize) -> [T; K] + Sync,
    {
        assert_eq!(disp.len(), self.n_particles(), "paint: displacement array length");
        self.sort_planes(disp, sc);
        self.paint_sorted_k(disp, meshes, sc, value);
    }

    /// As [`Cic::paint_with`], reusing the plane sort left in `sc` by an earlier paint of the
    /// **same** displacements (the caller guarantees it; see [`Cic::paint_sorted_k`]).
    pub(crate) fn paint_sorted<T: Real, F>(&self, disp: &[[T; 3]], mesh: &mut [T], sc: &PaintScratch, value: F)
    where
        F: Fn(usize) -> T + Sync,
    {
        self.paint_sorted_k(disp, [mesh], sc, |p| [value(p)]);
    }

    /// As [`Cic::paint_sorted`] for `K` meshes at once (`value(p)[k]` onto `meshes[k]`, adding):
    /// one stencil per particle for all K values. Deterministic as the single paint.
    ///
    /// Crate-private because its soundness rests on the caller: `sc` must hold the plane sort
    /// ([`Cic::paint_with`]/[`Cic::paint_k`]) of exactly these `disp`. The planes are painted in
    /// parallel on the promise that the particles of plane j write only x-planes j and j+1; a
    /// stale sort breaks it and two threads may write the same cell at once (a data race).
    pub(crate) fn paint_sorted_k<T: Real, const K: usize, F>(&self, disp: &[[T; 3]], meshes: [&mut [T]; K], sc: &PaintScratch, value: F)
    where
        F: Fn(usize) -> [T; K] + Sync,
    {
        assert_eq!(disp.len(), self.n_particles(), "paint: displacement array length");
        for mesh in &meshes {
            assert_eq!(mesh.len(), self.m * self.m * self.m, "paint: mesh length");
        }
        assert_eq!(
            sc.order.len(),
            disp.len(),
            "paint_sorted: the scratch holds no sort of these particles"
        );
        let m = self.m;
        let inv_cell = T::of(1.0 / self.cell());
        let ptrs = meshes.map(|mesh| SyncPtr(mesh.as_mut_ptr()));
        let paint_plane = |j: usize| {
            for &p in &sc.order[sc.start[j]..sc.start[j + 1]] {
                let p = p as usize;
                let st = self.stencil(p, &disp[p], inv_cell);
                let v = value(p);
                for (ix, wx) in [(st.i0[0], st.w0[0]), (st.i1[0], st.w1[0])] {
                    for (iy, wy) in [(st.i0[1], st.w0[1]), (st.i1[1], st.w1[1])] {
                        let wxy = wx * wy;
                        let (a, b) = (wxy * st.w0[2], wxy * st.w1[2]);
                        let row = (ix * m + iy) * m;
                        for k in 0..K {
                            // SAFETY: particles of plane j write only x-planes j and j+1 (mod m);
                            // the colouring below never runs two planes with overlapping pairs at once.
                            unsafe {
                                *ptrs[k].get().add(row + st.i0[2]) += v[k] * a;
                                *ptrs[k].get().add(row + st.i1[2]) += v[k] * b;
                            }
                        }
                    }
                }
            }
        };
        if m == 1 {
            paint_plane(0);
            return;
        }
        // Colour phases: even planes, odd planes, and for odd m the last plane alone (it wraps onto 0).
        let last_alone = m % 2 == 1;
        let top = if last_alone { m - 1 } else { m };
        (0..top).into_par_iter().filter(|j| j % 2 == 0).for_each(paint_plane);
        (0..top).into_par_iter().filter(|j| j % 2 == 1).for_each(paint_plane);
        if last_alone {
            paint_plane(m - 1);
        }
    }

    /// Reads `fields` (each m³) at every particle position; `out[p][k] = Σ_c W_c(x_p) fields[k][c]`.
    /// Overwrites `out`. Pure gather: bit-identical for any thread count.
    pub fn readout<T: Real, const K: usize>(&self, disp: &[[T; 3]], fields: [&[T]; K], out: &mut [[T; K]]) {
        assert_eq!(disp.len(), self.n_particles(), "readout: displacement array length");
        assert_eq!(out.len(), disp.len(), "readout: output length");
        let m = self.m;
        for f in &fields {
            assert_eq!(f.len(), m * m * m, "readout: mesh length");
        }
        let inv_cell = T::of(1.0 / self.cell());
        out.par_chunks_mut(1024).enumerate().for_each(|(c, o)| {
            for (k, ov) in o.iter_mut().enumerate() {
                let p = c * 1024 + k;
                let st = self.stencil(p, &disp[p], inv_cell);
                let mut acc = [T::zero(); K];
                for (ix, wx) in [(st.i0[0], st.w0[0]), (st.i1[0], st.w1[0])] {
                    for (iy, wy) in [(st.i0[1], st.w0[1]), (st.i1[1], st.w1[1])] {
                        let wxy = wx * wy;
                        let row = (ix * m + iy) * m;
                        let (a, b) = (wxy * st.w0[2], wxy * st.w1[2]);
                        for (kk, f) in fields.iter().enumerate() {
                            acc[kk] += a * f[row + st.i0[2]] + b * f[row + st.i1[2]];
                        }
                    }
                }
                *ov = acc;
            }
        });
    }

    /// Gradient of `Σ_c G[c] W_c(x_p)` w.r.t. the position `x_p` (Mpc/h⁻¹ units of G per Mpc/h),
    /// for each particle, times `scale(p)`, **added** to `out[p]`. This is the common kernel of the
    /// position VJPs of paint (`G` = mesh cotangent, `scale` = particle weight) and readout
    /// (`G` = the field, `scale` = value cotangent); for readout of K fields use
    /// [`Cic::readout_vjp_pos`].
    pub fn grad_pos_add<T: Real, F>(&self, disp: &[[T; 3]], g: &[T], out: &mut [[T; 3]], scale: F)
    where
        F: Fn(usize) -> T + Sync,
    {
        self.readout_vjp_pos(disp, [g], out, |p| [scale(p)]);
    }

    /// VJP of [`Cic::paint`] w.r.t. positions: `s̄_p += w_p Σ_c ρ̄[c] ∂W_c/∂x(x_p)`.
    pub fn paint_vjp_pos<T: Real>(&self, disp: &[[T; 3]], weights: Option<&[T]>, mesh_cot: &[T], disp_cot: &mut [[T; 3]]) {
        self.grad_pos_add(disp, mesh_cot, disp_cot, |p| weights.map_or(T::one(), |w| w[p]));
    }

    /// VJP of [`Cic::readout`] w.r.t. the fields: `F̄_k[c] += Σ_p v̄_p,k W_c(x_p)` (a paint; adds).
    pub fn readout_vjp_field<T: Real>(&self, disp: &[[T; 3]], out_cot: &[T], field_cot: &mut [T], sc: &mut PaintScratch) {
        self.paint_with(disp, field_cot, sc, |p| out_cot[p]);
    }

    /// VJP of [`Cic::readout`] w.r.t. positions: `s̄_p += Σ_k v̄_p,k Σ_c F_k[c] ∂W_c/∂x(x_p)`,
    /// with `cot(p)` giving the K value cotangents of particle p.
    pub fn readout_vjp_pos<T: Real, const K: usize, F>(&self, disp: &[[T; 3]], fields: [&[T]; K], disp_cot: &mut [[T; 3]], cot: F)
    where
        F: Fn(usize) -> [T; K] + Sync,
    {
        assert_eq!(disp.len(), self.n_particles(), "readout_vjp_pos: displacement array length");
        assert_eq!(disp_cot.len(), disp.len(), "readout_vjp_pos: cotangent length");
        let m = self.m;
        let inv_cell = T::of(1.0 / self.cell());
        disp_cot.par_chunks_mut(1024).enumerate().for_each(|(c, o)| {
            for (k, ov) in o.iter_mut().enumerate() {
                let p = c * 1024 + k;
                let st = self.stencil(p, &disp[p], inv_cell);
                let vbar = cot(p);
                // d w0/dx = -1/Δ, d w1/dx = +1/Δ along each axis.
                let dw0 = -inv_cell;
                let dw1 = inv_cell;
                let mut g = [T::zero(); 3];
                for (ix, wx, dx) in [(st.i0[0], st.w0[0], dw0), (st.i1[0], st.w1[0], dw1)] {
                    for (iy, wy, dy) in [(st.i0[1], st.w0[1], dw0), (st.i1[1], st.w1[1], dw1)] {
                        let row = (ix * m + iy) * m;
                        for (iz, wz, dz) in [(st.i0[2], st.w0[2], dw0), (st.i1[2], st.w1[2], dw1)] {
                            let mut fv = T::zero();
                            for kk in 0..K {
                                fv += vbar[kk] * fields[kk][row + iz];
                            }
                            g[0] += fv * dx * wy * wz;
                            g[1] += fv * wx * dy * wz;
                            g[2] += fv * wx * wy * dz;
                        }
                    }
                }
                for d in 0..3 {
                    ov[d] += g[d];
                }
            }
        });
    }

    /// [`Cic::readout`] and [`Cic::readout_vjp_pos`] of the same fields in one pass (one stencil
    /// and one load of each corner per particle): overwrites `out[p][k] = Σ_c W_c(x_p) F_k[c]` and
    /// adds `Σ_k cot(p)_k Σ_c F_k[c] ∂W_c/∂x(x_p)` to `disp_cot[p]`.
    pub fn readout_and_vjp_pos<T: Real, const K: usize, F>(
        &self,
        disp: &[[T; 3]],
        fields: [&[T]; K],
        out: &mut [[T; K]],
        disp_cot: &mut [[T; 3]],
        cot: F,
    ) where
        F: Fn(usize) -> [T; K] + Sync,
    {
        self.readout_and_grad(disp, fields, [], out, disp_cot, |p| (cot(p), []));
    }

    /// [`Cic::readout_and_vjp_pos`] with `J` more meshes `G_j` whose position gradient only is
    /// wanted, in the same pass: overwrites `out[p][k] = Σ_c W_c(x_p) F_k[c]` and adds
    /// `Σ_c (Σ_k v̄_k F_k[c] + Σ_j ḡ_j G_j[c]) ∂W_c/∂x(x_p)` to `disp_cot[p]`, with
    /// `(v̄, ḡ) = cot(p)`. The values are computed exactly as [`Cic::readout`] does (same bits).
    /// One backward step of the adjoint reads the force meshes and the paint cotangent ρ̄ this way
    /// (readout term G1 and paint term G3 of docs/adjoint.md).
    pub fn readout_and_grad<T: Real, const K: usize, const J: usize, F>(
        &self,
        disp: &[[T; 3]],
        fields: [&[T]; K],
        grad_fields: [&[T]; J],
        out: &mut [[T; K]],
        disp_cot: &mut [[T; 3]],
        cot: F,
    ) where
        F: Fn(usize) -> ([T; K], [T; J]) + Sync,
    {
        assert_eq!(disp.len(), self.n_particles(), "readout: displacement array length");
        assert_eq!(out.len(), disp.len(), "readout: output length");
        assert_eq!(disp_cot.len(), disp.len(), "readout_and_grad: cotangent length");
        let m = self.m;
        for f in fields.iter().chain(grad_fields.iter()) {
            assert_eq!(f.len(), m * m * m, "readout: mesh length");
        }
        let inv_cell = T::of(1.0 / self.cell());
        out.par_chunks_mut(1024)
            .zip(disp_cot.par_chunks_mut(1024))
            .enumerate()
            .for_each(|(c, (o, dc))| {
                for (k, (ov, gv)) in o.iter_mut().zip(dc.iter_mut()).enumerate() {
                    let p = c * 1024 + k;
                    let st = self.stencil(p, &disp[p], inv_cell);
                    let (vbar, gbar) = cot(p);
                    let (dw0, dw1) = (-inv_cell, inv_cell);
                    let mut acc = [T::zero(); K];
                    let mut g = [T::zero(); 3];
                    for (ix, wx, dx) in [(st.i0[0], st.w0[0], dw0), (st.i1[0], st.w1[0], dw1)] {
                        for (iy, wy, dy) in [(st.i0[1], st.w0[1], dw0), (st.i1[1], st.w1[1], dw1)] {
                            let row = (ix * m + iy) * m;
                            let wxy = wx * wy;
                            let (a, b) = (wxy * st.w0[2], wxy * st.w1[2]);
                            // Same arithmetic as `readout` for the values (bit-identical forces).
                            let mut fv = [T::zero(); 2];
                            for kk in 0..K {
                                let (f0, f1) = (fields[kk][row + st.i0[2]], fields[kk][row + st.i1[2]]);
                                acc[kk] += a * f0 + b * f1;
                                fv[0] += vbar[kk] * f0;
                                fv[1] += vbar[kk] * f1;
                            }
                            for jj in 0..J {
                                fv[0] += gbar[jj] * grad_fields[jj][row + st.i0[2]];
                                fv[1] += gbar[jj] * grad_fields[jj][row + st.i1[2]];
                            }
                            for (fz, wz, dz) in [(fv[0], st.w0[2], dw0), (fv[1], st.w1[2], dw1)] {
                                g[0] += fz * dx * wy * wz;
                                g[1] += fz * wx * dy * wz;
                                g[2] += fz * wx * wy * dz;
                            }
                        }
                    }
                    *ov = acc;
                    for d in 0..3 {
                        gv[d] += g[d];
                    }
                }
            });
    }

    /// Density contrast δ = ρ/ρ̄ − 1 of unit-mass particles on this CIC's mesh (overwrites `mesh`).
    /// The mean of δ is zero up to rounding (CIC conserves mass).
    pub fn density_contrast<T: Real>(&self, disp: &[[T; 3]], mesh: &mut [T], sc: &mut PaintScratch) {
        mesh.par_iter_mut().for_each(|v| *v = T::zero());
        self.paint(disp, None, mesh, sc);
        let norm = T::of((self.m * self.m * self.m) as f64 / self.n_particles() as f64);
        mesh.par_iter_mut().for_each(|v| *v = *v * norm - T::one());
    }

    /// [`Cic::density_contrast`] into a new mesh of this CIC's m³ cells.
    pub fn density<T: Real>(&self, disp: &[[T; 3]]) -> Vec<T> {
        let mut mesh = vec![T::zero(); self.m * self.m * self.m];
        self.density_contrast(disp, &mut mesh, &mut Default::default());
        mesh
    }

    /// Wraps a displacement into an absolute position in `[0, L)` (Mpc/h), in f64.
    pub fn position<T: Real>(&self, p: usize, s: &[T; 3]) -> [f64; 3] {
        let q = self.lattice(p);
        let l = self.box_size;
        let mut x = [0.0; 3];
        for d in 0..3 {
            let v = (q[d] as f64 * l / self.n as f64 + s[d].f64()).rem_euclid(l);
            x[d] = if v >= l { 0.0 } else { v };
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dot, fd_check, rand_disp, rand_field};

    #[test]
    #[should_panic(expected = "1626³ particles do not fit the u32 particle indices")]
    fn new_refuses_more_particles_than_u32_indices() {
        // 1625³ ≤ u32::MAX < 1626³: the plane sort's u32 indices would wrap.
        let _ = Cic::new(1625, 1625, 1.0);
        let _ = Cic::new(1626, 1626, 1.0);
    }

    /// Slow, obviously-correct CIC paint: per particle, loop over the 8 corners in f64.
    fn paint_naive(n: usize, m: usize, l: f64, disp: &[[f64; 3]]) -> Vec<f64> {
        let mut out = vec![0.0; m * m * m];
        let cell = l / m as f64;
        for (p, s) in disp.iter().enumerate() {
            let q = [p / (n * n), (p / n) % n, p % n];
            let mut j0 = [0i64; 3];
            let mut f = [0.0; 3];
            for d in 0..3 {
                let x = q[d] as f64 * l / n as f64 + s[d];
                let t = x / cell - 0.5;
                j0[d] = t.floor() as i64;
                f[d] = t - t.floor();
            }
            for c in 0..8 {
                let mut w = 1.0;
                let mut idx = [0usize; 3];
                for d in 0..3 {
                    let hi = (c >> (2 - d)) & 1;
                    w *= if hi == 1 { f[d] } else { 1.0 - f[d] };
                    idx[d] = (j0[d] + hi as i64).rem_euclid(m as i64) as usize;
                }
                out[(idx[0] * m + idx[1]) * m + idx[2]] += w;
            }
        }
        out
    }

    #[test]
    fn paint_matches_naive_and_conserves_mass() {
        for &(n, m) in &[(4usize, 4usize), (4, 8), (3, 5), (5, 7), (4, 6)] {
            let l = 10.0;
            let disp = rand_disp::<f64>(n, 3.0, 7 + n as u64 + m as u64);
            let cic = Cic::new(n, m, l);
            let mut mesh = vec![0.0; m * m * m];
            cic.paint(&disp, None, &mut mesh, &mut PaintScratch::default());
            let naive = paint_naive(n, m, l, &disp);
            for (a, b) in mesh.iter().zip(&naive) {
                assert!((a - b).abs() < 1e-12, "n={n} m={m}: {a} vs {b}");
            }
            let total: f64 = mesh.iter().sum();
            assert!((total - (n * n * n) as f64).abs() < 1e-9);
        }
    }

    #[test]
    fn lattice_paints_uniform_density() {
        // Unperturbed lattice on a cell-centred mesh: for m = n and m = 2n every particle sits
        // on a cell boundary and splits evenly, so δ = 0 exactly; for m = 4n it cannot be uniform.
        for (b, uniform) in [(1usize, true), (2, true), (4, false)] {
            let (n, m) = (8, 8 * b);
            let cic = Cic::new(n, m, 100.0);
            let disp = vec![[0.0f64; 3]; n * n * n];
            let mut d = vec![0.0; m * m * m];
            cic.density_contrast(&disp, &mut d, &mut PaintScratch::default());
            let max = d.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            assert_eq!(max < 1e-14, uniform, "B = {b}: max |δ| = {max}");
            assert!(d.iter().sum::<f64>().abs() < 1e-9);
        }
    }

    #[test]
    fn paint_is_bit_identical_across_thread_counts() {
        let (n, m) = (16, 32);
        let disp = rand_disp::<f32>(n, 40.0, 3);
        let cic = Cic::new(n, m, 64.0);
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| {
                let mut mesh = vec![0.0f32; m * m * m];
                cic.paint(&disp, None, &mut mesh, &mut PaintScratch::default());
                let mut out = vec![[0.0f32; 1]; n * n * n];
                cic.readout(&disp, [&mesh[..]], &mut out);
                (mesh, out)
            })
        };
        let (m1, o1) = run(1);
        for t in [2, 3, 4] {
            let (mt, ot) = run(t);
            assert!(
                m1.iter().zip(&mt).all(|(a, b)| a.to_bits() == b.to_bits()),
                "paint differs at {t} threads"
            );
            assert!(
                o1.iter().zip(&ot).all(|(a, b)| a[0].to_bits() == b[0].to_bits()),
                "readout differs at {t} threads"
            );
        }
    }

    #[test]
    fn paint_readout_adjoint_dot_test() {
        // <paint_w(x), f> = <w, readout(x; f)> for weights w (linear in w) at fixed positions.
        for &(n, m) in &[(4usize, 8usize), (5, 5), (3, 7)] {
            let cic = Cic::new(n, m, 7.0);
            let disp = rand_disp::<f64>(n, 2.0, 11);
            let w = rand_field::<f64>(n * n * n, 12);
            let f = rand_field::<f64>(m * m * m, 13);
            let mut painted = vec![0.0; m * m * m];
            cic.paint(&disp, Some(&w), &mut painted, &mut PaintScratch::default());
            let mut r = vec![[0.0; 1]; n * n * n];
            cic.readout(&disp, [&f[..]], &mut r);
            let lhs = dot(&painted, &f);
            let rhs: f64 = w.iter().zip(&r).map(|(a, b)| a * b[0]).sum();
            assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
            // readout_vjp_field is paint of the cotangent: same identity from the other side.
            let mut fc = vec![0.0; m * m * m];
            cic.readout_vjp_field(&disp, &w, &mut fc, &mut PaintScratch::default());
            assert!(fc.iter().zip(&painted).all(|(a, b)| (a - b).abs() < 1e-13));
        }
    }

    #[test]
    fn position_vjps_match_finite_differences() {
        let (n, m, l) = (4usize, 8usize, 9.0);
        let cic = Cic::new(n, m, l);
        let disp = rand_disp::<f64>(n, 1.5, 21);
        let g = rand_field::<f64>(m * m * m, 22);
        let vbar = rand_field::<f64>(n * n * n, 23);
        // paint: L(s) = <paint(s), g>
        let f_paint = |s: &[[f64; 3]]| {
            let mut mesh = vec![0.0; m * m * m];
            cic.paint(s, Some(&vbar), &mut mesh, &mut PaintScratch::default());
            dot(&mesh, &g)
        };
        let mut grad = vec![[0.0; 3]; n * n * n];
        cic.paint_vjp_pos(&disp, Some(&vbar), &g, &mut grad);
        fd_check(&f_paint, &disp, &grad, 1e-6, 31);
        // readout: L(s) = Σ_p vbar_p readout(s; g)_p
        let f_read = |s: &[[f64; 3]]| {
            let mut r = vec![[0.0; 1]; n * n * n];
            cic.readout(s, [&g[..]], &mut r);
            r.iter().zip(&vbar).map(|(a, b)| a[0] * b).sum::<f64>()
        };
        let mut grad2 = vec![[0.0; 3]; n * n * n];
        cic.readout_vjp_pos(&disp, [&g[..]], &mut grad2, |p| [vbar[p]]);
        fd_check(&f_read, &disp, &grad2, 1e-6, 32);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            #[test]
            fn mass_conservation_and_adjointness(n in 2usize..6, b in 1usize..3, extra in 0usize..3, amp in 0.0f64..20.0, seed in 0u64..1000) {
                let m = n * b + extra;
                let cic = Cic::new(n, m, 13.0);
                let disp = rand_disp::<f64>(n, amp, seed);
                let mut mesh = vec![0.0; m * m * m];
                cic.paint(&disp, None, &mut mesh, &mut PaintScratch::default());
                let total: f64 = mesh.iter().sum();
                prop_assert!((total - (n * n * n) as f64).abs() < 1e-9);
                prop_assert!(mesh.iter().all(|v| *v >= -1e-15));
                let f = rand_field::<f64>(m * m * m, seed + 1);
                let mut r = vec![[0.0; 1]; n * n * n];
                cic.readout(&disp, [&f[..]], &mut r);
                let lhs = dot(&mesh, &f);
                let rhs: f64 = r.iter().map(|v| v[0]).sum();
                prop_assert!((lhs - rhs).abs() <= 1e-11 * lhs.abs().max(1.0));
            }
        }
    }
}
