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
