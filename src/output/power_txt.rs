//! Run outputs of `cosmograd simulate`: the power-spectrum table `power.txt` and the figures
//! `power.png` (measured vs linear P(k)) and `slice.png` (a projected density slab).
//!
//! The functions take plain data (the simulation computes it) and return
//! `Result<(), pm_core::Error>`; a failure names the file. Figures use the DejaVu Sans font
//! embedded in the binary (`assets/DejaVuSans.ttf`, licence in `assets/DejaVuSans-LICENSE.txt`),
//! so no system font library is needed, and are written through a temporary sibling file
//! renamed into place, so a figure is either complete or absent.

use plotters::backend::RGBPixel;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::FontStyle;
use pm_core::{Error, Result};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Size in pixels of `power.png`.
pub const POWER_PNG_SIZE: (u32, u32) = (800, 600);
/// Size in pixels of `slice.png`.
pub const SLICE_PNG_SIZE: (u32, u32) = (700, 650);

pub(crate) const FONT: &str = "sans-serif";
/// Colour of the measured P(k) (tab:blue).
const MEASURED: RGBColor = RGBColor(31, 119, 180);
/// Colour of the linear P(k).
const LINEAR: RGBColor = RGBColor(40, 40, 40);
const GRID: RGBColor = RGBColor(215, 215, 215);
const GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);

/// Registers the embedded font as `sans-serif` (once per process).
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and valid; a failure would only lose the labels.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

// ---------------------------------------------------------------------------------------------
// power.txt
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// power.png
// ---------------------------------------------------------------------------------------------

/// Plots the measured P(k) (points and line) against the linear P(k) (dashed) on log-log
/// axes, with the ratio P/P_lin in a lower panel; 800×600 PNG. Bins with k ≤ 0 or a
/// non-positive or non-finite P are left out.
///
/// # Panics
/// If the three columns differ in length (a caller bug).
#[track_caller]
pub fn plot_power_png(path: &Path, k: &[f64], p: &[f64], p_lin: &[f64], title: &str) -> Result<()> {
    assert!(
        p.len() == k.len() && p_lin.len() == k.len(),
        "plot_power_png: column lengths differ (k {}, P {}, P_lin {})",
        k.len(),
        p.len(),
        p_lin.len()
    );
    let ok = |x: f64| x.is_finite() && x > 0.0;
    let meas: Vec<(f64, f64)> = (0..k.len()).filter(|&i| ok(k[i]) && ok(p[i])).map(|i| (k[i], p[i])).collect();
    let lin: Vec<(f64, f64)> = (0..k.len())
        .filter(|&i| ok(k[i]) && ok(p_lin[i]))
        .map(|i| (k[i], p_lin[i]))
        .collect();
    let ratio: Vec<(f64, f64)> = (0..k.len())
        .filter(|&i| ok(k[i]) && ok(p[i]) && ok(p_lin[i]))
        .map(|i| (k[i], p[i] / p_lin[i]))
        .collect();
    draw_png(path, POWER_PNG_SIZE, |root| draw_power(root, &meas, &lin, &ratio, title))
}

