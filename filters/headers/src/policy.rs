//! The `headers` policy: decides which headers to remove and add. No host calls.

use crate::config::{
    check_name, check_value, AppendAction, HeadersConfig, Preset, OWASP_API_HEADERS,
};
use meshwall_core::canon::same_header;
use meshwall_core::{Action, ConfigError, HeaderOp, Headers, Host, Policy, Request, Response};

/// A header to add to responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHeader {
    pub name: String,
    pub value: String,
    pub action: AppendAction,
}

/// Names and prefixes to strip from a header map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Strip {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl Strip {
    fn build(names: &[String], prefixes: &[String], field: &str) -> Result<Self, ConfigError> {
        let mut s = Strip::default();
        for (i, n) in names.iter().enumerate() {
            let n = check_name(&format!("{field}_to_remove[{i}]"), n)?;
            if !s.names.contains(&n) {
                s.names.push(n);
            }
        }
        for (i, p) in prefixes.iter().enumerate() {
            s.prefixes
                .push(check_name(&format!("{field}_prefixes_to_remove[{i}]"), p)?);
        }
        Ok(s)
    }

    /// Whether `name` is on the list in any spelling a backend folds together: `_` and `-`
    /// are one character, case is ignored (`x_internal_role` matches prefix `x-internal-`;
    /// Rack, WSGI and PHP read both as `HTTP_X_INTERNAL_ROLE`).
    fn matches(&self, name: &str) -> bool {
        self.names.iter().any(|n| same_header(n, name))
            || self
                .prefixes
                .iter()
                .any(|p| name.get(..p.len()).is_some_and(|head| same_header(head, p)))
    }

    /// One `Remove` per distinct matching name present.
    fn ops<'a>(&self, present: impl Iterator<Item = &'a str>) -> Vec<HeaderOp> {
        let mut ops: Vec<HeaderOp> = Vec::new();
        for name in present {
            if self.matches(name)
                && !ops
                    .iter()
                    .any(|op| matches!(op, HeaderOp::Remove(n) if n.eq_ignore_ascii_case(name)))
            {
                ops.push(HeaderOp::Remove(name.to_ascii_lowercase()));
            }
        }
        ops
    }
}

#[derive(Debug)]
pub struct HeadersPolicy {
    add: Vec<AddHeader>,
    response_strip: Strip,
    request_strip: Strip,
}

impl HeadersPolicy {
    /// The headers added to responses, in order (preset first, then configured).
    pub fn added_headers(&self) -> &[AddHeader] {
        &self.add
    }

    pub fn from_config(cfg: HeadersConfig) -> Result<Self, ConfigError> {
        let mut add: Vec<AddHeader> = Vec::new();
        if cfg.security_headers == Preset::OwaspApi {
            let mut excluded = Vec::new();
            for (i, n) in cfg.security_headers_exclude.iter().enumerate() {
                let field = format!("security_headers_exclude[{i}]");
                let n = check_name(&field, n)?;
                if !OWASP_API_HEADERS.iter().any(|(p, _, _)| *p == n) {
                    return Err(ConfigError::new(
                        field,
                        format!("`{n}` is not in the owasp_api preset"),
                    ));
                }
                excluded.push(n);
            }
            for (name, value, action) in OWASP_API_HEADERS {
                if !excluded.iter().any(|e| e == name) {
                    add.push(AddHeader {
                        name: name.to_string(),
                        value: value.to_string(),
                        action: *action,
                    });
                }
            }
        } else if !cfg.security_headers_exclude.is_empty() {
            return Err(ConfigError::new(
                "security_headers_exclude",
                "only applies with security_headers `owasp_api`",
            ));
        }
        for (i, opt) in cfg.response_headers_to_add.iter().enumerate() {
            let field = format!("response_headers_to_add[{i}].header");
            let name = check_name(&format!("{field}.key"), &opt.header.key)?;
            check_value(&format!("{field}.value"), &opt.header.value)?;
            add.retain(|a| a.name != name);
            add.push(AddHeader {
                name,
                value: opt.header.value.clone(),
                action: opt.append_action,
            });
        }
        Ok(HeadersPolicy {
            add,
            response_strip: Strip::build(
                &cfg.response_headers_to_remove,
                &cfg.response_header_prefixes_to_remove,
                "response_header",
            )
            .map_err(|e| {
                rename_field(e, "response_header_to_remove", "response_headers_to_remove")
            })?,
            request_strip: Strip::build(
                &cfg.request_headers_to_remove,
                &cfg.request_header_prefixes_to_remove,
                "request_header",
            )
            .map_err(|e| {
                rename_field(e, "request_header_to_remove", "request_headers_to_remove")
            })?,
        })
    }

