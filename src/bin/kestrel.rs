//! The `kestrel` command line: info, classify, segment (whole or tiled), parity, quantize,
//! export-onnx, convert, bench, eval, report and synth.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use kestrel::error::{Error, Result};
use kestrel::graph::shape;
use kestrel::imageio::{self, Preprocess};
use kestrel::postprocess::topk;
use kestrel::tensor::{IMAGENET_MEAN, IMAGENET_STD};
use kestrel::dataset::Shard;
use kestrel::{load_model, LoadOptions, LoadedModel, Options, Session, Task, Tensor};

#[derive(Parser)]
#[command(name = "kestrel", version, about = "A pure-Rust inference engine for convolutional networks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A .onnx file, a .safetensors file, or a built-in name (resnet18 … resnet152, unet, unet-bilinear).
    model: String,
    /// JSON model config for a .safetensors file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of a built-in model's synthetic weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (0: all cores; at most 1024).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Concrete input shape N,C,H,W: an ONNX model's symbolic dims, or a native model's (safetensors, built-in) size in place of its own
    #[arg(long, value_delimiter = ',')]
    input_shape: Option<Vec<usize>>,
    /// Run the f32 convolutions in bf16 (set from `--precision` by the commands that take it).
    #[arg(skip)]
    bf16: bool,
}

