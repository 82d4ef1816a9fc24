//! The verified-token cache: an agent's next request skips the signature check.
//!
//! Keyed by the token text itself: entries are found by a cheap 64-bit hash
//! of the text and then compared in full, in constant time, so a hit is only
//! ever for exactly the token that was verified. (A SHA-256 key, as before,
//! cost 4–7 µs per request in Wasm — a large share of a cached decision —
//! and bought nothing: the text comparison is what makes a hit safe. A
//! crafted token whose 64-bit hash collides with a cached one only misses,
//! and is then verified like any other.) Each entry holds its token's text
//! (~0.6 KiB for a typical token) next to the claims.
//!
//! Bounded (least-recently-used entries are evicted), and each entry is
//! dropped once the token expires or once its issuer's keys change. A hit only
//! skips *parsing and signature verification*: time, audience, binding,
//! delegation, revocation and scope are checked again on every request, so
//! the cache can never make a token valid that is not valid now.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use crate::token::VerifiedToken;

#[derive(Debug)]
struct Entry {
    text: Box<str>,
    token: Arc<VerifiedToken>,
    keys_generation: u64,
    expires_at: i64,
}

/// A bounded cache of verified tokens.
#[derive(Debug)]
pub struct TokenCache {
    entries: LruCache<u64, Entry>,
}

/// Where a token's entry lives: a multiply-rotate hash over 8-byte words
/// (FxHash's mixing step). It needs no collision resistance: the cache is
/// never trusted on the slot alone (see the module documentation).
fn slot(token: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut chunks = token.as_bytes().chunks_exact(8);
    let mut h = token.len() as u64;
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    }
    chunks.remainder().iter().fold(h, |h, b| mix(h, u64::from(*b)))
}

/// Whether `a` and `b` are the same bytes, in time that depends only on the
/// length: no early exit on the first difference, so response times say
/// nothing about how much of a guessed token matches a cached one.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = wa.remainder().iter().zip(wb.remainder()).fold(0u64, |d, (x, y)| d | u64::from(x ^ y));
    wa.zip(wb).fold(tail, |d, (x, y)| d | (word(x) ^ word(y))) == 0
}

/// A least-recently-used map holding at most `capacity` entries (at least
/// one) that grows as it fills. `LruCache::new` reserves every slot up front:
/// an engine's caches and state maps (100 000 + 100 000 + 100 000 + 10 000 +
/// 10 000 slots by default) then cost ~5 MiB before the first request, and
/// writing them was ~6 ms of a 10 ms `new Guard(policy)` in V8's Wasm,
/// most of a cold start, for maps that mostly stay small.
pub(crate) fn lru<K: Hash + Eq, V>(capacity: usize) -> LruCache<K, V> {
    let mut map = LruCache::unbounded();
    map.resize(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN));
    map
}

impl TokenCache {
    /// A cache of at most `capacity` entries; `None` when `capacity` is 0 (cache off).
    pub fn new(capacity: usize) -> Option<TokenCache> {
        NonZeroUsize::new(capacity).map(|c| TokenCache { entries: lru(c.get()) })
    }

    /// The verified `token`, if cached, unexpired at `now` and verified with
    /// its issuer's current keys (`generation_of(issuer)` gives their generation).
    pub fn get(
        &mut self,
        token: &str,
        generation_of: impl Fn(usize) -> Option<u64>,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        let key = slot(token);
        let (same, fresh) = {
            let entry = self.entries.get(&key)?;
            let same = same(entry.text.as_bytes(), token.as_bytes());
            let fresh =
                generation_of(entry.token.issuer) == Some(entry.keys_generation) && now < entry.expires_at;
            (same, fresh)
        };
        match (same, fresh) {
            (true, true) => self.entries.peek(&key).map(|e| Arc::clone(&e.token)),
            // Another token in this slot: leave it.
            (false, _) => None,
            (true, false) => {
                self.entries.pop(&key);
                None
            }
        }
    }

