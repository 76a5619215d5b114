//! Key sources as a spec: what counts as one key, several keys, or an ambiguous source, and
//! what the upstream gets once the key is taken out.

use super::*;

fn req(path: &str, headers: &[(&str, &str)]) -> Request {
    Request::new("GET", path, headers)
}

/// 0: `x-api-key`, 1: `authorization` after `ApiKey `, 2: `api_key` parameter, 3: `apikey` cookie.
fn table() -> Vec<Source> {
    vec![
        Source::Header {
            name: "x-api-key".into(),
            prefix: None,
        },
        Source::Header {
            name: "authorization".into(),
            prefix: Some("ApiKey ".into()),
        },
        Source::Param("api_key".into()),
        Source::Cookie("apikey".into()),
    ]
}

fn found(key: &str, source: usize) -> Option<Found> {
    Some(Found {
        key: key.into(),
        source,
    })
}

#[test]
fn one_key_from_any_source() {
    let t = table();
    let cases: Vec<(Request, Option<Found>)> = vec![
        (req("/", &[("x-api-key", "k1")]), found("k1", 0)),
        (req("/", &[("x-api-key", "  k1 ")]), found("k1", 0)),
        (req("/", &[("authorization", "ApiKey k1")]), found("k1", 1)),
        (req("/", &[("authorization", "apikey k1")]), found("k1", 1)),
        (req("/", &[("authorization", "APIKEY  k1")]), found("k1", 1)),
        (req("/", &[("authorization", "ApiKey")]), found("", 1)),
        (req("/", &[("x-api-key", "")]), found("", 0)),
        (req("/p?x=1&api_key=k1&y=2", &[]), found("k1", 2)),
        (req("/p?api_key=k%2B1", &[]), found("k+1", 2)),
        (req("/p?api%5Fkey=k1", &[]), found("k1", 2)),
        (req("/p?api_key=", &[]), found("", 2)),
        (
            req("/", &[("cookie", "a=1; apikey=k1; b=2")]),
            found("k1", 3),
        ),
        (req("/", &[("cookie", "apikey=\"k1\"")]), found("k1", 3)),
        // Not a key source: other schemes, other names.
        (req("/", &[("authorization", "Bearer a.b.c")]), None),
        (req("/", &[("authorization", "Bearer a, Bearer b")]), None),
        (req("/", &[("authorization", "ApiKeyk1")]), None),
        (req("/", &[("x-api-key2", "k1"), ("api-key", "k1")]), None),
        (req("/p?api_key2=k1&key=k1&x=api_key", &[]), None),
        (req("/", &[("cookie", "apikeys=k1; my_apikey=k1")]), None),
        (req("/", &[]), None),
    ];
    for (r, want) in cases {
        assert_eq!(extract(&r, &t), Ok(want), "{r:?}");
    }
}

/// Two occurrences are several keys, even of the same key: backends disagree on which counts.
#[test]
fn several_keys_are_refused() {
    let t = table();
    let cases = [
        req("/", &[("x-api-key", "k1"), ("x-api-key", "k1")]),
        req("/", &[("x-api-key", "k1"), ("x-api-key", "k2")]),
        req("/", &[("x-api-key", "k1,k2")]),
        req("/", &[("x-api-key", "k1, k1")]),
        req("/", &[("x-api-key", "k1,")]),
        req("/", &[("authorization", "ApiKey k1, ApiKey k2")]),
        req("/", &[("authorization", "Bearer a.b.c, ApiKey k1")]),
        req(
            "/",
            &[
                ("authorization", "ApiKey k1"),
                ("authorization", "ApiKey k1"),
            ],
        ),
        req("/p?api_key=k1&api_key=k1", &[]),
        req("/p?api_key=k1&api_key=k2", &[]),
        req("/p?api_key=k1&api%5Fkey=k2", &[]),
        req("/", &[("cookie", "apikey=k1; apikey=k1")]),
        req("/", &[("cookie", "apikey=k1"), ("cookie", "apikey=k2")]),
        req("/?api_key=k1", &[("x-api-key", "k1")]),
        req("/", &[("x-api-key", "k1"), ("cookie", "apikey=k2")]),
        req("/", &[("authorization", "ApiKey k1"), ("x-api-key", "k1")]),
    ];
    for r in cases {
        assert_eq!(extract(&r, &t), Err(Refused::Multiple), "{r:?}");
    }
}

