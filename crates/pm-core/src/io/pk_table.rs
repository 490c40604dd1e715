//! Linear power-spectrum tables as text: the `cosmology.transfer = "FILE"` input
//! ([`crate::linear::PowerTable::from_file`]).
//!
//! **Format.** Whitespace-separated columns, k in h/Mpc first and P(k) in (Mpc/h)³ second, at
//! z = 0; further columns are ignored; everything after a `#` and blank lines are skipped; numbers
//! in any form Rust's `f64` parser takes, Fortran's `0.100000E-03` included. That is what the
//! Boltzmann codes write:
//!
//! - CLASS `*_pk.dat` (`output = mPk`): `# Matter power spectrum P(k) at redshift z=0`,
//!   `# for k=… to … h/Mpc,`, `# number of wavenumbers equal to N`, then the column titles
//!   `#    1:k (h/Mpc)              2:P (Mpc/h)^3`;
//! - CAMB `*_matterpower.dat`: the header `#    k/h          P` and Fortran `E15.6` columns
//!   (older CAMB versions write no header).
//!
//! **What the header is checked for**, so that a neighbouring output of the same run is not taken
//! for the linear P(k) at z = 0 (each a one-line error naming the file and the fix):
//! a CLASS redshift line `at redshift z=Z` with Z ≠ 0; a non-linear spectrum (`non-linear` or
//! `nonlinear` in the header, or a file named like CLASS's `*_pk_nl.dat`); column titles in the style of CLASS
//! (`1:… 2:…`) or CAMB (`k/h …`) whose second column is not a P (a transfer-function table: CLASS
//! `*_tk.dat`, CAMB `*_transfer_out.dat`); a first column titled in 1/Mpc instead of h/Mpc.
//! Tables without recognisable titles (such as the reference tables of this repository, or
//! `power.txt`) are read as they are.

use crate::error::{Error, Result};
use std::path::Path;

/// The rows of a P(k) table: k in h/Mpc, P in (Mpc/h)³, and the 1-based line number of each row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PkRows {
    /// Wavenumbers, h/Mpc, in file order.
    pub k: Vec<f64>,
    /// Power, (Mpc/h)³, in file order.
    pub p: Vec<f64>,
    /// Line number (from 1) of each row, for messages.
    pub line: Vec<usize>,
}