fn draw_power(
    root: DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    meas: &[(f64, f64)],
    lin: &[(f64, f64)],
    ratio: &[(f64, f64)],
    title: &str,
) -> DrawOutcome {
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(418);

    let k_range = log_range(meas.iter().chain(lin).map(|q| q.0), 1.12).unwrap_or(0.01..1.0);
    let p_range = log_range(meas.iter().chain(lin).map(|q| q.1), 1.6).unwrap_or(1.0..1e5);
    let (k_major, k_minor) = log_ticks(&k_range);
    let (p_major, p_minor) = log_ticks(&p_range);
    let dot = if meas.len() > 40 { 2 } else { 3 };

    let mut chart = ChartBuilder::on(&top)
        .caption(title, (FONT, 22))
        .margin_top(10)
        .margin_right(24)
        .margin_left(8)
        .margin_bottom(6)
        .x_label_area_size(0)
        .y_label_area_size(78)
        .build_cartesian_2d(
            k_range
                .clone()
                .log_scale()
                .with_key_points(k_major.clone())
                .with_light_points(k_minor.clone()),
            p_range.clone().log_scale().with_key_points(p_major).with_light_points(p_minor),
        )?;
    chart
        .configure_mesh()
        .light_line_style(GRID_LIGHT)
        .bold_line_style(GRID)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| pow10_label(*v))
        .y_desc("P(k)  [(Mpc/h)³]")
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .draw()?;
    if !lin.is_empty() {
        chart
            .draw_series(DashedLineSeries::new(lin.iter().copied(), 9, 6, LINEAR.stroke_width(2)))?
            .label("linear theory")
            .legend(|(x, y)| DashedPathElement::new(vec![(x, y), (x + 24, y)], 7, 4, LINEAR.stroke_width(2)));
    }
    if !meas.is_empty() {
        chart
            .draw_series(LineSeries::new(meas.iter().copied(), MEASURED.stroke_width(2)).point_size(dot))?
            .label("measured")
            .legend(|(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (24, 0)], MEASURED.stroke_width(2))
                    + Circle::new((12, 0), 3, MEASURED.filled())
            });
    }
    frame(chart.plotting_area())?;
    if meas.is_empty() && lin.is_empty() {
        let (w, h) = chart.plotting_area().dim_in_pixel();
        chart.plotting_area().strip_coord_spec().draw(&Text::new(
            "no positive P(k) to plot",
            (w as i32 / 2 - 100, h as i32 / 2),
            (FONT, 18),
        ))?;
    } else {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(12)
            .legend_area_size(34)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(170, 170, 170))
            .draw()?;
    }

    // Lower panel: P / P_lin on a log axis, 1 marked.
    let (lo, hi) = ratio
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), q| (a.min(q.1), b.max(q.1)));
    let (lo, hi) = if lo.is_finite() {
        (lo.min(0.8) / 1.15, hi.max(1.25) * 1.15)
    } else {
        (0.5, 2.0)
    };
    let r_range = lo..hi;
    let (r_major, r_minor) = log_ticks(&r_range);
    let mut rchart = ChartBuilder::on(&bottom)
        .margin_top(4)
        .margin_right(24)
        .margin_left(8)
        .margin_bottom(8)
        .x_label_area_size(56)
        .y_label_area_size(78)
        .build_cartesian_2d(
            k_range.clone().log_scale().with_key_points(k_major).with_light_points(k_minor),
            r_range.log_scale().with_key_points(r_major).with_light_points(r_minor),
        )?;
    rchart
        .configure_mesh()
        .light_line_style(GRID_LIGHT)
        .bold_line_style(GRID)
        .x_label_formatter(&|v| plain_label(*v))
        .y_label_formatter(&|v| plain_label(*v))
        .x_desc("k  [h/Mpc]")
        .y_desc("P / P_lin")
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .draw()?;
    rchart.draw_series(DashedLineSeries::new(
        [(k_range.start, 1.0), (k_range.end, 1.0)],
        9,
        6,
        LINEAR.stroke_width(1),
    ))?;
    if !ratio.is_empty() {
        rchart.draw_series(LineSeries::new(ratio.iter().copied(), MEASURED.stroke_width(2)).point_size(dot))?;
    }
    frame(rchart.plotting_area())?;
    Ok(())
}

/// A black frame around a chart's plotting area.
fn frame<X: Ranged, Y: Ranged>(area: &DrawingArea<BitMapBackend<'_>, Cartesian2d<X, Y>>) -> DrawOutcome {
    let (w, h) = area.dim_in_pixel();
    area.strip_coord_spec()
        .draw(&Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], BLACK.stroke_width(1)))?;
    Ok(())
}

/// Major ticks (1-2-5 per decade over less than 2.5 decades, powers of ten otherwise) and minor
/// ticks (every integer multiple within each decade) inside `r`.
fn log_ticks(r: &Range<f64>) -> (Vec<f64>, Vec<f64>) {
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
fn log_range(v: impl Iterator<Item = f64>, pad: f64) -> Option<Range<f64>> {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return None;
    }
    let (lo, hi) = if hi / lo < 1.5 { (lo / 1.5, hi * 1.5) } else { (lo, hi) };
    Some((lo / pad)..(hi * pad))
}

