//! Metric names: one counter per decision, with the reply's status and the reason as labels
//! (`meshwall_validate_rejected{status="415",reason="unsupported_media_type"}` in Prometheus).

use super::*;

#[test]
fn every_counter_is_defined_at_configure_time() {
    let (_p, h) = policy_with(json!({}));
    let mut want: Vec<String> = [
        "validated",
        "report_only",
        "rejected.status.404.reason.unknown_path",
        "rejected.status.405.reason.method_not_allowed",
        "rejected.status.400.reason.invalid_param",
        "rejected.status.400.reason.invalid_body",
        "rejected.status.413.reason.body_too_large",
        "rejected.status.415.reason.unsupported_media_type",
    ]
    .iter()
    .map(|m| format!("meshwall.validate.{m}"))
    .collect();
    want.extend(
        Ambiguity::REASONS
            .iter()
            .map(|r| format!("meshwall.validate.ambiguous.reason.{r}")),
    );
    let mut names = h.metric_names();
    names.sort();
    want.sort();
    assert_eq!(names, want);
}

/// (method, path, headers, body, the counter's labels).
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a [u8]>,
    &'a str,
);

#[test]
fn each_rejection_counts_under_its_status_and_reason() {
    let (p, h) = policy_with(json!({}));
    let big = vec![b' '; 300];
    let cases: &[Case] = &[
        (
            "GET",
            "/v1/owners",
            &[],
            None,
            "status.404.reason.unknown_path",
        ),
        (
            "PUT",
            "/v1/pets",
            &[],
            None,
            "status.405.reason.method_not_allowed",
        ),
        (
            "GET",
            "/v1/pets/0",
            &[],
            None,
            "status.400.reason.invalid_param",
        ),
        (
            "POST",
            "/v1/pets",
            &[JSON],
            Some(b"{}"),
            "status.400.reason.invalid_body",
        ),
        (
            "POST",
            "/v1/pets",
            &[JSON],
            Some(&big),
            "status.413.reason.body_too_large",
        ),
        (
            "POST",
            "/v1/pets",
            &[("content-type", "application/xml")],
            Some(b"<a/>"),
            "status.415.reason.unsupported_media_type",
        ),
    ];
    for (m, path, headers, body, labels) in cases {
        let name = format!("meshwall.validate.rejected.{labels}");
        let before = h.metric(&name);
        let a = run(&p, &h, &req(m, path, headers, body.is_some()), *body);
        let status: u16 = labels
            .split('.')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        assert_eq!(super::status(&a), status, "{m} {path}: {a:?}");
        assert_eq!(h.metric(&name), before + 1, "{m} {path}");
    }
    assert_eq!(h.metric("meshwall.validate.validated"), 0);
}
