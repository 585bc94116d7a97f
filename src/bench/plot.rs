//! SVG plots of a [`BenchReport`] (plotters, SVG backend only: no font or bitmap deps).
//!
//! - `throughput.svg`: forward images/s against batch size, one line per variant;
//! - `latency.svg`: the distribution of per-batch forward latency at the first batch, one box
//!   (quartiles, whiskers at min and max) per variant with every raw sample drawn beside it;
//! - `stages.svg`: stacked mean decode / preprocess / forward / postprocess time per variant.

use std::path::Path;

use plotters::prelude::*;

use super::BenchReport;
use crate::error::{Error, Result};
use crate::stats::percentile;

const PALETTE: [RGBColor; 6] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];

fn pe<E: std::fmt::Display>(e: E) -> Error {
    Error::System(format!("plotting: {e}"))
}

/// Axis label of a categorical axis drawn on f64: the name at each whole index, else nothing.
fn category(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

fn save(path: &Path, svg: String) -> Result<()> {
    super::output::write(path, &svg)
}

/// Forward throughput against batch size.
pub fn throughput_svg(r: &BenchReport) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        let max_b = r.variants.iter().flat_map(|v| v.batches.iter().map(|b| b.batch)).max().unwrap_or(1) as f64;
        let max_t = r.variants.iter().flat_map(|v| v.batches.iter().map(|b| b.stages[2].throughput)).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: throughput vs batch", r.model), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0.8f64..max_b * 1.25).log_scale(), 0f64..max_t * 1.15)
            .map_err(pe)?;
        chart.configure_mesh().x_desc("batch size").y_desc("images / s (forward)").x_label_formatter(&|x| format!("{x:.0}")).draw().map_err(pe)?;
        for (i, v) in r.variants.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = v.batches.iter().map(|b| (b.batch as f64, b.stages[2].throughput)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(pe)?
                .label(v.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled()))).map_err(pe)?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(pe)?;
        root.present().map_err(pe)?;
    }
    Ok(svg)
}

/// Forward latency distribution per variant at the first batch.
pub fn latency_svg(r: &BenchReport) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        let n = r.variants.len();
        let samples: Vec<Vec<f64>> = r
            .variants
            .iter()
            .map(|v| {
                let mut s = v.batches.first().map(|b| b.stages[2].raw_ms.clone()).unwrap_or_default();
                s.sort_by(f64::total_cmp);
                s
            })
            .collect();
        let max = samples.iter().flatten().copied().fold(0.0, f64::max).max(1e-3);
        let batch = r.variants[0].batches.first().map_or(1, |b| b.batch);
        let names: Vec<String> = r.variants.iter().map(|v| v.name.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: forward latency at batch {batch}", r.model), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..max * 1.1)
            .map_err(pe)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.max(2))
            .x_label_formatter(&|x| category(&names, *x))
            .y_desc("ms per batch")
            .draw()
            .map_err(pe)?;
        for (i, s) in samples.iter().enumerate() {
            if s.is_empty() {
                continue;
            }
            let c = PALETTE[i % PALETTE.len()];
            let x = i as f64;
            let q = |p| percentile(s, p).unwrap_or(0.0);
            let (lo, q1, med, q3, hi) = (s[0], q(25.0), q(50.0), q(75.0), s[s.len() - 1]);
            chart.draw_series([Rectangle::new([(x - 0.2, q1), (x + 0.2, q3)], c.mix(0.3).filled())]).map_err(pe)?;
            chart.draw_series([Rectangle::new([(x - 0.2, q1), (x + 0.2, q3)], c.stroke_width(2))]).map_err(pe)?;
            for seg in [vec![(x - 0.2, med), (x + 0.2, med)], vec![(x, lo), (x, q1)], vec![(x, q3), (x, hi)], vec![(x - 0.1, lo), (x + 0.1, lo)], vec![(x - 0.1, hi), (x + 0.1, hi)]] {
                chart.draw_series([PathElement::new(seg, c.stroke_width(2))]).map_err(pe)?;
            }
            let k = s.len().max(1) as f64;
            chart
                .draw_series(s.iter().enumerate().map(|(j, &v)| Circle::new((x + 0.27 + 0.1 * (j as f64 / k), v), 2, c.filled())))
                .map_err(pe)?;
        }
        root.present().map_err(pe)?;
    }
    Ok(svg)
}

/// Stacked stage means per variant at the first batch.
pub fn stages_svg(r: &BenchReport) -> Result<String> {
    let mut svg = String::new();
    {
        let n = r.variants.len();
        let root = SVGBackend::with_string(&mut svg, (760, 120 + 50 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        let means: Vec<[f64; 4]> = r
            .variants
            .iter()
            .map(|v| {
                let mut m = [0.0; 4];
                if let Some(b) = v.batches.first() {
                    for (k, slot) in m.iter_mut().enumerate() {
                        *slot = b.stages[k].summary.mean;
                    }
                }
                m
            })
            .collect();
        let max = means.iter().map(|m| m.iter().sum::<f64>()).fold(1e-3, f64::max);
        let names: Vec<String> = r.variants.iter().map(|v| v.name.clone()).collect();
        let batch = r.variants[0].batches.first().map_or(1, |b| b.batch);
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: stage breakdown at batch {batch} (mean ms)", r.model), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..max * 1.05, -0.5f64..n as f64 - 0.5)
            .map_err(pe)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n.max(2))
            .y_label_formatter(&|y| category(&names, *y))
            .x_desc("ms per batch")
            .draw()
            .map_err(pe)?;
        for (k, stage) in super::STAGES[..4].iter().enumerate() {
            let c = PALETTE[k % PALETTE.len()];
            let bars: Vec<Rectangle<(f64, f64)>> = means
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let start: f64 = m[..k].iter().sum();
                    Rectangle::new([(start, i as f64 - 0.3), (start + m[k], i as f64 + 0.3)], c.filled())
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(pe)?
                .label(*stage)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(pe)?;
        root.present().map_err(pe)?;
    }
    Ok(svg)
}

/// Writes the three plots into `dir` with `prefix`; returns their paths.
pub fn write_all(r: &BenchReport, dir: &Path, prefix: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for (name, svg) in [("throughput", throughput_svg(r)?), ("latency", latency_svg(r)?), ("stages", stages_svg(r)?)] {
        let p = dir.join(format!("{prefix}{name}.svg"));
        save(&p, svg)?;
        out.push(p);
    }
    Ok(out)
}
