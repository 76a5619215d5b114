//! Which configured limit a request descriptor gets: envoyproxy/ratelimit's lookup, step by
//! step. At each level an entry matches the child `key_value`, else the first wildcard child
//! whose `key_value` pattern matches, else the default child `key`; the limit applies only if it
//! sits at the node of the descriptor's **last** entry; the walk stops at a node without
//! children.

use crate::config::{Config, Node};

/// One entry of a request descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

/// The limit a descriptor matched, and for every entry the value that names its counter: the
/// entry's own value, or the wildcard pattern (without `key_`) when it was matched through a
/// `share_threshold` wildcard (all matching values then share one counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub limit: usize,
    pub counter_values: Vec<String>,
}

/// The limit for `entries` in `domain`, if any.
pub fn lookup(domain: &Node, entries: &[Entry<'_>]) -> Option<Match> {
    let mut node = domain;
    let mut shared: Vec<Option<String>> = vec![None; entries.len()];
    let mut found = None;
    let last = entries.len().checked_sub(1)?;
    for (i, entry) in entries.iter().enumerate() {
        let kv = format!("{}_{}", entry.key, entry.value);
        let mut next = node.children.get(&kv);
        let mut via_wildcard = false;
        if next.is_none() {
            if let Some((k, _)) = node
                .wildcards
                .iter()
                .find(|(_, parts)| wildcard_match(parts, &kv))
            {
                next = node.children.get(k);
                via_wildcard = next.is_some();
            }
        }
        if next.is_none() {
            next = node.children.get(entry.key);
        }
        let Some(n) = next else { break };
        if via_wildcard && n.share_threshold {
            if let (Some(p), Some(slot)) = (&n.wildcard_pattern, shared.get_mut(i)) {
                let prefix = format!("{}_", entry.key);
                *slot = Some(p.strip_prefix(&prefix).unwrap_or(p).to_string());
            }
        }
        if i == last {
            found = n.limit;
        }
        if n.children.is_empty() {
            break;
        }
        node = n;
    }
    let limit = found?;
    let counter_values = entries
        .iter()
        .zip(shared)
        .map(|(e, s)| s.unwrap_or_else(|| e.value.to_string()))
        .collect();
    Some(Match {
        limit,
        counter_values,
    })
}

/// envoyproxy/ratelimit's wildcard match: `parts` is the pattern split on `*`; each `*`
/// matches any run of characters (also none).
pub fn wildcard_match(parts: &[String], value: &str) -> bool {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return first == value;
    }
    let fixed: usize = parts.iter().map(String::len).sum();
    if value.len() < fixed || !value.starts_with(first.as_str()) || !value.ends_with(last.as_str())
    {
        return false;
    }
    let Some(mut rest) = value.get(first.len()..value.len() - last.len()) else {
        return false;
    };
    for part in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
        match rest.find(part.as_str()) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    true
}

impl Config {
    /// The limit for a descriptor of a request to `domain` (None: unknown domain or no limit).
    pub fn lookup(&self, domain: &str, entries: &[Entry<'_>]) -> Option<Match> {
        lookup(self.domains.get(domain)?, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Vec<String> {
        p.split('*').map(str::to_string).collect()
    }

    #[test]
    fn wildcards_match_like_envoyproxy_ratelimit() {
        let cases = [
            ("wild_foo*", "wild_foo", true),
            ("wild_foo*", "wild_foobar", true),
            ("wild_foo*", "wild_fo", false),
            ("wild_foo*", "xwild_foo", false),
            ("midWild_bar*b", "midWild_barb", true),
            ("midWild_bar*b", "midWild_barxyzb", true),
            ("midWild_bar*b", "midWild_barxyz", false),
            ("midWild_bar*b", "midWild_bar", false),
            ("multiWild_foo*bar*baz", "multiWild_foo1bar2baz", true),
            ("multiWild_foo*bar*baz", "multiWild_foobarbaz", true),
            ("multiWild_foo*bar*baz", "multiWild_foobaz", false),
            ("multiWild_foo*bar*baz", "multiWild_foo_baz_bar", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                wildcard_match(&parts(pattern), value),
                want,
                "{pattern} ~ {value}"
            );
        }
    }
}
