//! The library's modules form no import cycle: `a` depends on `b` when `a`'s source (outside its
//! `#[cfg(test)] mod tests`) names `crate::b::…`, `super::…` resolving to `b`, or (for a parent
//! module) a child's path. A parent names its children; a child never names its parent's own items,
//! so a module's façade (`mod.rs`) re-exports and sequences, and the shared items live in a child.

use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path ("quant::stats") → its file, for every `.rs` under `src/` except the binaries.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != src.join("bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The longest module prefix of `path` ("quant::stats::Request" → "quant::stats").
fn resolve<'a>(mods: &'a BTreeMap<String, PathBuf>, path: &str) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len()).rev().find_map(|i| mods.get_key_value(&parts[..i].join("::")).map(|(k, _)| k.as_str()))
}

/// The source without tests and comments.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let tests = Regex::new(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod \w+").unwrap();
    let text = match tests.find(&text) {
        Some(m) => &text[..m.start()],
        None => &text[..],
    };
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// `use crate::a::{b::C, d}` → ["a::b::C", "a::d"].
fn expand_use(prefix: &str, tree: &str) -> Vec<String> {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let (mut depth, mut cur, mut out) = (0, String::new(), vec![]);
        for ch in inner.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if ch == ',' && depth == 0 {
                out.extend(expand_use(prefix, &cur));
                cur.clear();
            } else {
                cur.push(ch);
            }
        }
        if !cur.trim().is_empty() {
            out.extend(expand_use(prefix, &cur));
        }
        return out;
    }
    match tree.find("::{") {
        Some(j) => expand_use(&format!("{prefix}{}::", &tree[..j]), &tree[j + 2..]),
        None => vec![format!("{prefix}{}", tree.split(" as ").next().unwrap_or(tree).trim())],
    }
}

fn edges(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let use_crate = Regex::new(r"use\s+crate::([^;]+);").unwrap();
    let path_crate = Regex::new(r"crate::((?:[a-z_0-9]+::)*[A-Za-z_0-9]+)").unwrap();
    let path_super = Regex::new(r"super::((?:[a-z_0-9]+::)*[A-Za-z_0-9]+)").unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, path) in mods {
        let code = code_of(path);
        let mut targets: Vec<String> = vec![];
        for c in use_crate.captures_iter(&code) {
            let tree: String = c[1].chars().filter(|ch| !ch.is_whitespace() || *ch == ' ').collect();
            targets.extend(expand_use("", &tree.replace('\n', " ")));
        }
        targets.extend(path_crate.captures_iter(&code).map(|c| c[1].to_string()));
        let is_parent = path.ends_with("mod.rs") || path.ends_with("lib.rs");
        // `super` of a module is its parent, whether the module is a file or a folder.
        let parts: Vec<&str> = if m.is_empty() { vec![] } else { m.split("::").collect() };
        let base = &parts[..parts.len().saturating_sub(1)];
        for c in path_super.captures_iter(&code) {
            targets.push(base.iter().copied().chain([&c[1]]).collect::<Vec<_>>().join("::"));
        }
        if is_parent {
            // A parent names its children by their bare names.
            let children = mods.keys().filter(|k| match k.rsplit_once("::") {
                Some((p, _)) => p == m,
                None => m.is_empty() && !k.is_empty(),
            });
            for child in children {
                let leaf = child.rsplit("::").next().unwrap();
                let named = Regex::new(&format!(r"(^|[^:\w]){leaf}::")).unwrap();
                if named.is_match(&code) {
                    targets.push(child.clone());
                }
            }
        }
        let set = out.entry(m.clone()).or_default();
        for t in targets {
            if let Some(r) = resolve(mods, &t) {
                if r != m {
                    set.insert(r.to_string());
                }
            }
        }
    }
    out
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = vec![];
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s =
        State { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), out: vec![] };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_import_cycle_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    assert!(mods.len() > 40, "found only {} modules under {}", mods.len(), src.display());
    let edges = edges(&mods);
    let found = cycles(&edges);
    let described: Vec<String> = found
        .iter()
        .map(|c| {
            let arrows: Vec<String> = c
                .iter()
                .map(|m| {
                    let inside: Vec<&str> = edges[m].iter().filter(|t| c.contains(t)).map(String::as_str).collect();
                    format!("  {m} -> {}", inside.join(", "))
                })
                .collect();
            format!("cycle {:?}:\n{}", c, arrows.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "{} import cycle(s):\n{}", found.len(), described.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle() {
    // A test that cannot fail proves nothing: two modules naming each other are a cycle.
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.entry("a".into()).or_default().insert("b".into());
    e.entry("b".into()).or_default().insert("a".into());
    e.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycles(&e), vec![vec!["a".to_string(), "b".to_string()]]);
    let tree = expand_use("", "quant::{stats::{Request, Collected}, saturation::GroupChoice as G}");
    assert_eq!(tree, vec!["quant::stats::Request", "quant::stats::Collected", "quant::saturation::GroupChoice"]);
}
