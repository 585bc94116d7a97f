//! `kestrel report`: bench and eval of the built-in and trained reference models over every
//! variant this machine has, written as report.md, report.json, per-model JSON/CSV/Markdown
//! and SVG plots into one folder, with a summary table on the terminal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bench::{self, BenchOptions, BenchReport};
use crate::engine::Kind;
use crate::dataset::Shard;
use crate::error::{Error, Result};
use crate::eval::{EvalOptions, EvalReport};
use crate::load::{load_model, LoadOptions};
use crate::reference::{reference_models, Reference};
use crate::tensor::Tensor;

/// What a report covers.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub out: PathBuf,
    /// Folder with `manifest.json` and the trained models.
    pub models: Option<PathBuf>,
    pub builtins: Vec<String>,
    pub threads: usize,
    pub iters: usize,
    pub warmup: usize,
}

/// Finds the trained models: `./models`, or `models/` beside the repository the binary was built in.
pub fn find_models_dir() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("models")];
    if let Ok(exe) = std::env::current_exe() {
        // target/release/kestrel → repository root.
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(root.join("models"));
        }
    }
    candidates.into_iter().find(|d| d.join("manifest.json").is_file())
}

/// The variants this build and machine can run.
pub fn available_variants() -> (Vec<Kind>, Vec<(String, String)>) {
    let mut ok = vec![Kind::F32];
    let mut missing = Vec::new();
    match crate::cpu::detect::selected() {
        Ok(isa) => {
            // bf16 where the CPU runs it natively (the scalar emulation is a twin, not a variant).
            if crate::cpu::bgemm::Kernel::native(isa).is_some() {
                ok.push(Kind::Bf16);
            } else {
                missing.push(("bf16".to_string(), format!("no AVX512_BF16 kernel on the {} path", isa.name())));
            }
            ok.extend([Kind::Int8Static, Kind::Int8Dynamic]);
        }
        Err(e) => missing.push(("int8".to_string(), e.to_string())),
    }
    #[cfg(feature = "ort")]
    match crate::ort_ref::available() {
        Ok(()) => ok.extend([Kind::OrtF32, Kind::OrtInt8]),
        Err(e) => missing.push(("ort-f32, ort-int8".to_string(), e.to_string())),
    }
    #[cfg(not(feature = "ort"))]
    missing.push(("ort-f32, ort-int8".to_string(), "kestrel was built without the 'ort' feature".to_string()));
    (ok, missing)
}

fn calibration_for(r: &Reference, n: usize) -> Vec<Tensor> {
    let pre = r.preprocess();
    (0..n as u64).map(|i| crate::imageio::preprocess(&r.sample(r.train_seed, 1_000_000 + i), &pre)).collect()
}

fn write_bench(b: &BenchReport, dir: &Path) -> Result<()> {
    let stem = format!("bench-{}", b.model);
    bench::output::write(&dir.join(format!("{stem}.json")), &bench::output::json(b)?)?;
    bench::output::write(&dir.join(format!("{stem}.csv")), &bench::output::csv(b))?;
    bench::output::write(&dir.join(format!("{stem}.md")), &bench::output::markdown(b))?;
    bench::plot::write_all(b, &dir.join("plots"), &format!("{}-", b.model))?;
    Ok(())
}

