//! Path template matching with OpenAPI precedence.
//!
//! Our own small matcher rather than `matchit`: OpenAPI allows several parameters and
//! literal text in one segment (`/reports/{year}-{month}.{format}`), which `matchit`
//! refuses, and OpenAPI's rule — concrete segments win over templated ones, compared from
//! the left — is easiest to guarantee by sorting the templates once. Templates are grouped
//! by segment count (a parameter never spans `/`), so a lookup scans one small group.

use percent_encoding::percent_decode_str;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Param(String),
}

#[derive(Debug, Clone)]
struct Entry {
    segments: Vec<Vec<Part>>,
    rank: Vec<u8>,
    literal_len: usize,
    template: String,
    item: usize,
}

/// Templates by segment count. Paths are the canonical request view (`meshwall_core::canon`)
/// with their case kept: parameter values keep the case the client sent even when literal
/// text compares without regard to case.
#[derive(Debug, Default)]
pub struct Router {
    by_len: HashMap<usize, Vec<Entry>>,
    /// Literal text compares without regard to ASCII case (`case_insensitive_paths`).
    case_insensitive: bool,
    /// `/a/` is `/a` (`trailing_slash_insensitive`): one trailing slash is dropped from
    /// templates and paths alike.
    trailing_slash_insensitive: bool,
}

/// Splits a path template into segments of literal and parameter parts.
fn parse_template(t: &str) -> Result<Vec<Vec<Part>>, String> {
    let body = t
        .strip_prefix('/')
        .ok_or_else(|| "path must start with `/`".to_string())?;
    let mut segs = Vec::new();
    for seg in body.split('/') {
        let mut parts = Vec::new();
        let mut rest = seg;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after
                    .find('}')
                    .ok_or_else(|| "unclosed `{` in path template".to_string())?;
                let name = after.get(..end).unwrap_or_default();
                if name.is_empty() || name.contains('{') {
                    return Err("empty or nested parameter name in path template".into());
                }
                if matches!(parts.last(), Some(Part::Param(_))) {
                    return Err("two parameters without literal text between them".into());
                }
                parts.push(Part::Param(name.to_string()));
                rest = after.get(end + 1..).unwrap_or_default();
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                if rest.get(..end).is_some_and(|l| l.contains('}')) {
                    return Err("unmatched `}` in path template".into());
                }
                parts.push(Part::Lit(decode(rest.get(..end).unwrap_or_default())));
                rest = rest.get(end..).unwrap_or_default();
            }
        }
        segs.push(parts);
    }
    Ok(segs)
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `path` without its trailing slash, when that is how paths compare (never `/` itself).
fn trim_slash(path: &str, insensitive: bool) -> &str {
    if insensitive && path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

impl Router {
    pub fn new(case_insensitive: bool, trailing_slash_insensitive: bool) -> Self {
        Router {
            by_len: HashMap::new(),
            case_insensitive,
            trailing_slash_insensitive,
        }
    }

    /// Adds template `t` for path item number `item`. Returns the items already added whose
    /// templates differ from `t` only in parameter names (`/a/{id}` and `/a/{name}`).
    /// OpenAPI forbids such templates, but real documents use them with disjoint methods
    /// (GitHub's: `GET /orgs/{org}/attestations/{subject_digest}` and
    /// `DELETE /orgs/{org}/attestations/{attestation_id}`); the caller decides.
    pub fn insert(&mut self, t: &str, item: usize) -> Result<Vec<usize>, String> {
        let mut segments = parse_template(trim_slash(t, self.trailing_slash_insensitive))?;
        if self.case_insensitive {
            for part in segments.iter_mut().flatten() {
                if let Part::Lit(l) = part {
                    l.make_ascii_lowercase();
                }
            }
        }
        let rank = segments
            .iter()
            .map(|s| match s.as_slice() {
                [Part::Lit(_)] | [] => 0,
                [Part::Param(_)] => 2,
                _ => 1,
            })
            .collect();
        let literal_len = segments
            .iter()
            .flatten()
            .map(|p| if let Part::Lit(l) = p { l.len() } else { 0 })
            .sum();
        let group = self.by_len.entry(segments.len()).or_default();
        let equivalent = group
            .iter()
            .filter(|e| same_shape(&e.segments, &segments))
            .map(|e| e.item)
            .collect();
        group.push(Entry {
            segments,
            rank,
            literal_len,
            template: t.to_string(),
            item,
        });
        group.sort_by(|a, b| {
            a.rank
                .cmp(&b.rank)
                .then(b.literal_len.cmp(&a.literal_len))
                .then(a.template.cmp(&b.template))
                .then(a.item.cmp(&b.item))
        });
        Ok(equivalent)
    }

    /// The path item matching `path` (canonical, no query string, base path already
    /// removed) and the decoded path parameter values.
    pub fn find(&self, path: &str) -> Option<(usize, Vec<(String, String)>)> {
        self.find_all(path).into_iter().next()
    }

    /// Every path item matching `path` with the best template: one, or several when their
    /// templates differ only in parameter names (in insertion order). Empty when none matches.
    pub fn find_all(&self, path: &str) -> Vec<(usize, Vec<(String, String)>)> {
        let mut out = Vec::new();
        let path = trim_slash(path, self.trailing_slash_insensitive);
        let Some(body) = path.strip_prefix('/') else {
            return out;
        };
        let raw: Vec<&str> = body.split('/').collect();
        let Some(group) = self.by_len.get(&raw.len()) else {
            return out;
        };
        let decoded: Vec<String> = raw.iter().map(|s| decode(s)).collect();
        // The text literals are compared with: lower-cased when case does not count (ASCII
        // lower-casing keeps every byte offset, so values are cut from `decoded`).
        let folded: Vec<String> = if self.case_insensitive {
            decoded.iter().map(|s| s.to_ascii_lowercase()).collect()
        } else {
            Vec::new()
        };
        let mut best: Option<&Entry> = None;
        'entries: for e in group {
            if let Some(b) = best {
                if !same_shape(&b.segments, &e.segments) {
                    continue;
                }
            }
            let mut params = Vec::new();
            for (i, (parts, seg)) in e.segments.iter().zip(&decoded).enumerate() {
                let cmp = folded.get(i).unwrap_or(seg);
                if !match_segment(parts, seg, cmp, &mut params) {
                    continue 'entries;
                }
            }
            best = best.or(Some(e));
            out.push((e.item, params));
        }
        out.sort_by_key(|(item, _)| *item);
        out
    }
}

