//! The 48 symmetries of the cube (the full octahedral group Oₕ: 6 axis permutations × 8 sign
//! flips), applied to scalar and vector fields on a cubic grid, for data augmentation.
//!
//! An element g = (π, s) maps a point x to y with y_a = s_a · x_{π(a)} (a = 0, 1, 2 the z, y, x
//! axes of an N×C×D×H×W tensor). A flip reverses the voxel order (i → L − 1 − i, a reflection
//! about the box centre, which commutes with every translation-invariant operator on the grid).
//! Fields transform as
//!   scalar:  (gφ)(y) = φ(g⁻¹y)
//!   vector:  (gv)_a(y) = s_a · v_{π(a)}(g⁻¹y)   (components permuted and negated with the axes),
//! so that g(∇φ) = ∇(gφ): the gradient of a transformed scalar is the transformed gradient.
//! (docs/nn.md §3.) Composition (g₂ ∘ g₁): π₃(b) = π₁(π₂(b)), s₃_b = s₂_b · s₁_{π₂(b)}.

use crate::error::{Error, Result};
use candle_core::Tensor;

/// One of the 48 cube symmetries (module header for the convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Symmetry {
    /// Output axis a takes input axis `perm[a]`.
    pub perm: [usize; 3],
    /// Output axis a is reversed (s_a = −1).
    pub flip: [bool; 3],
}

const PERMS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];

impl Symmetry {
    /// The identity.
    pub fn identity() -> Self {
        Self {
            perm: [0, 1, 2],
            flip: [false; 3],
        }
    }

    /// All 48 elements, identity first; element i is `all()[i]` for every call.
    pub fn all() -> Vec<Self> {
        let mut v = Vec::with_capacity(48);
        for perm in PERMS {
            for f in 0..8u8 {
                v.push(Self {
                    perm,
                    flip: [f & 1 != 0, f & 2 != 0, f & 4 != 0],
                });
            }
        }
        v
    }

    fn sign(&self, a: usize) -> f64 {
        if self.flip[a] {
            -1.0
        } else {
            1.0
        }
    }

    /// `self ∘ first` (apply `first`, then `self`).
    pub fn compose(&self, first: &Self) -> Self {
        let perm = [0, 1, 2].map(|b| first.perm[self.perm[b]]);
        let flip = [0, 1, 2].map(|b| self.flip[b] != first.flip[self.perm[b]]);
        Self { perm, flip }
    }

    /// The inverse element.
    pub fn inverse(&self) -> Self {
        let mut perm = [0; 3];
        let mut flip = [false; 3];
        for a in 0..3 {
            perm[self.perm[a]] = a;
            flip[self.perm[a]] = self.flip[a];
        }
        Self { perm, flip }
    }

    fn check(x: &Tensor, what: &'static str) -> Result<()> {
        let d = x.dims();
        if d.len() != 5 || d[2] != d[3] || d[2] != d[4] {
            return Err(Error::Shape {
                what,
                got: format!("{d:?}"),
                expected: "N×C×n×n×n (a cubic grid)".into(),
            });
        }
        Ok(())
    }

    /// Transforms every channel of an N×C×n×n×n tensor as a scalar field.
    pub fn apply_scalar(&self, x: &Tensor) -> Result<Tensor> {
        Self::check(x, "symmetry scalar field")?;
        let p = self.perm;
        let y = x.permute((0, 1, 2 + p[0], 2 + p[1], 2 + p[2]))?.contiguous()?;
        let axes: Vec<usize> = (0..3).filter(|&a| self.flip[a]).map(|a| a + 2).collect();
        let y = if axes.is_empty() { y } else { y.flip(&axes)? };
        Ok(y.contiguous()?)
    }

