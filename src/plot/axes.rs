//! Axes of the figures: logarithmic ranges and ticks, and tick labels.

use super::{DrawOutcome, FONT};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use std::ops::Range;

/// Draws the axes of `mesh` with plain-number tick labels ([`plain_label`]), the axis names `x`
/// and `y`, and the text sizes of the `simulate` figures.
pub(crate) fn draw_plain_axes<X, Y>(mesh: &mut MeshStyle<'_, '_, X, Y, BitMapBackend<'_>>, x: &str, y: &str) -> DrawOutcome
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    mesh.x_label_formatter(&plain_tick)
        .y_label_formatter(&plain_tick)
        .x_desc(x)
        .y_desc(y)
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .draw()?;
    Ok(())
}

/// [`plain_label`] as a tick formatter.
pub(crate) fn plain_tick(v: &f64) -> String {
    plain_label(*v)
}

/// Major ticks (1-2-5 per decade over less than 2.5 decades, powers of ten otherwise) and minor
/// ticks (every integer multiple within each decade) inside `r`.
pub(crate) fn log_ticks(r: &Range<f64>) -> (Vec<f64>, Vec<f64>) {
    let (e0, e1) = (r.start.log10().floor() as i32, r.end.log10().ceil() as i32);
    let fine = r.end / r.start < 10f64.powf(2.5);
    let (mut major, mut minor) = (Vec::new(), Vec::new());
    for e in e0..=e1 {
        let d = 10f64.powi(e);
        for m in 1..10 {
            let v = m as f64 * d;
            if v < r.start || v > r.end {
                continue;
            }
            if m == 1 || (fine && (m == 2 || m == 5)) {
                major.push(v);
            } else {
                minor.push(v);
            }
        }
    }
    (major, minor)
}

/// A padded log range covering the positive values, or `None` if there are none.
pub(crate) fn log_range(v: impl Iterator<Item = f64>, pad: f64) -> Option<Range<f64>> {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return None;
    }
    let (lo, hi) = if hi / lo < 1.5 { (lo / 1.5, hi * 1.5) } else { (lo, hi) };
    Some((lo / pad)..(hi * pad))
}

/// `10³`-style label for powers of ten, a plain number otherwise.
pub(crate) fn pow10_label(v: f64) -> String {
    let e = v.log10().round();
    if (v / 10f64.powf(e) - 1.0).abs() < 1e-6 {
        let sup: String = format!("{}", e as i32)
            .chars()
            .map(|c| match c {
                '-' => '⁻',
                '0' => '⁰',
                '1' => '¹',
                '2' => '²',
                '3' => '³',
                '4' => '⁴',
                '5' => '⁵',
                '6' => '⁶',
                '7' => '⁷',
                '8' => '⁸',
                _ => '⁹',
            })
            .collect();
        format!("10{sup}")
    } else {
        plain_label(v)
    }
}

/// A short plain number: `0.05`, `0.1`, `1`, `2.5`, `300`.
pub(crate) fn plain_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = (-(v.abs().log10().floor()) as i32 + 2).clamp(0, 8) as usize;
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s.len() > 7 {
        format!("{v:.1e}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(plain_label(0.05), "0.05");
        assert_eq!(plain_label(0.1), "0.1");
        assert_eq!(plain_label(1.0), "1");
        assert_eq!(plain_label(256.0), "256");
        assert_eq!(plain_label(2.5), "2.5");
        assert_eq!(pow10_label(1000.0), "10³");
        assert_eq!(pow10_label(0.01), "10⁻²");
    }
}