/// A source some backend reads under the source's name is refused, whatever it holds.
#[test]
fn ambiguous_sources_are_refused() {
    use Ambiguity::*;
    let t = table();
    let cookie = |c: &str| req("/", &[("cookie", c)]);
    let param = || RepeatedParam("api_key".into());
    let cases: Vec<(Request, Ambiguity)> = vec![
        (
            req("/", &[("x_api_key", "k1")]),
            HeaderSpelling("x-api-key".into()),
        ),
        (
            req("/", &[("X_Api_Key", "k1")]),
            HeaderSpelling("x-api-key".into()),
        ),
        (
            req("/", &[("x-api_key", "k1")]),
            HeaderSpelling("x-api-key".into()),
        ),
        (
            req("/", &[("x-api-key", "k1"), ("x_api_key", "k1")]),
            HeaderSpelling("x-api-key".into()),
        ),
        (req("/p?API_KEY=k1", &[]), param()),
        (req("/p?api.key=k1", &[]), param()),
        (req("/p?api+key=k1", &[]), param()),
        (req("/p?api%20key=k1", &[]), param()),
        (req("/p?api_key[]=k1", &[]), param()),
        (req("/p?api_key[0]=k1", &[]), param()),
        (req("/p?api_key[a][b]=k1", &[]), param()),
        (req("/p?api_key%5B%5D=k1", &[]), param()),
        (req("/p?api_key=k1&api_key[x]=k2", &[]), param()),
        (req("/p?x=1;api_key=k1", &[]), param()),
        (req("/p?api_key=k1;api_key=k2", &[]), param()),
        (req("/p?x=1;API.KEY=k1", &[]), param()),
        (cookie("APIKEY=k1"), RepeatedCookie("apikey".into())),
        (cookie("apik%65y=k1"), RepeatedCookie("apikey".into())),
        (cookie("apikey[]=k1"), RepeatedCookie("apikey".into())),
        (
            cookie("apikey=k1; ApiKey=k2"),
            RepeatedCookie("apikey".into()),
        ),
    ];
    for (r, why) in cases {
        assert_eq!(extract(&r, &t), Err(Refused::Ambiguous(why)), "{r:?}");
    }
}

#[test]
fn the_key_is_taken_out_and_the_rest_kept_byte_for_byte() {
    let t = table();
    let cases: Vec<(Request, Vec<HeaderOp>)> = vec![
        (
            req("/", &[("x-api-key", "k1")]),
            vec![HeaderOp::Remove("x-api-key".into())],
        ),
        (
            req("/", &[("authorization", "ApiKey k1")]),
            vec![HeaderOp::Remove("authorization".into())],
        ),
        (
            req("/p/q?a=1&api_key=k1&b=%2F+x&c", &[]),
            vec![HeaderOp::Set(":path".into(), "/p/q?a=1&b=%2F+x&c".into())],
        ),
        (
            req("/p?api_key=k1&a=%41", &[]),
            vec![HeaderOp::Set(":path".into(), "/p?a=%41".into())],
        ),
        (
            req("/p?api%5fkey=k1", &[]),
            vec![HeaderOp::Set(":path".into(), "/p".into())],
        ),
        (
            req("/p?&api_key=k1&", &[]),
            vec![HeaderOp::Set(":path".into(), "/p".into())],
        ),
        (
            req("/", &[("cookie", "a=1; apikey=k1"), ("cookie", "b=2")]),
            vec![HeaderOp::Set("cookie".into(), "a=1; b=2".into())],
        ),
        (
            req("/", &[("cookie", "apikey=k1")]),
            vec![HeaderOp::Remove("cookie".into())],
        ),
    ];
    for (r, want) in cases {
        let f = extract(&r, &t).unwrap().unwrap();
        assert_eq!(removal_ops(&r, &t, &f), want, "{r:?}");
    }
}
