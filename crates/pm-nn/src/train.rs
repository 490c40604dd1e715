//! A generic training loop: candle-nn's AdamW on the variables of a [`VarMap`], a seeded
//! train/validation split and per-epoch shuffling, safetensors checkpoints that a later run
//! resumes, and an indicatif progress bar showing the loss.
//!
//! The loop does not know where gradients come from: a [`Task`] returns the mean loss of a batch
//! and a [`GradStore`] for the trained variables, either from candle's reverse mode
//! ([`backward`]) or from elsewhere, e.g. the simulation's adjoint (pm-adjoint's `force_params`
//! or [`crate::bridge::NetLoss::weight_grads`]) turned into a store by [`grad_store`].
//!
//! **Determinism.** The split and the order of every epoch are functions of (`seed`, epoch)
//! alone (a counter-based generator, `pm_core::noise::uniform`), so a resumed run sees the same
//! batches as an uninterrupted one. candle-nn's AdamW keeps its moment estimates private: a
//! resumed run restarts them from zero (the weights, the epoch count and the loss history are
//! restored exactly).
//!
//! **Learning rate**: `adamw.lr` at every step, or a cosine decay over the run's optimiser steps
//! ([`LrSchedule`]).
//!
//! **Checkpoint format**: one safetensors file with every variable under its [`VarMap`] name and
//! the header metadata `cosmograd.train.epoch` (epochs done), `cosmograd.train.seed` and
//! `cosmograd.train.history` (one `epoch train_loss val_loss` line per epoch).

use crate::error::{Error, Result};
pub use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A training problem: samples `0..len()`, a batch loss with gradients, a batch loss without.
pub trait Task {
    /// Number of samples (train and validation together).
    fn len(&self) -> usize;
    /// True without samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Mean loss over the samples `batch` and its gradient with respect to the trained variables.
    fn loss_and_grads(&mut self, batch: &[usize]) -> Result<(f64, GradStore)>;
    /// Mean loss over the samples `batch` (validation; no gradient needed).
    fn loss(&mut self, batch: &[usize]) -> Result<f64>;
}

/// The value of a scalar loss tensor and its gradients by candle's reverse mode.
pub fn backward(loss: &Tensor) -> Result<(f64, GradStore)> {
    let v = loss.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
    if v.len() != 1 {
        return Err(Error::Shape {
            what: "training loss",
            got: format!("shape {:?}", loss.dims()),
            expected: "a scalar".into(),
        });
    }
    Ok((v[0], loss.backward()?))
}

/// A [`GradStore`] holding `grads[i]` as the gradient of `vars[i]`, for gradients computed outside
/// candle (the simulation's adjoint). Built as the reverse pass of the surrogate `Σ_i ⟨v_i, g_i⟩`,
/// whose gradient with respect to `v_i` is exactly `g_i`.
pub fn grad_store(vars: &[Var], grads: &[Tensor]) -> Result<GradStore> {
    if vars.len() != grads.len() {
        return Err(Error::Shape {
            what: "gradients",
            got: format!("{} tensors", grads.len()),
            expected: format!("{} (one per variable)", vars.len()),
        });
    }
    let mut total: Option<Tensor> = None;
    for (v, g) in vars.iter().zip(grads) {
        if v.shape() != g.shape() {
            return Err(Error::Shape {
                what: "gradient",
                got: format!("shape {:?}", g.dims()),
                expected: format!("shape {:?} of its variable", v.dims()),
            });
        }
        let term = (v.as_tensor() * g.detach().to_dtype(v.dtype())?)?.sum_all()?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    match total {
        Some(t) => Ok(t.backward()?),
        None => Err(Error::invalid("vars", "none", "at least one variable")),
    }
}

/// [`grad_store`] from one flat f64 gradient (variables in order, each row-major), e.g. a force
/// correction's `force_params`.
pub fn grad_store_flat(vars: &[Var], flat: &[f64]) -> Result<GradStore> {
    let n: usize = vars.iter().map(|v| v.elem_count()).sum();
    if flat.len() != n {
        return Err(Error::Shape {
            what: "flat gradient",
            got: format!("{} values", flat.len()),
            expected: format!("{n} (the variables' element count)"),
        });
    }
    let mut off = 0;
    let grads = vars
        .iter()
        .map(|v| {
            let k = v.elem_count();
            let t = Tensor::from_slice(&flat[off..off + k], v.shape(), v.device());
            off += k;
            t
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    grad_store(vars, &grads)
}

/// What to do with a checkpoint file that exists when training starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Existing {
    /// Refuse with an error (nothing written by the user is overwritten without asking).
    #[default]
    Refuse,
    /// Load it and continue from its epoch.
    Resume,
    /// Start from scratch and overwrite it.
    Overwrite,
}

/// How the learning rate changes over the optimiser steps of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrSchedule {
    /// `adamw.lr` at every step.
    #[default]
    Constant,
    /// Cosine decay from `adamw.lr` towards 0: lr_t = lr · ½ (1 + cos(π t / T)) at step
    /// t = 0, 1, …, T − 1 of the run, T = epochs × batches per epoch. t counts the steps of the
    /// epochs restored from a checkpoint: a run interrupted and resumed with the same settings
    /// follows the curve of an uninterrupted one.
    Cosine,
}

impl LrSchedule {
    /// The learning rate of step `t` of `total` for the base rate `lr`.
    pub fn lr(self, lr: f64, t: usize, total: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos()),
        }
    }
}