/// Runs the whole report; `log` receives progress lines.
pub fn run(opts: &ReportOptions, log: &mut dyn FnMut(&str)) -> Result<String> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let (variants, missing) = available_variants();
    let mut benches: Vec<BenchReport> = Vec::new();
    let mut evals: Vec<EvalReport> = Vec::new();
    let mut notes: Vec<String> = missing.iter().map(|(v, why)| format!("variant {v} left out: {why}")).collect();
    let mut progress = |_: u64, _: u64, _: &str| {};

    for name in &opts.builtins {
        log(&format!("bench {name} (seeded weights), variants {}", variants.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")));
        let t = Instant::now();
        let model = load_model(name, &LoadOptions::default())?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let bo = BenchOptions { variants: variants.clone(), batches: vec![1], threads: opts.threads, warmup: opts.warmup, iters: opts.iters, ..BenchOptions::default() };
        let b = bench::run(&model, load_ms, &bo, &mut progress)?;
        write_bench(&b, &opts.out)?;
        benches.push(b);
    }
    notes.push("built-in models carry seeded synthetic weights: they are benched, not evaluated (no labels exist for them)".into());

    match opts.models.clone().or_else(find_models_dir) {
        None => notes.push("trained reference models not found (models/manifest.json); their bench and eval are left out".into()),
        Some(dir) => {
            for r in reference_models() {
                let path = dir.join(format!("{}.safetensors", r.name));
                if !path.is_file() {
                    notes.push(format!("{} not found in {}", r.name, dir.display()));
                    continue;
                }
                log(&format!("bench {} (batch sweep)", r.name));
                let t = Instant::now();
                let model = load_model(&path.to_string_lossy(), &LoadOptions::default())?;
                let load_ms = t.elapsed().as_secs_f64() * 1e3;
                let bo = BenchOptions {
                    variants: variants.clone(),
                    batches: vec![1, 4, 16, 64],
                    threads: opts.threads,
                    warmup: opts.warmup,
                    iters: opts.iters,
                    ..BenchOptions::default()
                };
                let b = bench::run(&model, load_ms, &bo, &mut progress)?;
                write_bench(&b, &opts.out)?;
                benches.push(b);

                log(&format!("eval {} on its held-out set ({} images, seed {})", r.name, r.test_count, r.test_seed));
                let data = opts.out.join("data").join(r.name);
                if !data.exists() {
                    r.write_test_set(&data)?;
                }
                let calib = calibration_for(&r, 32);
                let eo = EvalOptions { variants: &variants, threads: opts.threads, batch: 32, threshold: 0.5, shard: Shard::default(), calib: &calib };
                let e = crate::eval::run_variants(&model, &data, &eo, &mut |_, _, _| {})?;
                bench::output::write(&opts.out.join(format!("eval-{}.md", r.name)), &crate::eval::markdown(&e))?;
                bench::output::write(&opts.out.join(format!("eval-{}.json", r.name)), &bench::output::json(&e)?)?;
                evals.push(e);
            }
        }
    }

    let summary = summary_table(&benches, &evals);
    let mut md = String::new();
    let _ = writeln!(md, "# kestrel report\n");
    if let Some(b) = benches.first() {
        let _ = writeln!(md, "Machine: {}\n", bench::output::fingerprint_line(b));
    }
    let _ = writeln!(md, "Generated by `kestrel report` in {:.0} s. Ratios are forward latency against the first variant (f32) at batch 1, same inputs, same threads; Δ is the accuracy (or Dice) difference against f32 on the held-out set.\n", t0.elapsed().as_secs_f64());
    let _ = writeln!(md, "## Summary\n\n{summary}");
    for n in &notes {
        let _ = writeln!(md, "- {n}");
    }
    let _ = writeln!(md, "\n## Accuracy\n");
    for e in &evals {
        let _ = writeln!(md, "{}", crate::eval::markdown(e));
    }
    let _ = writeln!(md, "\n## Latency\n");
    for b in &benches {
        let _ = writeln!(md, "{}", bench::output::markdown(b));
        for p in ["throughput", "latency", "stages"] {
            let _ = writeln!(md, "![{} {p}](plots/{}-{p}.svg)", b.model, b.model);
        }
        let _ = writeln!(md);
    }
    bench::output::write(&opts.out.join("report.md"), &md)?;
    let json = serde_json::json!({"bench": benches, "eval": evals, "notes": notes, "seconds": t0.elapsed().as_secs_f64()});
    bench::output::write(&opts.out.join("report.json"), &bench::output::json(&json)?)?;
    Ok(format!("{summary}\n{}\nwrote {} in {:.0} s", notes.iter().map(|n| format!("note: {n}")).collect::<Vec<_>>().join("\n"), opts.out.join("report.md").display(), t0.elapsed().as_secs_f64()))
}

/// One Markdown table: per model and variant, batch-1 latency, ratio to the first variant (the
/// run pairs' median, [`crate::stats::PairedRatio`]), best batch, accuracy.
pub fn summary_table(benches: &[BenchReport], evals: &[EvalReport]) -> String {
    let mut s = String::from("| model | variant | engine | batch-1 forward ms | vs f32 (run pairs' median) | best batch (images/s) | accuracy / Dice | Δ vs f32 |\n|---|---|---|---:|---:|---:|---:|---:|\n");
    for b in benches {
        let e = evals.iter().find(|e| e.model == b.model);
        for v in &b.variants {
            let b1 = v.batches.first();
            let best = v.choice.best_throughput.and_then(|bb| v.batches.iter().find(|x| x.batch == bb));
            let acc = e.and_then(|e| e.variants.iter().find(|x| x.variant == v.name));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                b.model,
                v.name,
                v.engine,
                b1.map_or("-".into(), |x| format!("{:.3}", x.stages[2].summary.mean)),
                b1.and_then(|x| x.paired_ratio_to_first.map(|p| p.median).or(x.ratio_to_first)).map_or("-".into(), |r| format!("{r:.2}x")),
                best.map_or("-".into(), |x| format!("{} ({:.0})", x.batch, x.stages[2].throughput)),
                acc.map_or("-".into(), |a| format!("{} {:.4}", a.metrics.headline().0, a.metrics.headline().1)),
                acc.map_or("-".into(), |a| format!("{:+.4}", a.delta_vs_first)),
            );
        }
    }
    s
}
