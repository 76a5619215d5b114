//! Parameter objects: location, style, explode, and the coercion shape read from the schema.

use super::document::resolve;
use super::{err, tok, Location, Param, Shape, SpecError, Style, Types};
use serde_json::Value;

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
pub(super) struct RawParam {
    pub(super) param: Param,
    pub(super) schema_ptr: Option<String>,
}

pub(super) fn read_param(doc: &Value, ptr: &str, v: &Value) -> Result<RawParam, SpecError> {
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
