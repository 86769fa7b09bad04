//! NNCF's ignored patterns for transformers, matched on the graph: subgraphs whose MatMul must
//! stay in floating point whatever the quantization (a rotary embedding's angles are positions
//! times `inv_freq`: an 8-bit grid would shift every angle). Weight compression and quantization
//! both skip them, as NNCF does (`ROPE`, `SAM_PE` in NNCF's OpenVINO ignored patterns).

use super::{Graph, NodeId, Outlet};
use std::collections::BTreeMap;

/// A matched pattern's name, for reports: `pattern: RoPE`.
pub const ROPE: &str = "RoPE";
pub const SAM_PE: &str = "SAM positional embedding";

/// Every node of every rotary / SAM positional-embedding subgraph, with the pattern's name.
///
/// RoPE (three alternatives): `MatMul → Transpose → Concat(t, t) → {Cos, Sin}`,
/// `MatMul → Concat(t, t) → {Cos, Sin}`, `MatMul → Transpose → {Cos, Sin}`; the Concat takes the
/// same tensor twice, and one tensor feeds both a Cos and a Sin. SAM:
/// `MatMul → Multiply → {Cos, Sin} → Concat` (both into the same Concat). Other consumers of the
/// matched nodes are allowed, as in NNCF's non-strict matching.
pub fn transformer_ignored(graph: &Graph) -> BTreeMap<NodeId, &'static str> {
    let consumers = graph.consumers();
    let readers = |id: NodeId| -> Vec<NodeId> {
        let mut v: Vec<NodeId> =
            consumers.get(&Outlet::new(id, 0)).map(|c| c.iter().map(|x| x.0).collect()).unwrap_or_default();
        v.sort_unstable();
        v.dedup();
        v
    };
    let is = |id: NodeId, t: &str| graph.nodes[id].op_type == t;
    let mut found: BTreeMap<NodeId, &'static str> = BTreeMap::new();
    for (id, n) in graph.nodes.iter().enumerate() {
        if n.op_type != "MatMul" {
            continue;
        }
        // RoPE: walk MatMul → [Transpose] → [Concat(t, t)], then need a Cos and a Sin reader.
        let mut chains: Vec<Vec<NodeId>> = vec![vec![id]];
        for t in readers(id).into_iter().filter(|&r| is(r, "Transpose")) {
            chains.push(vec![id, t]);
        }
        let mut with_concat = vec![];
        for chain in &chains {
            let last = *chain.last().expect("non-empty");
            for c in readers(last).into_iter().filter(|&r| is(r, "Concat")) {
                let ins = &graph.nodes[c].inputs;
                if ins.len() == 2 && ins[0] == Outlet::new(last, 0) && ins[1] == ins[0] {
                    let mut ext = chain.clone();
                    ext.push(c);
                    with_concat.push(ext);
                }
            }
        }
        // The plain MatMul → {Cos, Sin} is no alternative of NNCF's.
        chains.retain(|c| c.len() > 1);
        chains.extend(with_concat);
        for chain in chains {
            let last = *chain.last().expect("non-empty");
            let r = readers(last);
            let cos = r.iter().copied().find(|&x| is(x, "Cos"));
            let sin = r.iter().copied().find(|&x| is(x, "Sin"));
            if let (Some(cos), Some(sin)) = (cos, sin) {
                for x in chain.into_iter().chain([cos, sin]) {
                    found.insert(x, ROPE);
                }
            }
        }
        // SAM positional embedding.
        for m in readers(id).into_iter().filter(|&r| is(r, "Multiply")) {
            let r = readers(m);
            let concat_of =
                |x: NodeId| -> Vec<NodeId> { readers(x).into_iter().filter(|&c| is(c, "Concat")).collect() };
            for cos in r.iter().copied().filter(|&x| is(x, "Cos")) {
                for sin in r.iter().copied().filter(|&x| is(x, "Sin")) {
                    let shared: Vec<NodeId> =
                        concat_of(cos).into_iter().filter(|c| concat_of(sin).contains(c)).collect();
                    if let Some(&c) = shared.first() {
                        for x in [id, m, cos, sin, c] {
                            found.entry(x).or_insert(SAM_PE);
                        }
                    }
                }
            }
        }
    }
    found
}

