//! Configuration: what loads, and every refusal naming its field.

use super::*;

#[test]
fn client_ip_is_read_only_when_a_key_uses_it() {
    assert!(policy(&MemHost::new(), DEMO).uses_client_ip());
    let by_header = one_rule(
        r#"[{"request_headers":{"header_name":"x-k"}}]"#,
        1,
        1,
        "1s",
        r#","on_missing_key":"skip""#,
    );
    assert!(!policy(&MemHost::new(), &by_header).uses_client_ip());
}

#[test]
fn demo_config_builds() {
    let host = MemHost::new();
    let p = policy(&host, DEMO);
    assert_eq!(p.rules.len(), 2);
    assert_eq!(
        p.rules[1].bucket,
        TokenBucket {
            max_tokens: 5,
            tokens_per_fill: 5,
            fill_interval_ms: 60_000
        }
    );
    assert_eq!(host.shared_key_count() as u64, p.table_keys());
}

#[test]
fn bad_configs_name_the_field() {
    let tb = r#""token_bucket":{"max_tokens":1,"fill_interval":"1s"}"#;
    let ip = r#""key":[{"remote_address":{}}]"#;
    let cases: Vec<(String, &str, &str)> = vec![
        (r#"{}"#.into(), "rules", "at least one rule"),
        (r#"{"rules":[]}"#.into(), "rules", "at least one rule"),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"bogus":1}}"#),
            "bogus",
            "unknown field",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"x":1}}]}}"#),
            "rules[0].x",
            "unknown field",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a b",{ip},{tb}}}]}}"#),
            "rules[0].name",
            "letters, digits",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}},{{"name":"a",{ip},{tb}}}]}}"#),
            "rules[1].name",
            "another rule",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a","key":[],{tb}}}]}}"#),
            "rules[0].key",
            "at least one",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a","key":[{{"cookie":{{}}}}],{tb}}}]}}"#),
            "rules[0].key[0]",
            "unknown variant",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a","key":[{{"remote_address":{{"x":1}}}}],{tb}}}]}}"#),
            "rules[0].key[0].remote_address.x",
            "unknown field",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a","key":[{{"request_headers":{{"header_name":"x-user-id"}}}}],{tb}}}]}}"#
            ),
            "rules[0].on_missing_key",
            "required",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a","key":[{{"request_headers":{{"header_name":"bad name"}}}}],"on_missing_key":"skip",{tb}}}]}}"#
            ),
            "rules[0].key[0].request_headers.header_name",
            "not a valid header name",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a","key":[{{"generic_key":{{"descriptor_value":""}}}}],{tb}}}]}}"#
            ),
            "rules[0].key[0].generic_key.descriptor_value",
            "must not be empty",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"on_missing_key":"deny"}}]}}"#),
            "rules[0].on_missing_key",
            "unknown variant",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":0,"fill_interval":"1s"}}}}]}}"#
            ),
            "rules[0].token_bucket.max_tokens",
            "at least 1",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"tokens_per_fill":0,"fill_interval":"1s"}}}}]}}"#
            ),
            "rules[0].token_bucket.tokens_per_fill",
            "at least 1",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":"49ms"}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "between 50ms and 24h",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":"25h"}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "between 50ms and 24h",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":60}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "invalid type",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":"1 minute"}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "not a duration",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1}}}}]}}"#),
            "rules[0].token_bucket",
            "missing field `fill_interval`",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"path":"/a","prefix":"/b"}}}}]}}"#
            ),
            "rules[0].match",
            "at most one",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"prefix":"api"}}}}]}}"#),
            "rules[0].match.prefix",
            "start with",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"regex":"(/a"}}}}]}}"#),
            "rules[0].match.regex",
            "invalid regular",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"methods":["GET","P OST"]}}}}]}}"#
            ),
            "rules[0].match.methods[1]",
            "not an HTTP method",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"headers":[{{"name":":path"}}]}}}}]}}"#
            ),
            "rules[0].match.headers[0].name",
            "pseudo-header",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"client_ip":{{"xff_num_trusted_hops":17}}}}"#
            ),
            "client_ip.xff_num_trusted_hops",
            "at most 16",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"client_ip":{{"ipv6_prefix_length":0}}}}"#
            ),
            "client_ip.ipv6_prefix_length",
            "between",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"client_ip":{{"ipv4_prefix_length":33}}}}"#
            ),
            "client_ip.ipv4_prefix_length",
            "between",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"shards":0}}}}"#),
            "table.shards",
            "between",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"slots_per_shard":65}}}}"#),
            "table.slots_per_shard",
            "between",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"shards":65536,"slots_per_shard":64}}}}"#
            ),
            "table",
            "at most",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}},{{"name":"b",{ip},{tb}}}],"table":{{"slots_per_shard":1}}}}"#
            ),
            "table.slots_per_shard",
            "number of rules",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"max_cas_attempts":0}}}}"#),
            "table.max_cas_attempts",
            "between",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"name":"a/b"}}}}"#),
            "table.name",
            "letters",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"enable_x_ratelimit_headers":"ON"}}"#),
            "enable_x_ratelimit_headers",
            "unknown variant",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"on_table_error":"open"}}"#),
            "on_table_error",
            "unknown variant",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"canonical":{{"bogus":true}}}}"#),
            "canonical.bogus",
            "unknown field",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"canonical":{{"allow_path_params":"yes"}}}}"#
            ),
            "canonical.allow_path_params",
            "invalid type",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"path":"/login;x=1"}}}}]}}"#),
            "rules[0].match.path",
            "ambiguous path",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"prefix":"/a/%2e%2e/"}}}}]}}"#),
            "rules[0].match.prefix",
            "ambiguous path",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"regex":"(a{{1000}}){{1000}}"}}}}]}}"#
            ),
            "rules[0].match.regex",
            "invalid regular",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"methods":[""]}}}}]}}"#),
            "rules[0].match.methods[0]",
            "not an HTTP method",
        ),
    ];
    for (json, field, reason) in cases {
        let e = build(&MemHost::new(), &json)
            .err()
            .unwrap_or_else(|| panic!("must be refused: {json}"));
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.reason.contains(reason), "{json}: {e}");
    }
}

#[test]
fn configured_paths_are_read_canonically() {
    // (configured match, a request path it must apply to)
    let cases = [
        (r#"{"path":"//login/"}"#, "/login"),
        (r#"{"path":"/a/./b/../%7Euser"}"#, "/a/~user"),
        (r#"{"prefix":"/%61pi/"}"#, "/api/x"),
        (r#"{"prefix":"/api/"}"#, "/api"),
    ];
    for (matcher, path) in cases {
        let host = MemHost::new();
        let p = policy(
            &host,
            &canon_rule(r#"[{"remote_address":{}}]"#, 1, matcher, "{}"),
        );
        assert_eq!(status(&p, &host, &req("GET", path, "10.0.0.1", &[])), 200);
        assert_eq!(
            status(&p, &host, &req("GET", path, "10.0.0.1", &[])),
            429,
            "{matcher} applies to {path}"
        );
    }
}
