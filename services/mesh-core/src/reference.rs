//! The configuration reference, `docs/configuration.md`, rendered from the config structs.
//!
//! Every config struct derives [`schemars::JsonSchema`], so its doc comments are the keys'
//! meanings and its types their types; the defaults come from serialising `Default`, the very
//! values a process starts with. `meshctl config reference` writes the document and a test
//! compares it with the checked-in one, so the reference cannot drift from the code.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{ALIASES, env_name};

/// One component's configuration, ready to render.
pub struct Component {
    /// The binary's name, e.g. `auth-service`.
    pub name: &'static str,
    /// One line on what the component is.
    pub about: &'static str,
    schema: Value,
    defaults: Value,
    list_keys: Vec<String>,
}

impl Component {
    /// The reference of config `C`; `list_keys` are the keys whose variable is comma separated
    /// (the same list the binary gives its [`Sources`](crate::config::Sources)).
    pub fn of<C: JsonSchema + Serialize + Default>(
        name: &'static str,
        about: &'static str,
        list_keys: &[String],
    ) -> Self {
        Self {
            name,
            about,
            schema: schemars::schema_for!(C).to_value(),
            defaults: serde_json::to_value(C::default()).expect("a default config serialises"),
            list_keys: list_keys.to_vec(),
        }
    }

    /// Every key of the component, tables first then their keys, in the schema's order.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let defs = self.schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
        let walker = Walker { defs: &defs, list_keys: &self.list_keys };
        walker.walk(&self.schema, "", Some(&self.defaults), true, None, &mut rows);
        rows
    }
}

/// One key of the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Dotted path: `health.interval`; `rules[].prefix` for a key of each entry of a list;
    /// `pools.<name>.instances` for a key of each entry of a map.
    pub key: String,
    pub ty: String,
    /// Rendered default; empty for a key of list or map entries (it has none of its own).
    pub default: String,
    /// The variable that sets it, and its aliases; empty when only a file can.
    pub env: String,
    /// The doc comment; empty when the code has none (which [`render`] refuses).
    pub meaning: String,
}

struct Walker<'a> {
    defs: &'a Map<String, Value>,
    list_keys: &'a [String],
}

/// A schema with its `$ref`s and `Option`'s `anyOf [T, null]` resolved.
struct Resolved {
    node: Value,
    description: Option<String>,
    optional: bool,
}

