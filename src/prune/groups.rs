//! Channel dependency groups of a float graph.
//!
//! Every op that creates channels — a Conv's, ConvTranspose's or Gemm's outputs, a graph input,
//! the output of an op the analysis cannot see through — creates a *space* of `width`
//! channels. Each value's channel axis (axis 1) is a [`Layout`]: a concatenation of space
//! segments, times `inner` features per channel after a Flatten of a spatial map. Ops that
//! pass channels through (BatchNorm, activations, pooling, Resize, QuantizeDequantize,
//! depthwise convs) keep their input's layout; Concat on axis 1 concatenates layouts; Add and
//! Mul of two runtime values unify their layouts segment by segment (a residual stream), so
//! the spaces joined become one *group*. Removing channel `c` of a group removes it from every
//! space of the group, and so from every producer's outputs and every reader's inputs at the
//! offset where that space sits in the reader's layout.
//!
//! A group is *blocked* (never pruned) when it reaches the model's input or output, an op the
//! analysis cannot see through (Reshape, a Softmax over channels, a grouped non-depthwise
//! conv, a Concat off the channel axis), a constant it cannot slice, or a node the user
//! excluded; [`Groups::explain`] says which and why.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::graph::{shape, Graph, Op, ValueId};

/// Index of a space in [`Groups::spaces`].
pub type SpaceId = usize;

/// Where a space's channels are created.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// The output channels of this node (Conv, ConvTranspose, Gemm).
    Node(usize),
    /// A graph input.
    Input(ValueId),
    /// A constant read by a node.
    Constant(ValueId),
    /// The output of a node the analysis cannot see through.
    Opaque(usize),
}

/// A space: `width` channels created in one place.
#[derive(Clone, Debug)]
pub struct Space {
    pub width: usize,
    pub origin: Origin,
}

/// The channel axis of a value: segments of spaces, `inner` features per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub segs: Vec<(SpaceId, usize)>,
    /// Features per channel: 1, or `H·W` after a Flatten of a spatial map.
    pub inner: usize,
}

impl Layout {
    fn one(space: SpaceId, width: usize) -> Self {
        Layout { segs: vec![(space, width)], inner: 1 }
    }

    /// Channels (segment widths summed).
    pub fn channels(&self) -> usize {
        self.segs.iter().map(|s| s.1).sum()
    }
}

/// How a node takes part in a group.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Its output channels are the space (weight axis 0 of a Conv or Gemm, axis 1 of a
    /// ConvTranspose, and the bias).
    Producer,
    /// It keeps channels as they are and holds per-channel data (BatchNorm, a depthwise conv),
    /// the group's channels at `offset` of its input.
    PerChannel { offset: usize },
    /// It reads the channels at `offset` of its input (weight axis 1 of a Conv or Gemm, axis 0
    /// of a ConvTranspose), `inner` features per channel.
    Consumer { offset: usize, inner: usize },
    /// A constant operand of an Add or Mul, sliced on its `axis` (the one that broadcasts
    /// against the channel axis) at `offset`.
    Constant { offset: usize, axis: usize },
}

/// One coupled set of spaces.
#[derive(Clone, Debug)]
pub struct Group {
    pub width: usize,
    pub spaces: Vec<SpaceId>,
    /// Nodes touching the group, with their roles.
    pub members: Vec<(usize, Role)>,
    /// Why the group must keep every channel; `None` when it can be pruned.
    pub blocked: Option<String>,
}

impl Group {
    /// Whether the group can be pruned.
    pub fn prunable(&self) -> bool {
        self.blocked.is_none()
    }
}

/// The dependency groups of a graph, and each value's layout in terms of their spaces.
#[derive(Clone, Debug)]
pub struct Groups {
    pub spaces: Vec<Space>,
    /// The group of each space.
    pub group_of: Vec<usize>,
    pub groups: Vec<Group>,
    /// Each value's channel layout (`None` for values without a channel axis the analysis
    /// follows: scalars, integer shapes).
    pub layouts: Vec<Option<Layout>>,
    pub shapes: Vec<Vec<usize>>,
}

