//! Periodic mesh geometry: index ↔ wavenumber tables, shared by every Fourier-space operator.
//!
//! A mesh has `m` cells per side in a box of side `L` (Mpc/h); cell `(i, j, k)` is stored at flat
//! index `(i·m + j)·m + k` (C order). Its value sits at the **cell centre** `((i+½), (j+½), (k+½))·L/m`
//! (docs/conventions.md §2). Real-FFT layout: `m × m × (m/2+1)` complex values `[kx][ky][kz]`.
//! Wavenumber of index `i`: `2π/L · ν(i)` with `ν(i) = i` for `i < m/2`, `i − m` above, and the
//! Nyquist index `m/2` (even `m`) flagged so gradients can zero it.

/// Geometry of a cubic periodic mesh.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshGeom {
    /// Cells per side.
    pub m: usize,
    /// Box side in Mpc/h.
    pub box_size: f64,
    /// Signed integer frequency ν(i) of each index along a full axis (length m).
    pub freq: Vec<i64>,
}

impl MeshGeom {
    /// Builds the tables for `m` cells per side in a box of `box_size` Mpc/h.
    pub fn new(m: usize, box_size: f64) -> Self {
        assert!(m >= 2, "mesh must have at least 2 cells per side");
        let freq = (0..m)
            .map(|i| if i < m.div_ceil(2) { i as i64 } else { i as i64 - m as i64 })
            .collect();
        MeshGeom { m, box_size, freq }
    }
    /// Number of complex values along the last (half) axis: m/2 + 1.
    pub fn mc(&self) -> usize {
        self.m / 2 + 1
    }
    /// Total number of real cells m³.
    pub fn n_cells(&self) -> usize {
        self.m * self.m * self.m
    }
    /// Total number of complex values m²·(m/2+1).
    pub fn n_complex(&self) -> usize {
        self.m * self.m * self.mc()
    }
    /// Cell size in Mpc/h.
    pub fn cell(&self) -> f64 {
        self.box_size / self.m as f64
    }
    /// Fundamental wavenumber 2π/L in h/Mpc.
    pub fn kf(&self) -> f64 {
        2.0 * std::f64::consts::PI / self.box_size
    }
    /// Nyquist wavenumber π m / L in h/Mpc.
    pub fn k_nyquist(&self) -> f64 {
        std::f64::consts::PI * self.m as f64 / self.box_size
    }
    /// True if index `i` along a full axis is the Nyquist index (only for even m).
    #[inline]
    pub fn is_nyquist(&self, i: usize) -> bool {
        self.m % 2 == 0 && i == self.m / 2
    }
    /// Wavenumber (h/Mpc) of index `i` along a full axis.
    #[inline]
    pub fn k_of(&self, i: usize) -> f64 {
        self.kf() * self.freq[i] as f64
    }
    /// Wavenumber (h/Mpc) of index `i` along the half axis (0..=m/2).
    #[inline]
    pub fn kz_of(&self, i: usize) -> f64 {
        self.kf() * i as f64
    }
    /// Largest squared integer frequency |ν|² = ν_x² + ν_y² + ν_z² on the mesh: 3·⌊m/2⌋².
    pub fn nu2_max(&self) -> usize {
        3 * (self.m / 2) * (self.m / 2)
    }
    /// Squared integer frequency |ν|² of the half-spectrum mode `(ix, iy, iz)`.
    #[inline]
    pub fn nu2(&self, ix: usize, iy: usize, iz: usize) -> usize {
        (self.freq[ix] * self.freq[ix] + self.freq[iy] * self.freq[iy]) as usize + iz * iz
    }
    /// Wavenumbers (h/Mpc) `k_f·sqrt(j)` of the radial bins j = 0 ..= [`MeshGeom::nu2_max`] used by
    /// [`MeshGeom::radial_sum`].
    pub fn radial_k(&self) -> Vec<f64> {
        (0..=self.nu2_max()).map(|j| self.kf() * (j as f64).sqrt()).collect()
    }
    /// Sums `hermitian_weight(iz) · value(flat half-spectrum index)` over every mode of the half
    /// spectrum into bins of equal |ν|² (length `nu2_max + 1`), i.e. the sum over the full
    /// spectrum for a Hermitian quantity. The reduction order is fixed (16 slabs of kx planes
    /// summed in order), so the result is bit-identical for any thread count.
    pub fn radial_sum(&self, value: impl Fn(usize) -> f64 + Sync) -> Vec<f64> {
        use rayon::prelude::*;
        let (m, mc) = (self.m, self.mc());
        let slabs = 16usize.min(m);
        let parts: Vec<Vec<f64>> = (0..slabs)
            .into_par_iter()
            .map(|s| {
                let mut acc = vec![0.0f64; self.nu2_max() + 1];
                for ix in (s * m / slabs)..((s + 1) * m / slabs) {
                    for iy in 0..m {
                        for iz in 0..mc {
                            let idx = (ix * m + iy) * mc + iz;
                            acc[self.nu2(ix, iy, iz)] += self.hermitian_weight(iz) * value(idx);
                        }
                    }
                }
                acc
            })
            .collect();
        let mut tot = vec![0.0f64; self.nu2_max() + 1];
        for p in &parts {
            tot.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
        tot
    }
    /// Hermitian weight of half-axis index `kz`: 1 for kz = 0 and (even m) kz = m/2, else 2.
    /// Sums over the half spectrum with this weight equal sums over the full spectrum.
    #[inline]
    pub fn hermitian_weight(&self, kz: usize) -> f64 {
        if kz == 0 || (self.m % 2 == 0 && kz == self.m / 2) {
            1.0
        } else {
            2.0
        }
    }
}
