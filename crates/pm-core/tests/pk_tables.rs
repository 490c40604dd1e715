//! The linear P(k) tables of CLASS (`*_pk.dat`) and CAMB (`*_matterpower.dat`), in the exact
//! layout each code writes (tests/data/, comment headers included), as `cosmology.transfer`.

use pm_core::config::{Config, TransferChoice};
use pm_core::linear::{sigma_tophat, PowerTable};
use pm_core::tables::CosmoTables;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// (k, P_class, P_camb) of the reference table the test tables were cut from (every 2nd row).
fn reference() -> Vec<[f64; 3]> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/pk_lin_z0.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .step_by(2)
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2]]
        })
        .collect()
}

#[test]
fn class_and_camb_tables_read_with_their_headers() {
    let rows = reference();
    let class = PowerTable::from_file(&data("planck18_pk.dat")).unwrap();
    let camb = PowerTable::from_file(&data("planck18_matterpower.dat")).unwrap();
    assert_eq!((class.len(), camb.len()), (100, 100));
    for r in &rows {
        // At the nodes: CLASS's 13 digits exactly; CAMB's k and P rounded to 6 digits (E15.6).
        assert!(
            (class.p(r[0]) / r[1] - 1.0).abs() < 1e-12,
            "CLASS P({}) = {} vs {}",
            r[0],
            class.p(r[0]),
            r[1]
        );
        assert!(
            (camb.p(r[0]) / r[2] - 1.0).abs() < 1e-4,
            "CAMB P({}) = {} vs {}",
            r[0],
            camb.p(r[0]),
            r[2]
        );
    }
    // The two codes agree to 6e-4 (reference README); between the nodes too.
    let mut k = 1e-3;
    while k < 10.0 {
        let d = (class.p(k) / camb.p(k) - 1.0).abs();
        assert!(d < 2e-3, "k = {k}: CLASS/CAMB - 1 = {d}");
        k *= 1.07;
    }
    // Both are σ8 = 0.8102 tables.
    for t in [&class, &camb] {
        let s8 = sigma_tophat(|k| t.p(k), 8.0);
        assert!((s8 / 0.8102 - 1.0).abs() < 1e-3, "σ8 = {s8}");
    }
}

#[test]
fn a_class_or_camb_file_is_the_transfer_of_a_run() {
    let dir = std::env::temp_dir().join(format!("pm-core-pk-tables-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["planck18_pk.dat", "planck18_matterpower.dat"] {
        std::fs::copy(data(name), dir.join(name)).unwrap();
        // A relative path in the config, its own amplitude (no sigma8).
        let cfg_path = dir.join("run.toml");
        std::fs::write(&cfg_path, format!("[cosmology]\ntransfer = \"{name}\"\n")).unwrap();
        let cfg = Config::load(&cfg_path).unwrap();
        cfg.validate().unwrap();
        assert!(matches!(&cfg.cosmology.transfer, TransferChoice::File(p) if p.is_absolute()));
        let tables = CosmoTables::new(&cfg.cosmology, 1.0).unwrap();
        let table = PowerTable::from_file(&data(name)).unwrap();
        for k in [1e-3, 0.01, 0.1, 1.0] {
            let (p, want) = (tables.p_linear(k, 1.0), table.p(k));
            assert!((p / want - 1.0).abs() < 1e-9, "{name}: P_L({k}) = {p} vs the table's {want}");
        }
        let s8 = tables.linear_power().sigma8();
        assert!((s8 / 0.8102 - 1.0).abs() < 1e-3, "{name}: σ8 = {s8}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
