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
    let j = serde_json::to_string(&parse_document(&Value::String(yaml.into())).unwrap()).unwrap();
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
