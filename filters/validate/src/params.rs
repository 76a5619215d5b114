//! Parameter extraction (path, query, header, cookie), `style`/`explode` deserialization and
//! coercion of the text to the JSON types the schema asks for.

pub mod ambiguity;

use crate::numbers::{Decimal, Literals};
use crate::schema::{CompiledSchemas, Violation};
use crate::spec::{Location, Param, Shape, Style, Types};
use meshwall_core::http::cookie_pairs;
use meshwall_core::Request;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Text → JSON value of one of the allowed types; stays a string when nothing fits (the
/// schema then reports the type error). Integers of any size are integers; numbers are
/// exact or get the stand-in of [`Literals::check`] (one that cannot be checked exactly
/// stays a string).
pub fn coerce(s: &str, t: Types, lits: &Literals) -> Value {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let integer_text = !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit());
    if t.integer && integer_text {
        if let Some(v) = lits.value(s) {
            return v;
        }
    }
    if t.number && Decimal::parse(s).is_some() {
        if let Some(v) = lits.value(s) {
            return v;
        }
    }
    if t.boolean && (s == "true" || s == "false") {
        return Value::Bool(s == "true");
    }
    if t.null && s == "null" {
        return Value::Null;
    }
    Value::String(s.to_string())
}

fn split_list(s: &str, sep: char) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(sep).map(|x| x.to_string()).collect()
}

fn prop_types(props: &[(String, Types)], name: &str) -> Types {
    props
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, t)| *t)
        .unwrap_or_default()
}

/// Object from `k,v,k,v` or from `k=v` items.
fn object_from_items(
    items: &[String],
    pairs_with_eq: bool,
    props: &[(String, Types)],
    lits: &Literals,
) -> Value {
    let mut m = Map::new();
    if pairs_with_eq {
        for it in items {
            let (k, v) = it.split_once('=').unwrap_or((it.as_str(), ""));
            m.insert(k.to_string(), coerce(v, prop_types(props, k), lits));
        }
    } else {
        for pair in items.chunks(2) {
            if let [k, v] = pair {
                m.insert(k.clone(), coerce(v, prop_types(props, k), lits));
            } else if let [k] = pair {
                m.insert(k.clone(), Value::String(String::new()));
            }
        }
    }
    Value::Object(m)
}

/// A parameter holding JSON (`content: {application/json: …}`): the threat scan with the
/// default limits, numbers exact as in bodies.
fn json_value(text: &str, lits: &Literals) -> Result<Value, &'static str> {
    let stand_ins = crate::threat::scan_numbers(
        text.as_bytes(),
        &crate::config::JsonLimits::default(),
        Some(lits),
    )
    .map_err(|_| "value is not valid JSON or exceeds the JSON limits")?;
    let mut v: Value = serde_json::from_str(text).map_err(|_| "value is not valid JSON")?;
    crate::numbers::apply(&mut v, &stand_ins);
    Ok(v)
}

/// Deserializes one serialized value (`raw`, already taken out of its location) per style.
fn deserialize(p: &Param, raw: &str, lits: &Literals) -> Result<Value, &'static str> {
    // Strip label/matrix prefixes first.
    let (body, sep) = match p.style {
        Style::Label => {
            let b = raw
                .strip_prefix('.')
                .ok_or("label style value must start with `.`")?;
            (b.to_string(), if p.explode { '.' } else { ',' })
        }
        Style::Matrix => {
            let prefix = format!(";{}", p.name);
            let b = raw
                .strip_prefix(prefix.as_str())
                .ok_or("matrix style value must start with `;name`")?;
            let b = b.strip_prefix('=').unwrap_or(b);
            if p.explode {
                // ;id=1;id=2 → "1;id=2" after the first prefix: split on the repeated prefix.
                let rep = format!(";{}=", p.name);
                return Ok(match &p.shape {
                    Shape::Array(t) => {
                        Value::Array(b.split(rep.as_str()).map(|x| coerce(x, *t, lits)).collect())
                    }
                    Shape::Primitive(t) => coerce(b, *t, lits),
                    _ => Value::String(b.to_string()),
                });
            }
            (b.to_string(), ',')
        }
        Style::SpaceDelimited => (raw.to_string(), ' '),
        Style::PipeDelimited => (raw.to_string(), '|'),
        _ => (raw.to_string(), ','),
    };
    Ok(match &p.shape {
        Shape::Primitive(t) => coerce(&body, *t, lits),
        Shape::Array(t) => Value::Array(
            split_list(&body, sep)
                .iter()
                .map(|x| coerce(x.trim_matches(' '), *t, lits))
                .collect(),
        ),
        Shape::Object(props) => {
            let items = split_list(&body, sep);
            object_from_items(&items, p.explode && p.style != Style::Form, props, lits)
        }
        Shape::Json => json_value(&body, lits)?,
    })
}

