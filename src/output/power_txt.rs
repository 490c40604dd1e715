//! `power.txt`, the power-spectrum table of `cosmograd simulate`: [`write_power_txt`] and
//! [`read_power_txt`].

use super::write_atomic;
use pm_core::{Error, Result};
use std::path::Path;

/// Writes the power spectrum table: `#`-comment lines (each line of `header`, then the column
/// names), then one row per bin with the columns
/// `k_mean[h/Mpc] P[(Mpc/h)^3] N_modes P_lin[(Mpc/h)^3]` in `%.8e` scientific format
/// (`N_modes` as an integer). Readable by `numpy.loadtxt` and [`read_power_txt`].
///
/// # Panics
/// If the four columns differ in length (a caller bug).
#[track_caller]
pub fn write_power_txt(path: &Path, k_mean: &[f64], p: &[f64], n_modes: &[u64], p_lin: &[f64], header: &str) -> Result<()> {
    let n = k_mean.len();
    assert!(
        p.len() == n && n_modes.len() == n && p_lin.len() == n,
        "write_power_txt: column lengths differ (k {n}, P {}, N_modes {}, P_lin {})",
        p.len(),
        n_modes.len(),
        p_lin.len()
    );
    let mut s = String::with_capacity(64 * (n + 8));
    for line in header.lines() {
        let line = line.trim_end();
        if line.starts_with('#') {
            s.push_str(line);
        } else if line.is_empty() {
            s.push('#');
        } else {
            s.push_str("# ");
            s.push_str(line);
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "# {:>14} {:>16} {:>10} {:>16}\n",
        "k_mean[h/Mpc]", "P[(Mpc/h)^3]", "N_modes", "P_lin[(Mpc/h)^3]"
    ));
    for i in 0..n {
        s.push_str(&format!(
            "{:>16} {:>16} {:>10} {:>16}\n",
            sci(k_mean[i]),
            sci(p[i]),
            n_modes[i],
            sci(p_lin[i])
        ));
    }
    write_atomic(path, s.as_bytes())
}

/// A power spectrum table as read back from `power.txt`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PowerTable {
    /// The `#` comment lines, without the leading `# `.
    pub header: Vec<String>,
    /// Mean wavenumber of the modes in each bin, h/Mpc.
    pub k: Vec<f64>,
    /// Measured power, (Mpc/h)³.
    pub p: Vec<f64>,
    /// Number of modes in each bin.
    pub n_modes: Vec<u64>,
    /// Linear power at `k`, (Mpc/h)³.
    pub p_lin: Vec<f64>,
}

/// Reads a `power.txt` written by [`write_power_txt`].
pub fn read_power_txt(path: &Path) -> Result<PowerTable> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut t = PowerTable::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix('#') {
            t.header.push(c.strip_prefix(' ').unwrap_or(c).to_string());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let bad = || {
            Error::file(
                path,
                format!("line {}: expected 4 columns k P N_modes P_lin, found {line:?}", i + 1),
            )
        };
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() != 4 {
            return Err(bad());
        }
        t.k.push(cols[0].parse().map_err(|_| bad())?);
        t.p.push(cols[1].parse().map_err(|_| bad())?);
        t.n_modes.push(cols[2].parse().map_err(|_| bad())?);
        t.p_lin.push(cols[3].parse().map_err(|_| bad())?);
    }
    Ok(t)
}

/// C's `%.8e`: `1.23456789e-02`, `-4.00000000e+03`, `nan`, `inf`.
fn sci(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let s = format!("{x:.8e}");
    let (mant, exp) = s.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{tmp_dir, toy_pk};

    #[test]
    fn power_txt_round_trip() {
        let d = tmp_dir("txt");
        let path = d.join("power.txt");
        let (k, p, n, lin) = toy_pk();
        let mut p = p;
        p[3] = f64::NAN;
        write_power_txt(
            &path,
            &k,
            &p,
            &n,
            &lin,
            "cosmograd power spectrum at a = 1\nbox 256 Mpc/h\n\nbins: linear",
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# cosmograd power spectrum at a = 1");
        assert_eq!(lines[2], "#");
        assert!(lines[4].starts_with("#") && lines[4].contains("k_mean[h/Mpc]") && lines[4].contains("N_modes"));
        assert_eq!(lines.len(), 5 + k.len());
        // %.8e with a two-digit signed exponent.
        let first: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(first[0], sci(k[0]));
        assert!(first[0].ends_with("e-02"), "{}", first[0]);
        assert_eq!(first[2], n[0].to_string());
        let t = read_power_txt(&path).unwrap();
        assert_eq!(t.header.len(), 5);
        assert_eq!(t.n_modes, n);
        for i in 0..k.len() {
            assert!((t.k[i] / k[i] - 1.0).abs() < 1e-8);
            assert!((t.p_lin[i] / lin[i] - 1.0).abs() < 1e-8);
            if i == 3 {
                assert!(t.p[i].is_nan());
            } else {
                assert!((t.p[i] / p[i] - 1.0).abs() < 1e-8);
            }
        }
        assert!(std::fs::read_dir(&d).unwrap().count() == 1, "no temporary files left");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn sci_format() {
        assert_eq!(sci(0.0123456789), "1.23456789e-02");
        assert_eq!(sci(-4000.0), "-4.00000000e+03");
        assert_eq!(sci(0.0), "0.00000000e+00");
        assert_eq!(sci(1e-300), "1.00000000e-300");
        assert_eq!(sci(f64::NAN), "nan");
        assert_eq!(sci(f64::NEG_INFINITY), "-inf");
    }
}