/// `10³`-style label for powers of ten, a plain number otherwise.
fn pow10_label(v: f64) -> String {
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

// ---------------------------------------------------------------------------------------------
// slice.png
// ---------------------------------------------------------------------------------------------

/// Plots a projected density slab: the mean of 1+δ over the first ⌈thickness / cell⌉ cells
/// along axis 0 (x), as log₁₀ of it on the (y, z) plane, with the magma colour map (range:
/// 0.5th to 99.9th percentile) and a colour bar; axes in Mpc/h; about 700×650 PNG.
/// `density` is δ on an m³ mesh in C order (`[ix][iy][iz]`), `box_size` and `thickness` in
/// Mpc/h (a thickness above the box projects the whole box).
///
/// # Panics
/// If `density.len() != m³` or `m == 0` (a caller bug).
#[track_caller]
pub fn plot_slice_png(path: &Path, density: &[f32], m: usize, box_size: f64, thickness: f64, title: &str) -> Result<()> {
    assert!(
        m > 0 && density.len() == m * m * m,
        "plot_slice_png: {} values for a {m}^3 mesh",
        density.len()
    );
    let cell = box_size / m as f64;
    let cells = if thickness.is_finite() && thickness > 0.0 && cell > 0.0 {
        ((thickness / cell - 1e-9).ceil() as usize).clamp(1, m)
    } else {
        1
    };
    // Mean of 1 + δ over the slab; proj[iy * m + iz].
    let mut proj = vec![0f64; m * m];
    for ix in 0..cells {
        let plane = &density[ix * m * m..(ix + 1) * m * m];
        for (acc, &d) in proj.iter_mut().zip(plane) {
            *acc += 1.0 + d as f64;
        }
    }
    let logs: Vec<f64> = proj
        .iter()
        .map(|&s| {
            let v = s / cells as f64;
            if v > 0.0 && v.is_finite() {
                v.log10()
            } else {
                f64::NAN
            }
        })
        .collect();
    let mut sorted: Vec<f64> = logs.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let (vmin, vmax) = if sorted.is_empty() {
        (-1.0, 1.0)
    } else {
        let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
        let (a, b) = (q(0.005), q(0.999));
        if b - a > 1e-6 {
            (a, b)
        } else {
            (a - 0.5, a + 0.5)
        }
    };
    let subtitle = format!(
        "mean of 1+δ over 0 ≤ x < {} Mpc/h ({cells} of {m} cells)",
        plain_label(cells as f64 * cell)
    );
    let slab = Slab {
        m,
        box_size,
        logs: &logs,
        vmin,
        vmax,
    };
    draw_png(path, SLICE_PNG_SIZE, |root| draw_slice(root, &slab, title, &subtitle))
}

struct Slab<'a> {
    m: usize,
    box_size: f64,
    /// log₁₀ of the projected 1+δ, `[iy * m + iz]`; NaN where empty.
    logs: &'a [f64],
    vmin: f64,
    vmax: f64,
}

fn draw_slice(root: DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, s: &Slab<'_>, title: &str, subtitle: &str) -> DrawOutcome {
    root.fill(&WHITE)?;
    let (w, _) = root.dim_in_pixel();
    let (head, rest) = root.split_vertically(62);
    let centred = |size: u32| {
        TextStyle::from((FONT, size).into_font())
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ))
    };
    head.draw(&Text::new(title.to_string(), (w as i32 / 2, 10), centred(22)))?;
    head.draw(&Text::new(
        subtitle.to_string(),
        (w as i32 / 2, 38),
        centred(14).color(&RGBColor(80, 80, 80)),
    ))?;

    let (main, bar) = rest.split_horizontally(584);
    let l = s.box_size;
    let mut chart = ChartBuilder::on(&main)
        .margin_top(6)
        .margin_left(8)
        .margin_right(8)
        .margin_bottom(26)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..l, 0.0..l)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| plain_label(*v))
        .y_label_formatter(&|v| plain_label(*v))
        .x_desc("y  [Mpc/h]")
        .y_desc("z  [Mpc/h]")
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .draw()?;
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let mut buf = vec![0u8; (pw * ph * 3) as usize];
    for py in 0..ph as usize {
        // Row 0 is the top of the image: the largest z.
        let iz = s.m - 1 - (py * s.m / ph as usize).min(s.m - 1);
        for px in 0..pw as usize {
            let iy = (px * s.m / pw as usize).min(s.m - 1);
            let v = s.logs[iy * s.m + iz];
            let t = if v.is_finite() { (v - s.vmin) / (s.vmax - s.vmin) } else { 0.0 };
            let c = magma(t);
            let o = (py * pw as usize + px) * 3;
            buf[o..o + 3].copy_from_slice(&c);
        }
    }
    let img = BitMapElement::<_, RGBPixel>::with_owned_buffer((0.0, l), (pw, ph), buf).expect("buffer sized to the plotting area");
    chart.draw_series(std::iter::once(img))?;
    // Frame around the image.
    chart.draw_series(std::iter::once(Rectangle::new([(0.0, 0.0), (l, l)], BLACK.stroke_width(1))))?;

    // Colour bar, aligned with the image.
    let (lo, hi) = (s.vmin, s.vmax);
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(6)
        .margin_bottom(26 + 52)
        .margin_left(8)
        .margin_right(12)
        .x_label_area_size(0)
        .y_label_area_size(0)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0.0..1.0, lo..hi)?
        .set_secondary_coord(0.0..1.0, lo..hi);
    cb.configure_mesh().disable_mesh().disable_x_axis().disable_y_axis().draw()?;
    cb.configure_secondary_axes()
        .set_all_tick_mark_size(5)
        .y_labels(7)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .y_desc("log₁₀(1+δ)")
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .draw()?;
    let steps = 256;
    cb.draw_series((0..steps).map(|i| {
        let a = lo + (hi - lo) * i as f64 / steps as f64;
        let b = lo + (hi - lo) * (i + 1) as f64 / steps as f64;
        let [r, g, bl] = magma((i as f64 + 0.5) / steps as f64);
        Rectangle::new([(0.0, a), (1.0, b)], RGBColor(r, g, bl).filled())
    }))?;
    cb.draw_series(std::iter::once(Rectangle::new([(0.0, lo), (1.0, hi)], BLACK.stroke_width(1))))?;
    Ok(())
}

