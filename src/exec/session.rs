//! [`Session`]: a prepared graph that many threads can run at once.
//!
//! The prepared graph and every plan are immutable once built. A call finds (or builds, once)
//! the plan for its input shapes, takes a set of [`Buffers`] from the session's pool (grown to
//! the plan, or new), runs on a worker pool of its own, and gives both back. Concurrent calls
//! therefore never wait for each other, and each computes exactly what it would alone:
//! kernels split work by the session's thread count, not by who else is running. A batch
//! runs whole, in slices of samples ([`BATCH_BYTES`]), or, where a two-worker call's workers
//! share no cache or hand lines over slowly (`cpu::placement::split_batches`), half on each
//! worker ([`Session::run_by_workers`]): the same values.
//!
//! **Threads.** A session built with `threads = T` runs each call on `T` workers. Calls in
//! flight at the same time each get their own `T` workers (rayon pools kept and reused, one
//! per concurrent call), so `N` concurrent callers use `N · T` threads. Choose:
//! - one caller at a time wanting the lowest latency: `T` = the cores;
//! - `N` concurrent callers wanting throughput (a server, a batch pipeline): `T` = cores / `N`,
//!   usually 1. Single-thread calls avoid the fork-join overhead of small layers and scale
//!   with the callers up to the cores.
//!
//! Mixing (`T` = cores with several callers) oversubscribes the cores: calls still proceed
//! concurrently, a small call is not queued behind a big one, but they share the cores.
//!
//! The calling thread is one of the `T` workers: a thread in no rayon pool gets a pool of its
//! own on its first call (`T − 1` more workers, kept for the thread's life) and the call runs
//! on it with no hand-off, which on a small model costs more than the forward pass (70–90 µs
//! to wake a sleeping worker and be woken back on a 2-vCPU VM). Rayon work the thread starts
//! later, outside kestrel, runs on that pool too. A thread already in a rayon pool, or calling
//! with a different `T` than its pool has, hands the call to a pool the session keeps
//! ([`Session::handed_over_pools`]), from a worker of another rayon pool through a helper
//! thread that blocks (rayon's hand-off from a worker would run that pool's other jobs while
//! it waits, nesting calls until the stack overflows); a one-thread session (`T` = 1) never
//! hands a call over: it runs on the calling thread, every loop kept there
//! ([`crate::cpu::parallel::alone`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};

use super::node::{self, ValueMut, ValueRef};
use super::plan::{Buffers, Plan};
use super::prepare::{DType, Options, Prepared, Step};
use crate::cpu::parallel::{alone, is_alone, Spinner};
use crate::cpu::codec::dequantize_slice;
use crate::cpu::kernels::Kernels;
use crate::cpu::qconv::Ranges;
use crate::error::{Error, Result};
use crate::graph::{shape, ActQuant, Graph, Node, Op, ValueId};
use crate::tensor::Tensor;

/// A plan for one call's input shapes (its buffers are the session's: [`Session::with_buffers`]).
#[derive(Debug)]
struct Planned {
    plan: Plan,
    /// Calls with the two workers apart: one worker or two, chosen by their times ([`Apart`]).
    apart: Apart,
}

impl Planned {
    fn new(plan: Plan) -> Planned {
        Planned { plan, apart: Apart::default() }
    }
}

/// How calls of one plan run while the session's two workers share no cache
/// ([`crate::cpu::placement::far`]): on both workers, or on the calling thread alone, whichever
/// took less time in the plan's recent calls of each kind. Apart, each parallel layer reads
/// what the other core wrote at a third of the speed of one cache, and on small inputs with
/// many narrow layers that costs more than the second worker saves: on the 2-vCPU Zen 4 guest
/// (its vCPUs on two CCDs, batch 1, p50 of 60–400 calls) the trained blobs-unet on 64² to 96²
/// inputs (37–83 M multiply-adds) took 1.36–1.39× the time of one thread on two, and
/// shapes-resnet18 on 64² to 128² inputs 1.19–1.40×, while ResNet-18 on 32² inputs (38 M,
/// most of them in wide layers on tiny maps) took 0.87×. Which side of the line a plan falls on
/// is measured rather than guessed: each kind is timed, a moving average of each is kept, and
/// every [`Apart::EXPLORE`]th call runs the slower kind again in case it has changed (every
/// fourth of that where it took over 1.5× the time). Plans of up to [`Apart::MAX_MACS`] only: on
/// larger ones two workers win apart too (ResNet-50: 39 against 66 ms), and a call on one
/// worker now and then would cost more than it could find.
#[derive(Debug, Default)]
struct Apart {
    /// Moving averages of the call time in ns: `[one worker, two]` (0: not timed yet).
    ns: [std::sync::atomic::AtomicU64; 2],
    calls: std::sync::atomic::AtomicU64,
}

impl Apart {
    /// Every this many calls apart, the kind not chosen runs once.
    const EXPLORE: u64 = 16;
    /// Multiply-adds per call up to which a plan's calls apart choose.
    const MAX_MACS: u64 = 256 << 20;

    /// How many workers this call takes (1 or 2) apart.
    fn workers(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.calls.fetch_add(1, Relaxed);
        let [one, two] = [self.ns[0].load(Relaxed), self.ns[1].load(Relaxed)];
        let best = match (one, two) {
            (0, _) => 1,
            (_, 0) => 2,
            _ if one <= two => 1,
            _ => 2,
        };
        let every = if one.max(two).saturating_mul(2) > one.min(two).saturating_mul(3) { 4 * Self::EXPLORE } else { Self::EXPLORE };
        if n % every == every - 1 { 3 - best } else { best }
    }

    /// Counts a call of `workers` workers that took `ns` into its kind's average.
    fn record(&self, workers: usize, ns: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let slot = &self.ns[usize::from(workers == 2)];
        let old = slot.load(Relaxed);
        // Down by half the difference, up by a quarter: a slow call (a first one growing its
        // buffers, a preempted one) weighs less than a fast one.
        let avg = match old {
            0 => ns,
            _ if ns < old => (old + ns) / 2,
            _ => (3 * old + ns) / 4,
        };
        slot.store(avg.max(1), Relaxed);
    }
}