    /// Transforms an N×3×n×n×n vector field (channel a = the component along axis a): the
    /// components are permuted and negated with the axes.
    pub fn apply_vector(&self, v: &Tensor) -> Result<Tensor> {
        Self::check(v, "symmetry vector field")?;
        if v.dims()[1] != 3 {
            return Err(Error::Shape {
                what: "symmetry vector field",
                got: format!("{:?}", v.dims()),
                expected: "3 channels (z, y, x components)".into(),
            });
        }
        let idx = Tensor::new(&[self.perm[0] as u32, self.perm[1] as u32, self.perm[2] as u32], v.device())?;
        let signs = Tensor::new(&[self.sign(0), self.sign(1), self.sign(2)], v.device())?
            .to_dtype(v.dtype())?
            .reshape((1, 3, 1, 1, 1))?;
        let comps = v.contiguous()?.index_select(&idx, 1)?.broadcast_mul(&signs)?;
        self.apply_scalar(&comps)
    }
}

/// The symmetry to use for sample `i` of epoch `epoch` with seed `seed` (a fixed hash, so that
/// augmentation is reproducible and independent of thread count).
pub fn pick(seed: u64, epoch: u64, i: u64) -> Symmetry {
    let mut z = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Symmetry::all()[(z % 48) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{maxdiff, rand_t};
    use std::collections::HashSet;

    /// Periodic central-difference gradient of an N×1×n³ field → N×3×n³.
    fn grad(phi: &Tensor) -> Tensor {
        let comps: Vec<Tensor> = (2..5)
            .map(|d| ((phi.roll(-1, d).unwrap() - phi.roll(1, d).unwrap()).unwrap() * 0.5).unwrap())
            .collect();
        Tensor::cat(&comps, 1).unwrap()
    }

    #[test]
    fn group_has_48_distinct_elements_and_closes() {
        let all = Symmetry::all();
        let set: HashSet<Symmetry> = all.iter().copied().collect();
        assert_eq!(set.len(), 48);
        let x = rand_t(&[1, 1, 4, 4, 4], 1);
        let images: Vec<Vec<f64>> = all
            .iter()
            .map(|g| g.apply_scalar(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        for i in 0..48 {
            for j in 0..i {
                assert_ne!(images[i], images[j], "elements {i} and {j} act alike");
            }
        }
        for g1 in &all {
            assert_eq!(g1.compose(&g1.inverse()), Symmetry::identity());
            for g2 in &all {
                let g3 = g2.compose(g1);
                assert!(set.contains(&g3));
                let a = g2.apply_scalar(&g1.apply_scalar(&x).unwrap()).unwrap();
                assert_eq!(maxdiff(&a, &g3.apply_scalar(&x).unwrap()), 0.0, "{g2:?}∘{g1:?} ≠ {g3:?} on a field");
            }
        }
    }

    #[test]
    fn symmetry_commutes_with_the_gradient_of_a_scalar() {
        let phi = rand_t(&[2, 1, 6, 6, 6], 2);
        let g_phi = grad(&phi);
        for g in Symmetry::all() {
            let a = grad(&g.apply_scalar(&phi).unwrap());
            let b = g.apply_vector(&g_phi).unwrap();
            assert!(maxdiff(&a, &b) <= 1e-14, "{g:?}: {}", maxdiff(&a, &b));
        }
        // Transforming the components as scalars (no permutation/negation) breaks it for a flip.
        let g = Symmetry {
            perm: [1, 0, 2],
            flip: [true, false, false],
        };
        assert!(maxdiff(&grad(&g.apply_scalar(&phi).unwrap()), &g.apply_scalar(&g_phi).unwrap()) > 1e-3);
    }

    #[test]
    fn non_cubic_or_non_vector_input_is_an_error() {
        let x = rand_t(&[1, 1, 4, 4, 5], 3);
        assert!(matches!(Symmetry::identity().apply_scalar(&x), Err(Error::Shape { .. })));
        let v = rand_t(&[1, 2, 4, 4, 4], 3);
        assert!(matches!(Symmetry::identity().apply_vector(&v), Err(Error::Shape { .. })));
        assert!((0..100).map(|i| pick(7, 0, i)).collect::<HashSet<_>>().len() > 30);
    }
}
