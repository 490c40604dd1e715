//! The figures of every subcommand: `power.png` and `slice.png` of `simulate` ([`plot_power_png`],
//! [`plot_slice_png`]), `loss.png`, `r_k.png` and `slices.png` of `reconstruct` (`recon.rs`), and
//! what they share: the font, the colours, the axes (`axes.rs`), the colour map (`magma.rs`) and
//! writing a PNG.
//!
//! The functions take plain data (the simulation computes it) and return
//! `Result<(), pm_core::Error>`; a failure names the file. Figures use the DejaVu Sans font
//! embedded in the binary (`assets/DejaVuSans.ttf`, licence in `assets/DejaVuSans-LICENSE.txt`),
//! so no system font library is needed, and are written through a temporary sibling file
//! renamed into place, so a figure is either complete or absent.

use crate::output::temp_sibling;
use plotters::backend::RGBPixel;
use plotters::prelude::*;
use plotters::style::FontStyle;
use pm_core::{Error, Result};
use std::path::Path;

mod axes;
mod magma;
mod power;
pub(crate) mod recon;
mod slice;

pub use power::{plot_power_png, POWER_PNG_SIZE};
pub use slice::{plot_slice_png, SLICE_PNG_SIZE};

pub(crate) const FONT: &str = "sans-serif";
/// Colour of the measured P(k) and of the first curve of a figure (tab:blue).
pub(crate) const MEASURED: RGBColor = RGBColor(31, 119, 180);
/// Colour of the second curve of a figure (tab:orange).
pub(crate) const SECOND: RGBColor = RGBColor(255, 127, 14);
/// Colour of the linear P(k).
pub(crate) const LINEAR: RGBColor = RGBColor(40, 40, 40);
pub(crate) const GRID: RGBColor = RGBColor(215, 215, 215);
pub(crate) const GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);

/// Registers the embedded font as `sans-serif` (once per process).
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and valid; a failure would only lose the labels.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../../assets/DejaVuSans.ttf"));
    });
}

pub(crate) type DrawOutcome = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws into an RGB bitmap written to a temporary `.png` beside `path`, then syncs it and
/// renames it over `path`.
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
    // A leftover of this very pid (or a link planted there) goes first: the encoder creates the
    // file by name and would write through a link.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail("write", &e)),
        _ => {}
    }
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        if let Err(e) = draw(root.clone()) {
            return Err(fail("draw", &e));
        }
        root.present().map_err(|e| fail("write", &e))?;
    }
    // Synced, then renamed over `path` (replacing a link named `path`, not following it).
    pm_core::io::commit_partial(&tmp, path)
}

/// A black frame around a chart's plotting area.
fn frame<X: Ranged, Y: Ranged>(area: &DrawingArea<BitMapBackend<'_>, Cartesian2d<X, Y>>) -> DrawOutcome {
    let (w, h) = area.dim_in_pixel();
    area.strip_coord_spec()
        .draw(&Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], BLACK.stroke_width(1)))?;
    Ok(())
}

/// An image of an `s × s` plane filling the plotting area of `chart` (x from 0 to `l`), pixel
/// row 0 at the top (the largest second index): `colour(i, j)` is the colour of cell
/// (first index i along x, second index j along y).
pub(crate) fn plane_image(
    chart: &mut ChartContext<
        '_,
        BitMapBackend<'_>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    s: usize,
    l: f64,
    colour: impl Fn(usize, usize) -> [u8; 3],
) -> DrawOutcome {
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let mut buf = vec![0u8; (pw * ph * 3) as usize];
    for py in 0..ph as usize {
        // Row 0 is the top of the image: the largest second index.
        let iz = s - 1 - (py * s / ph as usize).min(s - 1);
        for px in 0..pw as usize {
            let iy = (px * s / pw as usize).min(s - 1);
            let c = colour(iy, iz);
            let o = (py * pw as usize + px) * 3;
            buf[o..o + 3].copy_from_slice(&c);
        }
    }
    let img = BitMapElement::<_, RGBPixel>::with_owned_buffer((0.0, l), (pw, ph), buf).expect("buffer sized to the plotting area");
    chart.draw_series(std::iter::once(img))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::write_power_txt;
    use crate::test_data::{tmp_dir, toy_pk};

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
}
