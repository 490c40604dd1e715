//! `cosmograd reconstruct`: the mock end to end on a small box (outputs, monotone loss, recovery
//! of the large scales), the observed-data mode, and bad input (exit code 2, one line).
//!
//! The bars at the default size (64³ particles, 128³ mesh, 10 steps) are `#[ignore]`d: each takes
//! 3 to 45 minutes on 2 cores (too long for CI's budget), and none is met yet (figures in each
//! test's doc comment and in docs/reconstruction.md; why the noise-free one is out of reach of
//! this optimiser: §L). Run them with
//! `cargo test --release --test reconstruct -- --ignored --nocapture`.

use std::path::Path;
use std::process::Output;

mod common;
use common::{assert_bad, bin, tmpdir};

/// A small, fast configuration: 16³ particles, 32³ mesh, 64 Mpc/h, 4 steps.
const SMALL: &str = common::small_config!("");

fn reconstruct(dir: &Path, cfg: Option<&str>, extra: &[&str]) -> Output {
    common::run("reconstruct", dir, cfg, extra)
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Rows of a whitespace table, `#` comments skipped.
fn table(path: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect()
}

/// The loss of every stage decreases strictly from one iteration to the next (loss.txt columns:
/// stage, R, iteration, loss, ½χ², ½|w|²).
fn assert_monotone(rows: &[Vec<f64>]) {
    for w in rows.windows(2) {
        if w[1][0] == w[0][0] {
            assert!(
                w[1][3] < w[0][3],
                "loss increased within stage {}: {} → {}",
                w[0][0],
                w[0][3],
                w[1][3]
            );
        }
    }
}

fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    common::write_npy(path, "<f8", shape, &bytes);
}

