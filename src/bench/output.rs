//! Writing a [`BenchReport`]: terminal table, JSON (with raw per-iteration times), CSV (one
//! row per variant, batch and stage) and Markdown.

use std::fmt::Write as _;
use std::path::Path;

use super::{BenchReport, LayerTime, ORT_NODE};
use crate::error::{Error, Result};

fn mb(b: Option<u64>) -> String {
    b.map_or_else(|| "-".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

/// The fingerprint as one line.
pub fn fingerprint_line(r: &BenchReport) -> String {
    let f = &r.fingerprint;
    let link = f.cross_core_round_trip_ns.map_or(String::new(), |ns| format!(", cross-core round trip {ns:.0} ns"));
    // Under `--scaling`, every count the variants ran at.
    let mut counts: Vec<usize> = Vec::new();
    for v in &r.variants {
        if !counts.contains(&v.threads) {
            counts.push(v.threads);
        }
    }
    let threads = if r.scaling.is_empty() { f.threads.to_string() } else { counts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ") };
    format!(
        "{} ({} logical CPUs), INT8 path {}, plan rules {}, {threads} threads{link}, kestrel {} ({}), ORT {}, {}, {}",
        f.cpu,
        f.logical_cpus,
        f.isa,
        f.tune,
        f.kestrel_version,
        f.kestrel_commit,
        f.ort_version.as_deref().unwrap_or("not loaded"),
        f.os,
        f.date_utc
    )
}

/// Per variant, the best-throughput batch and the best within the p99 budget (when a sweep
/// or a budget makes that a question).
fn choice_lines(r: &BenchReport) -> Vec<String> {
    if r.variants.first().is_none_or(|v| v.batches.len() < 2) && r.options.p99_budget_ms.is_none() {
        return Vec::new();
    }
    r.variants
        .iter()
        .map(|v| {
            let budget = r.options.p99_budget_ms.map_or(String::new(), |bud| {
                format!("; best with p99 ≤ {bud} ms: {}", v.choice.best_within_p99.map_or("none fits".into(), |b| format!("batch {b}")))
            });
            format!("{}: best throughput at batch {}{budget}", v.name, v.choice.best_throughput.map_or("-".into(), |b| b.to_string()))
        })
        .collect()
}

/// One line per variant after the first: its forward time over the first variant's, iteration
/// by iteration (the variants alternate, so each pair ran back to back), median and quartiles
/// per batch. On a host whose speed drifts these say more than the ratio of the means.
fn paired_lines(r: &BenchReport) -> Vec<String> {
    let first = match r.variants.first() {
        Some(v) => &v.name,
        None => return Vec::new(),
    };
    r.variants
        .iter()
        .skip(1)
        .filter_map(|v| {
            let per_batch: Vec<String> = v.batches.iter().filter_map(|b| b.paired_ratio_to_first.map(|p| format!("batch {} {:.3} ({:.3}–{:.3})", b.batch, p.median, p.p25, p.p75))).collect();
            (!per_batch.is_empty()).then(|| format!("{} / {first}, run pairs' median (p25–p75): {}", v.name, per_batch.join(", ")))
        })
        .collect()
}

/// Under `--scaling`, one line per thread count after the first: each variant's speed-up to
/// it, run pairs' median and quartiles (the counts alternate, so each pair ran seconds
/// apart), then the ratio of the means.
fn scaling_lines(r: &BenchReport) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
    for sc in &r.scaling {
        if !pairs.contains(&(sc.from_threads, sc.to_threads, sc.batch)) {
            pairs.push((sc.from_threads, sc.to_threads, sc.batch));
        }
    }
    for (from, to, batch) in pairs {
        let each: Vec<String> = r
            .scaling
            .iter()
            .filter(|sc| (sc.from_threads, sc.to_threads, sc.batch) == (from, to, batch))
            .map(|sc| {
                let paired = sc.speedup_paired.map_or("-".into(), |p| format!("{:.3}x ({:.3}–{:.3})", p.median, p.p25, p.p75));
                format!("{} {paired}, means {:.3}x", sc.kind.name(), sc.speedup_of_means)
            })
            .collect();
        lines.push(format!("speed-up {from} → {to} threads at batch {batch}, run pairs' median (p25–p75): {}", each.join("; ")));
    }
    lines
}

/// The terminal summary.
pub fn table(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "bench {}  input {:?}  task {:?}", r.model, r.input_shape, r.task);
    let _ = writeln!(s, "machine: {}", fingerprint_line(r));
    let _ = writeln!(
        s,
        "{:<14} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9}",
        "variant", "batch", "fwd mean", "p50", "p99", "e2e mean", "ms/img", "img/s", "ratio", "memory"
    );
    for v in &r.variants {
        for b in &v.batches {
            let (f, t) = (&b.stages[2], &b.stages[4]);
            let _ = writeln!(
                s,
                "{:<14} {:>5} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10.1} {:>8} {:>9}",
                v.name,
                b.batch,
                f.summary.mean,
                f.summary.p50,
                f.summary.p99,
                t.summary.mean,
                b.latency_per_image_ms,
                f.throughput,
                b.ratio_to_first.map_or("-".into(), |x| format!("{x:.2}x")),
                mb(b.memory_estimate)
            );
        }
    }
    for line in paired_lines(r).into_iter().chain(scaling_lines(r)) {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "cold start (ms): {}", r.variants.iter().map(|v| format!("{} load {:.0} + prepare {:.0} + first {:.1}", v.name, v.cold.load_ms, v.cold.prepare_ms, v.cold.first_inference_ms)).collect::<Vec<_>>().join("; "));
    for line in choice_lines(r) {
        let _ = writeln!(s, "{line}");
    }
    if let Some((b, bytes)) = r.memory_refused {
        let _ = writeln!(s, "sweep stopped before batch {b}: planner estimate {} exceeds --memory-limit", mb(Some(bytes)));
    }
    let _ = writeln!(s, "peak RSS {} (after loading variants {})", mb(r.peak_rss_bytes), mb(r.rss_after_load_bytes));
    for (n, why) in &r.skipped {
        let _ = writeln!(s, "skipped {n}: {why}");
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for v in &r.variants {
        if let Some(layers) = &v.per_layer {
            let _ = writeln!(s, "slowest layers of {} (mean ms per forward; all of them in bench.json with --out):", v.name);
            let _ = writeln!(s, "  {:<36} {:<14} {:<34} {:>8} {:>8}", "layer", "op", "kernel", "ms", "GMAC/s");
            for l in slowest(layers) {
                let _ = writeln!(s, "  {:<36} {:<14} {:<34} {:>8.3} {:>8}", l.node.escape_debug().to_string(), l.op, l.kernel, l.ms, rate(l.gmacs()));
            }
            let _ = writeln!(s, "time of {} by kernel (all layers):", v.name);
            let _ = writeln!(s, "  {:<48} {:>6} {:>8} {:>6} {:>8}", "kernel", "layers", "ms", "share", "GMAC/s");
            for k in by_kernel(layers) {
                let _ = writeln!(s, "  {:<48} {:>6} {:>8.3} {:>5.1}% {:>8}", k.kernel, k.layers, k.ms, k.share * 100.0, rate(k.gmacs()));
            }
        }
    }
    for Behind { variant: v, rows } in behind_ort(r) {
        let _ = writeln!(s, "layers where {v} is furthest behind ORT (mean ms per forward, {v} / ORT):");
        let _ = writeln!(s, "  {:<36} {:>8} {:>8} {:>7}", "layer", v, "ort-f32", "ratio");
        for (node, a, b) in rows {
            let _ = writeln!(s, "  {:<36} {:>8.3} {:>8.3} {:>6.2}x", node.escape_debug().to_string(), a, b, a / b);
        }
    }
    s
}

/// A CSV field: quoted, its quotes doubled, when it holds a comma, a quote or a line break
/// (layer names come from the model file).
fn csv_field(f: &str) -> std::borrow::Cow<'_, str> {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\"")).into()
    } else {
        f.into()
    }
}

