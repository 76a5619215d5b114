//! Strict JSON for untrusted token parts and JWKS documents: duplicate member names are an
//! error (serde_json's `Value` silently keeps the last one, a classic parser differential),
//! nesting is bounded, and the input must be exactly one value.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Deepest nesting accepted (objects and arrays) in token headers, payloads and JWKS.
pub const MAX_DEPTH: usize = 32;

/// Parses `bytes` as one JSON value, refusing duplicate member names (at any depth),
/// nesting deeper than `max_depth`, invalid UTF-8 and trailing data.
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        depth: 0,
        max_depth,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Like [`parse_strict`] but the value must be a JSON object.
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, String> {
    match parse_strict(bytes, max_depth)? {
        Value::Object(m) => Ok(m),
        _ => Err("not a JSON object".into()),
    }
}

#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
    max_depth: usize,
}

impl Strict {
    fn deeper<E: de::Error>(self) -> Result<Strict, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom("JSON nested too deeply"));
        }
        Ok(Strict {
            depth: self.depth + 1,
            max_depth: self.max_depth,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let v = map.next_value_seed(inner)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_json() {
        let v = parse_strict(
            br#"{"a":[1,2,{"b":null}],"c":"x","d":1.5,"e":-3,"f":true}"#,
            8,
        )
        .unwrap();
        assert_eq!(v["a"][2]["b"], Value::Null);
        assert_eq!(v["d"], 1.5);
        assert_eq!(v["e"], -3);
    }

    #[test]
    fn duplicate_members_rejected_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"a":2}"#, 8).is_err());
        assert!(parse_strict(br#"{"x":{"a":1,"b":2,"a":3}}"#, 8).is_err());
        assert!(parse_strict(br#"[{"a":1},{"a":1,"a":1}]"#, 8).is_err());
        // The same name in sibling objects is fine.
        assert!(parse_strict(br#"[{"a":1},{"a":1}]"#, 8).is_ok());
        // Escaped spelling of the same name is a duplicate too.
        assert!(parse_strict(br#"{"alg":"HS256","\u0061lg":"none"}"#, 8).is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(10) + &"]".repeat(10);
        assert!(parse_strict(deep.as_bytes(), 10).is_ok());
        assert!(parse_strict(deep.as_bytes(), 9).is_err());
        let very = "[".repeat(5000) + &"]".repeat(5000);
        assert!(parse_strict(very.as_bytes(), MAX_DEPTH).is_err());
    }

    #[test]
    fn rejects_garbage_trailing_and_bad_utf8() {
        assert!(parse_strict(b"{} {}", 8).is_err());
        assert!(parse_strict(b"{\"a\":\"\xff\"}", 8).is_err());
        assert!(parse_strict(b"", 8).is_err());
        assert!(parse_object(b"[1]", 8).is_err());
        assert!(parse_object(b"\"s\"", 8).is_err());
        assert!(parse_object(b"{}", 8).is_ok());
    }
}
