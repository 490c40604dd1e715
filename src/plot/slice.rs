//! `slice.png` of `cosmograd simulate`: a projected density slab with a colour bar.

use super::axes::{draw_plain_axes, plain_label};
use super::magma::magma;
use super::{draw_png, plane_image, DrawOutcome, FONT};
use plotters::prelude::*;
use pm_core::Result;
use std::path::Path;

/// Size in pixels of `slice.png`.
pub const SLICE_PNG_SIZE: (u32, u32) = (700, 650);

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
    draw_plain_axes(
        chart.configure_mesh().disable_mesh().x_labels(6).y_labels(6),
        "y  [Mpc/h]",
        "z  [Mpc/h]",
    )?;
    plane_image(&mut chart, s.m, l, |iy, iz| {
        let v = s.logs[iy * s.m + iz];
        magma(if v.is_finite() { (v - s.vmin) / (s.vmax - s.vmin) } else { 0.0 })
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::{png_size, tmp_dir, toy_density};

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
}
