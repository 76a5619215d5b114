//! Configuration: what loads, how a rule takes the default's fields, and every refusal naming
//! its field.

use super::*;
use serde_json::{json, Value};

fn load(v: Value) -> Result<CorsPolicy, ConfigError> {
    build(&MemHost::new(), &v.to_string())
}

const A: &str = "https://a.example";

#[test]
fn demo_config_builds_and_defines_its_metrics() {
    let (p, host) = demo();
    assert_eq!(p.routes.len(), 5);
    assert!(p.routes[4].policy.is_none(), "legacy is turned off");
    assert!(!p.uses_client_ip());
    // One counter per decision, the reason as a label, all defined at configure time.
    let mut names = host.metric_names();
    let mut want: Vec<String> = ["origin_valid", "origin_invalid", "preflight_allowed"]
        .iter()
        .map(|m| format!("meshwall.cors.{m}"))
        .collect();
    for decision in ["preflight_forwarded", "preflight_denied"] {
        for r in NotAllowed::ALL {
            want.push(format!("meshwall.cors.{decision}.reason.{}", r.reason()));
        }
    }
    for r in Ambiguity::REASONS {
        want.push(format!("meshwall.cors.ambiguous.reason.{r}"));
    }
    names.sort();
    want.sort();
    assert_eq!(names, want);
    assert!(names.contains(&"meshwall.cors.preflight_denied.reason.origin_not_allowed".into()));
}

#[test]
fn a_rule_takes_what_it_leaves_out_from_the_default() {
    let (p, _) = demo();
    let device = p.routes[1].policy.as_ref().unwrap();
    assert_eq!(device.origins.len(), 3, "origins from the default");
    assert!(device.credentials && device.private_network);
    assert_eq!(device.max_age, Some(600));
    let public = p.routes[0].policy.as_ref().unwrap();
    assert!(public.wildcard && !public.credentials && !public.private_network);
    assert_eq!(public.methods, Names::List(vec!["GET".into()]));
    assert_eq!(public.headers, Names::Any);
    assert_eq!(public.expose.as_deref(), Some("x-request-id, ratelimit"));
    let strict = p.routes[3].policy.as_ref().unwrap();
    assert!(!strict.forward_not_matching);
    let default = p.default.as_ref().unwrap();
    assert!(default.forward_not_matching, "Envoy's default: forward");
    // `[]` allows no origin; leaving the field out takes the default's.
    let p = load(json!({"default": {"allow_origin_string_match": [{"exact": A}]},
                        "rules": [{"match": {"prefix": "/closed/"}, "allow_origin_string_match": []},
                                  {"match": {"prefix": "/open/"}}]}))
    .unwrap();
    assert!(p.routes[0].policy.as_ref().unwrap().origins.is_empty());
    assert_eq!(p.routes[1].policy.as_ref().unwrap().origins.len(), 1);
    // `enabled` is the policy's own: a default turned off does not turn the rules off.
    let p = load(
        json!({"default": {"enabled": false, "allow_origin_string_match": [{"exact": A}]},
                        "rules": [{"match": {"prefix": "/api/"}}]}),
    )
    .unwrap();
    assert!(p.default.is_none());
    assert_eq!(p.routes[0].policy.as_ref().unwrap().origins.len(), 1);
}

#[test]
fn lists_are_envoy_strings_or_json_lists() {
    for methods in [json!("GET, put ,PATCH"), json!(["GET", "put", "PATCH"])] {
        let p = load(json!({"default": {"allow_methods": methods, "allow_headers": "X-A, x-b", "max_age": 5}}))
            .unwrap();
        let d = p.default.unwrap();
        assert_eq!(
            d.methods,
            Names::List(vec!["GET".into(), "put".into(), "PATCH".into()])
        );
        assert_eq!(d.headers, Names::List(vec!["x-a".into(), "x-b".into()]));
        assert_eq!(d.max_age, Some(5));
    }
    let d = load(json!({"default": {"allow_headers": "", "max_age": "86400"}}))
        .unwrap()
        .default
        .unwrap();
    assert_eq!(d.headers, Names::List(vec![]));
    assert_eq!(d.max_age, Some(86_400));
}

