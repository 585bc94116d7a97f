//! The buffer planner: for one set of input shapes, every value's shape and a slot for each
//! value, reused once the value's last reader ran. Slots are sized in bytes for the largest
//! value they ever hold, at that value's [`DType`] (a u8 value takes one byte an element). A
//! conv whose residual dies with it may write its output into the residual's slot
//! ([`Plan::in_place`]). A plan is immutable; each call of a session takes its own
//! [`Buffers`] sized by it.

use super::prepare::{self, DType, Prepared, Step};
use crate::cpu::aligned::Aligned;
use crate::cpu::kernels::Kernels;
use crate::cpu::qgemm::{self, Packing};
use crate::cpu::{amx, bconv, conv, conv_transpose, pool, qconv::QScratch, schan, sconv, sgemm, slanes, spos, wino};
use crate::error::{Error, Result};
use crate::graph::{live_taps, shape, Conv2d, Node, Op, ValueId};

/// Shapes and slot assignment for one set of input shapes.
#[derive(Debug)]
pub struct Plan {
    pub shapes: Vec<Vec<usize>>,
    /// The slot of every value computed at run time (inputs and node outputs).
    pub slot_of: Vec<Option<usize>>,
    /// Bytes of each slot.
    pub slot_bytes: Vec<usize>,
    /// f32 scratch elements of the f32 conv kernels (im2col, col2im).
    pub scratch_f32: usize,
    /// Per node: the conv cropped to its live taps at these shapes and its step
    /// ([`live_taps`]), run instead of the prepared node; `None` for every other node.
    pub cropped: Vec<Option<(Node, Step)>>,
    /// Whether a call at these shapes runs on all the session's workers: at least
    /// [`CALL_PAR_MIN_MACS`] multiply-adds in all ([`crate::graph::Graph::macs`]'s count).
    /// Below it, one call's parallel layers are too few to pay for waking the other workers.
    pub parallel: bool,
    /// Multiply-adds per call ([`crate::graph::Graph::macs`]'s count).
    pub macs: u64,
    /// Per node: whether its output takes the slot of its residual (input 1), which it
    /// reads in place (`in_place_residual`).
    pub in_place: Vec<bool>,
}

/// Multiply-adds per call from which a call runs on all of a session's workers. The 32²
/// shapes-resnet18 (3 M) ran its batch 1 in 0.105 ms on one thread against 0.132 ms on two
/// (its only layer above `sconv::PAR_MIN_MACS` is the stem); the 64² blobs-unet (37 M) in
/// 0.708 against 0.664 ms.
pub const CALL_PAR_MIN_MACS: u64 = 8 << 20;

impl Plan {
    /// Infers shapes and assigns slots.
    pub fn new(p: &Prepared, input_shapes: &[Vec<usize>], threads: usize) -> Result<Self> {
        Plan::new_from(p, input_shapes, threads, None)
    }

