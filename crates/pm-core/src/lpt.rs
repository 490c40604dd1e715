//! Lagrangian perturbation theory displacements (docs/physics.md §3).
//!
//! Sign convention (the one of `crates/pm-core/tests/reference/growth_D2.txt`): with `∇²φ₁ = δ_L` (a = 1),
//! ```text
//!   x = q + D₁(a) s₁ + D₂(a) s₂,   s₁ = −∇φ₁,   s₂ = +∇φ₂,
//!   ∇²φ₂ = Σ_{i>j} (φ₁,ii φ₁,jj − φ₁,ij²),        D₂ ≈ −3/7 D₁² < 0,
//! ```
//! so `s₁(k) = i k δ(k)/k²` and `s₂(k) = −i k S(k)/k²` with `S` the source above
//! (φ₁,ij(k) = k_i k_j δ(k)/k²). The second-order density at a point of isotropic compression is
//! then `δ = D₁δ_L + (17/21) D₁² δ_L²` (tested below). Canonical momenta `p = a² dx/dτ`
//! (τ = H0 t): `p = g_p(a) s₁ + g_p2(a) s₂`, with `g_p = a² E dD₁/dlna` (docs/cosmology.md).
//!
//! Odd derivatives zero the Nyquist index of their axis (a real field has no imaginary Nyquist
//! mode); even ones (`k_i²`) keep it. All fields live on the particle grid (n per side).
//!
//! **Adjoint** ([`lpt_vjp`], docs/adjoint.md eqs. P1–P3). Every piece is a real Fourier operator
//! `x ↦ IDFT[c(k)·DFT(x)]/n³` whose transpose has kernel `c(−k)`: odd kernels (`i k/k²`) flip
//! sign, even ones (`k_i k_j/k²`) are symmetric. With cotangents s̄₁, s̄₂ of the two fields:
//! ```text
//!   δ̄_L ← Σ_d IDFT[−i k_d/k² · DFT(s̄₁_d)]/n³                         (P1)
//!   S̄   = Σ_d IDFT[+i k_d/k² · DFT(s̄₂_d)]/n³                          (P2)
//!   φ̄_ii = S̄ (φ_jj + φ_kk),  φ̄_ij = −2 S̄ φ_ij (i≠j);  δ̄_L ← Σ_ij IDFT[k_i k_j/k² DFT(φ̄_ij)]/n³   (P3)
//! ```
//! The φ_ij are recomputed from δ(k); nothing is stored by the forward.

use crate::fft::Fft3;
use crate::float::{Real, C};
use crate::mesh::MeshGeom;
use rayon::prelude::*;

pub use crate::config::LptOrder;

/// LPT displacement fields at unit growth: `s₁` and (2LPT) `s₂`, per particle (Mpc/h).
#[derive(Clone, Debug)]
pub struct LptFields<T: Real> {
    /// First-order displacement field `s₁ = −∇φ₁` (multiply by D₁(a)).
    pub s1: Vec<[T; 3]>,
    /// Second-order field `s₂ = ∇φ₂` (multiply by D₂(a) < 0); `None` for 1LPT.
    pub s2: Option<Vec<[T; 3]>>,
}

/// Derivative factor `i k` of index `i` on axis of `geom` (0 at Nyquist), full or half axis.
fn kvec(geom: &MeshGeom, ix: usize, iy: usize, iz: usize) -> ([f64; 3], [f64; 3]) {
    let k = [geom.k_of(ix), geom.k_of(iy), geom.kz_of(iz)];
    let odd = [
        if geom.is_nyquist(ix) { 0.0 } else { k[0] },
        if geom.is_nyquist(iy) { 0.0 } else { k[1] },
        if geom.is_nyquist(iz) { 0.0 } else { k[2] },
    ];
    (k, odd)
}