    /// Remembers `token`, verified as `verified`, until `expires_at` (Unix seconds).
    pub fn insert(
        &mut self,
        token: &str,
        verified: Arc<VerifiedToken>,
        keys_generation: u64,
        expires_at: i64,
    ) {
        let entry = Entry { text: token.into(), token: verified, keys_generation, expires_at };
        self.entries.put(slot(token), entry);
    }

    /// The verified token cached for exactly `token`, without moving it in
    /// the eviction order or checking that it is still fresh: for questions
    /// about its claims, which are those of the same text either way.
    pub fn peek(&self, token: &str) -> Option<&VerifiedToken> {
        let entry = self.entries.peek(&slot(token))?;
        same(entry.text.as_bytes(), token.as_bytes()).then_some(&*entry.token)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_lru_still_holds_at_most_its_capacity() {
        let mut map = lru::<u32, u32>(3);
        assert_eq!(map.cap().get(), 3);
        for k in 0..5 {
            map.put(k, k);
        }
        assert_eq!(map.len(), 3);
        assert!(!map.contains(&0) && !map.contains(&1), "the least recently used went first");
        assert!((2..5).all(|k| map.contains(&k)));
        // No capacity means one entry, not none (nor an unbounded map).
        let mut one = lru::<u32, u32>(0);
        one.put(1, 1);
        one.put(2, 2);
        assert_eq!((one.cap().get(), one.len(), one.contains(&2)), (1, 1, true));
    }

    fn verified(issuer: usize) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            issuer,
            alg: crate::keys::Alg::EdDSA,
            kid: None,
            claims: crate::token::Claims {
                iss: "https://sts".into(),
                sub: None,
                aud: Vec::new(),
                exp: None,
                nbf: None,
                iat: None,
                jti: None,
                client_id: None,
                scopes: Vec::new(),
                actors: Vec::new(),
                cnf: None,
                raw: serde_json::Map::new(),
            },
            hash: [0; 32],
            view: std::sync::OnceLock::new(),
        })
    }

    #[test]
    fn a_hit_is_only_for_the_exact_text_fresh_and_with_the_same_keys() {
        let mut cache = TokenCache::new(4).unwrap();
        cache.insert("a.b.c", verified(0), 7, 100);
        let gen = |g: u64| move |_: usize| Some(g);
        assert!(cache.get("a.b.c", gen(7), 99).is_some());
        assert!(cache.get("a.b.d", gen(7), 99).is_none());
        assert!(cache.get("a.b.c ", gen(7), 99).is_none());
        assert!(cache.get("a.b.", gen(7), 99).is_none());
        assert_eq!(cache.len(), 1, "a miss for another text leaves the entry");
        // Keys changed: dropped.
        assert!(cache.get("a.b.c", gen(8), 99).is_none());
        assert!(cache.is_empty());
        cache.insert("a.b.c", verified(0), 7, 100);
        // Expired: dropped.
        assert!(cache.get("a.b.c", gen(7), 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn comparison_and_slots() {
        for (a, b, want) in [
            ("", "", true),
            ("abc", "abc", true),
            ("abcdefgh", "abcdefgh", true),
            ("abcdefghi", "abcdefghi", true),
            ("abcdefghi", "abcdefghj", false),
            ("xbcdefghi", "abcdefghi", false),
            ("abcdefgh", "abcdefgX", false),
            ("abc", "abcd", false),
        ] {
            assert_eq!(same(a.as_bytes(), b.as_bytes()), want, "{a} {b}");
        }
        assert_ne!(slot("a.b.c"), slot("a.b.d"));
        assert_ne!(slot("abcdefgh1"), slot("abcdefgh2"));
        assert_eq!(slot("a.b.c"), slot("a.b.c"));
    }

    #[test]
    fn a_colliding_slot_never_returns_the_other_token() {
        // Force two texts into one slot by inserting under the other's key.
        let mut cache = TokenCache::new(4).unwrap();
        cache.insert("victim.token.sig", verified(0), 1, 100);
        let entry = cache.entries.pop(&slot("victim.token.sig")).unwrap();
        cache.entries.put(slot("forged.token.sig"), entry);
        assert!(cache.get("forged.token.sig", |_| Some(1), 50).is_none());
        assert_eq!(cache.len(), 1);
    }
}
