//! Scratch directories, PNG sizes and toy spectra and density fields for the unit tests of the
//! output files and figures.

use std::path::{Path, PathBuf};

/// A fresh scratch directory `cosmograd-output-{tag}-{pid}-{n}` in the system temp dir.
pub(crate) fn tmp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "cosmograd-output-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (width, height) from the PNG signature and IHDR chunk.
pub(crate) fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "PNG magic");
    assert_eq!(&b[12..16], b"IHDR");
    let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    (be(16), be(20))
}

/// A toy P(k): linear ~ k^-1.5 with a turnover, measured = linear × (1 + (k/0.2)^2) × noise.
pub(crate) fn toy_pk() -> (Vec<f64>, Vec<f64>, Vec<u64>, Vec<f64>) {
    let kf = 2.0 * std::f64::consts::PI / 256.0;
    let k: Vec<f64> = (1..=32).map(|i| i as f64 * kf).collect();
    let lin: Vec<f64> = k.iter().map(|&k| 2e4 * (k / 0.02) / (1.0 + (k / 0.02).powf(2.5))).collect();
    let n: Vec<u64> = (1..=32u64).map(|i| 4 * 3 * i * i + 6).collect();
    let p: Vec<f64> = k
        .iter()
        .zip(&lin)
        .zip(&n)
        .enumerate()
        .map(|(i, ((&k, &l), &n))| {
            let noise = 1.0 + (if i % 2 == 0 { 1.0 } else { -1.0 }) * (2.0 / n as f64).sqrt();
            l * (1.0 + (k / 0.25).powi(2)) * noise
        })
        .collect();
    (k, p, n, lin)
}

/// A toy cosmic web: a few filaments and haloes on a smooth background.
pub(crate) fn toy_density(m: usize) -> Vec<f32> {
    let mut d = vec![0f32; m * m * m];
    for ix in 0..m {
        for iy in 0..m {
            for iz in 0..m {
                let (x, y, z) = (ix as f64 / m as f64, iy as f64 / m as f64, iz as f64 / m as f64);
                let tau = 2.0 * std::f64::consts::PI;
                let web = (tau * 3.0 * y).sin() * (tau * 2.0 * z).cos() + 0.5 * (tau * (5.0 * y + 3.0 * z + x)).sin();
                let halo = (-((y - 0.3).powi(2) + (z - 0.6).powi(2)) / 0.0008).exp() * 60.0;
                d[(ix * m + iy) * m + iz] = ((1.6 * web).exp() * 0.4 + halo - 0.6) as f32;
            }
        }
    }
    d
}
