//! Token bucket arithmetic: discrete fills computed lazily from the elapsed time.
//!
//! Semantics follow Envoy's `local_ratelimit`: a bucket holds at most `max_tokens`; every
//! `fill_interval`, `tokens_per_fill` tokens are added (never above `max_tokens`). A new bucket
//! starts full. There are no timers: whenever a bucket is read, the fills that happened since
//! `last_fill` are added and `last_fill` moves forward by whole intervals, so the phase of the
//! fills stays anchored to the bucket's creation. Everything is integer arithmetic, so N
//! workers computing the same state from the same stored values always agree.

/// The parameters of one rule's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    /// Milliseconds between fills (≥ 50).
    pub fill_interval_ms: u64,
}

/// A bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    pub tokens: u32,
    /// Time (ms since the epoch) of the last fill boundary.
    pub last_fill: u64,
}

impl TokenBucket {
    /// A bucket created at `now`: full.
    pub fn fresh(&self, now: u64) -> BucketState {
        BucketState {
            tokens: self.max_tokens,
            last_fill: now,
        }
    }

    /// The state at `now`, with the fills since `last_fill` added. A clock that went back
    /// (`now < last_fill`) adds nothing. Stored tokens above `max_tokens` (a configuration
    /// that lowered the maximum) are clamped.
    pub fn refill(&self, state: BucketState, now: u64) -> BucketState {
        let tokens = state.tokens.min(self.max_tokens);
        let interval = self.fill_interval_ms.max(1);
        let elapsed = now.saturating_sub(state.last_fill);
        let fills = elapsed / interval;
        if fills == 0 {
            return BucketState {
                tokens,
                last_fill: state.last_fill,
            };
        }
        let added = fills.saturating_mul(u64::from(self.tokens_per_fill));
        let total = u64::from(tokens)
            .saturating_add(added)
            .min(u64::from(self.max_tokens));
        BucketState {
            tokens: u32::try_from(total).unwrap_or(self.max_tokens),
            last_fill: state
                .last_fill
                .saturating_add(fills.saturating_mul(interval)),
        }
    }

    /// Milliseconds from `now` until the next fill of a bucket whose last fill was at
    /// `last_fill` (at most one interval, also when the clock went back).
    pub fn ms_until_next_fill(&self, state: BucketState, now: u64) -> u64 {
        let interval = self.fill_interval_ms.max(1);
        state
            .last_fill
            .saturating_add(interval)
            .saturating_sub(now)
            .clamp(1, interval)
    }

    /// Whole seconds until a token is available again for an empty bucket: the next fill,
    /// rounded up, at least 1 (the `Retry-After` value).
    pub fn retry_after_secs(&self, state: BucketState, now: u64) -> u64 {
        ceil_secs(self.ms_until_next_fill(state, now)).max(1)
    }

    /// The draft header's `t`: seconds until the bucket gains tokens again, 0 when it is full.
    pub fn reset_secs(&self, state: BucketState, now: u64) -> u64 {
        if state.tokens >= self.max_tokens {
            0
        } else {
            ceil_secs(self.ms_until_next_fill(state, now))
        }
    }

    /// The draft header's `w`: seconds an empty bucket needs to fill up completely (rounded
    /// up, at least 1), so `q` = `max_tokens` per `w` never overstates the allowance.
    pub fn window_secs(&self) -> u64 {
        let per_fill = u64::from(self.tokens_per_fill.max(1));
        let fills = u64::from(self.max_tokens).div_ceil(per_fill);
        ceil_secs(fills.saturating_mul(self.fill_interval_ms)).max(1)
    }

    /// How much of the bucket is used, as a fraction `deficit / max_tokens` (returned as the
    /// pair), after refilling to `now`. Used to pick the cheapest slot to evict.
    pub fn deficit(&self, state: BucketState, now: u64) -> (u64, u64) {
        let s = self.refill(state, now);
        (
            u64::from(self.max_tokens.saturating_sub(s.tokens)),
            u64::from(self.max_tokens.max(1)),
        )
    }
}

fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_767_225_600_000;

    fn tb(max: u32, per: u32, ms: u64) -> TokenBucket {
        TokenBucket {
            max_tokens: max,
            tokens_per_fill: per,
            fill_interval_ms: ms,
        }
    }

    #[test]
    fn fresh_bucket_is_full() {
        assert_eq!(
            tb(5, 1, 1000).fresh(T0),
            BucketState {
                tokens: 5,
                last_fill: T0
            }
        );
    }

    #[test]
    fn refill_adds_whole_fills_only_and_keeps_the_phase() {
        let b = tb(10, 3, 1000);
        let s = BucketState {
            tokens: 0,
            last_fill: T0,
        };
        assert_eq!(
            b.refill(s, T0 + 999),
            BucketState {
                tokens: 0,
                last_fill: T0
            }
        );
        assert_eq!(
            b.refill(s, T0 + 1000),
            BucketState {
                tokens: 3,
                last_fill: T0 + 1000
            }
        );
        // 2.5 intervals: two fills, phase stays on the 1 s grid.
        assert_eq!(
            b.refill(s, T0 + 2500),
            BucketState {
                tokens: 6,
                last_fill: T0 + 2000
            }
        );
        // Never above max.
        assert_eq!(
            b.refill(s, T0 + 3_600_000),
            BucketState {
                tokens: 10,
                last_fill: T0 + 3_600_000
            }
        );
    }

    #[test]
    fn refill_is_the_same_in_one_step_or_many() {
        let b = tb(100, 7, 130);
        let start = BucketState {
            tokens: 3,
            last_fill: T0,
        };
        let mut stepwise = start;
        for t in (0..=5000).step_by(17) {
            stepwise = b.refill(stepwise, T0 + t);
        }
        assert_eq!(stepwise, b.refill(start, T0 + 5000 - 5000 % 17));
    }

    #[test]
    fn clock_going_back_adds_nothing() {
        let b = tb(10, 1, 1000);
        let s = BucketState {
            tokens: 2,
            last_fill: T0 + 5000,
        };
        assert_eq!(b.refill(s, T0), s);
        assert_eq!(b.ms_until_next_fill(s, T0), 1000, "capped at one interval");
    }

    #[test]
    fn lowered_max_clamps_stored_tokens() {
        let b = tb(5, 1, 1000);
        assert_eq!(
            b.refill(
                BucketState {
                    tokens: 50,
                    last_fill: T0
                },
                T0
            )
            .tokens,
            5
        );
    }

    #[test]
    fn huge_values_saturate() {
        let b = tb(u32::MAX, u32::MAX, 50);
        let s = BucketState {
            tokens: u32::MAX - 1,
            last_fill: 0,
        };
        assert_eq!(b.refill(s, u64::MAX).tokens, u32::MAX);
        assert!(b.window_secs() >= 1);
    }

    #[test]
    fn retry_after_is_the_next_fill_rounded_up_and_at_least_one() {
        let b = tb(10, 1, 60_000);
        let s = BucketState {
            tokens: 0,
            last_fill: T0,
        };
        assert_eq!(b.retry_after_secs(s, T0), 60);
        assert_eq!(b.retry_after_secs(s, T0 + 59_001), 1);
        assert_eq!(b.retry_after_secs(s, T0 + 58_999), 2);
        let fast = tb(10, 1, 50);
        assert_eq!(fast.retry_after_secs(fast.fresh(T0), T0 + 10), 1);
    }

    #[test]
    fn reset_is_zero_when_full() {
        let b = tb(10, 1, 60_000);
        assert_eq!(b.reset_secs(b.fresh(T0), T0 + 5), 0);
        assert_eq!(
            b.reset_secs(
                BucketState {
                    tokens: 9,
                    last_fill: T0
                },
                T0 + 500
            ),
            60
        );
    }

    #[test]
    fn window_is_the_time_to_fill_an_empty_bucket() {
        assert_eq!(tb(100, 100, 60_000).window_secs(), 60);
        assert_eq!(tb(5, 5, 60_000).window_secs(), 60);
        assert_eq!(tb(10, 1, 1000).window_secs(), 10);
        assert_eq!(tb(10, 3, 1000).window_secs(), 4);
        assert_eq!(tb(5, 5, 500).window_secs(), 1);
    }

    #[test]
    fn deficit_counts_refills() {
        let b = tb(10, 2, 1000);
        let s = BucketState {
            tokens: 4,
            last_fill: T0,
        };
        assert_eq!(b.deficit(s, T0), (6, 10));
        assert_eq!(b.deficit(s, T0 + 2000), (2, 10));
        assert_eq!(b.deficit(s, T0 + 10_000), (0, 10));
    }
}
