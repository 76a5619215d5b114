//! The JSON Schema side: OpenAPI 3.0 → draft-4 translation, compiling schemas with `boon`,
//! and turning `boon` errors into violations that never echo request values.

use boon::{Compiler, Draft, ErrorKind, SchemaIndex, Schemas, ValidationError};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

/// Base URL of the OpenAPI document inside the compiler (never fetched).
pub const BASE: &str = "https://meshwall.invalid/openapi.json";
/// The OpenAPI 3.1 default dialect: 2020-12 plus annotation-only keywords.
pub const OAS31_DIALECT: &str = "https://spec.openapis.org/oas/3.1/dialect/base";

/// Characters kept as-is in the URL fragment carrying a JSON Pointer.
const FRAGMENT_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'~')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

/// One failed check, ready for the reply. `message` never contains request data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `body`, `path`, `query`, `header`, `cookie`, or `request`.
    pub location: &'static str,
    pub pointer: String,
    pub keyword: String,
    pub message: String,
}

/// Which JSON Schema semantics the schemas of a document get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAPI 3.0.x: the 3.0 schema object translated to draft 4.
    Oas30,
    /// OpenAPI 3.1.x: JSON Schema 2020-12 (or the `jsonSchemaDialect` draft).
    Oas31(Draft),
}

/// The compiled schemas of one document.
pub struct CompiledSchemas {
    schemas: Schemas,
}

impl std::fmt::Debug for CompiledSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompiledSchemas({})", self.schemas.size())
    }
}

struct NoLoader;

impl boon::UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!(
            "external reference `{url}` is not loaded (only references within the document are)"
        )
        .into())
    }
}

fn format_int32(v: &Value) -> Result<(), Box<dyn std::error::Error>> {
    int_range(v, i64::from(i32::MIN), i64::from(i32::MAX))
}

fn format_int64(v: &Value) -> Result<(), Box<dyn std::error::Error>> {
    int_range(v, i64::MIN, i64::MAX)
}

/// Whether a number is an integer within `lo..=hi`, on its exact value: `i64`/`u64` as they
/// are, an `f64` as the exact binary value it holds (request numbers that do not fit are
/// given as exact stand-ins, `crate::numbers`), never through a rounded bound (`i64::MAX as
/// f64` is 2^63).
fn int_range(v: &Value, lo: i64, hi: i64) -> Result<(), Box<dyn std::error::Error>> {
    let Value::Number(n) = v else { return Ok(()) };
    let exact: Option<i128> = if let Some(i) = n.as_i64() {
        Some(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Some(i128::from(u))
    } else {
        match n.as_f64() {
            Some(f) if f.fract() != 0.0 || !f.is_finite() => return Err("not an integer".into()),
            // Integral and below 2^100: `as` is exact.
            Some(f) if f.abs() < 1e30 => Some(f as i128),
            _ => None,
        }
    };
    match exact {
        Some(i) if (i128::from(lo)..=i128::from(hi)).contains(&i) => Ok(()),
        _ => Err("out of range".into()),
    }
}

/// Escapes a JSON Pointer for a URL fragment.
pub fn fragment(ptr: &str) -> String {
    utf8_percent_encode(ptr, FRAGMENT_KEEP).to_string()
}

/// Compiles the schemas at `pointers` (JSON Pointers into `doc`). `$ref`s resolve within the
/// document; anything external is refused. Errors name the pointer at fault.
pub fn compile(
    doc: Value,
    pointers: &[String],
    dialect: Dialect,
    assert_formats: bool,
) -> Result<(CompiledSchemas, Vec<SchemaIndex>), String> {
    compile_with_preloaded(doc, pointers, dialect, assert_formats, Vec::new())
}

/// [`compile`] with extra documents made available under absolute URLs (`(url, document)`),
/// as if they had been fetched; references to any other external URL are still refused.
///
/// For tests that need fixed external documents (the JSON-Schema-Test-Suite's `remotes/`).
/// The filter itself never calls this: its configuration has no way to name external
/// documents, and the proxy never fetches any.
pub fn compile_with_preloaded(
    doc: Value,
    pointers: &[String],
    dialect: Dialect,
    assert_formats: bool,
    preloaded: Vec<(String, Value)>,
) -> Result<(CompiledSchemas, Vec<SchemaIndex>), String> {
    let mut c = Compiler::new();
    for (url, d) in preloaded {
        c.add_resource(&url, d)
            .map_err(|e| format!("preloaded document `{url}`: {e}"))?;
    }
    c.use_loader(Box::new(NoLoader));
    c.set_default_draft(match dialect {
        Dialect::Oas30 => Draft::V4,
        Dialect::Oas31(d) => d,
    });
    if assert_formats {
        c.enable_format_assertions();
        c.register_format(boon::Format {
            name: "int32",
            func: format_int32,
        });
        c.register_format(boon::Format {
            name: "int64",
            func: format_int64,
        });
    }
    let dialect_meta = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": OAS31_DIALECT,
        "$dynamicAnchor": "meta",
        "allOf": [{"$ref": "https://json-schema.org/draft/2020-12/schema"}]
    });
    c.add_resource(OAS31_DIALECT, dialect_meta)
        .map_err(|e| clean(&e.to_string()))?;
    c.add_resource(BASE, doc)
        .map_err(|e| clean(&e.to_string()))?;
    let mut schemas = Schemas::new();
    let mut out = Vec::with_capacity(pointers.len());
    for p in pointers {
        let idx = c
            .compile(&format!("{BASE}#{}", fragment(p)), &mut schemas)
            .map_err(|e| format!("schema at `#{p}`: {}", describe_compile_error(&e)))?;
        out.push(idx);
    }
    Ok((CompiledSchemas { schemas }, out))
}

