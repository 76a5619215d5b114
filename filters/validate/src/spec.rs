//! Loading an OpenAPI 3.0.x / 3.1.x document into routes, operations, parameters and
//! compiled schemas. Everything is checked here, once; errors name the JSON Pointer.

use crate::router::Router;
use crate::schema::{self, CompiledSchemas, Dialect};
use boon::{Draft, SchemaIndex};
use serde_json::{Map, Value};

pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
    Header,
    Cookie,
}

impl Location {
    pub fn name(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
            Location::Cookie => "cookie",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Simple,
    Label,
    Matrix,
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
}

/// JSON types a parameter value may be coerced to (from its schema's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Types {
    pub integer: bool,
    pub number: bool,
    pub boolean: bool,
    pub null: bool,
}

/// How a parameter's text becomes a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Primitive(Types),
    Array(Types),
    /// Object with per-property coercions (unknown properties stay strings).
    Object(Vec<(String, Types)>),
    /// `content: {application/json: …}`: the value is a JSON text.
    Json,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub location: Location,
    pub required: bool,
    pub style: Style,
    pub explode: bool,
    pub allow_empty: bool,
    pub shape: Shape,
    pub schema: Option<SchemaIndex>,
}

#[derive(Debug, Clone)]
pub struct MediaType {
    /// Lower-case `type/subtype` as declared (may contain `*`).
    pub range: String,
    pub schema: Option<SchemaIndex>,
}

#[derive(Debug, Clone)]
pub struct RequestBody {
    pub required: bool,
    pub content: Vec<MediaType>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
}

#[derive(Debug, Clone)]
pub struct PathItem {
    pub template: String,
    pub operations: Vec<Operation>,
}

impl PathItem {
    /// Upper-case method names for an `Allow` header.
    pub fn allow(&self) -> String {
        allow([self])
    }

    pub fn operation(&self, method: &str) -> Option<&Operation> {
        let lower = method.to_ascii_lowercase();
        self.operations
            .iter()
            .find(|o| o.method == lower)
            .or_else(|| {
                if lower == "head" {
                    self.operations.iter().find(|o| o.method == "get")
                } else {
                    None
                }
            })
    }
}

/// Upper-case method names declared by any of `items`, for an `Allow` header.
pub fn allow<'a>(items: impl IntoIterator<Item = &'a PathItem> + Clone) -> String {
    let mut m: Vec<String> = METHODS
        .iter()
        .filter(|method| {
            items
                .clone()
                .into_iter()
                .any(|i| i.operations.iter().any(|o| o.method == **method))
        })
        .map(|method| method.to_ascii_uppercase())
        .collect();
    if m.iter().any(|x| x == "GET") && !m.iter().any(|x| x == "HEAD") {
        m.push("HEAD".into());
    }
    m.join(", ")
}

#[derive(Debug)]
pub struct Spec {
    pub version: String,
    pub base_paths: Vec<String>,
    pub items: Vec<PathItem>,
    pub router: Router,
    pub schemas: CompiledSchemas,
}

/// A spec error: JSON Pointer (without `#`) and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub pointer: String,
    pub reason: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at `#{}`: {}", self.pointer, self.reason)
    }
}

fn err(pointer: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        pointer: pointer.to_string(),
        reason: reason.into(),
    }
}

fn tok(s: &str) -> String {
    crate::threat::escape_token(s)
}

/// Turns the `spec` config value (object, or string holding JSON or YAML) into a JSON value.
pub fn parse_document(v: &Value) -> Result<Value, SpecError> {
    match v {
        Value::Object(_) => Ok(v.clone()),
        Value::String(s) => {
            let t = s.trim_start();
            if t.starts_with('{') {
                serde_json::from_str(t).map_err(|e| err("", format!("spec is not valid JSON: {e}")))
            } else {
                let y: serde_norway::Value = serde_norway::from_str(s)
                    .map_err(|e| err("", format!("spec is not valid YAML: {e}")))?;
                yaml_to_json(y, 0)
            }
        }
        _ => Err(err(
            "",
            "must be an OpenAPI document: a JSON object or a string holding JSON or YAML",
        )),
    }
}

