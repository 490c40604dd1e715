//! Periodic padding, its adjoint (folding the halo back), and crops of a periodic box with a halo
//! for valid convolutions, with the reassembly of the crops.
//!
//! Forward (per spatial axis of length L, pad p):  y[i] = x[(i − p) mod L],  i = 0 … L + 2p − 1.
//! Adjoint (the fold):                            x̄[j] += Σ_{i : (i − p) mod L = j} ȳ[i],
//! (docs/nn.md eqs. 2.1–2.2), i.e. the two halos are added back onto the opposite faces. A convolution applied after
//! [`pad_periodic`] with p = (k − 1)/2 and no zero padding is the convolution on the torus, so it
//! commutes exactly with any periodic shift (`roll`) of the box.
//!
//! Crops: [`Tiling`] cuts a periodic box of size S into tiles of size T (S divisible by T), each
//! with a periodic halo h (the network's receptive-field radius): a network made of valid
//! convolutions maps each crop (T + 2h) to its core (T), and [`Tiling::assemble`] puts the cores
//! back. The result equals the network with periodic padding on the whole box (tested in this
//! file for convolutions), which lets boxes larger than memory be processed in pieces.
//!
//! CPU tensors use a gather/scatter custom op; other devices use `index_select`, whose candle
//! backward is the same fold.

use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

fn check5(x: &Tensor, what: &'static str) -> Result<()> {
    if x.rank() != 5 {
        return Err(Error::Shape {
            what,
            got: format!("{:?}", x.dims()),
            expected: "rank 5: N×C×D×H×W".into(),
        });
    }
    Ok(())
}

/// Periodic indices (i − p) mod L for i = 0 … L + 2p − 1.
fn wrap_index(l: usize, p: usize) -> Vec<usize> {
    (0..l + 2 * p).map(|i| (i + l * (p / l + 1) - p) % l).collect()
}

/// Pads each of the three spatial axes of an N×C×D×H×W tensor by `p` voxels on both sides with
/// the periodic images of the box (any p, even p > L). Backward: [`fold_periodic`].
pub fn pad_periodic(x: &Tensor, p: usize) -> Result<Tensor> {
    check5(x, "pad_periodic input")?;
    if p == 0 {
        return Ok(x.clone());
    }
    if x.dims()[2..].contains(&0) {
        return Err(Error::Shape {
            what: "pad_periodic input",
            got: format!("{:?}", x.dims()),
            expected: "non-empty spatial axes".into(),
        });
    }
    if x.device().is_cpu() {
        Ok(x.contiguous()?.apply_op1(PadOp { p })?)
    } else {
        let mut y = x.clone();
        for dim in 2..5 {
            let idx: Vec<u32> = wrap_index(x.dims()[dim], p).into_iter().map(|i| i as u32).collect();
            y = y.index_select(&Tensor::new(idx, x.device())?, dim)?;
        }
        Ok(y)
    }
}

/// The adjoint of [`pad_periodic`]: an N×C×(D+2p)×(H+2p)×(W+2p) tensor folded onto N×C×D×H×W by
/// adding every voxel onto its periodic image in the box.
pub fn fold_periodic(y: &Tensor, p: usize) -> Result<Tensor> {
    check5(y, "fold_periodic input")?;
    if p == 0 {
        return Ok(y.clone());
    }
    if y.dims()[2..].iter().any(|&l| l <= 2 * p) {
        return Err(Error::Shape {
            what: "fold_periodic input",
            got: format!("{:?}", y.dims()),
            expected: format!("spatial sizes > 2p = {}", 2 * p),
        });
    }
    if y.device().is_cpu() {
        Ok(y.contiguous()?.apply_op1(FoldOp { p })?)
    } else {
        // Σ over periodic images: one-hot matrices along each axis would also do; index_add is
        // the direct form.
        let mut x = y.clone();
        for dim in 2..5 {
            let l = x.dims()[dim] - 2 * p;
            let idx: Vec<u32> = wrap_index(l, p).into_iter().map(|i| i as u32).collect();
            let mut dims = x.dims().to_vec();
            dims[dim] = l;
            let zeros = Tensor::zeros(dims, x.dtype(), x.device())?;
            x = zeros.index_add(&Tensor::new(idx, x.device())?, &x, dim)?;
        }
        Ok(x)
    }
}

