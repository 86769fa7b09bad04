//! The docs keep the header's promises (#39): every `ovpot_*` / `OVPOT_*` identifier that
//! README.md or docs/*.md names exists in include/ovpot.h, the number of functions docs/c-api.md
//! states is the header's, and its list of handles is every opaque handle type of the header.
//! Names are written out in full in the docs (`ovpot_session_set_max_drop`, not `_max_drop`) so
//! that they can be checked; shorthands are refused.

use regex::Regex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What include/ovpot.h declares.
#[derive(Debug, Default)]
struct Header {
    /// Exported functions.
    functions: BTreeSet<String>,
    /// Opaque handle types (`typedef struct ovpot_x_t ovpot_x_t;`).
    handles: BTreeSet<String>,
    /// Every `ovpot_*` / `OVPOT_*` name outside comments: functions, types, enum values, macros,
    /// parameter-free typedefs.
    identifiers: BTreeSet<String>,
}

fn strip_comments(text: &str) -> String {
    let block = Regex::new(r"(?s)/\*.*?\*/").unwrap();
    let line = Regex::new(r"//[^\n]*").unwrap();
    line.replace_all(&block.replace_all(text, ""), "").into_owned()
}

fn parse_header(text: &str) -> Header {
    let code = strip_comments(text);
    let mut h = Header::default();
    let ident = Regex::new(r"\b(?:ovpot|OVPOT)_[A-Za-z0-9_]+").unwrap();
    h.identifiers = ident.find_iter(&code).map(|m| m.as_str().to_string()).collect();
    // A declaration starts at column 0 and is not a typedef (callback types are typedefs).
    let function = Regex::new(r"(?m)^[A-Za-z][^(\n]*?\b(ovpot_[a-z0-9_]+)\(").unwrap();
    for c in function.captures_iter(&code) {
        if !c[0].starts_with("typedef") {
            h.functions.insert(c[1].to_string());
        }
    }
    let handle = Regex::new(r"typedef struct (ovpot_[a-z0-9_]+_t) (ovpot_[a-z0-9_]+_t);").unwrap();
    for c in handle.captures_iter(&code) {
        if c[1] == c[2] {
            h.handles.insert(c[1].to_string());
        }
    }
    h
}

/// Where a doc names an identifier: (line number, name).
type Mention = (usize, String);

/// The `ovpot_*` / `OVPOT_*` identifiers a Markdown text names. Not identifiers: environment
/// variables (`$OVPOT_PEERS`, `OVPOT_BLESS=1`), file names (`ovpot_report.json`) and patterns
/// (`ovpot_*`, `ovpot_*_t`).
fn doc_identifiers(text: &str) -> Vec<Mention> {
    let ident = Regex::new(r"\b(?:ovpot|OVPOT)_[A-Za-z0-9_]*").unwrap();
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        for m in ident.find_iter(line) {
            let before = line[..m.start()].chars().next_back();
            let mut after = line[m.end()..].chars();
            let (next, next2) = (after.next(), after.next());
            let env = before == Some('$') || next == Some('=');
            let file = next == Some('.') && next2.is_some_and(|c| c.is_ascii_alphabetic());
            let pattern = m.as_str().ends_with('_');
            if !(env || file || pattern) {
                out.push((n + 1, m.as_str().to_string()));
            }
        }
    }
    out
}

/// The names `text` mentions that the header does not declare.
fn missing_identifiers(text: &str, header: &Header) -> Vec<Mention> {
    doc_identifiers(text).into_iter().filter(|(_, name)| !header.identifiers.contains(name)).collect()
}

/// Names written so that they cannot be checked: a suffix standing for a whole name
/// (`` `_max_drop` ``) or two names joined by a slash (`ovpot_ir_buffer_xml/weights`).
fn shorthands(text: &str) -> Vec<Mention> {
    let suffix = Regex::new(r"`_[a-z][a-z0-9_]*`").unwrap();
    let joined = Regex::new(r"\bovpot_[a-z0-9_]+/[a-z_]").unwrap();
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        for m in suffix.find_iter(line).chain(joined.find_iter(line)) {
            out.push((n + 1, m.as_str().to_string()));
        }
    }
    out
}

/// The function counts a text states, in the form the docs use: "75 `ovpot_*` functions".
fn stated_function_counts(text: &str) -> Vec<(usize, usize)> {
    let count = Regex::new(r"(\d+) (?:exported )?`ovpot_\*` (?:functions|symbols)").unwrap();
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        for c in count.captures_iter(line) {
            out.push((n + 1, c[1].parse().unwrap()));
        }
    }
    out
}