impl Walker<'_> {
    fn resolve(&self, node: &Value) -> Resolved {
        let mut description = description(node);
        let mut optional = false;
        let mut node = node.clone();
        loop {
            if let Some(name) = node.get("$ref").and_then(Value::as_str) {
                let def =
                    name.rsplit('/').next().and_then(|n| self.defs.get(n)).cloned().unwrap_or(Value::Null);
                description = description.or_else(|| self::description(&def));
                node = def;
            } else if let Some(variants) =
                node.get("anyOf").or_else(|| node.get("oneOf")).and_then(Value::as_array)
                && variants.len() == 2
                && variants.iter().any(is_null)
            {
                optional = true;
                let inner = variants.iter().find(|v| !is_null(v)).cloned().unwrap_or(Value::Null);
                description = description.or_else(|| self::description(&inner));
                node = inner;
            } else {
                break;
            }
        }
        // `Option<String>` is `"type": ["string", "null"]`.
        if let Some(types) = node.get("type").and_then(Value::as_array)
            && types.iter().any(|t| t == "null")
        {
            optional = true;
            let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            node["type"] = if rest.len() == 1 { rest[0].clone() } else { Value::Array(rest) };
        }
        Resolved { node, description, optional }
    }

    /// Appends the rows of `node` at `path`: one for the key itself, then its keys.
    fn walk(
        &self,
        node: &Value,
        path: &str,
        default: Option<&Value>,
        env: bool,
        field_description: Option<String>,
        rows: &mut Vec<Row>,
    ) {
        let Resolved { node, description: own, optional } = self.resolve(node);
        let meaning = field_description.or(own).unwrap_or_default();
        let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        // A key of a map's or a list's entries has no default of its own, unless its type gives
        // one (`#[serde(default = ...)]`, which the schema carries).
        let default = default.or(node.get("default"));
        let row = |ty: String, rows: &mut Vec<Row>| {
            if path.is_empty() {
                return;
            }
            // A table is documented by its keys: its own default and variable are theirs. A map of
            // tables has default entries (`print-defaults` shows them); the environment sets
            // scalars and lists of them, so a list of tables only a file does.
            let table = ty == "table";
            let env = env && !table && ty != "list of tables" && ty != "map of tables";
            let ty = if optional { format!("{ty}, optional") } else { ty };
            rows.push(Row {
                key: path.to_owned(),
                default: if table {
                    String::new()
                } else {
                    default.map(|d| render_default(d, &ty)).unwrap_or_default()
                },
                env: if env { self.env(path) } else { String::new() },
                ty,
                meaning: meaning.clone(),
            });
        };

        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            row("table".into(), rows);
            for (key, property) in properties {
                let child_default = default.and_then(|d| d.get(key)).or(if default.is_some() {
                    Some(&Value::Null)
                } else {
                    None
                });
                self.walk(property, &join(key), child_default, env, description(property), rows);
            }
        } else if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            let entry = self.resolve(values);
            let is_table = entry.node.get("properties").is_some();
            row(
                if is_table { "map of tables".into() } else { format!("map of {}", type_name(&entry.node)) },
                rows,
            );
            if is_table {
                self.walk(values, &join("<name>"), None, env, Some(format!("One entry of `{path}`.")), rows);
            }
        } else if node.get("type").is_some_and(|t| t == "array") && node.get("prefixItems").is_none() {
            let items = node.get("items").map(|i| self.resolve(i));
            match items {
                Some(items) if items.node.get("properties").is_some() => {
                    row("list of tables".into(), rows);
                    let element = format!("{path}[]");
                    let items_node = node.get("items").cloned().unwrap_or(Value::Null);
                    let Resolved { node: resolved, .. } = self.resolve(&items_node);
                    for (key, property) in
                        resolved.get("properties").and_then(Value::as_object).into_iter().flatten()
                    {
                        self.walk(
                            property,
                            &format!("{element}.{key}"),
                            None,
                            false,
                            description(property),
                            rows,
                        );
                    }
                }
                Some(items) => row(format!("list of {}", type_name(&items.node)), rows),
                None => row("list".into(), rows),
            }
        } else {
            row(type_name(&node), rows);
        }
    }

    fn env(&self, path: &str) -> String {
        if path.contains("[]") {
            return String::new();
        }
        let name = env_name(path).replace("<NAME>", "<name>");
        let mut out = format!("`{name}`");
        for (alias, _, target) in ALIASES {
            if *target == name {
                out.push_str(&format!(" or `{alias}`"));
            }
        }
        let listed = self.list_keys.iter().any(|k| k == path)
            || (path.contains("<name>") && self.list_keys.iter().any(|k| matches_pattern(k, path)));
        if listed {
            out.push_str(" (comma separated)");
        }
        out
    }
}

/// `pools.identity.instances` matches `pools.<name>.instances`.
fn matches_pattern(key: &str, pattern: &str) -> bool {
    let (k, p): (Vec<_>, Vec<_>) = (key.split('.').collect(), pattern.split('.').collect());
    k.len() == p.len() && k.iter().zip(&p).all(|(k, p)| *p == "<name>" || k == p)
}

fn is_null(node: &Value) -> bool {
    node.get("type").is_some_and(|t| t == "null")
}

fn description(node: &Value) -> Option<String> {
    node.get("description")
        .and_then(Value::as_str)
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn type_name(node: &Value) -> String {
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return one_of(values);
    }
    if let Some(variants) = node.get("oneOf").and_then(Value::as_array) {
        let consts: Vec<Value> = variants
            .iter()
            .filter_map(|v| v.get("const").cloned().or_else(|| v.get("enum").and_then(|e| e.get(0)).cloned()))
            .collect();
        if consts.len() == variants.len() {
            return one_of(&consts);
        }
    }
    if let Some(items) = node.get("prefixItems").and_then(Value::as_array) {
        return format!("[{}]", items.iter().map(type_name).collect::<Vec<_>>().join(", "));
    }
    if node.get("format").is_some_and(|f| f == "duration") {
        return "duration".into();
    }
    match node.get("type") {
        Some(Value::String(t)) if t == "integer" => {
            let unsigned = node.get("minimum").and_then(Value::as_f64).is_some_and(|m| m >= 0.0);
            if unsigned { "integer (≥ 0)".into() } else { "integer".into() }
        }
        Some(Value::String(t)) if t == "array" => match node.get("items") {
            Some(items) => format!("list of {}", type_name(items)),
            None => "list".into(),
        },
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        _ => "any".into(),
    }
}

