//! Device-agnostic convolutions from candle ops (strided narrows + matmul), for devices other
//! than the CPU (CUDA, Metal); candle's autograd differentiates them. Same maps as the fused CPU
//! path ([`super::conv3d`], [`super::conv_transpose3d`]).

use super::geom::{transpose_out, ConvGeom};
use crate::error::Result;
use candle_core::Tensor;

/// Every `s`-th slice of length `len` along `dim`, starting at `start` (zero beyond the end).
fn strided_narrow(t: &Tensor, dim: usize, start: usize, len: usize, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(t.narrow(dim, start, len)?);
    }
    let avail = (t.dims()[dim] - start).min(s * len);
    let mut v = t.narrow(dim, start, avail)?;
    if avail < s * len {
        v = v.pad_with_zeros(dim, 0, s * len - avail)?;
    }
    let mut dims = v.dims().to_vec();
    dims[dim] = len;
    dims.insert(dim + 1, s);
    Ok(v.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?)
}

/// Device-agnostic [`conv3d`](super::conv3d) from candle ops: zero padding, k³ strided narrows stacked into the
/// im2col matrix, one batched matmul. Differentiated by candle's autograd.
pub fn conv3d_candle(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let g = ConvGeom::new(x.dims(), w.dims(), stride, pad)?;
    let mut xp = x.clone();
    for dim in 2..5 {
        xp = xp.pad_with_zeros(dim, pad, pad)?;
    }
    let k = g.k;
    let mut cols = Vec::with_capacity(k * k * k);
    for kz in 0..k {
        let a = strided_narrow(&xp, 2, kz, g.dout[0], stride)?;
        for ky in 0..k {
            let b = strided_narrow(&a, 3, ky, g.dout[1], stride)?;
            for kx in 0..k {
                cols.push(strided_narrow(&b, 4, kx, g.dout[2], stride)?);
            }
        }
    }
    let col = Tensor::stack(&cols, 2)?.reshape((g.n, g.kdim(), g.pout()))?;
    let y = w.reshape((g.cout, g.kdim()))?.broadcast_matmul(&col)?;
    Ok(y.reshape((g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]))?)
}

/// Zero-interleaves `t` along `dim` by `s` (x0 0 0 x1 0 0 ... x_{L−1}) → length (L − 1)·s + 1.
fn upsample_zeros(t: &Tensor, dim: usize, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(t.clone());
    }
    let l = t.dims()[dim];
    let z = t.unsqueeze(dim + 1)?.pad_with_zeros(dim + 1, 0, s - 1)?;
    let mut dims = t.dims().to_vec();
    dims[dim] = l * s;
    Ok(z.reshape(dims)?.narrow(dim, 0, (l - 1) * s + 1)?)
}

/// Device-agnostic [`conv_transpose3d`](super::conv_transpose3d) from candle ops: Wᵀ·u, then col2im as a sum over the k³
/// kernel offsets of zero-interleaved, shifted copies, cropped by the padding.
pub fn conv_transpose3d_candle(u: &Tensor, w: &Tensor, stride: usize, pad: usize, out_pad: usize) -> Result<Tensor> {
    let out = transpose_out(u.dims(), w.dims(), stride, pad, out_pad)?;
    let ud = u.dims().to_vec();
    let (n, cout, cin, k) = (ud[0], ud[1], w.dims()[1], w.dims()[2]);
    let pu = ud[2] * ud[3] * ud[4];
    let kd = cin * k * k * k;
    let wt = w.reshape((cout, kd))?.t()?.contiguous()?;
    let col = wt
        .broadcast_matmul(&u.reshape((n, cout, pu))?)?
        .reshape((n, cin, k * k * k, ud[2], ud[3], ud[4]))?;
    // Full (uncropped) output length along each axis: (D' − 1)·s + k + out_pad.
    let full: Vec<usize> = (0..3).map(|a| out[a] + 2 * pad).collect();
    let mut acc: Option<Tensor> = None;
    for kz in 0..k {
        for ky in 0..k {
            for kx in 0..k {
                let kk = (kz * k + ky) * k + kx;
                let mut c = col.narrow(2, kk, 1)?.squeeze(2)?;
                for (a, off) in [kz, ky, kx].into_iter().enumerate() {
                    c = upsample_zeros(&c, 2 + a, stride)?;
                    let l = c.dims()[2 + a];
                    c = c.pad_with_zeros(2 + a, off, full[a] - off - l)?;
                }
                acc = Some(match acc {
                    None => c,
                    Some(s) => (s + c)?,
                });
            }
        }
    }
    let mut z = acc.expect("k ≥ 1");
    for a in 0..3 {
        z = z.narrow(2 + a, pad, out[a])?;
    }
    Ok(z)
}
