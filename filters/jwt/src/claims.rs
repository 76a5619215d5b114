//! Claims: registered-claim checks against a provider's rules, and claims as header values.

use crate::token::Failure;
use serde_json::{Map, Value};

/// What a provider demands of the claims.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub subjects: Vec<SubjectMatch>,
    pub require_expiration: bool,
    pub max_lifetime_seconds: Option<u64>,
    pub clock_skew_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    Exact(String),
    Prefix(String),
}

/// Largest NumericDate accepted: 9999-12-31T23:59:59Z. Beyond it, `exp` would only mean
/// "never expires" (jwt-simple saturates such values), defeating `require_expiration`.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A NumericDate: a non-negative JSON number of seconds (fractions truncated), at most
/// [`MAX_NUMERIC_DATE`] whether written as an integer or not.
fn numeric_date(v: Option<&Value>) -> Result<Option<u64>, Failure> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_NUMERIC_DATE {
                    return Err(Failure::BadClaims);
                }
                Ok(Some(u))
            } else if n.is_i64() {
                Err(Failure::BadClaims)
            } else {
                match n.as_f64() {
                    Some(f) if (0.0..=MAX_NUMERIC_DATE as f64).contains(&f) => Ok(Some(f as u64)),
                    _ => Err(Failure::BadClaims),
                }
            }
        }
        Some(_) => Err(Failure::BadClaims),
    }
}

fn opt_str<'a>(payload: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Failure> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::BadClaims),
    }
}

/// Checks registered claims against `rules` at `now` (seconds). Returns the latest second
/// at which the token is still accepted (for the cache), `u64::MAX` without `exp`.
pub fn check_claims(
    payload: &Map<String, Value>,
    rules: &ClaimRules,
    now: u64,
) -> Result<u64, Failure> {
    let skew = rules.clock_skew_seconds;
    let exp = numeric_date(payload.get("exp"))?;
    let nbf = numeric_date(payload.get("nbf"))?;
    let iat = numeric_date(payload.get("iat"))?;
    let iss = opt_str(payload, "iss")?;
    let sub = opt_str(payload, "sub")?;
    opt_str(payload, "jti")?;
    let aud: Option<Vec<&str>> = match payload.get("aud") {
        None => None,
        Some(Value::String(s)) => Some(vec![s.as_str()]),
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for v in a {
                out.push(v.as_str().ok_or(Failure::BadClaims)?);
            }
            Some(out)
        }
        Some(_) => return Err(Failure::BadClaims),
    };
    if let Some(want) = &rules.issuer {
        if iss != Some(want.as_str()) {
            return Err(Failure::Issuer);
        }
    }
    if exp.is_none() && (rules.require_expiration || rules.max_lifetime_seconds.is_some()) {
        return Err(Failure::MissingExp);
    }
    if let Some(exp) = exp {
        if now > exp.saturating_add(skew) {
            return Err(Failure::Expired);
        }
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(skew) {
            return Err(Failure::NotYetValid);
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(skew) {
            return Err(Failure::IssuedInFuture);
        }
    }
    if let (Some(max), Some(exp)) = (rules.max_lifetime_seconds, exp) {
        let start = iat.or(nbf).unwrap_or(now);
        if exp.saturating_sub(start) > max {
            return Err(Failure::LifetimeTooLong);
        }
    }
    if !rules.audiences.is_empty() {
        let ok =
            aud.is_some_and(|list| list.iter().any(|a| rules.audiences.iter().any(|w| w == a)));
        if !ok {
            return Err(Failure::Audience);
        }
    }
    if !rules.subjects.is_empty() {
        let ok = sub.is_some_and(|s| {
            rules.subjects.iter().any(|m| match m {
                SubjectMatch::Exact(e) => s == e,
                SubjectMatch::Prefix(p) => s.starts_with(p.as_str()),
            })
        });
        if !ok {
            return Err(Failure::Subject);
        }
    }
    Ok(exp.map(|e| e.saturating_add(skew)).unwrap_or(u64::MAX))
}

/// Looks a claim up by exact name first (names may contain dots, e.g. URLs), then as a
/// dotted path through nested objects.
pub fn claim<'a>(payload: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = payload.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = payload.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => serde_json::to_string(other).ok(),
    }
}