/// The nodes of a batch that run whole after its slices ([`Session::run_split`]): from node
/// `from` on, fed the value `value`, on their own plan.
#[derive(Debug)]
struct Tail {
    from: usize,
    value: ValueId,
    planned: Planned,
}

/// Cached per call's input shapes (one `Vec` per input).
type ByShapes<T> = RwLock<HashMap<Vec<Vec<usize>>, T>>;

/// A graph prepared for repeated inference, shared by any number of threads.
pub struct Session {
    prepared: Prepared,
    threads: usize,
    /// Whether a large batch may run in slices of samples ([`batch_separable`]).
    separable: bool,
    plans: ByShapes<Arc<Planned>>,
    /// Per whole-batch input shapes that run in slices: the tail that runs whole, if any.
    tails: ByShapes<Option<Arc<Tail>>>,
    pools: Mutex<Vec<rayon::ThreadPool>>,
    /// Buffer sets no call holds now, whichever plans they were last fitted to.
    idle: Mutex<Vec<Buffers>>,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Session>();
};

/// Locks `m`, recovering the data if a panicking call poisoned it: the pools and idle lists
/// hold nothing a panic could leave half-written.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    /// Prepares `graph` for the CPU ([`Prepared::new`]).
    pub fn new(graph: Graph, opts: &Options) -> Result<Self> {
        if graph.outputs.is_empty() {
            return Err(Error::NoOutput);
        }
        if opts.threads > super::MAX_THREADS {
            return Err(Error::Argument(format!("{} worker threads: at most {} (0: one per core)", opts.threads, super::MAX_THREADS)));
        }
        let prepared = Prepared::new(graph, opts)?;
        let threads = if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
        let separable = batch_separable(&prepared.graph);
        Ok(Session { prepared, threads, separable, plans: RwLock::new(HashMap::new()), tails: RwLock::new(HashMap::new()), pools: Mutex::new(Vec::new()), idle: Mutex::new(Vec::new()) })
    }

    /// The graph as executed (after the passes and the prepare stage's hand-offs).
    pub fn graph(&self) -> &Graph {
        &self.prepared.graph
    }

    /// The lowered graph: kernels, steps and value types.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// Worker threads of each call.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Idle worker pools this session started for calls it could not run on their calling
    /// thread's own pool (a thread keeps one pool for life, of the thread count of the first
    /// session it called): each such call is handed over to a pool thread and back. Stays 0
    /// where every call comes from a thread of its own, and for a one-thread session, which
    /// runs on any calling thread.
    pub fn handed_over_pools(&self) -> usize {
        lock(&self.pools).len()
    }

    /// Runs the graph and returns its outputs. Safe to call from many threads at once.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_planned(inputs, None)
    }

    /// Runs the graph as [`Session::run`] does, adding each node's wall time in seconds to
    /// `node_seconds` (indexed like `self.graph().nodes`; resized to fit).
    pub fn run_profiled(&self, inputs: &[Tensor], node_seconds: &mut Vec<f64>) -> Result<Vec<Tensor>> {
        node_seconds.resize(self.prepared.graph.nodes.len(), 0.0);
        self.run_planned(inputs, Some(node_seconds))
    }

    /// The plan for these input shapes, built once.
    fn planned_for(&self, key: Vec<Vec<usize>>) -> Result<Arc<Planned>> {
        if let Some(p) = self.plans.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(p));
        }
        let plan = Plan::new(&self.prepared, &key, self.threads)?;
        let mut plans = self.plans.write().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::clone(plans.entry(key).or_insert_with(|| Arc::new(Planned::new(plan)))))
    }

    /// Each node's kernel and instruction path at these input shapes, for per-layer reports
    /// (a conv cropped to its live taps says so: `… taps 1x1 of 3x3`).
    pub fn kernel_labels(&self, input_shapes: &[Vec<usize>]) -> Result<Vec<String>> {
        let planned = self.planned_for(input_shapes.to_vec())?;
        let p = &self.prepared;
        Ok((0..p.graph.nodes.len())
            .map(|k| {
                let (n, step) = planned.plan.step(p, k);
                let mut label = step.kernel(&p.kernels);
                // The FP32 conv of a batch with at most 4 output pixels (`cpu::sconv`).
                if let (Step::SConv(_) | Step::BFma(_), &[b, c, h, w]) = (step, planned.plan.shapes[n.output].as_slice()) {
                    if crate::cpu::sconv::is_narrow([b, c, h, w]) {
                        label.push_str(" narrow");
                    }
                }
                // An INT8 1×1 conv of a batch of small maps, run as one GEMM, and a conv onto
                // maps of a few pixels, its columns gathered from the input without planes
                // (`cpu::qconv`).
                if let (Step::QConv(pw), Op::Conv(c), Some(&[b, ch, h, w]), Some(&[.., oh, ow])) = (step, &n.op, n.inputs.first().map(|&x| planned.plan.shapes[x].as_slice()), Some(planned.plan.shapes[n.output].as_slice())) {
                    if crate::cpu::qconv::batches_columns(c, [b, ch, h, w]) {
                        label.push_str(", batch as one GEMM");
                    } else if pw.first().is_some_and(|w| crate::cpu::qconv::gathers_columns(c, p.kernels.qgemm.for_packing(w.packing()), [oh, ow])) {
                        label = label.replace(", quad planes", "") + ", columns gathered";
                    }
                }
                match (&n.op, &p.graph.nodes[k].op) {
                    (Op::Conv(small), Op::Conv(full)) if small.kernel() != full.kernel() => {
                        let ([a, b], [c, d]) = (small.kernel(), full.kernel());
                        format!("{label}, taps {a}x{b} of {c}x{d}")
                    }
                    _ => label,
                }
            })
            .collect())
    }

    /// A worker pool of `threads` workers no other call is using.
    fn take_pool(&self) -> Result<rayon::ThreadPool> {
        if let Some(p) = lock(&self.pools).pop() {
            return Ok(p);
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("kestrel-{i}"))
            .build()
            .map_err(|e| Error::System(format!("cannot start {} worker threads: {e}", self.threads)))
    }

    /// Runs `f` on `threads` workers: on this thread's own pool when it has one of that size or
    /// can build one (the calling thread is then worker 0 and `f` runs on it, with no hand-off
    /// to another thread: on a small model that hand-off, a sleep and a wake-up, costs more
    /// than the whole forward pass), else on a pool taken from the session's idle list; a
    /// one-thread session on the calling thread all the same, its loops kept there
    /// ([`alone`]), where the thread's own pool has other workers (an application calling a
    /// small model on one thread and a large one on two, or `bench --scaling 2,1`: the
    /// hand-off took shapes-resnet18's 0.08 ms call to 0.17–0.20 ms on Zen 4) or the thread is
    /// a worker of another rayon pool.
    fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        if let Some(own) = own_pool(self.threads) {
            return Ok(own.install(f));
        }
        if self.threads == 1 {
            return Ok(alone(f));
        }
        let handed = || -> Result<R> {
            let pool = self.take_pool()?;
            let out = pool.install(f);
            lock(&self.pools).push(pool);
            Ok(out)
        };
        if rayon::current_thread_index().is_none() {
            return handed();
        }
        // A worker of another rayon pool (an application's `par_iter` calling the session):
        // rayon's `install` from there waits by running that pool's other jobs, which call
        // the session again, nested, until the stack overflows (4000 calls of a two-thread
        // shapes-resnet18 from `into_par_iter` aborted so). A thread of no pool blocks instead.
        std::thread::scope(|s| {
            let helper = std::thread::Builder::new().name("kestrel-call".into()).spawn_scoped(s, handed).map_err(|e| Error::System(format!("cannot start a thread for a call from a rayon worker: {e}")))?;
            helper.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn run_planned(&self, inputs: &[Tensor], node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
        self.check_inputs(inputs)?;
        let batch = Batch::of(inputs);
        if node_seconds.is_none() {
            if let Some(per) = self.per_worker(&batch.shapes) {
                return self.run_by_workers(&batch, per);
            }
        }
        self.run_batch(&batch, node_seconds)
    }

    /// Runs `batch` whole, in slices, or in slices with a whole tail ([`Session::chunk`]).
    fn run_batch(&self, batch: &Batch, mut node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
        let Some(chunk) = self.chunk(&batch.shapes)? else { return self.run_whole(batch, node_seconds) };
        if let Some(tail) = self.tail_for(&batch.shapes)? {
            return self.run_split(batch, chunk, &tail, node_seconds);
        }
        // The batch in slices of `chunk` samples, outputs joined along dim 0.
        let n = batch.n();
        let mut joined = Joined::default();
        let g = &self.prepared.graph;
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            let slice = batch.samples(start, len);
            let planned = self.planned_for(slice.shapes.clone())?;
            joined.push(self.run_nodes(&planned, &slice.feed(g), 0..g.nodes.len(), &g.outputs, node_seconds.as_deref_mut(), |_| Ok(()))?, len, n);
        }
        joined.finish()
    }

    /// The samples of a call of these input shapes that may run apart (in slices, or on each
    /// worker): at least 2, the same in every input's dim 0, of a graph that computes each
    /// sample on its own ([`batch_separable`]).
    fn separable_samples(&self, shapes: &[Vec<usize>]) -> Option<usize> {
        let n = shapes.first().and_then(|s| s.first().copied()).unwrap_or(0);
        (self.separable && n >= 2 && shapes.iter().all(|s| s.first() == Some(&n))).then_some(n)
    }

    /// Samples each of the two workers runs on its own in a call of these input shapes now
    /// ([`Session::run_by_workers`]): half the batch, rounded down, where a two-worker
    /// session's workers split batches ([`crate::cpu::placement::split_batches`]: they share no
    /// cache, or hand lines over slowly on Intel) and its graph computes each sample on its
    /// own; `None` otherwise (and inside a worker's own run, and for a call
    /// too small to run on both workers at all: [`super::plan::CALL_PAR_MIN_MACS`]).
    pub fn per_worker(&self, shapes: &[Vec<usize>]) -> Option<usize> {
        let n = self.separable_samples(shapes)?;
        if self.threads != 2 || is_alone() || !crate::cpu::placement::split_batches(2) {
            return None;
        }
        // The whole batch's plan (shapes and flags only; buffers are taken per run) says
        // whether the call is large enough to wake the other worker; a batch too large to plan
        // whole is.
        let parallel = self.planned_for(shapes.to_vec()).map_or(true, |p| p.plan.parallel);
        parallel.then_some(n / 2)
    }

    /// A batch of a session whose two workers share no cache: each worker runs `per` samples
    /// of its own on its own core, the two at once (each as a one-worker call runs them: in
    /// slices through its own caches), so that no layer reads what the other core wrote; the
    /// sample left over, if any, runs after on both. On the 2-vCPU Zen 4 guest apart, against
    /// the plan of workers together, alternating call by call: the blobs UNet's four 256² tiles
    /// 0.56–0.58 (25 ms against 44; a whole batch without slices took 36), ResNet-50 at
    /// batch 8 f32 0.84, INT8 0.885. Together it took 1.08–1.15 (UNet) and is not taken. On
    /// the Intel model-207 guest's mesh (one L3, lines handed over as slowly as between CCDs)
    /// it paid too: shapes-resnet18 at batch 64 0.74–0.77, the UNet tiles 0.98–1.0.
    fn run_by_workers(&self, batch: &Batch, per: usize) -> Result<Vec<Tensor>> {
        let n = batch.n();
        let (a, b) = (batch.samples(0, per), batch.samples(per, per));
        let (ra, rb) = self.in_pool(|| {
            // The placement probe runs on spinning workers ([`crate::cpu::placement::observe`]).
            let awake = Spinner::start(self.threads);
            crate::cpu::placement::observe(self.threads, awake.is_some());
            drop(awake);
            rayon::join(|| alone(|| self.run_batch(&a, None)), || alone(|| self.run_batch(&b, None)))
        })?;
        let mut joined = Joined::default();
        joined.push(ra?, per, n);
        joined.push(rb?, per, n);
        if 2 * per < n {
            joined.push(self.run_batch(&batch.samples(2 * per, n - 2 * per), None)?, n - 2 * per, n);
        }
        joined.finish()
    }

    /// The samples per slice when this call's batch runs in slices: when the graph computes
    /// each sample on its own ([`Session::new`] checks) and the whole batch's activations
    /// would exceed [`batch_bytes`]; `None` to run it whole.
    fn chunk(&self, shapes: &[Vec<usize>]) -> Result<Option<usize>> {
        self.chunk_under(shapes, batch_bytes())
    }

    /// [`Session::chunk`] with `limit` bytes of activations in place of [`batch_bytes`].
    fn chunk_under(&self, shapes: &[Vec<usize>], limit: usize) -> Result<Option<usize>> {
        let Some(n) = self.separable_samples(shapes) else { return Ok(None) };
        // Bytes per sample, as the plans of 1 and 2 samples differ (scratch sized per worker,
        // not per sample, is the fixed part).
        let at = |b: usize| -> Result<usize> {
            let s: Vec<Vec<usize>> = shapes.iter().map(|s| [&[b][..], &s[1..]].concat()).collect();
            Ok(self.planned_for(s)?.plan.activation_bytes())
        };
        let (one, two) = (at(1)?, at(2)?);
        let per_sample = two.saturating_sub(one).max(1);
        let fixed = one.saturating_sub(per_sample);
        if fixed + n.saturating_mul(per_sample) <= limit {
            return Ok(None);
        }
        let chunk = (limit.saturating_sub(fixed) / per_sample).clamp(1, n);
        Ok((chunk < n).then_some(chunk))
    }

    fn run_whole(&self, batch: &Batch, node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
        let planned = self.planned_for(batch.shapes.clone())?;
        let g = &self.prepared.graph;
        self.run_nodes(&planned, &batch.feed(g), 0..g.nodes.len(), &g.outputs, node_seconds, |_| Ok(()))
    }

    /// Runs nodes `nodes` on `planned`'s buffers (see [`execute`]), `prefill` writing into
    /// them first (the buffers and the plan).
    fn run_nodes(&self, planned: &Planned, feed: &[(ValueId, &[f32])], nodes: std::ops::Range<usize>, wanted: &[ValueId], node_seconds: Option<&mut [f64]>, prefill: impl FnOnce(&mut Buffers) -> Result<()>) -> Result<Vec<Tensor>> {
        self.with_buffers(planned, |this, bufs| prefill(bufs).and_then(|()| this.execute_in(planned, bufs, feed, nodes, wanted, node_seconds)))
    }

    /// `f(self, buffers)` with the largest of the session's idle buffer sets (or a new one),
    /// grown to `planned`'s ([`Buffers::fit`]) and given back afterwards. The sets are the
    /// session's, not each plan's: a run of batches of 4, 3, 2 and 1 images (a slide's last
    /// tiles of a band) holds one set the size of batch 4's, not four (the tiled segmentation
    /// of a 6000² slide with whole batches of four 256² tiles: 199 MB peak RSS with a set per
    /// plan, 138 MB with the session's).
    fn with_buffers<R>(&self, planned: &Planned, f: impl FnOnce(&Self, &mut Buffers) -> Result<R>) -> Result<R> {
        let taken = {
            let mut idle = lock(&self.idle);
            let largest = (0..idle.len()).max_by_key(|&i| idle[i].bytes());
            largest.map(|i| idle.swap_remove(i))
        };
        let mut bufs = match taken {
            Some(mut b) => {
                b.fit(&planned.plan);
                b
            }
            None => Buffers::new(&planned.plan, self.prepared.graph.values.len()),
        };
        let out = f(self, &mut bufs);
        lock(&self.idle).push(bufs);
        out
    }

    /// Runs `nodes` of `planned` on `bufs` in the session's pool.
    fn execute_in(&self, planned: &Planned, bufs: &mut Buffers, feed: &[(ValueId, &[f32])], nodes: std::ops::Range<usize>, wanted: &[ValueId], node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
        if is_alone() {
            // A worker's own samples ([`Session::run_by_workers`]): on this thread alone.
            return execute(&self.prepared, &planned.plan, bufs, feed, nodes, wanted, 1, node_seconds);
        }
        let threads = if planned.plan.parallel { self.threads } else { 1 };
        // Two workers apart: one or two by their times ([`Apart`]); not while profiling (whose
        // calls keep the plan of workers sharing each layer), nor when the placement is due to
        // be probed again (which takes two).
        let apart = threads == 2 && planned.plan.macs <= Apart::MAX_MACS && node_seconds.is_none() && crate::cpu::placement::far(2) && !crate::cpu::placement::probe_due();
        let threads = if apart { planned.apart.workers() } else { threads };
        let start = apart.then(std::time::Instant::now);
        let out = self.in_pool(|| {
            let awake = Spinner::start(threads);
            crate::cpu::placement::observe(threads, awake.is_some());
            execute(&self.prepared, &planned.plan, bufs, feed, nodes, wanted, threads, node_seconds)
        })?;
        if let Some(start) = start {
            planned.apart.record(threads, u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        out
    }

    /// The tail of a batch of these input shapes that runs whole after its slices
    /// ([`split_point`]), its plan built once; `None` where there is none, or where the whole
    /// batch's shapes or plan are refused (the memory limit, values past the size limit): the
    /// batch then runs in slices throughout, as it would without tails.
    fn tail_for(&self, shapes: &[Vec<usize>]) -> Result<Option<Arc<Tail>>> {
        if let Some(t) = self.tails.read().unwrap_or_else(|e| e.into_inner()).get(shapes) {
            return Ok(t.clone());
        }
        let split = shape::infer(&self.prepared.graph, shapes).ok().and_then(|all| split_point(&self.prepared, &all));
        let tail = split.and_then(|(from, value)| {
            let plan = Plan::new_from(&self.prepared, shapes, self.threads, Some((from, value))).ok()?;
            Some(Arc::new(Tail { from, value, planned: Planned::new(plan) }))
        });
        let mut tails = self.tails.write().unwrap_or_else(|e| e.into_inner());
        Ok(tails.entry(shapes.to_vec()).or_insert(tail).clone())
    }

    /// The node from which a batch of these input shapes runs whole after running in slices
    /// up to it ([`split_point`]); `None` when it runs whole, or in slices throughout.
    pub fn batch_split(&self, input_shapes: &[Vec<usize>]) -> Result<Option<usize>> {
        if self.chunk(input_shapes)?.is_none() {
            return Ok(None);
        }
        Ok(self.tail_for(input_shapes)?.map(|t| t.from))
    }

    /// A batch that runs in slices of `chunk` samples, from node `k` on as a whole
    /// ([`split_point`]): the slices run nodes `0..k`, each writing its samples of the one
    /// value `v` that crosses into the whole batch's buffers, which then run the rest.
    fn run_split(&self, batch: &Batch, chunk: usize, tail: &Tail, mut node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
        let g = &self.prepared.graph;
        let (k, v, whole) = (tail.from, tail.value, &tail.planned);
        let n = batch.n();
        let per = whole.plan.numel(v) / n.max(1);
        let slot = |plan: &Plan| plan.slot_of[v].ok_or_else(|| Error::Internal(format!("value '{}' has no buffer", g.values[v].escape_debug())));
        let wslot = slot(&whole.plan)?;
        // Each slice reads its samples of the inputs in place and writes its samples of `v`
        // straight into the whole batch's buffer: no slice of the inputs, no tensor of `v`
        // (ResNet-50 at batch 8: 2.2 MB a picture copied less, two allocations fewer; new / old
        // alternating call by call 0.994–0.998 of the time on Zen 4).
        self.with_buffers(whole, |this, wbufs| {
            let dst = wbufs.slots[wslot].f32_mut(n * per);
            for start in (0..n).step_by(chunk) {
                let len = chunk.min(n - start);
                let slice = batch.samples(start, len);
                let planned = this.planned_for(slice.shapes.clone())?;
                let vslot = slot(&planned.plan)?;
                this.with_buffers(&planned, |this, bufs| {
                    this.execute_in(&planned, bufs, &slice.feed(g), 0..k, &[], node_seconds.as_deref_mut())?;
                    dst[start * per..(start + len) * per].copy_from_slice(bufs.slots[vslot].f32(len * per));
                    Ok(())
                })?;
            }
            this.execute_in(whole, wbufs, &[], k..g.nodes.len(), &g.outputs, node_seconds)
        })
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        let g = &self.prepared.graph;
        if inputs.len() != g.inputs.len() {
            return Err(Error::InputShape { name: "inputs".into(), expected: format!("{} input tensor(s)", g.inputs.len()), got: vec![inputs.len()] });
        }
        Ok(())
    }

    /// Runs the graph keeping every intermediate value (for per-layer comparisons). Entry `i`
    /// is the value with id `i`, or `None` for values never computed. Values the prepare stage
    /// stores as u8 codes come back dequantized. Each node allocates its output.
    pub fn run_all(&self, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        self.check_inputs(inputs)?;
        self.in_pool(|| interpret_prepared(&self.prepared, inputs, self.threads))?
    }

    /// Runs node `index` of [`Session::graph`] alone on `values` (f32 tensors indexed by
    /// value id; the node's inputs must be present) and returns its output as f32.
    pub fn run_node(&self, index: usize, values: &[Option<Tensor>]) -> Result<Tensor> {
        let g = &self.prepared.graph;
        let n = g.nodes.get(index).ok_or_else(|| Error::Internal(format!("node index {index} out of range")))?;
        let step = match &self.prepared.steps[index] {
            // Codes in, codes out: alone, the pool runs on the floats (the same maxima).
            Step::MaxPoolU8 => &Step::F32,
            s => s,
        };
        self.in_pool(|| run_node_step(&self.prepared.kernels, n, step, values, self.threads))?
    }

    /// The planner's estimate of bytes held by activations, scratch and weights (as the graph
    /// stores them) for one call at this input shape (one slice of it, for a batch that runs in
    /// slices, and the tail that then runs whole). Where the batch may run by workers
    /// ([`Session::run_by_workers`], as the placement decides), the larger of that and the
    /// plan of workers together, so that the answer does not change with the placement.
    pub fn memory_estimate(&self, input_shape: &[usize]) -> Result<usize> {
        let mut most = self.activation_estimate(input_shape)?;
        let whole = [input_shape.to_vec()];
        if let (Some(n), 2, false) = (self.separable_samples(&whole), self.threads, crate::cpu::placement::forced() == Some(false)) {
            // Each worker's half of the batch on a set of buffers of its own.
            let half = [&[n / 2][..], &input_shape[1..]].concat();
            most = most.max(2 * self.activation_estimate(&half)?);
        }
        Ok(most + self.prepared.graph.weight_bytes())
    }

    /// Bytes of activations and scratch one run of this input shape holds: its plan's, or its
    /// slice's and its tail's.
    fn activation_estimate(&self, input_shape: &[usize]) -> Result<usize> {
        let whole = input_shape.to_vec();
        let mut shape = whole.clone();
        let mut tail = 0;
        if let Some(chunk) = self.chunk(std::slice::from_ref(&whole))? {
            tail = self.tail_for(std::slice::from_ref(&whole))?.map_or(0, |t| t.planned.plan.activation_bytes());
            shape[0] = chunk;
        }
        Ok(Plan::new(&self.prepared, &[shape], self.threads)?.activation_bytes() + tail)
    }
}

thread_local! {
    /// This thread's own worker pool, the thread itself its worker 0 (see [`own_pool`]).
    static OWN_POOL: RefCell<Option<Rc<rayon::ThreadPool>>> = const { RefCell::new(None) };
}

/// The calling thread's own pool of `threads` workers, built on first use, when the thread is
/// in no rayon pool yet. A thread holds one such pool for life (rayon keeps a thread in one
/// pool), so a later call with another thread count, or from a thread of another pool, gets
/// `None` (one-thread sessions then run alone on the thread, [`Session::in_pool`]). Side effect: rayon work this thread starts later, outside kestrel, runs on that pool.
fn own_pool(threads: usize) -> Option<Rc<rayon::ThreadPool>> {
    OWN_POOL.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() && rayon::current_thread_index().is_none() {
            let built = rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("kestrel-{i}")).use_current_thread().build();
            *slot = built.ok().map(Rc::new);
        }
        slot.as_ref().filter(|p| p.current_num_threads() == threads).cloned()
    })
}