fn yaml_to_json(y: serde_norway::Value, depth: usize) -> Result<Value, SpecError> {
    use serde_norway::Value as Y;
    if depth > 200 {
        return Err(err("", "YAML document nested too deeply"));
    }
    Ok(match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| err("", "YAML number is not finite"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(
            seq.into_iter()
                .map(|v| yaml_to_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                // Status codes (`200:`) and other scalar keys become strings, as in JSON.
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_string(),
                    _ => return Err(err("", "YAML mapping keys must be scalars")),
                };
                out.insert(key, yaml_to_json(v, depth + 1)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value, depth + 1)?,
    })
}

/// Follows local `$ref`s from (`ptr`, `v`) to the object they name.
fn resolve<'a>(doc: &'a Value, ptr: &str, v: &'a Value) -> Result<(String, &'a Value), SpecError> {
    let mut ptr = ptr.to_string();
    let mut v = v;
    for _ in 0..32 {
        let Some(r) = v.get("$ref") else {
            return Ok((ptr, v));
        };
        let Some(r) = r.as_str() else {
            return Err(err(&format!("{ptr}/$ref"), "`$ref` must be a string"));
        };
        let Some(frag) = r.strip_prefix('#') else {
            return Err(err(
                &format!("{ptr}/$ref"),
                "only references within the document (`#/…`) are supported",
            ));
        };
        let target = percent_encoding::percent_decode_str(frag)
            .decode_utf8_lossy()
            .into_owned();
        v = doc
            .pointer(&target)
            .ok_or_else(|| err(&format!("{ptr}/$ref"), format!("`{r}` does not resolve")))?;
        ptr = target;
    }
    Err(err(&ptr, "`$ref` chain too long or cyclic"))
}

/// Translates every schema of a 3.0 document in place (values under `schema` keys and
/// `components/schemas`), skipping examples and extensions.
fn translate_document_30(v: &mut Value, assert_formats: bool, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "schema" {
                    schema::translate_30(child, assert_formats);
                } else if k == "schemas" && depth == 1 {
                    if let Value::Object(s) = child {
                        s.values_mut()
                            .for_each(|x| schema::translate_30(x, assert_formats));
                    }
                } else if !(k.starts_with("x-") || k == "example" || k == "examples") {
                    translate_document_30(child, assert_formats, depth + 1);
                }
            }
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| translate_document_30(x, assert_formats, depth + 1)),
        _ => {}
    }
}

/// Base paths from `servers[*].url` (variables replaced by their defaults).
fn server_base_paths(doc: &Value) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::new();
    let Some(servers) = doc.get("servers").and_then(Value::as_array) else {
        return Ok(out);
    };
    for (i, s) in servers.iter().enumerate() {
        let ptr = format!("/servers/{i}");
        let Some(url) = s.get("url").and_then(Value::as_str) else {
            return Err(err(&format!("{ptr}/url"), "must be a string"));
        };
        let mut url = url.to_string();
        if let Some(vars) = s.get("variables").and_then(Value::as_object) {
            for (name, var) in vars {
                let default = var
                    .get("default")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
        let path = match url.find("://") {
            Some(i) => {
                let after = url.get(i + 3..).unwrap_or_default();
                after
                    .find('/')
                    .and_then(|j| after.get(j..))
                    .unwrap_or("")
                    .to_string()
            }
            None => url,
        };
        out.push(normalize_base(&path));
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out.dedup();
    Ok(out)
}

/// `""` for the root; otherwise `/a/b` without a trailing slash.
pub fn normalize_base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        String::new()
    } else if t.starts_with('/') {
        t.to_string()
    } else {
        format!("/{t}")
    }
}

/// Reads the coercion hint from a schema (following `$ref`s).
fn types_of(doc: &Value, ptr: &str, s: &Value) -> Types {
    let Ok((_, s)) = resolve(doc, ptr, s) else {
        return Types::default();
    };
    let mut t = Types::default();
    let mut add = |name: &str| match name {
        "integer" => t.integer = true,
        "number" => t.number = true,
        "boolean" => t.boolean = true,
        "null" => t.null = true,
        _ => {}
    };
    match s.get("type") {
        Some(Value::String(x)) => add(x),
        Some(Value::Array(xs)) => xs.iter().filter_map(Value::as_str).for_each(&mut add),
        _ => {}
    }
    if s.get("nullable") == Some(&Value::Bool(true)) {
        t.null = true;
    }
    t
}

