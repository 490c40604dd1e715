//! Helpers shared by the command-line integration tests (`cli.rs`, `reconstruct.rs`): the
//! binary, a small configuration, scratch directories, one run of a subcommand, the bad-input
//! assertion and a minimal `.npy` writer.

#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small, fast configuration (TOML: 16³ particles, 32³ mesh, 64 Mpc/h, 4 steps), with the
/// keys `$time` (a string literal, one `key = value` line each) added to its `[time]` table.
macro_rules! small_config {
    ($time:literal) => {
        concat!("\n[box]\nsize = 64.0\nparticles = 16\nmesh = 32\n[time]\nsteps = 4\n", $time)
    };
}
pub(crate) use small_config;

/// The `cosmograd` binary built for this test run.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cosmograd"))
}

/// A fresh, empty scratch directory `cosmograd-{suite}-{pid}-{name}` in the system temp dir,
/// `suite` the name of the test crate (`cli`, `reconstruct`).
pub fn tmpdir(name: &str) -> PathBuf {
    let suite = env!("CARGO_CRATE_NAME");
    let d = std::env::temp_dir().join(format!("cosmograd-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cosmograd <command> --quiet --out dir/out [--config dir/c.toml] extra…`, writing `cfg`
/// (TOML) to `dir/c.toml` when given.
pub fn run(command: &str, dir: &Path, cfg: Option<&str>, extra: &[&str]) -> Output {
    run_within(command, dir, cfg, extra, RUN_TIMEOUT)
}

/// [`run`], killed and failing the test after `limit`.
pub fn run_within(command: &str, dir: &Path, cfg: Option<&str>, extra: &[&str], limit: std::time::Duration) -> Output {
    let mut cmd = bin();
    cmd.arg(command).arg("--quiet").arg("--out").arg(dir.join("out"));
    if let Some(c) = cfg {
        let p = dir.join("c.toml");
        std::fs::write(&p, c).unwrap();
        cmd.arg("--config").arg(p);
    }
    cmd.args(extra);
    output_within(&mut cmd, limit)
}

/// The longest a single CLI run in the tests may take before it is killed (the ignored
/// default-size bars take minutes; a run blocked on an input must not hang the suite).
pub const RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Runs `cmd` to completion like `Command::output`, but kills it and fails the test if it has
/// not exited within `limit` (e.g. a read blocked on a FIFO). Stdout and stderr are read by
/// threads, so a chatty child cannot block on a full pipe.
#[track_caller]
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    let (mut child, collect) = spawn_piped(cmd);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?} (killed)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    collect(status)
}

/// Starts `cmd` with stdout and stderr read by threads; the closure joins them into an [`Output`].
fn spawn_piped(cmd: &mut Command) -> (std::process::Child, impl FnOnce(std::process::ExitStatus) -> Output) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).map(|_| buf).unwrap_or_default()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let collect = move |status| Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (child, collect)
}

/// [`output_within`], also returning the child's peak resident set size in KiB, as the kernel
/// accounted it for that process alone (`wait4`'s `ru_maxrss`; Linux): independent of what the
/// child reports and of other tests' children running meanwhile.
#[cfg(target_os = "linux")]
#[track_caller]
pub fn output_with_peak_rss(cmd: &mut Command, limit: std::time::Duration) -> (Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    let (mut child, collect) = spawn_piped(cmd);
    let pid = child.id() as libc::pid_t;
    let start = std::time::Instant::now();
    let (status, maxrss) = loop {
        let mut status = 0;
        // SAFETY: an all-zero `rusage` (integers and timevals) is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our child, not yet reaped (only this loop waits for it); `status`
        // and `usage` are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (std::process::ExitStatus::from_raw(status), usage.ru_maxrss as u64);
        }
        let e = std::io::Error::last_os_error();
        assert!(r == 0 || e.kind() == std::io::ErrorKind::Interrupted, "wait4({pid}): {e}");
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?} (killed)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The child is reaped: `child` must not be waited for again (dropping it does not).
    (collect(status), maxrss)
}

/// Asserts a failed run: exit code 2 and a single stderr line containing every `needle`.
#[track_caller]
pub fn assert_bad(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit code 2, stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line, got: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} does not mention {n:?}");
    }
}

/// Writes a version-1.0 `.npy` file with dtype `descr` (e.g. `"<f8"`), C order, and the raw
/// little-endian `bytes`.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut data = b"\x93NUMPY\x01\x00".to_vec();
    data.extend_from_slice(&(header.len() as u16).to_le_bytes());
    data.extend_from_slice(header.as_bytes());
    data.extend_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}
