//! `--plot DIR`: SVG charts (plotters' SVG backend: no fonts or system libraries needed) —
//! a latency histogram per packet path and a timeline of deliveries per CPU.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use plotters::prelude::*;

use super::{
    render::dur,
    summary::{PathRow, Summary},
};

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn pe<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// Write the charts of `s` into `dir` (created if needed); returns the files written.
pub fn write(s: &Summary, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create plot directory {}", dir.display()))?;
    let mut out = Vec::new();
    for (i, p) in s.paths.iter().enumerate() {
        if p.histogram.is_empty() {
            continue;
        }
        let f = dir.join(format!("latency-{}.svg", p.path));
        histogram(p, COLORS[i], &f)?;
        out.push(f);
    }
    let cpus: std::collections::BTreeSet<u32> = s.timeline.series.iter().map(|x| x.cpu).collect();
    for cpu in cpus {
        let f = dir.join(format!("timeline-cpu{cpu}.svg"));
        timeline(s, cpu, &f)?;
        out.push(f);
    }
    Ok(out)
}

/// Bars over log2 buckets: x is log2(latency ns).
fn histogram(p: &PathRow, color: RGBColor, file: &Path) -> Result<()> {
    let lo = p
        .histogram
        .iter()
        .map(|b| log2(b.from_ns))
        .min()
        .unwrap_or(0);
    let hi = p
        .histogram
        .iter()
        .map(|b| log2(b.from_ns))
        .max()
        .unwrap_or(0)
        + 1;
    let ymax = p.histogram.iter().map(|b| b.count).max().unwrap_or(1);
    let root = SVGBackend::new(file, (800, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let title = format!(
        "{}: enqueue → processing latency ({} packets)",
        p.path, p.deliveries
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(lo as f64..hi as f64, 0u64..ymax + ymax / 10 + 1)
        .map_err(pe)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("latency (log2 buckets)")
        .y_desc("packets")
        .x_labels((hi - lo + 1) as usize)
        .x_label_formatter(&|x| dur(Some(2f64.powf(*x))))
        .draw()
        .map_err(pe)?;
    chart
        .draw_series(p.histogram.iter().map(|b| {
            let x = log2(b.from_ns) as f64;
            Rectangle::new([(x + 0.05, 0), (x + 0.95, b.count)], color.filled())
        }))
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}

fn log2(v: u64) -> u32 {
    if v == 0 {
        0
    } else {
        63 - v.leading_zeros()
    }
}

/// Deliveries per time bin on one CPU, one line per path.
fn timeline(s: &Summary, cpu: u32, file: &Path) -> Result<()> {
    let bin_s = s.timeline.bin_ms as f64 / 1e3;
    let series: Vec<_> = s.timeline.series.iter().filter(|x| x.cpu == cpu).collect();
    let ymax = series
        .iter()
        .flat_map(|x| x.counts.iter().copied())
        .max()
        .unwrap_or(1);
    let xmax = s.timeline.bins.max(1) as f64 * bin_s;
    let root = SVGBackend::new(file, (900, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "CPU {cpu}: packets processed per {} ms, by path",
                s.timeline.bin_ms
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0u64..ymax + ymax / 10 + 1)
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the recording's first event")
        .y_desc("packets")
        .draw()
        .map_err(pe)?;
    for x in series {
        let i = super::query::PATH_NAMES
            .iter()
            .position(|p| *p == x.path)
            .unwrap_or(0);
        let color = COLORS[i];
        chart
            .draw_series(LineSeries::new(
                x.counts
                    .iter()
                    .enumerate()
                    .map(|(b, n)| (b as f64 * bin_s, *n)),
                color.stroke_width(2),
            ))
            .map_err(pe)?
            .label(x.path)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}
