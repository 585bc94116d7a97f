//! Execution of a [`Graph`] on the CPU.
//!
//! A [`Session`] owns the optimised graph and a thread pool. For each distinct input shape it
//! builds a [`plan::Plan`] once: shapes of every value, and a buffer slot for each value so
//! that buffers are reused as soon as their last reader has run. Steady-state inference
//! allocates only the returned output tensors, plus a few small index tables per INT8 conv
//! (tap offsets, row segments; at most a few KB).

pub mod plan;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cpu::{conv, conv_transpose, elementwise, linear, pool, qconv, resize};
use crate::error::{Error, Result};
use crate::graph::{passes, shape, Graph, Node, Op};
use crate::tensor::Tensor;

pub use plan::Plan;

/// Reusable buffers of the kernels: f32 (im2col, col2im) and u8/i32 (INT8 layers).
#[derive(Default, Debug)]
pub struct Scratch {
    pub f32: Vec<f32>,
    pub q: qconv::QScratch,
}

/// How a [`Session`] is built.
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Run the graph passes (fold BatchNorm, fuse epilogues, drop Identity).
    pub optimize: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { threads: 0, optimize: true }
    }
}

/// A graph prepared for repeated inference.
pub struct Session {
    graph: Graph,
    pool: rayon::ThreadPool,
    threads: usize,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Plan>>,
}

impl Session {
    /// Validates and (optionally) optimises `graph`, and starts the thread pool.
    pub fn new(mut graph: Graph, opts: &Options) -> Result<Self> {
        graph.validate()?;
        if graph.is_quantized() {
            // Surface a bad KESTREL_ISA now rather than at the first INT8 layer.
            crate::cpu::detect::selected()?;
        }
        if opts.optimize {
            passes::optimize(&mut graph);
        }
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start {threads} threads: {e}")))?;
        Ok(Session { graph, pool, threads, plans: Mutex::new(HashMap::new()) })
    }

    /// The graph as executed (after passes).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the graph and returns its outputs.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_planned(inputs, None)
    }

    fn run_planned(&self, inputs: &[Tensor], node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
        let key: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let mut plans = self.plans.lock().map_err(|_| Error::Invalid("session poisoned by an earlier panic".into()))?;
        if !plans.contains_key(&key) {
            let plan = Plan::new(&self.graph, &key, self.threads)?;
            plans.insert(key.clone(), plan);
        }
        let plan = plans.get_mut(&key).ok_or_else(|| Error::Invalid("plan cache".into()))?;
        let threads = self.threads;
        self.pool.install(|| plan.execute_timed(&self.graph, inputs, threads, node_seconds))
    }

    /// Runs the graph as [`Session::run`] does, adding each node's wall time in seconds to
    /// `node_seconds` (indexed like `self.graph().nodes`; resized to fit).
    pub fn run_profiled(&self, inputs: &[Tensor], node_seconds: &mut Vec<f64>) -> Result<Vec<Tensor>> {
        node_seconds.resize(self.graph.nodes.len(), 0.0);
        self.run_planned(inputs, Some(node_seconds))
    }

    /// Runs the graph keeping every intermediate value (for per-layer comparisons).
    /// Entry `i` is the value with id `i`, or `None` for values never computed. In a session
    /// built with `optimize`, values that INT8 convs hand to each other as u8 codes
    /// (`QConv2d::out_q`) hold those codes, not floats; per-layer tools use unoptimised sessions.
    pub fn run_all(&self, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let threads = self.threads;
        self.pool.install(|| interpret(&self.graph, inputs, threads))
    }

    /// The planner's estimate of bytes held by activations, scratch and weights at this input.
    pub fn memory_estimate(&self, input_shape: &[usize]) -> Result<usize> {
        let plan = Plan::new(&self.graph, &[input_shape.to_vec()], self.threads)?;
        Ok(plan.activation_bytes() + self.graph.weight_bytes())
    }
}

/// Evaluates the graph node by node, keeping every value.
pub fn interpret(g: &Graph, inputs: &[Tensor], threads: usize) -> Result<Vec<Option<Tensor>>> {
    let shapes_in: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    shape::infer(g, &shapes_in)?;
    let mut values: Vec<Option<Tensor>> = vec![None; g.values.len()];
    for (i, t) in g.inputs.iter().zip(inputs) {
        values[i.id] = Some(t.clone());
    }
    for (&id, t) in &g.constants {
        values[id] = Some(t.clone());
    }
    let mut scratch = Scratch::default();
    for n in &g.nodes {
        let t = run_node(n, &values, &mut scratch, threads)?;
        values[n.output] = Some(t);
    }
    Ok(values)
}

