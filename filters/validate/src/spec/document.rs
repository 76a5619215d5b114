//! The document itself: JSON or YAML text to a JSON value, local `$ref`s, the 3.0 schema
//! translation and the base paths of `servers`.

use super::{err, SpecError};
use crate::schema;
use serde_json::{Map, Value};

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
pub(super) fn resolve<'a>(
    doc: &'a Value,
    ptr: &str,
    v: &'a Value,
) -> Result<(String, &'a Value), SpecError> {
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
pub(super) fn translate_document_30(v: &mut Value, assert_formats: bool, depth: usize) {
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
pub(super) fn server_base_paths(doc: &Value) -> Result<Vec<String>, SpecError> {
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
