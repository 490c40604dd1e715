//! What every subcommand shares: the options saying where the configuration and white noise come
//! from ([`Input`]) and where the outputs go ([`Output`]), the configuration and thread pool they
//! resolve to, and building a subcommand's options in code ([`parse`], [`defaults`]).
//!
//! Each subcommand's options are one clap [`Args`] struct (`simulate::Options`,
//! `gradient::Options`, `reconstruct::Options`) that flattens these two; their doc comments are
//! the `--help` text.

use clap::{Args, FromArgMatches};
use pm_core::config::Config;
use pm_core::{Error, Result};
use std::io::Write;
use std::path::PathBuf;

/// Where the configuration and the white noise come from (every command).
#[derive(Args, Clone, Debug)]
pub struct Input {
    /// TOML configuration (see docs/config.md); keys left out take the embedded defaults.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// White noise on the particle grid: .npy of shape (n, n, n), float32 or float64, C order
    /// (`gradient` writes ∂L/∂w with the same shape and dtype).
    #[arg(long, value_name = "FILE.npy")]
    pub white_noise: Option<PathBuf>,
    /// Random seed of the white noise when no file is given (overrides run.seed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Where to run: cpu, or cuda (needs a build with --features cuda, an NVIDIA driver and GPU;
    /// see docs/cuda.md).
    #[arg(long, value_name = "cpu|cuda", default_value = "cpu")]
    pub device: pm_core::DeviceKind,
    /// Start even if the run's peak-memory estimate exceeds the memory available (by default
    /// such a run is refused before it allocates anything; see docs/config.md).
    #[arg(long)]
    pub skip_memory_check: bool,
}

impl Input {
    /// Refuses `job` with `config` if its peak-memory estimate exceeds the memory available
    /// ([`crate::memory::check`]), unless `--skip-memory-check`.
    pub fn check_memory(&self, config: &Config, job: crate::memory::Job) -> Result<()> {
        crate::memory::check(config, job, crate::memory::available(), self.skip_memory_check)
    }
}

/// How the backward pass of `gradient` and `reconstruct` recovers the forward trajectory, and the
/// report of how well it did.
#[derive(Args, Clone, Debug, Default)]
pub struct Reversal {
    /// Store the particle state every K steps and restart the reverse integration from each
    /// (bounded reversal error, memory ∝ steps/K). Default: pure reverse integration.
    #[arg(long, value_name = "K")]
    pub checkpoint_every: Option<usize>,
}

impl Reversal {
    /// The recovery of the backward pass; `--checkpoint-every 0` is refused.
    pub fn recover(&self) -> Result<pm_adjoint::Recover> {
        match self.checkpoint_every {
            Some(0) => Err(Error::invalid("--checkpoint-every", 0, "at least 1 step between checkpoints")),
            Some(every) => Ok(pm_adjoint::Recover::Checkpoint { every }),
            None => Ok(pm_adjoint::Recover::Reverse),
        }
    }

    /// Prints the warning of [`pm_adjoint::reversal_warning`] on stderr when `reversal_error`
    /// exceeds [`pm_adjoint::REVERSAL_WARN`] (also with `--quiet`: it concerns the outputs).
    pub fn warn(&self, reversal_error: f64) {
        let recover = self.recover().unwrap_or_default();
        if let Some(w) = pm_adjoint::reversal_warning(reversal_error, recover) {
            let _ = writeln!(std::io::stderr(), "{w}");
        }
    }
}

/// Where the outputs go (every command, after its own options). A command whose directory or
/// `--quiet` differs says so with `mut_arg` on its options struct.
#[derive(Args, Clone, Debug)]
pub struct Output {
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Overwrite the outputs of a different earlier run in DIR.
    #[arg(long)]
    pub force: bool,
    /// No progress bar or summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A subcommand's options from its arguments (without the program and subcommand names), with
/// the command line's defaults and checks, e.g.
/// `parse::<cosmograd::simulate::Options>(["--out", "run1", "--seed", "7"])`.
pub fn parse<A, I, S>(args: I) -> std::result::Result<A, clap::Error>
where
    A: Args + FromArgMatches,
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let command = A::augment_args(clap::Command::new("cosmograd"));
    let matches = command.try_get_matches_from(std::iter::once("cosmograd".into()).chain(args.into_iter().map(Into::into)))?;
    A::from_arg_matches(&matches)
}