    /// Changes for a response with these headers: removals first, then additions.
    pub fn response_ops(&self, resp: &Response) -> Vec<HeaderOp> {
        let mut ops = self.response_strip.ops(resp.headers.names());
        for a in &self.add {
            let removed = ops
                .iter()
                .any(|op| matches!(op, HeaderOp::Remove(n) if *n == a.name));
            let present = resp.headers.contains(&a.name) && !removed;
            let op = match a.action {
                AppendAction::OverwriteIfExistsOrAdd => {
                    Some(HeaderOp::Set(a.name.clone(), a.value.clone()))
                }
                AppendAction::AppendIfExistsOrAdd => {
                    Some(HeaderOp::Append(a.name.clone(), a.value.clone()))
                }
                AppendAction::AddIfAbsent => {
                    (!present).then(|| HeaderOp::Set(a.name.clone(), a.value.clone()))
                }
                AppendAction::OverwriteIfExists => {
                    present.then(|| HeaderOp::Set(a.name.clone(), a.value.clone()))
                }
            };
            ops.extend(op);
        }
        ops
    }
}

/// `Strip::build` names fields `<field>_to_remove`; the plural config names read better.
fn rename_field(mut e: ConfigError, from: &str, to: &str) -> ConfigError {
    e.field = e.field.replacen(from, to, 1);
    e
}

impl Policy for HeadersPolicy {
    type Config = HeadersConfig;
    type Exchange = ();
    const NAME: &'static str = "headers";

    fn new(config: HeadersConfig, _host: &dyn Host) -> Result<Self, ConfigError> {
        Self::from_config(config)
    }

    fn uses_request(&self) -> bool {
        !self.request_strip.names.is_empty() || !self.request_strip.prefixes.is_empty()
    }

    fn uses_client_ip(&self) -> bool {
        false
    }

    fn on_request_headers(&self, _ex: &mut (), req: &Request, _host: &dyn Host) -> Action {
        Action::Continue(self.request_strip.ops(req.headers.names()))
    }

    /// Request trailers lose the same names as the request headers: HTTP/2 and gRPC forward
    /// trailers, and a backend may read them as headers.
    fn on_request_trailers(
        &self,
        _ex: &mut (),
        trailers: &Headers,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        self.request_strip.ops(trailers.names())
    }

    fn on_response_headers(
        &self,
        _ex: &mut (),
        resp: &Response,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        self.response_ops(resp)
    }

