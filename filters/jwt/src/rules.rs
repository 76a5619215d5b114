//! Route rules: which requests need which token, and per-rule claim conditions (403).

use crate::token::claim;
use meshwall_core::Request;
use regex_lite::Regex;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// Anchored: must match the whole path.
    Regex(Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

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
    pub path: PathMatch,
    /// Upper-case methods; empty = any.
    pub methods: Vec<String>,
    pub need: Need,
    pub claims: Vec<ClaimCheck>,
}

impl Rule {
    pub fn matches(&self, req: &Request) -> bool {
        (self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&req.method)))
            && self.path.matches(req.path_only())
    }
}

/// Compiles a route regex, anchored to the whole path, with bounded size.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    regex_lite::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_matching() {
        let r = compile_regex("/v[0-9]+/items/[^/]+").unwrap();
        assert!(PathMatch::Regex(r.clone()).matches("/v2/items/abc"));
        assert!(
            !PathMatch::Regex(r.clone()).matches("/v2/items/abc/x"),
            "anchored at the end"
        );
        assert!(
            !PathMatch::Regex(r).matches("/x/v2/items/abc"),
            "anchored at the start"
        );
        assert!(PathMatch::Prefix("/api/".into()).matches("/api/x"));
        assert!(!PathMatch::Prefix("/api/".into()).matches("/apix"));
        assert!(PathMatch::Exact("/healthz".into()).matches("/healthz"));
        assert!(!PathMatch::Exact("/healthz".into()).matches("/healthz/x"));
        assert!(compile_regex("(").is_err());
    }

    #[test]
    fn rules_use_the_path_without_query_and_methods() {
        let rule = Rule {
            path: PathMatch::Exact("/a".into()),
            methods: vec!["POST".into()],
            need: Need::Nothing,
            claims: vec![],
        };
        let req = |m: &str, p: &str| Request {
            method: m.into(),
            path: p.into(),
            ..Default::default()
        };
        assert!(rule.matches(&req("POST", "/a?x=1")));
        assert!(!rule.matches(&req("GET", "/a")));
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