/// Union–find over spaces.
struct Unions {
    parent: Vec<usize>,
}

impl Unions {
    fn find(&mut self, a: usize) -> usize {
        let mut r = a;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        let mut x = a;
        while self.parent[x] != r {
            let next = self.parent[x];
            self.parent[x] = r;
            x = next;
        }
        r
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb] = ra;
        }
    }
}

struct Analysis<'g> {
    g: &'g Graph,
    shapes: Vec<Vec<usize>>,
    spaces: Vec<Space>,
    unions: Unions,
    blocked: Vec<Option<String>>,
    layouts: Vec<Option<Layout>>,
    members: Vec<(SpaceId, usize, Role)>,
}

impl Analysis<'_> {
    fn space(&mut self, width: usize, origin: Origin) -> SpaceId {
        self.spaces.push(Space { width, origin });
        self.unions.parent.push(self.spaces.len() - 1);
        self.blocked.push(None);
        self.spaces.len() - 1
    }

    fn block(&mut self, s: SpaceId, why: impl Into<String>) {
        if self.blocked[s].is_none() {
            self.blocked[s] = Some(why.into());
        }
    }

    fn block_layout(&mut self, l: &Layout, why: &str) {
        for &(s, _) in &l.segs {
            self.block(s, why);
        }
    }

    /// The layout of `v`, making one for values the analysis has not seen (constants).
    fn layout(&mut self, v: ValueId, reader: usize) -> Layout {
        if let Some(l) = &self.layouts[v] {
            return l.clone();
        }
        let c = self.shapes[v].get(1).copied().unwrap_or(1);
        let s = self.space(c, Origin::Constant(v));
        self.block(s, format!("a constant read by '{}'", self.g.nodes[reader].name));
        let l = Layout::one(s, c);
        self.layouts[v] = Some(l.clone());
        l
    }

    /// Records `role` for node `n` on every segment of `l`, offsets counted along `l`.
    fn touch(&mut self, n: usize, l: &Layout, role: impl Fn(usize, usize) -> Role) {
        let mut off = 0;
        for &(s, w) in &l.segs {
            self.members.push((s, n, role(off, l.inner)));
            off += w;
        }
    }

    /// Unifies two layouts of equal channel counts segment by segment; segments that do not
    /// line up block every space involved.
    fn unify(&mut self, a: &Layout, b: &Layout, what: &str) {
        let aligned = a.inner == b.inner && a.segs.len() == b.segs.len() && a.segs.iter().zip(&b.segs).all(|(x, y)| x.1 == y.1);
        if aligned {
            for (x, y) in a.segs.iter().zip(&b.segs) {
                self.unions.union(x.0, y.0);
            }
        } else {
            let why = format!("{what} adds tensors whose channel segments do not line up");
            self.block_layout(a, &why);
            self.block_layout(b, &why);
        }
    }

    fn opaque(&mut self, n: usize, why: &str) -> Layout {
        let node = &self.g.nodes[n];
        let c = self.shapes[node.output].get(1).copied().unwrap_or(1);
        let s = self.space(c, Origin::Opaque(n));
        self.block(s, why.to_string());
        Layout::one(s, c)
    }

    fn node(&mut self, n: usize) -> Result<()> {
        let g = self.g;
        let node = &g.nodes[n];
        let name = node.name.as_str();
        let x = node.inputs[0];
        let xl = self.layout(x, n);
        let out = match &node.op {
            op if op.int8().is_some() => {
                return Err(Error::Unsupported {
                    what: format!("pruning INT8 layer '{}'", name.escape_debug()),
                    hint: "prune the float model, then quantize the pruned one".into(),
                })
            }
            Op::Conv(c) => {
                let (cin, cout) = (c.in_channels(), c.out_channels());
                if xl.inner != 1 {
                    self.block_layout(&xl, &format!("'{name}' convolves flattened features"));
                }
                let depthwise = c.groups > 1 && c.groups == cin && cout == cin;
                let l = if c.groups == 1 {
                    self.touch(n, &xl, |off, inner| Role::Consumer { offset: off, inner });
                    let s = self.space(cout, Origin::Node(n));
                    self.members.push((s, n, Role::Producer));
                    Layout::one(s, cout)
                } else if depthwise {
                    self.touch(n, &xl, |off, _| Role::PerChannel { offset: off });
                    xl.clone()
                } else {
                    let why = format!("grouped conv '{name}' ({} groups) ties channels group-wise", c.groups);
                    self.block_layout(&xl, &why);
                    self.opaque(n, &why)
                };
                if c.residual {
                    let r = self.layout(node.inputs[1], n);
                    self.unify(&l, &r, &format!("'{name}' (fused residual)"));
                }
                l
            }
            Op::ConvTranspose(c) => {
                if c.groups == 1 && xl.inner == 1 {
                    self.touch(n, &xl, |off, inner| Role::Consumer { offset: off, inner });
                    let s = self.space(c.out_channels(), Origin::Node(n));
                    self.members.push((s, n, Role::Producer));
                    Layout::one(s, c.out_channels())
                } else {
                    let why = format!("ConvTranspose '{name}' with {} groups", c.groups);
                    self.block_layout(&xl, &why);
                    self.opaque(n, &why)
                }
            }
            Op::Linear(l) => {
                let outf = l.weight.shape()[0];
                self.touch(n, &xl, |off, inner| Role::Consumer { offset: off, inner });
                let s = self.space(outf, Origin::Node(n));
                self.members.push((s, n, Role::Producer));
                Layout::one(s, outf)
            }
            Op::BatchNorm(_) => {
                self.touch(n, &xl, |off, _| Role::PerChannel { offset: off });
                xl
            }
            Op::Act(_) | Op::MaxPool(_) | Op::AveragePool(_) | Op::GlobalAveragePool | Op::GlobalMaxPool | Op::Resize(_) | Op::Identity | Op::FakeQuant(_) => xl,
            Op::Softmax { axis } if *axis != 1 => xl,
            // Padding that leaves the batch and channel axes alone passes channels through.
            Op::Pad(p) if p.pads.iter().take(2).all(|b| *b == [0, 0]) => xl,
            Op::Reduce(_) | Op::InstanceNorm { .. } | Op::Slice { .. } | Op::Transpose { .. } | Op::PoolNd(_) | Op::ConvTransposeNd(_) | Op::MatMul { .. } | Op::Dropout { .. } => {
                let why = format!("'{name}' ({}) is not followed through by the pruner", node.op.kind());
                self.block_layout(&xl, &why);
                self.opaque(n, &why)
            }
            Op::Pad(_) => {
                let why = format!("Pad '{name}' pads the batch or channel axis");
                self.block_layout(&xl, &why);
                self.opaque(n, &why)
            }
            Op::Softmax { .. } => {
                let why = format!("Softmax '{name}' normalises over the channels");
                self.block_layout(&xl, &why);
                self.opaque(n, &why)
            }
            // A Reshape to [N, C·H·W] (what exporters write for `flatten`) is a Flatten.
            op @ (Op::Flatten { axis: 1 } | Op::Reshape { .. })
                if matches!(op, Op::Flatten { .. }) || {
                    let (xs, os) = (&self.shapes[x], &self.shapes[node.output]);
                    os.len() == 2 && xs.len() >= 2 && os[0] == xs[0] && os[1] == xs[1..].iter().product::<usize>()
                } =>
            {
                let xs = &self.shapes[x];
                let inner = xs.get(2..).map_or(1, |s| s.iter().product::<usize>()) * xl.inner;
                Layout { segs: xl.segs.clone(), inner }
            }
            Op::Flatten { .. } | Op::Reshape { .. } => {
                let why = format!("'{name}' ({}) reshapes the channel axis", node.op.kind());
                self.block_layout(&xl, &why);
                self.opaque(n, &why)
            }
            Op::Add | Op::Mul | Op::Sub | Op::Div | Op::Pow | Op::PRelu => {
                let y = node.inputs[1];
                let (xs, ys) = (self.shapes[x].clone(), self.shapes[y].clone());
                let x_const = g.constants.contains_key(&x);
                let y_const = g.constants.contains_key(&y);
                let (rt, other, other_const, rts, os) = if x_const && !y_const { (y, x, true, ys, xs) } else { (x, y, y_const, xs, ys) };
                let rl = self.layout(rt, n);
                // The other operand's axis that broadcasts against axis 1 (numpy aligns shapes
                // from the right), and its length there.
                let axis = (1 + os.len()).checked_sub(rts.len()).filter(|_| os.len() <= rts.len());
                let oc = axis.and_then(|a| os.get(a).copied()).unwrap_or(1);
                if other_const {
                    // A constant broadcast over the channels, or one value per channel.
                    match axis {
                        Some(axis) if oc > 1 => self.touch(n, &rl, |off, _| Role::Constant { offset: off, axis }),
                        _ if os.len() > rts.len() => self.block_layout(&rl, &format!("'{name}' reads a constant of higher rank")),
                        _ => {}
                    }
                    rl
                } else {
                    let ol = self.layout(other, n);
                    match (rts.get(1).copied().unwrap_or(1), oc) {
                        (a, b) if a == b => self.unify(&rl, &ol, &format!("'{name}'")),
                        (_, 1) => {}
                        (1, _) => return self.set_out(n, ol),
                        _ => {
                            let why = format!("'{name}' broadcasts channels");
                            self.block_layout(&rl, &why);
                            self.block_layout(&ol, &why);
                        }
                    }
                    rl
                }
            }
            Op::Concat { axis: 1 } => {
                let mut segs = Vec::new();
                let mut inner = None;
                for &v in &node.inputs {
                    let l = self.layout(v, n);
                    if *inner.get_or_insert(l.inner) != l.inner {
                        self.block_layout(&l, &format!("'{name}' concatenates flattened and spatial tensors"));
                    }
                    segs.extend(l.segs.iter().copied());
                }
                Layout { segs, inner: inner.unwrap_or(1) }
            }
            Op::Concat { .. } => {
                // Along another axis every input keeps all its channels: they are one stream.
                for &v in &node.inputs[1..] {
                    let l = self.layout(v, n);
                    self.unify(&xl, &l, &format!("'{name}'"));
                }
                xl
            }
        };
        self.set_out(n, out)
    }

    fn set_out(&mut self, n: usize, l: Layout) -> Result<()> {
        let v = self.g.nodes[n].output;
        let want = self.shapes[v].get(1).copied().unwrap_or(1);
        let have = l.channels() * l.inner;
        if have != want {
            return Err(Error::Internal(format!("prune: layout of '{}' has {have} channels, the shape {want}", self.g.values[v])));
        }
        self.layouts[v] = Some(l);
        Ok(())
    }
}

