//! Numbers checked on their exact decimal value.
//!
//! The schema engine compares numbers as `f64` (`minimum`, `maximum`, `exclusive*`, and the
//! fallback of `enum`/`const` equality), and a request number beyond 2^53, or with more
//! digits than an `f64` holds, rounds: `9223372036854775808` and `9223372036854775807` are
//! one `f64`, so `maximum: 9223372036854775807` would let the first through, and
//! `1.00000000000000000001` would pass as the integer `1`.
//!
//! Rounding to nearest is monotone, so an `f64` comparison can only be wrong when the request
//! number `v` rounds onto the same `f64` as a literal `B` of the document without being equal
//! to it, or when rounding makes a non-integer integral. For such a number the validator is
//! given a stand-in: the neighbouring `f64` on `v`'s side, checked to compare with every
//! literal of the document (and the `int32`/`int64` limits) exactly as `v` does and to have
//! `v`'s integer-ness. When no neighbour does, the number is refused: it cannot be checked
//! exactly. Every other number is validated as parsed.

use serde_json::Value;
use std::cmp::Ordering;

/// An exact decimal: `±0.d1d2…dn × 10^exp`, digits without leading or trailing zeros (no
/// digits: zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    neg: bool,
    digits: Vec<u8>,
    exp: i64,
}

/// Exponents are clamped far beyond any `f64` (whose decimal exponents stay within ±400).
const EXP_CLAMP: i64 = 1 << 40;

