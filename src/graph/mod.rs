//! The typed graph: nodes with ids, outputs addressed as (node, port), topological order and the
//! editing helpers the quantization passes use.

pub mod ignored;
pub mod patterns;

use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

pub type NodeId = usize;

/// One output of a node: `port` is the output's index (0-based), not the IR port id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Outlet {
    pub node: NodeId,
    pub port: usize,
}

impl Outlet {
    pub fn new(node: NodeId, port: usize) -> Self {
        Outlet { node, port }
    }
}

/// One dimension of a partial shape.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Dim {
    Static(usize),
    /// `-1` / `?`
    Dynamic,
    /// `lo..hi` bounds; `hi` of -1 means unbounded.
    Range(i64, i64),
}

impl Dim {
    pub fn parse(s: &str) -> Option<Dim> {
        let s = s.trim();
        if s == "-1" || s == "?" || s.is_empty() {
            return Some(Dim::Dynamic);
        }
        if let Some((a, b)) = s.split_once("..") {
            let lo = if a.is_empty() { 0 } else { a.parse().ok()? };
            let hi = if b.is_empty() { -1 } else { b.parse().ok()? };
            return Some(Dim::Range(lo, hi));
        }
        s.parse::<usize>().ok().map(Dim::Static)
    }

    pub fn as_static(self) -> Option<usize> {
        match self {
            Dim::Static(d) => Some(d),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Static(d) => write!(f, "{d}"),
            Dim::Dynamic => f.write_str("-1"),
            Dim::Range(lo, hi) if *hi < 0 => write!(f, "{lo}.."),
            Dim::Range(lo, hi) => write!(f, "{lo}..{hi}"),
        }
    }
}

/// A shape whose dims may be unknown; `None` means even the rank is unknown.
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct PartialShape(pub Option<Vec<Dim>>);

impl PartialShape {
    pub fn from_static(dims: &[usize]) -> Self {
        PartialShape(Some(dims.iter().map(|&d| Dim::Static(d)).collect()))
    }
    pub fn dynamic() -> Self {
        PartialShape(None)
    }
    pub fn rank(&self) -> Option<usize> {
        self.0.as_ref().map(|d| d.len())
    }
    pub fn dims(&self) -> Option<&[Dim]> {
        self.0.as_deref()
    }
    /// The static dims, when every dim is static.
    pub fn to_static(&self) -> Option<Vec<usize>> {
        self.0.as_ref()?.iter().map(|d| d.as_static()).collect()
    }
    /// Whether a concrete shape fits.
    pub fn accepts(&self, shape: &[usize]) -> bool {
        match &self.0 {
            None => true,
            Some(dims) => {
                dims.len() == shape.len()
                    && dims.iter().zip(shape).all(|(d, &s)| match *d {
                        Dim::Static(v) => v == s,
                        Dim::Dynamic => true,
                        Dim::Range(lo, hi) => (s as i64) >= lo && (hi < 0 || (s as i64) <= hi),
                    })
            }
        }
    }
}

impl std::fmt::Display for PartialShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("[...]"),
            Some(d) => {
                let s: Vec<String> = d.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", s.join(","))
            }
        }
    }
}

/// A generic XML element, used to keep `<rt_info>` sections verbatim.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct XmlElement {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<XmlElement>,
    pub text: String,
}

impl XmlElement {
    pub fn new(name: &str) -> Self {
        XmlElement { name: name.to_string(), ..Default::default() }
    }
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    pub fn child(&self, name: &str) -> Option<&XmlElement> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn child_mut(&mut self, name: &str) -> Option<&mut XmlElement> {
        self.children.iter_mut().find(|c| c.name == name)
    }
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a XmlElement> {
        self.children.iter().filter(move |c| c.name == name)
    }
    /// The child called `name`, created when missing.
    pub fn child_or_insert(&mut self, name: &str) -> &mut XmlElement {
        if let Some(i) = self.children.iter().position(|c| c.name == name) {
            &mut self.children[i]
        } else {
            self.children.push(XmlElement::new(name));
            self.children.last_mut().expect("just pushed")
        }
    }
    pub fn with_value(name: &str, value: &str) -> Self {
        XmlElement { name: name.to_string(), attrs: vec![("value".into(), value.into())], ..Default::default() }
    }
}

/// Element type, shape, tensor names and rt_info of a port.
#[derive(Clone, PartialEq, Debug)]
pub struct PortInfo {
    pub element_type: ElementType,
    pub shape: PartialShape,
    pub names: Vec<String>,
    pub rt_info: Option<XmlElement>,
}

impl PortInfo {
    pub fn new(element_type: ElementType, shape: PartialShape) -> Self {
        PortInfo { element_type, shape, names: vec![], rt_info: None }
    }
}

