//! Route rules: which requests need which token, and per-rule claim conditions (403).
//!
//! Rules match on the canonical request view of `meshwall_core` (the canonical path, never
//! the raw `:path`; methods without regard to case, `HEAD` as `GET`): see [`Rule::matches`].

use crate::token::claim;
use meshwall_core::{CanonConfig, RouteMatch};
use serde_json::{Map, Value};

/// What a matched request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// No token needed (and none is looked at).
    Nothing,
    /// A valid token from the listed providers (indexes): any one of them, or all of them.
    Token {
        providers: Vec<usize>,
        all: bool,
        allow_missing: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCheck {
    /// The claim (array, or space-delimited string) contains one of the values.
    Contains { name: String, any_of: Vec<String> },
    /// The claim equals the value.
    Equals { name: String, value: Value },
}

impl ClaimCheck {
    pub fn holds(&self, payload: &Map<String, Value>) -> bool {
        match self {
            ClaimCheck::Contains { name, any_of } => match claim(payload, name) {
                Some(Value::Array(items)) => items.iter().any(|i| match i {
                    Value::String(s) => any_of.iter().any(|w| w == s),
                    Value::Number(_) | Value::Bool(_) => {
                        let text = i.to_string();
                        any_of.contains(&text)
                    }
                    _ => false,
                }),
                Some(Value::String(s)) => s
                    .split_ascii_whitespace()
                    .any(|part| any_of.iter().any(|w| w == part)),
                _ => false,
            },
            ClaimCheck::Equals { name, value } => claim(payload, name) == Some(value),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub route: RouteMatch,
    pub need: Need,
    pub claims: Vec<ClaimCheck>,
}

impl Rule {
    /// Whether the rule applies to a request with this method and canonical path
    /// (`meshwall_core::canonical_path`, query already cut off).
    pub fn matches(&self, method: &str, canonical_path: &str, cfg: &CanonConfig) -> bool {
        self.route.matches(method, canonical_path, cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwall_core::{MethodSet, PathMatch};
    use serde_json::json;

    fn rule(path: PathMatch, methods: &[&str]) -> Rule {
        let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        Rule {
            route: RouteMatch {
                path,
                methods: MethodSet::parse("methods", &methods).unwrap(),
            },
            need: Need::Nothing,
            claims: vec![],
        }
    }

    /// Rules see the canonical path (core builds it; the query is already gone) and compare
    /// methods without regard to case, with `HEAD` as `GET`.
    #[test]
    fn rules_match_canonical_paths_and_methods() {
        let cfg = CanonConfig::default();
        let exact = rule(PathMatch::exact("p", "/a", &cfg).unwrap(), &["POST", "GET"]);
        let prefix = rule(PathMatch::prefix("p", "/admin/", &cfg).unwrap(), &[]);
        let regex = rule(
            PathMatch::regex("p", "/v[0-9]+/items/[^/]+", &cfg).unwrap(),
            &[],
        );
        let cases: [(&Rule, &str, &str, bool); 14] = [
            (&exact, "POST", "/a", true),
            (&exact, "post", "/a", true),
            (&exact, "GET", "/a/", true),
            (&exact, "HEAD", "/a", true),
            (&exact, "DELETE", "/a", false),
            (&exact, "POST", "/a/b", false),
            (&prefix, "GET", "/admin/x", true),
            (&prefix, "GET", "/admin", true),
            (&prefix, "GET", "/administrator", false),
            (&prefix, "GET", "/ADMIN/x", false),
            (&regex, "GET", "/v2/items/abc", true),
            (&regex, "GET", "/v2/items/abc/", true),
            (&regex, "GET", "/v2/items/abc/x", false),
            (&regex, "GET", "/x/v2/items/abc", false),
        ];
        for (r, m, path, want) in cases {
            assert_eq!(r.matches(m, path, &cfg), want, "{m} {path}");
        }
        let strict = CanonConfig {
            head_matches_get: false,
            trailing_slash_insensitive: false,
            ..CanonConfig::default()
        };
        assert!(!exact.matches("HEAD", "/a", &strict));
        assert!(!exact.matches("GET", "/a/", &strict));
    }

    #[test]
    fn claim_checks() {
        let p = json!({"scope":"orders:read orders:write","roles":["admin","dev"],"org":{"id":7},"ok":true,"n":[1,2]});
        let p = p.as_object().unwrap();
        let c = |name: &str, v: &[&str]| ClaimCheck::Contains {
            name: name.into(),
            any_of: v.iter().map(|s| s.to_string()).collect(),
        };
        assert!(c("scope", &["orders:write"]).holds(p));
        assert!(!c("scope", &["orders"]).holds(p), "whole scope tokens only");
        assert!(c("roles", &["x", "admin"]).holds(p));
        assert!(!c("roles", &["adm"]).holds(p));
        assert!(c("n", &["2"]).holds(p));
        assert!(!c("missing", &["a"]).holds(p));
        assert!(ClaimCheck::Equals {
            name: "org.id".into(),
            value: json!(7)
        }
        .holds(p));
        assert!(!ClaimCheck::Equals {
            name: "org.id".into(),
            value: json!("7")
        }
        .holds(p));
        assert!(ClaimCheck::Equals {
            name: "ok".into(),
            value: json!(true)
        }
        .holds(p));
    }
}
