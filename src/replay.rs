//! Single-use tokens: a bounded cache of seen ids (DPoP proof `jti`s, and
//! later approval tokens), each forgotten once the thing it names has expired.

use std::num::NonZeroUsize;

use lru::LruCache;

/// Remembers ids until they expire; bounded, least recently used evicted first.
///
/// Eviction of an unexpired id would let it be replayed, so capacity must
/// cover the ids one window can produce; entries are only added for proofs
/// that passed every other check (signature, binding to a valid token), so
/// filling the cache needs valid tokens, which rate limits bound.
#[derive(Debug)]
pub struct ReplayCache {
    seen: LruCache<[u8; 32], i64>,
}

impl ReplayCache {
    /// A cache of `capacity` ids (at least one).
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache { seen: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)) }
    }

    /// Records `key` until `expires_at`; `false` if it was already recorded and
    /// has not expired at `now` (a replay).
    pub fn first_use(&mut self, key: [u8; 32], now: i64, expires_at: i64) -> bool {
        if let Some(&until) = self.seen.peek(&key) {
            if now < until {
                return false;
            }
        }
        self.seen.put(key, expires_at);
        true
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_within_expiry_is_a_replay() {
        let mut c = ReplayCache::new(10);
        assert!(c.first_use([1; 32], 100, 160));
        assert!(!c.first_use([1; 32], 159, 220));
        assert!(c.first_use([1; 32], 160, 220), "expired ids may be seen again");
        assert!(c.first_use([2; 32], 100, 160));
    }

    #[test]
    fn bounded() {
        let mut c = ReplayCache::new(3);
        for i in 0..10u8 {
            assert!(c.first_use([i; 32], 0, 100));
        }
        assert_eq!(c.len(), 3);
    }
}
