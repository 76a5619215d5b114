//! JSON threat protection: one streaming pass over the raw body that checks the syntax and
//! the structural limits before anything builds a tree from it.
//!
//! The containers are tracked on an explicit stack, and a container deeper than `max_depth`
//! (at most 120) is refused before anything descends into it, so the call depth is bounded by
//! the configured limit whatever the input (the first value of a container is read by a
//! nested call, so nesting costs two frames per level, never more). Member names are unescaped before duplicate detection, so
//! `"a"` and `"\u0061"` count as the same name (the classic parser-differential trick).

use crate::config::JsonLimits;
use crate::numbers::Literals;
use std::collections::HashSet;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threat {
    /// JSON Pointer of the offending location (`""` = the whole document).
    pub pointer: String,
    /// `maxDepth`, `maxArrayElements`, `maxObjectEntries`, `maxNameLength`,
    /// `maxStringLength`, `duplicateName`, or `json` (not valid JSON).
    pub keyword: &'static str,
    pub message: String,
}

enum Frame {
    Object {
        names: HashSet<String>,
        count: usize,
        key: Option<String>,
    },
    Array {
        count: usize,
    },
}

/// Escapes one JSON Pointer reference token (RFC 6901).
pub fn escape_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    stack: Vec<Frame>,
    limits: &'a JsonLimits,
    /// The schemas' numbers, when the body is validated against a schema.
    literals: Option<&'a Literals>,
    /// Numbers the schema must be given as a stand-in (`crate::numbers`): pointer, value.
    stand_ins: Vec<(String, serde_json::Value)>,
}

/// Checks `body` against `limits`. `Ok` means it is one well-formed JSON text within every limit.
pub fn scan(body: &[u8], limits: &JsonLimits) -> Result<(), Threat> {
    scan_numbers(body, limits, None).map(|_| ())
}

/// [`scan`], and every number checked against the schemas' `literals`: `Ok` has the numbers
/// to validate as a stand-in (JSON Pointer, value); a number that cannot be checked exactly
/// is refused with the keyword it could not be given to.
pub fn scan_numbers(
    body: &[u8],
    limits: &JsonLimits,
    literals: Option<&Literals>,
) -> Result<Vec<(String, serde_json::Value)>, Threat> {
    if std::str::from_utf8(body).is_err() {
        return Err(Threat {
            pointer: String::new(),
            keyword: "json",
            message: "body is not valid UTF-8".into(),
        });
    }
    let mut s = Scanner {
        b: body,
        i: 0,
        stack: Vec::new(),
        limits,
        literals,
        stand_ins: Vec::new(),
    };
    s.run()?;
    Ok(s.stand_ins)
}