/// Reads the rows of a linear P(k) table (format and header checks in the module docs). Values
/// are not range-checked here ([`crate::linear::PowerTable::from_file`] does that). Errors
/// ([`Error::File`], naming the line where there is one): unreadable file, a non-numeric field,
/// a row of fewer than two columns, a header that marks another quantity (module docs).
pub fn read_pk_rows(path: &Path) -> Result<PkRows> {
    if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_pk_nl.dat")) {
        return Err(Error::file(
            path,
            "a CLASS non-linear spectrum (*_pk_nl.dat); cosmology.transfer needs the linear P(k), the *_pk.dat beside it",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read the P(k) table: {e}")))?;
    let mut rows = PkRows::default();
    // The comment lines before the first data row: the header.
    let mut header: Vec<(usize, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let (data, comment) = match line.split_once('#') {
            Some((d, c)) => (d, Some(c)),
            None => (line, None),
        };
        let fields: Vec<&str> = data.split_whitespace().collect();
        if fields.is_empty() {
            if let (Some(c), true) = (comment, rows.k.is_empty()) {
                header.push((lineno, c));
            }
            continue;
        }
        if rows.k.is_empty() {
            check_header(path, &header)?;
        }
        if fields.len() < 2 {
            return Err(Error::file(
                path,
                format!("line {lineno}: found 1 column, expected at least 2 (k [h/Mpc] and P [(Mpc/h)^3])"),
            ));
        }
        let num = |s: &str, what: &str| -> Result<f64> {
            s.parse::<f64>().map_err(|_| {
                Error::file(
                    path,
                    format!("line {lineno}: {what} = `{s}` is not a number (comments must start with #)"),
                )
            })
        };
        rows.k.push(num(fields[0], "k")?);
        rows.p.push(num(fields[1], "P")?);
        rows.line.push(lineno);
    }
    Ok(rows)
}

/// The header checks of the module docs, on the comment lines (number, text after `#`) before
/// the first data row.
fn check_header(path: &Path, header: &[(usize, &str)]) -> Result<()> {
    let fail = |lineno: usize, msg: String| Err(Error::file(path, format!("line {lineno}: {msg}")));
    for &(lineno, text) in header {
        let lower = text.to_ascii_lowercase();
        if let Some(at) = lower.find("at redshift z=") {
            let rest = &text[at + "at redshift z=".len()..];
            let z: String = rest.chars().take_while(|c| c.is_ascii_digit() || "+-.eE".contains(*c)).collect();
            if let Ok(z) = z.parse::<f64>() {
                if z != 0.0 {
                    return fail(
                        lineno,
                        format!(
                            "the table is at redshift z = {z}; cosmology.transfer needs the linear P(k) at z = 0 (CLASS: z_pk = 0, the file *_pk.dat without a z suffix)"
                        ),
                    );
                }
            }
        }
        if lower.contains("non-linear") || lower.contains("nonlinear") {
            return fail(
                lineno,
                "the header marks a non-linear power spectrum; cosmology.transfer needs the linear P(k) (CLASS *_pk.dat, CAMB with NonLinear = 0)".into(),
            );
        }
    }
    // The column titles: the last comment line before the data, in CLASS or CAMB style.
    let Some(&(lineno, titles)) = header.last() else { return Ok(()) };
    let columns: Vec<String> = if titles.contains("1:") && titles.contains("2:") {
        // CLASS: "    1:k (h/Mpc)              2:P (Mpc/h)^3"
        let mut cols = Vec::new();
        let mut rest = titles;
        let mut n = 1;
        while let Some(at) = rest.find(&format!("{n}:")) {
            let after = &rest[at + format!("{n}:").len()..];
            let end = after.find(&format!("{}:", n + 1)).unwrap_or(after.len());
            cols.push(after[..end].trim().to_string());
            rest = &after[end..];
            n += 1;
        }
        cols
    } else if titles.split_whitespace().next() == Some("k/h") {
        // CAMB: "    k/h          P"
        titles.split_whitespace().map(str::to_string).collect()
    } else {
        return Ok(());
    };
    if let Some(first) = columns.first() {
        if first.contains("1/Mpc") {
            return fail(
                lineno,
                format!("the first column is `{first}`; cosmology.transfer needs k in h/Mpc and P in (Mpc/h)^3 (divide k by h and multiply P by h^3)"),
            );
        }
    }
    match columns.get(1) {
        Some(second) if second.starts_with('P') => Ok(()),
        Some(second) => fail(
            lineno,
            format!(
                "the second column is `{second}`, not P(k): a transfer-function table (CLASS *_tk.dat, CAMB *_transfer_out.dat)? cosmology.transfer needs the linear matter power spectrum (CLASS *_pk.dat, CAMB *_matterpower.dat)"
            ),
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pm-core-pk-table-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(text: &str) -> String {
        let e = read_pk_rows(&write("t.dat", text)).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    const ROWS: &str = "1e-3 1e3\n1e-2 1e4\n";

    #[test]
    fn reads_class_and_camb_layouts() {
        let class = "# Matter power spectrum P(k) at redshift z=0\n# for k=1e-05 to 1 h/Mpc,\n# number of wavenumbers equal to 2\n#    1:k (h/Mpc)              2:P (Mpc/h)^3            \n      1.0000000000000e-03      1.0000000000000e+03\n      1.0000000000000e-02      1.0000000000000e+04\n";
        let r = read_pk_rows(&write("x_pk.dat", class)).unwrap();
        assert_eq!((r.k, r.p, r.line), (vec![1e-3, 1e-2], vec![1e3, 1e4], vec![5, 6]));
        let camb = "#    k/h          P\n   0.100000E-02   0.100000E+04\n   0.100000E-01   0.100000E+05\n";
        let r = read_pk_rows(&write("x_matterpower.dat", camb)).unwrap();
        assert_eq!((r.k, r.p), (vec![1e-3, 1e-2], vec![1e3, 1e4]));
        // Old CAMB: no header; our own tables: titles of no known style; extra columns.
        assert_eq!(read_pk_rows(&write("old.dat", ROWS)).unwrap().k.len(), 2);
        let own = format!("# k[h/Mpc] P_class[(Mpc/h)^3] P_camb\n{}", "1e-3 1e3 7\n");
        assert_eq!(read_pk_rows(&write("own.txt", &own)).unwrap().p, vec![1e3]);
        // A "z=" line later in the file (after the data) is not a header.
        let late = format!("{ROWS}# at redshift z=2\n");
        assert_eq!(read_pk_rows(&write("late.dat", &late)).unwrap().k.len(), 2);
    }

    #[test]
    fn headers_of_other_quantities_are_refused() {
        let e = err(&format!(
            "# Matter power spectrum P(k) at redshift z=0.5\n#    1:k (h/Mpc)   2:P (Mpc/h)^3\n{ROWS}"
        ));
        assert!(
            e.contains("line 1: the table is at redshift z = 0.5") && e.contains("z_pk = 0"),
            "{e}"
        );
        let e = err(&format!("# Non-linear matter power spectrum P(k) at redshift z=0\n{ROWS}"));
        assert!(e.contains("non-linear"), "{e}");
        let e = read_pk_rows(&write("run_pk_nl.dat", ROWS)).unwrap_err().to_string();
        assert!(e.contains("the *_pk.dat beside it"), "{e}");
        let e = err(&format!(
            "# Transfer functions T_i(k) at redshift z=0\n#    1:k (h/Mpc)   2:d_g   3:d_b\n{ROWS}"
        ));
        assert!(
            e.contains("line 2: the second column is `d_g`, not P(k)") && e.contains("_tk.dat"),
            "{e}"
        );
        let e = err(&format!("#    k/h          CDM          baryon\n{ROWS}"));
        assert!(e.contains("`CDM`, not P(k)") && e.contains("_matterpower.dat"), "{e}");
        let e = err(&format!("#    1:k (1/Mpc)   2:P (Mpc)^3\n{ROWS}"));
        assert!(e.contains("`k (1/Mpc)`") && e.contains("h/Mpc"), "{e}");
        let e = err("# k P\n1e-3 abc\n");
        assert!(e.contains("line 2: P = `abc` is not a number"), "{e}");
    }
}