    /// [`Plan::new`] for the nodes from `from` on, whose only input is the value `v` computed
    /// before them (`start = Some((from, v))`): the earlier nodes get no slots (a batch's tail
    /// run whole after its slices, `Session::run_split`).
    pub fn new_from(p: &Prepared, input_shapes: &[Vec<usize>], threads: usize, start: Option<(usize, ValueId)>) -> Result<Self> {
        let g = &p.graph;
        let shapes = shape::infer(g, input_shapes)?;
        let bytes = |v: ValueId| shapes[v].iter().product::<usize>() * p.dtypes[v].size();
        let mut last_use = vec![0usize; g.values.len()];
        for (i, n) in g.nodes.iter().enumerate() {
            for &v in &n.inputs {
                last_use[v] = i;
            }
        }
        for &o in &g.outputs {
            last_use[o] = usize::MAX;
        }
        let mut slot_of = vec![None; g.values.len()];
        let mut sizes: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let take = |need: usize, sizes: &mut Vec<usize>, free: &mut Vec<usize>| -> usize {
            // Best fit among free slots, else the largest free one grown, else a new one.
            let best = free.iter().enumerate().filter(|(_, &s)| sizes[s] >= need).min_by_key(|(_, &s)| sizes[s]);
            let pick = best.or_else(|| free.iter().enumerate().max_by_key(|(_, &s)| sizes[s])).map(|(i, _)| i);
            match pick {
                Some(i) => {
                    let s = free.swap_remove(i);
                    sizes[s] = sizes[s].max(need);
                    s
                }
                None => {
                    sizes.push(need);
                    sizes.len() - 1
                }
            }
        };
        match start {
            Some((_, v)) => slot_of[v] = Some(take(bytes(v), &mut sizes, &mut free)),
            None => {
                for i in &g.inputs {
                    slot_of[i.id] = Some(take(bytes(i.id), &mut sizes, &mut free));
                }
            }
        }
        let from = start.map_or(0, |(k, _)| k);
        let mut scratch = 0;
        // Bytes kernels allocate for themselves during one node (not held between nodes).
        let mut transient = 0usize;
        let mut cropped: Vec<Option<(Node, Step)>> = Vec::with_capacity(g.nodes.len());
        let mut in_place = Vec::with_capacity(g.nodes.len());
        for (idx, n) in g.nodes.iter().enumerate() {
            if idx < from {
                cropped.push(None);
                in_place.push(false);
                continue;
            }
            cropped.push(crop(p, idx, n, &shapes)?);
            let (n, step) = cropped[idx].as_ref().map_or((n, &p.steps[idx]), |(n, s)| (n, s));
            // The output takes its slot before the inputs' slots are freed: a node never
            // writes over what it reads, but for a residual it reads in place.
            let onto = in_place_residual(p, n, step, &last_use, idx, &bytes).then(|| slot_of[n.inputs[1]]).flatten();
            in_place.push(onto.is_some());
            slot_of[n.output] = Some(match onto {
                Some(s) => s,
                None => take(bytes(n.output), &mut sizes, &mut free),
            });
            for &v in n.inputs.iter().filter(|&&v| onto.is_none() || v != n.inputs[1]) {
                if last_use[v] == idx && !g.constants.contains_key(&v) {
                    if let Some(s) = slot_of[v] {
                        if !free.contains(&s) {
                            free.push(s);
                        }
                    }
                }
            }
            let (f32s, bytes) = node_scratch(p, n, step, &shapes, threads);
            scratch = scratch.max(f32s);
            transient = transient.max(bytes);
        }
        let need = sizes.iter().try_fold(0usize, |a, &b| a.checked_add(b)).and_then(|s| s.checked_add(scratch.checked_mul(4)?)).and_then(|s| s.checked_add(transient));
        within_limit(input_shapes, need)?;
        let macs = g.macs_at(&shapes);
        let parallel = macs >= CALL_PAR_MIN_MACS;
        Ok(Plan { shapes, slot_of, slot_bytes: sizes, scratch_f32: scratch, cropped, parallel, macs, in_place })
    }

    /// The node and step that run as node `k` of `p` under this plan.
    pub fn step<'a>(&'a self, p: &'a Prepared, k: usize) -> (&'a Node, &'a Step) {
        match &self.cropped[k] {
            Some((n, s)) => (n, s),
            None => (&p.graph.nodes[k], &p.steps[k]),
        }
    }

    /// Bytes the plan's buffers hold: slots and the f32 scratch (the INT8 scratch grows on
    /// first use and is not counted).
    pub fn activation_bytes(&self) -> usize {
        self.slot_bytes.iter().sum::<usize>() + 4 * self.scratch_f32
    }

    /// Elements of value `v`.
    pub fn numel(&self, v: ValueId) -> usize {
        self.shapes[v].iter().product()
    }
}

