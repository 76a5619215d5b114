//! Route matching shared by every policy: paths (exact, prefix, bounded regex) and methods,
//! compared on the canonical request view ([`crate::canon`]). Built and checked once, from
//! the configuration; each constructor names the field at fault.

use crate::canon::{canonical_path, CanonConfig};
use crate::config::{is_tchar, ConfigError};
use regex_lite::{Regex, RegexBuilder};
use serde::Deserialize;

/// Compiles a route regex anchored to the whole path, with bounded size and nesting (a
/// configuration cannot make matching slow or the VM large).
pub fn compile_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))
}

/// Which paths a rule applies to. Matched against the canonical path.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    /// Anchored: must match the whole path.
    Regex(Regex),
}

impl PathMatch {
    /// An exact or prefix path from the configuration: must start with `/`, and is brought to
    /// canonical form itself (so `/a/./b` or `/%61` in a config mean what they say), but must
    /// not be ambiguous.
    fn literal(field: &str, p: &str, cfg: &CanonConfig) -> Result<String, ConfigError> {
        if !p.starts_with('/') {
            return Err(ConfigError::new(field, "must start with `/`"));
        }
        let canon = canonical_path(p, cfg)
            .map_err(|a| ConfigError::new(field, format!("ambiguous path: {}", a.detail())))?;
        // A prefix such as `/api/` keeps its slash; canonical_path keeps trailing slashes.
        Ok(canon)
    }

    pub fn exact(field: &str, p: &str, cfg: &CanonConfig) -> Result<Self, ConfigError> {
        Ok(PathMatch::Exact(Self::literal(field, p, cfg)?))
    }

    pub fn prefix(field: &str, p: &str, cfg: &CanonConfig) -> Result<Self, ConfigError> {
        Ok(PathMatch::Prefix(Self::literal(field, p, cfg)?))
    }

    pub fn regex(field: &str, r: &str, cfg: &CanonConfig) -> Result<Self, ConfigError> {
        compile_regex(r, cfg.case_insensitive_paths)
            .map(PathMatch::Regex)
            .map_err(|e| ConfigError::new(field, e))
    }

    /// Whether the canonical path `path` matches. With `trailing_slash_insensitive`, `/a` and
    /// `/a/` are one path: an exact `/login` matches `/login/`, a prefix `/admin/` matches
    /// `/admin`, a regex is tried on both spellings.
    pub fn matches(&self, path: &str, cfg: &CanonConfig) -> bool {
        let toggled = || -> Option<String> {
            if !cfg.trailing_slash_insensitive || path == "/" {
                return None;
            }
            Some(match path.strip_suffix('/') {
                Some(p) => p.to_string(),
                None => format!("{path}/"),
            })
        };
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => {
                path == p
                    || (cfg.trailing_slash_insensitive
                        && p != "/"
                        && path != "/"
                        && path.trim_end_matches('/') == p.trim_end_matches('/'))
            }
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    || (cfg.trailing_slash_insensitive
                        && p.len() > 1
                        && p.strip_suffix('/') == Some(path))
            }
            PathMatch::Regex(re) => re.is_match(path) || toggled().is_some_and(|t| re.is_match(&t)),
        }
    }
}

/// Which requests a rule applies to, as the configuration gives it (`match` in jwt, apikey and
/// access rules): exactly one of `path`, `prefix`, `safe_regex`, and optionally `methods`, all
/// compared on the canonical request view. [`RouteMatchConfig::compile`] checks it once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchConfig {
    /// Exact canonical path (without the query string).
    #[serde(default)]
    pub path: Option<String>,
    /// Canonical path prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Regular expression that must match the whole canonical path (bounded size).
    #[serde(default)]
    pub safe_regex: Option<SafeRegexConfig>,
    /// HTTP methods (any when empty), compared without regard to case.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Envoy's `safe_regex` shape: `{"regex": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeRegexConfig {
    pub regex: String,
}