/// `out(k) = f(k, odd_k, src(k))` (or `+=` when `accumulate`) over the half spectrum in parallel.
fn apply_k<T: Real>(
    geom: &MeshGeom,
    src: &[C<T>],
    out: &mut [C<T>],
    accumulate: bool,
    f: impl Fn([f64; 3], [f64; 3], C<T>) -> C<T> + Sync,
) {
    let n = geom.m;
    let nc = geom.mc();
    out.par_chunks_mut(n * nc)
        .zip(src.par_chunks(n * nc))
        .enumerate()
        .for_each(|(ix, (o, s))| {
            for iy in 0..n {
                for iz in 0..nc {
                    let (k, odd) = kvec(geom, ix, iy, iz);
                    let v = f(k, odd, s[iy * nc + iz]);
                    if accumulate {
                        o[iy * nc + iz] += v;
                    } else {
                        o[iy * nc + iz] = v;
                    }
                }
            }
        });
}

/// Fills `out(k) = f(k, odd_k, src(k))` over the half spectrum in parallel.
fn map_k<T: Real>(geom: &MeshGeom, src: &[C<T>], out: &mut [C<T>], f: impl Fn([f64; 3], [f64; 3], C<T>) -> C<T> + Sync) {
    apply_k(geom, src, out, false, f);
}

/// `acc(k) += f(k, odd_k, src(k))` over the half spectrum in parallel.
fn accumulate_k<T: Real>(geom: &MeshGeom, src: &[C<T>], acc: &mut [C<T>], f: impl Fn([f64; 3], [f64; 3], C<T>) -> C<T> + Sync) {
    apply_k(geom, src, acc, true, f);
}

/// The odd kernel `c·i k_d/k²` (0 at k = 0 and on the Nyquist index of axis d).
#[inline(always)]
fn odd_kernel<T: Real>(k: [f64; 3], odd: [f64; 3], d: usize, c: f64, v: C<T>) -> C<T> {
    let k2 = k[0] * k[0] + k[1] * k[1] + k[2] * k[2];
    if k2 == 0.0 {
        C::default()
    } else {
        i_times(c * odd[d] / k2, v)
    }
}

/// `i·c·v` for a real coefficient c.
#[inline(always)]
fn i_times<T: Real>(c: f64, v: C<T>) -> C<T> {
    let c = T::of(c);
    C::new(-v.im * c, v.re * c)
}

/// Returns the three real components of `IDFT[coef · i k_d/k² · src(k)] / n³` per particle.
fn gradient_field<T: Real>(geom: &MeshGeom, fft: &Fft3<T>, src: &[C<T>], coef: f64) -> Vec<[T; 3]> {
    let nr = geom.n_cells();
    let norm = T::of(1.0 / nr as f64);
    let mut out = vec![[T::zero(); 3]; nr];
    let mut tmp = vec![C::default(); geom.n_complex()];
    let mut real = vec![T::zero(); nr];
    for d in 0..3 {
        map_k(geom, src, &mut tmp, |k, odd, v| odd_kernel(k, odd, d, coef, v));
        fft.inverse(&mut tmp, &mut real);
        out.par_iter_mut().zip(real.par_iter()).for_each(|(o, r)| o[d] = *r * norm);
    }
    out
}

/// `φ₁,ij(x) = IDFT[k_i k_j δ(k)/k²]/n³` on the grid (diagonal terms keep the Nyquist modes);
/// `tmp` is complex scratch of the half-spectrum length.
fn hessian_field<T: Real>(delta_k: &[C<T>], geom: &MeshGeom, fft: &Fft3<T>, i: usize, j: usize, tmp: &mut [C<T>]) -> Vec<T> {
    map_k(geom, delta_k, tmp, |k, odd, v| v * T::of(hess_kernel(k, odd, i, j)));
    let mut out = vec![T::zero(); geom.n_cells()];
    fft.inverse(tmp, &mut out);
    let norm = T::of(1.0 / geom.n_cells() as f64);
    out.par_iter_mut().for_each(|x| *x *= norm);
    out
}