/// A claim rendered as a header value: strings as-is, numbers and booleans as JSON text,
/// arrays joined with commas, objects as compact JSON. `None` when absent, null, or when the
/// result would not be a safe header value (control characters).
pub fn claim_header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(scalar_text).collect();
            parts.join(",")
        }
        other => scalar_text(other)?,
    };
    if text.chars().any(|c| c.is_control() && c != '\t') || text.len() > 8192 {
        return None;
    }
    Some(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://iss".into()),
            audiences: vec!["api".into(), "web".into()],
            subjects: vec![],
            require_expiration: true,
            max_lifetime_seconds: None,
            clock_skew_seconds: 60,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claim_checks() {
        let now = 1_000_000;
        let ok = json!({"iss":"https://iss","aud":"api","exp":now + 10,"iat":now,"nbf":now});
        assert_eq!(check_claims(&obj(ok), &rules(), now), Ok(now + 70));
        let cases = [
            (
                json!({"iss":"https://iss","aud":"api"}),
                Failure::MissingExp,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now - 61}),
                Failure::Expired,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"nbf":now + 61}),
                Failure::NotYetValid,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"iat":now + 61}),
                Failure::IssuedInFuture,
            ),
            (
                json!({"iss":"https://other","aud":"api","exp":now + 10}),
                Failure::Issuer,
            ),
            (json!({"aud":"api","exp":now + 10}), Failure::Issuer),
            (
                json!({"iss":"https://iss","aud":"other","exp":now + 10}),
                Failure::Audience,
            ),
            (
                json!({"iss":"https://iss","aud":[],"exp":now + 10}),
                Failure::Audience,
            ),
            (
                json!({"iss":"https://iss","exp":now + 10}),
                Failure::Audience,
            ),
            (
                json!({"iss":"https://iss","aud":[1],"exp":now + 10}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":{"a":1},"exp":now + 10}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":"soon"}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":-5}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"nbf":true}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"sub":5}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":["https://iss"],"aud":"api","exp":now + 10}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"jti":{}}),
                Failure::BadClaims,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                check_claims(&obj(p.clone()), &rules(), now),
                Err(want),
                "{p}"
            );
        }
        // Skew: just inside.
        let edge = json!({"iss":"https://iss","aud":["x","web"],"exp":now - 60,"nbf":now + 60,"iat":now + 60});
        assert!(check_claims(&obj(edge), &rules(), now).is_ok());
        // Fractional NumericDate.
        let frac = json!({"iss":"https://iss","aud":"api","exp":(now as f64) + 0.5});
        assert!(check_claims(&obj(frac), &rules(), now).is_ok());
    }

    #[test]
    fn huge_numeric_dates_are_malformed_not_never_expiring() {
        let now = 1_000_000;
        let with_exp = |exp: Value| obj(json!({"iss":"https://iss","aud":"api","exp":exp}));
        let last = MAX_NUMERIC_DATE;
        assert_eq!(
            check_claims(&with_exp(json!(last)), &rules(), now),
            Ok(last + 60)
        );
        assert!(check_claims(&with_exp(json!(last as f64)), &rules(), now).is_ok());
        for exp in [
            json!(last + 1),
            json!(1u64 << 63),
            json!(u64::MAX),
            json!(1.0e20),
            json!((last + 10) as f64),
        ] {
            assert_eq!(
                check_claims(&with_exp(exp.clone()), &rules(), now),
                Err(Failure::BadClaims),
                "{exp}"
            );
        }
        // nbf and iat follow the same rule.
        for name in ["nbf", "iat"] {
            let mut p = with_exp(json!(now + 10));
            p.insert(name.into(), json!(u64::MAX));
            assert_eq!(
                check_claims(&p, &rules(), now),
                Err(Failure::BadClaims),
                "{name}"
            );
        }
    }

    #[test]
    fn lifetime_and_subjects() {
        let now = 1_000_000;
        let mut r = rules();
        r.max_lifetime_seconds = Some(3600);
        r.subjects = vec![
            SubjectMatch::Exact("alice".into()),
            SubjectMatch::Prefix("svc:".into()),
        ];
        let base = |extra: Value| {
            let mut m = obj(json!({"iss":"https://iss","aud":"api"}));
            m.extend(obj(extra));
            m
        };
        assert!(check_claims(
            &base(json!({"exp":now + 3600,"iat":now,"sub":"alice"})),
            &r,
            now
        )
        .is_ok());
        assert!(check_claims(&base(json!({"exp":now + 100,"sub":"svc:billing"})), &r, now).is_ok());
        assert_eq!(
            check_claims(
                &base(json!({"exp":now + 3601,"iat":now,"sub":"alice"})),
                &r,
                now
            ),
            Err(Failure::LifetimeTooLong)
        );
        assert_eq!(
            check_claims(&base(json!({"exp":now + 7200,"sub":"alice"})), &r, now),
            Err(Failure::LifetimeTooLong)
        );
        assert_eq!(
            check_claims(&base(json!({"exp":now + 10,"sub":"bob"})), &r, now),
            Err(Failure::Subject)
        );
        assert_eq!(
            check_claims(&base(json!({"exp":now + 10})), &r, now),
            Err(Failure::Subject)
        );
        r.require_expiration = false;
        r.max_lifetime_seconds = None;
        assert_eq!(
            check_claims(&base(json!({"sub":"alice"})), &r, now),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn claims_by_name_and_path() {
        let p = obj(json!({"a":{"b":{"c":"deep"}},"https://x.io/roles":["r1"],"n":5}));
        assert_eq!(claim(&p, "a.b.c"), Some(&json!("deep")));
        assert_eq!(claim(&p, "https://x.io/roles"), Some(&json!(["r1"])));
        assert_eq!(claim(&p, "a.x"), None);
        assert_eq!(claim(&p, "n.x"), None);
        assert_eq!(
            claim_header_value(&json!(["a", "b", 3, true])).as_deref(),
            Some("a,b,3,true")
        );
        assert_eq!(claim_header_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(
            claim_header_value(&json!({"k":"v"})).as_deref(),
            Some("{\"k\":\"v\"}")
        );
        assert_eq!(claim_header_value(&json!("a\r\nx-admin: 1")), None);
        assert_eq!(claim_header_value(&json!(null)), None);
    }
}