/// Whether node `idx` (`n` on `step`) writes its output over its residual: an FP32 or bf16
/// conv on kestrel's packed kernels ([`sconv::conv2d_onto`], [`bconv::conv2d_onto`],
/// [`amx::conv2d_onto`]) whose residual is an f32 value, or an INT8 conv with u8 codes in
/// and out ([`crate::cpu::qconv::Residual::Output`]); the residual of the output's size,
/// computed at run time, read by no later node, not a graph output, and not also the conv's
/// input. The residual's lines are then read and written back once, where a separate output
/// is fetched for ownership too, and the plan holds one slot less: ResNet-50's expanding 1×1
/// convs with their residual took 0.73–0.86 of the time at 56² and 28², 0.92–0.97 at 14²,
/// 0.98–1.04 at 7² (the whole model 0.96–1.00, median 0.965); in bf16 (`vdpbf16ps` planes)
/// the whole model 0.97; INT8, whose u8 outputs are a quarter of the bytes, 0.98–1.00 (only
/// the memory saved). Winograd convs keep a separate output: in place they gained nothing
/// (ResNet-18, whose residuals all meet Winograd convs, 1.00–1.05× the time).
fn in_place_residual(p: &Prepared, n: &Node, step: &Step, last_use: &[usize], idx: usize, bytes: &impl Fn(ValueId) -> usize) -> bool {
    let (Op::Conv(c), &[x, r]) = (&n.op, n.inputs.as_slice()) else { return false };
    let typed = match step {
        Step::SConv(_) | Step::SLanes(_) | Step::BFma(_) | Step::BLanes(_) | Step::BConv(_) | Step::BImplicit(_) => matches!((p.dtypes[r], p.dtypes[n.output]), (DType::F32, DType::F32)),
        Step::QConv(_) => matches!((p.dtypes[r], p.dtypes[n.output]), (DType::U8(_), DType::U8(_))),
        _ => false,
    };
    typed && c.residual && r != x && last_use[r] == idx && !p.graph.constants.contains_key(&r) && bytes(r) == bytes(n.output)
}