/// Calls `f` with the contiguous data of a CPU tensor as a typed slice.
macro_rules! with_slice {
    ($s:expr, $l:expr, $name:expr, |$v:ident| $body:expr) => {{
        let (a, b) = $l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: contiguous input expected", $name)))?;
        match $s {
            CpuStorage::F32(d) => {
                let $v = &d[a..b];
                CpuStorage::F32($body)
            }
            CpuStorage::F64(d) => {
                let $v = &d[a..b];
                CpuStorage::F64($body)
            }
            _ => return Err(candle_core::Error::Msg(format!("{}: f32 or f64 expected", $name))),
        }
    }};
}

/// Gather (pad) or scatter-add (fold) between an (L)³ and an (L + 2p)³ grid, one channel per task.
fn pad_slice<T: WithDType>(x: &[T], small: [usize; 3], p: usize) -> Vec<T> {
    let big = small.map(|l| l + 2 * p);
    let (ps, pb) = (small.iter().product::<usize>(), big.iter().product::<usize>());
    let idx = small.map(|l| wrap_index(l, p));
    let mut y = vec![T::zero(); x.len() / ps * pb];
    y.par_chunks_mut(pb).zip(x.par_chunks(ps)).for_each(|(yc, xc)| {
        for (i, &iz) in idx[0].iter().enumerate() {
            for (j, &iy) in idx[1].iter().enumerate() {
                let row = &xc[(iz * small[1] + iy) * small[2]..][..small[2]];
                let out = &mut yc[(i * big[1] + j) * big[2]..][..big[2]];
                for (o, &ix) in out.iter_mut().zip(&idx[2]) {
                    *o = row[ix];
                }
            }
        }
    });
    y
}

fn fold_slice<T: WithDType>(y: &[T], small: [usize; 3], p: usize) -> Vec<T> {
    let big = small.map(|l| l + 2 * p);
    let (ps, pb) = (small.iter().product::<usize>(), big.iter().product::<usize>());
    let idx = small.map(|l| wrap_index(l, p));
    let mut x = vec![T::zero(); y.len() / pb * ps];
    x.par_chunks_mut(ps).zip(y.par_chunks(pb)).for_each(|(xc, yc)| {
        for (i, &iz) in idx[0].iter().enumerate() {
            for (j, &iy) in idx[1].iter().enumerate() {
                let row = &mut xc[(iz * small[1] + iy) * small[2]..][..small[2]];
                let inp = &yc[(i * big[1] + j) * big[2]..][..big[2]];
                for (v, &ix) in inp.iter().zip(&idx[2]) {
                    row[ix] += *v;
                }
            }
        }
    });
    x
}

struct PadOp {
    p: usize,
}

impl CustomOp1 for PadOp {
    fn name(&self) -> &'static str {
        "pad_periodic"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = l.dims();
        let small = [d[2], d[3], d[4]];
        let out = with_slice!(s, l, "pad_periodic", |v| pad_slice(v, small, self.p));
        Ok((
            out,
            Shape::from_dims(&[d[0], d[1], d[2] + 2 * self.p, d[3] + 2 * self.p, d[4] + 2 * self.p]),
        ))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, ybar: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(ybar.contiguous()?.apply_op1(FoldOp { p: self.p })?))
    }
}

struct FoldOp {
    p: usize,
}

impl CustomOp1 for FoldOp {
    fn name(&self) -> &'static str {
        "fold_periodic"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = l.dims();
        let small = [d[2] - 2 * self.p, d[3] - 2 * self.p, d[4] - 2 * self.p];
        let out = with_slice!(s, l, "fold_periodic", |v| fold_slice(v, small, self.p));
        Ok((out, Shape::from_dims(&[d[0], d[1], small[0], small[1], small[2]])))
    }

    fn bwd(&self, _y: &Tensor, _x: &Tensor, xbar: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(xbar.contiguous()?.apply_op1(PadOp { p: self.p })?))
    }
}

/// Crops of a periodic box with a halo, and their reassembly (module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    /// Box size (D, H, W) in voxels.
    pub size: [usize; 3],
    /// Core size of each tile (divides `size`).
    pub tile: [usize; 3],
    /// Halo width h added on each side of each crop, in voxels.
    pub halo: usize,
}

impl Tiling {
    /// A tiling of a `size` box into `tile` cores with a periodic halo; errors when a tile does
    /// not divide the box.
    pub fn new(size: [usize; 3], tile: [usize; 3], halo: usize) -> Result<Self> {
        for a in 0..3 {
            if tile[a] == 0 || size[a] % tile[a] != 0 {
                return Err(Error::Config {
                    field: "tile",
                    value: format!("{tile:?}"),
                    expected: format!("non-zero tile sizes that divide the box {size:?}"),
                });
            }
        }
        Ok(Self { size, tile, halo })
    }

