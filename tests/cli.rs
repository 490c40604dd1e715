//! The `cosmograd simulate` command: outputs, overwrite protection and bad input (exit code 2,
//! one line naming the problem).

use std::path::Path;
use std::process::Output;

mod common;
use common::{assert_bad, bin, tmpdir, write_npy};

/// A small, fast configuration (16³ particles, 32³ mesh, 4 steps).
const SMALL: &str = common::small_config!("snapshots = [0.5]\n");

fn simulate(dir: &Path, cfg: Option<&str>, extra: &[&str]) -> Output {
    common::run("simulate", dir, cfg, extra)
}

#[test]
fn writes_every_output_and_protects_them() {
    let d = tmpdir("outputs");
    let out = simulate(&d, Some(SMALL), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let o = d.join("out");
    for f in std::iter::once("config.toml").chain(cosmograd::simulate::SNAPSHOT_FILES) {
        assert!(o.join(f).is_file(), "missing {f}");
    }
    for f in [
        "positions_a0.5000.npy",
        "density_a0.5000.npy",
        "power_a0.5000.txt",
        "slice_a0.5000.png",
    ] {
        assert!(o.join(f).is_file(), "missing snapshot file {f}");
    }
    // positions: (4096, 3) f32 in [0, 64)
    let pos = std::fs::read(o.join("positions.npy")).unwrap();
    let hl = u16::from_le_bytes([pos[8], pos[9]]) as usize;
    let header = String::from_utf8_lossy(&pos[10..10 + hl]);
    assert!(header.contains("'<f4'") && header.contains("(4096, 3)"), "{header}");
    let vals: Vec<f32> = pos[10 + hl..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(vals.len(), 4096 * 3);
    assert!(vals.iter().all(|v| (0.0..64.0).contains(v)));
    // power.txt: 4 numeric columns, N_modes integers, P_lin > 0.
    let txt = std::fs::read_to_string(o.join("power.txt")).unwrap();
    let rows: Vec<Vec<f64>> = txt
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 16);
    assert!(rows.iter().all(|r| r.len() == 4 && r[2].fract() == 0.0 && r[3] > 0.0 && r[1] > 0.0));

    // The same config again: identical outputs, allowed.
    let again = simulate(&d, Some(SMALL), &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(o.join("positions.npy")).unwrap(), pos, "rerun is not bit-identical");
    // The resolved config reproduces the run.
    let d2 = tmpdir("outputs-resolved");
    let re = bin()
        .args(["simulate", "--quiet", "--config"])
        .arg(o.join("config.toml"))
        .arg("--out")
        .arg(d2.join("out"))
        .output()
        .unwrap();
    assert!(re.status.success(), "{}", String::from_utf8_lossy(&re.stderr));
    assert_eq!(
        std::fs::read(d2.join("out/positions.npy")).unwrap(),
        pos,
        "config.toml does not reproduce the run"
    );
    // A different run into the same directory is refused, and nothing is touched …
    let other = simulate(&d, Some(SMALL), &["--seed", "7"]);
    assert_bad(&other, &["--force"]);
    assert_eq!(std::fs::read(o.join("positions.npy")).unwrap(), pos);
    // … unless --force.
    let forced = simulate(&d, Some(SMALL), &["--seed", "7", "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(o.join("positions.npy")).unwrap(), pos);
}

#[test]
fn white_noise_file_is_used_and_checked() {
    let d = tmpdir("wn");
    let n = 16usize;
    // A white-noise file equal to the seeded one reproduces the seeded run.
    let w = cosmograd::core::noise::white_noise::<f64>(n, 42);
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let good = d.join("w.npy");
    write_npy(&good, "<f8", &[n, n, n], &bytes);
    let a = simulate(&d, Some(SMALL), &["--white-noise", good.to_str().unwrap()]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let pa = std::fs::read(d.join("out/positions.npy")).unwrap();
    let d2 = tmpdir("wn-seed");
    let b = simulate(&d2, Some(SMALL), &["--seed", "42"]);
    assert!(b.status.success());
    assert_eq!(
        pa,
        std::fs::read(d2.join("out/positions.npy")).unwrap(),
        "file and seed give different runs"
    );

    let wrong_shape = d.join("shape.npy");
    write_npy(&wrong_shape, "<f8", &[8, 8, 8], &vec![0u8; 8 * 512]);
    assert_bad(
        &simulate(&tmpdir("wn-shape"), Some(SMALL), &["--white-noise", wrong_shape.to_str().unwrap()]),
        &["shape.npy", "(8, 8, 8)", "16"],
    );
    let wrong_dtype = d.join("dtype.npy");
    write_npy(&wrong_dtype, "<i8", &[n, n, n], &vec![0u8; 8 * n * n * n]);
    assert_bad(
        &simulate(&tmpdir("wn-dtype"), Some(SMALL), &["--white-noise", wrong_dtype.to_str().unwrap()]),
        &["dtype.npy", "<i8", "'>f4'", "'>f8'"],
    );
    // A finite float64 beyond f32's range under run.precision = "f32": the message says so.
    let big = d.join("big.npy");
    let mut vals = vec![0.0f64; n * n * n];
    vals[3] = 1e39;
    write_npy(
        &big,
        "<f8",
        &[n, n, n],
        &vals.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    );
    assert_bad(
        &simulate(&tmpdir("wn-big"), Some(SMALL), &["--white-noise", big.to_str().unwrap()]),
        &["big.npy", "1e39", "[0, 0, 3]", "does not fit in f32", "run.precision = \"f64\""],
    );
    let nan = d.join("nan.npy");
    let mut vals = vec![0.0f32; n * n * n];
    vals[5] = f32::NAN;
    write_npy(
        &nan,
        "<f4",
        &[n, n, n],
        &vals.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    );
    assert_bad(
        &simulate(&tmpdir("wn-nan"), Some(SMALL), &["--white-noise", nan.to_str().unwrap()]),
        &["nan.npy"],
    );
    assert_bad(
        &simulate(&tmpdir("wn-missing"), Some(SMALL), &["--white-noise", "/nonexistent/w.npy"]),
        &["/nonexistent/w.npy"],
    );
}

#[test]
fn bad_configs_give_one_line_and_exit_code_2() {
    let cases: &[(&str, &[&str])] = &[
        ("[box]\nsizee = 3.0\n", &["sizee"]),
        ("[box]\nparticles = 16\nmesh = 24\n", &["box.mesh", "16"]),
        // 1626³ > u32::MAX: the particle indices would wrap.
        ("[box]\nparticles = 1626\nmesh = 1626\n", &["box.particles", "n <= 1625"]),
        ("[time]\na_start = 0.5\na_stop = 0.2\n", &["time.a_start"]),
        // Below the growth tables' start (1e-5): refused, not a panic in the growth tables.
        ("[time]\na_start = 1e-6\n", &["time.a_start", "1e-5 <= a_start"]),
        ("[cosmology]\nomega_m = -0.3\n", &["cosmology.omega_m"]),
        ("[cosmology]\nh = nan\n", &["cosmology.h"]),
        ("[cosmology]\ntransfer = \"/nonexistent/pk.txt\"\n", &["/nonexistent/pk.txt"]),
        ("[time]\nlpt = 3\n", &["lpt"]),
        ("[run]\nprecision = \"f16\"\n", &["f16"]),
        ("[box\n", &["line 1"]),
    ];
    for (i, (cfg, needles)) in cases.iter().enumerate() {
        let d = tmpdir(&format!("bad{i}"));
        let out = simulate(&d, Some(cfg), &[]);
        assert_bad(&out, needles);
        assert!(
            !d.join("out").exists(),
            "case {i}: an output directory was created for a bad config"
        );
    }
    let d = tmpdir("missing-config");
    let out = bin()
        .args(["simulate", "--config", "/nonexistent/c.toml", "--out"])
        .arg(d.join("out"))
        .output()
        .unwrap();
    assert_bad(&out, &["/nonexistent/c.toml"]);
}

fn gradient(dir: &Path, cfg: &str, extra: &[&str]) -> Output {
    let p = dir.join("c.toml");
    std::fs::write(&p, cfg).unwrap();
    let mut cmd = bin();
    cmd.arg("gradient")
        .arg("--quiet")
        .arg("--config")
        .arg(p)
        .arg("--out")
        .arg(dir.join("grad"));
    cmd.args(extra).output().unwrap()
}

/// The (descr, shape) of a .npy header.
fn npy_header(path: &Path) -> String {
    let b = std::fs::read(path).unwrap();
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    String::from_utf8_lossy(&b[10..10 + hl]).to_string()
}

#[test]
fn gradient_writes_its_outputs_and_the_loss_matches_simulate() {
    let d = tmpdir("gradient");
    // The target is the density that `simulate` writes for the same run: the field-MSE and the
    // P(k) losses must then be exactly zero, which pins down "δ exactly as in density.npy".
    assert!(simulate(&d, Some(SMALL), &[]).status.success());
    let target = d.join("out/density.npy");
    let t = target.to_str().unwrap();
    for loss in ["field-mse", "power"] {
        let out = gradient(&d, SMALL, &["--target", t, "--loss", loss, "--force"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let g = d.join("grad");
        for f in cosmograd::gradient::GRADIENT_FILES {
            assert!(g.join(f).is_file(), "missing {f}");
        }
        let l: f64 = std::fs::read_to_string(g.join("loss.txt")).unwrap().trim().parse().unwrap();
        assert_eq!(l, 0.0, "{loss}: loss against the run's own density.npy");
    }
    // Against δ_T = 0 the loss is the mean δ², and every output is well formed.
    let out = gradient(&d, SMALL, &["--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let g = d.join("grad");
    let l: f64 = std::fs::read_to_string(g.join("loss.txt")).unwrap().trim().parse().unwrap();
    assert!(l > 0.1 && l.is_finite(), "loss {l}");
    let h = npy_header(&g.join("grad_white_noise.npy"));
    assert!(h.contains("'<f4'") && h.contains("(16, 16, 16)"), "{h}");
    let gc: toml::Table = std::fs::read_to_string(g.join("grad_cosmology.toml")).unwrap().parse().unwrap();
    let c = gc["cosmology"].as_table().unwrap();
    for k in ["omega_m", "omega_b", "h", "n_s", "sigma8", "w0", "wa", "omega_k", "t_cmb"] {
        assert!(c[k].as_float().is_some_and(f64::is_finite), "grad_cosmology.toml: {k}");
    }
    assert!(c["sigma8"].as_float().unwrap() > 0.0, "a larger sigma8 raises the mean δ²");
    let rev: f64 = std::fs::read_to_string(g.join("reversal_error.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(rev < 1e-2, "reversal error {rev}");
    let tim = std::fs::read_to_string(g.join("timings.txt")).unwrap();
    for k in ["forward_seconds", "backward_seconds", "peak_rss_mib"] {
        assert!(tim.lines().any(|l| l.starts_with(k)), "timings.txt lacks {k}: {tim}");
    }
    // A float64 white-noise file gives a float64 gradient; checkpoints are accepted.
    let n = 16usize;
    let w = cosmograd::core::noise::white_noise::<f64>(n, 42);
    let wpath = d.join("w.npy");
    write_npy(
        &wpath,
        "<f8",
        &[n, n, n],
        &w.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    );
    let out = gradient(
        &d,
        SMALL,
        &["--white-noise", wpath.to_str().unwrap(), "--checkpoint-every", "2", "--force"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(npy_header(&g.join("grad_white_noise.npy")).contains("'<f8'"));
    // A different run into the same directory is refused without --force.
    assert_bad(&gradient(&d, SMALL, &["--seed", "3"]), &["--force"]);
}

/// The gradient's memory does not grow with the number of steps (docs/adjoint.md §R: a fixed
/// number of particle arrays and meshes; the README's "by default memory does not grow").
///
/// `cosmograd gradient` at 32³ particles, 64³ mesh, f32, 2 threads, at 10 and at 100 steps; the
/// peak RSS of each child from the kernel (wait4). Measured 2026-12-08: 19.2 MiB at both (the
/// binary alone, `--help`, 4 MiB: the run's arrays are ~3/4 of it). Storing the trajectory would
/// add one (s, p) state, 32³ × 6 × 4 B = 768 KiB, per step: +68 MiB at 100 steps (measured with
/// `--checkpoint-every 1`, which does exactly that: 93 MiB), and the 10 % bound (1.9 MiB) trips
/// at 22 KiB kept per step. The child's own figure in timings.txt (VmHWM) must agree with the
/// kernel's, which also checks that figure. ~3.5 s.
#[cfg(target_os = "linux")]
#[test]
fn gradient_peak_memory_does_not_grow_with_the_steps() {
    let d = tmpdir("gradient-memory");
    let peak = |steps: usize| {
        let cfg = format!("[box]\nsize = 128.0\nparticles = 32\nmesh = 64\n[time]\nsteps = {steps}\n[run]\nthreads = 2\n");
        let dir = d.join(format!("steps{steps}"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, cfg).unwrap();
        let mut cmd = bin();
        cmd.args(["gradient", "--quiet", "--config"])
            .arg(&p)
            .arg("--out")
            .arg(dir.join("grad"));
        let (out, kib) = common::output_with_peak_rss(&mut cmd, common::RUN_TIMEOUT);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mib = kib as f64 / 1024.0;
        let tim = std::fs::read_to_string(dir.join("grad/timings.txt")).unwrap();
        let own: f64 = tim
            .lines()
            .find_map(|l| l.strip_prefix("peak_rss_mib "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("timings.txt has no peak_rss_mib figure: {tim}"));
        eprintln!("gradient, {steps} steps: peak RSS {mib:.1} MiB (wait4), {own:.1} MiB (timings.txt)");
        assert!(
            (own / mib - 1.0).abs() < 0.05,
            "{steps} steps: timings.txt says {own} MiB, the kernel {mib:.1} MiB"
        );
        mib
    };
    let (m10, m100) = (peak(10), peak(100));
    // The arrays must dominate, or the bound below would say little.
    assert!(m10 > 12.0, "peak RSS at 10 steps only {m10:.1} MiB");
    assert!(
        m100 <= 1.1 * m10,
        "peak RSS grew from {m10:.1} MiB (10 steps) to {m100:.1} MiB (100 steps)"
    );
}

#[test]
fn gradient_bad_input_gives_one_line_and_exit_code_2() {
    let d = tmpdir("gradient-bad");
    let shape = d.join("t.npy");
    write_npy(&shape, "<f4", &[8, 8, 8], &vec![0u8; 4 * 512]);
    let nan = d.join("nan.npy");
    let mut v = vec![0.0f32; 32 * 32 * 32];
    v[3] = f32::NAN;
    write_npy(
        &nan,
        "<f4",
        &[32, 32, 32],
        &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--target", shape.to_str().unwrap()], vec!["t.npy", "(8, 8, 8)", "32"]),
        (vec!["--target", nan.to_str().unwrap()], vec!["nan.npy"]),
        (vec!["--loss", "power"], vec!["--target"]),
        (vec!["--checkpoint-every", "0"], vec!["--checkpoint-every"]),
        (vec!["--target", "/nonexistent/t.npy"], vec!["/nonexistent/t.npy"]),
    ];
    for (i, (args, needles)) in cases.iter().enumerate() {
        let dd = tmpdir(&format!("gradient-bad{i}"));
        assert_bad(&gradient(&dd, SMALL, args), needles);
        assert!(!dd.join("grad").exists(), "case {i}: an output directory was created");
    }
    let out = gradient(&d, "[run]\nfixed_amplitude = true\n", &[]);
    assert_bad(&out, &["run.fixed_amplitude"]);
}

#[test]
fn device_cuda_gives_one_line_and_exit_code_2_without_a_usable_gpu() {
    // Without the `cuda` feature: the rebuild line. With it, on a machine without a driver (CI,
    // this project's developer machines): the no-driver line. Nothing is written either way.
    let dir = tmpdir("device");
    #[cfg(feature = "cuda")]
    let driver = pm_core::cuda::driver_available();
    #[cfg(not(feature = "cuda"))]
    let driver = false;
    let expected: &[&str] = match (cfg!(feature = "cuda"), driver) {
        (false, _) => &["built without the cuda feature: rebuild with --features cuda"],
        (true, false) => &["no CUDA driver found", "--device cpu"],
        // A machine with a driver: exit 2 all the same (no GPU, no NVRTC, or the GPU time loop
        // that is not there yet), one line.
        (true, true) => &["CUDA"],
    };
    for cmd in ["simulate", "gradient"] {
        let out = bin()
            .arg(cmd)
            .args(["--quiet", "--device", "cuda", "--out"])
            .arg(dir.join(cmd))
            .output()
            .unwrap();
        assert_bad(&out, expected);
        assert!(!dir.join(cmd).exists(), "{cmd} --device cuda wrote outputs");
    }
    // A device name that does not exist names the option and the choices.
    let out = bin()
        .args(["simulate", "--device", "tpu", "--out"])
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--device") && err.contains("cuda"), "{err}");
    // --device cpu is the default and runs.
    let out = simulate(&dir, Some(SMALL), &["--device", "cpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn special_files_as_inputs_give_one_line_and_exit_code_2() {
    // /dev/zero was read until memory ran out and a FIFO blocked forever.
    let d = tmpdir("special");
    let fifo = d.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    let mut paths = vec![std::path::PathBuf::from("/dev/zero")];
    match std::process::Command::new("mkfifo").arg(&fifo).status() {
        Ok(s) if s.success() => paths.push(fifo),
        _ => eprintln!("mkfifo unavailable: the FIFO case is skipped"),
    }
    for (i, p) in paths.iter().enumerate() {
        let s = p.to_str().unwrap();
        let cases: [(&str, Vec<&str>); 4] = [
            ("simulate", vec!["--white-noise", s]),
            ("gradient", vec!["--target", s]),
            ("reconstruct", vec!["--observed", s, "--noise", "1"]),
            ("reconstruct", vec!["--noise-power", s]),
        ];
        for (j, (cmd, args)) in cases.iter().enumerate() {
            // A read that blocks on the FIFO must fail the test, not hang it.
            let limit = std::time::Duration::from_secs(120);
            let out = common::run_within(cmd, &tmpdir(&format!("special{i}-{j}")), Some(SMALL), args, limit);
            assert_bad(&out, &[s, "not a regular file but a"]);
        }
        let mut cmd = bin();
        cmd.args(["simulate", "--quiet", "--config", s, "--out"])
            .arg(tmpdir(&format!("special{i}-config")).join("out"));
        let out = common::output_within(&mut cmd, std::time::Duration::from_secs(120));
        assert_bad(&out, &[s, "config file: not a regular file but a"]);
    }
}

/// Sizes the configuration allows but no machine here holds (1024³ particles, 2048³ mesh: about
/// 360 GiB) are refused by every subcommand before anything is allocated or written, with one
/// line giving the estimate, what is available and the ways out (they aborted with SIGABRT
/// allocating 256 GiB).
#[test]
fn a_run_that_cannot_fit_in_memory_is_refused_before_it_allocates() {
    let d = tmpdir("memory-refused");
    let cfg = "[box]\nsize = 1000.0\nparticles = 1024\nmesh = 2048\n";
    for cmd in ["simulate", "gradient", "reconstruct"] {
        let out = common::run(cmd, &d, Some(cfg), &[]);
        assert_bad(&out, &["1024³ particles", "needs about", "is available", "--skip-memory-check"]);
        assert!(!d.join("out").exists(), "{cmd} created its output directory");
    }
}

/// The estimate printed in the summary follows the process's own peak RSS (`gradient` measures
/// it: timings.txt) within 15 % at a size where the arrays dominate (48³ particles, 96³ mesh:
/// 47 MiB estimated, 46 MiB measured; every 2 steps 54 and 52 MiB), with and without
/// checkpoints.
#[cfg(target_os = "linux")]
#[test]
fn memory_estimate_matches_the_measured_peak() {
    let cfg = "[box]\nsize = 96.0\nparticles = 48\nmesh = 96\n[time]\nsteps = 8\n";
    for extra in [&[][..], &["--checkpoint-every", "2"][..]] {
        let d = tmpdir("memory-estimate");
        std::fs::write(d.join("c.toml"), cfg).unwrap();
        let mut cmd = bin();
        cmd.arg("gradient")
            .arg("--config")
            .arg(d.join("c.toml"))
            .arg("--out")
            .arg(d.join("out"))
            .args(extra);
        let out = common::output_within(&mut cmd, common::RUN_TIMEOUT);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let summary = String::from_utf8_lossy(&out.stdout);
        let mib = |s: &str| -> f64 { s.trim_end_matches(" MiB").trim().parse().unwrap() };
        let est = summary.split("peak memory ≈ ").nth(1).unwrap().split(" estimated").next().unwrap();
        let timings = std::fs::read_to_string(d.join("out/timings.txt")).unwrap();
        let measured: f64 = timings
            .lines()
            .find_map(|l| l.strip_prefix("peak_rss_mib "))
            .unwrap()
            .parse()
            .unwrap();
        let rel = mib(est) / measured - 1.0;
        assert!(rel.abs() < 0.15, "{extra:?}: estimate {est} vs measured {measured} MiB ({rel:+.3})");
        println!("{extra:?}: estimate {est}, measured {measured:.1} MiB ({rel:+.3})");
    }
}
