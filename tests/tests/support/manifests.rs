//! The Kubernetes manifests as the tests read them: an overlay rendered by `kubectl kustomize`,
//! each document parsed by a small block-YAML reader. The reader covers kustomize's normalised
//! output and our compose file and refuses anything it does not understand; no YAML crate is
//! needed, and `kubectl` cannot convert to JSON without a cluster to ask.

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value};

/// The documents of `overlay` as `kubectl kustomize` renders them; None when kubectl is not
/// installed (the caller says what it could not check).
pub(crate) fn kustomize(overlay: &Path) -> Option<Vec<Value>> {
    let rendered = match Command::new("kubectl").arg("kustomize").arg(overlay).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        result => result.expect("kubectl runs"),
    };
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "kubectl kustomize {}: {stderr}", overlay.display());
    let text = String::from_utf8(rendered.stdout).expect("UTF-8 manifests");
    Some(text.split("\n---\n").map(parse_yaml).collect())
}

// === A block-YAML reader ===

/// Reads one YAML document written in block style (mappings, `- ` sequences, `|` block scalars,
/// flow `[...]` lists of scalars, anchors ignored). Panics on anything left unread, so a construct
/// it does not know cannot make a check pass silently.
pub(crate) fn parse_yaml(doc: &str) -> Value {
    let mut r = Reader { lines: doc.lines().collect(), pos: 0 };
    let value = r.peek().map_or(Value::Null, |(indent, _)| r.node(indent));
    if let Some((_, line)) = r.peek() {
        panic!("YAML reader stopped at {line:?} (line {})", r.pos + 1);
    }
    value
}

struct Reader<'a> {
    lines: Vec<&'a str>,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next meaningful line (skipping blanks, comments and document markers): indent, text.
    fn peek(&mut self) -> Option<(usize, &'a str)> {
        while let Some(line) = self.lines.get(self.pos) {
            let text = line.trim();
            if !(text.is_empty() || text.starts_with('#') || text == "---") {
                return Some((line.len() - line.trim_start().len(), text));
            }
            self.pos += 1;
        }
        None
    }

    fn node(&mut self, indent: usize) -> Value {
        match self.peek() {
            Some((i, t)) if i == indent && is_item(t) => self.seq(indent),
            Some((i, _)) if i == indent => self.map(indent, None),
            _ => Value::Null,
        }
    }

    fn seq(&mut self, indent: usize) -> Value {
        let mut items = Vec::new();
        while let Some((i, t)) = self.peek().filter(|(i, t)| *i == indent && is_item(t)) {
            self.pos += 1;
            let rest = t[1..].trim_start();
            items.push(match rest {
                "" => self
                    .peek()
                    .map_or(Value::Null, |(next, _)| if next > i { self.node(next) } else { Value::Null }),
                _ if is_entry(rest) => self.map(indent + 1 + (t.len() - 1 - rest.len()), Some(rest)),
                _ => scalar(rest),
            });
        }
        Value::Array(items)
    }

    fn map(&mut self, indent: usize, mut first: Option<&'a str>) -> Value {
        let mut map = Map::new();
        loop {
            let entry = match first.take() {
                Some(entry) => entry,
                None => match self.peek() {
                    Some((i, t)) if i == indent && !is_item(t) && is_entry(t) => {
                        self.pos += 1;
                        t
                    }
                    _ => break,
                },
            };
            let (key, value) = entry.split_once(": ").unwrap_or((entry.trim_end_matches(':'), ""));
            let value = match value.trim() {
                v if v.is_empty() || v.starts_with('&') => match self.peek() {
                    Some((i, _)) if i > indent => self.node(i),
                    Some((i, t)) if i == indent && is_item(t) => self.seq(indent),
                    _ => Value::Null,
                },
                "|" | "|-" | "|+" | ">" | ">-" => self.block(indent),
                v => scalar(v),
            };
            map.insert(unquote(key).to_owned(), value);
        }
        Value::Object(map)
    }

    /// A block scalar: every following line indented deeper than its key (or blank), dedented.
    fn block(&mut self, indent: usize) -> Value {
        let start = self.pos;
        while let Some(line) = self.lines.get(self.pos) {
            if !line.trim().is_empty() && line.len() - line.trim_start().len() <= indent {
                break;
            }
            self.pos += 1;
        }
        let lines = &self.lines[start..self.pos];
        let cut = lines.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min();
        let text: Vec<&str> = lines.iter().map(|l| l.get(cut.unwrap_or(0)..).unwrap_or("")).collect();
        Value::String(text.join("\n"))
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn is_entry(text: &str) -> bool {
    !text.starts_with(['"', '\'', '[', '{']) && (text.ends_with(':') || text.contains(": "))
}

fn scalar(text: &str) -> Value {
    match text {
        "{}" => Value::Object(Map::new()),
        _ if text.starts_with('[') && text.ends_with(']') => Value::Array(
            text[1..text.len() - 1]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(unquote(s).to_owned()))
                .collect(),
        ),
        _ => Value::String(unquote(text).to_owned()),
    }
}

fn unquote(text: &str) -> &str {
    let t = text.trim();
    for q in ['"', '\''] {
        if let Some(inner) = t.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return inner;
        }
    }
    t
}