fn clean(s: &str) -> String {
    s.replace(BASE, "")
}

fn describe_compile_error(e: &boon::CompileError) -> String {
    match e {
        boon::CompileError::ValidationError { url, src } => {
            let mut leaves = Vec::new();
            leaf_errors(src, &mut leaves);
            let what: Vec<String> = leaves
                .iter()
                .take(3)
                .map(|l| format!("at `{}`: {}", l.instance_location, l.kind))
                .collect();
            format!(
                "`{}` is not a valid JSON Schema ({})",
                clean(url),
                what.join("; ")
            )
        }
        other => clean(&other.to_string()),
    }
}

fn leaf_errors<'a, 's, 'v>(
    e: &'a ValidationError<'s, 'v>,
    out: &mut Vec<&'a ValidationError<'s, 'v>>,
) {
    if e.causes.is_empty() {
        out.push(e);
    }
    for c in &e.causes {
        leaf_errors(c, out);
    }
}

impl CompiledSchemas {
    /// Validates `v`; violations get `location` and pointers prefixed with `prefix`.
    pub fn validate(
        &self,
        idx: SchemaIndex,
        v: &Value,
        location: &'static str,
        prefix: &str,
        max: usize,
        out: &mut Vec<Violation>,
    ) -> bool {
        if !self.schemas.contains(idx) {
            out.push(Violation {
                location,
                pointer: prefix.to_string(),
                keyword: "schema".into(),
                message: "schema unavailable".into(),
            });
            return false;
        }
        match self.schemas.validate(v, idx) {
            Ok(()) => true,
            Err(e) => {
                let before = out.len();
                collect(&e, location, prefix, max, out);
                if out.len() == before {
                    out.push(Violation {
                        location,
                        pointer: prefix.to_string(),
                        keyword: "schema".into(),
                        message: "does not match the schema".into(),
                    });
                }
                false
            }
        }
    }
}

fn push(
    out: &mut Vec<Violation>,
    max: usize,
    location: &'static str,
    pointer: String,
    keyword: &str,
    message: String,
) {
    if out.len() < max.max(1) {
        out.push(Violation {
            location,
            pointer,
            keyword: keyword.to_string(),
            message,
        });
    }
}