/// Bytes of activations (the plan's slots and scratch) above which a batch runs in slices
/// of samples: one slice's layers then pass their outputs through the caches instead of
/// memory (a batch of 64 64² UNet inputs, 59 MB, ran at 1.48 ms per image on one thread
/// against 1.12 in batches of 8). `KESTREL_BATCH_BYTES` overrides it.
pub const BATCH_BYTES: usize = 16 << 20;

/// [`BATCH_BYTES`], or `KESTREL_BATCH_BYTES` (read once per process).
fn batch_bytes() -> usize {
    static BYTES: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| std::env::var("KESTREL_BATCH_BYTES").ok().and_then(|v| v.trim().parse().ok())).unwrap_or(BATCH_BYTES)
}

/// Conv output maps of at most this many pixels (16², ResNet's last two stages at 224²) run
/// as a whole batch in [`split_point`]'s tail.
pub const SPLIT_MAX_PIXELS: usize = 256;

/// Where a batch that runs in slices ([`Session::chunk`]) goes on as a whole, for its values'
/// whole-batch `shapes`: `(k, v)`, node `k` the first before which one f32 value `v` alone is
/// live (a block boundary), after which every conv's output map has at most
/// [`SPLIT_MAX_PIXELS`] pixels, and whose nodes hold more weight bytes than four times `v`'s
/// whole batch: there the slices' activations would no longer pass through the caches anyway,
/// and the whole batch reads each layer's weights once instead of once per slice (ResNet-50 at
/// batch 8 from layer3 on); `None` where there is no such node (a UNet, whose maps grow again;
/// small models, whose weights a slice reads from cache).
fn split_point(p: &Prepared, shapes: &[Vec<usize>]) -> Option<(usize, ValueId)> {
    let g = &p.graph;
    let nn = g.nodes.len();
    // Values available from boundary `produced[v]` on (before node k is boundary k), read
    // up to node `last[v]` (nn: a graph output).
    let mut produced = vec![usize::MAX; g.values.len()];
    for i in &g.inputs {
        produced[i.id] = 0;
    }
    for (j, n) in g.nodes.iter().enumerate() {
        produced[n.output] = j + 1;
    }
    let mut last = vec![0usize; g.values.len()];
    for (j, n) in g.nodes.iter().enumerate() {
        for &v in &n.inputs {
            last[v] = last[v].max(j);
        }
    }
    for &o in &g.outputs {
        last[o] = nn;
    }
    let small = |n: &Node| !matches!(n.op, Op::Conv(_)) || shapes[n.output].get(2..).is_some_and(|hw| hw.iter().product::<usize>() <= SPLIT_MAX_PIXELS);
    let from = (0..nn).rev().take_while(|&j| small(&g.nodes[j])).last()?;
    (from.max(1)..nn).find_map(|k| {
        let mut live = (0..g.values.len()).filter(|&v| produced[v] <= k && last[v] >= k && !g.constants.contains_key(&v));
        let (Some(v), None) = (live.next(), live.next()) else { return None };
        let tail_weights: usize = g.nodes[k..].iter().map(|n| n.op.weight_bytes()).sum();
        let typed = p.dtypes[v] == DType::F32 && shapes[v].len() == 4;
        (typed && tail_weights > 4 * 4 * shapes[v].iter().product::<usize>()).then_some((k, v))
    })
}