/// Node `idx` with its conv cropped to the taps that read the input at `shapes`, and that
/// conv's step, when the conv runs on packed weights and some taps only ever read padding;
/// a bf16 conv of a map of at most [`prepare::BF16_FMA_MAX_PIXELS`] pixels on the FP32 kernel
/// ([`Step::BFma`]); an FP32 conv of a batch of maps so small that most taps read padding by
/// output position ([`Step::SPos`]), of small maps with a long K on AVX-512 with the
/// output channels in the lanes in K chunks ([`Step::SLanes`] prepared by [`schan::prepare`]),
/// and of other small maps (of one image or of a batch) with the output channels in
/// the lanes ([`Step::SLanes`]); a Winograd conv of a map under
/// [`wino::MIN_PIXELS`], or one [`wino::pays_on`] turns down for the kernel, on the packed
/// FP32 kernel (in bf16, a batch of under [`wino::BF16_MIN_TILES`] tiles on the direct bf16
/// steps); an INT8 conv packed for AMX tiles on a map under [`qgemm::AMX_MIN_PIXELS`] pixels,
/// repacked for the VNNI kernel.
fn crop(p: &Prepared, idx: usize, n: &Node, shapes: &[Vec<usize>]) -> Result<Option<(Node, Step)>> {
    let (Op::Conv(c), Step::SConv(_) | Step::Wino(_) | Step::BConv(_) | Step::BWino(_) | Step::BImplicit(_) | Step::QConv(_)) = (&n.op, &p.steps[idx]) else { return Ok(None) };
    let (xs, os) = (&shapes[n.inputs[0]], &shapes[n.output]);
    if xs.len() != 4 || os.len() != 4 {
        return Ok(None);
    }
    // A bf16 session's 3×3 convs run by the FP32 F(4×4) on the maps where it outruns the bf16
    // convs ([`prepare::f32_f4_in_bf16`]), whatever the declared input size chose.
    let switched = match (&p.steps[idx], p.kernels.conv_bf16.is_some() && wino::takes(c)) {
        (Step::Wino(_), true) => prepare::f32_f4_in_bf16(&p.kernels, c, [os[2], os[3]]).is_none().then(|| prepare::bf16_step(&p.kernels, c, Some([os[2], os[3]]))),
        (Step::BWino(_) | Step::BImplicit(_) | Step::BConv(_), true) => match prepare::f32_f4_in_bf16(&p.kernels, c, [os[2], os[3]]) {
            Some(k) => Some(Step::Wino(wino::pack_f4(k.geometry().mr, c))),
            // The bf16 Winograd variant these maps want, when the prepared one is the other.
            None => match (&p.steps[idx], prepare::bf16_wino_variant(&p.kernels, c, Some([os[2], os[3]]))) {
                (Step::BWino(w), Some(v)) if v != w.variant => Some(Step::BWino(wino::pack_bf16(c, v))),
                _ => None,
            },
        },
        _ => None,
    };
    let step = switched.as_ref().unwrap_or(&p.steps[idx]);
    // Where nothing below changes the step, the switched one (if any) stands.
    let unchanged = || switched.clone().map(|s| (n.clone(), s));
    let small = live_taps::crop_dead_taps(c, [xs[2], xs[3]], [os[2], os[3]]);
    let cropped = |s: &Option<Conv2d>| s.clone().map_or_else(|| n.clone(), |s| Node { op: Op::Conv(s), ..n.clone() });
    let (x4, o4) = ([xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]]);
    // A bf16 conv where the FP32 plan takes a small-map path (by position, channel lanes; not
    // the K chunks of long-K convs) and not Winograd, unless the bf16 channel lanes take it
    // (ResNet-18's 3 × 3 stride-2 conv onto 7 × 7: the model took 1.06× the time on the FP32
    // lanes): that path on operands rounded to bf16. The bf16 kernels' 16-pixel vectors are
    // mostly empty there, and bf16 Winograd computed every tap of 1 × 1 and 2 × 2 maps
    // (shapes-resnet18 at batch 64, Zen 4, 2 threads: its 1 × 1 maps' 3 × 3 convs took 38×
    // the FP32 conv's time).
    if let (Step::BConv(_) | Step::BWino(_) | Step::BImplicit(_), Some(k)) = (step, p.kernels.sgemm) {
        let f32_wino = p.kernels.winograd && wino::pays(c) && wino::runs_at(false, o4) && wino::pays_on(k, c, [os[2], os[3]]);
        // Both paths take maps of at most `slanes::MAX_SIDE` a side: the weights are rounded
        // only where one may.
        let small_map = os[2] <= slanes::MAX_SIDE && os[3] <= slanes::MAX_SIDE && !sconv::is_narrow(o4);
        let rounded = if !small_map || f32_wino || amx::channel_lanes_pay(c, [os[2], os[3]]) { None } else { prepare::bf16_rounded(&p.kernels, small.as_ref().unwrap_or(c)) };
        match rounded.and_then(|r| f32_small_step(k, &r, x4, o4, false)) {
            Some(Step::SPos(pc)) => return Ok(Some((cropped(&small), Step::BPos(pc)))),
            Some(Step::SLanes(lc)) => return Ok(Some((cropped(&small), Step::BLanes(lc)))),
            _ => {}
        }
    }
    // A Winograd conv on a map too small for its tiles (or, on AVX2, for its channels) runs as
    // the packed FP32 conv (cropped or by position as below), or in bf16 as the direct bf16
    // conv.
    let on_wino = matches!(*step, Step::Wino(_) | Step::BWino(_));
    let bf16 = matches!(*step, Step::BWino(_));
    let wino_pays = bf16 || p.kernels.sgemm.is_none_or(|k| wino::pays_on(k, c, [os[2], os[3]]));
    if on_wino && wino::runs_at(bf16, [os[0], os[1], os[2], os[3]]) && wino_pays {
        // The Winograd variant these maps want, when the prepared one (chosen at the declared
        // input size) is the other.
        if let (Step::Wino(w), Some(k)) = (step, p.kernels.sgemm) {
            let want_f4 = p.kernels.winograd_f4 && wino::prefers_f4(k, c, [os[2], os[3]]);
            if want_f4 != (w.variant == wino::Variant::F4) {
                return Ok(Some((n.clone(), Step::Wino(prepare::wino_pack(&p.kernels, k, c, Some([os[2], os[3]]))))));
            }
        }
        return Ok(unchanged());
    }
    if matches!(*step, Step::BConv(_) | Step::BWino(_) | Step::BImplicit(_)) {
        if let Some(step) = prepare::bf16_on_fma(&p.kernels, small.as_ref().unwrap_or(c), os[2] * os[3]) {
            return Ok(Some((cropped(&small), step)));
        }
    }
    if matches!(*step, Step::BWino(_)) {
        let conv = small.as_ref().unwrap_or(c);
        let step = prepare::bf16_direct(&p.kernels, conv, Some([os[2], os[3]]));
        return Ok(Some((cropped(&small), step)));
    }
    // Small FP32 maps: by position, or in channel lanes.
    if let (Step::SConv(_) | Step::Wino(_), Some(k)) = (step, p.kernels.sgemm) {
        let conv = small.as_ref().unwrap_or(c);
        if let Some(step) = f32_small_step(k, conv, x4, o4, true) {
            return Ok(Some((cropped(&small), step)));
        }
        if on_wino {
            let step = Step::SConv(sconv::pack(k, conv));
            return Ok(Some((cropped(&small), step)));
        }
    }
    // An INT8 conv packed for AMX tiles whose output map is smaller than one tile block runs
    // on the VNNI kernel of the same CPU, whose GEMV columns take such maps
    // ([`qgemm::AMX_MIN_PIXELS`]).
    let kernels = match step {
        Step::QConv(w) if w.first().is_some_and(|w| w.packing() == Packing::S8Amx) && os[2] * os[3] < qgemm::AMX_MIN_PIXELS => Kernels { qgemm: p.kernels.qgemm.without_tiles(), ..p.kernels },
        _ if small.is_none() => return Ok(unchanged()),
        _ => p.kernels,
    };
    let node = cropped(&small);
    let step = prepare::step(&kernels, &node)?;
    Ok(Some((node, step)))
}