impl RouteMatchConfig {
    /// The compiled match; `field` is the `match` object's own name (`rules[2].match`), errors
    /// name the field inside it.
    pub fn compile(&self, field: &str, canon: &CanonConfig) -> Result<RouteMatch, ConfigError> {
        let path = match (&self.path, &self.prefix, &self.safe_regex) {
            (Some(p), None, None) => PathMatch::exact(&format!("{field}.path"), p, canon)?,
            (None, Some(p), None) => PathMatch::prefix(&format!("{field}.prefix"), p, canon)?,
            (None, None, Some(r)) => {
                PathMatch::regex(&format!("{field}.safe_regex.regex"), &r.regex, canon)?
            }
            _ => {
                return Err(ConfigError::new(
                    field,
                    "give exactly one of `path`, `prefix`, `safe_regex`",
                ))
            }
        };
        let methods = MethodSet::parse(&format!("{field}.methods"), &self.methods)?;
        Ok(RouteMatch { path, methods })
    }
}

/// A compiled [`RouteMatchConfig`].
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub methods: MethodSet,
}

impl RouteMatch {
    /// Whether a request with this method applies (cheap: check it before canonicalising).
    pub fn matches_method(&self, method: &str, canon: &CanonConfig) -> bool {
        self.methods.matches(method, canon)
    }

    /// Whether the method and the canonical path both match.
    pub fn matches(&self, method: &str, canonical_path: &str, canon: &CanonConfig) -> bool {
        self.methods.matches(method, canon) && self.path.matches(canonical_path, canon)
    }
}

/// Methods a rule applies to (empty: any). Stored upper-case; requests compare without regard
/// to case (Django and Flask upper-case an HTTP/2 `post`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodSet(Vec<String>);