fn collect(
    e: &ValidationError<'_, '_>,
    location: &'static str,
    prefix: &str,
    max: usize,
    out: &mut Vec<Violation>,
) {
    if out.len() >= max.max(1) {
        // The list is full: the rest of a large error tree (one node per failing item of a
        // big array) is not walked.
        return;
    }
    let at = format!("{prefix}{}", e.instance_location);
    let child = |name: &str| format!("{at}/{}", crate::threat::escape_token(name));
    match &e.kind {
        // Containers: the interesting errors are below.
        ErrorKind::Group
        | ErrorKind::Schema { .. }
        | ErrorKind::Reference { .. }
        | ErrorKind::AllOf
            if !e.causes.is_empty() =>
        {
            for c in &e.causes {
                collect(c, location, prefix, max, out);
            }
        }
        ErrorKind::Required { want } => {
            for w in want {
                push(
                    out,
                    max,
                    location,
                    child(w),
                    "required",
                    "required property is missing".into(),
                );
            }
        }
        ErrorKind::AdditionalProperties { got } => {
            for g in got {
                push(
                    out,
                    max,
                    location,
                    child(g),
                    "additionalProperties",
                    "property is not allowed".into(),
                );
            }
        }
        ErrorKind::PropertyName { prop } => {
            push(
                out,
                max,
                location,
                child(prop),
                "propertyNames",
                "property name is not allowed".into(),
            );
        }
        ErrorKind::Dependency { missing, .. } | ErrorKind::DependentRequired { missing, .. } => {
            let kw = if matches!(e.kind, ErrorKind::Dependency { .. }) {
                "dependencies"
            } else {
                "dependentRequired"
            };
            for m in missing {
                push(
                    out,
                    max,
                    location,
                    child(m),
                    kw,
                    "property required by another property is missing".into(),
                );
            }
        }
        kind => {
            let (kw, msg) = describe(kind);
            push(out, max, location, at, kw, msg);
        }
    }
}