/// CSV of `--per-layer`: one row per variant and layer (ms per forward, multiply-accumulates,
/// GMAC/s, empty where the layer has none); `None` when no variant was profiled.
pub fn layers_csv(r: &BenchReport) -> Option<String> {
    let mut s = String::from("variant,engine,layer,op,kernel,ms,macs,gmacs\n");
    let mut any = false;
    for v in &r.variants {
        for l in v.per_layer.iter().flatten() {
            any = true;
            let g = l.gmacs().map_or_else(String::new, |g| format!("{g:.3}"));
            let _ = writeln!(s, "{},{},{},{},{},{:.6},{},{g}", csv_field(&v.name), csv_field(&v.engine), csv_field(&l.node), l.op, csv_field(&l.kernel), l.ms, l.macs);
        }
    }
    any.then_some(s)
}

/// CSV: one row per variant, batch and stage.
pub fn csv(r: &BenchReport) -> String {
    let mut s = String::from("model,variant,engine,batch,stage,count,mean_ms,median_ms,p50_ms,p90_ms,p95_ms,p99_ms,min_ms,max_ms,stddev_ms,images_per_s,ratio_to_first,memory_estimate_bytes,paired_ratio_median,paired_ratio_p25,paired_ratio_p75\n");
    for v in &r.variants {
        for b in &v.batches {
            for st in &b.stages {
                let m = &st.summary;
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3},{},{},{}",
                    r.model,
                    v.name,
                    v.engine,
                    b.batch,
                    st.name,
                    m.count,
                    m.mean,
                    m.median,
                    m.p50,
                    m.p90,
                    m.p95,
                    m.p99,
                    m.min,
                    m.max,
                    m.stddev,
                    st.throughput,
                    if st.name == "forward" { b.ratio_to_first.map_or(String::new(), |x| format!("{x:.4}")) } else { String::new() },
                    b.memory_estimate.map_or(String::new(), |m| m.to_string()),
                    match (st.name, b.paired_ratio_to_first) {
                        ("forward", Some(p)) => format!("{:.4},{:.4},{:.4}", p.median, p.p25, p.p75),
                        _ => ",,".into(),
                    }
                );
            }
        }
    }
    s
}

