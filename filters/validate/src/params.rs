//! Parameter extraction (path, query, header, cookie), `style`/`explode` deserialization and
//! coercion of the text to the JSON types the schema asks for.

use crate::schema::{CompiledSchemas, Violation};
use crate::spec::{Location, Param, Shape, Style, Types};
use meshwall_core::Request;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

/// `(name, value)` pairs of a query string, decoded.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(p), String::new()),
        })
        .collect()
}

/// `(name, value)` pairs of every `Cookie` header.
pub fn parse_cookies(req: &Request) -> Vec<(String, String)> {
    req.headers
        .get_all("cookie")
        .flat_map(|h| h.split(';'))
        .filter_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// Text → JSON value of one of the allowed types; stays a string when nothing fits (the
/// schema then reports the type error).
pub fn coerce(s: &str, t: Types) -> Value {
    if t.integer {
        if let Ok(i) = s.parse::<i64>() {
            return Value::from(i);
        }
    }
    if t.number {
        if let Ok(f) = s.parse::<f64>() {
            let numeric = s
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
            if numeric && f.is_finite() {
                if let Ok(i) = s.parse::<i64>() {
                    return Value::from(i);
                }
                if let Some(n) = serde_json::Number::from_f64(f) {
                    return Value::Number(n);
                }
            }
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
fn object_from_items(items: &[String], pairs_with_eq: bool, props: &[(String, Types)]) -> Value {
    let mut m = Map::new();
    if pairs_with_eq {
        for it in items {
            let (k, v) = it.split_once('=').unwrap_or((it.as_str(), ""));
            m.insert(k.to_string(), coerce(v, prop_types(props, k)));
        }
    } else {
        for pair in items.chunks(2) {
            if let [k, v] = pair {
                m.insert(k.clone(), coerce(v, prop_types(props, k)));
            } else if let [k] = pair {
                m.insert(k.clone(), Value::String(String::new()));
            }
        }
    }
    Value::Object(m)
}

/// Deserializes one serialized value (`raw`, already taken out of its location) per style.
fn deserialize(p: &Param, raw: &str) -> Result<Value, &'static str> {
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
                        Value::Array(b.split(rep.as_str()).map(|x| coerce(x, *t)).collect())
                    }
                    Shape::Primitive(t) => coerce(b, *t),
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
        Shape::Primitive(t) => coerce(&body, *t),
        Shape::Array(t) => Value::Array(
            split_list(&body, sep)
                .iter()
                .map(|x| coerce(x.trim_matches(' '), *t))
                .collect(),
        ),
        Shape::Object(props) => {
            let items = split_list(&body, sep);
            object_from_items(&items, p.explode && p.style != Style::Form, props)
        }
        Shape::Json => serde_json::from_str(&body).map_err(|_| "value is not valid JSON")?,
    })
}

/// Reads a query parameter; `None` when absent.
fn query_value(p: &Param, query: &[(String, String)]) -> Result<Option<Value>, &'static str> {
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
                m.insert(inner.to_string(), coerce(v, prop_types(props, inner)));
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
                m.insert(k.clone(), coerce(v, prop_types(props, k)));
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
            values.iter().map(|v| coerce(v, *t)).collect(),
        )));
    }
    if values.len() > 1 {
        return Err("parameter must not be repeated");
    }
    deserialize(p, values.first().copied().unwrap_or_default()).map(Some)
}

/// Names a query parameter declared by `params` would use.
fn declared_query(params: &[&Param], name: &str) -> bool {
    params.iter().any(|p| {
        p.name == name
            || (p.style == Style::DeepObject && name.starts_with(&format!("{}[", p.name)))
            || matches!(&p.shape, Shape::Object(props) if p.explode && p.style == Style::Form && props.iter().any(|(n, _)| n == name))
    })
}