/// Training settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TrainConfig {
    /// Epochs to reach (a resumed run continues up to this total). Default 10.
    pub epochs: usize,
    /// Samples per optimiser step (the last batch of an epoch may be smaller). Default 8.
    pub batch_size: usize,
    /// AdamW settings (learning rate, betas, ε, weight decay).
    pub adamw: ParamsAdamW,
    /// How the learning rate changes from step to step. Default [`LrSchedule::Constant`].
    pub lr_schedule: LrSchedule,
    /// Fraction of the samples held out for validation, in [0, 1). Default 0.2.
    pub val_fraction: f64,
    /// Seed of the split and of the per-epoch shuffling. Default 0.
    pub seed: u64,
    /// Checkpoint file (safetensors), written every `checkpoint_every` epochs and at the end.
    pub checkpoint: Option<PathBuf>,
    /// Epochs between checkpoints (≥ 1). Default 1.
    pub checkpoint_every: usize,
    /// What to do when the checkpoint file exists.
    pub existing: Existing,
    /// Show a progress bar (on stderr) with the running loss.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 8,
            adamw: ParamsAdamW::default(),
            lr_schedule: LrSchedule::Constant,
            val_fraction: 0.2,
            seed: 0,
            checkpoint: None,
            checkpoint_every: 1,
            existing: Existing::Refuse,
            progress: false,
        }
    }
}

impl TrainConfig {
    /// Checks every field; the error names the field and what is accepted.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("train.epochs", 0, "at least 1 epoch"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("train.batch_size", 0, "at least 1 sample per batch"));
        }
        if !(self.val_fraction >= 0.0 && self.val_fraction < 1.0) {
            return Err(Error::invalid("train.val_fraction", self.val_fraction, "a fraction in [0, 1)"));
        }
        if self.checkpoint_every == 0 {
            return Err(Error::invalid("train.checkpoint_every", 0, "at least 1 epoch"));
        }
        let lr = self.adamw.lr;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::invalid("train.adamw.lr", lr, "a finite learning rate > 0"));
        }
        Ok(())
    }
}

/// Losses of one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size), measured during
    /// the epoch (before each step).
    pub train_loss: f64,
    /// Mean validation loss after the epoch (NaN without validation samples).
    pub val_loss: f64,
}

/// What [`train`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// Per-epoch losses, from epoch 1 (including epochs restored from a checkpoint).
    pub history: Vec<EpochStats>,
    /// Epoch restored from the checkpoint (0 when starting from scratch).
    pub resumed_from: usize,
    /// The training sample indices.
    pub train_idx: Vec<usize>,
    /// The validation sample indices.
    pub val_idx: Vec<usize>,
}

/// A permutation of `0..n` from (`seed`, `stream`) (Fisher–Yates with a counter-based generator).
pub fn permutation(n: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    let key = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x7472_6169_6e00;
    for i in (1..n).rev() {
        let j = (pm_core::noise::uniform(key, i as u64) * (i + 1) as f64) as usize;
        p.swap(i, j.min(i));
    }
    p
}

/// The train/validation split of `n` samples: the last ⌊n·`val_fraction`⌋ (at least 1 when the
/// fraction is > 0 and n ≥ 2) of a seeded permutation are validation samples.
pub fn split(n: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let p = permutation(n, seed, 0);
    let mut n_val = (n as f64 * val_fraction).floor() as usize;
    if val_fraction > 0.0 && n >= 2 {
        n_val = n_val.max(1);
    }
    let n_val = n_val.min(n.saturating_sub(1));
    let (t, v) = p.split_at(n - n_val);
    (t.to_vec(), v.to_vec())
}

