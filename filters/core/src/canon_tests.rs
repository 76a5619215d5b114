//! The canonical path, as a table: raw path → canonical form, or the refusal.

use super::*;

fn canon(raw: &str) -> Result<String, Ambiguity> {
    canonical_path(raw, &CanonConfig::default())
}

#[test]
fn equivalent_spellings_have_one_form() {
    for (raw, want) in [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("/a/b?x=1/../..", "/a/b"),
        ("//a///b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/../b", "/b"),
        ("/../../a", "/a"),
        ("/public/../admin/x", "/admin/x"),
        ("/%61dmin", "/admin"),
        ("/a%2Db%5f%7E", "/a-b_~"),
        ("/a%2db", "/a-b"),
        ("/a%20b", "/a%20b"),
        ("/a%3ab", "/a%3Ab"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/café", "/café"),
        ("/..a/.b/.well-known/a.b", "/..a/.b/.well-known/a.b"),
        ("/caf%E9", "/caf%E9"),
        ("*", "*"),
    ] {
        assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn ambiguous_paths_are_refused() {
    use Ambiguity::*;
    for (raw, why) in [
        ("/public/%2e%2e;/admin/x", DotSegmentParams),
        ("/public/%2e%2e/admin/x", EncodedDotSegment),
        ("/public/.%2E/admin", EncodedDotSegment),
        ("/public/%2e/admin", EncodedDotSegment),
        ("/public/..;/admin", DotSegmentParams),
        ("/public/.;x/admin", DotSegmentParams),
        ("/public/..%3B/admin", DotSegmentParams),
        ("/public/..%3b/admin", DotSegmentParams),
        ("/login%3Bjsessionid=1", PathParams),
        ("/admin//../public/x", DotSegmentAfterEmpty),
        ("/a/.//../b", DotSegmentAfterEmpty),
        ("//..", DotSegmentAfterEmpty),
        ("/login;jsessionid=1", PathParams),
        ("/a;b/c", PathParams),
        ("/a%2fb", EncodedSlash),
        ("/a%2F..%2Fadmin", EncodedSlash),
        ("/a%5cb", EncodedSlash),
        ("/a\\..\\admin", Backslash),
        ("/a%00", EncodedControl),
        ("/a%0d%0a", EncodedControl),
        ("/a%7f", EncodedControl),
        ("/a%252e%252e/b", DoubleEncoding),
        ("/a%25%34%31", DoubleEncoding),
        ("/a%25%32%65%25%32%65/b", DoubleEncoding),
        ("/a%25%3441", DoubleEncoding),
        ("/admin./x", SegmentTrailingDot),
        ("/admin%2e/x", SegmentTrailingDot),
        ("/admin%20/x", SegmentTrailingDot),
        ("/admin.%20", SegmentTrailingDot),
        ("/a/...", SegmentTrailingDot),
        ("/a.%2e/b", SegmentTrailingDot),
        ("/a;x./b", PathParams),
        ("/%C0%AE%C0%AE/admin", OverlongUtf8),
        ("/a%c0%afb", OverlongUtf8),
        ("/a%E0%80%AE", OverlongUtf8),
        ("/a%F0%80%80%AE", OverlongUtf8),
        ("/a%zz", BadEscape),
        ("/a%4", BadEscape),
        ("/a%", BadEscape),
        ("/a#frag", Fragment),
        ("a/b", NotOriginForm),
        ("", NotOriginForm),
        ("http://h/a", NotOriginForm),
    ] {
        assert_eq!(canon(raw), Err(why), "{raw}");
    }
}

#[test]
fn opt_outs_keep_the_form_as_data() {
    let params = CanonConfig {
        allow_path_params: true,
        ..CanonConfig::default()
    };
    for (raw, want) in [
        ("/login;jsessionid=1", "/login"),
        ("/a;x=1/b;y", "/a/b"),
        ("/a/;x", "/a/"),
        ("/a%3Bb", "/a%3Bb"),
        ("/a;x/", "/a/"),
    ] {
        assert_eq!(canonical_path(raw, &params).as_deref(), Ok(want), "{raw}");
    }
    // A dot segment with parameters stays refused: Tomcat resolves `..;`, others do not.
    assert_eq!(
        canonical_path("/public/..;/admin", &params),
        Err(Ambiguity::DotSegmentParams)
    );
    let slashes = CanonConfig {
        allow_encoded_slashes: true,
        allow_backslashes: true,
        ..CanonConfig::default()
    };
    assert_eq!(
        canonical_path("/files/a%2fb%5Cc\\d", &slashes).as_deref(),
        Ok("/files/a%2Fb%5Cc%5Cd"),
        "encoded separators are data inside the segment, never separators"
    );
    assert_eq!(
        canonical_path("/a%2f..%2fadmin", &slashes).as_deref(),
        Ok("/a%2F..%2Fadmin")
    );
    let dots = CanonConfig {
        allow_trailing_dots: true,
        ..CanonConfig::default()
    };
    for (raw, want) in [
        ("/admin./x", "/admin./x"),
        ("/a/...", "/a/..."),
        ("/a.%2e/b", "/a../b"),
        ("/a%20", "/a%20"),
    ] {
        assert_eq!(canonical_path(raw, &dots).as_deref(), Ok(want), "{raw}");
    }
    let ci = CanonConfig {
        case_insensitive_paths: true,
        ..CanonConfig::default()
    };
    assert_eq!(canonical_path("/Admin/X", &ci).as_deref(), Ok("/admin/x"));
}

#[test]
fn header_names_fold_underscores_and_case() {
    assert_eq!(fold_header_name("X_User_Id"), "x-user-id");
    assert!(same_header("x_user_id", "X-User-Id"));
    assert!(!same_header("x-user-idx", "x-user-id"));
    assert!(!same_header("x-userid", "x-user-id"));
}

#[test]
fn every_reason_is_listed() {
    use Ambiguity::*;
    let all = [
        NotOriginForm,
        Fragment,
        BadEscape,
        EncodedSlash,
        Backslash,
        EncodedControl,
        DoubleEncoding,
        PathParams,
        DotSegmentParams,
        EncodedDotSegment,
        DotSegmentAfterEmpty,
        SegmentTrailingDot,
        OverlongUtf8,
        MethodOverride("x-http-method-override".into()),
        UrlOverride("x-original-url".into()),
        HeaderSpelling("h".into()),
        RepeatedHeader("h".into()),
        RepeatedCookie("c".into()),
        RepeatedParam("p".into()),
    ];
    let reasons: Vec<&str> = all.iter().map(Ambiguity::reason).collect();
    assert_eq!(reasons, Ambiguity::REASONS);
    let reply = RepeatedHeader("x-api-key".into()).reply();
    assert_eq!(reply.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["reason"], "repeated_header");
    assert_eq!(body["detail"], "header 'x-api-key' must be given once");
}

#[test]
fn refusals_count_per_reason_and_answer_400() {
    use crate::host::MemHost;
    let host = MemHost::new();
    let r = Refusals::define("jwt", &host);
    let a = r.refuse(&Ambiguity::PathParams, &host);
    match a {
        crate::Action::Reply(reply) => assert_eq!(reply.status, 400),
        other => panic!("{other:?}"),
    }
    assert_eq!(host.metric("meshwall.jwt.ambiguous.reason.path_params"), 1);
    // One counter per reason, all defined at configure time.
    let names = host.metric_names();
    for reason in Ambiguity::REASONS {
        assert!(
            names.contains(&format!("meshwall.jwt.ambiguous.reason.{reason}")),
            "{reason}"
        );
    }
    assert_eq!(names.len(), Ambiguity::REASONS.len());
}
