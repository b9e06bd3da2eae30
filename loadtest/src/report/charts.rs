//! SVG charts (plotters): grouped bars for per-profile and isolation
//! figures, lines for throughput-latency curves. Text is left to the SVG
//! viewer, so no font files are needed.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::LoadtestError;

const SIZE: (u32, u32) = (860, 500);

/// One named series of values, one per category (bars) or one per point
/// (lines).
pub struct Series<T> {
    pub name: String,
    pub values: Vec<T>,
}

fn chart_err(path: &Path) -> impl Fn(String) -> LoadtestError + '_ {
    move |e| LoadtestError::write(path, format!("drawing the chart: {e}"))
}

/// Grouped bars: for each category (a profile, a placement) one bar per
/// series, with its value written above it.
pub fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[Series<f64>],
) -> Result<(), LoadtestError> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw_bars(&root, title, y_desc, categories, series).map_err(chart_err(path))?;
    root.present().map_err(|e| chart_err(path)(e.to_string()))
}

fn draw_bars(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[Series<f64>],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let y_max = if top > 0.0 { top * 1.2 } else { 1.0 };
    let n = categories.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .draw()
        .map_err(e)?;
    let groups = series.len().max(1) as f64;
    let width = 0.8 / groups;
    for (k, s) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let bars = s.values.iter().enumerate().map(|(i, &v)| {
            let x0 = i as f64 - 0.4 + k as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v.max(0.0))], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(e)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let values = s.values.iter().enumerate().map(|(i, &v)| {
            let x = i as f64 - 0.4 + (k as f64 + 0.45) * width;
            Text::new(
                short(v),
                (x, v.max(0.0) + y_max * 0.01),
                TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        });
        chart.draw_series(values).map_err(e)?;
    }
    // Category names under the axis, centred on their group.
    for (i, name) in categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, 0.0));
        root.draw(&Text::new(
            name.clone(),
            (px, py + 8),
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(e)?;
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// Lines through `(x, y)` points, one per series, with a dot on each point.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series<(f64, f64)>],
) -> Result<(), LoadtestError> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw_lines(&root, title, x_desc, y_desc, series).map_err(chart_err(path))?;
    root.present().map_err(|e| chart_err(path)(e.to_string()))
}

fn draw_lines(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series<(f64, f64)>],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let points = || series.iter().flat_map(|s| s.values.iter().copied());
    let x_max = points()
        .map(|p| p.0)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_max = points()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..(x_max * 1.1).max(1e-3),
            0f64..(y_max * 1.15).max(1e-3),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(e)?;
    for (k, s) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(s.values.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.values.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// `1234` -> `1234`, `12.345` -> `12.3`, `0.0123` -> `0.012`.
fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_bar_and_line_svgs_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let bar_path = dir.path().join("bars.svg");
        bars(
            &bar_path,
            "tok/s per profile",
            "tok/s",
            &["cpu-1c".into(), "cpu-2c".into()],
            &[
                Series {
                    name: "p50".into(),
                    values: vec![10.0, 19.5],
                },
                Series {
                    name: "p99".into(),
                    values: vec![12.0, 25.0],
                },
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&bar_path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for text in ["tok/s per profile", "cpu-1c", "cpu-2c", "19.5", "p99"] {
            assert!(svg.contains(text), "{text} missing from the bar chart");
        }
        let line_path = dir.path().join("lines.svg");
        lines(
            &line_path,
            "curve",
            "tok/s",
            "ms",
            &[Series {
                name: "gateway".into(),
                values: vec![(1.0, 2.0), (3.0, 5.0)],
            }],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&line_path).unwrap();
        assert!(
            svg.contains("gateway") && svg.contains("<polyline"),
            "{svg}"
        );
    }
}