/// Validates every parameter of an operation; appends violations.
pub fn check(
    params: &[Param],
    path_values: &[(String, String)],
    req: &Request,
    schemas: &CompiledSchemas,
    reject_unknown_query: bool,
    max: usize,
    out: &mut Vec<Violation>,
) {
    let query = parse_query(req.query().unwrap_or_default());
    let cookies = params
        .iter()
        .any(|p| p.location == Location::Cookie)
        .then(|| parse_cookies(req));
    for p in params {
        let loc = p.location.name();
        let pointer = format!("#/{loc}/{}", crate::threat::escape_token(&p.name));
        let got: Result<Option<Value>, &'static str> = match p.location {
            Location::Path => match path_values.iter().find(|(k, _)| *k == p.name) {
                Some((_, v)) => deserialize(p, v).map(Some),
                None => Ok(None),
            },
            Location::Query => query_value(p, &query),
            Location::Header => {
                let vals: Vec<&str> = req.headers.get_all(&p.name).collect();
                if vals.is_empty() {
                    Ok(None)
                } else {
                    deserialize(p, &vals.join(",")).map(Some)
                }
            }
            Location::Cookie => {
                let c = cookies.as_deref().unwrap_or_default();
                match c.iter().find(|(k, _)| *k == p.name) {
                    Some((_, v)) => {
                        deserialize(p, &percent_decode_str(v).decode_utf8_lossy()).map(Some)
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
        for (k, _) in &query {
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
mod tests {
    use super::*;

    const INT: Types = Types {
        integer: true,
        number: false,
        boolean: false,
        null: false,
    };
    const NUM: Types = Types {
        integer: false,
        number: true,
        boolean: false,
        null: false,
    };
    const BOOL: Types = Types {
        integer: false,
        number: false,
        boolean: true,
        null: false,
    };

    fn param(style: Style, explode: bool, shape: Shape) -> Param {
        Param {
            name: "id".into(),
            location: Location::Query,
            required: false,
            style,
            explode,
            allow_empty: false,
            shape,
            schema: None,
        }
    }

    #[test]
    fn coercion() {
        assert_eq!(coerce("12", INT), Value::from(12));
        assert_eq!(coerce("-3", INT), Value::from(-3));
        assert_eq!(coerce("1.5", INT), Value::from("1.5"));
        assert_eq!(coerce("1.5", NUM), serde_json::json!(1.5));
        assert_eq!(coerce("7", NUM), Value::from(7));
        assert_eq!(coerce("inf", NUM), Value::from("inf"));
        assert_eq!(coerce("NaN", NUM), Value::from("NaN"));
        assert_eq!(coerce("true", BOOL), Value::Bool(true));
        assert_eq!(coerce("True", BOOL), Value::from("True"));
        assert_eq!(coerce("null", Types { null: true, ..INT }), Value::Null);
        assert_eq!(coerce("12", Types::default()), Value::from("12"));
    }

    #[test]
    fn query_styles() {
        let q = parse_query("id=1&id=2&csv=3,4&sp=5%206&pipe=7|8&f[a]=1&f[b]=x&plus=a+b&empty");
        let mut p = param(Style::Form, true, Shape::Array(INT));
        assert_eq!(
            query_value(&p, &q).unwrap(),
            Some(serde_json::json!([1, 2]))
        );
        p.name = "csv".into();
        p.explode = false;
        assert_eq!(
            query_value(&p, &q).unwrap(),
            Some(serde_json::json!([3, 4]))
        );
        p.name = "sp".into();
        p.style = Style::SpaceDelimited;
        assert_eq!(
            query_value(&p, &q).unwrap(),
            Some(serde_json::json!([5, 6]))
        );
        p.name = "pipe".into();
        p.style = Style::PipeDelimited;
        assert_eq!(
            query_value(&p, &q).unwrap(),
            Some(serde_json::json!([7, 8]))
        );
        let mut d = param(
            Style::DeepObject,
            true,
            Shape::Object(vec![("a".into(), INT)]),
        );
        d.name = "f".into();
        assert_eq!(
            query_value(&d, &q).unwrap(),
            Some(serde_json::json!({"a": 1, "b": "x"}))
        );
        let mut s = param(Style::Form, true, Shape::Primitive(Types::default()));
        s.name = "plus".into();
        assert_eq!(query_value(&s, &q).unwrap(), Some(Value::from("a b")));
        s.name = "empty".into();
        assert_eq!(query_value(&s, &q).unwrap(), Some(Value::from("")));
        // A scalar given twice is an error, not silently the first or last.
        s.name = "id".into();
        assert!(query_value(&s, &q).is_err());
        s.name = "absent".into();
        assert_eq!(query_value(&s, &q).unwrap(), None);
        // form + explode object: properties are top-level parameters.
        let o = param(
            Style::Form,
            true,
            Shape::Object(vec![
                ("csv".into(), Types::default()),
                ("sp".into(), Types::default()),
            ]),
        );
        assert_eq!(
            query_value(&o, &q).unwrap(),
            Some(serde_json::json!({"csv": "3,4", "sp": "5 6"}))
        );
        let mut o = param(Style::Form, false, Shape::Object(vec![("R".into(), INT)]));
        o.name = "c".into();
        assert_eq!(
            query_value(&o, &parse_query("c=R,100,G,200")).unwrap(),
            Some(serde_json::json!({"R": 100, "G": "200"}))
        );
    }

    #[test]
    fn path_styles() {
        let simple = param(Style::Simple, false, Shape::Array(INT));
        assert_eq!(
            deserialize(&simple, "3,4,5").unwrap(),
            serde_json::json!([3, 4, 5])
        );
        let obj = param(Style::Simple, true, Shape::Object(vec![("a".into(), INT)]));
        assert_eq!(
            deserialize(&obj, "a=1,b=2").unwrap(),
            serde_json::json!({"a": 1, "b": "2"})
        );
        let obj = param(Style::Simple, false, Shape::Object(vec![]));
        assert_eq!(
            deserialize(&obj, "a,1,b,2").unwrap(),
            serde_json::json!({"a": "1", "b": "2"})
        );
        let label = param(Style::Label, false, Shape::Array(INT));
        assert_eq!(
            deserialize(&label, ".3,4").unwrap(),
            serde_json::json!([3, 4])
        );
        let label = param(Style::Label, true, Shape::Array(INT));
        assert_eq!(
            deserialize(&label, ".3.4").unwrap(),
            serde_json::json!([3, 4])
        );
        assert!(deserialize(&label, "3.4").is_err());
        let m = param(Style::Matrix, false, Shape::Array(INT));
        assert_eq!(
            deserialize(&m, ";id=3,4").unwrap(),
            serde_json::json!([3, 4])
        );
        let m = param(Style::Matrix, true, Shape::Array(INT));
        assert_eq!(
            deserialize(&m, ";id=3;id=4").unwrap(),
            serde_json::json!([3, 4])
        );
        let m = param(Style::Matrix, false, Shape::Primitive(INT));
        assert_eq!(deserialize(&m, ";id=9").unwrap(), Value::from(9));
        let j = param(Style::Form, true, Shape::Json);
        assert_eq!(
            deserialize(&j, "{\"a\":1}").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert!(deserialize(&j, "{").is_err());
    }

    #[test]
    fn unknown_query_names_reported_once_each_up_to_the_cap() {
        let (schemas, _) = crate::schema::compile(
            serde_json::json!({}),
            &[],
            crate::schema::Dialect::Oas30,
            true,
        )
        .unwrap();
        let declared = [param(Style::Form, true, Shape::Primitive(INT))];
        let check_query = |q: &str, max: usize| {
            let r = Request {
                path: format!("/x?{q}"),
                ..Default::default()
            };
            let mut out = Vec::new();
            check(&declared, &[], &r, &schemas, true, max, &mut out);
            out.into_iter().map(|v| v.pointer).collect::<Vec<_>>()
        };
        assert_eq!(
            check_query("b=1&id=2&b=3&a%2Fc=4&b=5", 10),
            vec!["#/query/b", "#/query/a~1c"]
        );
        // A long query string of distinct undeclared names (what a client can fit in the
        // request line): the first `max` names, in order, and nothing more.
        let long: Vec<String> = (0..40_000).map(|i| format!("p{i}")).collect();
        assert_eq!(
            check_query(&long.join("&"), 3),
            vec!["#/query/p0", "#/query/p1", "#/query/p2"]
        );
        assert!(check_query("id=1", 10).is_empty());
    }

    #[test]
    fn cookies_parse() {
        let req = Request {
            headers: meshwall_core::Headers::from_pairs([
                ("cookie", "a=1; b=\"two\""),
                ("cookie", "c=3"),
            ]),
            ..Default::default()
        };
        assert_eq!(
            parse_cookies(&req),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two".into()),
                ("c".into(), "3".into())
            ]
        );
    }
}