/// A subcommand's options as the command line has them when no option is given (every option
/// of every subcommand has a default or is optional).
pub fn defaults<A: Args + FromArgMatches>() -> A {
    parse::<A, _, &str>([]).expect("every option has a default")
}

/// `impl Default for $options` with the command line's defaults ([`defaults`]).
macro_rules! default_from_command_line {
    ($options:ty) => {
        impl Default for $options {
            fn default() -> Self {
                $crate::cli::defaults()
            }
        }
    };
}
pub(crate) use default_from_command_line;

/// Resolves the configuration from the input (file or default, then overrides) and validates it.
/// A CUDA device that cannot be used is an error, before anything is read (docs/cuda.md).
pub fn resolve_config(opts: &Input) -> Result<Config> {
    pm_core::device::require(opts.device, "the PM time loop (simulate, gradient)")?;
    let mut config = match &opts.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = opts.seed {
        config.run.seed = s;
    }
    if let Some(w) = &opts.white_noise {
        let abs = std::path::absolute(w).map_err(|e| Error::file(w, format!("cannot resolve path: {e}")))?;
        config.run.white_noise = Some(abs);
    }
    config.validate()?;
    Ok(config)
}

/// The number of worker threads to start for `run.threads = requested` on a machine with
/// `available` cores (0 = rayon's default, all cores), and the warning to print when it differs.
///
/// More threads than cores only adds overhead and results do not depend on the thread count, so
/// a request above `available` is capped at `available` (docs/config.md, `run.threads`).
pub fn thread_count(requested: usize, available: usize) -> (usize, Option<String>) {
    if requested > available && available > 0 {
        let warning = format!(
            "cosmograd: warning: run.threads = {requested} is more than the {available} cores available; \
             using {available} threads (results do not depend on the thread count)"
        );
        (available, Some(warning))
    } else {
        (requested, None)
    }
}

/// The rayon pool of `run.threads` in which a command runs, capped at the available cores
/// ([`thread_count`]; the one-line warning goes to stderr unless `quiet`).
pub fn thread_pool(config: &Config, quiet: bool) -> Result<rayon::ThreadPool> {
    let available = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (threads, warning) = thread_count(config.run.threads, available);
    if let (Some(w), false) = (warning, quiet) {
        eprintln!("{w}");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::invalid("run.threads", threads, format!("a thread count the system can start ({e})")))
}

/// Writes a summary line to stdout, ignoring a closed or full stdout (`cosmograd simulate | true`,
/// `> /dev/full`): the summary is printed after every output is written, so the run has done its
/// work and ends with exit code 0 ([`say!`] is the `println!` of the subcommands).
pub fn say(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.flush());
}

/// `println!` to stdout through [`say`]: a closed stdout is not an error.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Args, Debug)]
    struct Both {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        output: Output,
    }

    #[test]
    fn defaults_and_parse_follow_the_command_line() {
        let d: Both = defaults();
        assert_eq!(d.output.out, PathBuf::from("out"));
        assert_eq!(d.input.device, pm_core::DeviceKind::Cpu);
        assert!(!d.output.force && !d.output.quiet && d.input.seed.is_none());
        let p: Both = parse(["--seed", "7", "-q", "--out", "x"]).unwrap();
        assert_eq!((p.input.seed, p.output.quiet, p.output.out), (Some(7), true, PathBuf::from("x")));
        assert!(parse::<Both, _, _>(["--no-such-flag"]).is_err());
    }

    #[test]
    fn thread_count_is_capped_at_the_available_cores() {
        assert_eq!(thread_count(0, 8), (0, None), "0 = all cores, left to rayon");
        assert_eq!(thread_count(3, 8), (3, None));
        assert_eq!(thread_count(8, 8), (8, None));
        let (n, warning) = thread_count(1024, 8);
        assert_eq!(n, 8);
        let w = warning.expect("a capped count is reported");
        assert!(w.contains("run.threads = 1024") && w.contains("using 8 threads"), "{w}");
        assert_eq!(w.lines().count(), 1, "{w}");
        // Unknown core count (available_parallelism failed): the request is kept.
        assert_eq!(thread_count(16, 0), (16, None));
    }
}