/// A call's inputs, or a run of their samples: each graph input's shape and data, read in
/// place.
struct Batch<'a> {
    shapes: Vec<Vec<usize>>,
    data: Vec<&'a [f32]>,
}

impl<'a> Batch<'a> {
    fn of(inputs: &'a [Tensor]) -> Batch<'a> {
        Batch { shapes: inputs.iter().map(|t| t.shape().to_vec()).collect(), data: inputs.iter().map(Tensor::data).collect() }
    }

    /// Samples (dim 0) of the first input.
    fn n(&self) -> usize {
        self.shapes.first().and_then(|s| s.first().copied()).unwrap_or(0)
    }

    /// Samples `start..start + len` of every input (each has at least `start + len`).
    fn samples(&self, start: usize, len: usize) -> Batch<'a> {
        let (mut shapes, mut data) = (Vec::with_capacity(self.shapes.len()), Vec::with_capacity(self.data.len()));
        for (s, &d) in self.shapes.iter().zip(&self.data) {
            let per = s.get(1..).map_or(1, |r| r.iter().product::<usize>());
            shapes.push([&[len][..], s.get(1..).unwrap_or(&[])].concat());
            data.push(&d[start * per..(start + len) * per]);
        }
        Batch { shapes, data }
    }

    /// The graph's input values fed from this batch.
    fn feed(&self, g: &Graph) -> Vec<(ValueId, &'a [f32])> {
        g.inputs.iter().zip(&self.data).map(|(i, &d)| (i.id, d)).collect()
    }
}

