//! One `rate_limit` block: a fixed window, a token bucket or unlimited; and durations.

use super::{Bucket, Kind, Limit, RawRateLimit, Unit, MAX_FILL_INTERVAL_MS, MIN_FILL_INTERVAL_MS};

/// `(sub-field, message)` on error, the sub-field starting with `.` (or empty).
pub(super) fn parse_rate_limit(
    rl: &RawRateLimit,
    full_key: &str,
    shadow: bool,
) -> Result<Limit, (String, String)> {
    let name = rl.name.clone().filter(|n| !n.is_empty());
    let mut replaces = Vec::new();
    for (i, r) in rl.replaces.iter().flatten().enumerate() {
        let n = r.name.clone().unwrap_or_default();
        if n.is_empty() {
            return Err((
                format!(".replaces[{i}].name"),
                "a replaces entry needs a non-empty name".into(),
            ));
        }
        if Some(&n) == name.as_ref() {
            return Err((
                format!(".replaces[{i}].name"),
                format!("a limit cannot replace itself ('{n}')"),
            ));
        }
        replaces.push(n);
    }
    let unit = match rl.unit.as_deref() {
        None | Some("") => None,
        Some(u) => Some(
            Unit::parse(u).ok_or_else(|| (".unit".into(), format!("invalid rate limit unit '{u}' (one of second, minute, hour, day, week, month, year)")))?,
        ),
    };
    let kind = if rl.unlimited {
        if unit.is_some() {
            return Err((
                ".unit".into(),
                "should not specify rate limit unit when unlimited".into(),
            ));
        }
        if rl.token_bucket.is_some() {
            return Err((
                ".token_bucket".into(),
                "should not specify a token bucket when unlimited".into(),
            ));
        }
        Kind::Unlimited
    } else if let Some(tb) = &rl.token_bucket {
        if unit.is_some() || rl.requests_per_unit.is_some() {
            return Err((
                ".token_bucket".into(),
                "a limit is either a token_bucket or unit/requests_per_unit, not both".into(),
            ));
        }
        if tb.max_tokens == 0 {
            return Err((
                ".token_bucket.max_tokens".into(),
                "must be at least 1".into(),
            ));
        }
        if tb.tokens_per_fill == 0 {
            return Err((
                ".token_bucket.tokens_per_fill".into(),
                "must be at least 1".into(),
            ));
        }
        let ms = parse_duration_ms(&tb.fill_interval).ok_or_else(|| {
            (
                ".token_bucket.fill_interval".into(),
                format!(
                    "`{}` is not a duration like \"60s\", \"0.5s\", \"500ms\", \"1m\" or \"1h\"",
                    tb.fill_interval
                ),
            )
        })?;
        if !(MIN_FILL_INTERVAL_MS..=MAX_FILL_INTERVAL_MS).contains(&ms) {
            return Err((
                ".token_bucket.fill_interval".into(),
                format!("must be between {MIN_FILL_INTERVAL_MS}ms and 365 days"),
            ));
        }
        Kind::Bucket(Bucket {
            max_tokens: tb.max_tokens,
            tokens_per_fill: tb.tokens_per_fill,
            fill_interval_ms: ms,
        })
    } else {
        let Some(unit) = unit else {
            return Err((
                ".unit".into(),
                "a rate limit needs a unit (or unlimited: true, or a token_bucket)".into(),
            ));
        };
        let Some(requests_per_unit) = rl.requests_per_unit else {
            return Err((
                ".requests_per_unit".into(),
                "a rate limit with a unit needs requests_per_unit".into(),
            ));
        };
        Kind::Window {
            requests_per_unit,
            unit,
        }
    };
    Ok(Limit {
        full_key: full_key.to_string(),
        name,
        kind,
        shadow,
        quota: false,
        replaces,
    })
}

/// `"60s"`, `"0.5s"`, `"500ms"`, `"1.5m"`, `"1h"` → milliseconds (whole milliseconds only).
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = (s.get(..split)?, s.get(split..)?);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || (num.contains('.') && frac.is_empty()) || frac.len() > 9 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = int.parse::<u64>().ok()?.checked_mul(unit_ms)?;
    if !frac.is_empty() {
        // frac / 10^len × unit_ms, exact or refused.
        let f: u64 = frac.parse().ok()?;
        let scale = 10u64.checked_pow(u32::try_from(frac.len()).ok()?)?;
        let num = f.checked_mul(unit_ms)?;
        if num % scale != 0 {
            return None;
        }
        ms = ms.checked_add(num / scale)?;
    }
    Some(ms)
}