/// Templates that differ only in parameter names are the same path (invalid in OpenAPI).
fn same_shape(a: &[Vec<Part>], b: &[Vec<Part>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| match (p, q) {
                    (Part::Lit(l), Part::Lit(m)) => l == m,
                    (Part::Param(_), Part::Param(_)) => true,
                    _ => false,
                })
        })
}

/// Matches one segment: literals against `cmp` (the segment, lower-cased when case does not
/// count; same byte offsets), parameter values cut from `seg`.
fn match_segment(parts: &[Part], seg: &str, cmp: &str, params: &mut Vec<(String, String)>) -> bool {
    let mut at = 0;
    let mut i = 0;
    while let Some(p) = parts.get(i) {
        let rest = cmp.get(at..).unwrap_or_default();
        match p {
            Part::Lit(l) => {
                if !rest.starts_with(l.as_str()) {
                    return false;
                }
                at += l.len();
            }
            Part::Param(name) => {
                // A parameter runs to the next literal's first occurrence (or the segment end).
                let end = match parts.get(i + 1) {
                    Some(Part::Lit(next)) => match rest.find(next.as_str()) {
                        Some(e) => e,
                        None => return false,
                    },
                    _ => rest.len(),
                };
                if end == 0 {
                    return false;
                }
                params.push((
                    name.clone(),
                    seg.get(at..at + end).unwrap_or_default().to_string(),
                ));
                at += end;
            }
        }
        i += 1;
    }
    at == cmp.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(ts: &[&str]) -> Router {
        let mut r = Router::new(false, false);
        for (i, t) in ts.iter().enumerate() {
            r.insert(t, i).unwrap();
        }
        r
    }

    #[test]
    fn concrete_beats_templated_left_to_right() {
        let r = router(&[
            "/pets/{id}",
            "/pets/mine",
            "/{kind}/mine",
            "/pets/{id}/toys/{toy}",
            "/pets/{id}/toys/best",
            "/",
        ]);
        assert_eq!(r.find("/pets/mine"), Some((1, vec![])));
        assert_eq!(
            r.find("/pets/7"),
            Some((0, vec![("id".into(), "7".into())]))
        );
        assert_eq!(
            r.find("/dogs/mine"),
            Some((2, vec![("kind".into(), "dogs".into())]))
        );
        assert_eq!(r.find("/pets/7/toys/best").map(|m| m.0), Some(4));
        assert_eq!(r.find("/pets/7/toys/ball").map(|m| m.0), Some(3));
        assert_eq!(r.find("/").map(|m| m.0), Some(5));
        assert_eq!(r.find("/pets"), None);
        assert_eq!(
            r.find("/pets/7/"),
            None,
            "trailing slash is a different path"
        );
        assert_eq!(r.find("/pets/"), None, "empty parameter value");
        assert_eq!(r.find("pets/7"), None);
    }

    #[test]
    fn several_parameters_in_one_segment() {
        let r = router(&[
            "/reports/{year}-{month}.{format}",
            "/reports/{name}",
            "/files/{name}.json",
        ]);
        assert_eq!(
            r.find("/reports/2024-05.csv"),
            Some((
                0,
                vec![
                    ("year".into(), "2024".into()),
                    ("month".into(), "05".into()),
                    ("format".into(), "csv".into())
                ]
            ))
        );
        assert_eq!(r.find("/reports/summary").map(|m| m.0), Some(1));
        assert_eq!(
            r.find("/files/a.json"),
            Some((2, vec![("name".into(), "a".into())]))
        );
        assert_eq!(r.find("/files/a.xml"), None);
    }

    #[test]
    fn values_are_percent_decoded_after_splitting() {
        let r = router(&["/users/{name}", "/a b"]);
        assert_eq!(
            r.find("/users/a%2Fb%20c"),
            Some((0, vec![("name".into(), "a/b c".into())]))
        );
        assert_eq!(r.find("/a%20b").map(|m| m.0), Some(1));
    }

    #[test]
    fn bad_templates_are_refused() {
        let mut r = Router::default();
        assert!(r.insert("pets", 0).is_err());
        assert!(r.insert("/pets/{id", 0).is_err());
        assert!(r.insert("/pets/{}", 0).is_err());
        assert!(r.insert("/pets/{a}{b}", 0).is_err());
    }

    #[test]
    fn templates_differing_only_in_parameter_names_are_all_found() {
        let mut r = Router::default();
        assert!(r.insert("/pets/{id}", 0).unwrap().is_empty());
        assert!(r.insert("/pets/mine", 1).unwrap().is_empty());
        assert_eq!(r.insert("/pets/{petId}", 2).unwrap(), vec![0]);
        assert_eq!(r.insert("/pets/{name}", 3).unwrap(), vec![0, 2]);
        assert_eq!(
            r.find_all("/pets/7"),
            vec![
                (0, vec![("id".into(), "7".into())]),
                (2, vec![("petId".into(), "7".into())]),
                (3, vec![("name".into(), "7".into())]),
            ]
        );
        // A more concrete template still wins alone.
        assert_eq!(r.find_all("/pets/mine"), vec![(1, vec![])]);
        assert!(r.find_all("/owners/7").is_empty());
        assert!(r.find_all("pets/7").is_empty());
    }

    #[test]
    fn case_and_trailing_slash_options() {
        let mut r = Router::new(true, true);
        for (i, t) in ["/Users/{name}/", "/reports/{y}-{m}.CSV", "/"]
            .iter()
            .enumerate()
        {
            r.insert(t, i).unwrap();
        }
        for (path, want) in [
            (
                "/users/Alice",
                Some((0, vec![("name".into(), "Alice".into())])),
            ),
            (
                "/USERS/Alice/",
                Some((0, vec![("name".into(), "Alice".into())])),
            ),
            (
                "/REPORTS/2024-May.csv",
                Some((
                    1,
                    vec![("y".into(), "2024".into()), ("m".into(), "May".into())],
                )),
            ),
            ("/", Some((2, vec![]))),
            ("/users/", None),
        ] {
            assert_eq!(r.find(path), want, "{path}");
        }
        let strict = router(&["/Users/{name}"]);
        assert_eq!(strict.find("/users/a"), None);
        assert_eq!(strict.find("/Users/a/"), None);
        // Equivalent once the trailing slash does not count.
        let mut r = Router::new(false, true);
        assert!(r.insert("/a", 0).unwrap().is_empty());
        assert_eq!(r.insert("/a/", 1).unwrap(), vec![0]);
    }
}