impl MethodSet {
    /// Checks each configured method (an RFC 9110 token) at `field[i]`.
    pub fn parse(field: &str, methods: &[String]) -> Result<Self, ConfigError> {
        let mut out = Vec::with_capacity(methods.len());
        for (i, m) in methods.iter().enumerate() {
            if m.is_empty() || !m.chars().all(is_tchar) {
                return Err(ConfigError::new(
                    format!("{field}[{i}]"),
                    format!("`{m}` is not an HTTP method"),
                ));
            }
            out.push(m.to_ascii_uppercase());
        }
        Ok(MethodSet(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the request method is in the set; `HEAD` counts as `GET` with
    /// `head_matches_get`.
    pub fn matches(&self, method: &str, cfg: &CanonConfig) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|m| {
                m.eq_ignore_ascii_case(method)
                    || (cfg.head_matches_get && m == "GET" && method.eq_ignore_ascii_case("HEAD"))
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CanonConfig {
        CanonConfig::default()
    }

    #[test]
    fn exact_is_trailing_slash_insensitive_by_default() {
        let m = PathMatch::exact("f", "/login", &cfg()).unwrap();
        assert!(m.matches("/login", &cfg()));
        assert!(m.matches("/login/", &cfg()));
        assert!(!m.matches("/login/x", &cfg()));
        assert!(!m.matches("/loginx", &cfg()));
        let strict = CanonConfig {
            trailing_slash_insensitive: false,
            ..cfg()
        };
        assert!(!m.matches("/login/", &strict));
        let root = PathMatch::exact("f", "/", &cfg()).unwrap();
        assert!(root.matches("/", &cfg()));
        assert!(!root.matches("/a", &cfg()));
    }

    #[test]
    fn prefix_with_slash_covers_the_bare_name() {
        let m = PathMatch::prefix("f", "/admin/", &cfg()).unwrap();
        assert!(m.matches("/admin/x", &cfg()));
        assert!(m.matches("/admin", &cfg()));
        assert!(!m.matches("/administrator", &cfg()));
        let plain = PathMatch::prefix("f", "/api", &cfg()).unwrap();
        assert!(
            plain.matches("/apix", &cfg()),
            "a prefix is a string prefix, as in Envoy"
        );
    }

    #[test]
    fn regex_is_anchored_and_tries_both_slash_spellings() {
        let m = PathMatch::regex("f", "/v[0-9]+/items/[^/]+", &cfg()).unwrap();
        assert!(m.matches("/v2/items/abc", &cfg()));
        assert!(m.matches("/v2/items/abc/", &cfg()));
        assert!(!m.matches("/v2/items/abc/x", &cfg()));
        assert!(!m.matches("/x/v2/items/abc", &cfg()));
        let e = PathMatch::regex("rules[0].regex", "(", &cfg()).unwrap_err();
        assert_eq!(e.field, "rules[0].regex");
        let huge = "(a{1000}){1000}";
        assert!(PathMatch::regex("f", huge, &cfg()).is_err(), "bounded size");
    }

    #[test]
    fn config_paths_are_canonical_and_unambiguous() {
        let m = PathMatch::exact("f", "/a/./b/%7Euser", &cfg()).unwrap();
        assert!(m.matches("/a/b/~user", &cfg()));
        assert!(PathMatch::exact("f", "a", &cfg()).is_err());
        let e = PathMatch::prefix("p", "/a;x/", &cfg()).unwrap_err();
        assert!(e.reason.contains("ambiguous"), "{e}");
    }

    #[test]
    fn case_insensitive_paths() {
        let ci = CanonConfig {
            case_insensitive_paths: true,
            ..cfg()
        };
        let m = PathMatch::prefix("f", "/Admin/", &ci).unwrap();
        let path = canonical_path("/ADMIN/x", &ci).unwrap();
        assert!(m.matches(&path, &ci));
        let r = PathMatch::regex("f", "/admin/.*", &ci).unwrap();
        assert!(r.matches(&path, &ci));
    }

    #[test]
    fn methods_ignore_case_and_head_counts_as_get() {
        let m = MethodSet::parse("methods", &["get".into(), "POST".into()]).unwrap();
        assert!(m.matches("post", &cfg()));
        assert!(m.matches("GET", &cfg()));
        assert!(m.matches("HEAD", &cfg()));
        assert!(m.matches("head", &cfg()));
        assert!(!m.matches("DELETE", &cfg()));
        let no_head = CanonConfig {
            head_matches_get: false,
            ..cfg()
        };
        assert!(!m.matches("HEAD", &no_head));
        assert!(MethodSet::default().matches("ANYTHING", &cfg()));
        let e = MethodSet::parse("m", &["GET".into(), "BAD METHOD".into()]).unwrap_err();
        assert_eq!(e.field, "m[1]");
    }

    fn route(json: &str) -> Result<RouteMatch, ConfigError> {
        let c: RouteMatchConfig = crate::parse_config(json.as_bytes()).unwrap();
        c.compile("rules[3].match", &cfg())
    }

    #[test]
    fn a_route_match_is_exactly_one_path_form_and_names_its_fields() {
        let m = route(r#"{"prefix":"/admin/","methods":["post"]}"#).unwrap();
        assert!(m.matches("POST", "/admin/x", &cfg()));
        assert!(!m.matches("GET", "/admin/x", &cfg()));
        assert!(!m.matches("POST", "/public/x", &cfg()));
        assert!(m.matches_method("post", &cfg()));
        let m = route(r#"{"safe_regex":{"regex":"/v[0-9]+/pets"}}"#).unwrap();
        assert!(m.matches("DELETE", "/v2/pets", &cfg()));
        assert!(
            !m.matches("GET", "/v2/pets/1", &cfg()),
            "anchored to the whole path"
        );
        for (json, field) in [
            (r#"{}"#, "rules[3].match"),
            (r#"{"path":"/a","prefix":"/b"}"#, "rules[3].match"),
            (r#"{"path":"a"}"#, "rules[3].match.path"),
            (r#"{"prefix":"/a/%2e%2e/b"}"#, "rules[3].match.prefix"),
            (
                r#"{"safe_regex":{"regex":"(unclosed"}}"#,
                "rules[3].match.safe_regex.regex",
            ),
            (
                r#"{"path":"/a","methods":["GET","NO SPACE"]}"#,
                "rules[3].match.methods[1]",
            ),
        ] {
            assert_eq!(route(json).unwrap_err().field, field, "{json}");
        }
        let unknown = crate::parse_config::<RouteMatchConfig>(br#"{"paths":"/a"}"#).unwrap_err();
        assert!(unknown.to_string().contains("paths"), "{unknown}");
    }
}
