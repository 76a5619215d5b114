use super::*;
use serde_json::json;

fn check(schema: Value, dialect: Dialect, value: Value) -> Vec<Violation> {
    let doc = json!({"components": {"schemas": {"s": schema}}});
    let (c, idx) = compile(doc, &["/components/schemas/s".into()], dialect, true).unwrap();
    let mut out = Vec::new();
    c.validate(idx[0], &value, "body", "", 10, &mut out);
    out
}

#[test]
fn nullable_translation() {
    let mut s = json!({"type": "object", "properties": {
        "a": {"type": "string", "nullable": true},
        "b": {"type": "string", "nullable": true, "enum": ["x"]},
        "c": {"nullable": true},
        "d": {"type": "integer"}
    }});
    translate_30(&mut s, true);
    assert_eq!(s["properties"]["a"]["type"], json!(["string", "null"]));
    assert_eq!(s["properties"]["b"]["type"], json!(["string", "null"]));
    assert!(s["properties"]["c"].get("type").is_none());
    let v = |val| check(s.clone(), Dialect::Oas30, val);
    assert!(v(json!({"a": null, "d": 1})).is_empty());
    // enum without null still refuses null (OAS 3.0.3 clarification).
    assert_eq!(v(json!({"b": null}))[0].keyword, "enum");
    let e = v(json!({"d": null}));
    assert_eq!(
        (e[0].pointer.as_str(), e[0].keyword.as_str()),
        ("/d", "type")
    );
}

#[test]
fn draft4_boolean_exclusive_bounds() {
    let s = json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true, "maximum": 10, "exclusiveMaximum": true});
    assert_eq!(
        check(s.clone(), Dialect::Oas30, json!(1))[0].keyword,
        "exclusiveMinimum"
    );
    assert_eq!(
        check(s.clone(), Dialect::Oas30, json!(10))[0].keyword,
        "exclusiveMaximum"
    );
    assert!(check(s, Dialect::Oas30, json!(5)).is_empty());
    // The same schema is invalid in 2020-12 (exclusiveMinimum must be a number): config error naming the pointer.
    let doc = json!({"components": {"schemas": {"s": {"exclusiveMinimum": true}}}});
    let err = compile(
        doc,
        &["/components/schemas/s".into()],
        Dialect::Oas31(Draft::V2020_12),
        true,
    )
    .unwrap_err();
    assert!(err.contains("#/components/schemas/s"), "{err}");
}

#[test]
fn read_only_required_applies_to_responses_only() {
    let mut s = json!({"type": "object", "required": ["id", "name"], "properties": {
        "id": {"type": "integer", "readOnly": true}, "name": {"type": "string"}}});
    translate_30(&mut s, true);
    assert_eq!(s["required"], json!(["name"]));
    let mut s = json!({"required": ["id"], "properties": {"id": {"readOnly": true}}});
    translate_30(&mut s, true);
    assert!(s.get("required").is_none());
}

#[test]
fn messages_never_echo_values() {
    let s = json!({"type": "object", "additionalProperties": false, "required": ["x"], "properties": {
        "p": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3},
        "n": {"type": "integer", "maximum": 5},
        "e": {"enum": ["a", "b"]}}});
    let e = check(
        s,
        Dialect::Oas31(Draft::V2020_12),
        json!({"p": "SECRET1", "n": 99, "e": "SECRET2", "zz": 1}),
    );
    let all = format!("{e:?}");
    assert!(!all.contains("SECRET") && !all.contains("99"), "{all}");
    let kws: Vec<(&str, &str)> = e
        .iter()
        .map(|v| (v.pointer.as_str(), v.keyword.as_str()))
        .collect();
    for want in [
        ("/x", "required"),
        ("/zz", "additionalProperties"),
        ("/p", "pattern"),
        ("/p", "maxLength"),
        ("/n", "maximum"),
        ("/e", "enum"),
    ] {
        assert!(kws.contains(&want), "{want:?} not in {kws:?}");
    }
}

