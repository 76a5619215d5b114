//! The decision as a spec: global and per-route lists, deny over allow, first rule wins, the
//! reply and the counters.

use super::*;
use crate::DenyReason::{DenyList, NoClientAddress, NotAllowed};

const SPEC: &str = r#"{
  "allow": ["10.0.0.0/8", "2001:db8::/32"],
  "deny": ["10.66.0.0/16", "2001:db8:bad::/48"],
  "rules": [
    {"match": {"prefix": "/admin/"}, "allow": ["10.1.0.0/16", "::1"], "deny": ["10.1.99.0/24"]},
    {"match": {"prefix": "/public/"}, "allow": []},
    {"match": {"prefix": "/uploads/"}, "deny": ["10.2.0.0/16"]},
    {"match": {"path": "/both"}, "allow": ["192.0.2.0/24"], "deny": ["192.0.2.0/24"]},
    {"match": {"prefix": "/", "methods": ["DELETE"]}, "allow": ["10.3.0.0/16"]},
    {"match": {"prefix": "/admin/"}, "allow": []}
  ]
}"#;

#[test]
fn the_lists_decide_in_the_documented_order() {
    let (p, _) = policy(SPEC);
    let allow = Verdict::Allow;
    let deny = Verdict::Deny;
    let cases: &[(&str, &str, &str, Verdict, &str)] = &[
        ("GET", "/x", "10.9.9.9", allow, "no rule: the global allow"),
        (
            "GET",
            "/x",
            "11.0.0.1",
            deny(NotAllowed),
            "no rule: not in the global allow",
        ),
        (
            "GET",
            "/x",
            "10.66.1.1",
            deny(DenyList),
            "global deny over global allow",
        ),
        (
            "GET",
            "/x",
            "2001:db8::5",
            allow,
            "IPv6 in the global allow",
        ),
        (
            "GET",
            "/x",
            "2001:db8:bad::1",
            deny(DenyList),
            "IPv6 in the global deny",
        ),
        ("GET", "/x", "2001:db9::1", deny(NotAllowed), "IPv6 outside"),
        ("GET", "/x", "::ffff:10.9.9.9", allow, "IPv4-mapped is IPv4"),
        (
            "GET",
            "/x",
            "::ffff:10.66.0.1",
            deny(DenyList),
            "IPv4-mapped in the global deny",
        ),
        (
            "GET",
            "/public/a",
            "203.0.113.5",
            allow,
            "a rule's empty allow: any address",
        ),
        (
            "GET",
            "/public/a",
            "10.66.1.1",
            deny(DenyList),
            "the global deny applies on every route",
        ),
        (
            "GET",
            "/public/a",
            "2001:db8:bad::9",
            deny(DenyList),
            "the global deny applies on every route",
        ),
        ("GET", "/admin/x", "10.1.2.3", allow, "in the rule's allow"),
        (
            "GET",
            "/admin/x",
            "10.9.9.9",
            deny(NotAllowed),
            "the rule's allow replaces the global one",
        ),
        (
            "GET",
            "/admin/x",
            "10.1.99.7",
            deny(DenyList),
            "the rule's deny over the rule's allow",
        ),
        ("GET", "/admin/x", "::1", allow, "one IPv6 address"),
        (
            "GET",
            "/admin/x",
            "::2",
            deny(NotAllowed),
            "one IPv6 address, not its neighbour",
        ),
        (
            "GET",
            "/admin/x",
            "::ffff:10.1.2.3",
            allow,
            "IPv4-mapped in the rule's allow",
        ),
        (
            "GET",
            "/admin/x",
            "11.0.0.1",
            deny(NotAllowed),
            "first rule wins over the later open one",
        ),
        (
            "GET",
            "/uploads/f",
            "10.9.9.9",
            allow,
            "no allow in the rule: the global allow",
        ),
        (
            "GET",
            "/uploads/f",
            "11.0.0.1",
            deny(NotAllowed),
            "a deny-only rule does not open the route",
        ),
        (
            "GET",
            "/uploads/f",
            "10.2.3.4",
            deny(DenyList),
            "the rule's deny",
        ),
        (
            "GET",
            "/x",
            "10.2.3.4",
            allow,
            "a rule's deny applies only on its route",
        ),
        (
            "GET",
            "/both",
            "192.0.2.1",
            deny(DenyList),
            "in allow and deny: denied",
        ),
        (
            "GET",
            "/both",
            "10.9.9.9",
            deny(NotAllowed),
            "the rule's allow replaces the global one",
        ),
        ("DELETE", "/x", "10.3.0.1", allow, "a methods rule"),
        (
            "delete",
            "/x",
            "10.9.9.9",
            deny(NotAllowed),
            "methods compare without case",
        ),
        ("POST", "/x", "10.9.9.9", allow, "another method: no rule"),
        (
            "DELETE",
            "/admin/x",
            "10.1.2.3",
            allow,
            "the first matching rule, not the methods one",
        ),
        (
            "DELETE",
            "/admin/x",
            "10.3.0.1",
            deny(NotAllowed),
            "the first matching rule",
        ),
    ];
    for (method, path, peer, want, why) in cases {
        let got = p.decide(&req(method, path, Some(peer), &[]));
        assert_eq!(got, Ok(*want), "{method} {path} from {peer}: {why}");
    }
}

