//! Output safety: files are written whole (temporary sibling, synced, renamed), never through a
//! symbolic link; stale temporaries of an interrupted run are removed.

use std::path::Path;
use std::process::Output;

mod common;
use common::tmpdir;

/// A small, fast configuration (16³ particles, 32³ mesh, 4 steps).
const SMALL: &str = common::small_config!("");

fn simulate(dir: &Path, extra: &[&str]) -> Output {
    common::run("simulate", dir, Some(SMALL), extra)
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The names in `dir` of the temporary siblings (`.NAME.partial-PID.EXT`).
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(".partial-") && n != ".partial-notes")
        .collect()
}

#[cfg(unix)]
#[test]
fn outputs_replace_a_symlink_instead_of_writing_through_it() {
    let d = tmpdir("symlink");
    let o = d.join("out");
    std::fs::create_dir_all(&o).unwrap();
    let victim = o.join("victim.txt");
    std::fs::write(&victim, "a file of the user\n").unwrap();
    std::os::unix::fs::symlink("victim.txt", o.join("positions.npy")).unwrap();
    std::os::unix::fs::symlink("victim.txt", o.join("slice.png")).unwrap();
    assert_ok(&simulate(&d, &["--force"]));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "a file of the user\n");
    for f in ["positions.npy", "slice.png"] {
        let meta = std::fs::symlink_metadata(o.join(f)).unwrap();
        assert!(meta.file_type().is_file(), "{f} is still a link");
    }
    assert!(partials(&o).is_empty(), "temporaries left: {:?}", partials(&o));
}

#[test]
fn stale_temporaries_of_an_interrupted_run_are_removed() {
    let d = tmpdir("stale");
    let o = d.join("out");
    std::fs::create_dir_all(&o).unwrap();
    for f in [".positions.npy.partial-4194999.tmp", ".power.png.partial-4194999.png"] {
        std::fs::write(o.join(f), "half").unwrap();
    }
    std::fs::write(o.join("notes.txt"), "keep me").unwrap();
    std::fs::write(o.join(".partial-notes"), "keep me too").unwrap();
    assert_ok(&simulate(&d, &[]));
    assert!(partials(&o).is_empty(), "temporaries left: {:?}", partials(&o));
    assert_eq!(std::fs::read_to_string(o.join("notes.txt")).unwrap(), "keep me");
    assert!(o.join("positions.npy").is_file());
}

#[test]
fn gradient_leaves_no_temporaries() {
    let d = tmpdir("grad-tmp");
    let out = common::run("gradient", &d, Some(SMALL), &[]);
    assert_ok(&out);
    assert!(partials(&d.join("out")).is_empty());
}

#[test]
fn an_interrupted_run_is_completed_by_a_rerun() {
    let d = tmpdir("interrupted");
    let o = d.join("out");
    std::fs::create_dir_all(&o).unwrap();
    // What a killed run leaves: a truncated array, a temporary, no config.toml.
    std::fs::write(o.join("positions.npy"), b"\x93NUMPY\x01\x00trunc").unwrap();
    std::fs::write(o.join(".density.npy.partial-4194999.tmp"), "half").unwrap();
    assert_ok(&simulate(&d, &[]));
    assert!(o.join("config.toml").is_file());
    let first = std::fs::read(o.join("positions.npy")).unwrap();
    assert_eq!(first.len(), 128 + 16 * 16 * 16 * 3 * 4);
    assert!(partials(&o).is_empty());
    // The same configuration again into the complete directory: allowed, bit-identical.
    assert_ok(&simulate(&d, &[]));
    assert_eq!(std::fs::read(o.join("positions.npy")).unwrap(), first);
    // A different configuration into the complete directory is still refused.
    common::assert_bad(&simulate(&d, &["--seed", "9"]), &["different run", "--force"]);
    assert_eq!(std::fs::read(o.join("positions.npy")).unwrap(), first);
}

#[test]
fn a_directory_with_other_files_and_no_record_is_still_protected() {
    let d = tmpdir("foreign");
    let o = d.join("out");
    std::fs::create_dir_all(&o).unwrap();
    std::fs::write(o.join("positions.npy"), "the user's own").unwrap();
    std::fs::write(o.join("notes.txt"), "the user's notes").unwrap();
    common::assert_bad(&simulate(&d, &[]), &["different run", "positions.npy", "--force"]);
    assert_eq!(std::fs::read_to_string(o.join("positions.npy")).unwrap(), "the user's own");
}

#[test]
fn a_failed_run_leaves_no_record() {
    let d = tmpdir("no-record");
    let o = d.join("out");
    // slice.png cannot be written (a directory holds its name): the run fails after the arrays.
    std::fs::create_dir_all(o.join("slice.png")).unwrap();
    let out = simulate(&d, &[]);
    common::assert_bad(&out, &["slice.png"]);
    assert!(o.join("positions.npy").is_file());
    assert!(!o.join("config.toml").exists(), "config.toml written before the data");
    assert!(partials(&o).is_empty());
}

