//! CUDA C sources of pm-core's GPU kernels, compiled at run time with NVRTC (no nvcc at build time).
//!
//! **Status: compiled to PTX by the tests (when libnvrtc is found), never run on a GPU yet** (no
//! GPU was available to issue 6; see `docs/cuda.md`). Each kernel mirrors, operation for
//! operation, the CPU operator it names, so that a GPU run can be compared with the CPU to f32
//! tolerance; the formulas are the ones in the headers of the CPU files and in `docs/adjoint.md`.
//!
//! One source, two precisions: [`source`] prepends `typedef float real;` (or `double`) to
//! [`KERNELS_SRC`], and the module of each precision holds the same kernel names ([`KERNEL_NAMES`]).
//! The f64 module needs compute capability ≥ 6.0 (`atomicAdd(double*)`).
//!
//! **Layouts** (the CPU ones, so that host ↔ device copies are plain memcpys):
//! - particles: `n³` lattice particles in C order, `p = (ix·n + iy)·n + iz`; a displacement,
//!   momentum, force or cotangent is `real[3·p + d]` (the `[[T; 3]]` of the CPU);
//! - real meshes: `m³` cells, C order, value at the cell centre (mesh.rs);
//! - half spectra: `m·m·(m/2+1)` interleaved complex values `[kx][ky][kz]`, the r2c layout of
//!   fft.rs, which is also cuFFT's R2C layout of a C-order `m³` array, with the same unnormalised
//!   transforms (`inverse(forward(x)) = m³·x`).
//!
//! **Kernels**, by the CPU operator they mirror:
//! - cic.rs (docs/adjoint.md C1–C2): `cic_paint_atomic` (paint of one weight component, fast, float
//!   atomics, summation order not reproducible), `cic_paint3_atomic` (three components at once:
//!   the readout's field VJP `F̄_d += paint(Ā_d)`), the deterministic paint `cic_cell_key` →
//!   `count_keys` → `scan_block_u32`/`scan_add_u32` → `fill_buckets` → `sort_buckets` →
//!   `cic_paint_gather` (each cell gathers from the 8 neighbouring buckets in a fixed order, the
//!   particles of a bucket in increasing index: bit-identical run to run), `cic_readout3`,
//!   `cic_readout3_vjp_pos` (`s̄_p += Σ_d Ā_p,d Σ_c g_d[c] ∂W_c/∂x`), `cic_paint_vjp_pos`
//!   (`s̄_p += w_p Σ_c ρ̄[c] ∂W_c/∂x`);
//! - gravity.rs (physics.md 4.1–4.3, adjoint.md G1–G6): `poisson_grad` (`out (=|+=) K_d(k)·src(k)·scale`
//!   with `K_d = i D_d/k²` from the host's `D_d` tables: spectral with the Nyquist index zeroed, or
//!   FD4), `spectral_filter` (`(1 + f_θ)` per |ν|²), `radial_cross` (G6 sums per |ν|², f64);
//! - lpt.rs (physics.md §3, adjoint.md P1–P3): `lpt_grad` (`c·i k_d/k²`, Nyquist of axis d
//!   zeroed), `lpt_hess` (`k_i k_j/k²`, diagonal keeps the Nyquist modes), `lpt2_source`,
//!   `lpt2_source_vjp`, `lpt_init` (`s = D₁s₁ + D₂s₂`, `p = g_p s₁ + g_p2 s₂`);
//! - helpers: `scale_real`, `component_to_real`, `real_to_component` (the `[T; 3]` ↔ mesh copies
//!   with the `1/n³` of the inverse FFT), `axpy` (leapfrog kick and drift: `y += c·x`).
//!
//! Index arithmetic is in 64 bits (`long long`), so 1024³ meshes and 512³ particles fit.

/// Which floating-point type a compiled module works in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// `float` fields and particles (the default precision of cosmograd).
    F32,
    /// `double` (needs compute capability ≥ 6.0 for `atomicAdd(double*)`).
    F64,
}

impl Precision {
    /// The C type name (`float` or `double`).
    pub fn c_type(self) -> &'static str {
        match self {
            Precision::F32 => "float",
            Precision::F64 => "double",
        }
    }
}

