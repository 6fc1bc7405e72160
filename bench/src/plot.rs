//! SVG plots of a comparison (plotters' SVG backend: no bitmap or font dependencies).

use crate::report::RunReport;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("plot {}: {e}", path.display())
}

/// Label of a bar or point at x position `v` (configurations sit at 0, 1, 2, ...).
fn label_at(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    // i is a small non-negative integer here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    names.get(i as usize).cloned().unwrap_or_default()
}

/// The chart every plot draws on: `f64` on both axes, into an SVG file.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws a 960x540 SVG at `path`: a chart titled `caption` over `x` and `0..top`, whose axes
/// and series `draw` adds, then the legend of the labelled series.
fn plot(
    path: &Path,
    caption: &str,
    x_label_area: u32,
    x: Range<f64>,
    top: f64,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(x_label_area)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0.0..top)
        .map_err(|e| err(path, e))?;
    draw(&mut chart)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// A [`plot`] with one slot per configuration at x = 0, 1, 2, ..., labelled with its name, and
/// room above the largest `value` of any configuration; `draw` adds the bars.
fn bar_plot(
    reports: &[RunReport],
    path: &Path,
    caption: &str,
    y_desc: &str,
    value: fn(&RunReport) -> f64,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<(), String> {
    let names: Vec<String> = reports.iter().map(|r| r.name.clone()).collect();
    let k = reports.len().max(1) as f64;
    let top = reports.iter().map(value).fold(1.0, f64::max) * 1.1;
    plot(path, caption, 50, -0.5..(k - 0.5), top, |chart| {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(reports.len().max(1))
            .x_label_formatter(&|v| label_at(&names, *v))
            .y_desc(y_desc)
            .draw()
            .map_err(|e| err(path, e))?;
        draw(chart)
    })
}

/// Verified transfers per second per configuration, with each one's signature-verification
/// limit as a hollow bar behind it.
pub fn throughput(reports: &[RunReport], path: &Path) -> Result<(), String> {
    bar_plot(
        reports,
        path,
        "Verified transfers per second",
        "transfers/s",
        |r| r.measurement.throughput_tps.max(r.sig_limit.limit_tps),
        |chart| {
            chart
                .draw_series(reports.iter().enumerate().map(|(i, r)| {
                    let x = i as f64;
                    Rectangle::new(
                        [(x - 0.4, 0.0), (x + 0.4, r.sig_limit.limit_tps)],
                        RED.mix(0.6).stroke_width(1),
                    )
                }))
                .map_err(|e| err(path, e))?
                .label("signature-verification limit (2 cores / n verifies)")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], RED.stroke_width(1))
                });
            chart
                .draw_series(reports.iter().enumerate().map(|(i, r)| {
                    let x = i as f64;
                    Rectangle::new(
                        [(x - 0.3, 0.0), (x + 0.3, r.measurement.throughput_tps)],
                        BLUE.mix(0.7).filled(),
                    )
                }))
                .map_err(|e| err(path, e))?
                .label("measured")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.mix(0.7).filled())
                });
            Ok(())
        },
    )
}

/// A bar series: label, colour, offset from the configuration's position, value.
type Series = (&'static str, RGBColor, f64, fn(&RunReport) -> f64);

/// p50, p90 and p99 latency per configuration.
pub fn latency(reports: &[RunReport], path: &Path) -> Result<(), String> {
    bar_plot(
        reports,
        path,
        "Latency to f+1 verified receipts",
        "ms",
        |r| r.measurement.latency.p99_ms,
        |chart| {
            let series: [Series; 3] = [
                ("p50", GREEN, -0.3, |r| r.measurement.latency.p50_ms),
                ("p90", BLUE, -0.1, |r| r.measurement.latency.p90_ms),
                ("p99", RED, 0.1, |r| r.measurement.latency.p99_ms),
            ];
            for (label, color, offset, value) in series {
                chart
                    .draw_series(reports.iter().enumerate().map(|(i, r)| {
                        let x = i as f64 + offset;
                        Rectangle::new([(x, 0.0), (x + 0.2, value(r))], color.mix(0.7).filled())
                    }))
                    .map_err(|e| err(path, e))?
                    .label(label)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.mix(0.7).filled())
                    });
            }
            Ok(())
        },
    )
}

/// Verified transfers completed in each second of every configuration's window.
pub fn timeline(reports: &[RunReport], path: &Path) -> Result<(), String> {
    let seconds = reports
        .iter()
        .map(|r| r.measurement.per_second.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let top = reports
        .iter()
        .flat_map(|r| r.measurement.per_second.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let caption = "Verified transfers per second over the run";
    plot(path, caption, 40, 0.0..seconds as f64, top, |chart| {
        chart
            .configure_mesh()
            .x_desc("second of the measured window")
            .y_desc("transfers/s")
            .draw()
            .map_err(|e| err(path, e))?;
        for (i, r) in reports.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    r.measurement
                        .per_second
                        .iter()
                        .enumerate()
                        .map(|(s, n)| (s as f64 + 0.5, *n as f64)),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(path, e))?
                .label(r.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        Ok(())
    })
}