#[derive(Args, Clone)]
struct ComputeArgs {
    /// Arithmetic of the model's f32 convolutions and fully connected layers: f32, or bf16
    /// (weights and activations rounded to bf16, products by AMX tiles or vdpbf16ps, f32
    /// accumulation; needs AVX512_BF16).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Where the model runs: cpu, or cuda / cuda:N (with the `cuda` feature: the device is
    /// probed, but the CUDA executor is not built yet, so it answers why it cannot run there).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The CUDA device `--device` names, for builds that have the backend.
#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<()> {
    let d = kestrel::cuda::probe(ordinal)?;
    Err(Error::Unsupported {
        what: format!("running on {} (cuda:{ordinal}, sm_{}{})", d.name, d.capability.0, d.capability.1),
        hint: "the CUDA executor is not built yet (its kernels compile through NVRTC); run with --device cpu".into(),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<()> {
    Err(Error::FeatureDisabled { feature: "cuda", what: "--device cuda".into() })
}

impl ComputeArgs {
    /// `m` set to run at this precision, after checking the device.
    fn apply(&self, mut m: ModelArgs) -> Result<ModelArgs> {
        match self.device.as_str() {
            "cpu" => {}
            "cuda" => cuda_device(0)?,
            d => match d.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => cuda_device(n)?,
                None => return Err(Error::Argument(format!("--device {}: cpu, cuda or cuda:N", d.escape_debug()))),
            },
        }
        m.bf16 = match self.precision.as_str() {
            "f32" => false,
            "bf16" => true,
            other => return Err(Error::Argument(format!("--precision {}: f32 or bf16", other.escape_debug()))),
        };
        Ok(m)
    }
}

impl ModelArgs {
    fn load(&self) -> Result<LoadedModel> {
        load_model(
            &self.model,
            &LoadOptions { seed: self.seed, config: self.config.clone(), input_shape: self.input_shape.clone() },
        )
    }
    fn session(&self, m: &LoadedModel) -> Result<Session> {
        Session::new(m.graph.clone(), &Options { threads: self.threads, optimize: true, bf16: self.bf16, ..Default::default() })
    }
}

#[derive(Args, Clone)]
struct PreArgs {
    /// Resize the shorter side to this (0: keep; default 256 for classifiers, else 0).
    #[arg(long)]
    resize: Option<usize>,
    /// Center-crop to this square (0: none; default 224 for classifiers, else 0).
    #[arg(long)]
    crop: Option<usize>,
    /// Per-channel mean, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = IMAGENET_MEAN)]
    mean: Vec<f32>,
    /// Per-channel std, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = IMAGENET_STD)]
    std: Vec<f32>,
}

impl PreArgs {
    /// The preprocessing for a model of `task`: ImageNet's resize and crop for classifiers,
    /// none for others (segmenters take the image at its size).
    fn get(&self, task: Task) -> Result<Preprocess> {
        let classifier = task == Task::Classify;
        let three = |v: &[f32], what: &str| -> Result<[f32; 3]> {
            v.try_into().map_err(|_| Error::Argument(format!("--{what} takes 3 comma-separated values")))
        };
        let std = three(&self.std, "std")?;
        if std.contains(&0.0) {
            return Err(Error::Argument("--std values must be non-zero".into()));
        }
        Ok(Preprocess {
            resize: self.resize.unwrap_or(if classifier { 256 } else { 0 }),
            crop: self.crop.unwrap_or(if classifier { 224 } else { 0 }),
            mean: three(&self.mean, "mean")?,
            std,
        })
    }
}

/// The result cache of classify, segment and explain (`kestrel::cache`).
#[derive(Args, Clone)]
struct CacheArgs {
    /// Reuse results from this cache folder and store new ones (content-addressed: the input's
    /// pixels, the model file, the command and its options).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Size bound of the cache's entries (e.g. 1G, 512M); least recently used go first.
    #[arg(long, default_value = "1G")]
    cache_size: String,
}

impl CacheArgs {
    fn open(&self) -> Result<Option<kestrel::cache::Cache>> {
        let Some(dir) = &self.cache else { return Ok(None) };
        let bytes = parse_size(&self.cache_size, "--cache-size")?;
        Ok(Some(kestrel::cache::Cache::open(dir, bytes)?))
    }
}

/// What identifies a model in a cache key: the hash of its file (and config), or a built-in's
/// name and seed.
fn model_identity(m: &ModelArgs) -> Result<String> {
    let p = Path::new(&m.model);
    let mut id = if p.is_file() {
        kestrel::cache::sha256_hex(&std::fs::read(p).map_err(|e| Error::io(p, e))?)
    } else {
        format!("builtin {} seed {}", m.model, m.seed)
    };
    if let Some(c) = &m.config {
        id.push_str(&kestrel::cache::sha256_hex(&std::fs::read(c).map_err(|e| Error::io(c, e))?));
    }
    if let Some(s) = &m.input_shape {
        id.push_str(&format!(" shape {s:?}"));
    }
    if m.bf16 {
        id.push_str(" bf16");
    }
    Ok(id)
}

/// The cache key of one image's result: its pixels, the model, the command and its options.
fn image_key(command: &str, model: &str, img: &image::RgbImage, options: &str) -> String {
    let dims = [img.width().to_le_bytes(), img.height().to_le_bytes()].concat();
    kestrel::cache::key(&[command.as_bytes(), model.as_bytes(), &dims, img.as_raw(), options.as_bytes()])
}

#[derive(Subcommand)]
enum Cmd {
    /// Layers, output shapes, parameters, MACs and weight bytes.
    Info {
        #[command(flatten)]
        m: ModelArgs,
        /// Batch size for shapes and MACs.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Also each layer's fraction of zero weights and of near-zero output channels.
        #[arg(long)]
        sparsity: bool,
    },
    /// Classify images (PNG or JPEG), batched.
    Classify {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// One label per line.
        #[arg(long)]
        labels: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Images per batch.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[command(flatten)]
        pre: PreArgs,
        /// Process only part I of N of the (sorted) inputs: items k with k mod N = I.
        #[arg(long)]
        shard: Option<Shard>,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        prec: ComputeArgs,
    },
    /// Segment an image (or every image of a directory) into a mask PNG; `--tile` streams
    /// large images through the model in blended tiles.
    Segment {
        #[command(flatten)]
        m: ModelArgs,
        /// An image, or a directory of images (then -o is a directory).
        image: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Probability threshold; negative writes the probability map instead.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        #[arg(long, value_delimiter = ',', default_values_t = IMAGENET_MEAN)]
        mean: Vec<f32>,
        #[arg(long, value_delimiter = ',', default_values_t = IMAGENET_STD)]
        std: Vec<f32>,
        /// Tile side: stream the image through the model in tiles (PNG input is read row by row).
        #[arg(long)]
        tile: Option<usize>,
        /// Overlap between tiles, blended without seams (default: 64, at most half the tile).
        #[arg(long)]
        overlap: Option<usize>,
        /// Tiles per forward pass.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Process only part I of N of a directory's (sorted) images.
        #[arg(long)]
        shard: Option<Shard>,
        /// TIFF input: the level (image) of the file to read, 0 the full resolution
        /// (`kestrel info SLIDE.tif` lists them).
        #[arg(long)]
        level: Option<usize>,
        /// TIFF input: the level closest to this many microns per pixel.
        #[arg(long)]
        mpp: Option<f64>,
        /// Skip tiles without tissue: `otsu` (the default for TIFF slides: Otsu's threshold on
        /// saturation of a thumbnail; bright unsaturated pixels are glass) or `none`.
        #[arg(long)]
        tissue: Option<String>,
        /// `--tile`: decode on the calling thread, between forward passes, instead of on a
        /// thread of its own ahead of them.
        #[arg(long)]
        no_pipeline: bool,
        /// Whole images only (streamed ones are not cached).
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        prec: ComputeArgs,
    },
    /// Compare kestrel with ONNX Runtime on the same inputs.
    Parity(ParityArgs),
    /// Run a model and write its raw outputs: .npy for one output, .npz (one array per
    /// output) for several.
    Run(RunArgs),
    /// Write the model as ONNX (opset 17, IR 8).
    ExportOnnx {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Quantize to INT8 and write a QDQ ONNX file (s8 weights, u8 activations).
    Quantize(QuantizeArgs),
    /// Structured channel pruning: a physically smaller model, recovered without training.
    Prune(PruneArgs),
    /// Convert between formats: .safetensors (state dict + config) or .onnx.
    Convert {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Time a model: stage timings, percentiles, cold start, batch sweep, variants side by side.
    Bench(BenchArgs),
    /// Accuracy on labelled data (ImageFolder, or images/ + masks/), per variant.
    Eval(EvalArgs),
    /// Bench and eval of the built-in and trained models over every variant; writes a report folder.
    Report {
        /// Output folder.
        #[arg(long, default_value = "report")]
        out: PathBuf,
        /// Folder of the trained models (default: ./models, or the repository's models/).
        #[arg(long)]
        models: Option<PathBuf>,
        /// Built-in models to bench (seeded weights).
        #[arg(long, value_delimiter = ',', default_values_t = ["resnet18".to_string(), "resnet50".to_string(), "unet".to_string()])]
        builtins: Vec<String>,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, default_value_t = 20)]
        iters: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
    },
    /// Class activation maps: where a classifier looked, as a PNG overlay and a .npy per image.
    Explain {
        #[command(flatten)]
        m: ModelArgs,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// cam (the last map's weighted sum; needs GlobalAveragePool then Linear after the
        /// layer) or gradcam (any layer; a backward pass unless the head is that one).
        #[arg(long, default_value = "gradcam")]
        method: String,
        /// A class index, or `top` (the highest-scoring class of each image).
        #[arg(long, default_value = "top")]
        class: String,
        /// The node whose output map is explained (a name from `kestrel info`, or a prefix
        /// such as `layer3`: its last node); default the last conv with a map of at least 7×7.
        #[arg(long)]
        layer: Option<String>,
        /// Output folder: IMAGE.cam.png (overlay) and IMAGE.cam.npy (the map at the input's size).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        pre: PreArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        prec: ComputeArgs,
    },
    /// Join the outputs of `segment --tile --shard I/N` runs of one image into one mask
    /// (PNG, or tiled TIFF for a .tif output), checking that they cover it once, in order.
    MergeTiles {
        /// The shards' outputs (each with its OUTPUT.shard.json), in any order.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// The result cache: `stats` (entries, bytes, hits, misses) or `clear`.
    Cache {
        /// stats or clear.
        action: String,
        /// The cache folder.
        dir: PathBuf,
    },
    /// Write a synthetic dataset: `shapes` (ImageFolder, 10 classes), `blobs` (images/ + masks/),
    /// or `big-blobs` (one large PNG, streamed).
    Synth {
        /// shapes, blobs or big-blobs.
        kind: String,
        /// Output folder (or .png file for big-blobs).
        output: PathBuf,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 1001)]
        seed: u64,
        /// Image side.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// big-blobs: png, or tiff (a tiled pyramidal TIFF; the default for a .tif output).
        #[arg(long)]
        format: Option<String>,
        /// big-blobs TIFF: pyramid levels, each half the previous size.
        #[arg(long, default_value_t = 3)]
        levels: usize,
        /// big-blobs TIFF: tile compression, none, lzw, deflate or jpeg.
        #[arg(long, default_value = "jpeg")]
        compression: String,
        /// big-blobs TIFF: tissue in three discs, the rest glass (as a real slide).
        #[arg(long)]
        glass: bool,
    },
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Comma-separated: f32, f32-direct (f32 without Winograd), bf16, bf16-direct (bf16 without Winograd), bf16-f4 (bf16 with Winograd F(4x4) in bf16: faster on large maps, rounds about six times as much), int8-static, int8-dynamic, ort-f32, ort-int8 (ratios are to the first).
    #[arg(long, default_value = "f32")]
    variants: String,
    /// Batch sizes, comma separated, or `auto` (1, 2, 4, … up to --max-batch).
    #[arg(long, default_value = "1")]
    batch: String,
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed iterations per variant and batch.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Run each variant and batch for at least this many seconds (overrides --iters as a minimum).
    #[arg(long)]
    seconds: Option<f64>,
    /// Stop the sweep before a batch whose planner memory estimate exceeds this (e.g. 2G, 512M, 1000000).
    #[arg(long)]
    memory_limit: Option<String>,
    /// Also report the best batch whose p99 latency fits this many ms.
    #[arg(long)]
    p99_budget: Option<f64>,
    /// Time every layer of the kestrel variants, and of ort-f32 (ONNX Runtime's profiler, its fused nodes given back to the layers they fused).
    #[arg(long)]
    per_layer: bool,
    /// Thread counts, comma separated (e.g. 1,2; 0: every core): every variant runs at each, all alternating in one loop, and the speed-up from the first count is reported per variant, from runs made seconds apart (replaces --threads).
    #[arg(long)]
    scaling: Option<String>,
    /// Folder for bench.json, bench.csv, bench.md, the SVG plots and, with --per-layer, layers.csv.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// ImageFolder (ROOT/CLASS/*.png) or segmentation folder (ROOT/images, ROOT/masks).
    data: PathBuf,
    /// Comma-separated variants (deltas and speedups are against the first).
    #[arg(long, default_value = "f32")]
    variants: String,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Process only part I of N of the (sorted) items; merge shards' JSON afterwards.
    #[arg(long)]
    shard: Option<Shard>,
    /// Calibration images for static INT8 (a folder of images or .npy); default:
    /// --calib-samples items spread over DATA (this shard).
    #[arg(long)]
    calib: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    calib_samples: usize,
    /// Write eval.json and eval.md here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct QuantizeArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// static (calibrated ranges) or dynamic (ranges per input at run time).
    #[arg(long, default_value = "static")]
    mode: String,
    /// Calibration data: a folder of images (PNG/JPEG) or .npy inputs.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Seeded synthetic image-like calibration inputs when no --calib is given.
    #[arg(long, default_value_t = 16)]
    calib_samples: usize,
    /// minmax, percentile, entropy or mse.
    #[arg(long, default_value = "minmax")]
    method: String,
    /// Percentile kept by --method percentile.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// Layers kept in f32 (node names; a trailing * matches a prefix).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// One weight scale per tensor instead of per output channel.
    #[arg(long)]
    per_tensor: bool,
    /// Weight codes in [-127, 127] (8) or [-64, 64] (7, onnxruntime's reduce_range), which
    /// AVX2's vpmaddubsw kernel runs exactly; auto picks 7 where this host's INT8 kernel is
    /// AVX2 (KESTREL_ISA counts), else 8.
    #[arg(long, default_value = "auto")]
    weight_bits: String,
    /// Static mode: keep the residual inputs of fused Adds in f32 instead of quantizing them
    /// with their own calibrated parameters.
    #[arg(long)]
    f32_residual: bool,
    /// Report each layer's output error when only it is quantized, and suggest exclusions.
    #[arg(long)]
    sensitivity: bool,
    /// Output .onnx (QDQ); not needed with --sensitivity.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct PruneArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Fraction of channels to remove: of each group, or of all prunable channels with --global or --sensitivity.
    #[arg(long)]
    ratio: Option<f64>,
    /// Keep at most this fraction of the model's MACs (a global or uniform ratio searched for).
    #[arg(long)]
    target_macs: Option<f64>,
    /// Keep at most this fraction of the model's parameters.
    #[arg(long)]
    target_params: Option<f64>,
    /// Run in at most this many ms (batch 1, this machine, kestrel at --precision).
    #[arg(long)]
    target_latency: Option<f64>,
    /// Precision the model is pruned for, f32 or int8: --target-latency measures it, and
    /// --round-to auto rounds for its kernels (on AMX tiles, int8 rounds coarser).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Rank every prunable channel together instead of removing the same share of each group.
    #[arg(long)]
    global: bool,
    /// With --global or --sensitivity: the largest share of any one group removed.
    #[arg(long, default_value_t = 0.9)]
    max_layer_ratio: f64,
    /// Remove --ratio of all prunable channels (or meet the target), each group's share chosen
    /// by the model's measured output error when that group alone is pruned and recovered, in
    /// eighths of its width, on the calibration inputs (needs --calib or --calib-samples; one
    /// recovered model per step and group).
    #[arg(long)]
    sensitivity: bool,
    /// Layers kept whole (node names; a trailing * matches a prefix).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// bn (BatchNorm |γ|, L2 magnitude where a group has no BatchNorm), l1, l1-max, l2,
    /// l2-max, activation, reconstruction or random.
    #[arg(long, default_value = "bn")]
    importance: String,
    /// Seed of --importance random.
    #[arg(long, default_value_t = 1)]
    importance_seed: u64,
    /// Round kept channels up to a multiple of N, or `auto` (the step of this CPU's kernels at
    /// --precision).
    #[arg(long, default_value = "1")]
    round_to: String,
    /// Calibration images (a folder, subfolders too) or .npy inputs; enables recovery.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Seeded synthetic calibration inputs when no --calib is given (enables recovery).
    #[arg(long)]
    calib_samples: Option<usize>,
    /// Recovery: skip folding removed channels' means into biases.
    #[arg(long)]
    no_bias_fold: bool,
    /// Recovery: skip the least-squares refits.
    #[arg(long)]
    no_least_squares: bool,
    /// Recovery: skip re-estimating BatchNorm statistics.
    #[arg(long)]
    no_bn_recalibration: bool,
    /// List the dependency groups, their members and why a group is kept whole.
    #[arg(long)]
    explain: bool,
    /// Labelled data (ImageFolder, or images/ + masks/) to score before and after.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Prune at each of these ratios (with and without recovery) and plot accuracy against
    /// MACs and latency; needs --eval and --out.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<f64>,
    /// Zero the smallest-magnitude weights instead (no speed-up: kernels are dense).
    #[arg(long)]
    unstructured: bool,
    /// Runs per latency measurement (median).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Skip the latency measurements of the report.
    #[arg(long)]
    no_measure: bool,
    /// Folder for report.md and report.json (or the sweep's tables and plots).
    #[arg(long)]
    out: Option<PathBuf>,
    /// OUT.onnx, or OUT.safetensors for native models (per-layer widths in its config).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// One .npy input (f32, NCHW), or images batched together (preprocessed like classify for
    /// classifiers; normalised and zero-padded to the model's multiple for others). Default:
    /// seeded random normal values.
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Seed of the random input.
    #[arg(long, default_value_t = 1)]
    input_seed: u64,
    /// Batch of the random input.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[command(flatten)]
    pre: PreArgs,
    /// OUT.npy (a model with one output) or OUT.npz.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    prec: ComputeArgs,
}

#[derive(Args)]
struct ParityArgs {
    #[command(flatten)]
    m: ModelArgs,
    #[command(flatten)]
    prec: ComputeArgs,
    /// Input as .npy (f32, NCHW) or an image (preprocessed like classify for classifiers,
    /// normalised and zero-padded for others); default: seeded random normal values.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Use seeded random normal inputs (the default when no --input is given).
    #[arg(long, conflicts_with = "input")]
    random: bool,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    input_seed: u64,
    /// Batch of random inputs.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// ONNX Runtime's graph optimisations: disabled, basic, extended or all. A quantized model
    /// is also run with them disabled, its exact QDQ semantics, and judged against that.
    #[arg(long, default_value = "all")]
    ort_optimization: kestrel::ort_ref::OrtOptimization,
    /// Print every layer's comparison and name the first that leaves tolerance (quantized
    /// models are always checked layer by layer; this prints the table).
    #[arg(long)]
    per_layer: bool,
    /// Maximum relative L2 error (default 1e-4; 0.15 for quantized models' whole outputs).
    #[arg(long)]
    rel_l2: Option<f64>,
    /// Minimum cosine similarity (default 0.9999; 0.99 for quantized models' whole outputs).
    #[arg(long)]
    cosine: Option<f64>,
    /// Maximum absolute error (off by default).
    #[arg(long)]
    max_abs: Option<f64>,
    /// Maximum absolute error in output quantization steps, (max − min)/255 of the reference
    /// output (off for whole outputs; 1 for each INT8 layer with --per-layer).
    #[arg(long)]
    max_steps: Option<f64>,
    /// Minimum top-1 agreement for classifiers (default 1; not judged for quantized models).
    #[arg(long)]
    top1: Option<f64>,
    /// Also time both engines over this many runs and print median latencies.
    #[arg(long, default_value_t = 0)]
    time: usize,
    /// Write the report (all three distances for quantized models) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, which turns every print into a panic once a reader such as
    // `head` has gone; a command-line tool should end quietly instead, as cat and ls do.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at start-up, before any other thread
    // exists, has no memory-safety effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // Usage errors, like every other error, are one line.
            let text = e.to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("kestrel: error: {} (see kestrel --help)", one_line(line.trim_start_matches("error: ")));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kestrel: error: {}", one_line(&e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// An error message as one printable line: newlines, terminal escapes and other control
/// characters from files (node names, ORT's messages) are shown escaped, never obeyed.
fn one_line(s: &str) -> String {
    s.trim_end().chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Info { m, .. } if kestrel::slide::is_tiff(Path::new(&m.model)) => slide_info(Path::new(&m.model)),
        Cmd::Info { m, batch, sparsity } => info(&m, batch, sparsity),
        Cmd::Classify { m, images, labels, top, batch, pre, shard, cache, prec } => {
            let m = prec.apply(m)?;
            let mut images = images;
            if let Some(s) = shard {
                images.sort();
                images = s.select(images);
            }
            classify(&m, &images, labels.as_deref(), top, batch, &pre.get(Task::Classify)?, &cache)
        }
        Cmd::Segment { m, image, output, threshold, mean, std, tile, overlap, batch, shard, level, mpp, tissue, no_pipeline, cache, prec } => {
            let m = prec.apply(m)?;
            let tissue = match tissue.as_deref() {
                None => kestrel::slide::is_tiff(&image),
                Some("otsu") => true,
                Some("none") => false,
                Some(other) => return Err(Error::Argument(format!("--tissue {}: otsu or none", other.escape_debug()))),
            };
            if tissue && !kestrel::slide::is_tiff(&image) {
                return Err(Error::Argument("--tissue otsu finds tissue on TIFF slides; other images are run whole".into()));
            }
            let pre = PreArgs { resize: Some(0), crop: Some(0), mean, std }.get(Task::Segment)?;
            // A slide is always streamed: 512² tiles unless told otherwise.
            let tile = tile.or_else(|| kestrel::slide::is_tiff(&image).then_some(512));
            let tiling = tile.map(|tile| kestrel::tile::TileOptions { tile, overlap: overlap.unwrap_or(64.min(tile / 2)), batch, threshold, pre: pre.clone() });
            if (level.is_some() || mpp.is_some()) && !kestrel::slide::is_tiff(&image) {
                return Err(Error::Argument("--level and --mpp select a level of a TIFF input".into()));
            }
            if cache.cache.is_some() && tiling.is_some() {
                return Err(Error::Argument("--cache keeps whole-image results; a streamed (--tile, or TIFF) segmentation is not cached".into()));
            }
            segment_cmd(&m, &image, &output, threshold, &pre, tiling.as_ref(), shard.unwrap_or_default(), (level, mpp), tissue, !no_pipeline, &cache)
        }
        Cmd::Bench(b) => bench_cmd(b),
        Cmd::Eval(e) => eval_cmd(e),
        Cmd::Explain { m, images, method, class, layer, output, pre, cache, prec } => explain_cmd(&prec.apply(m)?, &images, &method, &class, layer.as_deref(), &output, &pre, &cache),
        Cmd::MergeTiles { parts, output } => merge_tiles(&parts, &output),
        Cmd::Cache { action, dir } => {
            if !dir.is_dir() {
                return Err(Error::Argument(format!("{}: no such cache folder", dir.display())));
            }
            let c = kestrel::cache::Cache::open(&dir, u64::MAX)?;
            match action.as_str() {
                "stats" => {
                    let st = c.stats()?;
                    println!("{}: {} entries, {} bytes, {} hits, {} misses", dir.display(), st.entries, st.bytes, st.hits, st.misses);
                }
                "clear" => {
                    c.clear()?;
                    println!("{}: cleared", dir.display());
                }
                other => return Err(Error::Argument(format!("cache {}: stats or clear", other.escape_debug()))),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report { out, models, builtins, threads, iters, warmup } => {
            let opts = kestrel::report::ReportOptions { out, models, builtins, threads, iters, warmup };
            let summary = kestrel::report::run(&opts, &mut |line| eprintln!("report: {line}"))?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Synth { kind, output, count, seed, size, format, levels, compression, glass } => {
            let tiff = match format.as_deref() {
                None => kestrel::slide::is_tiff(&output),
                Some("tiff") => true,
                Some("png") => false,
                Some(other) => return Err(Error::Argument(format!("--format {}: png or tiff", other.escape_debug()))),
            };
            match kind.as_str() {
                "shapes" => kestrel::dataset::synth::write_shapes(&output, seed, count, size)?,
                "blobs" => kestrel::dataset::synth::write_blobs(&output, seed, count, size)?,
                "big-blobs" if tiff => kestrel::dataset::synth::write_big_blobs_tiff(&output, seed, size, levels, kestrel::slide::Compression::parse(&compression)?, glass)?,
                "big-blobs" => kestrel::dataset::synth::write_big_blobs(&output, seed, size)?,
                other => return Err(Error::Argument(format!("synth {other}: use shapes, blobs or big-blobs"))),
            }
            println!("wrote {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Parity(p) => parity(p),
        Cmd::Run(r) => run_cmd(r),
        Cmd::Prune(p) => prune_cmd(p),
        Cmd::Quantize(q) => quantize_cmd(q),
        Cmd::ExportOnnx { m, output } => {
            let model = m.load()?;
            kestrel::onnx::save(&model.graph, &output)?;
            println!("wrote {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert { m, output } => {
            let model = m.load()?;
            match output.extension().and_then(|e| e.to_str()) {
                Some("onnx") => kestrel::onnx::save(&model.graph, &output)?,
                Some("safetensors") => kestrel::convert::write_safetensors(&model.graph, model.config.as_ref(), &output)?,
                _ => return Err(Error::Argument(format!("{}: output must end in .onnx or .safetensors", output.display()))),
            }
            println!("wrote {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

fn quantize_cmd(q: QuantizeArgs) -> Result<ExitCode> {
    use kestrel::qparams::WeightBits;
    use kestrel::quant::{quantize::sensitivity, Method, Mode, QuantizeOptions};
    let model = q.m.load()?;
    let mode = match q.mode.as_str() {
        "static" => Mode::Static,
        "dynamic" => Mode::Dynamic,
        other => return Err(Error::Argument(format!("--mode {other}: use static or dynamic"))),
    };
    let method = Method::parse(&q.method, q.percentile).ok_or_else(|| Error::Argument(format!("--method {}: use minmax, percentile, entropy or mse", q.method)))?;
    let bits = match q.weight_bits.as_str() {
        "8" => WeightBits::Eight,
        "7" => WeightBits::Seven,
        "auto" => kestrel::quant::auto_weight_bits(),
        other => return Err(Error::Argument(format!("--weight-bits {other}: use 8, 7 or auto"))),
    };
    let opts = QuantizeOptions { mode, method, per_channel: !q.per_tensor, weight_bits: Some(bits), exclude: q.exclude.clone(), only: None, f32_residual: q.f32_residual, threads: q.m.threads };
    let shape = model.graph.input_shape(1)?;
    let calib = if mode == Mode::Static || q.sensitivity { kestrel::dataset::calib::from_folder_or_synthetic(q.calib.as_deref(), q.calib_samples, &shape)? } else { vec![] };
    if q.sensitivity {
        let pb = progress_bar(0, "sensitivity");
        let rows = sensitivity(&model.graph, &opts, &calib, &mut |i, n| {
            pb.set_length(n as u64);
            pb.set_position(i as u64);
        })?;
        pb.finish_and_clear();
        println!("{:<40} {:>12} {:>12}", "layer (quantized alone)", "rel L2", "cosine");
        for r in &rows {
            println!("{:<40} {:>12.3e} {:>12.6}", r.node, r.rel_l2, r.cosine);
        }
        let median = rows.get(rows.len() / 2).map_or(0.0, |r| r.rel_l2);
        let suggest: Vec<&str> = rows.iter().filter(|r| r.rel_l2 > 4.0 * median && r.rel_l2 > 1e-3).map(|r| r.node.as_str()).collect();
        if suggest.is_empty() {
            println!("no layer stands out (none above 4x the median error {median:.2e})");
        } else {
            println!("suggested: --exclude {}", suggest.join(","));
        }
        if q.output.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let out = q.output.as_ref().ok_or_else(|| Error::Argument("quantize needs -o OUT.onnx".into()))?;
    let pb = progress_bar(0, "calibrating");
    let g = kestrel::quant::quantize(&model.graph, &opts, &calib, &mut |i, n| {
        pb.set_length(n as u64);
        pb.set_position(i as u64);
    })?;
    pb.finish_and_clear();
    kestrel::onnx::save(&g, out)?;
    use kestrel::graph::Op;
    let qn = g.nodes.iter().filter(|n| n.op.int8().is_some()).count();
    let residuals = g.nodes.iter().filter(|n| matches!(n.op, Op::FakeQuant(_)) && n.name.ends_with(kestrel::quant::quantize::RESIDUAL_QDQ_SUFFIX)).count();
    let residuals = if residuals > 0 { format!(", {residuals} residual inputs quantized") } else { String::new() };
    let before = model.graph.weight_bytes();
    let after = std::fs::metadata(out).map_err(|e| Error::io(out, e))?.len();
    println!(
        "wrote {} ({qn} INT8 layers{residuals}, {:?} {:?}, {}-bit weights; weights {:.1} MB f32 -> file {:.1} MB, {:.1}x smaller)",
        out.display(),
        mode,
        method,
        bits.bits(),
        before as f64 / 1e6,
        after as f64 / 1e6,
        before as f64 / after as f64
    );
    Ok(ExitCode::SUCCESS)
}

fn info(m: &ModelArgs, batch: usize, sparsity: bool) -> Result<ExitCode> {
    let model = m.load()?;
    let g = &model.graph;
    let input = g.input_shape(batch.max(1))?;
    let shapes = shape::infer(g, std::slice::from_ref(&input))?;
    println!("model {}  task {:?}  input {:?}", model.name, model.task, input);
    println!("{:<40} {:<20} {:<22} {:>10}", "layer", "op", "output", "params");
    for n in &g.nodes {
        println!("{:<40} {:<20} {:<22} {:>10}", n.name, n.op.kind(), format!("{:?}", shapes[n.output]), n.op.param_count());
    }
    let params = g.param_count();
    let macs = g.macs(&input)?;
    println!("layers {}  parameters {}  weight bytes {} (f32)  MACs {:.3} G", g.nodes.len(), params, g.weight_bytes(), macs as f64 / 1e9);
    for &o in &g.outputs {
        println!("output {} {:?}", g.values[o], shapes[o]);
    }
    if sparsity {
        print_sparsity(g);
    }
    Ok(ExitCode::SUCCESS)
}

/// `kestrel info SLIDE.tif`: the file's levels.
fn slide_info(path: &Path) -> Result<ExitCode> {
    let levels = kestrel::slide::levels(path)?;
    println!("{}: {} level(s)", path.display(), levels.len());
    println!("{:<6} {:>14} {:>12} {:<12} {:<10} {:>8}", "level", "size", "chunk", "compression", "colour", "µm/px");
    for l in &levels {
        let chunk = format!("{} {}x{}", if l.tiled { "tile" } else { "strip" }, l.chunk[0], l.chunk[1]);
        let mpp = l.mpp.map_or_else(|| "-".to_string(), |m| format!("{m:.3}"));
        println!("{:<6} {:>14} {:>12} {:<12} {:<10} {:>8}", l.index, format!("{}x{}", l.width, l.height), chunk, l.compression, l.color, mpp);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_sparsity(g: &kestrel::Graph) {
    let rows = kestrel::prune::sparse::sparsity(g);
    println!("{:<40} {:<16} {:>10} {:>10} {:>18}", "layer", "op", "weights", "zero", "near-zero channels");
    for r in &rows {
        println!("{:<40} {:<16} {:>10} {:>9.1}% {:>11} of {:<5}", r.node.escape_debug().to_string(), r.op, r.weights, 100.0 * r.zero_fraction, r.near_zero_channels, r.channels);
    }
    let (w, z) = rows.iter().fold((0usize, 0.0f64), |(w, z), r| (w + r.weights, z + r.zero_fraction * r.weights as f64));
    println!("zero weights overall: {:.1}% of {w}. {}", 100.0 * z / w.max(1) as f64, kestrel::prune::sparse::NO_SPEEDUP);
}

#[allow(clippy::too_many_arguments)]
fn classify(m: &ModelArgs, images: &[PathBuf], labels: Option<&Path>, top: usize, batch: usize, pre: &Preprocess, cache: &CacheArgs) -> Result<ExitCode> {
    // Headers first: a huge or unreadable image is refused before the model is loaded.
    for p in images {
        imageio::check_dimensions(p)?;
    }
    let model = m.load()?;
    let session = m.session(&model)?;
    let labels: Option<Vec<String>> = match labels {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?.lines().map(str::to_string).collect()),
        None => None,
    };
    let store = cache.open()?;
    let model_id = if store.is_some() { model_identity(m)? } else { String::new() };
    let options = format!("top {top} labels {:?} {pre:?}", labels.as_ref().map(|l| l.join("\n")));
    for chunk in images.chunks(batch.max(1)) {
        let imgs = chunk.iter().map(|p| imageio::decode(p)).collect::<Result<Vec<_>>>()?;
        // Each image's line, from the cache or (for the misses, batched) from the model.
        let keys: Vec<Option<String>> = imgs.iter().map(|i| store.as_ref().map(|_| image_key("classify", &model_id, i, &options))).collect();
        let mut lines: Vec<Option<String>> = Vec::with_capacity(imgs.len());
        for k in &keys {
            lines.push(match (&store, k) {
                (Some(c), Some(k)) => c.get(k)?.and_then(|b| b.into_iter().find(|(n, _)| n == "line")).map(|(_, d)| String::from_utf8_lossy(&d).into_owned()),
                _ => None,
            });
        }
        let misses: Vec<usize> = (0..imgs.len()).filter(|&i| lines[i].is_none()).collect();
        if !misses.is_empty() {
            let tensors: Vec<Tensor> = misses.iter().map(|&i| imageio::preprocess(&imgs[i], pre)).collect();
            let x = Tensor::concat_batch(&tensors)?;
            let out = session.run(&[x])?.into_iter().next().ok_or(Error::NoOutput)?;
            let probs = kestrel::postprocess::softmax_rows(&out)?;
            let classes = out.shape()[1];
            for ((&i, row), p) in misses.iter().zip(out.data().chunks(classes)).zip(&probs) {
                let best: Vec<String> = topk(row, top.min(classes))
                    .into_iter()
                    .map(|i| {
                        let name = labels.as_ref().and_then(|l| l.get(i)).cloned().unwrap_or_else(|| format!("class {i}"));
                        format!("{name} ({:.3})", p[i])
                    })
                    .collect();
                let line = best.join(", ");
                if let (Some(c), Some(k)) = (&store, &keys[i]) {
                    c.put(k, &[("line", line.as_bytes())])?;
                }
                lines[i] = Some(line);
            }
        }
        for (path, line) in chunk.iter().zip(lines) {
            println!("{}: {}", path.display(), line.unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn explain_cmd(m: &ModelArgs, images: &[PathBuf], method: &str, class: &str, layer: Option<&str>, out: &Path, pre: &PreArgs, cache: &CacheArgs) -> Result<ExitCode> {
    use kestrel::explain::{self, Class, Method};
    let method = match method {
        "cam" => Method::Cam,
        "gradcam" | "grad-cam" => Method::GradCam,
        other => return Err(Error::Argument(format!("--method {}: choose cam or gradcam", other.escape_debug()))),
    };
    let class = match class {
        "top" => Class::Top,
        k => Class::Index(k.parse().map_err(|_| Error::Argument(format!("--class {}: a class index or `top`", k.escape_debug())))?),
    };
    for p in images {
        imageio::check_dimensions(p)?;
    }
    let model = m.load()?;
    if model.task != Task::Classify {
        return Err(Error::Argument(format!("explain needs a classifier; {} is a {:?} model", model.name, model.task)));
    }
    let session = m.session(&model)?;
    // Preprocessed at the model's own input size unless told otherwise.
    let side = model.graph.input_shape(1)?.get(2).copied().unwrap_or(224);
    let pre = PreArgs { resize: pre.resize.or(Some(side)), crop: pre.crop.or(Some(side)), ..pre.clone() }.get(Task::Classify)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let store = cache.open()?;
    let model_id = if store.is_some() { model_identity(m)? } else { String::new() };
    let options = format!("{method:?} {class:?} {layer:?} {:?} {:?} {:?} {:?}", pre.resize, pre.crop, pre.mean, pre.std);
    for path in images {
        let img = imageio::decode(path)?;
        let stem = path.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        let (png, npy) = (out.join(format!("{stem}.cam.png")), out.join(format!("{stem}.cam.npy")));
        let key = store.as_ref().map(|_| image_key("explain", &model_id, &img, &options));
        let hit = match (&store, &key) {
            (Some(c), Some(k)) => c.get(k)?,
            _ => None,
        };
        let blobs = match hit {
            Some(blobs) => blobs,
            None => {
                let x = imageio::preprocess(&img, &pre);
                let e = explain::explain(&session, &x, layer, class, method)?;
                let [h, w] = [x.shape()[2], x.shape()[3]];
                let heat = explain::upsample(&e.map, e.map_hw, [h, w]);
                let rgb: Vec<f32> = x.data().iter().enumerate().map(|(i, v)| v * pre.std[i / (h * w)] + pre.mean[i / (h * w)]).collect();
                let mut png_bytes = Vec::new();
                explain::overlay(&rgb, [h, w], &heat)
                    .write_to(&mut std::io::Cursor::new(&mut png_bytes), image::ImageFormat::Png)
                    .map_err(|e| Error::Image { path: png.clone(), reason: e.to_string() })?;
                let npy_bytes = imageio::npy_bytes(&Tensor::new(vec![h, w], heat)?);
                let (px, py) = explain::peak_pixel(&e, [h, w]);
                let how = if e.backward { "backward pass" } else { "GlobalAveragePool+Linear head: CAM and Grad-CAM coincide, one weighted sum, no backward pass" };
                let line = format!("class {} (logit {:.3}), layer {} map {}x{}, peak at ({}, {}) of {w}x{h} [{how}]", e.class, e.score, e.layer.escape_debug(), e.map_hw[1], e.map_hw[0], px, py);
                let blobs: Vec<(String, Vec<u8>)> = vec![("png".into(), png_bytes), ("npy".into(), npy_bytes), ("line".into(), line.into_bytes())];
                if let (Some(c), Some(k)) = (&store, &key) {
                    c.put(k, &blobs.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect::<Vec<_>>())?;
                }
                blobs
            }
        };
        let blob = |name: &str| blobs.iter().find(|(n, _)| n == name).map(|(_, d)| d.as_slice()).ok_or_else(|| Error::Internal(format!("cache entry without {name}")));
        std::fs::write(&png, blob("png")?).map_err(|e| Error::io(&png, e))?;
        std::fs::write(&npy, blob("npy")?).map_err(|e| Error::io(&npy, e))?;
        println!("{}: {} -> {}", path.display(), String::from_utf8_lossy(blob("line")?), png.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn segment_cmd(
    m: &ModelArgs,
    input: &Path,
    output: &Path,
    threshold: f32,
    pre: &Preprocess,
    tiling: Option<&kestrel::tile::TileOptions>,
    shard: Shard,
    level: (Option<usize>, Option<f64>),
    tissue: bool,
    pipeline: bool,
    cache: &CacheArgs,
) -> Result<ExitCode> {
    // One image decoded whole: its header is checked before the model is loaded.
    if tiling.is_none() && input.is_file() {
        imageio::check_dimensions(input)?;
    }
    let model = m.load()?;
    if let Some(t) = tiling {
        t.check(model.graph.spatial_multiple.unwrap_or(1))?;
    }
    let session = m.session(&model)?;
    // A directory's images are sharded by file; one streamed image by tile rows.
    let slide_shard = (!input.is_dir() && shard.count > 1).then_some(shard);
    if slide_shard.is_some() && tiling.is_none() {
        return Err(Error::Argument("--shard on one image splits it by tile rows: add --tile".into()));
    }
    let jobs: Vec<(PathBuf, PathBuf)> = if input.is_dir() {
        std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
        let files = shard.select(kestrel::dataset::folder::images_in(input)?);
        files.into_iter().map(|f| {
            let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (f, output.join(format!("{name}.png")))
        }).collect()
    } else {
        vec![(input.to_path_buf(), output.to_path_buf())]
    };
    let store = cache.open()?;
    let model_id = if store.is_some() { model_identity(m)? } else { String::new() };
    let pb = (jobs.len() > 1).then(|| progress_bar(jobs.len(), "segmenting"));
    for (src, dst) in &jobs {
        match tiling {
            Some(t) => segment_tiled(&model, &session, src, dst, t, level, tissue, pipeline, slide_shard)?,
            None => segment_one(&model, &session, src, dst, threshold, pre, store.as_ref().map(|c| (c, model_id.as_str())))?,
        }
        if let Some(pb) = &pb {
            pb.inc(1);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
        println!("segmented {} images into {}", jobs.len(), output.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `kestrel merge-tiles`: the shards' rows, in order, streamed into one mask.
fn merge_tiles(parts: &[PathBuf], output: &Path) -> Result<ExitCode> {
    use kestrel::tile::{MaskSink, PngRows, RowSink, RowSource};
    let mut shards = Vec::new();
    for p in parts {
        let side = shard_sidecar(p);
        let text = std::fs::read_to_string(&side).map_err(|e| Error::io(&side, e))?;
        let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Data { path: side.clone(), reason: e.to_string() })?;
        let field = |k: &str| j.get(k).and_then(serde_json::Value::as_u64).map(|v| v as usize).ok_or_else(|| Error::Data { path: side.clone(), reason: format!("no `{k}`") });
        let rows = j.get("rows").and_then(|r| r.as_array()).and_then(|r| Some([r.first()?.as_u64()? as usize, r.get(1)?.as_u64()? as usize])).ok_or_else(|| Error::Data { path: side.clone(), reason: "no `rows`".into() })?;
        shards.push((rows, field("width")?, field("height")?, field("of")?, p.clone()));
    }
    shards.sort_by_key(|s| s.0[0]);
    let (w, h, n) = (shards[0].1, shards[0].2, shards[0].3);
    let mut next = 0;
    for (rows, sw, sh, sn, p) in &shards {
        if (*sw, *sh, *sn) != (w, h, n) {
            return Err(Error::Argument(format!("{}: a shard of a {sw}x{sh} image in {sn}, not {w}x{h} in {n}", p.display())));
        }
        if rows[0] != next {
            return Err(Error::Argument(format!("{}: rows {}..{}, but the rows before end at {next} (a shard missing or given twice)", p.display(), rows[0], rows[1])));
        }
        next = rows[1];
    }
    if next != h || shards.len() != n {
        return Err(Error::Argument(format!("the shards cover rows 0..{next} of {h} in {} of {n} parts", shards.len())));
    }
    let mut sink = MaskSink::create(output, w, h)?;
    let mut rgb = vec![0u8; w * 3];
    let mut vals = vec![0f32; w];
    for (rows, _, _, _, p) in &shards {
        let mut src: Box<dyn RowSource> = if kestrel::slide::is_tiff(p) { Box::new(kestrel::slide::TiffRows::open(p, 0)?) } else { Box::new(PngRows::open(p)?) };
        if src.width() != w || src.height() != rows[1] - rows[0] {
            return Err(Error::Argument(format!("{}: {}x{} pixels, but its record says {w}x{}", p.display(), src.width(), src.height(), rows[1] - rows[0])));
        }
        for _ in rows[0]..rows[1] {
            src.next_row(&mut rgb)?;
            for (v, px) in vals.iter_mut().zip(rgb.chunks_exact(3)) {
                *v = f32::from(px[0]) / 255.0;
            }
            sink.write_row(&vals)?;
        }
    }
    sink.finish()?;
    println!("wrote {} ({w}x{h}) from {} shards", output.display(), shards.len());
    Ok(ExitCode::SUCCESS)
}

/// Where a shard's output records its rows: `OUTPUT.shard.json`.
fn shard_sidecar(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".shard.json");
    PathBuf::from(s)
}

#[allow(clippy::too_many_arguments)]
fn segment_tiled(model: &LoadedModel, session: &Session, image: &Path, output: &Path, t: &kestrel::tile::TileOptions, level: (Option<usize>, Option<f64>), tissue: bool, pipeline: bool, part: Option<Shard>) -> Result<()> {
    use kestrel::tile::{ImageRows, MaskSink, PngRows, Prefetch, RowSink, RowSource};
    let t0 = Instant::now();
    let is_png = image.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    // PNG streams row by row and TIFF band by band; other formats are decoded whole first.
    let decoded;
    let mut map = None;
    let src: Box<dyn RowSource + Send + '_> = if kestrel::slide::is_tiff(image) {
        let levels = kestrel::slide::levels(image)?;
        let l = kestrel::slide::pick_level(image, &levels, level.0, level.1)?;
        if tissue {
            let (rgb, tw, th) = kestrel::slide::thumbnail(image, &levels, l, 1024)?;
            map = Some(kestrel::slide::TissueMap::from_rgb(&rgb, tw, th));
        }
        Box::new(kestrel::slide::TiffRows::open(image, l)?)
    } else if is_png {
        Box::new(PngRows::open(image)?)
    } else {
        decoded = imageio::decode(image)?;
        Box::new(ImageRows::new(&decoded))
    };
    let (w, h) = (src.width(), src.height());
    let mult = model.graph.spatial_multiple.unwrap_or(1);
    // One shard of a slide: the output rows its share of tile-row bands finishes.
    let out_rows = match part {
        Some(p) => kestrel::tile::shard_rows(h, t, mult, p.index, p.count),
        None => [0, h],
    };
    let out_h = out_rows[1] - out_rows[0];
    if out_h == 0 {
        return Err(Error::Argument(format!("--shard {}: the image has too few tile rows for {} shards", part.map_or_else(String::new, |p| p.to_string()), part.map_or(1, |p| p.count))));
    }
    // Masks as tiled TIFF for a .tif output, else PNG; both row by row.
    let mut sink = MaskSink::create(output, w, out_h)?;
    let pb = progress_bar(h, "rows");
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows, {elapsed} (ETA {eta})") {
        pb.set_style(style.progress_chars("=> "));
    }
    let model_s = std::cell::Cell::new(0.0);
    let done_tiles = std::cell::Cell::new(0usize);
    let mut run = |x: &Tensor| {
        let t0 = Instant::now();
        let out = session.run(std::slice::from_ref(x)).and_then(|o| o.into_iter().next().ok_or(Error::NoOutput));
        model_s.set(model_s.get() + t0.elapsed().as_secs_f64());
        done_tiles.set(done_tiles.get() + x.shape()[0]);
        out
    };
    let rows: &mut dyn RowSink = &mut sink;
    // A tile runs when at least 1 % of the thumbnail pixels under it are tissue.
    let glass = map.as_ref().map(|m| move |r: [usize; 4]| !m.covers(r, [w, h], 0.01));
    let skip: Option<&dyn Fn([usize; 4]) -> bool> = glass.as_ref().map(|f| f as &dyn Fn([usize; 4]) -> bool);
    let mut progress = |done: usize, _| {
        pb.set_position(done as u64);
        pb.set_message(format!("{:.1} tiles/s", done_tiles.get() as f64 / t0.elapsed().as_secs_f64().max(1e-9)));
    };
    // Decoding on a thread of its own, overlapped with the forward passes, unless told not to.
    let first = kestrel::tile::first_row_read(h, t, mult, out_rows);
    let stats = if pipeline {
        std::thread::scope(|s| {
            let mut pf = Prefetch::start(s, src, first);
            kestrel::tile::segment_tiled_skipping(&mut run, &mut pf, rows, t, mult, skip, Some(out_rows), &mut progress)
        })?
    } else {
        let mut src = src;
        kestrel::tile::segment_tiled_skipping(&mut run, &mut *src, rows, t, mult, skip, Some(out_rows), &mut progress)?
    };
    sink.finish()?;
    pb.finish_and_clear();
    if let Some(p) = part {
        // The shard's place in the whole, for `kestrel merge-tiles`.
        let side = shard_sidecar(output);
        let json = serde_json::json!({ "shard": p.index, "of": p.count, "rows": out_rows, "width": w, "height": h, "image": image.display().to_string() });
        std::fs::write(&side, serde_json::to_vec_pretty(&json).unwrap_or_default()).map_err(|e| Error::io(&side, e))?;
        println!("shard {p}: rows {}..{} of {h}", out_rows[0], out_rows[1]);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "wrote {} ({}x{}, {} tiles of {}x{}, overlap {}, {:.1} s, {:.1} tiles/s, peak RSS {:.0} MB)",
        output.display(),
        stats.width,
        stats.height,
        stats.tiles,
        stats.tile_w,
        stats.tile_h,
        t.overlap,
        secs,
        (stats.tiles + stats.skipped) as f64 / secs.max(1e-9),
        kestrel::bench::machine::peak_rss_bytes().unwrap_or(0) as f64 / 1e6
    );
    if let Some(m) = &map {
        let per_tile = model_s.get() / stats.tiles.max(1) as f64;
        println!(
            "tissue (Otsu on saturation, threshold {}): {:.1} % of the thumbnail; {} of {} tiles skipped as glass, about {:.1} s of model time saved ({:.1} s spent)",
            m.threshold,
            100.0 * m.fraction(),
            stats.skipped,
            stats.skipped + stats.tiles,
            per_tile * stats.skipped as f64,
            model_s.get()
        );
    }
    Ok(())
}

fn segment_one(model: &LoadedModel, session: &Session, image: &Path, output: &Path, threshold: f32, pre: &Preprocess, cache: Option<(&kestrel::cache::Cache, &str)>) -> Result<()> {
    let img = imageio::decode(image)?;
    let key = cache.map(|(_, id)| image_key("segment", id, &img, &format!("{threshold} {pre:?}")));
    if let (Some((c, _)), Some(k)) = (cache, &key) {
        if let Some(blobs) = c.get(k)? {
            if let Some((_, png)) = blobs.iter().find(|(n, _)| n == "mask") {
                std::fs::write(output, png).map_err(|e| Error::io(output, e))?;
                println!("wrote {} ({}x{})", output.display(), img.height(), img.width());
                return Ok(());
            }
        }
    }
    let x = imageio::to_tensor(&img, pre);
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let mult = model.graph.spatial_multiple.unwrap_or(1).max(1);
    let (ph, pw) = (h.div_ceil(mult) * mult, w.div_ceil(mult) * mult);
    let x = kestrel::postprocess::pad_to_multiple(&x, mult)?;
    let out = match session.run(&[x]) {
        // A whole slide does not fit: say how to stream it.
        Err(e @ Error::MemoryLimit { .. }) => {
            return Err(Error::System(format!("{}: {e}; `--tile 512` streams the image in tiles", image.display())));
        }
        r => r?.into_iter().next().ok_or(Error::NoOutput)?,
    };
    let s = out.shape().to_vec();
    if s.len() != 4 || s[2] != ph || s[3] != pw {
        return Err(Error::OutputShape { expected: format!("a [1, C, {ph}, {pw}] map"), got: s });
    }
    let vals = kestrel::postprocess::mask_image(&out, h, w, threshold)?;
    imageio::write_gray(output, &vals, h, w)?;
    if let (Some((c, _)), Some(k)) = (cache, &key) {
        let png = std::fs::read(output).map_err(|e| Error::io(output, e))?;
        c.put(k, &[("mask", &png)])?;
    }
    println!("wrote {} ({h}x{w})", output.display());
    Ok(())
}

fn parity(p: ParityArgs) -> Result<ExitCode> {
    #[cfg(not(feature = "ort"))]
    {
        let _ = (&p.m, p.input_seed, p.ort_optimization);
        Err(Error::FeatureDisabled { feature: "ort", what: "parity".into() })
    }
    #[cfg(feature = "ort")]
    parity_ort(p)
}

/// The input of `parity` and `run`: a .npy file as is, images preprocessed like `classify`
/// (batched), or seeded random normal values of the model's input shape.
fn model_input(model: &LoadedModel, inputs: &[PathBuf], pre: &Preprocess, batch: usize, seed: u64) -> Result<Tensor> {
    match inputs {
        [] => Ok(Tensor::randn(model.graph.input_shape(batch.max(1))?, 1.0, seed)),
        [one] if is_npy(one) => imageio::read_npy(one),
        many => {
            if let Some(npy) = many.iter().find(|p| is_npy(p)) {
                return Err(Error::Argument(format!("{}: give one .npy input, or images only", npy.display())));
            }
            let tensors = many.iter().map(|p| imageio::decode(p).map(|i| imageio::preprocess(&i, pre))).collect::<Result<Vec<_>>>()?;
            let x = Tensor::concat_batch(&tensors)?;
            let mult = model.graph.spatial_multiple.unwrap_or(1).max(1);
            if mult > 1 {
                kestrel::postprocess::pad_to_multiple(&x, mult)
            } else {
                Ok(x)
            }
        }
    }
}

fn run_cmd(mut r: RunArgs) -> Result<ExitCode> {
    // One .npy input fixes the input shape of an ONNX model with symbolic dims.
    let npy_input = match r.input.as_slice() {
        [p] if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) => Some(imageio::read_npy(p)?),
        _ => None,
    };
    if r.m.input_shape.is_none() {
        r.m.input_shape = npy_input.as_ref().map(|t| t.shape().to_vec());
    }
    let npz = match r.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npz") => true,
        Some("npy") => false,
        _ => return Err(Error::Argument(format!("{}: output must end in .npy or .npz", r.output.display()))),
    };
    let model = r.m.load()?;
    if !npz && model.graph.outputs.len() != 1 {
        return Err(Error::Argument(format!("{} has {} outputs: write them to a .npz file", model.name, model.graph.outputs.len())));
    }
    let x = match npy_input {
        Some(t) => t,
        None => model_input(&model, &r.input, &r.pre.get(model.task)?, r.batch, r.input_seed)?,
    };
    let session = r.prec.apply(r.m.clone())?.session(&model)?;
    let outputs = session.run(std::slice::from_ref(&x))?;
    let names: Vec<String> = model.graph.outputs.iter().map(|&o| model.graph.values[o].clone()).collect();
    if npz {
        let keys = imageio::write_npz(&r.output, &names.iter().cloned().zip(outputs.iter().cloned()).collect::<Vec<_>>())?;
        println!("wrote {} (input {:?})", r.output.display(), x.shape());
        for ((name, key), t) in names.iter().zip(&keys).zip(&outputs) {
            println!("  {key}: output {} {:?}", name.escape_debug(), t.shape());
        }
    } else {
        imageio::write_npy(&r.output, &outputs[0])?;
        println!("wrote {} (input {:?}, output {} {:?})", r.output.display(), x.shape(), names[0].escape_debug(), outputs[0].shape());
    }
    Ok(ExitCode::SUCCESS)
}

fn prune_cmd(a: PruneArgs) -> Result<ExitCode> {
    use kestrel::prune::{self, Importance, PruneOptions, Recovery, RoundTo, Target};
    let model = a.m.load()?;
    let g = &model.graph;
    let threads = if a.m.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { a.m.threads };
    if a.explain {
        print!("{}", prune::Groups::new(g, &a.exclude)?.explain(g));
        if a.output.is_none() && a.sweep.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let shape = g.input_shape(1)?;
    let calib = match (&a.calib, a.calib_samples) {
        (Some(d), _) => kestrel::dataset::calib::from_folder(d, &shape)?,
        (None, Some(n)) => kestrel::dataset::calib::synthetic(n, &shape)?,
        (None, None) => Vec::new(),
    };
    let write = |graph: &kestrel::Graph, out: &Path| -> Result<()> {
        match out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("onnx") => kestrel::onnx::save(graph, out),
            Some("safetensors") => {
                let mut cfg = model.config.clone().ok_or_else(|| Error::Unsupported {
                    what: format!("writing {} as safetensors", model.name),
                    hint: "only native models (built-ins, safetensors) have a config to carry the widths; write .onnx".into(),
                })?;
                let widths = prune::layer_widths(graph);
                match &mut cfg {
                    kestrel::models::ModelConfig::ResNet(c) => c.widths = widths,
                    kestrel::models::ModelConfig::UNet(c) => c.widths = widths,
                }
                kestrel::convert::write_safetensors(graph, Some(&cfg), out)
            }
            _ => Err(Error::Argument(format!("{}: output must end in .onnx or .safetensors", out.display()))),
        }
    };
    if a.unstructured {
        let ratio = a.ratio.ok_or_else(|| Error::Argument("--unstructured needs --ratio".into()))?;
        let z = prune::sparse::zero_smallest(g, ratio)?;
        print_sparsity(&z);
        if let Some(out) = &a.output {
            write(&z, out)?;
            println!("wrote {}", out.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let targets = [a.ratio.map(Target::Ratio), a.target_macs.map(Target::Macs), a.target_params.map(Target::Params), a.target_latency.map(Target::Latency)];
    let given: Vec<Target> = targets.into_iter().flatten().collect();
    let target = match given.as_slice() {
        [t] => *t,
        [] if !a.sweep.is_empty() => Target::Ratio(0.0),
        [] => return Err(Error::Argument("give one of --ratio, --target-macs, --target-params or --target-latency".into())),
        _ => return Err(Error::Argument("give only one of --ratio, --target-macs, --target-params and --target-latency".into())),
    };
    let recovery = Recovery { bias_fold: !a.no_bias_fold, least_squares: !a.no_least_squares, bn_recalibration: !a.no_bn_recalibration };
    let for_int8 = match a.precision.as_str() {
        "f32" => false,
        "int8" => true,
        other => return Err(Error::Argument(format!("--precision {other}: use f32 or int8"))),
    };
    let opts = PruneOptions {
        target,
        global: a.global,
        max_layer_ratio: a.max_layer_ratio,
        sensitivity: a.sensitivity,
        curves: None,
        exclude: a.exclude.clone(),
        importance: Importance::parse(&a.importance, a.importance_seed)?,
        round_to: RoundTo::parse(&a.round_to)?,
        for_int8,
        recovery,
        threads,
    };
    if !a.sweep.is_empty() {
        let data = a.eval.as_ref().ok_or_else(|| Error::Argument("--sweep needs --eval DATA".into()))?;
        let out = a.out.as_ref().ok_or_else(|| Error::Argument("--sweep needs --out DIR".into()))?;
        let pb = progress_bar(0, "sweep");
        let points = kestrel::prune_report::sweep(&model.name, g, &a.sweep, &opts, &calib, data, threads, a.runs, &mut |m| pb.set_message(m.to_string()))?;
        pb.finish_and_clear();
        let md = kestrel::prune_report::sweep_markdown(&points);
        print!("{md}");
        kestrel::bench::output::write(&out.join("sweep.md"), &md)?;
        kestrel::bench::output::write(&out.join("sweep.json"), &kestrel::bench::output::json(&points)?)?;
        let plots = kestrel::prune_report::sweep_svgs(&points, out)?;
        println!("wrote sweep.md, sweep.json and {} plots in {}", plots.len(), out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut measure = |pg: &kestrel::Graph| kestrel::prune_report::kestrel_ms(pg, &calib, threads, a.runs, for_int8);
    let pruned = prune::prune_measured(g, &opts, &calib, Some(&mut measure))?;
    if let Some(out) = &a.output {
        write(&pruned.graph, out)?;
        println!("wrote {}", out.display());
    }
    if a.no_measure && a.eval.is_none() {
        println!(
            "params {} -> {}  MACs {:.3} G -> {:.3} G  ({} of {} groups prunable; widths {})",
            pruned.params_before,
            pruned.params_after,
            pruned.macs_before as f64 / 1e9,
            pruned.macs_after as f64 / 1e9,
            pruned.prunable_groups,
            pruned.widths.len(),
            pruned.rounding
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runs = if a.no_measure { 1 } else { a.runs };
    let report = kestrel::prune_report::report(&model.name, g, pruned, &calib, a.eval.as_deref(), threads, runs)?;
    let md = kestrel::prune_report::markdown(&report);
    print!("{md}");
    if let Some(dir) = &a.out {
        kestrel::bench::output::write(&dir.join("report.md"), &md)?;
        kestrel::bench::output::write(&dir.join("report.json"), &kestrel::bench::output::json(&report)?)?;
        println!("wrote report.md and report.json in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn is_npy(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

#[cfg(feature = "ort")]
fn parity_ort(p: ParityArgs) -> Result<ExitCode> {
    use kestrel::parity::ParityOptions;
    let model = p.m.load()?;
    let mut opts = ParityOptions::for_model(&model.graph, p.m.threads);
    opts.bf16 = p.prec.apply(p.m.clone())?.bf16;
    if opts.bf16 && !model.graph.is_quantized() {
        (opts.tolerance, opts.layer_tolerance) = (kestrel::compare::Tolerance::bf16(), kestrel::compare::Tolerance::bf16());
    }
    opts.optimization = p.ort_optimization;
    opts.per_layer = p.per_layer;
    let t = &mut opts.tolerance;
    t.rel_l2 = p.rel_l2.unwrap_or(t.rel_l2);
    t.min_cosine = p.cosine.unwrap_or(t.min_cosine);
    t.max_abs = p.max_abs.or(t.max_abs);
    t.max_steps = p.max_steps.or(t.max_steps);
    t.min_top1 = p.top1.unwrap_or(t.min_top1);
    if model.graph.is_quantized() {
        opts.layer_tolerance.max_steps = p.max_steps.or(opts.layer_tolerance.max_steps);
    } else {
        opts.layer_tolerance = opts.tolerance.clone();
    }
    let inputs: Vec<PathBuf> = p.input.iter().cloned().collect();
    let pre = PreArgs { resize: None, crop: None, mean: IMAGENET_MEAN.to_vec(), std: IMAGENET_STD.to_vec() }.get(model.task)?;
    let x = model_input(&model, &inputs, &pre, p.batch, p.input_seed)?;
    let r = kestrel::parity::check(&model, &x, &opts)?;
    println!(
        "parity {}  input {:?}  threads {}  ORT {} ({} optimisations)  host {}  kestrel {}",
        r.model, r.input_shape, r.threads, r.ort_version, r.optimization, r.host_isa, r.kestrel_isa
    );
    let ort_label = format!("ORT ({})", r.optimization);
    let line = |what: &str, m: &kestrel::parity::Metrics| {
        println!(
            "    {what:<24} max abs {:.3e}{}  max rel {:.3e}  rel L2 {:.3e}  cosine {:.8}{}{}{}{}",
            m.max_abs,
            if r.quantized { m.quant_step.map_or(String::new(), |s| format!(" ({:.2} output steps)", m.max_abs / s.max(f64::MIN_POSITIVE))) } else { String::new() },
            m.max_rel,
            m.rel_l2,
            m.cosine,
            m.top1.map_or(String::new(), |t| format!("  top-1 {t:.4}")),
            m.top5.map_or(String::new(), |t| format!("  top-5 {t:.4}")),
            m.mask_agreement.map_or(String::new(), |t| format!("  mask agreement {t:.6}")),
            m.iou.map_or(String::new(), |t| format!("  IoU {t:.6}")),
        );
    };
    for o in &r.outputs {
        println!("  output {}:", o.output);
        line(&format!("kestrel vs {ort_label}"), &o.kestrel_vs_ort);
        if let (Some(k), Some(e)) = (&o.kestrel_vs_exact, &o.ort_vs_exact) {
            line("kestrel vs exact QDQ", k);
            line(&format!("{ort_label} vs exact QDQ"), e);
        }
        let against = if r.quantized { "the exact QDQ semantics" } else { ort_label.as_str() };
        match &o.violation {
            Some(v) => println!("  FAIL against {against}: {v}"),
            None => println!("  PASS against {against}"),
        }
    }
    if let Some(d) = &r.ort_drift {
        println!("  {d}");
    }
    let against = if r.quantized { "against the exact QDQ semantics" } else { "against ORT" };
    if p.per_layer {
        println!("  per-layer ({against}): {} layers compared", r.layers.len());
        for l in &r.layers {
            println!(
                "    {:<40} {:<18} alone: rel L2 {:.3e} max abs {:.3e} | cumulative: rel L2 {:.3e}{}",
                l.node.escape_debug().to_string(),
                l.op,
                l.isolated.rel_l2,
                l.isolated.max_abs,
                l.metrics.rel_l2,
                if l.within { "" } else { "  <-- out of tolerance" }
            );
        }
    }
    if !r.layers.is_empty() {
        match r.layers.iter().find(|l| !l.within) {
            Some(l) => println!("  first diverging layer ({against}): {} ({}), output {:?}", l.node.escape_debug(), l.op, l.value),
            None if r.quantized => println!("  every layer alone within {} output step(s) of the exact QDQ semantics ({} layers)", r.layer_tolerance.max_steps.unwrap_or(1.0), r.layers.len()),
            None => println!("  every layer within tolerance ({} layers)", r.layers.len()),
        }
    }
    println!("  verdict ({against}): {}", if r.passed { "PASS" } else { "FAIL" });
    if p.time > 0 {
        let (a, b) = kestrel::parity::time_engines(&model, &x, r.threads, r.optimization, p.time)?;
        println!("  latency (median of {} each, same input and threads): kestrel {a:.2} ms  {ort_label} {b:.2} ms  kestrel/ORT {:.2}x", p.time, a / b);
    }
    if let Some(j) = &p.json {
        kestrel::bench::output::write(j, &kestrel::bench::output::json(&r)?)?;
    }
    Ok(if r.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A size with an optional K/M/G/T suffix (powers of 1024), for option `what`.
fn parse_size(s: &str, what: &str) -> Result<u64> {
    kestrel::exec::plan::parse_bytes(s)
        .map(|b| b as u64)
        .ok_or_else(|| Error::Argument(format!("{what} {}: expected a positive size in bytes, e.g. 2G, 512M or 1000000", s.escape_debug())))
}

fn bench_cmd(b: BenchArgs) -> Result<ExitCode> {
    use kestrel::bench::{self, BenchOptions, Kind};
    let variants = Kind::parse_list(&b.variants)?;
    let batches = if b.batch.trim() == "auto" {
        bench::batch::auto_batches(b.max_batch)
    } else {
        let mut v: Vec<usize> = b
            .batch
            .split(',')
            .map(|x| x.trim().parse().map_err(|_| Error::Argument(format!("--batch {}: expected sizes like 1,2,4 or auto", b.batch))))
            .collect::<Result<_>>()?;
        v.sort_unstable();
        v.dedup();
        v
    };
    let memory_limit = b.memory_limit.as_deref().map(|s| parse_size(s, "--memory-limit")).transpose()?;
    let scaling: Vec<usize> = match &b.scaling {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|x| x.trim().parse().map_err(|_| Error::Argument(format!("--scaling {}: expected thread counts like 1,2 (0: every core)", list.escape_debug()))))
            .collect::<Result<_>>()?,
    };
    let t = Instant::now();
    let model = b.m.load()?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let opts = BenchOptions {
        variants,
        batches,
        threads: b.m.threads,
        scaling,
        warmup: b.warmup,
        iters: b.iters.max(1),
        seconds: b.seconds,
        memory_limit,
        p99_budget_ms: b.p99_budget,
        per_layer: b.per_layer,
        ..BenchOptions::default()
    };
    let pb = progress_bar(0, "bench");
    let report = bench::run(&model, load_ms, &opts, &mut |done: u64, total: u64, msg: &str| {
        pb.set_length(total);
        pb.set_position(done);
        pb.set_message(msg.to_string());
    })?;
    pb.finish_and_clear();
    print!("{}", bench::output::table(&report));
    if let Some(dir) = &b.out {
        bench::output::write(&dir.join("bench.json"), &bench::output::json(&report)?)?;
        bench::output::write(&dir.join("bench.csv"), &bench::output::csv(&report))?;
        bench::output::write(&dir.join("bench.md"), &bench::output::markdown(&report))?;
        let layers = bench::output::layers_csv(&report);
        if let Some(csv) = &layers {
            bench::output::write(&dir.join("layers.csv"), csv)?;
        }
        let plots = bench::plot::write_all(&report, dir, "")?;
        println!("wrote bench.json, bench.csv, {}bench.md and {} plots in {}", if layers.is_some() { "layers.csv, " } else { "" }, plots.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_cmd(e: EvalArgs) -> Result<ExitCode> {
    use kestrel::engine::Kind;
    let variants = Kind::parse_list(&e.variants)?;
    let model = e.m.load()?;
    let shard = e.shard.unwrap_or_default();
    let shape = model.graph.input_shape(1)?;
    let needs_calib = variants.iter().any(|k| matches!(k, Kind::Int8Static | Kind::OrtInt8));
    let calib = if !needs_calib {
        Vec::new()
    } else if let Some(dir) = &e.calib {
        kestrel::dataset::calib::from_folder(dir, &shape)?
    } else {
        // Items of the data (this shard), preprocessed like the evaluation itself.
        kestrel::dataset::calib::from_dataset(&e.data, shard, e.calib_samples, &shape)?
    };
    let pb = progress_bar(0, "eval");
    let opts = kestrel::eval::EvalOptions { variants: &variants, threads: e.m.threads, batch: e.batch, threshold: e.threshold, shard, calib: &calib };
    let report = kestrel::eval::run_variants(&model, &e.data, &opts, &mut |done, total, name| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(name.to_string());
    })?;
    pb.finish_and_clear();
    let md = kestrel::eval::markdown(&report);
    println!("{md}");
    if let Some(dir) = &e.out {
        kestrel::bench::output::write(&dir.join("eval.md"), &md)?;
        kestrel::bench::output::write(&dir.join("eval.json"), &kestrel::bench::output::json(&report)?)?;
        println!("wrote eval.json and eval.md in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
