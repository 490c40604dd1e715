//! 3D convolution on candle (candle 0.11 has none): forward, input VJP and weight gradient.
//!
//! Shapes: input `x` is N×C_in×D×H×W, weight `w` is C_out×C_in×k×k×k, stride `s` ∈ {1, 2, ...},
//! zero padding `p` on every side; output `y` is N×C_out×D'×H'×W' with D' = (D + 2p − k)/s + 1.
//!
//! Forward (cross-correlation, as in every deep-learning library):
//!   y[n,o,z] = Σ_{c, κ} w[o,c,κ] · x[n, c, s·z + κ − p]        (x = 0 outside the box)
//! Input VJP (the transposed convolution, also the stride-s up-sampling layer):
//!   x̄[n,c,ξ] += Σ_{o, z, κ : s·z + κ − p = ξ} w[o,c,κ] · ȳ[n,o,z]
//! Weight gradient:
//!   w̄[o,c,κ] += Σ_{n, z} ȳ[n,o,z] · x[n, c, s·z + κ − p]
//! (docs/nn.md eqs. 1.1–1.3.) Each is a matrix product with the im2col matrix X[(c,κ), z] = x[n, c, s·z + κ − p]:
//! y = W·X, X̄ = Wᵀ·ȳ then col2im, w̄ = ȳ·Xᵀ (W viewed as C_out × C_in·k³).
//!
//! CPU path ([`conv3d`] on a CPU tensor of f32/f64): a fused, tiled im2col + gemm (the `gemm`
//! crate candle itself uses). Output positions are cut into tiles whose size depends only on the
//! shapes (never on the thread count); each tile's im2col block lives in a thread-local buffer and
//! goes straight into one single-threaded gemm. Rayon runs tiles in parallel. Every output value
//! is computed by one fixed sequence of operations, so results are bit-identical for any thread
//! count: the weight gradient sums per-chunk partial products in chunk order, and col2im gives
//! each input channel to one task that adds tiles in order.
//!
//! Other devices (CUDA, Metal): [`conv3d_candle`] / [`conv_transpose3d_candle`], built from candle
//! ops (strided narrows + matmul), so the same network runs under candle's `cuda` feature;
//! candle's autograd differentiates them.
//!
//! Files: `geom.rs` ([`ConvGeom`]), `kernels.rs` (the fused im2col + gemm kernels on slices),
//! `op.rs` (the candle custom op and its backward), `fallback.rs` (the candle-ops path). The layer
//! structs [`Conv3d`] and [`ConvTranspose3d`] live in [`crate::layers`] and are re-exported here.

mod fallback;
mod geom;
mod kernels;
mod op;
#[cfg(test)]
mod tests;

pub use crate::layers::{Conv3d, ConvTranspose3d};
pub use fallback::{conv3d_candle, conv_transpose3d_candle};
pub use geom::ConvGeom;
pub use kernels::{conv3d_fwd_slice, conv3d_vjp_input_slice, conv3d_vjp_weight_slice};

use crate::error::{Error, Result};
use candle_core::{DType, Tensor, D};
use geom::transpose_out;
use op::{ConvOp, Mode};

/// The weight `w` must have the dtype of the input `x` (else a shape error about `what`).
fn same_dtype(what: &'static str, x: &Tensor, w: &Tensor) -> Result<()> {
    if x.dtype() != w.dtype() {
        return Err(Error::Shape {
            what,
            got: format!("{:?}", w.dtype()),
            expected: format!("{:?} (the input's dtype)", x.dtype()),
        });
    }
    Ok(())
}

/// Whether the fused CPU custom op serves `x` (a CPU tensor of f32 or f64).
fn use_fused(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// 3D convolution `y = conv(x, w)` with stride and zero padding (module header for the formula).
///
/// `x`: N×C_in×D×H×W, `w`: C_out×C_in×k×k×k, both f32 or both f64. On a CPU device this is the
/// fused im2col + gemm custom op with its hand-written backward; elsewhere [`conv3d_candle`].
/// Errors name the argument whose shape is wrong.
pub fn conv3d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    ConvGeom::new(x.dims(), w.dims(), stride, pad)?;
    same_dtype("conv3d weight", x, w)?;
    if use_fused(x) {
        let op = ConvOp {
            mode: Mode::Forward,
            stride,
            pad,
        };
        Ok(x.contiguous()?.apply_op2(&w.contiguous()?, op)?)
    } else {
        conv3d_candle(x, w, stride, pad)
    }
}

/// Transposed 3D convolution (the input VJP of [`conv3d`] with the same `w`, stride and pad),
/// used as the stride-s up-sampling layer.
///
/// `u`: N×C_out×D'×H'×W', `w`: C_out×C_in×k³ (the weight of the convolution it transposes);
/// output N×C_in×D×H×W with D = (D' − 1)·s + k − 2p + `out_pad` (0 ≤ `out_pad` < s picks among
/// the input sizes that the convolution maps to D').
pub fn conv_transpose3d(u: &Tensor, w: &Tensor, stride: usize, pad: usize, out_pad: usize) -> Result<Tensor> {
    let out = transpose_out(u.dims(), w.dims(), stride, pad, out_pad)?;
    same_dtype("conv_transpose3d weight", u, w)?;
    let op = ConvOp {
        mode: Mode::Transpose { out },
        stride,
        pad,
    };
    op.geom(u.dims(), w.dims())?;
    if use_fused(u) {
        Ok(u.contiguous()?.apply_op2(&w.contiguous()?, op)?)
    } else {
        conv_transpose3d_candle(u, w, stride, pad, out_pad)
    }
}

/// Sum of all elements in f64 (used by tests and losses; candle's sum in the tensor's dtype).
pub fn sum_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.sum(D::Minus1)?.to_scalar::<f64>()?)
}