/// Runs one node on already computed values, allocating its output.
pub fn run_node(n: &Node, values: &[Option<Tensor>], scratch: &mut Scratch, threads: usize) -> Result<Tensor> {
    let mut shapes = vec![Vec::new(); values.len()];
    let mut ins = Vec::with_capacity(n.inputs.len());
    for &i in &n.inputs {
        let t = values[i].as_ref().ok_or_else(|| Error::Shape {
            node: n.name.clone(),
            op: n.op.kind(),
            reason: format!("input #{i} was not computed"),
        })?;
        shapes[i] = t.shape().to_vec();
        ins.push((t.data(), t.shape()));
    }
    let os = shape::node_output_shape(n, &shapes)?;
    let mut out = vec![0.0; os.iter().product()];
    exec_node(n, &ins, &mut out, &os, scratch, threads);
    Tensor::new(os, out)
}

fn dims4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// Executes one node. Shapes have been checked by shape inference.
pub(crate) fn exec_node(
    n: &Node,
    ins: &[(&[f32], &[usize])],
    out: &mut [f32],
    os: &[usize],
    scratch: &mut Scratch,
    threads: usize,
) {
    let (x, xs) = ins[0];
    match &n.op {
        Op::Conv(c) => {
            let residual = if c.residual { Some(ins[1].0) } else { None };
            conv::conv2d(c, x, dims4(xs), residual, out, dims4(os), &mut scratch.f32, threads);
        }
        Op::ConvTranspose(c) => conv_transpose::conv_transpose2d(c, x, dims4(xs), out, dims4(os), &mut scratch.f32, threads),
        Op::BatchNorm(b) => {
            let (scale, shift) = b.affine();
            let inner = xs[2..].iter().product();
            elementwise::channel_affine(x, xs[1], inner, &scale, &shift, out);
        }
        Op::Act(a) => elementwise::activation(*a, x, out),
        Op::Add => elementwise::binary(elementwise::Binary::Add, x, xs, ins[1].0, ins[1].1, out, os),
        Op::Mul => elementwise::binary(elementwise::Binary::Mul, x, xs, ins[1].0, ins[1].1, out, os),
        Op::MaxPool(p) => pool::pool2d(p, true, x, dims4(xs), out, dims4(os)),
        Op::MaxPoolU8(p) => {
            let (n_in, n_out) = (x.len(), out.len());
            let xb = &bytemuck::cast_slice::<f32, u8>(x)[..n_in];
            let ob = &mut bytemuck::cast_slice_mut::<f32, u8>(out)[..n_out];
            pool::max_pool2d_u8(p, xb, dims4(xs), ob, dims4(os));
        }
        Op::AveragePool(p) => pool::pool2d(p, false, x, dims4(xs), out, dims4(os)),
        Op::GlobalAveragePool => pool::global_avg_pool(x, xs[2] * xs[3], out),
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => out.copy_from_slice(x),
        Op::Linear(l) => linear::linear(l, x, xs[0], out, threads),
        Op::Concat { axis } => elementwise::concat(ins, *axis, out),
        Op::Resize(r) => resize::resize(r, x, dims4(xs), out, dims4(os)),
        Op::Softmax { axis } => elementwise::softmax(x, xs, *axis, out),
        Op::QConv(q) => {
            let residual = match (q.conv.residual, q.res_q) {
                (false, _) => None,
                (true, None) => Some(qconv::Residual::F32(ins[1].0)),
                // The producer wrote u8 codes into the first len() bytes of this f32 buffer.
                (true, Some(p)) => Some(qconv::Residual::U8(&bytemuck::cast_slice::<f32, u8>(ins[1].0)[..ins[1].0.len()], p)),
            };
            qconv::qconv2d(q, x, dims4(xs), residual, out, dims4(os), &mut scratch.q, threads);
        }
        Op::QLinear(q) => qconv::qlinear(q, x, xs[0], out, &mut scratch.q, threads),
        Op::QConvTranspose(q) => qconv::qconv_transpose2d(q, x, dims4(xs), out, dims4(os), &mut scratch.q, &mut scratch.f32, threads),
        Op::FakeQuant(q) => {
            let p = qconv::input_params(*q, x);
            out.iter_mut().zip(x).for_each(|(o, &v)| *o = p.fake(v));
        }
    }
}
