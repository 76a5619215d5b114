//! Metric names: one counter per decision, with what tells decisions of one kind apart (the
//! reason, the rule, the status) as a label, the way Prometheus users expect
//! (`meshwall_jwt_denied{reason="expired"}`, `meshwall_ratelimit_limited{rule="login"}`).
//!
//! A proxy-wasm metric has a name and no labels, so the labels are written into the name and
//! Envoy's tag extraction (`stats_config.stats_tags`) takes them out again. The name is
//!
//! ```text
//! meshwall.<policy>.<metric>(.<label>.<value>)*
//! meshwall.jwt.denied.reason.expired
//! meshwall.validate.rejected.status.415.reason.unsupported_media_type
//! ```
//!
//! - `<policy>` is [`crate::Policy::NAME`] ([`Registry::of`]), `<metric>` is one segment;
//!   both keep `[A-Za-z0-9_]` and turn anything else into `_` (no `.` inside a segment);
//! - the label names are the fixed set [`Label`] (`reason`, `rule`, `status`);
//! - a value keeps `[A-Za-z0-9_-]` and turns anything else into `_` ([`label_value`]), so a
//!   value never spans segments, whatever the configuration holds (a rule named `a.b` is `a_b`).
//!
//! Envoy shows such a name in `/stats` as it is, with its `wasmcustom.` prefix
//! (`wasmcustom.meshwall.jwt.denied.reason.expired`). With one `stats_tags` entry per label
//! ([`Label::envoy_regex`], the same block in every `envoy/*.yaml`) `/stats/prometheus` has
//! `meshwall_jwt_denied{reason="expired"}`; without them the flat name
//! `meshwall_jwt_denied_reason_expired`. Each regex only looks at label positions (segments
//! 4, 6, … after `wasmcustom`), so a value that happens to be `reason` or `rule` is never read
//! as a label name.
//!
//! All metrics are defined at configure time ([`Policy::new`](crate::Policy::new)): label values
//! come from the configuration or from fixed lists, never from a request, so no request can
//! grow the set of metrics.

use crate::config::ConfigError;
use crate::host::{Host, MetricId, MetricKind};
use crate::policy::Policy;

/// The label names a metric may carry. Each has one entry in Envoy's `stats_tags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// Why: a denial, a refusal, a rejection (`denied{reason="expired"}`).
    Reason,
    /// Which configured rule decided (`limited{rule="login"}`).
    Rule,
    /// The HTTP status of the reply (`rejected{status="404"}`).
    Status,
}

impl Label {
    pub const ALL: [Label; 3] = [Label::Reason, Label::Rule, Label::Status];

    /// The label name, as in the metric name and in Prometheus.
    pub fn name(self) -> &'static str {
        match self {
            Label::Reason => "reason",
            Label::Rule => "rule",
            Label::Status => "status",
        }
    }

    /// The regex of this label's Envoy `stats_tags` entry (`tag_name` = [`Label::name`]): the
    /// first group (`.<label>.<value>`) is removed from the name, the second is the value. It
    /// skips `wasmcustom.meshwall.<policy>.<metric>` and whole `.<label>.<value>` pairs, so it
    /// only ever matches a label name at a label position.
    pub fn envoy_regex(self) -> String {
        format!(
            r"^wasmcustom\.meshwall\.[^.]+\.[^.]+(?:\.[^.]+\.[^.]+)*?(\.{}\.([^.]+))",
            self.name()
        )
    }
}

fn sanitise(s: &str, keep_dash: bool) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (keep_dash && c == '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value as it goes into a metric name: `[A-Za-z0-9_-]`, anything else (`.` included)
/// becomes `_`; an empty value is `_`.
pub fn label_value(v: &str) -> String {
    sanitise(v, true)
}

/// `meshwall.<policy>.<metric>` followed by `.<label>.<value>` for each label (a label given
/// twice is written once, with its first value). See the module documentation.
pub fn metric_name(policy: &str, metric: &str, labels: &[(Label, &str)]) -> String {
    let mut name = format!(
        "meshwall.{}.{}",
        sanitise(policy, false),
        sanitise(metric, false)
    );
    for (i, (label, value)) in labels.iter().enumerate() {
        if labels.iter().take(i).any(|(l, _)| l == label) {
            continue;
        }
        name.push('.');
        name.push_str(label.name());
        name.push('.');
        name.push_str(&label_value(value));
    }
    name
}

/// A counter defined at configure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(MetricId);

impl Counter {
    /// Adds one.
    pub fn inc(self, host: &dyn Host) {
        host.increment_metric(self.0, 1);
    }
}

/// A gauge defined at configure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge(MetricId);

impl Gauge {
    pub fn set(self, host: &dyn Host, value: u64) {
        host.record_metric(self.0, value);
    }
}

/// One counter per value of one label (`denied` per `reason`), all defined at configure time
/// from a fixed list of values.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    counters: Vec<(&'static str, Counter)>,
}