/// The magma colour map (van der Walt & Smith, CC0; matplotlib's 256-entry table) at t ∈ [0, 1].
pub(crate) fn magma(t: f64) -> [u8; 3] {
    let i = if t.is_finite() {
        (t.clamp(0.0, 1.0) * 255.0).round() as usize
    } else {
        0
    };
    MAGMA[i]
}

#[rustfmt::skip]
const MAGMA: [[u8; 3]; 256] = [
    [0, 0, 4], [1, 0, 5], [1, 1, 6], [1, 1, 8], [2, 1, 9], [2, 2, 11],
    [2, 2, 13], [3, 3, 15], [3, 3, 18], [4, 4, 20], [5, 4, 22], [6, 5, 24],
    [6, 5, 26], [7, 6, 28], [8, 7, 30], [9, 7, 32], [10, 8, 34], [11, 9, 36],
    [12, 9, 38], [13, 10, 41], [14, 11, 43], [16, 11, 45], [17, 12, 47], [18, 13, 49],
    [19, 13, 52], [20, 14, 54], [21, 14, 56], [22, 15, 59], [24, 15, 61], [25, 16, 63],
    [26, 16, 66], [28, 16, 68], [29, 17, 71], [30, 17, 73], [32, 17, 75], [33, 17, 78],
    [34, 17, 80], [36, 18, 83], [37, 18, 85], [39, 18, 88], [41, 17, 90], [42, 17, 92],
    [44, 17, 95], [45, 17, 97], [47, 17, 99], [49, 17, 101], [51, 16, 103], [52, 16, 105],
    [54, 16, 107], [56, 16, 108], [57, 15, 110], [59, 15, 112], [61, 15, 113], [63, 15, 114],
    [64, 15, 116], [66, 15, 117], [68, 15, 118], [69, 16, 119], [71, 16, 120], [73, 16, 120],
    [74, 16, 121], [76, 17, 122], [78, 17, 123], [79, 18, 123], [81, 18, 124], [82, 19, 124],
    [84, 19, 125], [86, 20, 125], [87, 21, 126], [89, 21, 126], [90, 22, 126], [92, 22, 127],
    [93, 23, 127], [95, 24, 127], [96, 24, 128], [98, 25, 128], [100, 26, 128], [101, 26, 128],
    [103, 27, 128], [104, 28, 129], [106, 28, 129], [107, 29, 129], [109, 29, 129], [110, 30, 129],
    [112, 31, 129], [114, 31, 129], [115, 32, 129], [117, 33, 129], [118, 33, 129], [120, 34, 129],
    [121, 34, 130], [123, 35, 130], [124, 35, 130], [126, 36, 130], [128, 37, 130], [129, 37, 129],
    [131, 38, 129], [132, 38, 129], [134, 39, 129], [136, 39, 129], [137, 40, 129], [139, 41, 129],
    [140, 41, 129], [142, 42, 129], [144, 42, 129], [145, 43, 129], [147, 43, 128], [148, 44, 128],
    [150, 44, 128], [152, 45, 128], [153, 45, 128], [155, 46, 127], [156, 46, 127], [158, 47, 127],
    [160, 47, 127], [161, 48, 126], [163, 48, 126], [165, 49, 126], [166, 49, 125], [168, 50, 125],
    [170, 51, 125], [171, 51, 124], [173, 52, 124], [174, 52, 123], [176, 53, 123], [178, 53, 123],
    [179, 54, 122], [181, 54, 122], [183, 55, 121], [184, 55, 121], [186, 56, 120], [188, 57, 120],
    [189, 57, 119], [191, 58, 119], [192, 58, 118], [194, 59, 117], [196, 60, 117], [197, 60, 116],
    [199, 61, 115], [200, 62, 115], [202, 62, 114], [204, 63, 113], [205, 64, 113], [207, 64, 112],
    [208, 65, 111], [210, 66, 111], [211, 67, 110], [213, 68, 109], [214, 69, 108], [216, 69, 108],
    [217, 70, 107], [219, 71, 106], [220, 72, 105], [222, 73, 104], [223, 74, 104], [224, 76, 103],
    [226, 77, 102], [227, 78, 101], [228, 79, 100], [229, 80, 100], [231, 82, 99], [232, 83, 98],
    [233, 84, 98], [234, 86, 97], [235, 87, 96], [236, 88, 96], [237, 90, 95], [238, 91, 94],
    [239, 93, 94], [240, 95, 94], [241, 96, 93], [242, 98, 93], [242, 100, 92], [243, 101, 92],
    [244, 103, 92], [244, 105, 92], [245, 107, 92], [246, 108, 92], [246, 110, 92], [247, 112, 92],
    [247, 114, 92], [248, 116, 92], [248, 118, 92], [249, 120, 93], [249, 121, 93], [249, 123, 93],
    [250, 125, 94], [250, 127, 94], [250, 129, 95], [251, 131, 95], [251, 133, 96], [251, 135, 97],
    [252, 137, 97], [252, 138, 98], [252, 140, 99], [252, 142, 100], [252, 144, 101], [253, 146, 102],
    [253, 148, 103], [253, 150, 104], [253, 152, 105], [253, 154, 106], [253, 155, 107], [254, 157, 108],
    [254, 159, 109], [254, 161, 110], [254, 163, 111], [254, 165, 113], [254, 167, 114], [254, 169, 115],
    [254, 170, 116], [254, 172, 118], [254, 174, 119], [254, 176, 120], [254, 178, 122], [254, 180, 123],
    [254, 182, 124], [254, 183, 126], [254, 185, 127], [254, 187, 129], [254, 189, 130], [254, 191, 132],
    [254, 193, 133], [254, 194, 135], [254, 196, 136], [254, 198, 138], [254, 200, 140], [254, 202, 141],
    [254, 204, 143], [254, 205, 144], [254, 207, 146], [254, 209, 148], [254, 211, 149], [254, 213, 151],
    [254, 215, 153], [254, 216, 154], [253, 218, 156], [253, 220, 158], [253, 222, 160], [253, 224, 161],
    [253, 226, 163], [253, 227, 165], [253, 229, 167], [253, 231, 169], [253, 233, 170], [253, 235, 172],
    [252, 236, 174], [252, 238, 176], [252, 240, 178], [252, 242, 180], [252, 244, 182], [252, 246, 184],
    [252, 247, 185], [252, 249, 187], [252, 251, 189], [252, 253, 191],
];