impl Scanner<'_> {
    fn pointer(&self) -> String {
        let mut p = String::new();
        for f in &self.stack {
            p.push('/');
            match f {
                Frame::Object { key: Some(k), .. } => p.push_str(&escape_token(k)),
                Frame::Object { key: None, .. } => {}
                Frame::Array { count } => p.push_str(&count.saturating_sub(1).to_string()),
            }
        }
        // An object whose current key is not known yet contributes no token.
        if let Some(Frame::Object { key: None, .. }) = self.stack.last() {
            p.pop();
        }
        p
    }

    /// Pointer of the innermost container itself (not of its current member).
    fn container_pointer(&self) -> String {
        let mut p = String::new();
        let n = self.stack.len();
        for f in self.stack.iter().take(n.saturating_sub(1)) {
            p.push('/');
            match f {
                Frame::Object { key: Some(k), .. } => p.push_str(&escape_token(k)),
                Frame::Object { key: None, .. } => {}
                Frame::Array { count } => p.push_str(&count.saturating_sub(1).to_string()),
            }
        }
        p
    }

    fn err(&self, keyword: &'static str, message: impl Into<String>) -> Threat {
        Threat {
            pointer: self.pointer(),
            keyword,
            message: message.into(),
        }
    }

    fn syntax(&self) -> Threat {
        let msg = if self.i >= self.b.len() {
            "body is not valid JSON (unexpected end)".to_string()
        } else {
            format!("body is not valid JSON (at byte {})", self.i)
        };
        Threat {
            pointer: self.pointer(),
            keyword: "json",
            message: msg,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), Threat> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn run(&mut self) -> Result<(), Threat> {
        self.value()?;
        loop {
            // After a value: close containers or move to the next member/element.
            self.skip_ws();
            let Some(top) = self.stack.last() else {
                return if self.i == self.b.len() {
                    Ok(())
                } else {
                    Err(self.syntax())
                };
            };
            let is_object = matches!(top, Frame::Object { .. });
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    if is_object {
                        self.member_name()?;
                        self.value()?;
                    } else {
                        self.element()?;
                    }
                }
                Some(b'}') if is_object => {
                    self.i += 1;
                    self.stack.pop();
                }
                Some(b']') if !is_object => {
                    self.i += 1;
                    self.stack.pop();
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// Reads a member name and the colon after it; records it in the current object.
    fn member_name(&mut self) -> Result<(), Threat> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(self.syntax());
        }
        let max = self.limits.max_name_length;
        let (name, len) = self.string(true)?;
        let name = name.unwrap_or_default();
        let limits = self.limits;
        let Some(Frame::Object { names, count, key }) = self.stack.last_mut() else {
            return Err(self.syntax());
        };
        *count += 1;
        let dup = !limits.allow_duplicate_names && !names.insert(name.clone());
        *key = Some(name);
        let count = *count;
        if max > 0 && len > max {
            return Err(self.err(
                "maxNameLength",
                format!("member name longer than {max} characters"),
            ));
        }
        if dup {
            return Err(self.err(
                "duplicateName",
                "member name appears more than once in the object",
            ));
        }
        let max_entries = self.limits.max_object_entries;
        if max_entries > 0 && count > max_entries {
            return Err(Threat {
                pointer: self.container_pointer(),
                keyword: "maxObjectEntries",
                message: format!("object has more than {max_entries} members"),
            });
        }
        self.expect(b':')
    }

    /// Reads one value; opening a container pushes a frame (and reads its first member name).
    fn value(&mut self) -> Result<(), Threat> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') | Some(b'[') => {
                let is_object = self.peek() == Some(b'{');
                self.i += 1;
                if self.stack.len() >= self.limits.max_depth {
                    return Err(self.err(
                        "maxDepth",
                        format!("nesting deeper than {}", self.limits.max_depth),
                    ));
                }
                self.skip_ws();
                if is_object {
                    self.stack.push(Frame::Object {
                        names: HashSet::new(),
                        count: 0,
                        key: None,
                    });
                    if self.peek() == Some(b'}') {
                        // Left open: `run` closes it.
                        return Ok(());
                    }
                    self.member_name()?;
                    return self.value();
                }
                self.stack.push(Frame::Array { count: 0 });
                if self.peek() == Some(b']') {
                    return Ok(());
                }
                self.element()
            }
            Some(b'"') => {
                let (_, len) = self.string(false)?;
                let max = self.limits.max_string_length;
                if max > 0 && len > max {
                    return Err(self.err(
                        "maxStringLength",
                        format!("string longer than {max} characters"),
                    ));
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.syntax()),
        }
    }

    /// Counts a new array element and checks the limit; the element's value is read by the caller.
    fn element(&mut self) -> Result<(), Threat> {
        let max = self.limits.max_array_elements;
        let Some(Frame::Array { count }) = self.stack.last_mut() else {
            return Err(self.syntax());
        };
        *count += 1;
        if max > 0 && *count > max {
            return Err(Threat {
                pointer: self.container_pointer(),
                keyword: "maxArrayElements",
                message: format!("array has more than {max} elements"),
            });
        }
        self.value()
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Threat> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), Threat> {
        let start = self.i;
        self.number_syntax()?;
        let Some(lits) = self.literals else {
            return Ok(());
        };
        let text = std::str::from_utf8(self.b.get(start..self.i).unwrap_or_default());
        match lits.check(text.unwrap_or_default()) {
            Ok(None) => {
                if self.limits.allow_duplicate_names && !self.stand_ins.is_empty() {
                    // A repeated name: the later value is the one validated.
                    let p = self.pointer();
                    self.stand_ins.retain(|(q, _)| *q != p);
                }
                Ok(())
            }
            Ok(Some(w)) => {
                let p = self.pointer();
                self.stand_ins.push((p, w));
                Ok(())
            }
            Err(e) if e.keyword == "json" => {
                Err(self.err("json", "body is not valid JSON (number out of range)"))
            }
            Err(e) => Err(self.err(
                e.keyword,
                "number cannot be checked exactly against the schema",
            )),
        }
    }

    fn number_syntax(&mut self) -> Result<(), Threat> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.syntax());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.syntax());
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Threat> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.syntax()),
            };
            v = v * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    /// Reads a string starting at the opening quote. Returns the unescaped text when `keep`
    /// (member names) and its length in characters.
    fn string(&mut self, keep: bool) -> Result<(Option<String>, usize), Threat> {
        self.i += 1; // opening quote
        let mut out = keep.then(String::new);
        let mut len = 0usize;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.syntax());
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok((out, len));
                }
                b'\\' => {
                    self.i += 1;
                    let ch = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate must be followed by a low one.
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(self.syntax());
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.syntax());
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.syntax());
                            } else {
                                hi
                            };
                            self.i -= 1; // the common `+= 1` below
                            char::from_u32(cp).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(self.syntax()),
                    };
                    self.i += 1;
                    len += 1;
                    if let Some(o) = out.as_mut() {
                        o.push(ch);
                    }
                }
                0x00..=0x1f => return Err(self.syntax()),
                _ => {
                    // Copy one UTF-8 sequence (the whole body was checked to be UTF-8).
                    let start = self.i;
                    self.i += 1;
                    while matches!(self.peek(), Some(b) if b & 0xC0 == 0x80) {
                        self.i += 1;
                    }
                    len += 1;
                    if let Some(o) = out.as_mut() {
                        if let Some(s) = self
                            .b
                            .get(start..self.i)
                            .and_then(|s| std::str::from_utf8(s).ok())
                        {
                            o.push_str(s);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "threat_tests.rs"]
mod tests;
