//! SVG charts of a run (plotters): the ladder's req/s and p99 against users, and the hop
//! comparison of nginx and the router. A chart shows at a glance the step where a ladder
//! breaks, which a table of numbers hides.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::hop::HopRun;
use super::ladder::{P99_BOUND, Step};

const SIZE: (u32, u32) = (900, 720);
const FONT: (&str, u32) = ("sans-serif", 20);

/// Draws `ladder.svg` in `dir`; its path.
pub(crate) fn ladder(dir: &Path, steps: &[Step]) -> anyhow::Result<PathBuf> {
    let path = dir.join("ladder.svg");
    draw_ladder(&path, steps).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn draw_ladder(path: &Path, steps: &[Step]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2);
    let users: Vec<f64> = steps.iter().map(|s| s.users as f64).collect();
    let rps: Vec<f64> = steps.iter().map(|s| s.figures.rps).collect();
    let p99: Vec<f64> = steps.iter().map(|s| s.figures.p99_ms).collect();
    let bound_ms = P99_BOUND.as_secs_f64() * 1000.0;
    line_panel(&top, "ladder: req/s against simultaneous users", "req/s", &users, &rps, None)?;
    line_panel(&bottom, "ladder: p99 against simultaneous users", "p99 ms", &users, &p99, Some(bound_ms))?;
    root.present().map_err(plot_error)
}

/// Draws `hop.svg` in `dir`; its path.
pub(crate) fn hop(dir: &Path, runs: &[HopRun]) -> anyhow::Result<PathBuf> {
    let path = dir.join("hop.svg");
    draw_hop(&path, runs).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn draw_hop(path: &Path, runs: &[HopRun]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2);
    let bars: Vec<(String, bool, f64, f64)> = runs
        .iter()
        .map(|r| (format!("{} {}", r.proxy, r.round), r.proxy == "router", r.figures.rps, r.figures.p99_ms))
        .collect();
    let rps: Vec<(String, bool, f64)> =
        bars.iter().map(|(name, router, rps, _)| (name.clone(), *router, *rps)).collect();
    let p99: Vec<(String, bool, f64)> =
        bars.iter().map(|(name, router, _, p99)| (name.clone(), *router, *p99)).collect();
    bar_panel(&top, "hop: req/s, nginx and router taking turns (closed loop)", "req/s", &rps)?;
    bar_panel(&bottom, "hop: p99", "p99 ms", &p99)?;
    root.present().map_err(plot_error)
}

/// A line of `ys` against `xs` (users, on a log scale), with a dashed bound when given.
fn line_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    xs: &[f64],
    ys: &[f64],
    bound: Option<f64>,
) -> anyhow::Result<()> {
    let x_max = xs.iter().copied().fold(1.0, f64::max) * 1.2;
    let y_max = ys.iter().copied().chain(bound).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, FONT)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("simultaneous users")
        .y_desc(y_desc)
        .x_label_formatter(&|users| format!("{users:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    let points: Vec<(f64, f64)> = xs.iter().copied().zip(ys.iter().copied()).collect();
    chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2))).map_err(plot_error)?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled()))).map_err(plot_error)?;
    if let Some(bound) = bound {
        chart
            .draw_series(DashedLineSeries::new([(1.0, bound), (x_max, bound)], 8, 6, RED.into()))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// One bar per run; the router's red, nginx's grey.
fn bar_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    bars: &[(String, bool, f64)],
) -> anyhow::Result<()> {
    let y_max = bars.iter().map(|(_, _, y)| *y).fold(1.0, f64::max) * 1.15;
    let names: Vec<String> = bars.iter().map(|(name, _, _)| name.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, FONT)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..bars.len() as i32).into_segmented(), 0f64..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .y_desc(y_desc)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, router, y))| {
            let colour = if *router { RED.mix(0.8) } else { BLACK.mix(0.45) };
            let i = i as i32;
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *y)],
                colour.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(plot_error)?;
    Ok(())
}

/// plotters' errors borrow the backend's; keep only the message.
fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}