/// Every `extern "C"` kernel of [`KERNELS_SRC`]; each must appear as a PTX entry after compilation
/// (checked by the tests), and a device context looks each one up by this name.
pub const KERNEL_NAMES: &[&str] = &[
    "cic_paint_atomic",
    "cic_paint3_atomic",
    "cic_cell_key",
    "count_keys",
    "scan_block_u32",
    "scan_add_u32",
    "fill_buckets",
    "sort_buckets",
    "cic_paint_gather",
    "cic_readout3",
    "cic_readout3_vjp_pos",
    "cic_paint_vjp_pos",
    "poisson_grad",
    "spectral_filter",
    "radial_cross",
    "lpt_grad",
    "lpt_hess",
    "lpt2_source",
    "lpt2_source_vjp",
    "lpt_init",
    "scale_real",
    "component_to_real",
    "real_to_component",
    "axpy",
];

/// Threads per block of the block-wise exclusive scan (`scan_block_u32`); each block scans
/// `SCAN_BLOCK` values and writes one block sum.
pub const SCAN_BLOCK: usize = 1024;

/// The kernel sources for `precision`: `typedef <float|double> real;` followed by [`KERNELS_SRC`].
pub fn source(precision: Precision) -> String {
    format!("typedef {} real;\n{KERNELS_SRC}", precision.c_type())
}

/// The CUDA C source of every kernel, written against a `real` typedef (see [`source`]).
/// Self-contained: no `#include`, so NVRTC needs no CUDA headers.
pub const KERNELS_SRC: &str = r#"
// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------
struct cplx { real re; real im; };

#define SCAN_BLOCK 1024

__device__ __forceinline__ long long gtid() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long gstride() {
    return (long long)gridDim.x * blockDim.x;
}
// j mod m in 0..m (periodic).
__device__ __forceinline__ long long wrap(long long j, long long m) {
    long long r = j % m;
    return r < 0 ? r + m : r;
}
// Signed integer frequency of full-axis index i (mesh.rs: i for i < ceil(m/2), i - m above).
__device__ __forceinline__ long long freq(long long i, long long m) {
    return i < (m + 1) / 2 ? i : i - m;
}

// The CIC stencil along one axis (cic.rs `Cic::stencil`): lattice index q of n, displacement s
// (Mpc/h), mesh of m cells with 1/Δ = inv_cell. t = off(q) + s/Δ with off(q) = (q·m mod n)/n − ½
// (computed in double and rounded, as the CPU's table), ⌊t⌋ by truncation corrected for t < 0,
// lower cell j0 = wrap(q·m div n + ⌊t⌋), upper j1 = j0 + 1 mod m, weights (1 − f, f).
struct Axis { long long i0; long long i1; real w0; real w1; };

__device__ __forceinline__ Axis cic_axis(long long q, real s, long long n, long long m, real inv_cell) {
    real off = (real)((double)((q * m) % n) / (double)n - 0.5);
    long long base = (q * m) / n;
    real t = off + s * inv_cell;
    long long fl = (long long)t;
    real f = t - (real)fl;
    if (f < (real)0) { fl -= 1; f += (real)1; }
    Axis a;
    a.i0 = wrap(base + fl, m);
    a.i1 = (a.i0 + 1 == m) ? 0 : a.i0 + 1;
    a.w0 = (real)1 - f;
    a.w1 = f;
    return a;
}

__device__ __forceinline__ void lattice(long long p, long long n, long long q[3]) {
    q[0] = p / (n * n);
    q[1] = (p / n) % n;
    q[2] = p % n;
}

__device__ __forceinline__ void stencil(long long p, const real* disp, long long n, long long m,
                                        real inv_cell, Axis st[3]) {
    long long q[3];
    lattice(p, n, q);
    for (int d = 0; d < 3; ++d) st[d] = cic_axis(q[d], disp[3 * p + d], n, m, inv_cell);
}

// Visits the four (x, y) corners of a stencil: f(row, a, b), row = (ix·m + iy)·m the flat index
// of the mesh row of the corner, a = (w_x·w_y)·w_z0 and b = (w_x·w_y)·w_z1 the weights of its
// cells row + st[2].i0 and row + st[2].i1 (the CPU's order of operations).
template <typename F>
__device__ __forceinline__ void for_corners_xy(const Axis st[3], long long m, F f) {
    for (int cx = 0; cx < 2; ++cx) {
        long long ix = cx ? st[0].i1 : st[0].i0;
        real wx = cx ? st[0].w1 : st[0].w0;
        for (int cy = 0; cy < 2; ++cy) {
            long long iy = cy ? st[1].i1 : st[1].i0;
            real wy = cy ? st[1].w1 : st[1].w0;
            real wxy = wx * wy;
            real a = wxy * st[2].w0, b = wxy * st[2].w1;
            f((ix * m + iy) * m, a, b);
        }
    }
}