#[test]
fn refs_resolve_within_the_document_only() {
    let doc = json!({"components": {"schemas": {
        "Pet": {"type": "object", "properties": {"tag": {"$ref": "#/components/schemas/Tag"}}},
        "Tag": {"type": "string", "maxLength": 2},
        "Ext": {"$ref": "https://example.com/schema.json"},
        "Missing": {"$ref": "#/components/schemas/Nope"}}}});
    let (c, idx) = compile(
        doc.clone(),
        &["/components/schemas/Pet".into()],
        Dialect::Oas31(Draft::V2020_12),
        true,
    )
    .unwrap();
    let mut out = Vec::new();
    assert!(!c.validate(idx[0], &json!({"tag": "long"}), "body", "", 10, &mut out));
    assert_eq!(out[0].pointer, "/tag");
    let err = compile(
        doc.clone(),
        &["/components/schemas/Ext".into()],
        Dialect::Oas31(Draft::V2020_12),
        true,
    )
    .unwrap_err();
    assert!(
        err.contains("#/components/schemas/Ext") && err.contains("example.com"),
        "{err}"
    );
    let err = compile(
        doc,
        &["/components/schemas/Missing".into()],
        Dialect::Oas30,
        true,
    )
    .unwrap_err();
    assert!(err.contains("#/components/schemas/Missing"), "{err}");
}

#[test]
fn violations_stop_at_the_cap_on_large_arrays() {
    let s = json!({"type": "array", "items": {"type": "object", "required": ["id"],
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}});
    let body: Vec<Value> = (0..5000).map(|_| json!({"name": 1})).collect();
    let doc = json!({"components": {"schemas": {"s": s}}});
    let (c, idx) = compile(doc, &["/components/schemas/s".into()], Dialect::Oas30, true).unwrap();
    let mut out = Vec::new();
    assert!(!c.validate(idx[0], &Value::Array(body), "body", "", 3, &mut out));
    assert_eq!(out.len(), 3);
    let kinds: Vec<(&str, &str)> = out
        .iter()
        .map(|v| (v.pointer.as_str(), v.keyword.as_str()))
        .collect();
    assert!(
        kinds
            .iter()
            .all(|(p, _)| p.starts_with("/0/") || p.starts_with("/1/")),
        "{kinds:?}"
    );
}

#[test]
fn preloaded_documents_resolve_and_nothing_else_does() {
    let doc = json!({"components": {"schemas": {
        "Ext": {"$ref": "http://localhost:1234/int.json"},
        "Other": {"$ref": "http://localhost:1234/other.json"}}}});
    let pre = || {
        vec![(
            "http://localhost:1234/int.json".to_string(),
            json!({"type": "integer"}),
        )]
    };
    let (c, idx) = compile_with_preloaded(
        doc.clone(),
        &["/components/schemas/Ext".into()],
        Dialect::Oas31(Draft::V2020_12),
        true,
        pre(),
    )
    .unwrap();
    let mut out = Vec::new();
    assert!(c.validate(idx[0], &json!(3), "body", "", 10, &mut out));
    assert!(!c.validate(idx[0], &json!("x"), "body", "", 10, &mut out));
    // A URL that was not preloaded is still refused, with the preload in place.
    let err = compile_with_preloaded(
        doc.clone(),
        &["/components/schemas/Other".into()],
        Dialect::Oas31(Draft::V2020_12),
        true,
        pre(),
    )
    .unwrap_err();
    assert!(err.contains("other.json"), "{err}");
    // The production path preloads nothing.
    let err = compile(
        doc,
        &["/components/schemas/Ext".into()],
        Dialect::Oas31(Draft::V2020_12),
        true,
    )
    .unwrap_err();
    assert!(err.contains("int.json"), "{err}");
}

#[test]
fn pointers_with_braces_and_slashes_compile() {
    let doc = json!({"paths": {"/pets/{id}": {"get": {"parameters": [{"schema": {"type": "integer", "format": "int32"}}]}}}});
    let p = "/paths/~1pets~1{id}/get/parameters/0/schema".to_string();
    let (c, idx) = compile(doc, &[p], Dialect::Oas30, true).unwrap();
    let mut out = Vec::new();
    assert!(c.validate(idx[0], &json!(5), "path", "#/path/id", 10, &mut out));
    assert!(!c.validate(
        idx[0],
        &json!(5_000_000_000i64),
        "path",
        "#/path/id",
        10,
        &mut out
    ));
    assert_eq!(
        (out[0].pointer.as_str(), out[0].keyword.as_str()),
        ("#/path/id", "format")
    );
}
