//! validate: OpenAPI path matching and parameter decoding through a fixed document (requests
//! as text, `crate::parse_request`), and JSON bodies: the threat scan (checked against
//! serde_json) and schema validation.

use crate::{admitted, parse_request, send_checked};
use meshwall_core::MemHost;
use meshwall_validate::config::JsonLimits;
use meshwall_validate::schema::{compile, Dialect};
use meshwall_validate::threat::scan;
use meshwall_validate::ValidatePolicy;
use serde_json::{json, Value};

/// The fuzzed document: every parameter location and style, a `$ref`'d body schema with
/// number bounds, formats, patterns and `additionalProperties: false`.
pub const SPEC: &str = r##"
openapi: 3.0.3
info: {title: shop, version: "1"}
servers: [{url: "https://api.example.com/v1"}]
paths:
  /pets:
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: tags, in: query, explode: false, schema: {type: array, items: {type: string, enum: [cat, dog]}}}
        - {name: filter, in: query, style: deepObject, schema: {type: object, properties: {age: {type: number}}}}
        - {name: since, in: query, schema: {type: string, format: date-time}}
        - {name: x-trace, in: header, required: true, schema: {type: string, pattern: "^[a-f0-9]+$"}}
      responses: {200: {description: ok}}
    post:
      requestBody:
        required: true
        content:
          application/json: {schema: {$ref: "#/components/schemas/Pet"}}
          text/plain: {}
      responses: {201: {description: ok}}
  /pets/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: integer, minimum: 1}}]
    get: {responses: {200: {description: ok}}}
    delete: {responses: {204: {description: ok}}}
  /pets/mine:
    get:
      parameters: [{name: session, in: cookie, required: true, schema: {type: string, minLength: 4}}]
      responses: {200: {description: ok}}
  /files/{name}.{ext}:
    get:
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, maxLength: 8}}
        - {name: ext, in: path, required: true, schema: {type: string, enum: [png, jpg]}}
      responses: {200: {description: ok}}
  /m/{coords}:
    get:
      parameters: [{name: coords, in: path, required: true, style: matrix, explode: true, schema: {type: array, items: {type: integer}}}]
      responses: {200: {description: ok}}
components:
  schemas:
    Pet:
      type: object
      required: [name]
      additionalProperties: false
      properties:
        name: {type: string, maxLength: 10}
        tag: {type: string, nullable: true}
        age: {type: integer, minimum: 0, exclusiveMinimum: true, maximum: 1.0e21}
        weight: {type: number, multipleOf: 0.5}
        email: {type: string, format: email}
        tags: {type: array, maxItems: 3, uniqueItems: true, items: {type: string}}
"##;

fn policy(host: &MemHost) -> ValidatePolicy {
    let cfg = json!({"spec": SPEC, "max_body_bytes": 4096, "reject_unknown_query_params": true});
    let built = meshwall_core::parse_config(cfg.to_string().as_bytes())
        .and_then(|c| <ValidatePolicy as meshwall_core::Policy>::new(c, host));
    match built {
        Ok(p) => p,
        Err(e) => panic!("the fuzz spec must load: {e}"),
    }
}

/// Admitted `POST /v1/pets` with `content-type: application/json`: the body must be a Pet.
fn is_pet(body: &[u8]) -> bool {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let known = ["name", "tag", "age", "weight", "email", "tags"];
    m.keys().all(|k| known.contains(&k.as_str()))
        && m.get("name").and_then(Value::as_str).is_some_and(|n| n.chars().count() <= 10)
        && m.get("age").is_none_or(|a| a.as_f64().is_some_and(|a| a > 0.0))
        && m.get("tags").is_none_or(|t| t.as_array().is_some_and(|t| t.len() <= 3))
}

/// `validate_request`: the input is a request as text (see `crate::parse_request`).
pub fn request(data: &[u8]) {
    thread_local! {
        static P: (MemHost, ValidatePolicy) = { let h = MemHost::new(); let p = policy(&h); (h, p) };
    }
    let (req, body) = parse_request(data);
    P.with(|(host, p)| {
        let s = send_checked(p, host, &req, body.as_deref());
        if !admitted(&s) {
            return;
        }
        let ct: Vec<&str> = req.headers.get_all("content-type").collect();
        if req.method == "POST" && req.path == "/v1/pets" && ct == ["application/json"] {
            let b = body.as_deref().unwrap_or_default();
            assert!(is_pet(b), "admitted a body that is not a Pet: {:?}", String::from_utf8_lossy(b));
        }
        if req.method == "GET" {
            if let Some(id) = req.path.strip_prefix("/v1/pets/") {
                if id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() {
                    assert!(id.trim_start_matches('0') != "", "admitted pet id 0: {id}");
                }
            }
        }
    });
}

/// Limits under which serde_json and the scan must agree: every count and length off,
/// duplicates allowed (serde_json keeps the last), the deepest nesting the scan allows.
fn lenient() -> JsonLimits {
    JsonLimits {
        max_depth: 120,
        max_array_elements: 0,
        max_object_entries: 0,
        max_name_length: 0,
        max_string_length: 0,
        allow_duplicate_names: true,
    }
}

fn schema_doc() -> Value {
    json!({"s": {"type": "object", "required": ["a"], "additionalProperties": {"type": "integer", "minimum": -5},
                 "properties": {"a": {"type": "string", "pattern": "^[a-z]{1,8}$"},
                                "b": {"type": "array", "items": {"$ref": "#/t"}, "maxItems": 4},
                                "c": {"type": "number", "exclusiveMaximum": 1e300}}},
           "t": {"oneOf": [{"type": "integer"}, {"type": "string", "format": "uuid"}]}})
}

/// `json_body`: the input is a request body. The threat scan with the default limits never
/// accepts what the lenient scan refuses; the lenient scan accepts exactly what serde_json
/// parses (apart from numbers serde_json cannot hold); what parses is validated against a
/// compiled schema (2020-12 and the 3.0 dialect).
pub fn json_body(data: &[u8]) {
    thread_local! {
        static S: Option<(meshwall_validate::schema::CompiledSchemas, Vec<boon::SchemaIndex>)> =
            compile(schema_doc(), &["#/s".to_string()], Dialect::Oas31(boon::Draft::V2020_12), true).ok();
    }
    let strict = scan(data, &JsonLimits::default());
    let loose = scan(data, &lenient());
    if strict.is_ok() {
        assert!(loose.is_ok(), "default limits accept what lenient ones refuse: {loose:?}");
    }
    let parsed = serde_json::from_slice::<Value>(data);
    match (&loose, &parsed) {
        (Ok(()), Err(e)) => {
            let m = e.to_string();
            assert!(m.contains("number out of range") || m.contains("recursion limit"),
                    "scan accepted what serde_json refuses ({m}): {:?}", String::from_utf8_lossy(data));
        }
        (Err(t), Ok(_)) => {
            panic!("scan refused what serde_json parses ({t:?}): {:?}", String::from_utf8_lossy(data))
        }
        _ => {}
    }
    if let (Ok(()), Ok(v)) = (strict, parsed) {
        S.with(|s| {
            if let Some((schemas, idx)) = s {
                let mut out = Vec::new();
                for i in idx {
                    let _ = schemas.validate(*i, &v, "body", "", 10, &mut out);
                }
            }
        });
    }
}
