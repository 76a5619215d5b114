//! The fixed-size bucket table kept in shared data.
//!
//! Envoy can never delete a shared-data key, so the table has a fixed number of keys
//! (`shards`), each holding a fixed array of `slots_per_shard` bucket slots. A bucket's
//! identity is a 64-bit fingerprint of (rule, key) made with a keyed hash (SipHash-1-3, secret
//! random seed shared by the workers), which also picks the shard. Memory is therefore
//! `shards × (HEADER_LEN + slots × SLOT_LEN)` bytes whatever the number of clients.
//!
//! Shard value layout (little-endian): `"MWR1"`, `u16` slot count, `u16` reserved, then the
//! slots, each `fp u64 | rule_tag u32 | tokens u32 | last_fill u64 | last_used u64`.
//! `fp == 0` marks a slot never used.

use crate::bucket::{BucketState, TokenBucket};

pub const MAGIC: &[u8; 4] = b"MWR1";
pub const HEADER_LEN: usize = 8;
pub const SLOT_LEN: usize = 32;

/// One bucket slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// Fingerprint of (rule, key); 0 = free.
    pub fp: u64,
    /// Identifies the rule whose parameters apply (hash of its name).
    pub rule_tag: u32,
    pub tokens: u32,
    pub last_fill: u64,
    pub last_used: u64,
}

impl Slot {
    pub fn state(&self) -> BucketState {
        BucketState {
            tokens: self.tokens,
            last_fill: self.last_fill,
        }
    }

    pub fn set_state(&mut self, s: BucketState) {
        self.tokens = s.tokens;
        self.last_fill = s.last_fill;
    }
}

/// One shard: a fixed array of slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub slots: Vec<Slot>,
}

/// How a slot was obtained for a key that had none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A never-used slot, or one whose rule no longer exists.
    Free,
    /// A bucket that had refilled completely: dropping it loses nothing, since a new bucket
    /// starts full too.
    Reclaimed,
    /// A bucket that was not full: its owner will get a fresh bucket when it comes back.
    Evicted,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

/// Bytes of one shard value with `slots` slots.
pub fn shard_len(slots: usize) -> usize {
    HEADER_LEN + slots * SLOT_LEN
}

impl Shard {
    pub fn empty(slots: usize) -> Self {
        Shard {
            slots: vec![Slot::default(); slots],
        }
    }

    /// Parses a stored shard. Anything that is not exactly a shard of `slots` slots (an older
    /// layout, a truncated value) reads as `None`; the caller then starts the shard afresh.
    pub fn decode(bytes: &[u8], slots: usize) -> Option<Self> {
        if bytes.len() != shard_len(slots) || bytes.get(..4) != Some(MAGIC.as_slice()) {
            return None;
        }
        let count = bytes
            .get(4..6)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_le_bytes)?;
        // Bytes 6..8 are reserved (written as zeros): a value that uses them is another format.
        if usize::from(count) != slots || bytes.get(6..HEADER_LEN) != Some([0u8, 0].as_slice()) {
            return None;
        }
        let mut out = Vec::with_capacity(slots);
        for i in 0..slots {
            let at = HEADER_LEN + i * SLOT_LEN;
            out.push(Slot {
                fp: u64_at(bytes, at)?,
                rule_tag: u32_at(bytes, at + 8)?,
                tokens: u32_at(bytes, at + 12)?,
                last_fill: u64_at(bytes, at + 16)?,
                last_used: u64_at(bytes, at + 24)?,
            });
        }
        Some(Shard { slots: out })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(shard_len(self.slots.len()));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(
            &u16::try_from(self.slots.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        b.extend_from_slice(&[0, 0]);
        for s in &self.slots {
            b.extend_from_slice(&s.fp.to_le_bytes());
            b.extend_from_slice(&s.rule_tag.to_le_bytes());
            b.extend_from_slice(&s.tokens.to_le_bytes());
            b.extend_from_slice(&s.last_fill.to_le_bytes());
            b.extend_from_slice(&s.last_used.to_le_bytes());
        }
        b
    }

    /// The slot holding bucket `fp`.
    pub fn find(&self, fp: u64, rule_tag: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.fp == fp && s.rule_tag == rule_tag && fp != 0)
    }