// Position gradient through a stencil: g[d] += Σ_c fv(c) ∂W_c/∂x_d over its 8 cells c, with
// ∂w0/∂x = −1/Δ, ∂w1/∂x = +1/Δ (the CPU's order: fv·∂x·w_y·w_z, fv·w_x·∂y·w_z, fv·w_x·w_y·∂z).
template <typename F>
__device__ __forceinline__ void cic_grad(const Axis st[3], long long m, real inv_cell, F fv, real g[3]) {
    for (int cx = 0; cx < 2; ++cx) {
        long long ix = cx ? st[0].i1 : st[0].i0;
        real wx = cx ? st[0].w1 : st[0].w0;
        real dx = cx ? inv_cell : -inv_cell;
        for (int cy = 0; cy < 2; ++cy) {
            long long iy = cy ? st[1].i1 : st[1].i0;
            real wy = cy ? st[1].w1 : st[1].w0;
            real dy = cy ? inv_cell : -inv_cell;
            long long row = (ix * m + iy) * m;
            for (int cz = 0; cz < 2; ++cz) {
                long long iz = cz ? st[2].i1 : st[2].i0;
                real wz = cz ? st[2].w1 : st[2].w0;
                real dz = cz ? inv_cell : -inv_cell;
                real f = fv(row + iz);
                g[0] += f * dx * wy * wz;
                g[1] += f * wx * dy * wz;
                g[2] += f * wx * wy * dz;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CIC paint (fast): ρ[c] += v_p W_c(x_p), float atomics (order of the additions not reproducible).
// v_p = scale · (vals ? vals[stride·p + comp] : 1).
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void cic_paint_atomic(const real* disp, const real* vals, long long stride,
                                            int comp, real scale, long long n, long long m,
                                            real inv_cell, real* mesh) {
    long long np = n * n * n;
    for (long long p = gtid(); p < np; p += gstride()) {
        Axis st[3];
        stencil(p, disp, n, m, inv_cell, st);
        real v = vals ? vals[stride * p + comp] * scale : scale;
        for_corners_xy(st, m, [&](long long row, real a, real b) {
            atomicAdd(mesh + row + st[2].i0, v * a);
            atomicAdd(mesh + row + st[2].i1, v * b);
        });
    }
}

// Three components at once (readout field VJP, gravity.rs G2): g_d[c] += scale·v_p,d W_c(x_p).
extern "C" __global__ void cic_paint3_atomic(const real* disp, const real* vals3, real scale,
                                             long long n, long long m, real inv_cell,
                                             real* g0, real* g1, real* g2) {
    long long np = n * n * n;
    for (long long p = gtid(); p < np; p += gstride()) {
        Axis st[3];
        stencil(p, disp, n, m, inv_cell, st);
        real v[3] = {vals3[3 * p] * scale, vals3[3 * p + 1] * scale, vals3[3 * p + 2] * scale};
        real* g[3] = {g0, g1, g2};
        for_corners_xy(st, m, [&](long long row, real a, real b) {
            for (int k = 0; k < 3; ++k) {
                atomicAdd(g[k] + row + st[2].i0, v[k] * a);
                atomicAdd(g[k] + row + st[2].i1, v[k] * b);
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// CIC paint (deterministic): bucket the particles by the cell of their lower CIC corner, sort
// each bucket by particle index, then every cell gathers from its 8 neighbouring buckets in a
// fixed order. No float atomics: bit-identical run to run.
//   key[p] = flat index of the lower corner cell (m³ < 2³² cells).
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void cic_cell_key(const real* disp, long long n, long long m, real inv_cell,
                                        unsigned int* key) {
    long long np = n * n * n;
    for (long long p = gtid(); p < np; p += gstride()) {
        Axis st[3];
        stencil(p, disp, n, m, inv_cell, st);
        key[p] = (unsigned int)((st[0].i0 * m + st[1].i0) * m + st[2].i0);
    }
}

// counts[key[p]] += 1 (integer atomics: exact, order-independent).
extern "C" __global__ void count_keys(const unsigned int* key, long long np, unsigned int* counts) {
    for (long long p = gtid(); p < np; p += gstride()) atomicAdd(counts + key[p], 1u);
}

// Exclusive scan of one block of SCAN_BLOCK values (launched with SCAN_BLOCK threads):
// out[i] = Σ_{j<i, same block} in[j]; block_sums[block] = the block's total. Work-efficient
// (Blelloch) scan in shared memory; integer, so exact.
extern "C" __global__ void scan_block_u32(const unsigned int* in, unsigned int* out, long long len,
                                          unsigned int* block_sums) {
    __shared__ unsigned int tmp[SCAN_BLOCK];
    long long base = (long long)blockIdx.x * SCAN_BLOCK;
    int t = threadIdx.x;
    tmp[t] = (base + t < len) ? in[base + t] : 0u;
    __syncthreads();
    for (int off = 1; off < SCAN_BLOCK; off <<= 1) {
        int i = (t + 1) * (off << 1) - 1;
        if (i < SCAN_BLOCK) tmp[i] += tmp[i - off];
        __syncthreads();
    }
    if (t == 0) {
        block_sums[blockIdx.x] = tmp[SCAN_BLOCK - 1];
        tmp[SCAN_BLOCK - 1] = 0u;
    }
    __syncthreads();
    for (int off = SCAN_BLOCK >> 1; off >= 1; off >>= 1) {
        int i = (t + 1) * (off << 1) - 1;
        if (i < SCAN_BLOCK) {
            unsigned int l = tmp[i - off];
            tmp[i - off] = tmp[i];
            tmp[i] += l;
        }
        __syncthreads();
    }
    if (base + t < len) out[base + t] = tmp[t];
}

// out[i] += block_offsets[i / SCAN_BLOCK]: second pass of the multi-block scan.
extern "C" __global__ void scan_add_u32(unsigned int* out, long long len,
                                        const unsigned int* block_offsets) {
    for (long long i = gtid(); i < len; i += gstride()) out[i] += block_offsets[i / SCAN_BLOCK];
}

// order[start[key[p]] + slot] = p, slot from an integer atomic (arbitrary order within a bucket;
// sort_buckets makes it canonical). cursor must be zeroed.
extern "C" __global__ void fill_buckets(const unsigned int* key, long long np,
                                        const unsigned int* start, unsigned int* cursor,
                                        unsigned int* order) {
    for (long long p = gtid(); p < np; p += gstride()) {
        unsigned int k = key[p];
        unsigned int slot = atomicAdd(cursor + k, 1u);
        order[(long long)start[k] + slot] = (unsigned int)p;
    }
}

// Insertion sort of each bucket by particle index (buckets hold a few particles: ~ (n/m)³ on
// average, more in clusters).
extern "C" __global__ void sort_buckets(const unsigned int* start, const unsigned int* counts,
                                        long long ncells, unsigned int* order) {
    for (long long c = gtid(); c < ncells; c += gstride()) {
        unsigned int* b = order + start[c];
        unsigned int len = counts[c];
        for (unsigned int i = 1; i < len; ++i) {
            unsigned int v = b[i];
            unsigned int j = i;
            while (j > 0 && b[j - 1] > v) { b[j] = b[j - 1]; --j; }
            b[j] = v;
        }
    }
}

// mesh[c] += Σ over the 8 lower-corner offsets (dx, dy, dz) ∈ {0,1}³ in this order, Σ over the
// particles p of bucket c − (dx, dy, dz) in increasing p, of v_p · W_{corner (dx,dy,dz)}(x_p).
// Correct for any m ≥ 1 (for m ≤ 2 the same bucket is visited for several corners, each time
// adding the weight of the corner that lands on c). v_p as in cic_paint_atomic.
extern "C" __global__ void cic_paint_gather(const real* disp, const real* vals, long long stride,
                                            int comp, real scale, long long n, long long m,
                                            real inv_cell, const unsigned int* start,
                                            const unsigned int* counts,
                                            const unsigned int* order, real* mesh) {
    long long ncells = m * m * m;
    for (long long c = gtid(); c < ncells; c += gstride()) {
        long long cx = c / (m * m), cy = (c / m) % m, cz = c % m;
        real acc = (real)0;
        for (int o = 0; o < 8; ++o) {
            int dx = (o >> 2) & 1, dy = (o >> 1) & 1, dz = o & 1;
            long long l = (wrap(cx - dx, m) * m + wrap(cy - dy, m)) * m + wrap(cz - dz, m);
            const unsigned int* b = order + start[l];
            unsigned int len = counts[l];
            for (unsigned int i = 0; i < len; ++i) {
                long long p = b[i];
                Axis st[3];
                stencil(p, disp, n, m, inv_cell, st);
                real v = vals ? vals[stride * p + comp] * scale : scale;
                real wx = dx ? st[0].w1 : st[0].w0;
                real wy = dy ? st[1].w1 : st[1].w0;
                real wz = dz ? st[2].w1 : st[2].w0;
                acc += v * (wx * wy * wz);
            }
        }
        mesh[c] += acc;
    }
}

// ---------------------------------------------------------------------------------------------
// CIC readout of three fields (gather, deterministic): out[3p+k] = scale · Σ_c W_c(x_p) f_k[c],
// with the CPU's order of operations (acc += a·f(i0z) + b·f(i1z) per (x, y) corner pair).
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void cic_readout3(const real* disp, long long n, long long m, real inv_cell,
                                        const real* f0, const real* f1, const real* f2,
                                        real scale, real* out) {
    long long np = n * n * n;
    for (long long p = gtid(); p < np; p += gstride()) {
        Axis st[3];
        stencil(p, disp, n, m, inv_cell, st);
        const real* f[3] = {f0, f1, f2};
        real acc[3] = {(real)0, (real)0, (real)0};
        for_corners_xy(st, m, [&](long long row, real a, real b) {
            for (int k = 0; k < 3; ++k) acc[k] += a * f[k][row + st[2].i0] + b * f[k][row + st[2].i1];
        });
        for (int k = 0; k < 3; ++k) out[3 * p + k] = scale == (real)1 ? acc[k] : acc[k] * scale;
    }
}

// Readout VJP w.r.t. positions (gravity.rs G1): disp_cot[3p+d] += Σ_k (scale·cot[3p+k])
// Σ_c f_k[c] ∂W_c/∂x_d(x_p), with ∂w0/∂x = −1/Δ, ∂w1/∂x = +1/Δ.
extern "C" __global__ void cic_readout3_vjp_pos(const real* disp, long long n, long long m,
                                                real inv_cell, const real* f0, const real* f1,
                                                const real* f2, const real* cot, real scale,
                                                real* disp_cot) {
    long long np = n * n * n;
    for (long long p = gtid(); p < np; p += gstride()) {
        Axis st[3];
        stencil(p, disp, n, m, inv_cell, st);
        const real* f[3] = {f0, f1, f2};
        real vbar[3] = {cot[3 * p] * scale, cot[3 * p + 1] * scale, cot[3 * p + 2] * scale};
        real g[3] = {(real)0, (real)0, (real)0};
        cic_grad(st, m, inv_cell, [&](long long c) {
            real fv = (real)0;
            for (int k = 0; k < 3; ++k) fv += vbar[k] * f[k][c];
            return fv;
        }, g);
        for (int d = 0; d < 3; ++d) disp_cot[3 * p + d] += g[d];
    }
}

// Paint VJP w.r.t. positions (gravity.rs G3): disp_cot[3p+d] += w_p Σ_c ρ̄[c] ∂W_c/∂x_d(x_p),
// w_p = weights ? weights[p] : 1.
extern "C" __global__ void cic_paint_vjp_pos(const real* disp, const real* weights, long long n,
                                             long long m, real inv_cell, const real* mesh_cot,
                                             real* disp_cot) {
    long long np = n * n * n;
    for (long long p = gtid(); p < np; p += gstride()) {
        Axis st[3];
        stencil(p, disp, n, m, inv_cell, st);
        real w = weights ? weights[p] : (real)1;
        real g[3] = {(real)0, (real)0, (real)0};
        cic_grad(st, m, inv_cell, [&](long long c) { return w * mesh_cot[c]; }, g);
        for (int d = 0; d < 3; ++d) disp_cot[3 * p + d] += g[d];
    }
}

// ---------------------------------------------------------------------------------------------
// Spectral gravity on the half spectrum (gravity.rs `apply_kernel`, physics.md 4.2):
//   out[k] (= | +=) i · D_d(k) · scale_kf2 · inv_nu2[|ν|²] · src[k]
// dk (m values) and dkz (m/2+1) are the host's D(k) tables (spectral with Nyquist zeroed, or
// FD4); inv_nu2[j] = 1/j (0 at j = 0); scale_kf2 = scale / k_f². The adjoint (G3) is the same
// kernel with scale → −scale (K_d is odd and imaginary).
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void poisson_grad(const cplx* src, cplx* out, long long m, int d,
                                        const real* dk, const real* dkz, const real* inv_nu2,
                                        real scale_kf2, int accumulate) {
    long long mc = m / 2 + 1;
    long long len = m * m * mc;
    for (long long i = gtid(); i < len; i += gstride()) {
        long long ix = i / (m * mc), iy = (i / mc) % m, iz = i % mc;
        long long fx = freq(ix, m), fy = freq(iy, m);
        long long nu2 = fx * fx + fy * fy + iz * iz;
        real dd = d == 0 ? dk[ix] : (d == 1 ? dk[iy] : dkz[iz]);
        real f = dd * scale_kf2 * inv_nu2[nu2];
        cplx v = src[i];
        cplx r;
        r.re = -v.im * f;
        r.im = v.re * f;
        if (accumulate) { out[i].re += r.re; out[i].im += r.im; } else { out[i] = r; }
    }
}

// out[k] = src[k] · filter[|ν|²] (learned correction 1 + f_θ(|k|, a), gravity.rs G4/G5).
extern "C" __global__ void spectral_filter(const cplx* src, cplx* out, long long m,
                                           const real* filter) {
    long long mc = m / 2 + 1;
    long long len = m * m * mc;
    for (long long i = gtid(); i < len; i += gstride()) {
        long long ix = i / (m * mc), iy = (i / mc) % m, iz = i % mc;
        long long fx = freq(ix, m), fy = freq(iy, m);
        real f = filter[fx * fx + fy * fy + iz * iz];
        out[i].re = src[i].re * f;
        out[i].im = src[i].im * f;
    }
}

// bins[|ν|²] += w(kz) · Re[a b*] in double (gravity.rs G6; w = hermitian weight of mesh.rs).
// Double atomics: the order of the additions is not reproducible (last bits of θ̄ only).
extern "C" __global__ void radial_cross(const cplx* a, const cplx* b, long long m, double* bins) {
    long long mc = m / 2 + 1;
    long long len = m * m * mc;
    for (long long i = gtid(); i < len; i += gstride()) {
        long long ix = i / (m * mc), iy = (i / mc) % m, iz = i % mc;
        long long fx = freq(ix, m), fy = freq(iy, m);
        double w = (iz == 0 || (m % 2 == 0 && iz == m / 2)) ? 1.0 : 2.0;
        double v = (double)a[i].re * (double)b[i].re + (double)a[i].im * (double)b[i].im;
        atomicAdd(bins + (fx * fx + fy * fy + iz * iz), w * v);
    }
}

// ---------------------------------------------------------------------------------------------
// LPT on the particle grid (lpt.rs, physics.md §3, adjoint.md P1–P3). k = k_f ν in double,
// the Nyquist index (even n) zeroed in odd (first) derivatives only.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ void kvec(long long i, long long n, double kf, double k[3],
                                     double odd[3]) {
    long long nc = n / 2 + 1;
    long long ix = i / (n * nc), iy = (i / nc) % n, iz = i % nc;
    long long idx[3] = {ix, iy, iz};
    k[0] = kf * (double)freq(ix, n);
    k[1] = kf * (double)freq(iy, n);
    k[2] = kf * (double)iz;
    for (int d = 0; d < 3; ++d) {
        bool nyq = (n % 2 == 0) && idx[d] == n / 2;
        odd[d] = nyq ? 0.0 : k[d];
    }
}

// out[k] (= | +=) i · (coef · k_d/k²) · src[k]; 0 at k = 0 (lpt.rs `odd_kernel`).
extern "C" __global__ void lpt_grad(const cplx* src, cplx* out, long long n, int d, double coef,
                                    double kf, int accumulate) {
    long long len = n * n * (n / 2 + 1);
    for (long long i = gtid(); i < len; i += gstride()) {
        double k[3], odd[3];
        kvec(i, n, kf, k, odd);
        double k2 = k[0] * k[0] + k[1] * k[1] + k[2] * k[2];
        real c = k2 == 0.0 ? (real)0 : (real)(coef * odd[d] / k2);
        cplx v = src[i];
        cplx r;
        r.re = -v.im * c;
        r.im = v.re * c;
        if (k2 == 0.0) { r.re = (real)0; r.im = (real)0; }
        if (accumulate) { out[i].re += r.re; out[i].im += r.im; } else { out[i] = r; }
    }
}

// out[k] (= | +=) (k_i k_j / k²) · src[k]; diagonal keeps the Nyquist modes (lpt.rs `hess_kernel`).
extern "C" __global__ void lpt_hess(const cplx* src, cplx* out, long long n, int i_, int j_,
                                    double kf, int accumulate) {
    long long len = n * n * (n / 2 + 1);
    for (long long i = gtid(); i < len; i += gstride()) {
        double k[3], odd[3];
        kvec(i, n, kf, k, odd);
        double k2 = k[0] * k[0] + k[1] * k[1] + k[2] * k[2];
        double h = k2 == 0.0 ? 0.0 : (i_ == j_ ? k[i_] * k[i_] / k2 : odd[i_] * odd[j_] / k2);
        real c = (real)h;
        cplx v = src[i];
        if (accumulate) { out[i].re += v.re * c; out[i].im += v.im * c; }
        else { out[i].re = v.re * c; out[i].im = v.im * c; }
    }
}

// 2LPT source S = φxx φyy + φxx φzz + φyy φzz − φxy² − φxz² − φyz² (lpt.rs, in the CPU's order).
extern "C" __global__ void lpt2_source(const real* pxx, const real* pyy, const real* pzz,
                                       const real* pxy, const real* pxz, const real* pyz,
                                       long long len, real* src) {
    for (long long c = gtid(); c < len; c += gstride()) {
        real s = pxx[c] * pyy[c] + pxx[c] * pzz[c] + pyy[c] * pzz[c];
        s -= pxy[c] * pxy[c];
        s -= pxz[c] * pxz[c];
        s -= pyz[c] * pyz[c];
        src[c] = s;
    }
}

// Cotangents of the φ_ij from S̄ (adjoint.md P3): φ̄_ii = S̄ (φ_jj + φ_kk), φ̄_ij = −2 S̄ φ_ij.
// out_* may not alias the inputs.
extern "C" __global__ void lpt2_source_vjp(const real* sbar, const real* pxx, const real* pyy,
                                           const real* pzz, const real* pxy, const real* pxz,
                                           const real* pyz, long long len, real* bxx, real* byy,
                                           real* bzz, real* bxy, real* bxz, real* byz) {
    for (long long c = gtid(); c < len; c += gstride()) {
        real s = sbar[c];
        bxx[c] = s * (pyy[c] + pzz[c]);
        byy[c] = s * (pzz[c] + pxx[c]);
        bzz[c] = s * (pxx[c] + pyy[c]);
        bxy[c] = -(real)2 * s * pxy[c];
        bxz[c] = -(real)2 * s * pxz[c];
        byz[c] = -(real)2 * s * pyz[c];
    }
}

// Initial conditions (sim.rs): disp = d1·s1 + d2·s2, mom = p1·s1 + p2·s2 (s2 may be null: 1LPT).
extern "C" __global__ void lpt_init(const real* s1, const real* s2, long long len3, real d1,
                                    real d2, real p1, real p2, real* disp, real* mom) {
    for (long long i = gtid(); i < len3; i += gstride()) {
        real a = s1[i];
        real b = s2 ? s2[i] : (real)0;
        disp[i] = s2 ? d1 * a + d2 * b : d1 * a;
        mom[i] = s2 ? p1 * a + p2 * b : p1 * a;
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------
// x[i] *= s
extern "C" __global__ void scale_real(real* x, long long len, real s) {
    for (long long i = gtid(); i < len; i += gstride()) x[i] *= s;
}

// real[c] = in3[3c + d] (one component of a [T; 3] array into a mesh, e.g. before an r2c).
extern "C" __global__ void component_to_real(const real* in3, int d, long long len, real* out) {
    for (long long c = gtid(); c < len; c += gstride()) out[c] = in3[3 * c + d];
}

// out3[3c + d] = real[c] · norm (a c2r result into one component, with the 1/n³).
extern "C" __global__ void real_to_component(const real* in, int d, long long len, real norm,
                                             real* out3) {
    for (long long c = gtid(); c < len; c += gstride()) out3[3 * c + d] = in[c] * norm;
}

// y[i] += c · x[i] (leapfrog.rs kick: p += K·A; drift: s += Δ·p).
extern "C" __global__ void axpy(real* y, const real* x, long long len, real c) {
    for (long long i = gtid(); i < len; i += gstride()) y[i] += c * x[i];
}
"#;