/// Markdown: fingerprint, forward table, stage breakdown, cold start, choices, warnings.
pub fn markdown(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### {} — input {:?}\n", r.model, r.input_shape);
    let _ = writeln!(s, "Machine: {}\n", fingerprint_line(r));
    let _ = writeln!(s, "| variant | engine | batch | forward mean ms | p50 | p90 | p99 | stddev | ms/image | images/s | vs {0} (means) | vs {0}, run pairs: median (p25–p75) | memory (planner) |", r.variants[0].name);
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for v in &r.variants {
        for b in &v.batches {
            let f = &b.stages[2];
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
                v.name,
                v.engine,
                b.batch,
                f.summary.mean,
                f.summary.p50,
                f.summary.p90,
                f.summary.p99,
                f.summary.stddev,
                b.latency_per_image_ms,
                f.throughput,
                b.ratio_to_first.map_or("-".into(), |x| format!("{x:.2}x")),
                b.paired_ratio_to_first.map_or("-".into(), |p| format!("{:.3}x ({:.3}–{:.3})", p.median, p.p25, p.p75)),
                mb(b.memory_estimate)
            );
        }
    }
    let _ = writeln!(s, "\nStage means (ms per batch) at batch {}:\n", r.variants[0].batches.first().map_or(0, |b| b.batch));
    let _ = writeln!(s, "| variant | decode | preprocess | forward | postprocess | total | cold: load | prepare | first inference |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for v in &r.variants {
        if let Some(b) = v.batches.first() {
            let m: Vec<String> = b.stages.iter().map(|st| format!("{:.3}", st.summary.mean)).collect();
            let _ = writeln!(s, "| {} | {} | {:.0} | {:.0} | {:.1} |", v.name, m.join(" | "), v.cold.load_ms, v.cold.prepare_ms, v.cold.first_inference_ms);
        }
    }
    if !r.scaling.is_empty() {
        let _ = writeln!(s, "\nSpeed-up with threads (every thread count of every variant alternating in one loop):\n");
        let _ = writeln!(s, "| variant | batch | threads | speed-up, run pairs' median | p25–p75 | speed-up of the means |");
        let _ = writeln!(s, "|---|---:|---|---:|---:|---:|");
        for sc in &r.scaling {
            let (median, spread) = sc.speedup_paired.map_or(("-".into(), "-".into()), |p| (format!("{:.3}x", p.median), format!("{:.3}–{:.3}", p.p25, p.p75)));
            let _ = writeln!(s, "| {} | {} | {} → {} | {median} | {spread} | {:.3}x |", sc.kind.name(), sc.batch, sc.from_threads, sc.to_threads, sc.speedup_of_means);
        }
    }
    let _ = writeln!(s);
    for line in choice_lines(r) {
        let _ = writeln!(s, "- {line}");
    }
    if let Some((b, bytes)) = r.memory_refused {
        let _ = writeln!(s, "- sweep stopped before batch {b}: planner estimate {} exceeds the memory limit", mb(Some(bytes)));
    }
    let _ = writeln!(s, "- peak RSS {}", mb(r.peak_rss_bytes));
    for (n, why) in &r.skipped {
        let _ = writeln!(s, "- skipped {n}: {why}");
    }
    for w in &r.warnings {
        let _ = writeln!(s, "- warning: {w}");
    }
    for v in &r.variants {
        if let Some(layers) = &v.per_layer {
            let _ = writeln!(s, "\nSlowest layers of {} (mean ms per forward):\n\n| layer | op | kernel | ms | GMAC/s |\n|---|---|---|---:|---:|", v.name);
            for l in slowest(layers) {
                let _ = writeln!(s, "| {} | {} | {} | {:.3} | {} |", l.node, l.op, l.kernel, l.ms, rate(l.gmacs()));
            }
            let _ = writeln!(s, "\nTime of {} by kernel (all layers):\n\n| kernel | layers | ms | share | GMAC/s |\n|---|---:|---:|---:|---:|", v.name);
            for k in by_kernel(layers) {
                let _ = writeln!(s, "| {} | {} | {:.3} | {:.1} % | {} |", k.kernel, k.layers, k.ms, k.share * 100.0, rate(k.gmacs()));
            }
        }
    }
    for Behind { variant: v, rows } in behind_ort(r) {
        let _ = writeln!(s, "\nLayers where {v} is furthest behind ORT (mean ms per forward):\n\n| layer | {v} | ort-f32 | ratio |\n|---|---:|---:|---:|");
        for (node, a, b) in rows {
            let _ = writeln!(s, "| {node} | {a:.3} | {b:.3} | {:.2}x |", a / b);
        }
    }
    s
}