const KEY_EPOCH: &str = "cosmograd.train.epoch";
const KEY_SEED: &str = "cosmograd.train.seed";
const KEY_HISTORY: &str = "cosmograd.train.history";

/// Writes the variables of `varmap` and the training state to `path` (via a temporary file
/// renamed into place, so an interrupted write leaves the previous checkpoint intact).
pub fn save_checkpoint(path: &Path, varmap: &VarMap, seed: u64, history: &[EpochStats]) -> Result<()> {
    let data = varmap.data().lock().expect("VarMap lock");
    let tensors: Vec<(String, Tensor)> = data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    drop(data);
    let mut meta = HashMap::new();
    meta.insert(KEY_EPOCH.to_string(), history.len().to_string());
    meta.insert(KEY_SEED.to_string(), seed.to_string());
    let hist: Vec<String> = history
        .iter()
        .map(|s| format!("{} {:e} {:e}", s.epoch, s.train_loss, s.val_loss))
        .collect();
    meta.insert(KEY_HISTORY.to_string(), hist.join("\n"));
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::tensor::serialize_to_file(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(meta), &tmp)
        .map_err(|e| Error::file(&tmp, format!("cannot write the checkpoint: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::file(path, format!("cannot move the checkpoint into place: {e}")))
}

/// Loads a checkpoint written by [`save_checkpoint`] into `varmap` (every variable of the map
/// must be in the file with the same shape) and returns (seed, history).
pub fn load_checkpoint(path: &Path, varmap: &VarMap) -> Result<(u64, Vec<EpochStats>)> {
    let buf = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read the checkpoint: {e}")))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&buf).map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| Error::file(path, format!("no `{k}` in the header: not a training checkpoint")))
    };
    let seed: u64 = field(KEY_SEED)?
        .parse()
        .map_err(|e| Error::file(path, format!("bad `{KEY_SEED}`: {e}")))?;
    let n_epochs: usize = field(KEY_EPOCH)?
        .parse()
        .map_err(|e| Error::file(path, format!("bad `{KEY_EPOCH}`: {e}")))?;
    let mut history = Vec::new();
    for line in field(KEY_HISTORY)?.lines().filter(|l| !l.trim().is_empty()) {
        let v: Vec<&str> = line.split_whitespace().collect();
        let parsed = (v.len() == 3)
            .then(|| Some((v[0].parse().ok()?, v[1].parse().ok()?, v[2].parse().ok()?)))
            .flatten();
        let (epoch, train_loss, val_loss) =
            parsed.ok_or_else(|| Error::file(path, format!("bad history line `{line}` in `{KEY_HISTORY}`")))?;
        history.push(EpochStats {
            epoch,
            train_loss,
            val_loss,
        });
    }
    if history.len() != n_epochs {
        return Err(Error::file(
            path,
            format!("`{KEY_EPOCH}` = {n_epochs} but the history has {} epochs", history.len()),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&buf, &candle_core::Device::Cpu)?;
    let data = varmap.data().lock().expect("VarMap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let t = tensors
            .get(name)
            .ok_or_else(|| Error::file(path, format!("no tensor `{name}`: the checkpoint is of another network")))?;
        if t.dims() != var.dims() {
            return Err(Error::file(
                path,
                format!("tensor `{name}` has shape {:?}, the network expects {:?}", t.dims(), var.dims()),
            ));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok((seed, history))
}

/// Trains the variables of `varmap` on `task` with AdamW (module docs): per epoch, the training
/// samples in a seeded order, one optimiser step per batch, then the validation loss; a
/// checkpoint every `checkpoint_every` epochs and after the last.
///
/// # Errors
/// Invalid settings, a task with fewer than 1 training sample, an existing checkpoint with
/// [`Existing::Refuse`], a checkpoint of another seed or network, a non-finite loss (with the
/// epoch and a hint), and the task's own errors.
pub fn train<M: Task + ?Sized>(task: &mut M, varmap: &VarMap, config: &TrainConfig) -> Result<TrainReport> {
    config.validate()?;
    let n = task.len();
    if n == 0 {
        return Err(Error::invalid("task", "0 samples", "at least 1 sample"));
    }
    let (train_idx, val_idx) = split(n, config.val_fraction, config.seed);
    let mut history = Vec::new();
    if let Some(path) = &config.checkpoint {
        if path.exists() {
            match config.existing {
                Existing::Refuse => {
                    return Err(Error::file(
                        path,
                        "the checkpoint exists: resume from it (Existing::Resume, CLI --resume) or overwrite it (Existing::Overwrite, CLI --force)",
                    ))
                }
                Existing::Resume => {
                    let (seed, h) = load_checkpoint(path, varmap)?;
                    if seed != config.seed {
                        return Err(Error::invalid(
                            "train.seed",
                            config.seed,
                            format!("the seed of the checkpoint being resumed ({seed}), or a fresh run"),
                        ));
                    }
                    history = h;
                }
                Existing::Overwrite => {}
            }
        }
    }
    let resumed_from = history.len();
    // AdamW updates each variable independently: the map's (hash) order does not matter.
    let mut opt = AdamW::new(varmap.all_vars(), config.adamw.clone())?;
    let n_batches = train_idx.len().div_ceil(config.batch_size);
    let bar = if config.progress {
        let b = ProgressBar::new(((config.epochs.saturating_sub(resumed_from)) * n_batches) as u64);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} batches {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    for epoch in resumed_from + 1..=config.epochs {
        let order = permutation(train_idx.len(), config.seed, epoch as u64);
        let (mut sum, mut count) = (0.0f64, 0usize);
        for (b, chunk) in order.chunks(config.batch_size).enumerate() {
            let batch: Vec<usize> = chunk.iter().map(|&i| train_idx[i]).collect();
            if config.lr_schedule != LrSchedule::Constant {
                let step = (epoch - 1) * n_batches + b;
                opt.set_learning_rate(config.lr_schedule.lr(config.adamw.lr, step, config.epochs * n_batches));
            }
            let (loss, grads) = task.loss_and_grads(&batch)?;
            if !loss.is_finite() {
                return Err(Error::NonFinite {
                    what: "training loss".into(),
                    detail: format!("{loss} in epoch {epoch}; lower train.adamw.lr or check the data"),
                });
            }
            opt.step(&grads)?;
            sum += loss * batch.len() as f64;
            count += batch.len();
            bar.inc(1);
            bar.set_message(format!("epoch {epoch}: loss {:.4e}", sum / count as f64));
        }
        let val_loss = if val_idx.is_empty() {
            f64::NAN
        } else {
            let mut s = 0.0;
            for chunk in val_idx.chunks(config.batch_size) {
                s += task.loss(chunk)? * chunk.len() as f64;
            }
            s / val_idx.len() as f64
        };
        history.push(EpochStats {
            epoch,
            train_loss: sum / count as f64,
            val_loss,
        });
        bar.set_message(format!("epoch {epoch}: loss {:.4e}, val {val_loss:.4e}", sum / count as f64));
        if let Some(path) = &config.checkpoint {
            if epoch % config.checkpoint_every == 0 || epoch == config.epochs {
                save_checkpoint(path, varmap, config.seed, &history)?;
            }
        }
    }
    bar.finish_and_clear();
    Ok(TrainReport {
        history,
        resumed_from,
        train_idx,
        val_idx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Linear regression y = X·w* + 0.01·noise, 40 samples of 3 features; the model is w (3 × 1)
    /// starting at zero, the loss the batch mean squared error.
    struct Regression {
        x: Tensor,
        y: Tensor,
        w: Var,
    }

    impl Regression {
        fn new(varmap: &VarMap) -> Regression {
            let dev = Device::Cpu;
            let xs: Vec<f64> = (0..120).map(|i| pm_core::noise::gaussian(5, i)).collect();
            let w_true = [1.5, -2.0, 0.5];
            let ys: Vec<f64> = (0..40)
                .map(|s| (0..3).map(|d| xs[3 * s + d] * w_true[d]).sum::<f64>() + 0.01 * pm_core::noise::gaussian(6, s as u64))
                .collect();
            let w = Var::zeros((3, 1), DType::F64, &dev).unwrap();
            varmap.data().lock().unwrap().insert("w".into(), w.clone());
            Regression {
                x: Tensor::from_vec(xs, (40, 3), &dev).unwrap(),
                y: Tensor::from_vec(ys, (40, 1), &dev).unwrap(),
                w,
            }
        }
        fn batch_loss(&self, batch: &[usize]) -> Result<Tensor> {
            let idx = Tensor::from_vec(batch.iter().map(|&i| i as u32).collect::<Vec<_>>(), batch.len(), &Device::Cpu)?;
            let (x, y) = (self.x.index_select(&idx, 0)?, self.y.index_select(&idx, 0)?);
            Ok((x.matmul(self.w.as_tensor())? - y)?.sqr()?.mean_all()?)
        }
        fn w(&self) -> Vec<f64> {
            self.w.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
        }
    }

    impl Task for Regression {
        fn len(&self) -> usize {
            40
        }
        fn loss_and_grads(&mut self, batch: &[usize]) -> Result<(f64, GradStore)> {
            backward(&self.batch_loss(batch)?)
        }
        fn loss(&mut self, batch: &[usize]) -> Result<f64> {
            Ok(self.batch_loss(batch)?.to_scalar::<f64>()?)
        }
    }

    fn config(epochs: usize, path: Option<PathBuf>) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: 8,
            adamw: ParamsAdamW {
                lr: 0.1,
                weight_decay: 0.0,
                ..Default::default()
            },
            checkpoint: path,
            ..Default::default()
        }
    }

    #[test]
    fn split_and_shuffle_are_seeded_permutations() {
        let (t, v) = split(40, 0.2, 3);
        assert_eq!((t.len(), v.len()), (32, 8));
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        assert_eq!(split(40, 0.2, 3), (t.clone(), v));
        assert_ne!(split(40, 0.2, 4).0, t);
        assert_ne!(permutation(32, 3, 1), permutation(32, 3, 2));
        assert_eq!(split(5, 0.01, 0).1.len(), 1);
        assert_eq!(split(1, 0.5, 0).1.len(), 0);
    }

    #[test]
    fn the_loss_drops_and_training_is_deterministic() {
        let vm = VarMap::new();
        let mut task = Regression::new(&vm);
        let r = train(&mut task, &vm, &config(30, None)).unwrap();
        let first = r.history[0].val_loss;
        let last = r.history.last().unwrap().val_loss;
        eprintln!("validation loss: epoch 1 {first:.3e}, epoch 30 {last:.3e}; w = {:?}", task.w());
        assert!(last < 2e-2 * first, "validation loss fell only from {first:.3e} to {last:.3e}");
        let (t0, t1) = (r.history[0].train_loss, r.history.last().unwrap().train_loss);
        assert!(t1 < 2e-2 * t0, "training loss fell only from {t0:.3e} to {t1:.3e}");
        let vm2 = VarMap::new();
        let mut task2 = Regression::new(&vm2);
        train(&mut task2, &vm2, &config(30, None)).unwrap();
        assert_eq!(task.w(), task2.w(), "same seed, same bits");
    }

    #[test]
    fn cosine_schedule_decays_the_learning_rate_to_zero() {
        let (lr, total) = (0.1, 10);
        assert_eq!(LrSchedule::Constant.lr(lr, 7, total), lr);
        assert_eq!(LrSchedule::Cosine.lr(lr, 0, total), lr);
        assert!((LrSchedule::Cosine.lr(lr, 5, total) - 0.05).abs() < 1e-15);
        let lrs: Vec<f64> = (0..total).map(|t| LrSchedule::Cosine.lr(lr, t, total)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]), "{lrs:?}");
        assert!(lrs[total - 1] > 0.0 && lrs[total - 1] < 0.03 * lr);
        // In training, on a loss whose gradient is 1 (AdamW's step is then lr_t, up to its ε):
        // the weight moves by Σ_t lr_t = lr (T + 1)/2 over T steps (Σ_t cos(πt/T) = 1), and a
        // resumed run continues the same curve.
        let dir = std::env::temp_dir().join(format!("pm_nn_cosine_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ckpt.safetensors");
        let run = |fail_at: Option<usize>, existing: Existing| {
            let vm = VarMap::new();
            let mut task = Slope::new(&vm, fail_at);
            let mut c = config(total, Some(path.clone()));
            (c.val_fraction, c.lr_schedule, c.existing) = (0.0, LrSchedule::Cosine, existing);
            let r = train(&mut task, &vm, &c);
            assert_eq!(r.is_err(), fail_at.is_some());
            task.w()
        };
        let w = run(None, Existing::Overwrite);
        assert!((w + lr * (total + 1) as f64 / 2.0).abs() < 1e-6, "{w}");
        run(Some(4), Existing::Overwrite); // interrupted in step 4: epochs 1–4 checkpointed
        let resumed = run(None, Existing::Resume);
        assert!((resumed - w).abs() < 1e-12, "resumed {resumed} vs {w}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// loss = w for one weight w (gradient 1), 8 samples; w starts at 0. Fails in step
    /// `fail_at` (0-based) when given, as an interrupted run.
    struct Slope {
        w: Var,
        fail_at: Option<usize>,
        step: usize,
    }

    impl Slope {
        fn new(varmap: &VarMap, fail_at: Option<usize>) -> Slope {
            let w = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
            varmap.data().lock().unwrap().insert("w".into(), w.clone());
            Slope { w, fail_at, step: 0 }
        }
        fn w(&self) -> f64 {
            self.w.as_tensor().to_vec1::<f64>().unwrap()[0]
        }
    }

    impl Task for Slope {
        fn len(&self) -> usize {
            8
        }
        fn loss_and_grads(&mut self, _batch: &[usize]) -> Result<(f64, GradStore)> {
            if self.fail_at == Some(self.step) {
                return Err(Error::invalid("step", self.step, "an uninterrupted run"));
            }
            self.step += 1;
            backward(&self.w.as_tensor().sum_all()?)
        }
        fn loss(&mut self, _batch: &[usize]) -> Result<f64> {
            Ok(self.w())
        }
    }

    #[test]
    fn checkpoints_round_trip_and_resume() {
        let dir = std::env::temp_dir().join(format!("pm_nn_train_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ckpt.safetensors");
        let _ = std::fs::remove_file(&path);
        let vm = VarMap::new();
        let mut task = Regression::new(&vm);
        let r1 = train(&mut task, &vm, &config(3, Some(path.clone()))).unwrap();
        assert_eq!(r1.history.len(), 3);
        // The file holds the weights and the history.
        let vm_b = VarMap::new();
        let task_b = Regression::new(&vm_b);
        let (seed, h) = load_checkpoint(&path, &vm_b).unwrap();
        assert_eq!((seed, &h), (0, &r1.history));
        assert_eq!(task_b.w(), task.w(), "weights round trip bitwise");
        // An existing checkpoint is not overwritten without asking.
        let e = train(&mut task, &vm, &config(5, Some(path.clone()))).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        // Resume to 6 epochs: epochs 4–6 run, the loss keeps falling.
        let vm_c = VarMap::new();
        let mut task_c = Regression::new(&vm_c);
        let mut c = config(6, Some(path.clone()));
        c.existing = Existing::Resume;
        let r2 = train(&mut task_c, &vm_c, &c).unwrap();
        assert_eq!(r2.resumed_from, 3);
        assert_eq!(&r2.history[..3], &r1.history[..]);
        assert_eq!(r2.history.len(), 6);
        assert!(r2.history[5].val_loss < r1.history[2].val_loss);
        // Another seed or another network is refused.
        let mut c2 = c.clone();
        c2.seed = 9;
        let e = train(&mut Regression::new(&VarMap::new()), &VarMap::new(), &c2);
        assert!(e.is_err());
        let vm_d = VarMap::new();
        vm_d.data()
            .lock()
            .unwrap()
            .insert("w".into(), Var::zeros((4, 1), DType::F64, &Device::Cpu).unwrap());
        let e = load_checkpoint(&path, &vm_d).unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn external_gradients_become_a_grad_store() {
        let v = Var::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let u = Var::new(&[5.0f64], &Device::Cpu).unwrap();
        let gs = grad_store_flat(&[v.clone(), u.clone()], &[0.1, 0.2, 0.3, 0.4, -1.0]).unwrap();
        let gv: Vec<f64> = gs.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(gv, vec![0.1, 0.2, 0.3, 0.4]);
        assert_eq!(gs.get(u.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), vec![-1.0]);
        assert!(grad_store_flat(&[v], &[0.0; 3]).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        let vm = VarMap::new();
        let mut task = Regression::new(&vm);
        for (c, field) in [
            (
                TrainConfig {
                    epochs: 0,
                    ..config(1, None)
                },
                "train.epochs",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..config(1, None)
                },
                "train.batch_size",
            ),
            (
                TrainConfig {
                    val_fraction: 1.0,
                    ..config(1, None)
                },
                "train.val_fraction",
            ),
            (
                TrainConfig {
                    checkpoint_every: 0,
                    ..config(1, None)
                },
                "train.checkpoint_every",
            ),
        ] {
            let e = train(&mut task, &vm, &c).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
