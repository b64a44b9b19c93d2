//! Line plots as PNG files (plotters, labelled with the DejaVu Sans font that the
//! `dejavu` crate ships, so nothing depends on the machine's fonts).

use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A failure leaves text unrendered; the plot itself is still drawn.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One named curve.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` into a `width × height` PNG at `path`, with a log-scale y axis when
/// `log_y` (all y must then be positive; others are dropped).
///
/// # Errors
/// When the file cannot be written.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    log_y: bool,
) -> Result<(), String> {
    register_font();
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .collect();
    if pts.is_empty() {
        return Err(format!("{}: nothing to plot", path.display()));
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (y0, y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(|e| err(&e))?;
            for (k, s) in series.iter().enumerate() {
                let color = colors[k % colors.len()];
                let points: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(s.label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    if log_y {
        let (lo, hi) = (y0 * 0.8, if y1 > y0 { y1 * 1.25 } else { y0 * 2.0 });
        draw!(
            builder
                .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
                .map_err(|e| err(&e))?
        );
    } else {
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        draw!(
            builder
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(|e| err(&e))?
        );
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// True when `path` starts with the PNG signature (89 50 4E 47 0D 0A 1A 0A).
pub fn is_png(path: &Path) -> bool {
    std::fs::read(path)
        .is_ok_and(|b| b.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]))
}