/// A kestrel variant's layers furthest behind `ort-f32`: `(layer, ours, ORT)` in ms, most
/// time lost first.
struct Behind<'a> {
    variant: &'a str,
    rows: Vec<(&'a str, f64, f64)>,
}

/// For each kestrel variant with per-layer times, when `ort-f32` at the same thread count has
/// them too: the (up to 10) layers both timed where the variant is slower than ORT, most time
/// lost first.
fn behind_ort(r: &BenchReport) -> Vec<Behind<'_>> {
    use crate::engine::Kind;
    r.variants
        .iter()
        .filter(|v| !matches!(v.kind, Kind::OrtF32 | Kind::OrtInt8))
        .filter_map(|v| {
            let ort = r.variants.iter().find(|o| o.kind == Kind::OrtF32 && o.threads == v.threads)?.per_layer.as_ref()?;
            // Layers only: ORT's nodes that no layer owns keep ORT's names, which may be ours too.
            let theirs: std::collections::HashMap<&str, f64> = ort.iter().filter(|l| l.op != ORT_NODE).map(|l| (l.node.as_str(), l.ms)).collect();
            let mut rows: Vec<(&str, f64, f64)> = v.per_layer.as_ref()?.iter().filter_map(|l| Some((l.node.as_str(), l.ms, *theirs.get(l.node.as_str())?))).filter(|&(_, a, b)| b > 0.0 && a > b).collect();
            rows.sort_by(|x, y| (y.1 - y.2).total_cmp(&(x.1 - x.2)));
            rows.truncate(10);
            (!rows.is_empty()).then_some(Behind { variant: v.name.as_str(), rows })
        })
        .collect()
}