/// Outputs of runs of samples, joined along dim 0 as they come.
#[derive(Default)]
struct Joined(Vec<(Vec<usize>, Vec<f32>)>);

impl Joined {
    /// Appends the outputs of a run of `len` of the call's `n` samples.
    fn push(&mut self, outs: Vec<Tensor>, len: usize, n: usize) {
        if self.0.is_empty() {
            self.0 = outs.iter().map(|o| (o.shape().to_vec(), Vec::with_capacity(o.numel() / len.max(1) * n))).collect();
            for (shape, _) in &mut self.0 {
                if let Some(d) = shape.first_mut() {
                    *d = 0;
                }
            }
        }
        for ((shape, data), o) in self.0.iter_mut().zip(outs) {
            if let Some(d) = shape.first_mut() {
                *d += len;
            }
            data.extend_from_slice(o.data());
        }
    }

    fn finish(self) -> Result<Vec<Tensor>> {
        self.0.into_iter().map(|(shape, data)| Tensor::new(shape, data)).collect()
    }
}


/// Whether `g` computes each sample of a batch on its own, so that running a batch in
/// slices gives the same values: every value carries the batch in dim 0 at two batch sizes,
/// with the other dims unchanged, no op mixes samples along dim 0 without changing a shape
/// (a Softmax over axis 0), and no INT8 op takes its input range from the whole batch
/// (dynamic quantization).
pub fn batch_separable(g: &Graph) -> bool {
    let mixes = |n: &Node| match &n.op {
        Op::Softmax { axis } => *axis == 0,
        // The mask is drawn over the whole tensor, batch included.
        Op::Dropout { .. } => true,
        Op::FakeQuant(q) => *q == ActQuant::Dynamic,
        op => op.int8().is_some_and(|q| q.input == ActQuant::Dynamic),
    };
    if g.inputs.is_empty() || g.nodes.iter().any(mixes) {
        return false;
    }
    let at = |b: usize| -> Option<Vec<Vec<usize>>> {
        let shapes: Vec<Vec<usize>> = g.inputs.iter().map(|i| [&[b][..], i.shape.get(1..).unwrap_or(&[])].concat()).collect();
        shape::infer(g, &shapes).ok()
    };
    let (Some(two), Some(three)) = (at(2), at(3)) else { return false };
    let produced: Vec<usize> = g.inputs.iter().map(|i| i.id).chain(g.nodes.iter().map(|n| n.output)).collect();
    produced.iter().all(|&v| {
        let (a, b) = (&two[v], &three[v]);
        a.first() == Some(&2) && b.first() == Some(&3) && a[1..] == b[1..]
    }) && g.outputs.iter().all(|o| produced.contains(o))
}