/// Ordered `<data>` attributes, kept as the IR spells them so they are written back unchanged;
/// ops parse what they need into typed structs once, when a plan is built.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Attrs(pub Vec<(String, String)>);

impl Attrs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(e) = self.0.iter_mut().find(|(k, _)| k == key) {
            e.1 = value;
        } else {
            self.0.push((key.to_string(), value));
        }
    }
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Attrs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

/// How every message names a layer: `layer id=3 name='conv1' type=Convolution (opset1)`. `id` is
/// the IR's text, so a malformed id can still be shown.
pub fn describe_layer(id: Option<&str>, name: &str, op_type: &str, version: &str) -> String {
    let id = id.map(|i| format!(" id={i}")).unwrap_or_default();
    format!("layer{id} name='{name}' type={op_type} ({version})")
}

/// Checks that `t` can feed model input `name` declared as `element_type` and `shape`: the one
/// input check the engine, the OpenVINO backend, the datasets and the C API share. `origin`
/// (" in calib/x.npy") says where the tensor came from.
pub fn check_input_tensor(
    name: &str,
    element_type: ElementType,
    shape: &PartialShape,
    t: &Tensor,
    origin: &str,
) -> Result<()> {
    if element_type != ElementType::Dynamic && t.element_type() != element_type {
        return Err(Error::mismatch(format!(
            "input '{name}': expected element type {element_type}, found {}{origin}",
            t.element_type()
        )));
    }
    if !shape.accepts(t.shape()) {
        let found = PartialShape::from_static(t.shape());
        return Err(Error::mismatch(format!("input '{name}': expected shape {shape}, found {found}{origin}")));
    }
    Ok(())
}

/// A byte range of a weights (`.bin`) file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BinRange {
    pub offset: u64,
    pub size: u64,
}

/// One operation of the model.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    /// Op type as the IR names it (`Convolution`, `Const`, ...).
    pub op_type: String,
    /// Opset, e.g. `opset1`.
    pub version: String,
    pub attrs: Attrs,
    /// Extra attributes of the `<layer>` element itself (e.g. `output_names` on Result).
    pub layer_attrs: Vec<(String, String)>,
    pub inputs: Vec<Outlet>,
    /// Type/shape/rt_info the IR recorded on each input port.
    pub input_ports: Vec<PortInfo>,
    pub outputs: Vec<PortInfo>,
    pub rt_info: Option<XmlElement>,
    /// The value of a `Const`.
    pub value: Option<Arc<Tensor>>,
    /// The element type a `Const` is stored as in the `.bin` (i4/u4 are held unpacked).
    pub const_type: Option<ElementType>,
    /// A `Const` whose bytes are not held in memory: where they are in the weights file the graph
    /// was read from lazily, or, during a streamed write, in the file being written.
    pub stored: Option<BinRange>,
    /// The layer `id` in the IR this node was read from (None for nodes added later). Only for
    /// messages: the writer renumbers layers.
    pub ir_id: Option<u64>,
}

impl Node {
    pub fn new(name: impl Into<String>, op_type: &str, version: &str) -> Self {
        Node {
            name: name.into(),
            op_type: op_type.to_string(),
            version: version.to_string(),
            attrs: Attrs::default(),
            layer_attrs: vec![],
            inputs: vec![],
            input_ports: vec![],
            outputs: vec![],
            rt_info: None,
            value: None,
            const_type: None,
            stored: None,
            ir_id: None,
        }
    }

    pub fn is_const(&self) -> bool {
        self.op_type == "Const" || self.op_type == "Constant"
    }
    pub fn is_parameter(&self) -> bool {
        self.op_type == "Parameter"
    }
    pub fn is_result(&self) -> bool {
        self.op_type == "Result"
    }
    /// A sink: an op whose effect is not an output a consumer reads (`Assign` stores a variable
    /// of a stateful model). Sinks are part of the model as Results are: never dead code.
    pub fn is_sink(&self) -> bool {
        self.op_type == "Assign"
    }
    /// An op whose output depends on state kept between inferences (`ReadValue`), so it is
    /// never constant, even over a constant initializer.
    pub fn reads_state(&self) -> bool {
        self.op_type == "ReadValue"
    }

    /// `layer id=3 name='conv1' type=Convolution (opset1)` for messages (no `id=` for a node
    /// that was not read from an IR).
    pub fn describe(&self) -> String {
        describe_layer(self.ir_id.map(|i| i.to_string()).as_deref(), &self.name, &self.op_type, &self.version)
    }
}

/// A model graph. Node ids are indices into `nodes`.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub ir_version: u32,
    pub nodes: Vec<Node>,
    pub rt_info: Option<XmlElement>,
}