fn one_of(values: &[Value]) -> String {
    format!(
        "one of {}",
        values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or(&v.to_string())))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A default as the reader writes it in TOML; a long one points at `print-defaults`.
fn render_default(value: &Value, ty: &str) -> String {
    let text = match value {
        Value::Null => return "unset".into(),
        Value::String(s) if ty.starts_with("duration") => s.clone(),
        Value::Array(items) if items.is_empty() => "[]".into(),
        // An `f32` such as 0.2 serialises as 0.20000000298023224: shown as written.
        Value::Number(n) if n.is_f64() => {
            crate::cli::shortest_float(n.as_f64().unwrap_or_default()).to_string()
        }
        other => other.to_string(),
    };
    if text.len() > 60 || value.is_object() { "see `print-defaults`".into() } else { format!("`{text}`") }
}

/// The whole reference. Refuses (listing them) keys whose meaning the code does not document.
pub fn render(components: &[Component]) -> Result<String, Vec<String>> {
    let mut undocumented = Vec::new();
    let mut out = String::from(HEADER);
    out.push_str("\n## Components\n\n");
    for c in components {
        out.push_str(&format!("- [`{}`](#{}): {}\n", c.name, c.name, c.about));
    }
    for c in components {
        out.push_str(&format!(
            "\n## {name}\n\n{about}\n\nValidate a file: `{name} --config FILE check`; the defaults as a file: \
             `{name} print-defaults`.\n\n| Key | Type | Default | Environment | Meaning |\n| --- | --- | --- | --- | --- |\n",
            name = c.name,
            about = c.about,
        ));
        for row in c.rows() {
            // "Default: 5s." alone says nothing of what the key does.
            if row.meaning.is_empty() || row.meaning.starts_with("Default:") {
                undocumented.push(format!("{}: {}", c.name, row.key));
            }
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                row.key,
                cell(&row.ty),
                cell(&row.default),
                cell(&row.env),
                cell(&row.meaning)
            ));
        }
    }
    if undocumented.is_empty() { Ok(out) } else { Err(undocumented) }
}

fn cell(text: &str) -> String {
    let text = text.replace('|', "\\|");
    if text.is_empty() { "—".into() } else { text }
}

const HEADER: &str = "# Configuration reference

<!-- Generated by `meshctl config reference > docs/configuration.md` from the config structs'
     doc comments and defaults; edit those, not this file. A test fails when it is stale. -->

Every component reads its configuration in three layers, each over the one before:

1. the built-in defaults (the **Default** column; `<binary> print-defaults` prints them all as TOML);
2. a TOML file, named by `--config FILE` or `MESH_CONFIG=FILE` (the flag wins);
3. environment variables: `MESH_` and the key in capitals, `__` between nested keys
   (`health.interval` is `MESH_HEALTH__INTERVAL`). `REDIS_URL` is honoured for `store.redis_url`
   when `MESH_STORE__REDIS_URL` is not set. Lists marked *comma separated* take `a,b,c`.

An unknown key, in the file or in a `MESH_` variable, is refused at start with its name, as is a
value of the wrong type. `<binary> --config FILE check` loads and validates a configuration
without serving (`ok`, or exit 1 naming the key); `<binary> print-config` prints the effective
configuration with secrets redacted; `meshctl config check --component NAME --config FILE` does
the same for any component. Examples of whole files: [`config/examples/`](../config/examples/).

Durations are humantime strings: `250ms`, `5s`, `15m`, `1h 30m`, `30days`. Keys written
`list[].key` are keys of each entry of a list of tables (file only); `map.<name>.key` are keys of
each entry of a map, whose variables take the entry's name.
";