/// Reads a query parameter; `None` when absent.
fn query_value(
    p: &Param,
    query: &[(String, String)],
    lits: &Literals,
) -> Result<Option<Value>, &'static str> {
    if p.style == Style::DeepObject {
        let prefix = format!("{}[", p.name);
        let props = if let Shape::Object(props) = &p.shape {
            props.as_slice()
        } else {
            &[]
        };
        let mut m = Map::new();
        for (k, v) in query {
            if let Some(inner) = k
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_suffix(']'))
            {
                m.insert(inner.to_string(), coerce(v, prop_types(props, inner), lits));
            }
        }
        return Ok(if m.is_empty() {
            None
        } else {
            Some(Value::Object(m))
        });
    }
    if let (Shape::Object(props), true) = (&p.shape, p.explode) {
        // form + explode: each property is its own query parameter.
        let mut m = Map::new();
        for (k, v) in query {
            if props.iter().any(|(n, _)| n == k) {
                m.insert(k.clone(), coerce(v, prop_types(props, k), lits));
            }
        }
        return Ok(if m.is_empty() {
            None
        } else {
            Some(Value::Object(m))
        });
    }
    let values: Vec<&str> = query
        .iter()
        .filter(|(k, _)| *k == p.name)
        .map(|(_, v)| v.as_str())
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    if let (Shape::Array(t), true) = (&p.shape, p.explode) {
        return Ok(Some(Value::Array(
            values.iter().map(|v| coerce(v, *t, lits)).collect(),
        )));
    }
    if values.len() > 1 {
        return Err("parameter must not be repeated");
    }
    deserialize(p, values.first().copied().unwrap_or_default(), lits).map(Some)
}

/// Names a query parameter declared by `params` would use.
fn declared_query(params: &[&Param], name: &str) -> bool {
    params.iter().any(|p| {
        p.name == name
            || (p.style == Style::DeepObject && name.starts_with(&format!("{}[", p.name)))
            || matches!(&p.shape, Shape::Object(props) if p.explode && p.style == Style::Form && props.iter().any(|(n, _)| n == name))
    })
}

/// Validates every parameter of an operation; appends violations. `query` is the query
/// string read with `meshwall_core::http::query_pairs` (what [`ambiguity::check`] saw).
#[allow(clippy::too_many_arguments)]
pub fn check(
    params: &[Param],
    path_values: &[(String, String)],
    req: &Request,
    query: &[(String, String)],
    schemas: &CompiledSchemas,
    lits: &Literals,
    reject_unknown_query: bool,
    max: usize,
    out: &mut Vec<Violation>,
) {
    let cookies = params
        .iter()
        .any(|p| p.location == Location::Cookie)
        .then(|| cookie_pairs(&req.headers));
    for p in params {
        let loc = p.location.name();
        let pointer = format!("#/{loc}/{}", crate::threat::escape_token(&p.name));
        let got: Result<Option<Value>, &'static str> = match p.location {
            Location::Path => match path_values.iter().find(|(k, _)| *k == p.name) {
                Some((_, v)) => deserialize(p, v, lits).map(Some),
                None => Ok(None),
            },
            Location::Query => query_value(p, query, lits),
            Location::Header => {
                let vals: Vec<&str> = req.headers.get_all(&p.name).collect();
                if vals.is_empty() {
                    Ok(None)
                } else {
                    deserialize(p, &vals.join(","), lits).map(Some)
                }
            }
            Location::Cookie => {
                let c = cookies.as_deref().unwrap_or_default();
                match c.iter().find(|(k, _)| *k == p.name) {
                    Some((_, v)) => {
                        deserialize(p, &percent_decode_str(v).decode_utf8_lossy(), lits).map(Some)
                    }
                    None => Ok(None),
                }
            }
        };
        match got {
            Err(msg) => out.push(Violation {
                location: loc,
                pointer,
                keyword: "style".into(),
                message: msg.into(),
            }),
            Ok(None) => {
                if p.required {
                    out.push(Violation {
                        location: loc,
                        pointer,
                        keyword: "required".into(),
                        message: format!("required {loc} parameter is missing"),
                    });
                }
            }
            Ok(Some(v)) => {
                if p.allow_empty && v == Value::String(String::new()) {
                    continue;
                }
                if let Some(idx) = p.schema {
                    schemas.validate(idx, &v, loc, &pointer, max, out);
                }
            }
        }
        if out.len() >= max {
            return;
        }
    }
    if reject_unknown_query {
        let declared: Vec<&Param> = params
            .iter()
            .filter(|p| p.location == Location::Query)
            .collect();
        // Each undeclared name once, until the list is full: the work stays linear in the
        // size of the query string (a long query of distinct names used to be quadratic).
        let mut seen: HashSet<&str> = HashSet::new();
        for (k, _) in query {
            if out.len() >= max {
                break;
            }
            if !declared_query(&declared, k) && seen.insert(k.as_str()) {
                out.push(Violation {
                    location: "query",
                    pointer: format!("#/query/{}", crate::threat::escape_token(k)),
                    keyword: "additionalProperties".into(),
                    message: "query parameter is not declared".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