impl Graph {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// Parameters in model order.
    pub fn parameters(&self) -> Vec<NodeId> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_parameter()).collect()
    }

    /// Results in model order.
    pub fn results(&self) -> Vec<NodeId> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_result()).collect()
    }

    /// Port info of an outlet.
    pub fn outlet_info(&self, o: Outlet) -> &PortInfo {
        &self.nodes[o.node].outputs[o.port]
    }

    /// The input name a user passes for a parameter: its first tensor name, else the node name.
    pub fn parameter_name(&self, id: NodeId) -> &str {
        let n = &self.nodes[id];
        n.outputs.first().and_then(|p| p.names.first()).map(|s| s.as_str()).unwrap_or(&n.name)
    }

    /// Finds a parameter by tensor name or node name.
    /// The sample's tensor for each parameter in `params`, found by the parameter's name, its
    /// node name or a tensor name, and checked against the parameter ([`check_input_tensor`]).
    pub fn bind_sample<'s>(&self, params: &[NodeId], sample: &'s [(String, Tensor)]) -> Result<Vec<&'s Tensor>> {
        params
            .iter()
            .map(|&p| {
                let name = self.parameter_name(p);
                let node = &self.nodes[p];
                let t = sample
                    .iter()
                    .find(|(n, _)| n == name || *n == node.name || node.outputs[0].names.iter().any(|x| x == n))
                    .map(|(_, t)| t)
                    .ok_or_else(|| {
                        let given: Vec<&str> = sample.iter().map(|(n, _)| n.as_str()).collect();
                        Error::invalid(format!("input '{name}' is missing (given: {given:?})"))
                    })?;
                let info = &node.outputs[0];
                check_input_tensor(name, info.element_type, &info.shape, t, "")?;
                Ok(t)
            })
            .collect()
    }

    pub fn find_parameter(&self, name: &str) -> Option<NodeId> {
        self.parameters().into_iter().find(|&id| {
            let n = &self.nodes[id];
            n.name == name || n.outputs.first().is_some_and(|p| p.names.iter().any(|x| x == name))
        })
    }

    pub fn find_node(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Consumers of every outlet: (consumer node, input index).
    pub fn consumers(&self) -> HashMap<Outlet, Vec<(NodeId, usize)>> {
        let mut m: HashMap<Outlet, Vec<(NodeId, usize)>> = HashMap::new();
        for (id, n) in self.nodes.iter().enumerate() {
            for (k, &o) in n.inputs.iter().enumerate() {
                m.entry(o).or_default().push((id, k));
            }
        }
        m
    }

    /// A topological order; ties go to the lower node id, so the order is stable and parameters
    /// keep their relative order. Fails on a cycle, naming a layer on it.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let n = self.nodes.len();
        let mut indeg = vec![0usize; n];
        let mut succ: Vec<Vec<NodeId>> = vec![vec![]; n];
        for (id, node) in self.nodes.iter().enumerate() {
            for o in &node.inputs {
                if o.node >= n {
                    return Err(Error::internal(format!("{} reads from missing node {}", node.describe(), o.node)));
                }
                indeg[id] += 1;
                succ[o.node].push(id);
            }
        }
        let mut heap: BinaryHeap<std::cmp::Reverse<NodeId>> =
            (0..n).filter(|&i| indeg[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(id)) = heap.pop() {
            order.push(id);
            for &s in &succ[id] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    heap.push(std::cmp::Reverse(s));
                }
            }
        }
        if order.len() != n {
            let cycle = self.cycle_among(|i| indeg[i] > 0);
            let path: Vec<String> = cycle.iter().map(|&i| self.nodes[i].describe()).collect();
            let back = cycle.first().map(|&i| format!(" -> back to {}", self.nodes[i].describe())).unwrap_or_default();
            return Err(Error::invalid(format!("the graph has a cycle: {}{back}", path.join(" -> "))));
        }
        Ok(order)
    }

    /// One cycle, in edge order, among the nodes `left` over by a topological sort. Each of them
    /// reads from another one left over (else it would have been sorted), so walking back through
    /// those inputs must revisit a node; the walk from that node on is the cycle.
    fn cycle_among(&self, left: impl Fn(NodeId) -> bool) -> Vec<NodeId> {
        let Some(start) = (0..self.nodes.len()).find(|&i| left(i)) else { return vec![] };
        let mut seen_at: HashMap<NodeId, usize> = HashMap::new();
        let mut walk = vec![];
        let mut cur = start;
        loop {
            if let Some(&pos) = seen_at.get(&cur) {
                let mut cycle = walk.split_off(pos);
                // The walk went against the edges.
                cycle.reverse();
                return cycle;
            }
            seen_at.insert(cur, walk.len());
            walk.push(cur);
            match self.nodes[cur].inputs.iter().map(|o| o.node).find(|&p| left(p)) {
                Some(p) => cur = p,
                None => return walk,
            }
        }
    }

    /// Appends a node and returns its id.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Adds a Const holding `value`.
    pub fn add_const(&mut self, name: impl Into<String>, value: Tensor) -> NodeId {
        self.add_shared_const(name, Arc::new(value))
    }

    /// Adds a Const sharing `value` with whoever else holds it (no copy).
    pub fn add_shared_const(&mut self, name: impl Into<String>, value: Arc<Tensor>) -> NodeId {
        let et = value.element_type();
        let mut n = Node::new(name, "Const", "opset1");
        let shape = value.shape().to_vec();
        n.attrs = Attrs(vec![
            ("element_type".into(), et.ir_name().into()),
            ("shape".into(), shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        ]);
        n.outputs.push(PortInfo::new(et, PartialShape::from_static(&shape)));
        n.value = Some(value);
        n.const_type = Some(et);
        self.add_node(n)
    }

    /// Adds a node reading `inputs`; its input port infos are copied from the producers.
    pub fn add_op(
        &mut self,
        name: impl Into<String>,
        op_type: &str,
        version: &str,
        attrs: Attrs,
        inputs: Vec<Outlet>,
        outputs: Vec<PortInfo>,
    ) -> NodeId {
        let mut n = Node::new(name, op_type, version);
        n.attrs = attrs;
        n.input_ports = inputs
            .iter()
            .map(|o| {
                let p = self.outlet_info(*o);
                PortInfo::new(p.element_type, p.shape.clone())
            })
            .collect();
        n.inputs = inputs;
        n.outputs = outputs;
        self.add_node(n)
    }

    /// Makes input `input` of `consumer` read from `from`.
    pub fn set_input(&mut self, consumer: NodeId, input: usize, from: Outlet) {
        self.nodes[consumer].inputs[input] = from;
    }

    /// Whether an outlet is computable from constants only (weights, shape constants).
    pub fn constant_outlets(&self) -> Result<Vec<bool>> {
        let order = self.topo_order()?;
        let mut is_const = vec![false; self.nodes.len()];
        for id in order {
            let n = &self.nodes[id];
            is_const[id] = if n.is_const() {
                true
            } else if n.is_parameter() || n.is_result() || n.is_sink() || n.reads_state() || n.inputs.is_empty() {
                false
            } else {
                n.inputs.iter().all(|o| is_const[o.node])
            };
        }
        Ok(is_const)
    }

    /// The graph without the nodes [`Graph::remove_dead_nodes`] removes.
    pub fn without_dead_nodes(mut self) -> Graph {
        self.remove_dead_nodes();
        self
    }

    /// Whether the model keeps state between inferences (variables: `ReadValue`/`Assign`, an
    /// LLM's KV cache).
    pub fn is_stateful(&self) -> bool {
        self.nodes.iter().any(|n| n.reads_state() || n.is_sink())
    }

    /// Whether each node is one a Result or a sink depends on (Parameters always are).
    pub fn live_nodes(&self) -> Vec<bool> {
        let n = self.nodes.len();
        let mut live = vec![false; n];
        let mut stack: Vec<NodeId> = (0..n)
            .filter(|&i| {
                let node = &self.nodes[i];
                node.is_result() || node.is_sink() || node.is_parameter()
            })
            .collect();
        while let Some(id) = stack.pop() {
            if live[id] {
                continue;
            }
            live[id] = true;
            stack.extend(self.nodes[id].inputs.iter().map(|o| o.node).filter(|&p| p < n));
        }
        live
    }

    /// Drops nodes that no Result or sink depends on (Parameters are always kept) and renumbers
    /// ids.
    pub fn remove_dead_nodes(&mut self) {
        let n = self.nodes.len();
        let live = self.live_nodes();
        let mut remap = vec![usize::MAX; n];
        let mut kept = Vec::with_capacity(n);
        for (i, node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if live[i] {
                remap[i] = kept.len();
                kept.push(node);
            }
        }
        for node in &mut kept {
            for o in &mut node.inputs {
                o.node = remap[o.node];
            }
        }
        self.nodes = kept;
    }

    /// Histogram of op types (excluding nothing), sorted by name.
    pub fn op_histogram(&self) -> Vec<(String, usize)> {
        let mut m: std::collections::BTreeMap<String, usize> = Default::default();
        for n in &self.nodes {
            *m.entry(n.op_type.clone()).or_default() += 1;
        }
        m.into_iter().collect()
    }
}