    /// Tiles along each axis.
    pub fn counts(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.size[a] / self.tile[a])
    }

    /// The crops of `x` (N×C×D×H×W with (D, H, W) = `size`), z-major order, each
    /// N×C×(T+2h)³ with the periodic images of the box in the halo.
    pub fn crops(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        check5(x, "Tiling::crops input")?;
        if x.dims()[2..] != self.size {
            return Err(Error::Shape {
                what: "Tiling::crops input",
                got: format!("{:?}", x.dims()),
                expected: format!("spatial size {:?}", self.size),
            });
        }
        let h = self.halo;
        let xp = pad_periodic(x, h)?;
        let c = self.counts();
        let mut out = Vec::with_capacity(c.iter().product());
        for i in 0..c[0] {
            for j in 0..c[1] {
                for k in 0..c[2] {
                    let t = xp
                        .narrow(2, i * self.tile[0], self.tile[0] + 2 * h)?
                        .narrow(3, j * self.tile[1], self.tile[1] + 2 * h)?;
                    out.push(t.narrow(4, k * self.tile[2], self.tile[2] + 2 * h)?);
                }
            }
        }
        Ok(out)
    }

    /// Reassembles the cores (each N×C×T³, in the order of [`Tiling::crops`]) into the box.
    pub fn assemble(&self, cores: &[Tensor]) -> Result<Tensor> {
        let c = self.counts();
        if cores.len() != c.iter().product::<usize>() {
            return Err(Error::Shape {
                what: "Tiling::assemble cores",
                got: format!("{} tensors", cores.len()),
                expected: format!("{} (tiles {c:?})", c.iter().product::<usize>()),
            });
        }
        for t in cores {
            check5(t, "Tiling::assemble core")?;
            if t.dims()[2..] != self.tile {
                return Err(Error::Shape {
                    what: "Tiling::assemble core",
                    got: format!("{:?}", t.dims()),
                    expected: format!("spatial size {:?}", self.tile),
                });
            }
        }
        let rows: Vec<Tensor> = cores.chunks(c[2]).map(|r| Tensor::cat(r, 4)).collect::<candle_core::Result<_>>()?;
        let planes: Vec<Tensor> = rows.chunks(c[1]).map(|r| Tensor::cat(r, 3)).collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&planes, 2)?)
    }
}

