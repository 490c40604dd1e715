//! Pieces shared by the network examples (`velocity_unet`, `param_cnn`): the device, option
//! parsing and the output-directory guard.

use candle_core::Device;
use std::path::PathBuf;

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
