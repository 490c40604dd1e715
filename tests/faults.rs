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
