use super::*;
use crate::matcher::{lookup, Entry};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/envoyproxy-ratelimit"
);

fn load(name: &str) -> Result<Config, ConfigError> {
    Config::load(&Path::new(DATA).join(name))
}

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_texts([("t.yaml", yaml)])
}

/// The limit a descriptor of `domain` gets: (full key, kind) or None.
fn limit_of(cfg: &Config, domain: &str, entries: &[(&str, &str)]) -> Option<(String, Kind)> {
    let es: Vec<Entry<'_>> = entries
        .iter()
        .map(|(k, v)| Entry { key: k, value: v })
        .collect();
    let m = lookup(cfg.domains.get(domain)?, &es)?;
    let l = cfg.limits.get(m.limit)?;
    Some((l.full_key.clone(), l.kind))
}

fn window(rpu: u32, unit: Unit) -> Kind {
    Kind::Window {
        requests_per_unit: rpu,
        unit,
    }
}

#[test]
fn envoyproxy_ratelimit_test_configs_that_load() {
    for f in [
        "basic_config.yaml",
        "wildcard.yaml",
        "share_threshold.yaml",
        "shadowmode_config.yaml",
        "metadata.yaml",
        "example_config.yaml",
        "example_rl.yaml",
        "merge_domain_key1.yaml",
        "merge_domain_key2.yaml",
        "empty_domain.yaml",
    ]
    .iter()
    .filter(|f| **f != "empty_domain.yaml")
    {
        let cfg = load(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!cfg.domain_names.is_empty(), "{f}");
    }
}

#[test]
fn envoyproxy_ratelimit_test_configs_that_fail_name_the_field() {
    let cases = [
        (
            "bad_limit_unit.yaml",
            "descriptors[0].rate_limit.unit",
            "invalid rate limit unit 'foo'",
        ),
        ("bad_yaml.yaml", "", ""),
        (
            "duplicate_key.yaml",
            "descriptors[1]",
            "duplicate descriptor composite key 'test-domain.key1_value1'",
        ),
        ("empty_domain.yaml", "domain", "domain is required"),
        ("empty_key.yaml", "descriptors[0].key", "non-empty key"),
        (
            "misspelled_key.yaml",
            "descriptors[0].ratelimit",
            "unknown field `ratelimit`",
        ),
        (
            "misspelled_key2.yaml",
            "descriptors[0].rate_limit.requestsperunit",
            "unknown field `requestsperunit`",
        ),
        ("non_map_list.yaml", "descriptors[0]", "invalid type"),
        ("non_string_key.yaml", "0.25", "unknown field `0.25`"),
        (
            "replaces_empty.yaml",
            "descriptors[0].descriptors[0].rate_limit.replaces[0].name",
            "non-empty name",
        ),
        (
            "replaces_self.yaml",
            "descriptors[0].descriptors[0].rate_limit.replaces[0].name",
            "cannot replace itself",
        ),
        (
            "unlimited_with_unit.yaml",
            "descriptors[0].rate_limit.unit",
            "unlimited",
        ),
    ];
    for (file, field, msg) in cases {
        let e = load(file).expect_err(file);
        assert!(e.file.ends_with(file), "{file}: {e}");
        assert_eq!(e.field, field, "{file}: {e}");
        assert!(e.message.contains(msg), "{file}: {e}");
        assert!(
            e.to_string().starts_with(&e.file),
            "one line naming the file: {e}"
        );
    }
}

#[test]
fn duplicate_domain_across_files_is_refused_naming_both() {
    let t = "domain: d\ndescriptors: []\n";
    let e = Config::from_texts([("a.yaml", t), ("b.yaml", t)]).unwrap_err();
    assert_eq!((e.file.as_str(), e.field.as_str()), ("b.yaml", "domain"));
    assert!(e.message.contains("also in a.yaml"), "{e}");
}

