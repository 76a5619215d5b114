//! Loading an OpenAPI 3.0.x / 3.1.x document into routes, operations, parameters and
//! compiled schemas. Everything is checked here, once; errors name the JSON Pointer.

use crate::numbers::Literals;
use crate::router::Router;
use crate::schema::{self, CompiledSchemas, Dialect};
use boon::{Draft, SchemaIndex};
use meshwall_core::{canonical_path, CanonConfig};
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
        allow([self], true)
    }

    /// The operation for `method` (any case: Django and Flask upper-case an HTTP/2 `get`);
    /// `HEAD` falls back to `GET` with `head_matches_get`.
    pub fn operation(&self, method: &str, head_matches_get: bool) -> Option<&Operation> {
        let lower = method.to_ascii_lowercase();
        self.operations
            .iter()
            .find(|o| o.method == lower)
            .or_else(|| {
                if lower == "head" && head_matches_get {
                    self.operations.iter().find(|o| o.method == "get")
                } else {
                    None
                }
            })
    }
}

/// Upper-case method names declared by any of `items`, for an `Allow` header (`HEAD` where
/// `GET` is declared, with `head_matches_get`).
pub fn allow<'a>(
    items: impl IntoIterator<Item = &'a PathItem> + Clone,
    head_matches_get: bool,
) -> String {
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
    if head_matches_get && m.iter().any(|x| x == "GET") && !m.iter().any(|x| x == "HEAD") {
        m.push("HEAD".into());
    }
    m.join(", ")
}

#[derive(Debug)]
pub struct Spec {
    pub version: String,
    /// Canonical (lower-cased with `case_insensitive_paths`), without a trailing slash; `""`
    /// is the root.
    pub base_paths: Vec<String>,
    /// How request paths are read and compared.
    pub canon: CanonConfig,
    pub items: Vec<PathItem>,
    pub router: Router,
    pub schemas: CompiledSchemas,
    /// The numbers request numbers are compared with (`crate::numbers`).
    pub literals: Literals,
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

mod document;
mod param;

pub use document::{normalize_base, parse_document};
use document::{resolve, server_base_paths, translate_document_30};
use param::{read_param, RawParam};

/// [`load_with`] the default `canonical` settings.
pub fn load(
    config_spec: &Value,
    base_path: Option<&str>,
    assert_formats: bool,
) -> Result<Spec, SpecError> {
    load_with(
        config_spec,
        base_path,
        assert_formats,
        &CanonConfig::default(),
    )
}

/// A base path in the form request paths are compared in: canonical, lower-cased when case
/// does not count, no trailing slash (`""`: the root).
pub fn canonical_base(b: &str, canon: &CanonConfig) -> Result<String, String> {
    let b = normalize_base(b);
    if b.is_empty() {
        return Ok(b);
    }
    let c =
        canonical_path(&b, canon).map_err(|a| format!("ambiguous base path: {}", a.detail()))?;
    Ok(normalize_base(&c))
}

/// Loads and compiles a document. `base_path` (config) overrides the servers' paths; `canon`
/// says how paths compare (case, trailing slash) and whether `HEAD` is `GET`.
pub fn load_with(
    config_spec: &Value,
    base_path: Option<&str>,
    assert_formats: bool,
    canon: &CanonConfig,
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
        Some(b) => vec![canonical_base(b, canon).map_err(|e| err("", e))?],
        None => {
            let mut out = Vec::new();
            for b in server_base_paths(&doc)? {
                out.push(canonical_base(&b, canon).map_err(|e| err("/servers", e))?);
            }
            out.sort_by_key(|p| std::cmp::Reverse(p.len()));
            out.dedup();
            out
        }
    };

    let mut items = Vec::new();
    let mut router = Router::new(
        canon.case_insensitive_paths,
        canon.trailing_slash_insensitive,
    );
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

    let literals = Literals::collect(&doc, assert_formats);
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
        canon: canon.clone(),
        items,
        router,
        schemas,
        literals,
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

    /// Removes the base path from a canonical path; `None` when the path is outside every
    /// base path. Compares without regard to case with `case_insensitive_paths`.
    pub fn strip_base<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.base_paths.is_empty() {
            return Some(path);
        }
        for b in &self.base_paths {
            if b.is_empty() {
                return Some(path);
            }
            let head = path.get(..b.len());
            let same = head.is_some_and(|h| {
                h == b || (self.canon.case_insensitive_paths && h.eq_ignore_ascii_case(b))
            });
            if let (true, Some(rest)) = (same, path.get(b.len()..)) {
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
mod tests;
