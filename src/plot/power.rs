//! `power.png` of `cosmograd simulate`: measured vs linear P(k), with their ratio below.

use super::axes::{draw_plain_axes, log_range, log_ticks, pow10_label};
use super::{draw_png, frame, DrawOutcome, FONT, GRID, GRID_LIGHT, LINEAR, MEASURED};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use pm_core::Result;
use std::path::Path;

/// Size in pixels of `power.png`.
pub const POWER_PNG_SIZE: (u32, u32) = (800, 600);

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
    draw_plain_axes(
        rchart.configure_mesh().light_line_style(GRID_LIGHT).bold_line_style(GRID),
        "k  [h/Mpc]",
        "P / P_lin",
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{png_size, tmp_dir, toy_pk};

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
}