impl Counters {
    /// The counter of `value` (`None`: not one of the defined values).
    pub fn get(&self, value: &str) -> Option<Counter> {
        self.counters
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, c)| *c)
    }

    /// Adds one to the counter of `value`; a value that was not defined is not counted.
    pub fn inc(&self, value: &str, host: &dyn Host) {
        if let Some(c) = self.get(value) {
            c.inc(host);
        }
    }
}

/// Defines one policy's metrics, named `meshwall.<policy>.…` (see the module documentation).
#[derive(Clone, Copy)]
pub struct Registry<'a> {
    policy: &'a str,
    host: &'a dyn Host,
}

impl<'a> Registry<'a> {
    /// The metrics of policy `P`, prefixed with its [`Policy::NAME`].
    pub fn of<P: Policy>(host: &'a dyn Host) -> Self {
        Registry::new(P::NAME, host)
    }

    /// The metrics of the policy named `policy` (its [`Policy::NAME`]).
    pub fn new(policy: &'a str, host: &'a dyn Host) -> Self {
        Registry { policy, host }
    }

    /// The full name of a metric of this policy.
    pub fn name(&self, metric: &str, labels: &[(Label, &str)]) -> String {
        metric_name(self.policy, metric, labels)
    }

    fn define(
        &self,
        kind: MetricKind,
        metric: &str,
        labels: &[(Label, &str)],
    ) -> Result<MetricId, ConfigError> {
        let name = self.name(metric, labels);
        self.host
            .define_metric(kind, &name)
            .map_err(|e| ConfigError::new(".", format!("cannot define metric {name}: {e}")))
    }

    pub fn counter(&self, metric: &str, labels: &[(Label, &str)]) -> Result<Counter, ConfigError> {
        self.define(MetricKind::Counter, metric, labels)
            .map(Counter)
    }

    pub fn gauge(&self, metric: &str, labels: &[(Label, &str)]) -> Result<Gauge, ConfigError> {
        self.define(MetricKind::Gauge, metric, labels).map(Gauge)
    }

