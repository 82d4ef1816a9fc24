//! The verified-token cache: an agent's next request skips the signature check.
//!
//! Keyed by the SHA-256 of the token text, bounded (least-recently-used entries
//! are evicted), and each entry is dropped once the token expires or once its
//! issuer's keys change. A hit only skips *parsing and signature
//! verification*: time, audience, binding, delegation, revocation and scope
//! are checked again on every request, so the cache can never make a token
//! valid that is not valid now.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use crate::token::VerifiedToken;

#[derive(Debug)]
struct Entry {
    token: Arc<VerifiedToken>,
    keys_generation: u64,
    expires_at: i64,
}

/// A bounded cache of verified tokens.
#[derive(Debug)]
pub struct TokenCache {
    entries: LruCache<[u8; 32], Entry>,
}

impl TokenCache {
    /// A cache of at most `capacity` entries; `None` when `capacity` is 0 (cache off).
    pub fn new(capacity: usize) -> Option<TokenCache> {
        NonZeroUsize::new(capacity).map(|c| TokenCache { entries: LruCache::new(c) })
    }

    /// The token for `hash`, if cached, unexpired at `now` and verified with
    /// its issuer's current keys (`generation_of(issuer)` gives their generation).
    pub fn get(
        &mut self,
        hash: &[u8; 32],
        generation_of: impl Fn(usize) -> Option<u64>,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        let fresh = {
            let entry = self.entries.get(hash)?;
            generation_of(entry.token.issuer) == Some(entry.keys_generation) && now < entry.expires_at
        };
        if fresh {
            self.entries.peek(hash).map(|e| Arc::clone(&e.token))
        } else {
            self.entries.pop(hash);
            None
        }
    }

    /// Remembers a verified token until `expires_at` (Unix seconds).
    pub fn insert(&mut self, token: Arc<VerifiedToken>, keys_generation: u64, expires_at: i64) {
        self.entries.put(token.hash, Entry { token, keys_generation, expires_at });
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