/// Removes `h` voxels from each side of the three spatial axes (the core of a crop).
pub fn crop_center(x: &Tensor, h: usize) -> Result<Tensor> {
    check5(x, "crop_center input")?;
    if x.dims()[2..].iter().any(|&l| l < 2 * h) {
        return Err(Error::Shape {
            what: "crop_center input",
            got: format!("{:?}", x.dims()),
            expected: format!("spatial sizes ≥ 2h = {}", 2 * h),
        });
    }
    let mut y = x.clone();
    for dim in 2..5 {
        y = y.narrow(dim, h, x.dims()[dim] - 2 * h)?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv3d, sum_f64};
    use crate::testing::{maxdiff, rand_t};
    use candle_core::Var;

    #[test]
    fn pad_matches_index_definition_and_fold_is_its_adjoint() {
        for (dims, p) in [([2, 3, 4, 5, 3], 1), ([1, 2, 3, 2, 4], 2), ([1, 1, 2, 3, 2], 3)] {
            let x = rand_t(&dims, 1);
            let y = pad_periodic(&x, p).unwrap();
            let xv = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let yv = y.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let [d, h, w] = [dims[2], dims[3], dims[4]];
            let (bd, bh, bw) = (d + 2 * p, h + 2 * p, w + 2 * p);
            for nc in 0..dims[0] * dims[1] {
                for i in 0..bd {
                    for j in 0..bh {
                        for k in 0..bw {
                            let m = |a: usize, l: usize| (a as isize - p as isize).rem_euclid(l as isize) as usize;
                            let src = ((nc * d + m(i, d)) * h + m(j, h)) * w + m(k, w);
                            assert_eq!(yv[((nc * bd + i) * bh + j) * bw + k], xv[src]);
                        }
                    }
                }
            }
            // ⟨pad(x), r⟩ = ⟨x, fold(r)⟩.
            let r = rand_t(y.dims(), 2);
            let lhs = sum_f64(&(&y * &r).unwrap()).unwrap();
            let rhs = sum_f64(&(&x * fold_periodic(&r, p).unwrap()).unwrap()).unwrap();
            assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
            // Backward of pad through candle = fold.
            let xv = Var::from_tensor(&x).unwrap();
            let g = (pad_periodic(&xv, p).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(maxdiff(g.get(&xv).unwrap(), &fold_periodic(&r, p).unwrap()) == 0.0);
        }
    }

    #[test]
    fn periodic_conv_commutes_with_roll() {
        let x = rand_t(&[1, 2, 6, 5, 4], 3);
        let w = rand_t(&[3, 2, 3, 3, 3], 4);
        let f = |x: &Tensor| conv3d(&pad_periodic(x, 1).unwrap(), &w, 1, 0).unwrap();
        let roll = |t: &Tensor| t.roll(2, 2).unwrap().roll(-1, 3).unwrap().roll(3, 4).unwrap();
        let a = f(&roll(&x));
        let b = roll(&f(&x));
        assert!(maxdiff(&a, &b) <= 1e-13, "conv∘roll ≠ roll∘conv: {}", maxdiff(&a, &b));
        // And a zero-padded conv does not commute (the check can fail).
        let g = |x: &Tensor| conv3d(x, &w, 1, 1).unwrap();
        assert!(maxdiff(&g(&roll(&x)), &roll(&g(&x))) > 1e-3);
    }

    #[test]
    fn crops_with_valid_convs_reassemble_to_the_periodic_result() {
        // Two k=3 convs: receptive-field radius 2 = halo.
        let x = rand_t(&[2, 2, 8, 12, 4], 5);
        let w1 = rand_t(&[3, 2, 3, 3, 3], 6);
        let w2 = rand_t(&[2, 3, 3, 3, 3], 7);
        let full = conv3d(
            &pad_periodic(&conv3d(&pad_periodic(&x, 1).unwrap(), &w1, 1, 0).unwrap(), 1).unwrap(),
            &w2,
            1,
            0,
        )
        .unwrap();
        let tiling = Tiling::new([8, 12, 4], [4, 6, 2], 2).unwrap();
        let crops = tiling.crops(&x).unwrap();
        assert_eq!(crops.len(), 2 * 2 * 2);
        let cores: Vec<Tensor> = crops
            .iter()
            .map(|c| conv3d(&conv3d(c, &w1, 1, 0).unwrap(), &w2, 1, 0).unwrap())
            .collect();
        let re = tiling.assemble(&cores).unwrap();
        assert!(maxdiff(&re, &full) <= 1e-13, "reassembled crops differ by {}", maxdiff(&re, &full));
        // Zero-padded convs on the same crops (no halo) disagree near the tile faces.
        let tiling0 = Tiling::new([8, 12, 4], [4, 6, 2], 0).unwrap();
        let cores0: Vec<Tensor> = tiling0
            .crops(&x)
            .unwrap()
            .iter()
            .map(|c| conv3d(&conv3d(c, &w1, 1, 1).unwrap(), &w2, 1, 1).unwrap())
            .collect();
        let re0 = tiling0.assemble(&cores0).unwrap();
        assert!(maxdiff(&re0, &full) > 1e-3);
        // The interior of a zero-padded conv on a crop agrees with the periodic result.
        let c = &crops[0];
        let zero_padded = conv3d(&conv3d(c, &w1, 1, 1).unwrap(), &w2, 1, 1).unwrap();
        assert!(maxdiff(&crop_center(&zero_padded, 2).unwrap(), &cores[0]) <= 1e-13);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let x = rand_t(&[1, 1, 4, 4, 4], 1);
        assert!(matches!(pad_periodic(&x.flatten_all().unwrap(), 1), Err(Error::Shape { .. })));
        assert!(matches!(fold_periodic(&x, 2), Err(Error::Shape { .. })));
        assert!(matches!(
            Tiling::new([8, 8, 8], [3, 4, 4], 1),
            Err(Error::Config { field: "tile", .. })
        ));
        let t = Tiling::new([4, 4, 4], [2, 2, 2], 1).unwrap();
        assert!(matches!(t.assemble(&[x.clone()]), Err(Error::Shape { .. })));
        assert!(matches!(crop_center(&x, 3), Err(Error::Shape { .. })));
    }
}
