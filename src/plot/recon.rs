//! The figures of `cosmograd reconstruct`: `loss.png` ([`plot_loss`]), `r_k.png` ([`plot_rk`])
//! and `slices.png` ([`plot_slices`]).

use super::axes::plain_tick;
use super::magma::magma;
use super::{draw_png, plane_image, DrawOutcome, FONT, MEASURED, SECOND};
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::Shift;
use plotters::prelude::*;
use pm_core::{Real, Result};
use std::path::Path;

/// Size in pixels of `loss.png` and `r_k.png`.
const LINE_PNG_SIZE: (u32, u32) = (800, 500);

/// A chart of the line figures on a white `root`: `caption` on top, 12 px margins, 50 px for the
/// x labels and `y_area` px for the y labels.
#[allow(clippy::type_complexity)]
fn line_chart<'a, 'b, X: AsRangedCoord, Y: AsRangedCoord>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
    y_area: u32,
    x: X,
    y: Y,
) -> std::result::Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X::CoordDescType, Y::CoordDescType>>, Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    Ok(ChartBuilder::on(root)
        .caption(caption, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x, y)?)
}

/// The legend entry of a solid line of `colour`, 2 px wide.
fn solid_legend(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
}

/// Draws the legend of the line figures at `position`.
fn draw_legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> DrawOutcome {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// `loss.png`: −ln posterior (at each stage's R) and ½χ² at R = 0 against the iteration, log y.
///
/// `rows` are the rows of `loss.txt`: (iteration within the stage, −ln posterior, ½χ²).
pub(crate) fn plot_loss(path: &Path, rows: &[(usize, f64, f64)]) -> Result<()> {
    // A global iteration index: stages follow each other (each stage's iteration 0 is the last
    // point of the previous one).
    let mut pts = Vec::new();
    let mut chi = Vec::new();
    let mut it = 0usize;
    for &(iteration, loss, chi2_half) in rows {
        if iteration > 0 {
            it += 1;
        }
        pts.push((it as f64, loss));
        chi.push((it as f64, chi2_half));
    }
    let ys = pts.iter().chain(&chi).map(|p| p.1).filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.1, 10.0)
    };
    let xmax = (it as f64).max(1.0);
    draw_png(path, LINE_PNG_SIZE, |root| -> DrawOutcome {
        let mut chart = line_chart(&root, "reconstruction loss", 90, 0.0..xmax, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("L-BFGS iteration")
            .y_desc("loss")
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()?;
        let (blue, orange) = (MEASURED, SECOND);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), blue.stroke_width(2)))?
            .label("-ln posterior at the stage's smoothing R")
            .legend(solid_legend(blue));
        chart
            .draw_series(LineSeries::new(chi.iter().copied(), orange.stroke_width(2)))?
            .label("chi2/2 at R = 0")
            .legend(solid_legend(orange));
        draw_legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}

/// `r_k.png`: r(k) and T(k) against k.
pub(crate) fn plot_rk(path: &Path, k: &[f64], r: &[f64], t: &[f64], wiener: (&[f64], &[f64])) -> Result<()> {
    let kmin = k.iter().copied().fold(f64::INFINITY, f64::min);
    let kmax = k.iter().copied().fold(0.0, f64::max);
    let ymax = t
        .iter()
        .chain(r)
        .chain(wiener.1)
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.1f64, f64::max)
        * 1.05;
    draw_png(path, LINE_PNG_SIZE, |root| -> DrawOutcome {
        let mut chart = line_chart(
            &root,
            "reconstructed vs true linear field",
            60,
            (kmin * 0.9..kmax * 1.1).log_scale(),
            0.0..ymax,
        )?;
        chart
            .configure_mesh()
            .x_desc("k  [h/Mpc]")
            .y_desc("r(k), T(k)")
            .x_label_formatter(&plain_tick)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()?;
        let (blue, orange) = (MEASURED, SECOND);
        chart.draw_series(LineSeries::new([(kmin * 0.9, 1.0), (kmax * 1.1, 1.0)], BLACK.mix(0.4)))?;
        chart
            .draw_series(LineSeries::new(k.iter().copied().zip(r.iter().copied()), blue.stroke_width(2)))?
            .label("r(k) = P_rt / sqrt(P_rr P_tt)")
            .legend(solid_legend(blue));
        chart
            .draw_series(LineSeries::new(k.iter().copied().zip(t.iter().copied()), orange.stroke_width(2)))?
            .label("T(k) = sqrt(P_rr / P_tt)")
            .legend(solid_legend(orange));
        // The linear-theory Wiener filter of the same data (eq. W1), thin dashed.
        for (vals, colour, label) in [
            (wiener.0, blue, "r, T of the linear Wiener filter (eq. W1)"),
            (wiener.1, orange, ""),
        ] {
            let pts: Vec<(f64, f64)> = k.iter().copied().zip(vals.iter().copied()).filter(|p| p.1.is_finite()).collect();
            let series = chart.draw_series(DashedLineSeries::new(pts, 6, 4, colour.stroke_width(1)))?;
            if !label.is_empty() {
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], BLACK.stroke_width(1)));
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)
    })
}

/// `slices.png`: the plane x = 0 of the initial (linear, particle grid) and final (data mesh)
/// fields, truth or observation on the left, reconstruction on the right; each row shares one
/// colour scale (0.5th–99.5th percentile of the left panel).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plot_slices<T: Real>(
    path: &Path,
    n: usize,
    m: usize,
    l: f64,
    lin_true: Option<&[T]>,
    lin_rec: &[T],
    fin_left: &[T],
    fin_rec: &[T],
    left_label: &str,
) -> Result<()> {
    let plane = |f: &[T], s: usize| -> Vec<f64> { f[..s * s].iter().map(|v| v.f64()).collect() };
    let range = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(|a, b| a.total_cmp(b));
        if s.is_empty() {
            return (-1.0, 1.0);
        }
        let q = |f: f64| s[((s.len() - 1) as f64 * f).round() as usize];
        let (a, b) = (q(0.005), q(0.995));
        if b > a {
            (a, b)
        } else {
            (a - 1.0, a + 1.0)
        }
    };
    let lin_rec_p = plane(lin_rec, n);
    let lin_left = lin_true.map(|t| plane(t, n));
    let fl = plane(fin_left, m);
    let fr = plane(fin_rec, m);
    let lr = range(lin_left.as_deref().unwrap_or(&lin_rec_p));
    let fr_range = range(&fl);
    let panels: Vec<(String, Option<&[f64]>, usize, (f64, f64))> = vec![
        (format!("initial δ_L, {left_label}"), lin_left.as_deref(), n, lr),
        ("initial δ_L, reconstructed".into(), Some(&lin_rec_p), n, lr),
        (format!("final δ, {left_label}"), Some(&fl), m, fr_range),
        ("final δ, reconstructed".into(), Some(&fr), m, fr_range),
    ];
    draw_png(path, (900, 900), |root| -> DrawOutcome {
        root.fill(&WHITE)?;
        let areas = root.split_evenly((2, 2));
        for (area, (title, data, s, (lo, hi))) in areas.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..l, 0.0..l)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(5)
                .y_labels(5)
                .x_label_formatter(&plain_tick)
                .y_label_formatter(&plain_tick)
                .label_style((FONT, 12))
                .draw()?;
            let Some(d) = data else {
                continue;
            };
            plane_image(&mut chart, *s, l, |iy, iz| magma((d[iy * *s + iz] - lo) / (hi - lo)))?;
        }
        Ok(())
    })
}