/// The FP32 small-map step of conv `c` (input `x4`, output `o4`) on kernel `k`, if the plan
/// takes one: a batch of at least [`spos::MIN_BATCH`] maps with dead taps at some positions
/// by output position ([`Step::SPos`]), small maps with a long K on AVX-512 in channel lanes in K chunks
/// ([`schan`], when `chunked`), the other small maps (of one image or of a batch) as a direct
/// conv with the channels in the lanes ([`slanes`]); none for a batch of at most `NARROW_COLS`
/// pixels.
fn f32_small_step(k: sgemm::Kernel, c: &Conv2d, x4: [usize; 4], o4: [usize; 4], chunked: bool) -> Option<Step> {
    if sconv::is_narrow(o4) {
        return None;
    }
    if let Some(pc) = spos::prepare(k, c, x4, [o4[2], o4[3]]).filter(|pc| x4[0] >= spos::MIN_BATCH && pc.live_fraction() <= spos::PAYS_BELOW) {
        return Some(Step::SPos(pc));
    }
    if let Some(lc) = (chunked && schan::pays(k, c, x4, o4)).then(|| schan::prepare(c, x4, o4)).flatten() {
        return Some(Step::SLanes(lc));
    }
    slanes::pays(k, c, x4, o4).then(|| slanes::prepare(c, x4, o4)).flatten().map(Step::SLanes)
}

/// One slot: a byte arena whose view starts on a 64-byte (cache line) boundary, viewed as the
/// type of the value it holds now. The kernels' vector loads and stores of a row whose start
/// is a multiple of 16 floats then never straddle two lines, and two workers writing
/// neighbouring whole vectors of a row never share one.
#[derive(Debug, Default)]
pub struct Slot {
    /// Whole cache lines of words (`cpu::aligned`).
    words: Aligned<u32>,
}

/// Bytes of a cache line.
pub const LINE: usize = 64;

impl Slot {
    fn with_bytes(bytes: usize) -> Slot {
        Slot { words: Aligned::zeroed(bytes.div_ceil(LINE) * (LINE / 4)) }
    }

    /// Bytes the view holds.
    fn bytes(&self) -> usize {
        4 * self.words.len()
    }

    fn view(&self) -> &[u32] {
        &self.words
    }

    fn view_mut(&mut self) -> &mut [u32] {
        &mut self.words
    }

    /// The first `n` f32 elements.
    pub fn f32(&self, n: usize) -> &[f32] {
        &bytemuck::cast_slice(self.view())[..n]
    }

