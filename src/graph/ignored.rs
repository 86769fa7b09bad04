//! The user's ignored scope (layers kept in floating point: names, patterns over names, op types
//! with attributes) and how it matches a graph's nodes: one matcher for quantization and weight
//! compression.

use super::{Graph, NodeId};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// An op type to skip, optionally only when its attributes match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct IgnoredOperation {
    #[serde(rename = "type")]
    pub op_type: String,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Layers kept in floating point: names, regular expressions over names, op types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IgnoredScope {
    #[serde(alias = "scope")]
    pub names: Vec<String>,
    pub patterns: Vec<String>,
    #[serde(alias = "operations")]
    pub types: Vec<IgnoredOperation>,
}

/// The ignored scope's patterns, anchored: a pattern matches whole layer names.
pub fn ignored_patterns(scope: &IgnoredScope) -> Result<Vec<regex::Regex>> {
    scope
        .patterns
        .iter()
        .map(|p| {
            regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| Error::invalid(format!("ignored pattern '{p}': {e}")))
        })
        .collect()
}

/// Names and patterns of the ignored scope that match no layer: usually a typo, and otherwise
/// silent. Unparsable patterns are left to [`ignored_patterns`] to report.
pub fn unmatched_ignored(graph: &Graph, scope: &IgnoredScope) -> Vec<String> {
    let mut out = vec![];
    for n in &scope.names {
        if !graph.nodes.iter().any(|x| &x.name == n) {
            out.push(format!("ignored scope: no layer is named '{n}'"));
        }
    }
    for p in &scope.patterns {
        let Ok(re) = regex::Regex::new(&format!("^(?:{p})$")) else { continue };
        if !graph.nodes.iter().any(|x| re.is_match(&x.name)) {
            out.push(format!("ignored scope: pattern '{p}' matches no layer"));
        }
    }
    out
}

/// Whether a node matches the user's ignored scope; returns the reason.
pub fn ignored_reason(graph: &Graph, id: NodeId, scope: &IgnoredScope, regexes: &[regex::Regex]) -> Option<String> {
    let n = &graph.nodes[id];
    if scope.names.iter().any(|s| s == &n.name) {
        return Some("ignored scope: name".into());
    }
    if let Some(r) = regexes.iter().find(|r| r.is_match(&n.name)) {
        return Some(format!("ignored scope: pattern '{}'", r.as_str()));
    }
    for t in &scope.types {
        if t.op_type == n.op_type {
            let attrs_match = t.attributes.iter().all(|(k, v)| {
                let want = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                n.attrs.get(k).is_some_and(|have| {
                    have.replace(' ', "") == want.replace(' ', "").trim_matches(['[', ']']) || have == want
                })
            });
            if attrs_match {
                return Some(format!("ignored scope: type {}", t.op_type));
            }
        }
    }
    None
}