/// Nodes `nodes` of one call on `plan`'s buffers: `feed` (f32 values, each of its plan size)
/// copied into their slots first, the values `wanted` returned.
#[allow(clippy::too_many_arguments)]
fn execute(p: &Prepared, plan: &Plan, bufs: &mut Buffers, feed: &[(ValueId, &[f32])], nodes: std::ops::Range<usize>, wanted: &[ValueId], threads: usize, mut node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
    let g = &p.graph;
    let slot = |v: usize| plan.slot_of[v].ok_or_else(|| Error::Internal(format!("value '{}' has no buffer", g.values[v].escape_debug())));
    let Buffers { slots, scratch, ranges } = bufs;
    ranges.fill(None);
    for &(v, data) in feed {
        if data.len() != plan.numel(v) || p.dtypes[v] != DType::F32 {
            return Err(Error::Internal(format!("value '{}' fed with {} floats", g.values[v].escape_debug(), data.len())));
        }
        let s = slot(v)?;
        slots[s].f32_mut(data.len()).copy_from_slice(data);
    }
    for k in nodes {
        let (n, step) = plan.step(p, k);
        let t0 = node_seconds.as_ref().map(|_| std::time::Instant::now());
        let o = slot(n.output)?;
        let mut out_slot = std::mem::take(&mut slots[o]);
        let mut ins: Vec<(ValueRef, &[usize])> = Vec::with_capacity(n.inputs.len());
        for (j, &v) in n.inputs.iter().enumerate() {
            let value = match g.constants.get(&v) {
                Some(t) => ValueRef::F32(t.data()),
                // The residual the output's slot holds (`Plan::in_place`).
                None if j == 1 && plan.in_place[k] => ValueRef::Output(match p.dtypes[v] {
                    DType::F32 => None,
                    DType::U8(q) => Some(q),
                }),
                None => {
                    let s = &slots[slot(v)?];
                    match p.dtypes[v] {
                        DType::F32 => ValueRef::F32(s.f32(plan.numel(v))),
                        DType::U8(q) => ValueRef::U8(s.u8(plan.numel(v)), q),
                    }
                }
            };
            ins.push((value, &plan.shapes[v]));
        }
        let on = plan.numel(n.output);
        let out = match p.dtypes[n.output] {
            DType::F32 => ValueMut::F32(out_slot.f32_mut(on)),
            DType::U8(q) => ValueMut::U8(out_slot.u8_mut(on), q),
        };
        let range = Ranges { input: n.inputs.first().and_then(|&v| ranges[v]), record_output: p.record_range[n.output] };
        let recorded = node::run(&p.kernels, n, step, &ins, out, &plan.shapes[n.output], range, scratch, threads);
        drop(ins);
        slots[o] = out_slot;
        ranges[n.output] = recorded?;
        if let (Some(t0), Some(acc)) = (t0, node_seconds.as_deref_mut()) {
            if let Some(a) = acc.get_mut(k) {
                *a += t0.elapsed().as_secs_f64();
            }
        }
    }
    wanted
        .iter()
        .map(|&v| {
            let data = match g.constants.get(&v) {
                Some(t) => t.data().to_vec(),
                None => {
                    let s = &slots[slot(v)?];
                    match p.dtypes[v] {
                        DType::F32 => s.f32(plan.numel(v)).to_vec(),
                        DType::U8(q) => {
                            let mut f = vec![0.0; plan.numel(v)];
                            dequantize_slice(p.kernels.simd, q, s.u8(plan.numel(v)), &mut f);
                            f
                        }
                    }
                }
            };
            Tensor::new(plan.shapes[v].clone(), data)
        })
        .collect()
}

