//! Pieces shared by the network examples (`velocity_unet`, `param_cnn`): the device, option
//! parsing, the output-directory guard, and their training problem and settings for pm-nn's
//! training loop.

use candle_core::{Device, Tensor};
use candle_nn::ParamsAdamW;
use pm_nn::train::{backward, GradStore, Task, TrainConfig};
use std::path::PathBuf;
use std::time::Instant;

/// The network's device: the first CUDA GPU when built with `--features nn-cuda` and one is
/// present, otherwise the CPU.
pub fn device() -> &'static Device {
    static DEV: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEV.get_or_init(|| Device::cuda_if_available(0).unwrap_or(Device::Cpu))
}

/// The value after `--name` in `args`, parsed (panics with the option's name on a bad value).
pub fn opt<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().ok().unwrap_or_else(|| panic!("{name}: bad value")))
}

/// The example's outputs `DIR/{stem}.txt` and `DIR/{stem}.png`, DIR from `--out` (default
/// `{stem}_out`, created): an error if either exists and `--force` was not given.
pub fn outputs(args: &[String], stem: &str) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let out: PathBuf = opt(args, "--out").unwrap_or_else(|| PathBuf::from(format!("{stem}_out")));
    let force = args.iter().any(|a| a == "--force");
    std::fs::create_dir_all(&out)?;
    let (txt, png) = (out.join(format!("{stem}.txt")), out.join(format!("{stem}.png")));
    if !force && (txt.exists() || png.exists()) {
        return Err(format!("{} or {} exists; pass --force to overwrite", txt.display(), png.display()).into());
    }
    Ok((txt, png))
}

/// pm-nn's training settings shared by the network examples: `epochs` of batches of `batch`
/// samples in an order seeded by `seed`, AdamW with learning rate `lr` and weight decay 10⁻⁴,
/// no validation split (the examples hold their own test boxes out), no checkpoint.
pub fn train_config(epochs: usize, batch: usize, lr: f64, seed: u64) -> TrainConfig {
    let mut c = TrainConfig::default();
    (c.epochs, c.batch_size, c.val_fraction, c.seed) = (epochs, batch, 0.0, seed);
    c.adamw = ParamsAdamW {
        lr,
        weight_decay: 1e-4,
        ..Default::default()
    };
    c
}

/// The network examples' training problem for [`pm_nn::train::train`]: the batch mean squared
/// error of `forward(x)` against `y`, where sample `i` at slot `j` of the batch of optimiser step
/// `step` is `(x, y) = sample(step, j, i)` (so that augmentation can depend on the step). Prints
/// the loss and its running average every `every` steps and at the last of `steps`.
pub struct MseTask<S, F> {
    n: usize,
    steps: usize,
    every: usize,
    sample: S,
    forward: F,
    step: usize,
    running: f64,
    start: Instant,
}

impl<S, F> MseTask<S, F>
where
    S: FnMut(u64, u64, usize) -> pm_nn::Result<(Tensor, Tensor)>,
    F: Fn(&Tensor) -> pm_nn::Result<Tensor>,
{
    /// A task of `n` samples trained for `steps` optimiser steps (the clock starts now).
    pub fn new(n: usize, steps: usize, every: usize, sample: S, forward: F) -> Self {
        MseTask {
            n,
            steps,
            every,
            sample,
            forward,
            step: 0,
            running: 0.0,
            start: Instant::now(),
        }
    }

    fn batch_loss(&mut self, batch: &[usize]) -> pm_nn::Result<Tensor> {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for (j, &i) in batch.iter().enumerate() {
            let (x, y) = (self.sample)(self.step as u64, j as u64, i)?;
            xs.push(x);
            ys.push(y);
        }
        let (x, y) = (Tensor::cat(&xs, 0)?, Tensor::cat(&ys, 0)?);
        Ok(((self.forward)(&x)? - y)?.sqr()?.mean_all()?)
    }
}

impl<S, F> Task for MseTask<S, F>
where
    S: FnMut(u64, u64, usize) -> pm_nn::Result<(Tensor, Tensor)>,
    F: Fn(&Tensor) -> pm_nn::Result<Tensor>,
{
    fn len(&self) -> usize {
        self.n
    }

    fn loss_and_grads(&mut self, batch: &[usize]) -> pm_nn::Result<(f64, GradStore)> {
        let (l, grads) = backward(&self.batch_loss(batch)?)?;
        let it = self.step;
        self.running = if it == 0 { l } else { 0.95 * self.running + 0.05 * l };
        if it % self.every == 0 || it + 1 == self.steps {
            println!(
                "iter {it:5}  loss {l:.4e}  (running {:.4e})  {:.0} s",
                self.running,
                self.start.elapsed().as_secs_f64()
            );
        }
        self.step += 1;
        Ok((l, grads))
    }

    fn loss(&mut self, batch: &[usize]) -> pm_nn::Result<f64> {
        Ok(self.batch_loss(batch)?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
    }
}