fn shape_of(doc: &Value, ptr: &str, s: &Value) -> Shape {
    let Ok((rptr, r)) = resolve(doc, ptr, s) else {
        return Shape::Primitive(Types::default());
    };
    let ty: Vec<&str> = match r.get("type") {
        Some(Value::String(x)) => vec![x.as_str()],
        Some(Value::Array(xs)) => xs.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if ty.contains(&"array") {
        let items = r
            .get("items")
            .map(|i| types_of(doc, &format!("{rptr}/items"), i))
            .unwrap_or_default();
        return Shape::Array(items);
    }
    if ty.contains(&"object") {
        let props = r
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            types_of(doc, &format!("{rptr}/properties/{}", tok(k)), v),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Shape::Object(props);
    }
    Shape::Primitive(types_of(doc, ptr, s))
}

fn parse_style(s: &str) -> Option<Style> {
    Some(match s {
        "simple" => Style::Simple,
        "label" => Style::Label,
        "matrix" => Style::Matrix,
        "form" => Style::Form,
        "spaceDelimited" => Style::SpaceDelimited,
        "pipeDelimited" => Style::PipeDelimited,
        "deepObject" => Style::DeepObject,
        _ => return None,
    })
}

/// A parameter before its schema is compiled.
struct RawParam {
    param: Param,
    schema_ptr: Option<String>,
}

fn read_param(doc: &Value, ptr: &str, v: &Value) -> Result<RawParam, SpecError> {
    let (ptr, p) = resolve(doc, ptr, v)?;
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| err(&ptr, "parameter needs a string `name`"))?;
    let location = match p.get("in").and_then(Value::as_str) {
        Some("path") => Location::Path,
        Some("query") => Location::Query,
        Some("header") => Location::Header,
        Some("cookie") => Location::Cookie,
        _ => {
            return Err(err(
                &format!("{ptr}/in"),
                "must be one of path, query, header, cookie",
            ))
        }
    };
    let required = location == Location::Path || p.get("required") == Some(&Value::Bool(true));
    let default_style = match location {
        Location::Path | Location::Header => Style::Simple,
        _ => Style::Form,
    };
    let style = match p.get("style") {
        None => default_style,
        Some(s) => s
            .as_str()
            .and_then(parse_style)
            .ok_or_else(|| err(&format!("{ptr}/style"), "unknown style"))?,
    };
    let allowed = match location {
        Location::Path => matches!(style, Style::Simple | Style::Label | Style::Matrix),
        Location::Query => matches!(
            style,
            Style::Form | Style::SpaceDelimited | Style::PipeDelimited | Style::DeepObject
        ),
        Location::Header => style == Style::Simple,
        Location::Cookie => style == Style::Form,
    };
    if !allowed {
        return Err(err(
            &format!("{ptr}/style"),
            format!("style not allowed for `in: {}`", location.name()),
        ));
    }
    let explode = match p.get("explode") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err(&format!("{ptr}/explode"), "must be a boolean")),
        None => style == Style::Form,
    };
    let (shape, schema_ptr) = if let Some(s) = p.get("schema") {
        (
            shape_of(doc, &format!("{ptr}/schema"), s),
            Some(format!("{ptr}/schema")),
        )
    } else if let Some(Value::Object(content)) = p.get("content") {
        let Some((mt, m)) = content.iter().next() else {
            return Err(err(&format!("{ptr}/content"), "must have one entry"));
        };
        let sp = m
            .get("schema")
            .map(|_| format!("{ptr}/content/{}/schema", tok(mt)));
        (Shape::Json, sp)
    } else {
        (Shape::Primitive(Types::default()), None)
    };
    let param = Param {
        name: if location == Location::Header {
            name.to_ascii_lowercase()
        } else {
            name.to_string()
        },
        location,
        required,
        style,
        explode,
        allow_empty: p.get("allowEmptyValue") == Some(&Value::Bool(true)),
        shape,
        schema: None,
    };
    Ok(RawParam { param, schema_ptr })
}

