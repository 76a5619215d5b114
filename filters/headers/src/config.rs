//! Configuration of the `headers` filter. Every field is optional; see README for the reference.

use meshwall_core::config::{writable_header_name, FRAMING_HEADERS};
use meshwall_core::ConfigError;
use serde::Deserialize;

/// Response headers removed by default: they name server software, versions and internal
/// timings (OWASP Secure Headers Project "remove" list, the entries that matter for APIs).
pub const DEFAULT_RESPONSE_HEADERS_TO_REMOVE: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-php-version",
    "x-generator",
    "x-runtime",
    "x-version",
    "x-backend-server",
    "x-server",
    "x-application-context",
    "x-debug-token",
    "x-debug-token-link",
    "x-sourcemap",
    "sourcemap",
    "x-envoy-upstream-service-time",
    "x-envoy-decorator-operation",
];

/// The `owasp_api` security header preset: (name, value, action).
pub const OWASP_API_HEADERS: &[(&str, &str, AppendAction)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
        AppendAction::OverwriteIfExistsOrAdd,
    ),
    (
        "x-content-type-options",
        "nosniff",
        AppendAction::OverwriteIfExistsOrAdd,
    ),
    (
        "x-frame-options",
        "DENY",
        AppendAction::OverwriteIfExistsOrAdd,
    ),
    (
        "referrer-policy",
        "no-referrer",
        AppendAction::OverwriteIfExistsOrAdd,
    ),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
        AppendAction::OverwriteIfExistsOrAdd,
    ),
    (
        "cross-origin-resource-policy",
        "same-origin",
        AppendAction::OverwriteIfExistsOrAdd,
    ),
    (
        "x-permitted-cross-domain-policies",
        "none",
        AppendAction::OverwriteIfExistsOrAdd,
    ),
    ("cache-control", "no-store", AppendAction::AddIfAbsent),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// The OWASP set for JSON APIs (see [`OWASP_API_HEADERS`]).
    #[default]
    OwaspApi,
    /// No preset headers; only `response_headers_to_add`.
    None,
}

/// Envoy's `HeaderValueOption.append_action` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppendAction {
    /// Add one more value; keep the upstream's.
    AppendIfExistsOrAdd,
    /// Add only when the response has no such header.
    AddIfAbsent,
    /// Replace whatever the response has, or add it (meshwall's default).
    #[default]
    OverwriteIfExistsOrAdd,
    /// Replace only when the response has the header.
    OverwriteIfExists,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    pub key: String,
    pub value: String,
}

/// Same shape as Envoy's `HeaderValueOption` (`header {key, value}`, `append_action`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueOption {
    pub header: HeaderValue,
    #[serde(default)]
    pub append_action: AppendAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Security header preset added to every response.
    #[serde(default)]
    pub security_headers: Preset,
    /// Preset headers to leave out.
    #[serde(default)]
    pub security_headers_exclude: Vec<String>,
    /// Headers added to every response, after the preset; an entry replaces a preset entry
    /// of the same name.
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// Response headers removed by exact name. Setting it replaces the default list.
    #[serde(default = "default_remove")]
    pub response_headers_to_remove: Vec<String>,
    /// Response headers removed by name prefix (e.g. `x-envoy-`).
    #[serde(default)]
    pub response_header_prefixes_to_remove: Vec<String>,
    /// Request headers removed before the request reaches the upstream.
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    /// Request headers removed by name prefix (e.g. `x-internal-`).
    #[serde(default)]
    pub request_header_prefixes_to_remove: Vec<String>,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            security_headers: Preset::default(),
            security_headers_exclude: Vec::new(),
            response_headers_to_add: Vec::new(),
            response_headers_to_remove: default_remove(),
            response_header_prefixes_to_remove: Vec::new(),
            request_headers_to_remove: Vec::new(),
            request_header_prefixes_to_remove: Vec::new(),
        }
    }
}

fn default_remove() -> Vec<String> {
    DEFAULT_RESPONSE_HEADERS_TO_REMOVE
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Checks a header name (or prefix) the filter removes or sets; returns it lower-cased.
pub(crate) fn check_name(field: &str, name: &str) -> Result<String, ConfigError> {
    writable_header_name(field, name, FRAMING_HEADERS)
}

pub(crate) fn check_value(field: &str, value: &str) -> Result<(), ConfigError> {
    if value
        .chars()
        .any(|c| c == '\r' || c == '\n' || c == '\0' || (c.is_control() && c != '\t'))
    {
        return Err(ConfigError::new(
            field,
            "header value must not contain control characters",
        ));
    }
    if value.trim() != value {
        return Err(ConfigError::new(
            field,
            "header value must not start or end with white space",
        ));
    }
    Ok(())
}