    /// One counter `metric` per value of `label` (e.g. `denied` for every reason code).
    pub fn counters(
        &self,
        metric: &str,
        label: Label,
        values: &[&'static str],
    ) -> Result<Counters, ConfigError> {
        let counters = values
            .iter()
            .map(|v| Ok((*v, self.counter(metric, &[(label, v)])?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Counters { counters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemHost;
    use regex_lite::Regex;
    use std::collections::BTreeMap;

    /// What Envoy's tag extraction makes of `name` with the project's `stats_tags`: every
    /// regex runs on the whole name; the first group is cut out, the second is the value.
    fn envoy_tags(name: &str) -> (String, BTreeMap<&'static str, String>) {
        let mut cut: Vec<(usize, usize)> = Vec::new();
        let mut tags = BTreeMap::new();
        for label in Label::ALL {
            let re = Regex::new(&label.envoy_regex()).unwrap();
            if let Some(c) = re.captures(name) {
                let whole = c.get(1).unwrap();
                cut.push((whole.start(), whole.end()));
                tags.insert(label.name(), c.get(2).unwrap().as_str().to_string());
            }
        }
        let kept = name
            .char_indices()
            .filter(|(i, _)| !cut.iter().any(|(s, e)| (*s..*e).contains(i)))
            .map(|(_, ch)| ch)
            .collect();
        (kept, tags)
    }

    #[test]
    fn the_label_names_are_a_fixed_small_set() {
        let names: Vec<&str> = Label::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names, ["reason", "rule", "status"]);
    }

    /// (policy, metric, labels, the name).
    type NameCase<'a> = (&'a str, &'a str, &'a [(Label, &'a str)], &'a str);
    /// (name, what Envoy keeps of it, the tags it extracts).
    type TagCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    #[test]
    fn names_are_policy_metric_then_label_pairs() {
        let cases: &[NameCase] = &[
            ("jwt", "allowed", &[], "meshwall.jwt.allowed"),
            (
                "jwt",
                "denied",
                &[(Label::Reason, "expired")],
                "meshwall.jwt.denied.reason.expired",
            ),
            (
                "ratelimit",
                "limited",
                &[(Label::Rule, "per-ip")],
                "meshwall.ratelimit.limited.rule.per-ip",
            ),
            (
                "validate",
                "rejected",
                &[
                    (Label::Status, "415"),
                    (Label::Reason, "unsupported_media_type"),
                ],
                "meshwall.validate.rejected.status.415.reason.unsupported_media_type",
            ),
            // Values keep [A-Za-z0-9_-]; a dot (or anything else) never splits a segment.
            (
                "ratelimit",
                "allowed",
                &[(Label::Rule, "login.v2")],
                "meshwall.ratelimit.allowed.rule.login_v2",
            ),
            (
                "ratelimit",
                "allowed",
                &[(Label::Rule, "a b/ü{}=\"")],
                "meshwall.ratelimit.allowed.rule.a_b______",
            ),
            ("x", "m", &[(Label::Rule, "")], "meshwall.x.m.rule._"),
            // Policy and metric are one segment each: `-` and `.` become `_` there.
            (
                "my-policy",
                "table.bytes",
                &[],
                "meshwall.my_policy.table_bytes",
            ),
            // A label given twice is written once (first value).
            (
                "x",
                "m",
                &[(Label::Reason, "a"), (Label::Reason, "b")],
                "meshwall.x.m.reason.a",
            ),
        ];
        for (policy, metric, labels, want) in cases {
            assert_eq!(metric_name(policy, metric, labels), *want);
        }
    }

    #[test]
    fn envoy_tag_regexes_turn_names_into_a_metric_and_labels() {
        let cases: &[TagCase] = &[
            ("meshwall.jwt.allowed", "meshwall.jwt.allowed", &[]),
            (
                "meshwall.jwt.denied.reason.expired",
                "meshwall.jwt.denied",
                &[("reason", "expired")],
            ),
            (
                "meshwall.ratelimit.shadow_limited.rule.per-ip",
                "meshwall.ratelimit.shadow_limited",
                &[("rule", "per-ip")],
            ),
            (
                "meshwall.validate.rejected.status.400.reason.invalid_body",
                "meshwall.validate.rejected",
                &[("reason", "invalid_body"), ("status", "400")],
            ),
            // A value that is a label name is read as a value, never as a label.
            (
                "meshwall.ratelimit.limited.rule.reason",
                "meshwall.ratelimit.limited",
                &[("rule", "reason")],
            ),
            (
                "meshwall.x.m.rule.status.reason.rule",
                "meshwall.x.m",
                &[("reason", "rule"), ("rule", "status")],
            ),
            // A metric or policy named like a label is no label either.
            (
                "meshwall.reason.rule.status.x",
                "meshwall.reason.rule",
                &[("status", "x")],
            ),
            ("meshwall.x.reason", "meshwall.x.reason", &[]),
            // Other stats are left alone.
            ("wasm.meshwall.x.reason.y", "wasm.meshwall.x.reason.y", &[]),
        ];
        for (name, base, labels) in cases {
            let full = format!("wasmcustom.{name}");
            let (kept, tags) = envoy_tags(if name.starts_with("meshwall.") {
                &full
            } else {
                name
            });
            let want_base = if name.starts_with("meshwall.") {
                format!("wasmcustom.{base}")
            } else {
                base.to_string()
            };
            assert_eq!(kept, want_base, "{name}");
            let want: BTreeMap<&str, String> =
                labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
            assert_eq!(tags, want, "{name}");
        }
    }

    #[test]
    fn every_built_name_round_trips_through_the_tag_regexes() {
        let values = [
            "reason", "rule", "status", "login", "a.b", "", "per-ip", "404",
        ];
        for a in values {
            for b in values {
                for labels in [
                    vec![(Label::Reason, a)],
                    vec![(Label::Rule, a), (Label::Reason, b)],
                    vec![(Label::Status, a), (Label::Reason, b)],
                    vec![(Label::Reason, b), (Label::Rule, a), (Label::Status, b)],
                ] {
                    let name = format!("wasmcustom.{}", metric_name("p", "m", &labels));
                    let (kept, tags) = envoy_tags(&name);
                    assert_eq!(kept, "wasmcustom.meshwall.p.m", "{name}");
                    let want: BTreeMap<&str, String> = labels
                        .iter()
                        .map(|(l, v)| (l.name(), label_value(v)))
                        .collect();
                    assert_eq!(tags, want, "{name}");
                }
            }
        }
    }

    #[test]
    fn a_registry_defines_names_from_the_policy_name() {
        let host = MemHost::new();
        let r = Registry::new("jwt", &host);
        let allowed = r.counter("allowed", &[]).unwrap();
        let denied = r
            .counters("denied", Label::Reason, &["missing", "expired"])
            .unwrap();
        let gauge = r.gauge("keys", &[]).unwrap();
        allowed.inc(&host);
        denied.inc("expired", &host);
        denied.inc("expired", &host);
        denied.inc("not-defined", &host);
        gauge.set(&host, 7);
        assert_eq!(
            host.metric_names(),
            [
                "meshwall.jwt.allowed",
                "meshwall.jwt.denied.reason.missing",
                "meshwall.jwt.denied.reason.expired",
                "meshwall.jwt.keys",
            ]
        );
        assert_eq!(host.metric("meshwall.jwt.allowed"), 1);
        assert_eq!(host.metric("meshwall.jwt.denied.reason.missing"), 0);
        assert_eq!(host.metric("meshwall.jwt.denied.reason.expired"), 2);
        assert_eq!(host.metric("meshwall.jwt.keys"), 7);
        assert_eq!(
            denied.get("missing"),
            r.counter("denied", &[(Label::Reason, "missing")]).ok()
        );
        assert_eq!(denied.get("not-defined"), None);
    }
}