/// The mock on a small box: every file is written, each stage's loss decreases monotonically,
/// the large scales of the initial field are recovered, and the observed mode reads the mock's
/// own observation back.
#[test]
fn mock_writes_everything_and_recovers_the_large_scales() {
    let dir = tmpdir("mock");
    let out = reconstruct(&dir, Some(SMALL), &["--iterations", "30", "--noise", "0.05"]);
    assert_ok(&out);
    let o = dir.join("out");
    for f in cosmograd::reconstruct::RECON_FILES
        .iter()
        .chain(&cosmograd::reconstruct::MOCK_FILES)
    {
        let len = std::fs::metadata(o.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")).len();
        assert!(len > 0, "{f} is empty");
    }
    let rows = table(&o.join("loss.txt"));
    assert!(rows.len() >= 20, "{} loss rows", rows.len());
    assert_monotone(&rows);
    // The exact ½χ² falls (measured: 6.89e7 → 7.35e6 in 30 iterations with the measured
    // preconditioner and the default schedule, against 3.52e7 with the linear preconditioner and
    // the old schedule; the 32³ data mesh is finer than the 16³ particle grid, so its shot noise
    // keeps χ² far above the cell count).
    let (chi0, chi1) = (rows[0][4], rows.last().unwrap()[4]);
    assert!(chi1 < 0.25 * chi0, "chi2/2 {chi0} → {chi1}");
    // The largest scales are recovered first (measured: r = 0.9996, T = 0.963 at k = 0.125 h/Mpc;
    // r = 0.994 at k = 0.219 h/Mpc; before: 0.983 and 0.909).
    let rk = table(&o.join("r_k.txt"));
    for row in rk.iter().filter(|r| r[0] <= 0.15) {
        assert!(row[1] > 0.95, "r(k = {}) = {}", row[0], row[1]);
        assert!((row[2] - 1.0).abs() < 0.1, "T(k = {}) = {}", row[0], row[2]);
    }
    for row in rk.iter().filter(|r| r[0] > 0.15 && r[0] <= 0.25) {
        assert!(row[1] > 0.95, "r(k = {}) = {}", row[0], row[1]);
    }
    // Observed mode on the mock's observation: no truth files.
    let dir2 = tmpdir("observed");
    let obs = o.join("observed.npy");
    let out = reconstruct(
        &dir2,
        Some(SMALL),
        &["--iterations", "3", "--noise", "0.05", "--observed", obs.to_str().unwrap()],
    );
    assert_ok(&out);
    let o2 = dir2.join("out");
    assert!(o2.join("white_noise.npy").exists() && o2.join("slices.png").exists());
    assert!(!o2.join("r_k.txt").exists() && !o2.join("true_white_noise.npy").exists());
    assert_monotone(&table(&o2.join("loss.txt")));
    // A different run into the same directory needs --force.
    let out = reconstruct(&dir, Some(SMALL), &["--iterations", "2", "--noise", "0.05"]);
    assert_bad(&out, &["--force"]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// Data on a mesh other than the force mesh: the mock with `--data-mesh 24` (16³ particles, 32³
/// force mesh, so 24 is a multiple of neither) writes its observation and the model's prediction
/// on 24³ and recovers the largest scales; that observation read back with `--observed` sets the
/// data mesh from its shape, and a `--data-mesh` that contradicts the file is refused.
#[test]
fn data_on_another_mesh() {
    let dir = tmpdir("datamesh");
    let out = reconstruct(&dir, Some(SMALL), &["--iterations", "20", "--noise", "0.05", "--data-mesh", "24"]);
    assert_ok(&out);
    let o = dir.join("out");
    for f in ["observed.npy", "final_density.npy"] {
        let (shape, v) = cosmograd::core::io::read_npy(&o.join(f)).unwrap();
        assert_eq!(shape, vec![24, 24, 24], "{f}");
        assert!(v.iter().all(|x| x.is_finite()), "{f}");
    }
    assert!(std::fs::read_to_string(o.join("config.toml")).unwrap().contains("data mesh = 24"));
    assert_monotone(&table(&o.join("loss.txt")));
    let rk = table(&o.join("r_k.txt"));
    assert!(rk.iter().all(|r| r.len() == 6), "r_k.txt columns");
    // Measured: r = 0.998 at k = 0.125 h/Mpc after 20 iterations.
    assert!(rk[0][1] > 0.95, "r(k = {}) = {}", rk[0][0], rk[0][1]);
    let dir2 = tmpdir("datamesh-observed");
    let obs = o.join("observed.npy");
    let obs = obs.to_str().unwrap();
    let out = reconstruct(&dir2, Some(SMALL), &["--iterations", "2", "--noise", "0.05", "--observed", obs]);
    assert_ok(&out);
    let (shape, _) = cosmograd::core::io::read_npy(&dir2.join("out").join("final_density.npy")).unwrap();
    assert_eq!(shape, vec![24, 24, 24]);
    let dir3 = tmpdir("datamesh-bad");
    assert_bad(
        &reconstruct(&dir3, Some(SMALL), &["--noise", "0.05", "--observed", obs, "--data-mesh", "16"]),
        &["observed.npy", "(24, 24, 24)", "(16, 16, 16)", "--data-mesh"],
    );
    assert!(!dir3.join("out").exists());
    for d in [dir, dir2, dir3] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `--fit-cosmology` on the small mock: cosmology.txt holds the start, the estimate, a positive
/// uncertainty, the truth and the pull of both parameters; loss.txt carries (Ω_m, σ₈) per
/// iteration, fixed at the start until the last stage, and the loss decreases in every stage.
#[test]
fn fit_cosmology_writes_the_estimates_and_their_uncertainty() {
    let dir = tmpdir("fit");
    let out = reconstruct(&dir, Some(SMALL), &["--iterations", "20", "--noise", "0.5", "--fit-cosmology"]);
    assert_ok(&out);
    let o = dir.join("out");
    let rows = table(&o.join("loss.txt"));
    assert!(rows.iter().all(|r| r.len() == 8), "loss.txt rows need (Ω_m, σ₈)");
    assert_monotone(&rows);
    let last_stage = rows.last().unwrap()[0];
    let start = (rows[0][6], rows[0][7]);
    // The mock's default start: the truth (config: Ω_m = 0.3111, σ₈ = 0.8102) + (0.05, −0.05).
    assert!((start.0 - 0.3611).abs() < 1e-6 && (start.1 - 0.7602).abs() < 1e-6, "{start:?}");
    assert!(rows.iter().filter(|r| r[0] < last_stage).all(|r| (r[6], r[7]) == start));
    let fit = std::fs::read_to_string(o.join("cosmology.txt")).unwrap();
    let params: Vec<Vec<&str>> = fit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(params.len(), 2, "{fit}");
    for (p, name, truth) in params
        .iter()
        .zip(["omega_m", "sigma8"])
        .zip([0.3111, 0.8102])
        .map(|((p, n), t)| (p, n, t))
    {
        assert_eq!(p[0], name);
        let v: Vec<f64> = p[1..].iter().map(|x| x.parse().unwrap()).collect();
        let (est, sig, tr, pull) = (v[1], v[2], v[3], v[4]);
        assert!(est.is_finite() && sig > 0.0 && sig.is_finite(), "{fit}");
        assert!((tr - truth).abs() < 1e-9 && (pull - (est - tr) / sig).abs() < 1e-3, "{fit}");
    }
    let final_row = rows.last().unwrap();
    for (i, p) in params.iter().enumerate() {
        let est: f64 = p[2].parse().unwrap();
        assert!(
            (final_row[6 + i] - est).abs() < 1e-5,
            "last loss row {final_row:?} vs estimate {est}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--schedule` replaces the default annealing schedule: loss.txt holds exactly its stages (R
/// and iteration count per stage) with the loss decreasing in each, and config.toml records it;
/// `--preconditioner linear` and `--no-precondition` run too.
#[test]
fn schedule_and_preconditioner_options_are_followed() {
    for (name, pc) in [
        ("measured", None),
        ("linear", Some(["--preconditioner", "linear"])),
        ("plain", None),
    ] {
        let dir = tmpdir(&format!("schedule-{name}"));
        let mut args = vec!["--schedule", "16:4, 4:3,0:5", "--noise", "0.05"];
        if let Some(p) = pc {
            args.extend(p);
        }
        if name == "plain" {
            args.push("--no-precondition");
        }
        let out = reconstruct(&dir, Some(SMALL), &args);
        assert_ok(&out);
        let o = dir.join("out");
        let rows = table(&o.join("loss.txt"));
        assert_monotone(&rows);
        for (stage, (r, its)) in [(16.0, 4.0), (4.0, 3.0), (0.0, 5.0)].iter().enumerate() {
            let in_stage: Vec<&Vec<f64>> = rows.iter().filter(|row| row[0] == stage as f64).collect();
            assert!(in_stage.iter().all(|row| row[1] == *r), "{name}: stage {stage} R");
            let last = in_stage.iter().map(|row| row[2]).fold(0.0, f64::max);
            assert!(last >= 1.0 && last <= *its, "{name}: stage {stage} ran {last} of {its} iterations");
        }
        assert!(rows.iter().all(|row| row[0] <= 2.0), "{name}: more than three stages");
        let cfg = std::fs::read_to_string(o.join("config.toml")).unwrap();
        assert!(cfg.contains("16:4,4:3,0:5"), "{name}: the schedule is not in config.toml");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn bad_input_gives_one_line_and_exit_code_2() {
    let dir = tmpdir("bad");
    let m = 32;
    let wrong = dir.join("wrong.npy");
    write_npy_f64(&wrong, &[m, m, m - 1], &vec![0.0; m * m * (m - 1)]);
    let s = wrong.to_str().unwrap();
    assert_bad(
        &reconstruct(&dir, Some(SMALL), &["--observed", s, "--noise", "1"]),
        &["wrong.npy", "shape", "(32, 32, 32)"],
    );
    let nan = dir.join("nan.npy");
    let mut v = vec![0.0; m * m * m];
    v[5] = f64::NAN;
    write_npy_f64(&nan, &[m, m, m], &v);
    let s = nan.to_str().unwrap();
    assert_bad(
        &reconstruct(&dir, Some(SMALL), &["--observed", s, "--noise", "1"]),
        &["nan.npy", "non-finite"],
    );
    for sigma in ["0", "-1", "nan"] {
        assert_bad(&reconstruct(&dir, Some(SMALL), &["--noise", sigma]), &["--noise"]);
    }
    // σ² or 1/σ² out of f32's range: refused up front, not a NaN later blamed on the white noise
    // or the observed density.
    for sigma in ["1e-300", "1e-20", "1e200"] {
        assert_bad(
            &reconstruct(&dir, Some(SMALL), &["--noise", sigma]),
            &["--noise", "1e-8 <= SIGMA <= 1e8"],
        );
    }
    let good = dir.join("good.npy");
    write_npy_f64(&good, &[m, m, m], &vec![0.0; m * m * m]);
    // Observed data without a noise model.
    assert_bad(
        &reconstruct(&dir, Some(SMALL), &["--observed", good.to_str().unwrap()]),
        &["--noise"],
    );
    let table = dir.join("pn.txt");
    std::fs::write(&table, "# k P\n0.1 100\n0.05 50\n").unwrap();
    assert_bad(
        &reconstruct(&dir, Some(SMALL), &["--noise-power", table.to_str().unwrap()]),
        &["pn.txt", "increasing"],
    );
    assert_bad(&reconstruct(&dir, Some(SMALL), &["--iterations", "0"]), &["--iterations"]);
    for md in ["0", "1", "5000"] {
        assert_bad(&reconstruct(&dir, Some(SMALL), &["--data-mesh", md]), &["--data-mesh"]);
    }
    assert_bad(&reconstruct(&dir, Some(SMALL), &["--smoothing", "-2"]), &["--smoothing"]);
    for schedule in ["", "8", "8:0", "-1:10", "nan:5", "8:10,x:3", "8:10,"] {
        assert_bad(&reconstruct(&dir, Some(SMALL), &["--schedule", schedule]), &["--schedule"]);
    }
    for start in ["2,0.8", "0.3", "0.3,-1", "abc,0.8", "0.3,nan"] {
        assert_bad(
            &reconstruct(&dir, Some(SMALL), &["--fit-cosmology", "--fit-start", start]),
            &["--fit-start"],
        );
    }
    // A start the cosmology refuses (Ω_m below Ω_b).
    assert_bad(
        &reconstruct(&dir, Some(SMALL), &["--fit-cosmology", "--fit-start", "0.01,0.8"]),
        &["--fit-start"],
    );
    // Nothing was written by the refused runs.
    assert!(!dir.join("out").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the default mock (the embedded configuration) with `--noise sigma --iterations iters`,
/// prints its summary, checks that it succeeded with a monotone loss, and returns `r_k.txt`.
fn default_mock_rk(dir: &Path, sigma: &str, iters: &str) -> Vec<Vec<f64>> {
    let out = bin()
        .args(["reconstruct", "--out"])
        .arg(dir.join("out"))
        .args(["--noise", sigma, "--iterations", iters])
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert_ok(&out);
    let o = dir.join("out");
    assert_monotone(&table(&o.join("loss.txt")));
    print_rk(&o)
}

/// Reads `r_k.txt` and prints it.
fn print_rk(o: &Path) -> Vec<Vec<f64>> {
    let rk = table(&o.join("r_k.txt"));
    println!("k r T N r_wiener T_wiener");
    for r in &rk {
        println!("{:.4} {:.4} {:.4} {} {:.4} {:.4}", r[0], r[1], r[2], r[3], r[4], r[5]);
    }
    rk
}

/// The noise-free bar at the default size (embedded config: 64³ particles, 128³ mesh,
/// 128 Mpc/h, 10 steps): r(k) ≥ 0.95 for k ≤ 0.5 h/Mpc and ≥ 0.8 at k = 1 h/Mpc.
/// Measured 2026-11-22 with the measured preconditioner and the default schedule (100
/// iterations): r = 0.998 at k = 0.15, 0.993 at 0.2, 0.963 at 0.3, 0.821 at 0.5 and 0.363 at
/// 1 h/Mpc (the same again on 2026-12-07); with 300 iterations (`RECON_ITERATIONS`), 0.978 at
/// 0.3, 0.905 at 0.5 and 0.618 at 1 h/Mpc: not met. docs/reconstruction.md §L shows why more
/// iterations do not reach it: the posterior is multimodal between the reconstruction and the
/// truth, and even with the true modes up to k = 0.7 h/Mpc given, the optimiser reaches
/// r(1) = 0.80 on the 32³ mock.
#[test]
#[ignore = "default size: 3-5 min on 2 cores, and the issue-5 bar is not met yet (r(k) measured in the doc comment); run with cargo test --release --test reconstruct -- --ignored"]
fn default_mock_noise_free_bar() {
    let dir = tmpdir("bar-noise-free");
    let iters = std::env::var("RECON_ITERATIONS").unwrap_or_else(|_| "100".into());
    let rk = default_mock_rk(&dir, "0.01", &iters);
    for r in rk.iter().filter(|r| r[0] <= 0.5) {
        assert!(r[1] >= 0.95, "r(k = {:.3}) = {:.4} < 0.95", r[0], r[1]);
    }
    let at1 = rk.iter().min_by(|a, b| (a[0] - 1.0).abs().total_cmp(&(b[0] - 1.0).abs())).unwrap();
    assert!(at1[1] >= 0.8, "r(k = {:.3}) = {:.4} < 0.8", at1[0], at1[1]);
}

/// The Wiener bar at the default size: with noise σ comparable to the field's rms at
/// k ~ 0.3 h/Mpc, T(k) and r(k) follow the expectation from the signal-to-noise per mode within
/// 10 % on large scales (k ≤ 0.3). The expectation is the r and T of the linear-theory Wiener
/// filter of the same data, with the mock's own noise realisation (`r_k.txt` columns 5 and 6,
/// docs/reconstruction.md eq. W1). σ = 50 per 1 Mpc/h cell is P_N = σ² V_cell = 2500 (Mpc/h)³,
/// P_L at k ≈ 0.2 h/Mpc. Measured 2026-12-07 (100 iterations, seed 42): r/r_W = 1.12, 1.09,
/// 1.00, 0.98, 0.99, 0.88 and T/T_W = 0.93, 1.21, 1.03, 0.99, 1.02, 0.99 at k = 0.06, 0.11,
/// 0.15, 0.2, 0.25, 0.3 h/Mpc: within 10 % at k = 0.15–0.25, not on the largest scales (where the
/// non-linear model beats the linear Wiener filter) nor for r at 0.3. Seeds 1 and 2 and 300
/// iterations: docs/reconstruction.md §A.
#[test]
#[ignore = "default size: 3-5 min on 2 cores, and the issue-5 bar is not met yet (r(k) measured in the doc comment); run with cargo test --release --test reconstruct -- --ignored"]
fn default_mock_wiener_bar() {
    let dir = tmpdir("bar-wiener");
    let sigma = std::env::var("RECON_SIGMA").unwrap_or_else(|_| "50".into());
    let iters = std::env::var("RECON_ITERATIONS").unwrap_or_else(|_| "100".into());
    let rk = default_mock_rk(&dir, &sigma, &iters);
    for r in rk.iter().filter(|r| r[0] <= 0.3) {
        assert!(
            (r[1] / r[4] - 1.0).abs() <= 0.1,
            "r(k = {:.3}) = {:.4} vs Wiener {:.4}",
            r[0],
            r[1],
            r[4]
        );
        assert!(
            (r[2] / r[5] - 1.0).abs() <= 0.1,
            "T(k = {:.3}) = {:.4} vs Wiener {:.4}",
            r[0],
            r[2],
            r[5]
        );
    }
}

/// The `--fit-cosmology` bar at the default size: Ω_m and σ₈ within 2σ of the truth on 5 seeds out
/// of 5 (the default noise, σ = 0.01; each run reconstructs a calibration mock and then the data:
/// 261 evaluations, about 9 min on a quiet 2-core machine). Measured 2026-11-22 with the linear
/// preconditioner, seed 1: Ω_m = 0.3601 ± 0.0561, σ₈ = 0.7601 ± 0.0312 — inside 2σ only because θ
/// barely left the start (docs/reconstruction.md §J).
#[test]
#[ignore = "default size, 5 seeds: ~45 min on 2 cores, and the issue-5 bar is not met yet (docs/reconstruction.md §J); run with cargo test --release --test reconstruct -- --ignored"]
fn default_mock_fit_cosmology_bar() {
    for seed in 1..=5 {
        let dir = tmpdir(&format!("bar-fit-{seed}"));
        let out = bin()
            .args(["reconstruct", "--fit-cosmology", "--seed", &seed.to_string(), "--out"])
            .arg(dir.join("out"))
            .output()
            .unwrap();
        println!("{}", String::from_utf8_lossy(&out.stdout));
        assert_ok(&out);
        let fit = std::fs::read_to_string(dir.join("out").join("cosmology.txt")).unwrap();
        for line in fit.lines().filter(|l| !l.starts_with('#')) {
            let v: Vec<f64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
            let (start, est, truth, pull) = (v[0], v[1], v[3], v[4]);
            assert!(pull.abs() <= 2.0, "seed {seed}: {line}");
            // A recovery, not a start that happens to lie within 2σ: the fit moved towards the truth.
            assert!(
                (est - truth).abs() < 0.5 * (start - truth).abs(),
                "seed {seed}: the fit stayed near the start: {line}"
            );
        }
    }
}

/// `reconstruct` reports the largest reversal error of its backward passes (loss.txt's header and
/// the summary) and takes `--checkpoint-every`, which bounds it: every 2 steps less than pure
/// reversal, every step less again (measured 1.4e-3, 4.8e-4, 1.5e-4); `--checkpoint-every 0` is
/// refused. No warning at these errors (threshold 1e-2).
#[test]
fn reconstruct_reports_and_bounds_the_reversal_error() {
    let mut errs = Vec::new();
    for (i, extra) in [&[][..], &["--checkpoint-every", "2"][..], &["--checkpoint-every", "1"][..]]
        .into_iter()
        .enumerate()
    {
        let dir = common::tmpdir(&format!("reversal-{i}"));
        let mut args = vec!["--iterations", "3", "--noise", "0.05"];
        args.extend_from_slice(extra);
        let mut cmd = common::bin();
        cmd.arg("reconstruct").arg("--out").arg(dir.join("out"));
        std::fs::write(dir.join("c.toml"), SMALL).unwrap();
        cmd.arg("--config").arg(dir.join("c.toml")).args(&args);
        let out = common::output_within(&mut cmd, common::RUN_TIMEOUT);
        assert_ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("warning: reversal error"), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("reversal error ≤"), "{stdout}");
        let text = std::fs::read_to_string(dir.join("out/loss.txt")).unwrap();
        let line = text.lines().find(|l| l.starts_with("# largest reversal error")).expect("reported");
        let v: f64 = line.split(": ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        errs.push(v);
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(errs[0] > 0.0 && errs[0] < 1e-2, "pure reversal {:e}", errs[0]);
    assert!(errs[1] < errs[0], "every 2 steps {:e} vs pure {:e}", errs[1], errs[0]);
    assert!(errs[2] < errs[1], "every step {:e} vs every 2 {:e}", errs[2], errs[1]);
    let dir = common::tmpdir("reversal-zero");
    assert_bad(
        &reconstruct(&dir, Some(SMALL), &["--checkpoint-every", "0"]),
        &["--checkpoint-every"],
    );
    println!("reversal errors: pure {:e}, every 2 {:e}, every 1 {:e}", errs[0], errs[1], errs[2]);
}

/// `precision = "f64"` writes every array of the reconstruction as float64 (the fields were
/// float32 whatever the precision), f32 as float32.
#[test]
fn reconstruct_writes_arrays_at_the_run_precision() {
    for (prec, descr) in [("f32", "<f4"), ("f64", "<f8")] {
        let dir = common::tmpdir(&format!("recon-precision-{prec}"));
        let cfg = format!("{SMALL}[run]\nprecision = \"{prec}\"\n");
        assert_ok(&reconstruct(&dir, Some(&cfg), &["--iterations", "2", "--noise", "0.05"]));
        for f in [
            "white_noise.npy",
            "linear_density.npy",
            "final_density.npy",
            "observed.npy",
            "true_white_noise.npy",
        ] {
            let h = pm_core::io::read_npy_header(&dir.join("out").join(f)).unwrap();
            assert_eq!(h.descr, descr, "{prec}: {f}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
