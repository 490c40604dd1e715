//! Gadget-format HDF5 snapshots end to end: `simulate` with `output.formats = ["npy", "gadget"]`
//! writes `snapshot.hdf5` beside the `.npy` files (same particles, Gadget's units and velocity
//! convention); `gradient --target` and `reconstruct --observed` take such a snapshot in place of
//! a density mesh; `output.subtract_shot_noise` removes V/N from `power.txt`.

use std::path::Path;
use std::process::Output;

mod common;
use common::{assert_bad, tmpdir};
use cosmograd::core::io::gadget::read_gadget_hdf5;
use cosmograd::core::io::read_npy;

const GADGET: &str = common::small_config!("snapshots = [0.5]\n[output]\nformats = [\"npy\", \"gadget\"]\n");

fn run(command: &str, dir: &Path, cfg: &str, extra: &[&str]) -> Output {
    common::run(command, dir, Some(cfg), extra)
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The rows of a `#`-commented numeric table.
fn table(path: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect()
}

#[test]
fn simulate_writes_gadget_snapshots_with_the_npy_particles() {
    let d = tmpdir("simulate");
    assert_ok(&run("simulate", &d, GADGET, &[]));
    let o = d.join("out");
    for f in [
        "snapshot.hdf5",
        "snapshot_a0.5000.hdf5",
        "positions.npy",
        "positions_a0.5000.npy",
        "density.npy",
    ] {
        assert!(o.join(f).is_file(), "missing {f}");
    }
    for (tag, a) in [("", 1.0f64), ("_a0.5000", 0.5)] {
        let path = o.join(format!("snapshot{tag}.hdf5"));
        let f = hdf5_pure::File::open(&path).unwrap();
        let h = f.group("Header").unwrap().attrs().unwrap();
        use hdf5_pure::AttrValue as A;
        assert_eq!(h["BoxSize"], A::F64(64_000.0));
        assert_eq!(h["Time"], A::F64(a));
        assert_eq!(h["NumPart_ThisFile"], A::I64Array(vec![0, 4096, 0, 0, 0, 0]));
        assert_eq!(h["NumPart_Total"], A::U32Array(vec![0, 4096, 0, 0, 0, 0]));
        assert_eq!(h["UnitLength_in_cm"], A::F64(3.085678e21));
        let A::F64Array(mt) = &h["MassTable"] else {
            panic!("MassTable {:?}", h["MassTable"])
        };
        // Ω_m ρ_crit L³/N in 1e10 M_sun/h, Ω_m = 0.3111 (the default cosmology).
        let want = 0.3111 * 27.7536627 * 64f64.powi(3) / 4096.0;
        assert!((mt[1] / want - 1.0).abs() < 1e-12, "{mt:?}");
        // The particles of positions.npy (Mpc/h) and velocities.npy (km/s), row for row.
        let snap = read_gadget_hdf5(&path, 64.0).unwrap();
        let (shape, pos) = read_npy(&o.join(format!("positions{tag}.npy"))).unwrap();
        assert_eq!(shape, vec![4096, 3]);
        let periodic = |x: f64| (x + 32.0).rem_euclid(64.0) - 32.0;
        let dmax = snap
            .positions
            .iter()
            .flatten()
            .zip(&pos)
            .map(|(a, b)| periodic(a - b).abs())
            .fold(0.0, f64::max);
        assert!(dmax < 2e-5, "positions differ by {dmax} Mpc/h");
        let ids = f.dataset("PartType1/ParticleIDs").unwrap().read_u32().unwrap();
        assert_eq!(ids, (0..4096).collect::<Vec<u32>>());
        let u = f.dataset("PartType1/Velocities").unwrap().read_f32().unwrap();
        let (_, vel) = read_npy(&o.join(format!("velocities{tag}.npy"))).unwrap();
        let vmax = vel.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = u
            .iter()
            .zip(&vel)
            .map(|(u, v)| (*u as f64 * a.sqrt() - v).abs())
            .fold(0.0, f64::max);
        assert!(vmax > 10.0 && err < 1e-5 * vmax, "velocity u·√a vs velocities.npy: {err} of {vmax}");
    }
    // The overwrite guard knows the snapshot files.
    let cfg = cosmograd::core::config::Config::from_toml_str(GADGET, "c.toml").unwrap();
    let names = cosmograd::simulate::output_files(&cfg);
    assert!(
        names.iter().any(|n| n == "snapshot_a0.5000.hdf5") && names.iter().any(|n| n == "snapshot.hdf5"),
        "{names:?}"
    );
    assert_bad(&run("simulate", &d, GADGET, &["--seed", "3"]), &["snapshot.hdf5", "--force"]);

    // Gadget only: no .npy arrays; shot noise subtracted: P lower by exactly V/N = 64 (Mpc/h)³.
    let d2 = tmpdir("simulate-gadget-only");
    let cfg2 = common::small_config!("snapshots = [0.5]\n[output]\nformats = [\"gadget\"]\nsubtract_shot_noise = true\n");
    assert_ok(&run("simulate", &d2, cfg2, &[]));
    let o2 = d2.join("out");
    assert!(o2.join("snapshot.hdf5").is_file() && o2.join("power.txt").is_file());
    for f in ["positions.npy", "velocities.npy", "density.npy", "density_a0.5000.npy"] {
        assert!(!o2.join(f).exists(), "{f} written without \"npy\" in output.formats");
    }
    assert_eq!(
        std::fs::read(o2.join("snapshot.hdf5")).unwrap(),
        std::fs::read(o.join("snapshot.hdf5")).unwrap()
    );
    let text = std::fs::read_to_string(o2.join("power.txt")).unwrap();
    assert!(text.contains("shot noise V/N = 6.40000000e1 (Mpc/h)^3 subtracted"), "{text}");
    let (with, without) = (table(&o2.join("power.txt")), table(&o.join("power.txt")));
    assert_eq!(with.len(), without.len());
    for (a, b) in with.iter().zip(&without) {
        assert!((b[1] - a[1] - 64.0).abs() < 1e-6 * b[1].abs().max(64.0), "{a:?} vs {b:?}");
    }
    // Unknown and empty formats: one line, exit code 2.
    let d3 = tmpdir("simulate-bad-format");
    let bad = common::small_config!("[output]\nformats = [\"hdf5\"]\n");
    assert_bad(&run("simulate", &d3, bad, &[]), &["output.formats", "`hdf5`", "`npy` or `gadget`"]);
    let bad = common::small_config!("[output]\nformats = []\n");
    assert_bad(&run("simulate", &d3, bad, &[]), &["output.formats", "at least one"]);
    for d in [d, d2, d3] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_gadget_snapshot_is_a_target_and_an_observation() {
    let d = tmpdir("inputs");
    assert_ok(&run("simulate", &d, GADGET, &[]));
    let snap = d.join("out/snapshot.hdf5");
    let snap = snap.to_str().unwrap();
    // The run's own snapshot painted on the force mesh is its density.npy (up to the f32 rounding
    // of the kpc/h positions): both losses vanish.
    for loss in ["field-mse", "power"] {
        let g = tmpdir(&format!("gradient-{loss}"));
        assert_ok(&run("gradient", &g, GADGET, &["--target", snap, "--loss", loss]));
        let l: f64 = std::fs::read_to_string(g.join("out/loss.txt")).unwrap().trim().parse().unwrap();
        assert!(l.abs() < 1e-9, "{loss}: loss {l} against the run's own snapshot");
        let _ = std::fs::remove_dir_all(g);
    }
    // reconstruct paints it on the data mesh (force mesh, or --data-mesh).
    for (extra, m) in [(None, 32usize), (Some("24"), 24)] {
        let r = tmpdir("reconstruct");
        let mut args = vec!["--observed", snap, "--noise", "0.05", "--iterations", "2"];
        if let Some(md) = extra {
            args.extend(["--data-mesh", md]);
        }
        assert_ok(&run("reconstruct", &r, GADGET, &args));
        let (shape, v) = read_npy(&r.join("out/final_density.npy")).unwrap();
        assert_eq!(shape, vec![m; 3]);
        assert!(v.iter().all(|x| x.is_finite()));
        let _ = std::fs::remove_dir_all(r);
    }
    // A snapshot of another box: one line naming BoxSize and the fix; nothing written.
    let b = tmpdir("wrong-box");
    let other = GADGET.replace("size = 64.0", "size = 100.0");
    let out = run("gradient", &b, &other, &["--target", snap]);
    assert_bad(
        &out,
        &["snapshot.hdf5", "BoxSize = 64000", "box.size = 100 Mpc/h", "set [box] size = 64"],
    );
    let out = run("reconstruct", &b, &other, &["--observed", snap, "--noise", "0.05"]);
    assert_bad(&out, &["BoxSize = 64000", "set [box] size = 64"]);
    assert!(!b.join("out").exists());
    for d in [d, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}
