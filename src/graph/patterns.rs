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