#[test]
fn a_second_run_into_a_locked_directory_is_refused() {
    let d = tmpdir("lock");
    let o = d.join("out");
    std::fs::create_dir_all(&o).unwrap();
    let lock_path = o.join(".cosmograd.lock");
    let pid = std::process::id().to_string();
    {
        // A live run holds the lock: this test process.
        let mut f = std::fs::File::create(&lock_path).unwrap();
        std::io::Write::write_all(&mut f, format!("{pid}\n").as_bytes()).unwrap();
        f.lock().unwrap();
        for extra in [&[][..], &["--force"][..]] {
            let out = simulate(&d, extra);
            common::assert_bad(&out, &[".cosmograd.lock", &format!("pid {pid}"), "another cosmograd run"]);
        }
        let out = common::run("gradient", &d, Some(SMALL), &[]);
        common::assert_bad(&out, &[".cosmograd.lock", &format!("pid {pid}")]);
        assert!(!o.join("positions.npy").exists() && !o.join("loss.txt").exists());
    }
    // The holder is gone (its lock released with it): the stale file is taken over, no --force.
    std::fs::write(&lock_path, "4194999\n").unwrap();
    assert_ok(&simulate(&d, &[]));
    assert!(o.join("config.toml").is_file());
    assert!(!lock_path.exists(), "the lock file outlived the run");
}

#[test]
fn a_failed_run_releases_its_lock_and_leaves_no_empty_directory() {
    let d = tmpdir("lock-error");
    // A white-noise file of the wrong shape fails after the lock is taken.
    let w = d.join("w.npy");
    common::write_npy(&w, "<f4", &[2, 2, 2], &[0u8; 32]);
    let out = simulate(&d, &["--white-noise", w.to_str().unwrap()]);
    common::assert_bad(&out, &["w.npy"]);
    assert!(!d.join("out").exists(), "an empty output directory was left");
}

/// A closed stdout (`cosmograd … | true`) or a full one (`> /dev/full`) ends each subcommand with
/// exit code 0 and every output written: the summary comes after the outputs (it panicked with
/// exit code 101 before).
#[cfg(unix)]
#[test]
fn a_closed_or_full_stdout_ends_the_run_quietly() {
    use std::process::Stdio;
    let recon_cfg = "[box]\nsize = 64.0\nparticles = 8\nmesh = 16\n[time]\nsteps = 3\n";
    let cases: [(&str, &str, &[&str]); 3] = [
        ("simulate", SMALL, &[]),
        ("gradient", SMALL, &[]),
        ("reconstruct", recon_cfg, &["--iterations", "3"]),
    ];
    for (cmd, cfg, extra) in cases {
        for how in ["closed", "full"] {
            let d = tmpdir(&format!("stdout-{cmd}-{how}"));
            std::fs::write(d.join("c.toml"), cfg).unwrap();
            let mut c = common::bin();
            c.arg(cmd).arg("--config").arg(d.join("c.toml")).arg("--out").arg(d.join("out"));
            c.args(extra).stderr(Stdio::piped());
            let out = if how == "closed" {
                let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
                drop(child.stdout.take()); // the reader goes away before anything is written
                child.wait_with_output().unwrap()
            } else {
                match std::fs::File::create("/dev/full") {
                    Ok(full) => c.stdout(full).output().unwrap(),
                    Err(e) => {
                        eprintln!("/dev/full unavailable ({e}): the full-stdout case is skipped");
                        continue;
                    }
                }
            };
            assert_eq!(
                out.status.code(),
                Some(0),
                "{cmd}, {how} stdout: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(d.join("out/config.toml").is_file(), "{cmd}, {how} stdout: no record");
        }
    }
}

/// Every `.npy` under a final name in `dir` is whole: its file size is the header's data offset
/// plus the bytes its shape and dtype declare (a truncated file under a final name is the fault).
fn assert_npy_whole(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".npy") {
            continue;
        }
        let h = pm_core::io::read_npy_header(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        let item = if h.descr.ends_with('8') { 8 } else { 4 };
        let want = h.data_offset + item * h.shape.iter().product::<usize>();
        let got = std::fs::metadata(&p).unwrap().len() as usize;
        assert_eq!(got, want, "{name} is {got} bytes; its header declares {want}");
    }
}

