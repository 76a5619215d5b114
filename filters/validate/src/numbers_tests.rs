use super::*;
use serde_json::json;

fn d(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

#[test]
fn decimals_compare_exactly() {
    use Ordering::*;
    for (a, b, want) in [
        ("1", "1.0", Equal),
        ("1e2", "100", Equal),
        ("0.5", "5e-1", Equal),
        (".5", "0.5", Equal),
        ("5.", "5", Equal),
        ("-0", "0", Equal),
        ("0.000", "-0e5", Equal),
        ("007", "7", Equal),
        ("+7", "7", Equal),
        ("9223372036854775808", "9223372036854775807", Greater),
        ("1.00000000000000000001", "1", Greater),
        ("-1.00000000000000000001", "-1", Less),
        ("-2", "1", Less),
        ("12", "123", Less),
        ("0.12", "0.123", Less),
        ("1e400", "1e399", Greater),
        ("1e-400", "0", Greater),
        ("1e99999999999999999999", "1e400", Greater),
    ] {
        assert_eq!(d(a).cmp(&d(b)), want, "{a} vs {b}");
    }
    for bad in ["", "-", ".", "1e", "1e+", "0x10", "1 ", "--1", "inf", "NaN"] {
        assert!(Decimal::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn integer_ness_is_exact() {
    for (s, int) in [
        ("1", true),
        ("1.0", true),
        ("1.5e1", true),
        ("1e-2", false),
        ("0", true),
        ("0.0", true),
        ("1.00000000000000000001", false),
        ("18446744073709551616", true),
        ("1e400", true),
    ] {
        assert_eq!(d(s).is_integer(), int, "{s}");
    }
}

fn lits(doc: Value) -> Literals {
    Literals::collect(&doc, true)
}

#[test]
fn literals_come_from_compared_keywords_only() {
    let l = lits(
        json!({"a": {"minimum": 1, "maximum": 2.5, "exclusiveMinimum": -3,
        "exclusiveMaximum": 4, "const": 5, "enum": [6, "x", 7.5],
        "minLength": 99, "default": 98, "example": {"minimum": 8}}}),
    );
    // Four format limits, eight literals (the `minimum` inside `example` too: harmless).
    assert_eq!(l.len(), 12);
    assert_eq!(Literals::collect(&json!({"maximum": 1}), false).len(), 1);
}

#[test]
fn numbers_far_from_every_literal_pass_as_parsed() {
    let l = lits(json!({"maximum": 100}));
    for s in [
        "5",
        "-5",
        "0.1",
        "1.5",
        "99.999",
        "100",
        "9223372036854775807",
        "1e20",
        "1e-3",
    ] {
        assert_eq!(l.check(s), Ok(None), "{s}");
    }
}

#[test]
fn numbers_that_round_onto_a_literal_get_a_stand_in_on_their_side() {
    let l = lits(json!({"maximum": 9007199254740992u64, "minimum": 0}));
    let two53 = 9007199254740992.0f64;
    for (s, want) in [
        // Rounds (ties to even) onto the maximum, but is above it.
        ("9007199254740993", two53.next_up()),
        // Rounds onto 2^63 = the f64 of i64::MAX, but is above i64::MAX.
        ("9223372036854775808", 9223372036854775808.0f64.next_up()),
        // Rounds onto -2^63 = i64::MIN, but is below it.
        (
            "-9223372036854775809",
            (-9223372036854775808.0f64).next_down(),
        ),
        // Rounds to 0 (the minimum), but is above or below it.
        ("1e-400", 0.0f64.next_up()),
        ("-1e-400", 0.0f64.next_down()),
    ] {
        assert_eq!(l.check(s), Ok(Some(json!(want))), "{s}");
    }
    // Exactly a literal: as parsed.
    assert_eq!(l.check("9007199254740992"), Ok(None));
    assert_eq!(l.check("9223372036854775807"), Ok(None));
    assert_eq!(
        l.check("9223372036854775807.0"),
        Ok(Some(json!(i64::MAX))),
        "an integer that fits is given exactly"
    );
    assert_eq!(l.check("1.5e1"), Ok(Some(json!(15))));
    assert_eq!(l.check("-0.0"), Ok(Some(json!(0))));
}

#[test]
fn non_integers_that_round_to_an_integer_stay_non_integers() {
    let l = lits(json!({}));
    assert_eq!(
        l.check("1.00000000000000000001"),
        Ok(Some(json!(1.0f64.next_up())))
    );
    assert_eq!(
        l.check("-1.00000000000000000001"),
        Ok(Some(json!((-1.0f64).next_down())))
    );
    assert_eq!(
        l.check("0.99999999999999999999"),
        Ok(Some(json!(1.0f64.next_down())))
    );
    assert_eq!(l.check("1.0"), Ok(Some(json!(1))));
    assert_eq!(l.check("2e0"), Ok(Some(json!(2))));
    assert_eq!(l.check("1.5"), Ok(None));
    // Beyond 2^53 every f64 is an integer: no stand-in exists.
    assert_eq!(
        l.check("9007199254740993.5"),
        Err(Inexact { keyword: "type" })
    );
}

#[test]
fn no_consistent_stand_in_is_refused() {
    // The maximum and the minimum are neighbouring f64s: a number that rounds onto the
    // maximum from above would need a stand-in equal to the minimum.
    let l = lits(json!({"maximum": 9007199254740992u64, "minimum": 9007199254740994u64}));
    assert_eq!(
        l.check("9007199254740993"),
        Err(Inexact { keyword: "maximum" })
    );
    // Two literals with one f64, the number equal to one and above the other.
    let l = lits(json!({"maximum": 9007199254740992u64, "minimum": 9007199254740993u64}));
    assert_eq!(
        l.check("9007199254740993"),
        Err(Inexact { keyword: "maximum" })
    );
    let l = lits(json!({"maximum": 9007199254740992u64, "enum": [9007199254740993u64]}));
    assert!(l.check("9007199254740992.5").is_err());
    assert_eq!(l.check("1e400"), Err(Inexact { keyword: "json" }));
}

#[test]
fn values_are_exact_integers_when_they_fit() {
    let l = lits(json!({"maximum": 10}));
    for (s, want) in [
        ("7", json!(7)),
        ("+7", json!(7)),
        ("007", json!(7)),
        ("-9223372036854775808", json!(i64::MIN)),
        ("18446744073709551615", json!(u64::MAX)),
        ("1.5", json!(1.5)),
        ("1e2", json!(100)),
    ] {
        assert_eq!(l.value(s), Some(want), "{s}");
    }
    assert_eq!(
        l.value("18446744073709551616"),
        Some(json!(18446744073709551616.0))
    );
    assert_eq!(l.value("1e400"), None);
    assert_eq!(l.value("x"), None);
}