#[test]
fn lists_alone() {
    // Only a deny list: everyone else is allowed.
    let (p, host) = policy(r#"{"deny": ["198.51.100.0/24"]}"#);
    assert_eq!(status_of(&p, &host, "GET", "/", "198.51.100.7"), 403);
    assert_eq!(status_of(&p, &host, "GET", "/", "198.51.101.7"), 200);
    assert_eq!(status_of(&p, &host, "GET", "/", "2001:db8::1"), 200);
    // Only an IPv4 allow list: IPv6 clients are not in it.
    let (p, host) = policy(r#"{"allow": ["0.0.0.0/0"]}"#);
    assert_eq!(status_of(&p, &host, "GET", "/", "203.0.113.1"), 200);
    assert_eq!(status_of(&p, &host, "GET", "/", "2001:db8::1"), 403);
    assert_eq!(status_of(&p, &host, "GET", "/", "::ffff:203.0.113.1"), 200);
    // `::/0` is every IPv6 client, and no IPv4 one (also not written IPv4-mapped).
    let (p, host) = policy(r#"{"allow": ["::/0"]}"#);
    assert_eq!(status_of(&p, &host, "GET", "/", "2001:db8::1"), 200);
    assert_eq!(status_of(&p, &host, "GET", "/", "::ffff:203.0.113.1"), 403);
    // Only rules: no rule matches → any address.
    let (p, host) =
        policy(r#"{"rules": [{"match": {"prefix": "/admin"}, "allow": ["10.0.0.1"]}]}"#);
    assert_eq!(status_of(&p, &host, "GET", "/admin", "10.0.0.2"), 403);
    assert_eq!(status_of(&p, &host, "GET", "/admin", "10.0.0.1"), 200);
    assert_eq!(status_of(&p, &host, "GET", "/other", "10.0.0.2"), 200);
}

#[test]
fn a_denied_request_gets_one_fixed_403_and_reaches_nothing() {
    let (p, host) = policy(SPEC);
    let mut bodies = Vec::new();
    for (path, peer) in [
        ("/x", "11.0.0.1"),
        ("/x", "10.66.0.1"),
        ("/admin/x", "10.9.9.9"),
    ] {
        let s = exchange(&p, &host, &req("GET", path, Some(peer), &[]));
        assert_eq!(s.status, 403, "{path} {peer}");
        assert!(s.upstream.is_none());
        assert_eq!(s.header("content-type"), Some("application/problem+json"));
        assert_eq!(s.header("cache-control"), Some("no-store"));
        let body = s.problem();
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Forbidden");
        assert_eq!(body["status"], 403);
        assert_eq!(body["detail"], DENIED_DETAIL);
        let text = String::from_utf8(s.body.clone()).unwrap();
        assert!(
            !text.contains(peer) && !text.contains("10."),
            "no address in {text}"
        );
        bodies.push(s.body);
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "the reply does not tell the reasons apart");
    let s = exchange(
        &p,
        &host,
        &req("GET", "/x?a=1", Some("10.9.9.9"), &[("x-a", "1")]),
    );
    assert_eq!(s.status, 200);
    let up = s.upstream.unwrap();
    assert_eq!(
        up.headers.get("x-a"),
        Some("1"),
        "an allowed request goes on unchanged"
    );
    assert_eq!(up.headers.0.len(), 1);
}

#[test]
fn counters_per_verdict_and_reason() {
    let (p, host) = policy(SPEC);
    let traffic: &[(&str, Option<&str>)] = &[
        ("/x", Some("10.9.9.9")),
        ("/x", Some("10.9.9.8")),
        ("/public/", Some("8.8.8.8")),
        ("/x", Some("10.66.0.1")),
        ("/admin/x", Some("10.1.99.1")),
        ("/x", Some("11.0.0.1")),
        ("/x", None),
        ("/x", Some("not-an-address")),
        ("/x;a", Some("10.9.9.9")),
    ];
    for (path, peer) in traffic {
        exchange(&p, &host, &req("GET", path, *peer, &[]));
    }
    for (name, want) in [
        ("meshwall.access.allowed", 3),
        ("meshwall.access.denied.reason.deny_list", 2),
        ("meshwall.access.denied.reason.not_allowed", 1),
        ("meshwall.access.denied.reason.no_client_address", 2),
        ("meshwall.access.ambiguous.reason.path_params", 1),
    ] {
        assert_eq!(host.metric(name), want, "{name}");
    }
    // One counter per decision and reason (`meshwall_access_denied{reason="deny_list"}`), all
    // defined at configure time; no separate total beside the reasons (a sum over the label
    // would count every denial twice).
    let mut names = host.metric_names();
    let mut want: Vec<String> = [
        "allowed",
        "denied.reason.deny_list",
        "denied.reason.not_allowed",
        "denied.reason.no_client_address",
    ]
    .iter()
    .map(|m| format!("meshwall.access.{m}"))
    .collect();
    want.extend(
        meshwall_core::Ambiguity::REASONS
            .iter()
            .map(|r| format!("meshwall.access.ambiguous.reason.{r}")),
    );
    names.sort();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn an_unknown_client_is_denied_everywhere() {
    // Even where a rule admits any address: nothing to check the deny lists against.
    let (p, host) =
        policy(r#"{"deny": ["192.0.2.0/24"], "rules": [{"match": {"prefix": "/"}, "allow": []}]}"#);
    for peer in [
        None,
        Some(""),
        Some("garbage"),
        Some("/var/run/envoy.sock"),
        Some("300.1.1.1"),
    ] {
        let r = req("GET", "/", peer, &[]);
        assert_eq!(p.decide(&r), Ok(Verdict::Deny(NoClientAddress)), "{peer:?}");
        assert_eq!(exchange(&p, &host, &r).status, 403);
    }
    assert_eq!(
        status_of(&p, &host, "GET", "/", "10.0.0.1:5555"),
        200,
        "a port is ignored"
    );
    assert_eq!(status_of(&p, &host, "GET", "/", "[::1]:5555"), 200);
}