/// The reason a report gives for a node in [`transformer_ignored`].
pub fn reason(pattern: &str) -> String {
    format!("pattern: {pattern} (kept in floating point, as NNCF's ignored patterns keep it)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Attrs, Node, PartialShape, PortInfo};
    use crate::tensor::{ElementType, Tensor};

    fn port() -> PortInfo {
        PortInfo::new(ElementType::F32, PartialShape::from_static(&[1, 4, 4]))
    }

    fn op(g: &mut Graph, name: &str, t: &str, inputs: Vec<Outlet>) -> Outlet {
        Outlet::new(g.add_op(name, t, "opset1", Attrs::default(), inputs, vec![port()]), 0)
    }

    /// positions -> MatMul(inv_freq) -> [Transpose] -> [Concat(t, t) or Concat(t, other)] -> Cos, Sin.
    fn rope(transpose: bool, concat: Option<bool>) -> (Graph, NodeId) {
        let mut g = Graph::default();
        let mut p = Node::new("pos", "Parameter", "opset1");
        p.outputs.push(port());
        let x = Outlet::new(g.add_node(p), 0);
        let w = Outlet::new(g.add_const("inv_freq", Tensor::f32_from_vec(&[1, 4, 1], vec![1.0; 4]).unwrap()), 0);
        let mm = op(&mut g, "mm", "MatMul", vec![w, x]);
        let mut t = mm;
        if transpose {
            t = op(&mut g, "tr", "Transpose", vec![t]);
        }
        match concat {
            Some(true) => t = op(&mut g, "cat", "Concat", vec![t, t]),
            Some(false) => {
                let other = op(&mut g, "neg", "Negative", vec![t]);
                t = op(&mut g, "cat", "Concat", vec![t, other]);
            }
            None => {}
        }
        op(&mut g, "cos", "Cos", vec![t]);
        op(&mut g, "sin", "Sin", vec![t]);
        (g, mm.node)
    }

    #[test]
    fn rope_alternatives_as_nncf_has_them() {
        for (transpose, concat, matched) in [
            (true, Some(true), true),
            (false, Some(true), true),
            (true, None, true),
            // NNCF's alternatives need a Transpose or a Concat between MatMul and Cos/Sin ...
            (false, None, false),
            // ... and a Concat of the same tensor twice.
            (true, Some(false), false),
        ] {
            let (g, mm) = rope(transpose, concat);
            let found = transformer_ignored(&g);
            assert_eq!(found.get(&mm) == Some(&ROPE), matched, "transpose {transpose}, concat {concat:?}: {found:?}");
            if matched {
                assert!(found.keys().any(|&i| g.nodes[i].op_type == "Cos"));
            }
        }
    }

    #[test]
    fn sam_positional_embedding() {
        let mut g = Graph::default();
        let mut p = Node::new("coords", "Parameter", "opset1");
        p.outputs.push(port());
        let x = Outlet::new(g.add_node(p), 0);
        let w = Outlet::new(g.add_const("gauss", Tensor::f32_from_vec(&[1, 4, 4], vec![1.0; 16]).unwrap()), 0);
        let mm = op(&mut g, "mm", "MatMul", vec![x, w]);
        let m = op(&mut g, "mul", "Multiply", vec![mm, w]);
        let (c, s) = (op(&mut g, "cos", "Cos", vec![m]), op(&mut g, "sin", "Sin", vec![m]));
        op(&mut g, "cat", "Concat", vec![s, c]);
        let found = transformer_ignored(&g);
        assert_eq!(found.get(&mm.node), Some(&SAM_PE));
        assert_eq!(found.len(), 5);
    }
}
