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

/// The top of a y axis whose data reach `max`, with room above the data for a legend of
/// `rows` entries in the upper right corner (about 6% of the plot's height per entry).
fn with_legend_room(max: f64, rows: usize) -> f64 {
    max * (1.12 + 0.06 * rows as f64)
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
        .position(SeriesLabelPosition::UpperRight)
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
    legend_rows: usize,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<(), String> {
    let names: Vec<String> = reports.iter().map(|r| r.name.clone()).collect();
    let k = reports.len().max(1) as f64;
    let top = with_legend_room(reports.iter().map(value).fold(1.0, f64::max), legend_rows);
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
        2,
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
        3,
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
    let top = with_legend_room(
        reports
            .iter()
            .flat_map(|r| r.measurement.per_second.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1) as f64,
        reports.len(),
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Byzantine, Store};
    use crate::workload::{Latency, Measurement};

    fn report(name: &str, replicas: usize, tps: f64, p50: f64) -> RunReport {
        RunReport::new(
            name.into(),
            (replicas, Some(Store::Memory), Byzantine::None, None),
            8,
            1.0,
            Measurement {
                transfers: 30,
                verified: 30,
                duration_s: 3.0,
                throughput_tps: tps,
                latency: Latency {
                    p50_ms: p50,
                    p90_ms: p50 * 2.0,
                    p99_ms: p50 * 3.0,
                    max_ms: p50 * 4.0,
                    mean_ms: p50,
                },
                per_second: vec![10, 12, 8],
                ..Measurement::default()
            },
            crate::sigcost::limit(50.0, replicas),
            0,
        )
    }

    /// A plotting function of this module.
    type Draw = fn(&[RunReport], &Path) -> Result<(), String>;

    #[test]
    fn every_plot_is_an_svg_naming_its_configurations_and_series() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reports = [
            report("n1-memory", 1, 9_000.0, 40.0),
            report("n4-memory@half", 4, 2_000.0, 20.0),
        ];
        let draw: [(&str, Draw, &[&str]); 3] = [
            ("throughput.svg", throughput, &["measured", "n1-memory"]),
            (
                "latency.svg",
                latency,
                &["p50", "p90", "p99", "n4-memory@half"],
            ),
            ("timeline.svg", timeline, &["n1-memory", "n4-memory@half"]),
        ];
        for (file, plot, words) in draw {
            let path = dir.path().join(file);
            plot(&reports, &path).expect("plot drawn");
            let svg = std::fs::read_to_string(&path).expect("plot written");
            assert!(svg.starts_with("<svg"), "{file}");
            for word in words {
                assert!(svg.contains(word), "{file} lacks {word}");
            }
            assert!(!svg.contains("NaN"), "{file}");
        }
    }

    #[test]
    fn the_legend_has_room_above_the_data() {
        // Two legend rows leave the top quarter of the axis free; more rows, more room.
        assert!(with_legend_room(100.0, 2) >= 124.0);
        assert!(with_legend_room(100.0, 7) > with_legend_room(100.0, 3));
    }
}
