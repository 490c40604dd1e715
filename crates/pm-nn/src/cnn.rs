//! A CNN regression head that estimates parameters such as (Ω_m, σ_8) from a 3D field
//! (Pan et al. 2020): k = 3 conv blocks with stride 2 and periodic padding, channels e.g.
//! 32-64-64-128, global average pooling over the voxels, then an MLP to the outputs.
//!
//! Each stride-2 block maps side n to ⌈n/2⌉; the pooled vector has the last stage's width. The
//! MLP is linear → activation → … → linear (no activation on the outputs, which are meant to be
//! standardised parameters). Gradients are candle's autograd over the custom conv ops.

use crate::error::{Error, Result};
use crate::layers::{Activation, ConvBlock, Norm, Padding};
use candle_core::{Module, Tensor};
use serde::{Deserialize, Serialize};

/// Architecture of a [`Cnn`]; stored in weight files (see `weights`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Input channels (1 for a density field).
    pub in_channels: usize,
    /// Width of each stride-2 conv stage.
    pub channels: Vec<usize>,
    /// Hidden widths of the MLP after pooling.
    pub hidden: Vec<usize>,
    /// Number of outputs (2 for (Ω_m, σ_8)).
    pub outputs: usize,
    /// Normalisation after each conv.
    pub norm: Norm,
    /// Activation after each conv and hidden layer.
    pub activation: Activation,
    /// Input side the preset was designed for (documentation and checks of the presets; any side
    /// ≥ 2 works).
    pub input_side: usize,
}

impl CnnConfig {
    /// Preset for 60³ inputs: conv 32-64-64-128 with stride 2 (60 → 30 → 15 → 8 → 4), global
    /// average pooling, MLP 128 → 64 → 2.
    pub fn pan2020_60() -> Self {
        Self {
            in_channels: 1,
            channels: vec![32, 64, 64, 128],
            hidden: vec![64],
            outputs: 2,
            norm: Norm::None,
            activation: Activation::LeakyRelu,
            input_side: 60,
        }
    }

    /// Preset for 128³ inputs: a 16-channel stride-2 stem then conv 32-64-64-128 with stride 2
    /// (128 → 64 → 32 → 16 → 8 → 4), global average pooling, MLP 128 → 64 → 2.
    pub fn pan2020_128() -> Self {
        Self {
            channels: vec![16, 32, 64, 64, 128],
            input_side: 128,
            ..Self::pan2020_60()
        }
    }

    /// Checks the fields; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.outputs == 0 {
            return Err(Error::Config {
                field: "in_channels/outputs",
                value: format!("{}/{}", self.in_channels, self.outputs),
                expected: "at least 1".into(),
            });
        }
        if self.channels.is_empty() || self.channels.contains(&0) {
            return Err(Error::Config {
                field: "channels",
                value: format!("{:?}", self.channels),
                expected: "at least one stage, each ≥ 1 channel".into(),
            });
        }
        if self.hidden.contains(&0) {
            return Err(Error::Config {
                field: "hidden",
                value: format!("{:?}", self.hidden),
                expected: "hidden widths ≥ 1".into(),
            });
        }
        Ok(())
    }

    /// Spatial side after the conv stages for an input side `n`.
    pub fn pooled_side(&self, n: usize) -> usize {
        self.channels.iter().fold(n, |n, _| n.div_ceil(2))
    }
}

/// The CNN head (module header).
#[derive(Clone, Debug)]
pub struct Cnn {
    cfg: CnnConfig,
    convs: Vec<ConvBlock>,
    mlp: Vec<candle_nn::Linear>,
}