fn type_names(t: &boon::Types) -> String {
    t.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Keyword and a short message built from the error kind only (limits come from the
/// schema, never from the request).
fn describe(kind: &ErrorKind<'_, '_>) -> (&'static str, String) {
    match kind {
        ErrorKind::Type { want, .. } => ("type", format!("must be {}", type_names(want))),
        ErrorKind::Enum { .. } => ("enum", "must be one of the allowed values".into()),
        ErrorKind::Const { .. } => ("const", "must be the allowed constant".into()),
        ErrorKind::Format { want, .. } => ("format", format!("must be a valid {want}")),
        ErrorKind::MinProperties { want, .. } => (
            "minProperties",
            format!("must have at least {want} properties"),
        ),
        ErrorKind::MaxProperties { want, .. } => (
            "maxProperties",
            format!("must have at most {want} properties"),
        ),
        ErrorKind::MinItems { want, .. } => {
            ("minItems", format!("must have at least {want} items"))
        }
        ErrorKind::MaxItems { want, .. } => ("maxItems", format!("must have at most {want} items")),
        ErrorKind::Contains => ("contains", "no item matches the `contains` schema".into()),
        ErrorKind::MinContains { want, .. } => (
            "minContains",
            format!("at least {want} items must match `contains`"),
        ),
        ErrorKind::MaxContains { want, .. } => (
            "maxContains",
            format!("at most {want} items may match `contains`"),
        ),
        ErrorKind::UniqueItems { .. } => ("uniqueItems", "items must be unique".into()),
        ErrorKind::AdditionalItems { .. } => ("additionalItems", "too many items".into()),
        ErrorKind::MinLength { want, .. } => {
            ("minLength", format!("must be at least {want} characters"))
        }
        ErrorKind::MaxLength { want, .. } => {
            ("maxLength", format!("must be at most {want} characters"))
        }
        ErrorKind::Pattern { want, .. } => ("pattern", format!("must match pattern {want}")),
        ErrorKind::ContentEncoding { want, .. } => {
            ("contentEncoding", format!("must be {want} encoded"))
        }
        ErrorKind::ContentMediaType { want, .. } => ("contentMediaType", format!("must be {want}")),
        ErrorKind::ContentSchema => ("contentSchema", "content does not match its schema".into()),
        ErrorKind::Minimum { want, .. } => ("minimum", format!("must be >= {want}")),
        ErrorKind::Maximum { want, .. } => ("maximum", format!("must be <= {want}")),
        ErrorKind::ExclusiveMinimum { want, .. } => {
            ("exclusiveMinimum", format!("must be > {want}"))
        }
        ErrorKind::ExclusiveMaximum { want, .. } => {
            ("exclusiveMaximum", format!("must be < {want}"))
        }
        ErrorKind::MultipleOf { want, .. } => {
            ("multipleOf", format!("must be a multiple of {want}"))
        }
        ErrorKind::Not => ("not", "must not match the `not` schema".into()),
        ErrorKind::AllOf => ("allOf", "must match all schemas in `allOf`".into()),
        ErrorKind::AnyOf => ("anyOf", "must match at least one schema in `anyOf`".into()),
        ErrorKind::OneOf(None) => (
            "oneOf",
            "must match exactly one schema in `oneOf` (matches none)".into(),
        ),
        ErrorKind::OneOf(Some(_)) => (
            "oneOf",
            "must match exactly one schema in `oneOf` (matches several)".into(),
        ),
        ErrorKind::FalseSchema => ("false", "value is not allowed here".into()),
        ErrorKind::RefCycle { .. } => ("$ref", "reference cycle".into()),
        _ => ("schema", "does not match the schema".into()),
    }
}

/// Translates an OpenAPI 3.0 schema object (in place) to draft-4 JSON Schema:
/// `nullable: true` adds `"null"` to an explicit `type` (OAS 3.0.3: only when `type` is
/// present; other keywords such as `enum` keep their meaning); `required` entries naming
/// `readOnly` properties are dropped (they apply to responses only); `format` is removed
/// when format assertions are off (draft 4 would otherwise assert it). Boolean
/// `exclusiveMinimum/Maximum` already have draft-4 meaning. Extensions (`x-…`),
/// `discriminator`, `xml`, `example`, `externalDocs`, `deprecated` are annotations.
pub fn translate_30(schema: &mut Value, assert_formats: bool) {
    let Value::Object(m) = schema else { return };
    if m.contains_key("$ref") {
        // Siblings of `$ref` are ignored in 3.0 (draft 4 ignores them too).
        return;
    }
    if m.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = m.get("type").cloned() {
            m.insert(
                "type".into(),
                Value::Array(vec![Value::String(t), Value::from("null")]),
            );
        }
    }
    m.remove("nullable");
    if !assert_formats {
        m.remove("format");
    }
    drop_read_only_required(m);
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(props)) = m.get_mut(key) {
            for v in props.values_mut() {
                translate_30(v, assert_formats);
            }
        }
    }
    for key in ["additionalProperties", "not", "additionalItems"] {
        if let Some(v) = m.get_mut(key) {
            translate_30(v, assert_formats);
        }
    }
    match m.get_mut("items") {
        Some(Value::Array(a)) => a.iter_mut().for_each(|v| translate_30(v, assert_formats)),
        Some(v) => translate_30(v, assert_formats),
        None => {}
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(a)) = m.get_mut(key) {
            a.iter_mut().for_each(|v| translate_30(v, assert_formats));
        }
    }
    if let Some(Value::Object(deps)) = m.get_mut("dependencies") {
        for v in deps.values_mut() {
            if v.is_object() {
                translate_30(v, assert_formats);
            }
        }
    }
}

fn drop_read_only_required(m: &mut Map<String, Value>) {
    let read_only: Vec<String> = match m.get("properties") {
        Some(Value::Object(props)) => props
            .iter()
            .filter(|(_, v)| v.get("readOnly") == Some(&Value::Bool(true)))
            .map(|(k, _)| k.clone())
            .collect(),
        _ => return,
    };
    if read_only.is_empty() {
        return;
    }
    if let Some(Value::Array(req)) = m.get_mut("required") {
        req.retain(|r| !r.as_str().is_some_and(|s| read_only.iter().any(|x| x == s)));
        if req.is_empty() {
            // Draft 4 requires at least one entry.
            m.remove("required");
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
