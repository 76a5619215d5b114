//! The configuration: what is refused (naming the field, never repeating a key), what the
//! defaults are, what is logged and which metrics exist.

use super::*;

fn one(consumer: &str, extra: &str) -> String {
    format!(r#"{{"consumers": [{consumer}]{extra}}}"#)
}

#[test]
fn bad_configurations_name_the_field() {
    let k = digest("k");
    let c = format!(r#"{{"name":"a","keys":["{k}"]}}"#);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            r#"{"consumers": []}"#.into(),
            "consumers",
            "at least one consumer",
        ),
        (
            one(r#"{"name":"","keys":[]}"#, ""),
            "consumers[0].name",
            "visible ASCII",
        ),
        (
            one(r#"{"name":" a","keys":[]}"#, ""),
            "consumers[0].name",
            "visible ASCII",
        ),
        (
            one(r#"{"name":"a,b","keys":[]}"#, ""),
            "consumers[0].name",
            "without",
        ),
        (
            one(r#"{"name":"a\u0001","keys":[]}"#, ""),
            "consumers[0].name",
            "visible",
        ),
        (
            one(
                &format!(r#"{{"name":"{}","keys":[]}}"#, "n".repeat(129)),
                "",
            ),
            "consumers[0].name",
            "1-128",
        ),
        (
            one(&format!(r#"{c}, {{"name":"a","keys":[]}}"#), ""),
            "consumers[1].name",
            "already the name of consumers[0]",
        ),
        (
            one(r#"{"name":"a","keys":["sha256:00"]}"#, ""),
            "consumers[0].keys[0]",
            "64 hex",
        ),
        (
            one(r#"{"name":"a","keys":["with space"]}"#, ""),
            "consumers[0].keys[0]",
            "in clear",
        ),
        (
            one(r#"{"name":"a","keys":[""]}"#, ""),
            "consumers[0].keys[0]",
            "in clear",
        ),
        (
            one(&format!(r#"{{"name":"a","keys":["{k}","{k}"]}}"#), ""),
            "consumers[0].keys[1]",
            "same key as consumers[0].keys[0] (this consumer)",
        ),
        (
            one(&format!(r#"{c}, {{"name":"b","keys":["x","k"]}}"#), ""),
            "consumers[1].keys[1]",
            "same key as consumers[0].keys[0] (consumer `a`)",
        ),
        (
            one(
                &format!(
                    r#"{c}, {{"name":"b","keys":["{}"]}}"#,
                    k.to_uppercase().replace("SHA256", "sha256")
                ),
                "",
            ),
            "consumers[1].keys[0]",
            "same key",
        ),
        (
            one(r#"{"name":"a","keys":[],"groups":["x y"]}"#, ""),
            "consumers[0].groups[0]",
            "1-64",
        ),
        (
            one(r#"{"name":"a","keys":[],"groups":["x","x"]}"#, ""),
            "consumers[0].groups[1]",
            "given twice",
        ),
        (
            one(&c, r#","from_headers":[{"name":"Content-Length"}]"#),
            "from_headers[0].name",
            "framing",
        ),
        (
            one(&c, r#","from_headers":[{"name":"cookie"}]"#),
            "from_headers[0].name",
            "cannot be changed",
        ),
        (
            one(&c, r#","from_headers":[{"name":":path"}]"#),
            "from_headers[0].name",
            "pseudo-header",
        ),
        (
            one(&c, r#","from_headers":[{"name":"a b"}]"#),
            "from_headers[0].name",
            "not a valid header",
        ),
        (
            one(&c, r#","from_headers":[{"name":"x-key"},{"name":"X_Key"}]"#),
            "from_headers[1].name",
            "already a key source",
        ),
        (
            one(
                &c,
                r#","from_headers":[{"name":"authorization","value_prefix":""}]"#,
            ),
            "from_headers[0].value_prefix",
            "leave it out",
        ),
        (
            one(
                &c,
                r#","from_headers":[{"name":"authorization","value_prefix":"Key\n"}]"#,
            ),
            "from_headers[0].value_prefix",
            "visible ASCII",
        ),
        (
            one(&c, r#","from_params":["a=b"]"#),
            "from_params[0]",
            "not a usable",
        ),
        (
            one(&c, r#","from_params":["key[]"]"#),
            "from_params[0]",
            "not a usable",
        ),
        (
            one(&c, r#","from_params":[""]"#),
            "from_params[0]",
            "not a usable",
        ),
        (
            one(&c, r#","from_params":["k","k"]"#),
            "from_params[1]",
            "given twice",
        ),
        (
            one(&c, r#","from_cookies":["a;b"]"#),
            "from_cookies[0]",
            "not a valid cookie",
        ),
        (
            one(&c, r#","from_cookies":["k","k"]"#),
            "from_cookies[1]",
            "given twice",
        ),
        (
            one(&c, r#","consumer_header":"host""#),
            "consumer_header",
            "framing",
        ),
        (
            one(&c, r#","consumer_header":"x-api-key""#),
            "consumer_header",
            "also a key source",
        ),
        (
            one(
                &c,
                r#","from_headers":[{"name":"x_who"}],"consumer_header":"x-who""#,
            ),
            "consumer_header",
            "also a key source",
        ),
        (
            one(&c, r#","groups_header":"X_Consumer_Name""#),
            "groups_header",
            "`consumer_header`",
        ),
        (
            one(&c, r#","groups_header":"cookie""#),
            "groups_header",
            "cannot be changed",
        ),
        (
            one(&c, r#","rules":[{"match":{}}]"#),
            "rules[0].match",
            "exactly one of",
        ),
        (
            one(&c, r#","rules":[{"match":{"path":"/a","prefix":"/b"}}]"#),
            "rules[0].match",
            "exactly one of",
        ),
        (
            one(&c, r#","rules":[{"match":{"path":"a"}}]"#),
            "rules[0].match.path",
            "start with",
        ),
        (
            one(&c, r#","rules":[{"match":{"prefix":"/a;x/"}}]"#),
            "rules[0].match.prefix",
            "ambiguous",
        ),
        (
            one(&c, r#","rules":[{"match":{"safe_regex":{"regex":"("}}}]"#),
            "rules[0].match.safe_regex.regex",
            "regular expression",
        ),
        (
            one(
                &c,
                r#","rules":[{"match":{"prefix":"/"}},{"match":{"prefix":"/","methods":["GET","B AD"]}}]"#,
            ),
            "rules[1].match.methods[1]",
            "not an HTTP method",
        ),
        (
            one(
                &c,
                r#","rules":[{"match":{"prefix":"/"},"requires":false,"allow_missing":true}]"#,
            ),
            "rules[0].allow_missing",
            "needs `requires: true`",
        ),
        (
            one(
                &c,
                r#","rules":[{"match":{"prefix":"/"},"requires":false,"groups":["a"]}]"#,
            ),
            "rules[0].groups",
            "need `requires: true`",
        ),
        (
            one(
                &c,
                r#","rules":[{"match":{"prefix":"/"},"allow_missing":true,"groups":["a"]}]"#,
            ),
            "rules[0].groups",
            "no groups",
        ),
        (
            one(
                &c,
                r#","rules":[{"match":{"prefix":"/"},"groups":["a","a"]}]"#,
            ),
            "rules[0].groups[1]",
            "given twice",
        ),
        (
            one(&c, r#","default":{"requires":false,"groups":["a"]}"#),
            "default.groups",
            "need `requires: true`",
        ),
        (
            one(&c, r#","default":{"requires":false,"allow_missing":true}"#),
            "default.allow_missing",
            "needs",
        ),
        (one(&c, r#","realm":"a\"b""#), "realm", "without quotes"),
        (one(&c, r#","realm":"""#), "realm", "1-128"),
        (one(&c, r#","realm":"é""#), "realm", "ASCII"),
        (one(&c, r#","forward":"yes""#), "forward", "invalid type"),
        (one(&c, r#","rules":{}"#), "rules", "invalid type"),
        (
            one(&c, r#","canonical":{"allow_path_params":1}"#),
            "canonical.allow_path_params",
            "invalid type",
        ),
    ];
    for (json, field, why) in cases {
        let host = MemHost::new();
        let e = match build(&host, &json) {
            Err(e) => e,
            Ok(_) => panic!("accepted: {json}"),
        };
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.reason.contains(why), "{json}: {e}");
        for secret in ["with space", &k[7..]] {
            assert!(!e.to_string().contains(secret), "a key in the error: {e}");
        }
    }
}

#[test]
fn good_configurations() {
    let k = digest("k");
    for json in [
        demo(""),
        demo(r#","default":{"requires":false}"#),
        demo(r#","default":{"allow_missing":true}"#),
        demo(r#","default":{"groups":["admin"]}"#),
        demo(r#","groups_header":null,"consumer_header":"X-Client","forward":true"#),
        demo(
            r#","from_headers":[{"name":"Authorization","value_prefix":"ApiKey "},{"name":"x-api-key"}],"from_params":["api_key"],"from_cookies":["apikey"]"#,
        ),
        one(
            &format!(r#"{{"name":"Acme Mobile App v2","keys":["{k}"],"groups":["partner:gold"]}}"#),
            "",
        ),
        one(r#"{"name":"revoked","keys":[]}"#, ""),
        one(
            r#"{"name":"a","keys":["k"]}"#,
            r#","rules":[{"match":{"safe_regex":{"regex":"/v[0-9]+/x"}},"groups":["nobody-yet"]}]"#,
        ),
    ] {
        assert!(build(&MemHost::new(), &json).is_ok(), "{json}");
    }
}

#[test]
fn metrics_are_defined_at_configure_time() {
    let host = MemHost::new();
    let p = policy(&host, &demo(""));
    assert_eq!(p.key_count(), 4);
    let names = host.metric_names();
    for m in [
        "meshwall.apikey.allowed",
        "meshwall.apikey.anonymous",
        "meshwall.apikey.denied.reason.missing",
        "meshwall.apikey.denied.reason.invalid",
        "meshwall.apikey.denied.reason.multiple",
        "meshwall.apikey.denied.reason.forbidden",
        "meshwall.apikey.ambiguous.reason.path_params",
        "meshwall.apikey.ambiguous.reason.header_spelling",
        "meshwall.apikey.ambiguous.reason.repeated_param",
        "meshwall.apikey.consumers",
        "meshwall.apikey.keys",
    ] {
        assert!(names.iter().any(|n| n == m), "{m} missing from {names:?}");
    }
    // One counter per decision and reason, no metric per consumer or key.
    assert_eq!(
        names.len(),
        2 + 4 + meshwall_core::Ambiguity::REASONS.len() + 2,
        "{names:?}"
    );
    assert_eq!(host.metric("meshwall.apikey.consumers"), 3);
    assert_eq!(host.metric("meshwall.apikey.keys"), 4);
}

/// Plain keys work (and are counted in a warning at configure time); a digest is the same key.
#[test]
fn plain_keys_and_digests_are_the_same_key() {
    for key in [CAROL.to_string(), digest(CAROL)] {
        let host = MemHost::new();
        let p = policy(
            &host,
            &one(&format!(r#"{{"name":"c","keys":["{key}"]}}"#), ""),
        );
        let s = send(&p, &host, &req("GET", "/x", &[("x-api-key", CAROL)]));
        assert_eq!(s.status, 200, "{key}");
        assert_eq!(upstream(&s).unwrap().get("x-consumer-name"), Some("c"));
    }
}
