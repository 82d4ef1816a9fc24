//! Single-use ids: a bounded cache of seen ids (DPoP proof `jti`s, approval
//! tokens, message-signature nonces), each remembered until the thing it
//! names has expired.
//!
//! A replay cache must never forget an id that is still live: that would let
//! it be used twice. So when the cache is full and its oldest entry is still
//! live, a new id is *refused* ([`FirstUse::Full`], answered `503` with
//! `Retry-After`) instead of evicting it. Expired entries are dropped as new
//! ones arrive. A client that floods the cache with fresh proofs of its own
//! can slow others down until its proofs expire, but can never make another
//! agent's captured proof replayable; rate limits and the circuit breaker
//! bound such a client.

use lru::LruCache;

/// What recording a single-use id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// First use: recorded.
    Fresh,
    /// Seen before and not yet expired: a replay.
    Replayed,
    /// Not recorded: the cache is full of live ids. Retry after this many seconds.
    Full {
        /// Seconds until the oldest entry expires (at least 1).
        retry_after_secs: u64,
    },
}

/// Remembers ids until they expire; bounded; never forgets a live id.
#[derive(Debug)]
pub struct ReplayCache {
    /// Insertion order (lookups only `peek`), so the LRU end is the oldest entry.
    seen: LruCache<[u8; 32], i64>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache of `capacity` ids (at least one). Memory grows with use, up to the capacity.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache { seen: LruCache::unbounded(), capacity: capacity.max(1) }
    }

    /// Records `key` until `expires_at` (Unix seconds), or says why not.
    pub fn first_use(&mut self, key: [u8; 32], now: i64, expires_at: i64) -> FirstUse {
        if let Some(&until) = self.seen.peek(&key) {
            if now < until {
                return FirstUse::Replayed;
            }
            self.seen.put(key, expires_at);
            return FirstUse::Fresh;
        }
        // Drop expired entries from the old end; each is dropped once, so this is amortised O(1).
        while let Some((_, &until)) = self.seen.peek_lru() {
            if now < until && self.seen.len() < self.capacity {
                break;
            }
            if now < until {
                let wait = u64::try_from(until.saturating_sub(now)).unwrap_or(u64::MAX).max(1);
                return FirstUse::Full { retry_after_secs: wait };
            }
            self.seen.pop_lru();
        }
        self.seen.put(key, expires_at);
        FirstUse::Fresh
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The most ids held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_within_expiry_is_a_replay() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.first_use([1; 32], 100, 160), FirstUse::Fresh);
        assert_eq!(c.first_use([1; 32], 159, 220), FirstUse::Replayed);
        assert_eq!(c.first_use([1; 32], 160, 220), FirstUse::Fresh, "expired ids may be seen again");
        assert_eq!(c.first_use([2; 32], 100, 160), FirstUse::Fresh);
    }

    #[test]
    fn full_of_live_ids_refuses_instead_of_forgetting() {
        let mut c = ReplayCache::new(3);
        for i in 0..3u8 {
            assert_eq!(c.first_use([i; 32], 0, 100 + i64::from(i)), FirstUse::Fresh);
        }
        // A flood of fresh ids is refused; none of the live ids is forgotten.
        for i in 10..50u8 {
            assert_eq!(c.first_use([i; 32], 40, 200), FirstUse::Full { retry_after_secs: 60 });
        }
        assert_eq!(c.len(), 3);
        for i in 0..3u8 {
            assert_eq!(c.first_use([i; 32], 41, 300), FirstUse::Replayed, "id {i} must still be remembered");
        }
        // Once the oldest expires, room is made for exactly the expired ones.
        assert_eq!(c.first_use([60; 32], 100, 200), FirstUse::Fresh);
        assert_eq!(c.first_use([61; 32], 100, 200), FirstUse::Full { retry_after_secs: 1 });
        assert_eq!(c.first_use([62; 32], 102, 200), FirstUse::Fresh);
        assert_eq!(c.len(), 2, "both expired ids were dropped");
    }

    #[test]
    fn bounded_and_expired_entries_are_dropped() {
        let mut c = ReplayCache::new(3);
        for i in 0..10u8 {
            assert_eq!(c.first_use([i; 32], i64::from(i) * 100, i64::from(i) * 100 + 50), FirstUse::Fresh);
        }
        assert!(c.len() <= 3);
    }
}