    /// Picks the slot for a bucket that has none, never one listed in `taken` (slots this
    /// request already uses). `params(tag)` gives the bucket parameters of a rule tag (`None`
    /// for a rule that no longer exists).
    ///
    /// Order: a free slot; then the slot whose eviction forgives the fewest tokens — its
    /// deficit `(max − tokens) / max` after refilling to `now` — so full, idle buckets go first
    /// and lose nothing; ties go to the least recently used. Returns `None` only when every
    /// slot is in `taken`.
    pub fn choose_victim(
        &self,
        now: u64,
        taken: &[usize],
        params: impl Fn(u32) -> Option<TokenBucket>,
    ) -> Option<(usize, Claim)> {
        let mut best: Option<(usize, (u64, u64), u64)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if taken.contains(&i) {
                continue;
            }
            let Some(tb) = (if s.fp == 0 { None } else { params(s.rule_tag) }) else {
                return Some((i, Claim::Free));
            };
            let d = tb.deficit(s.state(), now);
            let better = match &best {
                None => true,
                Some((_, bd, bu)) => {
                    // d.0/d.1 < bd.0/bd.1, compared without division.
                    let lhs = u128::from(d.0) * u128::from(bd.1);
                    let rhs = u128::from(bd.0) * u128::from(d.1);
                    lhs < rhs || (lhs == rhs && s.last_used < *bu)
                }
            };
            if better {
                best = Some((i, d, s.last_used));
            }
        }
        best.map(|(i, d, _)| {
            (
                i,
                if d.0 == 0 {
                    Claim::Reclaimed
                } else {
                    Claim::Evicted
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_767_225_600_000;

    fn params(tag: u32) -> Option<TokenBucket> {
        match tag {
            1 => Some(TokenBucket {
                max_tokens: 10,
                tokens_per_fill: 1,
                fill_interval_ms: 1000,
            }),
            2 => Some(TokenBucket {
                max_tokens: 100,
                tokens_per_fill: 100,
                fill_interval_ms: 60_000,
            }),
            _ => None,
        }
    }

    fn slot(fp: u64, tag: u32, tokens: u32, last_used: u64) -> Slot {
        Slot {
            fp,
            rule_tag: tag,
            tokens,
            last_fill: T0,
            last_used,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut s = Shard::empty(3);
        s.slots[1] = Slot {
            fp: u64::MAX,
            rule_tag: 7,
            tokens: 42,
            last_fill: T0,
            last_used: T0 + 5,
        };
        let bytes = s.encode();
        assert_eq!(bytes.len(), shard_len(3));
        assert_eq!(Shard::decode(&bytes, 3), Some(s));
    }

    #[test]
    fn foreign_or_damaged_values_read_as_none() {
        let good = Shard::empty(2).encode();
        assert_eq!(Shard::decode(&good, 3), None, "other slot count");
        assert_eq!(Shard::decode(&good[..good.len() - 1], 2), None, "truncated");
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Shard::decode(&bad, 2), None, "magic");
        let mut lying = good.clone();
        lying[4] = 9;
        assert_eq!(Shard::decode(&lying, 2), None, "header slot count");
        // Found by the ratelimit_rls fuzz target: reserved header bytes were accepted and
        // written back as zeros (a decode/encode round trip that changed the value).
        let mut reserved = good;
        reserved[7] = 1;
        assert_eq!(Shard::decode(&reserved, 2), None, "reserved header bytes");
        assert_eq!(Shard::decode(b"", 0), None);
    }

    #[test]
    fn find_needs_fingerprint_and_rule() {
        let mut s = Shard::empty(2);
        s.slots[1] = slot(5, 1, 3, T0);
        assert_eq!(s.find(5, 1), Some(1));
        assert_eq!(s.find(5, 2), None);
        assert_eq!(s.find(0, 0), None, "a free slot is nobody's");
    }

    #[test]
    fn free_slots_first_then_orphans() {
        let mut s = Shard::empty(3);
        s.slots[0] = slot(1, 1, 10, T0);
        assert_eq!(s.choose_victim(T0, &[], params), Some((1, Claim::Free)));
        s.slots[1] = slot(2, 1, 10, T0);
        s.slots[2] = slot(3, 99, 0, T0 + 10); // rule removed from the config
        assert_eq!(s.choose_victim(T0, &[], params), Some((2, Claim::Free)));
    }

    #[test]
    fn full_buckets_are_reclaimed_before_any_depleted_one_even_if_newer() {
        let mut s = Shard::empty(3);
        s.slots[0] = slot(1, 1, 0, T0); // oldest, empty
        s.slots[1] = slot(2, 1, 10, T0 + 20); // full, newest
        s.slots[2] = slot(3, 1, 5, T0 + 10);
        assert_eq!(
            s.choose_victim(T0 + 30, &[], params),
            Some((1, Claim::Reclaimed))
        );
    }

    #[test]
    fn refilled_buckets_count_as_full() {
        let mut s = Shard::empty(2);
        s.slots[0] = slot(1, 1, 0, T0 + 5); // 10 s later it has refilled to 10/10
        s.slots[1] = slot(2, 1, 8, T0 + 9_999); // used recently, 8/10 and no fill due yet
        s.slots[1].last_fill = T0 + 9_500;
        assert_eq!(
            s.choose_victim(T0 + 10_000, &[], params),
            Some((0, Claim::Reclaimed))
        );
    }

    #[test]
    fn under_pressure_the_smallest_deficit_goes_then_lru() {
        let mut s = Shard::empty(4);
        s.slots[0] = slot(1, 1, 0, T0); // 10/10 used, oldest
        s.slots[1] = slot(2, 2, 50, T0 + 3); // 50/100 used
        s.slots[2] = slot(3, 1, 5, T0 + 2); // 5/10 used (same fraction), older than slot 1
        s.slots[3] = slot(4, 2, 1, T0 + 1); // 99/100
        assert_eq!(
            s.choose_victim(T0 + 10, &[], params),
            Some((2, Claim::Evicted))
        );
        assert_eq!(
            s.choose_victim(T0 + 10, &[2], params),
            Some((1, Claim::Evicted))
        );
        assert_eq!(
            s.choose_victim(T0 + 10, &[1, 2], params),
            Some((3, Claim::Evicted))
        );
        assert_eq!(
            s.choose_victim(T0 + 10, &[1, 2, 3], params),
            Some((0, Claim::Evicted))
        );
        assert_eq!(s.choose_victim(T0 + 10, &[0, 1, 2, 3], params), None);
    }
}
