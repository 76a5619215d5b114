//! Configuration of the `validate` filter. Every field is optional; `docs/validate.md` is the
//! reference.

use meshwall_core::CanonConfig;
use serde::Deserialize;
use serde_json::Value;

/// What to do with a request body sent to an operation that declares no `requestBody`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnexpectedBody {
    /// 400 (keyword `unexpectedBody`): the backend would read a body nothing has checked.
    #[default]
    Reject,
    /// JSON bodies get the JSON threat scan; other bodies pass.
    Scan,
    /// Every body passes unchecked.
    Pass,
}

/// What to do with a request that breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    /// Answer with the error status (404, 405, 400, 413, 415).
    #[default]
    Reject,
    /// Let the request through without counting it as a violation.
    Pass,
    /// Let the request through, but log it and count it as a report-only violation.
    Report,
}

/// Overall mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Violations are answered with an error.
    #[default]
    Enforce,
    /// Violations are logged and counted, every request goes through.
    ReportOnly,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_ERRORS: usize = 10;
/// serde_json refuses deeper documents, so deeper limits could never apply.
pub const MAX_DEPTH_CEILING: usize = 120;

/// JSON threat protection limits (Apigee `JSONThreatProtection`, Kong `json-threat-protection`).
/// `0` disables a count/length limit; `max_depth` is always enforced (1..=120).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonLimits {
    /// Deepest nesting of arrays/objects (the top-level container is depth 1).
    pub max_depth: usize,
    /// Most elements in one array.
    pub max_array_elements: usize,
    /// Most members in one object.
    pub max_object_entries: usize,
    /// Longest member name, in characters (after unescaping).
    pub max_name_length: usize,
    /// Longest string value, in characters (after unescaping).
    pub max_string_length: usize,
    /// Accept objects that repeat a member name (parsers disagree on which one wins).
    pub allow_duplicate_names: bool,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_depth: 32,
            max_array_elements: 10_000,
            max_object_entries: 1_000,
            max_name_length: 256,
            max_string_length: 65_536,
            allow_duplicate_names: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateConfig {
    /// The OpenAPI 3.0.x / 3.1.x document: a JSON object, or a string holding JSON or YAML.
    /// Absent: no spec validation, only JSON threat protection of JSON bodies.
    pub spec: Option<Value>,
    /// Base path stripped before matching (overrides the paths of `servers`).
    pub base_path: Option<String>,
    /// How request paths are read: what is refused as ambiguous, and how paths compare
    /// (trailing slash, case, `HEAD` as `GET`).
    pub canonical: CanonConfig,
    /// A body on an operation without `requestBody`: `reject`, `scan` or `pass`.
    pub unexpected_body: UnexpectedBody,
    /// `enforce` or `report_only`.
    pub mode: Mode,
    /// Request path not in the spec (404).
    pub unknown_path: OnViolation,
    /// Path in the spec but method not declared for it (405 with `Allow`).
    pub unknown_method: OnViolation,
    /// Reject query parameters the operation does not declare.
    pub reject_unknown_query_params: bool,
    /// Assert `format` (date-time, email, uuid, int32, int64, …) in both 3.0 and 3.1 mode.
    pub assert_formats: bool,
    /// Largest request body buffered and validated; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most violations listed in a 400 reply.
    pub max_errors: usize,
    /// JSON threat protection limits, applied to every JSON body before schema validation.
    pub json_limits: JsonLimits,
    /// Hold the request headers until the body is checked, so nothing of a refused request
    /// reaches the upstream. Needs Envoy's `allow_on_headers_stop_iteration: true` in the
    /// filter's `PluginConfig`; set `false` only where the host cannot set it (the headers
    /// then reach the upstream before the body's verdict; logged at configure time).
    pub hold_headers: bool,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            spec: None,
            base_path: None,
            canonical: CanonConfig::default(),
            unexpected_body: UnexpectedBody::Reject,
            mode: Mode::Enforce,
            unknown_path: OnViolation::Reject,
            unknown_method: OnViolation::Reject,
            reject_unknown_query_params: false,
            assert_formats: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_errors: DEFAULT_MAX_ERRORS,
            json_limits: JsonLimits::default(),
            hold_headers: true,
        }
    }
}
