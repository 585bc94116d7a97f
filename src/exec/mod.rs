//! Execution of a [`Graph`] on the CPU.
//!
//! - [`prepare`]: the graph lowered once per session: value-preserving passes, one kernel
//!   table ([`crate::cpu::kernels::Kernels`]), INT8 weights packed for it, each value's
//!   storage type and the u8 hand-offs between INT8 layers.
//! - [`plan`]: for each distinct input shape, every value's shape and a byte slot reused as
//!   soon as the value's last reader has run; the buffers one call writes.
//! - [`node`]: one node's kernel on typed values.
//! - [`session`]: [`Session`], shared by any number of threads; see its docs for choosing
//!   threads per call.
//! The call's other workers spin while it runs, instead of sleeping and being woken at every
//! layer ([`crate::cpu::parallel`], below the kernels that hand them work).
//!
//! Steady-state inference allocates only the returned output tensors, plus a few small index
//! tables per INT8 conv (tap offsets, row segments; at most a few KB).

pub mod node;
pub mod plan;
pub mod prepare;
pub mod session;

use crate::cpu::kernels::Kernels;
use crate::error::Result;
use crate::graph::{Graph, Node};
use crate::tensor::Tensor;

pub use plan::Plan;
pub use prepare::{DType, Options, Prepared, Step};
pub use session::Session;

/// The most worker threads a session (or an ONNX Runtime session of the tools) is built with:
/// a larger count is refused with [`crate::Error::Argument`] rather than started (`bench
/// --threads 1000000` gave no answer in a minute).
pub const MAX_THREADS: usize = 1024;

/// Evaluates `g` as given (no passes, every value f32) node by node, keeping every value.
pub fn interpret(g: &Graph, inputs: &[Tensor], threads: usize) -> Result<Vec<Option<Tensor>>> {
    Session::new(g.clone(), &Options { threads, optimize: false, ..Default::default() })?.run_all(inputs)
}

/// Runs one node alone on already computed f32 `values` (indexed by value id), allocating
/// its output. INT8 weights are packed for this call: for tools that run a node once.
pub fn run_node(n: &Node, values: &[Option<Tensor>], threads: usize) -> Result<Tensor> {
    let kernels = Kernels::select()?;
    let step = prepare::step(&kernels, n)?;
    session::run_node_step(&kernels, n, &step, values, threads)
}
