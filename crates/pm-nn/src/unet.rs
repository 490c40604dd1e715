//! A configurable 3D U-net (levels, width, norm, activation, bypass, padding) for field-to-field
//! maps such as density → velocity (Wu et al. 2021, ApJ 913:2).
//!
//! Level l has width·2ˡ channels. Encoder level l: `convs[l]` k = 3 conv blocks; between levels
//! a stride-2 k = 2 conv halves the grid. Decoder level l (from the bottom up): a stride-2 k = 2
//! transposed conv doubles the grid, the encoder's level-l output joins by the bypass
//! (concatenation, sum, or none), then `convs[l]` k = 3 conv blocks. A 1³ conv maps to the
//! output channels, and `crop` voxels are removed from each side (the border a zero-padded crop
//! cannot predict). Gradients are candle's autograd over the custom conv ops.
//!
//! The [`UNetConfig::wu2021`] preset: 1 → 3 channels, 3 levels, convs (3, 2, 2): 12 k = 3 convs,
//! 2 down-sampling convs and the 1³ head (15 convs) plus 2 transposed convs; a 32³ input of
//! 2 Mpc/h voxels gives a 3×20³ output (crop 6).

use crate::error::{Error, Result};
use crate::layers::{Activation, Conv3d, ConvBlock, ConvTranspose3d, Norm, Padding};
use crate::pad::crop_center;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Skip connection from each encoder level to the decoder level of the same resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bypass {
    /// Plain encoder-decoder.
    None,
    /// Concatenate the encoder's channels (the classic U-net).
    Concat,
    /// Add the encoder's output to the up-sampled one (residual U-net).
    Add,
}

/// Architecture of a [`UNet`]; stored in weight files (see `weights`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Input channels (1 for a density field).
    pub in_channels: usize,
    /// Output channels (3 for a velocity field).
    pub out_channels: usize,
    /// Resolution levels (≥ 1); the input side must be divisible by 2^(levels − 1).
    pub levels: usize,
    /// Channels at level 0 (doubled at each level).
    pub width: usize,
    /// k = 3 conv blocks at each level, encoder and decoder alike (length `levels`, each ≥ 1).
    pub convs: Vec<usize>,
    /// Normalisation after each k = 3 conv.
    pub norm: Norm,
    /// Activation after each conv except the head.
    pub activation: Activation,
    /// Skip connections.
    pub bypass: Bypass,
    /// Boundary treatment of the k = 3 convs.
    pub padding: Padding,
    /// Voxels removed from each side of the output.
    pub crop: usize,
}

impl UNetConfig {
    /// The Wu et al. (2021) sized preset: 32³ → 3×20³ (module header), width 16, ReLU, zero
    /// padding (inputs are crops of a larger box), concatenation bypass, no norm.
    pub fn wu2021() -> Self {
        Self {
            in_channels: 1,
            out_channels: 3,
            levels: 3,
            width: 16,
            convs: vec![3, 2, 2],
            norm: Norm::None,
            activation: Activation::Relu,
            bypass: Bypass::Concat,
            padding: Padding::Zero,
            crop: 6,
        }
    }

    /// Checks the fields; errors name the field and the accepted values.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, value: String, expected: &str| {
            Err(Error::Config {
                field,
                value,
                expected: expected.into(),
            })
        };
        if self.in_channels == 0 || self.out_channels == 0 {
            return bad(
                "in_channels/out_channels",
                format!("{}/{}", self.in_channels, self.out_channels),
                "at least 1 channel",
            );
        }
        if self.levels == 0 || self.levels > 6 {
            return bad("levels", self.levels.to_string(), "1 to 6 levels");
        }
        if self.width == 0 {
            return bad("width", "0".into(), "at least 1 channel");
        }
        if self.convs.len() != self.levels || self.convs.contains(&0) {
            return bad("convs", format!("{:?}", self.convs), "one count ≥ 1 per level");
        }
        Ok(())
    }

    /// Output side for an input side `n`, or an error naming the constraint.
    pub fn output_side(&self, n: usize) -> Result<usize> {
        let f = 1 << (self.levels - 1);
        if n % f != 0 || n <= 2 * self.crop {
            return Err(Error::Shape {
                what: "U-net input",
                got: format!("side {n}"),
                expected: format!("a side divisible by {f} and > 2·crop = {}", 2 * self.crop),
            });
        }
        Ok(n - 2 * self.crop)
    }

    /// Number of k ≥ 2 convolutions (k = 3 blocks, down-sampling convs, 1³ head) and of
    /// transposed convolutions.
    pub fn layer_counts(&self) -> (usize, usize) {
        let l = self.levels;
        let k3: usize = self.convs.iter().sum::<usize>() + self.convs[..l - 1].iter().sum::<usize>();
        (k3 + (l - 1) + 1, l - 1)
    }
}

