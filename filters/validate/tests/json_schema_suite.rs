//! The JSON-Schema-Test-Suite (required tests, not `optional/`) run through the filter's own
//! schema compile path: `draft2020-12` as OpenAPI 3.1 schemas, `draft4` through the
//! OpenAPI 3.0 translation. The suite is vendored in `tests/data/json-schema-test-suite`
//! (upstream commit and what was kept: its `SOURCE.md`).
//!
//! The suite's `remotes/` tree is preloaded under `http://localhost:1234/` (where the suite
//! expects it to be served) through `compile_with_preloaded`, a test-only entry point: the
//! filter's own path (`compile`) refuses every external reference.
//!
//! The pass rate is counted over all required tests: skipped tests count as failures.
//! Run with `cargo test -p meshwall-validate --test json_schema_suite -- --nocapture` to
//! see the pass rates.

// Test code: an index out of range fails the test, which is what it should do.
#![allow(clippy::indexing_slicing)]
#![allow(clippy::unwrap_used)] // test code: a broken suite file should fail loudly

use meshwall_validate::config::JsonLimits;
use meshwall_validate::numbers::{apply, Literals};
use meshwall_validate::schema::{compile_with_preloaded, translate_30, Dialect};
use meshwall_validate::threat::scan_numbers;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Tests not run, with the reason. (file, group description, reason). Every skipped test
/// counts as a failure in the pass rate.
const SKIPS: &[(&str, &str, &str)] = &[];

fn suite_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/json-schema-test-suite")
}

fn suite_dir() -> PathBuf {
    suite_root().join("tests")
}

/// Every `.json` file under `remotes/`, as (`http://localhost:1234/<relative path>`, document).
fn remotes() -> Vec<(String, Value)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Value)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|e| e == "json") {
                let rel: Vec<String> = p
                    .strip_prefix(root)
                    .unwrap()
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().to_string())
                    .collect();
                let doc = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                out.push((format!("http://localhost:1234/{}", rel.join("/")), doc));
            }
        }
    }
    let root = suite_root().join("remotes");
    assert!(
        root.is_dir(),
        "suite remotes not found at {}",
        root.display()
    );
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    assert!(out.len() > 10, "suite remotes look incomplete");
    out
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
    /// Skipped groups, with their reason.
    skipped: Vec<String>,
    skipped_tests: usize,
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
    let remotes = remotes();
    let mut t = Tally {
        passed: 0,
        failed: Vec::new(),
        skipped: Vec::new(),
        skipped_tests: 0,
    };
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let groups: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for g in groups {
            let desc = g["description"].as_str().unwrap_or_default().to_string();
            let tests = g["tests"].as_array().cloned().unwrap_or_default();
            if let Some(reason) = skip_reason(&file, &desc) {
                t.skipped.push(format!(
                    "{draft_dir}/{file}: {desc}: {} tests: {reason}",
                    tests.len()
                ));
                t.skipped_tests += tests.len();
                continue;
            }
            let mut schema = g["schema"].clone();
            if dialect == Dialect::Oas30 {
                translate_30(&mut schema, assert_formats);
            }
            let literals = Literals::collect(&schema, assert_formats);
            let compiled = compile_with_preloaded(
                schema,
                &[String::new()],
                dialect,
                assert_formats,
                remotes.clone(),
            );
            for test in tests {
                let name = format!(
                    "{draft_dir}/{file}: {desc}: {}",
                    test["description"].as_str().unwrap_or_default()
                );
                let want = test["valid"].as_bool().unwrap();
                match &compiled {
                    Err(e) => t.failed.push(format!("{name}: compile error: {e}")),
                    Ok((c, idx)) => {
                        // As a request body goes: its text scanned (numbers checked against
                        // the schema's literals), parsed, stand-ins put in, validated.
                        let text = serde_json::to_vec(&test["data"]).unwrap();
                        let limits = JsonLimits {
                            max_depth: 120,
                            max_array_elements: 0,
                            max_object_entries: 0,
                            max_name_length: 0,
                            max_string_length: 0,
                            allow_duplicate_names: false,
                        };
                        let stand_ins = match scan_numbers(&text, &limits, Some(&literals)) {
                            Ok(s) => s,
                            Err(e) => {
                                t.failed.push(format!("{name}: refused by the scan: {e:?}"));
                                continue;
                            }
                        };
                        let mut data: Value = serde_json::from_slice(&text).unwrap();
                        apply(&mut data, &stand_ins);
                        let mut out = Vec::new();
                        let got = c.validate(idx[0], &data, "body", "", 10, &mut out);
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

/// Pass rate over all required tests: skipped tests count as not passed.
fn report(label: &str, t: &Tally) -> f64 {
    let total = t.passed + t.failed.len() + t.skipped_tests;
    let rate = 100.0 * t.passed as f64 / total.max(1) as f64;
    println!(
        "{label}: {}/{total} required tests passed ({rate:.2}%): {} failed, {} skipped (skips count as failures)",
        t.passed,
        t.failed.len(),
        t.skipped_tests
    );
    for f in &t.failed {
        println!("  FAIL {f}");
    }
    for s in &t.skipped {
        println!("  SKIP {s}");
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
    assert!(
        t.failed.is_empty() && t.skipped_tests == 0,
        "pass rate {rate:.2}%"
    );
}

#[test]
fn draft4_through_the_openapi_30_translation() {
    // Draft 4 asserts `format`, as the filter's default does.
    let t = run("draft4", Dialect::Oas30, true);
    let rate = report("draft4 (OpenAPI 3.0 translation)", &t);
    assert!(t.passed > 500, "suite looks incomplete");
    assert!(
        t.failed.is_empty() && t.skipped_tests == 0,
        "pass rate {rate:.2}%"
    );
}