#[test]
fn bad_configs_name_the_field() {
    let o = json!([{"exact": A}]);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), ".", "give `rules`, a `default`"),
        (json!({"rules": []}), ".", "give `rules`, a `default`"),
        (json!({"default": {}, "bogus": 1}), "bogus", "unknown field"),
        (
            json!({"default": {"allow_origins": o}}),
            "default.allow_origins",
            "unknown field",
        ),
        (
            json!({"default": {"match": {"prefix": "/"}}}),
            "default.match",
            "no `match`",
        ),
        (
            json!({"rules": [{"allow_origin_string_match": o}]}),
            "rules[0].match",
            "needs a `match`",
        ),
        (
            json!({"rules": [{"match": {}}]}),
            "rules[0].match",
            "exactly one of",
        ),
        (
            json!({"rules": [{"match": {"prefix": "/a", "path": "/b"}}]}),
            "rules[0].match",
            "exactly one of",
        ),
        (
            json!({"rules": [{"match": {"prefix": "a"}}]}),
            "rules[0].match.prefix",
            "start with `/`",
        ),
        (
            json!({"rules": [{"match": {"path": "/a;b"}}]}),
            "rules[0].match.path",
            "ambiguous",
        ),
        (
            json!({"rules": [{"match": {"safe_regex": {"regex": "("}}}]}),
            "rules[0].match.safe_regex.regex",
            "regular expression",
        ),
        (
            json!({"rules": [{"match": {"regex": "/a"}}]}),
            "rules[0].match.regex",
            "unknown field",
        ),
        (
            json!({"default": {"allow_origin_string_match": [{"exact": A}, {"exact": "https://b.example/"}]}}),
            "default.allow_origin_string_match[1].exact",
            "no path or trailing slash",
        ),
        (
            json!({"default": {"allow_origin_string_match": [{"contains": "example"}]}}),
            "default.allow_origin_string_match[0].contains",
            "unknown field",
        ),
        (
            json!({"default": {"allow_origin_string_match": [{"suffix": "example.com"}]}}),
            "default.allow_origin_string_match[0].suffix",
            "start with `.`",
        ),
        (
            json!({"default": {"allow_origin_string_match": [{"exact": "*"}], "allow_credentials": true}}),
            "default.allow_origin_string_match[0]",
            "cannot go with allow_credentials",
        ),
        (
            json!({"default": {"allow_origin_string_match": [{"safe_regex": {"regex": "https://.*"}}], "allow_credentials": true}}),
            "default.allow_origin_string_match[0]",
            "admits every site",
        ),
        (
            json!({"default": {"allow_origin_string_match": [{"prefix": "https://"}], "allow_credentials": true}}),
            "default.allow_origin_string_match[0]",
            "admits every site",
        ),
        (
            json!({"default": {"allow_origin_string_match": [{"exact": "*"}]},
                   "rules": [{"match": {"prefix": "/a/"}, "allow_credentials": true}]}),
            "rules[0].allow_credentials",
            "cannot go with allow_credentials",
        ),
        (
            json!({"default": {"allow_credentials": true},
                   "rules": [{"match": {"prefix": "/a/"}, "allow_origin_string_match": [{"exact": "*"}]}]}),
            "rules[0].allow_origin_string_match[0]",
            "cannot go with allow_credentials",
        ),
        (
            json!({"default": {"allow_credentials": true, "expose_headers": "*"}}),
            "default.expose_headers",
            "cannot go with allow_credentials",
        ),
        (
            json!({"default": {"allow_methods": "GET, BAD METHOD"}}),
            "default.allow_methods[1]",
            "not an HTTP method",
        ),
        (
            json!({"default": {"allow_methods": "GET,,PUT"}}),
            "default.allow_methods[1]",
            "not an HTTP method",
        ),
        (
            json!({"default": {"allow_methods": "*, GET"}}),
            "default.allow_methods",
            "only entry",
        ),
        (
            json!({"default": {"allow_methods": 5}}),
            "default.allow_methods",
            "comma-separated string or a list",
        ),
        (
            json!({"default": {"allow_headers": ["x-a", "x b"]}}),
            "default.allow_headers[1]",
            "not a valid header name",
        ),
        (
            json!({"default": {"expose_headers": [":status"]}}),
            "default.expose_headers[0]",
            "pseudo-header",
        ),
        (
            json!({"default": {"allow_headers": [1]}}),
            "default.allow_headers[0]",
            "invalid type",
        ),
        (
            json!({"default": {"max_age": "10m"}}),
            "default.max_age",
            "not a number of seconds",
        ),
        (
            json!({"default": {"max_age": -1}}),
            "default.max_age",
            "negative",
        ),
        (
            json!({"default": {"max_age": 86401}}),
            "default.max_age",
            "at most 86400",
        ),
        (
            json!({"default": {"max_age": "999999"}}),
            "default.max_age",
            "at most 86400",
        ),
        (
            json!({"default": {"allow_credentials": "yes"}}),
            "default.allow_credentials",
            "invalid type",
        ),
        (
            json!({"default": {"enabled": 1}}),
            "default.enabled",
            "invalid type",
        ),
        (
            json!({"default": {}, "canonical": {"strict": true}}),
            "canonical.strict",
            "unknown field",
        ),
        (
            json!({"rules": [{"match": {"prefix": "/a/"}}, {"match": {"prefix": "/b/"}, "forward_not_matching_preflights": "no"}]}),
            "rules[1].forward_not_matching_preflights",
            "invalid type",
        ),
    ];
    for (cfg, field, reason) in cases {
        let e = load(cfg.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted: {cfg}"));
        assert_eq!(e.field, field, "{cfg}: {e}");
        assert!(e.reason.contains(reason), "{cfg}: {e}");
    }
}