/// A run into `dir/out` of a larger box (so writing takes a while), started in the background.
fn spawn_simulate(d: &Path, cfg: &str) -> std::process::Child {
    std::fs::write(d.join("c.toml"), cfg).unwrap();
    common::bin()
        .args(["simulate", "--quiet", "--out"])
        .arg(d.join("out"))
        .arg("--config")
        .arg(d.join("c.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGINT at many points of a run (initial conditions, time stepping, in the middle of writing a
/// snapshot): whatever the moment, no file under a final name is truncated, no record claims the
/// run complete unless it is, and a rerun of the same configuration completes the directory
/// (before atomic writes, SIGINT left a truncated `positions.npy` that a rerun then accepted).
#[cfg(unix)]
#[test]
fn sigint_at_any_point_leaves_no_half_written_output() {
    let cfg = "[box]\nsize = 128.0\nparticles = 48\nmesh = 96\n[time]\nsteps = 6\nsnapshots = [0.4, 0.7]\n";
    let mut interrupted = 0;
    for (i, delay_ms) in [30u64, 120, 250, 400, 600, 800, 1100, 1500].into_iter().enumerate() {
        let d = tmpdir(&format!("sigint-{i}"));
        let mut child = spawn_simulate(&d, cfg);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let status = child.wait().unwrap();
        let o = d.join("out");
        if !status.success() {
            interrupted += 1;
            assert!(!o.join("config.toml").exists(), "an interrupted run left its record");
        }
        if o.exists() {
            assert_npy_whole(&o);
        }
        // Rerunning the same configuration completes (or confirms) the directory.
        let rerun = common::run("simulate", &d, Some(cfg), &[]);
        assert_ok(&rerun);
        assert_npy_whole(&o);
        assert!(partials(&o).is_empty(), "temporaries left: {:?}", partials(&o));
        assert!(std::fs::read_to_string(o.join("config.toml")).unwrap().contains("particles = 48"));
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of 8 runs were interrupted: the box is too small to test"
    );
}

/// A writer that fails part-way (a file-size limit: the write returns EFBIG, as a full disk returns
/// ENOSPC): one line naming the file, exit code 2, no truncated file under a final name, no
/// record; then a rerun without the limit completes the directory.
#[cfg(unix)]
#[test]
fn a_failing_writer_leaves_no_half_written_output() {
    let d = tmpdir("efbig");
    std::fs::write(d.join("c.toml"), SMALL).unwrap();
    // 16 blocks (8 or 16 KiB as the shell counts them): the first output, the 16³ positions
    // (48 KiB), does not fit. SIGXFSZ is ignored so the write fails with EFBIG instead of killing
    // the process.
    let script = "trap '' XFSZ; ulimit -f 16; exec \"$0\" \"$@\"";
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_cosmograd"));
    cmd.args(["simulate", "--quiet", "--out"]).arg(d.join("out"));
    cmd.arg("--config").arg(d.join("c.toml"));
    let out = common::output_within(&mut cmd, common::RUN_TIMEOUT);
    common::assert_bad(&out, &["positions.npy"]);
    let o = d.join("out");
    assert!(!o.join("config.toml").exists(), "a failed run left its record");
    assert!(!o.join("positions.npy").exists(), "a positions file was left under its final name");
    if o.exists() {
        assert_npy_whole(&o);
        assert!(partials(&o).is_empty(), "temporaries left: {:?}", partials(&o));
    }
    assert_ok(&simulate(&d, &[]));
    assert_npy_whole(&o);
    assert!(o.join("config.toml").is_file() && partials(&o).is_empty());
}

/// Two runs of different configurations started together into one directory: one writes it, the
/// other is refused with exit code 2 (by the lock while the first runs, by the record after), and
/// every file in the directory belongs to the run its record names (before the lock, both exited 0
/// and the directory mixed the two runs' files).
#[test]
fn concurrent_runs_into_one_directory_do_not_mix() {
    for trial in 0..3 {
        let d = tmpdir(&format!("concurrent-{trial}"));
        let o = d.join("out");
        let cfgs: Vec<String> = (1..=2).map(|seed| format!("{SMALL}[run]\nseed = {seed}\n")).collect();
        let mut children = Vec::new();
        for (k, cfg) in cfgs.iter().enumerate() {
            let sub = d.join(format!("c{k}"));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join("c.toml"), cfg).unwrap();
            let mut c = common::bin();
            c.args(["simulate", "--quiet", "--out"])
                .arg(&o)
                .arg("--config")
                .arg(sub.join("c.toml"));
            c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            children.push(c.spawn().unwrap());
        }
        let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let ok: Vec<usize> = (0..2).filter(|&k| outs[k].status.success()).collect();
        assert_eq!(ok.len(), 1, "trial {trial}: {} runs succeeded", ok.len());
        let loser = 1 - ok[0];
        assert_eq!(outs[loser].status.code(), Some(2), "trial {trial}: the refused run's exit code");
        let err = String::from_utf8_lossy(&outs[loser].stderr);
        assert!(
            err.contains("another cosmograd run") || err.contains("different run"),
            "trial {trial}: {err}"
        );
        // The directory is the winner's, file for file: a fresh run of its config gives the same bytes.
        let record = std::fs::read_to_string(o.join("config.toml")).unwrap();
        assert!(record.contains(&format!("seed = {}", ok[0] + 1)), "trial {trial}: record {record}");
        let fresh = d.join("fresh");
        std::fs::create_dir_all(&fresh).unwrap();
        assert_ok(&common::run("simulate", &fresh, Some(&cfgs[ok[0]]), &[]));
        for f in ["positions.npy", "density.npy", "power.txt"] {
            assert_eq!(
                std::fs::read(o.join(f)).unwrap(),
                std::fs::read(fresh.join("out").join(f)).unwrap(),
                "trial {trial}: {f} is not the winner's"
            );
        }
    }
}

/// Each snapshot is written when the run reaches it: with the run killed (SIGKILL) as soon as the
/// first snapshot's last file appears, that snapshot is on disk whole while the run had many
/// steps to go, and nothing of the final state exists (before, every snapshot was held in
/// memory and written at the end, so an interrupted run lost them all).
#[cfg(unix)]
#[test]
fn snapshots_are_written_when_reached() {
    let d = tmpdir("stream");
    let cfg = "[box]\nsize = 64.0\nparticles = 16\nmesh = 32\n[time]\nsteps = 2000\nsnapshots = [0.05]\n";
    let mut child = spawn_simulate(&d, cfg);
    let o = d.join("out");
    let last = o.join("slice_a0.0500.png");
    let start = std::time::Instant::now();
    while !last.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first snapshot appeared"
        );
        assert!(start.elapsed() < common::RUN_TIMEOUT, "no snapshot appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Writing the final state takes milliseconds; the remaining ~1950 steps take seconds (about
    // 1.5 ms each here): 100 ms later the run is still stepping, and nothing of a_stop exists.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(running, "the run had ended when its first snapshot appeared");
    for f in [
        "positions_a0.0500.npy",
        "velocities_a0.0500.npy",
        "density_a0.0500.npy",
        "power_a0.0500.txt",
    ] {
        assert!(o.join(f).is_file(), "{f} missing");
    }
    assert_npy_whole(&o);
    for f in ["positions.npy", "density.npy", "config.toml"] {
        assert!(!o.join(f).exists(), "{f} exists: the final state was written with the snapshot");
    }
}

/// `precision = "f64"` writes float64 positions, velocities and density (they were float32, so
/// f64 studies lost their precision on disk); f32 runs write float32.
#[test]
fn outputs_are_written_at_the_run_precision() {
    for (prec, descr) in [("f32", "<f4"), ("f64", "<f8")] {
        let d = tmpdir(&format!("precision-{prec}"));
        let cfg = format!("{SMALL}[run]\nprecision = \"{prec}\"\n");
        assert_ok(&common::run("simulate", &d, Some(&cfg), &[]));
        for f in ["positions.npy", "velocities.npy", "density.npy"] {
            let h = pm_core::io::read_npy_header(&d.join("out").join(f)).unwrap();
            assert_eq!(h.descr, descr, "{prec} run, {f}");
        }
        assert_npy_whole(&d.join("out"));
    }
}

/// A `--white-noise` path that is not valid UTF-8 (Unix file names are bytes) is refused with one
/// line before the run starts (the record config.toml stores it as a TOML string: it panicked).
#[cfg(unix)]
#[test]
fn a_non_utf8_white_noise_path_is_refused_with_one_line() {
    use std::os::unix::ffi::OsStrExt;
    let d = tmpdir("non-utf8");
    let w = d.join(std::ffi::OsStr::from_bytes(b"w\xff.npy"));
    common::write_npy(&w, "<f4", &[16, 16, 16], &vec![0u8; 4 * 16 * 16 * 16]);
    let mut cmd = common::bin();
    cmd.args(["simulate", "--quiet", "--out"]).arg(d.join("out"));
    std::fs::write(d.join("c.toml"), SMALL).unwrap();
    cmd.arg("--config").arg(d.join("c.toml")).arg("--white-noise").arg(&w);
    let out = common::output_within(&mut cmd, common::RUN_TIMEOUT);
    common::assert_bad(&out, &["run.white_noise", "not valid UTF-8"]);
    assert!(!d.join("out").exists());
}

/// A `--out` that is a symbolic link to a missing directory says so (it said "File exists").
#[cfg(unix)]
#[test]
fn a_dangling_symlink_out_is_named_as_such() {
    let d = tmpdir("dangling-out");
    std::os::unix::fs::symlink(d.join("gone"), d.join("out")).unwrap();
    let out = simulate(&d, &[]);
    common::assert_bad(&out, &["symbolic link", "gone"]);
}