/// LPT displacement fields from the linear modes `δ_L(k)` at a = 1 on the particle grid
/// (`geom.m` = particles per side, `fft` of that size).
pub fn lpt_fields<T: Real>(delta_k: &[C<T>], geom: &MeshGeom, fft: &Fft3<T>, order: LptOrder) -> LptFields<T> {
    assert_eq!(delta_k.len(), geom.n_complex(), "lpt_fields: δ(k) length");
    // s₁(k) = i k δ(k)/k²
    let s1 = gradient_field(geom, fft, delta_k, 1.0);
    if order == LptOrder::One {
        return LptFields { s1, s2: None };
    }
    let nr = geom.n_cells();
    let mut tmp = vec![C::default(); geom.n_complex()];
    let second = |i: usize, j: usize, tmp: &mut Vec<C<T>>| hessian_field(delta_k, geom, fft, i, j, tmp);
    let pxx = second(0, 0, &mut tmp);
    let pyy = second(1, 1, &mut tmp);
    let pzz = second(2, 2, &mut tmp);
    let mut src: Vec<T> = (0..nr)
        .into_par_iter()
        .map(|c| pxx[c] * pyy[c] + pxx[c] * pzz[c] + pyy[c] * pzz[c])
        .collect();
    drop((pxx, pyy, pzz));
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let pij = second(i, j, &mut tmp);
        src.par_iter_mut().zip(pij.par_iter()).for_each(|(s, p)| *s -= *p * *p);
    }
    let mut src_k = vec![C::default(); geom.n_complex()];
    fft.forward(&mut src, &mut src_k);
    // s₂(k) = ∇φ₂ = −i k S(k)/k²
    let s2 = gradient_field(geom, fft, &src_k, -1.0);
    LptFields { s1, s2: Some(s2) }
}

/// Second-derivative kernel `k_i k_j / k²` (diagonal terms keep the Nyquist modes).
#[inline(always)]
fn hess_kernel(k: [f64; 3], odd: [f64; 3], i: usize, j: usize) -> f64 {
    let k2 = k[0] * k[0] + k[1] * k[1] + k[2] * k[2];
    if k2 == 0.0 {
        0.0
    } else if i == j {
        k[i] * k[i] / k2
    } else {
        odd[i] * odd[j] / k2
    }
}

