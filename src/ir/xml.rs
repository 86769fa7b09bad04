//! A small DOM over quick-xml: the IR is at most a few MB of XML, so a tree is simple and fast.

use crate::graph::XmlElement;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// "line L, column C" (1-based; the column counts bytes) of a byte offset, for messages.
fn line_of(text: &str, pos: usize) -> String {
    let before = &text.as_bytes()[..pos.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}")
}

fn element_from(start: &BytesStart, text: &str, pos: usize) -> Result<XmlElement, String> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| format!("{}: bad attribute in <{name}>: {e}", line_of(text, pos)))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|e| format!("{}: bad attribute value in <{name}>: {e}", line_of(text, pos)))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(XmlElement { name, attrs, children: vec![], text: String::new() })
}

/// Parses a whole document into its root element. Errors carry the line number.
pub fn parse_document(text: &str) -> Result<XmlElement, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<XmlElement> = Vec::new();
    let mut root: Option<XmlElement> = None;
    loop {
        let pos = reader.buffer_position() as usize;
        let ev = reader.read_event().map_err(|e| format!("{}: malformed XML: {e}", line_of(text, pos)))?;
        match ev {
            Event::Start(s) => stack.push(element_from(&s, text, pos)?),
            Event::Empty(s) => {
                let el = element_from(&s, text, pos)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(format!("{}: more than one root element", line_of(text, pos))),
                }
            }
            Event::End(e) => {
                let el = stack.pop().ok_or_else(|| format!("{}: unexpected closing tag", line_of(text, pos)))?;
                if e.name().as_ref() != el.name.as_bytes() {
                    return Err(format!(
                        "{}: closing tag </{}> does not match <{}>",
                        line_of(text, pos),
                        String::from_utf8_lossy(e.name().as_ref()),
                        el.name
                    ));
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(format!("{}: more than one root element", line_of(text, pos))),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.unescape().map_err(|e| format!("{}: bad text: {e}", line_of(text, pos)))?;
                    top.text.push_str(s.trim());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("unexpected end of document inside <{}>", open.name));
    }
    root.ok_or_else(|| "the document has no root element".to_string())
}

/// Escapes text for an attribute value.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Writes an element (rt_info sections) with `indent` tabs.
pub fn write_element(out: &mut String, el: &XmlElement, indent: usize) {
    let tabs = "\t".repeat(indent);
    out.push_str(&tabs);
    out.push('<');
    out.push_str(&el.name);
    for (k, v) in &el.attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(&escape(v));
        out.push('"');
    }
    if el.children.is_empty() && el.text.is_empty() {
        out.push_str(" />\n");
        return;
    }
    out.push('>');
    if !el.text.is_empty() {
        out.push_str(&escape(&el.text));
    }
    if !el.children.is_empty() {
        out.push('\n');
        for c in &el.children {
            write_element(out, c, indent + 1);
        }
        out.push_str(&tabs);
    }
    out.push_str("</");
    out.push_str(&el.name);
    out.push_str(">\n");
}