/// A rate for the tables, `-` where there is none.
fn rate(g: Option<f64>) -> String {
    g.map_or_else(|| "-".into(), |g| format!("{g:.1}"))
}

/// The layers that ran on one kernel, summed.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: String,
    pub layers: usize,
    pub ms: f64,
    pub macs: u64,
    /// Of the summed time of all layers.
    pub share: f64,
}

impl KernelTime {
    /// Billions of multiply-accumulates per second, where its layers have any.
    pub fn gmacs(&self) -> Option<f64> {
        super::gmacs(self.macs, self.ms)
    }
}

/// Per-layer times summed by kernel label (a GEMM kernel's convs together, its Winograd ones
/// apart), most time first: where a model's time goes, and at what rate.
pub fn by_kernel(layers: &[LayerTime]) -> Vec<KernelTime> {
    let total: f64 = layers.iter().map(|l| l.ms).sum();
    let mut out: Vec<KernelTime> = Vec::new();
    for l in layers {
        match out.iter_mut().find(|k| k.kernel == l.kernel) {
            Some(k) => {
                k.layers += 1;
                k.ms += l.ms;
                k.macs = k.macs.saturating_add(l.macs);
            }
            None => out.push(KernelTime { kernel: l.kernel.clone(), layers: 1, ms: l.ms, macs: l.macs, share: 0.0 }),
        }
    }
    for k in &mut out {
        k.share = if total > 0.0 { k.ms / total } else { 0.0 };
    }
    out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    out
}

/// The 15 slowest layers, slowest first.
fn slowest(layers: &[LayerTime]) -> Vec<&LayerTime> {
    let mut sorted: Vec<_> = layers.iter().collect();
    sorted.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    sorted.truncate(15);
    sorted
}

/// Writes `text` to `path`.
pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(p) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A report as pretty JSON (a bench report with its raw samples included).
pub fn json<T: serde::Serialize + ?Sized>(r: &T) -> Result<String> {
    serde_json::to_string_pretty(r).map_err(|e| Error::Internal(format!("serialising the report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_quotes_or_breaks_are_quoted() {
        assert_eq!(csv_field("layer1.0.conv1"), "layer1.0.conv1");
        assert_eq!(csv_field("f32 conv, taps 1x1 of 3x3"), "\"f32 conv, taps 1x1 of 3x3\"");
        assert_eq!(csv_field("a \"b\""), "\"a \"\"b\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn kernel_times_sum_by_label_with_shares_and_rates() {
        let l = |kernel: &str, ms: f64, macs: u64| LayerTime { node: "n".into(), op: "Conv", kernel: kernel.into(), ms, macs };
        let k = by_kernel(&[l("a", 1.0, 2_000_000), l("b", 3.0, 0), l("a", 1.0, 2_000_000)]);
        assert_eq!(k.len(), 2);
        assert_eq!((k[0].kernel.as_str(), k[0].layers, k[0].ms), ("b", 1, 3.0));
        assert_eq!((k[1].kernel.as_str(), k[1].layers, k[1].macs), ("a", 2, 4_000_000));
        assert!((k[0].share - 0.6).abs() < 1e-12 && (k[1].share - 0.4).abs() < 1e-12);
        // 4 M MACs in 2 ms: 2 GMAC/s; no MACs, no rate.
        assert_eq!(k[1].gmacs(), Some(2.0));
        assert_eq!(k[0].gmacs(), None);
    }
}
