use super::*;

fn lim() -> JsonLimits {
    JsonLimits::default()
}

fn check(body: &str, l: &JsonLimits) -> Result<(), (String, &'static str)> {
    scan(body.as_bytes(), l).map_err(|t| (t.pointer, t.keyword))
}

#[test]
fn accepts_valid_documents() {
    for ok in [
        "{}",
        "[]",
        " {\"a\": [1, 2.5, -0.1e+3, true, false, null, \"x\\u00e9\\ud83d\\ude00\"], \"b\": {}} ",
        "\"just a string\"",
        "0",
        "-12",
        "[[],[[]],{}]",
        "{\"a\":{\"b\":{\"c\":[]}}}",
    ] {
        assert_eq!(check(ok, &lim()), Ok(()), "{ok}");
    }
}

#[test]
fn rejects_syntax_errors() {
    for bad in [
        "",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "[01]",
        "[1.]",
        "[.5]",
        "[1e]",
        "nul",
        "tru",
        "\"abc",
        "\"a\u{1}b\"",
        "\"\\x\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "{} {}",
        "[1] x",
        "{\"a\":1]",
        "[1}",
        "'a'",
        "NaN",
    ] {
        let r = check(bad, &lim());
        assert!(matches!(r, Err((_, "json"))), "{bad:?} gave {r:?}");
    }
    assert_eq!(scan(b"\"\xff\"", &lim()).unwrap_err().keyword, "json");
}

#[test]
fn depth_limit_is_exact_and_iterative() {
    let l = JsonLimits {
        max_depth: 3,
        ..lim()
    };
    assert_eq!(check("[[[1]]]", &l), Ok(()));
    assert_eq!(check("[[[[1]]]]", &l), Err(("/0/0/0".into(), "maxDepth")));
    assert_eq!(
        check("{\"a\":{\"b\":{\"c\":{}}}}", &l),
        Err(("/a/b/c".into(), "maxDepth"))
    );
    // Far deeper than any call stack would allow with recursion: refused, no crash.
    let deep = "[".repeat(1_000_000);
    assert_eq!(scan(deep.as_bytes(), &l).unwrap_err().keyword, "maxDepth");
    let l = JsonLimits {
        max_depth: 120,
        ..lim()
    };
    assert_eq!(scan(deep.as_bytes(), &l).unwrap_err().keyword, "maxDepth");
}

#[test]
fn counts_and_lengths() {
    let l = JsonLimits {
        max_array_elements: 3,
        max_object_entries: 2,
        max_name_length: 4,
        max_string_length: 5,
        ..lim()
    };
    assert_eq!(check("{\"x\":[1,2,3]}", &l), Ok(()));
    assert_eq!(
        check("{\"x\":[1,2,3,4]}", &l),
        Err(("/x".into(), "maxArrayElements"))
    );
    assert_eq!(check("{\"a\":1,\"b\":2}", &l), Ok(()));
    assert_eq!(
        check("{\"o\":{\"a\":1,\"b\":2,\"c\":3}}", &l),
        Err(("/o".into(), "maxObjectEntries"))
    );
    assert_eq!(check("{\"abcd\":1}", &l), Ok(()));
    assert_eq!(
        check("{\"abcde\":1}", &l),
        Err(("/abcde".into(), "maxNameLength"))
    );
    // Lengths count characters, escapes count once.
    assert_eq!(check("[\"ééééé\"]", &l), Ok(()));
    assert_eq!(
        check("[\"\\u0041\\u0042\\n\\t\\ud83d\\ude00\"]", &l),
        Ok(())
    );
    assert_eq!(
        check("[0,\"abcdef\"]", &l),
        Err(("/1".into(), "maxStringLength"))
    );
    // 0 disables.
    let off = JsonLimits {
        max_array_elements: 0,
        max_string_length: 0,
        ..lim()
    };
    let big = format!("[{}\"{}\"]", "1,".repeat(20_000), "x".repeat(100_000));
    assert_eq!(check(&big, &off), Ok(()));
    assert_eq!(check(&big, &lim()), Err(("".into(), "maxArrayElements")));
}

#[test]
fn duplicate_names_after_unescaping() {
    assert_eq!(
        check("{\"a\":1,\"a\":2}", &lim()),
        Err(("/a".into(), "duplicateName"))
    );
    assert_eq!(
        check("{\"a\":1,\"\\u0061\":2}", &lim()),
        Err(("/a".into(), "duplicateName"))
    );
    assert_eq!(
        check("{\"x\":{\"a/b\":1,\"a\\/b\":2}}", &lim()),
        Err(("/x/a~1b".into(), "duplicateName"))
    );
    // Same name in different objects is fine.
    assert_eq!(check("[{\"a\":1},{\"a\":2}]", &lim()), Ok(()));
    let allow = JsonLimits {
        allow_duplicate_names: true,
        ..lim()
    };
    assert_eq!(check("{\"a\":1,\"a\":2}", &allow), Ok(()));
}

#[test]
fn pointers_follow_position() {
    let l = JsonLimits {
        max_string_length: 2,
        ..lim()
    };
    assert_eq!(
        check("{\"a\":[{\"b\":\"ok\"},{\"c~\":\"long\"}]}", &l),
        Err(("/a/1/c~0".into(), "maxStringLength"))
    );
    assert_eq!(check("{\"a\":[1,2,", &l), Err(("/a/2".into(), "json")));
}