    /// The first `n` f32 elements, writable.
    pub fn f32_mut(&mut self, n: usize) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut(self.view_mut())[..n]
    }

    /// The first `n` bytes.
    pub fn u8(&self, n: usize) -> &[u8] {
        &bytemuck::cast_slice(self.view())[..n]
    }

    /// The first `n` bytes, writable.
    pub fn u8_mut(&mut self, n: usize) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(self.view_mut())[..n]
    }
}

/// Reusable buffers of the f32 and INT8 kernels.
#[derive(Default, Debug)]
pub struct Scratch {
    pub f32: Vec<f32>,
    pub q: QScratch,
    /// A [`Step::BFma`] conv's input rounded to bf16.
    pub bf16_in: Vec<f32>,
    /// A [`Step::SConvT`] transposed conv's columns, one image at a time.
    pub cols: Vec<f32>,
}

/// Everything one call writes: the slots, the kernels' scratch, and the `(min, max)` each
/// value's producer recorded this call.
#[derive(Debug)]
pub struct Buffers {
    pub slots: Vec<Slot>,
    pub scratch: Scratch,
    pub ranges: Vec<Option<(f32, f32)>>,
}

impl Buffers {
    /// Buffers sized for `plan` (values of a graph with `values` values).
    pub fn new(plan: &Plan, values: usize) -> Buffers {
        Buffers {
            slots: plan.slot_bytes.iter().map(|&b| Slot::with_bytes(b)).collect(),
            scratch: Scratch { f32: vec![0.0; plan.scratch_f32], ..Default::default() },
            ranges: vec![None; values],
        }
    }

    /// Grows buffers made for another plan of the same graph to hold `plan`'s: a slot or
    /// scratch smaller than `plan` needs is replaced, a larger one kept. A session's calls on
    /// plans of several batch sizes then share one set instead of each keeping its own.
    pub fn fit(&mut self, plan: &Plan) {
        if self.slots.len() < plan.slot_bytes.len() {
            self.slots.resize_with(plan.slot_bytes.len(), Slot::default);
        }
        for (slot, &b) in self.slots.iter_mut().zip(&plan.slot_bytes) {
            if slot.bytes() < b {
                *slot = Slot::with_bytes(b);
            }
        }
        if self.scratch.f32.len() < plan.scratch_f32 {
            self.scratch.f32.resize(plan.scratch_f32, 0.0);
        }
    }

    /// Bytes of the slots and the f32 scratch.
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(Slot::bytes).sum::<usize>() + 4 * self.scratch.f32.len()
    }
}

/// Bytes a plan's buffers may take: `KESTREL_MEMORY_LIMIT` (bytes, or with a K/M/G/T suffix,
/// powers of 1024), else this machine's physical memory, else 64 GiB. Plans above it are
/// refused before anything is allocated.
pub fn memory_limit() -> usize {
    if let Some(v) = std::env::var("KESTREL_MEMORY_LIMIT").ok().and_then(|s| parse_bytes(&s)) {
        return v;
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())));
    total_kib.and_then(|k| k.checked_mul(1024)).unwrap_or(64 << 30)
}

/// A size in bytes with an optional K/M/G/T suffix (powers of 1024), e.g. `2G`, `1.5M`,
/// `1000000`; `None` unless it is a positive finite number. `KESTREL_MEMORY_LIMIT` and the
/// CLI's size options read sizes this way.
pub fn parse_bytes(s: &str) -> Option<usize> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let v: f64 = num.trim().parse().ok()?;
    let bytes = v * (1u64 << shift) as f64;
    (v > 0.0 && bytes.is_finite() && bytes < usize::MAX as f64).then_some(bytes as usize)
}

