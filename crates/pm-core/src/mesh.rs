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