/// VJP of [`lpt_fields`] w.r.t. the real-space linear field `δ_L(x) = IDFT[δ(k)]/n³`: returns
/// `δ̄_L(x)` (n³, C order) for cotangents `s1_cot` of `s₁` and (2LPT) `s2_cot` of `s₂`.
/// `delta_k` is the forward input (needed for the second-order term only).
pub fn lpt_vjp<T: Real>(delta_k: &[C<T>], geom: &MeshGeom, fft: &Fft3<T>, s1_cot: &[[T; 3]], s2_cot: Option<&[[T; 3]]>) -> Vec<T> {
    let nr = geom.n_cells();
    let nk = geom.n_complex();
    assert_eq!(s1_cot.len(), nr, "lpt_vjp: s1 cotangent length");
    let norm = T::of(1.0 / nr as f64);
    let mut real = vec![T::zero(); nr];
    let mut tmp = vec![C::default(); nk];
    let mut acc = vec![C::<T>::default(); nk];
    // (P1): s₁ = IDFT[+i k/k² δ]: transpose kernel −i k/k².
    for d in 0..3 {
        real.par_iter_mut().zip(s1_cot.par_iter()).for_each(|(r, f)| *r = f[d]);
        fft.forward(&mut real, &mut tmp);
        accumulate_k(geom, &tmp, &mut acc, |k, odd, v| odd_kernel(k, odd, d, -1.0, v));
    }
    if let Some(s2c) = s2_cot {
        assert_eq!(s2c.len(), nr, "lpt_vjp: s2 cotangent length");
        // (P2): s₂ = IDFT[−i k/k² S]: transpose kernel +i k/k².
        let mut sk = vec![C::<T>::default(); nk];
        for d in 0..3 {
            real.par_iter_mut().zip(s2c.par_iter()).for_each(|(r, f)| *r = f[d]);
            fft.forward(&mut real, &mut tmp);
            accumulate_k(geom, &tmp, &mut sk, |k, odd, v| odd_kernel(k, odd, d, 1.0, v));
        }
        let mut sbar = vec![T::zero(); nr];
        fft.inverse(&mut sk, &mut sbar);
        sbar.par_iter_mut().for_each(|x| *x *= norm);
        // Recompute φ_ij(x) from δ(k).
        let phi = |i: usize, j: usize, tmp: &mut Vec<C<T>>| hessian_field(delta_k, geom, fft, i, j, tmp);
        let diag = [phi(0, 0, &mut tmp), phi(1, 1, &mut tmp), phi(2, 2, &mut tmp)];
        // (P3) diagonal: φ̄_ii = S̄ (φ_jj + φ_kk)
        for i in 0..3 {
            let (j, k) = ((i + 1) % 3, (i + 2) % 3);
            real.par_iter_mut()
                .enumerate()
                .for_each(|(c, r)| *r = sbar[c] * (diag[j][c] + diag[k][c]));
            fft.forward(&mut real, &mut tmp);
            accumulate_k(geom, &tmp, &mut acc, |k, odd, v| v * T::of(hess_kernel(k, odd, i, i)));
        }
        drop(diag);
        // (P3) off-diagonal: φ̄_ij = −2 S̄ φ_ij
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            let pij = phi(i, j, &mut tmp);
            real.par_iter_mut()
                .enumerate()
                .for_each(|(c, r)| *r = -T::of(2.0) * sbar[c] * pij[c]);
            fft.forward(&mut real, &mut tmp);
            accumulate_k(geom, &tmp, &mut acc, |k, odd, v| v * T::of(hess_kernel(k, odd, i, j)));
        }
    }
    fft.inverse(&mut acc, &mut real);
    real.par_iter_mut().for_each(|x| *x *= norm);
    real
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_from_fn(n: usize, l: f64, f: impl Fn([f64; 3]) -> f64) -> Vec<f64> {
        (0..n * n * n)
            .map(|p| {
                f([
                    (p / (n * n)) as f64 * l / n as f64,
                    ((p / n) % n) as f64 * l / n as f64,
                    (p % n) as f64 * l / n as f64,
                ])
            })
            .collect()
    }

    #[test]
    fn two_wave_second_order_is_analytic() {
        // φ₁ = A cos(k₁x) + B cos(k₂y): φ₁,xx φ₁,yy = AB k₁²k₂² cos cos, no cross terms, so
        // φ₂ = −AB k₁²k₂²/(k₁²+k₂²) cos(k₁x) cos(k₂y) and s₂ = ∇φ₂; s₁ = −∇φ₁.
        let (n, l) = (16usize, 40.0);
        let geom = MeshGeom::new(n, l);
        let fft = Fft3::<f64>::new(n);
        let (k1, k2) = (2.0 * std::f64::consts::PI / l, 2.0 * 2.0 * std::f64::consts::PI / l);
        let (a, b) = (0.7, -0.4);
        // δ = ∇²φ₁ = −A k₁² cos(k₁x) − B k₂² cos(k₂y)
        let mut delta = field_from_fn(n, l, |x| -a * k1 * k1 * (k1 * x[0]).cos() - b * k2 * k2 * (k2 * x[1]).cos());
        let mut dk = vec![C::default(); geom.n_complex()];
        fft.forward(&mut delta, &mut dk);
        let f = lpt_fields(&dk, &geom, &fft, LptOrder::Two);
        let s2 = f.s2.unwrap();
        let c = -a * b * k1 * k1 * k2 * k2 / (k1 * k1 + k2 * k2);
        let mut max_err = 0.0f64;
        for p in 0..n * n * n {
            let x = [(p / (n * n)) as f64 * l / n as f64, ((p / n) % n) as f64 * l / n as f64];
            let s1x = a * k1 * (k1 * x[0]).sin();
            let s1y = b * k2 * (k2 * x[1]).sin();
            let s2x = -c * k1 * (k1 * x[0]).sin() * (k2 * x[1]).cos();
            let s2y = -c * k2 * (k1 * x[0]).cos() * (k2 * x[1]).sin();
            for (got, want) in [
                (f.s1[p][0], s1x),
                (f.s1[p][1], s1y),
                (f.s1[p][2], 0.0),
                (s2[p][0], s2x),
                (s2[p][1], s2y),
                (s2[p][2], 0.0),
            ] {
                max_err = max_err.max((got - want).abs());
            }
        }
        assert!(max_err < 1e-12, "max error {max_err:.3e}");
    }

    /// s₁, s₂ as functions of the real linear field δ_L(x) (f64), flattened.
    fn lpt_of_field(geom: &MeshGeom, fft: &Fft3<f64>, field: &[f64], order: LptOrder) -> LptFields<f64> {
        let mut f = field.to_vec();
        let mut dk = vec![C::default(); geom.n_complex()];
        fft.forward(&mut f, &mut dk);
        lpt_fields(&dk, geom, fft, order)
    }

    #[test]
    fn lpt1_vjp_dot_test_and_2lpt_vjp_finite_differences() {
        use crate::testing::{dot, dot_test, rand_field};
        for n in [8usize, 6, 5] {
            let geom = MeshGeom::new(n, 30.0);
            let fft = Fft3::<f64>::new(n);
            let nr = n * n * n;
            // 1LPT is linear in δ_L: ⟨s₁(v), w⟩ = ⟨v, s₁ᵀ(w)⟩.
            let fwd = |v: &[f64]| {
                lpt_of_field(&geom, &fft, v, LptOrder::One)
                    .s1
                    .into_iter()
                    .flatten()
                    .collect::<Vec<f64>>()
            };
            let adj = |w: &[f64]| {
                let cot: Vec<[f64; 3]> = w.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
                lpt_vjp(&vec![C::default(); geom.n_complex()], &geom, &fft, &cot, None)
            };
            dot_test(nr, 3 * nr, fwd, adj, 1e-12, 5);
            // 2LPT: L(δ) = ⟨s₁, u₁⟩ + ⟨s₂, u₂⟩ is quadratic; central differences are exact up to rounding.
            let x = rand_field::<f64>(nr, 6);
            let u1: Vec<[f64; 3]> = crate::testing::rand_disp(n, 1.0, 7);
            let u2: Vec<[f64; 3]> = crate::testing::rand_disp(n, 1.0, 8);
            let l = |v: &[f64]| {
                let f = lpt_of_field(&geom, &fft, v, LptOrder::Two);
                crate::testing::dot3(&f.s1, &u1) + crate::testing::dot3(f.s2.as_ref().unwrap(), &u2)
            };
            let mut xk = x.clone();
            let mut dk = vec![C::default(); geom.n_complex()];
            fft.forward(&mut xk, &mut dk);
            let g = lpt_vjp(&dk, &geom, &fft, &u1, Some(&u2));
            let dir = rand_field::<f64>(nr, 9);
            let eps = 1e-4;
            let xp: Vec<f64> = x.iter().zip(&dir).map(|(a, b)| a + eps * b).collect();
            let xm: Vec<f64> = x.iter().zip(&dir).map(|(a, b)| a - eps * b).collect();
            let fd = (l(&xp) - l(&xm)) / (2.0 * eps);
            let an = dot(&g, &dir);
            assert!((fd - an).abs() < 1e-8 * an.abs().max(1.0), "n = {n}: fd {fd} vs adjoint {an}");
        }
    }

    #[test]
    fn isotropic_compression_gives_17_21() {
        // A Gaussian potential bump φ₁ = −A exp(−r²/2σ²) centred on a grid point: at the centre
        // φ₁,ij = (A/σ²) δ_ij, so δ_L(0) = 3A/σ². With x = q + D₁s₁ + D₂s₂ and D₂ = −3/7 D₁², the
        // density at the centre, 1/det(∂x/∂q) − 1, must be D₁δ_L + (17/21)(D₁δ_L)² + O(δ³).
        let (n, l) = (64usize, 64.0);
        let geom = MeshGeom::new(n, l);
        let fft = Fft3::<f64>::new(n);
        let sigma = 5.0;
        let c = [l / 2.0; 3];
        let phi_shape = |x: [f64; 3]| {
            let r2: f64 = (0..3).map(|d| (x[d] - c[d]).powi(2)).sum();
            (-r2 / (2.0 * sigma * sigma)).exp()
        };
        // δ_L = ∇²φ₁ for φ₁ = −A·shape: ∇²shape = (r²/σ⁴ − 3/σ²)·shape
        let lap = |x: [f64; 3]| {
            let r2: f64 = (0..3).map(|d| (x[d] - c[d]).powi(2)).sum();
            (r2 / sigma.powi(4) - 3.0 / (sigma * sigma)) * phi_shape(x)
        };
        let centre = ((n / 2) * n + n / 2) * n + n / 2;
        let mut coef = Vec::new();
        for amp in [1e-3, 2e-3] {
            let mut delta = field_from_fn(n, l, |x| -amp * lap(x));
            let dl0 = delta[centre];
            let mut dk = vec![C::default(); geom.n_complex()];
            fft.forward(&mut delta, &mut dk);
            let f = lpt_fields(&dk, &geom, &fft, LptOrder::Two);
            let s2 = f.s2.unwrap();
            let d1 = 1.0;
            let d2 = -3.0 / 7.0;
            // Jacobian at the centre by a 4th-order centred difference of s along each axis.
            let h = l / n as f64;
            let stride = [n * n, n, 1];
            let disp = |p: usize, i: usize| d1 * f.s1[p][i] + d2 * s2[p][i];
            let mut jac = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    let st = stride[j];
                    let der = (-disp(centre + 2 * st, i) + 8.0 * disp(centre + st, i) - 8.0 * disp(centre - st, i)
                        + disp(centre - 2 * st, i))
                        / (12.0 * h);
                    jac[i][j] = (if i == j { 1.0 } else { 0.0 }) + der;
                }
            }
            let det = jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
                - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
                + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0]);
            let delta_e = 1.0 / det - 1.0;
            // δ_E = a₁ δ_L + a₂ δ_L² + a₃ δ_L³: with two amplitudes eliminate the cubic term.
            coef.push((dl0, delta_e));
        }
        let (x1, y1) = coef[0];
        let (x2, y2) = coef[1];
        // y = a x + b x² (+ c x³ with x small): b from the two points, Richardson-style.
        let b = (y2 / x2 - y1 / x1) / (x2 - x1);
        let a = y1 / x1 - b * x1;
        // The 4th-order difference Jacobian is accurate to O(h⁴/σ⁴) ≈ 2e-3; a flipped D₂ sign
        // would give 1/7 + 2/3 − 2/7 = 11/21 instead of 17/21.
        assert!((a - 1.0).abs() < 5e-3, "first-order coefficient {a}");
        let ratio = b / (a * a);
        assert!(
            (ratio - 17.0 / 21.0).abs() < 0.01 * 17.0 / 21.0,
            "second-order coefficient {ratio} vs 17/21 = {}",
            17.0 / 21.0
        );
    }
}