/// A value held by node-by-node evaluation.
enum Owned {
    F32(Vec<f32>),
    U8(Vec<u8>, crate::qparams::QParams),
}

/// Evaluates `p` node by node, keeping every value; u8 values come back dequantized.
fn interpret_prepared(p: &Prepared, inputs: &[Tensor], threads: usize) -> Result<Vec<Option<Tensor>>> {
    let g = &p.graph;
    let shapes_in: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let shapes = shape::infer(g, &shapes_in)?;
    // Every value is kept (u8 ones come back as f32 too), and each node takes its scratch:
    // refuse a graph that would not fit before allocating anything (a hostile file's shapes
    // can ask for terabytes).
    let elems = |v: usize| shapes[v].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let values_bytes = g.nodes.iter().map(|n| n.output).chain(g.inputs.iter().map(|i| i.id)).chain(g.constants.keys().copied()).try_fold(0usize, |a, v| {
        let per = match p.dtypes.get(v) {
            Some(DType::U8(_)) => 5,
            _ => 4,
        };
        a.checked_add(elems(v)?.checked_mul(per)?)
    });
    let scratch_bytes = g.nodes.iter().zip(&p.steps).try_fold(0usize, |most, (n, step)| {
        let (f32s, bytes) = super::plan::node_scratch(p, n, step, &shapes, threads);
        Some(most.max(f32s.checked_mul(4)?.checked_add(bytes)?))
    });
    super::plan::within_limit(&shapes_in, values_bytes.zip(scratch_bytes).and_then(|(v, s)| v.checked_add(s)))?;
    let mut values: Vec<Option<Owned>> = (0..g.values.len()).map(|_| None).collect();
    for (i, t) in g.inputs.iter().zip(inputs) {
        values[i.id] = Some(Owned::F32(t.data().to_vec()));
    }
    for (&id, t) in &g.constants {
        values[id] = Some(Owned::F32(t.data().to_vec()));
    }
    let mut scratch = super::plan::Scratch::default();
    for (k, n) in g.nodes.iter().enumerate() {
        let ins = n
            .inputs
            .iter()
            .map(|&v| match &values[v] {
                Some(Owned::F32(x)) => Ok((ValueRef::F32(x), shapes[v].as_slice())),
                Some(Owned::U8(x, q)) => Ok((ValueRef::U8(x, *q), shapes[v].as_slice())),
                None => Err(Error::Internal(format!("node '{}' reads value #{v} before it is computed", n.name.escape_debug()))),
            })
            .collect::<Result<Vec<_>>>()?;
        let on: usize = shapes[n.output].iter().product();
        let out = match p.dtypes[n.output] {
            DType::F32 => {
                let mut o = vec![0.0; on];
                node::run(&p.kernels, n, &p.steps[k], &ins, ValueMut::F32(&mut o), &shapes[n.output], Ranges::default(), &mut scratch, threads)?;
                Owned::F32(o)
            }
            DType::U8(q) => {
                let mut o = vec![0u8; on];
                node::run(&p.kernels, n, &p.steps[k], &ins, ValueMut::U8(&mut o, q), &shapes[n.output], Ranges::default(), &mut scratch, threads)?;
                Owned::U8(o, q)
            }
        };
        values[n.output] = Some(out);
    }
    values
        .into_iter()
        .enumerate()
        .map(|(v, o)| {
            o.map(|o| {
                let data = match o {
                    Owned::F32(x) => x,
                    Owned::U8(x, q) => x.iter().map(|&c| q.dequantize(c)).collect(),
                };
                Tensor::new(shapes[v].clone(), data)
            })
            .transpose()
        })
        .collect()
}