    /// Response trailers are cleaned with the same names and prefixes as response headers.
    fn on_response_trailers(
        &self,
        _ex: &mut (),
        trailers: &Headers,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        self.response_strip.ops(trailers.names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwall_core::{parse_config, Headers, MemHost};

    fn policy(json: &str) -> Result<HeadersPolicy, ConfigError> {
        let cfg: HeadersConfig = parse_config(json.as_bytes())?;
        HeadersPolicy::new(cfg, &MemHost::new())
    }

    fn respond(p: &HeadersPolicy, pairs: &[(&str, &str)]) -> Headers {
        let resp = Response {
            status: 200,
            headers: Headers::from_pairs(pairs.iter().copied()),
        };
        let mut h = resp.headers.clone();
        h.apply(&p.on_response_headers(&mut (), &resp, &MemHost::new()));
        h
    }

    #[test]
    fn defaults_strip_leaky_headers_and_add_owasp_set() {
        let p = policy("").unwrap();
        let h = respond(
            &p,
            &[
                ("Server", "nginx/1.25"),
                ("x-powered-by", "PHP/8.3"),
                ("X-AspNet-Version", "4.0"),
                ("x-envoy-upstream-service-time", "3"),
                ("content-type", "application/json"),
            ],
        );
        for gone in [
            "server",
            "x-powered-by",
            "x-aspnet-version",
            "x-envoy-upstream-service-time",
        ] {
            assert!(!h.contains(gone), "{gone} should be removed");
        }
        assert_eq!(h.get("content-type"), Some("application/json"));
        assert_eq!(h.get("x-content-type-options"), Some("nosniff"));
        assert_eq!(h.get("x-frame-options"), Some("DENY"));
        assert_eq!(
            h.get("strict-transport-security"),
            Some("max-age=63072000; includeSubDomains")
        );
        assert_eq!(h.get("referrer-policy"), Some("no-referrer"));
        assert_eq!(h.get("cache-control"), Some("no-store"));
        assert!(h
            .get("content-security-policy")
            .unwrap()
            .contains("default-src 'none'"));
    }

    #[test]
    fn preset_overwrites_but_cache_control_only_if_absent() {
        let p = policy("{}").unwrap();
        let h = respond(
            &p,
            &[
                ("x-frame-options", "ALLOWALL"),
                ("cache-control", "max-age=60"),
            ],
        );
        assert_eq!(
            h.get_all("x-frame-options").collect::<Vec<_>>(),
            vec!["DENY"]
        );
        assert_eq!(
            h.get_all("cache-control").collect::<Vec<_>>(),
            vec!["max-age=60"]
        );
    }

    #[test]
    fn append_actions_follow_envoy_semantics() {
        let p = policy(
            r#"{"security_headers":"none","response_headers_to_add":[
                {"header":{"key":"a","value":"1"},"append_action":"APPEND_IF_EXISTS_OR_ADD"},
                {"header":{"key":"b","value":"2"},"append_action":"ADD_IF_ABSENT"},
                {"header":{"key":"c","value":"3"},"append_action":"OVERWRITE_IF_EXISTS"},
                {"header":{"key":"d","value":"4"},"append_action":"OVERWRITE_IF_EXISTS"},
                {"header":{"key":"E","value":"5"}}]}"#,
        )
        .unwrap();
        let h = respond(&p, &[("a", "0"), ("b", "0"), ("c", "0")]);
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), vec!["0", "1"]);
        assert_eq!(h.get_all("b").collect::<Vec<_>>(), vec!["0"]);
        assert_eq!(h.get_all("c").collect::<Vec<_>>(), vec!["3"]);
        assert!(!h.contains("d"), "OVERWRITE_IF_EXISTS must not add");
        assert_eq!(h.get("e"), Some("5"));
        assert!(!h.contains("x-frame-options"), "preset none adds nothing");
    }

    #[test]
    fn removed_header_can_be_replaced() {
        let p = policy(r#"{"response_headers_to_add":[{"header":{"key":"server","value":"gw"},"append_action":"ADD_IF_ABSENT"}]}"#).unwrap();
        let h = respond(&p, &[("server", "Apache/2.4.1")]);
        assert_eq!(h.get_all("server").collect::<Vec<_>>(), vec!["gw"]);
    }

    #[test]
    fn configured_entry_replaces_preset_and_exclude_drops_one() {
        let p = policy(
            r#"{"security_headers_exclude":["x-frame-options"],
                "response_headers_to_add":[{"header":{"key":"Strict-Transport-Security","value":"max-age=600"}}]}"#,
        )
        .unwrap();
        let h = respond(&p, &[]);
        assert!(!h.contains("x-frame-options"));
        assert_eq!(
            h.get_all("strict-transport-security").collect::<Vec<_>>(),
            vec!["max-age=600"]
        );
    }

    #[test]
    fn prefixes_and_custom_lists() {
        let p = policy(r#"{"response_headers_to_remove":["x-secret"],"response_header_prefixes_to_remove":["X-Internal-"]}"#).unwrap();
        let h = respond(
            &p,
            &[
                ("x-internal-trace", "1"),
                ("X-Internal-Host", "db1"),
                ("x-secret", "s"),
                ("server", "kept"),
            ],
        );
        assert!(
            !h.contains("x-internal-trace")
                && !h.contains("x-internal-host")
                && !h.contains("x-secret")
        );
        assert_eq!(
            h.get("server"),
            Some("kept"),
            "a custom list replaces the default list"
        );
    }

    #[test]
    fn request_phase_skipped_unless_configured() {
        assert!(!policy("{}").unwrap().uses_request());
        assert!(policy(r#"{"request_header_prefixes_to_remove":["x-i-"]}"#)
            .unwrap()
            .uses_request());
        assert!(!policy("{}").unwrap().uses_client_ip());
    }

    #[test]
    fn request_headers_stripped() {
        let p = policy(r#"{"request_headers_to_remove":["x-user-id"],"request_header_prefixes_to_remove":["x-internal-"]}"#).unwrap();
        let req = Request {
            headers: Headers::from_pairs([
                ("x-user-id", "admin"),
                ("x-internal-role", "root"),
                ("accept", "*/*"),
                ("X-User-Id", "2"),
            ]),
            ..Default::default()
        };
        let Action::Continue(ops) = p.on_request_headers(&mut (), &req, &MemHost::new()) else {
            panic!("must continue")
        };
        let mut h = req.headers.clone();
        h.apply(&ops);
        assert_eq!(h.names().collect::<Vec<_>>(), vec!["accept"]);
        assert_eq!(ops.len(), 2, "one removal per distinct name: {ops:?}");
    }

    #[test]
    fn request_lists_strip_every_spelling_a_backend_folds_together() {
        let p = policy(r#"{"request_headers_to_remove":["x-user-id"],"request_header_prefixes_to_remove":["x-internal-"]}"#).unwrap();
        for name in [
            "x_user_id",
            "X_USER-ID",
            "x-user_id",
            "x_internal_role",
            "X_Internal-Debug",
            "x-internal_x",
        ] {
            let req = Request {
                headers: Headers::from_pairs([(name, "spoofed"), ("x-user-idx", "kept")]),
                ..Default::default()
            };
            let Action::Continue(ops) = p.on_request_headers(&mut (), &req, &MemHost::new()) else {
                panic!("must continue")
            };
            let mut h = req.headers.clone();
            h.apply(&ops);
            assert_eq!(h.names().collect::<Vec<_>>(), ["x-user-idx"], "{name}");
        }
    }

    #[test]
    fn trailers_are_cleaned_like_headers() {
        let p = policy(r#"{"request_headers_to_remove":["x-user-id"],"response_header_prefixes_to_remove":["x-envoy-"]}"#).unwrap();
        let host = MemHost::new();
        let mut t = Headers::from_pairs([
            ("x_user_id", "admin"),
            ("x-user-id", "admin"),
            ("grpc-status", "0"),
        ]);
        t.apply(&p.on_request_trailers(&mut (), &t, &host));
        assert_eq!(t.names().collect::<Vec<_>>(), ["grpc-status"]);
        // Response trailers: the default list (server, x-powered-by, …) and the prefixes.
        let mut t = Headers::from_pairs([
            ("server", "gunicorn"),
            ("X-Powered-By", "PHP/8"),
            ("x_envoy_upstream_service_time", "3"),
            ("grpc-status", "0"),
            ("grpc-message", "ok"),
        ]);
        t.apply(&p.on_response_trailers(&mut (), &t, &host));
        assert_eq!(
            t.names().collect::<Vec<_>>(),
            ["grpc-status", "grpc-message"]
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (r#"{"bogus":1}"#, "bogus", "unknown field `bogus`"),
            (
                r#"{"security_headers":"strict"}"#,
                "security_headers",
                "unknown variant",
            ),
            (
                r#"{"response_headers_to_remove":"server"}"#,
                "response_headers_to_remove",
                "invalid type",
            ),
            (
                r#"{"response_headers_to_remove":["ok","bad name"]}"#,
                "response_headers_to_remove[1]",
                "not a valid header name",
            ),
            (
                r#"{"request_header_prefixes_to_remove":[""]}"#,
                "request_header_prefixes_to_remove[0]",
                "must not be empty",
            ),
            (
                r#"{"request_headers_to_remove":["Content-Length"]}"#,
                "request_headers_to_remove[0]",
                "framing",
            ),
            (
                r#"{"response_headers_to_add":[{"header":{"key":":status","value":"200"}}]}"#,
                "response_headers_to_add[0].header.key",
                "pseudo-header",
            ),
            (
                r#"{"response_headers_to_add":[{"header":{"key":"a","value":"x\r\ny: z"}}]}"#,
                "response_headers_to_add[0].header.value",
                "control characters",
            ),
            (
                r#"{"response_headers_to_add":[{"header":{"key":"a","value":"1"},"append_action":"APPEND"}]}"#,
                "response_headers_to_add[0].append_action",
                "unknown variant",
            ),
            (
                r#"{"response_headers_to_add":[{"header":{"key":"a","value":"1","extra":true}}]}"#,
                "response_headers_to_add[0].header.extra",
                "unknown field `extra`",
            ),
            (
                r#"{"security_headers_exclude":["x-nope"]}"#,
                "security_headers_exclude[0]",
                "not in the owasp_api preset",
            ),
            (
                r#"{"security_headers":"none","security_headers_exclude":["x-frame-options"]}"#,
                "security_headers_exclude",
                "only applies",
            ),
        ];
        for (json, field, reason) in cases {
            let e = policy(json).expect_err(json);
            if !field.is_empty() {
                assert_eq!(e.field, field, "{json}: {e}");
            }
            assert!(e.reason.contains(reason), "{json}: {e}");
        }
    }
}