/// Loads and compiles a document. `base_path` (config) overrides the servers' paths.
pub fn load(
    config_spec: &Value,
    base_path: Option<&str>,
    assert_formats: bool,
) -> Result<Spec, SpecError> {
    let mut doc = parse_document(config_spec)?;
    if !doc.is_object() {
        return Err(err("", "the OpenAPI document must be an object"));
    }
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            err(
                "/openapi",
                "missing: only OpenAPI 3.0.x and 3.1.x documents are supported",
            )
        })?
        .to_string();
    let dialect = if version.starts_with("3.0.") {
        Dialect::Oas30
    } else if version.starts_with("3.1.") {
        match doc.get("jsonSchemaDialect") {
            None => Dialect::Oas31(Draft::V2020_12),
            Some(Value::String(d)) if d == schema::OAS31_DIALECT => Dialect::Oas31(Draft::V2020_12),
            Some(Value::String(d)) => Dialect::Oas31(Draft::from_url(d).ok_or_else(|| {
                err(
                    "/jsonSchemaDialect",
                    "unsupported dialect (use a JSON Schema draft URL)",
                )
            })?),
            Some(_) => return Err(err("/jsonSchemaDialect", "must be a string")),
        }
    } else {
        return Err(err("/openapi", "unsupported version: only 3.0.x and 3.1.x"));
    };
    if dialect == Dialect::Oas30 {
        translate_document_30(&mut doc, assert_formats, 0);
    }
    let base_paths = match base_path {
        Some(b) => vec![normalize_base(b)],
        None => server_base_paths(&doc)?,
    };

    let mut items = Vec::new();
    let mut router = Router::default();
    let mut schema_ptrs: Vec<String> = Vec::new();
    // (item, operation, Some(param) | None for body media type) per schema pointer.
    let mut targets: Vec<(usize, usize, Target)> = Vec::new();
    let empty = Map::new();
    let paths = match doc.get("paths") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(err("/paths", "must be an object")),
    };
    for (template, item) in paths {
        if template.starts_with("x-") {
            continue;
        }
        let item_ptr = format!("/paths/{}", tok(template));
        let (item_ptr, item) = resolve(&doc, &item_ptr, item)?;
        let item_index = items.len();
        let equivalent = router
            .insert(template, item_index)
            .map_err(|e| err(&format!("/paths/{}", tok(template)), e))?;
        let common: Vec<RawParam> = match item.get("parameters") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, p)| read_param(&doc, &format!("{item_ptr}/parameters/{i}"), p))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(&format!("{item_ptr}/parameters"), "must be an array")),
            None => Vec::new(),
        };
        let mut operations = Vec::new();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let op_ptr = format!("{item_ptr}/{method}");
            if !op.is_object() {
                return Err(err(&op_ptr, "operation must be an object"));
            }
            let own: Vec<RawParam> = match op.get("parameters") {
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, p)| read_param(&doc, &format!("{op_ptr}/parameters/{i}"), p))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(err(&format!("{op_ptr}/parameters"), "must be an array")),
                None => Vec::new(),
            };
            let mut merged: Vec<RawParam> = Vec::new();
            for p in common.iter().chain(own.iter()) {
                merged.retain(|m| {
                    !(m.param.name == p.param.name && m.param.location == p.param.location)
                });
                merged.push(RawParam {
                    param: p.param.clone(),
                    schema_ptr: p.schema_ptr.clone(),
                });
            }
            // Accept, Content-Type and Authorization header parameters are ignored (OAS 3).
            merged.retain(|m| {
                !(m.param.location == Location::Header
                    && matches!(
                        m.param.name.as_str(),
                        "accept" | "content-type" | "authorization"
                    ))
            });
            for m in &merged {
                if m.param.location == Location::Path
                    && !template.contains(&format!("{{{}}}", m.param.name))
                {
                    return Err(err(
                        &op_ptr,
                        format!(
                            "path parameter `{}` is not in the path template",
                            m.param.name
                        ),
                    ));
                }
            }
            let op_index = operations.len();
            let mut params = Vec::new();
            for (pi, m) in merged.into_iter().enumerate() {
                if let Some(sp) = m.schema_ptr {
                    schema_ptrs.push(sp);
                    targets.push((item_index, op_index, Target::Param(pi)));
                }
                params.push(m.param);
            }
            let body = match op.get("requestBody") {
                None => None,
                Some(rb) => {
                    let (rb_ptr, rb) = resolve(&doc, &format!("{op_ptr}/requestBody"), rb)?;
                    let mut content = Vec::new();
                    if let Some(c) = rb.get("content") {
                        let Some(c) = c.as_object() else {
                            return Err(err(&format!("{rb_ptr}/content"), "must be an object"));
                        };
                        for (mi, (range, mt)) in c.iter().enumerate() {
                            let range_l = range
                                .split(';')
                                .next()
                                .unwrap_or_default()
                                .trim()
                                .to_ascii_lowercase();
                            if !range_l.contains('/') {
                                return Err(err(
                                    &format!("{rb_ptr}/content/{}", tok(range)),
                                    "not a media type range",
                                ));
                            }
                            if mt.get("schema").is_some() {
                                schema_ptrs.push(format!("{rb_ptr}/content/{}/schema", tok(range)));
                                targets.push((item_index, op_index, Target::Body(mi)));
                            }
                            content.push(MediaType {
                                range: range_l,
                                schema: None,
                            });
                        }
                    }
                    Some(RequestBody {
                        required: rb.get("required") == Some(&Value::Bool(true)),
                        content,
                    })
                }
            };
            operations.push(Operation {
                method: method.to_string(),
                params,
                body,
            });
        }
        // Templates differing only in parameter names are accepted when no method is
        // declared twice: the method then tells which one a request means.
        for other in equivalent.iter().filter_map(|&e| items.get(e)) {
            let other: &PathItem = other;
            if let Some(op) = operations
                .iter()
                .find(|o| other.operations.iter().any(|x| x.method == o.method))
            {
                return Err(err(
                    &format!("/paths/{}", tok(template)),
                    format!(
                        "path template is equivalent to `{}` and both declare `{}`",
                        other.template, op.method
                    ),
                ));
            }
        }
        items.push(PathItem {
            template: template.clone(),
            operations,
        });
    }

    let (schemas, indices) =
        schema::compile(doc, &schema_ptrs, dialect, assert_formats).map_err(|e| err("", e))?;
    for ((item, op, target), idx) in targets.into_iter().zip(indices) {
        let Some(op) = items.get_mut(item).and_then(|i| i.operations.get_mut(op)) else {
            continue;
        };
        match target {
            Target::Param(p) => {
                if let Some(p) = op.params.get_mut(p) {
                    p.schema = Some(idx);
                }
            }
            Target::Body(m) => {
                if let Some(m) = op.body.as_mut().and_then(|b| b.content.get_mut(m)) {
                    m.schema = Some(idx);
                }
            }
        }
    }
    Ok(Spec {
        version,
        base_paths,
        items,
        router,
        schemas,
    })
}