/// The handle types a doc's handle list names: the Markdown list item that starts with
/// `**Handles**`, up to the next item.
fn stated_handles(text: &str) -> Option<BTreeSet<String>> {
    let start = text.find("- **Handles**")?;
    let rest = &text[start + 2..];
    let item = &rest[..rest.find("\n- ").unwrap_or(rest.len())];
    let handle = Regex::new(r"\bovpot_[a-z0-9_]+_t\b").unwrap();
    Some(handle.find_iter(item).map(|m| m.as_str().to_string()).collect())
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header() -> Header {
    let text = std::fs::read_to_string(root().join("include/ovpot.h")).expect("include/ovpot.h");
    let h = parse_header(&text);
    assert!(h.functions.len() > 40 && h.handles.len() >= 8, "the header parser found too little: {h:?}");
    h
}

/// README.md and every Markdown file in docs/.
fn docs() -> Vec<(PathBuf, String)> {
    let mut paths = vec![root().join("README.md")];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    in_docs.sort();
    paths.extend(in_docs);
    paths.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

fn describe(found: &[(PathBuf, Mention)]) -> String {
    let lines: Vec<String> = found
        .iter()
        .map(|(p, (n, name))| format!("  {}:{n}: {name}", p.strip_prefix(root()).unwrap_or(p).display()))
        .collect();
    lines.join("\n")
}

#[test]
fn every_identifier_the_docs_name_is_in_the_header() {
    let h = header();
    let mut missing = vec![];
    let mut named = 0;
    for (path, text) in docs() {
        named += doc_identifiers(&text).len();
        missing.extend(missing_identifiers(&text, &h).into_iter().map(|m| (path.clone(), m)));
    }
    assert!(named > 50, "only {named} identifiers found in the docs");
    assert!(missing.is_empty(), "named in the docs but not in include/ovpot.h:\n{}", describe(&missing));
}

#[test]
fn the_docs_write_names_in_full() {
    let mut found = vec![];
    for (path, text) in docs() {
        found.extend(shorthands(&text).into_iter().map(|m| (path.clone(), m)));
    }
    assert!(found.is_empty(), "write these names in full, so that they are checked:\n{}", describe(&found));
}

#[test]
fn the_stated_function_count_is_the_headers() {
    let h = header();
    let mut stated = 0;
    for (path, text) in docs() {
        for (line, n) in stated_function_counts(&text) {
            stated += 1;
            assert_eq!(
                n,
                h.functions.len(),
                "{}:{line} says {n} functions; include/ovpot.h declares {}",
                path.display(),
                h.functions.len()
            );
        }
    }
    let c_api = std::fs::read_to_string(root().join("docs/c-api.md")).unwrap();
    assert!(!stated_function_counts(&c_api).is_empty(), "docs/c-api.md no longer states how many functions there are");
    assert!(stated > 0);
}

#[test]
fn the_handle_list_is_every_handle_of_the_header() {
    let h = header();
    let c_api = std::fs::read_to_string(root().join("docs/c-api.md")).unwrap();
    let listed = stated_handles(&c_api).expect("docs/c-api.md has a '- **Handles**' item");
    let missing: Vec<_> = h.handles.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&h.handles).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/c-api.md's handles: missing {missing:?}, not handles {extra:?}"
    );
    // "each has a `*_free` that accepts NULL"
    for handle in &h.handles {
        let free = format!("{}_free", handle.trim_end_matches("_t"));
        assert!(h.functions.contains(&free), "{handle} has no {free}");
    }
}

// The checks on made-up texts: they find what they are for.

const TINY_HEADER: &str = r#"
/** The status. `ovpot_not_declared` in a comment does not count. */
typedef enum { OVPOT_OK = 0, OVPOT_FAILED = 1 } ovpot_status_e;
#define OVPOT_ABI_VERSION 1
/** A model. */
typedef struct ovpot_model_t ovpot_model_t;
typedef struct ovpot_dataset_t ovpot_dataset_t;
typedef int (*ovpot_get_item_callback_t)(void *user_data, size_t index);
ovpot_status_e ovpot_model_read(const char *xml_path,
                                ovpot_model_t **model);
void ovpot_model_free(ovpot_model_t *model);
const char *ovpot_last_error(void);
"#;

#[test]
fn the_header_parser_finds_functions_handles_and_names() {
    let h = parse_header(TINY_HEADER);
    assert_eq!(h.functions, ["ovpot_last_error", "ovpot_model_free", "ovpot_model_read"].map(String::from).into());
    assert_eq!(h.handles, ["ovpot_dataset_t", "ovpot_model_t"].map(String::from).into());
    for name in ["OVPOT_OK", "OVPOT_ABI_VERSION", "ovpot_status_e", "ovpot_get_item_callback_t"] {
        assert!(h.identifiers.contains(name), "{name}");
    }
    assert!(!h.identifiers.contains("ovpot_not_declared"), "comments are not declarations");
}

#[test]
fn a_doc_naming_a_function_the_header_lacks_fails() {
    let h = parse_header(TINY_HEADER);
    let doc = "Read with `ovpot_model_read`, free with ovpot_model_free; check `OVPOT_OK`.\n\
               Then call `ovpot_model_frobnicate(model)` and test for OVPOT_TIMEOUT.\n\
               Not names: `$OVPOT_PEERS`, `OVPOT_BLESS=1`, `ovpot_report.json`, the `ovpot_*` functions.\n";
    let missing = missing_identifiers(doc, &h);
    assert_eq!(missing, [(2, "ovpot_model_frobnicate".to_string()), (2, "OVPOT_TIMEOUT".to_string())]);
    assert!(missing_identifiers("`ovpot_model_read`, `ovpot_last_error()`", &h).is_empty());
}

#[test]
fn counts_handle_lists_and_shorthands_are_read() {
    let doc = "intro\n- **Handles**: `ovpot_model_t`, `ovpot_dataset_t`;\n  each has a `*_free`.\n- **Errors**: `ovpot_status_e`\n\
               its 3 `ovpot_*` functions exported; setters (`ovpot_session_set_preset`, `_target_device`),\n\
               `ovpot_ir_buffer_xml/weights`\n";
    assert_eq!(stated_handles(doc).unwrap(), ["ovpot_dataset_t", "ovpot_model_t"].map(String::from).into());
    assert_eq!(stated_function_counts(doc), [(5, 3)]);
    assert_eq!(shorthands(doc), [(5, "`_target_device`".to_string()), (6, "ovpot_ir_buffer_xml/w".to_string())]);
    assert_eq!(stated_handles("no list here"), None);
}