impl Decimal {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (JSON numbers, and the leading `+`,
    /// leading zeros and bare `.` query and path values may have). `None` for anything else.
    pub fn parse(text: &str) -> Option<Decimal> {
        let b = text.as_bytes();
        let mut i = 0;
        let neg = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut digits = Vec::new();
        let mut int_len: i64 = 0;
        let mut seen = 0usize;
        while let Some(d @ b'0'..=b'9') = b.get(i).copied() {
            digits.push(d);
            int_len = int_len.saturating_add(1);
            seen += 1;
            i += 1;
        }
        if b.get(i) == Some(&b'.') {
            // `.5` and `5.` as well (query and path values; JSON bodies never have them).
            i += 1;
            while let Some(d @ b'0'..=b'9') = b.get(i).copied() {
                digits.push(d);
                seen += 1;
                i += 1;
            }
        }
        if seen == 0 {
            return None;
        }
        let mut e: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let eneg = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            while let Some(d @ b'0'..=b'9') = b.get(i).copied() {
                e = e
                    .saturating_mul(10)
                    .saturating_add(i64::from(d - b'0'))
                    .min(EXP_CLAMP);
                i += 1;
            }
            if i == start {
                return None;
            }
            if eneg {
                e = -e;
            }
        }
        if i != b.len() {
            return None;
        }
        let lead = digits.iter().take_while(|d| **d == b'0').count();
        digits.drain(..lead);
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        let lead = i64::try_from(lead).unwrap_or(EXP_CLAMP);
        let exp = int_len.saturating_sub(lead).saturating_add(e);
        let zero = digits.is_empty();
        Some(Decimal {
            neg: neg && !zero,
            digits,
            exp: if zero { 0 } else { exp },
        })
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Whether the value is an integer (no digit after the decimal point).
    pub fn is_integer(&self) -> bool {
        self.is_zero() || i64::try_from(self.digits.len()).is_ok_and(|n| self.exp >= n)
    }

    /// The exact `i64`/`u64` JSON value of an integer that fits one.
    pub fn integer_value(&self) -> Option<Value> {
        if !self.is_integer() || self.exp > 20 {
            return None;
        }
        let zeros = usize::try_from(self.exp)
            .ok()?
            .checked_sub(self.digits.len())?;
        let mut text = String::with_capacity(22);
        if self.neg {
            text.push('-');
        }
        text.extend(self.digits.iter().map(|d| char::from(*d)));
        text.extend(std::iter::repeat_n('0', zeros));
        if self.is_zero() {
            return Some(Value::from(0));
        }
        text.parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .ok()
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            // Both normalized (first digit non-zero): the exponent decides, then the digits.
            (false, false) => self
                .exp
                .cmp(&other.exp)
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A number the validator cannot be given as it is, nor through a stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inexact {
    /// The keyword whose check it could not be given to (`maximum`, `format`, `type`, …), or
    /// `json` for a number beyond the `f64` range.
    pub keyword: &'static str,
}

/// Every number of the document a request number is compared with.
#[derive(Debug, Clone, Default)]
pub struct Literals {
    /// Sorted by the `f64` (with `-0` as `0`).
    by_f64: Vec<(f64, Decimal, &'static str)>,
}

const COMPARED: [&str; 4] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Literals {
    /// Collects the numbers under `minimum`, `maximum`, `exclusiveMinimum`,
    /// `exclusiveMaximum`, `const` and in `enum` anywhere in `doc` (more than the schemas use
    /// is harmless), and the `int32`/`int64` limits when formats are asserted.
    pub fn collect(doc: &Value, formats: bool) -> Literals {
        let mut l = Literals::default();
        if formats {
            for n in [i64::from(i32::MIN), i64::from(i32::MAX), i64::MIN, i64::MAX] {
                l.add(&n.to_string(), "format");
            }
        }
        let mut stack = vec![(doc, 0usize)];
        while let Some((v, depth)) = stack.pop() {
            match v {
                Value::Object(m) if depth < 256 => {
                    for (k, child) in m {
                        if let Some(kw) = COMPARED.iter().find(|c| **c == k) {
                            if let Some(t) = number_text(child) {
                                l.add(&t, kw);
                            }
                        } else if k == "const" {
                            if let Some(t) = number_text(child) {
                                l.add(&t, "const");
                            }
                        } else if let ("enum", Value::Array(items)) = (k.as_str(), child) {
                            for t in items.iter().filter_map(number_text) {
                                l.add(&t, "enum");
                            }
                        }
                        stack.push((child, depth + 1));
                    }
                }
                Value::Array(a) if depth < 256 => stack.extend(a.iter().map(|x| (x, depth + 1))),
                _ => {}
            }
        }
        l.by_f64.sort_by(|a, b| a.0.total_cmp(&b.0));
        l
    }

    fn add(&mut self, text: &str, keyword: &'static str) {
        if let (Some(d), Ok(f)) = (Decimal::parse(text), text.parse::<f64>()) {
            if f.is_finite() {
                self.by_f64.push((f + 0.0, d, keyword));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_f64.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_f64.is_empty()
    }

    /// What a request number (its text) needs: `Ok(None)` to be validated as parsed (as
    /// `i64`/`u64` when it is a plain integer that fits, else as the nearest `f64`),
    /// `Ok(Some(w))` to be validated as `w` (an integer written with a fraction or exponent
    /// as its exact `i64`/`u64`, or an `f64` stand-in), `Err` to be refused.
    pub fn check(&self, text: &str) -> Result<Option<Value>, Inexact> {
        let Ok(r) = text.parse::<f64>() else {
            return Ok(None);
        };
        if !r.is_finite() {
            return Err(Inexact { keyword: "json" });
        }
        let r = r + 0.0;
        let plain_integer = !text.contains(['.', 'e', 'E']);
        let lo = self.by_f64.partition_point(|(f, _, _)| *f < r);
        let same = self.by_f64.get(lo..).unwrap_or_default();
        let same = same.get(..same.iter().take_while(|(f, _, _)| *f == r).count());
        let same = same.unwrap_or_default();
        // A number written with a fraction or an exponent that rounds to an integer may not
        // be one (`1.00000000000000000001`); a plain integer always is.
        if same.is_empty() && (plain_integer || r.fract() != 0.0) {
            return Ok(None);
        }
        let Some(v) = Decimal::parse(text) else {
            return Ok(None);
        };
        let exact_int = v.is_integer();
        let seen_int = plain_integer || r.fract() == 0.0;
        let off = same.iter().find(|(_, d, _)| v.cmp(d) != Ordering::Equal);
        // `9223372036854775807.0` is i64::MAX, not the f64 2^63 it parses to.
        let exact = if plain_integer {
            None
        } else {
            v.integer_value()
        };
        if exact_int == seen_int && off.is_none() {
            return Ok(exact);
        }
        // The side of `r` that `v` is on: from the literal it differs from, or from `r`
        // itself (an integer-valued `f64` whose exact decimal `Decimal` can read).
        let above = match off {
            Some((_, d, _)) => v > *d,
            None => Decimal::parse(&format!("{r:.0}")).is_some_and(|ri| v > ri),
        };
        let w = if above { r.next_up() } else { r.next_down() };
        let consistent = w.is_finite()
            && (w.fract() == 0.0) == exact_int
            && self
                .by_f64
                .iter()
                .all(|(f, d, _)| w.partial_cmp(f) == Some(v.cmp(d)));
        if consistent {
            return Ok(serde_json::Number::from_f64(w).map(Value::Number));
        }
        Err(Inexact {
            keyword: match off {
                Some((_, _, kw)) if exact_int == seen_int => kw,
                _ => "type",
            },
        })
    }

    /// The JSON value of a number text: exact `i64`/`u64` when it is an integer that fits,
    /// else the nearest `f64`, or the stand-in [`Literals::check`] asks for. `None` for a
    /// text that is no number or that cannot be checked exactly.
    pub fn value(&self, text: &str) -> Option<Value> {
        let plain_integer = !text.contains(['.', 'e', 'E']);
        if let Some(w) = self.check(text).ok()? {
            return Some(w);
        }
        let digits = text.strip_prefix('+').unwrap_or(text);
        if plain_integer {
            if let Ok(i) = digits.parse::<i64>() {
                return Some(Value::from(i));
            }
            if let Ok(u) = digits.parse::<u64>() {
                return Some(Value::from(u));
            }
        }
        let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
        serde_json::Number::from_f64(f).map(Value::Number)
    }
}

/// Puts the stand-ins of [`crate::threat::scan_numbers`] into the parsed value.
pub fn apply(v: &mut Value, stand_ins: &[(String, Value)]) {
    for (ptr, w) in stand_ins {
        if let Some(slot) = v.pointer_mut(ptr) {
            if slot.is_number() {
                *slot = w.clone();
            }
        }
    }
}

#[cfg(test)]
#[path = "numbers_tests.rs"]
mod tests;