enum Target {
    Param(usize),
    Body(usize),
}

impl Spec {
    /// The path items matching `path` (several only for templates that differ in parameter
    /// names alone), with the path parameter values named as in each item's template.
    pub fn find(&self, path: &str) -> Vec<(&PathItem, Vec<(String, String)>)> {
        self.router
            .find_all(path)
            .into_iter()
            .filter_map(|(i, values)| Some((self.items.get(i)?, values)))
            .collect()
    }

    /// Removes the base path; `None` when the path is outside every base path.
    pub fn strip_base<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.base_paths.is_empty() {
            return Some(path);
        }
        for b in &self.base_paths {
            if b.is_empty() {
                return Some(path);
            }
            if let Some(rest) = path.strip_prefix(b.as_str()) {
                if rest.is_empty() {
                    return Some("/");
                }
                if rest.starts_with('/') {
                    return Some(rest);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_strings_load_the_same() {
        let yaml = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\nservers:\n  - url: https://api.example.com/v1\npaths:\n  /pets/{id}:\n    get:\n      parameters:\n        - {name: id, in: path, required: true, schema: {type: integer}}\n      responses:\n        200: {description: ok}\n";
        let s = load(&Value::String(yaml.into()), None, true).unwrap();
        assert_eq!(s.base_paths, vec!["/v1".to_string()]);
        assert_eq!(
            s.items[0].operations[0].params[0].shape,
            Shape::Primitive(Types {
                integer: true,
                ..Types::default()
            })
        );
        let j =
            serde_json::to_string(&parse_document(&Value::String(yaml.into())).unwrap()).unwrap();
        let s2 = load(&Value::String(j), None, true).unwrap();
        assert_eq!(s2.items.len(), 1);
        assert!(parse_document(&Value::String("openapi: [".into()))
            .unwrap_err()
            .reason
            .contains("YAML"));
        assert!(parse_document(&json!(5)).is_err());
    }

    #[test]
    fn errors_name_the_pointer() {
        let cases = [
            (json!({"openapi": "2.0", "paths": {}}), "/openapi"),
            (json!({"swagger": "2.0"}), "/openapi"),
            (
                json!({"openapi": "3.1.0", "jsonSchemaDialect": "https://x.invalid/d", "paths": {}}),
                "/jsonSchemaDialect",
            ),
            (
                json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"in": "query"}]}}}}),
                "/paths/~1a/get/parameters/0",
            ),
            (
                json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "body"}]}}}}),
                "/paths/~1a/get/parameters/0/in",
            ),
            (
                json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "query", "style": "matrix"}]}}}}),
                "/paths/~1a/get/parameters/0/style",
            ),
            (
                json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "#/components/parameters/nope"}]}}}}),
                "/paths/~1a/get/parameters/0/$ref",
            ),
            (
                json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "other.yaml#/x"}]}}}}),
                "/paths/~1a/get/parameters/0/$ref",
            ),
            (
                json!({"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"name": "id", "in": "path", "schema": {}}]}}}}),
                "/paths/~1a/get",
            ),
            (
                json!({"openapi": "3.0.0", "paths": {"/a/{x": {}}}),
                "/paths/~1a~1{x",
            ),
            // Equivalent templates declaring the same method: ambiguous.
            (
                json!({"openapi": "3.0.0", "paths": {
                    "/a/{x}": {"get": {}, "put": {}},
                    "/a/{y}": {"delete": {}, "put": {}}}}),
                "/paths/~1a~1{y}",
            ),
        ];
        for (doc, ptr) in cases {
            let e = load(&doc, None, true).unwrap_err();
            assert_eq!(e.pointer, ptr, "{doc} → {e}");
        }
        // Invalid schema: the message names the schema's pointer.
        let doc = json!({"openapi": "3.0.0", "paths": {"/a": {"post": {"requestBody": {"content": {"application/json": {"schema": {"type": 5}}}}}}}});
        let e = load(&doc, None, true).unwrap_err();
        assert!(
            e.reason
                .contains("#/paths/~1a/post/requestBody/content/application~1json/schema"),
            "{e}"
        );
    }

    #[test]
    fn params_merge_and_refs_resolve() {
        let doc = json!({
            "openapi": "3.1.0",
            "servers": [{"url": "{scheme}://h/{ver}", "variables": {"scheme": {"default": "https"}, "ver": {"default": "v2"}}}, {"url": "/"}],
            "components": {"parameters": {"Limit": {"name": "limit", "in": "query", "schema": {"$ref": "#/components/schemas/L"}}},
                           "schemas": {"L": {"type": ["integer", "null"]}},
                           "requestBodies": {"B": {"required": true, "content": {"Application/JSON; charset=utf-8": {"schema": {"type": "object"}}}}}},
            "paths": {"/items/{id}": {
                "parameters": [{"name": "id", "in": "path", "schema": {"type": "string"}}, {"name": "limit", "in": "query"}],
                "get": {"parameters": [{"$ref": "#/components/parameters/Limit"}, {"name": "Authorization", "in": "header"}]},
                "put": {"requestBody": {"$ref": "#/components/requestBodies/B"}}
            }}
        });
        let s = load(&doc, None, true).unwrap();
        assert_eq!(s.base_paths, vec!["/v2".to_string(), String::new()]);
        let get = &s.items[0].operations[0];
        assert_eq!(get.params.len(), 2);
        let limit = get.params.iter().find(|p| p.name == "limit").unwrap();
        assert_eq!(
            limit.shape,
            Shape::Primitive(Types {
                integer: true,
                null: true,
                ..Types::default()
            })
        );
        assert!(limit.schema.is_some());
        let put = &s.items[0].operations[1];
        let body = put.body.as_ref().unwrap();
        assert!(body.required);
        assert_eq!(body.content[0].range, "application/json");
        assert!(body.content[0].schema.is_some());
        assert_eq!(s.items[0].allow(), "GET, PUT, HEAD");
        assert_eq!(s.strip_base("/v2/items/1"), Some("/items/1"));
        assert_eq!(
            s.strip_base("/v2x/items"),
            Some("/v2x/items"),
            "falls back to the root server"
        );
    }
}