/// The f32 scratch length and the other transient bytes node `n` takes when it runs as `step`
/// on `shapes` with `threads` workers, beside its inputs and output: what a plan reserves for
/// it, and what node-by-node evaluation (`Session::run_all`) checks before it runs.
pub(crate) fn node_scratch(p: &Prepared, n: &Node, step: &Step, shapes: &[Vec<usize>], threads: usize) -> (usize, usize) {
    let os = &shapes[n.output];
    let scratch = match (&n.op, step) {
        (Op::Conv(c), Step::F32) => conv::scratch_len(c, [os[2], os[3]], threads),
        (Op::Conv(c), Step::SConv(_) | Step::BFma(_)) => {
            let xs = &shapes[n.inputs[0]];
            p.kernels.sgemm.map_or(0, |k| sconv::scratch_len(k, c, [xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]], threads))
        }
        (Op::Conv(_), Step::Wino(w)) => {
            let xs = &shapes[n.inputs[0]];
            p.kernels.sgemm.map_or(0, |k| wino::scratch_len(wino::Exec::Kernel(k), w.variant, [xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]], threads))
        }
        (Op::Conv(_), Step::BWino(w)) => {
            let xs = &shapes[n.inputs[0]];
            p.kernels.conv_bf16.map_or(0, |k| wino::scratch_len(wino::Exec::Bf16(k), w.variant, [xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]], threads))
        }
        (Op::Conv(_), Step::SLanes(lc) | Step::BLanes(lc)) => slanes::scratch_len(lc),
        (Op::Conv(_), Step::SPos(_) | Step::BPos(_)) => {
            let xs = &shapes[n.inputs[0]];
            spos::scratch_len([xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]])
        }
        (Op::Conv(c), Step::BImplicit(packed)) => {
            let xs = &shapes[n.inputs[0]];
            amx::scratch_len(c, packed, [xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]])
        }
        (Op::ConvTranspose(c), Step::F32 | Step::QConvTranspose(_)) => {
            let xs = &shapes[n.inputs[0]];
            conv_transpose::scratch_len(c, [xs[2], xs[3]])
        }
        (Op::ConvTranspose(_), Step::SConvT(ct)) => {
            let xs = &shapes[n.inputs[0]];
            conv_transpose::packed_scratch_len(ct, [xs[0], xs[1], xs[2], xs[3]], threads)
        }
        _ => 0,
    };
    let transient = match (&n.op, step) {
        (Op::MaxPool(mp), Step::F32 | Step::MaxPoolU8) => {
            let elem = if matches!(step, Step::MaxPoolU8) { 1 } else { 4 };
            pool::max_pool_row_bytes(mp, shapes[n.inputs[0]][3], [os[2], os[3]], elem, threads)
        }
        (Op::Conv(_), Step::BConv(_)) => bconv::block_bytes(threads),
        (Op::Resize(r), _) if os.len() == 4 && shapes[n.inputs[0]].len() == 4 => {
            let xs = &shapes[n.inputs[0]];
            crate::cpu::resize::scratch_bytes(r, [xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]], threads)
        }
        // A batch of small maps by one GEMM: its channel-major copies.
        (Op::Conv(c), Step::QConv(_)) => {
            let xs = &shapes[n.inputs[0]];
            crate::cpu::qconv::batched_bytes(c, [xs[0], xs[1], xs[2], xs[3]], [os[0], os[1], os[2], os[3]])
        }
        // The input rounded to bf16 (`Scratch::bf16_in`).
        (Op::Conv(_), Step::BFma(_) | Step::BLanes(_) | Step::BPos(_)) => 4 * shapes[n.inputs[0]].iter().product::<usize>(),
        // One image's columns (`Scratch::cols`).
        (Op::ConvTranspose(c), Step::SConvT(_)) => 4 * conv_transpose::packed_cols_len(c, [shapes[n.inputs[0]][2], shapes[n.inputs[0]][3]]),
        _ => 0,
    };
    (scratch, transient)
}

/// `Ok` when `need` bytes (`None`: more than `usize` holds) for a run on `input_shapes` fit in
/// [`memory_limit`], else the [`Error::MemoryLimit`] that names the shapes and both sizes.
pub(crate) fn within_limit(input_shapes: &[Vec<usize>], need: Option<usize>) -> Result<()> {
    let limit = memory_limit();
    match need {
        Some(b) if b <= limit => Ok(()),
        _ => {
            let what = match input_shapes {
                [one] => format!("input shape {one:?} needs"),
                all => format!("input shapes {all:?} need"),
            };
            let need = need.map_or_else(|| "more than 2^64 bytes".to_string(), gib);
            Err(Error::MemoryLimit { what, need, limit: gib(limit) })
        }
    }
}

fn gib(b: usize) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}