#[test]
fn merge_domain_configs_joins_a_domain_spread_over_files() {
    // envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG, with its own test files.
    let dir = tempfile::tempdir().unwrap();
    for f in ["merge_domain_key1.yaml", "merge_domain_key2.yaml"] {
        std::fs::copy(Path::new(DATA).join(f), dir.path().join(f)).unwrap();
    }
    let e = Config::load(dir.path()).unwrap_err();
    assert!(e.message.contains("duplicate domain 'test-domain'"), "{e}");
    let cfg = Config::load_with(dir.path(), true).unwrap();
    assert_eq!(cfg.domain_names, vec!["test-domain".to_string()]);
    let d = "test-domain";
    let window = |n| Kind::Window {
        requests_per_unit: n,
        unit: Unit::Minute,
    };
    assert_eq!(
        limit_of(&cfg, d, &[("key1", "value1")]).map(|l| l.1),
        Some(window(10))
    );
    assert_eq!(
        limit_of(&cfg, d, &[("key2", "value2")]).map(|l| l.1),
        Some(window(20))
    );
    // A descriptor in both files is still an error, naming the second.
    let t =
        "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 1}}\n";
    let e = Config::from_texts_with([("a.yaml", t), ("b.yaml", t)], true).unwrap_err();
    assert_eq!(e.file, "b.yaml");
    assert!(
        e.message
            .contains("duplicate descriptor composite key 'd.k'"),
        "{e}"
    );
}