/// A 3D U-net (module header). Weights are candle `Var`s created through a `VarBuilder`.
#[derive(Clone, Debug)]
pub struct UNet {
    cfg: UNetConfig,
    enc: Vec<Vec<ConvBlock>>,
    down: Vec<Conv3d>,
    up: Vec<ConvTranspose3d>,
    dec: Vec<Vec<ConvBlock>>,
    head: Conv3d,
}

impl UNet {
    /// Builds the network; weights named `enc{l}.{i}`, `down{l}`, `up{l}`, `dec{l}.{i}`, `head`.
    pub fn new(cfg: &UNetConfig, vb: candle_nn::VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let w = |l: usize| cfg.width << l;
        let block = |cin, cout, vb| ConvBlock::new(cin, cout, 3, 1, cfg.padding, cfg.norm, Some(cfg.activation), vb);
        let mut enc = Vec::new();
        let mut down = Vec::new();
        let mut up = Vec::new();
        let mut dec = Vec::new();
        for l in 0..cfg.levels {
            let mut blocks = Vec::new();
            for i in 0..cfg.convs[l] {
                let cin = if i > 0 {
                    w(l)
                } else if l == 0 {
                    cfg.in_channels
                } else {
                    w(l)
                };
                blocks.push(block(cin, w(l), vb.pp(format!("enc{l}.{i}")))?);
            }
            enc.push(blocks);
            if l + 1 < cfg.levels {
                down.push(Conv3d::new(w(l), w(l + 1), 2, 2, 0, true, vb.pp(format!("down{l}")))?);
                up.push(ConvTranspose3d::new(w(l + 1), w(l), 2, 2, 0, true, vb.pp(format!("up{l}")))?);
                let mut blocks = Vec::new();
                for i in 0..cfg.convs[l] {
                    let cin = if i == 0 && cfg.bypass == Bypass::Concat { 2 * w(l) } else { w(l) };
                    blocks.push(block(cin, w(l), vb.pp(format!("dec{l}.{i}")))?);
                }
                dec.push(blocks);
            }
        }
        let head = Conv3d::new(w(0), cfg.out_channels, 1, 1, 0, true, vb.pp("head"))?;
        Ok(Self {
            cfg: cfg.clone(),
            enc,
            down,
            up,
            dec,
            head,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Maps N×C_in×n³ (any n divisible by 2^(levels−1), also non-cubic) to
    /// N×C_out×(n − 2·crop)³.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 5 || x.dims()[1] != self.cfg.in_channels {
            return Err(Error::Shape {
                what: "U-net input",
                got: format!("{:?}", x.dims()),
                expected: format!("N×{}×D×H×W", self.cfg.in_channels),
            });
        }
        for &n in &x.dims()[2..] {
            self.cfg.output_side(n)?;
        }
        let run = |blocks: &[ConvBlock], mut h: Tensor| -> Result<Tensor> {
            for b in blocks {
                h = b.forward(&h)?;
            }
            Ok(h)
        };
        let act = self.cfg.activation;
        let mut skips = Vec::new();
        let mut h = x.clone();
        for l in 0..self.cfg.levels {
            h = run(&self.enc[l], h)?;
            if l + 1 < self.cfg.levels {
                skips.push(h.clone());
                h = act.apply(&self.down[l].forward(&h)?)?;
            }
        }
        for l in (0..self.cfg.levels - 1).rev() {
            let u = act.apply(&self.up[l].forward(&h)?)?;
            let s = &skips[l];
            let merged = match self.cfg.bypass {
                Bypass::None => u,
                Bypass::Concat => Tensor::cat(&[s, &u], 1)?,
                Bypass::Add => (s + u)?,
            };
            h = run(&self.dec[l], merged)?;
        }
        let y = self.head.forward(&h)?;
        if self.cfg.crop > 0 {
            crop_center(&y, self.cfg.crop)
        } else {
            Ok(y)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{directional_fd_check, maxdiff, rand_t};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn wu2021_preset_maps_32_to_3x20_with_15_convs_and_2_deconvs() {
        let cfg = UNetConfig::wu2021();
        assert_eq!(cfg.layer_counts(), (15, 2));
        assert_eq!(cfg.output_side(32).unwrap(), 20);
        // A narrow copy runs a 32³ input quickly and checks the shapes.
        let cfg = UNetConfig { width: 2, ..cfg };
        let vm = VarMap::new();
        let net = UNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let y = net
            .forward(&Tensor::zeros((1, 1, 32, 32, 32), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(y.dims(), &[1, 3, 20, 20, 20]);
        assert!(matches!(
            net.forward(&Tensor::zeros((1, 1, 30, 32, 32), DType::F32, &Device::Cpu).unwrap()),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            UNet::new(
                &UNetConfig {
                    convs: vec![1, 1],
                    ..UNetConfig::wu2021()
                },
                VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)
            ),
            Err(Error::Config { field: "convs", .. })
        ));
    }

    /// A two-level U-net of width 2 with one convolution per level and 3 output channels.
    fn tiny(in_channels: usize, norm: Norm, activation: Activation, bypass: Bypass, padding: Padding, crop: usize) -> UNetConfig {
        UNetConfig {
            in_channels,
            out_channels: 3,
            levels: 2,
            width: 2,
            convs: vec![1, 1],
            norm,
            activation,
            bypass,
            padding,
            crop,
        }
    }

    #[test]
    fn unet_gradients_match_finite_differences_f64() {
        // Every combination of norm, bypass and padding that changes the graph, tiny widths.
        let cases = [
            (Norm::None, Bypass::Concat, Padding::Periodic, 0),
            (Norm::Instance, Bypass::Add, Padding::Zero, 1),
            (Norm::None, Bypass::None, Padding::Zero, 2),
        ];
        for (norm, bypass, padding, crop) in cases {
            let cfg = tiny(2, norm, Activation::Tanh, bypass, padding, crop);
            let vm = VarMap::new();
            let net = UNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
            let x = rand_t(&[1, 2, 8, 8, 8], 11);
            let side = cfg.output_side(8).unwrap();
            let r = rand_t(&[1, 3, side, side, side], 12);
            directional_fd_check(
                &vm,
                &x,
                |x| net.forward(x).unwrap(),
                &r,
                1e-6,
                &format!("{norm:?}/{bypass:?}/{padding:?}"),
            );
        }
    }

    #[test]
    fn periodic_unet_is_equivariant_to_shifts_by_the_coarsest_cell() {
        let cfg = tiny(1, Norm::None, Activation::Relu, Bypass::Concat, Padding::Periodic, 0);
        let vm = VarMap::new();
        let net = UNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
        let x = rand_t(&[1, 1, 8, 8, 8], 13);
        let roll = |t: &Tensor| t.roll(2, 2).unwrap().roll(-4, 3).unwrap();
        let a = net.forward(&roll(&x)).unwrap();
        let b = roll(&net.forward(&x).unwrap());
        let d = maxdiff(&a, &b);
        assert!(d <= 1e-12, "shift equivariance broken by {d}");
    }
}
