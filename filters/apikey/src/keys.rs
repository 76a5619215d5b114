//! The key index: SHA-256 digests of the configured keys, looked up in O(1) per request.
//!
//! A presented key is hashed once (SHA-256); the first 8 bytes of its digest select a bucket
//! of a hash map built at configure time, and the full 32-byte digest is then confirmed against
//! every entry of that bucket (almost always one) with a constant-time comparison. The map only
//! ever compares digest prefixes of the *presented* key, so the time a lookup takes says nothing
//! about the configured keys beyond what SHA-256 pre-image resistance already hides. Neither keys
//! nor digests are ever logged or put in an error message.

use std::collections::HashMap;

/// Longest key accepted from a request, in bytes (longer: invalid, never hashed).
pub const MAX_KEY_BYTES: usize = 1024;

/// Prefix of a key given as its SHA-256 digest.
pub const DIGEST_PREFIX: &str = "sha256:";

pub type Digest = [u8; 32];

/// SHA-256 of `key`.
pub fn sha256(key: &[u8]) -> Digest {
    hmac_sha256::Hash::hash(key)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether a configured key may be given in clear: visible ASCII without the characters that
/// separate values in the places keys come from (`,` in headers, `;` in cookies, quotes,
/// backslashes), so the key can be sent in any source.
pub fn plain_key_ok(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b';' | b'"' | b'\\'))
}

/// A configured key: its digest, and whether it was given in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfiguredKey {
    pub digest: Digest,
    pub plain: bool,
}

/// Reads one configured key: `sha256:` and 64 hex digits, or the key itself. The error never
/// repeats the key.
pub fn parse_key(s: &str) -> Result<ConfiguredKey, &'static str> {
    if let Some(hex) = s.strip_prefix(DIGEST_PREFIX) {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err("a `sha256:` key must be followed by exactly 64 hex digits");
        }
        let mut digest = [0u8; 32];
        for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
            let (Some(h), Some(l)) = (
                pair.first().copied().and_then(hex_value),
                pair.get(1).copied().and_then(hex_value),
            ) else {
                return Err("a `sha256:` key must be followed by exactly 64 hex digits");
            };
            *out = (h << 4) | l;
        }
        return Ok(ConfiguredKey {
            digest,
            plain: false,
        });
    }
    if !plain_key_ok(s) {
        return Err("a key given in clear must be 1-1024 visible ASCII characters without `,` `;` `\"` `\\` (or give `sha256:<64 hex digits>`)");
    }
    Ok(ConfiguredKey {
        digest: sha256(s.as_bytes()),
        plain: true,
    })
}

fn prefix(d: &Digest) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&d[..8]);
    u64::from_le_bytes(p)
}

/// Digest → consumer index, built once.
#[derive(Debug, Default)]
pub struct KeyIndex {
    /// Digest prefix → range of `entries` with that prefix.
    buckets: HashMap<u64, (u32, u32)>,
    /// (digest, consumer), sorted by prefix.
    entries: Vec<(Digest, u32)>,
}

impl KeyIndex {
    /// Builds the index from unique digests (duplicates are refused before, with their field).
    pub fn build(mut keys: Vec<(Digest, u32)>) -> Self {
        keys.sort_unstable_by_key(|(d, _)| prefix(d));
        let mut buckets: HashMap<u64, (u32, u32)> = HashMap::with_capacity(keys.len());
        for (i, (d, _)) in keys.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            buckets
                .entry(prefix(d))
                .and_modify(|(_, len)| *len = len.saturating_add(1))
                .or_insert((i, 1));
        }
        KeyIndex {
            buckets,
            entries: keys,
        }
    }

    /// The consumer whose key is `key` (as presented: hashed here).
    pub fn lookup(&self, key: &[u8]) -> Option<u32> {
        if key.len() > MAX_KEY_BYTES {
            return None;
        }
        let d = sha256(key);
        let (start, len) = *self.buckets.get(&prefix(&d))?;
        let start = start as usize;
        let bucket = self.entries.get(start..start.checked_add(len as usize)?)?;
        // Every entry of the bucket is compared, in constant time each.
        let mut found = None;
        for (digest, consumer) in bucket {
            if meshwall_core::ct_eq(&d, digest) {
                found = Some(*consumer);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The largest number of digests compared for one lookup.
    pub fn max_bucket_len(&self) -> usize {
        self.buckets
            .values()
            .map(|(_, l)| *l as usize)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &Digest) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn configured_keys() {
        let d = sha256(b"k-123");
        for spelling in [hex(&d), hex(&d).to_uppercase()] {
            let k = parse_key(&format!("sha256:{spelling}")).unwrap();
            assert_eq!(
                k,
                ConfiguredKey {
                    digest: d,
                    plain: false
                }
            );
        }
        assert_eq!(
            parse_key("k-123").unwrap(),
            ConfiguredKey {
                digest: d,
                plain: true
            }
        );
        let long = "k".repeat(1025);
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha256:{}0", hex(&d)),
            &format!("sha256: {}", &hex(&d)[1..]),
            "has space",
            "a,b",
            "a;b",
            "a\"b",
            "a\\b",
            "é",
            "tab\there",
            &long,
        ] {
            let e = parse_key(bad).unwrap_err();
            assert!(
                bad.len() < 8 || !e.contains(bad),
                "never repeats the key: {e}"
            );
        }
    }

    #[test]
    fn lookup_finds_exactly_the_configured_keys() {
        let keys: Vec<(Digest, u32)> = (0..1000u32)
            .map(|i| (sha256(format!("key-{i}").as_bytes()), i))
            .collect();
        let idx = KeyIndex::build(keys);
        assert_eq!(idx.len(), 1000);
        for i in [0u32, 1, 499, 999] {
            assert_eq!(idx.lookup(format!("key-{i}").as_bytes()), Some(i));
        }
        for miss in ["key-1000", "key-", "KEY-1", "key-1 ", ""] {
            assert_eq!(idx.lookup(miss.as_bytes()), None, "{miss:?}");
        }
        assert_eq!(idx.lookup(&[b'k'; MAX_KEY_BYTES + 1]), None);
        assert_eq!(idx.max_bucket_len(), 1);
    }

    #[test]
    fn digests_sharing_a_prefix_are_both_confirmed() {
        let a = sha256(b"a");
        let mut b = a;
        b[31] ^= 0xff; // same 8-byte prefix, another digest
        let idx = KeyIndex::build(vec![(b, 7), (a, 3)]);
        assert_eq!(idx.max_bucket_len(), 2);
        assert_eq!(idx.lookup(b"a"), Some(3));
        assert_eq!(idx.lookup(b"b"), None);
    }
}
