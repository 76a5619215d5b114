//! The JSON-Schema-Test-Suite (required tests, not `optional/`) run through the filter's own
//! schema compile path: `draft2020-12` as OpenAPI 3.1 schemas, `draft4` through the
//! OpenAPI 3.0 translation. The suite lives beside the repository in
//! `../shared/json-schema-test-suite` (relative to the repository root).
//!
//! Run with `cargo test -p meshwall-validate --test json_schema_suite -- --nocapture` to
//! see the pass rates.

#![allow(clippy::unwrap_used)] // test code: a broken suite file should fail loudly

use meshwall_validate::schema::{compile, translate_30, Dialect};
use serde_json::Value;
use std::path::PathBuf;

/// Tests not run, with the reason. (file, group description, reason)
const SKIPS: &[(&str, &str, &str)] = &[
    // The filter never loads anything outside the OpenAPI document (no network, no file
    // system inside Envoy), so schemas referencing remote documents are refused at config
    // time by design.
    (
        "refRemote.json",
        "*",
        "remote references are refused by design (no fetching from the proxy)",
    ),
    (
        "dynamicRef.json",
        "strict-tree schema, guards against misspelled properties",
        "references a remote document (http://localhost:1234/...), refused by design",
    ),
    (
        "dynamicRef.json",
        "tests for implementation dynamic anchor and reference link",
        "references a remote document (http://localhost:1234/...), refused by design",
    ),
    (
        "dynamicRef.json",
        "$ref and $dynamicAnchor are independent of order - $defs first",
        "references a remote document (http://localhost:1234/...), refused by design",
    ),
    (
        "dynamicRef.json",
        "$ref and $dynamicAnchor are independent of order - $ref first",
        "references a remote document (http://localhost:1234/...), refused by design",
    ),
    (
        "dynamicRef.json",
        "$ref to $dynamicRef finds detached $dynamicAnchor",
        "references a remote document (http://localhost:1234/...), refused by design",
    ),
    (
        "vocabulary.json",
        "schema that uses custom metaschema with with no validation vocabulary",
        "its custom metaschema is a remote document (http://localhost:1234/...), refused by design",
    ),
    (
        "vocabulary.json",
        "ignore unrecognized optional vocabulary",
        "its custom metaschema is a remote document (http://localhost:1234/...), refused by design",
    ),
];

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/json-schema-test-suite/tests")
}

fn skip_reason(file: &str, group: &str) -> Option<&'static str> {
    SKIPS
        .iter()
        .find(|(f, g, _)| *f == file && (*g == "*" || *g == group))
        .map(|(_, _, r)| *r)
}

struct Tally {
    passed: usize,
    failed: Vec<String>,
    skipped: usize,
}

fn run(draft_dir: &str, dialect: Dialect, assert_formats: bool) -> Tally {
    let dir = suite_dir().join(draft_dir);
    assert!(
        dir.is_dir(),
        "JSON-Schema-Test-Suite not found at {}",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut t = Tally {
        passed: 0,
        failed: Vec::new(),
        skipped: 0,
    };
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let groups: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for g in groups {
            let desc = g["description"].as_str().unwrap_or_default().to_string();
            let tests = g["tests"].as_array().cloned().unwrap_or_default();
            if skip_reason(&file, &desc).is_some() {
                t.skipped += tests.len();
                continue;
            }
            let mut schema = g["schema"].clone();
            if dialect == Dialect::Oas30 {
                translate_30(&mut schema, assert_formats);
            }
            let compiled = compile(schema, &[String::new()], dialect, assert_formats);
            for test in tests {
                let name = format!(
                    "{draft_dir}/{file}: {desc}: {}",
                    test["description"].as_str().unwrap_or_default()
                );
                let want = test["valid"].as_bool().unwrap();
                match &compiled {
                    Err(e) => t.failed.push(format!("{name}: compile error: {e}")),
                    Ok((c, idx)) => {
                        let mut out = Vec::new();
                        let got = c.validate(idx[0], &test["data"], "body", "", 10, &mut out);
                        if got == want {
                            t.passed += 1;
                        } else {
                            t.failed.push(format!("{name}: expected valid={want}"));
                        }
                    }
                }
            }
        }
    }
    t
}

fn report(label: &str, t: &Tally) -> f64 {
    let total = t.passed + t.failed.len();
    let rate = 100.0 * t.passed as f64 / total.max(1) as f64;
    println!(
        "{label}: {}/{} passed ({rate:.2}%), {} skipped",
        t.passed, total, t.skipped
    );
    for f in &t.failed {
        println!("  FAIL {f}");
    }
    rate
}

#[test]
fn draft2020_12_as_openapi_31() {
    // `assert_formats: false`: 2020-12 treats `format` as an annotation, and the required
    // suite tests exactly that (the filter's own default, `true`, is a documented choice).
    let t = run("draft2020-12", Dialect::Oas31(boon::Draft::V2020_12), false);
    let rate = report("draft2020-12 (OpenAPI 3.1 mode)", &t);
    assert!(t.passed > 1000, "suite looks incomplete");
    assert!(rate >= 99.0, "pass rate {rate:.2}% below 99%");
}

#[test]
fn draft4_through_the_openapi_30_translation() {
    // Draft 4 asserts `format`, as the filter's default does.
    let t = run("draft4", Dialect::Oas30, true);
    let rate = report("draft4 (OpenAPI 3.0 translation)", &t);
    assert!(t.passed > 500, "suite looks incomplete");
    assert!(rate >= 99.0, "pass rate {rate:.2}% below 99%");
}
