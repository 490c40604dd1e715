//! The fused CPU convolution as a candle custom op with a hand-written backward.
//!
//! One op, [`ConvOp`], computes one of the three maps of docs/nn.md §1 ([`Mode`]): the forward
//! convolution (1.1), the transposed convolution (1.2) or the weight gradient (1.3), by the slice
//! kernels of [`super::kernels`] on f32 or f64 CPU storage. The backward of each map is made of
//! the others: the forward's input VJP is the transposed convolution and the transposed
//! convolution's is the forward; both weight gradients are (1.3), with x ← z̄, ȳ ← u for the
//! transposed one (⟨z̄, convᵀ(u)⟩ = ⟨conv(z̄), u⟩).

use super::geom::{shape_err, ConvGeom};
use super::kernels::{conv3d_fwd_slice, conv3d_vjp_input_slice, conv3d_vjp_weight_slice};
use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};
use pm_core::Real;

/// Which map of the convolution a [`ConvOp`] computes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Mode {
    /// (x, w) → y, the forward convolution.
    Forward,
    /// (u, w) → z, the transposed convolution (the forward's input VJP) onto a grid of spatial
    /// size `out`.
    Transpose {
        /// Spatial size of z.
        out: [usize; 3],
    },
    /// (x, ȳ) → w̄ for a k³ kernel, the weight gradient (no backward of its own).
    WeightGrad {
        /// Kernel side k.
        k: usize,
    },
}

/// Custom op for one [`Mode`] of a convolution with the given stride and zero padding.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvOp {
    pub(super) mode: Mode,
    pub(super) stride: usize,
    pub(super) pad: usize,
}

impl ConvOp {
    /// The same convolution in another mode.
    fn with(self, mode: Mode) -> Self {
        Self { mode, ..self }
    }

    /// The geometry (of the forward convolution involved) and the output dims for operands of
    /// dims `d1` and `d2`; errors name the operand at fault.
    pub(super) fn geom(&self, d1: &[usize], d2: &[usize]) -> Result<(ConvGeom, [usize; 5])> {
        match self.mode {
            Mode::Forward => {
                let g = ConvGeom::new(d1, d2, self.stride, self.pad)?;
                Ok((g, [g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]]))
            }
            Mode::Transpose { out } => {
                let (udims, wdims) = (d1, d2);
                if udims.len() != 5 || wdims.len() != 5 || udims[1] != wdims[0] {
                    return Err(shape_err(
                        "conv_transpose3d input",
                        udims,
                        format!("rank 5 with C = {} (weight is {:?})", wdims.first().unwrap_or(&0), wdims),
                    ));
                }
                let xdims = [udims[0], wdims[1], out[0], out[1], out[2]];
                let g = ConvGeom::new(&xdims, wdims, self.stride, self.pad)?;
                if g.dout != [udims[2], udims[3], udims[4]] {
                    return Err(shape_err(
                        "conv_transpose3d input",
                        udims,
                        format!("spatial size {:?} for output {:?}", g.dout, out),
                    ));
                }
                Ok((g, [g.n, g.cin, out[0], out[1], out[2]]))
            }
            Mode::WeightGrad { k } => {
                let (xd, yd) = (d1, d2);
                let wdims = [yd[1], xd[1], k, k, k];
                let g = ConvGeom::new(xd, &wdims, self.stride, self.pad)?;
                if [g.n, g.cout, g.dout[0], g.dout[1], g.dout[2]] != yd {
                    return Err(Error::Candle(candle_core::Error::Msg(format!(
                        "conv3d weight grad: cotangent {yd:?} does not match the output of {g:?}"
                    ))));
                }
                Ok((g, wdims))
            }
        }
    }

    /// The slice kernel of this mode on operands `a`, `b` (contiguous, geometry `g`).
    fn run<T: Real>(&self, g: &ConvGeom, a: &[T], b: &[T]) -> Vec<T> {
        match self.mode {
            Mode::Forward => conv3d_fwd_slice(g, a, b),
            Mode::Transpose { .. } => conv3d_vjp_input_slice(g, a, b),
            Mode::WeightGrad { .. } => conv3d_vjp_weight_slice(g, a, b),
        }
    }
}

fn cpu_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &'static str) -> candle_core::Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => Err(candle_core::Error::Msg(format!("{what}: tensor must be contiguous"))),
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        match self.mode {
            Mode::Forward => "conv3d",
            Mode::Transpose { .. } => "conv_transpose3d",
            Mode::WeightGrad { .. } => "conv3d_weight_grad",
        }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, dims) = self
            .geom(l1.dims(), l2.dims())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let name = self.name();
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(self.run(&g, cpu_slice(s1, l1, name)?, cpu_slice(s2, l2, name)?)),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(self.run(&g, cpu_slice(s1, l1, name)?, cpu_slice(s2, l2, name)?)),
            _ => return Err(candle_core::Error::Msg(format!("{name}: f32 or f64 tensors of one dtype expected"))),
        };
        Ok((out, Shape::from_dims(&dims)))
    }

    /// `a` is x (forward) or u (transposed), `w` the weight, `rbar` the cotangent of the result.
    fn bwd(&self, a: &Tensor, w: &Tensor, _res: &Tensor, rbar: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let rbar = rbar.contiguous()?;
        let weight_grad = self.with(Mode::WeightGrad { k: w.dims()[2] });
        let (abar, wbar) = match self.mode {
            Mode::Forward => {
                let d = a.dims();
                let xbar = rbar.apply_op2(w, self.with(Mode::Transpose { out: [d[2], d[3], d[4]] }))?;
                (xbar, a.apply_op2_no_bwd(&rbar, &weight_grad)?)
            }
            // ⟨z̄, Xᵀ-fold(Wᵀu)⟩ = ⟨conv(z̄, W), u⟩, so w̄ is the conv weight gradient with x = z̄, ȳ = u.
            Mode::Transpose { .. } => (
                rbar.apply_op2(w, self.with(Mode::Forward))?,
                rbar.apply_op2_no_bwd(a, &weight_grad)?,
            ),
            Mode::WeightGrad { .. } => return Err(candle_core::Error::BackwardNotSupported { op: self.name() }),
        };
        Ok((Some(abar), Some(wbar)))
    }
}
