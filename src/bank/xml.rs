//! A small, safe XML tree for bank messages: no DTD processing, no entity expansion beyond the
//! five predefined entities and character references, bounded size and depth. Element names
//! are kept as local names (prefixes dropped); the namespace of each element is resolved.

use quick_xml::events::Event;
use std::collections::HashSet;
use std::sync::Arc;

/// Bank files above this size are refused before they are read (a statement this large is
/// asked of the bank per day or per account instead).
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
const MAX_DEPTH: usize = 64;
/// Elements in one document: with `MAX_BYTES`, what bounds the tree's memory (~150 bytes an
/// element, names and namespaces shared; 200 MB at most in all), whatever the file's shape.
/// A statement of some 20,000 to 60,000 entries fits (depending on how much detail the bank
/// writes per entry); a larger one is refused, never read half-way.
pub const MAX_ELEMENTS: usize = 800_000;

#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Local name, shared by every element of that name in the document.
    pub name: Arc<str>,
    pub ns: Option<Arc<str>>,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("is {0} bytes, over the {MAX_BYTES}-byte limit for bank files")]
    TooLarge(usize),
    #[error("contains a DTD (<!DOCTYPE …>); bank files must not, and none is processed")]
    Doctype,
    #[error(
        "uses the entity `&{0};`, which is not one of XML's predefined entities; entities are not expanded"
    )]
    Entity(String),
    #[error("nests elements more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error(
        "has more than {MAX_ELEMENTS} elements; ask the bank for smaller files (per day or per account)"
    )]
    TooManyElements,
    #[error("is not well-formed XML: {0}")]
    Malformed(String),
    #[error("is empty or has no root element")]
    Empty,
}

impl Node {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| &*c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| &*c.name == name)
    }

    /// Follows a path of local names: `node.at(&["GrpHdr", "MsgId"])`.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        let mut n = self;
        for p in path {
            n = n.child(p)?;
        }
        Some(n)
    }

    /// Trimmed text at a path, when present and not empty.
    pub fn text_at(&self, path: &[&str]) -> Option<String> {
        self.at(path)
            .map(|n| n.text.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Depth-first search for the first element with this local name (self included).
    pub fn find(&self, name: &str) -> Option<&Node> {
        if &*self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

fn local(name: &str) -> &str {
    match name.rsplit_once(':') {
        Some((_, l)) => l,
        None => name,
    }
}

fn prefix(name: &str) -> Option<String> {
    name.split_once(':').map(|(p, _)| p.to_string())
}

/// Parses a whole document into a tree. Text is kept untrimmed (quick-xml's trimming would eat
/// spaces around entity references); callers trim where they read values.
pub fn parse(bytes: &[u8]) -> Result<Node, XmlError> {
    if bytes.len() > MAX_BYTES {
        return Err(XmlError::TooLarge(bytes.len()));
    }
    // A UTF-8 BOM is fine; quick-xml handles the rest of the encoding declaration.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().expand_empty_elements = true;
    // (namespace scopes: prefix -> uri), one frame per open element
    let mut scopes: Vec<Vec<(Option<String>, Arc<str>)>> = Vec::new();
    let mut stack: Vec<Node> = Vec::new();
    // Names and namespace URIs, each allocated once per document.
    let mut interned: HashSet<Arc<str>> = HashSet::new();
    let mut intern = |s: &str| -> Arc<str> {
        match interned.get(s) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(s);
                interned.insert(a.clone());
                a
            }
        }
    };
    let mut elements = 0usize;
    let mut root: Option<Node> = None;
    let mut buf = Vec::new();
    let malformed = |e: quick_xml::Error| XmlError::Malformed(e.to_string());
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(malformed)?;
        match ev {
            Event::Start(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(XmlError::TooManyElements);
                }
                let qname = s.name();
                let mut node = Node {
                    name: intern(local(qname.as_ref())),
                    ..Node::default()
                };
                let mut frame = Vec::new();
                for a in s.attributes().with_checks(false).flatten() {
                    let key = a.key.as_ref().to_string();
                    let value = quick_xml::escape::unescape(&a.value)
                        .map(|v| v.into_owned())
                        .unwrap_or_else(|_| a.value.to_string());
                    if key == "xmlns" {
                        frame.push((None, intern(&value)));
                    } else if let Some(p) = key.strip_prefix("xmlns:") {
                        frame.push((Some(p.to_string()), intern(&value)));
                    }
                    node.attrs.push((local(&key).to_string(), value));
                }
                scopes.push(frame);
                let pfx = prefix(s.name().as_ref());
                node.ns = scopes
                    .iter()
                    .rev()
                    .flat_map(|f| f.iter())
                    .find(|(p, _)| *p == pfx)
                    .map(|(_, uri)| uri.clone());
                stack.push(node);
            }
            Event::End(_) => {
                scopes.pop();
                let mut node = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                // Indentation between child elements carries nothing; spare capacity neither.
                if !node.children.is_empty() && node.text.trim().is_empty() {
                    node.text = String::new();
                }
                node.text.shrink_to_fit();
                node.children.shrink_to_fit();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => {
                        if root.is_none() {
                            root = Some(node);
                        }
                    }
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(t.as_ref());
                }
            }
            Event::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(t.as_ref());
                }
            }
            Event::GeneralRef(r) => {
                let name = r.as_ref().to_string();
                let ch = match name.as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n if n.starts_with("#x") || n.starts_with("#X") => {
                        u32::from_str_radix(&n[2..], 16)
                            .ok()
                            .and_then(char::from_u32)
                    }
                    n if n.starts_with('#') => n[1..].parse::<u32>().ok().and_then(char::from_u32),
                    _ => return Err(XmlError::Entity(name)),
                };
                match (ch, stack.last_mut()) {
                    (Some(c), Some(n)) => n.text.push(c),
                    (None, _) => {
                        return Err(XmlError::Malformed(format!(
                            "bad character reference &{name};"
                        )));
                    }
                    _ => {}
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(
            "the document ends inside an element".into(),
        ));
    }
    root.ok_or(XmlError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_prefixes_and_entities() {
        let doc = br#"<?xml version="1.0"?><ns2:Document xmlns:ns2="urn:x"><ns2:A>Tom &amp; Jerry &#x4e2d; </ns2:A><B a="1&lt;2"/></ns2:Document>"#;
        let n = parse(doc).unwrap();
        assert_eq!(&*n.name, "Document");
        assert_eq!(n.ns.as_deref(), Some("urn:x"));
        assert_eq!(n.child("A").unwrap().text, "Tom & Jerry 中 ");
        assert_eq!(n.child("B").unwrap().attr("a"), Some("1<2"));
        assert_eq!(n.child("B").unwrap().ns, None);
    }

    #[test]
    fn dtds_and_custom_entities_are_refused() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><a>&lol;</a>"#;
        assert_eq!(parse(bomb).unwrap_err(), XmlError::Doctype);
        assert!(matches!(parse(b"<a>&lol;</a>").unwrap_err(), XmlError::Entity(e) if e == "lol"));
    }

    #[test]
    fn malformed_and_deep_documents() {
        assert!(matches!(parse(b"<a><b></a>"), Err(XmlError::Malformed(_))));
        assert_eq!(parse(b"").unwrap_err(), XmlError::Empty);
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert_eq!(parse(deep.as_bytes()).unwrap_err(), XmlError::TooDeep);
    }
}
