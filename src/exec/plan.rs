//! The buffer planner: one slot per live value, reused once the value's last reader ran.
//! Slots are sized for the largest value they ever hold and persist across runs.

use crate::cpu::{conv, conv_transpose};
use crate::error::{Error, Result};
use crate::graph::{shape, Graph, Op, ValueId};
use crate::tensor::Tensor;

/// Shapes and buffer assignment for one set of input shapes.
pub struct Plan {
    shapes: Vec<Vec<usize>>,
    slot_of: Vec<Option<usize>>,
    slots: Vec<Vec<f32>>,
    scratch: super::Scratch,
    /// Values read by a dynamic INT8 conv: their producer records the output's range.
    wants_range: Vec<bool>,
    /// The range recorded for each value during the current run.
    ranges: Vec<Option<(f32, f32)>>,
}

impl Plan {
    /// Infers shapes and assigns slots. Buffers are allocated here, once.
    pub fn new(g: &Graph, input_shapes: &[Vec<usize>], threads: usize) -> Result<Self> {
        let shapes = shape::infer(g, input_shapes)?;
        let numel = |v: ValueId| shapes[v].iter().product::<usize>();
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
        for i in &g.inputs {
            slot_of[i.id] = Some(take(numel(i.id), &mut sizes, &mut free));
        }
        let mut scratch = 0;
        for (idx, n) in g.nodes.iter().enumerate() {
            slot_of[n.output] = Some(take(numel(n.output), &mut sizes, &mut free));
            for &v in &n.inputs {
                if last_use[v] == idx && !g.constants.contains_key(&v) {
                    if let Some(s) = slot_of[v] {
                        if !free.contains(&s) {
                            free.push(s);
                        }
                    }
                }
            }
            let os = &shapes[n.output];
            scratch = scratch.max(match &n.op {
                Op::Conv(c) => conv::scratch_len(c, [os[2], os[3]], threads),
                Op::ConvTranspose(c) | Op::QConvTranspose(crate::graph::QConvTranspose2d { convt: c, .. }) => {
                    let xs = &shapes[n.inputs[0]];
                    conv_transpose::scratch_len(c, [xs[2], xs[3]])
                }
                _ => 0,
            });
        }
        let slots = sizes.iter().map(|&s| vec![0.0; s]).collect();
        let mut wants_range = vec![false; g.values.len()];
        for n in &g.nodes {
            if let Op::QConv(q) = &n.op {
                if q.input == crate::graph::ActQuant::Dynamic {
                    wants_range[n.inputs[0]] = true;
                }
            }
        }
        let ranges = vec![None; g.values.len()];
        Ok(Plan { shapes, slot_of, slots, scratch: super::Scratch { f32: vec![0.0; scratch], ..Default::default() }, wants_range, ranges })
    }

    /// Bytes held by activation slots and scratch.
    pub fn activation_bytes(&self) -> usize {
        (self.slots.iter().map(Vec::len).sum::<usize>() + self.scratch.f32.len()) * 4 + self.scratch.q.u8.len() + self.scratch.q.i32.len() * 4
    }

    /// The inferred shape of every value.
    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// Runs the graph with this plan's buffers.
    pub fn execute(&mut self, g: &Graph, inputs: &[Tensor], threads: usize) -> Result<Vec<Tensor>> {
        self.execute_timed(g, inputs, threads, None)
    }

    /// [`Plan::execute`], adding each node's wall time in seconds to `node_seconds[i]`.
    pub fn execute_timed(&mut self, g: &Graph, inputs: &[Tensor], threads: usize, mut node_seconds: Option<&mut [f64]>) -> Result<Vec<Tensor>> {
        let slot = |v: ValueId| self.slot_of[v].ok_or_else(|| Error::Invalid(format!("value '{}' has no buffer", g.values[v])));
        self.ranges.fill(None);
        for (i, t) in g.inputs.iter().zip(inputs) {
            let s = slot(i.id)?;
            self.slots[s][..t.numel()].copy_from_slice(t.data());
        }
        for (k, n) in g.nodes.iter().enumerate() {
            let t0 = node_seconds.as_ref().map(|_| std::time::Instant::now());
            let o = slot(n.output)?;
            let mut out = std::mem::take(&mut self.slots[o]);
            let on = self.shapes[n.output].iter().product::<usize>();
            let mut ins: Vec<(&[f32], &[usize])> = Vec::with_capacity(n.inputs.len());
            for &v in &n.inputs {
                let data: &[f32] = match g.constants.get(&v) {
                    Some(t) => t.data(),
                    None => {
                        let s = slot(v)?;
                        &self.slots[s][..self.shapes[v].iter().product::<usize>()]
                    }
                };
                ins.push((data, &self.shapes[v]));
            }
            // A dynamic INT8 conv reads its input's range if the producer recorded it this run.
            self.scratch.q.in_range = n.inputs.first().and_then(|&v| self.ranges[v]);
            self.scratch.q.want_range = self.wants_range[n.output];
            super::exec_node(n, &ins, &mut out[..on], &self.shapes[n.output], &mut self.scratch, threads);
            self.ranges[n.output] = self.scratch.q.out_range.take();
            self.slots[o] = out;
            if let (Some(t0), Some(acc)) = (t0, node_seconds.as_deref_mut()) {
                if let Some(a) = acc.get_mut(k) {
                    *a += t0.elapsed().as_secs_f64();
                }
            }
        }
        g.outputs
            .iter()
            .map(|&v| {
                let data = match g.constants.get(&v) {
                    Some(t) => t.data().to_vec(),
                    None => self.slots[slot(v)?][..self.shapes[v].iter().product::<usize>()].to_vec(),
                };
                Tensor::new(self.shapes[v].clone(), data)
            })
            .collect()
    }
}
