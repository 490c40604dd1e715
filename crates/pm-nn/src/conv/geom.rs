//! The geometry of one convolution (batch, channels, kernel, stride, padding, spatial sizes),
//! checked once from the operands' shapes, and the output size of a transposed convolution.

use crate::error::{Error, Result};

/// Geometry of one convolution: batch, channels, kernel, stride, padding, spatial sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size N.
    pub n: usize,
    /// Input channels C_in.
    pub cin: usize,
    /// Output channels C_out.
    pub cout: usize,
    /// Kernel side k (the kernel is k×k×k).
    pub k: usize,
    /// Stride s (same along the three axes).
    pub stride: usize,
    /// Zero padding p on each side of each axis.
    pub pad: usize,
    /// Input spatial size (D, H, W).
    pub din: [usize; 3],
    /// Output spatial size (D', H', W'), D' = (D + 2p − k)/s + 1.
    pub dout: [usize; 3],
}

impl ConvGeom {
    /// Geometry of a convolution of an N×C_in×D×H×W input with a C_out×C_in×k³ kernel.
    /// Errors name the argument at fault when the kernel is not cubic, channels differ,
    /// the stride is 0 or the padded input is smaller than the kernel.
    pub fn new(xdims: &[usize], wdims: &[usize], stride: usize, pad: usize) -> Result<Self> {
        if xdims.len() != 5 {
            return Err(shape_err("conv3d input", xdims, "rank 5: N×C_in×D×H×W".into()));
        }
        if wdims.len() != 5 || wdims[2] != wdims[3] || wdims[2] != wdims[4] || wdims[2] == 0 {
            return Err(shape_err(
                "conv3d weight",
                wdims,
                "rank 5 with a cubic kernel: C_out×C_in×k×k×k".into(),
            ));
        }
        if wdims[1] != xdims[1] {
            return Err(shape_err(
                "conv3d weight",
                wdims,
                format!("C_in = {} (the input's channel count)", xdims[1]),
            ));
        }
        if stride == 0 {
            return Err(Error::Config {
                field: "stride",
                value: "0".into(),
                expected: "a stride ≥ 1".into(),
            });
        }
        let k = wdims[2];
        let mut dout = [0; 3];
        for a in 0..3 {
            let l = xdims[2 + a] + 2 * pad;
            if l < k {
                return Err(shape_err("conv3d input", xdims, format!("spatial sizes + 2·pad ≥ kernel size {k}")));
            }
            dout[a] = (l - k) / stride + 1;
        }
        Ok(Self {
            n: xdims[0],
            cin: xdims[1],
            cout: wdims[0],
            k,
            stride,
            pad,
            din: [xdims[2], xdims[3], xdims[4]],
            dout,
        })
    }

    /// Rows of the im2col matrix, C_in·k³.
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k * self.k
    }

    /// Input voxels per channel.
    pub fn pin(&self) -> usize {
        self.din.iter().product()
    }

    /// Output voxels per channel.
    pub fn pout(&self) -> usize {
        self.dout.iter().product()
    }

    /// Floating-point operations of the forward pass (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.cout * self.pout()) as f64 * self.kdim() as f64
    }

    /// Output positions per tile: about 1 MiB of im2col per tile, fixed by the shapes only.
    pub(super) fn tile(&self, elem: usize) -> usize {
        ((1 << 20) / (self.kdim() * elem)).clamp(64, 4096).min(self.pout())
    }
}

pub(super) fn shape_err(what: &'static str, got: &[usize], expected: String) -> Error {
    Error::Shape {
        what,
        got: format!("{got:?}"),
        expected,
    }
}

/// Spatial output size of the transposed convolution of `u` (dims `ud`) by a weight of dims `wd`:
/// D = (D' − 1)·s + k − 2p + `out_pad` per axis; errors name the argument at fault.
pub(super) fn transpose_out(ud: &[usize], wd: &[usize], stride: usize, pad: usize, out_pad: usize) -> Result<[usize; 3]> {
    if ud.len() != 5 || wd.len() != 5 || ud[1] != wd[0] || wd[2] != wd[3] || wd[2] != wd[4] {
        return Err(shape_err(
            "conv_transpose3d input",
            ud,
            format!("rank 5, C = weight's first dim, weight C_out×C_in×k³ (weight {wd:?})"),
        ));
    }
    if stride == 0 || out_pad >= stride {
        return Err(Error::Config {
            field: "out_pad",
            value: out_pad.to_string(),
            expected: format!("0 ≤ out_pad < stride = {stride}"),
        });
    }
    let mut out = [0; 3];
    for a in 0..3 {
        let l = (ud[2 + a].max(1) - 1) * stride + wd[2] + out_pad;
        if ud[2 + a] == 0 || l < 2 * pad + 1 {
            return Err(shape_err(
                "conv_transpose3d input",
                ud,
                "non-empty output after removing the padding".into(),
            ));
        }
        out[a] = l - 2 * pad;
    }
    Ok(out)
}