#[test]
fn lookup_follows_envoyproxy_ratelimit_basic_config() {
    let cfg = load("basic_config.yaml").unwrap();
    let d = "test-domain";
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<(&'a str, Kind)>);
    let cases: &[Case<'_>] = &[
        (
            &[("key1", "value1"), ("subkey1", "x")],
            Some(("test-domain.key1_value1.subkey1", window(5, Unit::Second))),
        ),
        (
            &[("key1", "value1"), ("subkey1", "subvalue1")],
            Some((
                "test-domain.key1_value1.subkey1_subvalue1",
                window(10, Unit::Second),
            )),
        ),
        // The limit must sit at the last entry: a descriptor that stops early gets none…
        (&[("key1", "value1")], None),
        // …and one with more entries than the tree has gets none either.
        (&[("key2", "x"), ("extra", "y")], None),
        (
            &[("key2", "anything")],
            Some(("test-domain.key2", window(20, Unit::Minute))),
        ),
        (
            &[("key2", "value2")],
            Some(("test-domain.key2_value2", window(30, Unit::Minute))),
        ),
        // An explicit value without a limit whitelists it (no fall back to the default).
        (&[("key2", "value3")], None),
        (
            &[("key3", "")],
            Some(("test-domain.key3", window(1, Unit::Hour))),
        ),
        (
            &[("key5", "value5"), ("subkey5", "subvalue5")],
            Some((
                "test-domain.key5_value5.subkey5_subvalue5",
                window(25, Unit::Day),
            )),
        ),
        (
            &[("key6", "x")],
            Some(("test-domain.key6", Kind::Unlimited)),
        ),
        (&[("nokey", "x")], None),
    ];
    for (entries, want) in cases {
        let got = limit_of(&cfg, d, entries);
        assert_eq!(
            got,
            want.map(|(k, kind)| (k.to_string(), kind)),
            "{entries:?}"
        );
    }
    assert_eq!(limit_of(&cfg, "other-domain", &[("key2", "x")]), None);
}

#[test]
fn wildcards_and_share_threshold() {
    let cfg = load("wildcard.yaml").unwrap();
    let d = "test-domain";
    let key = |e: &[(&str, &str)]| limit_of(&cfg, d, e).map(|(k, _)| k);
    assert_eq!(
        key(&[("wild", "foobar")]).as_deref(),
        Some("test-domain.wild_foo*")
    );
    assert_eq!(key(&[("wild", "bar")]), None);
    assert_eq!(
        key(&[("midWild", "barxb")]).as_deref(),
        Some("test-domain.midWild_bar*b")
    );
    assert_eq!(
        key(&[("nestedWild", "val1"), ("wild", "goo1")]).as_deref(),
        Some("test-domain.nestedWild_val1.wild_goo*")
    );
    assert_eq!(
        key(&[("noVal", "whatever")]).as_deref(),
        Some("test-domain.noVal")
    );

    let cfg = load("share_threshold.yaml").unwrap();
    let es = [Entry {
        key: "files",
        value: "files/a.txt",
    }];
    let m = lookup(&cfg.domains["test-domain"], &es).unwrap();
    assert_eq!(
        m.counter_values,
        vec!["files/*".to_string()],
        "all files/* share one counter"
    );
    let es = [
        Entry {
            key: "nested",
            value: "parent",
        },
        Entry {
            key: "files",
            value: "nested/x",
        },
    ];
    let m = lookup(&cfg.domains["test-domain"], &es).unwrap();
    assert_eq!(
        m.counter_values,
        vec!["parent".to_string(), "nested/*".to_string()]
    );
}

#[test]
fn shadow_mode_name_and_replaces_are_kept() {
    let cfg = load("shadowmode_config.yaml").unwrap();
    let shadow: Vec<(&str, bool)> = cfg
        .limits
        .iter()
        .map(|l| (l.full_key.as_str(), l.shadow))
        .collect();
    assert!(shadow.contains(&("test-domain.key1_value1.subkey1_subvalue1", true)));
    assert!(shadow.contains(&("test-domain.key1_value1.subkey1", false)));
    assert!(shadow.contains(&("test-domain.key2", true)));
    let cfg = load("example_rl.yaml").unwrap();
    let l = cfg
        .limits
        .iter()
        .find(|l| l.full_key == "rl.category_account")
        .unwrap();
    assert_eq!(
        l.replaces,
        vec!["bkthomps".to_string(), "fake_name".to_string()]
    );
    let l = cfg
        .limits
        .iter()
        .find(|l| l.full_key == "rl.service_service_1")
        .unwrap();
    assert!(l.quota && !l.shadow);
    let l = cfg
        .limits
        .iter()
        .find(|l| l.full_key == "rl.foo.bar_bkthomps")
        .unwrap();
    assert_eq!(l.name.as_deref(), Some("bkthomps"));
}

#[test]
fn token_bucket_extension() {
    let cfg = parse(
        "domain: d\ndescriptors:\n  - key: user\n    rate_limit:\n      name: per-user\n      token_bucket: {max_tokens: 50, tokens_per_fill: 5, fill_interval: 0.5s}\n",
    )
    .unwrap();
    assert_eq!(
        cfg.limits[0].kind,
        Kind::Bucket(Bucket {
            max_tokens: 50,
            tokens_per_fill: 5,
            fill_interval_ms: 500
        })
    );
    assert_eq!(cfg.limits[0].name.as_deref(), Some("per-user"));
}

#[test]
fn errors_name_the_field() {
    let head = "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n";
    let cases = [
        ("      token_bucket: {max_tokens: 0, tokens_per_fill: 1, fill_interval: 1s}\n", "descriptors[0].rate_limit.token_bucket.max_tokens", "at least 1"),
        ("      token_bucket: {max_tokens: 1, tokens_per_fill: 0, fill_interval: 1s}\n", "descriptors[0].rate_limit.token_bucket.tokens_per_fill", "at least 1"),
        ("      token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 10ms}\n", "descriptors[0].rate_limit.token_bucket.fill_interval", "between"),
        ("      token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: soon}\n", "descriptors[0].rate_limit.token_bucket.fill_interval", "not a duration"),
        ("      token_bucket: {max_tokens: 1, tokens_per_fill: 1}\n", "descriptors[0].rate_limit.token_bucket", "missing field `fill_interval`"),
        ("      token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 1s, burst: 2}\n", "descriptors[0].rate_limit.token_bucket.burst", "unknown field `burst`"),
        ("      token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 1s}\n      unit: second\n", "descriptors[0].rate_limit.token_bucket", "not both"),
        ("      unit: second\n", "descriptors[0].rate_limit.requests_per_unit", "needs requests_per_unit"),
        ("      requests_per_unit: 5\n", "descriptors[0].rate_limit.unit", "needs a unit"),
        ("      unit: fortnight\n      requests_per_unit: 5\n", "descriptors[0].rate_limit.unit", "invalid rate limit unit 'fortnight'"),
        ("      unit: second\n      requests_per_unit: -1\n", "descriptors[0].rate_limit.requests_per_unit", "expected u32"),
        ("      unit: second\n      requests_per_unit: 4294967296\n", "descriptors[0].rate_limit.requests_per_unit", "invalid value"),
    ];
    for (body, field, msg) in cases {
        let e = parse(&format!("{head}{body}")).expect_err(body);
        assert_eq!(e.field, field, "{body}: {e}");
        assert!(e.message.contains(msg), "{body}: {e}");
    }
    let e = parse("domain: d\ndescriptors:\n  - key: k\n    share_threshold: true\n").unwrap_err();
    assert_eq!(e.field, "descriptors[0].share_threshold");
    let e = parse("domain: d\nlimits: []\n").unwrap_err();
    assert_eq!(
        (
            e.field.as_str(),
            e.message.contains("unknown field `limits`")
        ),
        ("limits", true),
        "{e}"
    );
}

#[test]
fn yaml_details_as_go_reads_them() {
    // Scalars as strings (`value: 200`), null lists, units in any case, several documents.
    let cfg = parse(
        "domain: d\ndescriptors:\n  - key: status\n    value: 200\n    rate_limit: {unit: SECOND, requests_per_unit: 1}\n  - key: empty\n    descriptors:\n---\ndomain: e\ndescriptors:\n",
    )
    .unwrap();
    assert_eq!(cfg.domain_names, vec!["d".to_string(), "e".to_string()]);
    assert!(limit_of(&cfg, "d", &[("status", "200")]).is_some());
    let e = Config::from_texts([("m.yaml", "domain: a\n---\ndomain: a\n")]).unwrap_err();
    assert_eq!(e.file, "m.yaml (document 2)");
}

#[test]
fn scalars_keep_their_text_as_in_go() {
    // yaml.v2 sets a string field to the scalar as written: a number keeps its leading zeros,
    // sign and base, so `value: 007` matches the request value "007" (and not "7").
    let cfg = parse(
        "domain: d\ndescriptors:\n  - {key: area, value: 007, rate_limit: {unit: second, requests_per_unit: 1}}\n  - {key: code, value: 0x1F, rate_limit: {unit: second, requests_per_unit: 2}}\n  - {key: n, value: +1, rate_limit: {unit: second, requests_per_unit: 3}}\n  - {key: v, value: 1.50, rate_limit: {unit: second, requests_per_unit: 4}}\n  - {key: flag, value: yes, rate_limit: {unit: second, requests_per_unit: 5}}\n  - {key: 10, value: \"null\", rate_limit: {unit: second, requests_per_unit: 6}}\n  - {key: none, value: ~, rate_limit: {unit: second, requests_per_unit: 7}}\n",
    )
    .unwrap();
    for (key, value, rpu) in [
        ("area", "007", 1),
        ("code", "0x1F", 2),
        ("n", "+1", 3),
        ("v", "1.50", 4),
        ("flag", "yes", 5),
        ("10", "null", 6),
        ("none", "anything", 7),
    ] {
        let (_, kind) =
            limit_of(&cfg, "d", &[(key, value)]).unwrap_or_else(|| panic!("{key}={value}"));
        assert_eq!(
            kind,
            Kind::Window {
                requests_per_unit: rpu,
                unit: Unit::Second
            },
            "{key}={value}"
        );
    }
    assert!(limit_of(&cfg, "d", &[("area", "7")]).is_none());
    assert!(limit_of(&cfg, "d", &[("code", "31")]).is_none());
}

#[test]
fn a_directory_is_read_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "domain: a\n").unwrap();
    std::fs::write(dir.path().join("b.yml"), "domain: b\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
    let cfg = Config::load(dir.path()).unwrap();
    assert_eq!(cfg.domain_names, vec!["a".to_string(), "b".to_string()]);
    let empty = tempfile::tempdir().unwrap();
    assert!(Config::load(empty.path())
        .unwrap_err()
        .message
        .contains("no *.yaml"));
}

#[test]
fn durations() {
    for (s, ms) in [
        ("60s", 60_000),
        ("0.5s", 500),
        ("500ms", 500),
        ("1.5m", 90_000),
        ("1h", 3_600_000),
        ("0.05s", 50),
    ] {
        assert_eq!(parse_duration_ms(s), Some(ms), "{s}");
    }
    for s in [
        "",
        "60",
        "s",
        "1.s",
        ".5s",
        "1.0001ms",
        "5d",
        "-1s",
        "1e3s",
        "99999999999999999999h",
    ] {
        assert_eq!(parse_duration_ms(s), None, "{s}");
    }
}

#[test]
fn units_round_trip_and_cover() {
    for u in Unit::ALL {
        assert_eq!(Unit::from_proto(u.proto()), Some(u));
        assert_eq!(Unit::parse(&u.name().to_lowercase()), Some(u));
    }
    assert_eq!(Unit::covering(1), Unit::Second);
    assert_eq!(Unit::covering(2), Unit::Minute);
    assert_eq!(Unit::covering(3600), Unit::Hour);
    assert_eq!(Unit::covering(3601), Unit::Day);
    assert_eq!(Unit::covering(u64::MAX), Unit::Year);
}
