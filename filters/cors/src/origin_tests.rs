//! Origins as a browser serialises them, and what each matcher admits.

use super::*;

#[test]
fn equivalent_spellings_have_one_form() {
    for (raw, want) in [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://app.example.com:443", "http://app.example.com:443"),
        (
            "https://app.example.com:08443",
            "https://app.example.com:8443",
        ),
        ("wss://chat.example.com:443", "wss://chat.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
        (
            "https://xn--bcher-kva.example",
            "https://xn--bcher-kva.example",
        ),
        ("chrome-extension://abcdefgh", "chrome-extension://abcdefgh"),
        ("null", "null"),
        ("NULL", "null"),
    ] {
        assert_eq!(canonical_origin(raw).as_deref(), Some(want), "{raw}");
    }
}

#[test]
fn what_no_browser_sends_is_not_an_origin() {
    for raw in [
        "",
        "app.example.com",
        "https://",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?x",
        "https://app.example.com#x",
        "https://user@app.example.com",
        "https://app.example.com@evil.example",
        "https://app.example.com:",
        "https://app.example.com:99999",
        "https://app.example.com:44a",
        "https://app.example.com:-1",
        "https://app.example.com https://evil.example",
        "https://app.example.com,https://evil.example",
        " https://app.example.com",
        "https://app.example.com\\evil",
        "https://bücher.example",
        "https://[::1",
        "https://[::1]x",
        "https://[evil]",
        "http://0x7f.1",
        "http://127.1",
        "http://0177.0.0.1",
        "http://999.1.1.1",
        "1https://a.example",
        "ht tp://a.example",
        "nul",
    ] {
        assert_eq!(canonical_origin(raw), None, "{raw:?}");
    }
}

fn matcher(json: &str) -> Result<OriginMatcher, ConfigError> {
    let cfg: OriginMatchConfig = serde_json::from_str(json).unwrap();
    OriginMatcher::build("m", &cfg)
}

fn admits(json: &str, origin: &str) -> bool {
    let m = matcher(json).unwrap();
    m.matches(&canonical_origin(origin).unwrap())
}

#[test]
fn matchers_admit_what_they_name_and_nothing_else() {
    let exact = r#"{"exact":"https://app.example.com"}"#;
    let exact_port = r#"{"exact":"https://app.example.com:8443"}"#;
    let suffix = r#"{"suffix":".example.com"}"#;
    let suffix_port = r#"{"suffix":".example.com:8443"}"#;
    let prefix_host = r#"{"prefix":"http://localhost:"}"#;
    let regex = r#"{"safe_regex":{"regex":"https://[a-z0-9-]+\\.preview\\.example\\.com"}}"#;
    let any = r#"{"exact":"*"}"#;
    let null = r#"{"exact":"null"}"#;
    for (m, origin, want) in [
        (exact, "https://app.example.com", true),
        (exact, "HTTPS://APP.EXAMPLE.COM", true),
        (exact, "https://app.example.com:443", true),
        (exact, "http://app.example.com", false),
        (exact, "https://app.example.com:8443", false),
        (exact, "https://app.example.com.evil.example", false),
        (exact, "https://evil-app.example.com", false),
        (exact, "https://sub.app.example.com", false),
        (exact, "null", false),
        (exact_port, "https://app.example.com:8443", true),
        (exact_port, "https://app.example.com", false),
        (suffix, "https://app.example.com", true),
        (suffix, "http://app.example.com", true),
        (suffix, "https://a.b.example.com", true),
        (suffix, "https://example.com", false),
        (suffix, "https://evilexample.com", false),
        (suffix, "https://app.example.com:8443", false),
        (suffix, "https://app.example.com.evil.example", false),
        (suffix_port, "https://app.example.com:8443", true),
        (suffix_port, "https://app.example.com", false),
        (prefix_host, "http://localhost:3000", true),
        (prefix_host, "http://localhost", false),
        (prefix_host, "http://localhost.evil.example:3000", false),
        (prefix_host, "https://localhost:3000", false),
        (regex, "https://pr-12.preview.example.com", true),
        (regex, "https://PR-12.Preview.Example.com", true),
        (
            regex,
            "https://pr-12.preview.example.com.evil.example",
            false,
        ),
        (regex, "http://pr-12.preview.example.com", false),
        (any, "https://anything.example", true),
        (any, "null", false),
        (null, "null", true),
        (null, "https://app.example.com", false),
    ] {
        assert_eq!(admits(m, origin), want, "{m} {origin}");
    }
    let dot_regex = matcher(r#"{"safe_regex":{"regex":"n.*"}}"#).unwrap();
    assert!(!dot_regex.matches(NULL), "only exact `null` admits null");
}

#[test]
fn matchers_that_admit_every_site_are_known() {
    for (json, any) in [
        (r#"{"exact":"*"}"#, true),
        (r#"{"prefix":"https://"}"#, true),
        (r#"{"safe_regex":{"regex":".*"}}"#, true),
        (r#"{"safe_regex":{"regex":"https?://[^/]+"}}"#, true),
        (
            r#"{"safe_regex":{"regex":"https://.*\\.example\\.com"}}"#,
            false,
        ),
        (r#"{"prefix":"http://localhost:"}"#, false),
        (r#"{"suffix":".example.com"}"#, false),
        (r#"{"exact":"https://a.example"}"#, false),
        (r#"{"exact":"null"}"#, false),
    ] {
        assert_eq!(matcher(json).unwrap().admits_any_site(), any, "{json}");
    }
}

#[test]
fn bad_matchers_name_the_field() {
    for (json, field, why) in [
        (r#"{}"#, "m", "exactly one"),
        (
            r#"{"exact":"https://a.example","suffix":".example.com"}"#,
            "m",
            "exactly one",
        ),
        (r#"{"exact":"https://a.example/"}"#, "m.exact", "no path"),
        (r#"{"exact":"a.example"}"#, "m.exact", "scheme://host"),
        (
            r#"{"exact":"https://bücher.example"}"#,
            "m.exact",
            "punycode",
        ),
        (
            r#"{"prefix":"https://app.example.com"}"#,
            "m.prefix",
            "exact",
        ),
        (r#"{"prefix":"app"}"#, "m.prefix", "scheme://"),
        (r#"{"suffix":"example.com"}"#, "m.suffix", "start with `.`"),
        (r#"{"suffix":".com"}"#, "m.suffix", "two labels"),
        (r#"{"suffix":".example.com:x"}"#, "m.suffix", "port"),
        (r#"{"suffix":".exa mple.com"}"#, "m.suffix", "two labels"),
        (
            r#"{"safe_regex":{"regex":"("}}"#,
            "m.safe_regex.regex",
            "regular",
        ),
    ] {
        let e = matcher(json).unwrap_err();
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.reason.contains(why), "{json}: {e}");
    }
}
