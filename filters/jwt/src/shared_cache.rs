//! The verified-token cache shared by all workers: a fixed table of `shared_cache_size` slots in
//! Envoy's shared data (keys `meshwall.jwt.vcache.<slot>`, made once per slot and never per
//! token: Envoy never frees a shared-data key), behind each worker's own LRU.
//!
//! A slot holds one verified token: `[format][key hash: 32][keys version: 8][until: 8][payload]`,
//! where the key hash is SHA-256 of (format, SHA-256 of the token, the provider's fingerprint:
//! its name and whole configuration), so a slot answers only for the same token, provider and
//! configuration, and only while the provider's keys keep that version and until `exp` + skew.
//! The payload (the token's claims as JSON, at most [`MAX_PAYLOAD`] bytes; a larger token is
//! not shared) gives the rules and the claim headers what they need. Two tokens hashing to one
//! slot evict each other (the last writer wins); only verified tokens are stored, so a flood of
//! forged tokens never writes.

use meshwall_core::Host;

/// Most slots a table may have.
pub const MAX_SLOTS: usize = 65_536;
/// Largest payload (claims JSON) stored in a slot: the table holds at most
/// `slots × (MAX_PAYLOAD + 49)` bytes.
pub const MAX_PAYLOAD: usize = 2048;
const FORMAT: u8 = 1;
const HEAD: usize = 1 + 32 + 8 + 8;

pub struct SharedCache {
    slots: u32,
}

/// What a slot remembers of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub keys_version: u64,
    pub until: u64,
    pub payload: Vec<u8>,
}

/// The provider's fingerprint: SHA-256 of its name and configuration (as `Debug` shows it:
/// every field, maps in key order) and the module version.
pub fn fingerprint(name: &str, config_debug: &str) -> [u8; 32] {
    let mut h = hmac_sha256::Hash::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0u8]);
    h.update(name.as_bytes());
    h.update([0u8]);
    h.update(config_debug.as_bytes());
    h.finalize()
}

/// The key hash of a token (its SHA-256) for a provider (its fingerprint).
pub fn key_hash(token_hash: &[u8; 32], provider: &[u8; 32]) -> [u8; 32] {
    let mut h = hmac_sha256::Hash::new();
    h.update([FORMAT]);
    h.update(token_hash);
    h.update(provider);
    h.finalize()
}

impl SharedCache {
    /// `None` for 0 slots (no shared cache).
    pub fn new(slots: usize) -> Option<SharedCache> {
        let slots = u32::try_from(slots.min(MAX_SLOTS))
            .ok()
            .filter(|s| *s > 0)?;
        Some(SharedCache { slots })
    }

    fn slot_key(&self, key: &[u8; 32]) -> String {
        let n = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) % self.slots;
        format!("meshwall.jwt.vcache.{n}")
    }

    /// The entry for `key`, if its slot holds it.
    pub fn get(&self, key: &[u8; 32], host: &dyn Host) -> Option<Entry> {
        let (v, _) = host.shared_get(&self.slot_key(key)).ok()??;
        if v.len() < HEAD || v.first() != Some(&FORMAT) || v.get(1..33)? != key.as_slice() {
            return None;
        }
        let num = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(v.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Entry {
            keys_version: num(33)?,
            until: num(41)?,
            payload: v.get(HEAD..)?.to_vec(),
        })
    }

    /// Stores `entry` for `key` (replacing whatever the slot held); a payload over
    /// [`MAX_PAYLOAD`] is not stored.
    pub fn put(&self, key: &[u8; 32], entry: &Entry, host: &dyn Host) {
        if entry.payload.len() > MAX_PAYLOAD {
            return;
        }
        let mut v = Vec::with_capacity(HEAD + entry.payload.len());
        v.push(FORMAT);
        v.extend_from_slice(key);
        v.extend_from_slice(&entry.keys_version.to_le_bytes());
        v.extend_from_slice(&entry.until.to_le_bytes());
        v.extend_from_slice(&entry.payload);
        if let Err(e) = host.shared_set(&self.slot_key(key), &v, None) {
            meshwall_core::policy_log!(
                debug,
                crate::policy::JwtPolicy,
                "shared cache write failed: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwall_core::MemHost;

    #[test]
    fn a_slot_answers_only_for_its_own_key() {
        let h = MemHost::new();
        let c = SharedCache::new(4).unwrap();
        let p = fingerprint("p", "cfg");
        let k1 = key_hash(&[1; 32], &p);
        let e = Entry {
            keys_version: 3,
            until: 99,
            payload: b"{\"sub\":\"a\"}".to_vec(),
        };
        c.put(&k1, &e, &h);
        assert_eq!(c.get(&k1, &h), Some(e.clone()));
        // Another provider configuration, another token: not this entry.
        assert_eq!(
            c.get(&key_hash(&[1; 32], &fingerprint("p", "cfg2")), &h),
            None
        );
        assert_eq!(c.get(&key_hash(&[2; 32], &p), &h), None);
        // Oversized payloads are not stored; the table never grows past its slots.
        let big = Entry {
            payload: vec![b' '; MAX_PAYLOAD + 1],
            ..e
        };
        for i in 0..200u8 {
            let k = key_hash(&[i; 32], &p);
            c.put(&k, &big, &h);
            c.put(
                &k,
                &Entry {
                    payload: b"{}".to_vec(),
                    ..big.clone()
                },
                &h,
            );
        }
        assert!(h.shared_key_count() <= 4);
        assert!(SharedCache::new(0).is_none());
    }
}