/// Runs one node as `step` on f32 `values`, allocating its f32 output.
pub(crate) fn run_node_step(kernels: &Kernels, n: &Node, step: &Step, values: &[Option<Tensor>], threads: usize) -> Result<Tensor> {
    let mut shapes = vec![Vec::new(); values.len()];
    let mut ins = Vec::with_capacity(n.inputs.len());
    for &i in &n.inputs {
        let t = values.get(i).and_then(Option::as_ref).ok_or_else(|| Error::Shape { node: n.name.clone(), op: n.op.kind(), reason: format!("input #{i} was not computed") })?;
        shapes[i] = t.shape().to_vec();
        ins.push(t);
    }
    let os = shape::node_output_shape(n, &shapes)?;
    let refs: Vec<(ValueRef, &[usize])> = ins.iter().map(|t| (ValueRef::F32(t.data()), t.shape())).collect();
    let mut out = vec![0.0; os.iter().product()];
    node::run(kernels, n, step, &refs, ValueMut::F32(&mut out), &os, Ranges::default(), &mut super::plan::Scratch::default(), threads)?;
    Tensor::new(os, out)
}

#[cfg(test)]
mod tests {
    use super::Apart;

    /// Calls apart try one worker, then two, then take the faster, look at the other every
    /// `EXPLORE`th call (every fourth of that once it is 1.5× slower), and follow a change.
    #[test]
    fn calls_apart_take_the_faster_kind_and_look_again() {
        let a = Apart::default();
        assert_eq!(a.workers(), 1);
        a.record(1, 800);
        assert_eq!(a.workers(), 2);
        a.record(2, 1200);
        let run = |calls: u64, one: u64, two: u64| {
            let mut took = [0u64; 2];
            for _ in 0..calls {
                let w = a.workers();
                took[w - 1] += 1;
                a.record(w, if w == 1 { one } else { two });
            }
            took
        };
        // Two at 1.25× one: looked at every 16th call.
        assert_eq!(run(2 * Apart::EXPLORE, 800, 1000), [2 * Apart::EXPLORE - 2, 2]);
        // Two becomes faster: the next look pulls its average below one's, and it takes over.
        let took = run(4 * Apart::EXPLORE, 800, 500);
        assert!(took[1] >= 3 * Apart::EXPLORE, "{took:?}");
        // One now 1.6× two: looked at every 64th call only.
        assert_eq!(run(8 * Apart::EXPLORE, 800, 500)[0], 2);
    }
}