/// Node names matched by `patterns` (a trailing `*` matches a prefix).
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Groups {
    /// Analyses `g` (a float graph with one 4-D input) with the nodes matched by `exclude`
    /// kept whole. Every pattern of `exclude` must match some node.
    pub fn new(g: &Graph, exclude: &[String]) -> Result<Groups> {
        g.validate()?;
        for p in exclude {
            if !g.nodes.iter().any(|n| matches(p, &n.name)) {
                return Err(Error::Argument(format!("--exclude {p}: matches no node (see `kestrel info`)")));
            }
        }
        let shapes = shape::infer(g, &[g.input_shape(1)?])?;
        let mut a = Analysis { g, shapes, spaces: Vec::new(), unions: Unions { parent: Vec::new() }, blocked: Vec::new(), layouts: vec![None; g.values.len()], members: Vec::new() };
        for i in &g.inputs {
            let c = a.shapes[i.id].get(1).copied().unwrap_or(1);
            let s = a.space(c, Origin::Input(i.id));
            a.block(s, "the model's input channels");
            a.layouts[i.id] = Some(Layout::one(s, c));
        }
        for n in 0..g.nodes.len() {
            a.node(n)?;
        }
        for &o in &g.outputs {
            if let Some(l) = a.layouts[o].clone() {
                a.block_layout(&l, "the model's output channels");
            }
        }
        for (n, node) in g.nodes.iter().enumerate() {
            if let Some(p) = exclude.iter().find(|p| matches(p, &node.name)) {
                let spaces: Vec<SpaceId> = a.members.iter().filter(|m| m.1 == n).map(|m| m.0).collect();
                for s in spaces {
                    a.block(s, format!("--exclude {p} keeps '{}'", node.name));
                }
            }
        }
        // Groups: one per union root, in order of first appearance.
        let mut root_group: BTreeMap<usize, usize> = BTreeMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of = vec![0; a.spaces.len()];
        for s in 0..a.spaces.len() {
            let r = a.unions.find(s);
            let gi = *root_group.entry(r).or_insert_with(|| {
                groups.push(Group { width: a.spaces[s].width, spaces: Vec::new(), members: Vec::new(), blocked: None });
                groups.len() - 1
            });
            group_of[s] = gi;
            groups[gi].spaces.push(s);
            if groups[gi].width != a.spaces[s].width {
                return Err(Error::Internal(format!("prune: group of space {s} mixes widths {} and {}", groups[gi].width, a.spaces[s].width)));
            }
            if groups[gi].blocked.is_none() {
                groups[gi].blocked = a.blocked[s].clone();
            }
        }
        for (s, n, role) in a.members {
            let gr = &mut groups[group_of[s]];
            if !gr.members.contains(&(n, role.clone())) {
                gr.members.push((n, role));
            }
        }
        for gr in &mut groups {
            if gr.blocked.is_none() && gr.width < 2 {
                gr.blocked = Some("a single channel".into());
            }
        }
        Ok(Groups { spaces: a.spaces, group_of, groups, layouts: a.layouts, shapes: a.shapes })
    }

    /// A readable list of the groups: width, members and, for a group left alone, why.
    pub fn explain(&self, g: &Graph) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for (i, gr) in self.groups.iter().enumerate() {
            let state = match &gr.blocked {
                Some(why) => format!("kept whole: {why}"),
                None => "prunable".to_string(),
            };
            let _ = writeln!(s, "group {i}: {} channels, {state}", gr.width);
            for (n, role) in &gr.members {
                let what = match role {
                    Role::Producer => "produces them".to_string(),
                    Role::PerChannel { offset } => format!("per-channel, at channel {offset}"),
                    Role::Consumer { offset, inner: 1 } => format!("reads them at input channel {offset}"),
                    Role::Consumer { offset, inner } => format!("reads them at feature {} ({inner} per channel)", offset * inner),
                    Role::Constant { offset, .. } => format!("constant operand sliced at channel {offset}"),
                };
                let node = &g.nodes[*n];
                let _ = writeln!(s, "    {:<40} {:<20} {what}", node.name.escape_debug().to_string(), node.op.kind());
            }
        }
        s
    }

    /// The kept channel indices of `l` given each group's kept channels, expanded by `inner`.
    pub fn kept_indices(&self, l: &Layout, kept: &[Vec<usize>]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut off = 0;
        for &(s, w) in &l.segs {
            for &c in &kept[self.group_of[s]] {
                for f in 0..l.inner {
                    out.push((off + c) * l.inner + f);
                }
            }
            off += w;
        }
        out
    }
}