impl Cnn {
    /// Builds the network; weights named `conv{i}` and `mlp{j}`.
    pub fn new(cfg: &CnnConfig, vb: candle_nn::VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let mut convs = Vec::new();
        let mut cin = cfg.in_channels;
        for (i, &c) in cfg.channels.iter().enumerate() {
            convs.push(ConvBlock::new(
                cin,
                c,
                3,
                2,
                Padding::Periodic,
                cfg.norm,
                Some(cfg.activation),
                vb.pp(format!("conv{i}")),
            )?);
            cin = c;
        }
        let mut mlp = Vec::new();
        for (j, &h) in cfg.hidden.iter().chain(std::iter::once(&cfg.outputs)).enumerate() {
            mlp.push(candle_nn::linear(cin, h, vb.pp(format!("mlp{j}")))?);
            cin = h;
        }
        Ok(Self {
            cfg: cfg.clone(),
            convs,
            mlp,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &CnnConfig {
        &self.cfg
    }

    /// Maps N×C_in×D×H×W (each side ≥ 2) to N×outputs.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 5 || x.dims()[1] != self.cfg.in_channels || x.dims()[2..].iter().any(|&n| n < 2) {
            return Err(Error::Shape {
                what: "CNN input",
                got: format!("{:?}", x.dims()),
                expected: format!("N×{}×D×H×W with sides ≥ 2", self.cfg.in_channels),
            });
        }
        let mut h = x.clone();
        for c in &self.convs {
            h = c.forward(&h)?;
        }
        let d = h.dims().to_vec();
        let mut v = h.reshape((d[0], d[1], ()))?.mean(2)?;
        for (j, l) in self.mlp.iter().enumerate() {
            v = l.forward(&v)?;
            if j + 1 < self.mlp.len() {
                v = self.cfg.activation.apply(&v)?;
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{directional_fd_check, maxdiff, rand_t};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn presets_pool_to_4_cubed_and_give_two_outputs() {
        assert_eq!(CnnConfig::pan2020_60().pooled_side(60), 4);
        assert_eq!(CnnConfig::pan2020_128().pooled_side(128), 4);
        // Narrow copy of the 60³ preset on a 60³ input: output shape.
        let cfg = CnnConfig {
            channels: vec![2, 2, 2, 2],
            hidden: vec![4],
            ..CnnConfig::pan2020_60()
        };
        let vm = VarMap::new();
        let net = Cnn::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let y = net
            .forward(&Tensor::zeros((2, 1, 60, 60, 60), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(y.dims(), &[2, 2]);
        assert!(matches!(
            net.forward(&Tensor::zeros((2, 2, 8, 8, 8), DType::F32, &Device::Cpu).unwrap()),
            Err(Error::Shape { .. })
        ));
        let bad = CnnConfig {
            hidden: vec![0],
            ..CnnConfig::pan2020_60()
        };
        assert!(matches!(
            Cnn::new(&bad, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)),
            Err(Error::Config { field: "hidden", .. })
        ));
    }

    #[test]
    fn cnn_gradients_match_finite_differences_f64() {
        for norm in [Norm::None, Norm::Instance] {
            let cfg = CnnConfig {
                in_channels: 1,
                channels: vec![2, 3],
                hidden: vec![4],
                outputs: 2,
                norm,
                activation: Activation::Tanh,
                input_side: 9,
            };
            let vm = VarMap::new();
            let net = Cnn::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
            let x = rand_t(&[2, 1, 9, 8, 10], 21);
            let r = rand_t(&[2, 2], 22);
            directional_fd_check(&vm, &x, |x| net.forward(x).unwrap(), &r, 1e-6, &format!("cnn {norm:?}"));
        }
    }

    #[test]
    fn cnn_is_invariant_to_shifts_by_its_total_stride() {
        let cfg = CnnConfig {
            in_channels: 1,
            channels: vec![2, 3],
            hidden: vec![4],
            outputs: 2,
            norm: Norm::None,
            activation: Activation::Relu,
            input_side: 8,
        };
        let vm = VarMap::new();
        let net = Cnn::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
        let x = rand_t(&[1, 1, 8, 8, 8], 23);
        let a = net.forward(&x.roll(4, 2).unwrap().roll(-4, 4).unwrap()).unwrap();
        let b = net.forward(&x).unwrap();
        let d = maxdiff(&a, &b);
        assert!(d <= 1e-12, "{d}");
    }
}