// ---------------------------------------------------------------------------------------------
// Writing files
// ---------------------------------------------------------------------------------------------

pub(crate) type DrawOutcome = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws into an RGB bitmap written to a temporary `.png` beside `path`, then renames it.
pub(crate) fn draw_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawOutcome,
) -> Result<()> {
    register_font();
    let tmp = temp_sibling(path, "png");
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("cannot {what} the figure: {e}"))
    };
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        if let Err(e) = draw(root.clone()) {
            return Err(fail("draw", &e));
        }
        root.present().map_err(|e| fail("write", &e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| fail("write", &e))
}

/// Writes bytes to a temporary sibling file, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path, "tmp");
    let res = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("cannot write: {e}"))
    })
}

/// `dir/.name.partial-PID.ext` beside `path` (the extension tells the encoder the format).
fn temp_sibling(path: &Path, ext: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}.{ext}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(tag: &str) -> PathBuf {
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
    fn png_size(path: &Path) -> (u32, u32) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "PNG magic");
        assert_eq!(&b[12..16], b"IHDR");
        let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        (be(16), be(20))
    }

    /// A toy P(k): linear ~ k^-1.5 with a turnover, measured = linear × (1 + (k/0.2)^2) × noise.
    fn toy_pk() -> (Vec<f64>, Vec<f64>, Vec<u64>, Vec<f64>) {
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
        assert_eq!(plain_label(0.05), "0.05");
        assert_eq!(plain_label(0.1), "0.1");
        assert_eq!(plain_label(1.0), "1");
        assert_eq!(plain_label(256.0), "256");
        assert_eq!(plain_label(2.5), "2.5");
        assert_eq!(pow10_label(1000.0), "10³");
        assert_eq!(pow10_label(0.01), "10⁻²");
    }

    #[test]
    fn power_png() {
        let d = tmp_dir("ppng");
        let (k, p, _, lin) = toy_pk();
        let path = d.join("power.png");
        plot_power_png(&path, &k, &p, &lin, "P(k) at a = 1.000").unwrap();
        assert_eq!(png_size(&path), POWER_PNG_SIZE);
        // Degenerate inputs still give a figure.
        let path2 = d.join("power-empty.png");
        plot_power_png(&path2, &[], &[], &[], "empty").unwrap();
        assert_eq!(png_size(&path2), POWER_PNG_SIZE);
        let path3 = d.join("power-bad.png");
        plot_power_png(&path3, &[0.0, 0.1], &[f64::NAN, -1.0], &[1.0, 2.0], "bad").unwrap();
        assert_eq!(png_size(&path3), POWER_PNG_SIZE);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 3, "no temporary files left");
        if std::env::var_os("COSMOGRAD_KEEP_PLOTS").is_none() {
            std::fs::remove_dir_all(&d).ok();
        } else {
            eprintln!("plots in {}", d.display());
        }
    }

    /// A toy cosmic web: a few filaments and haloes on a smooth background.
    fn toy_density(m: usize) -> Vec<f32> {
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

    #[test]
    fn slice_png() {
        let d = tmp_dir("spng");
        let m = 32;
        let delta = toy_density(m);
        let path = d.join("slice.png");
        plot_slice_png(&path, &delta, m, 256.0, 16.0, "projected density, a = 1.000").unwrap();
        assert_eq!(png_size(&path), SLICE_PNG_SIZE);
        // Thin, thick and degenerate slabs; an empty (all δ = −1) field.
        plot_slice_png(&d.join("thin.png"), &delta, m, 256.0, 0.1, "thin").unwrap();
        plot_slice_png(&d.join("thick.png"), &delta, m, 256.0, 1e6, "thick").unwrap();
        plot_slice_png(&d.join("empty.png"), &vec![-1.0; m * m * m], m, 256.0, 16.0, "empty").unwrap();
        plot_slice_png(&d.join("uniform.png"), &[0.0; 8], 2, 10.0, 5.0, "uniform").unwrap();
        for f in ["thin.png", "thick.png", "empty.png", "uniform.png"] {
            assert_eq!(png_size(&d.join(f)), SLICE_PNG_SIZE);
        }
        if std::env::var_os("COSMOGRAD_KEEP_PLOTS").is_none() {
            std::fs::remove_dir_all(&d).ok();
        } else {
            eprintln!("plots in {}", d.display());
        }
    }

    #[test]
    fn unwritable_paths_name_the_file() {
        let d = tmp_dir("err").join("missing-dir");
        let (k, p, n, lin) = toy_pk();
        for e in [
            write_power_txt(&d.join("power.txt"), &k, &p, &n, &lin, "").unwrap_err(),
            plot_power_png(&d.join("power.png"), &k, &p, &lin, "t").unwrap_err(),
            plot_slice_png(&d.join("slice.png"), &[0.0; 8], 2, 1.0, 1.0, "t").unwrap_err(),
        ] {
            let s = e.to_string();
            assert!(matches!(e, Error::File { .. }));
            assert!(s.contains("missing-dir") && !s.contains('\n'), "{s}");
        }
    }

    #[test]
    fn magma_ends() {
        assert_eq!(magma(0.0), [0, 0, 4]);
        assert_eq!(magma(1.0), [252, 253, 191]);
        assert_eq!(magma(f64::NAN), magma(0.0));
        assert_eq!(magma(7.0), magma(1.0));
    }
}
