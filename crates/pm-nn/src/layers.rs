//! Building blocks shared by the U-net and the CNN: the convolution layers (weights and bias
//! around [`crate::conv`]'s maps), activation, normalisation, padding mode and the
//! conv → norm → activation block.
//!
//! Instance normalisation (per sample and channel, over the voxels of the field):
//!   y = γ (x − μ) / √(σ² + ε) + β,  μ, σ² the mean and (biased) variance over the voxels, ε = 1e-5.
//! Its backward is candle's autograd of these ops.

use crate::conv::{conv3d, conv_transpose3d};
use crate::error::Result;
use crate::pad::pad_periodic;
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

/// A 3D convolution layer: weight C_out×C_in×k³ and optional bias C_out, stride, zero padding.
#[derive(Clone, Debug)]
pub struct Conv3d {
    /// Weight, C_out×C_in×k×k×k.
    pub weight: Tensor,
    /// Bias, C_out (added to every voxel of its channel).
    pub bias: Option<Tensor>,
    /// Stride.
    pub stride: usize,
    /// Zero padding per side.
    pub pad: usize,
}

impl Conv3d {
    /// A layer whose weight ("weight", Kaiming-normal) and bias ("bias", uniform ±1/√fan_in)
    /// are created in (or loaded from) `vb`.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((cout, cin, k, k, k), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = bias.then(|| uniform_bias(cin * k * k * k, cout, &vb)).transpose()?;
        Ok(Self { weight, bias, stride, pad })
    }

    /// y = conv3d(x, weight) + bias.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv3d(x, &self.weight, self.stride, self.pad)?;
        add_bias(y, self.bias.as_ref())
    }
}

/// A transposed convolution layer (stride-s up-sampling): weight C_in×C_out×k³ (the weight of the
/// convolution it transposes, mapping C_out → C_in), optional bias C_out.
#[derive(Clone, Debug)]
pub struct ConvTranspose3d {
    /// Weight, C_in×C_out×k×k×k (input channels first).
    pub weight: Tensor,
    /// Bias, C_out.
    pub bias: Option<Tensor>,
    /// Stride (the up-sampling factor when k = s and pad = 0).
    pub stride: usize,
    /// Padding removed from each side.
    pub pad: usize,
}

impl ConvTranspose3d {
    /// A layer mapping C_in → C_out channels with weight "weight" and bias "bias" in `vb`.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        // Fan-in of each output voxel: cin·k³/s³ on average; Kaiming on (cout, cin, k³) is close.
        let std = (2.0 / ((cin * k * k * k) as f64 / (stride * stride * stride) as f64).max(1.0)).sqrt();
        let weight = vb.get_with_hints((cin, cout, k, k, k), "weight", candle_nn::Init::Randn { mean: 0.0, stdev: std })?;
        let bias = bias.then(|| uniform_bias(cin * k * k * k, cout, &vb)).transpose()?;
        Ok(Self { weight, bias, stride, pad })
    }

    /// z = conv_transpose3d(x, weight) + bias; output size (D − 1)·s + k − 2p.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let z = conv_transpose3d(x, &self.weight, self.stride, self.pad, 0)?;
        add_bias(z, self.bias.as_ref())
    }
}

/// A bias of `cout` values ("bias" in `vb`), uniform in ±1/√fan_in.
fn uniform_bias(fan_in: usize, cout: usize, vb: &candle_nn::VarBuilder) -> Result<Tensor> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Ok(vb.get_with_hints(cout, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?)
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => Ok(y.broadcast_add(&b.reshape((1, b.dims()[0], 1, 1, 1))?)?),
        None => Ok(y),
    }
}

/// Point-wise non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// x for x > 0, 0.1·x otherwise.
    LeakyRelu,
    /// Gaussian error linear unit (tanh approximation).
    Gelu,
    /// tanh(x); smooth, used by gradient tests.
    Tanh,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.relu()?,
            Activation::LeakyRelu => (x.relu()? - (x.neg()?.relu()? * 0.1)?)?,
            Activation::Gelu => x.gelu()?,
            Activation::Tanh => x.tanh()?,
        })
    }
}

/// Normalisation after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Norm {
    /// None.
    None,
    /// Instance norm with a learned scale and shift per channel (module header).
    Instance,
}

/// How a k = 3 convolution treats the box boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    /// Periodic images (exact translation equivariance on a periodic box).
    Periodic,
    /// Zeros (crops of a larger box; the output's border is then cropped away).
    Zero,
}

/// Instance normalisation with learned γ ("gamma", init 1) and β ("beta", init 0).
#[derive(Clone, Debug)]
pub struct InstanceNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl InstanceNorm {
    /// Per-channel parameters for `c` channels from `vb`.
    pub fn new(c: usize, vb: candle_nn::VarBuilder) -> Result<Self> {
        Ok(Self {
            gamma: vb.get_with_hints(c, "gamma", candle_nn::Init::Const(1.0))?,
            beta: vb.get_with_hints(c, "beta", candle_nn::Init::Const(0.0))?,
        })
    }

    /// Normalises an N×C×D×H×W tensor per sample and channel.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.dims().to_vec();
        let flat = x.reshape((d[0], d[1], ()))?;
        let mu = flat.mean_keepdim(D::Minus1)?;
        let xc = flat.broadcast_sub(&mu)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let y = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        let c = d[1];
        let y = y
            .broadcast_mul(&self.gamma.reshape((1, c, 1))?)?
            .broadcast_add(&self.beta.reshape((1, c, 1))?)?;
        Ok(y.reshape(d)?)
    }
}

/// k = 3 convolution (periodic or zero padding, stride 1 or 2) → optional norm → activation.
#[derive(Clone, Debug)]
pub struct ConvBlock {
    conv: Conv3d,
    norm: Option<InstanceNorm>,
    act: Option<Activation>,
    periodic_pad: usize,
}

impl ConvBlock {
    /// A block C_in → C_out with kernel `k` (odd k keeps the size at stride 1), stride `stride`;
    /// `act = None` for a linear output layer. Weights under `vb` ("conv", "norm").
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: Padding,
        norm: Norm,
        act: Option<Activation>,
        vb: candle_nn::VarBuilder,
    ) -> Result<Self> {
        let p = (k - 1) / 2;
        let (zero_pad, periodic_pad) = match padding {
            Padding::Periodic => (0, p),
            Padding::Zero => (p, 0),
        };
        let with_norm = norm == Norm::Instance;
        let conv = Conv3d::new(cin, cout, k, stride, zero_pad, !with_norm, vb.pp("conv"))?;
        let norm = if with_norm {
            Some(InstanceNorm::new(cout, vb.pp("norm"))?)
        } else {
            None
        };
        Ok(Self {
            conv,
            norm,
            act,
            periodic_pad,
        })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if self.periodic_pad > 0 {
            pad_periodic(x, self.periodic_pad)?
        } else {
            x.clone()
        };
        let mut y = self.conv.forward(&x)?;
        if let Some(n) = &self.norm {
            y = n.forward(&y)?;
        }
        match &self.act {
            Some(a) => a.apply(&y),
            None => Ok(y),
        }
    }
}
